//! The real binary and its signals: SIGTERM and SIGINT drain in-flight requests and exit 0,
//! `server.shutdown_delay` turns readiness 503 before the listeners close, SIGHUP re-reads
//! the blocklist, and `--log-format json` writes JSON lines.

use crate::support;
use crate::support::ports::free_ports;

use support::metrics::metric;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::client;
use support::fake_kratos::{FakeKratos, Reply, Side};
use support::gateway::{blocklist_of, config_text, write_file};

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";

/// A port that was free a moment ago (the binary needs fixed ports in its config).
/// A running `kratos-gate` process; killed if a test fails before it exits.
struct Binary {
    child: Child,
    public: SocketAddr,
    ops: SocketAddr,
    stderr: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Binary {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    fn url(&self, addr: SocketAddr, path: &str) -> String {
        format!("http://{addr}{path}")
    }

    /// Waits for the process to exit, at most `within`.
    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {within:?} later; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn readyz(&self) -> Option<u16> {
        http_status(&self.url(self.ops, "/readyz")).await
    }

    async fn metrics(&self) -> String {
        let r = client::get(&self.url(self.ops, "/metrics")).await;
        assert_eq!(r.status, 200);
        r.text()
    }
}

/// The status of a GET, `None` if the connection failed.
async fn http_status(url: &str) -> Option<u16> {
    let req = http::Request::get(url)
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .expect("req");
    let resp = tokio::time::timeout(Duration::from_secs(5), client::http1().request(req))
        .await
        .expect("answer within 5 s");
    resp.ok().map(|r| r.status().as_u16())
}

/// Starts the binary in front of `upstream` with `server_yaml` in place of the `server:`
/// section (and other `(from, to)` edits of the config text), and waits until `/readyz`
/// answers 200. Retries with new ports if one of the picked ports was taken meanwhile.
async fn start_binary(
    upstream: (&str, &str),
    server_yaml: &str,
    edits: &[(&str, &str)],
    extra_args: &[&str],
) -> Binary {
    for _attempt in 0..5 {
        let dir = tempfile::tempdir().expect("tmp");
        let [public, admin, ops] = free_ports();
        let mut text = config_text(upstream.0, upstream.1)
            .replace(
                "public: 127.0.0.1:0",
                &format!("public: 127.0.0.1:{public}"),
            )
            .replace("admin: 127.0.0.1:0", &format!("admin: 127.0.0.1:{admin}"))
            .replace("ops: 127.0.0.1:0", &format!("ops: 127.0.0.1:{ops}"))
            .replace(SERVER_DEFAULT, server_yaml);
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} not in the config");
            text = text.replace(from, to);
        }
        write_file(&dir.path().join("gateway.yaml"), &text);
        write_file(&dir.path().join("blocklist.yaml"), &blocklist_of(&[A]));
        let child = spawn(dir.path(), extra_args);
        let mut bin = Binary {
            child,
            public: SocketAddr::from(([127, 0, 0, 1], public)),
            ops: SocketAddr::from(([127, 0, 0, 1], ops)),
            stderr: Arc::new(Mutex::new(String::new())),
            _dir: dir,
        };
        if let Some(pipe) = bin.child.stderr.take() {
            let sink = Arc::clone(&bin.stderr);
            std::thread::spawn(move || {
                let mut pipe = pipe;
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = bin.child.try_wait().expect("try_wait") {
                let err = bin.stderr();
                if err.contains("cannot listen") {
                    break; // port taken meanwhile: try other ports
                }
                panic!("kratos-gate exited at start-up with {status}:\n{err}");
            }
            if bin.readyz().await == Some(200) {
                return bin;
            }
            assert!(
                Instant::now() < deadline,
                "not ready within 10 s:\n{}",
                bin.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("could not start kratos-gate on free ports");
}

fn spawn(dir: &Path, extra_args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kratos-gate"))
        .arg("--config")
        .arg(dir.join("gateway.yaml"))
        .args(extra_args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kratos-gate")
}

const SERVER_DEFAULT: &str = "server:\n  shutdown_grace: 5s\n";

/// Sends SIGTERM or SIGINT during a slow request and checks the whole drain.
async fn drains_in_flight_requests_on(signal: &str) {
    let fake = FakeKratos::start().await;
    let slow = Duration::from_millis(1500);
    fake.on_public("GET", "/slow", Reply::text(200, "finished").delay(slow));
    let mut bin = start_binary(
        (&fake.public_url(), &fake.admin_url()),
        SERVER_DEFAULT,
        &[],
        &[],
    )
    .await;

    let url = bin.url(bin.public, "/slow");
    let in_flight = tokio::spawn(async move {
        let started = Instant::now();
        (client::get(&url).await, started.elapsed())
    });
    fake.wait_for_call(Side::Public, "GET", "/slow", Duration::from_secs(5))
        .await
        .expect("request reached Kratos");
    bin.signal(signal);
    let signalled = Instant::now();

    // New connections are refused while the in-flight request is still running.
    loop {
        match tokio::net::TcpStream::connect(bin.public).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            // Reset: the listener closed during this handshake; the next attempt tells.
            Err(e) if e.kind() != std::io::ErrorKind::ConnectionReset => {
                panic!("unexpected connect error: {e}")
            }
            _ => {}
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(1),
            "public listener not refusing connections 1 s after SIG{signal}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !in_flight.is_finished(),
        "the slow request ended before the listener closed; the test proves nothing"
    );
    assert!(
        bin.child.try_wait().expect("try_wait").is_none(),
        "exited before the in-flight request finished"
    );

    let (reply, took) = in_flight.await.expect("task");
    assert_eq!(
        reply.status,
        200,
        "in-flight request cut off: {}",
        reply.text()
    );
    assert_eq!(reply.text(), "finished");
    assert!(took >= slow);

    let status = bin.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", bin.stderr());
    let err = bin.stderr();
    assert!(err.contains(&format!("SIG{signal} received")), "{err}");
    assert!(err.contains("shutdown complete"), "{err}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_0() {
    drains_in_flight_requests_on("TERM").await;
}

#[tokio::test]
async fn sigint_finishes_in_flight_requests_and_exits_0() {
    drains_in_flight_requests_on("INT").await;
}

#[tokio::test]
async fn readyz_answers_503_during_the_shutdown_delay_while_requests_are_still_served() {
    let fake = FakeKratos::start().await;
    fake.on_public("GET", "/ok", Reply::text(200, "ok"));
    let delay = Duration::from_secs(2);
    let mut bin = start_binary(
        (&fake.public_url(), &fake.admin_url()),
        "server:\n  shutdown_delay: 2s\n  shutdown_grace: 5s\n",
        &[],
        &[],
    )
    .await;
    bin.signal("TERM");
    let signalled = Instant::now();
    loop {
        match bin.readyz().await {
            Some(503) => break,
            Some(200) => {}
            other => panic!("readyz answered {other:?}"),
        }
        assert!(
            signalled.elapsed() < delay / 2,
            "readyz still 200 {:?} after SIGTERM",
            signalled.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = client::get(&bin.url(bin.ops, "/readyz")).await;
    assert_eq!(r.text(), "shutting down\n");
    // Liveness stays fine, and the load balancer's last requests are still served.
    assert_eq!(http_status(&bin.url(bin.ops, "/healthz")).await, Some(200));
    assert_eq!(http_status(&bin.url(bin.public, "/ok")).await, Some(200));
    assert!(
        signalled.elapsed() < delay,
        "checks took too long to mean anything"
    );

    let status = bin.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", bin.stderr());
    assert!(
        signalled.elapsed() >= delay,
        "exited after {:?}, before the shutdown delay of {delay:?}",
        signalled.elapsed()
    );
}

#[tokio::test]
async fn sighup_rereads_the_blocklist_and_keeps_running() {
    let fake = FakeKratos::start().await;
    let bin = start_binary(
        (&fake.public_url(), &fake.admin_url()),
        SERVER_DEFAULT,
        &[],
        &[],
    )
    .await;
    let unchanged = "kratos_gate_blocklist_reloads_total{result=\"unchanged\"}";
    // The start-up re-read (a check that nothing changed before the folder watch began)
    // counts as one "unchanged"; wait for it so that it is not mistaken for the SIGHUP.
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&bin.metrics().await, unchanged) < 1.0 {
        assert!(Instant::now() < deadline, "start-up re-read not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = bin.metrics().await;
    let success_before = metric(
        &before,
        "kratos_gate_blocklist_reloads_total{result=\"success\"}",
    );

    bin.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        let m = bin.metrics().await;
        if metric(&m, unchanged) > metric(&before, unchanged) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not cause a reload:\n{m}\nstderr:\n{}",
            bin.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        metric(&after, unchanged),
        metric(&before, unchanged) + 1.0,
        "{after}"
    );
    assert_eq!(
        metric(
            &after,
            "kratos_gate_blocklist_reloads_total{result=\"success\"}"
        ),
        success_before
    );
    assert_eq!(metric(&after, "kratos_gate_blocklist_entries"), 1.0);
    assert!(bin.stderr().contains("SIGHUP received"), "{}", bin.stderr());
    // Still running and ready.
    assert_eq!(bin.readyz().await, Some(200));
    let mut bin = bin;
    assert!(bin.child.try_wait().expect("try_wait").is_none());
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
}

#[tokio::test]
async fn json_log_format_writes_json_lines_to_stderr() {
    // Nothing listens upstream: a request logs the upstream failure.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let mut bin = start_binary(
        (&dead, &dead),
        SERVER_DEFAULT,
        &[],
        &["--log-format", "json"],
    )
    .await;
    let r = client::get(&bin.url(bin.public, "/self-service/login/browser")).await;
    assert_eq!(r.status, 502);
    let request_id = r.json()["error"]["request"]
        .as_str()
        .expect("request id in the error")
        .to_owned();
    bin.signal("TERM");
    assert_eq!(bin.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
    // The reader thread may still be copying the last bytes.
    let deadline = Instant::now() + Duration::from_secs(2);
    while !bin.stderr().contains("shutdown complete") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let err = bin.stderr();
    let lines: Vec<serde_json::Value> = err
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{err}");
    for l in &lines {
        assert!(l["timestamp"].is_string(), "{l}");
        assert!(l["level"].is_string(), "{l}");
        assert!(l["message"].is_string(), "{l}");
    }
    assert!(
        lines.iter().any(|l| l["message"] == "kratos-gate serving"),
        "{err}"
    );
    let failure = lines
        .iter()
        .find(|l| l["message"] == "answering with an error")
        .unwrap_or_else(|| panic!("upstream failure not logged:\n{err}"));
    assert_eq!(failure["level"], "WARN", "{failure}");
    assert_eq!(failure["request_id"], request_id.as_str(), "{failure}");
    assert_eq!(failure["path"], "/self-service/login/browser", "{failure}");
    assert!(
        failure["error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{failure}"
    );
    assert!(
        lines.iter().any(|l| l["message"] == "shutdown complete"),
        "{err}"
    );
}

#[tokio::test]
async fn shutdown_grace_bounds_the_wait_for_requests_that_do_not_finish() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        "GET",
        "/endless",
        Reply::text(200, "never").delay(Duration::from_secs(30)),
    );
    let grace = Duration::from_secs(1);
    let mut bin = start_binary(
        (&fake.public_url(), &fake.admin_url()),
        "server:\n  shutdown_grace: 1s\n",
        &[("response_timeout: 2s", "response_timeout: 60s")],
        &[],
    )
    .await;
    let url = bin.url(bin.public, "/endless");
    let in_flight = tokio::spawn(async move {
        let req = http::Request::get(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("req");
        client::http1().request(req).await.map(|r| r.status())
    });
    fake.wait_for_call(Side::Public, "GET", "/endless", Duration::from_secs(5))
        .await
        .expect("request reached Kratos");
    bin.signal("TERM");
    let signalled = Instant::now();
    let status = bin.wait_exit(grace + Duration::from_secs(3)).await;
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", bin.stderr());
    assert!(
        took >= grace,
        "exited after {took:?}, before the grace period of {grace:?}"
    );
    let outcome = tokio::time::timeout(Duration::from_secs(5), in_flight)
        .await
        .expect("client noticed the end")
        .expect("task");
    assert!(
        outcome.is_err(),
        "the endless request got an answer: {outcome:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !bin.stderr().contains("shutdown complete") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        bin.stderr()
            .contains("connections still open after the shutdown grace period"),
        "{}",
        bin.stderr()
    );
}
