//! Dry run: in report mode a match is decided, logged as an audit event and counted, but
//! nothing is stripped and nothing is revoked.

use crate::support;

use std::time::Duration;

use kratos_gate::config::GlobalMode;
use support::client::{get_with, post_json};
use support::fake_kratos::{fresh_token, fresh_uuid, FakeKratos, Reply, SessionSpec, Side};
use support::fixtures::native_login_body;
use support::gateway::{start_gateway, start_gateway_with};
use support::logs;

fn count(metrics: &str, kind: &str, mode: &str) -> u64 {
    let key = format!("kratos_gate_blocked_total{{kind=\"{kind}\",mode=\"{mode}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn global_report_mode_passes_the_login_unchanged_and_reports_it() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let body = native_login_body(identity, session, &token);
    fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, body.clone()),
    );
    let list = format!("identities:\n  - id: {identity}\n    reason: fraud OPS-1\n");
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), &list, |c| {
        c.blocklist.mode = GlobalMode::Report
    })
    .await;
    let reply = post_json(&gw.public_url("/self-service/login?flow=1"), "{}").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        body,
        "report mode must not touch the response"
    );
    let metrics = gw.gateway().metrics().encode();
    assert_eq!(count(&metrics, "login", "report"), 1, "{metrics}");
    assert_eq!(count(&metrics, "login", "enforce"), 0);
    let events = logs.audit("would_block");
    assert_eq!(events.len(), 1, "{}", logs.text());
    assert_eq!(events[0]["identity_id"], identity.to_string());
    assert_eq!(events[0]["reason"], "fraud OPS-1");
    assert_eq!(events[0]["outcome"], 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        fake.calls_matching(Side::Admin, "DELETE", "/").is_empty(),
        "report mode revoked"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn per_entry_report_mode_reports_that_entry_and_enforces_the_others() {
    let fake = FakeKratos::start().await;
    let (dry, live) = (fresh_uuid(), fresh_uuid());
    fake.add_session(SessionSpec::new(dry, fresh_uuid()).token("ory_st_dry"));
    fake.add_session(SessionSpec::new(live, fresh_uuid()).token("ory_st_live"));
    let list = format!("identities:\n  - id: {dry}\n    mode: report\n  - {live}\n");
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), &list).await;
    let reply = get_with(
        &gw.public_url("/sessions/whoami"),
        &[("x-session-token", "ory_st_dry")],
    )
    .await;
    assert_eq!(reply.status, 200, "report entry must pass");
    let reply = get_with(
        &gw.public_url("/sessions/whoami"),
        &[("x-session-token", "ory_st_live")],
    )
    .await;
    assert_eq!(reply.status, 401, "enforced entry must be blocked");
    let metrics = gw.gateway().metrics().encode();
    assert_eq!(count(&metrics, "whoami", "report"), 1, "{metrics}");
    assert_eq!(count(&metrics, "whoami", "enforce"), 1, "{metrics}");
    gw.shutdown().await;
}

#[tokio::test]
async fn enforced_blocks_are_audited_with_every_field() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, native_login_body(identity, session, &token)),
    );
    let list = format!("identities:\n  - id: {identity}\n    reason: chargeback\n");
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), &list).await;
    let reply = support::client::send(
        &support::client::http1(),
        support::client::request(
            http::Method::POST,
            &gw.public_url("/self-service/login?flow=1"),
        )
        .header("x-request-id", "req-42")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
        .expect("req"),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert!(
        !reply.text().contains("chargeback"),
        "ops reason sent to the client"
    );
    let events = logs.audit("blocked");
    assert_eq!(events.len(), 1, "{}", logs.text());
    let e = &events[0];
    assert_eq!(e["kind"], "login");
    assert_eq!(e["identity_id"], identity.to_string());
    assert_eq!(e["session_id"], session.to_string());
    assert_eq!(e["reason"], "chargeback");
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert_eq!(e["request_id"], "req-42");
    assert_eq!(e["outcome"], 403);
    assert_eq!(e["mode"], "enforce");
    assert!(
        !logs.text().contains(&token),
        "a session token reached the log"
    );
    gw.shutdown().await;
}
