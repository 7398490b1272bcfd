//! `kratos-gate block | unblock | lookup | diff` on the real binary: line-exact edits of a
//! commented file, atomic refusal of broken results, metadata, lookup order and exit codes,
//! diff, and lookup through Kratos's admin API (the in-process fake Kratos).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::fake_kratos::FakeKratos;
use support::gateway::{config_text, write_file};
use uuid::Uuid;

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

/// A file as ops write it: comments everywhere, odd spacing, one-line maps, flow maps.
const COMMENTED: &str = "\
# The blocklist. Owner: trust & safety.
---
identities:   # ids first
  # bare id, with a trailing comment
  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59     # OPS-7
  - {id: 0f4b1a5e-3c2d-4e6f-8a9b-1c2d3e4f5a6b, mode: report}   # trying it

  # the end of identities
emails:
  - spammer@example.com
  - email:   fraud@example.org
    reason:  'chargeback'
email_domains:
  - throwaway.example   # and sub-domains
# last words
";

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kratos-gate"));
    cmd.env_remove("KRATOS_GATE_CONFIG");
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

fn list_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("blocklist.yaml");
    write_file(&path, text);
    (dir, path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read")
}

fn on(path: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = bin();
    cmd.args(args).arg("--blocklist").arg(path);
    run(&mut cmd)
}

/// `new` is `old` with `inserted` lines at (0-based) line `at`: every other line identical.
fn assert_only_inserted(old: &str, new: &str, at: usize, inserted: &[&str]) {
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let new_lines: Vec<&str> = new.split_inclusive('\n').collect();
    assert_eq!(new_lines.len(), old_lines.len() + inserted.len(), "{new}");
    for (i, line) in old_lines.iter().enumerate() {
        let j = if i < at { i } else { i + inserted.len() };
        assert_eq!(new_lines[j], *line, "line {} changed:\n{new}", i + 1);
    }
    for (k, want) in inserted.iter().enumerate() {
        assert_eq!(new_lines[at + k].trim_end_matches('\n'), *want, "{new}");
    }
}

fn check_ok(path: &Path) -> String {
    let (code, out, err) = run(bin().arg("check").arg("--blocklist").arg(path));
    assert_eq!(code, 0, "check: {out}{err}");
    out
}

