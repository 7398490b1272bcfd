//! Routing like Go's `ServeMux` (or loosely, see [`FakeKratos::set_loose_routing`]), the
//! answers every route shares (404, 405, redirects, Kratos's id parsing), and the table of
//! built-in routes per listener.

use bytes::Bytes;
use http::{Method, StatusCode};
use uuid::Uuid;

use super::admin::{
    admin_delete_identity_sessions, admin_extend_session, admin_get_identity, admin_get_session,
    admin_list_identities, admin_revoke_session,
};
use super::public::{list_my_sessions, whoami};
use super::reply::ReplyBody;
use super::state::Shared;
#[cfg(doc)]
use super::FakeKratos;
use super::{RecordedCall, Reply, Side};
use crate::support::fixtures;

/// How a request path is routed.
pub(super) struct Route {
    side: Side,
    loose: bool,
    raw: String,
    /// Decoded segments of the (admin-prefixed) path; empty last segment = trailing slash.
    segments: Vec<String>,
    /// Go's 301 target when the path is not clean.
    redirect: Option<String>,
}

impl Route {
    pub(super) fn new(side: Side, raw_path: &str, loose: bool) -> Route {
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

    pub(super) fn matches_script(&self, script_path: &str) -> bool {
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

pub(super) fn query_values(query: Option<&str>, name: &str) -> Vec<String> {
    query
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .filter(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn not_found() -> Reply {
    Reply::text(404, "404 page not found\n").default_header("x-content-type-options", "nosniff")
}

pub(super) fn method_not_allowed(allow: &str) -> Reply {
    Reply::text(405, "Method Not Allowed\n")
        .default_header("x-content-type-options", "nosniff")
        .default_header("allow", allow)
}

pub(super) fn redirect(status: u16, location: &str, method: &Method) -> Reply {
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

/// A Kratos route the fake does not build in (see the module documentation).
fn not_built_in() -> Reply {
    Reply::text(
        501,
        "fake kratos: this Kratos route is not built in; script it with on_public/on_admin\n",
    )
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

pub(super) fn error_404() -> Reply {
    Reply::json(404, fixtures::error_404_body())
}

pub(super) fn parse_uuid(text: &str) -> Result<Uuid, Box<Reply>> {
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

pub(super) fn builtin(shared: &Shared, side: Side, call: &RecordedCall, route: &Route) -> Reply {
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
        ["sessions"] if method == Method::DELETE => not_built_in(),
        ["sessions"] => method_not_allowed("DELETE, GET, HEAD"),
        ["sessions", _] if method == Method::DELETE => not_built_in(),
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
        ["sessions"] if get || method == Method::POST => not_built_in(),
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
        ["identities", _] if method == Method::PATCH => not_built_in(),
        ["identities", _] => method_not_allowed("GET, HEAD, PATCH"),
        ["identities", _, "sessions"] if get => not_built_in(),
        ["identities", id, "sessions"] if method == Method::DELETE => {
            admin_delete_identity_sessions(shared, id)
        }
        ["identities", _, "sessions"] => method_not_allowed("DELETE, GET, HEAD"),
        _ => not_found(),
    }
}
