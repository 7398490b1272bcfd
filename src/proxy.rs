//! The proxy engine: forwards any request to Kratos and streams bodies both ways. It knows
//! nothing about sessions; a [`Policy`] hooks into two phases, request and response.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ipnet::IpNet;

use crate::body::NotifyOnEnd;
use crate::config::{Config, UpstreamUrl};
use crate::headers::{self, Peer};
use crate::metrics::{Listener, ListenerLabels, Metrics, ReasonLabels, RequestLabels, StatusClass};
use crate::respond::{Body, GatewayError};

/// What the engine and the policy know about one request/response exchange.
#[derive(Debug)]
pub struct Exchange {
    pub listener: Listener,
    pub request_id: String,
    pub peer: Peer,
    pub method: Method,
    /// The path as the client spelled it (audit and kind naming only).
    pub path: String,
    /// The `identifier` the client submitted, when its request body was small enough to copy.
    pub login_identifier: Option<String>,
    /// A form or JSON request body was too large to copy, so its identifier is unknown.
    pub login_body_too_large: bool,
}

/// Hooks a policy plugs into the engine.
pub trait Policy: Send + Sync + 'static {
    /// Runs after the request was sanitised, before it is forwarded. `Err` answers the client
    /// without contacting Kratos.
    fn on_request(
        &self,
        exchange: &mut Exchange,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Request<Body>, Response<Body>>> + Send;

    /// Turns Kratos's response into the client's.
    fn on_response(
        &self,
        exchange: &Exchange,
        response: Response<Incoming>,
    ) -> impl Future<Output = Response<Body>> + Send;
}

pub type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

/// The pooled HTTP/1.1 client to Kratos (http or https), shared by both listeners.
pub fn upstream_client(config: &Config, tls: rustls::ClientConfig) -> HttpClient {
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
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.upstream.pool_idle_timeout.get())
        .pool_max_idle_per_host(config.upstream.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

/// One listener's proxy: where to forward, and the policy in between.
pub struct Proxy<P> {
    listener: Listener,
    upstream: UpstreamUrl,
    client: HttpClient,
    response_timeout: Duration,
    trusted_proxies: Arc<[IpNet]>,
    rewrite_host: bool,
    policy: Arc<P>,
    metrics: Arc<Metrics>,
}

impl<P> Clone for Proxy<P> {
    fn clone(&self) -> Self {
        Proxy {
            listener: self.listener,
            upstream: self.upstream.clone(),
            client: self.client.clone(),
            response_timeout: self.response_timeout,
            trusted_proxies: Arc::clone(&self.trusted_proxies),
            rewrite_host: self.rewrite_host,
            policy: Arc::clone(&self.policy),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

fn new_request_id() -> String {
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32) ^ std::process::id())
            .unwrap_or(0)
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("kg-{prefix:08x}-{n:x}")
}

impl<P: Policy> Proxy<P> {
    pub fn new(
        listener: Listener,
        upstream: UpstreamUrl,
        client: HttpClient,
        config: &Config,
        policy: Arc<P>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Proxy {
            listener,
            upstream,
            client,
            response_timeout: config.upstream.response_timeout.get(),
            trusted_proxies: config.forwarding.trusted_proxies.clone().into(),
            rewrite_host: config.upstream.rewrite_host,
            policy,
            metrics,
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
    pub async fn handle(&self, request: Request<Incoming>, peer: Peer) -> Response<Body> {
        let request_id = headers::request_id(request.headers())
            .map(str::to_owned)
            .unwrap_or_else(new_request_id);
        let mut exchange = Exchange {
            listener: self.listener,
            request_id,
            peer,
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            login_identifier: None,
            login_body_too_large: false,
        };
        let response = match self.forward(&mut exchange, request).await {
            Ok(r) => r,
            Err(e) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&ReasonLabels { reason: e.label() })
                    .inc();
                tracing::warn!(
                    listener = ?self.listener,
                    request_id = %exchange.request_id,
                    method = %exchange.method,
                    path = %exchange.path,
                    error = %e,
                    "answering with an error"
                );
                e.into_response(Some(&exchange.request_id))
            }
        };
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                listener: self.listener,
                status: StatusClass::of(response.status()),
            })
            .inc();
        response
    }

    async fn forward(
        &self,
        exchange: &mut Exchange,
        request: Request<Incoming>,
    ) -> Result<Response<Body>, GatewayError> {
        if headers::is_upgrade_request(request.headers()) || request.method() == Method::CONNECT {
            return Err(GatewayError::UpgradeRefused);
        }
        let request = self.to_upstream(request, exchange.peer)?;
        let request = match self.policy.on_request(exchange, request).await {
            Ok(r) => r,
            Err(answer) => return Ok(answer),
        };

        // The response timeout runs from the moment the request body has been sent: a large
        // upload is not a slow Kratos.
        let body_sent = Arc::new(tokio::sync::Notify::new());
        let request = request.map(|b| NotifyOnEnd::new(b, Arc::clone(&body_sent)).boxed());
        let started = Instant::now();
        let timeout = self.response_timeout;
        let deadline = async {
            body_sent.notified().await;
            tokio::time::sleep(timeout).await;
        };
        let sent = tokio::select! {
            r = self.client.request(request) => Ok(r),
            () = deadline => Err(()),
        };
        self.metrics
            .upstream_seconds
            .get_or_create(&ListenerLabels {
                listener: self.listener,
            })
            .observe(started.elapsed().as_secs_f64());
        let mut response = match sent {
            Err(_) => return Err(GatewayError::UpstreamTimeout(self.response_timeout)),
            Ok(Err(e)) => return Err(classify_client_error(&e)),
            Ok(Ok(r)) => r,
        };
        headers::strip_hop_by_hop(response.headers_mut());
        Ok(self.policy.on_response(exchange, response).await)
    }

    /// Rewrites a client request for Kratos: upstream URI, HTTP/1.1, Host kept, hop-by-hop
    /// fields removed, forwarding fields set.
    fn to_upstream(
        &self,
        request: Request<Incoming>,
        peer: Peer,
    ) -> Result<Request<Body>, GatewayError> {
        let (mut parts, body) = request.into_parts();
        // HTTP/2 carries the host in the URI authority, not in a Host field.
        let host = match parts.headers.get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        headers::strip_hop_by_hop(&mut parts.headers);
        if parts.version == Version::HTTP_2 {
            headers::join_cookie_fields(&mut parts.headers);
        }
        headers::set_forwarding(&mut parts.headers, peer, host.as_ref());
        if self.rewrite_host {
            if let Ok(h) = HeaderValue::from_str(self.upstream.authority().as_str()) {
                parts.headers.insert(header::HOST, h);
            }
        } else if let Some(h) = &host {
            parts.headers.insert(header::HOST, h.clone());
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
        Ok(Request::from_parts(parts, body.map_err(Into::into).boxed()))
    }
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> GatewayError {
    use std::error::Error as _;
    if e.is_connect() {
        let detail = e
            .source()
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.to_string());
        return GatewayError::UpstreamUnreachable(detail);
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
