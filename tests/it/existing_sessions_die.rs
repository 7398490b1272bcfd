//! Guarantee 2: an existing session of a listed identity is worth nothing through the
//! gateway. whoami (any method, any credential form) answers exactly Kratos's "no session"
//! 401, `tokenize_as` JWTs never come out, `GET /sessions` answers 401, and the session is
//! revoked at Kratos. Unlisted identities get Kratos's answers unchanged.

use crate::support;

use http::{Method, StatusCode};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_no_credential, assert_revoked, assert_same_as_upstream, metric, send, setup, wait_until,
    Person, Revocation, Setup, WAIT,
};
use support::fake_kratos::{fresh_token, fresh_uuid, Reply, SessionSpec, Side};
use support::fixtures;

const METHODS: [Method; 4] = [Method::GET, Method::POST, Method::DELETE, Method::PUT];

/// The three ways a client presents a session to whoami (CONTRACT.md 3.2).
#[derive(Clone, Copy, Debug)]
enum Form {
    SessionTokenHeader,
    Cookie,
    Bearer,
}

const FORMS: [Form; 3] = [Form::SessionTokenHeader, Form::Cookie, Form::Bearer];

fn credential(form: Form, p: &Person) -> (&'static str, String) {
    match form {
        Form::SessionTokenHeader => ("x-session-token", p.token.clone()),
        Form::Cookie => (
            "cookie",
            format!("theme=dark; {}; lang=en", p.cookie_header()),
        ),
        Form::Bearer => ("authorization", format!("Bearer {}", p.token)),
    }
}

async fn whoami(url: &str, method: Method, form: Form, p: &Person) -> Answer {
    let (name, value) = credential(form, p);
    send(method, url, &[(name, value.as_str())], "").await
}

/// The session cookie cleared as Kratos clears it at logout, with Kratos's default
/// attributes (CONTRACT.md 3.3).
const CLEARING_COOKIE: &str = "ory_kratos_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax";

/// A browser (the request carried the session cookie) is signed out: the one `Set-Cookie`
/// clears the session cookie. A token client gets no `Set-Cookie` at all.
fn assert_signed_out_for(a: &Answer, form: Form) {
    match form {
        Form::Cookie => assert_eq!(a.set_cookies(), vec![CLEARING_COOKIE.to_owned()]),
        Form::SessionTokenHeader | Form::Bearer => {
            assert!(
                a.set_cookies().is_empty(),
                "{form:?}: {:?}",
                a.set_cookies()
            )
        }
    }
}

/// Exactly Kratos's whoami 401 (CONTRACT.md section 5), and nothing that vouches.
fn assert_kratos_no_session(a: &Answer, form: Form, p: &Person) {
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "body: {}", a.text());
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
    assert_eq!(
        a.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    assert_signed_out_for(a, form);
    assert_no_credential(a, p);
}

/// Waits for the listed session to be dead at Kratos and the revocation queue to be empty.
/// whoami names only the identity in its header, so either revocation form is accepted:
/// the one session, or all of the identity's sessions.
async fn assert_session_dead(s: &Setup, p: &Person) {
    let by_session = format!("/admin/sessions/{}", p.session);
    let by_identity = format!("/admin/identities/{}/sessions", p.identity);
    assert!(
        wait_until(WAIT, || {
            s.fake
                .calls_matching(Side::Admin, Method::DELETE, "/")
                .iter()
                .any(|c| c.path() == by_session || c.path() == by_identity)
                && s.fake.session_status(p.session).is_none_or(|st| st.revoked)
                && metric(&s.metrics(), "kratos_gate_revocation_queue_depth ") == 0.0
        })
        .await,
        "session {} not revoked at Kratos",
        p.session
    );
}

// ---------------------------------------------------------------------------
// whoami
// ---------------------------------------------------------------------------

#[tokio::test]
async fn whoami_of_listed_identity_is_kratos_401_for_every_credential_form_and_method() {
    let s = setup().await;
    let mut blocked = 0.0;
    for form in FORMS {
        for method in METHODS {
            // A live session at Kratos for every attempt (the previous one was revoked).
            s.fake.add_session(s.listed.spec());
            let a = whoami(
                &s.public("/sessions/whoami"),
                method.clone(),
                form,
                &s.listed,
            )
            .await;
            assert_kratos_no_session(&a, form, &s.listed);
            blocked += 1.0;
            assert_eq!(
                metric(
                    &s.metrics(),
                    "kratos_gate_blocked_total{kind=\"whoami\",mode=\"enforce\"}"
                ),
                blocked,
                "{form:?} {method}: the gateway itself must have refused a live session"
            );
            assert_session_dead(&s, &s.listed).await;
        }
    }
}

