//! Attacks on attribution through bytes the client wrote: Kratos echoes the submitted
//! `transient_payload` (any JSON) in every flow answer and the submitted fields in
//! `ui.nodes[].attributes.value` (CONTRACT.md section 14). Whatever the client put there must
//! neither vouch for a credential ("this token is someone else's") nor accuse anyone ("this
//! identity is listed, revoke it"). Also: blocklist entries for the same identity in enforce
//! and report mode, and extend paths with ids spelled the ways Kratos's uuid parser accepts.

use crate::support;

use std::time::Duration;

use http::{Method, StatusCode};
use kratos_gate::config::Config;

use support::client::{http1, request, send as send_request, Reply as Answer};
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, metric, send, setup, wait_until, Person, Setup,
    JSON, WAIT,
};
use support::fake_kratos::{
    fresh_cookie_value, fresh_token, fresh_uuid, FakeKratos, Side, SESSION_COOKIE,
};
use support::fixtures::WHOAMI_401_WIRE;
use support::flows::{recovery, recovery_code_sent, Flow, FlowType};
use support::gateway::{start_gateway_with, TestGateway};

/// A new session of `p`'s identity (what Kratos creates on a successful recovery).
fn new_session_of(p: &Person) -> Person {
    Person {
        identity: p.identity,
        session: fresh_uuid(),
        token: fresh_token(),
        cookie: fresh_cookie_value(),
        email: p.email.clone(),
    }
}

/// Waits until the session is revoked (or deleted) at the fake.
async fn assert_session_dies(fake: &FakeKratos, session: uuid::Uuid) {
    assert!(
        wait_until(WAIT, || fake
            .session_status(session)
            .is_none_or(|s| s.revoked))
        .await,
        "session {session} still alive at Kratos; admin calls: {:?}",
        admin_calls(fake)
    );
}

/// After a pause for anything queued, `p`'s session is still alive and nobody asked Kratos
/// to end it.
async fn assert_session_lives(fake: &FakeKratos, p: &Person) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = fake.session_status(p.session).expect("session registered");
    assert!(
        !status.revoked,
        "an innocent session was revoked; admin calls: {:?}",
        admin_calls(fake)
    );
    for path in [
        format!("/admin/sessions/{}", p.session),
        format!("/admin/identities/{}/sessions", p.identity),
    ] {
        assert!(
            fake.calls_matching(Side::Admin, Method::DELETE, &path)
                .is_empty(),
            "DELETE {path} reached Kratos"
        );
    }
}

fn admin_calls(fake: &FakeKratos) -> Vec<String> {
    fake.calls_matching(Side::Admin, "ANY", "/")
        .iter()
        .map(|c| format!("{} {}", c.method, c.uri))
        .collect()
}

/// A session object as Kratos writes one, naming `p`.
fn session_shaped(p: &Person) -> String {
    format!(
        r#"{{"session":{{"id":"{}","active":true,"expires_at":"2026-12-05T10:00:00Z","authenticated_at":"2026-12-04T10:00:00Z","authenticator_assurance_level":"aal1","identity":{{"id":"{}","state":"active","traits":{{"email":"{}"}}}}}}}}"#,
        p.session, p.identity, p.email
    )
}

fn payload_naming_another_identity() -> String {
    format!(r#"{{"identity":{{"id":"{}"}}}}"#, fresh_uuid())
}

const PAYLOAD_NAMING_AN_UNLISTED_ADDRESS: &str = r#"{"identity":{"traits":{"email":"someone@unlisted.example"}},"email":"someone@unlisted.example"}"#;

/// Recovery of the listed identity: the code step, with `payload` as `transient_payload`.
async fn recover_listed_with_payload(
    s: &Setup,
    flow_type: FlowType,
    payload: &str,
) -> (Answer, Person) {
    let recovered = new_session_of(&s.listed);
    let flow = Flow::new(flow_type);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, recovered.spec()),
    );
    let body = format!(r#"{{"method":"code","code":"123456","transient_payload":{payload}}}"#);
    let answer = send(Method::POST, &s.public(&path), &JSON, &body).await;
    (answer, recovered)
}

