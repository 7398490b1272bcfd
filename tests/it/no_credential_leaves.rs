//! Guarantee 1: no session credential leaves the gateway for a listed identity.
//!
//! One pair of tests per credential-bearing response kind of CONTRACT.md section 4: for the
//! listed identity the credential is withheld, the client gets Kratos's error shape (or the
//! browser answer), and the session Kratos just created is revoked at the admin API; for an
//! unlisted identity the response is Kratos's, byte for byte.

use crate::support;

use http::{Method, StatusCode};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_disabled_page, assert_identity_disabled, assert_no_credential, assert_revoked,
    assert_same_as_upstream, login_form, login_json, metric, send, setup, setup_with, Person,
    Revocation, Setup, CSRF_SET_COOKIE, FORM, JSON,
};
use support::fake_kratos::{Reply, Side};
use support::fixtures::{self, Json};

const FLOW: &str = "2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";
const DASHBOARD: &str = "https://app.example.com/dashboard";
const DISABLED_PAGE: &str = "https://app.example.com/account-disabled";

/// How the gateway must answer a listed identity.
#[derive(Clone, Copy, Debug)]
enum Blocked {
    /// 403 `identity_disabled` JSON.
    Json,
    /// The browser answer (403 HTML page, or 303 to `enforcement.browser_redirect`).
    Browser,
}

/// One credential-bearing exchange: the client's request and Kratos's answer for a person.
struct Case {
    method: Method,
    /// Path (with query) the client asks for.
    path: String,
    headers: Vec<(&'static str, String)>,
    body: String,
    reply: Reply,
    blocked: Blocked,
    revocation: Revocation,
    /// `kratos_gate_blocked_total{kind=…}`.
    kind: &'static str,
}

impl Case {
    fn script(&self, s: &Setup) {
        let route = self.path.split('?').next().unwrap_or_default();
        s.fake
            .on_public(self.method.clone(), route, self.reply.clone());
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    async fn via_gateway(&self, s: &Setup) -> Answer {
        send(
            self.method.clone(),
            &s.public(&self.path),
            &self.headers(),
            &self.body,
        )
        .await
    }

    async fn direct(&self, s: &Setup) -> Answer {
        send(
            self.method.clone(),
            &s.direct(&self.path),
            &self.headers(),
            &self.body,
        )
        .await
    }
}

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

fn owned(headers: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn with_cookies(reply: Reply, p: &Person) -> Reply {
    reply
        .header("set-cookie", CSRF_SET_COOKIE)
        .header("set-cookie", &p.set_cookie())
}

fn assert_csrf_cookie_kept(answer: &Answer) {
    assert_eq!(answer.set_cookies(), vec![CSRF_SET_COOKIE.to_owned()]);
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

fn native_login(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/login?flow={FLOW}"),
        headers: owned(&JSON),
        body: login_json(&p.email),
        reply: Reply::json(
            200,
            fixtures::native_login_body(p.identity, p.session, &p.token),
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "login",
    }
}

/// `refresh=true` keeps the session id and token (CONTRACT.md 4.1): the app re-authenticates
/// with its existing token.
fn native_login_refresh(p: &Person) -> Case {
    let mut case = native_login(p);
    case.path = format!("/self-service/login?flow={FLOW}&refresh=true");
    case.headers.push(("x-session-token", p.token.clone()));
    case
}

fn native_login_aal2_pending(p: &Person) -> Case {
    Case {
        reply: Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        ),
        ..native_login(p)
    }
}

fn spa_login(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(200, fixtures::spa_login_body(p.identity, p.session)),
            p,
        ),
        ..native_login(p)
    }
}

fn spa_login_422(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(422, fixtures::spa_login_422_body())
                .header("ory-error-id", "browser_location_change_required"),
            p,
        ),
        revocation: Revocation::IdentitySessions,
        ..native_login(p)
    }
}

