//! The proxy engine: forwards any request to Kratos and streams bodies both ways. It knows
//! nothing about sessions; a [`Policy`] hooks into two phases, request and response.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use ipnet::IpNet;
use prometheus_client::metrics::counter::Counter;

use crate::body::{Body, NotifyOnEnd};
use crate::config::{Config, UpstreamUrl};
use crate::error::GatewayError;
use crate::headers::{self, Peer};
use crate::metrics::{
    LatencyHistogram, Listener, ListenerLabels, Metrics, ReasonLabels, RequestLabels, StatusClass,
};
use crate::upstream::{self, Upstream};

/// What the engine and the policy know about one request/response exchange.
#[derive(Debug)]
pub struct Exchange {
    pub listener: Listener,
    pub request_id: RequestId,
    pub peer: Peer,
    pub method: Method,
    /// The target as the client spelled it (audit and kind naming only).
    pub uri: Uri,
    /// Kratos's status, once Kratos has answered (the access log).
    pub upstream_status: OnceLock<http::StatusCode>,
}

impl Exchange {
    /// The path as the client spelled it.
    pub fn path(&self) -> &str {
        self.uri.path()
    }
}

/// A request's id: the client's `X-Request-Id`, or one the gateway makes up. A made-up id is
/// only formatted when something uses it (an audit line, an error body), not per request.
#[derive(Debug)]
pub struct RequestId {
    text: OnceLock<String>,
    n: u64,
}

impl RequestId {
    pub(crate) fn given(id: &str) -> Self {
        RequestId {
            text: OnceLock::from(id.to_owned()),
            n: 0,
        }
    }

