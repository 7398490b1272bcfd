//! Unit-test support: tiny in-process HTTP/1.1 servers on port 0 (a fake Kratos, an
//! upstream), a config pointing at them, and the clients the gateway builds from it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::blocklist::store::BlocklistStore;
use crate::body::{full_body, Body};
use crate::config::Config;
use crate::kratos::KratosClient;
use crate::metrics::{Listener, Metrics};
use crate::proxy::{Policy, Proxy};

/// A request a [`Server`] received, body collected.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// Path and query, as sent.
    pub fn target(&self) -> String {
        self.uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default()
    }
}

/// An HTTP/1.1 server on 127.0.0.1:0, stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// Answers every request with `handler`, given the request as it streams in.
    pub async fn streaming<F, Fut>(handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server {
            addr,
            seen: Arc::default(),
            task,
        }
    }

    /// Records every request (body collected) and answers it with `handler`.
    pub async fn start<F>(handler: F) -> Server
    where
        F: Fn(&Seen) -> Response<Body> + Send + Sync + 'static,
    {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler = Arc::new(handler);
        let record = Arc::clone(&seen);
        let mut server = Server::streaming(move |req: Request<Incoming>| {
            let handler = Arc::clone(&handler);
            let record = Arc::clone(&record);
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|c| c.to_bytes())
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method,
                    uri: parts.uri,
                    headers: parts.headers,
                    body,
                };
                let answer = handler(&seen);
                record.lock().expect("lock").push(seen);
                answer
            }
        })
        .await;
        server.seen = seen;
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

/// An answer with a JSON (or any) body.
pub fn reply(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(full_body(body.to_owned()));
    *r.status_mut() = StatusCode::from_u16(status).expect("status");
    if !body.is_empty() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("ct"),
        );
    }
    r
}

/// A valid config whose upstreams are `public` and `admin`, plus `extra` YAML.
pub fn config(public: &str, admin: &str, extra: &str) -> Config {
    let yaml = format!(
        "listen:\n  public: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  ops: 127.0.0.1:0\nupstream:\n  public: {public}\n  admin: {admin}\nblocklist:\n  path: blocklist.yaml\n{extra}"
    );
    Config::from_yaml(&yaml, Path::new("/etc/kratos-gate/gateway.yaml")).expect("config")
}

/// The rustls client configuration the gateway uses towards Kratos.
pub fn client_tls() -> rustls::ClientConfig {
    crate::tls::client_config(None).expect("tls")
}

/// The gateway's Kratos client for `config`.
pub fn kratos_client(config: &Config, admin_token: Option<&str>) -> KratosClient {
    KratosClient::new(config, admin_token.map(str::to_owned), client_tls()).expect("client")
}

/// A URL nothing listens on (a port bound, then released).
pub async fn closed_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}

/// The list at `config.blocklist`, read and put in force as at start-up.
pub async fn blocklist_store(config: &Config, metrics: Arc<Metrics>) -> BlocklistStore {
    let loaded = crate::blocklist::source::load(&config.blocklist)
        .await
        .expect("blocklist");
    BlocklistStore::new(loaded, metrics).0
}

/// The gateway's engine for `upstream` on 127.0.0.1:0 with `policy`; returns its address.
pub async fn engine<P: Policy>(upstream: &str, policy: P) -> std::net::SocketAddr {
    let config = config(upstream, upstream, "");
    let proxy = Arc::new(Proxy::new(
        Listener::Public,
        config.upstream.public.clone(),
        crate::upstream::Upstream::new(&config, client_tls(), &config.upstream.public),
        &config,
        Arc::new(policy),
        Arc::new(Metrics::new()),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            let proxy = Arc::clone(&proxy);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let proxy = Arc::clone(&proxy);
                    async move {
                        let peer = proxy.peer(peer, false);
                        Ok::<_, std::convert::Infallible>(proxy.handle(req, peer).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Sends `request` to `addr` over a fresh HTTP/1.1 connection.
pub async fn send(addr: std::net::SocketAddr, request: Request<Body>) -> Response<Incoming> {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sender.send_request(request),
    )
    .await
    .expect("answered in time")
    .expect("response")
}