#[tokio::test]
async fn whoami_of_unlisted_identity_is_kratos_answer_for_every_credential_form_and_method() {
    let s = setup().await;
    for form in FORMS {
        for method in METHODS {
            let via = whoami(
                &s.public("/sessions/whoami"),
                method.clone(),
                form,
                &s.unlisted,
            )
            .await;
            let direct = whoami(
                &s.direct("/sessions/whoami"),
                method.clone(),
                form,
                &s.unlisted,
            )
            .await;
            assert_eq!(via.status, StatusCode::OK, "{form:?} {method}");
            assert_same_as_upstream(&via, &direct);
            assert_eq!(
                via.headers
                    .get("x-kratos-authenticated-identity-id")
                    .and_then(|v| v.to_str().ok()),
                Some(s.unlisted.id().as_str())
            );
        }
    }
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn whoami_without_a_credential_is_kratos_own_401() {
    let s = setup().await;
    let a = send(Method::GET, &s.public("/sessions/whoami"), &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn tokenize_as_never_hands_a_jwt_to_listed_identity() {
    let s = setup().await;
    for form in FORMS {
        s.fake.add_session(s.listed.spec());
        let a = whoami(
            &s.public("/sessions/whoami?tokenize_as=jwt_example_template1"),
            Method::GET,
            form,
            &s.listed,
        )
        .await;
        assert_kratos_no_session(&a, form, &s.listed);
        assert!(!a.text().contains("tokenized") && !a.text().contains("eyJ"));
        assert_session_dead(&s, &s.listed).await;
    }
}

#[tokio::test]
async fn tokenize_as_jwt_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    let a = whoami(
        &s.public("/sessions/whoami?tokenize_as=jwt_example_template1"),
        Method::GET,
        Form::SessionTokenHeader,
        &s.unlisted,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let jwt = a.json()["tokenized"]
        .as_str()
        .expect("tokenized JWT")
        .to_owned();
    let claims = fixtures::jwt_claims(&jwt).expect("claims");
    assert_eq!(claims["sub"], s.unlisted.id());
    assert_eq!(claims["sid"], s.unlisted.session.to_string());
    // Byte for byte what Kratos wrote (the JWT is time-dependent, so rebuilt from it).
    assert_eq!(
        a.text(),
        fixtures::whoami_body_with_email(
            s.unlisted.identity,
            s.unlisted.session,
            Some(&s.unlisted.email),
            Some(&jwt)
        )
    );
    s.assert_nothing_blocked();
}

/// Something between Kratos and the gateway may drop `X-Kratos-Authenticated-Identity-Id`;
/// the session body alone still decides.
#[tokio::test]
async fn whoami_session_body_without_identity_header_is_still_refused() {
    let s = setup().await;
    let jwt = fixtures::fake_jwt(s.listed.identity, s.listed.session, "https://x/", 1);
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(
            200,
            fixtures::whoami_body(s.listed.identity, s.listed.session, Some(&jwt)),
        ),
    );
    let a = whoami(
        &s.public("/sessions/whoami?tokenize_as=t"),
        Method::GET,
        Form::SessionTokenHeader,
        &s.listed,
    )
    .await;
    assert_kratos_no_session(&a, Form::SessionTokenHeader, &s.listed);
    assert!(!a.text().contains(&jwt));
    // The body named the session: that one is revoked.
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
}

/// whoami re-issues the session cookie after an extend (CONTRACT.md 3.3).
#[tokio::test]
async fn whoami_cookie_reissue_is_withheld_from_listed_identity() {
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(
            200,
            fixtures::whoami_body(s.listed.identity, s.listed.session, None),
        )
        .header("x-kratos-authenticated-identity-id", &s.listed.id())
        .header("set-cookie", &s.listed.set_cookie()),
    );
    let a = whoami(
        &s.public("/sessions/whoami"),
        Method::GET,
        Form::Cookie,
        &s.listed,
    )
    .await;
    // The re-issued cookie is withheld; the browser's cookie is cleared instead.
    assert_kratos_no_session(&a, Form::Cookie, &s.listed);
    assert_session_dead(&s, &s.listed).await;
}

#[tokio::test]
async fn whoami_cookie_reissue_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(
            200,
            fixtures::whoami_body(s.unlisted.identity, s.unlisted.session, None),
        )
        .header("x-kratos-authenticated-identity-id", &s.unlisted.id())
        .header("set-cookie", &s.unlisted.set_cookie()),
    );
    let via = whoami(
        &s.public("/sessions/whoami"),
        Method::GET,
        Form::Cookie,
        &s.unlisted,
    )
    .await;
    let direct = whoami(
        &s.direct("/sessions/whoami"),
        Method::GET,
        Form::Cookie,
        &s.unlisted,
    )
    .await;
    assert_same_as_upstream(&via, &direct);
    assert_eq!(via.set_cookies(), vec![s.unlisted.set_cookie()]);
    s.assert_nothing_blocked();
}

