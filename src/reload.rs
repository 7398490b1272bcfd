//! Keeps the blocklist in force current: reloads it from its source on a folder watch,
//! SIGHUP and the poll ([`crate::refresh::Schedule`]), each on a thread of its own below the
//! request threads, and logs what every reload changed (the audit).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::blocklist::audit::{Audit, ChangeKind, AUDIT_INLINE};
use crate::blocklist::store::{BlocklistStore, ReloadOutcome};
use crate::blocklist::Changes;
use crate::diagnostic;
use crate::refresh::{Schedule, Trigger};
use crate::util::format_timestamp;

/// Called with what each successful reload changed (revoke-on-add hooks in here).
pub type ChangeListener = Arc<dyn Fn(&Changes) + Send + Sync>;

/// Reloads whenever `schedule` says so, until `shutdown` turns true.
pub async fn run_reloader(
    store: Arc<BlocklistStore>,
    mut schedule: Schedule,
    on_change: Option<ChangeListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some(trigger) = schedule.next(&mut shutdown).await {
        let started = Instant::now();
        let opened = store.source().open().await;
        // Reading the file and its changed region, diffing and the change listener (which
        // may queue a revocation per added id) all run off the async workers, so requests
        // keep being served meanwhile: first on a thread that runs only when the request
        // threads leave a core idle, and a whole parse on one that takes a larger share.
        let (s, listener) = (Arc::clone(&store), on_change.clone());
        let light = on_thread(INCREMENTAL_NICENESS, move || {
            match s.apply_incremental(opened, started) {
                Ok(outcome) => {
                    report(&s, trigger, outcome, listener.as_ref());
                    None
                }
                Err(content) => Some(content),
            }
        })
        .await;
        if let Some(Some(content)) = light {
            let (s, listener) = (Arc::clone(&store), on_change.clone());
            on_thread(RELOAD_NICENESS, move || {
                let outcome = s.apply(Ok(Some(content)), started);
                report(&s, trigger, outcome, listener.as_ref());
            })
            .await;
        }
        compact_in_background(&store);
    }
}

/// Folds a grown overlay into a new table on a thread of its own at the lowest priority,
/// not awaited: a million-id table takes hundreds of ms of CPU, which under load at nice 19
/// can stretch to many seconds, and the next reload must not wait for it (lookups are
/// exact with the overlay meanwhile; a fold overtaken by a reload is dropped and retried).
fn compact_in_background(store: &Arc<BlocklistStore>) {
    if !store.wants_compaction() {
        return;
    }
    let s = Arc::clone(store);
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let spawned = std::thread::Builder::new()
        .name("blocklist-compact".into())
        .spawn(move || {
            lower_this_threads_priority(INCREMENTAL_NICENESS);
            tracing::dispatcher::with_default(&dispatch, || s.compact());
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the blocklist compaction thread");
    }
}

/// Runs `work` on a new thread `niceness` steps below the calling one, logging through
/// the same subscriber; its result, or `None` (logged) when the thread failed.
async fn on_thread<T: Send + 'static>(
    niceness: i32,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("blocklist-reload".into())
        .spawn(move || {
            lower_this_threads_priority(niceness);
            let out = tracing::dispatcher::with_default(&dispatch, work);
            let _ = done_tx.send(out);
        });
    match spawned {
        Ok(_) => match done.await {
            Ok(out) => Some(out),
            Err(_) => {
                tracing::error!("blocklist reload thread failed");
                None
            }
        },
        Err(e) => {
            tracing::error!(error = %e, "could not start the blocklist reload thread");
            None
        }
    }
}

/// How far below the request threads a whole parse runs. Parsing a million-id file takes
/// about half a second of CPU; at equal priority it takes that from requests on a busy
/// machine and shows in their latency. Five steps lower (weight 335 against the request
/// threads' 1024) lets requests go first, while a whole parse still gets a quarter of a core
/// when the machine is saturated, so a list change is not held back for long by load.
const RELOAD_NICENESS: i32 = 5;

/// How far below the request threads the cheap part of a reload runs: reading the file,
/// and the changed region when that is all that needs parsing (tens of ms of CPU). At nice
/// 19 (weight 15 against 1024) it runs on a core the request threads leave idle, and still
/// gets about 1.4 % of a core that one request thread saturates: a 20 ms reload is in force
/// within about 1.5 s, and a change that needs a whole parse is handed on after the same.
const INCREMENTAL_NICENESS: i32 = 19;

/// Lowers the calling thread's priority by `by` steps, to nice 19 at most (Linux:
/// `setpriority` on a thread id affects that thread only, and an unprivileged thread cannot
/// raise it again). A failure only costs latency, so it is logged and ignored.
fn lower_this_threads_priority(by: i32) {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let result =
            getpriority_process(me).and_then(|now| setpriority_process(me, (now + by).min(19)));
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not lower the reload thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
}

