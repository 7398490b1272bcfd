//! The pool against small HTTP/1.1 servers that count connections and requests: reuse, idle
//! expiry, the idle bound, a connection closed by the server between requests (the request
//! goes out once, on another connection) and one that breaks after the request was written
//! (not retried).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::body::{empty_body, full_body};
use crate::testing::{self, Server};

const WAIT: Duration = Duration::from_secs(10);

/// What a [`Raw`] server does after reading a request head.
#[derive(Clone, Copy)]
enum After {
    /// Answers and keeps the connection open (keep-alive, no `Connection: close`).
    Answer,
    /// Answers, then closes the connection a moment later without announcing it.
    AnswerThenClose,
    /// Answers the first request of each connection; closes on the second unanswered.
    CloseOnSecond,
}

/// A raw HTTP/1.1 server on 127.0.0.1:0 counting connections and request heads.
struct Raw {
    url: UpstreamUrl,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Raw {
    async fn start(after: After) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (c, r) = (Arc::clone(&connections), Arc::clone(&requests));
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = Arc::clone(&r);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut on_this = 0;
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            r.fetch_add(1, Ordering::SeqCst);
                            on_this += 1;
                            if matches!(after, After::CloseOnSecond) && on_this == 2 {
                                return;
                            }
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            if matches!(after, After::AnswerThenClose) {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                                return;
                            }
                        }
                    }
                });
            }
        });
        Raw {
            url: format!("http://{addr}").parse().expect("url"),
            connections,
            requests,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn pool(
    url: &UpstreamUrl,
    idle_timeout: Option<Duration>,
    max_idle: Option<usize>,
) -> Arc<Upstream> {
    let mut config = testing::config(&url.to_string(), &url.to_string(), "");
    if let Some(t) = idle_timeout {
        config.upstream.pool_idle_timeout = crate::config::HumanDuration(t);
    }
    if let Some(n) = max_idle {
        config.upstream.pool_max_idle_per_host = n;
    }
    Upstream::new(&config, testing::client_tls(), url)
}

fn get() -> Request<Body> {
    Request::get("http://ignored.example/x?y=1")
        .header("host", "auth.example.com")
        .body(empty_body())
        .expect("request")
}

/// One exchange as the proxy does it: send, read the whole body through the lease's body.
async fn exchange(pool: &Arc<Upstream>, request: Request<Body>) -> Result<Bytes, Error> {
    let (response, lease) = tokio::time::timeout(WAIT, pool.send(request))
        .await
        .expect("in time")?;
    assert_eq!(response.status(), StatusCode::OK);
    let response = lease.attach(response.map(|b| b.map_err(Into::into).boxed()));
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body");
    Ok(body.to_bytes())
}

#[tokio::test]
async fn a_connection_is_reused_for_the_next_request() {
    let server = Raw::start(After::Answer).await;
    let pool = pool(&server.url, None, None);
    for _ in 0..5 {
        assert_eq!(exchange(&pool, get()).await.expect("answer"), "ok");
        assert_eq!(pool.idle_count(), 1);
    }
    assert_eq!(server.requests(), 5);
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn the_request_goes_out_in_origin_form_with_its_host() {
    let server = Server::start(|_| testing::reply(200, "")).await;
    let url: UpstreamUrl = server.url().parse().expect("url");
    let pool = pool(&url, None, None);
    exchange(&pool, get()).await.expect("answer");
    let mut no_host = Request::post("http://ignored.example/p")
        .body(full_body("abc"))
        .expect("request");
    no_host.headers_mut().remove(header::HOST);
    exchange(&pool, no_host).await.expect("answer");
    let seen = server.seen();
    assert_eq!(seen[0].target(), "/x?y=1");
    assert_eq!(seen[0].uri.authority(), None);
    assert_eq!(seen[0].headers["host"], "auth.example.com");
    assert_eq!(seen[1].headers["host"], url.authority().as_str());
    assert_eq!(seen[1].body, "abc");
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let server = Raw::start(After::Answer).await;
    let pool = pool(&server.url, Some(Duration::from_millis(200)), None);
    exchange(&pool, get()).await.expect("answer");
    assert_eq!(pool.idle_count(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // The reaper closed it without any request coming by.
    assert_eq!(pool.idle_count(), 0);
    exchange(&pool, get()).await.expect("answer");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn an_expired_connection_is_not_used_even_before_the_reaper_runs() {
    let server = Raw::start(After::Answer).await;
    let pool = pool(&server.url, Some(Duration::from_secs(10)), None);
    exchange(&pool, get()).await.expect("answer");
    // As if it had been idle for longer than the timeout.
    pool.lock()[0].since -= Duration::from_secs(11);
    exchange(&pool, get()).await.expect("answer");
    assert_eq!(server.connections(), 2);
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn no_more_than_max_idle_connections_are_kept() {
    let server = Raw::start(After::Answer).await;
    let pool = pool(&server.url, None, Some(2));
    // Four exchanges at once: four connections, each response held until all have come.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(pool.send(get()).await.expect("answer"));
    }
    assert_eq!(server.connections(), 4);
    assert_eq!(pool.idle_count(), 0);
    drop(held);
    assert_eq!(pool.idle_count(), 2);

    let none = Raw::start(After::Answer).await;
    let pool = self::pool(&none.url, None, Some(0));
    for _ in 0..3 {
        exchange(&pool, get()).await.expect("answer");
    }
    assert_eq!(pool.idle_count(), 0);
    assert_eq!(none.connections(), 3);
}

#[tokio::test]
async fn a_connection_closed_by_the_server_between_requests_is_replaced_and_the_request_sent_once()
{
    let server = Raw::start(After::AnswerThenClose).await;
    let pool = pool(&server.url, None, None);
    exchange(&pool, get()).await.expect("answer");
    // The server's close arrives while the connection sits in the pool.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.idle_count(), 1);
    let upload = Request::post("/upload")
        .body(full_body("payload"))
        .expect("r");
    assert_eq!(exchange(&pool, upload).await.expect("answer"), "ok");
    assert_eq!(server.requests(), 2, "sent once, on the new connection");
    assert_eq!(server.connections(), 2);
}

#[tokio::test]
async fn a_request_written_before_the_connection_broke_is_not_retried() {
    let server = Raw::start(After::CloseOnSecond).await;
    let pool = pool(&server.url, None, None);
    exchange(&pool, get()).await.expect("answer");
    let err = exchange(&pool, get()).await.expect_err("broken");
    assert!(!err.is_connect(), "{err}");
    assert_eq!(
        server.requests(),
        2,
        "the second request was not sent again"
    );
    assert_eq!(server.connections(), 1);
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn a_response_dropped_unread_does_not_return_its_connection() {
    let server = Server::streaming(|_req| async move {
        // A body far larger than what hyper drains after its reader left.
        testing::reply(200, &"x".repeat(4 << 20))
    })
    .await;
    let url: UpstreamUrl = server.url().parse().expect("url");
    let pool = pool(&url, None, None);
    let (response, lease) = pool.send(get()).await.expect("answer");
    let response = lease.attach(response.map(|b| b.map_err(Into::into).boxed()));
    drop(response);
    assert_eq!(pool.idle_count(), 0);
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_connect_error() {
    let url: UpstreamUrl = testing::closed_url().await.parse().expect("url");
    let pool = pool(&url, None, None);
    let err = pool.send(get()).await.err().expect("refused");
    assert!(err.is_connect(), "{err}");
}
