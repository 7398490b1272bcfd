//! The engine on its own, under a policy that does nothing: it forwards requests and
//! responses and streams bodies both ways without any policy's help.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use tokio::sync::{mpsc, oneshot};

use super::{Exchange, Policy};
use crate::body::{empty_body, full_body, Body, BoxError};
use crate::testing::{self, engine, send, Server};

const WAIT: Duration = Duration::from_secs(10);

/// A policy that does nothing: both phases hand the message on unchanged.
struct PassThrough;

impl Policy for PassThrough {
    type Ctx = ();

    async fn on_request(
        &self,
        _: &Exchange,
        _: &mut (),
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        Ok(request)
    }

    async fn on_response(
        &self,
        _: &Exchange,
        _: (),
        response: Response<Incoming>,
    ) -> Response<Body> {
        response.map(|b| b.map_err(Into::into).boxed())
    }
}

/// A body the test writes frame by frame.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx).map(|d| d.map(|d| Ok(Frame::data(d))))
    }
}

fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, ChannelBody(rx).boxed())
}

/// `GET target` with the Host a client would send.
async fn get(addr: std::net::SocketAddr, target: &str) -> Response<Incoming> {
    let request = Request::get(target)
        .header("host", "auth.example.com")
        .body(empty_body())
        .expect("request");
    send(addr, request).await
}

async fn next_data(body: &mut Incoming) -> Bytes {
    loop {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("frame in time")
            .expect("a frame")
            .expect("frame");
        if let Ok(data) = frame.into_data() {
            return data;
        }
    }
}

#[tokio::test]
async fn forwards_the_request_and_the_answer_unchanged() {
    let upstream = Server::start(|seen| {
        let mut r = testing::reply(201, "{\"made\":true}");
        let echoed = seen.headers.get("x-custom").cloned();
        if let Some(v) = echoed {
            r.headers_mut().insert("x-echo", v);
        }
        r.headers_mut()
            .insert("set-cookie", "a=1; Path=/".parse().expect("v"));
        r
    })
    .await;
    let addr = engine(&upstream.url(), PassThrough).await;

    let request = Request::post("/self-service/login?flow=1&x=%20y")
        .header("host", "auth.example.com")
        .header("x-custom", "kept")
        .header("content-type", "application/json")
        .body(full_body("{\"identifier\":\"a@example.com\"}"))
        .expect("request");
    let response = send(addr, request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-echo"], "kept");
    assert_eq!(response.headers()["set-cookie"], "a=1; Path=/");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"{\"made\":true}");

    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let seen = &seen[0];
    assert_eq!(seen.method, http::Method::POST);
    assert_eq!(seen.target(), "/self-service/login?flow=1&x=%20y");
    assert_eq!(seen.headers["host"], "auth.example.com");
    assert_eq!(&seen.body[..], b"{\"identifier\":\"a@example.com\"}");
    // The engine's own forwarding fields.
    assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
    assert_eq!(seen.headers["x-forwarded-host"], "auth.example.com");
}

#[tokio::test]
async fn streams_the_request_body_before_it_ends() {
    // The upstream reports the first chunk as soon as it arrives; the client sends the
    // second only then. A gateway that buffered the body would never forward the first.
    let (first_tx, first_rx) = oneshot::channel::<Bytes>();
    let first_tx = Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let upstream = Server::streaming(move |req: Request<Incoming>| {
        let first_tx = Arc::clone(&first_tx);
        async move {
            let mut body = req.into_body();
            let first = next_data(&mut body).await;
            if let Some(tx) = first_tx.lock().expect("lock").take() {
                let _ = tx.send(first.clone());
            }
            let rest = body.collect().await.expect("rest").to_bytes();
            let mut all = first.to_vec();
            all.extend_from_slice(&rest);
            Response::new(full_body(all))
        }
    })
    .await;
    let addr = engine(&upstream.url(), PassThrough).await;

    let (tx, body) = channel_body();
    let request = Request::put("/upload")
        .header("host", "auth.example.com")
        .header("content-type", "application/octet-stream")
        .body(body)
        .expect("request");
    let answer = tokio::spawn(send(addr, request));
    tx.send(Bytes::from_static(b"first,")).await.expect("send");
    let first = tokio::time::timeout(WAIT, first_rx)
        .await
        .expect("the first chunk reached the upstream before the body ended")
        .expect("first");
    assert_eq!(&first[..], b"first,");
    tx.send(Bytes::from_static(b"second")).await.expect("send");
    drop(tx);
    let response = answer.await.expect("task");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(&body[..], b"first,second");
}

#[tokio::test]
async fn streams_the_response_body_before_it_ends() {
    // The upstream sends its second chunk only once the client has the first.
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let go_rx = Arc::new(tokio::sync::Mutex::new(Some(go_rx)));
    let upstream = Server::streaming(move |_req: Request<Incoming>| {
        let go_rx = Arc::clone(&go_rx);
        async move {
            let (tx, body) = channel_body();
            tokio::spawn(async move {
                let _ = tx.send(Bytes::from_static(b"first,")).await;
                if let Some(go) = go_rx.lock().await.take() {
                    let _ = go.await;
                }
                let _ = tx.send(Bytes::from_static(b"second")).await;
            });
            let mut r = Response::new(body);
            r.headers_mut()
                .insert("content-type", "text/plain".parse().expect("v"));
            r
        }
    })
    .await;
    let addr = engine(&upstream.url(), PassThrough).await;

    let response = get(addr, "/stream").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert_eq!(&next_data(&mut body).await[..], b"first,");
    go_tx.send(()).expect("upstream waiting");
    let rest = body.collect().await.expect("rest").to_bytes();
    assert_eq!(&rest[..], b"second");
}

