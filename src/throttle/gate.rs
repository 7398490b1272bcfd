//! Throttling at the public listener: which submissions are checked, how Kratos's answer is
//! read as a failure or a success, and the answers the gateway gives itself. The public policy
//! calls [`Gate::check`] once it has read a submission and [`Gate::settle`] on the answer.
//!
//! - Every `POST`/`PUT`/`PATCH` to a self-service flow (login, registration, recovery,
//!   verification, settings) counts against its network's rate.
//! - A password or code login counts an attempt per identifier, identifier and network, and
//!   network. Kratos's answer decides what it was: the "credentials invalid" message (4000006)
//!   or a wrong login code (4010008) is a failure, and so is a browser form login sent back to
//!   its form without a session; a session (2xx, or the session cookie set) is a success;
//!   anything else is given back.
//! - A recovery or verification code counts per the address the flow's code was sent to
//!   (remembered from the flow's first step) and per network; 4060006 and 4070006 are failures.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Response, Uri};
use http_body_util::BodyExt;
use ipnet::IpNet;
use serde::Deserialize;

use super::{Flow, Outcome, Pending, Submission, Throttle, Verdict};
use crate::body::{self, Body};
use crate::config::Config;
use crate::error::GatewayError;
use crate::inspection::Submitted;
use crate::proxy::Exchange;
use crate::respond;

/// Kratos's UI message ids that mean a wrong secret (CONTRACT.md §8; Kratos `text/id.go`).
const INVALID_CREDENTIALS: i64 = 4_000_006;
const LOGIN_CODE_INVALID: i64 = 4_010_008;
const RECOVERY_CODE_INVALID: i64 = 4_060_006;
const VERIFICATION_CODE_INVALID: i64 = 4_070_006;

/// The most of Kratos's answer read to find its messages (a flow is a few KiB).
const ANSWER_LIMIT: usize = 256 * 1024;

/// The public listener's throttling.
pub struct Gate {
    throttle: Arc<Throttle>,
    trusted: Vec<IpNet>,
    session_cookie: String,
    answer_timeout: Duration,
}

/// A submission let through: what its answer is matched against.
#[derive(Debug)]
pub struct Ticket {
    flow: Flow,
    identifier: Option<String>,
    client: IpAddr,
    pending: Pending,
    /// A form post without JSON: Kratos answers it with redirects, not flow JSON.
    browser: bool,
    /// A password or a code was submitted (not a login code's first step, which only asks
    /// Kratos to send one).
    secret_sent: bool,
}

