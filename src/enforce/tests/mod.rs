//! The policies' rules, each against a small fake Kratos on port 0: which positions count
//! as Kratos's word and the bounds on credentials, lookups and owners
//! (`attribution_rules.rs`), what the public policy reads, refuses and withholds
//! (`public_policy.rs`), the admin policy's extend check (`admin_policy.rs`), and what is
//! revoked (here).

mod admin_policy;
mod attribution_rules;
mod public_policy;

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use serde_json::{json, Value};
use tokio::sync::watch;
use uuid::Uuid;

use super::attribution::{self, credentials, Submission, MAX_CREDENTIALS, MAX_LOOKUPS, MAX_OWNERS};
use super::recovery::RecoveryAddresses;
use super::*;
use crate::blocklist::{Entry, Mode};
use crate::body::full_body;
use crate::decision::Hit;
use crate::headers::Peer;
use crate::inspection::{self, Findings, Submitted};
use crate::kratos::Credential;
use crate::metrics::Listener;
use crate::proxy::{Exchange, Policy, RequestId};
use crate::revocation::RevocationSettings;
use crate::testing::{self, reply, Seen, Server};

const LISTED: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
const OTHER: &str = "11111111-2222-4333-8444-555555555555";
const SESSION: &str = "8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b";
const SESSION_2: &str = "9e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b";
const SESSION_3: &str = "ae0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b";

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("uuid")
}

fn findings(body: Value) -> Findings {
    inspection::inspect_json(body.to_string().as_bytes()).expect("readable")
}

