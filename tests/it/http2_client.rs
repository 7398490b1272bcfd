//! Clients speaking HTTP/2 with prior knowledge (h2c) get answers; Kratos behind the gateway
//! still sees HTTP/1.1, with a `Host` taken from `:authority` and the cookies of split
//! `cookie` fields.

use crate::support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use support::client::{self, request, send};
use support::fake_kratos::{FakeKratos, Reply, Side};
use support::gateway::start_gateway;

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

#[tokio::test]
async fn h2c_prior_knowledge_client_gets_answers_from_an_http1_kratos() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        "ANY",
        "/h2",
        Reply::text(200, "hello over h2\n")
            .header("x-multi", "one")
            .header("x-multi", "two"),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let c = client::http2();

    let reply = send(
        &c,
        request(Method::GET, &gw.public_url("/h2?q=%2F&x"))
            .body(empty())
            .expect("req"),
    )
    .await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "hello over h2\n");
    let multi: Vec<_> = reply.headers.get_all("x-multi").iter().collect();
    assert_eq!(multi, vec!["one", "two"]);

    let body = "{\"method\":\"password\",\"identifier\":\"h2@example.com\"}";
    let reply = send(
        &c,
        request(Method::POST, &gw.public_url("/h2"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .expect("req"),
    )
    .await;
    assert_eq!(reply.status, 200);

    let calls = fake.calls_matching(Side::Public, "ANY", "/h2");
    assert_eq!(calls.len(), 2);
    let authority = gw.public.to_string();
    for call in &calls {
        assert_eq!(call.version, Version::HTTP_11, "Kratos must see HTTP/1.1");
        // HTTP/2 has no Host field; the gateway copies `:authority`.
        assert_eq!(call.header_all("host"), vec![authority.as_str()]);
        assert_eq!(
            call.header_all("x-forwarded-host"),
            vec![authority.as_str()]
        );
        assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
        assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    }
    assert_eq!(calls[0].method, Method::GET);
    assert_eq!(calls[0].uri.to_string(), "/h2?q=%2F&x");
    assert_eq!(calls[1].method, Method::POST);
    assert_eq!(calls[1].body.as_ref(), body.as_bytes());
    gw.shutdown().await;
}

#[tokio::test]
async fn http2_split_cookie_fields_reach_kratos_as_one_cookie_field() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/cookies", Reply::text(200, "ok"));
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    // HTTP/2 clients (browsers) send each cookie in its own `cookie` field (RFC 9113
    // §8.2.3) so that HPACK can index them separately.
    let reply = send(
        &client::http2(),
        request(Method::GET, &gw.public_url("/cookies"))
            .header("cookie", "csrf_token_806=q1w2e3")
            .header("cookie", "ory_kratos_session=MTc1NDA5NjE2N3xEWDhF")
            .header("cookie", "theme=dark; lang=de")
            .body(empty())
            .expect("req"),
    )
    .await;
    assert_eq!(reply.version, Version::HTTP_2);
    assert_eq!(reply.status, 200);
    let call = fake
        .calls_matching(Side::Public, "ANY", "/cookies")
        .pop()
        .expect("reached Kratos");
    assert_eq!(call.version, Version::HTTP_11);
    // Every cookie arrives, in order...
    let cookies: Vec<String> = call
        .header_all("cookie")
        .iter()
        .flat_map(|v| v.split(';'))
        .map(|c| c.trim().to_owned())
        .collect();
    assert_eq!(
        cookies,
        vec![
            "csrf_token_806=q1w2e3",
            "ory_kratos_session=MTc1NDA5NjE2N3xEWDhF",
            "theme=dark",
            "lang=de"
        ]
    );
    // ...and, going to HTTP/1.1, in a single field joined with "; " (RFC 9113 §8.2.3:
    // "these MUST be concatenated into a single octet string ... before being passed into a
    // non-HTTP/2 context").
    assert_eq!(
        call.header_all("cookie"),
        vec!["csrf_token_806=q1w2e3; ory_kratos_session=MTc1NDA5NjE2N3xEWDhF; theme=dark; lang=de"]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn many_concurrent_streams_on_one_connection() {
    let fake = FakeKratos::start().await;
    let delay = Duration::from_millis(300);
    fake.on_public(
        "GET",
        "/concurrent",
        Reply::from_fn(|call| Reply::text(200, call.uri.query().unwrap_or("").to_owned()))
            .delay(delay),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;

    // Exactly one TCP connection, many streams.
    let tcp = tokio::net::TcpStream::connect(gw.public)
        .await
        .expect("connect");
    let (sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tcp),
    )
    .await
    .expect("h2c handshake");
    let conn_task = tokio::spawn(conn);

    let streams = 100;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..streams {
        let mut sender = sender.clone();
        let uri = gw.public_url(&format!("/concurrent?n={i}"));
        tasks.push(tokio::spawn(async move {
            sender.ready().await.expect("connection ready");
            let resp = sender
                .send_request(Request::get(uri).body(empty()).expect("req"))
                .await
                .expect("stream answered");
            let version = resp.version();
            let status = resp.status();
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            (version, status, body)
        }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let (version, status, body) = task.await.expect("task");
        assert_eq!(version, Version::HTTP_2);
        assert_eq!(status, 200, "stream {i}");
        assert_eq!(body, format!("n={i}"), "stream {i} got another's answer");
    }
    let elapsed = started.elapsed();
    // One after another they would need streams × delay (30 s).
    assert!(
        elapsed < delay * 10,
        "{streams} streams of {delay:?} each took {elapsed:?}: not concurrent"
    );
    assert_eq!(
        fake.calls_matching(Side::Public, Method::GET, "/concurrent")
            .len(),
        streams
    );
    drop(sender);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn_task).await;
    gw.shutdown().await;
}
