//! Scripted replies, built fluently ([`Reply`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::StatusCode;

use super::{RecordedCall, JSON_ERROR, JSON_UTF8};
#[cfg(doc)]
use super::{MAX_RECORDED_BODY, RECEIVED_BYTES_HEADER};
use crate::support::fixtures::Json;

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

pub(super) type ReplyFn = dyn Fn(&RecordedCall) -> Reply + Send + Sync;

#[derive(Clone)]
pub(super) enum ReplyBody {
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
    pub(super) status: StatusCode,
    pub(super) default_headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
    pub(super) body: ReplyBody,
    pub(super) delay: Option<Duration>,
    pub(super) gzip: bool,
    pub(super) chunk_interval: Option<Duration>,
    pub(super) known_length: bool,
    pub(super) times: Option<usize>,
    pub(super) break_after: Option<(usize, Duration)>,
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
    pub(super) fn base(status: u16, body: ReplyBody) -> Reply {
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

    pub(super) fn default_header(mut self, name: &str, value: &str) -> Reply {
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
    pub(super) fn resolve(self, call: &RecordedCall) -> Reply {
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
