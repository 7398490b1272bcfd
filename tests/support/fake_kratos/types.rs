//! The fake's public data types: listeners, method filters, recorded calls, sessions, and
//! fresh ids and credentials.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Uri, Version};
use uuid::Uuid;

use super::routing::query_values;
#[cfg(doc)]
use super::MAX_RECORDED_BODY;
use crate::support::fixtures;

/// Which listener a call arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Public,
    Admin,
}

/// A method filter: any method, or exactly one.
///
/// Converts from `Method`, `&Method` and `&str` (`"ANY"` or `"*"` mean any;
/// other strings must be valid method names, else it panics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodMatch {
    Any,
    Exactly(Method),
}

impl MethodMatch {
    pub fn matches(&self, method: &Method) -> bool {
        match self {
            MethodMatch::Any => true,
            MethodMatch::Exactly(m) => m == method,
        }
    }
}

impl From<Method> for MethodMatch {
    fn from(m: Method) -> Self {
        MethodMatch::Exactly(m)
    }
}

impl From<&Method> for MethodMatch {
    fn from(m: &Method) -> Self {
        MethodMatch::Exactly(m.clone())
    }
}

impl From<&str> for MethodMatch {
    fn from(s: &str) -> Self {
        if s.eq_ignore_ascii_case("any") || s == "*" {
            MethodMatch::Any
        } else {
            MethodMatch::Exactly(
                Method::from_bytes(s.as_bytes())
                    .unwrap_or_else(|e| panic!("invalid HTTP method {s:?}: {e}")),
            )
        }
    }
}

/// One request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub side: Side,
    pub method: Method,
    /// Path and query exactly as received (no scheme/authority, also for HTTP/2).
    pub uri: Uri,
    pub headers: HeaderMap,
    /// The request body, complete up to [`MAX_RECORDED_BODY`] bytes.
    pub body: Bytes,
    /// Number of body bytes received in total (may exceed `body.len()`).
    pub body_len: u64,
    pub version: Version,
    /// When the fake recorded the call (before answering it).
    pub at: std::time::Instant,
}

impl RecordedCall {
    /// The path as received (not decoded).
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The raw query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// The first value of query parameter `name` (form-decoded).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_params(name).into_iter().next()
    }

    /// All values of query parameter `name` (form-decoded).
    pub fn query_params(&self, name: &str) -> Vec<String> {
        query_values(self.uri.query(), name)
    }

    /// The first value of header `name` as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of header `name` as text (non-text values skipped).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The recorded body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A session in the fake's registry.
///
/// `token` is what clients send in `X-Session-Token` or `Authorization: Bearer`,
/// `cookie` the value of the `ory_kratos_session` cookie. `aal2_pending`
/// sessions make whoami answer 403 `session_aal2_required`. `email` becomes
/// `traits.email` and the addresses of the identity (default
/// [`fixtures::FIXTURE_EMAIL`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    pub identity_id: Uuid,
    pub session_id: Uuid,
    pub token: Option<String>,
    pub cookie: Option<String>,
    pub aal2_pending: bool,
    pub email: Option<String>,
}

impl SessionSpec {
    /// A session without credentials; add them with the builder methods.
    pub fn new(identity_id: Uuid, session_id: Uuid) -> SessionSpec {
        SessionSpec {
            identity_id,
            session_id,
            token: None,
            cookie: None,
            aal2_pending: false,
            email: None,
        }
    }

    pub fn token(mut self, token: impl Into<String>) -> SessionSpec {
        self.token = Some(token.into());
        self
    }

    pub fn cookie(mut self, cookie_value: impl Into<String>) -> SessionSpec {
        self.cookie = Some(cookie_value.into());
        self
    }

    pub fn aal2_pending(mut self) -> SessionSpec {
        self.aal2_pending = true;
        self
    }

    pub fn email(mut self, email: impl Into<String>) -> SessionSpec {
        self.email = Some(email.into());
        self
    }
}

/// State of a registered session, see [`FakeKratos::session_status`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub identity_id: Uuid,
    /// Revoked by `DELETE /admin/sessions/{id}`.
    pub revoked: bool,
    /// Number of `PATCH /admin/sessions/{id}/extend` calls.
    pub extended: u32,
}

/// A fresh pseudo-random UUID (v4 layout), without needing uuid's `v4` feature.
pub fn fresh_uuid() -> Uuid {
    let a = next_random();
    let b = next_random();
    uuid::Builder::from_random_bytes(((u128::from(a) << 64) | u128::from(b)).to_be_bytes())
        .into_uuid()
}

/// A fresh token shaped like Kratos's: `ory_st_` + 32 alphanumerics.
pub fn fresh_token() -> String {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::from("ory_st_");
    for _ in 0..4 {
        let mut r = next_random();
        for _ in 0..8 {
            out.push(char::from(ALNUM[(r % ALNUM.len() as u64) as usize]));
            r /= ALNUM.len() as u64;
        }
    }
    out
}

/// A fresh opaque cookie value (base64url text, like a securecookie).
pub fn fresh_cookie_value() -> String {
    let bytes: Vec<u8> = (0..4).flat_map(|_| next_random().to_be_bytes()).collect();
    fixtures::base64url(&bytes)
}

fn next_random() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // splitmix64 of a counter mixed with the clock
    let mut z = nanos.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
