//! Request smuggling: a second request hidden in the first one's body, to reach Kratos
//! without passing the gateway's judgement. hyper once accepted `Content-Length: +123`
//! (RUSTSEC-2021-0078) and overflowed on huge chunk sizes (RUSTSEC-2021-0079); proxies that
//! read `Content-Length` where the next hop reads `Transfer-Encoding` (or the reverse) are
//! the classic CL.TE/TE.CL desync; HTTP/2 front ends that pass `transfer-encoding` or a short
//! `content-length` on to HTTP/1.1 are H2.TE/H2.CL. The gateway parses every request with
//! hyper and writes a new one to Kratos with its own framing, so at most what hyper parsed as
//! one request reaches Kratos as one request. Each smuggled request below is a whoami with the
//! listed identity's token: if it ever reached Kratos unjudged, Kratos would record it.

use crate::support;

use support::cases;

use std::time::Duration;

use support::enforcement::{setup, still_serving, Setup, JSON};
use support::fake_kratos::Side;
use support::fixtures;
use support::logs::{self, Captured};
use support::raw::{assert_no_credential_bytes, exchange, first_status, send_and_drain, RawConn};
use support::raw_h2;

const DRAIN: Duration = Duration::from_secs(2);

fn smuggled(s: &Setup) -> String {
    format!(
        "GET /sessions/whoami HTTP/1.1\r\nHost: auth.example.com\r\nX-Session-Token: {}\r\n\r\n",
        s.listed.token
    )
}

/// No whoami reached Kratos: nothing was smuggled past the gateway.
fn assert_nothing_smuggled(s: &Setup) {
    let whoami = s
        .fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami");
    assert!(
        whoami.is_empty(),
        "a smuggled request reached Kratos: {whoami:?}"
    );
}

/// hyper refused the request head: a 400 (or a bare close), nothing forwarded, and the
/// connection's end logged. hyper rejects it while parsing, before the gateway sees a
/// request, so there is no audit event; `server.rs` logs the connection error.
fn assert_refused_by_hyper(s: &Setup, logs: &Captured, got: &[u8], what: &str, before: usize) {
    let status = first_status(got);
    assert!(
        status.is_none() || status == Some(400),
        "{what}: {}",
        String::from_utf8_lossy(got)
    );
    assert_no_credential_bytes(got, &s.listed);
    let public: Vec<_> = s
        .fake
        .calls()
        .into_iter()
        .filter(|c| c.side == Side::Public)
        .collect();
    assert!(public.is_empty(), "{what}: reached Kratos: {public:?}");
    assert!(
        logs.connection_errors() > before,
        "{what}: no log line: {}",
        logs.text()
    );
}

fn script_listed_login(s: &Setup) {
    cases::native_login(&s.listed).script(s);
}

#[tokio::test]
async fn content_length_with_a_sign_or_junk_is_rejected() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let hidden = smuggled(&s);
    for value in [
        "+2",
        "-1",
        "0x2",
        "2 2",
        "2,2",
        "1_0",
        "\u{ff12}",
        "",
        "99999999999999999999999",
    ] {
        let before = logs.connection_errors();
        let request = format!(
            "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: {value}\r\n\r\n{{}}{hidden}"
        );
        let got = send_and_drain(s.gw.public, request, DRAIN).await;
        assert_refused_by_hyper(
            &s,
            &logs,
            &got,
            &format!("Content-Length: {value:?}"),
            before,
        );
    }
    still_serving(&s).await;
}

#[tokio::test]
async fn chunk_size_overflow_and_junk_sizes_are_rejected() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    script_listed_login(&s);
    let hidden = smuggled(&s);
    for size in [
        "f0000000000000003",
        "ffffffffffffffffff",
        "10000000000000000",
        "-3",
        "+3",
        "0x3",
        "3 3",
        "",
    ] {
        let request = format!(
            "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n{size}\r\nabc\r\n0\r\n\r\n{hidden}",
            JSON[0].1
        );
        let got = send_and_drain(s.gw.public, request, DRAIN).await;
        // The head is fine, so the gateway sees the request; reading its body fails, the
        // gateway answers 400 without forwarding anything, and hyper closes the connection
        // (the bytes after the broken chunk are never read as a request).
        assert_eq!(
            first_status(&got),
            Some(400),
            "size {size:?}: {}",
            String::from_utf8_lossy(&got)
        );
        assert_no_credential_bytes(&got, &s.listed);
        assert_eq!(
            String::from_utf8_lossy(&got).matches("HTTP/1.1 ").count(),
            1,
            "size {size:?}: more than one answer"
        );
    }
    assert!(s.fake.calls().is_empty(), "{:?}", s.fake.calls());
    // Logged by the gateway: the body that could not be read.
    assert!(
        logs.events()
            .iter()
            .any(|e| e["message"] == "client request body broke off"),
        "{}",
        logs.text()
    );

    // Without a form or JSON type the body streams to Kratos; the broken chunk then aborts
    // that one forwarded request, and the hidden request still never reaches Kratos.
    let request = format!(
        "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\nf0000000000000003\r\nabc\r\n0\r\n\r\n{hidden}"
    );
    let got = send_and_drain(s.gw.public, request, DRAIN).await;
    assert_no_credential_bytes(&got, &s.listed);
    assert_ne!(
        first_status(&got),
        Some(200),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert_nothing_smuggled(&s);
    assert!(
        s.fake
            .calls()
            .iter()
            .all(|c| c.path() == "/self-service/login" && c.body.is_empty()),
        "{:?}",
        s.fake.calls()
    );
    still_serving(&s).await;
}

