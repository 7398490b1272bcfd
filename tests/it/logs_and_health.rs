//! The real binary's logs and its container health check (issue 13, items 6 and 7):
//!
//! - `--log-format json`: every line on stderr is a JSON object, start-up and fatal errors
//!   (config errors, bind errors, the exit) included; fields hold plain values (addresses,
//!   listener names); nothing on stdout.
//! - text mode writes no colour codes when stderr is not a terminal.
//! - an invalid `RUST_LOG` is one warning line naming the bad directive; the default filter
//!   is used.
//! - the start-up line names version, commit, mode, listeners, list source and checksum, and
//!   whether the hooks listener is on.
//! - `log.access: true` writes one line per request with its fields; off by default.
//! - `kratos-gate health` exits 0 when `/readyz` says ready and 1 otherwise (nothing
//!   listening, draining, no answer, unreadable config); `--version` names the commit.
//!
//! Every wait is bounded; a gateway process is killed when a test fails (a guard's `Drop`).

use crate::support;
use crate::support::ports::{free_port, free_ports};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client;
use support::fake_kratos::{FakeKratos, Reply};

const LISTED: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const COMMIT: &str = env!("KRATOS_GATE_COMMIT");
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kratos-gate"));
    cmd.env_remove("KRATOS_GATE_CONFIG")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// A port that was free a moment ago (the binary needs fixed ports in its config).
/// An upstream where nothing listens.
fn dead_upstream() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// How to run the gateway.
#[derive(Clone)]
struct Opts {
    json: bool,
    access: bool,
    report: bool,
    hooks: bool,
    /// `listen.ops` on `0.0.0.0` instead of `127.0.0.1`.
    ops_any: bool,
    shutdown_delay: &'static str,
    rust_log: Option<&'static str>,
    upstream: (String, String),
}

impl Default for Opts {
    fn default() -> Self {
        let dead = dead_upstream();
        Opts {
            json: true,
            access: false,
            report: false,
            hooks: false,
            ops_any: false,
            shutdown_delay: "0s",
            rust_log: Some("info"),
            upstream: (dead.clone(), dead),
        }
    }
}

struct Ports {
    public: u16,
    admin: u16,
    ops: u16,
    hooks: u16,
}

fn config_text(o: &Opts, p: &Ports) -> String {
    let ops_host = if o.ops_any { "0.0.0.0" } else { "127.0.0.1" };
    let mut t = format!(
        "listen:\n  public: 127.0.0.1:{}\n  admin: 127.0.0.1:{}\n  ops: {ops_host}:{}\n",
        p.public, p.admin, p.ops
    );
    if o.hooks {
        t.push_str(&format!("  hooks: 127.0.0.1:{}\n", p.hooks));
    }
    t.push_str(&format!(
        "upstream:\n  public: {}\n  admin: {}\n  connect_timeout: 500ms\n  response_timeout: 2s\n  lookup_timeout: 2s\n",
        o.upstream.0, o.upstream.1
    ));
    t.push_str("blocklist:\n  path: blocklist.yaml\n  poll_interval: 30s\n");
    if o.report {
        t.push_str("  mode: report\n");
    }
    t.push_str(&format!(
        "server:\n  shutdown_grace: 5s\n  shutdown_delay: {}\n",
        o.shutdown_delay
    ));
    if o.access {
        t.push_str("log:\n  access: true\n");
    }
    t
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Collects a pipe into a shared string on its own thread.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let out = Arc::clone(&sink);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    sink
}

