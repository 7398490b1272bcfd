//! The request-phase check of the public listener for `networks:` entries: a request from a
//! listed network (its client address as `forwarding.trusted_proxies` lets the gateway
//! believe it, see [`crate::networks::client_address`]) that would start, continue or use a
//! session is answered by the gateway and never reaches Kratos:
//!
//! - every self-service flow (`/self-service/…`: init and submit of login, registration,
//!   recovery, verification and settings, OIDC callbacks) and the token exchange get 403
//!   `network_blocked` ([`respond::network_blocked`]); logout and the error page pass, since
//!   they grant nothing;
//! - session checks (`/sessions/whoami`, `/sessions…`) get Kratos's own "no session" 401.
//!
//! The path is read as a lax router reads it ([`paths::canonical_path`]), so no spelling of
//! it slips past. In report mode (the entry's or the whole list's) the decision is audited
//! and counted and the request goes on.

use http::{header, HeaderMap, Response, StatusCode};

use super::Enforcer;
use crate::body::Body;
use crate::decision;
use crate::networks::client_address;
use crate::paths;
use crate::proxy::Exchange;
use crate::respond;
use crate::util::unix_now;

/// What a listed network gets on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// 403 `network_blocked`.
    Forbidden,
    /// Kratos's 401 for "no session", byte for byte.
    SignedOut(&'static str),
}

/// The kind of request (for the audit) and the answer a listed network gets, or `None` for
/// paths a listed network may use.
fn refusal_for(raw_path: &str) -> Option<(&'static str, Refusal)> {
    let p = paths::canonical_path(raw_path);
    let under = |prefix: &str| {
        p.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if under("/sessions/whoami") {
        Some(("whoami", Refusal::SignedOut(respond::WHOAMI_401)))
    } else if under("/sessions/token-exchange") {
        Some(("token_exchange", Refusal::Forbidden))
    } else if under("/sessions") {
        Some(("sessions", Refusal::SignedOut(respond::SESSIONS_401)))
    } else if under("/self-service/logout") || under("/self-service/errors") {
        None
    } else if under("/self-service") {
        let kind = match paths::request_kind(raw_path) {
            "other" => "self_service",
            kind => kind,
        };
        Some((kind, Refusal::Forbidden))
    } else {
        None
    }
}

/// True for a browser navigation or form post: it accepts HTML and not JSON. API clients,
/// SPAs (`Accept: application/json`) and clients that send no `Accept` get JSON.
fn is_browser(headers: &HeaderMap) -> bool {
    let mut html = false;
    for v in headers.get_all(header::ACCEPT) {
        let v = v.to_str().unwrap_or_default().to_ascii_lowercase();
        if v.contains("application/json") {
            return false;
        }
        html |= v.contains("text/html");
    }
    html
}

/// The refusal of a request from a listed network on the paths above; `None` lets it go on.
/// Costs nothing beyond a length check while the list has no networks.
pub(super) fn check(
    enforcer: &Enforcer,
    exchange: &Exchange,
    headers: &HeaderMap,
) -> Option<Response<Body>> {
    let list = enforcer.blocklist.snapshot();
    if list.networks().is_empty() {
        return None;
    }
    let (kind, refusal) = refusal_for(exchange.path())?;
    let client = client_address(exchange.peer.ip, headers, &enforcer.trusted_proxies);
    let verdict = decision::decide_network(&list, client, unix_now(), enforcer.report_only);
    if verdict.is_empty() {
        return None;
    }
    let answer = match refusal {
        Refusal::Forbidden => {
            respond::network_blocked(is_browser(headers), Some(exchange.request_id.as_str()))
        }
        Refusal::SignedOut(body) => respond::signed_out(body, None),
    };
    let status: StatusCode = answer.status();
    decision::audit(
        &enforcer.metrics,
        &verdict,
        &decision::AuditContext {
            kind,
            client_ip: Some(client),
            request_id: exchange.request_id.as_str(),
            method: exchange.method.as_str(),
            path: exchange.path(),
            session_id: None,
            outcome: status.as_u16(),
        },
    );
    verdict.blocks().then_some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flow_and_session_path_is_refused_in_every_spelling() {
        for (path, kind) in [
            ("/self-service/login/browser", "login"),
            ("/self-service/login/api", "login"),
            ("/self-service/login?flow=x", "login"),
            ("//Self-Service/%6cogin", "login"),
            ("/self-service/methods/oidc/callback/google", "login"),
            ("/self-service/registration", "registration"),
            ("/self-service/recovery/api", "recovery"),
            ("/self-service/verification/browser", "verification"),
            ("/self-service/settings", "settings"),
            ("/self-service/fed-cm/token", "self_service"),
            ("/x/../self-service/login", "login"),
            ("/sessions/token-exchange", "token_exchange"),
        ] {
            let path = path.split('?').next().unwrap_or_default();
            assert_eq!(
                refusal_for(path),
                Some((kind, Refusal::Forbidden)),
                "{path}"
            );
        }
        for path in [
            "/sessions/whoami",
            "/sessions/%77hoami/",
            "//sessions/whoami",
        ] {
            assert_eq!(
                refusal_for(path),
                Some(("whoami", Refusal::SignedOut(respond::WHOAMI_401))),
                "{path}"
            );
        }
        for path in [
            "/sessions",
            "/sessions/5ff66179-c240-4703-b0d8-494592cefff5",
        ] {
            assert_eq!(
                refusal_for(path),
                Some(("sessions", Refusal::SignedOut(respond::SESSIONS_401))),
                "{path}"
            );
        }
    }

    #[test]
    fn paths_that_grant_nothing_pass() {
        for path in [
            "/",
            "/self-service/logout",
            "/self-service/logout/api",
            "/self-service/errors",
            "/self-servicex/login",
            "/sessionsx",
            "/.well-known/ory/webauthn.js",
            "/schemas/default",
            "/health/ready",
        ] {
            assert_eq!(refusal_for(path), None, "{path}");
        }
    }

    #[test]
    fn browsers_are_told_apart_from_api_clients() {
        let h = |accept: &[&str]| {
            let mut m = HeaderMap::new();
            for a in accept {
                m.append(header::ACCEPT, a.parse().expect("value"));
            }
            m
        };
        assert!(is_browser(&h(&[
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        ])));
        assert!(!is_browser(&h(&["application/json"])));
        assert!(!is_browser(&h(&["text/html", "application/json"])));
        assert!(!is_browser(&h(&[])));
        assert!(!is_browser(&h(&["*/*"])));
    }
}
