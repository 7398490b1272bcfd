//! `kratos-gate block | unblock | lookup | diff`: the blocklist file from the command line.
//!
//! Exit codes: `block`/`unblock` 0 written (or nothing to change), 1 `unblock` of an entry
//! that is not listed, 2 invalid (the file untouched); `lookup` 0 an entry in force matches,
//! 1 none, 2 error; `diff` 0 same, 1 different, 2 error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use kratos_gate::blocklist::diff::{differences, Change};
use kratos_gate::blocklist::edit::{self, Fields, Target};
use kratos_gate::blocklist::source::read_blocklist;
use kratos_gate::blocklist::{Blocklist, Entry, Mode};
use kratos_gate::config::Config;
use kratos_gate::diagnostic::{self, Diagnostic};
use kratos_gate::util::{format_timestamp, parse_uuid, unix_now};
use uuid::Uuid;

const EXIT_INVALID: u8 = 2;

/// Which blocklist file: `--blocklist`, else `blocklist.path` of the config.
#[derive(Args, Debug)]
pub struct ListFile {
    /// The blocklist file (default: `blocklist.path` of the config).
    #[arg(long)]
    blocklist: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct BlockArgs {
    /// An identity id (UUID), an e-mail address, a network (192.0.2.0/24, 2001:db8::/32, or
    /// one address), or a domain.
    target: String,
    #[command(flatten)]
    file: ListFile,
    /// Why (for ops and the audit log; never sent to clients).
    #[arg(long)]
    reason: Option<String>,
    /// When the block lapses (RFC 3339, e.g. 2027-01-01T00:00:00Z); `forever` drops it.
    #[arg(long)]
    until: Option<String>,
    /// `report` for a dry run of this entry, `enforce` to enforce it again.
    #[arg(long, value_parser = ["enforce", "report"])]
    mode: Option<String>,
    /// Metadata `key=value` (repeatable): `ticket`, `added_by`, `note`, or any key (written
    /// under `meta:`). An empty value removes the key.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
}

#[derive(Args, Debug)]
pub struct UnblockArgs {
    /// An identity id (UUID), an e-mail address, a network or a domain: every spelling of it
    /// is removed.
    target: String,
    #[command(flatten)]
    file: ListFile,
}

#[derive(Args, Debug)]
pub struct LookupArgs {
    /// An identity id (UUID), an e-mail address, or an IP address or network (every
    /// `networks` entry that contains it).
    target: String,
    #[command(flatten)]
    file: ListFile,
    /// Do not ask Kratos's admin API for the identity's addresses (it is asked when a config
    /// is read: without --blocklist, or with --config or $KRATOS_GATE_CONFIG).
    #[arg(long)]
    offline: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    old: PathBuf,
    new: PathBuf,
}

/// True when a config was named (`--config`, `$KRATOS_GATE_CONFIG`) rather than defaulted.
fn config_named() -> bool {
    std::env::var_os("KRATOS_GATE_CONFIG").is_some()
        || std::env::args_os().any(|a| {
            let a = a.to_string_lossy();
            a == "--config" || a.starts_with("--config=")
        })
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(format!("`{s}`: write key=value, e.g. ticket=OPS-123")),
    }
}

fn invalid(errs: &[Diagnostic]) -> ExitCode {
    eprint!("{}", diagnostic::render(errs));
    ExitCode::from(EXIT_INVALID)
}

/// The blocklist path, and the config when it was read for it.
fn list_path(config_path: &Path, file: &ListFile) -> Result<(PathBuf, Option<Config>), ExitCode> {
    match &file.blocklist {
        Some(p) => Ok((p.clone(), None)),
        None => match Config::load(config_path) {
            Ok(config) => Ok((config.blocklist.path.clone(), Some(config))),
            Err(errs) => Err(invalid(&errs)),
        },
    }
}

fn target(arg: &str) -> Result<Target, ExitCode> {
    Target::classify(arg).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_INVALID)
    })
}