/// Native recovery (token in `continue_with`) of the listed identity with `payload`: the
/// token is withheld (403 `identity_disabled`), the new session is revoked, and the
/// attacker's (the unlisted identity's) session lives on.
async fn native_recovery_is_withheld(payload: impl FnOnce(&Setup) -> String) {
    let s = setup().await;
    let payload = payload(&s);
    let (answer, recovered) = recover_listed_with_payload(&s, FlowType::Api, &payload).await;
    assert_no_credential(&answer, &recovered);
    assert_identity_disabled(&answer);
    assert_session_dies(&s.fake, recovered.session).await;
    assert_session_lives(&s.fake, &s.unlisted).await;
}

/// The same for an SPA recovery that sets the session cookie: no session `Set-Cookie`
/// leaves (403), the new session is revoked, the attacker's session lives on.
async fn spa_recovery_is_withheld(payload: impl FnOnce(&Setup) -> String) {
    let s = setup().await;
    let payload = payload(&s);
    let (answer, recovered) = recover_listed_with_payload(&s, FlowType::Browser, &payload).await;
    assert_no_credential(&answer, &recovered);
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text());
    assert_session_dies(&s.fake, recovered.session).await;
    assert_session_lives(&s.fake, &s.unlisted).await;
}

/// Native recovery of a listed identity whose `transient_payload` is
/// `{"identity":{"id":"<another, unlisted id>"}}`: the echo does not vouch for the token.
#[tokio::test]
async fn native_recovery_payload_naming_another_identity_does_not_vouch_for_the_token() {
    native_recovery_is_withheld(|_| payload_naming_another_identity()).await;
}

/// Native recovery of a listed identity whose `transient_payload` names an unlisted address
/// (as identity traits and as `email`): the echo does not vouch for the token.
#[tokio::test]
async fn native_recovery_payload_naming_an_unlisted_address_does_not_vouch_for_the_token() {
    native_recovery_is_withheld(|_| PAYLOAD_NAMING_AN_UNLISTED_ADDRESS.to_owned()).await;
}

/// Native recovery of a listed identity whose `transient_payload` is a session object copied
/// from the attacker's own real session: the echo does not vouch for the token, and the
/// attacker's session is not revoked in its place.
#[tokio::test]
async fn native_recovery_payload_with_the_attackers_session_does_not_vouch_for_the_token() {
    native_recovery_is_withheld(|s| session_shaped(&s.unlisted)).await;
}

/// SPA recovery (session cookie) of a listed identity, payload naming another identity id.
#[tokio::test]
async fn spa_recovery_payload_naming_another_identity_does_not_vouch_for_the_cookie() {
    spa_recovery_is_withheld(|_| payload_naming_another_identity()).await;
}

/// SPA recovery (session cookie) of a listed identity, payload naming an unlisted address.
#[tokio::test]
async fn spa_recovery_payload_naming_an_unlisted_address_does_not_vouch_for_the_cookie() {
    spa_recovery_is_withheld(|_| PAYLOAD_NAMING_AN_UNLISTED_ADDRESS.to_owned()).await;
}

/// SPA recovery (session cookie) of a listed identity, payload with the attacker's session.
#[tokio::test]
async fn spa_recovery_payload_with_the_attackers_session_does_not_vouch_for_the_cookie() {
    spa_recovery_is_withheld(|s| session_shaped(&s.unlisted)).await;
}