/// An enforcer whose Kratos (public and admin) is `kratos` and whose list is `blocklist`.
struct Fixture {
    enforcer: Arc<Enforcer>,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

async fn fixture(kratos: &Server, blocklist: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("blocklist.yaml");
    std::fs::write(&path, blocklist).expect("write");
    let mut config = testing::config(&kratos.url(), &kratos.url(), "");
    config.blocklist.path = path;
    let metrics = Arc::new(Metrics::new());
    let store = testing::blocklist_store(&config, Arc::clone(&metrics)).await;
    let client = testing::kratos_client(&config, None);
    let (stop, stop_rx) = watch::channel(false);
    let (revoker, _task) = crate::revocation::start(
        client.clone(),
        RevocationSettings {
            queue_capacity: 16,
            concurrency: 1,
            rate_per_second: 100,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(10),
            journal: None,
        },
        Arc::clone(&metrics),
        stop_rx,
    )
    .expect("revoker");
    let enforcer = Arc::new(Enforcer::new(
        &config,
        Arc::new(store),
        client,
        revoker,
        metrics,
    ));
    Fixture {
        enforcer,
        _dir: dir,
        _stop: stop,
    }
}

const LIST: &str = "identities:\n  - 5ff66179-c240-4703-b0d8-494592cefff5\n";
const LIST_WITH_ADDRESSES: &str =
    "identities:\n  - 5ff66179-c240-4703-b0d8-494592cefff5\nemails:\n  - listed@example.com\n";

/// A fake Kratos: a native login answer, whoami answering by token (or the cookie
/// `ory_kratos_session=listed`); the admin API knows `SESSION` (owned by `OTHER`),
/// `SESSION_2` (owned by `LISTED`) and `listed@example.com` (`LISTED`), and fails on
/// `SESSION_3`.
async fn kratos() -> Server {
    Server::start(|seen: &Seen| {
        let path = seen.uri.path();
        if path == "/self-service/login" {
            // A native login answer; `?who=listed` logs in the listed identity.
            let who = if seen.target().contains("who=listed") {
                LISTED
            } else {
                OTHER
            };
            let mut r = reply(
                200,
                &json!({"session_token": "ory_st_new", "session": {"id": SESSION_2, "identity": {"id": who}}})
                    .to_string(),
            );
            r.headers_mut()
                .append("set-cookie", "csrf_token=abc; Path=/".parse().expect("v"));
            return r;
        }
        if path == "/sessions/whoami" {
            // A browser presents the cookie `ory_kratos_session=listed`.
            let cookie = seen
                .headers
                .get("cookie")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let token = if cookie.contains("ory_kratos_session=listed") {
                "ory_st_listed"
            } else {
                seen.headers
                    .get("x-session-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
            };
            return match token {
                "ory_st_listed" => reply(
                    200,
                    &json!({"id": SESSION, "identity": {"id": LISTED}, "authenticated_at": "2026-01-01T00:00:00Z"})
                        .to_string(),
                ),
                "ory_st_other" => reply(
                    200,
                    &json!({"id": SESSION, "identity": {"id": OTHER}}).to_string(),
                ),
                "ory_st_aal1" => reply(
                    403,
                    &json!({"error": {"id": "session_aal2_required", "code": 403}}).to_string(),
                ),
                "ory_st_down" => reply(500, ""),
                _ => reply(401, ""),
            };
        }
        if path == format!("/admin/sessions/{SESSION}") {
            return reply(
                200,
                &json!({"id": SESSION, "identity": {"id": OTHER}}).to_string(),
            );
        }
        if path == format!("/admin/sessions/{SESSION_2}") && seen.method == http::Method::GET {
            return reply(
                200,
                &json!({"id": SESSION_2, "identity": {"id": LISTED}}).to_string(),
            );
        }
        if path == format!("/admin/sessions/{SESSION_3}") {
            return reply(500, "");
        }
        if path == "/admin/identities" {
            return if seen.target().contains("listed%40example.com") {
                reply(200, &json!([{"id": LISTED}]).to_string())
            } else {
                reply(200, "[]")
            };
        }
        if let Some(rest) = path.strip_prefix("/admin/identities/") {
            return reply(
                200,
                &json!({"id": rest, "traits": {"email": format!("{rest}@example.com")}})
                    .to_string(),
            );
        }
        reply(404, "")
    })
    .await
}

fn exchange(method: &str, target: &str) -> Exchange {
    Exchange {
        listener: Listener::Public,
        request_id: RequestId::given("req-1"),
        peer: Peer {
            ip: "192.0.2.1".parse().expect("ip"),
            trusted: false,
            tls: false,
        },
        method: method.parse().expect("method"),
        uri: target.parse().expect("uri"),
        upstream_status: Default::default(),
    }
}

/// The public policy; `login_body_limit`: `inspection.login_body_limit_bytes`.
fn public(f: &Fixture, login_body_limit: Option<usize>) -> PublicPolicy {
    let mut config = testing::config("http://127.0.0.1:1", "http://127.0.0.1:1", "");
    if let Some(limit) = login_body_limit {
        config.inspection.login_body_limit_bytes = limit;
    }
    PublicPolicy::new(&config, Arc::clone(&f.enforcer))
}

fn hit(identity: &str, mode: Mode) -> Hit {
    Hit {
        identity: Some(id(identity)),
        matched: "identity".to_owned(),
        entry: Entry {
            reason: None,
            until: None,
            line: 1,
            column: 1,
            mode,
            meta: None,
        },
    }
}

#[test]
fn the_sessions_kratos_named_are_revoked_else_every_session_of_each_listed_identity() {
    let verdict = Verdict {
        enforced: vec![hit(LISTED, Mode::Enforce)],
        reported: vec![hit(OTHER, Mode::Report)],
    };
    assert_eq!(
        revocations(&verdict, &[id(SESSION)]),
        [Target::Session(id(SESSION))]
    );
    // None named: the identity-wide revocation, for enforced hits only.
    assert_eq!(
        revocations(&verdict, &[]),
        [Target::IdentitySessions(id(LISTED))]
    );
    // More named than one answer may queue: the identity-wide revocation covers them.
    let named: Vec<Uuid> = (0..=MAX_REVOCATIONS as u128).map(Uuid::from_u128).collect();
    assert_eq!(
        revocations(&verdict, &named),
        [Target::IdentitySessions(id(LISTED))]
    );
    let named: Vec<Uuid> = (0..MAX_REVOCATIONS as u128).map(Uuid::from_u128).collect();
    assert_eq!(revocations(&verdict, &named).len(), MAX_REVOCATIONS);
    // Never more than MAX_REVOCATIONS, however many identities.
    let wide = Verdict {
        enforced: (0..10u128)
            .map(|i| Hit {
                identity: Some(Uuid::from_u128(i)),
                ..hit(LISTED, Mode::Enforce)
            })
            .collect(),
        reported: vec![],
    };
    assert_eq!(revocations(&wide, &[]).len(), MAX_REVOCATIONS);
}
