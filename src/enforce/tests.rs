//! The policies' rules, each against a small fake Kratos on port 0: which positions count as
//! Kratos's word, the bounds on credentials, lookups and owners, what is revoked, and what
//! the public request phase reads and refuses.

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

fn no_submission() -> Submission {
    Submission::NotRead
}

async fn attribute(
    f: &Fixture,
    submission: &Submission,
    body: Value,
    cookies: &[&str],
) -> Result<attribution::Attribution, GatewayError> {
    let recovery = RecoveryAddresses::new(10, Duration::from_secs(60));
    let request = attribution::Request {
        submission,
        recovery_flow: None,
        recovery_addresses: &recovery,
    };
    let cookies: Vec<String> = cookies.iter().map(|c| (*c).to_owned()).collect();
    attribution::attribute(&f.enforcer, &request, &findings(body), &cookies).await
}

fn suspects(a: &attribution::Attribution) -> Vec<Uuid> {
    a.suspects.iter().filter_map(|s| s.id).collect()
}

#[tokio::test]
async fn a_token_at_an_authored_position_is_vouched_for_by_the_body_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_unknown", "session": {"id": SESSION_2, "identity": {"id": LISTED}}}),
        &["ory_kratos_session=abc"],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);
    assert_eq!(a.sessions, [id(SESSION_2)]);
    assert!(k.seen().is_empty(), "{:?}", k.seen());
}

#[tokio::test]
async fn an_echoed_identity_is_no_evidence_and_the_token_is_asked_about() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    // The client wrote the identity into transient_payload; Kratos's word is whoami's.
    let a = attribute(
        &f,
        &no_submission(),
        json!({
            "transient_payload": {"identity": {"id": OTHER}, "session": {"id": SESSION, "identity": {"id": OTHER}}},
            "continue_with": [{"action": "set_ory_session_token", "ory_session_token": "ory_st_listed"}]
        }),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);
    assert!(a.sessions.is_empty(), "an echoed session is not revoked");
    let seen = k.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target(), "/sessions/whoami");
}

#[tokio::test]
async fn a_token_outside_the_authored_positions_is_asked_about_even_when_the_body_names_someone() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "transient_payload": {"session_token": "ory_st_listed"}}),
        &[],
    )
    .await
    .expect("attributed");
    let mut got = suspects(&a);
    got.sort();
    assert_eq!(got, [id(OTHER), id(LISTED)]);
}

#[tokio::test]
async fn more_distinct_credentials_than_kratos_hands_out_are_refused_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let e = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_a", "transient_payload": {"session_token": "ory_st_b"}}),
        &["ory_kratos_session=c"],
    )
    .await
    .expect_err("three credentials");
    assert!(matches!(e, GatewayError::TooManyCredentials(n) if n > MAX_CREDENTIALS));
    assert!(k.seen().is_empty());
}

#[test]
fn credentials_are_counted_once_each_and_a_cookie_set_by_kratos_is_authored() {
    let f = findings(
        json!({"session_token": "ory_st_a", "continue_with": [{"ory_session_token": "ory_st_a"}]}),
    );
    let c = credentials(
        &f,
        &[
            "ory_kratos_session=x".to_owned(),
            "ory_kratos_session=x".to_owned(),
        ],
    )
    .expect("two");
    assert_eq!(
        c,
        [
            (Credential::Token("ory_st_a".to_owned()), true),
            (Credential::Cookie("ory_kratos_session=x".to_owned()), true)
        ]
    );
    // More tokens than the reader keeps is too many, whatever was kept.
    let many: Vec<Value> = (0..10)
        .map(|i| json!({ "session_token": format!("ory_st_{i}") }))
        .collect();
    let f = findings(json!({ "transient_payload": many }));
    assert!(f.too_many_tokens);
    assert!(matches!(
        credentials(&f, &[]),
        Err(GatewayError::TooManyCredentials(_))
    ));
}

#[tokio::test]
async fn a_session_without_its_identity_is_attributed_by_the_admin_api() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_x", "session": {"id": SESSION, "identity": null}}),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(OTHER)]);
    let targets: Vec<String> = k.seen().iter().map(Seen::target).collect();
    assert_eq!(
        targets,
        [format!("/admin/sessions/{SESSION}?expand=identity")]
    );
}

