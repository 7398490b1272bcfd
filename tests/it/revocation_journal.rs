//! `revocation.journal`: a revocation Kratos has not confirmed survives `kill -9` of the real
//! binary and is sent after the restart; one Kratos confirmed is not sent again.
//!
//! The revocation comes from revoke-on-add (an identity added to the blocklist). The restart
//! runs with that identity removed from the list again, so the only thing that can send its
//! `DELETE /admin/identities/{id}/sessions` after the restart is the journal.

use crate::support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kratos_gate::revocation::journal;
use support::fake_kratos::{fresh_uuid, FakeKratos, Side};
use support::gateway::{blocklist_of, config_text, replace_atomically, write_file};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(5);

/// A running `kratos-gate` process, killed (SIGKILL) if a test fails before it is.
struct Binary {
    child: Child,
    stderr: Arc<Mutex<String>>,
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
    /// Starts the binary with `dir/gateway.yaml` and waits until it serves (its blocklist
    /// watch is then in place).
    async fn start(dir: &Path) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kratos-gate"))
            .arg("--config")
            .arg(dir.join("gateway.yaml"))
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kratos-gate");
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
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
        let mut bin = Binary { child, stderr };
        let deadline = Instant::now() + WAIT;
        while !bin.stderr().contains("kratos-gate serving") {
            if let Some(status) = bin.child.try_wait().expect("try_wait") {
                panic!(
                    "kratos-gate exited at start-up with {status}:\n{}",
                    bin.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "not serving within {WAIT:?}:\n{}",
                bin.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bin
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The `requeued` count of the start-up line about the journal.
    fn requeued(&self) -> Option<u64> {
        self.stderr()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|e| e["requeued"].as_u64())
    }

    /// SIGTERM, and waits for the exit (a graceful shutdown).
    async fn terminate(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "{status}:\n{}", self.stderr());
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: no shutdown code runs.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

/// A folder with `gateway.yaml` (journal in `revocations/`) and an empty `blocklist.yaml`.
fn setup(fake: &FakeKratos) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}  journal: revocations\n",
        config_text(&fake.public_url(), &fake.admin_url())
    );
    assert!(text.contains("revocation:\n  initial_backoff"), "{text}");
    write_file(&dir.path().join("gateway.yaml"), &text);
    write_file(&dir.path().join("blocklist.yaml"), "identities: []\n");
    dir
}

fn journal_file(dir: &Path) -> PathBuf {
    dir.join("revocations").join(journal::FILE_NAME)
}

/// The targets the journal holds as pending.
fn pending(dir: &Path) -> Vec<String> {
    let bytes = std::fs::read(journal_file(dir)).unwrap_or_default();
    journal::replay(&bytes)
        .pending
        .iter()
        .map(|t| t.to_string())
        .collect()
}

