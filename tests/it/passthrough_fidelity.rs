//! Pass-through fidelity of the proxy engine: what a client sends reaches Kratos unchanged
//! (method, path and query byte for byte, headers, body), what Kratos answers reaches the
//! client unchanged, upstream connections are pooled, and large bodies stream both ways
//! without being buffered.

use crate::support;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use support::client::{self, request, send};
use support::fake_kratos::{FakeKratos, Reply, Side, RECEIVED_BYTES_HEADER};
use support::fixtures;
use support::gateway::{blocklist_of, start_gateway};

/// An identity on the blocklist of every gateway here; the traffic below is someone else's.
const LISTED: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";

const MIB: u64 = 1024 * 1024;
/// Size of the large upload and download.
const LARGE: u64 = 256 * MIB;
/// How much the process may grow while a [`LARGE`] body passes through.
const RSS_BUDGET: u64 = 64 * MIB;

/// The large-body tests measure this process's memory, so they must not overlap.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn empty() -> Full<Bytes> {
    Full::new(Bytes::new())
}

/// Resident set size of this process (the gateway and the fake run in it), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Samples the RSS every few milliseconds until stopped; returns the highest value seen.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start() -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_bytes()));
        let task = {
            let stop = Arc::clone(&stop);
            let peak = Arc::clone(&peak);
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    peak.fetch_max(rss_bytes(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        RssSampler { stop, peak, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("sampler");
        self.peak.fetch_max(rss_bytes(), Ordering::SeqCst);
        self.peak.load(Ordering::SeqCst)
    }
}

/// A request body of `len` bytes generated on the fly from one shared 64 KiB chunk.
struct Generated {
    remaining: u64,
    chunk: Bytes,
}

impl Generated {
    fn new(len: u64) -> Generated {
        Generated {
            remaining: len,
            chunk: Bytes::from(vec![b'u'; 64 * 1024]),
        }
    }
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = this.remaining.min(this.chunk.len() as u64);
        this.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Reads a response body frame by frame without keeping it; returns its length.
async fn drain(mut body: hyper::body::Incoming) -> u64 {
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("response body frame").into_data() {
            n += data.len() as u64;
        }
    }
    n
}

/// Paths and queries a client may legally send, spelled oddly on purpose: lower- and
/// upper-case percent escapes, encoded slashes and `%25`, empty and repeated parameters,
/// sub-delimiters, `?` and `/` inside the query, an empty query.
const TARGETS: &[&str] = &[
    "/self-service/login/browser?refresh=true&return_to=https%3A%2F%2Fapp.example.com%2Fcb%3Fa%3D1%26b%3D2",
    "/odd/%7Euser/a%2Fb/%e2%82%ac/%E2%82%AC?x=%41%61&y=%2b+%20&z=%2B",
    "/a;matrix=1,2/b:c@d!$&'()*+,;=?q=a=b=c&&&flag&=empty&k[]=1&k[]=2",
    "/search?q=%22quoted%22&empty=&sp=a+b&tilde=~&semi=1;2&slash=/x/?y",
    "/%20space%20/and%2520double/./not-normalised/../x//y",
    "/UPPER/Case/Path?MiXeD=CaSe",
    "/empty-query?",
];

#[tokio::test]
async fn every_method_reaches_kratos_with_path_and_query_byte_exact() {
    let fake = FakeKratos::start().await;
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let c = client::http1();
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::HEAD,
    ];
    for target in TARGETS {
        for method in &methods {
            fake.clear_calls();
            let reply = send(
                &c,
                request(method.clone(), &gw.public_url(target))
                    .body(empty())
                    .expect("req"),
            )
            .await;
            let calls = fake.calls();
            assert_eq!(calls.len(), 1, "{method} {target}: {calls:?}");
            let call = &calls[0];
            assert_eq!(call.side, Side::Public);
            assert_eq!(&call.method, method, "{target}");
            let received = call
                .uri
                .path_and_query()
                .map(|pq| pq.as_str())
                .unwrap_or("");
            assert_eq!(received, *target, "{method}: path and query changed");
            assert_eq!(call.version, http::Version::HTTP_11);
            // Whatever the fake answered (its router 301s unclean paths, 404s unknown ones)
            // came back; the point here is the request line.
            assert!(
                reply.status.is_success()
                    || reply.status.is_redirection()
                    || reply.status.is_client_error(),
                "{method} {target}: {}",
                reply.status
            );
        }
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn request_headers_and_body_reach_kratos_unchanged() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/echo-headers", Reply::text(200, "ok"));
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let headers: &[(&str, &str)] = &[
        ("x-custom", "first value"),
        ("x-custom", "second, with comma"),
        ("x-custom", "third"),
        ("accept", "application/json"),
        ("accept-language", "de-CH, de;q=0.9, en;q=0.5"),
        ("authorization", "Bearer ory_st_abc"),
        ("x-session-token", "ory_st_def"),
        ("cookie", "csrf_token_1=abc; other=x%20y"),
        ("user-agent", "test-agent/1.0 (passthrough)"),
        ("origin", "https://app.example.com"),
        ("x-request-id", "req-123"),
        ("content-type", "application/json"),
        ("x-empty", ""),
    ];
    let body =
        "{\"method\":\"password\",\"identifier\":\"bob@example.com\",\"password\":\"pw \\u00e4\"}";
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        fake.clear_calls();
        let mut b = request(method.clone(), &gw.public_url("/echo-headers?x=1"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let reply = send(
            &client::http1(),
            b.body(Full::new(Bytes::from_static(body.as_bytes())))
                .expect("req"),
        )
        .await;
        assert_eq!(reply.status, 200);
        let calls = fake.calls();
        assert_eq!(calls.len(), 1);
        let call = &calls[0];
        for name in [
            "x-custom",
            "accept",
            "accept-language",
            "authorization",
            "x-session-token",
            "cookie",
            "user-agent",
            "origin",
            "x-request-id",
            "content-type",
            "x-empty",
        ] {
            let sent: Vec<&str> = headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(call.header_all(name), sent, "{method}: header {name}");
        }
        assert_eq!(
            call.body.as_ref(),
            body.as_bytes(),
            "{method}: body changed"
        );
        assert_eq!(
            call.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    gw.shutdown().await;
}

/// One scripted answer and what the client must see of it.
struct Case {
    path: &'static str,
    method: Method,
    /// `None`: not scripted, the fake's router answers.
    reply: Option<Reply>,
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    body: &'static [u8],
}

#[tokio::test]
async fn response_status_headers_and_body_come_back_unchanged() {
    let fake = FakeKratos::start().await;
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let not_found_json = fixtures::fixture_wire("kratos-error-404-not-found.json");
    let not_found_json: &'static str = Box::leak(not_found_json.into_boxed_str());
    let cases = vec![
        Case {
            path: "/status/200",
            method: Method::GET,
            reply: Some(Reply::text(200, "plain ok\n")
                .header("x-multi", "one")
                .header("x-multi", "two")
                .header("cache-control", "private, no-cache, no-store, must-revalidate")),
            status: 200,
            headers: &[
                ("content-type", "text/plain; charset=utf-8"),
                ("x-multi", "one"),
                ("x-multi", "two"),
                ("cache-control", "private, no-cache, no-store, must-revalidate"),
                ("content-length", "9"),
            ],
            body: b"plain ok\n",
        },
        Case {
            path: "/status/201",
            method: Method::POST,
            reply: Some(Reply::json(201, "{\"id\":\"a\",\"n\":[1,2,3]}\n")
                .header("location", "/status/201/a")),
            status: 201,
            headers: &[
                ("content-type", "application/json; charset=utf-8"),
                ("location", "/status/201/a"),
            ],
            body: b"{\"id\":\"a\",\"n\":[1,2,3]}\n",
        },
        Case {
            path: "/status/204",
            method: Method::DELETE,
            reply: Some(Reply::empty(204).header("x-deleted", "yes")),
            status: 204,
            headers: &[("x-deleted", "yes")],
            body: b"",
        },
        Case {
            path: "/status/301",
            method: Method::GET,
            reply: Some(Reply::text(301, "<a href=\"/elsewhere/\">Moved Permanently</a>.\n\n")
                .header("location", "/elsewhere/?keep=%2F")),
            status: 301,
            headers: &[("location", "/elsewhere/?keep=%2F")],
            body: b"<a href=\"/elsewhere/\">Moved Permanently</a>.\n\n",
        },
        Case {
            path: "/status/303",
            method: Method::POST,
            reply: Some(Reply::empty(303)
                .header("location", "https://app.example.com/welcome?flow=1&x=%C3%A4")
                .header("set-cookie", "csrf_token_806=q1w2e3; Path=/; HttpOnly; SameSite=Lax")
                .header("set-cookie", "theme=dark; Path=/")),
            status: 303,
            headers: &[
                ("location", "https://app.example.com/welcome?flow=1&x=%C3%A4"),
                ("set-cookie", "csrf_token_806=q1w2e3; Path=/; HttpOnly; SameSite=Lax"),
                ("set-cookie", "theme=dark; Path=/"),
            ],
            body: b"",
        },
        Case {
            path: "/status/400",
            method: Method::POST,
            reply: Some(Reply::kratos_error(
                400,
                Some("browser_location_change_required"),
                Some("Bad request reason"),
                "The request was malformed or contained invalid parameters",
            )),
            status: 400,
            headers: &[
                ("content-type", "application/json"),
                ("ory-error-id", "browser_location_change_required"),
            ],
            body: b"{\"error\":{\"id\":\"browser_location_change_required\",\"code\":400,\"status\":\"Bad Request\",\"reason\":\"Bad request reason\",\"message\":\"The request was malformed or contained invalid parameters\"}}\n",
        },
        Case {
            // Not scripted: the fake's router answers like Go's ServeMux.
            path: "/no/such/route",
            method: Method::GET,
            reply: None,
            status: 404,
            headers: &[("content-type", "text/plain; charset=utf-8")],
            body: b"404 page not found\n",
        },
        Case {
            path: "/status/404-json",
            method: Method::GET,
            reply: Some(Reply::json(404, not_found_json)),
            status: 404,
            headers: &[("content-type", "application/json")],
            body: not_found_json.as_bytes(),
        },
        Case {
            path: "/status/410",
            method: Method::GET,
            reply: Some(Reply::kratos_error(410, Some("self_service_flow_expired"), None, "gone")
                .header("x-flow", "expired")),
            status: 410,
            headers: &[("x-flow", "expired"), ("ory-error-id", "self_service_flow_expired")],
            body: b"{\"error\":{\"id\":\"self_service_flow_expired\",\"code\":410,\"status\":\"Gone\",\"message\":\"gone\"}}\n",
        },
        Case {
            path: "/status/500",
            method: Method::PUT,
            reply: Some(Reply::raw(500, &b"internal\x00binary\xffbytes"[..])
                .header("content-type", "application/octet-stream")),
            status: 500,
            headers: &[("content-type", "application/octet-stream")],
            body: b"internal\x00binary\xffbytes",
        },
    ];
    for case in &cases {
        if let Some(reply) = &case.reply {
            fake.on_public(case.method.clone(), case.path, reply.clone());
        }
    }
    for case in cases {
        let reply = send(
            &client::http1(),
            request(case.method.clone(), &gw.public_url(case.path))
                .body(empty())
                .expect("req"),
        )
        .await;
        assert_eq!(reply.status, case.status, "{}", case.path);
        let mut names: Vec<&str> = case.headers.iter().map(|(k, _)| *k).collect();
        names.dedup();
        for name in names {
            let want: Vec<&str> = case
                .headers
                .iter()
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| *v)
                .collect();
            let got: Vec<&str> = reply
                .headers
                .get_all(name)
                .iter()
                .map(|v| v.to_str().expect("text"))
                .collect();
            assert_eq!(got, want, "{}: header {name}", case.path);
        }
        assert_eq!(
            reply.body.as_ref(),
            case.body,
            "{}: body changed: {:?}",
            case.path,
            reply.text()
        );
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn head_response_keeps_headers_and_has_no_body() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        Method::HEAD,
        "/head",
        Reply::text(200, "twelve bytes").header("x-head", "1"),
    );
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let reply = send(
        &client::http1(),
        request(Method::HEAD, &gw.public_url("/head"))
            .body(empty())
            .expect("req"),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["x-head"], "1");
    assert_eq!(reply.headers["content-length"], "12");
    assert!(reply.body.is_empty());
    gw.shutdown().await;
}

#[tokio::test]
async fn unlisted_identity_credential_responses_are_byte_identical() {
    let fake = FakeKratos::start().await;
    let identity = uuid::Uuid::parse_str(fixtures::FIXTURE_IDENTITY_ID).expect("uuid");
    let session = uuid::Uuid::parse_str(fixtures::FIXTURE_SESSION_ID).expect("uuid");
    let native = fixtures::native_login_body(identity, session, fixtures::FIXTURE_TOKEN);
    let spa = fixtures::spa_login_body(identity, session);
    let cookie = "ory_kratos_session=MTc1NDA5NjE2N3xEWDhFQVFMX2dBQUJFQUVRQUFCX180QUFaZz09; Path=/; Expires=Sat, 02 Aug 2025 12:56:07 GMT; HttpOnly; SameSite=Lax";
    fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(200, native.clone()),
    );
    fake.on_public(
        Method::GET,
        "/self-service/login/browser-spa",
        Reply::json(200, spa.clone())
            .header("set-cookie", "csrf_token_806=q1w2; Path=/; HttpOnly")
            .header("set-cookie", cookie),
    );
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;

    let login = client::post_json(
        &gw.public_url("/self-service/login?flow=0b2c6c0e-5b4a-4a3a-9a6e-1f2d3c4b5a69"),
        "{\"method\":\"password\",\"identifier\":\"alice@example.com\",\"password\":\"x\"}",
    )
    .await;
    assert_eq!(login.status, 200, "{}", login.text());
    assert_eq!(
        login.body.as_ref(),
        native.as_bytes(),
        "native login body changed"
    );
    assert_eq!(
        login.headers["content-length"],
        native.len().to_string().as_str()
    );

    let browser = client::get(&gw.public_url("/self-service/login/browser-spa")).await;
    assert_eq!(browser.status, 200, "{}", browser.text());
    assert_eq!(
        browser.body.as_ref(),
        spa.as_bytes(),
        "SPA login body changed"
    );
    assert_eq!(
        browser.set_cookies(),
        vec!["csrf_token_806=q1w2; Path=/; HttpOnly", cookie]
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn sequential_requests_share_few_pooled_upstream_connections() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/pooled", Reply::text(200, "ok"));
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    // One keep-alive client connection...
    let c = client::http1();
    for _ in 0..50 {
        let r = send(
            &c,
            request(Method::GET, &gw.public_url("/pooled"))
                .body(empty())
                .expect("req"),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    // ...and a new client connection for every request: the upstream pool does not care.
    for _ in 0..50 {
        let r = client::get(&gw.public_url("/pooled")).await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        fake.calls_matching(Side::Public, "ANY", "/pooled").len(),
        100
    );
    let upstream = fake.connections_accepted(Side::Public);
    assert!(
        (1..=3).contains(&upstream),
        "100 sequential requests opened {upstream} upstream connections"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn large_upload_streams_to_kratos_without_buffering() {
    let _heavy = HEAVY.lock().await;
    let fake = FakeKratos::start().await;
    fake.on_public(Method::POST, "/upload", Reply::echo(200));
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let c: Client<_, Generated> = Client::builder(TokioExecutor::new()).build_http();
    // Warm up allocator arenas and pools with a small exchange first.
    let warm = c
        .request(
            Request::post(gw.public_url("/upload"))
                .header("content-type", "application/octet-stream")
                .body(Generated::new(MIB))
                .expect("req"),
        )
        .await
        .expect("warm-up");
    assert_eq!(drain(warm.into_body()).await, MIB);

    let before = rss_bytes();
    let sampler = RssSampler::start();
    let started = Instant::now();
    let resp = c
        .request(
            Request::post(gw.public_url("/upload"))
                .header("content-type", "application/octet-stream")
                .body(Generated::new(LARGE))
                .expect("req"),
        )
        .await
        .expect("upload answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()[RECEIVED_BYTES_HEADER],
        LARGE.to_string().as_str(),
        "Kratos did not receive the whole body"
    );
    // The echo streams it all back: the download direction too.
    assert_eq!(drain(resp.into_body()).await, LARGE);
    let elapsed = started.elapsed();
    let peak = sampler.finish().await;
    let growth = peak.saturating_sub(before);
    eprintln!(
        "upload+echo of {} MiB in {elapsed:?}; RSS {} MiB -> peak {} MiB",
        LARGE / MIB,
        before / MIB,
        peak / MIB
    );
    assert!(
        growth < RSS_BUDGET,
        "RSS grew by {} MiB while {} MiB passed through",
        growth / MIB,
        LARGE / MIB
    );
    let call = fake
        .calls_matching(Side::Public, Method::POST, "/upload")
        .pop()
        .expect("recorded");
    assert_eq!(call.body_len, LARGE);
    assert_eq!(
        call.header("content-length"),
        Some(LARGE.to_string().as_str())
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn large_download_streams_to_the_client_without_buffering() {
    let _heavy = HEAVY.lock().await;
    let fake = FakeKratos::start().await;
    let chunk = 64 * 1024;
    fake.on_public(
        Method::GET,
        "/download",
        Reply::chunks(200, LARGE / chunk as u64, chunk),
    );
    fake.on_public(
        Method::GET,
        "/warm",
        Reply::chunks(200, 16, chunk).known_length(),
    );
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let c = client::http1();
    let warm = c
        .request(
            request(Method::GET, &gw.public_url("/warm"))
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("warm-up");
    assert_eq!(drain(warm.into_body()).await, 16 * chunk as u64);

    let before = rss_bytes();
    let sampler = RssSampler::start();
    let started = Instant::now();
    let resp = c
        .request(
            request(Method::GET, &gw.public_url("/download"))
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("download answered");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/octet-stream");
    assert_eq!(drain(resp.into_body()).await, LARGE);
    let elapsed = started.elapsed();
    let peak = sampler.finish().await;
    let growth = peak.saturating_sub(before);
    eprintln!(
        "download of {} MiB in {elapsed:?}; RSS {} MiB -> peak {} MiB",
        LARGE / MIB,
        before / MIB,
        peak / MIB
    );
    assert!(
        growth < RSS_BUDGET,
        "RSS grew by {} MiB while {} MiB passed through",
        growth / MIB,
        LARGE / MIB
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn slow_download_reaches_the_client_before_kratos_has_finished() {
    let fake = FakeKratos::start().await;
    let chunks = 6u64;
    let interval = Duration::from_millis(500);
    fake.on_public(
        Method::GET,
        "/slow-download",
        Reply::chunks(200, chunks, 1024).chunk_interval(interval),
    );
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
    )
    .await;
    let started = Instant::now();
    let resp = client::http1()
        .request(
            request(Method::GET, &gw.public_url("/slow-download"))
                .body(empty())
                .expect("req"),
        )
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = loop {
        let frame = body
            .frame()
            .await
            .expect("a first frame")
            .expect("frame ok");
        if let Ok(data) = frame.into_data() {
            if !data.is_empty() {
                break data;
            }
        }
    };
    let first_at = started.elapsed();
    // Kratos sends the last chunk only after (chunks - 1) intervals.
    let upstream_done_not_before = interval * (chunks as u32 - 1);
    assert!(
        first_at < upstream_done_not_before / 2,
        "first bytes only after {first_at:?}; Kratos needs at least {upstream_done_not_before:?}"
    );
    let mut total = first.len() as u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame ok").into_data() {
            total += data.len() as u64;
        }
    }
    let done_at = started.elapsed();
    assert_eq!(total, chunks * 1024);
    assert!(
        done_at >= upstream_done_not_before,
        "whole body after {done_at:?}, faster than Kratos sent it?"
    );
    gw.shutdown().await;
}
