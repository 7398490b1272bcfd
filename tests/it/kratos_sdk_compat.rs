//! The gateway's answers parse in Kratos's own SDK (`ory_kratos_client` 26): an unlisted
//! identity's app sees exactly the models Kratos would give it, and a listed identity's app
//! gets an SDK error whose status is 401/403 and whose content is Kratos's error shape — so
//! apps built on the SDK handle a block like a disabled account, not like a broken server.

use crate::support;

use support::cases;

use http::Method;
use ory_kratos_client::apis::configuration::Configuration;
use ory_kratos_client::apis::{frontend_api, identity_api, Error as SdkError, ResponseContent};
use ory_kratos_client::models::{
    ErrorGeneric, UpdateLoginFlowBody, UpdateLoginFlowWithPasswordMethod,
    UpdateRegistrationFlowBody, UpdateRegistrationFlowWithPasswordMethod,
};

use support::enforcement::{assert_revoked, setup, Person, Revocation, Setup, REASON};
use support::fake_kratos::{Reply, Side};
use support::fixtures;

const FLOW: &str = "2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";

fn public(s: &Setup) -> Configuration {
    Configuration {
        base_path: s.public(""),
        ..Configuration::default()
    }
}

fn admin(s: &Setup) -> Configuration {
    Configuration {
        base_path: s.admin(""),
        ..Configuration::default()
    }
}

/// The SDK failed with an HTTP answer of `status` whose body is Kratos's `{"error":{…}}`.
fn kratos_error<T: std::fmt::Debug>(err: SdkError<T>, status: u16) -> (ErrorGeneric, String) {
    let SdkError::ResponseError(ResponseContent {
        status: got,
        content,
        ..
    }) = err
    else {
        panic!("expected an HTTP error answer, got {err:?}");
    };
    assert_eq!(got.as_u16(), status, "{content}");
    let parsed: ErrorGeneric = serde_json::from_str(&content)
        .unwrap_or_else(|e| panic!("not Kratos's error shape ({e}): {content}"));
    assert_eq!(parsed.error.code, Some(i64::from(status)));
    assert!(!parsed.error.message.is_empty());
    assert!(!content.contains(REASON) && !content.contains("ory_st_"));
    (parsed, content)
}

fn assert_identity_disabled<T: std::fmt::Debug>(err: SdkError<T>) {
    let (parsed, _) = kratos_error(err, 403);
    assert_eq!(parsed.error.id.as_deref(), Some("identity_disabled"));
    assert_eq!(parsed.error.status.as_deref(), Some("Forbidden"));
}

fn assert_no_session<T: std::fmt::Debug>(err: SdkError<T>) {
    let (parsed, content) = kratos_error(err, 401);
    assert_eq!(content, fixtures::WHOAMI_401_WIRE);
    assert_eq!(parsed.error.id, None, "Kratos's whoami 401 has no id");
    assert_eq!(
        parsed.error.reason.as_deref(),
        Some("No valid session credentials found in the request.")
    );
}

fn password_login(p: &Person) -> UpdateLoginFlowBody {
    UpdateLoginFlowBody::Password(Box::new(UpdateLoginFlowWithPasswordMethod::new(
        p.email.clone(),
        "password".to_owned(),
        "correct horse".to_owned(),
    )))
}

fn script_native_login(s: &Setup, p: &Person) {
    cases::native_login(p).script(s);
}

