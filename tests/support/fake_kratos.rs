//! An in-process fake Ory Kratos for integration tests.
//!
//! [`FakeKratos::start`] binds two listeners on `127.0.0.1:0`, *public* and
//! *admin*, and serves HTTP/1.1 (keep-alive) and HTTP/2 prior-knowledge with
//! hyper. It behaves like Kratos (see `CONTRACT.md`, sections 3-8) for the
//! session endpoints, backed by an in-memory session registry, records every
//! request, and can be scripted per path. Everything stops when the
//! `FakeKratos` is dropped.
//!
//! Built-in routes (responses are compact JSON + `\n`, like Go):
//!
//! Public listener:
//! - `ANY /sessions/whoami` — credentials in Kratos's order: `X-Session-Token`
//!   (if non-empty it is the only credential looked at), else the first
//!   `ory_kratos_session` cookie across all `Cookie` header fields if its value
//!   is one the registry knows (a known cookie "decodes"; an unknown one does
//!   not, so Kratos falls back to Bearer), else `Authorization: Bearer <token>`
//!   (case-insensitive scheme, exactly two space-separated parts).
//!   200 whoami body + `X-Kratos-Authenticated-Identity-Id`;
//!   403 `session_aal2_required` for [`SessionSpec::aal2_pending`] sessions;
//!   401 [`fixtures::WHOAMI_401_WIRE`] otherwise (also for revoked sessions and
//!   inactive identities). `?tokenize_as=<anything>` adds a fake `tokenized` JWT
//!   ([`fixtures::fake_jwt`], `iss` = public URL + `/`).
//! - `GET /sessions` — the caller's *other* active sessions (Kratos excludes the
//!   current one), `X-Total-Count`; 401 [`fixtures::SESSIONS_401_WIRE`]; 403 AAL.
//!   `DELETE /sessions` revokes the others (`{"count":n}`);
//!   `DELETE /sessions/{id}` revokes one of the caller's sessions (204; 400 for
//!   the current one).
//! - Admin-looking paths (`/admin/…`, `/identities…`, `/recovery/link|code`)
//!   answer 307 to the admin URL, like Kratos's port redirect.
//!
//! Admin listener (`/admin` is added when missing, so `/sessions/x` works too):
//! - `GET /admin/sessions/{id}[?expand=identity&expand=devices]` — without
//!   `expand=identity` the body has `"identity":null` (and `"devices":null`
//!   without `expand=devices`); 404 fixture body for unknown ids; 400 for a
//!   malformed UUID or expand value. `id=whoami` answers 307 to public whoami.
//! - `DELETE /admin/sessions/{id}` — revokes (204, also when already revoked;
//!   the row stays, whoami then answers 401); 404 unknown.
//! - `PATCH /admin/sessions/{id}/extend` — 200 session (identity expanded,
//!   public view); 404 unknown. Counted in [`SessionStatus::extended`].
//! - `GET /admin/sessions` (all sessions), `POST /admin/sessions` (master-only
//!   bulk `{"action":"disable"|"delete","identities"|"sessions":[…]}`).
//! - `GET|DELETE /admin/identities/{id}/sessions` — list (admin view) / hard
//!   delete (204 if there were sessions, else 404 with the 404 body).
//! - `GET /admin/identities/{id}` (admin view, see [`fixtures::identity_json`]),
//!   `PATCH /admin/identities/{id}` (JSON Patch; only `/state` is applied),
//!   `GET /admin/identities[?credentials_identifier=x]` (array, `[]` if none).
//!
//! Ids in admin and public paths are parsed like Kratos's gofrs/uuid `FromString`
//! ([`parse_uuid_like_kratos`]): canonical, 32 hex digits, braced (`%7B…%7D` in a path),
//! `urn:uuid:`, either case — all name the same session or identity.
//!
//! Self-service flow answers that echo the client's input (`transient_payload`, field
//! values), and sessions created while answering, are in `super::flows`.
//!
//! Both: `GET /health/alive` and `/health/ready` → 200 `{"status":"ok"}`.
//! Every built-in answer to a GET carries
//! `Cache-Control: private, no-cache, no-store, must-revalidate`. Success
//! bodies are `application/json; charset=utf-8`, errors `application/json`
//! (plus `Ory-Error-Id` when the error has an id).
//!
//! Routing follows Go 1.22's `ServeMux`: each path segment is percent-decoded
//! before matching (so `/sessions/%77hoami` is whoami, as with real Kratos), a
//! path with `//`, `.` or `..` segments gets a 301 to the cleaned path, a
//! trailing slash does not match, matching is case-sensitive, unknown paths
//! get 404 `text/plain; charset=utf-8` `404 page not found\n` and a known path
//! with the wrong method gets 405 with `Allow`. With
//! [`FakeKratos::set_loose_routing`] the public side routes like a lax server
//! instead (see there).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use super::fixtures::{self, Json};

/// Name of Kratos's default session cookie.
pub const SESSION_COOKIE: &str = "ory_kratos_session";
/// Response header of [`Reply::echo`]: number of request body bytes received.
pub const RECEIVED_BYTES_HEADER: &str = "x-fake-received-bytes";
/// Request bodies are recorded in full only up to this many bytes; the rest is counted.
pub const MAX_RECORDED_BODY: usize = 1024 * 1024;
/// Kratos's `Cache-Control` on every GET.
pub const NO_CACHE: &str = "private, no-cache, no-store, must-revalidate";
/// Content type of Kratos success bodies.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Content type of Kratos (herodot) error bodies.
pub const JSON_ERROR: &str = "application/json";

/// The herodot 500 body used by [`FakeKratos::set_admin_failures`].
pub const INTERNAL_ERROR_WIRE: &str = "{\"error\":{\"code\":500,\"status\":\"Internal Server Error\",\"message\":\"An internal server error occurred, please contact the system administrator\"}}\n";

type FakeBody = UnsyncBoxBody<Bytes, io::Error>;

// ---------------------------------------------------------------------------
// Public data types
// ---------------------------------------------------------------------------

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

    /// True if the body was longer than [`MAX_RECORDED_BODY`] and only its start was kept.
    pub fn body_truncated(&self) -> bool {
        self.body_len > self.body.len() as u64
    }

    /// The recorded body as (lossy) UTF-8 text.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The recorded body parsed as JSON.
    pub fn body_json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
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
    /// Revoked by `DELETE /admin/sessions/{id}`, `DELETE /sessions…` or a bulk disable.
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

/// `ory_kratos_session=<value>`, for a `Cookie` header.
pub fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}")
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

// ---------------------------------------------------------------------------
// Reply builder
// ---------------------------------------------------------------------------

/// Anything that can be a reply body: text, bytes, or JSON values.
///
/// `serde_json::Value` and [`Json`] are written in Kratos's wire form
/// (compact + `\n`; a `serde_json::Value` has sorted keys).
pub trait IntoBody {
    fn into_body(self) -> Bytes;
}

