//! `POST /hooks/kratos` answers Kratos's web hook from the same blocklist: listed identities
//! get a 403 with a message Kratos shows in its flow UI; others a 204 that changes nothing.

use crate::support;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use kratos_gate::config::GlobalMode;
use support::client::{http1, request, send, Reply};
use support::fake_kratos::fresh_uuid;
use support::gateway::{start_gateway_with, write_file, TestGateway};

const NOWHERE: &str = "http://127.0.0.1:9";

async fn hook_gateway(list: &str, secret: Option<&str>, report: bool) -> TestGateway {
    let secret_dir = tempfile::tempdir().expect("tmp");
    let secret_file = secret_dir.path().join("secret");
    if let Some(s) = secret {
        write_file(&secret_file, s);
    }
    let gw = start_gateway_with(NOWHERE, NOWHERE, list, |c| {
        c.listen.hooks = Some("127.0.0.1:0".parse().expect("addr"));
        if secret.is_some() {
            c.hooks.secret_file = Some(secret_file.clone());
        }
        if report {
            c.blocklist.mode = GlobalMode::Report;
        }
    })
    .await;
    drop(secret_dir);
    gw
}

async fn call(gw: &TestGateway, body: &str, secret: Option<&str>) -> Reply {
    let addr = gw.gateway().hooks_addr.expect("hooks listener");
    let mut b = request(Method::POST, &format!("http://{addr}/hooks/kratos"))
        .header("content-type", "application/json");
    if let Some(s) = secret {
        b = b.header("x-kratos-gate-secret", s);
    }
    send(
        &http1(),
        b.body(Full::new(Bytes::from(body.to_owned())))
            .expect("req"),
    )
    .await
}

fn identity(id: &str, email: &str) -> String {
    format!(
        r#"{{"identity":{{"id":"{id}","schema_id":"default","traits":{{"email":"{email}"}},"verifiable_addresses":[{{"value":"{email}","via":"email"}}],"state":"active"}}}}"#
    )
}

#[tokio::test]
async fn listed_identity_gets_a_kratos_flow_message() {
    let id = fresh_uuid().to_string();
    let gw = hook_gateway(&format!("identities: [{id}]\n"), None, false).await;
    let reply = call(&gw, &identity(&id, "a@good.example"), None).await;
    assert_eq!(reply.status, 403);
    let v = reply.json();
    assert_eq!(v["messages"][0]["instance_ptr"], "#/");
    assert_eq!(v["messages"][0]["messages"][0]["id"], 4010011);
    assert_eq!(v["messages"][0]["messages"][0]["type"], "error");
    assert!(v["messages"][0]["messages"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    gw.shutdown().await;
}

#[tokio::test]
async fn listed_address_and_domain_match_even_without_an_id() {
    let gw = hook_gateway(
        "emails: [x@a.example]\nemail_domains: [evil.example]\n",
        None,
        false,
    )
    .await;
    let no_id = r#"{"identity":{"schema_id":"default","traits":{"email":"X@A.example"}}}"#;
    assert_eq!(call(&gw, no_id, None).await.status, 403);
    let sub = identity(&fresh_uuid().to_string(), "y@sub.evil.example");
    assert_eq!(call(&gw, &sub, None).await.status, 403);
    let fine = identity(&fresh_uuid().to_string(), "y@notevil.example");
    let reply = call(&gw, &fine, None).await;
    assert_eq!(reply.status, 204);
    assert!(reply.body.is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn unlisted_identity_gets_204() {
    let gw = hook_gateway(&format!("identities: [{}]\n", fresh_uuid()), None, false).await;
    let reply = call(
        &gw,
        &identity(&fresh_uuid().to_string(), "a@b.example"),
        None,
    )
    .await;
    assert_eq!(reply.status, 204);
    gw.shutdown().await;
}

#[tokio::test]
async fn wrong_or_missing_secret_is_refused() {
    let id = fresh_uuid().to_string();
    let gw = hook_gateway(&format!("identities: [{id}]\n"), Some("s3cret"), false).await;
    assert_eq!(
        call(&gw, &identity(&id, "a@b.example"), None).await.status,
        401
    );
    assert_eq!(
        call(&gw, &identity(&id, "a@b.example"), Some("s3cret-not"))
            .await
            .status,
        401
    );
    assert_eq!(
        call(&gw, &identity(&id, "a@b.example"), Some("s3cret"))
            .await
            .status,
        403
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_rejected_clearly() {
    let gw = hook_gateway("", None, false).await;
    assert_eq!(call(&gw, "not json", None).await.status, 400);
    assert_eq!(call(&gw, r#"{"flow":{}}"#, None).await.status, 400);
    let addr = gw.gateway().hooks_addr.expect("hooks");
    let get = send(
        &http1(),
        request(Method::GET, &format!("http://{addr}/hooks/kratos"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(get.status, 405);
    gw.shutdown().await;
}

#[tokio::test]
async fn report_mode_lets_kratos_continue() {
    let id = fresh_uuid().to_string();
    let gw = hook_gateway(&format!("identities: [{id}]\n"), None, true).await;
    assert_eq!(
        call(&gw, &identity(&id, "a@b.example"), None).await.status,
        204
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn the_hooks_listener_is_off_by_default() {
    let gw = start_gateway_with(NOWHERE, NOWHERE, "", |_| {}).await;
    assert!(gw.gateway().hooks_addr.is_none());
    gw.shutdown().await;
}
