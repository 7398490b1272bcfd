//! Guarantee 1: no session credential leaves the gateway for a listed identity.
//!
//! One pair of tests per credential-bearing response kind of CONTRACT.md section 4: for the
//! listed identity the credential is withheld, the client gets Kratos's error shape (or the
//! browser answer), and the session Kratos just created is revoked at the admin API; for an
//! unlisted identity the response is Kratos's, byte for byte.

use crate::support;

use http::{Method, StatusCode};

use support::cases::{
    browser_form_login, native_login, native_login_aal2_pending, native_login_refresh,
    native_recovery, native_registration, oidc_callback, owned, settings_reissue, spa_login,
    spa_login_422, spa_registration, token_exchange, with_cookies, Blocked, Case, FLOW,
};
use support::client::Reply as Answer;
use support::enforcement::{
    assert_disabled_page, assert_identity_disabled, assert_no_credential, assert_revoked,
    assert_same_as_upstream, metric, send, setup, setup_with, Revocation, Setup, CSRF_SET_COOKIE,
};
use support::fake_kratos::{Reply, Side};
use support::fixtures;

const DISABLED_PAGE: &str = "https://app.example.com/account-disabled";

/// The listed identity gets no credential, the right refusal and a dead session.
async fn listed_gets_nothing(s: &Setup, case: Case) -> Answer {
    case.script(s);
    let answer = case.via_gateway(s).await;
    assert_no_credential(&answer, &s.listed);
    match case.blocked {
        Blocked::Json => assert_identity_disabled(&answer),
        Blocked::Browser => assert_disabled_page(&answer),
    }
    assert_revoked(&s.fake, &s.listed, case.revocation).await;
    let m = s.metrics();
    assert_eq!(
        metric(
            &m,
            &format!(
                "kratos_gate_blocked_total{{kind=\"{}\",mode=\"enforce\"}}",
                case.kind
            )
        ),
        1.0,
        "{m}"
    );
    answer
}

/// The unlisted identity gets exactly what Kratos answered.
async fn unlisted_passes_unchanged(s: &Setup, case: Case) -> Answer {
    case.script(s);
    let via = case.via_gateway(s).await;
    let direct = case.direct(s).await;
    assert_same_as_upstream(&via, &direct);
    s.assert_nothing_blocked();
    via
}

fn assert_csrf_cookie_kept(answer: &Answer) {
    assert_eq!(answer.set_cookies(), vec![CSRF_SET_COOKIE.to_owned()]);
}

// ---------------------------------------------------------------------------
// Native login (session token in the body, identity in the body)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn native_login_token_is_withheld_from_listed_identity() {
    let s = setup().await;
    listed_gets_nothing(&s, native_login(&s.listed)).await;
    // The body named the owner: no lookup was needed.
    assert!(s
        .fake
        .calls_matching(Side::Admin, Method::GET, "/admin/sessions")
        .is_empty());
}

#[tokio::test]
async fn native_login_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    let a = unlisted_passes_unchanged(&s, native_login(&s.unlisted)).await;
    assert_eq!(a.json()["session_token"], s.unlisted.token.as_str());
}

#[tokio::test]
async fn native_login_refresh_does_not_keep_listed_session_alive() {
    let s = setup().await;
    listed_gets_nothing(&s, native_login_refresh(&s.listed)).await;
    // The refreshed session (same id, same token) is dead: whoami says "no session".
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("x-session-token", s.listed.token.as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
}

#[tokio::test]
async fn native_login_refresh_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, native_login_refresh(&s.unlisted)).await;
}

#[tokio::test]
async fn native_login_pending_second_factor_is_attributed_by_admin_lookup_and_withheld() {
    let s = setup().await;
    // Kratos's whoami would answer 403 aal2 for this token.
    s.fake.add_session(s.listed.spec().aal2_pending());
    listed_gets_nothing(&s, native_login_aal2_pending(&s.listed)).await;
    let lookup = s
        .fake
        .wait_for_call(
            Side::Admin,
            Method::GET,
            &format!("/admin/sessions/{}", s.listed.session),
            support::enforcement::WAIT,
        )
        .await
        .expect("owner looked up at the admin API");
    assert_eq!(lookup.query_params("expand"), vec!["identity".to_owned()]);
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_attribution_lookups_total{source=\"admin\",result=\"found\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn native_login_pending_second_factor_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    s.fake.add_session(s.unlisted.spec().aal2_pending());
    let a = unlisted_passes_unchanged(&s, native_login_aal2_pending(&s.unlisted)).await;
    assert!(a.json()["session"]["identity"].is_null());
}

// ---------------------------------------------------------------------------
// SPA login (Set-Cookie + session JSON; 422 with Set-Cookie)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn spa_login_cookie_is_withheld_from_listed_identity() {
    let s = setup().await;
    let a = listed_gets_nothing(&s, spa_login(&s.listed)).await;
    assert_csrf_cookie_kept(&a);
}

#[tokio::test]
async fn spa_login_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    let a = unlisted_passes_unchanged(&s, spa_login(&s.unlisted)).await;
    assert_eq!(a.set_cookies().len(), 2);
}

