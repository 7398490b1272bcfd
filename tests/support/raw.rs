//! Raw HTTP/1.1 over TCP for the attack suite: hand-written request bytes, responses read off
//! the wire (with trailers and pipelining), and a check that no credential appears anywhere in
//! the bytes a client received. Client libraries normalise exactly what these tests attack
//! (paths, framing, header names, hop-by-hop fields), so nothing here goes through one.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::enforcement::Person;
use super::fake_kratos::SESSION_COOKIE;

/// Upper bound for any single read in these helpers.
pub const READ_WAIT: Duration = Duration::from_secs(5);

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header fields in wire order, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, names lower-cased.
    pub trailers: Vec<(String, String)>,
    /// Every byte of this response as it arrived.
    pub raw: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_fields(text: &str) -> Vec<(String, String)> {
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("field line without a colon: {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect()
}

/// Field lines as `(lower-cased name, value)`.
type Fields = Vec<(String, String)>;

/// Decodes a complete chunked body: `(body, trailers, bytes consumed)`; `None` while
/// incomplete.
fn dechunk(data: &[u8]) -> Option<(Vec<u8>, Fields, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = pos + find(&data[pos..], b"\r\n")?;
        let size_text = std::str::from_utf8(&data[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
        pos = line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            let end = if data.get(pos..pos + 2)? == b"\r\n" {
                pos
            } else {
                pos + find(&data[pos..], b"\r\n\r\n")?
            };
            let trailers =
                parse_fields(std::str::from_utf8(&data[pos..end]).expect("trailers are text"));
            let consumed = if end == pos { pos + 2 } else { end + 4 };
            return Some((out, trailers, consumed));
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        out.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// Parses one response from the start of `buf`: the response and the bytes it took; `None`
/// while more bytes are needed. `eof`: the connection is closed (ends a body without framing).
/// `head_request`: the response answers a HEAD (no body whatever the framing says).
pub fn parse_response(buf: &[u8], eof: bool, head_request: bool) -> Option<(RawResponse, usize)> {
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).expect("response head is text");
    let (status_line, fields) = head.split_once("\r\n").unwrap_or((head, ""));
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = parse_fields(fields);
    let rest = &buf[head_end + 4..];
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (body, trailers, body_len) =
        if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
            (Vec::new(), Vec::new(), 0)
        } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            dechunk(rest)?
        } else if let Some(len) = header("content-length") {
            let len: usize = len.parse().expect("content-length");
            if rest.len() < len {
                return None;
            }
            (rest[..len].to_vec(), Vec::new(), len)
        } else if eof {
            (rest.to_vec(), Vec::new(), rest.len())
        } else {
            return None;
        };
    let consumed = head_end + 4 + body_len;
    Some((
        RawResponse {
            status,
            headers,
            body,
            trailers,
            raw: buf[..consumed].to_vec(),
        },
        consumed,
    ))
}

/// A client connection that keeps whatever it read past the response it returned, so
/// pipelined responses come out one by one.
pub struct RawConn {
    pub stream: TcpStream,
    pending: Vec<u8>,
    /// Every byte received on this connection.
    pub received: Vec<u8>,
    eof: bool,
}

impl RawConn {
    pub async fn connect(addr: SocketAddr) -> RawConn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            pending: Vec::new(),
            received: Vec::new(),
            eof: false,
        }
    }

    pub async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .await
            .expect("write request");
    }

    async fn fill(&mut self, deadline: tokio::time::Instant) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Err(_)) | Ok(Ok(0)) => {
                self.eof = true;
                false
            }
            Ok(Ok(n)) => {
                self.pending.extend_from_slice(&chunk[..n]);
                self.received.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response, or `None` if the connection closed (or stayed silent for
    /// [`READ_WAIT`]) before a whole one arrived.
    pub async fn try_response(&mut self, head_request: bool) -> Option<RawResponse> {
        let deadline = tokio::time::Instant::now() + READ_WAIT;
        loop {
            if let Some((r, used)) = parse_response(&self.pending, self.eof, head_request) {
                self.pending.drain(..used);
                return Some(r);
            }
            if self.eof || !self.fill(deadline).await {
                return parse_response(&self.pending, true, head_request).map(|(r, used)| {
                    self.pending.drain(..used);
                    r
                });
            }
        }
    }

    pub async fn response(&mut self) -> RawResponse {
        match self.try_response(false).await {
            Some(r) => r,
            None => panic!(
                "no complete response; received: {:?}",
                String::from_utf8_lossy(&self.received)
            ),
        }
    }

    /// Reads until the peer closes the connection (true) or `within` passes (false).
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !self.eof {
            if !self.fill(deadline).await && !self.eof {
                return false;
            }
        }
        true
    }
}