fn report(
    store: &BlocklistStore,
    trigger: Trigger,
    outcome: ReloadOutcome,
    on_change: Option<&ChangeListener>,
) {
    let file = store.name();
    let source = trigger.as_str();
    match outcome {
        ReloadOutcome::Unchanged => {
            tracing::debug!(%file, trigger = source, "blocklist unchanged");
        }
        ReloadOutcome::Applied {
            changes,
            audit,
            entries,
            warnings,
            elapsed,
            incremental,
        } => {
            for w in &warnings {
                tracing::warn!(%file, "{w}");
            }
            log_audit(store, &file, source, &audit, entries, elapsed, incremental);
            if let Some(listener) = on_change {
                if !changes.is_empty() {
                    listener(&changes);
                }
            }
        }
        ReloadOutcome::Failed(errors) => {
            tracing::error!(
                %file,
                trigger = source,
                errors = %diagnostic::render(&errors).trim_end(),
                "blocklist reload failed; the last good list stays in force"
            );
        }
    }
}

/// The reload's audit: one info line with the checksums, the counts by kind and change, and
/// the changes themselves (all of them up to [`AUDIT_INLINE`]); then, at debug level, one
/// `blocklist_change` event per change, whatever their number.
fn log_audit(
    store: &BlocklistStore,
    file: &str,
    source: &'static str,
    audit: &Audit,
    entries: usize,
    elapsed: Duration,
    incremental: bool,
) {
    use ChangeKind::*;
    let in_force = store.entries_in_force();
    let n = |kind: &str, changes: &[ChangeKind]| {
        changes
            .iter()
            .map(|c| audit.count(kind, Some(*c)))
            .sum::<usize>()
    };
    let all = |changes: &[ChangeKind]| {
        ["identity", "email", "domain", "network"]
            .iter()
            .map(|k| n(k, changes))
            .sum::<usize>()
    };
    let total = audit.total();
    let mut listed: Vec<String> = audit
        .changes
        .iter()
        .take(AUDIT_INLINE)
        .map(ToString::to_string)
        .collect();
    if total > AUDIT_INLINE {
        listed.push(format!(
            "... and {} more (each one at debug level, event=blocklist_change)",
            total - AUDIT_INLINE
        ));
    }
    tracing::info!(
        target: "kratos_gate::audit",
        event = "blocklist_reloaded",
        file,
        trigger = source,
        sha256 = %audit.sha256,
        previous_sha256 = %audit.previous_sha256,
        entries,
        identities = in_force.identity,
        emails = in_force.email,
        domains = in_force.domain,
        networks = in_force.network,
        changed = total,
        added = all(&[Added, NowEnforced]),
        removed = all(&[Removed, NowReport]),
        extended = all(&[Extended]),
        shortened = all(&[Shortened]),
        mode_changed = all(&[NowEnforced, NowReport]),
        identities_added = n("identity", &[Added, NowEnforced]),
        identities_removed = n("identity", &[Removed, NowReport]),
        emails_added = n("email", &[Added, NowEnforced]),
        emails_removed = n("email", &[Removed, NowReport]),
        domains_added = n("domain", &[Added, NowEnforced]),
        domains_removed = n("domain", &[Removed, NowReport]),
        networks_added = n("network", &[Added, NowEnforced]),
        networks_removed = n("network", &[Removed, NowReport]),
        changes = %listed.join("; "),
        elapsed_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
        incremental,
        "blocklist reloaded"
    );
    if tracing::enabled!(target: "kratos_gate::audit", tracing::Level::DEBUG) {
        for c in &audit.changes {
            tracing::debug!(
                target: "kratos_gate::audit",
                event = "blocklist_change",
                sha256 = %audit.sha256,
                kind = c.kind,
                entry = %c.key,
                change = c.change.as_str(),
                until_before = c.until_before.map(format_timestamp),
                until_after = c.until_after.map(format_timestamp),
                "{c}"
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use rustix::process::{getpid, getpriority_process};
    use rustix::thread::gettid;

    #[test]
    fn the_reload_thread_runs_below_the_request_threads() {
        let (before, after, process) = std::thread::spawn(|| {
            let before = getpriority_process(Some(gettid())).unwrap();
            super::lower_this_threads_priority(super::RELOAD_NICENESS);
            let after = getpriority_process(Some(gettid())).unwrap();
            (before, after, getpriority_process(Some(getpid())).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(after, (before + super::RELOAD_NICENESS).min(19));
        // Only that thread: the main thread (whose id is the process id) keeps its priority.
        assert_eq!(process, before);
    }
}
