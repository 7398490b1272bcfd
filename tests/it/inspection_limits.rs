//! What the gateway reads and how it fails: compressed bodies are decoded before they are
//! judged (and passed on as they came), a body that may carry a credential but cannot be
//! checked (too large, inflating past the limit, malformed, unknown coding) is withheld with
//! a 502, and bodies that cannot carry a credential stream through untouched.

use crate::support;

use std::io::{Read as _, Write as _};

use http::{Method, StatusCode};

use support::client::Reply as Answer;
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, assert_revoked, assert_same_as_upstream,
    metric, send, setup, setup_with, Revocation, Setup, JSON,
};
use support::fake_kratos::{Reply, Side};
use support::fixtures::{self, Json};

const LOGIN: &str = "/self-service/login?flow=2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";
const LIMIT: usize = 2048;

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("write");
    e.finish().expect("gzip")
}

async fn login(base: &str) -> Answer {
    let url = format!("{base}{LOGIN}");
    send(
        Method::POST,
        &url,
        &[
            ("content-type", "application/json"),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, br"),
        ],
        "{}",
    )
    .await
}

/// A 502 in Kratos's error shape that hands nothing out.
fn assert_withheld_502(a: &Answer) {
    assert_eq!(a.status, StatusCode::BAD_GATEWAY, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error"]["code"], 502, "{v}");
    assert_eq!(v["error"]["status"], "Bad Gateway", "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(!a.text().contains("ory_st_"));
    assert!(a.set_cookies().is_empty());
}

/// A native login body whose identity traits make it `extra` bytes longer.
fn padded_login_body(s: &Setup, extra: usize) -> String {
    let mut body = Json::parse(&fixtures::native_login_body(
        s.unlisted.identity,
        s.unlisted.session,
        &s.unlisted.token,
    ))
    .expect("json");
    let traits = body
        .get_mut("session")
        .and_then(|s| s.get_mut("identity"))
        .and_then(|i| i.get_mut("traits"))
        .expect("traits");
    traits.set("bio", Json::str("b".repeat(extra)));
    body.to_wire()
}

// ---------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------

#[tokio::test]
async fn gzip_login_of_listed_identity_is_decoded_and_refused() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(
            200,
            fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token),
        )
        .gzip(),
    );
    let a = login(&s.public("")).await;
    assert_identity_disabled(&a);
    assert!(a.headers.get("content-encoding").is_none());
    assert_no_credential(&a, &s.listed);
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
}

#[tokio::test]
async fn gzip_login_of_unlisted_identity_passes_the_same_compressed_bytes() {
    let s = setup().await;
    let plain =
        fixtures::native_login_body(s.unlisted.identity, s.unlisted.session, &s.unlisted.token);
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, plain.clone()).gzip(),
    );
    let via = login(&s.public("")).await;
    let direct = login(&s.direct("")).await;
    assert_same_as_upstream(&via, &direct);
    assert_eq!(
        via.headers
            .get("content-encoding")
            .and_then(|v| v.to_str().ok()),
        Some("gzip")
    );
    assert_eq!(via.body.as_ref(), gzip(plain.as_bytes()).as_slice());
    assert_eq!(gunzip(&via.body), plain.as_bytes());
    s.assert_nothing_blocked();
}

#[tokio::test]
async fn gzip_session_body_of_listed_identity_is_decoded_and_refused() {
    // whoami without the identity header, compressed by something in between.
    let s = setup().await;
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(
            200,
            fixtures::whoami_body(s.listed.identity, s.listed.session, None),
        )
        .gzip(),
    );
    let a = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("x-session-token", s.listed.token.as_str())],
        "",
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), fixtures::WHOAMI_401_WIRE);
    assert!(a.headers.get("content-encoding").is_none());
}

#[tokio::test]
async fn gateway_asks_kratos_for_unencoded_bodies() {
    let s = setup().await;
    let _ = send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[
            ("x-session-token", s.unlisted.token.as_str()),
            ("accept-encoding", "gzip, deflate, br"),
        ],
        "",
    )
    .await;
    let calls = s
        .fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami");
    assert_eq!(calls[0].header("accept-encoding"), Some("identity"));
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

async fn limited() -> Setup {
    setup_with(|c| c.inspection.body_limit_bytes = LIMIT).await
}

