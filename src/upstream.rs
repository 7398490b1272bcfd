//! The connections to Kratos on the request path: HTTP/1.1 (http or https) opened with
//! `hyper::client::conn::http1` and kept idle in a pool for reuse.
//!
//! A connection has no task of its own: the task of the request that uses it drives it, while
//! the request is written, while the policy reads the response and while the response body
//! streams to the client ([`Lease`]). The request never crosses to another task and back.
//! The pool is a stack behind a lock that only the threads of one runtime take (one pool per
//! runtime in the per-core layout), held for a push or a pop.
//!
//! Semantics kept from hyper-util's pooled client: a connection idle for longer than
//! `upstream.pool_idle_timeout` is closed (checked when taken and by a reaper), at most
//! `upstream.pool_max_idle_per_host` are kept, `upstream.connect_timeout` bounds the TCP
//! connect, and a request is retried on another connection only if it was never written (a
//! pooled connection found closed before the request went out).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::{Body, BoxError};
use crate::config::{Config, UpstreamUrl};

type Io = MaybeHttpsStream<TokioIo<TcpStream>>;

/// Why a request got no response from Kratos.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection could be opened (refused, timed out, TLS handshake failed).
    #[error(transparent)]
    Connect(BoxError),
    /// The connection failed or closed before the response head arrived.
    #[error(transparent)]
    Http(#[from] hyper::Error),
}

