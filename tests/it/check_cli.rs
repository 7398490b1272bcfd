//! `kratos-gate check` and start-up validation: exit codes and file:line:column messages.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};

use support::gateway::{config_text, write_file};

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kratos-gate"));
    // The layout the suite may be run in (.ci/run) would add a provenance line to `check`.
    cmd.env_remove("KRATOS_GATE_SERVER_RUNTIME");
    cmd
}

fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run kratos-gate");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn setup(blocklist: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    write_file(
        &dir.path().join("gateway.yaml"),
        &config_text("http://127.0.0.1:4433", "http://127.0.0.1:4434"),
    );
    write_file(&dir.path().join("blocklist.yaml"), blocklist);
    dir
}

fn config(dir: &Path) -> String {
    dir.join("gateway.yaml").display().to_string()
}

#[test]
fn check_prints_a_summary_and_exits_0() {
    let dir = setup(&format!(
        "identities:\n  - {A}\n  - id: {B}\n    reason: fraud\n    until: 2999-01-01T00:00:00Z\n"
    ));
    let (code, out, _) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("2 entries, 1 expiring"), "{out}");
}

#[test]
fn check_reports_every_blocklist_error_with_position_and_exits_2() {
    let dir = setup("identities:\n  - not-a-uuid\n  - id: 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\n    until: next week\n");
    let (code, _, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 2, "{err}");
    let file = dir.path().join("blocklist.yaml").display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines[0].starts_with(&format!("{file}:2:5: ")), "{err}");
    assert!(lines[1].starts_with(&format!("{file}:4:12: ")), "{err}");
}

#[test]
fn check_reports_config_errors_with_position() {
    let dir = setup("");
    let text = config_text("http://127.0.0.1:4433", "http://127.0.0.1:4434")
        .replace("response_timeout: 2s", "response_timeout: 2s\n  retries: 3");
    write_file(&dir.path().join("gateway.yaml"), &text);
    let (code, _, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:10:3: upstream.retries: unknown key `retries`; expected one of `public`, `admin`,",
            config(dir.path())
        )),
        "{err}"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (code, _, err) = run(bin().args(["check", "--config", "/nonexistent/gateway.yaml"]));
    assert_eq!(code, 2);
    assert!(
        err.contains("/nonexistent/gateway.yaml") && err.contains("cannot read config"),
        "{err}"
    );
}

#[test]
fn config_path_from_environment() {
    let dir = setup(&format!("identities: [{A}]\n"));
    let (code, out, err) = run(bin()
        .arg("check")
        .env("KRATOS_GATE_CONFIG", config(dir.path())));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 entries"), "{out}");
}