#[tokio::test]
async fn more_unexpanded_sessions_than_lookups_allowed_are_refused_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let sessions: Vec<Value> = [SESSION, SESSION_2, SESSION_3]
        .iter()
        .map(|s| json!({"id": s, "identity": null, "authenticated_at": "2026-01-01T00:00:00Z"}))
        .collect();
    assert!(sessions.len() > MAX_LOOKUPS);
    let e = attribute(&f, &no_submission(), Value::Array(sessions), &[])
        .await
        .expect_err("too many lookups");
    assert!(matches!(e, GatewayError::TooManyCredentials(3)));
    assert!(k.seen().is_empty());
}

#[tokio::test]
async fn whoami_trouble_fails_closed_and_401_grants_nothing() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let e = attribute(
        &f,
        &no_submission(),
        json!({"continue_with": [{"ory_session_token": "ory_st_down"}]}),
        &[],
    )
    .await
    .expect_err("whoami 500");
    assert!(matches!(e, GatewayError::AttributionUnavailable(_)));
    let a = attribute(
        &f,
        &no_submission(),
        json!({"continue_with": [{"ory_session_token": "ory_st_nobody"}]}),
        &[],
    )
    .await
    .expect("no session");
    assert!(a.suspects.is_empty());
}

#[tokio::test]
async fn a_first_factor_session_is_attributed_through_the_submitted_identifier() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let body = json!({"continue_with": [{"ory_session_token": "ory_st_aal1"}]});
    let read = Submission::Read(Submitted {
        identifier: Some("listed@example.com".to_owned()),
        ..Submitted::default()
    });
    let a = attribute(&f, &read, body.clone(), &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);

    // Kratos read an account from a body the gateway could not: fail closed.
    let e = attribute(&f, &Submission::Unreadable, body.clone(), &[])
        .await
        .expect_err("unreadable");
    assert!(matches!(e, GatewayError::BadRequest(_)));
    // Nothing submitted: the owner stays unknown, the session grants nothing yet.
    let a = attribute(&f, &no_submission(), body, &[])
        .await
        .expect("passes");
    assert!(a.suspects.is_empty());
}

#[tokio::test]
async fn a_recovery_session_is_attributed_through_the_address_the_code_went_to() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let recovery = RecoveryAddresses::new(10, Duration::from_secs(60));
    let flow = id(SESSION_3);
    recovery.remember(flow, "Listed@Example.com");
    let request = attribution::Request {
        submission: &Submission::NotRead,
        recovery_flow: Some(flow),
        recovery_addresses: &recovery,
    };
    let body = findings(json!({"continue_with": [{"ory_session_token": "ory_st_aal1"}]}));
    let a = attribution::attribute(&f.enforcer, &request, &body, &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);

    // A flow sent codes to more addresses than are kept cannot say whose it is.
    for a in ["a@example.com", "b@example.com"] {
        recovery.remember(flow, a);
    }
    let e = attribution::attribute(&f.enforcer, &request, &body, &[])
        .await
        .expect_err("ambiguous");
    assert!(matches!(e, GatewayError::BadRequest(_)));
}

#[tokio::test]
async fn addresses_are_fetched_only_for_a_list_with_address_entries_and_bounded() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "session_token": "ory_st_x"}),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(a.suspects[0].addresses, None);
    assert!(k.seen().is_empty());

    let f = fixture(&k, LIST_WITH_ADDRESSES).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "session_token": "ory_st_x"}),
        &[],
    )
    .await
    .expect("attributed");
    let addresses = a.suspects[0].addresses.clone().expect("fetched");
    assert_eq!(&addresses[..], [format!("{OTHER}@example.com")]);

    let mut many: Vec<crate::decision::Suspect> = (0..=MAX_OWNERS)
        .map(|i| crate::decision::Suspect {
            id: Some(Uuid::from_u128(i as u128 + 1)),
            addresses: None,
        })
        .collect();
    let before = k.seen().len();
    let e = attribution::with_addresses(&f.enforcer, &mut many)
        .await
        .expect_err("too many owners");
    assert!(matches!(e, GatewayError::TooManyCredentials(_)));
    assert_eq!(k.seen().len(), before, "no lookup made");
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