impl IntoBody for &str {
    fn into_body(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl IntoBody for String {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}
impl IntoBody for &String {
    fn into_body(self) -> Bytes {
        Bytes::copy_from_slice(self.as_bytes())
    }
}
impl IntoBody for Vec<u8> {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}
impl IntoBody for &[u8] {
    fn into_body(self) -> Bytes {
        Bytes::copy_from_slice(self)
    }
}
impl IntoBody for Bytes {
    fn into_body(self) -> Bytes {
        self
    }
}
impl IntoBody for serde_json::Value {
    fn into_body(self) -> Bytes {
        Bytes::from(Json::from_value(&self).to_wire())
    }
}
impl IntoBody for &serde_json::Value {
    fn into_body(self) -> Bytes {
        Bytes::from(Json::from_value(self).to_wire())
    }
}
impl IntoBody for Json {
    fn into_body(self) -> Bytes {
        Bytes::from(self.to_wire())
    }
}
impl IntoBody for &Json {
    fn into_body(self) -> Bytes {
        Bytes::from(self.to_wire())
    }
}

type ReplyFn = dyn Fn(&RecordedCall) -> Reply + Send + Sync;

#[derive(Clone)]
enum ReplyBody {
    Full(Bytes),
    Chunks { count: u64, size: usize },
    Echo,
    Dynamic(Arc<ReplyFn>),
}

/// A scripted response, built fluently:
///
/// ```ignore
/// Reply::json(200, fixtures::spa_login_body(id, sid))
///     .header("set-cookie", "csrf_token_x=…; Path=/")
///     .header("set-cookie", "ory_kratos_session=…; Path=/")
///     .delay(Duration::from_millis(50))
/// ```
///
/// Constructors set a default `Content-Type`, which is dropped if you set your
/// own with [`Reply::header`]. Modifiers on a [`Reply::from_fn`] reply apply on
/// top of the reply its closure returns.
#[derive(Clone)]
pub struct Reply {
    status: StatusCode,
    default_headers: Vec<(HeaderName, HeaderValue)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: ReplyBody,
    delay: Option<Duration>,
    gzip: bool,
    chunk_interval: Option<Duration>,
    known_length: bool,
    times: Option<usize>,
    break_after: Option<(usize, Duration)>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = match &self.body {
            ReplyBody::Full(b) => format!("Full({} bytes)", b.len()),
            ReplyBody::Chunks { count, size } => format!("Chunks({count} x {size})"),
            ReplyBody::Echo => "Echo".to_owned(),
            ReplyBody::Dynamic(_) => "Dynamic".to_owned(),
        };
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .field("delay", &self.delay)
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or_else(|e| panic!("invalid HTTP status {status}: {e}"))
}

fn header_pair(name: &str, value: &str) -> (HeaderName, HeaderValue) {
    (
        HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("invalid header name {name:?}: {e}")),
        HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("invalid value for header {name}: {value:?}: {e}")),
    )
}

impl Reply {
    fn base(status: u16, body: ReplyBody) -> Reply {
        Reply {
            status: status_code(status),
            default_headers: Vec::new(),
            headers: Vec::new(),
            body,
            delay: None,
            gzip: false,
            chunk_interval: None,
            known_length: false,
            times: None,
            break_after: None,
        }
    }

    fn default_header(mut self, name: &str, value: &str) -> Reply {
        self.default_headers.push(header_pair(name, value));
        self
    }

    /// A reply with an empty body and no content type (e.g. 204).
    pub fn empty(status: u16) -> Reply {
        Reply::base(status, ReplyBody::Full(Bytes::new()))
    }

    /// A body with no content type set.
    pub fn raw(status: u16, body: impl IntoBody) -> Reply {
        Reply::base(status, ReplyBody::Full(body.into_body()))
    }

    /// A JSON body, sent as given (strings are not re-encoded; pass a
    /// `serde_json::Value` or [`Json`] to get the wire form). Content type is
    /// `application/json; charset=utf-8` below 400 and `application/json`
    /// (herodot's) from 400 on.
    pub fn json(status: u16, body: impl IntoBody) -> Reply {
        let content_type = if status < 400 { JSON_UTF8 } else { JSON_ERROR };
        Reply::raw(status, body).default_header("content-type", content_type)
    }

    /// A `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl IntoBody) -> Reply {
        Reply::raw(status, body).default_header("content-type", "text/plain; charset=utf-8")
    }

    /// A fixture file (relative to `tests/fixtures/kratos/`) in wire form, as JSON.
    pub fn fixture(status: u16, name: &str) -> Reply {
        Reply::json(status, fixtures::fixture_wire(name))
    }

    /// A Kratos/herodot error `{"error":{…}}` with the given fields (in
    /// herodot's order: id, code, status, reason, message) and `Ory-Error-Id`
    /// when `id` is given.
    pub fn kratos_error(
        status: u16,
        id: Option<&str>,
        reason: Option<&str>,
        message: &str,
    ) -> Reply {
        let code = status_code(status);
        let mut error = Json::Object(Vec::new());
        if let Some(id) = id {
            error.set("id", Json::str(id));
        }
        error.set("code", Json::Number(status.into()));
        error.set("status", Json::str(code.canonical_reason().unwrap_or("")));
        if let Some(reason) = reason {
            error.set("reason", Json::str(reason));
        }
        error.set("message", Json::str(message));
        let body = Json::Object(vec![("error".to_owned(), error)]);
        let reply = Reply::json(status, body);
        match id {
            Some(id) => reply.default_header("ory-error-id", id),
            None => reply,
        }
    }

    /// A streamed body of `count` chunks of `size` bytes (`b'x'`), generated on
    /// the fly from one shared chunk, so e.g. `chunks(200, 1024, 64 * 1024)`
    /// sends 64 MiB without allocating it. `application/octet-stream`, sent
    /// with chunked transfer encoding unless [`Reply::known_length`].
    pub fn chunks(status: u16, count: u64, size: usize) -> Reply {
        Reply::base(status, ReplyBody::Chunks { count, size })
            .default_header("content-type", "application/octet-stream")
    }

    /// Streams the request body back. The body is received first (anything
    /// beyond [`MAX_RECORDED_BODY`] is spilled to an anonymous temp file, not
    /// kept in memory), then the reply is sent with header
    /// [`RECEIVED_BYTES_HEADER`] = number of bytes received, `Content-Length`,
    /// the request's `Content-Type` (or `application/octet-stream`), and the
    /// bytes streamed back.
    pub fn echo(status: u16) -> Reply {
        Reply::base(status, ReplyBody::Echo)
    }

    /// A reply computed per request from the recorded call (body included).
    pub fn from_fn<F>(f: F) -> Reply
    where
        F: Fn(&RecordedCall) -> Reply + Send + Sync + 'static,
    {
        Reply::base(200, ReplyBody::Dynamic(Arc::new(f)))
    }

    /// Adds a response header; repeatable (e.g. two `Set-Cookie`). Setting a
    /// header the constructor set by default (`Content-Type`) replaces it.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push(header_pair(name, value));
        self
    }

    /// Waits this long before sending the response headers.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = Some(delay);
        self
    }

    /// Gzips the body (streaming for [`Reply::chunks`] and [`Reply::echo`]) and
    /// sets `Content-Encoding: gzip`.
    pub fn gzip(mut self) -> Reply {
        self.gzip = true;
        self
    }

    /// For [`Reply::chunks`]: waits this long before each chunk after the first.
    pub fn chunk_interval(mut self, interval: Duration) -> Reply {
        self.chunk_interval = Some(interval);
        self
    }

    /// For [`Reply::chunks`] (without gzip): send `Content-Length` instead of chunked encoding.
    pub fn known_length(mut self) -> Reply {
        self.known_length = true;
        self
    }

    /// Fault injection: announce the whole body (its `Content-Length`, or the gzipped one's),
    /// send only its first `n` bytes, then drop the connection, like a Kratos that dies or a
    /// network that resets mid-body. For [`Reply::json`]/[`Reply::raw`]-style full bodies.
    pub fn break_after(mut self, n: usize) -> Reply {
        self.break_after = Some((n, Duration::from_millis(50)));
        self
    }

    /// Like [`Reply::break_after`], but the connection stalls for `stall` after the first
    /// `n` bytes before it is dropped: a Kratos that hangs mid-body.
    pub fn stall_after(mut self, n: usize, stall: Duration) -> Reply {
        self.break_after = Some((n, stall));
        self
    }

    /// When scripted, the rule answers only `n` times and is then removed
    /// (`times(0)` never answers).
    pub fn times(mut self, n: usize) -> Reply {
        self.times = Some(n);
        self
    }

    /// Resolves [`Reply::from_fn`] replies, layering this reply's modifiers on top.
    fn resolve(self, call: &RecordedCall) -> Reply {
        let mut reply = self;
        for _ in 0..16 {
            let ReplyBody::Dynamic(f) = &reply.body else {
                return reply;
            };
            let mut inner = f(call);
            inner.headers.extend(reply.headers);
            inner.delay = match (inner.delay, reply.delay) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            inner.gzip |= reply.gzip;
            inner.known_length |= reply.known_length;
            inner.chunk_interval = inner.chunk_interval.or(reply.chunk_interval);
            inner.break_after = inner.break_after.or(reply.break_after);
            reply = inner;
        }
        panic!("Reply::from_fn nested more than 16 levels deep")
    }
}

