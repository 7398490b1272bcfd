//! Responses shaped to slip a credential past an inspecting proxy: a session `Set-Cookie` in
//! chunked trailers (after the head has gone), in an informational (1xx) response, behind
//! conflicting `Content-Length` fields, twice in one answer in two spellings of the cookie
//! name, and a session token in a JSON body served as `text/plain` or `text/html` (or behind
//! a byte-order mark split across reads). Kratos does not send any of these; something between
//! it and the gateway might, and the guarantee is about what reaches the client whatever
//! Kratos's side sends. The client side is raw bytes (HTTP/1.1) or frames read through hyper's
//! HTTP/2 connection (which keeps trailers), so nothing is normalised away.

use crate::support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use support::enforcement::{blocklist_with_reason, metric, setup, wait_until, Person, JSON, WAIT};
use support::fake_kratos::{FakeKratos, Reply, SESSION_COOKIE};
use support::fixtures;
use support::gateway::{start_gateway_with, TestGateway};
use support::logs;
use support::raw::{
    assert_no_credential_bytes, assert_still_serving, exchange, session_set_cookie_lines,
};
use support::raw_upstream::{RawRequest, RawUpstream};

/// `listed` registered at a fake Kratos (the admin API, for revocations and lookups) and a
/// gateway whose public upstream is the hand-written `upstream`, with `listed` on its list.
async fn behind_raw_upstream(upstream: &RawUpstream, listed: &Person) -> (FakeKratos, TestGateway) {
    let fake = FakeKratos::start().await;
    fake.add_session(listed.spec());
    let gw = start_gateway_with(
        &upstream.url(),
        &fake.admin_url(),
        &blocklist_with_reason(listed),
        |_| {},
    )
    .await;
    assert!(gw.wait_for_listed(&listed.id(), true, WAIT).await);
    (fake, gw)
}

/// What an HTTP/2 client receives, trailers included.
struct H2Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
    trailers: Option<http::HeaderMap>,
}

async fn h2_get(addr: std::net::SocketAddr, path: &str) -> H2Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::GET)
        .uri(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("answer");
    let (parts, body) = resp.into_parts();
    let collected = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("body in time")
        .expect("body");
    let trailers = collected.trailers().cloned();
    H2Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    }
}

fn h2_assert_no_session_cookie(answer: &H2Answer, p: &Person) {
    let mut fields: Vec<(String, String)> = Vec::new();
    for map in std::iter::once(&answer.headers).chain(answer.trailers.as_ref()) {
        for (k, v) in map {
            fields.push((
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            ));
        }
    }
    let as_text: String = fields
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect::<String>()
        + &String::from_utf8_lossy(&answer.body);
    assert_no_credential_bytes(as_text.as_bytes(), p);
}

fn trailer_response(p: &Person, body: &str) -> Vec<u8> {
    let mut r = String::from(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Transfer-Encoding: chunked\r\n\
         Trailer: Set-Cookie\r\n\
         Connection: close\r\n\r\n",
    );
    if !body.is_empty() {
        r.push_str(&format!("{:x}\r\n{body}\r\n", body.len()));
    }
    r.push_str(&format!(
        "0\r\n\
         Set-Cookie: {}\r\n\
         Set-Cookie: ORY_KRATOS_SESSION={}; Path=/\r\n\
         \r\n",
        p.set_cookie(),
        p.cookie
    ));
    r.into_bytes()
}