#[test]
fn block_and_unblock_round_trip_a_commented_file_byte_exact() {
    let (_dir, path) = list_file(COMMENTED);
    let (code, out, err) = on(
        &path,
        &[
            "block",
            A,
            "--reason",
            "account takeover",
            "--meta",
            "ticket=OPS-1",
            "--meta",
            "added_by=alice",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let after = read(&path);
    // After the last identity item, before the blank line and the comment that follow it.
    assert_only_inserted(
        COMMENTED,
        &after,
        6,
        &[
            &format!("  - id: {A}"),
            "    reason: account takeover",
            "    ticket: OPS-1",
            "    added_by: alice",
        ],
    );
    check_ok(&path);

    let (code, out, err) = on(&path, &["block", "NEW@Evil.Example"]);
    assert_eq!(code, 0, "{out}{err}");
    let after2 = read(&path);
    assert_only_inserted(&after, &after2, 16, &["  - NEW@Evil.Example"]);

    // Unblock in another spelling each: back to the original bytes.
    let (code, out, err) = on(&path, &["unblock", "new@evil.example"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = on(&path, &["unblock", &A.to_uppercase()]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&path), COMMENTED);
}

#[test]
fn unblock_removes_every_spelling_and_only_those_lines() {
    let text = "email_domains:\n  - Bücher.example   # unicode\n  - other.example\n  - domain: XN--BCHER-KVA.example.\n    reason: dup\n# end\n";
    let (_dir, path) = list_file(text);
    let (code, out, err) = on(&path, &["unblock", "bücher.EXAMPLE"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(read(&path), "email_domains:\n  - other.example\n# end\n");
    // Not listed (any more): exit 1, untouched.
    let before = read(&path);
    let (code, _, err) = on(&path, &["unblock", "xn--bcher-kva.example"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(read(&path), before);
}

#[test]
fn a_broken_edit_leaves_the_file_untouched_and_exits_2() {
    let (_dir, path) = list_file(COMMENTED);
    let (code, out, err) = on(&path, &["block", A, "--until", "notadate"]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("is not an RFC 3339 timestamp"), "{err}");
    assert!(err.contains("unchanged"), "{err}");
    assert_eq!(read(&path), COMMENTED);
    // A public suffix, and something that is no id, address or domain.
    for arg in ["co.uk", "not a domain"] {
        let (code, _, err) = on(&path, &["block", arg]);
        assert_eq!(code, 2, "{arg}: {err}");
        assert_eq!(read(&path), COMMENTED);
    }
    // A file that is already broken is not edited.
    let broken = "identities:\n  - not-a-uuid\n";
    write_file(&path, broken);
    for args in [vec!["block", A], vec!["unblock", A]] {
        let (code, _, err) = on(&path, &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(":2:5:"), "{err}");
        assert!(err.contains("not a valid blocklist"), "{err}");
        assert_eq!(read(&path), broken);
    }
    // No temporary file is left behind.
    let names: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn block_creates_a_missing_section_and_updates_an_entry_in_place() {
    let text = "# only ids\nidentities:\n- 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";
    let (_dir, path) = list_file(text);
    let (code, out, err) = on(&path, &["block", "evil.example", "--mode", "report"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        read(&path),
        format!("{text}\nemail_domains:\n- domain: evil.example\n  mode: report\n")
    );
    // Updating keeps its place, its spelling and its other fields; `--mode enforce` drops the mode line.
    let (code, _, _) = on(&path, &["block", "Evil.Example", "--reason", "spam wave"]);
    assert_eq!(code, 0);
    let (code, _, _) = on(&path, &["block", "evil.example", "--mode", "enforce"]);
    assert_eq!(code, 0);
    assert_eq!(
        read(&path),
        format!("{text}\nemail_domains:\n- domain: evil.example\n  reason: spam wave\n")
    );
    // The same again: nothing to change.
    let before = read(&path);
    let (code, out, _) = on(&path, &["block", "evil.example", "--reason", "spam wave"]);
    assert_eq!(code, 0);
    assert!(out.contains("unchanged"), "{out}");
    assert_eq!(read(&path), before);
    check_ok(&path);
}

#[test]
fn metadata_shows_in_lookup_and_check_accepts_it() {
    let text = format!(
        "identities:\n  - id: {A}\n    reason: fraud\n    ticket: OPS-9\n    meta:\n      team: risk\n      case: \"42\"\n"
    );
    let (_dir, path) = list_file(&text);
    check_ok(&path);
    let (code, out, err) = on(
        &path,
        &[
            "block",
            B,
            "--meta",
            "note=called twice",
            "--meta",
            "region=eu",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(read(&path).ends_with(&format!(
        "  - id: {B}\n    note: called twice\n    meta:\n      region: eu\n"
    )));
    check_ok(&path);
    let (code, out, _) = on(&path, &["lookup", A]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reason=fraud meta=ticket=OPS-9,team=risk,case=42"),
        "{out}"
    );
    assert!(
        out.contains("blocklist.yaml:2: identity mode=enforce"),
        "{out}"
    );
    let (code, out, _) = on(&path, &["lookup", B]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("meta=note=called twice,region=eu"), "{out}");
}

#[test]
fn lookup_lists_matches_strictest_first_with_exit_codes() {
    let text = "\
emails:
  - email: a@x.evil.example
    mode: report
    reason: first look
email_domains:
  - domain: evil.example
    until: 2999-01-01T00:00:00Z
  - domain: x.evil.example
    ticket: OPS-3
  - domain: old.example
    until: 2001-01-01T00:00:00Z
";
    let (_dir, path) = list_file(text);
    let (code, out, err) = on(&path, &["lookup", "A@X.Evil.Example"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains(":8: email_domain:x.evil.example mode=enforce until=forever"),
        "{out}"
    );
    assert!(
        lines[1].contains(":6: email_domain:evil.example mode=enforce until=2999-01-01T00:00:00Z"),
        "{out}"
    );
    assert!(
        lines[2].contains(":2: email:a@x.evil.example mode=report"),
        "{out}"
    );
    assert!(
        lines[3].starts_with("listed: enforce by email_domain:x.evil.example"),
        "{out}"
    );
    // Only an expired entry: shown, but not listed.
    let (code, out, _) = on(&path, &["lookup", "b@old.example"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("(expired)"), "{out}");
    assert!(out.contains("not listed"), "{out}");
    let (code, out, _) = on(&path, &["lookup", "nobody@else.example"]);
    assert_eq!(code, 1, "{out}");
    let (code, out, _) = on(&path, &["lookup", A]);
    assert_eq!(code, 1, "{out}");
    // Only report mode: in force, so listed.
    write_file(&path, "emails:\n  - {email: r@y.example, mode: report}\n");
    let (code, out, _) = on(&path, &["lookup", "R@y.example"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("listed: report by email:r@y.example"), "{out}");
}

#[test]
fn diff_shows_added_removed_changed_by_section() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    write_file(
        &old,
        &format!("identities:\n  - {A}\n  - {B}\nemails:\n  - a@b.example\n"),
    );
    write_file(
        &new,
        &format!(
            "# reordered, respelled\nidentities:\n  - {}\n  - id: {B}\n    until: 2999-01-01T00:00:00Z\n    ticket: T-1\nemail_domains:\n  - evil.example\n",
            A.to_uppercase()
        ),
    );
    let (code, out, err) = run(bin().arg("diff").arg(&old).arg(&new));
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "identities:", "{out}");
    assert!(lines[1].starts_with(&format!("~ {B} (")), "{out}");
    assert!(
        lines[1].ends_with("until: forever -> 2999-01-01T00:00:00Z; meta: - -> ticket=T-1"),
        "{out}"
    );
    assert_eq!(lines[2], "emails:", "{out}");
    assert!(lines[3].starts_with("- a@b.example ("), "{out}");
    assert_eq!(lines[4], "email_domains:", "{out}");
    assert!(lines[5].starts_with("+ evil.example ("), "{out}");
    assert_eq!(lines[6], "1 added, 1 removed, 1 changed", "{out}");
    let (code, out, _) = run(bin().arg("diff").arg(&old).arg(&old));
    assert_eq!(code, 0, "{out}");
    write_file(&new, "identities:\n  - nope\n");
    let (code, _, err) = run(bin().arg("diff").arg(&old).arg(&new));
    assert_eq!(code, 2, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_with_config_asks_kratos_for_the_identitys_addresses() {
    let kratos = FakeKratos::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("gateway.yaml");
    write_file(
        &config,
        &config_text(&kratos.public_url(), &kratos.admin_url()),
    );
    write_file(
        &dir.path().join("blocklist.yaml"),
        "email_domains:\n  - domain: evil.example\n    ticket: OPS-5\n",
    );
    let listed = Uuid::new_v4();
    let clean = Uuid::new_v4();
    kratos.add_identity(listed, Some("victim@evil.example"));
    kratos.add_identity(clean, Some("someone@good.example"));
    let lookup = |arg: String| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            run(bin().arg("lookup").arg(&arg).arg("--config").arg(&config))
        })
    };
    let (code, out, err) = lookup(listed.to_string()).await.expect("join");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "email_domain:evil.example via address victim@evil.example of identity {listed} mode=enforce"
        )),
        "{out}"
    );
    assert!(out.contains("meta=ticket=OPS-5"), "{out}");
    let (code, out, err) = lookup(clean.to_string()).await.expect("join");
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("someone@good.example"), "{out}");
    // By address: Kratos's identity for it, and that identity's id.
    write_file(
        &dir.path().join("blocklist.yaml"),
        &format!("identities:\n  - {{id: {clean}, reason: linked account}}\n"),
    );
    let (code, out, err) = lookup("Someone@Good.Example".to_owned())
        .await
        .expect("join");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("identity via identity {clean}")),
        "{out}"
    );
    // --blocklist with --config: the list from the one, Kratos from the other.
    let other = dir.path().join("candidate.yaml");
    write_file(&other, "emails:\n  - someone@good.example\n");
    let (config2, other2) = (config.clone(), other.clone());
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        run(bin()
            .arg("lookup")
            .arg(clean.to_string())
            .arg("--blocklist")
            .arg(&other2)
            .arg("--config")
            .arg(&config2))
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("candidate.yaml:2: email:someone@good.example via address"),
        "{out}"
    );
    // Without Kratos (--offline), the address alone matches nothing.
    let config2 = config.clone();
    let (code, out, _) = tokio::task::spawn_blocking(move || {
        run(bin()
            .args(["lookup", "someone@good.example", "--offline", "--config"])
            .arg(&config2))
    })
    .await
    .expect("join");
    assert_eq!(code, 1, "{out}");
}

#[tokio::test]
async fn metadata_is_in_the_audit_event_and_never_in_the_answer() {
    use support::client::post_json;
    use support::fake_kratos::{fresh_token, fresh_uuid, Reply};
    use support::fixtures::native_login_body;
    use support::gateway::start_gateway;
    use support::logs;

    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, native_login_body(identity, session, &token)),
    );
    let list = format!(
        "identities:\n  - id: {identity}\n    reason: fraud\n    ticket: OPS-1\n    added_by: alice\n    meta:\n      team: risk-desk\n"
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), &list).await;
    let reply = post_json(&gw.public_url("/self-service/login?flow=1"), "{}").await;
    assert_eq!(reply.status, 403);
    let text = reply.text();
    for secret in ["OPS-1", "alice", "risk-desk", "fraud"] {
        assert!(
            !text.contains(secret),
            "{secret} sent to the client: {text}"
        );
    }
    let events = logs.audit("blocked");
    assert_eq!(events.len(), 1, "{}", logs.text());
    assert_eq!(
        events[0]["meta"],
        "ticket=OPS-1,added_by=alice,team=risk-desk"
    );
    assert_eq!(events[0]["reason"], "fraud");
    gw.shutdown().await;
}
