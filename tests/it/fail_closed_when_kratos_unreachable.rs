//! When the gateway cannot ask Kratos who owns a credential, the credential does not leave
//! (503, Kratos's error shape). When the response itself names a listed owner, the refusal
//! does not need Kratos at all. Revocations that fail are retried until the admin API is
//! back.

use crate::support;

use support::cases;

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, StatusCode};
use tokio::net::{TcpListener, TcpStream};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, assert_revoked, assert_same_as_upstream,
    blocklist_with_reason, login_form, login_json, metric, send, setup, wait_until, Person,
    Revocation, Setup, FORM, JSON, WAIT,
};
use support::fake_kratos::{FakeKratos, Reply, Side, INTERNAL_ERROR_WIRE};
use support::fixtures;
use support::gateway::start_gateway;

const LOGIN: &str = "/self-service/login?flow=2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";

/// A port on 127.0.0.1 that nothing listens on (bound once, then released).
async fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

/// 503 in Kratos's error shape, with nothing of `p` in it.
fn assert_unavailable(a: &Answer, p: &Person) {
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v = a.json();
    assert_eq!(v["error"]["code"], 503, "{v}");
    assert_eq!(v["error"]["status"], "Service Unavailable", "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_no_credential(a, p);
}

fn script_aal2_pending_login(s: &Setup, p: &Person) {
    s.fake.add_session(p.spec().aal2_pending());
    cases::native_login_aal2_pending(p).script(s);
}

#[tokio::test]
async fn owner_unknown_in_body_and_admin_api_failing_means_503() {
    let s = setup().await;
    s.fake.set_admin_failures(usize::MAX);
    for p in [s.listed.clone(), s.unlisted.clone()] {
        script_aal2_pending_login(&s, &p);
        let a = send(Method::POST, &s.public(LOGIN), &JSON, &login_json(&p.email)).await;
        assert_unavailable(&a, &p);
    }
    let m = s.metrics();
    assert_eq!(
        metric(
            &m,
            "kratos_gate_fail_closed_total{reason=\"attribution_unavailable\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "kratos_gate_attribution_lookups_total{source=\"admin\",result=\"error\"}"
        ),
        2.0,
        "{m}"
    );
}

#[tokio::test]
async fn owner_unknown_in_body_and_admin_api_unreachable_means_503() {
    let fake = FakeKratos::start().await;
    let p = Person::new("listed");
    let dead = free_port().await;
    let gw = start_gateway(
        &fake.public_url(),
        &format!("http://{dead}"),
        &blocklist_with_reason(&p),
    )
    .await;
    fake.add_session(p.spec().aal2_pending());
    fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        ),
    );
    let a = send(
        Method::POST,
        &gw.public_url(LOGIN),
        &JSON,
        &login_json(&p.email),
    )
    .await;
    assert_unavailable(&a, &p);
}

#[tokio::test]
async fn cookie_only_login_while_whoami_fails_means_503() {
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(500, INTERNAL_ERROR_WIRE),
    );
    for p in [s.listed.clone(), s.unlisted.clone()] {
        s.fake.on_public(
            Method::POST,
            "/self-service/login",
            Reply::empty(303)
                .header("location", "https://app.example.com/")
                .header("set-cookie", &p.set_cookie()),
        );
        let a = send(Method::POST, &s.public(LOGIN), &FORM, &login_form(&p.email)).await;
        assert_unavailable(&a, &p);
    }
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_attribution_lookups_total{source=\"whoami\",result=\"error\"}"
        ),
        2.0
    );
}

#[tokio::test]
async fn identifier_lookup_failing_means_503() {
    // whoami says "second factor pending", the identifier must be resolved, and the admin API
    // fails.
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(422, fixtures::spa_login_422_body())
            .header("set-cookie", &s.listed.set_cookie()),
    );
    s.fake.set_admin_failures(usize::MAX);
    let a = send(
        Method::POST,
        &s.public(LOGIN),
        &JSON,
        &login_json(&s.listed.email),
    )
    .await;
    assert_unavailable(&a, &s.listed);
}

