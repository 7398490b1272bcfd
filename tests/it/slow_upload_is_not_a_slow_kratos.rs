//! `upstream.response_timeout` counts from the moment the request has been sent in full: an
//! upload that takes longer than the timeout is not a slow Kratos.

use crate::support;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body::{Body, Frame};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use kratos_gate::config::HumanDuration;
use support::fake_kratos::{FakeKratos, Reply, RECEIVED_BYTES_HEADER};
use support::gateway::start_gateway_with;

/// Ten bytes every 100 ms.
struct Trickle {
    left: u32,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        ready!(self.sleep.as_mut().poll(cx));
        self.left -= 1;
        let next = tokio::time::Instant::now() + Duration::from_millis(100);
        self.sleep.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"0123456789")))))
    }
}

#[tokio::test]
async fn an_upload_longer_than_the_response_timeout_succeeds() {
    let fake = FakeKratos::start().await;
    fake.on_public(Method::POST, "/upload", Reply::echo(200));
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        c.upstream.response_timeout = HumanDuration(Duration::from_millis(300))
    })
    .await;
    let client: Client<_, Trickle> = Client::builder(TokioExecutor::new()).build_http();
    let body = Trickle {
        left: 10,
        sleep: Box::pin(tokio::time::sleep(Duration::from_millis(100))),
    };
    let resp = client
        .request(
            Request::post(gw.public_url("/upload"))
                .header("content-type", "application/octet-stream")
                .body(body)
                .expect("req"),
        )
        .await
        .expect("answered");
    assert_eq!(
        resp.status(),
        200,
        "a one-second upload was cut by a 300 ms response timeout"
    );
    assert_eq!(resp.headers()[RECEIVED_BYTES_HEADER], "100");
    gw.shutdown().await;
}

#[tokio::test]
async fn a_slow_answer_after_the_upload_is_still_cut() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        Method::POST,
        "/upload",
        Reply::echo(200).delay(Duration::from_secs(2)),
    );
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        c.upstream.response_timeout = HumanDuration(Duration::from_millis(300))
    })
    .await;
    let reply = support::client::post_json(&gw.public_url("/upload"), "{}").await;
    assert_eq!(reply.status, 504);
    gw.shutdown().await;
}
