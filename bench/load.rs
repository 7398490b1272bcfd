//! Fixed-rate HTTP/1.1 load generator for bench/run.sh: open loop like wrk2, one core (like
//! `wrk -t1`), one JSON object on stdout. Built only with the `bench` feature, next to the
//! gateway: `cargo build --release --features bench` → `target/release/kratos-gate-bench-load`.
//!
//! ```text
//! kratos-gate-bench-load --url http://127.0.0.1:8080/path --rate 2000 --duration 3 \
//!     --connections 8 [--method POST] [-H 'Name: value']... [--body STRING]
//! kratos-gate-bench-load --url ... --rate 0 --count 200 --connections 4    # closed loop
//! ```
//!
//! Request i of the run is due at t0 + i/rate; connection k sends requests k, k+C, k+2C, ...
//! on one keep-alive connection. `requests` counts responses of any status (`status` splits
//! them), `errors` counts connection errors and timeouts (the connection is then opened anew),
//! `unfinished` counts requests due before the end that had not completed 2 s after it.
//! Percentiles (nearest rank) and `rps` are over responses; `seconds` runs from the start to
//! the end of the run (--duration, or the last due time at a fixed rate) or to the last
//! response if that came later.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Requests still running this long after the end of the run are `unfinished`.
const GRACE: Duration = Duration::from_secs(2);

const USAGE: &str = "usage: kratos-gate-bench-load --url http://HOST:PORT/PATH \
(--duration SECS | --count N) [--rate REQ_PER_S (0: closed loop, default)] [--connections C (1)] \
[--method M] [-H 'Name: value']... [--body STRING] [--timeout SECS (10)]";

type Error = Box<dyn std::error::Error + Send + Sync>;

/// What every connection needs: the target, the request and the schedule.
struct Plan {
    addr: SocketAddr,
    method: Method,
    path: Uri,
    headers: HeaderMap,
    body: Bytes,
    rate: f64,
    connections: u64,
    duration: Option<Duration>,
    count: Option<u64>,
    timeout: Duration,
    t0: Instant,
}

impl Plan {
    fn request(&self) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.path.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }

    /// Number of requests of the whole run, if bounded.
    fn total(&self) -> Option<u64> {
        // `as` saturates: a huge product is simply a run that never reaches its end.
        let by_time = self
            .duration
            .filter(|_| self.rate > 0.0)
            .map(|d| (d.as_secs_f64() * self.rate).ceil() as u64);
        match (by_time, self.count) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When request i is due; None in closed loop (or beyond any representable time).
    fn due(&self, i: u64) -> Option<Instant> {
        if self.rate <= 0.0 {
            return None;
        }
        let offset = Duration::try_from_secs_f64(i as f64 / self.rate).ok()?;
        self.t0.checked_add(offset)
    }

    /// End of the run: the duration, or the time the last request is due.
    fn end(&self) -> Option<Instant> {
        let length = match (self.duration, self.count) {
            (Some(d), _) => Some(d),
            (None, Some(n)) if self.rate > 0.0 => {
                Duration::try_from_secs_f64(n as f64 / self.rate).ok()
            }
            _ => None,
        };
        self.t0.checked_add(length?)
    }
}