/// Sends hand-written request bytes on a new connection and reads one response.
pub async fn exchange(addr: SocketAddr, request: impl AsRef<[u8]>) -> (RawResponse, RawConn) {
    let mut conn = RawConn::connect(addr).await;
    conn.send(request).await;
    let response = conn.response().await;
    (response, conn)
}

/// Sends bytes and reads everything until the connection closes or `within` passes; for
/// requests that the server may refuse by closing.
pub async fn send_and_drain(
    addr: SocketAddr,
    request: impl AsRef<[u8]>,
    within: Duration,
) -> Vec<u8> {
    let mut conn = RawConn::connect(addr).await;
    // The server may close before the whole request is written; that is an answer too.
    let _ = conn.stream.write_all(request.as_ref()).await;
    conn.closed_within(within).await;
    conn.received
}

/// The status of the first response in `bytes`, if any arrived.
pub fn first_status(bytes: &[u8]) -> Option<u16> {
    let line_end = find(bytes, b"\r\n")?;
    std::str::from_utf8(&bytes[..line_end])
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

/// A `Set-Cookie` field line (header or trailer) that hands out the session cookie, in any
/// spelling of the field name or cookie name, with or without `__Host-`/`__Secure-`.
pub fn session_set_cookie_lines(bytes: &[u8]) -> Vec<String> {
    let lower = String::from_utf8_lossy(bytes).to_ascii_lowercase();
    lower
        .split(['\r', '\n'])
        .filter_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name == "set-cookie" || name == "set_cookie").then_some(value)
        })
        .filter(|value| {
            let cookie_name = value.split('=').next().unwrap_or("").trim();
            cookie_name
                .trim_start_matches("__host-")
                .trim_start_matches("__secure-")
                == SESSION_COOKIE
        })
        // A clearing cookie (empty value, `Max-Age=0`: a refused browser signed out) hands
        // out nothing.
        .filter(|value| !super::enforcement::is_clearing_cookie(value))
        .map(str::to_owned)
        .collect()
}

/// Nothing in `bytes` (everything a client received) lets its holder act as `p`: no session
/// `Set-Cookie` of any case, no `ory_st_` token, neither `p`'s token nor cookie value, no
/// `session_token` field and no identity header vouching for `p`.
pub fn assert_no_credential_bytes(bytes: &[u8], p: &Person) {
    let text = String::from_utf8_lossy(bytes);
    let lines = session_set_cookie_lines(bytes);
    assert!(
        lines.is_empty(),
        "a session Set-Cookie reached the client: {lines:?}\n{text}"
    );
    for secret in [
        p.token.as_str(),
        p.cookie.as_str(),
        "ory_st_",
        "session_token",
        "ory_session_token",
        "tokenized",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the client:\n{text}"
        );
    }
    assert!(
        !text
            .to_ascii_lowercase()
            .contains("x-kratos-authenticated-identity-id"),
        "an answer vouched for an identity:\n{text}"
    );
}

/// A plain `GET /health/alive` through `addr` is answered 200: the gateway is still serving.
pub async fn assert_still_serving(addr: SocketAddr) {
    let (resp, _) = exchange(
        addr,
        "GET /health/alive HTTP/1.1\r\nHost: auth.example.com\r\n\r\n",
    )
    .await;
    assert_eq!(resp.status, 200, "the gateway stopped serving: {resp:?}");
}
