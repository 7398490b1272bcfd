//! Keeps the blocklist snapshot current: initial load, then reloads on a directory watch,
//! SIGHUP and a checksum poll. A file that fails to load leaves the last good list in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};

use crate::blocklist::{unix_now, Blocklist, Changes};
use crate::diagnostic::{self, Diagnostic};
use crate::metrics::{Metrics, ReloadResult};

/// The blocklist in force, swapped whole on every successful reload. Readers never lock.
pub struct BlocklistStore {
    current: ArcSwap<Blocklist>,
    path: PathBuf,
    metrics: Arc<Metrics>,
    /// Serialises reloads (watch, poll and SIGHUP may fire together); readers never take it.
    reload_lock: Mutex<()>,
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied {
        changes: Changes,
        entries: usize,
        warnings: Vec<Diagnostic>,
        /// From reading the file to the new list being in force.
        elapsed: Duration,
    },
    Failed(Vec<Diagnostic>),
}

/// Reads and parses a blocklist file.
pub fn read_blocklist(path: &Path) -> Result<crate::blocklist::Parsed, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let bytes = read_file(path).map_err(|m| vec![Diagnostic::whole_file(&name, m)])?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        vec![Diagnostic::whole_file(
            &name,
            format!("not UTF-8 text: {e}"),
        )]
    })?;
    Blocklist::parse(text, &name)
}

