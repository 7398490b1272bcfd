//! `emails` and `email_domains` entries block at every decision point: credentials in
//! response bodies, whoami (header path: addresses fetched from the admin API), and
//! registrations of new identities with a listed address.

use crate::support;

use std::time::Duration;

use support::client::{get_with, post_json};
use support::fake_kratos::{fresh_token, fresh_uuid, FakeKratos, Reply, SessionSpec, Side};
use support::fixtures::{session_json, Json, WHOAMI_401};
use support::gateway::start_gateway;
use uuid::Uuid;

fn login_body(identity: Uuid, session: Uuid, token: &str, email: &str) -> String {
    let mut body =
        Json::parse(r#"{"session_token":"","session":null,"continue_with":null}"#).expect("json");
    body.set("session_token", Json::str(token));
    body.set("session", session_json(identity, session, Some(email)));
    body.to_wire()
}

async fn login_as(email: &str, list: &str) -> (u16, String, FakeKratos) {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let body = login_body(identity, session, &token, email);
    // The gateway takes addresses from Kratos's record of the identity, never from the body.
    fake.add_identity(identity, Some(email));
    fake.on_public("POST", "/self-service/login", Reply::json(200, body));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), list).await;
    let reply = post_json(&gw.public_url("/self-service/login?flow=1"), "{}").await;
    gw.shutdown().await;
    (reply.status.as_u16(), reply.text(), fake)
}

const LIST: &str = "emails:\n  - Spammer@Example.com\nemail_domains:\n  - evil.example\n";

#[tokio::test]
async fn listed_address_is_blocked_case_insensitively() {
    for email in [
        "spammer@example.com",
        "SPAMMER@example.COM",
        " spammer@example.com",
    ] {
        let (status, body, _) = login_as(email, LIST).await;
        assert_eq!(status, 403, "{email}: {body}");
        assert!(!body.contains("ory_st_"), "{email}: token leaked");
    }
}

#[tokio::test]
async fn listed_domain_blocks_its_subdomains_but_not_look_alikes() {
    for email in [
        "x@evil.example",
        "x@mail.evil.example",
        "x@A.B.Evil.Example",
    ] {
        let (status, _, _) = login_as(email, LIST).await;
        assert_eq!(status, 403, "{email}");
    }
    for email in [
        "x@notevil.example",
        "x@evil.example.org",
        "x@evil-example",
        "spammer@example.org",
        "spammer.example.com@good.example",
    ] {
        let (status, body, _) = login_as(email, LIST).await;
        assert_eq!(status, 200, "{email}");
        assert!(
            body.contains("ory_st_"),
            "{email}: unlisted login lost its token"
        );
    }
}

#[tokio::test]
async fn whoami_by_header_fetches_the_addresses_once_and_caches_them() {
    let fake = FakeKratos::start().await;
    let (identity, session) = (fresh_uuid(), fresh_uuid());
    fake.add_session(
        SessionSpec::new(identity, session)
            .token("ory_st_mallory")
            .email("m@evil.example"),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), LIST).await;
    for _ in 0..3 {
        let reply = get_with(
            &gw.public_url("/sessions/whoami"),
            &[("x-session-token", "ory_st_mallory")],
        )
        .await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.text(), format!("{WHOAMI_401}\n"));
    }
    let lookups = fake.calls_matching(Side::Admin, "GET", &format!("/admin/identities/{identity}"));
    assert_eq!(
        lookups.len(),
        1,
        "addresses fetched once within the cache TTL"
    );
    // Only the lookup sent to Kratos is timed, not the answers from the cache.
    let metrics = get_with(&gw.ops_url("/metrics"), &[]).await.text();
    assert!(
        metrics.contains(
            "kratos_gate_kratos_lookup_duration_seconds_count{source=\"admin_identity\"} 1\n"
        ),
        "{metrics}"
    );
    fake.wait_for_call(
        Side::Admin,
        "DELETE",
        &format!("/admin/identities/{identity}/sessions"),
        Duration::from_secs(3),
    )
    .await
    .expect("revoked");
    gw.shutdown().await;
}