/// Denial of service through the echo: with `email_domains: [evil.example]`, anyone can ask
/// for a recovery code for `x@evil.example` with a `transient_payload` holding a victim's
/// identity id. Kratos's "code sent" answer passes unchanged, nobody is counted as blocked,
/// and the victim's sessions live on (no `DELETE` reaches the admin API).
#[tokio::test]
async fn recovery_code_request_cannot_get_an_innocent_identity_revoked() {
    let fake = FakeKratos::start().await;
    let victim = Person::new("victim");
    fake.add_session(victim.spec());
    let gw = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        "email_domains:\n  - evil.example\n",
        |_| {},
    )
    .await;
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    fake.on_public("POST", "/self-service/recovery", recovery_code_sent(flow));
    let body = format!(
        r#"{{"method":"code","email":"x@evil.example","transient_payload":{{"identity":{{"id":"{}","traits":{{"email":"x@evil.example"}},"verifiable_addresses":[{{"value":"x@evil.example","via":"email"}}]}}}}}}"#,
        victim.identity
    );
    let via = send(Method::POST, &gw.public_url(&path), &JSON, &body).await;
    let direct = send(
        Method::POST,
        &format!("{}{path}", fake.public_url()),
        &JSON,
        &body,
    )
    .await;
    assert_eq!(via.status, StatusCode::OK, "{}", via.text());
    assert_eq!(via.body, direct.body, "Kratos's answer was changed");
    assert_session_lives(&fake, &victim).await;
    assert!(
        fake.calls_matching(Side::Admin, Method::DELETE, "/")
            .is_empty(),
        "a revocation reached Kratos: {:?}",
        admin_calls(&fake)
    );
    let m = gw.gateway().metrics().encode();
    assert_eq!(
        metric(&m, "kratos_gate_blocked_total{"),
        0.0,
        "something was counted as blocked:\n{m}"
    );
    gw.shutdown().await;
}

fn with_hooks(c: &mut Config) {
    c.listen.hooks = Some("127.0.0.1:0".parse().expect("addr"));
}

async fn hook_status(gw: &TestGateway, p: &Person) -> StatusCode {
    let addr = gw.gateway().hooks_addr.expect("hooks listener");
    let body = format!(
        r#"{{"identity":{{"id":"{}","schema_id":"default","traits":{{"email":"{}"}},"verifiable_addresses":[{{"value":"{}","via":"email"}}],"state":"active"}}}}"#,
        p.identity, p.email, p.email
    );
    send_request(
        &http1(),
        request(Method::POST, &format!("http://{addr}/hooks/kratos"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .expect("req"),
    )
    .await
    .status
}

/// A person whose address is in `evil.example`.
fn person_at_evil_example() -> Person {
    let mut p = Person::new("twice");
    p.email = format!(
        "twice-{}@evil.example",
        &p.identity.simple().to_string()[..8]
    );
    p
}

/// With `list` (made for `p`), whoami of `p` is Kratos's 401, `p`'s session is revoked, and
/// the web hook refuses `p`.
async fn enforced(p: &Person, list: &str) {
    let fake = FakeKratos::start().await;
    fake.add_session(p.spec());
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), list, with_hooks).await;
    let answer = send(
        Method::GET,
        &gw.public_url("/sessions/whoami"),
        &[("x-session-token", p.token.as_str())],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "list:\n{list}");
    assert_eq!(answer.text(), WHOAMI_401_WIRE, "list:\n{list}");
    assert_session_dies(&fake, p.session).await;
    assert_eq!(
        hook_status(&gw, p).await,
        StatusCode::FORBIDDEN,
        "web hook, list:\n{list}"
    );
    gw.shutdown().await;
}

/// An id listed enforced, then again with `mode: report`: the enforced entry wins.
#[tokio::test]
async fn enforced_id_entry_wins_over_a_later_report_entry() {
    let p = Person::new("twice");
    let id = p.identity;
    enforced(
        &p,
        &format!("identities:\n  - id: {id}\n  - id: {id}\n    mode: report\n"),
    )
    .await;
}

/// An id listed with `mode: report`, then again enforced: the enforced entry wins.
#[tokio::test]
async fn enforced_id_entry_wins_over_an_earlier_report_entry() {
    let p = Person::new("twice");
    let id = p.identity;
    enforced(
        &p,
        &format!("identities:\n  - id: {id}\n    mode: report\n  - id: {id}\n"),
    )
    .await;
}

/// An enforced `email_domains` entry, then a report-mode `emails` entry for the same
/// person: the enforced entry wins.
#[tokio::test]
async fn enforced_domain_entry_wins_over_a_later_report_address_entry() {
    let p = person_at_evil_example();
    let email = p.email.clone();
    enforced(
        &p,
        &format!(
            "email_domains:\n  - evil.example\nemails:\n  - email: {email}\n    mode: report\n"
        ),
    )
    .await;
}

