//! The ops listener: `/healthz` (alive), `/readyz` (blocklist loaded, listeners bound, not
//! draining), `/metrics` (Prometheus text format) and `/blocklist` (JSON: what this pod
//! enforces, see [`crate::status`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::body::{full_body, Body};
use crate::metrics::Metrics;
use crate::status::Status;

/// Readiness as the load balancer should see it.
#[derive(Debug, Default)]
pub struct Readiness {
    listening: AtomicBool,
    draining: AtomicBool,
}

impl Readiness {
    pub fn set_listening(&self) {
        self.listening.store(true, Ordering::SeqCst);
    }
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.listening.load(Ordering::SeqCst) && !self.draining.load(Ordering::SeqCst)
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

pub async fn handle(
    req: Request<Incoming>,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => {
            if readiness.is_ready() && status.blocklist.has_list() {
                text(StatusCode::OK, "ready\n")
            } else if readiness.is_ready() {
                text(StatusCode::SERVICE_UNAVAILABLE, "no blocklist loaded yet\n")
            } else if readiness.is_draining() {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "starting\n")
            }
        }
        "/metrics" => {
            // Entry counts follow lapsing `until`s; recounting a large list is blocking work.
            let store = Arc::clone(&status.blocklist);
            let _ = tokio::task::spawn_blocking(move || store.refresh_counts()).await;
            let mut resp = Response::new(full_body(metrics.encode()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/blocklist" => {
            let json = tokio::task::spawn_blocking(move || status.blocklist_json())
                .await
                .unwrap_or_else(|_| "{}\n".to_owned());
            let mut resp = Response::new(full_body(json));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