#[tokio::test]
async fn whoami_needs_no_admin_call_when_the_list_has_only_ids() {
    let fake = FakeKratos::start().await;
    let (identity, session) = (fresh_uuid(), fresh_uuid());
    fake.add_session(SessionSpec::new(identity, session).token("ory_st_ok"));
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &format!("identities: [{}]\n", fresh_uuid()),
    )
    .await;
    let reply = get_with(
        &gw.public_url("/sessions/whoami"),
        &[("x-session-token", "ory_st_ok")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(
        fake.calls_matching(Side::Admin, "ANY", "/").is_empty(),
        "no extra call on the whoami path"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn whoami_fails_closed_when_addresses_cannot_be_fetched() {
    let fake = FakeKratos::start().await;
    let (identity, session) = (fresh_uuid(), fresh_uuid());
    fake.add_session(
        SessionSpec::new(identity, session)
            .token("ory_st_x")
            .email("ok@good.example"),
    );
    fake.set_admin_failures(100);
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), LIST).await;
    let reply = get_with(
        &gw.public_url("/sessions/whoami"),
        &[("x-session-token", "ory_st_x")],
    )
    .await;
    assert_eq!(reply.status, 503);
    assert!(!reply.text().contains("identity"), "session body leaked");
    gw.shutdown().await;
}

#[tokio::test]
async fn registration_with_a_listed_address_gets_no_session() {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let mut body =
        Json::parse(r#"{"session_token":"","session":null,"identity":null,"continue_with":[]}"#)
            .expect("json");
    body.set("session_token", Json::str(&token));
    body.set(
        "session",
        session_json(identity, session, Some("new@mail.evil.example")),
    );
    let s = session_json(identity, session, Some("new@mail.evil.example"));
    body.set("identity", s.get("identity").cloned().expect("identity"));
    body.set(
        "continue_with",
        Json::parse(&format!(
            r#"[{{"action":"set_ory_session_token","ory_session_token":"{token}"}}]"#
        ))
        .expect("json"),
    );
    fake.add_identity(identity, Some("new@mail.evil.example"));
    fake.on_public(
        "POST",
        "/self-service/registration",
        Reply::json(200, body.to_wire()),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), LIST).await;
    let reply = post_json(&gw.public_url("/self-service/registration?flow=1"), "{}").await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.json()["error"]["id"], "identity_disabled");
    assert!(!reply.text().contains(&token));
    fake.wait_for_call(
        Side::Admin,
        "DELETE",
        &format!("/admin/sessions/{session}"),
        Duration::from_secs(3),
    )
    .await
    .expect("the new session is revoked");
    gw.shutdown().await;
}

#[tokio::test]
async fn unicode_and_punycode_spellings_of_a_domain_are_one_entry() {
    let unicode = "email_domains:\n  - Bücher.Example\nemails:\n  - anna@straße.example\n";
    let punycode =
        "email_domains:\n  - xn--bcher-kva.example\nemails:\n  - anna@XN--STRAE-OQA.example\n";
    for list in [unicode, punycode] {
        for email in [
            "x@bücher.example",
            "x@BÜCHER.example",
            "x@xn--bcher-kva.example",
            "x@Mail.XN--Bcher-Kva.Example",
            "anna@straße.example",
            "Anna@xn--strae-oqa.example",
        ] {
            let (status, body, _) = login_as(email, list).await;
            assert_eq!(status, 403, "{list}{email}: {body}");
            assert!(!body.contains("ory_st_"), "{email}: token leaked");
        }
        for email in [
            "x@bucher.example",
            "anna@strasse.example",
            "bob@straße.example",
        ] {
            let (status, _, _) = login_as(email, list).await;
            assert_eq!(status, 200, "{list}{email}");
        }
    }
}

#[tokio::test]
async fn an_enforced_domain_wins_over_an_address_in_report_mode() {
    let list = "emails:\n  - email: x@evil.example\n    mode: report\nemail_domains:\n  - evil.example\n  - domain: trial.example\n    mode: report\n";
    let (status, body, _) = login_as("x@evil.example", list).await;
    assert_eq!(status, 403, "{body}");
    assert!(!body.contains("ory_st_"), "token leaked");
    // Report mode alone lets the login through.
    let (status, body, _) = login_as("x@trial.example", list).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_reload_with_a_public_suffix_keeps_the_last_good_list() {
    use support::gateway::replace_atomically;
    use support::metrics::metric;
    let fake = FakeKratos::start().await;
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), LIST).await;
    replace_atomically(
        &gw.blocklist_path(),
        "email_domains:\n  - other.example\n  - co.uk\n",
    );
    let failures = "kratos_gate_blocklist_reloads_total{result=\"failure\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while metric(&gw.gateway().metrics().encode(), failures) < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let list = gw.gateway().blocklist().snapshot();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    assert!(
        list.lookup_address("x@evil.example", now).is_some(),
        "last good list dropped"
    );
    assert!(list.lookup_address("x@other.example", now).is_none());
    assert!(list.lookup_address("x@anything.co.uk", now).is_none());
    gw.shutdown().await;
}
