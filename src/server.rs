//! Accept loops: TCP (or TLS, the handshake bounded by the header-read timeout) → hyper-util's
//! auto builder (HTTP/1.1 and h2c prior knowledge), with header-read and HTTP/2 limits, and
//! graceful shutdown that lets in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::balance::{Open, Seat};
use crate::body::Body;
use crate::config::Server as ServerConfig;

/// TLS on a listener: the acceptor, and how long a handshake may take (as long as a request
/// head may take to arrive, `server.header_read_timeout`).
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
}

impl Tls {
    pub fn new(acceptor: TlsAcceptor, config: &ServerConfig) -> Self {
        Tls {
            acceptor,
            handshake_timeout: config.header_read_timeout.get(),
        }
    }
}

/// The hyper server builder with the limits every listener shares.
pub fn builder(config: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout.get())
        .max_buf_size(config.max_header_bytes);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(config.http2_max_concurrent_streams)
        .max_pending_accept_reset_streams(Some(64))
        .max_local_error_reset_streams(Some(256))
        .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves `listener` (over TLS when `tls` is given) until `stop` turns true, then waits up to
/// `grace` for open connections to finish their requests. The handler learns the peer address
/// and whether the connection is TLS. With a `seat` (per-core layout), a connection accepted
/// here may be handed to another worker, and connections handed here are served too.
#[allow(clippy::too_many_arguments)]
pub async fn serve<F, Fut>(
    name: &'static str,
    listener: TcpListener,
    builder: auto::Builder<TokioExecutor>,
    handler: F,
    tls: Option<Tls>,
    mut seat: Option<Seat>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) where
    F: Fn(Request<Incoming>, SocketAddr, bool) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let start = |stream: TcpStream, peer: SocketAddr, open: Option<Open>| {
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let is_tls = tls.is_some();
        let service = service_fn(move |req| {
            let h = h.clone();
            async move { Ok::<_, Infallible>(h(req, peer, is_tls).await) }
        });
        match &tls {
            None => {
                let conn = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = conn.await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            Some(Tls {
                acceptor,
                handshake_timeout,
            }) => {
                // The handshake runs in the connection's task, never in the accept loop.
                let handshake_timeout = *handshake_timeout;
                let accept = acceptor.accept(stream);
                let builder = builder.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let _open = open;
                    let stream = match tokio::time::timeout(handshake_timeout, accept).await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(listener = name, %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(listener = name, %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let conn = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    };
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match &seat {
                    None => start(stream, peer, None),
                    Some(seat) => {
                        if let Some((stream, open)) = seat.place(stream, peer) {
                            start(stream, peer, Some(open));
                        }
                    }
                }
            }
            (stream, peer, open) = handed(&mut seat) => start(stream, peer, Some(open)),
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    // Connections handed here and not yet taken up are closed with the seat.
    drop(seat);
    tracing::info!(
        listener = name,
        "listener closed; waiting for in-flight requests"
    );
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            listener = name,
            grace = %humantime::format_duration(grace),
            "connections still open after the shutdown grace period; closing them"
        );
    }
}

/// The next connection handed to this worker; never, without a seat.
async fn handed(seat: &mut Option<Seat>) -> (TcpStream, SocketAddr, Open) {
    match seat {
        Some(seat) => seat.handed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::config::HumanDuration;

    fn acceptor() -> TlsAcceptor {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .expect("config");
        TlsAcceptor::from(Arc::new(config))
    }

    /// A client that opens a TLS connection and stalls mid-handshake holds it no longer than
    /// a request head may take (`server.header_read_timeout`).
    #[tokio::test]
    async fn a_stalled_tls_handshake_is_closed_after_the_header_read_timeout() {
        let timeout = Duration::from_millis(400);
        let config = ServerConfig {
            header_read_timeout: HumanDuration(timeout),
            ..ServerConfig::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(
            "test",
            listener,
            builder(&config),
            |_req, _peer, _tls| std::future::pending::<Response<Body>>(),
            Some(Tls::new(acceptor(), &config)),
            None,
            stop,
            Duration::from_secs(1),
        ));
        let started = Instant::now();
        let mut client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // The first bytes of a TLS record header, then nothing.
        client.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the gateway closes the connection");
        let elapsed = started.elapsed();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        assert!(
            elapsed >= timeout - Duration::from_millis(20),
            "{elapsed:?}"
        );
        assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
        stop_tx.send(true).expect("stop");
        server.await.expect("server");
    }
}
