//! `POST /hooks/kratos`: a Kratos `web_hook` target that answers from the same blocklist
//! snapshot, so Kratos itself stops logins, registrations, recoveries and settings of listed
//! identities, even for traffic that does not pass the gateway (CONTRACT.md §9).
//!
//! Kratos sends what the hook's Jsonnet body renders; the shipped snippet sends
//! `{"identity": ctx.identity}`. A bare identity object is accepted too. A listed identity
//! gets 403 with a `messages` body that Kratos (with `response.parse: true`) shows in its
//! flow UI; anyone else gets 204, which lets the flow continue unchanged.
//!
//! Kratos does not tell a web hook the client's address as such: it passes the request
//! headers on its `webhook_header_allowlist` (`ctx.request_headers`, by default with
//! `True-Client-Ip` and without `X-Forwarded-For`). A body with `client_ip` (a string, or
//! the header's list of values: the first counts; `null` or absent: none), rendered from
//! such a header, is matched against the `networks` entries as well, also without an
//! identity (`before` hooks). It can only refuse the flow it came with.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::blocklist::store::BlocklistStore;
use crate::body::{collect_limited, empty_body, full_body, Body, CollectError};
use crate::decision::{self, AuditContext, Suspect, Verdict};
use crate::inspection::identity_addresses;
use crate::metrics::Metrics;
use crate::networks::parse_forwarded_element;
use crate::util::{parse_uuid, unix_now};

/// The text Kratos shows for a flow refused because of the client's network.
pub const NETWORK_MESSAGE: &str = "Requests from your network are not allowed.";

pub const HOOK_PATH: &str = "/hooks/kratos";
const BODY_LIMIT: usize = 1024 * 1024;

pub struct HookEndpoint {
    pub blocklist: Arc<BlocklistStore>,
    pub metrics: Arc<Metrics>,
    pub email_traits: Vec<String>,
    pub secret_header: http::HeaderName,
    pub secret: Option<String>,
    pub message: String,
    pub report_only: bool,
}

impl HookEndpoint {
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != HOOK_PATH {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        if req.method() != Method::POST {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "use POST\n");
        }
        if let Some(secret) = &self.secret {
            let given = req
                .headers()
                .get(&self.secret_header)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !constant_time_eq(given, secret.as_bytes()) {
                tracing::warn!(header = %self.secret_header, "web hook call without the right shared secret");
                return plain(StatusCode::UNAUTHORIZED, "missing or wrong shared secret\n");
            }
        }
        let body = match collect_limited(req.into_body(), BODY_LIMIT).await {
            Ok(b) => b,
            Err(CollectError::TooLarge) => {
                return plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large\n")
            }
            Err(CollectError::Body(_)) => {
                return plain(StatusCode::BAD_REQUEST, "body could not be read\n")
            }
        };
        let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
            return plain(StatusCode::BAD_REQUEST, "body is not JSON\n");
        };
        let identity = match payload.get("identity") {
            Some(i @ Value::Object(_)) => Some(i),
            _ if payload.get("traits").is_some() || payload.get("id").is_some() => Some(&payload),
            _ => None,
        };
        let client = client_ip_of(&payload);
        if identity.is_none() && client.is_none() {
            return plain(
                StatusCode::BAD_REQUEST,
                "expected {\"identity\": {...}} (the identity from ctx.identity) or a \"client_ip\"\n",
            );
        }
        self.decide(identity, client)
    }

    fn decide(&self, identity: Option<&Value>, client: Option<IpAddr>) -> Response<Body> {
        let list = self.blocklist.snapshot();
        let now = unix_now();
        // The payload is Kratos's rendering of `ctx.identity`: its record of the identity.
        let by_identity = identity.map_or_else(Verdict::default, |identity| {
            let suspect = Suspect {
                id: identity
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(parse_uuid),
                addresses: Some(identity_addresses(identity, &self.email_traits).into()),
            };
            decision::decide(&list, std::slice::from_ref(&suspect), now, self.report_only)
        });
        let by_network = client.map_or_else(Verdict::default, |ip| {
            decision::decide_network(&list, ip, now, self.report_only)
        });
        if by_identity.is_empty() && by_network.is_empty() {
            return empty(StatusCode::NO_CONTENT);
        }
        for verdict in [&by_identity, &by_network] {
            decision::audit(
                &self.metrics,
                verdict,
                &AuditContext {
                    kind: "hook",
                    client_ip: client,
                    request_id: "",
                    method: "POST",
                    path: HOOK_PATH,
                    session_id: None,
                    outcome: 403,
                },
            );
        }
        let text = if by_identity.blocks() {
            self.message.as_str()
        } else if by_network.blocks() {
            NETWORK_MESSAGE
        } else {
            return empty(StatusCode::NO_CONTENT);
        };
        let body = serde_json::json!({
            "messages": [{
                "instance_ptr": "#/",
                "messages": [{
                    "id": 4010011,
                    "text": text,
                    "type": "error",
                    "context": {}
                }]
            }]
        });
        let mut resp = Response::new(full_body(Bytes::from(body.to_string())));
        *resp.status_mut() = StatusCode::FORBIDDEN;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

/// `client_ip` of a hook body: a string, or a list of strings (a header's values as Kratos
/// renders `ctx.request_headers`) of which the first counts. Ports and brackets are
/// dropped; IPv4-mapped IPv6 is IPv4. Anything else is no address.
fn client_ip_of(payload: &Value) -> Option<IpAddr> {
    let text = match payload.get("client_ip")? {
        Value::String(s) => s.as_str(),
        Value::Array(values) => values.first()?.as_str()?,
        _ => return None,
    };
    parse_forwarded_element(text.trim()).map(|ip| ip.to_canonical())
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty_body());
    *r.status_mut() = status;
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full_body(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Compares secrets without revealing through timing how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::{client_ip_of, constant_time_eq};

    #[test]
    fn client_ip_is_read_from_a_string_or_a_header_list() {
        let ip = |v: serde_json::Value| client_ip_of(&serde_json::json!({ "client_ip": v }));
        assert_eq!(ip("192.0.2.7".into()), "192.0.2.7".parse().ok());
        assert_eq!(ip(" 192.0.2.7:4711 ".into()), "192.0.2.7".parse().ok());
        assert_eq!(ip("::ffff:192.0.2.7".into()), "192.0.2.7".parse().ok());
        assert_eq!(ip("[2001:db8::1]:443".into()), "2001:db8::1".parse().ok());
        assert_eq!(
            ip(serde_json::json!(["2001:db8::1", "192.0.2.7"])),
            "2001:db8::1".parse().ok()
        );
        for none in [
            serde_json::json!(null),
            serde_json::json!([]),
            serde_json::json!("unknown"),
            serde_json::json!(42),
            serde_json::json!("192.0.2.7, 198.51.100.1"),
        ] {
            assert_eq!(ip(none.clone()), None, "{none}");
        }
        assert_eq!(client_ip_of(&serde_json::json!({})), None);
    }

    #[test]
    fn secret_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