#[tokio::test]
async fn the_public_request_phase_refuses_the_admin_api_and_asks_for_unencoded_bodies() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let mut ctx = PublicCtx::default();
    let refused = p
        .on_request(
            &exchange("GET", "/admin/identities"),
            &mut ctx,
            Request::get("/admin/identities")
                .body(crate::body::empty_body())
                .expect("r"),
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);

    let forwarded = p
        .on_request(
            &exchange("GET", "/sessions/whoami"),
            &mut ctx,
            Request::get("/sessions/whoami")
                .header("accept-encoding", "gzip, br")
                .header("cookie", "ory_kratos_session=abc")
                .body(crate::body::empty_body())
                .expect("r"),
        )
        .await
        .expect("forwarded");
    assert_eq!(forwarded.headers()["accept-encoding"], "identity");
    assert!(ctx.session_cookie_sent);
}

async fn submit(
    p: &PublicPolicy,
    target: &str,
    content_type: &str,
    body: &str,
) -> (PublicCtx, Vec<u8>) {
    let mut ctx = PublicCtx::default();
    let request = Request::post(target)
        .header("content-type", content_type)
        .body(full_body(body.to_owned()))
        .expect("r");
    let forwarded = p
        .on_request(&exchange("POST", target), &mut ctx, request)
        .await
        .expect("forwarded");
    let bytes = http_body_util::BodyExt::collect(forwarded.into_body())
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (ctx, bytes)
}

#[tokio::test]
async fn a_login_submission_is_read_as_kratos_reads_it_and_forwarded_unchanged() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let body = "{\"method\":\"password\",\"identifier\":\"Listed@Example.com\",\"password\":\"x\"}";
    let (ctx, forwarded) = submit(&p, "/self-service/login?flow=1", "application/json", body).await;
    assert_eq!(forwarded, body.as_bytes());
    match ctx.submission {
        Submission::Read(s) => assert_eq!(s.identifier.as_deref(), Some("Listed@Example.com")),
        other => panic!("{other:?}"),
    }
    // A body too large to copy is forwarded whole, and marked unreadable.
    let p = public(&f, Some(16));
    let (ctx, forwarded) = submit(&p, "/self-service/login?flow=1", "application/json", body).await;
    assert_eq!(forwarded, body.as_bytes());
    assert!(matches!(ctx.submission, Submission::Unreadable));
    // Not a form or JSON: not read.
    let (ctx, _) = submit(&p, "/self-service/login", "text/plain", "identifier=x").await;
    assert!(matches!(ctx.submission, Submission::NotRead));
}

#[tokio::test]
async fn a_recovery_code_request_remembers_the_address_for_its_flow() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let target = format!("/self-service/recovery?flow={SESSION_3}");
    let (ctx, _) = submit(
        &p,
        &target,
        "application/x-www-form-urlencoded",
        "method=code&email=Listed%40Example.com",
    )
    .await;
    assert_eq!(ctx.recovery_flow, Some(id(SESSION_3)));
    let flow = p
        .recovery_addresses
        .get(&id(SESSION_3))
        .expect("remembered");
    assert_eq!(flow.addresses, ["listed@example.com"]);
}

async fn extend(
    f: &Fixture,
    target: &str,
) -> Result<Request<crate::body::Body>, http::Response<crate::body::Body>> {
    let policy = AdminPolicy::new(Arc::clone(&f.enforcer));
    let request = Request::patch(target)
        .body(crate::body::empty_body())
        .expect("r");
    policy
        .on_request(&exchange("PATCH", target), &mut (), request)
        .await
}

#[tokio::test]
async fn an_extend_of_a_listed_identitys_session_is_refused_and_the_session_revoked() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let dashless = SESSION_2.replace('-', "").to_uppercase();
    for target in [
        format!("/admin/sessions/{SESSION_2}/extend"),
        format!("/sessions/{dashless}/extend"),
    ] {
        let refused = extend(&f, &target).await.expect_err("refused");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{target}");
        assert_eq!(refused.headers()["ory-error-id"], "identity_disabled");
    }
    let revoked = format!("/admin/sessions/{SESSION_2}");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !k
            .seen()
            .iter()
            .any(|s| s.method == http::Method::DELETE && s.target() == revoked)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the session is revoked");
}