// ---------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------

struct Script {
    side: Side,
    method: MethodMatch,
    path: String,
    reply: Reply,
    remaining: Option<usize>,
}

struct SessionEntry {
    spec: SessionSpec,
    revoked: bool,
    extended: u32,
}

struct IdentityEntry {
    id: Uuid,
    email: Option<String>,
    active: bool,
}

impl IdentityEntry {
    fn effective_email(&self) -> &str {
        self.email.as_deref().unwrap_or(fixtures::FIXTURE_EMAIL)
    }
}

#[derive(Default)]
struct Inner {
    sessions: Vec<SessionEntry>,
    identities: Vec<IdentityEntry>,
    calls: Vec<RecordedCall>,
    scripts: Vec<Script>,
    admin_failures: usize,
    public_failures: usize,
    admin_delay: Option<Duration>,
    public_delay: Option<Duration>,
    loose_routing: bool,
    /// Sessions ended through `DELETE /admin/sessions/{id}` and
    /// `DELETE /admin/identities/{id}/sessions`, with when it happened.
    ended: Vec<(Uuid, std::time::Instant)>,
}

impl Inner {
    fn identity(&self, id: Uuid) -> Option<&IdentityEntry> {
        self.identities.iter().find(|i| i.id == id)
    }

    fn identity_mut(&mut self, id: Uuid) -> Option<&mut IdentityEntry> {
        self.identities.iter_mut().find(|i| i.id == id)
    }

    fn ensure_identity(&mut self, id: Uuid, email: Option<&str>) {
        match self.identity_mut(id) {
            Some(identity) => {
                if let Some(email) = email {
                    identity.email = Some(email.to_owned());
                }
            }
            None => self.identities.push(IdentityEntry {
                id,
                email: email.map(str::to_owned),
                active: true,
            }),
        }
    }

    fn session(&self, id: Uuid) -> Option<&SessionEntry> {
        self.sessions.iter().find(|s| s.spec.session_id == id)
    }

    fn session_mut(&mut self, id: Uuid) -> Option<&mut SessionEntry> {
        self.sessions.iter_mut().find(|s| s.spec.session_id == id)
    }

    /// Kratos's "is this session usable": not revoked and identity active.
    fn session_active(&self, entry: &SessionEntry) -> bool {
        !entry.revoked
            && self
                .identity(entry.spec.identity_id)
                .is_none_or(|identity| identity.active)
    }
}