#[tokio::test]
async fn content_length_and_transfer_encoding_together_cannot_smuggle() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    script_listed_login(&s);
    let hidden = smuggled(&s);
    // The chunked body ends at `0\r\n\r\n`; a reader of Content-Length would take more (or
    // less) and see the hidden request where the other sees the body, or the reverse.
    let chunked_body = format!("0\r\n\r\n{hidden}");
    let heads = [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked",
            chunked_body.len()
        ),
        "Transfer-Encoding: chunked\r\nContent-Length: 4".to_owned(),
        "Content-Length: 5\r\nTransfer-Encoding: chunked".to_owned(),
        "Transfer-Encoding:\tchunked\r\nContent-Length: 0".to_owned(),
    ];
    for (n, head) in heads.iter().enumerate() {
        s.fake.clear_calls();
        let request = format!(
            "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: {}\r\n{head}\r\n\r\n{chunked_body}",
            JSON[0].1
        );
        let mut conn = RawConn::connect(s.gw.public).await;
        conn.send(&request).await;
        let resp = conn.response().await;
        // hyper takes the chunked framing (RFC 9112 6.3), answers the one request and closes
        // the connection, since a message with both fields may be an attack (RFC 9112 6.1).
        assert_eq!(resp.status, 403, "{head:?}: {}", resp.text());
        assert!(
            conn.closed_within(DRAIN).await,
            "{head:?}: connection left open"
        );
        assert_no_credential_bytes(&conn.received, &s.listed);
        assert_eq!(
            String::from_utf8_lossy(&conn.received)
                .matches("HTTP/1.1 ")
                .count(),
            1,
            "{head:?}: the hidden request was answered"
        );
        // (The admin side sees the revocations of the refused logins.)
        let calls: Vec<_> = s
            .fake
            .calls()
            .into_iter()
            .filter(|c| c.side == Side::Public)
            .collect();
        assert_eq!(calls.len(), 1, "{head:?}: {calls:?}");
        assert_eq!(calls[0].path(), "/self-service/login");
        assert!(
            calls[0].body.is_empty(),
            "{head:?}: {:?}",
            calls[0].body_text()
        );
        assert!(
            calls[0].header("transfer-encoding").is_none()
                || calls[0].header("content-length").is_none(),
            "{head:?}: both framings reached Kratos"
        );
        assert_eq!(logs.audit("blocked").len(), n + 1, "{head:?}");
    }
    assert_nothing_smuggled(&s);

    // Transfer codings hyper cannot frame are refused outright.
    for te in [
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity",
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: gzip",
    ] {
        s.fake.clear_calls();
        let before = logs.connection_errors();
        let request = format!(
            "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n{te}\r\nContent-Length: 2\r\n\r\n{{}}{hidden}"
        );
        let got = send_and_drain(s.gw.public, request, DRAIN).await;
        assert_refused_by_hyper(&s, &logs, &got, te, before);
    }
    // HTTP/1.0 has no chunked coding.
    let before = logs.connection_errors();
    let got = send_and_drain(
        s.gw.public,
        format!("POST /self-service/login HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{hidden}"),
        DRAIN,
    )
    .await;
    assert_refused_by_hyper(&s, &logs, &got, "HTTP/1.0 with Transfer-Encoding", before);
    still_serving(&s).await;
}

#[tokio::test]
async fn duplicate_content_length_cannot_smuggle() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    script_listed_login(&s);
    let hidden = smuggled(&s);

    // Two different lengths: refused.
    let before = logs.connection_errors();
    let got = send_and_drain(
        s.gw.public,
        format!(
            "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: {}\r\n\r\n{{}}{hidden}",
            2 + hidden.len()
        ),
        DRAIN,
    )
    .await;
    assert_refused_by_hyper(&s, &logs, &got, "Content-Length: 2 and another", before);

    // The same length twice is one length: judged once, forwarded with one field.
    let (resp, conn) = exchange(
        s.gw.public,
        "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_no_credential_bytes(&conn.received, &s.listed);
    let calls = s
        .fake
        .calls_matching(Side::Public, "POST", "/self-service/login");
    assert_eq!(calls.len(), 1);
    assert!(
        calls[0].header_all("content-length").len() <= 1,
        "{:?}",
        calls[0].headers
    );
    assert_eq!(calls[0].body.as_ref(), b"{}");
    assert_eq!(logs.audit("blocked").len(), 1);
    assert_nothing_smuggled(&s);
    still_serving(&s).await;
}

