//! The one validation path of `kratos-gate check` and of start-up: everything the config
//! says that can be wrong is found here, before anything is bound, and reported together.
//!
//! - the config file: every key in error, with its path, position, value and what is
//!   expected ([`Config::parse_file`]), environment overrides and `${VAR}` included;
//! - what the config names outside itself: the admin token and the hook secret (files
//!   readable and not empty, variables set), TLS certificates and keys (PEM that parses, a key
//!   that belongs to its certificate), `upstream.ca_file` (PEM certificates), the throttle's
//!   Redis password and CA files, the revocation journal's directory;
//! - the blocklist source: a file is read and parsed (its own errors with their positions)
//!   and handed on, so that start-up does not parse it again; a remote source
//!   (`blocklist.url`) is set up from the environment's settings, and `check` loads it once
//!   the way start-up does (not with `--offline`; serving loads it itself, in its runtime).

use std::path::Path;

use crate::blocklist::source::{self, Loaded};
use crate::config::{Config, Parsed};
use crate::config_tree::Provenance;
use crate::diagnostic::Diagnostic;

/// A config that passed every check, and what `check` prints about it.
pub struct Validated {
    pub config: Config,
    /// Values that came from the environment (overrides and `${VAR}`), in key order.
    pub provenance: Vec<Provenance>,
    /// The blocklist read and parsed (a file, or a remote list fetched by `check`).
    pub blocklist: Option<Loaded>,
}

/// What [`validate`] does besides reading files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Fetch a remote blocklist once and check it (`check` without `--offline`).
    pub fetch_remote: bool,
}

pub use crate::config_tree::process_env;

/// Validates the config file at `path` and everything it names. `Err` holds every problem
/// found, in file order.
pub fn validate(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    options: Options,
) -> Result<Validated, Vec<Diagnostic>> {
    let parsed = Config::parse_file(path, env);
    let mut errors = parsed.errors.clone();
    let Some(config) = parsed.config.as_ref() else {
        return Err(errors);
    };
    errors.extend(outside(&parsed, config));
    let mut blocklist = None;
    if config.blocklist.url.is_some() {
        if !parsed.is_bad("blocklist.url") {
            match remote(config, options.fetch_remote) {
                Ok(list) => blocklist = list,
                Err(list_errors) => errors.extend(list_errors),
            }
        }
    } else if !parsed.is_bad("blocklist.path") && !config.blocklist.path.as_os_str().is_empty() {
        match source::read_file(&config.blocklist) {
            Ok(list) => blocklist = Some(list),
            Err(list_errors) => errors.extend(list_errors),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let Parsed {
        config, provenance, ..
    } = parsed;
    match config {
        Some(config) => Ok(Validated {
            config,
            provenance,
            blocklist,
        }),
        None => Err(errors),
    }
}

/// Sets the remote source up (its settings from the environment; no request); with `fetch`,
/// loads the list the way start-up does ([`source::load`]: the fetch, then
/// `blocklist.cache_path` and `blocklist.require_on_start`), so that its errors are the ones
/// serving would stop with. Serving itself loads it in its own runtime.
fn remote(config: &Config, fetch: bool) -> Result<Option<Loaded>, Vec<Diagnostic>> {
    source::from_config(&config.blocklist)?;
    if !fetch {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            vec![Diagnostic::whole_file(
                &config.source.display().to_string(),
                format!("cannot start the async runtime: {e}"),
            )]
        })?;
    runtime.block_on(source::load(&config.blocklist)).map(Some)
}

/// The files and variables the config names.
fn outside(parsed: &Parsed, config: &Config) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let mut report = |key: &str, ok: Result<(), String>| {
        if let Err(message) = ok {
            if !parsed.is_bad(key) {
                errors.push(parsed.at(key, message));
            }
        }
    };
    let token_key = if config.upstream.admin_token_file.is_some() {
        "upstream.admin_token_file"
    } else {
        "upstream.admin_token_env"
    };
    report(token_key, config.admin_token().map(drop));
    let secret_key = if config.hooks.secret_file.is_some() {
        "hooks.secret_file"
    } else {
        "hooks.secret_env"
    };
    report(secret_key, config.hooks_secret().map(drop));
    for (name, listen) in [
        ("public", Some(&config.listen.public)),
        ("admin", config.listen.admin.as_ref()),
    ] {
        let Some(files) = listen.and_then(|l| l.tls.as_ref()) else {
            continue;
        };
        let key = format!("listen.{name}.tls");
        if parsed.is_bad(&key) {
            continue;
        }
        report(
            &format!("{key}.cert"),
            crate::tls::load_certified_key(&files.cert, &files.key).map(drop),
        );
    }
    if let Some(ca) = &config.upstream.ca_file {
        report(
            "upstream.ca_file",
            crate::tls::client_config(Some(ca)).map(drop),
        );
    }
    // The throttle's Redis: its password file and CA file (the connection is made later).
    if let Some(redis) = config
        .throttle
        .redis
        .as_ref()
        .filter(|_| config.throttle.enabled)
    {
        if let Some(file) = &redis.password_file {
            report(
                "throttle.redis.password_file",
                match std::fs::read_to_string(file) {
                    Ok(t) if t.trim().is_empty() => {
                        Err(format!("{}: the file is empty", file.display()))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(format!("{}: cannot read: {e}", file.display())),
                },
            );
        }
        if let Some(ca) = &redis.ca_file {
            report(
                "throttle.redis.ca_file",
                crate::tls::client_config(Some(ca)).map(drop),
            );
        }
    }
    if let Some(journal) = &config.revocation.journal {
        report("revocation.journal", journal_dir(journal));
    }
    errors
}

/// The journal's directory is created at start-up: what exists of it must be directories.
fn journal_dir(dir: &Path) -> Result<(), String> {
    let mut at = Some(dir);
    while let Some(p) = at {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(format!(
                    "{} is not a directory (the journal needs a directory of its own)",
                    p.display()
                ))
            }
            Err(_) => at = p.parent(),
        }
    }
    Ok(())
}

/// `check`'s lines for values that came from the environment:
/// `upstream.public = http://… (from $KRATOS_GATE_UPSTREAM_PUBLIC)`.
pub fn provenance_lines(file: &str, provenance: &[Provenance]) -> Vec<String> {
    use crate::config_tree::Origin;
    provenance
        .iter()
        .map(|p| {
            let from = match &p.origin {
                Origin::Env(var) => format!("${var}"),
                Origin::Expanded(written) if p.at.line > 0 => {
                    format!("`{written}` at {file}:{}:{}", p.at.line, p.at.column)
                }
                Origin::Expanded(written) => format!("`{written}`"),
                Origin::File | Origin::StandIn => file.to_owned(),
            };
            format!("{} = {} (from {from})", p.path, p.value)
        })
        .collect()
}
