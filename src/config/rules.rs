//! The rules between keys and beyond a value's type (each broken one named by its key), and the
//! secrets the config points at (a file or an environment variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Config;

impl Config {
    /// The rules between keys and beyond a value's type: (key path, message) for each broken
    /// one.
    pub(super) fn problems(&self) -> Vec<(String, String)> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut check = |key: &str, ok: bool, msg: &str| {
            if !ok {
                errors.push((key.to_owned(), msg.to_owned()));
            }
        };
        check(
            "inspection.session_cookie",
            !self.inspection.session_cookie.trim().is_empty()
                && http::HeaderValue::from_str(&self.inspection.session_cookie).is_ok()
                && !self.inspection.session_cookie.contains(['=', ';', ' ']),
            "must be a cookie name",
        );
        let attribute = |v: &str| {
            !v.contains(';') && !v.contains(char::is_whitespace) && !v.contains(char::is_control)
        };
        check(
            "inspection.session_cookie_path",
            self.inspection.session_cookie_path.starts_with('/')
                && attribute(&self.inspection.session_cookie_path),
            "must be a path starting with /",
        );
        check(
            "inspection.session_cookie_domain",
            self.inspection
                .session_cookie_domain
                .as_deref()
                .is_none_or(|d| !d.is_empty() && attribute(d) && !d.contains(['/', ':', ','])),
            "must be a domain such as example.com",
        );
        check(
            "inspection.body_limit_bytes",
            self.inspection.body_limit_bytes >= 1024,
            "must be at least 1024",
        );
        check(
            "revocation.concurrency",
            self.revocation.concurrency >= 1 && self.revocation.concurrency <= 64,
            "must be between 1 and 64",
        );
        check(
            "revocation.queue_capacity",
            self.revocation.queue_capacity >= 1,
            "must be at least 1",
        );
        check(
            "revocation.rate_per_second",
            self.revocation.rate_per_second >= 1,
            "must be at least 1",
        );
        if let Some(journal) = &self.revocation.journal {
            check(
                "revocation.journal",
                !journal.as_os_str().is_empty(),
                "must be a directory path",
            );
            // The blocklist's folder is watched: journal writes there would keep waking the
            // reloader and delay reloads.
            check(
                "revocation.journal",
                journal.as_os_str().is_empty()
                    || self.blocklist.path.parent().map(normalise) != Some(normalise(journal)),
                "must not be the blocklist's folder (use a directory of its own, e.g. revocations)",
            );
        }
        check(
            "blocklist.email_traits",
            self.blocklist
                .email_traits
                .iter()
                .all(|p| !p.trim().is_empty() && p.split('.').all(|s| !s.is_empty())),
            "entries are dot-separated paths such as traits.email",
        );
        check(
            "server.max_header_bytes",
            self.server.max_header_bytes >= 8192,
            "must be at least 8192",
        );
        check(
            if self.blocklist.url.is_some() {
                "blocklist.url"
            } else {
                "blocklist"
            },
            self.blocklist.path.as_os_str().is_empty() != self.blocklist.url.is_none(),
            "set exactly one of blocklist.path (a local file) and blocklist.url (a remote source)",
        );
        check(
            "blocklist.cache_path",
            self.blocklist.cache_path.is_none() || self.blocklist.url.is_some(),
            "is only used with blocklist.url",
        );
        check(
            "blocklist.cache_path",
            self.blocklist
                .cache_path
                .as_ref()
                .is_none_or(|p| p.file_name().is_some()),
            "must be a file path",
        );
        check(
            "blocklist.poll_interval",
            !self.blocklist.poll_interval.get().is_zero(),
            "must be more than 0s",
        );
        check(
            "hooks.secret_header",
            http::HeaderName::from_bytes(self.hooks.secret_header.trim().as_bytes()).is_ok(),
            "is not a header name",
        );
        // The throttle's rules name their key first: `throttle.backoff.cap must be …`.
        for message in self.throttle.validate() {
            let (key, rest) = message.split_once(' ').unwrap_or(("throttle", &message));
            errors.push((key.to_owned(), rest.to_owned()));
        }
        // Every listener needs an address of its own (port 0: the system picks one each).
        let listeners = [
            ("listen.public", Some(self.listen.public.address)),
            (
                "listen.admin",
                self.listen.admin.as_ref().map(|a| a.address),
            ),
            ("listen.ops", Some(self.listen.ops)),
            ("listen.hooks", self.listen.hooks),
        ];
        let bound: Vec<(&str, SocketAddr)> = listeners
            .iter()
            .filter_map(|(k, a)| a.map(|a| (*k, a)))
            .collect();
        for (i, (key, addr)) in bound.iter().enumerate() {
            let earlier = bound
                .iter()
                .take(i)
                .find(|(_, other)| overlaps(*addr, *other));
            if let Some((other_key, other)) = earlier {
                errors.push((
                    (*key).to_owned(),
                    format!(
                        "`{addr}` is the address of {other_key} too (`{other}`); every listener needs an address of its own"
                    ),
                ));
            }
        }
        errors
    }

    /// The admin API key, if one is configured (file first, then environment).
    pub fn admin_token(&self) -> Result<Option<String>, String> {
        secret(
            self.upstream.admin_token_file.as_deref(),
            self.upstream.admin_token_env.as_deref(),
            "upstream.admin_token",
        )
    }

    /// The web hook's shared secret, if one is configured (file first, then environment).
    pub fn hooks_secret(&self) -> Result<Option<String>, String> {
        secret(
            self.hooks.secret_file.as_deref(),
            self.hooks.secret_env.as_deref(),
            "hooks.secret",
        )
    }
}

/// A secret from a file or an environment variable; empty counts as missing.
fn secret(file: Option<&Path>, env: Option<&str>, key: &str) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read {key}: {e}", path.display()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err(format!("{}: {key} file is empty", path.display()));
        }
        return Ok(Some(t));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
            _ => Err(format!("{key}_env names `{var}`, which is not set")),
        };
    }
    Ok(None)
}

/// Whether two listeners would take the same port: the same address, or one of them on every
/// address (`0.0.0.0`, `[::]`). Port 0 never collides.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `p` without `.` components and trailing slashes (lexically; no file system access).
fn normalise(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}