/// A running gateway process: killed (and reaped) when dropped, so a failing test leaves
/// nothing behind.
struct Gate {
    child: Child,
    ports: Ports,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Drop for Gate {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Gate {
    /// Starts the binary and waits (at most 10 s) until `/readyz` answers 200. Picks other
    /// ports if one was taken meanwhile.
    fn start(o: &Opts) -> Gate {
        for _attempt in 0..5 {
            let dir = tempfile::tempdir().expect("tmp");
            let [public, admin, ops, hooks] = free_ports();
            let ports = Ports {
                public,
                admin,
                ops,
                hooks,
            };
            write(&dir.path().join("gateway.yaml"), &config_text(o, &ports));
            write(
                &dir.path().join("blocklist.yaml"),
                &format!("identities:\n  - {LISTED}\n"),
            );
            let mut cmd = bin();
            cmd.arg("--config").arg(dir.path().join("gateway.yaml"));
            if o.json {
                cmd.args(["--log-format", "json"]);
            }
            if let Some(filter) = o.rust_log {
                cmd.env("RUST_LOG", filter);
            }
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn kratos-gate");
            let stderr = collect(child.stderr.take().expect("stderr"));
            let stdout = collect(child.stdout.take().expect("stdout"));
            let mut gate = Gate {
                child,
                ports,
                stderr,
                stdout,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = gate.child.try_wait().expect("try_wait") {
                    let err = gate.wait_output_settled();
                    if err.contains("Address already in use") {
                        break; // a port was taken meanwhile: other ports
                    }
                    panic!("kratos-gate exited at start-up with {status}:\n{err}");
                }
                if http_get(gate.ops(), "/readyz", &[]).map(|(s, _)| s) == Some(200) {
                    return gate;
                }
                assert!(
                    Instant::now() < deadline,
                    "not ready within 10 s:\n{}",
                    gate.stderr()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("could not start kratos-gate on free ports");
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
    fn public(&self) -> SocketAddr {
        Self::addr(self.ports.public)
    }
    fn admin(&self) -> SocketAddr {
        Self::addr(self.ports.admin)
    }
    fn ops(&self) -> SocketAddr {
        Self::addr(self.ports.ops)
    }
    fn config(&self) -> PathBuf {
        self.dir.path().join("gateway.yaml")
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// stderr once the reader thread has caught up with a process that has exited.
    fn wait_output_settled(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut last = self.stderr();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = self.stderr();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// SIGTERM and wait (at most 10 s) for the exit; returns the status and all of stderr.
    fn stop(&mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(10), &self.stderr);
        (status, self.wait_output_settled())
    }

    /// Waits (at most 5 s) until a stderr line satisfies `pred`.
    fn wait_for_line(&self, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(l) = json_lines(&self.stderr()).into_iter().find(|l| pred(l)) {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "no such line within 5 s:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wait_exit(child: &mut Child, within: Duration, stderr: &Arc<Mutex<String>>) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running {within:?} later; stderr:\n{}",
                stderr.lock().expect("lock")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command that must end by itself within `within`; kills it otherwise.
fn run_bounded(cmd: &mut Command, within: Duration) -> (Option<i32>, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let status = wait_exit(&mut child, within, &stderr);
    // Let the reader threads see the end of the pipes.
    let deadline = Instant::now() + Duration::from_secs(2);
    std::thread::sleep(Duration::from_millis(50));
    while Instant::now() < deadline && Arc::strong_count(&stdout) + Arc::strong_count(&stderr) > 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = stdout.lock().expect("lock").clone();
    let err = stderr.lock().expect("lock").clone();
    (status.code(), out, err)
}

/// Every non-empty line parsed as JSON; panics naming the first line that is not.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l:?}\nall output:\n{text}"));
            assert!(v.is_object(), "not a JSON object: {l}");
            assert!(v["level"].is_string(), "no level: {l}");
            assert!(v["message"].is_string(), "no message: {l}");
            v
        })
        .collect()
}

/// A GET with a 5 s bound over plain HTTP/1.1: `(status, body)`, `None` if the connection
/// failed.
fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn find<'a>(lines: &'a [Value], message: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["message"] == message)
        .unwrap_or_else(|| panic!("no {message:?} line in {lines:#?}"))
}

fn has_no_debug_output(v: &Value) {
    let text = v.to_string();
    for debug in ["Some(", "None", "Public", "Admin\"", "\\\""] {
        assert!(!text.contains(debug), "Debug output {debug:?} in {text}");
    }
}

// ---------------------------------------------------------------------------------------
// Item 6: logs
// ---------------------------------------------------------------------------------------

#[test]
fn json_mode_writes_only_json_lines_with_plain_values_from_start_to_exit() {
    let mut gate = Gate::start(&Opts::default());
    let (status, body) = http_get(gate.ops(), "/blocklist", &[]).expect("GET /blocklist");
    assert_eq!(status, 200, "{body}");
    let ops_sha256 = serde_json::from_str::<Value>(&body).expect("JSON")["sha256"]
        .as_str()
        .expect("sha256")
        .to_owned();
    // Nothing listens upstream: the request logs the upstream failure with its listener.
    let (status, _) = http_get(gate.public(), "/self-service/login/browser", &[]).expect("502");
    assert_eq!(status, 502);
    gate.wait_for_line(|l| l["message"] == "answering with an error");
    let (exit, err) = gate.stop();
    assert_eq!(exit.code(), Some(0), "{err}");
    assert!(gate.stdout.lock().expect("lock").is_empty());

    let lines = json_lines(&err);
    for l in &lines {
        has_no_debug_output(l);
    }
    let start = find(&lines, "kratos-gate serving");
    assert_eq!(start["level"], "INFO");
    assert_eq!(start["version"], VERSION);
    assert_commit(start["commit"].as_str().expect("commit"));
    assert_eq!(start["mode"], "enforce");
    assert_eq!(start["public"], gate.public().to_string());
    assert_eq!(start["admin"], gate.admin().to_string());
    assert_eq!(start["ops"], gate.ops().to_string());
    assert_eq!(
        start["listeners"],
        format!(
            "public={} admin={} ops={}",
            gate.public(),
            gate.admin(),
            gate.ops()
        )
    );
    assert_eq!(start["hooks_enabled"], false);
    assert!(start.get("hooks").is_none(), "{start}");
    assert_eq!(
        start["source"],
        gate.dir.path().join("blocklist.yaml").display().to_string()
    );
    // The file's SHA-256, as `GET /blocklist` reports it.
    let checksum = start["checksum"].as_str().expect("checksum");
    assert!(
        checksum.len() == 64 && checksum.chars().all(|c| c.is_ascii_hexdigit()),
        "{start}"
    );
    assert_eq!(start["sha256"], checksum);
    assert_eq!(
        ops_sha256, checksum,
        "start-up line and GET /blocklist agree"
    );
    assert_eq!(start["entries"], 1);

    let refused = find(&lines, "answering with an error");
    assert_eq!(refused["listener"], "public");
    assert_eq!(refused["path"], "/self-service/login/browser");
    let drain = find(&lines, "shutting down: readiness is now 503");
    assert_eq!(drain["delay"], "0s");
    assert!(lines.iter().any(|l| l["message"]
        == "listener closed; waiting for in-flight requests"
        && l["listener"] == "admin"));
    assert_eq!(lines.last().expect("lines")["message"], "shutdown complete");
}

#[test]
fn start_up_line_names_report_mode_and_the_hooks_listener() {
    let gate = Gate::start(&Opts {
        report: true,
        hooks: true,
        ..Opts::default()
    });
    let start = gate.wait_for_line(|l| l["message"] == "kratos-gate serving");
    assert_eq!(start["mode"], "report");
    assert_eq!(start["hooks_enabled"], true);
    let hooks = Gate::addr(gate.ports.hooks).to_string();
    assert_eq!(start["hooks"], hooks);
    assert!(
        start["listeners"]
            .as_str()
            .expect("listeners")
            .ends_with(&format!("hooks={hooks}")),
        "{start}"
    );
    has_no_debug_output(&start);
}

#[test]
fn json_mode_config_error_is_json_lines_and_exit_2() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    write(
        &config,
        "listen:\n  public: 127.0.0.1:0\n  ops: not-an-address\nupstream:\n  public: http://127.0.0.1:1\n  admin: http://127.0.0.1:1\nblocklist:\n  path: blocklist.yaml\n",
    );
    write(&dir.path().join("blocklist.yaml"), "identities: []\n");
    let (code, out, err) = run_bounded(
        bin()
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(out.is_empty(), "{out}");
    let lines = json_lines(&err);
    let bad = lines
        .iter()
        .find(|l| l["line"] == 3)
        .unwrap_or_else(|| panic!("no line for the bad key: {err}"));
    assert_eq!(bad["level"], "ERROR");
    assert_eq!(bad["file"], config.display().to_string());
    assert!(bad["column"].as_u64().is_some_and(|c| c > 0), "{bad}");
    assert!(bad["error"].is_string(), "{bad}");
    let last = lines.last().expect("lines");
    assert_eq!(last["message"], "kratos-gate stops");
    assert_eq!(last["exit_code"], 2);
}

#[test]
fn json_mode_invalid_blocklist_is_json_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    write(
        &config,
        "listen:\n  public: 127.0.0.1:0\n  ops: 127.0.0.1:0\nupstream:\n  public: http://127.0.0.1:1\n  admin: http://127.0.0.1:1\nblocklist:\n  path: blocklist.yaml\n",
    );
    write(
        &dir.path().join("blocklist.yaml"),
        "identities:\n  - not-a-uuid\n  - also-not\n",
    );
    let (code, _, err) = run_bounded(
        bin()
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json"]),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(2), "{err}");
    let lines = json_lines(&err);
    let errors: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("blocklist.yaml"))
        })
        .collect();
    assert_eq!(errors.len(), 2, "every bad entry, one line each: {err}");
    assert_eq!(errors[0]["line"], 2);
    assert_eq!(errors[1]["line"], 3);
}

#[test]
fn json_mode_bind_error_is_json_lines_naming_listener_and_address() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    write(
        &config,
        &format!("listen:\n  public: 127.0.0.1:{port}\n  ops: 127.0.0.1:0\nupstream:\n  public: http://127.0.0.1:1\n  admin: http://127.0.0.1:1\nblocklist:\n  path: blocklist.yaml\n"),
    );
    write(&dir.path().join("blocklist.yaml"), "identities: []\n");
    let (code, out, err) = run_bounded(
        bin()
            .arg("--config")
            .arg(&config)
            .args(["--log-format", "json"]),
        Duration::from_secs(10),
    );
    drop(taken);
    assert_eq!(code, Some(1), "{err}");
    assert!(out.is_empty(), "{out}");
    let lines = json_lines(&err);
    let bind = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot listen"))
        })
        .unwrap_or_else(|| panic!("no bind error: {err}"));
    assert_eq!(bind["level"], "ERROR");
    assert_eq!(bind["listener"], "public");
    assert_eq!(bind["address"], format!("127.0.0.1:{port}"));
    assert!(bind["error"].is_string(), "{bind}");
    has_no_debug_output(bind);
    let last = lines.last().expect("lines");
    assert_eq!(last["message"], "kratos-gate stops");
    assert_eq!(last["exit_code"], 1);
}