/// The file's text; a missing file is an empty list (for `block`).
fn read_text(path: &Path, missing_ok: bool) -> Result<String, ExitCode> {
    let name = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|e| {
            invalid(&[Diagnostic::whole_file(
                &name,
                format!("not UTF-8 text: {e}"),
            )])
        }),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(invalid(&[Diagnostic::whole_file(
            &name,
            format!("cannot read: {e}"),
        )])),
    }
}

/// A file that is already invalid is not edited; a result that would be invalid is not
/// written.
fn refuse(text: &str, source: &str, errs: &[Diagnostic]) -> ExitCode {
    let code = invalid(errs);
    if Blocklist::parse(text, source).is_err() {
        eprintln!("error: {source} is not a valid blocklist (fix it first); nothing changed");
    } else {
        eprintln!("error: the result would not pass `check`; {source} is unchanged");
    }
    code
}

fn write(path: &Path, edited: &edit::Edited, what: &str) -> ExitCode {
    for w in edited.parsed.warnings.iter().chain(&edited.lint) {
        eprintln!("{w} (warning)");
    }
    match edit::replace_file(path, edited.text.as_bytes()) {
        Ok(()) => {
            println!(
                "{what}; {} now has {} entries",
                path.display(),
                edited.parsed.blocklist.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", path.display());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

pub fn block(config_path: &Path, args: BlockArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let t = target(&args.target)?;
        let (path, _) = list_path(config_path, &args.file)?;
        let text = read_text(&path, true)?;
        let fields = Fields {
            reason: args.reason,
            until: args.until,
            mode: args.mode,
            meta: args.meta,
        };
        let source = path.display().to_string();
        match edit::block(&text, &source, &t, &fields, unix_now()) {
            Err(errs) => Err(refuse(&text, &source, &errs)),
            Ok(None) => {
                println!(
                    "{} {} is already listed as asked; {source} unchanged",
                    t.section(),
                    t.key()
                );
                Ok(ExitCode::SUCCESS)
            }
            Ok(Some(edited)) => Ok(write(
                &path,
                &edited,
                &format!("listed {} {}", t.section(), t.key()),
            )),
        }
    };
    run().unwrap_or_else(|code| code)
}

pub fn unblock(config_path: &Path, args: UnblockArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let t = target(&args.target)?;
        let (path, _) = list_path(config_path, &args.file)?;
        let text = read_text(&path, false)?;
        let source = path.display().to_string();
        match edit::unblock(&text, &source, &t, unix_now()) {
            Err(errs) => Err(refuse(&text, &source, &errs)),
            Ok(None) => {
                eprintln!(
                    "{} {} is not listed in {source}; unchanged",
                    t.section(),
                    t.key()
                );
                Ok(ExitCode::FAILURE)
            }
            Ok(Some(edited)) => Ok(write(
                &path,
                &edited,
                &format!("removed {} {}", t.section(), t.key()),
            )),
        }
    };
    run().unwrap_or_else(|code| code)
}

/// One entry that matches, and why.
struct Found {
    /// `identity`, `email:…`, `email_domain:…`.
    matched: String,
    /// How the identity's address was learnt, when not given.
    via: Option<String>,
    entry: Entry,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Enforce => "enforce",
        Mode::Report => "report",
    }
}

/// Every entry that matches `address`, expired ones too.
fn address_entries(list: &Blocklist, address: &str, via: Option<&str>, out: &mut Vec<Found>) {
    for (m, entry) in list.address_matches(address, i64::MIN) {
        let matched = m.to_string();
        if out
            .iter()
            .any(|f| f.matched == matched && f.entry.line == entry.line)
        {
            continue;
        }
        out.push(Found {
            matched,
            via: via.map(str::to_owned),
            entry,
        });
    }
}

fn id_entry(list: &Blocklist, id: Uuid, via: Option<&str>, out: &mut Vec<Found>) {
    if out.iter().any(|f| f.matched == "identity") {
        return;
    }
    if let Some(entry) = list.lookup_at(&id, i64::MIN) {
        out.push(Found {
            matched: "identity".to_owned(),
            via: via.map(str::to_owned),
            entry,
        });
    }
}

/// What Kratos knows: (identity id, its addresses) for an id or an e-mail address.
fn ask_kratos(
    config: &Config,
    id: Option<Uuid>,
    email: Option<&str>,
) -> Result<Vec<(Uuid, Vec<String>)>, String> {
    let token = config.admin_token()?;
    let tls = kratos_gate::tls::client_config(config.upstream.ca_file.as_deref())?;
    let client = kratos_gate::kratos::KratosClient::new(config, token, tls)
        .map_err(|e| format!("cannot build the Kratos client: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    runtime.block_on(async {
        match (id, email) {
            (Some(id), _) => {
                let addresses = client
                    .identity_addresses(id)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(vec![(id, addresses.to_vec())])
            }
            (None, Some(email)) => Ok(client
                .identities_by_identifier(email)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|o| (o.id, o.addresses))
                .collect()),
            (None, None) => Ok(Vec::new()),
        }
    })
}

