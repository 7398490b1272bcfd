//! Logging: the tracing subscriber (`--log-format json|text`, `RUST_LOG`), fatal errors as log
//! lines, the access log (`log.access`), and the build information the start-up line and
//! `--version` name.
//!
//! Fields hold plain values (`127.0.0.1:4456`, `public`), never Rust `Debug` output, so a log
//! pipeline can match on them.

use std::io::IsTerminal;
use std::time::Instant;

use tracing_subscriber::filter::{Directive, EnvFilter};

use crate::diagnostic::Diagnostic;
use crate::metrics::Listener;
use crate::proxy::Exchange;
use crate::StartError;

/// The package version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The commit the binary was built from (`build.rs`: `git rev-parse --short HEAD`, the
/// `KRATOS_GATE_COMMIT` environment variable at build time, or `unknown`).
pub const COMMIT: &str = env!("KRATOS_GATE_COMMIT");
/// The compiler that built the binary (`rustc --version`), or `unknown`.
pub const RUSTC: &str = env!("KRATOS_GATE_RUSTC");

/// The filter used without `RUST_LOG`, or when `RUST_LOG` is invalid.
pub const DEFAULT_FILTER: &str = "info";

/// The access log's target: `RUST_LOG=info,kratos_gate::access=off` silences it.
pub const ACCESS_TARGET: &str = "kratos_gate::access";

/// `--log-format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line, for log pipelines: every line the process writes to stderr.
    Json,
    /// For people; colour only when stderr is a terminal (and `NO_COLOR` is unset).
    Text,
}

/// What `RUST_LOG` asked for.
#[derive(Debug)]
pub struct FilterChoice {
    pub filter: EnvFilter,
    /// `RUST_LOG`'s value when it was refused, and the directives that did not parse.
    pub refused: Option<(String, Vec<String>)>,
}

/// Reads a `RUST_LOG` value: empty or absent is the default; a value with any directive that
/// does not parse is refused whole (the default is used) and the bad directives are named.
pub fn filter_from(value: Option<&str>) -> FilterChoice {
    let default = || EnvFilter::new(DEFAULT_FILTER);
    let value = match value.map(str::trim) {
        None | Some("") => {
            return FilterChoice {
                filter: default(),
                refused: None,
            }
        }
        Some(v) => v,
    };
    match EnvFilter::builder().parse(value) {
        Ok(filter) => FilterChoice {
            filter,
            refused: None,
        },
        Err(_) => {
            let mut bad: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty() && d.parse::<Directive>().is_err())
                .map(str::to_owned)
                .collect();
            if bad.is_empty() {
                // A span-field directive with commas inside: name the whole value.
                bad.push(value.to_owned());
            }
            FilterChoice {
                filter: default(),
                refused: Some((value.to_owned(), bad)),
            }
        }
    }
}

/// Installs the process's subscriber, writing to stderr, with `RUST_LOG` as the filter
/// (default `info`). An invalid `RUST_LOG` is reported in one warning line and the default is
/// used. In JSON mode a panic is logged as a JSON line too. A subscriber already installed
/// (tests) is kept.
pub fn init(format: Format) {
    let (choice, not_unicode) = match std::env::var("RUST_LOG") {
        Ok(v) => (filter_from(Some(&v)), false),
        Err(std::env::VarError::NotPresent) => (filter_from(None), false),
        Err(std::env::VarError::NotUnicode(_)) => (filter_from(None), true),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(choice.filter)
        .with_writer(std::io::stderr);
    let installed = match format {
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .try_init()
            .is_ok(),
        Format::Text => builder.with_ansi(colour()).try_init().is_ok(),
    };
    if !installed {
        return;
    }
    if format == Format::Json {
        std::panic::set_hook(Box::new(log_panic));
    }
    if let Some((value, bad)) = choice.refused {
        tracing::warn!(
            rust_log = %value,
            invalid = %bad.join(","),
            default = DEFAULT_FILTER,
            "RUST_LOG has an invalid directive ({}); using the default filter `{DEFAULT_FILTER}`",
            bad.join(", ")
        );
    } else if not_unicode {
        tracing::warn!(
            default = DEFAULT_FILTER,
            "RUST_LOG is not valid UTF-8; using the default filter `{DEFAULT_FILTER}`"
        );
    }
}

/// Colour codes only for a person at a terminal.
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let location = info
        .location()
        .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current();
    tracing::error!(
        panic = %payload,
        location = %location,
        thread = thread.name().unwrap_or("unnamed"),
        "panic"
    );
}

