//! What the gateway adds, keeps and removes on the way: hop-by-hop fields (RFC 9110 §7.6.1)
//! in both directions, `Host`, `X-Forwarded-*`, client-IP fields by trust, and refused
//! protocol upgrades. Requests are written by hand on a raw TCP connection, because client
//! libraries drop or rewrite exactly the fields under test.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::fake_kratos::{FakeKratos, RecordedCall, Reply};
use support::gateway::{start_gateway, start_gateway_with, TestGateway};

/// A response as read off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    /// Header fields in wire order, names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn has(&self, name: &str) -> bool {
        self.headers.iter().any(|(k, _)| k == name)
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a complete chunked body; `None` while incomplete.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(data, b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            find(data, b"\r\n")?;
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Parses a response once it is complete; `None` while more bytes are needed.
fn parse_response(buf: &[u8], eof: bool) -> Option<RawResponse> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).expect("response head is text");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &buf[head_end + 4..];
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let body = if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().expect("content-length");
        if rest.len() < len {
            return None;
        }
        rest[..len].to_vec()
    } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
        dechunk(rest)?
    } else if eof {
        rest.to_vec()
    } else {
        return None;
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

async fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(r) = parse_response(&buf, false) {
            return r;
        }
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .expect("response within 5 s")
            .expect("read");
        if n == 0 {
            return parse_response(&buf, true).unwrap_or_else(|| {
                panic!(
                    "connection closed mid-response: {:?}",
                    String::from_utf8_lossy(&buf)
                )
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Sends hand-written request bytes on a new connection and reads one response.
async fn raw_exchange(addr: SocketAddr, request: &str) -> (RawResponse, TcpStream) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let response = read_response(&mut stream).await;
    (response, stream)
}

/// The one call the fake recorded for `path`.
fn only_call(fake: &FakeKratos, path: &str) -> RecordedCall {
    let calls: Vec<RecordedCall> = fake
        .calls()
        .into_iter()
        .filter(|c| c.path() == path)
        .collect();
    assert_eq!(calls.len(), 1, "calls to {path}: {calls:?}");
    calls.into_iter().next().expect("one")
}

async fn trusting_localhost(fake: &FakeKratos) -> TestGateway {
    start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        c.forwarding.trusted_proxies = vec!["127.0.0.1/32".parse().expect("cidr")];
    })
    .await
}

const HOP_BY_HOP_REQUEST: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "x-secret-hop",
    "close-me-too",
];

#[tokio::test]
async fn hop_by_hop_request_fields_do_not_reach_kratos() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/hop", Reply::text(200, "ok"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    for listener in [gw.public, gw.admin] {
        fake.clear_calls();
        let (resp, _) = raw_exchange(
            listener,
            "GET /hop HTTP/1.1\r\n\
             Host: auth.example.com\r\n\
             Connection: keep-alive, X-Secret-Hop\r\n\
             Connection: Close-Me-Too\r\n\
             X-Secret-Hop: 1\r\n\
             Close-Me-Too: 2\r\n\
             Keep-Alive: timeout=5, max=100\r\n\
             TE: trailers\r\n\
             Trailer: X-Checksum\r\n\
             Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
             Proxy-Connection: keep-alive\r\n\
             X-Kept: yes\r\n\
             Authorization: Bearer end-to-end\r\n\
             \r\n",
        )
        .await;
        if listener == gw.public {
            assert_eq!(resp.status, 200, "{resp:?}");
        }
        // (The admin listener forwards to the fake's admin side, unscripted there.)
        let call = only_call(&fake, "/hop");
        for name in HOP_BY_HOP_REQUEST {
            assert!(
                call.header(name).is_none(),
                "{name} forwarded: {:?}",
                call.headers
            );
        }
        assert_eq!(call.header("x-kept"), Some("yes"));
        assert_eq!(call.header("authorization"), Some("Bearer end-to-end"));
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn hop_by_hop_response_fields_do_not_reach_the_client() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        "GET",
        "/hop-response",
        Reply::text(200, "ok")
            .header("connection", "X-Resp-Hop")
            .header("x-resp-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("proxy-authenticate", "Basic realm=\"upstream\"")
            .header("te", "trailers")
            .header("trailer", "X-Checksum")
            .header("x-kept", "yes"),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let (resp, _) = raw_exchange(
        gw.public,
        "GET /hop-response HTTP/1.1\r\nHost: auth.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, b"ok");
    for name in [
        "connection",
        "x-resp-hop",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "te",
        "trailer",
    ] {
        assert!(!resp.has(name), "{name} passed to the client: {resp:?}");
    }
    assert_eq!(resp.header_all("x-kept"), vec!["yes"]);
    gw.shutdown().await;
}

#[tokio::test]
async fn host_is_kept_and_forwarded_proto_and_host_are_set() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/host", Reply::text(200, "ok"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let (resp, _) = raw_exchange(
        gw.public,
        "GET /host HTTP/1.1\r\nHost: auth.example.com:8443\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let call = only_call(&fake, "/host");
    assert_eq!(call.header_all("host"), vec!["auth.example.com:8443"]);
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["auth.example.com:8443"]
    );
    assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    gw.shutdown().await;
}