pub fn lookup(config_path: &Path, args: LookupArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let arg = args.target.trim();
        let id = parse_uuid(arg);
        let network = match id {
            None if !arg.contains('@') => kratos_gate::networks::parse_network(arg).ok(),
            _ => None,
        };
        let email = match id {
            Some(_) => None,
            None if arg.contains('@') => Some(arg),
            None if network.is_some() => None,
            None => {
                eprintln!("error: `{arg}` is neither an identity id (UUID), an e-mail address nor an IP address or network");
                return Err(ExitCode::from(EXIT_INVALID));
            }
        };
        let (path, mut config) = list_path(config_path, &args.file)?;
        // `--blocklist F --config C`: the list from F, Kratos from C.
        if config.is_none() && !args.offline && config_named() {
            config = Some(Config::load(config_path).map_err(|errs| invalid(&errs))?);
        }
        let list = read_blocklist(&path)
            .map_err(|errs| invalid(&errs))?
            .blocklist;
        let source = path.display().to_string();
        let mut found = Vec::new();
        if let Some(id) = id {
            id_entry(&list, id, None, &mut found);
        }
        if let Some(email) = email {
            address_entries(&list, email, None, &mut found);
        }
        if let Some(n) = network {
            // Every network that contains it, the longest first (it decides on a tie).
            list.networks().each_cover(n.net, |net, entry| {
                found.insert(
                    0,
                    Found {
                        matched: format!("network:{net}"),
                        via: None,
                        entry: entry.clone(),
                    },
                );
            });
        }
        let mut kratos_failed = false;
        // Kratos knows identities, not client addresses.
        let ask = !args.offline && network.is_none();
        if let Some(config) = config.as_ref().filter(|_| ask) {
            match ask_kratos(config, id, email) {
                Ok(identities) => {
                    if identities.is_empty() || identities.iter().all(|(_, a)| a.is_empty()) {
                        println!("kratos: no identity {arg} (or it has no addresses)");
                    }
                    for (iid, addresses) in identities {
                        println!("kratos: identity {iid}: {}", addresses.join(", "));
                        id_entry(&list, iid, Some(&format!("identity {iid}")), &mut found);
                        for a in &addresses {
                            let via = format!("address {a} of identity {iid}");
                            address_entries(&list, a, Some(&via), &mut found);
                        }
                    }
                }
                Err(e) => {
                    eprintln!("error: asking Kratos: {e}");
                    kratos_failed = true;
                }
            }
        }
        let now = unix_now();
        // Strictest first: entries in force before expired ones, then enforce over report,
        // then the longest `until`; ties keep the order found (id, address, domains).
        found.sort_by(|a, b| {
            let in_force = b.entry.in_force_at(now).cmp(&a.entry.in_force_at(now));
            in_force.then_with(|| {
                if a.entry.is_stricter_than(&b.entry) {
                    std::cmp::Ordering::Less
                } else if b.entry.is_stricter_than(&a.entry) {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
        });
        for f in &found {
            let until = f.entry.until.map_or("forever".to_owned(), format_timestamp);
            let expired = if f.entry.in_force_at(now) {
                ""
            } else {
                " (expired)"
            };
            let via = f
                .via
                .as_deref()
                .map(|v| format!(" via {v}"))
                .unwrap_or_default();
            println!(
                "{source}:{}: {}{via} mode={} until={until}{expired} reason={} meta={}",
                f.entry.line,
                f.matched,
                mode_name(f.entry.mode),
                f.entry.reason.as_deref().unwrap_or("-"),
                Some(f.entry.meta_text())
                    .filter(|m| !m.is_empty())
                    .unwrap_or_else(|| "-".to_owned()),
            );
        }
        let in_force = found.iter().find(|f| f.entry.in_force_at(now));
        match in_force {
            Some(f) => {
                println!(
                    "listed: {} by {} ({source}:{})",
                    mode_name(f.entry.mode),
                    f.matched,
                    f.entry.line
                );
                Ok(ExitCode::SUCCESS)
            }
            None if kratos_failed => Err(ExitCode::from(EXIT_INVALID)),
            None => {
                println!("not listed: {arg}");
                Ok(ExitCode::FAILURE)
            }
        }
    };
    run().unwrap_or_else(|code| code)
}

fn describe(e: &Entry) -> String {
    let mut out = format!("mode={}", mode_name(e.mode));
    out.push_str(&format!(
        " until={}",
        e.until.map_or("forever".to_owned(), format_timestamp)
    ));
    if let Some(r) = &e.reason {
        out.push_str(&format!(" reason={r}"));
    }
    let meta = e.meta_text();
    if !meta.is_empty() {
        out.push_str(&format!(" meta={meta}"));
    }
    out
}

/// What differs between two entries, `field: old -> new` each.
fn changes(a: &Entry, b: &Entry) -> String {
    let mut out = Vec::new();
    if a.mode != b.mode {
        out.push(format!(
            "mode: {} -> {}",
            mode_name(a.mode),
            mode_name(b.mode)
        ));
    }
    if a.until != b.until {
        let u = |e: &Entry| e.until.map_or("forever".to_owned(), format_timestamp);
        out.push(format!("until: {} -> {}", u(a), u(b)));
    }
    if a.reason != b.reason {
        let r = |e: &Entry| e.reason.as_deref().unwrap_or("-").to_owned();
        out.push(format!("reason: {} -> {}", r(a), r(b)));
    }
    if a.meta != b.meta {
        let m = |e: &Entry| {
            Some(e.meta_text())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| "-".to_owned())
        };
        out.push(format!("meta: {} -> {}", m(a), m(b)));
    }
    out.join("; ")
}

pub fn diff(args: DiffArgs) -> ExitCode {
    let run = || -> Result<ExitCode, ExitCode> {
        let old = read_blocklist(&args.old)
            .map_err(|e| invalid(&e))?
            .blocklist;
        let new = read_blocklist(&args.new)
            .map_err(|e| invalid(&e))?
            .blocklist;
        let differences = differences(&old, &new);
        let (o, n) = (args.old.display(), args.new.display());
        let mut section = "";
        for d in &differences {
            if d.section != section {
                section = d.section;
                println!("{section}:");
            }
            match &d.change {
                Change::Added(e) => println!("+ {} ({n}:{}) {}", d.key, e.line, describe(e)),
                Change::Removed(e) => println!("- {} ({o}:{}) {}", d.key, e.line, describe(e)),
                Change::Changed(a, b) => {
                    println!(
                        "~ {} ({o}:{} -> {n}:{}) {}",
                        d.key,
                        a.line,
                        b.line,
                        changes(a, b)
                    )
                }
            }
        }
        let count = |f: fn(&Change) -> bool| differences.iter().filter(|d| f(&d.change)).count();
        if differences.is_empty() {
            println!("same: {o} and {n} list the same entries");
            Ok(ExitCode::SUCCESS)
        } else {
            println!(
                "{} added, {} removed, {} changed",
                count(|c| matches!(c, Change::Added(_))),
                count(|c| matches!(c, Change::Removed(_))),
                count(|c| matches!(c, Change::Changed(..))),
            );
            Ok(ExitCode::FAILURE)
        }
    };
    run().unwrap_or_else(|code| code)
}