#[tokio::test]
async fn credential_body_over_the_limit_fails_closed() {
    let s = limited().await;
    let body = padded_login_body(&s, 2 * LIMIT);
    assert!(body.len() > LIMIT);
    s.fake
        .on_public(Method::POST, "/self-service/login", Reply::json(200, body));
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
    assert_no_credential(&a, &s.unlisted);
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_fail_closed_total{reason=\"too_large\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn credential_body_just_under_the_limit_is_judged() {
    let s = limited().await;
    let base = padded_login_body(&s, 0).len();
    let body = padded_login_body(&s, LIMIT - base);
    assert_eq!(body.len(), LIMIT);
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, body.clone()),
    );
    let a = login(&s.public("")).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert_eq!(a.text(), body);
}

#[tokio::test]
async fn gzip_body_inflating_past_the_limit_fails_closed() {
    let s = limited().await;
    let body = padded_login_body(&s, 50 * LIMIT);
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, body).gzip(),
    );
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
}

#[tokio::test]
async fn leading_whitespace_past_the_limit_fails_closed() {
    let s = limited().await;
    let body = format!(
        "{}{}",
        " \n".repeat(LIMIT),
        fixtures::native_login_body(s.unlisted.identity, s.unlisted.session, &s.unlisted.token)
    );
    s.fake
        .on_public(Method::POST, "/self-service/login", Reply::json(200, body));
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
}

#[tokio::test]
async fn large_body_that_cannot_carry_a_credential_streams_through() {
    let s = limited().await;
    // 1 MiB of non-JSON, far over the inspection limit.
    s.fake.on_public(
        Method::GET,
        "/schemas/default",
        Reply::chunks(200, 64, 16 * 1024),
    );
    let a = send(Method::GET, &s.public("/schemas/default"), &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body.len(), 64 * 16 * 1024);
    assert!(a.body.iter().all(|b| *b == b'x'));
    s.assert_nothing_blocked();
}

// ---------------------------------------------------------------------------
// Malformed and unreadable bodies
// ---------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_naming_a_session_token_fails_closed() {
    let s = setup().await;
    let whole = fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token);
    let broken = &whole[..whole.len() / 2];
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, broken),
    );
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
    assert_no_credential(&a, &s.listed);
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_fail_closed_total{reason=\"unreadable_encoding\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn malformed_json_without_credentials_passes_unchanged() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(400, "{\"ui\":{\"messages\":[{\"id\":4000006,"),
    );
    let via = login(&s.public("")).await;
    let direct = login(&s.direct("")).await;
    assert_same_as_upstream(&via, &direct);
}

#[tokio::test]
async fn unknown_content_coding_fails_closed() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, b"\x28\xb5\x2f\xfd\x00\x58\x61\x00\x00".to_vec())
            .header("content-encoding", "zstd"),
    );
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
}

#[tokio::test]
async fn corrupt_gzip_fails_closed() {
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, b"\x1f\x8b\x08\x00garbage-not-deflate".to_vec())
            .header("content-encoding", "gzip"),
    );
    let a = login(&s.public("")).await;
    assert_withheld_502(&a);
}

#[tokio::test]
async fn json_content_type_is_not_needed_to_be_inspected() {
    // The body decides, not its label: a token under text/plain is still caught.
    let s = setup().await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::raw(
            200,
            fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token),
        )
        .header("content-type", "text/plain"),
    );
    let a = send(Method::POST, &s.public(LOGIN), &JSON, "{}").await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
}

/// Two compressing hops may each add a `Content-Encoding` field line; the codings apply in
/// order across all of them (RFC 9110 8.4), and all must be undone before judging.
#[tokio::test]
async fn body_compressed_twice_in_separate_header_lines_is_decoded_and_refused() {
    let s = setup().await;
    let plain = fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token);
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, gzip(&gzip(plain.as_bytes())))
            .header("content-encoding", "gzip")
            .header("content-encoding", "gzip"),
    );
    let a = login(&s.public("")).await;
    if a.status.is_success() {
        let decoded = String::from_utf8_lossy(&gunzip(&gunzip(&a.body))).into_owned();
        assert!(
            !decoded.contains(&s.listed.token),
            "the session token left, compressed twice"
        );
    }
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
}