#[test]
fn text_mode_writes_no_colour_codes_when_not_on_a_terminal() {
    let mut gate = Gate::start(&Opts {
        json: false,
        access: true,
        rust_log: Some("debug,kratos_gate=loud"),
        ..Opts::default()
    });
    let _ = http_get(gate.public(), "/sessions/whoami", &[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gate.stderr().contains("request") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (exit, err) = gate.stop();
    assert_eq!(exit.code(), Some(0), "{err}");
    // WARN, INFO and the access line: each would be coloured on a terminal.
    assert!(err.contains("WARN") && err.contains("INFO"), "{err}");
    assert!(err.contains("kratos-gate serving"), "{err}");
    assert!(!err.contains('\u{1b}'), "ANSI escape in:\n{err:?}");
    // Text mode: plain values too.
    assert!(
        err.contains(&format!("admin={}", gate.admin())),
        "plain admin address in:\n{err}"
    );
    assert!(!err.contains("Some("), "{err}");
}

#[test]
fn invalid_rust_log_is_one_warning_naming_the_bad_directive_and_the_default_is_used() {
    let mut gate = Gate::start(&Opts {
        rust_log: Some("info,kratos_gate=loud"),
        ..Opts::default()
    });
    let (_, err) = gate.stop();
    let lines = json_lines(&err);
    let warnings: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("RUST_LOG"))
        })
        .collect();
    assert_eq!(warnings.len(), 1, "{err}");
    let w = warnings[0];
    assert_eq!(w["level"], "WARN");
    assert_eq!(w["invalid"], "kratos_gate=loud");
    assert!(
        w["message"]
            .as_str()
            .expect("message")
            .contains("kratos_gate=loud"),
        "{w}"
    );
    // The default filter: info lines, no debug lines.
    find(&lines, "kratos-gate serving");
    assert!(lines.iter().all(|l| l["level"] != "DEBUG"), "{err}");
}

