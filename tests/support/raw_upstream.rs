//! A Kratos stand-in that answers with hand-written bytes, for responses no HTTP server
//! library will produce: `Set-Cookie` in chunked trailers, informational responses carrying
//! cookies, conflicting `Content-Length` fields, bodies split at chosen bytes. Each request is
//! read (head, then a `Content-Length` or chunked body), answered with the bytes the handler
//! returns for its target, and the connection is closed. `GET /health/alive` is always answered
//! 200 (for "the gateway still serves" checks) and not recorded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::raw::find;

/// What a handler sees of a request.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The request target as written.
    pub target: String,
}

type Handler = dyn Fn(&RawRequest) -> Vec<Vec<u8>> + Send + Sync;

pub struct RawUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    /// Serves on `127.0.0.1:0`. The handler returns the answer as pieces, written one after
    /// the other with a short pause in between (so a reader sees them as separate reads).
    pub async fn start(
        handler: impl Fn(&RawRequest) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handler: Arc<Handler> = Arc::new(handler);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = Arc::clone(&handler);
                tokio::spawn(async move {
                    let _ = serve_one(stream, handler).await;
                });
            }
        });
        RawUpstream { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve_one(mut stream: TcpStream, handler: Arc<Handler>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .unwrap_or("")
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[head_end + 4..].to_vec();
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        while body.len() < len {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while find(&body, b"0\r\n\r\n").is_none() {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    if target == "/health/alive" {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}")
            .await?;
        return stream.shutdown().await;
    }
    let pieces = handler(&RawRequest { target });
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.into_iter().enumerate() {
        stream.write_all(&piece).await?;
        stream.flush().await?;
        if i < last {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    stream.shutdown().await
}
