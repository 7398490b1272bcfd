//! `kratos-gate check` refuses every config that serving refuses, with the same message and
//! the same exit code (2), before anything is bound; every error of the file in one run, each
//! naming its key, position and value; environment overrides (`KRATOS_GATE_<KEY PATH>`) and
//! `${VAR}` references apply to both and `check` says where a value came from.

use crate::support;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::gateway::{config_text, write_file};

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kratos-gate"));
    // Only what each test sets: no override or reference from the environment running it.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KRATOS_GATE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs to completion, or kills the process after `limit` (a gateway that started serving).
fn run(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kratos-gate");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {limit:?}: it started instead of refusing the config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut out).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err).expect("stderr");
    }
    (status.code().unwrap_or(-1), out, err)
}

/// A valid config and an empty blocklist in a temporary folder.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    write_file(
        &dir.path().join("gateway.yaml"),
        &config_text("http://127.0.0.1:4433", "http://127.0.0.1:4434"),
    );
    write_file(&dir.path().join("blocklist.yaml"), "identities: []\n");
    dir
}

fn config_path(dir: &Path) -> String {
    dir.join("gateway.yaml").display().to_string()
}

/// Appends to (or edits) the config.
fn edit(dir: &Path, f: impl FnOnce(String) -> String) {
    let path = dir.join("gateway.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    write_file(&path, &f(text));
}

/// `check` and serving both refuse with exit 2 and the same lines; returns them.
fn both_refuse(dir: &Path, env: &[(&str, &str)]) -> String {
    let config = config_path(dir);
    let (code, out, err) = run(
        bin()
            .args(["check", "--config", &config])
            .envs(env.iter().copied()),
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "check: {out}{err}");
    assert!(!err.trim().is_empty(), "check said nothing");
    let (serve_code, _, serve_err) = run(
        bin().args(["--config", &config]).envs(env.iter().copied()),
        Duration::from_secs(30),
    );
    assert_eq!(serve_code, 2, "serve: {serve_err}");
    // Serving also logs (`<timestamp>  INFO …`); its diagnostics are check's, line for line.
    let diagnostics: Vec<&str> = serve_err.lines().filter(|l| !is_log_line(l)).collect();
    assert_eq!(
        diagnostics,
        err.lines().collect::<Vec<_>>(),
        "serve and check differ:\n{serve_err}"
    );
    err
}

/// A line of the text log format: an RFC 3339 timestamp, then a level.
fn is_log_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or("");
    let level = words.next().unwrap_or("");
    stamp.starts_with(|c: char| c.is_ascii_digit())
        && stamp.ends_with('Z')
        && stamp.contains('T')
        && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

fn check_passes(dir: &Path, env: &[(&str, &str)]) -> String {
    let (code, out, err) = run(
        bin()
            .args(["check", "--config", &config_path(dir)])
            .envs(env.iter().copied()),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// The line of `err` for `key`, which must be at `line`:`column` of the config.
fn line_for<'a>(err: &'a str, dir: &Path, line: usize, column: usize, key: &str) -> &'a str {
    let prefix = format!("{}:{line}:{column}: {key}: ", config_path(dir));
    err.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no `{prefix}…` in:\n{err}"))
}

#[test]
fn a_missing_hook_secret_file_is_refused_by_both() {
    let dir = setup();
    check_passes(dir.path(), &[]);
    edit(dir.path(), |t| {
        format!("{t}hooks:\n  secret_file: secrets/hook-secret\n")
    });
    let err = both_refuse(dir.path(), &[]);
    let line = line_for(&err, dir.path(), 21, 16, "hooks.secret_file");
    assert!(
        line.contains("secrets/hook-secret") && line.contains("cannot read hooks.secret"),
        "{err}"
    );
    // With the file there and not empty, both accept it.
    std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
    write_file(&dir.path().join("secrets/hook-secret"), "s3cret\n");
    check_passes(dir.path(), &[]);
    // An empty one is refused again.
    write_file(&dir.path().join("secrets/hook-secret"), "\n");
    let err = both_refuse(dir.path(), &[]);
    assert!(err.contains("hooks.secret file is empty"), "{err}");
}

#[test]
fn an_unset_hook_secret_variable_and_admin_token_are_refused_by_both() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace(
            "  lookup_timeout: 2s\n",
            "  lookup_timeout: 2s\n  admin_token_file: admin-token\n",
        ) + "hooks:\n  secret_env: HOOK_SECRET_FOR_THIS_TEST\n"
    });
    let err = both_refuse(dir.path(), &[]);
    assert_eq!(err.lines().count(), 2, "{err}");
    line_for(&err, dir.path(), 11, 21, "upstream.admin_token_file");
    let line = line_for(&err, dir.path(), 22, 15, "hooks.secret_env");
    assert!(line.contains("HOOK_SECRET_FOR_THIS_TEST"), "{err}");
    write_file(&dir.path().join("admin-token"), "ory_pat_x\n");
    check_passes(dir.path(), &[("HOOK_SECRET_FOR_THIS_TEST", "s3cret")]);
}

