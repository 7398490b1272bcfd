//! Admin calls carry the configured API key (Ory Network needs `Authorization: Bearer`).

use crate::support;

use std::time::Duration;

use kratos_gate::config::Config;
use support::client::post_json;
use support::fake_kratos::RecordedCall;
use support::fake_kratos::{fresh_token, fresh_uuid, FakeKratos, Reply, Side};
use support::fixtures::native_login_body;
use support::gateway::{blocklist_of, start_gateway_with, write_file};

/// A listed identity logs in natively through a gateway configured by `configure`; returns
/// the revocation call that reached Kratos.
async fn revocation_call(configure: impl FnOnce(&mut Config)) -> RecordedCall {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, native_login_body(identity, session, &token)),
    );
    let gw = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[&identity.to_string()]),
        configure,
    )
    .await;
    let reply = post_json(&gw.public_url("/self-service/login?flow=1"), "{}").await;
    assert_eq!(reply.status, 403);
    let call = fake
        .wait_for_call(
            Side::Admin,
            "DELETE",
            &format!("/admin/sessions/{session}"),
            Duration::from_secs(3),
        )
        .await
        .expect("revocation reached Kratos");
    gw.shutdown().await;
    call
}

#[tokio::test]
async fn revocation_and_lookups_carry_the_key_from_a_file() {
    let key_dir = tempfile::tempdir().expect("tmp");
    let key_file = key_dir.path().join("admin-key");
    write_file(&key_file, "ory_pat_test_key\n");
    let call = revocation_call(|c| c.upstream.admin_token_file = Some(key_file.clone())).await;
    assert_eq!(
        call.header("authorization"),
        Some("Bearer ory_pat_test_key")
    );
}

#[tokio::test]
async fn key_from_the_environment() {
    // The variable name is unique to this test.
    std::env::set_var("KRATOS_GATE_TEST_ADMIN_KEY", "ory_pat_from_env");
    let call = revocation_call(|c| {
        c.upstream.admin_token_env = Some("KRATOS_GATE_TEST_ADMIN_KEY".to_owned())
    })
    .await;
    assert_eq!(
        call.header("authorization"),
        Some("Bearer ory_pat_from_env")
    );
}

#[tokio::test]
async fn no_key_configured_sends_no_authorization() {
    let call = revocation_call(|_| {}).await;
    assert_eq!(call.header("authorization"), None);
}