impl Gate {
    pub fn new(config: &Config, throttle: Arc<Throttle>) -> Gate {
        Gate {
            throttle,
            trusted: config.forwarding.trusted_proxies.clone(),
            session_cookie: config.inspection.session_cookie.clone(),
            answer_timeout: config.upstream.response_timeout.get(),
        }
    }

    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }

    /// Request phase, after the submission was read (`fields`: what it names; `method`: its
    /// `method` field, [`submitted_method`]). `Ok(None)`: not a submission the throttle
    /// looks at; `Err`: the answer (429, or 503 when the store is down and fails closed).
    pub async fn check(
        &self,
        exchange: &Exchange,
        headers: &HeaderMap,
        uri: &Uri,
        fields: Option<&Submitted>,
        unreadable: bool,
    ) -> Result<Option<Ticket>, Response<Body>> {
        if !matches!(exchange.method, Method::POST | Method::PUT | Method::PATCH) {
            return Ok(None);
        }
        let flow = match crate::paths::request_kind(exchange.path()) {
            "login" => Flow::Login,
            "registration" => Flow::Registration,
            "recovery" => Flow::Recovery,
            "verification" => Flow::Verification,
            "settings" => Flow::Settings,
            _ => return Ok(None),
        };
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let json = |v: Option<&str>| v.is_some_and(|v| v.to_ascii_lowercase().contains("json"));
        let browser =
            !json(content_type) && !json(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
        // A login, recovery or verification submission the gateway cannot read as Kratos
        // reads it (over `inspection.login_body_limit_bytes`, or a field it cannot take)
        // may still be an attempt Kratos makes; unread it would be counted against nobody.
        if unreadable && matches!(flow, Flow::Login | Flow::Recovery | Flow::Verification) {
            tracing::info!(
                request_id = %exchange.request_id,
                client_ip = %exchange.peer.ip,
                path = %exchange.path(),
                "self-service submission refused: unreadable while throttling"
            );
            return Err(GatewayError::BadRequest(
                "The request body is too large or could not be read.",
            )
            .into_response(Some(exchange.request_id.as_str())));
        }
        let method = fields.and_then(|f| f.method.as_deref());
        let flow_id = crate::paths::flow_id(uri);
        let has_code = fields.is_some_and(|f| f.has_code);
        let secret_sent = method == Some("password") || has_code;
        let (identifier, counted) = match flow {
            Flow::Login => {
                let by_secret = matches!(method, Some("password" | "code"));
                let mut identifier = fields.and_then(|f| f.identifier.clone());
                if method == Some("code") {
                    match (flow_id, &identifier, has_code) {
                        (Some(id), Some(i), false) => self.throttle.remember_address(id, i),
                        (Some(id), None, true) => {
                            identifier = self.throttle.address_of(id).map(|a| a.to_string());
                        }
                        _ => {}
                    }
                }
                (identifier.filter(|_| by_secret), by_secret)
            }
            Flow::Recovery | Flow::Verification => {
                let email = fields.and_then(|f| f.email.as_deref());
                if let (Some(id), Some(e), false) = (flow_id, email, has_code) {
                    self.throttle.remember_address(id, e);
                }
                let address = if has_code {
                    flow_id
                        .and_then(|id| self.throttle.address_of(id))
                        .map(|a| a.to_string())
                        .or_else(|| email.map(str::to_owned))
                } else {
                    None
                };
                (address, has_code)
            }
            _ => (None, false),
        };
        let client = crate::networks::client_address(exchange.peer.ip, headers, &self.trusted);
        let submission = Submission {
            flow,
            identifier: identifier.as_deref(),
            client,
            tries_secret: counted,
        };
        let request_id = exchange.request_id.as_str();
        match self.throttle.check(&submission, request_id).await {
            Verdict::Pass(pending) => Ok(counted.then_some(Ticket {
                flow,
                identifier,
                client,
                pending,
                browser,
                secret_sent,
            })),
            Verdict::Throttled { retry_after, .. } => {
                Err(respond::throttled(browser, retry_after, Some(request_id)))
            }
            Verdict::Unavailable => Err(respond::throttle_unavailable(browser, Some(request_id))),
        }
    }

    /// Response phase: reads Kratos's answer for what it says about the attempt and reports
    /// it; the answer goes on unchanged.
    pub async fn settle(
        &self,
        exchange: &Exchange,
        ticket: Ticket,
        answer: Response<Body>,
    ) -> Response<Body> {
        let status = exchange
            .upstream_status
            .get()
            .copied()
            .unwrap_or_else(|| answer.status());
        let sets_session = answer
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .any(|v| crate::headers::sets_session_cookie(v, &self.session_cookie));
        let wrong_secret: &[i64] = match ticket.flow {
            Flow::Login => &[INVALID_CREDENTIALS, LOGIN_CODE_INVALID],
            Flow::Recovery => &[RECOVERY_CODE_INVALID],
            Flow::Verification => &[VERIFICATION_CODE_INVALID],
            _ => &[],
        };
        let login = ticket.flow == Flow::Login;
        let (outcome, answer) = if login && sets_session {
            (Outcome::Success, answer)
        } else if login && ticket.browser && status.is_redirection() {
            // Kratos sends a browser back to its form with the error out of sight; a code
            // login's first step is sent on to the code form the same way.
            let outcome = if ticket.secret_sent {
                Outcome::Failure
            } else {
                Outcome::Other
            };
            (outcome, answer)
        } else if is_json(answer.headers()) {
            match self.read_answer(answer).await {
                // Kratos's error answer to an attempt is a few KiB; a larger one is mostly
                // echoed input, and does not get the attempt given back. (A wrong secret is
                // never a 2xx: a large 2xx, a session with big traits, is not a failure.)
                Ok((None, answer)) => {
                    let outcome = if status.is_success() {
                        Outcome::Other
                    } else {
                        Outcome::Failure
                    };
                    (outcome, answer)
                }
                Ok((Some(read), answer)) => {
                    let outcome = if login && status.is_success() && read.session {
                        Outcome::Success
                    } else if read.ids.iter().any(|id| wrong_secret.contains(id)) {
                        Outcome::Failure
                    } else {
                        Outcome::Other
                    };
                    (outcome, answer)
                }
                Err(e) => (
                    Outcome::Failure,
                    e.into_response(Some(exchange.request_id.as_str())),
                ),
            }
        } else {
            (Outcome::Other, answer)
        };
        let submission = Submission {
            flow: ticket.flow,
            identifier: ticket.identifier.as_deref(),
            client: ticket.client,
            tries_secret: true,
        };
        self.throttle
            .settle(
                &submission,
                ticket.pending,
                outcome,
                exchange.request_id.as_str(),
            )
            .await;
        answer
    }

    /// What a JSON answer says ([`read_answer_body`]), and the answer to forward (what was
    /// read, then the rest). Bodies over [`ANSWER_LIMIT`] are not read (`None`).
    async fn read_answer(
        &self,
        answer: Response<Body>,
    ) -> Result<(Option<Said>, Response<Body>), GatewayError> {
        let (parts, body) = answer.into_parts();
        let read =
            tokio::time::timeout(self.answer_timeout, body::copy_if_small(body, ANSWER_LIMIT))
                .await
                .map_err(|_| GatewayError::UpstreamTimeout(self.answer_timeout))?
                .map_err(|e| GatewayError::UpstreamBroken(e.to_string()))?;
        let (copy, replay) = read;
        let said = copy.as_deref().map(read_answer_body);
        Ok((said, Response::from_parts(parts, replay.boxed())))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"))
        && headers.get(header::CONTENT_ENCODING).is_none()
}

/// What Kratos's JSON answer says about an attempt.
#[derive(Debug, Default, PartialEq, Eq)]
struct Said {
    /// UI message ids at the positions Kratos writes them in a flow (`ui.messages[].id`,
    /// `ui.nodes[].messages[].id`; a submission echoed into `ui.nodes[].attributes.value` or
    /// `transient_payload` is not among them).
    ids: Vec<i64>,
    /// A login's answer with a session: top-level `session_token` or `session`.
    session: bool,
}

fn read_answer_body(body: &[u8]) -> Said {
    use serde::de::IgnoredAny;
    #[derive(Deserialize)]
    struct Answer {
        ui: Option<Ui>,
        session_token: Option<IgnoredAny>,
        session: Option<IgnoredAny>,
    }
    #[derive(Deserialize)]
    struct Ui {
        #[serde(default)]
        messages: Vec<Message>,
        #[serde(default)]
        nodes: Vec<Node>,
    }
    #[derive(Deserialize)]
    struct Node {
        #[serde(default)]
        messages: Vec<Message>,
    }
    #[derive(Deserialize)]
    struct Message {
        id: Option<i64>,
    }
    let Ok(answer) = serde_json::from_slice::<Answer>(body) else {
        return Said::default();
    };
    let ids = answer
        .ui
        .map(|ui| {
            ui.messages
                .iter()
                .chain(ui.nodes.iter().flat_map(|n| n.messages.iter()))
                .filter_map(|m| m.id)
                .collect()
        })
        .unwrap_or_default();
    Said {
        ids,
        session: answer.session_token.is_some() || answer.session.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn messages_and_sessions_are_read_only_where_kratos_writes_them() {
        let body = br#"{"id":"f","ui":{"nodes":[{"attributes":{"name":"identifier","value":"{\"id\":4000006}"},"messages":[]},{"messages":[{"id":4010008,"type":"error"}]}],"messages":[{"id":4000006,"text":"The provided credentials are invalid","type":"error"}]},"transient_payload":{"ui":{"messages":[{"id":4060006}]},"session_token":"x"}}"#;
        let said = read_answer_body(body);
        assert_eq!(said.ids, vec![4000006, 4010008]);
        assert!(!said.session, "an echoed session_token is not Kratos's");
        let echo = read_answer_body(br#"{"transient_payload":{"id":4000006}}"#);
        assert_eq!(echo, Said::default());
        assert_eq!(read_answer_body(b"not json"), Said::default());
        let login = read_answer_body(br#"{"session_token":"ory_st_x","session":{"id":"s"}}"#);
        assert!(login.session);
        let code_sent = read_answer_body(
            br#"{"id":"f","state":"sent_email","ui":{"messages":[{"id":1010014}]}}"#,
        );
        assert!(!code_sent.session, "a code sent is not a session");
    }

    #[test]
    fn only_a_session_cookie_with_a_value_is_a_session() {
        let sets_cookie = |line: &'static str, name: &str| {
            crate::headers::sets_session_cookie(&http::HeaderValue::from_static(line), name)
        };
        assert!(sets_cookie(
            "ory_kratos_session=MTY; Path=/; HttpOnly",
            "ory_kratos_session"
        ));
        assert!(!sets_cookie(
            "ory_kratos_session=; Max-Age=0",
            "ory_kratos_session"
        ));
        assert!(!sets_cookie("csrf_token_x=abc", "ory_kratos_session"));
        assert!(!sets_cookie(
            "ory_kratos_session_other=abc",
            "ory_kratos_session"
        ));
    }

    #[test]
    fn flow_ids_come_from_the_query() {
        let id = "6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f";
        let uri: Uri = format!("/self-service/recovery?x=1&flow={id}")
            .parse()
            .expect("uri");
        assert_eq!(
            crate::paths::flow_id(&uri),
            Some(Uuid::parse_str(id).expect("uuid"))
        );
    }
}