#[tokio::test]
async fn spa_login_422_cookie_of_listed_identity_is_withheld_via_identifier_lookup() {
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    let a = listed_gets_nothing(&s, spa_login_422(&s.listed)).await;
    assert_csrf_cookie_kept(&a);
    // whoami said aal2 required, so the submitted identifier was resolved.
    let whoami = s
        .fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami");
    assert_eq!(whoami.len(), 1);
    assert_eq!(
        whoami[0].header("cookie"),
        Some(s.listed.cookie_header().as_str())
    );
    let by_identifier = s
        .fake
        .calls_matching(Side::Admin, Method::GET, "/admin/identities");
    assert_eq!(by_identifier.len(), 1, "one identifier lookup");
    assert_eq!(
        by_identifier[0].query_param("credentials_identifier"),
        Some(s.listed.email.clone())
    );
}

#[tokio::test]
async fn spa_login_422_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    s.fake.add_session(s.unlisted.spec().aal2_pending());
    let a = unlisted_passes_unchanged(&s, spa_login_422(&s.unlisted)).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}

// ---------------------------------------------------------------------------
// Browser form login (303 with only Set-Cookie)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn browser_form_login_cookie_is_withheld_from_listed_identity() {
    let s = setup().await;
    let a = listed_gets_nothing(&s, browser_form_login(&s.listed)).await;
    assert_csrf_cookie_kept(&a);
    let whoami = s
        .fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami");
    assert_eq!(
        whoami[0].header("cookie"),
        Some(s.listed.cookie_header().as_str()),
        "attributed by asking whoami with the new cookie"
    );
}

#[tokio::test]
async fn browser_form_login_of_listed_identity_is_sent_to_the_configured_page() {
    let s = setup_with(|c| {
        c.enforcement.browser_redirect = Some(DISABLED_PAGE.parse().expect("uri"));
    })
    .await;
    let case = browser_form_login(&s.listed);
    case.script(&s);
    let a = case.via_gateway(&s).await;
    assert_no_credential(&a, &s.listed);
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        a.headers.get("location").and_then(|v| v.to_str().ok()),
        Some(DISABLED_PAGE)
    );
    assert_revoked(&s.fake, &s.listed, Revocation::IdentitySessions).await;
}

#[tokio::test]
async fn browser_form_login_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    let a = unlisted_passes_unchanged(&s, browser_form_login(&s.unlisted)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.set_cookies().len(), 2);
}

// ---------------------------------------------------------------------------
// Registration with the session hook
// ---------------------------------------------------------------------------

#[tokio::test]
async fn native_registration_token_is_withheld_from_listed_identity() {
    let s = setup().await;
    listed_gets_nothing(&s, native_registration(&s.listed)).await;
}

#[tokio::test]
async fn native_registration_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, native_registration(&s.unlisted)).await;
}

#[tokio::test]
async fn spa_registration_cookie_is_withheld_from_listed_identity() {
    let s = setup().await;
    let a = listed_gets_nothing(&s, spa_registration(&s.listed)).await;
    assert_csrf_cookie_kept(&a);
}

#[tokio::test]
async fn spa_registration_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, spa_registration(&s.unlisted)).await;
}

// ---------------------------------------------------------------------------
// Token exchange, recovery, OIDC callback, settings
// ---------------------------------------------------------------------------

#[tokio::test]
async fn token_exchange_token_is_withheld_from_listed_identity() {
    let s = setup().await;
    listed_gets_nothing(&s, token_exchange(&s.listed)).await;
}

#[tokio::test]
async fn token_exchange_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, token_exchange(&s.unlisted)).await;
}

#[tokio::test]
async fn native_recovery_continue_with_token_is_withheld_from_listed_identity() {
    let s = setup().await;
    listed_gets_nothing(&s, native_recovery(&s.listed)).await;
    let whoami = s
        .fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami");
    assert_eq!(
        whoami[0].header("x-session-token"),
        Some(s.listed.token.as_str()),
        "attributed by asking whoami with the continue_with token"
    );
}

#[tokio::test]
async fn native_recovery_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, native_recovery(&s.unlisted)).await;
}

#[tokio::test]
async fn oidc_callback_cookie_is_withheld_from_listed_identity() {
    let s = setup().await;
    let a = listed_gets_nothing(&s, oidc_callback(&s.listed)).await;
    assert_csrf_cookie_kept(&a);
}

#[tokio::test]
async fn oidc_callback_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    let a = unlisted_passes_unchanged(&s, oidc_callback(&s.unlisted)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn settings_cookie_reissue_is_withheld_from_listed_identity() {
    let s = setup().await;
    listed_gets_nothing(&s, settings_reissue(&s.listed)).await;
    // The flow's id is not a session id: nothing may be "revoked" under it.
    assert!(s
        .fake
        .calls_matching(
            Side::Admin,
            Method::DELETE,
            &format!("/admin/sessions/{FLOW}")
        )
        .is_empty());
}

#[tokio::test]
async fn settings_cookie_reissue_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    unlisted_passes_unchanged(&s, settings_reissue(&s.unlisted)).await;
}