#[tokio::test]
async fn pipelined_requests_behind_a_blocked_login_are_answered_in_order() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    script_listed_login(&s);
    let login = "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let listed_whoami = smuggled(&s);
    let unlisted_whoami = format!(
        "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: {}\r\n\r\n",
        s.unlisted.token
    );
    let mut conn = RawConn::connect(s.gw.public).await;
    // One write: three requests back to back.
    conn.send(format!("{login}{listed_whoami}{unlisted_whoami}"))
        .await;

    let first = conn.response().await;
    assert_eq!(first.status, 403, "{}", first.text());
    assert_eq!(first.json()["error"]["id"], "identity_disabled");
    let second = conn.response().await;
    assert_eq!(second.status, 401, "{}", second.text());
    assert_eq!(second.text(), fixtures::WHOAMI_401_WIRE);
    let mut listed_bytes = first.raw.clone();
    listed_bytes.extend_from_slice(&second.raw);
    assert_no_credential_bytes(&listed_bytes, &s.listed);
    // The third answer is the unlisted identity's own session, so the order held.
    let third = conn.response().await;
    assert_eq!(third.status, 200, "{}", third.text());
    assert_eq!(
        third.header("x-kratos-authenticated-identity-id"),
        Some(s.unlisted.id().as_str())
    );
    assert!(!String::from_utf8_lossy(&third.raw).contains(&s.listed.token));

    // The login was refused on its response; the whoami either on its response (the
    // session still alive) or by Kratos itself (the revocation already done).
    let blocked = logs.audit("blocked");
    assert!(
        blocked.iter().any(|e| e["kind"] == "login"),
        "{}",
        logs.text()
    );
    assert!(blocked.len() <= 2);
}

#[tokio::test]
async fn http2_transfer_encoding_or_short_content_length_cannot_smuggle_to_http1() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    script_listed_login(&s);
    let hidden = smuggled(&s);
    let authority = s.gw.public.to_string();
    let base = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/self-service/login"),
        (":authority", authority.as_str()),
        ("content-type", "application/json"),
    ];
    let te_body = format!("0\r\n\r\n{hidden}");
    let cl_body = format!("{{}}{hidden}");
    type Attempt<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let attempts: Vec<Attempt> = vec![
        (
            "H2.TE",
            vec![("transfer-encoding", "chunked")],
            te_body.clone(),
        ),
        (
            "H2 connection field",
            vec![("connection", "keep-alive")],
            cl_body.clone(),
        ),
        (
            "H2.CL short",
            vec![("content-length", "2")],
            cl_body.clone(),
        ),
        ("H2.CL zero", vec![("content-length", "0")], cl_body.clone()),
        ("H2 te: chunked", vec![("te", "chunked")], te_body.clone()),
        ("H2 upgrade", vec![("upgrade", "h2c")], cl_body.clone()),
    ];
    for (what, extra, body) in attempts {
        let mut fields = base.to_vec();
        fields.extend(extra);
        let outcome = raw_h2::request(s.gw.public, &fields, Some(body.as_bytes()), DRAIN).await;
        // h2 refuses the malformed request itself: the stream is reset with PROTOCOL_ERROR
        // (RFC 9113 8.2.2, 8.1.1) before hyper hands the gateway a request, so nothing is
        // forwarded and there is no gateway log line for it.
        assert_eq!(outcome.reset, Some(1), "{what}: {outcome:?}");
        assert_eq!(outcome.status, None, "{what}: answered: {outcome:?}");
        assert_no_credential_bytes(&outcome.raw, &s.listed);
        let public: Vec<_> = s
            .fake
            .calls()
            .into_iter()
            .filter(|c| c.side == Side::Public)
            .collect();
        assert!(public.is_empty(), "{what}: reached Kratos: {public:?}");
    }
    // The same frames with an honest content-length go through and are judged.
    let honest_len = "2".to_owned();
    let mut fields = base.to_vec();
    fields.push(("content-length", honest_len.as_str()));
    let outcome = raw_h2::request(s.gw.public, &fields, Some(b"{}"), DRAIN).await;
    assert_eq!(outcome.status, Some(403), "{outcome:?}");
    assert_no_credential_bytes(&outcome.raw, &s.listed);
    assert!(!logs.audit("blocked").is_empty());
    still_serving(&s).await;
}