#[test]
fn serving_with_an_invalid_blocklist_exits_2_before_binding() {
    // Hold the public port: a gateway that bound before validating would fail with a bind
    // error (exit 1) instead of the blocklist error.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port();
    let dir = setup("identities:\n  - nope\n");
    let text = config_text("http://127.0.0.1:4433", "http://127.0.0.1:4434")
        .replace("public: 127.0.0.1:0", &format!("public: 127.0.0.1:{port}"));
    write_file(&dir.path().join("gateway.yaml"), &text);
    let (code, _, err) = run(bin().args(["--config", &config(dir.path())]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("blocklist.yaml:2:5: `nope` is not an identity id"),
        "{err}"
    );
}

#[test]
fn shipped_examples_pass_check() {
    let root = env!("CARGO_MANIFEST_DIR");
    let (code, out, err) = run(bin().args(["check", "--config", &format!("{root}/gateway.yaml")]));
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn duplicate_ids_are_warnings_not_errors() {
    let dir = setup(&format!("identities:\n  - {A}\n  - {A}\n"));
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(":3:5: identity") && err.contains("listed twice"),
        "{err}"
    );
    assert!(out.contains("1 warnings"), "{out}");
}

#[test]
fn blocklist_alone_can_be_linted() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("candidate.yaml");
    write_file(
        &path,
        &format!("identities:\n  - {A}\nemails:\n  - a@b.example\nemail_domains:\n  - c.example\n"),
    );
    let (code, out, err) = run(bin().args(["check", "--blocklist", &path.display().to_string()]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 entries"), "{out}");
    write_file(&path, "emails:\n  - not-an-address\n");
    let (code, _, err) = run(bin().args(["check", "--blocklist", &path.display().to_string()]));
    assert_eq!(code, 2);
    assert!(
        err.starts_with(&format!(
            "{}:2:5: `not-an-address` is not an e-mail address",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn lint_warns_about_expired_and_redundant_entries() {
    let dir = setup(&format!(
        "identities:\n  - id: {A}\n    until: 2001-01-01T00:00:00Z\nemails:\n  - x@evil.example\nemail_domains:\n  - evil.example\n"
    ));
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 expired, 2 warnings"), "{out}");
    assert!(
        err.contains(":2:5: entry expired at 2001-01-01T00:00:00Z"),
        "{err}"
    );
    assert!(
        err.contains(":5:5: x@evil.example is already covered by the domain evil.example"),
        "{err}"
    );
}

#[test]
fn a_blocklist_path_pointing_at_something_huge_is_refused_not_read() {
    // A path set to a log or a disk image by mistake: refused by size (the file is sparse,
    // so the test costs no disk), before a byte of it is held in memory.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(kratos_gate::blocklist::source::MAX_BLOCKLIST_BYTES + 1)
        .expect("sparse file");
    let (code, _, err) = run(bin().args(["check", "--blocklist", &path.display().to_string()]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:1:1: the file is larger than 256 MiB, the most a blocklist may be",
            path.display()
        )),
        "{err}"
    );
}

#[test]
fn check_warns_about_mode_conflicts_and_names_the_enforced_entry() {
    let dir = setup(&format!(
        "identities:\n  - id: {A}\n    mode: report\n  - {A}\nemails:\n  - email: x@evil.example\n    mode: report\nemail_domains:\n  - evil.example\n"
    ));
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 warnings"), "{out}");
    let file = dir.path().join("blocklist.yaml").display().to_string();
    assert!(
        err.contains(&format!("{file}:4:5: identity {A} is listed twice (first at line 2), once with `mode: report` and once enforced; the enforced entry applies (warning)")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{file}:6:5: x@evil.example is listed with `mode: report`, but the domain evil.example (line 9) is enforced; the enforced entry applies (warning)")),
        "{err}"
    );
    assert!(!err.contains("longer block"), "{err}");
}

#[test]
fn check_accepts_unicode_and_punycode_domains_as_one_entry() {
    let dir = setup("email_domains:\n  - Bücher.example\n  - xn--bcher-kva.example\nemails:\n  - anna@BÜCHER.example\n");
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 entries"), "{out}");
    assert!(
        err.contains(":3:5: domain xn--bcher-kva.example is listed twice (first at line 2)"),
        "{err}"
    );
    assert!(
        err.contains(":5:5: anna@xn--bcher-kva.example is already covered by the domain xn--bcher-kva.example"),
        "{err}"
    );
}

#[test]
fn check_refuses_an_invalid_idn_with_its_position() {
    let dir = setup("email_domains:\n  - good.example\n  - xn--zz.example\n");
    let (code, _, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 2, "{err}");
    let file = dir.path().join("blocklist.yaml").display().to_string();
    assert!(
        err.starts_with(&format!("{file}:3:5: `xn--zz.example` is not a domain: its domain is not a valid internationalised domain name")),
        "{err}"
    );
}

#[test]
fn check_refuses_public_suffixes_as_domain_entries() {
    let dir = setup("email_domains:\n  - com\n  - throwaway.example\n  - domain: co.uk\n    reason: typo for evil.co.uk\n");
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 2, "{out}{err}");
    let file = dir.path().join("blocklist.yaml").display().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines,
        [
            format!("{file}:2:5: email_domains entry `com` is a public suffix: it would block every address under it (list the domains under it instead)"),
            format!("{file}:4:13: email_domains entry `co.uk` is a public suffix: it would block every address under it (list the domains under it instead)"),
        ],
        "{err}"
    );
    // The same with the blocklist alone, and a normal domain under a suffix passes.
    let path = dir.path().join("blocklist.yaml").display().to_string();
    let (code, _, err) = run(bin().args(["check", "--blocklist", &path]));
    assert_eq!(code, 2, "{err}");
    write_file(
        &dir.path().join("blocklist.yaml"),
        "email_domains:\n  - evil.co.uk\n  - throwaway.example\n",
    );
    let (code, out, err) = run(bin().args(["check", "--config", &config(dir.path())]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("2 entries"), "{out}");
}
