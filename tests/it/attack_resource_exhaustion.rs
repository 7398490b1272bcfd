//! Resource exhaustion: request heads over `server.max_header_bytes` (or with too many
//! fields), bodies far over the inspection limits both ways, slow-loris heads that never
//! finish, and HTTP/2 streams opened and reset in a burst. Each is bounded by a limit, the
//! listed identity gets no credential out of it, and the gateway keeps serving.

use crate::support;

use support::cases;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kratos_gate::config::HumanDuration;
use tokio::io::AsyncWriteExt;

use support::enforcement::{setup, setup_with, still_serving, Setup, WAIT};
use support::fake_kratos::{Reply, Side};
use support::fixtures;
use support::logs;
use support::raw::{assert_no_credential_bytes, exchange, first_status, send_and_drain, RawConn};

fn public_calls(s: &Setup) -> usize {
    s.fake
        .calls()
        .iter()
        .filter(|c| c.side == Side::Public)
        .count()
}

#[tokio::test]
async fn request_head_over_the_limit_is_refused_before_kratos() {
    let (logs, _guard) = logs::capture();
    const LIMIT: usize = 16 * 1024;
    let s = setup_with(|c| c.server.max_header_bytes = LIMIT).await;
    let token = s.listed.token.clone();
    let big = "x".repeat(LIMIT + 1);
    let many: String = (0..150).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect();
    let heads = [
        // One field larger than the whole limit.
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Pad: {big}\r\nX-Session-Token: {token}\r\n\r\n"),
        // A request target larger than the limit.
        format!("GET /sessions/whoami?{big} HTTP/1.1\r\nHost: a\r\nX-Session-Token: {token}\r\n\r\n"),
        // More fields than hyper parses (100).
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\n{many}X-Session-Token: {token}\r\n\r\n"),
    ];
    for head in &heads {
        let before = logs.connection_errors();
        let got = send_and_drain(s.gw.public, head, Duration::from_secs(2)).await;
        // hyper answers 431 and closes; it does so while reading the head, before the
        // gateway sees a request, so the log line is the connection's error, not an audit
        // event.
        assert_eq!(
            first_status(&got),
            Some(431),
            "{}",
            String::from_utf8_lossy(&got)
        );
        assert_no_credential_bytes(&got, &s.listed);
        assert!(logs.connection_errors() > before, "{}", logs.text());
    }
    assert_eq!(public_calls(&s), 0, "{:?}", s.fake.calls());

    // HTTP/2: a header list over the limit is refused by h2 itself.
    let stream = tokio::net::TcpStream::connect(s.gw.public)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{}/sessions/whoami", s.gw.public))
        .header("x-pad", big.as_str())
        .header("x-session-token", token.as_str())
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("in time");
    assert_eq!(
        answer.expect("answered").status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(public_calls(&s), 0, "{:?}", s.fake.calls());
    still_serving(&s).await;
}

#[tokio::test]
async fn oversized_bodies_stream_or_fail_closed_but_never_leak() {
    let (logs, _guard) = logs::capture();
    const LIMIT: usize = 64 * 1024;
    let s = setup_with(|c| c.inspection.body_limit_bytes = LIMIT).await;

    // A request body of 2 MiB (far over inspection.login_body_limit_bytes) streams to Kratos
    // whole, and the listed identity's login answer is still judged.
    cases::native_login(&s.listed).script(&s);
    let size = 2 * 1024 * 1024;
    let mut body = String::from("{\"method\":\"password\",\"identifier\":\"");
    body.push_str(&"a".repeat(size - body.len() - 2));
    body.push_str("\"}");
    let (resp, conn) = exchange(
        s.gw.public,
        format!(
            "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_no_credential_bytes(&conn.received, &s.listed);
    let login = s
        .fake
        .calls_matching(Side::Public, "POST", "/self-service/login")
        .pop()
        .expect("forwarded");
    assert_eq!(login.body_len, body.len() as u64);
    assert_eq!(logs.audit("blocked").len(), 1);

    // A response that may carry a credential and is larger than the inspection limit is
    // withheld (from everyone), not buffered without bound and not passed unread.
    let mut huge =
        fixtures::native_login_body(s.listed.identity, s.listed.session, &s.listed.token);
    huge.truncate(huge.len() - 2); // drop the closing "}\n"
    huge.push_str(&format!(",\"padding\":\"{}\"}}\n", "p".repeat(2 * LIMIT)));
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, huge).times(1),
    );
    let (resp, conn) = exchange(
        s.gw.public,
        "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_no_credential_bytes(&conn.received, &s.listed);
    let failed = logs.audit("fail_closed");
    assert_eq!(failed.len(), 1, "{}", logs.text());
    assert_eq!(failed[0]["outcome"], 502);

    // A large body that cannot carry a credential streams through untouched.
    s.fake
        .on_public("GET", "/large-download", Reply::chunks(200, 64, 64 * 1024));
    let (resp, _) = exchange(
        s.gw.public,
        "GET /large-download HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 64 * 64 * 1024);
    still_serving(&s).await;
}

#[tokio::test]
async fn slow_loris_heads_are_cut_off_by_the_header_read_timeout() {
    let (logs, _guard) = logs::capture();
    let timeout = Duration::from_millis(300);
    let s = setup_with(|c| c.server.header_read_timeout = HumanDuration(timeout)).await;
    let token = s.listed.token.clone();
    let started = Instant::now();

    // 20 clients start a head and then trickle one byte every 100 ms, never finishing.
    let mut loris = Vec::new();
    for _ in 0..20 {
        let addr = s.gw.public;
        let token = token.clone();
        loris.push(tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await;
            conn.send(format!(
                "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: {token}\r\nX-Slow: "
            ))
            .await;
            let opened = Instant::now();
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if conn.stream.write_all(b"x").await.is_err() {
                    break;
                }
            }
            let closed = conn.closed_within(Duration::from_secs(3)).await;
            (closed, opened.elapsed(), conn.received)
        }));
    }
    // Meanwhile an honest client is served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    still_serving(&s).await;

    for task in loris {
        let (closed, lived, received) = task.await.expect("task");
        assert!(closed, "a slow head was never cut off");
        assert!(
            lived < Duration::from_secs(4),
            "cut off only after {lived:?}"
        );
        // hyper closes without a word: nothing was answered, nothing reached Kratos.
        assert!(
            received.is_empty(),
            "{}",
            String::from_utf8_lossy(&received)
        );
        assert_no_credential_bytes(&received, &s.listed);
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // None of them reached Kratos (the honest whoami did). hyper times out the head before
    // the gateway sees a request: the log line is each connection's error.
    assert_eq!(public_calls(&s), 1, "{:?}", s.fake.calls());
    assert!(logs.connection_errors() >= 20, "{}", logs.text());
    still_serving(&s).await;
}

/// A JSON or form submission the gateway reads (for the identifier it names) that sends only
/// part of its body: without a deadline each one held a connection and a task for as long as
/// the client liked, and a few hundred exhausted file descriptors.
#[tokio::test]
async fn submissions_that_never_finish_their_body_get_408_and_are_closed() {
    let timeout = Duration::from_millis(300);
    let s = setup_with(|c| c.server.body_read_timeout = HumanDuration(timeout)).await;
    let started = Instant::now();
    let mut slow = Vec::new();
    for (i, content_type) in ["application/json", "application/x-www-form-urlencoded"]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let addr = s.gw.public;
        slow.push(tokio::spawn(async move {
            let mut conn = RawConn::connect(addr).await;
            conn.send(format!(
                "POST /self-service/login?flow={i} HTTP/1.1\r\nHost: a\r\nContent-Type: {content_type}\r\nContent-Length: 100\r\n\r\n{{\"identifier\":"
            ))
            .await;
            let opened = Instant::now();
            let closed = conn.closed_within(Duration::from_secs(3)).await;
            (closed, opened.elapsed(), conn.received)
        }));
    }
    // Meanwhile an honest client is served.
    still_serving(&s).await;
    for task in slow {
        let (closed, lived, received) = task.await.expect("task");
        assert!(closed, "a stalled body was never cut off");
        assert!(
            lived < Duration::from_secs(2),
            "cut off only after {lived:?}"
        );
        assert_eq!(
            first_status(&received),
            Some(408),
            "{}",
            String::from_utf8_lossy(&received)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // None of them reached Kratos.
    assert!(
        s.fake
            .calls()
            .iter()
            .all(|c| c.path() != "/self-service/login"),
        "{:?}",
        s.fake.calls()
    );
    let m = s.metrics();
    assert!(
        m.contains("kratos_gate_fail_closed_total{reason=\"request_body_timeout\"} 40"),
        "{m}"
    );
    still_serving(&s).await;
}

#[tokio::test]
async fn http2_streams_opened_and_reset_in_a_burst_are_cut_off() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut stream = tokio::net::TcpStream::connect(s.gw.public)
        .await
        .expect("connect");
    let authority = s.gw.public.to_string();
    let block = support::raw_h2::header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/sessions/whoami"),
        (":authority", authority.as_str()),
        ("x-session-token", s.listed.token.as_str()),
    ]);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00".to_vec();
    for i in 0..2000u32 {
        let id = 2 * i + 1;
        let len = block.len() as u32;
        out.extend([(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x1, 0x5]);
        out.extend(id.to_be_bytes());
        out.extend(&block);
        // RST_STREAM(CANCEL)
        out.extend([0, 0, 4, 0x3, 0]);
        out.extend(id.to_be_bytes());
        out.extend(8u32.to_be_bytes());
    }
    let _ = stream.write_all(&out).await;
    let mut received = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut received),
    )
    .await;
    // The connection is closed with GOAWAY (ENHANCE_YOUR_CALM, 0xb) once too many streams
    // were reset before they were handled (`max_pending_accept_reset_streams`), instead of
    // the gateway working through 2000 requests for a client that cancels them all.
    let mut goaway = None;
    let mut pos = 0;
    while pos + 9 <= received.len() {
        let len = (usize::from(received[pos]) << 16)
            | (usize::from(received[pos + 1]) << 8)
            | usize::from(received[pos + 2]);
        let kind = received[pos + 3];
        if kind == 0x7 && pos + 9 + 8 <= received.len() {
            let code = &received[pos + 13..pos + 17];
            goaway = Some(u32::from_be_bytes([code[0], code[1], code[2], code[3]]));
        }
        pos += 9 + len;
    }
    assert_eq!(goaway, Some(0xb), "{} bytes", received.len());
    assert_eq!(logs.connection_errors(), 1, "{}", logs.text());
    assert!(
        s.fake
            .calls_matching(Side::Public, "ANY", "/sessions/whoami")
            .len()
            < 2000
    );
    still_serving(&s).await;
}