impl Error {
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// One connection: the sender half, and the connection itself (`None` once it has ended).
struct Conn {
    sender: http1::SendRequest<Body>,
    driver: Option<Pin<Box<http1::Connection<Io, Body>>>>,
}

impl Conn {
    /// Lets the connection make progress (write the request, read the response). True once
    /// it has ended, cleanly or not; it is dropped then, which hands a request it never
    /// wrote back to its sender.
    fn poll_driver(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(driver) = self.driver.as_mut() else {
            return true;
        };
        match driver.as_mut().poll(cx) {
            Poll::Pending => false,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "upstream connection ended with an error");
                }
                self.driver = None;
                true
            }
        }
    }

    /// Whether it is alive and waits for a request; polled once without a task to wake
    /// only if it has not said so yet (the end of a response it has just read).
    fn is_reusable(&mut self) -> bool {
        if self.driver.is_some() && self.sender.is_ready() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        !self.poll_driver(&mut cx) && self.sender.is_ready()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The pool of connections to one upstream (scheme and authority).
pub struct Upstream {
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`: what the connector connects to.
    base: Uri,
    authority: Authority,
    idle: Mutex<Vec<Idle>>,
    idle_timeout: Duration,
    max_idle: usize,
}

impl Upstream {
    /// A pool for `url` with the `upstream.*` settings of `config`. Spawns the reaper of idle
    /// connections on the current runtime, which ends when the pool is dropped.
    pub fn new(config: &Config, tls: rustls::ClientConfig, url: &UpstreamUrl) -> Arc<Self> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.upstream.connect_timeout.get()));
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let base = Uri::builder()
            .scheme(url.scheme())
            .authority(url.authority().clone())
            .path_and_query("/")
            .build()
            .unwrap_or_else(|_| url.uri.clone());
        let upstream = Arc::new(Upstream {
            connector,
            base,
            authority: url.authority().clone(),
            idle: Mutex::new(Vec::new()),
            idle_timeout: config.upstream.pool_idle_timeout.get(),
            max_idle: config.upstream.pool_max_idle_per_host,
        });
        if upstream.max_idle > 0 {
            tokio::spawn(reap(Arc::downgrade(&upstream), upstream.idle_timeout));
        }
        upstream
    }

    /// Whether `url` is what this pool connects to (listeners with the same upstream share one).
    pub fn serves(&self, url: &UpstreamUrl) -> bool {
        self.base.scheme_str() == Some(url.scheme()) && &self.authority == url.authority()
    }

    /// Idle connections right now.
    pub fn idle_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        // A panic while the lock was held leaves a valid stack behind.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` (its URI is reduced to origin form; a missing `Host` becomes the
    /// upstream's) and waits for the response head. The [`Lease`] keeps the connection
    /// going while the response is read; give it the response's body ([`Lease::attach`]).
    pub async fn send(
        self: &Arc<Self>,
        mut request: Request<Body>,
    ) -> Result<(Response<Incoming>, Lease), Error> {
        let origin = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(origin);
        if !request.headers().contains_key(header::HOST) {
            if let Ok(host) = HeaderValue::from_str(self.authority.as_str()) {
                request.headers_mut().insert(header::HOST, host);
            }
        }
        loop {
            let pooled = self.checkout();
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                // Boxed: the rare path keeps the handshake's state out of every request's
                // future, which is moved as a whole.
                None => Box::pin(self.connect()).await?,
            };
            let sent = conn.sender.try_send_request(request);
            match drive(&mut conn, sent).await {
                Ok(response) => {
                    return Ok((
                        response,
                        Lease {
                            conn: Some(conn),
                            pool: Arc::downgrade(self),
                        },
                    ))
                }
                Err(mut e) => match e.take_message() {
                    // Never written: a pooled connection that had closed meanwhile.
                    Some(r) if reused => {
                        tracing::debug!(error = %e.error(), "pooled upstream connection closed; retrying");
                        request = r;
                    }
                    _ => return Err(Error::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection that has not expired. A close by Kratos that
    /// has arrived meanwhile is seen when the connection is next polled, before the request
    /// is written: the request comes back unsent and goes out on another connection.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let idle = self.lock().pop()?;
            if idle.since.elapsed() > self.idle_timeout || !idle.conn.sender.is_ready() {
                continue;
            }
            return Some(idle.conn);
        }
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    async fn connect(&self) -> Result<Conn, Error> {
        let io = self
            .connector
            .clone()
            .call(self.base.clone())
            .await
            .map_err(Error::Connect)?;
        let (sender, driver) = http1::Builder::new().handshake(io).await?;
        Ok(Conn {
            sender,
            driver: Some(Box::pin(driver)),
        })
    }

    /// Closes the connections idle for longer than the idle timeout.
    fn reap_expired(&self) {
        let expired: Vec<Idle> = {
            let mut idle = self.lock();
            let now = Instant::now();
            let (keep, expired) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|i| now.saturating_duration_since(i.since) <= self.idle_timeout);
            *idle = keep;
            expired
        };
        drop(expired);
    }
}

async fn reap(pool: Weak<Upstream>, every: Duration) {
    let every = every.max(Duration::from_millis(50));
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match pool.upgrade() {
            Some(p) => p.reap_expired(),
            None => return,
        }
    }
}

/// Polls `fut` and drives `conn` in the same task until `fut` is done.
async fn drive<F: Future>(conn: &mut Conn, fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        conn.poll_driver(cx);
        fut.as_mut().poll(cx)
    })
    .await
}

/// A connection in use by one exchange. Dropped once the response has been read, the
/// connection goes back to the pool if it can take another request; otherwise it is closed.
pub struct Lease {
    conn: Option<Conn>,
    pool: Weak<Upstream>,
}

impl Lease {
    /// Runs `fut` (the policy reading the response) while the connection keeps going.
    pub async fn drive<F: Future>(&mut self, fut: F) -> F::Output {
        match self.conn.as_mut() {
            Some(conn) => drive(conn, fut).await,
            None => fut.await,
        }
    }

    /// Ties the connection to the body sent to the client: the body drives it and releases
    /// it when it ends. A connection already done with the response goes back now.
    pub fn attach(self, response: Response<Body>) -> Response<Body> {
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.driver.is_some() && c.sender.is_ready())
        {
            // Done with the response (the policy read it all): dropping `self` returns it.
            return response;
        }
        response.map(|body| Driven { body, lease: self }.boxed())
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if let Some(pool) = self.pool.upgrade() {
            if conn.is_reusable() {
                pool.checkin(conn);
            }
        }
    }
}

/// A response body that drives the upstream connection it is read from.
struct Driven {
    body: Body,
    lease: Lease,
}

impl HttpBody for Driven {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.lease.conn.as_mut() {
            Some(conn) => {
                conn.poll_driver(cx);
                Pin::new(&mut this.body).poll_frame(cx)
            }
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests;