#[tokio::test]
async fn an_extend_of_anyone_else_or_an_unknown_session_goes_through() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    for target in [
        format!("/admin/sessions/{SESSION}/extend"),
        format!("/admin/sessions/{OTHER}/extend"),
        "/admin/identities".to_owned(),
    ] {
        let forwarded = extend(&f, &target).await.expect("forwarded");
        assert_eq!(forwarded.uri().path(), target);
    }
    // Only the two extends asked about their session; nothing was revoked.
    let seen = k.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.method == http::Method::GET));
}

#[tokio::test]
async fn an_extend_kratos_would_refuse_or_cannot_check_is_not_forwarded() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let bad = extend(&f, "/admin/sessions/not-a-uuid/extend")
        .await
        .expect_err("malformed");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        k.seen().is_empty(),
        "Kratos is not asked about an id it would refuse"
    );
    let unavailable = extend(&f, &format!("/admin/sessions/{SESSION_3}/extend"))
        .await
        .expect_err("Kratos failing");
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// The public policy behind the engine, in front of `kratos`.
async fn gateway(k: &Server, f: &Fixture) -> std::net::SocketAddr {
    testing::engine(&k.url(), public(f, None)).await
}

async fn body_text(response: http::Response<hyper::body::Incoming>) -> String {
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<crate::body::Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "auth.example.com");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(crate::body::empty_body()).expect("request")
}

#[tokio::test]
async fn a_listed_identitys_login_answer_is_withheld_and_only_other_cookies_pass() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(
        addr,
        request("POST", "/self-service/login?flow=1&who=listed", &[]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["csrf_token=abc; Path=/"]);
    let body = body_text(response).await;
    assert!(!body.contains("ory_st_new"), "{body}");
    assert!(body.contains("identity_disabled"), "{body}");
}

#[tokio::test]
async fn an_unlisted_identitys_login_answer_passes_byte_for_byte() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(addr, request("POST", "/self-service/login?flow=1", &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_text(response).await;
    assert_eq!(
        body,
        json!({"session_token": "ory_st_new", "session": {"id": SESSION_2, "identity": {"id": OTHER}}})
            .to_string()
    );
}

#[tokio::test]
async fn whoami_of_a_listed_session_is_kratos_401_and_only_a_browser_gets_the_clearing_cookie() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let browser = testing::send(
        addr,
        request(
            "GET",
            "/sessions/whoami",
            &[("cookie", "ory_kratos_session=listed")],
        ),
    )
    .await;
    assert_eq!(browser.status(), StatusCode::UNAUTHORIZED);
    let clear = browser.headers()["set-cookie"]
        .to_str()
        .expect("v")
        .to_owned();
    assert!(clear.starts_with("ory_kratos_session=;"), "{clear}");
    assert_eq!(body_text(browser).await, crate::respond::WHOAMI_401);

    let app = testing::send(
        addr,
        request(
            "GET",
            "/sessions/whoami",
            &[("x-session-token", "ory_st_listed")],
        ),
    )
    .await;
    assert_eq!(app.status(), StatusCode::UNAUTHORIZED);
    assert!(app.headers().get("set-cookie").is_none());
    assert_eq!(body_text(app).await, crate::respond::WHOAMI_401);
}

#[tokio::test]
async fn a_credential_whose_owner_cannot_be_asked_does_not_leave() {
    // A recovery answer hands out a token; whoami about it fails.
    let k = Server::start(|seen: &Seen| {
        if seen.uri.path() == "/sessions/whoami" {
            reply(500, "")
        } else {
            reply(
                200,
                &json!({"continue_with": [{"ory_session_token": "ory_st_secret"}]}).to_string(),
            )
        }
    })
    .await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(addr, request("POST", "/self-service/recovery?flow=1", &[])).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_text(response).await;
    assert!(!body.contains("ory_st_secret"), "{body}");
}