struct Shared {
    public_url: String,
    admin_url: String,
    inner: Mutex<Inner>,
    call_recorded: Notify,
    public_connections: AtomicUsize,
    admin_connections: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handle on the fake's session registry that a [`Reply::from_fn`] closure can keep, for
/// sessions Kratos creates while it answers (see `super::flows`). It does not keep the fake
/// alive: once the [`FakeKratos`] is dropped, adding does nothing.
#[derive(Clone)]
pub struct Registry {
    shared: std::sync::Weak<Shared>,
}

impl Registry {
    /// Like [`FakeKratos::add_session`].
    pub fn add_session(&self, spec: SessionSpec) {
        if let Some(shared) = self.shared.upgrade() {
            add_session(&shared, spec);
        }
    }
}

fn add_session(shared: &Shared, spec: SessionSpec) {
    let mut inner = shared.lock();
    inner.ensure_identity(spec.identity_id, spec.email.as_deref());
    inner
        .sessions
        .retain(|s| s.spec.session_id != spec.session_id);
    inner.sessions.push(SessionEntry {
        spec,
        revoked: false,
        extended: 0,
    });
}

/// The fake Kratos. See the module documentation for the routes.
pub struct FakeKratos {
    /// Address of the public listener.
    pub public_addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKratos {
    fn drop(&mut self) {
        // Aborting an accept loop drops its JoinSet, which aborts its connections.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeKratos {
    /// Binds public and admin listeners on `127.0.0.1:0` and starts serving.
    /// Must be called inside a Tokio runtime.
    pub async fn start() -> FakeKratos {
        let public = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake kratos: bind public listener on 127.0.0.1:0");
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake kratos: bind admin listener on 127.0.0.1:0");
        let public_addr = public.local_addr().expect("fake kratos: public local_addr");
        let admin_addr = admin.local_addr().expect("fake kratos: admin local_addr");
        let shared = Arc::new(Shared {
            public_url: format!("http://{public_addr}"),
            admin_url: format!("http://{admin_addr}"),
            inner: Mutex::new(Inner::default()),
            call_recorded: Notify::new(),
            public_connections: AtomicUsize::new(0),
            admin_connections: AtomicUsize::new(0),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(public, Side::Public, shared.clone())),
            tokio::spawn(accept_loop(admin, Side::Admin, shared.clone())),
        ];
        FakeKratos {
            public_addr,
            admin_addr,
            shared,
            tasks,
        }
    }

    /// `http://127.0.0.1:PORT` of the public listener (no trailing slash).
    pub fn public_url(&self) -> String {
        self.shared.public_url.clone()
    }

    /// `http://127.0.0.1:PORT` of the admin listener (no trailing slash, no `/admin`).
    pub fn admin_url(&self) -> String {
        self.shared.admin_url.clone()
    }

    /// Same as the `public_addr` field.
    pub fn public_addr(&self) -> SocketAddr {
        self.public_addr
    }

    /// Same as the `admin_addr` field.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Number of TCP connections accepted so far on one listener.
    pub fn connections_accepted(&self, side: Side) -> usize {
        match side {
            Side::Public => self.shared.public_connections.load(Ordering::SeqCst),
            Side::Admin => self.shared.admin_connections.load(Ordering::SeqCst),
        }
    }

    // --- registry ---------------------------------------------------------

    /// Registers (or replaces, by session id) a session; its identity is
    /// registered too (active), and gets `spec.email` if given.
    pub fn add_session(&self, spec: SessionSpec) {
        add_session(&self.shared, spec);
    }

    /// A handle for registering sessions later, from inside a reply (see [`Registry`]).
    pub fn registry(&self) -> Registry {
        Registry {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Removes a session entirely (its token and cookie become unknown).
    /// Returns whether it existed.
    pub fn remove_session(&self, session_id: Uuid) -> bool {
        let mut inner = self.shared.lock();
        let before = inner.sessions.len();
        inner.sessions.retain(|s| s.spec.session_id != session_id);
        inner.sessions.len() != before
    }

    /// Marks a session revoked, like `DELETE /admin/sessions/{id}`. Returns whether it exists.
    pub fn revoke_session(&self, session_id: Uuid) -> bool {
        let mut inner = self.shared.lock();
        match inner.session_mut(session_id) {
            Some(entry) => {
                entry.revoked = true;
                true
            }
            None => false,
        }
    }

    /// The state of a session, `None` if it is not (or no longer) registered.
    pub fn session_status(&self, session_id: Uuid) -> Option<SessionStatus> {
        let inner = self.shared.lock();
        inner.session(session_id).map(|entry| SessionStatus {
            identity_id: entry.spec.identity_id,
            revoked: entry.revoked,
            extended: entry.extended,
        })
    }

    /// Ids of the registered sessions (revoked included) of an identity.
    pub fn sessions_of(&self, identity_id: Uuid) -> Vec<Uuid> {
        let inner = self.shared.lock();
        inner
            .sessions
            .iter()
            .filter(|s| s.spec.identity_id == identity_id)
            .map(|s| s.spec.session_id)
            .collect()
    }

    /// Registers an identity without sessions (for `GET /admin/identities…`).
    pub fn add_identity(&self, identity_id: Uuid, email: Option<&str>) {
        self.shared.lock().ensure_identity(identity_id, email);
    }

    /// Sets an identity's `state` (`active`/`inactive`), like
    /// `PATCH /admin/identities/{id}`. Inactive identities' sessions get 401 on
    /// whoami but are not revoked. Registers the identity if unknown.
    pub fn set_identity_active(&self, identity_id: Uuid, active: bool) {
        let mut inner = self.shared.lock();
        inner.ensure_identity(identity_id, None);
        if let Some(identity) = inner.identity_mut(identity_id) {
            identity.active = active;
        }
    }

    /// Whether an identity is registered and active.
    pub fn identity_active(&self, identity_id: Uuid) -> Option<bool> {
        self.shared.lock().identity(identity_id).map(|i| i.active)
    }

    // --- scripting ----------------------------------------------------------

    /// Scripts a reply on the public listener for `method` (or `"ANY"`) and
    /// the exact `path` (query ignored). Scripts take precedence over the
    /// built-in routes; the newest matching script wins. The path is compared
    /// with the raw request path and with its decoded routing form (with loose
    /// routing: normalised and case-insensitively).
    pub fn on_public(&self, method: impl Into<MethodMatch>, path: &str, reply: Reply) {
        self.script(Side::Public, method.into(), path, reply);
    }

    /// Like [`FakeKratos::on_public`] on the admin listener; `/admin` is added
    /// to `path` and to request paths when missing, so `/sessions/x` and
    /// `/admin/sessions/x` are the same.
    pub fn on_admin(&self, method: impl Into<MethodMatch>, path: &str, reply: Reply) {
        self.script(Side::Admin, method.into(), path, reply);
    }

    fn script(&self, side: Side, method: MethodMatch, path: &str, reply: Reply) {
        let remaining = reply.times;
        if remaining == Some(0) {
            return;
        }
        self.shared.lock().scripts.push(Script {
            side,
            method,
            path: path.to_owned(),
            reply,
            remaining,
        });
    }

    /// Removes all scripted replies.
    pub fn clear_scripts(&self) {
        self.shared.lock().scripts.clear();
    }

    // --- failure modes -----------------------------------------------------

    /// The next `n` admin calls answer 500 with a herodot body
    /// ([`INTERNAL_ERROR_WIRE`]), before scripts and built-ins.
    pub fn set_admin_failures(&self, n: usize) {
        self.shared.lock().admin_failures = n;
    }

    /// The next `n` public calls answer 500 like [`FakeKratos::set_admin_failures`].
    pub fn set_public_failures(&self, n: usize) {
        self.shared.lock().public_failures = n;
    }

    /// Delays every admin response by `delay` (before headers); `Duration::ZERO` turns it off.
    pub fn set_admin_delay(&self, delay: Duration) {
        self.shared.lock().admin_delay = (!delay.is_zero()).then_some(delay);
    }

    /// Delays every public response by `delay`; `Duration::ZERO` turns it off.
    pub fn set_public_delay(&self, delay: Duration) {
        self.shared.lock().public_delay = (!delay.is_zero()).then_some(delay);
    }

    /// Loose routing on the public listener, like a lax server: the path is
    /// percent-decoded as a whole, `//` collapsed, `.`/`..` resolved, a
    /// trailing slash dropped and matching is case-insensitive (so
    /// `//sessions/%77hoami/` and `/Sessions/WhoAmI` are whoami). No 301s.
    pub fn set_loose_routing(&self, loose: bool) {
        self.shared.lock().loose_routing = loose;
    }

    // --- recording ----------------------------------------------------------

    /// All calls so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Calls on `side` with a matching method whose raw path starts with `path_prefix`.
    pub fn calls_matching(
        &self,
        side: Side,
        method: impl Into<MethodMatch>,
        path_prefix: &str,
    ) -> Vec<RecordedCall> {
        let method = method.into();
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| {
                c.side == side && method.matches(&c.method) && c.path().starts_with(path_prefix)
            })
            .cloned()
            .collect()
    }

    /// Waits until a call on `side` with a matching method and exactly this raw
    /// path (query ignored) has been recorded, and returns the oldest such
    /// call; `None` after `timeout`.
    pub async fn wait_for_call(
        &self,
        side: Side,
        method: impl Into<MethodMatch>,
        path: &str,
        timeout: Duration,
    ) -> Option<RecordedCall> {
        let method = method.into();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.call_recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = self
                .shared
                .lock()
                .calls
                .iter()
                .find(|c| c.side == side && method.matches(&c.method) && c.path() == path)
                .cloned();
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Forgets all recorded calls.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Takes all calls recorded so far, oldest first, and forgets them (long runs keep the
    /// fake's memory bounded this way).
    pub fn drain_calls(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut self.shared.lock().calls)
    }

    /// Takes the sessions ended by the admin API's `DELETE /admin/sessions/{id}` and
    /// `DELETE /admin/identities/{id}/sessions` so far, each with the instant it happened
    /// (taken while the registry was changed, so a request answered after it saw the
    /// session gone).
    pub fn drain_ended_sessions(&self) -> Vec<(Uuid, std::time::Instant)> {
        std::mem::take(&mut self.shared.lock().ended)
    }
}

async fn accept_loop(listener: TcpListener, side: Side, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("fake kratos ({side:?}): accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match side {
            Side::Public => shared.public_connections.fetch_add(1, Ordering::SeqCst),
            Side::Admin => shared.admin_connections.fetch_add(1, Ordering::SeqCst),
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), side, req));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            // Errors here are client-side disconnects and the like.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------

struct Received {
    stored: Bytes,
    total: u64,
    spill: Option<(tokio::fs::File, u64)>,
}

async fn read_body(mut body: Incoming, spill: bool) -> Received {
    let mut stored = BytesMut::new();
    let mut total: u64 = 0;
    let mut file: Option<(tokio::fs::File, u64)> = None;
    let mut spill_failed = false;
    while let Some(frame) = body.frame().await {
        // An error means the client went away or sent garbage: keep what we have.
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        let room = MAX_RECORDED_BODY - stored.len();
        let keep = room.min(data.len());
        stored.extend_from_slice(&data[..keep]);
        if spill && keep < data.len() && !spill_failed {
            if file.is_none() {
                match tempfile::tempfile() {
                    Ok(f) => file = Some((tokio::fs::File::from_std(f), 0)),
                    Err(e) => {
                        eprintln!("fake kratos: cannot create echo spill file: {e}");
                        spill_failed = true;
                        continue;
                    }
                }
            }
            if let Some((f, written)) = file.as_mut() {
                match f.write_all(&data[keep..]).await {
                    Ok(()) => *written += (data.len() - keep) as u64,
                    Err(e) => {
                        eprintln!("fake kratos: cannot write echo spill file: {e}");
                        spill_failed = true;
                    }
                }
            }
        }
    }
    if let Some((f, _)) = file.as_mut() {
        if let Err(e) = async {
            f.flush().await?;
            f.seek(io::SeekFrom::Start(0)).await.map(|_| ())
        }
        .await
        {
            eprintln!("fake kratos: cannot rewind echo spill file: {e}");
            file = None;
        }
    }
    Received {
        stored: stored.freeze(),
        total,
        spill: file,
    }
}

async fn handle(
    shared: Arc<Shared>,
    side: Side,
    req: Request<Incoming>,
) -> Result<Response<FakeBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let uri: Uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));

