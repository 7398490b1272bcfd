//! The `kratos-gate` binary: argument parsing, logging, exit codes and signals.

// Untrusted input must never panic the gateway: no unwrap/expect/indexing/panic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod cli;

/// jemalloc (the default feature `jemalloc`): it returns the memory a reload frees, where
/// glibc's malloc kept it (Cargo.toml, BENCHMARKS.md). `--no-default-features` leaves the
/// system's malloc, `--no-default-features --features mimalloc` takes mimalloc.
#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use kratos_gate::blocklist::source::read_blocklist;
use kratos_gate::config::Config;
use kratos_gate::diagnostic;
use kratos_gate::logging::{self, Format};
use kratos_gate::util::unix_now;
use kratos_gate::validate::{self, Validated};

/// `--version`: the package version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KRATOS_GATE_COMMIT"),
    ")"
);
/// `--version` with the compiler too (clap prints this for `--version`, [`VERSION`] for `-V`).
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KRATOS_GATE_COMMIT"),
    "; ",
    env!("KRATOS_GATE_RUSTC"),
    ")"
);

/// A reverse proxy in front of Ory Kratos that keeps blocklisted identities from holding a
/// session.
#[derive(Parser, Debug)]
#[command(name = "kratos-gate", version = VERSION, long_version = LONG_VERSION, about)]
struct Args {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "KRATOS_GATE_CONFIG",
        default_value = "gateway.yaml"
    )]
    config: PathBuf,
    /// Log format: `json` writes every line (start-up, errors, exits) as one JSON object.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config, everything it names (secrets, TLS files, the blocklist) and its
    /// environment overrides, print a summary, and exit (0 valid, 2 invalid: the same errors
    /// serving would stop with, all of them). With --blocklist, lint that blocklist file alone.
    Check {
        /// Lint this blocklist file without a config (for pipelines that check a change
        /// before it is applied).
        #[arg(long)]
        blocklist: Option<PathBuf>,
        /// Do not fetch a remote blocklist (`blocklist.url`); everything else is checked.
        #[arg(long)]
        offline: bool,
    },
    /// Ask the running gateway whether it is ready (`GET /readyz` on `listen.ops`) and exit
    /// 0 if so, 1 otherwise with a one-line reason: a container HEALTHCHECK without a shell.
    Health {
        /// Give up after this long (`500ms`, `2s`).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Add (or update) an entry in the blocklist file: an identity id, an e-mail address, a
    /// network or a domain. Other lines stay byte for byte; the result is linted like `check`
    /// and replaces the file atomically, or the file is left untouched (exit 2).
    Block(cli::BlockArgs),
    /// Remove an identity id, e-mail address, network or domain (every spelling of it) from
    /// the blocklist file (exit 1 when it is not listed).
    Unblock(cli::UnblockArgs),
    /// Which entries match an identity id, e-mail address or IP address, and why, strictest
    /// first (exit 0 if one in force does, 1 if none). With a config (no --blocklist, or
    /// --config), also asks Kratos's admin API for an identity's addresses.
    Lookup(cli::LookupArgs),
    /// Entries added, removed and changed between two blocklist files (exit 0 same, 1
    /// different, 2 invalid).
    Diff(cli::DiffArgs),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

impl From<LogFormat> for Format {
    fn from(f: LogFormat) -> Format {
        match f {
            LogFormat::Json => Format::Json,
            LogFormat::Text => Format::Text,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e}; write e.g. 2s"))
}

const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let format = Format::from(args.log_format);
    match args.command {
        Some(Command::Check {
            blocklist: Some(path),
            ..
        }) => check_blocklist(&path),
        Some(Command::Check {
            blocklist: None,
            offline,
        }) => check(&args.config, offline),
        Some(Command::Health { timeout }) => health(&args.config, timeout, format),
        Some(Command::Block(a)) => cli::block(&args.config, a),
        Some(Command::Unblock(a)) => cli::unblock(&args.config, a),
        Some(Command::Lookup(a)) => cli::lookup(&args.config, a),
        Some(Command::Diff(a)) => cli::diff(a),
        None => serve(&args.config, format),
    }
}

/// The one validation of `check` and start-up; on error reports every diagnostic and returns
/// the exit code.
fn load(config_path: &Path, format: Format, options: validate::Options) -> Result<Validated, u8> {
    validate::validate(config_path, &validate::process_env, options).map_err(|errs| {
        logging::invalid_files(format, &errs);
        EXIT_INVALID
    })
}

fn check(config_path: &Path, offline: bool) -> ExitCode {
    let file = config_path.display().to_string();
    let options = validate::Options {
        fetch_remote: !offline,
    };
    let validated = match load(config_path, Format::Text, options) {
        Ok(v) => v,
        Err(code) => return ExitCode::from(code),
    };
    for line in validate::provenance_lines(&file, &validated.provenance) {
        println!("{line}");
    }
    let trusted = &validated.config.forwarding.trusted_proxies;
    let summary = match (validated.blocklist, &validated.config.blocklist.url) {
        (Some(loaded), Some(url)) => blocklist_summary(&url.raw, loaded.parsed, trusted),
        (Some(loaded), None) => blocklist_summary(
            &validated.config.blocklist.path.display().to_string(),
            loaded.parsed,
            trusted,
        ),
        (None, Some(url)) => format!("blocklist {url}: not fetched (--offline)"),
        (None, None) => "no blocklist".to_owned(),
    };
    println!("ok: {file} valid; {summary}");
    ExitCode::SUCCESS
}

fn check_blocklist(path: &Path) -> ExitCode {
    match read_blocklist(path) {
        Ok(parsed) => {
            println!(
                "ok: {}",
                blocklist_summary(&path.display().to_string(), parsed, &[])
            );
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprint!("{}", diagnostic::render(&errs));
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Prints warnings and lint findings to stderr and returns the one-line summary.
/// `trusted`: `forwarding.trusted_proxies`, when a config is checked (networks listed over
/// them are named).
fn blocklist_summary(
    name: &str,
    parsed: kratos_gate::blocklist::Parsed,
    trusted: &[ipnet::IpNet],
) -> String {
    let now = unix_now();
    let list = &parsed.blocklist;
    let mut warnings = parsed.warnings;
    warnings.extend(list.lint(name, now));
    warnings.extend(list.networks().lint_trusted_proxies(trusted, name, now));
    warnings.sort_by_key(|d| (d.line, d.column));
    for w in &warnings {
        eprintln!("{w} (warning)");
    }
    format!(
        "blocklist {}: {} entries, {} expiring, {} expired, {} warnings",
        name,
        list.len(),
        list.expiring_count(now),
        list.expired_count(now),
        warnings.len()
    )
}

fn serve(config_path: &Path, format: Format) -> ExitCode {
    logging::init(format);
    match run(config_path, format) {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => {
            logging::exit(format, code);
            ExitCode::from(code)
        }
    }
}

/// Serves until SIGTERM or SIGINT; `Err` is the exit code of a gateway that could not start.
fn run(config_path: &Path, format: Format) -> Result<(), u8> {
    const FAILURE: u8 = 1;
    // Validate before building the runtime or binding anything: the same checks as `check`.
    let validated = load(config_path, format, validate::Options::default())?;
    let file = config_path.display().to_string();
    for line in validate::provenance_lines(&file, &validated.provenance) {
        tracing::info!("config: {line}");
    }
    let config = validated.config;
    let loaded = validated.blocklist;
    // Per core, this is the control runtime (reloads, revocations, ops, calls to Kratos); the
    // proxy listeners get a runtime per core of their own.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if config.server.runtime == kratos_gate::config::RuntimeLayout::PerCore {
        runtime.worker_threads(1);
    }
    let runtime = runtime.enable_all().build().map_err(|e| {
        logging::fatal(format, "cannot start the async runtime", &e);
        FAILURE
    })?;
    runtime.block_on(async move {
        // Handlers first: a signal that arrives once the gateway reports ready must already
        // mean a graceful shutdown or a reload, not the default action.
        let mut signals = Signals::install().map_err(|e| {
            logging::fatal(format, "cannot install signal handlers", &e);
            FAILURE
        })?;
        let started = match loaded {
            // The list `load` read and checked: parsed once.
            Some(loaded) => kratos_gate::start_with(config, loaded).await,
            None => kratos_gate::start(config).await,
        };
        let gateway = started.map_err(|e| {
            logging::start_error(format, &e);
            match e {
                kratos_gate::StartError::Invalid(_) => EXIT_INVALID,
                _ => FAILURE,
            }
        })?;
        signals.wait_for_shutdown(&gateway).await;
        gateway.shutdown().await;
        Ok(())
    })
}

/// `kratos-gate health`: 0 when the gateway named by the config answers `/readyz` with 200.
fn health(config_path: &Path, timeout: Duration, format: Format) -> ExitCode {
    let outcome = Config::load(config_path)
        .map_err(|errs| {
            let first = errs.first().map(|d| d.to_string()).unwrap_or_default();
            format!("cannot read the config: {first}")
        })
        .and_then(|config| {
            let addr = probe_address(config.listen.ops);
            probe_readyz(addr, timeout)
        });
    let (ready, line) = match outcome {
        Ok(line) => (true, line),
        Err(line) => (false, line),
    };
    match format {
        Format::Text if ready => println!("ready: {line}"),
        Format::Text => eprintln!("not ready: {line}"),
        Format::Json => {
            let level = if ready { "INFO" } else { "ERROR" };
            let message = if ready { "ready" } else { "not ready" };
            let out = serde_json::json!({"level": level, "message": message, "ready": ready, "reason": line});
            if ready {
                println!("{out}");
            } else {
                eprintln!("{out}");
            }
        }
    }
    if ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Where to reach `listen.ops` from this host: a wildcard address means loopback.
fn probe_address(listen: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, listen.port())
}

/// `GET /readyz` over plain HTTP/1.1, everything within `timeout`. `Ok` with a description
/// when the answer is 200, `Err` with the reason otherwise.
fn probe_readyz(addr: std::net::SocketAddr, timeout: Duration) -> Result<String, String> {
    use std::io::{Read, Write};
    use std::time::Instant;
    let url = format!("http://{addr}/readyz");
    if addr.port() == 0 {
        return Err(format!("listen.ops has port 0: {url} cannot be asked"));
    }
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "{url}: no answer within {}",
                    humantime::format_duration(timeout)
                )
            })
    };
    let mut stream = std::net::TcpStream::connect_timeout(&addr, left()?)
        .map_err(|e| format!("{url}: cannot connect: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|()| {
            stream.write_all(
                format!(
                    "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kratos-gate-health\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
        })
        .map_err(|e| format!("{url}: cannot send the request: {e}"))?;
    // The answer is a few lines; read until the peer closes, at most 4 KiB.
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while answer.len() < 4096 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("{url}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(buf.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if answer.is_empty() => return Err(format!("{url}: no answer: {e}")),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer"))?;
    let body: String = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim())
        .unwrap_or_default()
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let said = if body.is_empty() {
        String::new()
    } else {
        format!(" ({body})")
    };
    if status == 200 {
        Ok(format!("{url} answered {status}{said}"))
    } else {
        Err(format!("{url} answered {status}{said}"))
    }
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// Returns on SIGTERM or SIGINT; SIGHUP reloads the blocklist.
    async fn wait_for_shutdown(&mut self, gateway: &kratos_gate::Gateway) {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM received"); return; }
                _ = self.int.recv() => { tracing::info!("SIGINT received"); return; }
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP received: reloading the blocklist");
                    gateway.reload_blocklist();
                }
            }
        }
    }
}