/// A listener's name as metrics and logs spell it.
pub fn listener_name(listener: Listener) -> &'static str {
    match listener {
        Listener::Public => "public",
        Listener::Admin => "admin",
    }
}

/// Reports invalid config or blocklist files: in JSON mode one error line each (the rendered
/// `file:line:column: message` as the message, and the parts as fields); in text mode the
/// plain lines.
pub fn invalid_files(format: Format, diagnostics: &[Diagnostic]) {
    match format {
        Format::Text => eprint!("{}", crate::diagnostic::render(diagnostics)),
        Format::Json => {
            for d in diagnostics {
                tracing::error!(
                    file = %d.file,
                    line = d.line,
                    column = d.column,
                    error = %d.message,
                    "{d}"
                );
            }
        }
    }
}

/// Reports an error that stops the process.
pub fn fatal(format: Format, what: &str, error: &dyn std::fmt::Display) {
    match format {
        Format::Text => eprintln!("{what}: {error}"),
        Format::Json => tracing::error!(error = %error, "{what}"),
    }
}

/// Reports why [`crate::start`] failed.
pub fn start_error(format: Format, error: &StartError) {
    match (format, error) {
        (_, StartError::Invalid(diagnostics)) => invalid_files(format, diagnostics),
        (Format::Text, e) => eprintln!("{e}"),
        (Format::Json, StartError::Setup(e)) => {
            tracing::error!(error = %e, "cannot start: {e}");
        }
        (
            Format::Json,
            e @ StartError::Bind {
                listener,
                addr,
                source,
            },
        ) => tracing::error!(
            listener = *listener,
            address = %addr,
            error = %source,
            "{e}"
        ),
    }
}

/// The last line of a process that stops with an error (JSON mode; text mode has said why
/// already).
pub fn exit(format: Format, code: u8) {
    if format == Format::Json {
        tracing::error!(exit_code = code, "kratos-gate stops");
    }
}

/// Starts timing a request for the access log; `None` (nothing measured) when it is off.
#[inline]
pub fn access_start(enabled: bool) -> Option<Instant> {
    enabled.then(Instant::now)
}

/// Writes the access log line of a request the proxy engine answered (`log.access: true`):
/// request id, method, path, status, duration until the response head (bodies stream
/// afterwards), Kratos's status when Kratos answered, listener and client address (the TCP
/// peer). Does nothing when `started` is `None` (the access log is off).
#[inline]
pub fn access(started: Option<Instant>, exchange: &Exchange, status: http::StatusCode) {
    if let Some(started) = started {
        write_access(started, exchange, status);
    }
}

#[cold]
fn write_access(started: Instant, exchange: &Exchange, status: http::StatusCode) {
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: ACCESS_TARGET,
        request_id = %exchange.request_id,
        method = %exchange.method,
        path = %exchange.path(),
        status = status.as_u16(),
        duration_ms,
        upstream_status = exchange.upstream_status.get().map(|s| s.as_u16()),
        listener = listener_name(exchange.listener),
        client_ip = %exchange.peer.ip,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_or_empty_rust_log_is_the_default() {
        assert!(filter_from(None).refused.is_none());
        assert!(filter_from(Some("  ")).refused.is_none());
    }

    #[test]
    fn valid_rust_log_is_used() {
        let c = filter_from(Some("warn,kratos_gate=debug"));
        assert!(c.refused.is_none());
        assert!(c.filter.to_string().contains("kratos_gate=debug"));
    }

    #[test]
    fn invalid_rust_log_names_the_bad_directive_and_falls_back() {
        let c = filter_from(Some("info,kratos_gate=loud"));
        let (value, bad) = c.refused.expect("refused");
        assert_eq!(value, "info,kratos_gate=loud");
        assert_eq!(bad, vec!["kratos_gate=loud".to_owned()]);
        assert_eq!(c.filter.to_string(), DEFAULT_FILTER);
    }

    #[test]
    fn listener_names_are_the_metric_labels() {
        assert_eq!(listener_name(Listener::Public), "public");
        assert_eq!(listener_name(Listener::Admin), "admin");
    }

    #[test]
    fn build_information_is_compiled_in() {
        assert!(!COMMIT.is_empty() && !COMMIT.contains('\n'));
        assert!(!RUSTC.is_empty());
        assert_eq!(VERSION, env!("CARGO_PKG_VERSION"));
    }
}
