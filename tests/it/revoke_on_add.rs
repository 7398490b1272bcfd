//! Listing an identity revokes its existing sessions at Kratos, so services that check
//! sessions with Kratos directly (not through the gateway) lose them too.

use crate::support;

use std::time::{Duration, Instant};

use support::fake_kratos::{fresh_uuid, FakeKratos, SessionSpec, Side};
use support::gateway::{blocklist_of, replace_atomically, start_gateway, start_gateway_with};
use uuid::Uuid;

fn identity_sessions_path(id: Uuid) -> String {
    format!("/admin/identities/{id}/sessions")
}

#[tokio::test]
async fn adding_an_identity_revokes_its_sessions() {
    let fake = FakeKratos::start().await;
    let (identity, session) = (fresh_uuid(), fresh_uuid());
    fake.add_session(SessionSpec::new(identity, session).token("ory_st_live"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let written = Instant::now();
    replace_atomically(
        &gw.blocklist_path(),
        &blocklist_of(&[&identity.to_string()]),
    );
    let call = fake
        .wait_for_call(
            Side::Admin,
            "DELETE",
            &identity_sessions_path(identity),
            Duration::from_secs(3),
        )
        .await
        .expect("sessions revoked at Kratos");
    eprintln!("1 id: write to revocation call {:?}", written.elapsed());
    assert_eq!(call.method, "DELETE");
    assert!(
        fake.sessions_of(identity).is_empty(),
        "Kratos still has the session"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn removing_an_entry_revokes_nothing() {
    let fake = FakeKratos::start().await;
    let (a, b) = (fresh_uuid(), fresh_uuid());
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[&a.to_string(), &b.to_string()]),
    )
    .await;
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&[&a.to_string()]));
    assert!(
        gw.wait_for_listed(&b.to_string(), false, Duration::from_secs(1))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake
        .calls_matching(Side::Admin, "DELETE", "/admin/identities/")
        .is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn extending_until_revokes_again_but_an_unchanged_entry_does_not() {
    let fake = FakeKratos::start().await;
    let id = fresh_uuid();
    let entry = |until: &str| format!("identities:\n  - id: {id}\n    until: {until}\n");
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &entry("2990-01-01T00:00:00Z"),
    )
    .await;
    // Same block, other text: no change for this id.
    replace_atomically(
        &gw.blocklist_path(),
        &format!("{}# comment\n", entry("2990-01-01T00:00:00Z")),
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fake
        .calls_matching(Side::Admin, "DELETE", &identity_sessions_path(id))
        .is_empty());
    replace_atomically(&gw.blocklist_path(), &entry("2999-01-01T00:00:00Z"));
    fake.wait_for_call(
        Side::Admin,
        "DELETE",
        &identity_sessions_path(id),
        Duration::from_secs(3),
    )
    .await
    .expect("extension revokes");
    gw.shutdown().await;
}

#[tokio::test]
async fn report_mode_entries_are_not_revoked() {
    let fake = FakeKratos::start().await;
    let id = fresh_uuid();
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    replace_atomically(
        &gw.blocklist_path(),
        &format!("identities:\n  - id: {id}\n    mode: report\n"),
    );
    assert!(
        gw.wait_for_listed(&id.to_string(), true, Duration::from_secs(1))
            .await
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake
        .calls_matching(Side::Admin, "DELETE", "/admin/")
        .is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn an_email_entry_is_resolved_and_revoked() {
    let fake = FakeKratos::start().await;
    let (identity, session) = (fresh_uuid(), fresh_uuid());
    fake.add_session(
        SessionSpec::new(identity, session)
            .token("ory_st_x")
            .email("Mallory@Example.com"),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    replace_atomically(&gw.blocklist_path(), "emails:\n  - mallory@example.com\n");
    fake.wait_for_call(
        Side::Admin,
        "DELETE",
        &identity_sessions_path(identity),
        Duration::from_secs(3),
    )
    .await
    .expect("resolved by credentials_identifier and revoked");
    let lookups = fake.calls_matching(Side::Admin, "GET", "/admin/identities");
    assert!(
        lookups.iter().any(|c| c
            .uri
            .query()
            .unwrap_or("")
            .contains("credentials_identifier=mallory%40example.com")),
        "{lookups:?}"
    );
    gw.shutdown().await;
}

/// An address no identity logs in with is looked up, but nothing is revoked, and the audit
/// log says no "revoked" for it.
#[tokio::test]
async fn an_email_entry_matching_no_identity_is_not_audited_as_revoked() {
    let (logs, _guard) = support::logs::capture();
    let fake = FakeKratos::start().await;
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    replace_atomically(&gw.blocklist_path(), "emails:\n  - nobody@example.com\n");
    fake.wait_for_call(
        Side::Admin,
        "GET",
        "/admin/identities",
        Duration::from_secs(3),
    )
    .await
    .expect("the address is resolved");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !logs.text().contains("nothing to revoke") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(logs.text().contains("nothing to revoke"), "{}", logs.text());
    assert!(logs.audit("revoked").is_empty(), "{}", logs.text());
    assert!(fake.calls_matching(Side::Admin, "DELETE", "/").is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn sweep_on_start_revokes_every_listed_identity() {
    let fake = FakeKratos::start().await;
    let ids: Vec<String> = (0..5).map(|_| fresh_uuid().to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let gw = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&refs),
        |c| c.revocation.sweep_on_start = true,
    )
    .await;
    for id in &ids {
        fake.wait_for_call(
            Side::Admin,
            "DELETE",
            &format!("/admin/identities/{id}/sessions"),
            Duration::from_secs(3),
        )
        .await
        .expect("swept");
    }
    gw.shutdown().await;
    // Off by default.
    let fake = FakeKratos::start().await;
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), &blocklist_of(&refs)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(fake
        .calls_matching(Side::Admin, "DELETE", "/admin/")
        .is_empty());
    gw.shutdown().await;
}

/// 10,000 ids at once against an admin API that answers in 5 ms, with the default
/// concurrency and rate: every call arrives, none twice, within 20 s, spread over seconds
/// rather than in one burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_ids_are_revoked_within_twenty_seconds_without_flooding() {
    let fake = FakeKratos::start().await;
    fake.set_admin_delay(Duration::from_millis(5));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let ids: Vec<String> = (0..10_000).map(|_| fresh_uuid().to_string()).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let written = Instant::now();
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&refs));
    let deadline = written + Duration::from_secs(20);
    loop {
        let n = fake
            .calls_matching(Side::Admin, "DELETE", "/admin/identities/")
            .len();
        if n >= ids.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of 10000 revocations within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let elapsed = written.elapsed();
    eprintln!("10000 ids: write to last revocation call {elapsed:?}");
    let calls = fake.calls_matching(Side::Admin, "DELETE", "/admin/identities/");
    let mut paths: Vec<String> = calls.iter().map(|c| c.path().to_owned()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 10_000, "every id exactly once");
    // Spread out: the default rate (1000/s) makes this take most of 10 s, not a burst.
    assert!(
        elapsed >= Duration::from_secs(8),
        "10000 calls in {elapsed:?}: not rate limited"
    );
    gw.shutdown().await;
}
