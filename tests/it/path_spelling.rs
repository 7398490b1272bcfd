//! The decision depends on the response, never on how the client spelled the path. Against a
//! Kratos-like server that routes loosely (percent-decoding, `//`, `.`/`..`, trailing slash,
//! any case), every spelling that reaches whoami or a login still gets the listed identity
//! nothing, and every spelling gets the unlisted identity Kratos's own answer.

use crate::support;

use support::cases;

use http::{Method, StatusCode};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, assert_same_as_upstream, metric, send, setup,
    wait_until, Person, Setup, JSON, WAIT,
};
use support::fake_kratos::{Reply, Side};
use support::fixtures;

const FLOW: &str = "2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";

const WHOAMI_SPELLINGS: [&str; 14] = [
    "/sessions/whoami",
    "//sessions/whoami",
    "/sessions//whoami",
    "/sessions/%77hoami",
    "/%73essions/%77%68%6f%61%6d%69",
    "/sessions/whoami/",
    "/sessions/whoami%2F",
    "/./sessions/./whoami",
    "/sessions/x/../whoami",
    "/Sessions/WhoAmI",
    "/SESSIONS/%57HOAMI",
    "/sessions/whoami?",
    "/sessions/whoami?next=/health/alive&tokenize_as=",
    "/sessions/whoami?x=%2F..%2Fself-service%2Flogin",
];

const LOGIN_SPELLINGS: [&str; 9] = [
    "/self-service/login",
    "//self-service/login",
    "/self-service/%6Cogin",
    "/self-service/login/",
    "/self-service/./login",
    "/self-service/api/../login",
    "/SELF-SERVICE/LOGIN",
    "/Self-Service/Login%2F",
    "/self%2Dservice/login",
];

async fn loose_setup() -> Setup {
    let s = setup().await;
    s.fake.set_loose_routing(true);
    s
}

async fn whoami(url: &str, p: &Person) -> Answer {
    send(
        Method::GET,
        url,
        &[("x-session-token", p.token.as_str())],
        "",
    )
    .await
}

fn with_flow(path: &str) -> String {
    if path.contains('?') {
        format!("{path}&flow={FLOW}")
    } else {
        format!("{path}?flow={FLOW}")
    }
}

#[tokio::test]
async fn every_whoami_spelling_of_listed_identity_is_kratos_401() {
    let s = loose_setup().await;
    for (n, path) in WHOAMI_SPELLINGS.iter().enumerate() {
        s.fake.add_session(s.listed.spec());
        // The loose server really routes this spelling to whoami and vouches for the session.
        let direct = whoami(&s.direct(path), &s.listed).await;
        assert_eq!(
            direct.status,
            StatusCode::OK,
            "{path}: the fake did not route it"
        );
        let a = whoami(&s.public(path), &s.listed).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.text());
        assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE, "{path}");
        assert_no_credential(&a, &s.listed);
        assert_eq!(
            metric(
                &s.metrics(),
                "kratos_gate_blocked_total{kind=\"whoami\",mode=\"enforce\"}"
            ),
            (n + 1) as f64,
            "{path}"
        );
        // Wait for the revocation before the next round re-creates the session.
        assert!(
            wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()
                && metric(&s.metrics(), "kratos_gate_revocation_queue_depth ")
                    == 0.0)
            .await,
            "{path}: not revoked"
        );
    }
}

#[tokio::test]
async fn every_whoami_spelling_of_unlisted_identity_is_kratos_answer() {
    let s = loose_setup().await;
    for path in WHOAMI_SPELLINGS {
        let via = whoami(&s.public(path), &s.unlisted).await;
        let direct = whoami(&s.direct(path), &s.unlisted).await;
        assert_eq!(via.status, StatusCode::OK, "{path}");
        assert_same_as_upstream(&via, &direct);
    }
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn every_login_spelling_of_listed_identity_gets_no_token() {
    let s = loose_setup().await;
    cases::native_login(&s.listed).script(&s);
    for (n, path) in LOGIN_SPELLINGS.iter().enumerate() {
        let url = with_flow(path);
        let direct = send(Method::POST, &s.direct(&url), &JSON, "{}").await;
        assert_eq!(
            direct.status,
            StatusCode::OK,
            "{path}: the fake did not route it"
        );
        let a = send(Method::POST, &s.public(&url), &JSON, "{}").await;
        assert_identity_disabled(&a);
        assert_no_credential(&a, &s.listed);
        assert_eq!(
            metric(
                &s.metrics(),
                "kratos_gate_blocked_total{kind=\"login\",mode=\"enforce\"}"
            ),
            (n + 1) as f64,
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_login_spelling_of_unlisted_identity_is_kratos_answer() {
    let s = loose_setup().await;
    cases::native_login(&s.unlisted).script(&s);
    for path in LOGIN_SPELLINGS {
        let url = with_flow(path);
        let via = send(Method::POST, &s.public(&url), &JSON, "{}").await;
        let direct = send(Method::POST, &s.direct(&url), &JSON, "{}").await;
        assert_eq!(via.status, StatusCode::OK, "{path}");
        assert_same_as_upstream(&via, &direct);
    }
    s.assert_nothing_blocked();
}

/// A credential on a path the gateway has never heard of is still caught: the response
/// decides, not a list of paths.
#[tokio::test]
async fn a_credential_on_any_path_is_caught() {
    let s = loose_setup().await;
    for (path, reply) in [
        (
            "/some/future/endpoint",
            Reply::json(
                200,
                fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token),
            ),
        ),
        (
            "/health/alive",
            Reply::json(200, fixtures::native_recovery_body(&s.listed.token)),
        ),
        (
            "/.well-known/ory/webauthn.js",
            Reply::empty(303)
                .header("location", "https://app.example.com/")
                .header("set-cookie", &s.listed.set_cookie()),
        ),
    ] {
        s.fake.on_public("ANY", path, reply);
        for method in [Method::GET, Method::POST] {
            s.fake.add_session(s.listed.spec());
            let a = send(method.clone(), &s.public(path), &JSON, "").await;
            assert_no_credential(&a, &s.listed);
            assert!(
                a.status == StatusCode::FORBIDDEN,
                "{method} {path}: {} {}",
                a.status,
                a.text()
            );
            assert!(
                wait_until(WAIT, || metric(
                    &s.metrics(),
                    "kratos_gate_revocation_queue_depth "
                ) == 0.0)
                .await
            );
        }
    }
    // Nothing in the gateway needed the path: it was asked where the credential came from.
    assert!(!s
        .fake
        .calls_matching(Side::Admin, Method::DELETE, "/")
        .is_empty());
}