#[test]
fn a_valid_rust_log_gives_no_warning() {
    let mut gate = Gate::start(&Opts {
        rust_log: Some("warn,kratos_gate=info"),
        ..Opts::default()
    });
    let (_, err) = gate.stop();
    let lines = json_lines(&err);
    assert!(lines.iter().all(|l| l["level"] != "WARN"), "{err}");
    find(&lines, "kratos-gate serving");
}

fn access_lines(text: &str) -> Vec<Value> {
    json_lines(text)
        .into_iter()
        .filter(|l| l["target"] == "kratos_gate::access")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_writes_one_line_per_request_with_its_fields_only_when_on() {
    let fake = FakeKratos::start().await;
    fake.on_public("GET", "/hello", Reply::text(200, "hi"));
    fake.on_public("GET", "/missing", Reply::text(404, "no"));
    fake.on_admin("GET", "/admin/hello", Reply::text(200, "admin hi"));
    let upstream = (fake.public_url(), fake.admin_url());

    let opts = Opts {
        access: true,
        upstream: upstream.clone(),
        ..Opts::default()
    };
    let gate = tokio::task::spawn_blocking(move || Gate::start(&opts))
        .await
        .expect("start");
    let public = gate.public();
    let r = client::get_with(
        &format!("http://{public}/hello?x=1"),
        &[("x-request-id", "access-test-1")],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = client::get(&format!("http://{public}/missing")).await;
    assert_eq!(r.status, 404);
    // Answered by the gateway itself: no upstream status.
    let r = client::get_with(
        &format!("http://{public}/hello"),
        &[("connection", "upgrade"), ("upgrade", "websocket")],
    )
    .await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let upgrade_status = r.status.as_u16();
    let r = client::get(&format!("http://{}/admin/hello", gate.admin())).await;
    assert_eq!(r.status, 200);

    let deadline = Instant::now() + Duration::from_secs(5);
    while access_lines(&gate.stderr()).len() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lines = access_lines(&gate.stderr());
    assert_eq!(lines.len(), 4, "{}", gate.stderr());
    let first = &lines[0];
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["message"], "request");
    assert_eq!(first["request_id"], "access-test-1");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/hello", "the path, without the query");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream_status"], 200);
    assert_eq!(first["listener"], "public");
    assert_eq!(first["client_ip"], "127.0.0.1");
    assert!(
        first["duration_ms"].as_f64().is_some_and(|d| d >= 0.0),
        "{first}"
    );
    has_no_debug_output(first);

    let missing = &lines[1];
    assert_eq!(missing["path"], "/missing");
    assert_eq!(
        (
            missing["status"].as_u64(),
            missing["upstream_status"].as_u64()
        ),
        (Some(404), Some(404))
    );
    assert!(
        missing["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "a made-up id when the client sends none: {missing}"
    );

    let upgrade = &lines[2];
    assert_eq!(upgrade["status"], upgrade_status);
    assert!(upgrade.get("upstream_status").is_none(), "{upgrade}");

    let admin = &lines[3];
    assert_eq!(admin["listener"], "admin");
    assert_eq!(admin["path"], "/admin/hello");
    assert_eq!(admin["upstream_status"], 200);
    drop(gate);

    // Off by default: the same requests write no access line.
    let opts = Opts {
        upstream,
        ..Opts::default()
    };
    let mut gate = tokio::task::spawn_blocking(move || Gate::start(&opts))
        .await
        .expect("start");
    let r = client::get(&format!("http://{}/hello", gate.public())).await;
    assert_eq!(r.status, 200);
    let r = client::get(&format!("http://{}/admin/hello", gate.admin())).await;
    assert_eq!(r.status, 200);
    let (_, err) = tokio::task::spawn_blocking(move || {
        let stopped = gate.stop();
        drop(gate);
        stopped
    })
    .await
    .expect("stop");
    assert!(access_lines(&err).is_empty(), "{err}");
    assert!(json_lines(&err).iter().all(|l| l["message"] != "request"));
}