/// A policy that answers every request itself, and counts the answers it saw from Kratos.
struct Refuses(Arc<AtomicUsize>);

impl Policy for Refuses {
    type Ctx = ();

    async fn on_request(
        &self,
        _: &Exchange,
        _: &mut (),
        _: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        Err(testing::reply(418, ""))
    }

    async fn on_response(
        &self,
        _: &Exchange,
        _: (),
        response: Response<Incoming>,
    ) -> Response<Body> {
        self.0.fetch_add(1, Ordering::SeqCst);
        response.map(|b| b.map_err(Into::into).boxed())
    }
}

#[tokio::test]
async fn a_request_phase_answer_is_the_clients_and_kratos_is_not_asked() {
    let upstream = Server::start(|_| testing::reply(200, "")).await;
    let responses = Arc::new(AtomicUsize::new(0));
    let addr = engine(&upstream.url(), Refuses(Arc::clone(&responses))).await;
    let response = get(addr, "/sessions/whoami").await;
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    assert!(upstream.seen().is_empty());
    assert_eq!(responses.load(Ordering::SeqCst), 0);
}

/// What the request phase keeps reaches the response phase of the same exchange.
struct KeepsPath;

impl Policy for KeepsPath {
    type Ctx = Option<String>;

    async fn on_request(
        &self,
        exchange: &Exchange,
        ctx: &mut Option<String>,
        request: Request<Body>,
    ) -> Result<Request<Body>, Response<Body>> {
        *ctx = Some(exchange.path().to_owned());
        Ok(request)
    }

    async fn on_response(
        &self,
        _: &Exchange,
        ctx: Option<String>,
        mut response: Response<Incoming>,
    ) -> Response<Body> {
        let path = ctx.unwrap_or_default();
        response
            .headers_mut()
            .insert("x-seen-path", path.parse().expect("v"));
        response.map(|b| b.map_err(Into::into).boxed())
    }
}

#[tokio::test]
async fn the_policy_context_goes_from_the_request_phase_to_the_response_phase() {
    let upstream = Server::start(|_| testing::reply(200, "")).await;
    let addr = engine(&upstream.url(), KeepsPath).await;
    let response = get(addr, "/self-service/settings").await;
    assert_eq!(response.headers()["x-seen-path"], "/self-service/settings");
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502_in_kratos_shape() {
    let addr = engine(&testing::closed_url().await, PassThrough).await;
    let response = get(addr, "/sessions/whoami").await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"]["code"], 502);
}

/// The fields Kratos gets when the client repeats `Host` and lists fields in `Connection`:
/// one `Host` (the first), the listed fields gone, `X-Forwarded-Host` from the first `Host`.
#[tokio::test]
async fn a_repeated_host_is_one_and_connection_listed_fields_are_dropped() {
    let upstream = Server::start(|_| testing::reply(200, "{}")).await;
    let addr = engine(&upstream.url(), PassThrough).await;

    let request = Request::get("/sessions/whoami")
        .header("host", "auth.example.com")
        .header("host", "evil.example")
        .header("connection", "X-Drop-One")
        .header("connection", "keep-alive, x-drop-two")
        .header("x-drop-one", "1")
        .header("X-Drop-Two", "2")
        .header("x-keep", "3")
        .body(empty_body())
        .expect("request");
    assert_eq!(send(addr, request).await.status(), StatusCode::OK);
    // A client that lists `Host` itself in `Connection`: Kratos still gets that Host.
    let request = Request::get("/sessions/whoami")
        .header("host", "auth.example.com")
        .header("connection", "Host, X-Forwarded-Host")
        .header("x-forwarded-host", "evil.example")
        .body(empty_body())
        .expect("request");
    assert_eq!(send(addr, request).await.status(), StatusCode::OK);

    let seen = upstream.seen();
    assert_eq!(seen.len(), 2);
    for seen in &seen {
        let hosts: Vec<_> = seen.headers.get_all("host").iter().collect();
        assert_eq!(hosts, vec!["auth.example.com"]);
        let forwarded: Vec<_> = seen.headers.get_all("x-forwarded-host").iter().collect();
        assert_eq!(forwarded, vec!["auth.example.com"]);
        for gone in ["x-drop-one", "x-drop-two", "keep-alive"] {
            assert!(!seen.headers.contains_key(gone), "{gone} forwarded");
        }
        assert!(seen
            .headers
            .get_all("connection")
            .iter()
            .all(|v| v.as_bytes().eq_ignore_ascii_case(b"keep-alive")));
    }
    assert_eq!(seen[0].headers["x-keep"], "3");
}