    fn generated() -> Self {
        RequestId {
            text: OnceLock::new(),
            n: REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed),
        }
    }

    pub fn as_str(&self) -> &str {
        self.text.get_or_init(|| {
            static PREFIX: OnceLock<u32> = OnceLock::new();
            let prefix = PREFIX.get_or_init(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32) ^ std::process::id())
                    .unwrap_or(0)
            });
            format!("kg-{prefix:08x}-{:x}", self.n)
        })
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Hooks a policy plugs into the engine.
pub trait Policy: Send + Sync + 'static {
    /// What the policy keeps about one exchange between its two phases (pingora's `CTX`).
    type Ctx: Default + Send + Sync;

    /// Runs after the request was sanitised, before it is forwarded. `Err` answers the client
    /// without contacting Kratos.
    fn on_request(
        &self,
        exchange: &Exchange,
        ctx: &mut Self::Ctx,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Request<Body>, Response<Body>>> + Send;

    /// Turns Kratos's response into the client's.
    fn on_response(
        &self,
        exchange: &Exchange,
        ctx: Self::Ctx,
        response: Response<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

/// One listener's proxy: where to forward, and the policy in between.
pub struct Proxy<P> {
    listener: Listener,
    upstream: UpstreamUrl,
    /// The connections to `upstream` (this runtime's pool).
    client: Arc<Upstream>,
    response_timeout: Duration,
    trusted_proxies: Arc<[IpNet]>,
    rewrite_host: bool,
    /// `Host` for Kratos when `rewrite_host` is on: the upstream's authority.
    upstream_host: Option<HeaderValue>,
    policy: Arc<P>,
    metrics: Arc<Metrics>,
    /// This listener's series, resolved once: a family lookup per request takes a lock and
    /// hashes the labels.
    requests: RequestCounters,
    upstream_seconds: LatencyHistogram,
    /// `log.access`.
    access_log: bool,
}

/// `kratos_gate_requests_total` of one listener, by status class.
struct RequestCounters([Counter; 5]);

impl RequestCounters {
    fn new(metrics: &Metrics, listener: Listener) -> Self {
        let get = |status| {
            metrics
                .requests
                .get_or_create(&RequestLabels { listener, status })
                .clone()
        };
        RequestCounters([
            get(StatusClass::Informational),
            get(StatusClass::Success),
            get(StatusClass::Redirection),
            get(StatusClass::ClientError),
            get(StatusClass::ServerError),
        ])
    }

    fn inc(&self, status: http::StatusCode) {
        let [informational, success, redirection, client_error, server_error] = &self.0;
        match StatusClass::of(status) {
            StatusClass::Informational => informational,
            StatusClass::Success => success,
            StatusClass::Redirection => redirection,
            StatusClass::ClientError => client_error,
            StatusClass::ServerError => server_error,
        }
        .inc();
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

impl<P: Policy> Proxy<P> {
    pub fn new(
        listener: Listener,
        upstream: UpstreamUrl,
        client: Arc<Upstream>,
        config: &Config,
        policy: Arc<P>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let upstream_seconds = metrics
            .upstream_seconds
            .get_or_create(&ListenerLabels { listener })
            .clone();
        Proxy {
            listener,
            upstream_host: HeaderValue::from_str(upstream.authority().as_str()).ok(),
            upstream,
            client,
            response_timeout: config.upstream.response_timeout.get(),
            trusted_proxies: config.forwarding.trusted_proxies.clone().into(),
            rewrite_host: config.upstream.rewrite_host,
            policy,
            requests: RequestCounters::new(&metrics, listener),
            upstream_seconds,
            metrics,
            access_log: config.log.access,
        }
    }

    pub fn peer(&self, addr: std::net::SocketAddr, tls: bool) -> Peer {
        let ip = addr.ip().to_canonical();
        Peer {
            ip,
            trusted: self.trusted_proxies.iter().any(|n| n.contains(&ip)),
            tls,
        }
    }

    /// Handles one request from a client; never fails (errors become responses).
    ///
    /// The client's request is rewritten for Kratos before the future is made, and the
    /// futures here are async blocks rather than async fns (whose arguments are copied once
    /// more into the future): the request's future holds neither the client's request nor a
    /// second copy of Kratos's, and builds with fewer copies.
    pub fn handle(
        &self,
        request: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + '_ {
        let access = crate::logging::access_start(self.access_log);
        let found = headers::Found::scan(request.headers());
        let request_id = match found.request_id() {
            Some(id) => RequestId::given(id),
            None => RequestId::generated(),
        };
        let exchange = Exchange {
            listener: self.listener,
            request_id,
            peer,
            method: request.method().clone(),
            uri: request.uri().clone(),
            upstream_status: OnceLock::new(),
        };
        let request = if found.upgrade() || request.method() == Method::CONNECT {
            Err(GatewayError::UpgradeRefused)
        } else {
            self.to_upstream(request, peer, found)
        };
        async move {
            let forwarded = match request {
                Ok(request) => self.forward(&exchange, request).await,
                Err(e) => Err(e),
            };
            let response = match forwarded {
                Ok(r) => r,
                Err(e) => {
                    self.metrics
                        .upstream_errors
                        .get_or_create(&ReasonLabels { reason: e.label() })
                        .inc();
                    tracing::warn!(
                        listener = crate::logging::listener_name(self.listener),
                        request_id = %exchange.request_id,
                        method = %exchange.method,
                        path = %exchange.path(),
                        error = %e,
                        "answering with an error"
                    );
                    e.into_response(Some(exchange.request_id.as_str()))
                }
            };
            self.requests.inc(response.status());
            crate::logging::access(access, &exchange, response.status());
            response
        }
    }

    /// An async block, not an async fn: see [`Proxy::handle`].
    #[allow(clippy::manual_async_fn)]
    fn forward<'a>(
        &'a self,
        exchange: &'a Exchange,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + 'a {
        async move {
            let mut ctx = P::Ctx::default();
            // The policy's futures are boxed: they are the largest part of a request's
            // future (lookups, inspection), which would otherwise be copied whole each time
            // it is moved on its way into hyper's dispatcher.
            let request = match Box::pin(self.policy.on_request(exchange, &mut ctx, request)).await
            {
                Ok(r) => r,
                Err(answer) => return Ok(answer),
            };
            let started = Instant::now();
            let timeout = self.response_timeout;
            // The exchange with Kratos is boxed too: its future would otherwise be copied into
            // the timeout and from there into this one, which hyper moves twice more.
            let sent = if http_body::Body::is_end_stream(request.body()) {
                // Nothing to upload (most requests): the response timeout starts now.
                tokio::time::timeout(timeout, Box::pin(self.client.send(request)))
                    .await
                    .map_err(|_| ())
            } else {
                // The response timeout runs from the moment the request body has been sent: a
                // large upload is not a slow Kratos.
                let body_sent = Arc::new(tokio::sync::Notify::new());
                let request = request.map(|b| NotifyOnEnd::new(b, Arc::clone(&body_sent)).boxed());
                let deadline = async {
                    body_sent.notified().await;
                    tokio::time::sleep(timeout).await;
                };
                tokio::select! {
                    r = Box::pin(self.client.send(request)) => Ok(r),
                    () = deadline => Err(()),
                }
            };
            self.upstream_seconds.observe(started.elapsed());
            let (mut response, mut lease) = match sent {
                Err(_) => return Err(GatewayError::UpstreamTimeout(self.response_timeout)),
                Ok(Err(e)) => return Err(classify_client_error(&e)),
                Ok(Ok(r)) => r,
            };
            let _ = exchange.upstream_status.set(response.status());
            // The client undid `chunked` only; a body under another transfer coding would pass
            // unread, whatever it carries.
            let mut found = headers::Found::scan(response.headers());
            if found.transfer_encoding() {
                if let Some(codings) = headers::transfer_codings_besides_chunked(response.headers())
                {
                    return Err(GatewayError::UnreadableResponse(format!(
                        "Transfer-Encoding {codings}"
                    )));
                }
            }
            headers::strip_found_hop_by_hop(response.headers_mut(), &mut found);
            // The policy reads the response while the connection keeps going in this task; the
            // body handed to the client drives it from then on and returns it to the pool.
            let response = lease
                .drive(Box::pin(self.policy.on_response(exchange, ctx, response)))
                .await;
            Ok(lease.attach(response))
        }
    }

    /// Rewrites a client request for Kratos: upstream URI, HTTP/1.1, Host kept, hop-by-hop
    /// fields removed, forwarding fields set.
    fn to_upstream(
        &self,
        request: Request<Incoming>,
        peer: Peer,
        mut found: headers::Found,
    ) -> Result<Request<Body>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        // HTTP/2 carries the host in the URI authority, not in a Host field.
        let host = match found.host() {
            Some(h) => Some(h.clone()),
            None => parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        headers::strip_found_hop_by_hop(&mut parts.headers, &mut found);
        if parts.version == Version::HTTP_2 {
            headers::join_cookie_fields(&mut parts.headers);
        }
        headers::set_found_forwarding(&mut parts.headers, &mut found, peer, host.as_ref());
        if self.rewrite_host {
            if let Some(h) = &self.upstream_host {
                parts.headers.insert(header::HOST, h.clone());
            }
        } else if let Some(h) = &host {
            // One `Host` field that is still there is the one Kratos gets; otherwise (none,
            // several, or one the client listed in `Connection`) it is set.
            if found.single_host().is_none() {
                parts.headers.insert(header::HOST, h.clone());
            }
        }
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        if !path_and_query.as_str().starts_with('/') {
            // `*` (OPTIONS) and absolute forms other than http(s) URIs are not for Kratos.
            return Err(GatewayError::BadRequest(
                "The request target is not a path.",
            ));
        }
        let scheme = if self.upstream.scheme() == "https" {
            Scheme::HTTPS
        } else {
            Scheme::HTTP
        };
        parts.uri = Uri::builder()
            .scheme(scheme)
            .authority(self.upstream.authority().clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| GatewayError::BadRequest("The request target is not a path."))?;
        parts.version = Version::HTTP_11;
        // A request without a body (most) goes on with a body that needs no allocation.
        let body = if http_body::Body::is_end_stream(&body) {
            crate::body::empty_body()
        } else {
            body.map_err(Into::into).boxed()
        };
        Ok(Request::from_parts(parts, body))
    }
}

fn classify_client_error(e: &upstream::Error) -> GatewayError {
    use std::error::Error as _;
    if e.is_connect() {
        return GatewayError::UpstreamUnreachable(e.to_string());
    }
    let mut detail = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    GatewayError::UpstreamBroken(detail)
}

#[cfg(test)]
mod tests;