// ---------------------------------------------------------------------------------------
// Item 7: health and --version
// ---------------------------------------------------------------------------------------

fn health(config: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    run_bounded(
        bin().arg("health").arg("--config").arg(config).args(extra),
        Duration::from_secs(10),
    )
}

#[test]
fn health_exits_0_against_a_running_gateway_listening_on_the_wildcard_address() {
    let gate = Gate::start(&Opts {
        ops_any: true,
        ..Opts::default()
    });
    let (code, out, err) = health(&gate.config(), &[]);
    assert_eq!(code, Some(0), "stdout {out}\nstderr {err}");
    assert_eq!(out.lines().count(), 1, "one line: {out}");
    assert!(
        out.contains(&format!("http://127.0.0.1:{}/readyz", gate.ports.ops)),
        "0.0.0.0 is asked on 127.0.0.1: {out}"
    );
    assert!(err.is_empty(), "{err}");

    // The same resolution as serve: $KRATOS_GATE_CONFIG when --config is not given.
    let (code, _, err) = run_bounded(
        bin().arg("health").env("KRATOS_GATE_CONFIG", gate.config()),
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(0), "{err}");

    // JSON mode: one JSON line.
    let (code, out, _) = health(&gate.config(), &["--log-format", "json"]);
    assert_eq!(code, Some(0));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["ready"], true);
}