/// The plan, or None for --help.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Plan>, String> {
    fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
        args.next().ok_or_else(|| format!("{flag} needs a value"))
    }
    fn number<T: FromStr>(flag: &str, text: &str) -> Result<T, String> {
        text.parse()
            .map_err(|_| format!("{flag}: not a valid number: {text:?}"))
    }
    fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
        let secs: f64 = number(flag, text)?;
        Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| !d.is_zero() && d.as_secs() < 365 * 86400)
            .ok_or_else(|| format!("{flag}: expected seconds > 0, got {text}"))
    }
    let (mut url, mut method, mut headers, mut body) =
        (None, Method::GET, HeaderMap::new(), Bytes::new());
    let (mut rate, mut connections, mut duration, mut count) = (0.0_f64, 1, None, None);
    let mut timeout = Duration::from_secs(10);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let text = value(&mut args, &flag)?;
        match flag.as_str() {
            "--url" => url = Some(text),
            "--rate" => {
                rate = number(&flag, &text)?;
                if !(rate == 0.0 || rate.is_finite() && rate >= 0.01) {
                    return Err(format!(
                        "--rate: expected 0 or requests/s ≥ 0.01, got {text}"
                    ));
                }
            }
            "--duration" => duration = Some(seconds(&flag, &text)?),
            "--timeout" => timeout = seconds(&flag, &text)?,
            "--connections" => connections = number(&flag, &text)?,
            "--count" => count = Some(number(&flag, &text)?),
            "--method" => {
                method = Method::from_bytes(text.as_bytes())
                    .map_err(|_| format!("--method: invalid method {text:?}"))?;
            }
            "-H" | "--header" => {
                let (name, val) = text
                    .split_once(':')
                    .ok_or_else(|| format!("{flag}: expected 'Name: value', got {text:?}"))?;
                let name = HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| format!("{flag}: invalid header name in {text:?}"))?;
                let val = HeaderValue::from_str(val.trim())
                    .map_err(|_| format!("{flag}: invalid header value in {text:?}"))?;
                headers.append(name, val);
            }
            "--body" => body = Bytes::from(text),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if connections == 0 || count == Some(0) {
        return Err("--connections and --count must be at least 1".into());
    }
    if duration.is_none() && count.is_none() {
        return Err("give --duration or --count".into());
    }
    let url = url.ok_or("give --url")?;
    let uri: Uri = url.parse().map_err(|e| format!("--url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("--url {url:?}: only http:// URLs are supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("--url {url:?}: no host"))?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = (authority.host(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("--url {url:?}: cannot resolve {}", authority.host()))?;
    if !headers.contains_key(HOST) {
        let host =
            HeaderValue::from_str(authority.as_str()).map_err(|e| format!("--url {url:?}: {e}"))?;
        headers.insert(HOST, host);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = Uri::from_str(path).map_err(|e| format!("--url {url:?}: {e}"))?;
    let t0 = Instant::now(); // set again once every connection is open
    let plan = Plan {
        addr,
        method,
        path,
        headers,
        body,
        rate,
        connections,
        duration,
        count,
        timeout,
        t0,
    };
    Ok(Some(plan))
}

/// One HTTP/1.1 connection; its driver task ends with it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

async fn connect(addr: SocketAddr) -> Result<Conn, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await; // its error, if any, comes back through `sender`
    });
    Ok(Conn { sender, driver })
}