/// Reads the file once it has not been modified for `quiet`, and checks that it did not
/// change during the read. A file written in place passes through every prefix of itself,
/// and each prefix that ends at a line is a valid, shorter list: read too early, it would
/// unblock the ids after it until the next event. A file still changing after `MAX_SETTLE`
/// is an error (the last good list stays; the writer's next event tries again).
fn read_settled_file(path: &Path, quiet: Duration) -> Result<Vec<u8>, String> {
    let started = std::time::Instant::now();
    let stamp = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    loop {
        let before = stamp(path);
        // A modification time in the future (another clock) gives no age: no wait.
        let age = before
            .and_then(|(_, modified)| modified)
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        let in_time = started.elapsed() < MAX_SETTLE;
        if let Some(age) = age.filter(|age| *age < quiet && in_time) {
            std::thread::sleep(quiet.saturating_sub(age));
            continue;
        }
        let bytes = read_file(path)?;
        if stamp(path) == before {
            return Ok(bytes);
        }
        if !in_time {
            return Err("the file kept changing while it was read".to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The largest blocklist file read (about six million ids). A path pointed at a log or a
/// disk image by mistake is refused with a clear error instead of exhausting the memory of
/// the gateway that guards logins; the last good list stays in force.
pub const MAX_BLOCKLIST_BYTES: u64 = 256 * 1024 * 1024;

fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read blocklist: {e}"))?;
    if !meta.is_file() {
        return Err("cannot read blocklist: not a regular file".to_owned());
    }
    let too_large = || {
        format!(
            "the file is larger than {} MiB, the most a blocklist may be",
            MAX_BLOCKLIST_BYTES / (1024 * 1024)
        )
    };
    if meta.len() > MAX_BLOCKLIST_BYTES {
        return Err(too_large());
    }
    // Bounded again while reading: the file may grow after the size was looked at.
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read blocklist: {e}"))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(MAX_BLOCKLIST_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read blocklist: {e}"))?;
    if bytes.len() as u64 > MAX_BLOCKLIST_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

impl BlocklistStore {
    /// Loads the file for the first time; any error is fatal to the caller.
    pub fn load(
        path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, Vec<Diagnostic>), Vec<Diagnostic>> {
        let parsed = read_blocklist(path)?;
        let store = BlocklistStore {
            current: ArcSwap::from_pointee(Blocklist::default()),
            path: path.to_path_buf(),
            metrics,
            reload_lock: Mutex::new(()),
        };
        store.install(parsed.blocklist);
        store.metrics.reload(ReloadResult::Success);
        Ok((store, parsed.warnings))
    }

    /// The list in force. Cheap: an atomic load, no lock, no allocation.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Blocklist>> {
        self.current.load()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn install(&self, list: Blocklist) {
        self.metrics
            .blocklist_entries
            .set(i64::try_from(list.len()).unwrap_or(i64::MAX));
        let old = self.current.swap(Arc::new(list));
        free_here(old);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.metrics.blocklist_last_success.set(now);
    }

    /// Re-reads the file (once it has been left alone for `quiet`) and swaps it in if it
    /// changed and is valid. Blocking: run it off the async workers.
    pub fn reload(&self, quiet: Duration) -> ReloadOutcome {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let started = std::time::Instant::now();
        let name = self.path.display().to_string();
        let bytes = match read_settled_file(&self.path, quiet) {
            Ok(b) => b,
            Err(m) => return self.failed(vec![Diagnostic::whole_file(&name, m)]),
        };
        if crate::blocklist::checksum(&bytes) == self.current.load().checksum() {
            self.metrics.reload(ReloadResult::Unchanged);
            return ReloadOutcome::Unchanged;
        }
        // Writing a file in place starts by truncating it: an empty file during a reload is
        // far more likely a write in progress than a wish to unblock everyone. An empty list
        // is written as `identities: []`.
        if bytes.is_empty() {
            return self.failed(vec![Diagnostic::whole_file(
                &name,
                "the file is empty (a write in progress?); to clear the list write `identities: []`"
                    .to_owned(),
            )]);
        }
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t,
            Err(e) => {
                return self.failed(vec![Diagnostic::whole_file(
                    &name,
                    format!("not UTF-8 text: {e}"),
                )])
            }
        };
        match Blocklist::parse(text, &name) {
            Ok(parsed) => {
                let changes = self
                    .current
                    .load()
                    .changes_to(&parsed.blocklist, unix_now());
                let entries = parsed.blocklist.len();
                self.install(parsed.blocklist);
                self.metrics.reload(ReloadResult::Success);
                ReloadOutcome::Applied {
                    changes,
                    entries,
                    warnings: parsed.warnings,
                    elapsed: started.elapsed(),
                }
            }
            Err(errors) => self.failed(errors),
        }
    }

    fn failed(&self, errors: Vec<Diagnostic>) -> ReloadOutcome {
        self.metrics.reload(ReloadResult::Failure);
        ReloadOutcome::Failed(errors)
    }
}

/// Frees a replaced list on the calling (reload) thread. A request that still holds the last
/// reference would otherwise free a million-entry table on a request thread, in the middle of
/// a request. Requests hold a snapshot only briefly; after a short wait the list is left to
/// whoever drops it last.
fn free_here(mut old: Arc<Blocklist>) {
    for _ in 0..50 {
        match Arc::try_unwrap(old) {
            Ok(list) => {
                drop(list);
                return;
            }
            Err(shared) => {
                old = shared;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}

/// How the reloader is told to look at the file again.
#[derive(Clone)]
pub struct ReloadTriggers {
    /// Something in the blocklist's folder changed.
    pub fs_event: Arc<Notify>,
    /// SIGHUP or an explicit request: reload now, no debounce.
    pub now: Arc<Notify>,
}

impl Default for ReloadTriggers {
    fn default() -> Self {
        ReloadTriggers {
            fs_event: Arc::new(Notify::new()),
            now: Arc::new(Notify::new()),
        }
    }
}

/// Called with what each successful reload changed (revoke-on-add hooks in here).
pub type ChangeListener = Arc<dyn Fn(&Changes) + Send + Sync>;

/// Starts watching the blocklist's folder. Call before spawning [`run_reloader`], so that no
/// change made after start-up can slip past the watch.
pub fn watch_folder(path: &Path, triggers: &ReloadTriggers) -> Option<notify::RecommendedWatcher> {
    let watcher = start_watch(path, &triggers.fs_event);
    // Covers a change made between the initial load and the watch (cheap: checksum).
    triggers.fs_event.notify_one();
    watcher
}

/// Waits until the folder has been quiet for `debounce`: a file written in place in several
/// chunks is read once it is complete, not after its first chunk (a valid but shorter list
/// would drop entries until the next event). Bounded, so that a folder that never stops
/// changing still gets reloaded.
async fn settle(events: &Notify, debounce: Duration) {
    let deadline = tokio::time::Instant::now() + debounce.saturating_mul(10).max(MAX_SETTLE);
    loop {
        tokio::select! {
            _ = events.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    events.notify_one(); // reload now, and once more for this event
                    return;
                }
            }
            () = tokio::time::sleep(debounce) => return,
        }
    }
}

/// The longest a reload waits for a folder that keeps changing.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// Reloads on folder events, explicit triggers and the poll until `shutdown` turns true.
pub async fn run_reloader(
    store: Arc<BlocklistStore>,
    mut watcher: Option<notify::RecommendedWatcher>,
    poll_interval: Duration,
    debounce: Duration,
    triggers: ReloadTriggers,
    on_change: Option<ChangeListener>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut poll = tokio::time::interval(poll_interval);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    poll.tick().await; // the first tick is immediate; the file was just loaded
    loop {
        let source = tokio::select! {
            _ = triggers.fs_event.notified() => {
                settle(&triggers.fs_event, debounce).await;
                "watch"
            }
            _ = triggers.now.notified() => "signal",
            _ = poll.tick() => {
                if watcher.is_none() {
                    watcher = start_watch(store.path(), &triggers.fs_event);
                }
                "poll"
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break } else { continue }
            }
        };
        // Parsing, diffing and the change listener (which may queue a revocation per added
        // id) all run off the async workers, so requests keep being served meanwhile.
        let s = Arc::clone(&store);
        let listener = on_change.clone();
        // The blocking thread logs through the same subscriber as this task.
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("blocklist-reload".into())
            .spawn(move || {
                lower_this_threads_priority();
                tracing::dispatcher::with_default(&dispatch, || {
                    let outcome = s.reload(debounce);
                    report(&s, source, outcome, listener.as_ref());
                });
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(_) => {
                if done.await.is_err() {
                    tracing::error!("blocklist reload thread failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not start the blocklist reload thread"),
        }
    }
    drop(watcher);
}

/// How far below the request threads a reload runs. Parsing a million-id file takes about
/// half a second of CPU; at equal priority it takes that from requests on a busy machine and
/// shows in their latency. Five steps lower (a third of the weight) lets requests go first,
/// while a reload still gets a quarter of a core when the machine is saturated, so a list
/// change is not held back for long by load.
const RELOAD_NICENESS: i32 = 5;

/// Lowers the calling thread's priority (Linux: `setpriority` on a thread id affects that
/// thread only). A failure only costs latency, so it is logged and ignored.
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{getpriority_process, setpriority_process};
        let me = Some(rustix::thread::gettid());
        let result = getpriority_process(me)
            .and_then(|now| setpriority_process(me, (now + RELOAD_NICENESS).min(19)));
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not lower the reload thread's priority");
        }
    }
}

fn report(
    store: &BlocklistStore,
    source: &'static str,
    outcome: ReloadOutcome,
    on_change: Option<&ChangeListener>,
) {
    let file = store.path().display().to_string();
    match outcome {
        ReloadOutcome::Unchanged => {
            tracing::debug!(%file, trigger = source, "blocklist unchanged");
        }
        ReloadOutcome::Applied {
            changes,
            entries,
            warnings,
            elapsed,
        } => {
            for w in &warnings {
                tracing::warn!(%file, "{w}");
            }
            tracing::info!(
                %file,
                trigger = source,
                entries,
                added = changes.added.len(),
                removed = changes.removed.len(),
                extended = changes.extended.len(),
                added_ids = %preview(&changes.added),
                removed_ids = %preview(&changes.removed),
                elapsed_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
                "blocklist reloaded"
            );
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

/// Up to ten ids, for a readable log line.
fn preview(ids: &[uuid::Uuid]) -> String {
    let mut s: Vec<String> = ids.iter().take(10).map(|u| u.to_string()).collect();
    if ids.len() > 10 {
        s.push(format!("… and {} more", ids.len() - 10));
    }
    s.join(", ")
}

/// Watches the folder, not the file: editors replace files by rename and Kubernetes swaps a
/// `..data` symlink, and a watch on the file itself dies with its first inode.
fn start_watch(path: &Path, notify: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watch_dir(&dir, notify)
}

/// Notifies `notify` on any change in `dir` (not recursive). `None` (logged) when the folder
/// cannot be watched; callers poll as well.
pub fn watch_dir(dir: &Path, notify: &Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let dir = dir.to_path_buf();
    let n = Arc::clone(notify);
    let result =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(e) if e.kind.is_access() => {}
            _ => n.notify_one(),
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
    match result {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the folder; relying on the poll interval");
            None
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
            super::lower_this_threads_priority();
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