#[tokio::test]
async fn listed_owner_named_in_body_is_refused_without_the_admin_api() {
    let s = setup().await;
    s.fake.set_admin_failures(3);
    cases::native_login(&s.listed).script(&s);
    let a = send(
        Method::POST,
        &s.public(LOGIN),
        &JSON,
        &login_json(&s.listed.email),
    )
    .await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
    // Three failed DELETEs, then the fourth gets through.
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
    let deletes = s.fake.calls_matching(
        Side::Admin,
        Method::DELETE,
        &format!("/admin/sessions/{}", s.listed.session),
    );
    assert_eq!(deletes.len(), 4, "three failures, one success");
    assert!(
        wait_until(WAIT, || metric(
            &s.metrics(),
            "kratos_gate_revocations_total{result=\"success\"}"
        ) == 1.0)
        .await
    );
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_revocations_total{result=\"retry\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn unlisted_owner_named_in_body_passes_without_the_admin_api() {
    let s = setup().await;
    s.fake.set_admin_failures(usize::MAX);
    cases::native_login(&s.unlisted).script(&s);
    let via = send(Method::POST, &s.public(LOGIN), &JSON, "{}").await;
    let direct = send(Method::POST, &s.direct(LOGIN), &JSON, "{}").await;
    assert_same_as_upstream(&via, &direct);
}

#[tokio::test]
async fn whoami_of_listed_identity_is_refused_without_the_admin_api() {
    let s = setup().await;
    s.fake.set_admin_failures(2);
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("x-session-token", s.listed.token.as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
    // The revocation arrives once the admin API answers again.
    assert!(
        wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()).await,
        "the listed identity's sessions survived"
    );
}

#[tokio::test]
async fn extend_while_admin_api_fails_is_503_and_not_forwarded() {
    let s = setup().await;
    s.fake.set_admin_failures(usize::MAX);
    for p in [&s.listed, &s.unlisted] {
        let a = send(
            Method::PATCH,
            &s.admin(&format!("/admin/sessions/{}/extend", p.session)),
            &[],
            "",
        )
        .await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
        assert_eq!(a.json()["error"]["code"], 503);
    }
    assert!(s
        .fake
        .calls_matching(Side::Admin, Method::PATCH, "/")
        .is_empty());
    s.fake.set_admin_failures(0);
    assert_eq!(
        s.fake.session_status(s.listed.session).expect("s").extended,
        0
    );
}

/// Forwards TCP connections from `listener` to `to` (the admin API "coming back").
async fn forward(listener: TcpListener, to: SocketAddr) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(to).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn revocation_is_retried_until_the_admin_api_comes_back() {
    let fake = FakeKratos::start().await;
    let p = Person::new("listed");
    fake.add_session(p.spec());
    let admin = free_port().await;
    let gw = start_gateway(
        &fake.public_url(),
        &format!("http://{admin}"),
        &blocklist_with_reason(&p),
    )
    .await;
    fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(
            200,
            fixtures::native_login_body(p.identity, p.session, &p.token),
        ),
    );
    // The admin API is down: the refusal needs no lookup, the revocation waits.
    let a = send(Method::POST, &gw.public_url(LOGIN), &JSON, "{}").await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &p);
    let m = || gw.gateway().metrics().encode();
    assert!(
        wait_until(WAIT, || metric(
            &m(),
            "kratos_gate_revocations_total{result=\"retry\"}"
        ) >= 2.0)
        .await,
        "{}",
        m()
    );
    assert!(!fake.session_status(p.session).expect("s").revoked);

    // The admin API comes back on the same address.
    let listener = TcpListener::bind(admin)
        .await
        .expect("rebind the admin port");
    let forwarder = tokio::spawn(forward(listener, fake.admin_addr));
    assert_revoked(&fake, &p, Revocation::Session).await;
    assert!(
        wait_until(Duration::from_secs(2), || metric(
            &m(),
            "kratos_gate_revocations_total{result=\"success\"}"
        ) == 1.0)
        .await
    );
    assert_eq!(metric(&m(), "kratos_gate_revocation_queue_depth "), 0.0);
    forwarder.abort();
}
