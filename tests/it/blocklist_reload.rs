//! The list in force follows the file: atomic renames, Kubernetes ConfigMap `..data` swaps,
//! explicit reloads; a broken file keeps the last good list; `until` lapses by itself.

use crate::support;

use support::metrics::metric;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use support::gateway::{
    blocklist_of, replace_atomically, start_gateway, start_gateway_with, write_file,
};

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";
const C: &str = "11111111-2222-4333-8444-555555555555";
const NOWHERE: &str = "http://127.0.0.1:9";

#[tokio::test]
async fn atomic_rename_is_in_force_within_a_second() {
    let gw = start_gateway(NOWHERE, NOWHERE, "").await;
    assert!(gw.gateway().blocklist().snapshot().is_empty());
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&[A]));
    assert!(
        gw.wait_for_listed(A, true, Duration::from_secs(1)).await,
        "not reloaded within 1 s"
    );
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&[B]));
    assert!(gw.wait_for_listed(B, true, Duration::from_secs(1)).await);
    assert!(gw.wait_for_listed(A, false, Duration::from_secs(1)).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn in_place_write_is_seen() {
    let gw = start_gateway(NOWHERE, NOWHERE, "").await;
    write_file(&gw.blocklist_path(), &blocklist_of(&[A]));
    assert!(gw.wait_for_listed(A, true, Duration::from_secs(1)).await);
    gw.shutdown().await;
}

/// What kubelet's AtomicWriter does on every ConfigMap update.
fn configmap_update(dir: &Path, round: u32, text: &str) {
    let new_dir = dir.join(format!("..2026_11_27_12_00_0{round}.000000{round}"));
    std::fs::create_dir(&new_dir).expect("mkdir");
    write_file(&new_dir.join("blocklist.yaml"), text);
    let tmp = dir.join("..data_tmp");
    symlink(new_dir.file_name().expect("name"), &tmp).expect("symlink");
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
    if let Some(old) = old {
        std::fs::remove_dir_all(dir.join(old)).expect("remove old");
    }
}

#[tokio::test]
async fn configmap_data_swap_three_times_in_a_row() {
    let cm = tempfile::tempdir().expect("tmp");
    configmap_update(cm.path(), 0, "");
    symlink("..data/blocklist.yaml", cm.path().join("blocklist.yaml")).expect("link");
    let path = cm.path().join("blocklist.yaml");
    let gw = start_gateway_with(NOWHERE, NOWHERE, "", |c| c.blocklist.path = path.clone()).await;
    for (round, id) in [(1, A), (2, B), (3, C)] {
        configmap_update(cm.path(), round, &blocklist_of(&[id]));
        assert!(
            gw.wait_for_listed(id, true, Duration::from_secs(1)).await,
            "round {round}: {id} not in force within 1 s"
        );
    }
    assert!(gw.gateway().blocklist().snapshot().lookup_str(A).is_none());
    gw.shutdown().await;
}

#[tokio::test]
async fn explicit_reload_rereads_the_file() {
    // What SIGHUP triggers: one re-read, here of an unchanged file.
    let gw = start_gateway(NOWHERE, NOWHERE, "").await;
    // Let the start-up check (a re-read right after the watch starts) finish first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics_before = gw.gateway().metrics().encode();
    gw.gateway().reload_blocklist();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics_after = gw.gateway().metrics().encode();
    let key = "kratos_gate_blocklist_reloads_total{result=\"unchanged\"}";
    assert_eq!(
        metric(&metrics_after, key),
        metric(&metrics_before, key) + 1.0,
        "{metrics_after}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn invalid_file_keeps_the_last_good_list_and_is_counted() {
    let gw = start_gateway(NOWHERE, NOWHERE, &blocklist_of(&[A])).await;
    replace_atomically(&gw.blocklist_path(), "identities:\n  - not-a-uuid\n");
    let failures = "kratos_gate_blocklist_reloads_total{result=\"failure\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while metric(&gw.gateway().metrics().encode(), failures) < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "failure not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        gw.gateway().blocklist().snapshot().lookup_str(A).is_some(),
        "last good list dropped"
    );
    // Deleting the file is a failure too; the list stays.
    std::fs::remove_file(gw.blocklist_path()).expect("rm");
    gw.gateway().reload_blocklist();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(gw.gateway().blocklist().snapshot().lookup_str(A).is_some());
    // And a good file afterwards is applied.
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&[B]));
    assert!(gw.wait_for_listed(B, true, Duration::from_secs(1)).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn until_lapses_without_a_reload() {
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let until = until
        .replace_nanosecond(0)
        .expect("ns")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("fmt");
    let text = format!("identities:\n  - id: {A}\n    until: {until}\n");
    let gw = start_gateway(NOWHERE, NOWHERE, &text).await;
    assert!(gw.gateway().blocklist().snapshot().lookup_str(A).is_some());
    let reloads_before = gw.gateway().metrics().encode();
    assert!(
        gw.wait_for_listed(A, false, Duration::from_secs(4)).await,
        "entry did not lapse"
    );
    let key = "kratos_gate_blocklist_reloads_total{result=\"success\"}";
    assert_eq!(
        metric(&gw.gateway().metrics().encode(), key),
        metric(&reloads_before, key)
    );
    gw.shutdown().await;
}

/// Ids that look like `n`-th test identities (valid version-4 UUIDs).
fn nth_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

#[tokio::test]
async fn a_file_truncated_in_place_keeps_the_list() {
    // `cat new > blocklist.yaml` truncates first; a reload in between must not unblock
    // everyone.
    let gw = start_gateway(NOWHERE, NOWHERE, &blocklist_of(&[A])).await;
    assert!(gw.wait_for_listed(A, true, Duration::from_secs(1)).await);
    let failures = "kratos_gate_blocklist_reloads_total{result=\"failure\"}";
    let before = metric(&gw.gateway().metrics().encode(), failures);
    std::fs::File::create(gw.blocklist_path()).expect("truncate in place");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        gw.gateway().blocklist().snapshot().lookup_str(A).is_some(),
        "an empty file emptied the list"
    );
    assert_eq!(
        metric(&gw.gateway().metrics().encode(), failures),
        before + 1.0
    );
    // The rest of the write arrives: applied as usual.
    std::fs::write(gw.blocklist_path(), blocklist_of(&[B])).expect("write in place");
    assert!(gw.wait_for_listed(B, true, Duration::from_secs(1)).await);
    assert!(gw.wait_for_listed(A, false, Duration::from_secs(1)).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_file_written_in_place_in_chunks_is_read_whole() {
    // A slow writer (a line every 10 ms, 320 ms in all; the debounce here is 200 ms, so that
    // a loaded machine does not stretch a pause past it): each prefix ending at a line is a valid,
    // shorter list. Reading one would unblock the ids after it until the next event.
    let ids: Vec<String> = (1..=30).map(nth_id).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let gw = start_gateway_with(NOWHERE, NOWHERE, &blocklist_of(&refs), |c| {
        c.blocklist.debounce = kratos_gate::config::HumanDuration(Duration::from_millis(200));
    })
    .await;
    let last = ids.last().expect("ids").clone();
    assert!(
        gw.wait_for_listed(&last, true, Duration::from_secs(1))
            .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut grown = refs.clone();
    grown.push(C);
    let text = blocklist_of(&grown);
    let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let path = gw.blocklist_path();
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut file = std::fs::File::create(&path).expect("truncate in place");
        for line in &lines {
            file.write_all(line.as_bytes()).expect("write");
            file.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    let store = gw.gateway().blocklist();
    let mut shortest = usize::MAX;
    while !writer.is_finished() {
        shortest = shortest.min(store.snapshot().len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.await.expect("writer");
    assert!(gw.wait_for_listed(C, true, Duration::from_secs(2)).await);
    for _ in 0..100 {
        shortest = shortest.min(store.snapshot().len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(
        shortest,
        ids.len(),
        "the list shrank while the file was being written"
    );
    assert_eq!(store.snapshot().len(), ids.len() + 1);
    gw.shutdown().await;
}

/// Waits for the reload audit line (`event=blocklist_reloaded`) number `n` (1-based).
async fn reload_audit(log: &support::logs::Captured, n: usize) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(e) = log.audit("blocklist_reloaded").into_iter().nth(n - 1) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no reload audit: {}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `blocklist_change` events, once there are at least `n`: each change is logged after
/// the reload's summary line, by the reload thread, which runs below the test's threads.
async fn change_events(log: &support::logs::Captured, n: usize) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        let each = log.audit("blocklist_change");
        if each.len() >= n || tokio::time::Instant::now() >= deadline {
            return each;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sha256_of(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).expect("text")[..64].to_owned()
}

/// Every change a reload makes is in its audit: ids, e-mails and domains added and removed,
/// mode changes and `until` changes, with counts by kind and the file's SHA-256 before and
/// after.
#[tokio::test]
async fn reload_audit_records_every_change_by_kind_with_the_checksum() {
    let (log, _guard) = support::logs::capture();
    let before = format!(
        "identities:\n  - {A}\n  - id: {C}\n    until: 2090-01-01T00:00:00Z\n\
         emails:\n  - gone@example.org\n  - email: later@example.org\n    until: 2090-01-01T00:00:00Z\n\
         email_domains:\n  - evil.example\n  - quiet.example\n"
    );
    let gw = start_gateway(NOWHERE, NOWHERE, &before).await;
    let old_sha = sha256_of(&gw.blocklist_path());
    let after = format!(
        "identities:\n  - {B}\n  - id: {C}\n    until: 2095-01-01T00:00:00Z\n\
         emails:\n  - new@example.org\n  - email: later@example.org\n    until: 2080-01-01T00:00:00Z\n\
         email_domains:\n  - domain: evil.example\n    mode: report\n  - fresh.example\n  - quiet.example\n"
    );
    replace_atomically(&gw.blocklist_path(), &after);
    let e = reload_audit(&log, 1).await;
    assert_eq!(e["message"], "blocklist reloaded");
    assert_eq!(e["sha256"], sha256_of(&gw.blocklist_path()), "{e}");
    assert_eq!(e["previous_sha256"], old_sha, "{e}");
    assert_eq!(e["identities_added"], 1, "{e}");
    assert_eq!(e["identities_removed"], 1, "{e}");
    assert_eq!(e["emails_added"], 1, "{e}");
    assert_eq!(e["emails_removed"], 1, "{e}");
    assert_eq!(e["domains_added"], 1, "{e}");
    assert_eq!(e["domains_removed"], 1, "{e}");
    assert_eq!(e["extended"], 1, "{e}");
    assert_eq!(e["shortened"], 1, "{e}");
    assert_eq!(e["mode_changed"], 1, "{e}");
    assert_eq!(e["changed"], 8, "{e}");
    assert_eq!(e["identities"], 2, "{e}");
    assert_eq!(e["emails"], 2, "{e}");
    assert_eq!(e["domains"], 2, "{e}");
    let changes = e["changes"].as_str().expect("changes");
    for expected in [
        format!("added identity {B}"),
        format!("removed identity {A}"),
        format!("until_extended identity {C} (until 2090-01-01T00:00:00Z -> 2095-01-01T00:00:00Z)"),
        "added email new@example.org".to_owned(),
        "removed email gone@example.org".to_owned(),
        "until_shortened email later@example.org (until 2090-01-01T00:00:00Z -> 2080-01-01T00:00:00Z)".to_owned(),
        "mode_report domain evil.example".to_owned(),
        "added domain fresh.example".to_owned(),
    ] {
        assert!(changes.contains(&expected), "{expected:?} not in {changes}");
    }
    assert!(!changes.contains("quiet.example"), "{changes}");
    // Each change is also an event of its own (debug level).
    let each = change_events(&log, 8).await;
    assert_eq!(each.len(), 8, "{each:?}");
    assert!(each.iter().any(|c| c["kind"] == "email"
        && c["entry"] == "new@example.org"
        && c["change"] == "added"));
    gw.shutdown().await;
}

/// What blocks nothing is recorded too: report-mode entries added and removed, a domain's
/// `until` moved, a reason or metadata changed.
#[tokio::test]
async fn reload_audit_records_report_mode_entries_domain_until_and_details() {
    let (log, _guard) = support::logs::capture();
    let before = format!(
        "identities:\n  - id: {A}\n    mode: report\n  - id: {C}\n    reason: first\n\
         email_domains:\n  - domain: evil.example\n    until: 2090-01-01T00:00:00Z\n"
    );
    let gw = start_gateway(NOWHERE, NOWHERE, &before).await;
    let after = format!(
        "identities:\n  - id: {B}\n    mode: report\n  - id: {C}\n    reason: second\n\
         email_domains:\n  - domain: evil.example\n    until: 2095-01-01T00:00:00Z\n"
    );
    replace_atomically(&gw.blocklist_path(), &after);
    let e = reload_audit(&log, 1).await;
    let changes = e["changes"].as_str().expect("changes");
    for expected in [
        format!("added_report identity {B}"),
        format!("removed_report identity {A}"),
        format!("details_changed identity {C}"),
        "until_extended domain evil.example (until 2090-01-01T00:00:00Z -> 2095-01-01T00:00:00Z)"
            .to_owned(),
    ] {
        assert!(changes.contains(&expected), "{expected:?} not in {changes}");
    }
    assert_eq!(change_events(&log, 4).await.len(), 4, "{}", log.text());
    gw.shutdown().await;
}

/// A large change is summarised in the info line (counts and the first changes); the full
/// list is at debug level, one event per change.
#[tokio::test]
async fn a_large_reload_is_summarised_with_every_change_at_debug_level() {
    let (log, _guard) = support::logs::capture();
    let gw = start_gateway(NOWHERE, NOWHERE, "").await;
    let ids: Vec<String> = (0..150)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut list = blocklist_of(&refs);
    list.push_str("emails:\n  - one@example.org\n");
    replace_atomically(&gw.blocklist_path(), &list);
    let e = reload_audit(&log, 1).await;
    assert_eq!(e["identities_added"], 150, "{e}");
    assert_eq!(e["emails_added"], 1, "{e}");
    assert_eq!(e["added"], 151, "{e}");
    let changes = e["changes"].as_str().expect("changes");
    assert!(changes.contains("and 131 more"), "{changes}");
    assert!(
        changes.len() < 4000,
        "the info line stays short: {}",
        changes.len()
    );
    let each = change_events(&log, 151).await;
    assert_eq!(each.len(), 151);
    for id in &ids {
        assert!(
            each.iter().any(|c| c["entry"] == id.as_str()),
            "{id} not logged"
        );
    }
    assert!(each.iter().any(|c| c["entry"] == "one@example.org"));
    gw.shutdown().await;
}

/// A one-line edit of a long list is read alone (`incremental: true` on the reload line) and
/// audited as a whole parse would be; a change to a section key is parsed whole.
#[tokio::test]
async fn a_one_line_edit_is_read_incrementally_and_audited_alike() {
    let (log, _guard) = support::logs::capture();
    let ids: Vec<String> = (1..=3000).map(nth_id).collect();
    let mut refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let gw = start_gateway(NOWHERE, NOWHERE, &blocklist_of(&refs)).await;
    let gone = nth_id(1501);
    refs[1500] = C;
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&refs));
    let e = reload_audit(&log, 1).await;
    assert_eq!(e["incremental"], true, "{e}");
    assert_eq!(e["sha256"], sha256_of(&gw.blocklist_path()), "{e}");
    assert_eq!(e["identities_added"], 1, "{e}");
    assert_eq!(e["identities_removed"], 1, "{e}");
    assert_eq!(e["identities"], 3000, "{e}");
    let changes = e["changes"].as_str().expect("changes");
    assert!(
        changes.contains(&format!("added identity {C}")),
        "{changes}"
    );
    assert!(
        changes.contains(&format!("removed identity {gone}")),
        "{changes}"
    );
    assert!(gw.wait_for_listed(C, true, Duration::from_secs(1)).await);
    assert!(
        gw.wait_for_listed(&gone, false, Duration::from_secs(1))
            .await
    );
    // A comment on the section key: the key's line changed, so the file is parsed whole.
    let text = blocklist_of(&refs).replace("identities:", "identities: # all of them");
    replace_atomically(&gw.blocklist_path(), &text);
    let e = reload_audit(&log, 2).await;
    assert_eq!(e["incremental"], false, "{e}");
    assert_eq!(e["changed"], 0, "{e}");
    gw.shutdown().await;
}