    // Decide failure injection and the scripted reply before reading the body
    // (an echo reply needs the body spilled rather than truncated).
    let (failure, side_delay, scripted, route) = {
        let mut inner = shared.lock();
        let loose = side == Side::Public && inner.loose_routing;
        let route = Route::new(side, &raw_path, loose);
        let failure = match side {
            Side::Admin => take_one(&mut inner.admin_failures),
            Side::Public => take_one(&mut inner.public_failures),
        };
        let side_delay = match side {
            Side::Admin => inner.admin_delay,
            Side::Public => inner.public_delay,
        };
        let scripted = if failure {
            None
        } else {
            take_script(&mut inner.scripts, side, &parts.method, &route)
        };
        (failure, side_delay, scripted, route)
    };
    let spill = matches!(
        scripted.as_ref().map(|r| &r.body),
        Some(ReplyBody::Echo | ReplyBody::Dynamic(_))
    );
    let received = read_body(body, spill).await;

    let call = RecordedCall {
        side,
        method: parts.method.clone(),
        uri,
        headers: parts.headers.clone(),
        body: received.stored.clone(),
        body_len: received.total,
        version: parts.version,
        at: std::time::Instant::now(),
    };
    shared.lock().calls.push(call.clone());
    shared.call_recorded.notify_waiters();

    let reply = if failure {
        with_no_cache(&call, Reply::json(500, INTERNAL_ERROR_WIRE))
    } else if let Some(reply) = scripted {
        reply
    } else {
        with_no_cache(&call, builtin(&shared, side, &call, &route))
    };
    let reply = reply.resolve(&call);

    let delay = match (side_delay, reply.delay) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(build_response(reply, &call, received))
}

fn take_one(counter: &mut usize) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

fn take_script(
    scripts: &mut Vec<Script>,
    side: Side,
    method: &Method,
    route: &Route,
) -> Option<Reply> {
    let index = scripts.iter().rposition(|s| {
        s.side == side && s.method.matches(method) && route.matches_script(&s.path)
    })?;
    let script = &mut scripts[index];
    let reply = script.reply.clone();
    if let Some(remaining) = script.remaining.as_mut() {
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            scripts.remove(index);
        }
    }
    Some(reply)
}

fn with_no_cache(call: &RecordedCall, reply: Reply) -> Reply {
    if call.method == Method::GET || call.method == Method::HEAD {
        reply.default_header("cache-control", NO_CACHE)
    } else {
        reply
    }
}

fn build_response(reply: Reply, call: &RecordedCall, received: Received) -> Response<FakeBody> {
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.default_headers {
        if !reply.headers.iter().any(|(n, _)| n == name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &reply.headers {
        headers.append(name.clone(), value.clone());
    }

    let body: FakeBody = match reply.body {
        ReplyBody::Full(bytes) => {
            let bytes = if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip_bytes(&bytes)
            } else {
                bytes
            };
            match reply.break_after {
                Some((n, stall)) => BrokenBody {
                    total: bytes.len() as u64,
                    part: Some(bytes.slice(..n.min(bytes.len()))),
                    stall,
                    pause: None,
                }
                .boxed_unsync(),
                None => full(bytes),
            }
        }
        ReplyBody::Chunks { count, size } => {
            let body = ChunkBody {
                remaining: count,
                chunk: Bytes::from(vec![b'x'; size]),
                interval: reply.chunk_interval,
                sleep: None,
                started: false,
                exact_len: (reply.known_length && !reply.gzip).then(|| count * size as u64),
            };
            if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                GzipBody::new(body.boxed_unsync()).boxed_unsync()
            } else {
                body.boxed_unsync()
            }
        }
        ReplyBody::Echo => {
            headers.insert(
                HeaderName::from_static(RECEIVED_BYTES_HEADER),
                HeaderValue::from(received.total),
            );
            if !headers.contains_key(header::CONTENT_TYPE) {
                let content_type = call
                    .headers
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            let spilled = received.spill.as_ref().map_or(0, |(_, n)| *n);
            let complete = received.stored.len() as u64 + spilled == received.total;
            let body = EchoBody {
                prefix: Some(received.stored),
                file: received.spill.map(|(f, _)| f),
                buf: vec![0; 64 * 1024].into_boxed_slice(),
                exact_len: (complete && !reply.gzip).then_some(received.total),
            };
            if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                GzipBody::new(body.boxed_unsync()).boxed_unsync()
            } else {
                body.boxed_unsync()
            }
        }
        ReplyBody::Dynamic(_) => unreachable!("dynamic replies are resolved before building"),
    };

    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    *response.headers_mut() = headers;
    response
}