fn identity_target(id: Uuid) -> String {
    kratos_gate::revocation::Target::IdentitySessions(id).to_string()
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ok() {
        assert!(Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn path_of(id: Uuid) -> String {
    format!("/admin/identities/{id}/sessions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_revocation_survives_kill_9_and_is_sent_after_the_restart() {
    let fake = FakeKratos::start().await;
    let id = fresh_uuid();
    let dir = setup(&fake);
    // The admin API fails every call: the revocation stays pending, retrying.
    fake.set_admin_failures(usize::MAX / 2);
    let bin = Binary::start(dir.path()).await;
    assert_eq!(bin.requeued(), Some(0), "{}", bin.stderr());
    replace_atomically(
        &dir.path().join("blocklist.yaml"),
        &blocklist_of(&[&id.to_string()]),
    );
    fake.wait_for_call(Side::Admin, "DELETE", &path_of(id), WAIT)
        .await
        .expect("revoke-on-add tried the revocation");
    wait_until("the journal holds the revocation", || {
        pending(dir.path()) == [identity_target(id)]
    })
    .await;
    bin.kill_9();

    // Kratos is back; the identity is no longer listed, so revoke-on-add cannot send it.
    fake.set_admin_failures(0);
    fake.clear_calls();
    replace_atomically(&dir.path().join("blocklist.yaml"), "identities: []\n");
    let bin = Binary::start(dir.path()).await;
    assert_eq!(bin.requeued(), Some(1), "{}", bin.stderr());
    fake.wait_for_call(Side::Admin, "DELETE", &path_of(id), WAIT)
        .await
        .unwrap_or_else(|| panic!("revocation not sent after the restart:\n{}", bin.stderr()));
    // Confirmed: no longer pending in the journal.
    wait_until("the journal records the confirmation", || {
        pending(dir.path()).is_empty()
    })
    .await;
    bin.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_keeps_the_unconfirmed_revocation_for_the_next_start() {
    let fake = FakeKratos::start().await;
    let id = fresh_uuid();
    let dir = setup(&fake);
    fake.set_admin_failures(usize::MAX / 2);
    let bin = Binary::start(dir.path()).await;
    replace_atomically(
        &dir.path().join("blocklist.yaml"),
        &blocklist_of(&[&id.to_string()]),
    );
    fake.wait_for_call(Side::Admin, "DELETE", &path_of(id), WAIT)
        .await
        .expect("revoke-on-add tried the revocation");
    bin.terminate().await;
    assert_eq!(pending(dir.path()), [identity_target(id)]);

    fake.set_admin_failures(0);
    fake.clear_calls();
    replace_atomically(&dir.path().join("blocklist.yaml"), "identities: []\n");
    let bin = Binary::start(dir.path()).await;
    assert_eq!(bin.requeued(), Some(1), "{}", bin.stderr());
    fake.wait_for_call(Side::Admin, "DELETE", &path_of(id), WAIT)
        .await
        .unwrap_or_else(|| panic!("revocation not sent after the restart:\n{}", bin.stderr()));
    bin.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_revocation_is_not_sent_again_after_a_restart() {
    let fake = FakeKratos::start().await;
    let id = fresh_uuid();
    let dir = setup(&fake);
    let bin = Binary::start(dir.path()).await;
    replace_atomically(
        &dir.path().join("blocklist.yaml"),
        &blocklist_of(&[&id.to_string()]),
    );
    fake.wait_for_call(Side::Admin, "DELETE", &path_of(id), WAIT)
        .await
        .expect("revoke-on-add sent the revocation");
    // Both lines are written: `+` then `-`.
    wait_until("the journal records the confirmation", || {
        let text = std::fs::read_to_string(journal_file(dir.path())).unwrap_or_default();
        text.contains(&format!("- identity {id}\n"))
    })
    .await;
    assert!(pending(dir.path()).is_empty());
    bin.kill_9();

    fake.clear_calls();
    replace_atomically(&dir.path().join("blocklist.yaml"), "identities: []\n");
    let bin = Binary::start(dir.path()).await;
    assert_eq!(bin.requeued(), Some(0), "{}", bin.stderr());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fake.calls_matching(Side::Admin, "DELETE", "/admin/")
            .is_empty(),
        "{:?}",
        fake.calls_matching(Side::Admin, "DELETE", "/admin/")
    );
    // Start-up compacted the journal to nothing pending.
    assert_eq!(
        std::fs::read_to_string(journal_file(dir.path())).expect("journal"),
        "# kratos-gate revocation journal v1\n"
    );
    bin.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_directory_that_cannot_be_created_stops_the_start() {
    let fake = FakeKratos::start().await;
    let dir = setup(&fake);
    // A file where the directory should be.
    write_file(&dir.path().join("revocations"), "not a directory");
    let child = Command::new(env!("CARGO_BIN_EXE_kratos-gate"))
        .arg("--config")
        .arg(dir.path().join("gateway.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kratos-gate");
    // Killed by the guard if it serves instead of exiting.
    let mut bin = Binary {
        child,
        stderr: Arc::new(Mutex::new(String::new())),
    };
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = bin.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "still running after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = bin.child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    // Found by the validation `check` shares: exit 2, before anything is bound.
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("revocation.journal: ")
            && stderr.contains("revocations is not a directory"),
        "{stderr}"
    );
}