// ---------------------------------------------------------------------------
// Native login: update_login_flow
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sdk_native_login_of_unlisted_identity_gets_its_session_token() {
    let s = setup().await;
    script_native_login(&s, &s.unlisted);
    let ok =
        frontend_api::update_login_flow(&public(&s), FLOW, password_login(&s.unlisted), None, None)
            .await
            .expect("login succeeds");
    assert_eq!(ok.session_token.as_deref(), Some(s.unlisted.token.as_str()));
    assert_eq!(ok.session.id, s.unlisted.session.to_string());
    assert_eq!(ok.session.identity.expect("identity").id, s.unlisted.id());
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn sdk_native_login_of_listed_identity_is_identity_disabled() {
    let s = setup().await;
    script_native_login(&s, &s.listed);
    let err =
        frontend_api::update_login_flow(&public(&s), FLOW, password_login(&s.listed), None, None)
            .await
            .expect_err("no session for a listed identity");
    assert_identity_disabled(err);
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
    // The SDK sent the identifier as JSON; Kratos saw the flow id.
    let call = &s
        .fake
        .calls_matching(Side::Public, Method::POST, "/self-service/login")[0];
    assert_eq!(call.query_param("flow").as_deref(), Some(FLOW));
}

#[tokio::test]
async fn sdk_native_login_pending_second_factor_of_listed_identity_is_identity_disabled() {
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    cases::native_login_aal2_pending(&s.listed).script(&s);
    let err =
        frontend_api::update_login_flow(&public(&s), FLOW, password_login(&s.listed), None, None)
            .await
            .expect_err("no session for a listed identity");
    assert_identity_disabled(err);
}

#[tokio::test]
async fn sdk_native_login_pending_second_factor_of_unlisted_identity_parses() {
    let s = setup().await;
    s.fake.add_session(s.unlisted.spec().aal2_pending());
    cases::native_login_aal2_pending(&s.unlisted).script(&s);
    let ok =
        frontend_api::update_login_flow(&public(&s), FLOW, password_login(&s.unlisted), None, None)
            .await
            .expect("login succeeds");
    assert_eq!(ok.session_token.as_deref(), Some(s.unlisted.token.as_str()));
    assert!(ok.session.identity.is_none());
}

// ---------------------------------------------------------------------------
// whoami: to_session
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sdk_whoami_of_unlisted_identity_returns_the_session() {
    let s = setup().await;
    let cookie = s.unlisted.cookie_header();
    for (token, cookie) in [
        (Some(s.unlisted.token.as_str()), None),
        (None, Some(cookie.as_str())),
    ] {
        let session = frontend_api::to_session(&public(&s), token, cookie, None)
            .await
            .expect("a session");
        assert_eq!(session.id, s.unlisted.session.to_string());
        assert_eq!(session.identity.expect("identity").id, s.unlisted.id());
        assert_eq!(session.tokenized, None);
    }
    let session = frontend_api::to_session(
        &public(&s),
        Some(&s.unlisted.token),
        None,
        Some("jwt_example_template1"),
    )
    .await
    .expect("a session");
    let jwt = session.tokenized.expect("tokenized");
    assert_eq!(
        fixtures::jwt_claims(&jwt).expect("claims")["sub"],
        s.unlisted.id()
    );
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn sdk_whoami_of_listed_identity_is_no_session() {
    let s = setup().await;
    let cookie = s.listed.cookie_header();
    for (token, cookie, tokenize_as) in [
        (Some(s.listed.token.as_str()), None, None),
        (None, Some(cookie.as_str()), None),
        (
            Some(s.listed.token.as_str()),
            None,
            Some("jwt_example_template1"),
        ),
    ] {
        s.fake.add_session(s.listed.spec());
        let err = frontend_api::to_session(&public(&s), token, cookie, tokenize_as)
            .await
            .expect_err("no session for a listed identity");
        assert_no_session(err);
    }
}

// ---------------------------------------------------------------------------
// Sessions list, token exchange, registration
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sdk_session_list_of_listed_identity_is_401() {
    let s = setup().await;
    let other = Person {
        session: support::fake_kratos::fresh_uuid(),
        token: support::fake_kratos::fresh_token(),
        ..s.listed.clone()
    };
    s.fake.add_session(
        support::fake_kratos::SessionSpec::new(other.identity, other.session)
            .token(other.token.clone()),
    );
    let err = frontend_api::list_my_sessions(
        &public(&s),
        None,
        None,
        None,
        None,
        Some(&s.listed.token),
        None,
    )
    .await
    .expect_err("no session list for a listed identity");
    let (_, content) = kratos_error(err, 401);
    assert_eq!(content, fixtures::SESSIONS_401_WIRE);
}

#[tokio::test]
async fn sdk_token_exchange_of_listed_identity_is_identity_disabled() {
    let s = setup().await;
    s.fake.on_public(
        Method::GET,
        "/sessions/token-exchange",
        Reply::json(
            200,
            fixtures::token_exchange_body(s.listed.identity, s.listed.session, &s.listed.token),
        ),
    );
    let err = frontend_api::exchange_session_token(&public(&s), "init", "return")
        .await
        .expect_err("no token for a listed identity");
    assert_identity_disabled(err);
}

#[tokio::test]
async fn sdk_token_exchange_of_unlisted_identity_gets_its_token() {
    let s = setup().await;
    s.fake.on_public(
        Method::GET,
        "/sessions/token-exchange",
        Reply::json(
            200,
            fixtures::token_exchange_body(
                s.unlisted.identity,
                s.unlisted.session,
                &s.unlisted.token,
            ),
        ),
    );
    let ok = frontend_api::exchange_session_token(&public(&s), "init", "return")
        .await
        .expect("token exchanged");
    assert_eq!(ok.session_token.as_deref(), Some(s.unlisted.token.as_str()));
}

#[tokio::test]
async fn sdk_native_registration_of_listed_identity_is_identity_disabled() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/registration",
        Reply::json(
            200,
            fixtures::native_registration_body(
                s.listed.identity,
                s.listed.session,
                &s.listed.token,
            ),
        ),
    );
    let body = UpdateRegistrationFlowBody::Password(Box::new(
        UpdateRegistrationFlowWithPasswordMethod::new(
            "password".to_owned(),
            "correct horse".to_owned(),
            serde_json::json!({"email": s.listed.email}),
        ),
    ));
    let err = frontend_api::update_registration_flow(&public(&s), FLOW, body, None)
        .await
        .expect_err("no session for a listed identity");
    assert_identity_disabled(err);
}

// ---------------------------------------------------------------------------
// Admin extend and fail-closed answers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sdk_extend_of_listed_session_is_identity_disabled() {
    let s = setup().await;
    let err = identity_api::extend_session(&admin(&s), &s.listed.session.to_string())
        .await
        .expect_err("not extended");
    assert_identity_disabled(err);
    assert_eq!(
        s.fake.session_status(s.listed.session).expect("s").extended,
        0
    );
}

#[tokio::test]
async fn sdk_extend_of_unlisted_session_returns_the_session() {
    let s = setup().await;
    let session = identity_api::extend_session(&admin(&s), &s.unlisted.session.to_string())
        .await
        .expect("extended");
    assert_eq!(session.id, s.unlisted.session.to_string());
}

#[tokio::test]
async fn sdk_sees_kratos_error_shape_when_the_gateway_fails_closed() {
    let s = setup().await;
    s.fake.add_session(s.unlisted.spec().aal2_pending());
    cases::native_login_aal2_pending(&s.unlisted).script(&s);
    s.fake.set_admin_failures(usize::MAX);
    let err =
        frontend_api::update_login_flow(&public(&s), FLOW, password_login(&s.unlisted), None, None)
            .await
            .expect_err("withheld while the owner cannot be determined");
    kratos_error(err, 503);
}