#[test]
fn unreadable_or_broken_tls_files_are_refused_by_both() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace(
            "  public: 127.0.0.1:0\n",
            "  public:\n    address: 127.0.0.1:0\n    tls:\n      cert: tls/tls.crt\n      key: tls/tls.key\n",
        )
    });
    let err = both_refuse(dir.path(), &[]);
    let line = line_for(&err, dir.path(), 5, 13, "listen.public.tls.cert");
    assert!(line.contains("tls/tls.crt"), "{err}");

    // Present but not PEM.
    std::fs::create_dir(dir.path().join("tls")).expect("mkdir");
    write_file(&dir.path().join("tls/tls.crt"), "not a certificate\n");
    write_file(&dir.path().join("tls/tls.key"), "not a key\n");
    let err = both_refuse(dir.path(), &[]);
    assert!(err.contains("no PEM certificate found"), "{err}");

    // A certificate with another certificate's key.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let other = rcgen::KeyPair::generate().expect("key");
    write_file(&dir.path().join("tls/tls.crt"), &cert.cert.pem());
    write_file(&dir.path().join("tls/tls.key"), &other.serialize_pem());
    let err = both_refuse(dir.path(), &[]);
    line_for(&err, dir.path(), 5, 13, "listen.public.tls.cert");

    // The matching pair passes.
    write_file(
        &dir.path().join("tls/tls.key"),
        &cert.signing_key.serialize_pem(),
    );
    check_passes(dir.path(), &[]);
}

#[test]
fn an_unreadable_or_broken_upstream_ca_file_is_refused_by_both() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace(
            "  lookup_timeout: 2s\n",
            "  lookup_timeout: 2s\n  ca_file: kratos-ca.pem\n",
        )
    });
    let err = both_refuse(dir.path(), &[]);
    let line = line_for(&err, dir.path(), 11, 12, "upstream.ca_file");
    assert!(line.contains("kratos-ca.pem"), "{err}");
    write_file(
        &dir.path().join("kratos-ca.pem"),
        "-----BEGIN CERTIFICATE-----\nnope\n",
    );
    let err = both_refuse(dir.path(), &[]);
    line_for(&err, dir.path(), 11, 12, "upstream.ca_file");
    let ca = rcgen::generate_simple_self_signed(vec!["kratos".to_owned()]).expect("cert");
    write_file(&dir.path().join("kratos-ca.pem"), &ca.cert.pem());
    check_passes(dir.path(), &[]);
}

#[test]
fn two_listeners_on_one_address_are_refused_by_both() {
    let dir = setup();
    // The hook endpoint on the public listener's address.
    edit(dir.path(), |t| {
        t.replace(
            "  public: 127.0.0.1:0\n  admin: 127.0.0.1:0\n  ops: 127.0.0.1:0\n",
            "  public: 127.0.0.1:47455\n  admin: 127.0.0.1:47456\n  ops: 127.0.0.1:47457\n  hooks: 127.0.0.1:47455\n",
        )
    });
    let err = both_refuse(dir.path(), &[]);
    let line = line_for(&err, dir.path(), 5, 10, "listen.hooks");
    assert!(
        line.contains("`127.0.0.1:47455` is the address of listen.public too"),
        "{err}"
    );
    // A wildcard address takes the port on every address.
    edit(dir.path(), |t| {
        t.replace("  hooks: 127.0.0.1:47455\n", "")
            .replace("ops: 127.0.0.1:47457", "ops: 0.0.0.0:47456")
    });
    let err = both_refuse(dir.path(), &[]);
    line_for(&err, dir.path(), 4, 8, "listen.ops");
}

#[test]
fn every_bad_key_is_reported_in_one_run_with_key_value_and_position() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace("  response_timeout: 2s\n", "  response_timeout: soon\n")
            .replace(
                "  shutdown_grace: 5s\n",
                "  shutdown_grace: 5s\n  max_header_bytes: lots\n",
            )
            + "inspection:\n  body_limit_bytes: 100\n  sesion_cookie: x\n"
    });
    let err = both_refuse(dir.path(), &[]);
    assert_eq!(err.lines().count(), 4, "{err}");
    let timeout = line_for(&err, dir.path(), 9, 21, "upstream.response_timeout");
    assert!(timeout.contains("`soon` is not a duration"), "{err}");
    // A number: the key, the value and what is expected, not just "invalid u64".
    let bytes = line_for(&err, dir.path(), 17, 21, "server.max_header_bytes");
    assert!(
        bytes.ends_with("`lots` is not a whole number (0 to 18446744073709551615)"),
        "{err}"
    );
    let limit = line_for(&err, dir.path(), 22, 21, "inspection.body_limit_bytes");
    assert!(limit.ends_with("`100` must be at least 1024"), "{err}");
    let unknown = line_for(&err, dir.path(), 23, 3, "inspection.sesion_cookie");
    assert!(
        unknown.contains("unknown key `sesion_cookie`; expected one of")
            && unknown.contains("`session_cookie`"),
        "{err}"
    );
}