/// A report-mode `emails` entry, then an enforced `email_domains` entry for the same
/// person: the enforced entry wins.
#[tokio::test]
async fn enforced_domain_entry_wins_over_an_earlier_report_address_entry() {
    let p = person_at_evil_example();
    let email = p.email.clone();
    enforced(
        &p,
        &format!(
            "emails:\n  - email: {email}\n    mode: report\nemail_domains:\n  - evil.example\n"
        ),
    )
    .await;
}

/// Every spelling of a session id that Kratos's uuid parser (gofrs `FromString`) accepts.
fn id_spellings(id: uuid::Uuid) -> Vec<String> {
    let canonical = id.to_string();
    let simple = id.simple().to_string();
    vec![
        simple.clone(),
        simple.to_ascii_uppercase(),
        canonical.to_ascii_uppercase(),
        format!("%7B{canonical}%7D"),
        format!("%7b{}%7d", simple.to_ascii_uppercase()),
        format!("urn:uuid:{canonical}"),
        format!("urn:uuid:{simple}"),
    ]
}

/// `PATCH /admin/sessions/{id}/extend` with the listed identity's session id spelled as 32
/// hex digits, in upper case, braced (`%7B…%7D`) or as `urn:uuid:`: Kratos reads all of them
/// as that session, so each is refused with 403 `identity_disabled`, never forwarded, and the
/// session is revoked.
#[tokio::test]
async fn extend_of_listed_session_is_refused_for_every_id_spelling_kratos_accepts() {
    let s = setup().await;
    for spelling in id_spellings(s.listed.session) {
        let path = format!("/admin/sessions/{spelling}/extend");
        let answer = send(Method::PATCH, &s.admin(&path), &[], "").await;
        assert_eq!(
            answer.status,
            StatusCode::FORBIDDEN,
            "{path}: {}",
            answer.text()
        );
        assert_identity_disabled(&answer);
        assert_eq!(
            s.fake.session_status(s.listed.session).expect("s").extended,
            0,
            "{path} was forwarded and extended the session"
        );
    }
    assert!(
        s.fake
            .calls_matching(Side::Admin, Method::PATCH, "/")
            .is_empty(),
        "an extend was forwarded to Kratos"
    );
    assert_session_dies(&s.fake, s.listed.session).await;
}

/// The same spellings for an unlisted session are forwarded and extended, as Kratos would.
#[tokio::test]
async fn extend_of_unlisted_session_goes_through_for_every_id_spelling() {
    let s = setup().await;
    for (n, spelling) in id_spellings(s.unlisted.session).into_iter().enumerate() {
        let path = format!("/admin/sessions/{spelling}/extend");
        let answer = send(Method::PATCH, &s.admin(&path), &[], "").await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
        assert_eq!(answer.json()["id"], s.unlisted.session.to_string());
        assert_eq!(
            s.fake
                .session_status(s.unlisted.session)
                .expect("s")
                .extended,
            n as u32 + 1,
            "{path}"
        );
    }
    s.assert_nothing_blocked();
}

/// Sanity for the SPA case above: the fake really hands out the session cookie.
#[tokio::test]
async fn spa_recovery_of_unlisted_identity_passes_with_its_cookie() {
    let s = setup().await;
    let recovered = new_session_of(&s.unlisted);
    let flow = Flow::new(FlowType::Browser);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, recovered.spec()),
    );
    let body = r#"{"method":"code","code":"123456","transient_payload":{"a":1}}"#;
    let via = send(Method::POST, &s.public(&path), &JSON, body).await;
    let direct = send(Method::POST, &s.direct(&path), &JSON, body).await;
    assert_eq!(via.status, StatusCode::OK, "{}", via.text());
    assert_eq!(via.body, direct.body);
    assert_eq!(via.set_cookies(), direct.set_cookies());
    assert!(via
        .set_cookies()
        .iter()
        .any(|c| c.starts_with(&format!("{SESSION_COOKIE}={}", recovered.cookie))));
    s.assert_nothing_blocked();
}
