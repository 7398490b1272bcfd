//! Attacks that turn the client's own bytes into work or leaks: Kratos echoes the submitted
//! `transient_payload` (CONTRACT.md section 14), so one request can put thousands of
//! token- or session-shaped objects into an answer the gateway inspects, or a body the
//! gateway cannot read where it needs the login identifier. Also response framing and
//! header tricks around the session credential, and admin routes on the public port.

use crate::support;

use std::io::Read as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, blocklist_with_reason, login_form, send,
    session_set_cookies, setup, wait_until, Person, Setup, CSRF_SET_COOKIE, FORM, JSON, WAIT,
};
use support::fake_kratos::{
    fresh_cookie_value, fresh_token, fresh_uuid, FakeKratos, Reply, Side, SESSION_COOKIE,
};
use support::fixtures;
use support::flows::{recovery, recovery_code_sent, Flow, FlowType};
use support::gateway::start_gateway_with;
use support::raw::{assert_no_credential_bytes, exchange};
use support::raw_upstream::RawUpstream;

/// A new session of `p`'s identity.
fn new_session_of(p: &Person) -> Person {
    Person {
        identity: p.identity,
        session: fresh_uuid(),
        token: fresh_token(),
        cookie: fresh_cookie_value(),
        email: p.email.clone(),
    }
}

/// Scripts Kratos's "code sent" recovery answer (which echoes the payload) and returns the
/// submission path.
fn script_code_sent(s: &Setup) -> String {
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake
        .on_public("POST", "/self-service/recovery", recovery_code_sent(flow));
    path
}

fn recovery_body(payload: &str) -> String {
    format!(r#"{{"method":"code","email":"someone@example.org","transient_payload":{payload}}}"#)
}

/// The gateway's own calls to Kratos since the fake's call log was cleared, after a pause
/// for anything queued: (whoami calls, admin calls).
async fn gateway_calls(s: &Setup) -> (usize, usize) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    (
        s.fake
            .calls_matching(Side::Public, "ANY", "/sessions/whoami")
            .len(),
        s.fake.calls_matching(Side::Admin, "ANY", "/").len(),
    )
}

fn assert_no_revocation(s: &Setup) {
    let deletes = s.fake.calls_matching(Side::Admin, Method::DELETE, "/");
    assert!(
        deletes.is_empty(),
        "a revocation reached Kratos: {:?}",
        deletes
            .iter()
            .map(|c| c.uri.to_string())
            .collect::<Vec<_>>()
    );
}