// ---------------------------------------------------------------------------
// The identifier fallback reads what Kratos reads
// ---------------------------------------------------------------------------

/// Kratos's password login schema takes `password_identifier` (deprecated, still in the SDK
/// model) instead of `identifier`; Kratos logs in with whichever is set.
#[tokio::test]
async fn spa_login_422_with_password_identifier_of_listed_identity_is_withheld() {
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    let mut case = spa_login_422(&s.listed);
    case.body = serde_json::json!({"method": "password",
        "password_identifier": s.listed.email, "password": "correct horse"})
    .to_string();
    let a = listed_gets_nothing(&s, case).await;
    assert_csrf_cookie_kept(&a);
}

#[tokio::test]
async fn browser_form_login_to_second_factor_with_password_identifier_of_listed_identity_is_withheld(
) {
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    let mut case = browser_form_login(&s.listed);
    case.body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", "q1w2e3r4t5y6u7i8o9p0")
        .append_pair("method", "password")
        .append_pair("password_identifier", &s.listed.email)
        .append_pair("password", "correct horse")
        .finish();
    case.reply = with_cookies(
        Reply::empty(303).header(
            "location",
            "https://auth.example.com/self-service/login/browser?aal=aal2",
        ),
        &s.listed,
    );
    listed_gets_nothing(&s, case).await;
}

#[tokio::test]
async fn browser_form_login_to_second_factor_passes_unchanged_for_unlisted_identity() {
    let s = setup().await;
    s.fake.add_session(s.unlisted.spec().aal2_pending());
    let mut case = browser_form_login(&s.unlisted);
    case.reply = with_cookies(
        Reply::empty(303).header(
            "location",
            "https://auth.example.com/self-service/login/browser?aal=aal2",
        ),
        &s.unlisted,
    );
    unlisted_passes_unchanged(&s, case).await;
}

/// Kratos picks its decoder by media type alone (`httpx.HasContentType`); a parameter that
/// merely mentions "json" does not make a form body JSON.
#[tokio::test]
async fn browser_form_login_to_second_factor_with_odd_content_type_parameter_is_withheld() {
    let s = setup().await;
    s.fake.add_session(s.listed.spec().aal2_pending());
    let mut case = browser_form_login(&s.listed);
    case.headers = owned(&[
        (
            "content-type",
            "application/x-www-form-urlencoded; profile=json",
        ),
        ("accept", "text/html"),
    ]);
    case.reply = with_cookies(
        Reply::empty(303).header(
            "location",
            "https://auth.example.com/self-service/login/browser?aal=aal2",
        ),
        &s.listed,
    );
    listed_gets_nothing(&s, case).await;
}

/// Kratos reads login bodies up to 5 MB; the gateway copies only
/// `inspection.login_body_limit_bytes` of them. When the identifier is needed but sits in a
/// body too large to copy, the session must not leave unattributed.
#[tokio::test]
async fn login_to_second_factor_with_oversized_request_body_gets_no_cookie() {
    let s = setup().await;
    for p in [s.listed.clone(), s.unlisted.clone()] {
        s.fake.add_session(p.spec().aal2_pending());
        let mut case = spa_login_422(&p);
        case.body = serde_json::json!({"method": "password", "identifier": p.email,
            "password": "correct horse", "transient_payload": {"pad": "p".repeat(64 * 1024)}})
        .to_string();
        case.script(&s);
        let a = case.via_gateway(&s).await;
        assert_no_credential(&a, &p);
        assert!(
            a.status.is_client_error() || a.status.is_server_error(),
            "{}: {}",
            a.status,
            a.text()
        );
        assert!(a.json()["error"]["message"].is_string(), "{}", a.text());
    }
}

// ---------------------------------------------------------------------------
// Audit
// ---------------------------------------------------------------------------

#[tokio::test]
async fn blocks_lookups_and_revocations_are_counted_on_the_ops_metrics_endpoint() {
    let s = setup().await;
    listed_gets_nothing(&s, browser_form_login(&s.listed)).await;
    assert!(
        support::enforcement::wait_until(support::enforcement::WAIT, || metric(
            &s.metrics(),
            "kratos_gate_revocations_total{result=\"success\"}"
        ) == 1.0)
        .await
    );
    let m = send(Method::GET, &s.gw.ops_url("/metrics"), &[], "").await;
    assert_eq!(m.status, StatusCode::OK);
    let text = m.text();
    for (line, value) in [
        (
            "kratos_gate_blocked_total{kind=\"login\",mode=\"enforce\"}",
            1.0,
        ),
        ("kratos_gate_revocations_total{result=\"success\"}", 1.0),
        (
            "kratos_gate_attribution_lookups_total{source=\"whoami\",result=\"found\"}",
            1.0,
        ),
        // The whoami call and the revocation attempt were timed.
        (
            "kratos_gate_kratos_lookup_duration_seconds_count{source=\"whoami\"}",
            1.0,
        ),
        ("kratos_gate_revocation_duration_seconds_count", 1.0),
    ] {
        assert_eq!(metric(&text, line), value, "{line}\n{text}");
    }
    assert!(
        !text.contains(&s.listed.id()),
        "identity ids are not metric labels"
    );
}
