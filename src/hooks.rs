//! `POST /hooks/kratos`: a Kratos `web_hook` target that answers from the same blocklist
//! snapshot, so Kratos itself stops logins, registrations, recoveries and settings of listed
//! identities, even for traffic that does not pass the gateway (CONTRACT.md §9).
//!
//! Kratos sends what the hook's Jsonnet body renders; the shipped snippet sends
//! `{"identity": ctx.identity}`. A bare identity object is accepted too. A listed identity
//! gets 403 with a `messages` body that Kratos (with `response.parse: true`) shows in its
//! flow UI; anyone else gets 204, which lets the flow continue unchanged.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use crate::blocklist::store::BlocklistStore;
use crate::body::{collect_limited, empty_body, full_body, Body, CollectError};
use crate::decision::{self, AuditContext, Suspect};
use crate::inspection::identity_addresses;
use crate::metrics::Metrics;
use crate::util::{parse_uuid, unix_now};

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
            Some(i @ Value::Object(_)) => i,
            _ if payload.get("traits").is_some() || payload.get("id").is_some() => &payload,
            _ => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    "expected {\"identity\": {...}} (the identity from ctx.identity)\n",
                )
            }
        };
        self.decide(identity)
    }

    fn decide(&self, identity: &Value) -> Response<Body> {
        // The payload is Kratos's rendering of `ctx.identity`: its record of the identity.
        let suspect = Suspect {
            id: identity
                .get("id")
                .and_then(Value::as_str)
                .and_then(parse_uuid),
            addresses: Some(identity_addresses(identity, &self.email_traits).into()),
        };
        let verdict = decision::decide(
            &self.blocklist.snapshot(),
            std::slice::from_ref(&suspect),
            unix_now(),
            self.report_only,
        );
        if verdict.is_empty() {
            return empty(StatusCode::NO_CONTENT);
        }
        let report = !verdict.blocks();
        decision::audit(
            &self.metrics,
            &verdict,
            &AuditContext {
                kind: "hook",
                client_ip: None,
                request_id: "",
                method: "POST",
                path: HOOK_PATH,
                session_id: None,
                outcome: 403,
            },
        );
        if report {
            return empty(StatusCode::NO_CONTENT);
        }
        let body = serde_json::json!({
            "messages": [{
                "instance_ptr": "#/",
                "messages": [{
                    "id": 4010011,
                    "text": self.message,
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
    use super::constant_time_eq;

    #[test]
    fn secret_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