// ---------------------------------------------------------------------------
// GET /sessions
// ---------------------------------------------------------------------------

/// A second session of `p`'s identity, so that `GET /sessions` lists something.
fn second_session(s: &Setup, p: &Person) -> Person {
    let other = Person {
        session: fresh_uuid(),
        token: fresh_token(),
        ..p.clone()
    };
    s.fake.add_session(
        SessionSpec::new(other.identity, other.session)
            .token(other.token.clone())
            .email(other.email.clone()),
    );
    other
}

#[tokio::test]
async fn session_list_of_listed_identity_is_kratos_401() {
    let s = setup().await;
    let other = second_session(&s, &s.listed);
    for form in FORMS {
        // The other session is live at Kratos for every attempt.
        s.fake.add_session(
            SessionSpec::new(other.identity, other.session).token(other.token.clone()),
        );
        let a = whoami(&s.public("/sessions"), Method::GET, form, &s.listed).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{form:?}: {}", a.text());
        assert_eq!(a.text(), fixtures::SESSIONS_401_WIRE);
        assert_signed_out_for(&a, form);
        assert!(!a.text().contains(&other.session.to_string()));
        assert_no_credential(&a, &s.listed);
        // The sessions the list vouched for are revoked.
        assert_revoked(&s.fake, &other, Revocation::Session).await;
        assert!(
            wait_until(WAIT, || metric(
                &s.metrics(),
                "kratos_gate_revocation_queue_depth "
            ) == 0.0)
            .await
        );
    }
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_blocked_total{kind=\"sessions\",mode=\"enforce\"}"
        ),
        3.0
    );
}

#[tokio::test]
async fn session_list_of_unlisted_identity_passes_unchanged() {
    let s = setup().await;
    let other = second_session(&s, &s.unlisted);
    for form in FORMS {
        let via = whoami(&s.public("/sessions"), Method::GET, form, &s.unlisted).await;
        let direct = whoami(&s.direct("/sessions"), Method::GET, form, &s.unlisted).await;
        assert_eq!(via.status, StatusCode::OK);
        assert_same_as_upstream(&via, &direct);
        assert!(via.text().contains(&other.session.to_string()));
    }
    s.assert_nothing_blocked();
}

// ---------------------------------------------------------------------------
// Settings through an existing session
// ---------------------------------------------------------------------------

/// A native app's settings flow re-issues nothing (CONTRACT.md 4.5), but the answer names the
/// identity whose session was just used: for a listed identity the flow (its traits) is not
/// handed out and the session dies, so it cannot be used again. (Kratos has already applied
/// this one submit by the time its answer arrives; a response-side gateway cannot undo it.)
#[tokio::test]
async fn native_settings_with_listed_session_is_refused_and_the_session_dies() {
    let s = setup().await;
    let session =
        fixtures::session_json(s.listed.identity, s.listed.session, Some(&s.listed.email));
    let identity = session.get("identity").cloned().expect("identity");
    let flow = fixtures::Json::Object(vec![
        (
            "id".into(),
            fixtures::Json::str("1d9d3e0a-3d38-4f3c-9a57-2b6a7c7c9e21"),
        ),
        ("type".into(), fixtures::Json::str("api")),
        (
            "expires_at".into(),
            fixtures::Json::str("2026-08-01T11:00:00Z"),
        ),
        (
            "issued_at".into(),
            fixtures::Json::str("2026-08-01T10:00:00Z"),
        ),
        (
            "request_url".into(),
            fixtures::Json::str("https://auth.example.com/self-service/settings/api"),
        ),
        (
            "ui".into(),
            fixtures::Json::Object(vec![("nodes".into(), fixtures::Json::Array(vec![]))]),
        ),
        ("identity".into(), identity),
        ("state".into(), fixtures::Json::str("success")),
    ]);
    s.fake.on_public(
        Method::POST,
        "/self-service/settings",
        Reply::json(200, flow.to_wire()),
    );
    let a = send(
        Method::POST,
        &s.public("/self-service/settings?flow=1d9d3e0a-3d38-4f3c-9a57-2b6a7c7c9e21"),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("x-session-token", s.listed.token.as_str()),
        ],
        r#"{"method":"password","password":"attacker chosen"}"#,
    )
    .await;
    support::enforcement::assert_identity_disabled(&a);
    // A token client: nothing to clear.
    assert!(a.set_cookies().is_empty(), "{:?}", a.set_cookies());
    assert!(!a.text().contains(&s.listed.email), "{}", a.text());
    assert_revoked(&s.fake, &s.listed, Revocation::IdentitySessions).await;
}