#[test]
fn health_exits_1_when_nothing_listens() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    let port = free_port();
    write(
        &config,
        &format!("listen:\n  public: 127.0.0.1:0\n  ops: 0.0.0.0:{port}\nupstream:\n  public: http://127.0.0.1:1\n  admin: http://127.0.0.1:1\nblocklist:\n  path: blocklist.yaml\n"),
    );
    let (code, out, err) = health(&config, &[]);
    assert_eq!(code, Some(1), "stdout {out}\nstderr {err}");
    assert_eq!(err.lines().count(), 1, "a one-line reason: {err}");
    assert!(err.starts_with("not ready:"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(out.is_empty(), "{out}");

    let (code, out, err) = health(&config, &["--log-format", "json"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
    let lines = json_lines(&err);
    assert_eq!(lines.len(), 1, "{err}");
    assert_eq!(lines[0]["ready"], false);
    assert_eq!(lines[0]["level"], "ERROR");
}

#[test]
fn health_exits_1_within_its_timeout_when_the_port_never_answers() {
    // Accepted by the kernel (backlog), never answered.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    write(
        &config,
        &format!("listen:\n  public: 127.0.0.1:0\n  ops: 127.0.0.1:{port}\nupstream:\n  public: http://127.0.0.1:1\n  admin: http://127.0.0.1:1\nblocklist:\n  path: blocklist.yaml\n"),
    );
    let started = Instant::now();
    let (code, _, err) = health(&config, &["--timeout", "500ms"]);
    let took = started.elapsed();
    drop(silent);
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn health_exits_1_when_the_config_cannot_be_read() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, out, err) = health(&dir.path().join("missing.yaml"), &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("config"), "{err}");
}

#[test]
fn health_exits_1_while_the_gateway_drains() {
    let mut gate = Gate::start(&Opts {
        shutdown_delay: "3s",
        ..Opts::default()
    });
    let (code, _, err) = health(&gate.config(), &[]);
    assert_eq!(code, Some(0), "{err}");
    gate.signal("TERM");
    // Readiness turns 503 at once; the listeners stay open for the 3 s delay.
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut last = None;
    while Instant::now() < deadline {
        let (code, _, err) = health(&gate.config(), &["--timeout", "1s"]);
        if code == Some(1) {
            last = Some(err);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = last.expect("health said not ready while draining");
    assert!(err.contains("503"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let status = wait_exit(&mut gate.child, Duration::from_secs(10), &gate.stderr);
    assert_eq!(status.code(), Some(0));
}

#[test]
fn version_names_the_commit() {
    for flag in ["--version", "-V"] {
        let out: Output = bin().arg(flag).output().expect("run --version");
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout);
        let prefix = format!("kratos-gate {VERSION} (commit ");
        assert!(text.starts_with(&prefix), "{flag}: {text}");
        let commit = text[prefix.len()..]
            .split([')', ';'])
            .next()
            .expect("commit");
        assert_commit(commit);
    }
}

/// The commit a binary names is the one this test was built with. Where several builds
/// share one target directory while commits land (a busy working tree), the binary may have
/// been rebuilt at another commit meanwhile: then it must at least be a commit of this
/// repository.
fn assert_commit(found: &str) {
    assert!(!COMMIT.is_empty() && !found.is_empty());
    if found == COMMIT {
        return;
    }
    let known = Command::new("git")
        .args(["cat-file", "-e", &format!("{found}^{{commit}}")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found != "unknown" && known,
        "the binary names commit {found:?}, built with {COMMIT:?}"
    );
}
