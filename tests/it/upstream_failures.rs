//! When Kratos is down, unreachable or slow, clients get a prompt 502/504 with a Kratos-style
//! JSON error instead of a hang, the gateway keeps serving, and `/metrics` counts each kind.

use crate::support;

use support::metrics::samples;

use std::time::{Duration, Instant};

use support::client::{self, Reply as ClientReply};
use support::fake_kratos::{FakeKratos, Reply};
use support::gateway::{start_gateway_with, TestGateway};

/// The value of the series `name` with (at least) these labels; 0 when absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map_or(0.0, |(_, _, v)| v)
}

async fn scrape(gw: &TestGateway) -> String {
    let r = client::get(&gw.ops_url("/metrics")).await;
    assert_eq!(r.status, 200);
    r.text()
}

fn upstream_errors(text: &str, reason: &str) -> f64 {
    metric(
        text,
        "kratos_gate_upstream_errors_total",
        &[("reason", reason)],
    )
}

/// A `127.0.0.1` URL on which nothing listens.
fn dead_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn assert_kratos_error(reply: &ClientReply, code: u16, id: &str) {
    assert_eq!(reply.status, code, "{}", reply.text());
    assert_eq!(reply.headers["content-type"], "application/json");
    let v = reply.json();
    let e = &v["error"];
    assert_eq!(e["code"], code, "{v}");
    assert_eq!(e["id"], id, "{v}");
    assert_eq!(
        e["status"],
        http::StatusCode::from_u16(code)
            .expect("code")
            .canonical_reason()
            .expect("reason"),
        "{v}"
    );
    for field in ["reason", "message"] {
        assert!(
            e[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {v}"
        );
    }
    // Nothing internal (addresses, OS errors) leaks to the client.
    let text = reply.text();
    assert!(!text.contains("127.0.0.1"), "{text}");
    assert!(!text.to_ascii_lowercase().contains("refused"), "{text}");
}

/// Generous timeouts, so that "quickly" below means "without waiting for any of them".
fn patient(c: &mut kratos_gate::config::Config) {
    c.upstream.connect_timeout = kratos_gate::config::HumanDuration(Duration::from_secs(5));
    c.upstream.response_timeout = kratos_gate::config::HumanDuration(Duration::from_secs(10));
}

#[tokio::test]
async fn unreachable_kratos_answers_502_kratos_error_quickly_on_both_listeners() {
    let gw = start_gateway_with(&dead_url(), &dead_url(), "", patient).await;
    for url in [
        gw.public_url("/self-service/login/browser"),
        gw.admin_url("/admin/identities"),
    ] {
        let started = Instant::now();
        let reply = client::get(&url).await;
        let elapsed = started.elapsed();
        assert_kratos_error(&reply, 502, "upstream_unreachable");
        assert!(
            elapsed < Duration::from_secs(1),
            "502 took {elapsed:?} (connect timeout 5 s)"
        );
    }
    let m = scrape(&gw).await;
    assert_eq!(upstream_errors(&m, "unreachable"), 2.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "kratos_gate_requests_total",
            &[("listener", "public"), ("status", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "kratos_gate_requests_total",
            &[("listener", "admin"), ("status", "5xx")]
        ),
        1.0
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn stopped_kratos_answers_502_and_the_gateway_recovers_when_it_returns() {
    let fake = FakeKratos::start().await;
    fake.on_public("GET", "/up", Reply::text(200, "up"));
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", patient).await;
    // A pooled keep-alive connection to Kratos exists when it stops.
    assert_eq!(client::get(&gw.public_url("/up")).await.status, 200);
    let port = fake.public_addr.port();
    drop(fake);

    let started = Instant::now();
    let reply = client::get(&gw.public_url("/up")).await;
    assert_kratos_error(&reply, 502, "upstream_unreachable");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let again = client::get(&gw.public_url("/up")).await;
    assert_kratos_error(&again, 502, "upstream_unreachable");

    let m = scrape(&gw).await;
    let failures = upstream_errors(&m, "unreachable") + upstream_errors(&m, "broken_response");
    assert_eq!(failures, 2.0, "{m}");

    // Kratos back on the same port: served again, no restart needed.
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("rebind Kratos's port");
    listener.set_nonblocking(true).expect("nonblocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nback")
            .await
            .expect("write");
    });
    let reply = client::get(&gw.public_url("/up")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "back");
    server.await.expect("server");
    gw.shutdown().await;
}

#[tokio::test]
async fn connect_timeout_answers_502_within_the_connect_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
    // neither succeeds nor fails until the client gives up.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let listener = socket.listen(0).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut fillers = Vec::new();
    let mut hangs = false;
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            Ok(Err(e)) => panic!("filler connect failed: {e}"),
            Err(_) => {
                hangs = true;
                break;
            }
        }
    }
    assert!(
        hangs,
        "could not fill the accept queue; connects never hang here"
    );

    let connect_timeout = Duration::from_millis(300);
    let gw = start_gateway_with(
        &format!("http://{addr}"),
        &format!("http://{addr}"),
        "",
        |c| {
            c.upstream.connect_timeout = kratos_gate::config::HumanDuration(connect_timeout);
            c.upstream.response_timeout =
                kratos_gate::config::HumanDuration(Duration::from_secs(10));
        },
    )
    .await;
    let started = Instant::now();
    let reply = client::get(&gw.public_url("/self-service/login/api")).await;
    let elapsed = started.elapsed();
    assert_kratos_error(&reply, 502, "upstream_unreachable");
    assert!(
        elapsed >= connect_timeout && elapsed < connect_timeout + Duration::from_secs(1),
        "502 after {elapsed:?} with a connect timeout of {connect_timeout:?}"
    );
    let m = scrape(&gw).await;
    assert_eq!(upstream_errors(&m, "unreachable"), 1.0, "{m}");
    drop(fillers);
    drop(listener);
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_kratos_answers_504_within_the_response_timeout_and_serving_continues() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        "GET",
        "/slow",
        Reply::text(200, "too late").delay(Duration::from_secs(5)),
    );
    fake.on_public("GET", "/fast", Reply::text(200, "fast"));
    fake.on_admin(
        "GET",
        "/admin/slow",
        Reply::text(200, "too late").delay(Duration::from_secs(5)),
    );
    let timeout = Duration::from_millis(400);
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        c.upstream.response_timeout = kratos_gate::config::HumanDuration(timeout);
    })
    .await;

    for url in [gw.public_url("/slow"), gw.admin_url("/admin/slow")] {
        let started = Instant::now();
        let reply = client::get(&url).await;
        let elapsed = started.elapsed();
        assert_kratos_error(&reply, 504, "upstream_timeout");
        assert!(
            elapsed >= timeout && elapsed < timeout + Duration::from_secs(1),
            "504 after {elapsed:?} with a response timeout of {timeout:?}"
        );
    }
    // Still serving, on new and on pooled connections.
    for _ in 0..3 {
        let reply = client::get(&gw.public_url("/fast")).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "fast");
    }
    let m = scrape(&gw).await;
    assert_eq!(upstream_errors(&m, "timeout"), 2.0, "{m}");
    assert_eq!(
        metric(
            &m,
            "kratos_gate_requests_total",
            &[("listener", "public"), ("status", "5xx")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "kratos_gate_requests_total",
            &[("listener", "public"), ("status", "2xx")]
        ),
        3.0
    );
    gw.shutdown().await;
}