const FORGED: &str = "GET /forged HTTP/1.1\r\n\
Host: auth.example.com\r\n\
X-Forwarded-For: 198.51.100.7, 10.0.0.1\r\n\
X-Forwarded-For: 10.0.0.2\r\n\
X-Forwarded-Proto: https\r\n\
X-Forwarded-Host: login.example.com\r\n\
True-Client-IP: 198.51.100.7\r\n\
Cf-Connecting-IP: 198.51.100.8\r\n\
X-Real-IP: 198.51.100.9\r\n\
Cf-Ipcity: Bern\r\n\
Cf-Ipcountry: CH\r\n\
\r\n";

const CLIENT_IP_FIELDS: &[(&str, &str)] = &[
    ("true-client-ip", "198.51.100.7"),
    ("cf-connecting-ip", "198.51.100.8"),
    ("x-real-ip", "198.51.100.9"),
    ("cf-ipcity", "Bern"),
    ("cf-ipcountry", "CH"),
];

#[tokio::test]
async fn untrusted_peer_cannot_forge_forwarding_or_client_ip_fields() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/forged", Reply::text(200, "ok"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let (resp, _) = raw_exchange(gw.public, FORGED).await;
    assert_eq!(resp.status, 200);
    let call = only_call(&fake, "/forged");
    assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["auth.example.com"]
    );
    for (name, _) in CLIENT_IP_FIELDS {
        assert!(
            call.header(name).is_none(),
            "{name} from an untrusted peer reached Kratos: {:?}",
            call.headers
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn trusted_proxy_chain_is_appended_and_client_ip_fields_kept() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/forged", Reply::text(200, "ok"));
    fake.on_public("ANY", "/plain", Reply::text(200, "ok"));
    let gw = trusting_localhost(&fake).await;
    let (resp, _) = raw_exchange(gw.public, FORGED).await;
    assert_eq!(resp.status, 200);
    let call = only_call(&fake, "/forged");
    assert_eq!(
        call.header_all("x-forwarded-for"),
        vec!["198.51.100.7, 10.0.0.1, 10.0.0.2, 127.0.0.1"]
    );
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["https"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["login.example.com"]
    );
    for (name, value) in CLIENT_IP_FIELDS {
        assert_eq!(call.header_all(name), vec![*value], "{name}");
    }

    // A trusted proxy that sends no chain gets the peer alone.
    let (resp, _) = raw_exchange(
        gw.public,
        "GET /plain HTTP/1.1\r\nHost: auth.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200);
    let call = only_call(&fake, "/plain");
    assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["auth.example.com"]
    );
    gw.shutdown().await;
}

fn assert_upgrade_refused(resp: &RawResponse) {
    assert!(
        (400..500).contains(&resp.status),
        "upgrade not refused with a 4xx: {resp:?}"
    );
    assert_ne!(resp.status, 101);
    assert_eq!(resp.header_all("content-type"), vec!["application/json"]);
    let v = resp.json();
    assert_eq!(v["error"]["code"], resp.status, "{v}");
    assert_eq!(v["error"]["id"], "upgrade_not_supported", "{v}");
    assert!(v["error"]["status"].is_string(), "{v}");
    assert!(
        v["error"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("upgrade")),
        "{v}"
    );
    assert!(v["error"]["message"].is_string(), "{v}");
}

#[tokio::test]
async fn websocket_upgrade_is_refused_and_never_reaches_kratos() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/ws", Reply::text(200, "reached Kratos"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    for listener in [gw.public, gw.admin] {
        let (resp, _) = raw_exchange(
            listener,
            "GET /ws HTTP/1.1\r\n\
             Host: auth.example.com\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\
             \r\n",
        )
        .await;
        assert_upgrade_refused(&resp);
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    gw.shutdown().await;
}

#[tokio::test]
async fn h2c_upgrade_is_refused_and_cannot_smuggle_requests() {
    let fake = FakeKratos::start().await;
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    for listener in [gw.public, gw.admin] {
        let (resp, mut stream) = raw_exchange(
            listener,
            "GET /sessions/whoami HTTP/1.1\r\n\
             Host: auth.example.com\r\n\
             Connection: Upgrade, HTTP2-Settings\r\n\
             Upgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
             \r\n",
        )
        .await;
        assert_upgrade_refused(&resp);
        // A client that goes on as if the upgrade had worked gets nothing through.
        let _ = stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .await;
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut rest)).await;

        // Variants: only `Upgrade`, only `HTTP2-Settings`.
        let (resp, _) = raw_exchange(
            listener,
            "POST /self-service/login HTTP/1.1\r\n\
             Host: auth.example.com\r\n\
             Upgrade: h2c\r\n\
             Content-Length: 2\r\n\
             \r\n{}",
        )
        .await;
        assert_upgrade_refused(&resp);
        let (resp, _) = raw_exchange(
            listener,
            "GET /sessions/whoami HTTP/1.1\r\n\
             Host: auth.example.com\r\n\
             HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\
             \r\n",
        )
        .await;
        assert_upgrade_refused(&resp);
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    gw.shutdown().await;
}