#[test]
fn a_missing_required_key_and_a_bad_one_beside_it_are_both_reported() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace("  ops: 127.0.0.1:0\n", "")
            .replace("  public: 127.0.0.1:0\n", "  public: 127.0.0.1:http\n")
    });
    let err = both_refuse(dir.path(), &[]);
    assert_eq!(err.lines().count(), 2, "{err}");
    let public = line_for(&err, dir.path(), 2, 11, "listen.public");
    assert!(
        public.contains("`127.0.0.1:http` is not an address"),
        "{err}"
    );
    let ops = line_for(&err, dir.path(), 1, 1, "listen.ops");
    assert!(ops.contains("missing required key `ops`"), "{err}");
}

#[test]
fn environment_overrides_apply_to_both_and_check_says_where_values_came_from() {
    let dir = setup();
    let out = check_passes(
        dir.path(),
        &[
            ("KRATOS_GATE_UPSTREAM_PUBLIC", "http://kratos.internal:4433"),
            ("KRATOS_GATE_REVOCATION_CONCURRENCY", "8"),
            (
                "KRATOS_GATE_FORWARDING_TRUSTED_PROXIES",
                "10.0.0.0/8,192.168.0.0/16",
            ),
        ],
    );
    assert!(
        out.contains(
            "upstream.public = http://kratos.internal:4433 (from $KRATOS_GATE_UPSTREAM_PUBLIC)\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("revocation.concurrency = 8 (from $KRATOS_GATE_REVOCATION_CONCURRENCY)\n"),
        "{out}"
    );
    assert!(
        out.contains("forwarding.trusted_proxies = [10.0.0.0/8, 192.168.0.0/16] (from $KRATOS_GATE_FORWARDING_TRUSTED_PROXIES)\n"),
        "{out}"
    );
    assert!(
        out.lines().last().unwrap_or("").starts_with("ok: "),
        "{out}"
    );

    // A bad override is refused by both, at the key it replaces, naming the variable.
    let err = both_refuse(
        dir.path(),
        &[
            ("KRATOS_GATE_UPSTREAM_PUBLIC", "ftp://kratos.internal"),
            ("KRATOS_GATE_REVOCATION_CONCURRENCY", "many"),
        ],
    );
    let line = line_for(&err, dir.path(), 6, 11, "upstream.public");
    assert!(
        line.contains("`ftp://kratos.internal` must start with http:// or https://")
            && line.ends_with("(from $KRATOS_GATE_UPSTREAM_PUBLIC)"),
        "{err}"
    );
    let line = line_for(&err, dir.path(), 1, 1, "revocation.concurrency");
    assert!(
        line.contains("`many` is not a whole number")
            && line.ends_with("(from $KRATOS_GATE_REVOCATION_CONCURRENCY)"),
        "{err}"
    );

    // The hook listener on the public address through the environment: refused by both.
    edit(dir.path(), |t| {
        t.replace("  public: 127.0.0.1:0\n", "  public: 127.0.0.1:47465\n")
    });
    let err = both_refuse(
        dir.path(),
        &[("KRATOS_GATE_LISTEN_HOOKS", "127.0.0.1:47465")],
    );
    let line = line_for(&err, dir.path(), 1, 1, "listen.hooks");
    assert!(line.ends_with("(from $KRATOS_GATE_LISTEN_HOOKS)"), "{err}");
}

#[test]
fn variable_references_apply_to_both_and_an_unset_one_is_an_error_at_its_value() {
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace(
            "  admin: http://127.0.0.1:4434\n",
            "  admin: http://${KRATOS_HOST}:${KRATOS_ADMIN_PORT:-4434}\n",
        )
    });
    let out = check_passes(dir.path(), &[("KRATOS_HOST", "kratos.internal")]);
    assert!(
        out.contains(&format!(
            "upstream.admin = http://kratos.internal:4434 (from `http://${{KRATOS_HOST}}:${{KRATOS_ADMIN_PORT:-4434}}` at {}:7:10)\n",
            config_path(dir.path())
        )),
        "{out}"
    );
    let err = both_refuse(dir.path(), &[]);
    assert_eq!(err.lines().count(), 1, "{err}");
    let line = line_for(&err, dir.path(), 7, 10, "upstream.admin");
    assert!(line.contains("${KRATOS_HOST} is not set"), "{err}");
}

