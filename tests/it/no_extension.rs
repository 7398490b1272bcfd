//! Guarantee 3: `PATCH /admin/sessions/{id}/extend` through the gateway's admin listener
//! never extends a listed identity's session. Kratos itself extends sessions of disabled
//! identities (CONTRACT.md section 6), so the gateway looks the session up first and does not
//! forward the extend. The client here is Kratos's own SDK (`ory_kratos_client`).

use crate::support;

use http::{Method, StatusCode};
use ory_kratos_client::apis::configuration::Configuration;
use ory_kratos_client::apis::identity_api;
use ory_kratos_client::apis::Error as SdkError;
use ory_kratos_client::models::ErrorGeneric;

use support::enforcement::{
    assert_identity_disabled, assert_revoked, metric, send, setup, wait_until, Person, Revocation,
    Setup, REASON, WAIT,
};
use support::fake_kratos::{fresh_uuid, Side};
use support::fixtures;

fn sdk(s: &Setup) -> Configuration {
    Configuration {
        base_path: s.admin(""),
        ..Configuration::default()
    }
}

/// Kratos never saw an extend for this session.
fn assert_not_extended(s: &Setup, p: &Person) {
    assert_eq!(
        s.fake.session_status(p.session).expect("session").extended,
        0,
        "the session was extended at Kratos"
    );
    assert!(
        s.fake
            .calls_matching(Side::Admin, Method::PATCH, "/")
            .is_empty(),
        "an extend was forwarded to Kratos"
    );
}

#[tokio::test]
async fn extend_of_listed_session_is_refused_and_not_forwarded() {
    let s = setup().await;
    let err = identity_api::extend_session(&sdk(&s), &s.listed.session.to_string())
        .await
        .expect_err("a listed identity's session is not extended");
    let SdkError::ResponseError(resp) = err else {
        panic!("expected an HTTP error answer, got {err:?}");
    };
    assert_eq!(resp.status.as_u16(), 403);
    let parsed: ErrorGeneric = serde_json::from_str(&resp.content).expect("Kratos's error shape");
    assert_eq!(parsed.error.id.as_deref(), Some("identity_disabled"));
    assert_eq!(parsed.error.code, Some(403));
    assert_eq!(parsed.error.status.as_deref(), Some("Forbidden"));
    assert!(!resp.content.contains(REASON));
    assert_not_extended(&s, &s.listed);
    // The owner was looked up at the admin API, and the session is revoked.
    let lookup = s.fake.calls_matching(
        Side::Admin,
        Method::GET,
        &format!("/admin/sessions/{}", s.listed.session),
    );
    assert_eq!(lookup.len(), 1);
    assert_eq!(
        lookup[0].query_params("expand"),
        vec!["identity".to_owned()]
    );
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
    let m = s.metrics();
    assert_eq!(
        metric(
            &m,
            "kratos_gate_blocked_total{kind=\"extend\",mode=\"enforce\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        wait_until(WAIT, || metric(
            &s.metrics(),
            "kratos_gate_revocations_total{result=\"success\"}"
        ) == 1.0)
        .await,
        "{}",
        s.metrics()
    );
}

#[tokio::test]
async fn unprefixed_extend_path_of_listed_session_is_refused() {
    let s = setup().await;
    // Kratos's admin port adds /admin itself, so this path extends too.
    let a = send(
        Method::PATCH,
        &s.admin(&format!("/sessions/{}/extend", s.listed.session)),
        &[],
        "",
    )
    .await;
    assert_identity_disabled(&a);
    assert_not_extended(&s, &s.listed);
}

#[tokio::test]
async fn extend_path_spellings_of_listed_session_are_refused() {
    let s = setup().await;
    let id = s.listed.session.to_string();
    let upper = id.to_ascii_uppercase();
    for path in [
        format!("//admin/sessions/{id}/extend"),
        format!("/admin//sessions/{id}/extend"),
        format!("/admin/sessions/{id}/extend/"),
        format!("/admin/./sessions/{id}/extend"),
        format!("/admin/x/../sessions/{id}/extend"),
        format!("/admin/sessions/{id}/%65xtend"),
        format!("/admin/sessions/{upper}/extend"),
        format!("/ADMIN/SESSIONS/{id}/EXTEND"),
        format!("/admin/sessions/{id}/extend?expand=identity"),
    ] {
        let a = send(Method::PATCH, &s.admin(&path), &[], "").await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.text());
        assert_identity_disabled(&a);
    }
    assert_not_extended(&s, &s.listed);
}

#[tokio::test]
async fn extend_of_unlisted_session_goes_through() {
    let s = setup().await;
    let session = identity_api::extend_session(&sdk(&s), &s.unlisted.session.to_string())
        .await
        .expect("Kratos extends the session");
    assert_eq!(session.id, s.unlisted.session.to_string());
    assert_eq!(
        session.identity.expect("identity expanded").id,
        s.unlisted.id()
    );
    assert_eq!(
        s.fake
            .session_status(s.unlisted.session)
            .expect("s")
            .extended,
        1
    );
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn extend_of_unknown_session_is_forwarded_and_gets_kratos_404() {
    let s = setup().await;
    let unknown = fresh_uuid();
    let err = identity_api::extend_session(&sdk(&s), &unknown.to_string())
        .await
        .expect_err("no such session");
    let SdkError::ResponseError(resp) = err else {
        panic!("expected an HTTP error answer, got {err:?}");
    };
    assert_eq!(resp.status.as_u16(), 404);
    assert_eq!(resp.content, fixtures::error_404_body());
    let parsed: ErrorGeneric = serde_json::from_str(&resp.content).expect("Kratos's error shape");
    assert_eq!(parsed.error.code, Some(404));
    // The extend itself reached Kratos (after the gateway's lookup).
    assert!(s
        .fake
        .wait_for_call(
            Side::Admin,
            Method::PATCH,
            &format!("/admin/sessions/{unknown}/extend"),
            WAIT
        )
        .await
        .is_some());
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn extend_with_malformed_id_is_kratos_400() {
    let s = setup().await;
    let a = send(
        Method::PATCH,
        &s.admin("/admin/sessions/not-a-uuid/extend"),
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text());
    assert!(a.text().contains("uuid"), "{}", a.text());
    s.assert_nothing_blocked();
}

/// Only the extend is guarded; other admin calls about a listed identity still work
/// (ops and backends need them).
#[tokio::test]
async fn other_admin_calls_about_listed_identity_pass() {
    let s = setup().await;
    let a = send(
        Method::GET,
        &s.admin(&format!(
            "/admin/sessions/{}?expand=identity",
            s.listed.session
        )),
        &[],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.json()["identity"]["id"], s.listed.id());
    assert_eq!(
        s.fake.session_status(s.listed.session).expect("s").extended,
        0
    );
    s.assert_nothing_blocked();
}