fn full(bytes: Bytes) -> FakeBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn gzip_bytes(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .expect("gzip into a Vec cannot fail")
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

struct ChunkBody {
    remaining: u64,
    chunk: Bytes,
    interval: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    started: bool,
    exact_len: Option<u64>,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 || this.chunk.is_empty() {
            return Poll::Ready(None);
        }
        if let (Some(interval), true) = (this.interval, this.started) {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        this.started = true;
        this.remaining -= 1;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 || self.chunk.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

/// A body that sends its first part, pauses (so the part is flushed), then fails, which
/// makes hyper drop the connection short of the announced length.
struct BrokenBody {
    total: u64,
    part: Option<Bytes>,
    stall: Duration,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for BrokenBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(part) = this.part.take() {
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        let stall = this.stall;
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(pause.as_mut().poll(cx));
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "fake kratos: connection dropped mid-body (break_after)",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

struct EchoBody {
    prefix: Option<Bytes>,
    file: Option<tokio::fs::File>,
    buf: Box<[u8]>,
    exact_len: Option<u64>,
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            if !prefix.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(prefix))));
            }
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(None);
        };
        let mut read_buf = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(file).poll_read(cx, &mut read_buf))?;
        if read_buf.filled().is_empty() {
            this.file = None;
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
            read_buf.filled(),
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.file.is_none() && self.prefix.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

struct GzipBody {
    inner: FakeBody,
    encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl GzipBody {
    fn new(inner: FakeBody) -> GzipBody {
        GzipBody {
            inner,
            encoder: Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
        }
    }
}

impl Body for GzipBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    encoder.write_all(&data)?;
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    let encoder = this.encoder.take().expect("checked above");
                    let out = encoder.finish()?;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}

// ---------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------

/// How a request path is routed.
struct Route {
    side: Side,
    loose: bool,
    raw: String,
    /// Decoded segments of the (admin-prefixed) path; empty last segment = trailing slash.
    segments: Vec<String>,
    /// Go's 301 target when the path is not clean.
    redirect: Option<String>,
}

impl Route {
    fn new(side: Side, raw_path: &str, loose: bool) -> Route {
        let raw = if side == Side::Admin {
            with_admin_prefix(raw_path)
        } else {
            raw_path.to_owned()
        };
        if loose {
            return Route {
                side,
                loose,
                segments: loose_segments(&raw),
                raw,
                redirect: None,
            };
        }
        let raw_segments: Vec<&str> = raw.strip_prefix('/').unwrap_or(&raw).split('/').collect();
        let decoded: Vec<String> = raw_segments.iter().map(|s| decode(s)).collect();
        let last = decoded.len() - 1;
        let clean = decoded
            .iter()
            .enumerate()
            .all(|(i, s)| s != "." && s != ".." && (!s.is_empty() || i == last));
        let redirect = (!clean).then(|| {
            let mut out: Vec<&str> = Vec::new();
            for (raw_segment, segment) in raw_segments.iter().zip(&decoded) {
                match segment.as_str() {
                    "" | "." => {}
                    ".." => {
                        out.pop();
                    }
                    _ => out.push(raw_segment),
                }
            }
            // Like Go's cleanPath: keep a trailing slash only if the request had one.
            let trailing = decoded[last].is_empty() && !out.is_empty();
            format!("/{}{}", out.join("/"), if trailing { "/" } else { "" })
        });
        Route {
            side,
            loose,
            raw,
            segments: decoded,
            redirect,
        }
    }

    fn joined(&self) -> String {
        format!("/{}", self.segments.join("/"))
    }

    fn matches_script(&self, script_path: &str) -> bool {
        let script_path = script_path.split('?').next().unwrap_or_default();
        let script_path = if self.side == Side::Admin {
            with_admin_prefix(script_path)
        } else {
            script_path.to_owned()
        };
        if self.loose {
            format!("/{}", loose_segments(&script_path).join("/")) == self.joined()
        } else {
            script_path == self.raw || script_path == self.joined()
        }
    }
}

fn with_admin_prefix(path: &str) -> String {
    if path.starts_with("/admin") {
        path.to_owned()
    } else {
        format!("/admin{path}")
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn loose_segments(path: &str) -> Vec<String> {
    let decoded = decode(path);
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s.to_lowercase()),
        }
    }
    segments
}

fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Built-in Kratos behaviour
// ---------------------------------------------------------------------------

fn not_found() -> Reply {
    Reply::text(404, "404 page not found\n").default_header("x-content-type-options", "nosniff")
}

fn method_not_allowed(allow: &str) -> Reply {
    Reply::text(405, "Method Not Allowed\n")
        .default_header("x-content-type-options", "nosniff")
        .default_header("allow", allow)
}

fn redirect(status: u16, location: &str, method: &Method) -> Reply {
    let reply = Reply::empty(status).default_header("location", location);
    if method == Method::GET || method == Method::HEAD {
        let text = StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        let href = location.replace('&', "&amp;").replace('"', "&#34;");
        Reply {
            body: ReplyBody::Full(Bytes::from(format!("<a href=\"{href}\">{text}</a>.\n\n"))),
            ..reply
        }
        .default_header("content-type", "text/html; charset=utf-8")
    } else {
        reply
    }
}

fn health() -> Reply {
    Reply::json(200, "{\"status\":\"ok\"}\n")
}

fn bad_uuid(text: &str) -> Reply {
    let message = if text.len() == 36 {
        format!("uuid: incorrect UUID format in string {text:?}")
    } else {
        format!(
            "uuid: incorrect UUID length {} in string {text:?}",
            text.len()
        )
    };
    Reply::kratos_error(400, None, None, &message)
}

fn error_404() -> Reply {
    Reply::json(404, fixtures::error_404_body())
}

fn parse_uuid(text: &str) -> Result<Uuid, Box<Reply>> {
    parse_uuid_like_kratos(text).ok_or_else(|| Box::new(bad_uuid(text)))
}

/// Parses an id the way Kratos does (gofrs/uuid `FromString`): the canonical 36-character
/// form, 32 hex digits, either of those in braces (`{…}`), either of those after
/// `urn:uuid:` (lower case), hex digits in either case. `None` for anything else.
pub fn parse_uuid_like_kratos(text: &str) -> Option<Uuid> {
    fn plain(t: &[u8]) -> Option<Uuid> {
        let hex: Vec<u8> = match t.len() {
            32 => t.to_vec(),
            36 => {
                if [8, 13, 18, 23].iter().any(|&i| t[i] != b'-') {
                    return None;
                }
                t.iter().copied().filter(|&c| c != b'-').collect()
            }
            _ => return None,
        };
        if hex.len() != 32 || !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let text = std::str::from_utf8(&hex).ok()?;
        u128::from_str_radix(text, 16).ok().map(Uuid::from_u128)
    }
    let t = text.as_bytes();
    match t.len() {
        32 | 36 => plain(t),
        34 | 38 if t[0] == b'{' && t[t.len() - 1] == b'}' => plain(&t[1..t.len() - 1]),
        41 | 45 if t.starts_with(b"urn:uuid:") => plain(&t[9..]),
        _ => None,
    }
}

fn builtin(shared: &Shared, side: Side, call: &RecordedCall, route: &Route) -> Reply {
    if let Some(location) = &route.redirect {
        let location = match call.query() {
            Some(q) => format!("{location}?{q}"),
            None => location.clone(),
        };
        return redirect(301, &location, &call.method);
    }
    let segments: Vec<&str> = route.segments.iter().map(String::as_str).collect();
    let get = call.method == Method::GET || call.method == Method::HEAD;
    match side {
        Side::Public => public_route(shared, call, &segments, get),
        Side::Admin => admin_route(shared, call, &segments, get),
    }
}

fn public_route(shared: &Shared, call: &RecordedCall, segments: &[&str], get: bool) -> Reply {
    let method = &call.method;
    match segments {
        ["health", "alive" | "ready"] if get => health(),
        ["health", "alive" | "ready"] => method_not_allowed("GET, HEAD"),
        ["sessions", "whoami"] => whoami(shared, call),
        ["sessions"] if get => list_my_sessions(shared, call),
        ["sessions"] if method == Method::DELETE => revoke_my_other_sessions(shared, call),
        ["sessions"] => method_not_allowed("DELETE, GET, HEAD"),
        ["sessions", id] if method == Method::DELETE => revoke_my_session(shared, call, id),
        ["sessions", _] => method_not_allowed("DELETE"),
        ["admin", ..] | ["identities", ..] | ["recovery", "link" | "code"] => {
            let rest = call.path().strip_prefix("/admin").unwrap_or(call.path());
            let mut location = format!("{}/admin{rest}", shared.admin_url);
            if let Some(q) = call.query() {
                location = format!("{location}?{q}");
            }
            redirect(307, &location, method)
        }
        _ => not_found(),
    }
}

