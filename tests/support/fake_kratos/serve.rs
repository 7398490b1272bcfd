//! Answering one request: failure injection, scripts, built-in routes, recording, and the
//! response body a reply asks for.

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::bodies::{BrokenBody, ChunkBody, EchoBody, FakeBody, GzipBody};
use super::reply::ReplyBody;
use super::routing::{builtin, Route};
use super::state::{Script, Shared};
use super::{
    RecordedCall, Reply, Side, INTERNAL_ERROR_WIRE, MAX_RECORDED_BODY, NO_CACHE,
    RECEIVED_BYTES_HEADER,
};

struct Received {
    stored: Bytes,
    total: u64,
    spill: Option<(tokio::fs::File, u64)>,
}

async fn read_body(mut body: Incoming, spill: bool) -> Received {
    let mut stored = BytesMut::new();
    let mut total: u64 = 0;
    let mut file: Option<(tokio::fs::File, u64)> = None;
    let mut spill_failed = false;
    while let Some(frame) = body.frame().await {
        // An error means the client went away or sent garbage: keep what we have.
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        let room = MAX_RECORDED_BODY - stored.len();
        let keep = room.min(data.len());
        stored.extend_from_slice(&data[..keep]);
        if spill && keep < data.len() && !spill_failed {
            if file.is_none() {
                match tempfile::tempfile() {
                    Ok(f) => file = Some((tokio::fs::File::from_std(f), 0)),
                    Err(e) => {
                        eprintln!("fake kratos: cannot create echo spill file: {e}");
                        spill_failed = true;
                        continue;
                    }
                }
            }
            if let Some((f, written)) = file.as_mut() {
                match f.write_all(&data[keep..]).await {
                    Ok(()) => *written += (data.len() - keep) as u64,
                    Err(e) => {
                        eprintln!("fake kratos: cannot write echo spill file: {e}");
                        spill_failed = true;
                    }
                }
            }
        }
    }
    if let Some((f, _)) = file.as_mut() {
        if let Err(e) = async {
            f.flush().await?;
            f.seek(io::SeekFrom::Start(0)).await.map(|_| ())
        }
        .await
        {
            eprintln!("fake kratos: cannot rewind echo spill file: {e}");
            file = None;
        }
    }
    Received {
        stored: stored.freeze(),
        total,
        spill: file,
    }
}

pub(super) async fn handle(
    shared: Arc<Shared>,
    side: Side,
    req: Request<Incoming>,
) -> Result<Response<FakeBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let raw_path = parts.uri.path().to_owned();
    let uri: Uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));

    // Decide failure injection and the scripted reply before reading the body
    // (an echo reply needs the body spilled rather than truncated).
    let (failure, side_delay, scripted, route) = {
        let mut inner = shared.lock();
        let loose = side == Side::Public && inner.loose_routing;
        let route = Route::new(side, &raw_path, loose);
        let failure = side == Side::Admin && take_one(&mut inner.admin_failures);
        let side_delay = match side {
            Side::Admin => inner.admin_delay,
            Side::Public => None,
        };
        let scripted = if failure {
            None
        } else {
            take_script(&mut inner.scripts, side, &parts.method, &route)
        };
        (failure, side_delay, scripted, route)
    };
    let spill = matches!(
        scripted.as_ref().map(|r| &r.body),
        Some(ReplyBody::Echo | ReplyBody::Dynamic(_))
    );
    let received = read_body(body, spill).await;

    let call = RecordedCall {
        side,
        method: parts.method.clone(),
        uri,
        headers: parts.headers.clone(),
        body: received.stored.clone(),
        body_len: received.total,
        version: parts.version,
        at: std::time::Instant::now(),
    };
    shared.lock().calls.push(call.clone());
    shared.call_recorded.notify_waiters();

    let reply = if failure {
        with_no_cache(&call, Reply::json(500, INTERNAL_ERROR_WIRE))
    } else if let Some(reply) = scripted {
        reply
    } else {
        with_no_cache(&call, builtin(&shared, side, &call, &route))
    };
    let reply = reply.resolve(&call);

    let delay = match (side_delay, reply.delay) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok(build_response(reply, &call, received))
}

fn take_one(counter: &mut usize) -> bool {
    if *counter > 0 {
        *counter -= 1;
        true
    } else {
        false
    }
}

fn take_script(
    scripts: &mut Vec<Script>,
    side: Side,
    method: &Method,
    route: &Route,
) -> Option<Reply> {
    let index = scripts.iter().rposition(|s| {
        s.side == side && s.method.matches(method) && route.matches_script(&s.path)
    })?;
    let script = &mut scripts[index];
    let reply = script.reply.clone();
    if let Some(remaining) = script.remaining.as_mut() {
        *remaining = remaining.saturating_sub(1);
        if *remaining == 0 {
            scripts.remove(index);
        }
    }
    Some(reply)
}

fn with_no_cache(call: &RecordedCall, reply: Reply) -> Reply {
    if call.method == Method::GET || call.method == Method::HEAD {
        reply.default_header("cache-control", NO_CACHE)
    } else {
        reply
    }
}

fn build_response(reply: Reply, call: &RecordedCall, received: Received) -> Response<FakeBody> {
    let mut headers = HeaderMap::new();
    for (name, value) in &reply.default_headers {
        if !reply.headers.iter().any(|(n, _)| n == name) {
            headers.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &reply.headers {
        headers.append(name.clone(), value.clone());
    }

    let body: FakeBody = match reply.body {
        ReplyBody::Full(bytes) => {
            let bytes = if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip_bytes(&bytes)
            } else {
                bytes
            };
            match reply.break_after {
                Some((n, stall)) => BrokenBody {
                    total: bytes.len() as u64,
                    part: Some(bytes.slice(..n.min(bytes.len()))),
                    stall,
                    pause: None,
                }
                .boxed_unsync(),
                None => full(bytes),
            }
        }
        ReplyBody::Chunks { count, size } => {
            let body = ChunkBody {
                remaining: count,
                chunk: Bytes::from(vec![b'x'; size]),
                interval: reply.chunk_interval,
                sleep: None,
                started: false,
                exact_len: (reply.known_length && !reply.gzip).then(|| count * size as u64),
            };
            if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                GzipBody::new(body.boxed_unsync()).boxed_unsync()
            } else {
                body.boxed_unsync()
            }
        }
        ReplyBody::Echo => {
            headers.insert(
                HeaderName::from_static(RECEIVED_BYTES_HEADER),
                HeaderValue::from(received.total),
            );
            if !headers.contains_key(header::CONTENT_TYPE) {
                let content_type = call
                    .headers
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("application/octet-stream"));
                headers.insert(header::CONTENT_TYPE, content_type);
            }
            let spilled = received.spill.as_ref().map_or(0, |(_, n)| *n);
            let complete = received.stored.len() as u64 + spilled == received.total;
            let body = EchoBody {
                prefix: Some(received.stored),
                file: received.spill.map(|(f, _)| f),
                buf: vec![0; 64 * 1024].into_boxed_slice(),
                exact_len: (complete && !reply.gzip).then_some(received.total),
            };
            if reply.gzip {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                GzipBody::new(body.boxed_unsync()).boxed_unsync()
            } else {
                body.boxed_unsync()
            }
        }
        ReplyBody::Dynamic(_) => unreachable!("dynamic replies are resolved before building"),
    };

    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    *response.headers_mut() = headers;
    response
}

fn full(bytes: Bytes) -> FakeBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn gzip_bytes(data: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(data)
        .and_then(|()| encoder.finish())
        .map(Bytes::from)
        .expect("gzip into a Vec cannot fail")
}