/// A plain HTTP server on port 0 that answers every request with `body` (status 200).
fn serve_list(body: std::sync::Arc<std::sync::Mutex<String>>) -> String {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let text = body.lock().map(|b| b.clone()).unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    format!("http://{addr}/blocklist.yaml")
}

#[test]
fn a_remote_list_is_fetched_once_by_check_and_not_with_offline() {
    let body = std::sync::Arc::new(std::sync::Mutex::new(
        "identities:\n  - 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\n".to_owned(),
    ));
    let url = serve_list(body.clone());
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace("  path: blocklist.yaml\n", &format!("  url: {url}\n"))
            .replace("  poll_interval: 30s\n", "")
    });
    let out = check_passes(dir.path(), &[]);
    assert!(
        out.contains(&format!("blocklist {url}: 1 entries")),
        "{out}"
    );

    // A broken list: its own errors, at the URL's lines; serving refuses it the same way.
    *body.lock().expect("lock") = "identities:\n  - nope\n".to_owned();
    let err = both_refuse(dir.path(), &[]);
    assert!(
        err.starts_with(&format!("{url}:2:5: `nope` is not an identity id")),
        "{err}"
    );
    let config = config_path(dir.path());

    // --offline checks everything but the list itself.
    let (code, out, err) = run(
        bin().args(["check", "--offline", "--config", &config]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("blocklist {url}: not fetched (--offline)")),
        "{out}"
    );

    // A source that cannot be reached (and no cache to start from): both refuse it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let unreachable = format!("http://127.0.0.1:{port}/blocklist.yaml");
    edit(dir.path(), |t| t.replace(&url, &unreachable));
    let err = both_refuse(dir.path(), &[]);
    assert!(err.starts_with(&format!("{unreachable}:1:1: ")), "{err}");
    let (code, _, _) = run(
        bin().args(["check", "--offline", "--config", &config]),
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
}

/// The committed JSON Schema accepts a `${VAR}` reference in any value (editors do not flag a
/// config the gateway accepts), and still refuses what it refused.
#[test]
fn the_schema_accepts_references_where_values_are_expanded() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/gateway.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema");
    let dir = setup();
    edit(dir.path(), |t| {
        t.replace(
            "  public: http://127.0.0.1:4433\n",
            "  public: ${KRATOS_URL}\n",
        )
        .replace(
            "  debounce: 50ms\n",
            "  debounce: ${DEBOUNCE:-50ms}\n  mode: ${MODE:-enforce}\n",
        ) + "  concurrency: ${CONCURRENCY:-8}\nlog:\n  access: ${ACCESS_LOG:-false}\n"
    });
    let text = std::fs::read_to_string(dir.path().join("gateway.yaml")).expect("read");
    let value: serde_json::Value = serde_saphyr::from_str(&text).expect("YAML");
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let out = check_passes(dir.path(), &[("KRATOS_URL", "http://127.0.0.1:4433")]);
    assert!(
        out.contains("revocation.concurrency = 8 (from `${CONCURRENCY:-8}`"),
        "{out}"
    );
    let bad: serde_json::Value =
        serde_saphyr::from_str(&text.replace("${CONCURRENCY:-8}", "many")).expect("YAML");
    assert!(!validator.is_valid(&bad));
}

#[test]
fn a_missing_redis_password_file_is_refused_by_both() {
    let dir = setup();
    edit(dir.path(), |t| {
        format!("{t}throttle:\n  enabled: true\n  redis:\n    url: redis://127.0.0.1:6379\n    password_file: redis-password\n")
    });
    let err = both_refuse(dir.path(), &[]);
    let line = line_for(&err, dir.path(), 24, 20, "throttle.redis.password_file");
    assert!(line.contains("redis-password: cannot read"), "{err}");
    write_file(&dir.path().join("redis-password"), "pw\n");
    check_passes(dir.path(), &[]);
}

/// Serving applies an override too: the public listener is where the environment says, and
/// the start-up log says where the value came from.
#[test]
fn serving_listens_where_an_override_says_and_logs_where_it_came_from() {
    use std::io::BufRead;
    let dir = setup();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let public = format!("127.0.0.1:{port}");
    let mut child = bin()
        .args(["--config", &config_path(dir.path())])
        .env("KRATOS_GATE_LISTEN_PUBLIC", &public)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    while !log.contains("kratos-gate serving") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no start-up line:\n{log}");
            }
        }
    }
    let reachable = std::net::TcpStream::connect(&public).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        log.contains(&format!(
            "config: listen.public = {public} (from $KRATOS_GATE_LISTEN_PUBLIC)"
        )),
        "{log}"
    );
    assert!(log.contains(&format!("public={public}")), "{log}");
    assert!(reachable, "nothing listens on {public}");
}
