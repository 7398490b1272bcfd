//! Protocol upgrades as a way around the gateway (h2c smuggling): a proxy that forwards
//! `Upgrade: h2c` lets the client and the server switch protocols on a connection the proxy
//! then only copies bytes on, so every later request on it reaches the server unjudged. The
//! gateway refuses every upgrade and `CONNECT` with 400 before anything is forwarded, keeps
//! nothing open to tunnel through, and judges HTTP/2 spoken with prior knowledge like HTTP/1.1.

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use support::enforcement::{setup, Setup, WAIT};
use support::fixtures;
use support::logs::{self, Captured};
use support::raw::{assert_no_credential_bytes, RawConn};
use support::raw_h2;

/// The client preface and a HEADERS frame for a whoami, as a client would send them after a
/// (supposedly) successful h2c upgrade.
fn h2_whoami_after_upgrade(s: &Setup) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec();
    let token = s.listed.token.clone();
    let block = raw_h2::header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/sessions/whoami"),
        (":authority", "auth.example.com"),
        ("x-session-token", token.as_str()),
    ]);
    let len = block.len() as u32;
    out.extend([
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x1,
        0x5,
        0,
        0,
        0,
        3,
    ]);
    out.extend(block);
    out
}

fn refusals(logs: &Captured) -> usize {
    logs.events()
        .iter()
        .filter(|e| {
            e["message"] == "answering with an error" && e["error"] == "protocol upgrade refused"
        })
        .count()
}

fn assert_nothing_reached_kratos(s: &Setup) {
    assert!(s.fake.calls().is_empty(), "{:?}", s.fake.calls());
}

#[tokio::test]
async fn h2c_upgrade_in_every_spelling_is_refused_and_nothing_tunnels() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let token = s.listed.token.clone();
    let requests = [
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n".to_owned(),
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nCONNECTION: UPGRADE\r\nUPGRADE: H2C\r\n".to_owned(),
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nConnection: keep-alive,upgrade\r\n".to_owned(),
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n".to_owned(),
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n".to_owned(),
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n".to_owned(),
        "POST /self-service/login HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".to_owned(),
        "GET /sessions/whoami HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n".to_owned(),
    ];
    let mut expected = 0;
    for listener in [s.gw.public, s.gw.admin] {
        for request in &requests {
            let request = if request.ends_with("{}") {
                request.clone()
            } else {
                format!("{request}X-Session-Token: {token}\r\n\r\n")
            };
            let mut conn = RawConn::connect(listener).await;
            conn.send(&request).await;
            let resp = conn.response().await;
            assert_eq!(resp.status, 400, "{request:?}: {}", resp.text());
            assert_ne!(resp.status, 101);
            assert_eq!(resp.json()["error"]["id"], "upgrade_not_supported");
            expected += 1;
            // Going on as if the switch had happened gets nothing through: the bytes are
            // read as HTTP/1.1 (and refused), never relayed.
            let _ =
                tokio::io::AsyncWriteExt::write_all(&mut conn.stream, &h2_whoami_after_upgrade(&s))
                    .await;
            conn.closed_within(Duration::from_secs(2)).await;
            assert_no_credential_bytes(&conn.received, &s.listed);
            assert!(
                !String::from_utf8_lossy(&conn.received).contains(" 101 "),
                "{request:?}"
            );
        }
    }
    assert_nothing_reached_kratos(&s);
    assert_eq!(refusals(&logs), expected, "{}", logs.text());
    // Still serving, and the listed identity is still judged.
    let mut conn = RawConn::connect(s.gw.public).await;
    conn.send(format!(
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: {token}\r\n\r\n"
    ))
    .await;
    let resp = conn.response().await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
}

#[tokio::test]
async fn connect_is_refused_and_opens_no_tunnel() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let kratos = s.fake.public_addr.to_string();
    let mut expected_blocks = 0;
    for listener in [s.gw.public, s.gw.admin] {
        let mut conn = RawConn::connect(listener).await;
        conn.send(format!(
            "CONNECT {kratos} HTTP/1.1\r\nHost: {kratos}\r\n\r\n"
        ))
        .await;
        let resp = conn.response().await;
        assert_eq!(resp.status, 400, "{}", resp.text());
        assert_eq!(resp.json()["error"]["id"], "upgrade_not_supported");
        // Bytes meant for the tunnel are no tunnel: they are the connection's next HTTP/1.1
        // request, and judged like any other.
        conn.send(format!(
            "GET /sessions/whoami HTTP/1.1\r\nHost: k\r\nX-Session-Token: {}\r\n\r\n",
            s.listed.token
        ))
        .await;
        let next = conn.response().await;
        if listener == s.gw.public {
            assert_eq!(next.status, 401, "{}", next.text());
            assert_eq!(next.text(), fixtures::WHOAMI_401_WIRE);
            expected_blocks += 1;
        } else {
            // The admin listener forwards to Kratos's admin port, which has no whoami.
            assert_ne!(next.status, 200, "{}", next.text());
        }
        assert_no_credential_bytes(&conn.received, &s.listed);
    }
    assert!(s.fake.calls().iter().all(|c| c.method != Method::CONNECT));
    assert_eq!(refusals(&logs), 2, "{}", logs.text());
    assert_eq!(logs.audit("blocked").len(), expected_blocks);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_judged_like_http1() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let stream = tokio::net::TcpStream::connect(s.gw.public)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c prior knowledge");
    tokio::spawn(conn);
    for (token, expected) in [
        (&s.listed.token, StatusCode::UNAUTHORIZED),
        (&s.unlisted.token, StatusCode::OK),
    ] {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("http://{}/sessions/whoami", s.gw.public))
            .header("x-session-token", token.as_str())
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = tokio::time::timeout(WAIT, sender.send_request(req))
            .await
            .expect("in time")
            .expect("answer");
        let status = resp.status();
        let has_identity = resp
            .headers()
            .contains_key("x-kratos-authenticated-identity-id");
        let set_cookie = resp.headers().contains_key("set-cookie");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(status, expected);
        if expected == StatusCode::UNAUTHORIZED {
            assert_eq!(&body[..], fixtures::WHOAMI_401_WIRE.as_bytes());
            assert!(!has_identity && !set_cookie);
        }
    }
    assert_eq!(logs.audit("blocked").len(), 1, "{}", logs.text());
}