fn admin_route(shared: &Shared, call: &RecordedCall, segments: &[&str], get: bool) -> Reply {
    let method = &call.method;
    let Some(("admin", segments)) = segments.split_first().map(|(a, b)| (*a, b)) else {
        return not_found();
    };
    match segments {
        ["health", "alive" | "ready"] if get => health(),
        ["health", "alive" | "ready"] => method_not_allowed("GET, HEAD"),
        ["sessions"] if get => admin_list_sessions(shared, call),
        ["sessions"] if method == Method::POST => admin_manage_sessions(shared, call),
        ["sessions"] => method_not_allowed("GET, HEAD, POST"),
        ["sessions", "whoami"] => {
            let mut location = format!("{}/sessions/whoami", shared.public_url);
            if let Some(q) = call.query() {
                location = format!("{location}?{q}");
            }
            redirect(307, &location, method)
        }
        ["sessions", id] if get => admin_get_session(shared, call, id),
        ["sessions", id] if method == Method::DELETE => admin_revoke_session(shared, id),
        ["sessions", _] => method_not_allowed("DELETE, GET, HEAD"),
        ["sessions", id, "extend"] if method == Method::PATCH => admin_extend_session(shared, id),
        ["sessions", _, "extend"] => method_not_allowed("PATCH"),
        ["identities"] if get => admin_list_identities(shared, call),
        ["identities"] => method_not_allowed("GET, HEAD"),
        ["identities", id] if get => admin_get_identity(shared, id),
        ["identities", id] if method == Method::PATCH => admin_patch_identity(shared, call, id),
        ["identities", _] => method_not_allowed("GET, HEAD, PATCH"),
        ["identities", id, "sessions"] if get => admin_identity_sessions(shared, call, id),
        ["identities", id, "sessions"] if method == Method::DELETE => {
            admin_delete_identity_sessions(shared, id)
        }
        ["identities", _, "sessions"] => method_not_allowed("DELETE, GET, HEAD"),
        _ => not_found(),
    }
}

/// Which parts of a session to render.
#[derive(Clone, Copy)]
struct View {
    identity: bool,
    devices: bool,
    admin: bool,
}

const PUBLIC_VIEW: View = View {
    identity: true,
    devices: true,
    admin: false,
};

fn render_session(inner: &Inner, entry: &SessionEntry, view: View) -> Json {
    let identity = inner.identity(entry.spec.identity_id);
    let email = identity.and_then(|i| i.email.as_deref());
    let mut session = fixtures::session_json(entry.spec.identity_id, entry.spec.session_id, email);
    let identity_active = identity.is_none_or(|i| i.active);
    // Kratos computes `active` at marshal time; the identity state only counts when loaded.
    let active = !entry.revoked && (!view.identity || identity_active);
    session.set("active", Json::Bool(active));
    if view.identity {
        if !identity_active {
            if let Some(identity) = session.get_mut("identity") {
                identity.set("state", Json::str("inactive"));
            }
        }
        if view.admin {
            fixtures::make_admin_session_view(&mut session);
        }
    } else {
        session.set("identity", Json::Null);
    }
    if !view.devices {
        session.set("devices", Json::Null);
    }
    session
}

fn render_identity(identity: &IdentityEntry) -> Json {
    let mut json = fixtures::identity_json(identity.id, Some(identity.effective_email()));
    if !identity.active {
        json.set("state", Json::str("inactive"));
    }
    json
}

enum Auth {
    /// No usable credential, or one the registry does not know.
    Missing,
    /// Index into `Inner::sessions`.
    Session(usize),
}

/// Kratos's credential order (`session/manager_http.go`).
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Auth {
    let by_token = |token: &str| {
        inner
            .sessions
            .iter()
            .position(|s| s.spec.token.as_deref() == Some(token))
            .map_or(Auth::Missing, Auth::Session)
    };
    if let Some(token) = headers
        .get("x-session-token")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|t| !t.is_empty())
    {
        return by_token(&token);
    }
    if let Some(value) = session_cookie_value(headers) {
        // A cookie "decodes" if the fake issued it, i.e. it is in the registry.
        if let Some(i) = inner
            .sessions
            .iter()
            .position(|s| s.spec.cookie.as_deref() == Some(value.as_str()))
        {
            return Auth::Session(i);
        }
    }
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let text = String::from_utf8_lossy(authorization.as_bytes());
        let parts: Vec<&str> = text.split(' ').collect();
        if let [scheme, token] = parts.as_slice() {
            if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
                return by_token(token);
            }
        }
    }
    Auth::Missing
}

/// The first `ory_kratos_session` cookie over all `Cookie` header fields.
fn session_cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().find_map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.trim_matches('"').to_owned())
    })
}

fn whoami_401() -> Reply {
    Reply::json(401, fixtures::WHOAMI_401_WIRE)
}

fn aal2_403() -> Reply {
    Reply::json(403, fixtures::whoami_403_aal2_body())
        .default_header("ory-error-id", "session_aal2_required")
}

fn whoami(shared: &Shared, call: &RecordedCall) -> Reply {
    let inner = shared.lock();
    let Auth::Session(index) = authenticate(&inner, &call.headers) else {
        return whoami_401();
    };
    let entry = &inner.sessions[index];
    if !inner.session_active(entry) {
        return whoami_401();
    }
    if entry.spec.aal2_pending {
        return aal2_403();
    }
    let mut session = render_session(&inner, entry, PUBLIC_VIEW);
    if call
        .query_param("tokenize_as")
        .is_some_and(|t| !t.is_empty())
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = fixtures::fake_jwt(
            entry.spec.identity_id,
            entry.spec.session_id,
            &format!("{}/", shared.public_url),
            now,
        );
        session.set("tokenized", Json::str(jwt));
    }
    Reply::json(200, session).default_header(
        "x-kratos-authenticated-identity-id",
        &entry.spec.identity_id.to_string(),
    )
}

/// Authenticates like `GET /sessions` & co.: the 401 has its own reason.
fn authenticate_for_sessions(inner: &Inner, call: &RecordedCall) -> Result<usize, Box<Reply>> {
    match authenticate(inner, &call.headers) {
        Auth::Session(index) if inner.session_active(&inner.sessions[index]) => {
            if inner.sessions[index].spec.aal2_pending {
                Err(Box::new(aal2_403()))
            } else {
                Ok(index)
            }
        }
        _ => Err(Box::new(Reply::json(401, fixtures::SESSIONS_401_WIRE))),
    }
}

fn list_my_sessions(shared: &Shared, call: &RecordedCall) -> Reply {
    let inner = shared.lock();
    let index = match authenticate_for_sessions(&inner, call) {
        Ok(index) => index,
        Err(reply) => return *reply,
    };
    let current = &inner.sessions[index].spec;
    let others: Vec<Json> = inner
        .sessions
        .iter()
        .filter(|s| {
            s.spec.identity_id == current.identity_id
                && s.spec.session_id != current.session_id
                && inner.session_active(s)
        })
        .map(|s| render_session(&inner, s, PUBLIC_VIEW))
        .collect();
    let count = others.len().to_string();
    Reply::json(200, Json::Array(others)).default_header("x-total-count", &count)
}

fn revoke_my_other_sessions(shared: &Shared, call: &RecordedCall) -> Reply {
    let mut inner = shared.lock();
    let index = match authenticate_for_sessions(&inner, call) {
        Ok(index) => index,
        Err(reply) => return *reply,
    };
    let current = inner.sessions[index].spec.clone();
    let mut count = 0;
    for s in inner.sessions.iter_mut() {
        if s.spec.identity_id == current.identity_id
            && s.spec.session_id != current.session_id
            && !s.revoked
        {
            s.revoked = true;
            count += 1;
        }
    }
    Reply::json(200, format!("{{\"count\":{count}}}\n"))
}