#[tokio::test]
async fn session_cookie_in_chunked_trailers_never_reaches_the_client() {
    let (logs, _guard) = logs::capture();
    let listed = Person::new("listed");
    let for_upstream = listed.clone();
    let upstream = RawUpstream::start(move |req: &RawRequest| {
        let body = if req.target.starts_with("/empty") {
            ""
        } else {
            "hello"
        };
        vec![trailer_response(&for_upstream, body)]
    })
    .await;
    let (_fake, gw) = behind_raw_upstream(&upstream, &listed).await;

    for path in ["/self-service/login/browser", "/empty"] {
        // HTTP/1.1, asking for trailers.
        let (resp, _) = exchange(
            gw.public,
            format!("GET {path} HTTP/1.1\r\nHost: auth.example.com\r\nTE: trailers\r\n\r\n"),
        )
        .await;
        assert_no_credential_bytes(&resp.raw, &listed);
        assert!(resp.trailers.is_empty(), "{:?}", resp.trailers);

        // HTTP/2, where trailers are an ordinary HEADERS frame.
        let answer = h2_get(gw.public, path).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        h2_assert_no_session_cookie(&answer, &listed);
        assert!(
            answer
                .trailers
                .as_ref()
                .is_none_or(|t| !t.contains_key("set-cookie")),
            "{path}: trailers passed: {:?}",
            answer.trailers
        );
    }
    let dropped: Vec<_> = logs
        .events()
        .into_iter()
        .filter(|e| e["event"] == "trailer_cookie_dropped")
        .collect();
    assert!(!dropped.is_empty(), "no log line: {}", logs.text());

    assert_still_serving(gw.public).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn session_cookie_in_an_informational_response_is_not_forwarded() {
    let (logs, _guard) = logs::capture();
    let listed = Person::new("listed");
    let for_upstream = listed.clone();
    let upstream = RawUpstream::start(move |_: &RawRequest| {
        vec![
            format!(
                "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\nSet-Cookie: {}\r\n\r\n",
                for_upstream.set_cookie()
            )
            .into_bytes(),
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                .to_vec(),
        ]
    })
    .await;
    let (_fake, gw) = behind_raw_upstream(&upstream, &listed).await;
    let (resp, conn) = exchange(
        gw.public,
        "GET /self-service/login/browser HTTP/1.1\r\nHost: auth.example.com\r\n\r\n",
    )
    .await;
    // hyper's client consumes informational responses before the gateway sees the final
    // one, so there is nothing for the gateway to judge or log: the client gets only the 200.
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, b"ok");
    assert_no_credential_bytes(&conn.received, &listed);
    assert!(!String::from_utf8_lossy(&conn.received).contains("103"));
    assert!(logs.audit("blocked").is_empty() && logs.audit("fail_closed").is_empty());
    assert_still_serving(gw.public).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn conflicting_content_length_in_a_response_is_refused() {
    let (logs, _guard) = logs::capture();
    let listed = Person::new("listed");
    let for_upstream = listed.clone();
    let upstream = RawUpstream::start(move |req: &RawRequest| {
        let body = fixtures::native_login_body(
            for_upstream.identity,
            for_upstream.session,
            &for_upstream.token,
        );
        let second = if req.target.starts_with("/same") {
            body.len()
        } else {
            2
        };
        vec![format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nContent-Length: {second}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()]
    })
    .await;
    let (_fake, gw) = behind_raw_upstream(&upstream, &listed).await;

    // Two different lengths: hyper's client refuses the response; the gateway answers 502.
    let (resp, conn) = exchange(
        gw.public,
        "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert_no_credential_bytes(&conn.received, &listed);
    assert!(
        logs.events()
            .iter()
            .any(|e| e["message"] == "answering with an error"
                && e["error"].as_str().is_some_and(|m| m.contains("broke off"))),
        "{}",
        logs.text()
    );

    // Two equal lengths are one length (RFC 9110 8.6): the body is judged like any other.
    let (resp, conn) = exchange(
        gw.public,
        "POST /same HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_no_credential_bytes(&conn.received, &listed);
    assert_eq!(logs.audit("blocked").len(), 1, "{}", logs.text());
    assert_still_serving(gw.public).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn whoami_with_two_session_cookies_in_two_spellings_gives_nothing() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let p = &s.listed;
    let upper = format!("ORY_KRATOS_SESSION={}; Path=/; HttpOnly", p.cookie);
    let whoami = fixtures::whoami_body(p.identity, p.session, None);
    let cases: Vec<(&str, Reply)> = vec![
        (
            "identity header and body",
            Reply::json(200, whoami.clone())
                .header("x-kratos-authenticated-identity-id", &p.id())
                .header("set-cookie", &p.set_cookie())
                .header("set-cookie", &upper),
        ),
        (
            "body only",
            Reply::json(200, whoami.clone())
                .header("set-cookie", &upper)
                .header("set-cookie", &p.set_cookie()),
        ),
        (
            "cookies only",
            Reply::text(200, "ok")
                .header("set-cookie", &p.set_cookie())
                .header("set-cookie", &upper),
        ),
        (
            "upper-case cookie only",
            Reply::text(200, "ok").header("set-cookie", &upper),
        ),
        (
            "__Host- prefixed cookie only",
            Reply::text(200, "ok").header(
                "set-cookie",
                &format!("__Host-{SESSION_COOKIE}={}; Path=/; Secure", p.cookie),
            ),
        ),
    ];
    for (what, reply) in cases {
        s.fake.add_session(p.spec());
        let blocked_before = logs.audit("blocked").len();
        // Only the client's call is scripted; the gateway's own whoami lookup meets Kratos.
        s.fake.on_public("ANY", "/sessions/whoami", reply.times(1));
        let (resp, conn) = exchange(
            s.gw.public,
            format!(
                "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nCookie: {}\r\n\r\n",
                p.cookie_header()
            ),
        )
        .await;
        assert_no_credential_bytes(&conn.received, p);
        assert!(
            session_set_cookie_lines(&resp.raw).is_empty(),
            "{what}: {resp:?}"
        );
        assert!(
            resp.status == 401 || resp.status == 403,
            "{what}: {} {}",
            resp.status,
            resp.text()
        );
        // One audit event per credential found (two cookies, two events).
        assert!(
            logs.audit("blocked").len() > blocked_before,
            "{what}: {}",
            logs.text()
        );
        // Let every revocation land before the next round registers the session again.
        assert!(
            wait_until(WAIT, || s
                .fake
                .session_status(p.session)
                .is_none_or(|st| st.revoked)
                && metric(&s.metrics(), "kratos_gate_revocation_queue_depth ")
                    == 0.0)
            .await,
            "{what}: not revoked"
        );
    }
    // Still serving.
    let ok = support::enforcement::send(
        Method::GET,
        &s.public("/sessions/whoami"),
        &[("x-session-token", s.unlisted.token.as_str())],
        "",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn session_json_served_as_text_is_still_inspected() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let p = &s.listed;
    let body = fixtures::native_login_body(p.identity, p.session, &p.token);
    let content_types = [
        Some("text/plain; charset=utf-8"),
        Some("text/html"),
        Some("application/octet-stream"),
        Some("APPLICATION/JSON"),
        None,
    ];
    let (mut blocked, mut failed_closed) = (0, 0);
    for ct in content_types {
        for (variant, prefix) in [
            ("plain", ""),
            ("whitespace", " \r\n\t"),
            ("bom", "\u{feff}"),
        ] {
            let reply = match ct {
                Some(ct) => Reply::raw(200, format!("{prefix}{body}")).header("content-type", ct),
                None => Reply::raw(200, format!("{prefix}{body}")),
            };
            s.fake.on_public("POST", "/self-service/login", reply);
            let (resp, conn) = exchange(
                s.gw.public,
                format!(
                    "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nContent-Type: {}\r\nContent-Length: 2\r\n\r\n{{}}",
                    JSON[0].1
                ),
            )
            .await;
            assert_no_credential_bytes(&conn.received, p);
            if variant == "bom" {
                // Sniffed as JSON, but serde_json does not parse a byte-order mark: a body
                // naming a session token that cannot be parsed is withheld from everyone.
                assert_eq!(resp.status, 502, "{ct:?} {variant}: {}", resp.text());
                failed_closed += 1;
            } else {
                assert_eq!(resp.status, 403, "{ct:?} {variant}: {}", resp.text());
                assert_eq!(resp.json()["error"]["id"], "identity_disabled");
                blocked += 1;
            }
            assert_eq!(logs.audit("blocked").len(), blocked, "{}", logs.text());
            assert_eq!(
                logs.audit("fail_closed").len(),
                failed_closed,
                "{}",
                logs.text()
            );
        }
    }
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn byte_order_mark_split_across_reads_does_not_hide_a_json_body() {
    let (logs, _guard) = logs::capture();
    let listed = Person::new("listed");
    let for_upstream = listed.clone();
    let upstream = RawUpstream::start(move |_: &RawRequest| {
        let body = fixtures::native_login_body(
            for_upstream.identity,
            for_upstream.session,
            &for_upstream.token,
        );
        let mut rest = b"\xBF".to_vec();
        rest.extend_from_slice(body.as_bytes());
        // The mark's first two bytes in one chunk (and one read), the rest in the next.
        vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n\xEF\xBB\r\n".to_vec(),
            [
                format!("{:x}\r\n", rest.len()).into_bytes(),
                rest,
                b"\r\n0\r\n\r\n".to_vec(),
            ]
            .concat(),
        ]
    })
    .await;
    let (_fake, gw) = behind_raw_upstream(&upstream, &listed).await;
    let (resp, conn) = exchange(
        gw.public,
        "POST /self-service/login HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert_no_credential_bytes(&conn.received, &listed);
    // Like the unsplit mark above: sniffed as JSON, unparseable, withheld.
    assert_eq!(resp.status, 502, "{}", resp.text());
    assert_eq!(logs.audit("fail_closed").len(), 1, "{}", logs.text());
    assert_still_serving(gw.public).await;
    gw.shutdown().await;
}