/// Sends one request (connecting first if needed) and reads the whole response.
async fn exchange(conn: &mut Option<Conn>, plan: &Plan) -> Result<u16, Error> {
    // A kept-alive connection the server has closed in the meantime (its idle timeout) is
    // opened anew before sending: not an error, nothing was sent on it.
    if let Some(c) = conn.as_mut() {
        if c.sender.ready().await.is_err() {
            *conn = None;
        }
    }
    if conn.is_none() {
        let mut fresh = connect(plan.addr).await?;
        fresh.sender.ready().await?;
        *conn = Some(fresh);
    }
    let c = conn.as_mut().ok_or("no connection")?;
    let response = c.sender.send_request(plan.request()).await?;
    let status = response.status().as_u16();
    let closes = response
        .headers()
        .get(CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    if closes {
        *conn = None; // not an error: the next request opens a new connection
    }
    Ok(status)
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    status: BTreeMap<u16, u64>,
    errors: u64,
    unfinished: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

/// Connection k: requests k, k+C, k+2C, ... of the run.
async fn drive(plan: Arc<Plan>, k: u64, mut conn: Option<Conn>) -> Stats {
    let mut stats = Stats::default();
    let (total, end) = (plan.total(), plan.end());
    let grace = end.and_then(|e| e.checked_add(GRACE));
    let mut previous_done = plan.t0;
    let mut i = k;
    while total.is_none_or(|t| i < t) {
        let now = Instant::now();
        let due = plan.due(i);
        if due.is_none() && end.is_some_and(|e| now >= e) {
            break; // closed loop: the duration is over
        }
        if grace.is_some_and(|g| now >= g) {
            stats.unfinished += total.map_or(0, |t| (t - i).div_ceil(plan.connections));
            break;
        }
        // The latency is measured from the due time only if the connection was still busy
        // with the previous request then: that wait is the server's doing (coordinated
        // omission). Otherwise it is measured from the actual send: tokio's timer wakes up to
        // 1 ms late, and that delay is the loader's, not the server's.
        let reference = match due {
            Some(due) if previous_done > due => due,
            Some(due) => {
                if now < due {
                    tokio::time::sleep_until(due).await;
                }
                Instant::now()
            }
            None => now,
        };
        let sent = Instant::now();
        let limit = sent.checked_add(plan.timeout).unwrap_or(sent);
        let limit = grace.map_or(limit, |g| g.min(limit));
        let outcome = tokio::time::timeout_at(limit, exchange(&mut conn, &plan)).await;
        let done = Instant::now();
        match outcome {
            Ok(Ok(status)) => {
                stats
                    .latencies
                    .push(done.saturating_duration_since(reference));
                *stats.status.entry(status).or_default() += 1;
                stats.last_done = Some(done);
            }
            Err(_) if grace.is_some_and(|g| done >= g) => {
                stats.unfinished += total.map_or(1, |t| (t - i).div_ceil(plan.connections));
                break;
            }
            failed => {
                let error = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no response within {:?}", plan.timeout),
                };
                stats.errors += 1;
                stats.first_error.get_or_insert(error);
                conn = None;
            }
        }
        previous_done = done;
        i = i.saturating_add(plan.connections);
    }
    stats
}

async fn run(mut plan: Plan) -> Result<serde_json::Value, String> {
    let mut conns = Vec::new();
    for _ in 0..plan.connections {
        let conn = connect(plan.addr)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", plan.addr))?;
        conns.push(conn);
    }
    plan.t0 = Instant::now();
    let plan = Arc::new(plan);
    let tasks: Vec<_> = (0..)
        .zip(conns)
        .map(|(k, conn)| tokio::spawn(drive(plan.clone(), k, Some(conn))))
        .collect();
    let mut all = Stats::default();
    for task in tasks {
        let stats = task
            .await
            .map_err(|e| format!("connection task failed: {e}"))?;
        all.latencies.extend(stats.latencies);
        for (code, n) in stats.status {
            *all.status.entry(code).or_default() += n;
        }
        all.errors += stats.errors;
        all.unfinished += stats.unfinished;
        all.first_error = all.first_error.or(stats.first_error);
        all.last_done = all.last_done.max(stats.last_done);
    }
    if let Some(error) = &all.first_error {
        eprintln!(
            "kratos-gate-bench-load: {} errors, the first: {error}",
            all.errors
        );
    }
    all.latencies.sort_unstable();
    let ms = |d: Duration| (d.as_secs_f64() * 1e7).round() / 1e4; // to 0.1 µs
    let pct = |p: f64| percentile(&all.latencies, p).map(ms);
    let last = all
        .last_done
        .max(plan.end().filter(|_| all.last_done.is_some()));
    let seconds = last.map_or(0.0, |d| {
        (d.saturating_duration_since(plan.t0).as_secs_f64() * 1e6).round() / 1e6
    });
    let requests = all.latencies.len();
    let rps = if seconds > 0.0 {
        (requests as f64 / seconds * 10.0).round() / 10.0
    } else {
        0.0
    };
    let status: BTreeMap<String, u64> = all
        .status
        .iter()
        .map(|(c, n)| (c.to_string(), *n))
        .collect();
    Ok(serde_json::json!({
        "requests": requests, "seconds": seconds, "rps": rps,
        "p50_ms": pct(50.0), "p90_ms": pct(90.0), "p99_ms": pct(99.0), "p999_ms": pct(99.9),
        "max_ms": all.latencies.last().copied().map(ms),
        "errors": all.errors, "status": status, "unfinished": all.unfinished,
    }))
}

/// Nearest rank: the smallest value with at least p % of the values at or below it.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

fn main() -> ExitCode {
    let plan = match parse_args(std::env::args().skip(1)) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("kratos-gate-bench-load: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kratos-gate-bench-load: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(plan)) {
        Ok(report) => {
            // A reader that went away (a closed pipe) is an error, not a panic.
            use std::io::Write;
            match writeln!(std::io::stdout(), "{report}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("kratos-gate-bench-load: cannot write the report: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(message) => {
            eprintln!("kratos-gate-bench-load: {message}");
            ExitCode::FAILURE
        }
    }
}