fn revoke_my_session(shared: &Shared, call: &RecordedCall, id: &str) -> Reply {
    let mut inner = shared.lock();
    let index = match authenticate_for_sessions(&inner, call) {
        Ok(index) => index,
        Err(reply) => return *reply,
    };
    let target = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let current = inner.sessions[index].spec.clone();
    if target == current.session_id {
        return Reply::kratos_error(400, None, None, "cannot revoke current session");
    }
    if let Some(entry) = inner.session_mut(target) {
        // Silently does nothing for other identities' sessions, like Kratos.
        if entry.spec.identity_id == current.identity_id {
            entry.revoked = true;
        }
    }
    Reply::empty(204)
}

/// Parses `expand=` values (case-insensitive); `Err` for unknown values.
fn parse_expand(call: &RecordedCall) -> Result<(bool, bool), Box<Reply>> {
    let mut identity = false;
    let mut devices = false;
    for value in call.query_params("expand") {
        match value.to_ascii_lowercase().as_str() {
            "identity" => identity = true,
            "devices" => devices = true,
            _ => {
                return Err(Box::new(Reply::kratos_error(
                    400,
                    None,
                    Some(&format!("Could not parse expand option: {value}")),
                    "The request was malformed or contained invalid parameters",
                )))
            }
        }
    }
    Ok((identity, devices))
}

fn admin_get_session(shared: &Shared, call: &RecordedCall, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let (identity, devices) = match parse_expand(call) {
        Ok(expand) => expand,
        Err(reply) => return *reply,
    };
    let inner = shared.lock();
    match inner.session(id) {
        Some(entry) => Reply::json(
            200,
            render_session(
                &inner,
                entry,
                View {
                    identity,
                    devices,
                    admin: true,
                },
            ),
        ),
        None => error_404(),
    }
}

fn admin_revoke_session(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let Some(entry) = inner.session_mut(id) else {
        return error_404();
    };
    entry.revoked = true;
    inner.ended.push((id, std::time::Instant::now()));
    Reply::empty(204)
}

fn admin_extend_session(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let Some(entry) = inner.session_mut(id) else {
        return error_404();
    };
    entry.extended += 1;
    let inner = &*inner;
    let entry = inner.session(id).expect("session found just above");
    Reply::json(200, render_session(inner, entry, PUBLIC_VIEW))
}

fn admin_list_sessions(shared: &Shared, call: &RecordedCall) -> Reply {
    let (identity, devices) = match parse_expand(call) {
        Ok(expand) => expand,
        Err(reply) => return *reply,
    };
    let active_filter = call.query_param("active").map(|v| v == "true");
    let inner = shared.lock();
    let view = View {
        identity,
        devices,
        admin: true,
    };
    let sessions: Vec<Json> = inner
        .sessions
        .iter()
        .filter(|s| active_filter.is_none_or(|want| inner.session_active(s) == want))
        .map(|s| render_session(&inner, s, view))
        .collect();
    Reply::json(200, Json::Array(sessions))
}

fn admin_manage_sessions(shared: &Shared, call: &RecordedCall) -> Reply {
    let bad_request = |reason: &str| {
        Reply::kratos_error(
            400,
            None,
            Some(reason),
            "The request was malformed or contained invalid parameters",
        )
    };
    let Some(body) = call.body_json() else {
        return bad_request("The request body is not valid JSON.");
    };
    let delete = match body.get("action").and_then(|a| a.as_str()) {
        Some("delete") => true,
        Some("disable") => false,
        _ => return bad_request("action must be one of \"disable\", \"delete\"."),
    };
    let ids = |key: &str| -> Option<Vec<String>> {
        body.get(key)?.as_array().map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
    };
    let (by_identity, list) = match (ids("identities"), ids("sessions")) {
        (Some(list), None) => (true, list),
        (None, Some(list)) => (false, list),
        _ => return bad_request("Exactly one of identities or sessions must be set."),
    };
    let all = list.iter().any(|v| v == "*");
    let mut wanted = Vec::new();
    for id in list.iter().filter(|v| *v != "*") {
        match parse_uuid(id) {
            Ok(id) => wanted.push(id),
            Err(reply) => return *reply,
        }
    }
    let mut inner = shared.lock();
    let selected = |s: &SessionEntry| {
        all || wanted.contains(if by_identity {
            &s.spec.identity_id
        } else {
            &s.spec.session_id
        })
    };
    let processed = inner.sessions.iter().filter(|s| selected(s)).count();
    if delete {
        inner.sessions.retain(|s| !selected(s));
    } else {
        for s in inner.sessions.iter_mut().filter(|s| selected(s)) {
            s.revoked = true;
        }
    }
    Reply::json(
        200,
        format!("{{\"processed\":{processed},\"more\":false}}\n"),
    )
}

fn admin_identity_sessions(shared: &Shared, call: &RecordedCall, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let active_filter = call.query_param("active").map(|v| v == "true");
    let inner = shared.lock();
    let view = View {
        identity: true,
        devices: true,
        admin: true,
    };
    let sessions: Vec<Json> = inner
        .sessions
        .iter()
        .filter(|s| s.spec.identity_id == id)
        .filter(|s| active_filter.is_none_or(|want| inner.session_active(s) == want))
        .map(|s| render_session(&inner, s, view))
        .collect();
    Reply::json(200, Json::Array(sessions))
}

fn admin_delete_identity_sessions(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let before = inner.sessions.len();
    let now = std::time::Instant::now();
    let gone: Vec<(Uuid, std::time::Instant)> = inner
        .sessions
        .iter()
        .filter(|s| s.spec.identity_id == id)
        .map(|s| (s.spec.session_id, now))
        .collect();
    inner.ended.extend(gone);
    inner.sessions.retain(|s| s.spec.identity_id != id);
    if inner.sessions.len() == before {
        Reply::json(
            404,
            fixtures::fixture_wire(
                "synthesized/admin-identity-sessions-delete-404-no-sessions.json",
            ),
        )
    } else {
        Reply::empty(204)
    }
}

fn admin_list_identities(shared: &Shared, call: &RecordedCall) -> Reply {
    let identifier = call.query_param("credentials_identifier");
    let inner = shared.lock();
    let identities: Vec<Json> = inner
        .identities
        .iter()
        .filter(|i| {
            identifier
                .as_deref()
                .is_none_or(|x| i.effective_email().eq_ignore_ascii_case(x))
        })
        .map(render_identity)
        .collect();
    Reply::json(200, Json::Array(identities))
}

fn admin_get_identity(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    match shared.lock().identity(id) {
        Some(identity) => Reply::json(200, render_identity(identity)),
        None => error_404(),
    }
}

/// Applies the `/state` operations of a JSON Patch; other operations are ignored.
fn admin_patch_identity(shared: &Shared, call: &RecordedCall, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let Some(serde_json::Value::Array(ops)) = call.body_json() else {
        return Reply::kratos_error(
            400,
            None,
            Some("The JSON Patch document is not a JSON array."),
            "The request was malformed or contained invalid parameters",
        );
    };
    let mut inner = shared.lock();
    let Some(identity) = inner.identity_mut(id) else {
        return error_404();
    };
    for op in &ops {
        let path = op.get("path").and_then(|p| p.as_str());
        let kind = op.get("op").and_then(|o| o.as_str());
        if path != Some("/state") || !matches!(kind, Some("replace" | "add")) {
            continue;
        }
        match op.get("value").and_then(|v| v.as_str()) {
            Some("active") => identity.active = true,
            Some("inactive") => identity.active = false,
            other => {
                return Reply::kratos_error(
                    400,
                    None,
                    None,
                    &format!(
                        "The supplied state ('{}') was not valid. Valid states are ('active', 'inactive').",
                        other.unwrap_or_default()
                    ),
                )
            }
        }
    }
    Reply::json(200, render_identity(identity))
}