/// 5,000 distinct `{"session_token":"ory_st_…"}` objects in the echoed payload cost Kratos
/// at most 2 calls (whoami and admin API together), and no token-looking string reaches the
/// client (failing closed is expected).
#[tokio::test]
async fn five_thousand_echoed_tokens_do_not_make_five_thousand_kratos_calls() {
    let s = setup().await;
    let path = script_code_sent(&s);
    let items: Vec<String> = (0..5_000)
        .map(|_| format!(r#"{{"session_token":"{}"}}"#, fresh_token()))
        .collect();
    let payload = format!(r#"{{"t":[{}]}}"#, items.join(","));
    s.fake.clear_calls();
    let answer = send(
        Method::POST,
        &s.public(&path),
        &JSON,
        &recovery_body(&payload),
    )
    .await;
    let (whoami, admin) = gateway_calls(&s).await;
    assert!(
        whoami + admin <= 2,
        "one request made Kratos answer {whoami} whoami and {admin} admin calls"
    );
    assert!(
        !answer.text().contains("ory_st_"),
        "token-looking strings left the gateway with status {}",
        answer.status
    );
    assert_no_revocation(&s);
}

/// 5,000 copies of the same `{"session_token":"x"}` are one credential: at most one whoami.
#[tokio::test]
async fn one_echoed_token_repeated_is_checked_at_most_once() {
    let s = setup().await;
    let path = script_code_sent(&s);
    let payload = format!(
        r#"{{"t":[{}]}}"#,
        vec![r#"{"session_token":"x"}"#; 5_000].join(",")
    );
    s.fake.clear_calls();
    let _answer = send(
        Method::POST,
        &s.public(&path),
        &JSON,
        &recovery_body(&payload),
    )
    .await;
    let (whoami, _) = gateway_calls(&s).await;
    assert!(whoami <= 1, "the same token was checked {whoami} times");
    assert_no_revocation(&s);
}

/// 2,000 session-shaped objects (random ids, `"identity": null` like a pending second
/// factor) in the echoed payload are the client's words, not Kratos's: no admin session
/// lookup, no revocation, and the answer passes unchanged.
#[tokio::test]
async fn echoed_session_objects_cause_no_admin_lookups() {
    let s = setup().await;
    let path = script_code_sent(&s);
    let items: Vec<String> = (0..2_000)
        .map(|_| {
            format!(
                r#"{{"session":{{"id":"{}","active":true,"expires_at":"2026-12-05T10:00:00Z","authenticated_at":"2026-12-04T10:00:00Z","authenticator_assurance_level":"aal1","identity":null}}}}"#,
                fresh_uuid()
            )
        })
        .collect();
    let payload = format!(r#"{{"s":[{}]}}"#, items.join(","));
    let body = recovery_body(&payload);
    s.fake.clear_calls();
    let via = send(Method::POST, &s.public(&path), &JSON, &body).await;
    let lookups = s
        .fake
        .calls_matching(Side::Admin, Method::GET, "/admin/sessions");
    assert_eq!(lookups.len(), 0, "admin session lookups for echoed ids");
    let direct = send(Method::POST, &s.direct(&path), &JSON, &body).await;
    assert_eq!(via.status, StatusCode::OK, "{}", head(&via));
    assert_eq!(via.body, direct.body, "Kratos's answer was changed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_revocation(&s);
}

/// A 1 MB recovery submission whose payload is ~340,000 empty objects, echoed back: there is
/// no credential, so Kratos's bytes pass unchanged, within a few seconds.
#[tokio::test]
async fn a_megabyte_of_empty_objects_passes_quickly() {
    let s = setup().await;
    let path = script_code_sent(&s);
    let payload = format!(r#"{{"x":[{}]}}"#, vec!["{}"; 340_000].join(","));
    let body = recovery_body(&payload);
    assert!(body.len() > 1_000_000);
    let started = Instant::now();
    let via = send(Method::POST, &s.public(&path), &JSON, &body).await;
    let took = started.elapsed();
    let direct = send(Method::POST, &s.direct(&path), &JSON, &body).await;
    assert_eq!(via.status, StatusCode::OK, "{}", head(&via));
    assert!(via.body == direct.body, "Kratos's answer was changed");
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_no_revocation(&s);
}

fn head(a: &Answer) -> String {
    a.text().chars().take(300).collect()
}

/// The listed identity's login with a second factor pending: Kratos answers the SPA with
/// 422 `browser_location_change_required` and sets the session cookie; whoami on it is 403
/// `session_aal2_required`.
fn script_spa_login_422(s: &Setup) -> Person {
    let pending = new_session_of(&s.listed);
    s.fake.add_session(pending.spec().aal2_pending());
    s.fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(422, fixtures::spa_login_422_body())
            .header("ory-error-id", "browser_location_change_required")
            .header("set-cookie", CSRF_SET_COOKIE)
            .header("set-cookie", &pending.set_cookie()),
    );
    pending
}

fn assert_no_session_cookie_and_refused(answer: &Answer, p: &Person, what: &str) {
    assert!(
        session_set_cookies(answer).is_empty(),
        "{what}: the session cookie left with status {}: {:?}",
        answer.status,
        answer.set_cookies()
    );
    assert_no_credential(answer, p);
    assert!(
        !answer.status.is_success() && answer.status != StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: status {}",
        answer.status
    );
}

/// Kratos reads the first JSON value of a body and ignores what follows; the identifier of
/// an SPA login with trailing bytes (a second JSON value naming someone else, or garbage) is
/// still the listed one, so the AAL1 cookie of the 422 answer does not leave.
#[tokio::test]
async fn login_body_with_trailing_bytes_still_names_the_listed_identity() {
    let s = setup().await;
    let first = format!(
        r#"{{"identifier":"{}","password":"x","method":"password"}}"#,
        s.listed.email
    );
    for body in [
        format!(r#"{first} {{"identifier":"someone@else.example"}}"#),
        format!("{first}garbage"),
    ] {
        // A fresh first-factor session each time (the last one was revoked).
        let pending = script_spa_login_422(&s);
        let answer = send(
            Method::POST,
            &s.public("/self-service/login?flow=f"),
            &JSON,
            &body,
        )
        .await;
        assert_no_session_cookie_and_refused(&answer, &pending, &body);
        // Its revocation lands before the next attempt scripts a new session.
        assert!(
            wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()).await,
            "{body}: the listed identity's sessions were not revoked"
        );
    }
}

/// The identifier followed by a member nested 3,000 levels deep (Go's decoder reads up to
/// 10,000): the AAL1 cookie of the listed identity does not leave (403 or 400).
#[tokio::test]
async fn login_body_with_deep_nesting_still_names_the_listed_identity() {
    let s = setup().await;
    let pending = script_spa_login_422(&s);
    let body = format!(
        r#"{{"identifier":"{}","password":"x","method":"password","x":{}{}}}"#,
        s.listed.email,
        "[".repeat(3_000),
        "]".repeat(3_000)
    );
    let answer = send(
        Method::POST,
        &s.public("/self-service/login?flow=f"),
        &JSON,
        &body,
    )
    .await;
    assert_no_session_cookie_and_refused(&answer, &pending, "3,000 levels");
}

/// A whoami 403 that is not Kratos's `session_aal2_required` (an HTML page from an edge in
/// between) says nothing about the session: the browser form login's cookie of the listed
/// identity does not leave, and the gateway fails closed (5xx).
#[tokio::test]
async fn html_403_from_whoami_is_not_a_pending_second_factor() {
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::raw(403, "<html>Forbidden</html>").header("content-type", "text/html"),
    );
    s.fake.on_public(
        "POST",
        "/self-service/login",
        Reply::empty(303)
            .header("location", "https://app.example.com/dashboard")
            .header("set-cookie", CSRF_SET_COOKIE)
            .header("set-cookie", &s.listed.set_cookie()),
    );
    let answer = send(
        Method::POST,
        &s.public("/self-service/login?flow=f"),
        &FORM,
        &login_form(&s.listed.email),
    )
    .await;
    assert_no_credential(&answer, &s.listed);
    assert!(
        answer.status.is_server_error(),
        "status {}: {}",
        answer.status,
        head(&answer)
    );
}

/// The same edge 403 on an OIDC callback, where there is no submitted identifier to fall
/// back on: the listed identity's cookie does not leave (5xx), rather than passing as "not
/// yet a full session".
#[tokio::test]
async fn html_403_from_whoami_on_an_oidc_callback_does_not_let_the_cookie_pass() {
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::raw(403, "<html>Forbidden</html>").header("content-type", "text/html"),
    );
    s.fake.on_public(
        "GET",
        "/self-service/methods/oidc/callback/google",
        Reply::empty(303)
            .header("location", "https://app.example.com/dashboard")
            .header("set-cookie", CSRF_SET_COOKIE)
            .header("set-cookie", &s.listed.set_cookie()),
    );
    let answer = send(
        Method::GET,
        &s.public("/self-service/methods/oidc/callback/google?code=c&state=st"),
        &[("accept", "text/html")],
        "",
    )
    .await;
    assert_no_credential(&answer, &s.listed);
    assert!(
        answer.status.is_server_error(),
        "status {}: {}",
        answer.status,
        head(&answer)
    );
}

/// Native recovery of a listed identity that has a second factor: the recovery session is
/// AAL1, whoami on its token is 403 `session_aal2_required`, and the code step carries no
/// identifier. The token still does not leave (403 `identity_disabled`) and the session is
/// revoked.
#[tokio::test]
async fn native_recovery_of_listed_identity_with_second_factor_gets_no_token() {
    let s = setup().await;
    let recovered = new_session_of(&s.listed);
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, recovered.spec().aal2_pending()),
    );
    let sent = send(
        Method::POST,
        &s.public(&path),
        &JSON,
        &format!(r#"{{"method":"code","email":"{}"}}"#, s.listed.email),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", head(&sent));
    let answer = send(
        Method::POST,
        &s.public(&path),
        &JSON,
        r#"{"method":"code","code":"123456"}"#,
    )
    .await;
    assert_no_credential(&answer, &recovered);
    assert_identity_disabled(&answer);
    assert!(
        wait_until(WAIT, || s
            .fake
            .session_status(recovered.session)
            .is_none_or(|st| st.revoked))
        .await,
        "the recovery session is still alive"
    );
}

/// The same for an unlisted identity with a second factor passes unchanged.
#[tokio::test]
async fn native_recovery_of_unlisted_identity_with_second_factor_passes() {
    let s = setup().await;
    let recovered = new_session_of(&s.unlisted);
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, recovered.spec().aal2_pending()),
    );
    let body = r#"{"method":"code","code":"123456"}"#;
    let via = send(Method::POST, &s.public(&path), &JSON, body).await;
    let direct = send(Method::POST, &s.direct(&path), &JSON, body).await;
    assert_eq!(via.status, StatusCode::OK, "{}", head(&via));
    assert_eq!(via.body, direct.body);
    assert!(via.text().contains(&recovered.token));
    s.assert_nothing_blocked();
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// `Transfer-Encoding: gzip, chunked` from upstream: the body is a gzip-compressed native
/// login of the listed identity. Whatever the gateway does with the transfer coding, the
/// token does not reach the client, compressed or not.
#[tokio::test]
async fn gzip_transfer_coding_does_not_hide_a_token() {
    let fake = FakeKratos::start().await;
    let listed = Person::new("listed");
    fake.add_session(listed.spec());
    let login = fixtures::native_login_body(listed.identity, listed.session, &listed.token);
    let whoami = fixtures::whoami_body(listed.identity, listed.session, None);
    let identity = listed.id();
    let raw = RawUpstream::start(move |req| {
        if req.target.starts_with("/sessions/whoami") {
            return vec![format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nX-Kratos-Authenticated-Identity-Id: {identity}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{whoami}",
                whoami.len()
            )
            .into_bytes()];
        }
        let data = gzip(login.as_bytes());
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n".to_vec();
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n0\r\n\r\n");
        vec![out]
    })
    .await;
    let gw = start_gateway_with(
        &raw.url(),
        &fake.admin_url(),
        &blocklist_with_reason(&listed),
        |_| {},
    )
    .await;
    let body = r#"{"method":"password","identifier":"a@b.example","password":"x"}"#;
    let (resp, _) = tokio::time::timeout(
        WAIT,
        exchange(
            gw.public,
            format!(
                "POST /self-service/login?flow=f HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        ),
    )
    .await
    .expect("answer within the bounded wait");
    assert_no_credential_bytes(&resp.raw, &listed);
    let mut decoded = Vec::new();
    if resp.body.starts_with(&[0x1f, 0x8b]) {
        let _ = flate2::read::MultiGzDecoder::new(&resp.body[..]).read_to_end(&mut decoded);
    }
    assert_no_credential_bytes(&decoded, &listed);
    gw.shutdown().await;
}

/// One `Set-Cookie` line holding two cookies joined with a comma (`csrf…, ory_kratos_session=…`):
/// clients that split such lines would get the listed identity's session cookie, so its
/// value does not leave.
#[tokio::test]
async fn session_cookie_folded_into_another_set_cookie_line_does_not_leave() {
    let s = setup().await;
    s.fake.on_public(
        "POST",
        "/self-service/login",
        Reply::empty(303)
            .header("location", "https://app.example.com/dashboard")
            .header(
                "set-cookie",
                &format!(
                    "csrf_token_x=1; Path=/, {SESSION_COOKIE}={}; Path=/",
                    s.listed.cookie
                ),
            ),
    );
    let answer = send(
        Method::POST,
        &s.public("/self-service/login?flow=f"),
        &FORM,
        &login_form(&s.listed.email),
    )
    .await;
    for (name, value) in &answer.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains(&s.listed.cookie),
            "the listed identity's session cookie left in {name}: {value}"
        );
    }
    assert!(!answer.text().contains(&s.listed.cookie));
}

/// `GET /identities` and `GET /identities/{id}` on the public listener: Kratos would answer
/// 307 to its admin URL. The gateway answers 404 in Kratos's error shape itself; nothing is
/// forwarded and no admin URL is revealed.
#[tokio::test]
async fn identities_routes_on_the_public_listener_are_not_forwarded() {
    let s = setup().await;
    s.fake.clear_calls();
    for path in [
        "/identities".to_owned(),
        format!("/identities/{}", s.listed.identity),
    ] {
        let answer = send(Method::GET, &s.public(&path), &[], "").await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{path}: {}",
            head(&answer)
        );
        assert!(
            answer.headers.get("location").is_none(),
            "{path}: Location {:?}",
            answer.headers.get("location")
        );
        assert_eq!(answer.json()["error"]["code"], 404, "{path}");
        assert!(!answer.text().contains(&s.fake.admin_url()));
    }
    assert!(
        s.fake.calls_matching(Side::Public, "ANY", "/").is_empty(),
        "forwarded to Kratos: {:?}",
        s.fake
            .calls()
            .iter()
            .map(|c| c.uri.to_string())
            .collect::<Vec<_>>()
    );
}
