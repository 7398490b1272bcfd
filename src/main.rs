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

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use kratos_gate::blocklist::unix_now;
use kratos_gate::config::Config;
use kratos_gate::diagnostic;
use kratos_gate::reload::read_blocklist;

/// A reverse proxy in front of Ory Kratos that keeps blocklisted identities from holding a
/// session.
#[derive(Parser, Debug)]
#[command(name = "kratos-gate", version, about)]
struct Args {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "KRATOS_GATE_CONFIG",
        default_value = "gateway.yaml"
    )]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate the config and the blocklist it names, print a summary, and exit
    /// (0 valid, 2 invalid). With --blocklist, lint that blocklist file alone.
    Check {
        /// Lint this blocklist file without a config (for pipelines that check a change
        /// before it is applied).
        #[arg(long)]
        blocklist: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Json,
    Text,
}

const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Check {
            blocklist: Some(path),
        }) => check_blocklist(&path),
        Some(Command::Check { blocklist: None }) => check(&args.config),
        None => serve(&args),
    }
}

/// Loads config and blocklist; on error prints every diagnostic and returns the exit code.
fn load(
    config_path: &std::path::Path,
) -> Result<(Config, kratos_gate::blocklist::Parsed), ExitCode> {
    let config = Config::load(config_path).map_err(|errs| {
        eprint!("{}", diagnostic::render(&errs));
        ExitCode::from(EXIT_INVALID)
    })?;
    if let Err(e) = config.admin_token() {
        eprintln!("{}: {e}", config_path.display());
        return Err(ExitCode::from(EXIT_INVALID));
    }
    let parsed = read_blocklist(&config.blocklist.path).map_err(|errs| {
        eprint!("{}", diagnostic::render(&errs));
        ExitCode::from(EXIT_INVALID)
    })?;
    Ok((config, parsed))
}

fn check(config_path: &std::path::Path) -> ExitCode {
    let (config, parsed) = match load(config_path) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let summary = blocklist_summary(&config.blocklist.path, parsed);
    println!("ok: {} valid; {summary}", config_path.display());
    ExitCode::SUCCESS
}

fn check_blocklist(path: &std::path::Path) -> ExitCode {
    match read_blocklist(path) {
        Ok(parsed) => {
            println!("ok: {}", blocklist_summary(path, parsed));
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprint!("{}", diagnostic::render(&errs));
            ExitCode::from(EXIT_INVALID)
        }
    }
}

/// Prints warnings and lint findings to stderr and returns the one-line summary.
fn blocklist_summary(path: &std::path::Path, parsed: kratos_gate::blocklist::Parsed) -> String {
    let now = unix_now();
    let list = &parsed.blocklist;
    let mut warnings = parsed.warnings;
    warnings.extend(list.lint(&path.display().to_string(), now));
    warnings.sort_by_key(|d| (d.line, d.column));
    for w in &warnings {
        eprintln!("{w} (warning)");
    }
    format!(
        "blocklist {}: {} entries, {} expiring, {} expired, {} warnings",
        path.display(),
        list.len(),
        list.expiring_count(now),
        list.expired_count(now),
        warnings.len()
    )
}

fn serve(args: &Args) -> ExitCode {
    kratos_gate::init_logging(matches!(args.log_format, LogFormat::Json));
    // Validate before building the runtime or binding anything.
    let (config, _) = match load(&args.config) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Handlers first: a signal that arrives once the gateway reports ready must already
        // mean a graceful shutdown or a reload, not the default action.
        let mut signals = match Signals::install() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let gateway = match kratos_gate::start(config).await {
            Ok(g) => g,
            Err(kratos_gate::StartError::Invalid(errs)) => {
                eprint!("{}", diagnostic::render(&errs));
                return ExitCode::from(EXIT_INVALID);
            }
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        signals.wait_for_shutdown(&gateway).await;
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
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