fn browser_form_login(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/login?flow={FLOW}"),
        headers: owned(&FORM),
        body: login_form(&p.email),
        reply: with_cookies(Reply::empty(303).header("location", DASHBOARD), p),
        blocked: Blocked::Browser,
        revocation: Revocation::IdentitySessions,
        kind: "login",
    }
}

fn native_registration(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/registration?flow={FLOW}"),
        headers: owned(&JSON),
        body: serde_json::json!({"method": "password", "password": "correct horse",
            "traits": {"email": p.email}})
        .to_string(),
        reply: Reply::json(
            200,
            fixtures::native_registration_body(p.identity, p.session, &p.token),
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "registration",
    }
}

fn spa_registration(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(200, fixtures::spa_registration_body(p.identity, p.session)),
            p,
        ),
        ..native_registration(p)
    }
}

fn token_exchange(p: &Person) -> Case {
    Case {
        method: Method::GET,
        path: "/sessions/token-exchange?init_code=a1b2c3&return_to_code=d4e5f6".to_owned(),
        headers: owned(&[("accept", "application/json")]),
        body: String::new(),
        reply: Reply::json(
            200,
            fixtures::token_exchange_body(p.identity, p.session, &p.token),
        )
        .header(
            "cache-control",
            "private, no-cache, no-store, must-revalidate",
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "token_exchange",
    }
}

fn native_recovery(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/recovery?flow={FLOW}"),
        headers: owned(&JSON),
        body: r#"{"method":"code","code":"482910"}"#.to_owned(),
        reply: Reply::json(200, fixtures::native_recovery_body(&p.token)),
        blocked: Blocked::Json,
        revocation: Revocation::IdentitySessions,
        kind: "recovery",
    }
}

fn oidc_callback(p: &Person) -> Case {
    Case {
        method: Method::GET,
        path: "/self-service/methods/oidc/callback/google?code=4%2F0AbCd&state=xyz".to_owned(),
        headers: owned(&[("accept", "text/html")]),
        body: String::new(),
        reply: with_cookies(
            Reply::raw(303, format!("<a href=\"{DASHBOARD}\">See Other</a>.\n\n"))
                .header("content-type", "text/html; charset=utf-8")
                .header("location", DASHBOARD),
            p,
        ),
        blocked: Blocked::Browser,
        revocation: Revocation::IdentitySessions,
        kind: "login",
    }
}

/// A browser settings flow answered as JSON (SPA) after a successful submit: the flow object
/// (which carries the `identity`) and a re-issued session cookie (CONTRACT.md 4.5).
fn settings_flow_body(p: &Person) -> String {
    let session = fixtures::session_json(p.identity, p.session, Some(&p.email));
    let identity = session.get("identity").cloned().expect("identity");
    Json::Object(vec![
        ("id".into(), Json::str(FLOW)),
        ("type".into(), Json::str("browser")),
        ("expires_at".into(), Json::str("2026-08-01T11:00:00Z")),
        ("issued_at".into(), Json::str("2026-08-01T10:00:00Z")),
        (
            "request_url".into(),
            Json::str("https://auth.example.com/self-service/settings/browser"),
        ),
        ("active".into(), Json::str("password")),
        (
            "ui".into(),
            Json::Object(vec![
                (
                    "action".into(),
                    Json::str(format!(
                        "https://auth.example.com/self-service/settings?flow={FLOW}"
                    )),
                ),
                ("method".into(), Json::str("POST")),
                ("nodes".into(), Json::Array(vec![])),
            ]),
        ),
        ("identity".into(), identity),
        ("state".into(), Json::str("success")),
        ("continue_with".into(), Json::Null),
    ])
    .to_wire()
}

fn settings_reissue(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/settings?flow={FLOW}"),
        headers: owned(&JSON),
        body: r#"{"method":"password","password":"a new correct horse"}"#.to_owned(),
        reply: Reply::json(200, settings_flow_body(p)).header("set-cookie", &p.set_cookie()),
        blocked: Blocked::Json,
        revocation: Revocation::IdentitySessions,
        kind: "settings",
    }
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
