//! Keeps the blocklist snapshot current: initial load, then reloads on a directory watch,
//! SIGHUP and a checksum poll. A file that fails to load leaves the last good list in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};

use sha2::{Digest, Sha256};

use crate::blocklist::diff::Change;
use crate::blocklist::{Blocklist, Changes, Entry, Mode};
use crate::util::{format_timestamp, unix_now};
use crate::diagnostic::{self, Diagnostic};
use crate::metrics::{EntryCounts, Metrics, ReloadResult};

/// The blocklist in force, swapped whole on every successful reload. Readers never lock.
pub struct BlocklistStore {
    current: ArcSwap<Blocklist>,
    path: PathBuf,
    metrics: Arc<Metrics>,
    /// Serialises reloads (watch, poll and SIGHUP may fire together); readers never take it.
    reload_lock: Mutex<()>,
    /// What `GET /blocklist` reports; taken briefly by reloads and the ops listener only.
    state: Mutex<LoadState>,
}

/// What the gateway knows about the list in force and its last reloads.
#[derive(Debug, Clone)]
pub struct LoadState {
    /// SHA-256 of the file the list in force was parsed from, lower-case hex.
    pub sha256: String,
    /// When the list in force was loaded.
    pub loaded_at: SystemTime,
    /// When the file was last read successfully (a change applied, or the same content).
    pub last_reload_success: SystemTime,
    /// Entries in force (enforced, `until` not passed) by kind, as of `counted_at`.
    pub entries: EntryCounts,
    pub counted_at: i64,
    /// [`Blocklist::expiring_count`] when counted: when it drops, an entry has lapsed and
    /// the counts are taken again.
    expiring: usize,
    /// Entries in the file, in force or not.
    pub entries_in_file: usize,
    /// The last reload that failed, while no later reload has read a good file.
    pub last_error: Option<ReloadError>,
}

/// A reload that failed: every error as `file:line:column: message`, and when.
#[derive(Debug, Clone)]
pub struct ReloadError {
    pub message: String,
    pub at: SystemTime,
}

/// Lower-case hex SHA-256 of a file's bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Entries in force at `now` (enforced, `until` not passed), by kind. Report-mode entries
/// block nothing and are not counted.
pub fn entries_in_force(list: &Blocklist, now: i64) -> EntryCounts {
    let all = Blocklist::default().changes_to(list, now);
    EntryCounts {
        identity: all.added.len(),
        email: all.added_emails.len(),
        domain: all.added_domains.len(),
    }
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied {
        changes: Changes,
        /// Every change, for the audit log.
        audit: Box<Audit>,
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
        let name = path.display().to_string();
        let bytes = read_file(path).map_err(|m| vec![Diagnostic::whole_file(&name, m)])?;
        let text = std::str::from_utf8(&bytes).map_err(|e| {
            vec![Diagnostic::whole_file(
                &name,
                format!("not UTF-8 text: {e}"),
            )]
        })?;
        let parsed = Blocklist::parse(text, &name)?;
        let now = SystemTime::now();
        let store = BlocklistStore {
            current: ArcSwap::from_pointee(Blocklist::default()),
            path: path.to_path_buf(),
            metrics,
            reload_lock: Mutex::new(()),
            state: Mutex::new(LoadState {
                sha256: String::new(),
                loaded_at: now,
                last_reload_success: now,
                entries: EntryCounts::default(),
                counted_at: 0,
                expiring: 0,
                entries_in_file: 0,
                last_error: None,
            }),
        };
        store.install(parsed.blocklist, sha256_hex(&bytes));
        store.metrics.reload(ReloadResult::Success);
        Ok((store, parsed.warnings))
    }

    /// The list's checksum, counts, load time and last error, with the counts brought up to
    /// date if an entry has lapsed since they were taken.
    pub fn state(&self) -> LoadState {
        self.refresh_counts();
        self.lock_state().clone()
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, LoadState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts the entries in force again when one has lapsed since the last count (cheap to
    /// check: only entries with an `until` are looked at). Blocking for a large list.
    pub fn refresh_counts(&self) {
        let mut state = self.lock_state();
        let list = self.current.load();
        let now = unix_now();
        let expiring = list.expiring_count(now);
        if expiring == state.expiring && state.counted_at != 0 {
            return;
        }
        let entries = entries_in_force(&list, now);
        state.entries = entries;
        state.expiring = expiring;
        state.counted_at = now;
        self.metrics.set_entries(entries);
    }

    fn record_read_success(&self) {
        let now = SystemTime::now();
        self.metrics
            .blocklist_last_reload_success
            .set(unix_secs(now));
        let mut state = self.lock_state();
        state.last_reload_success = now;
        state.last_error = None;
    }

    /// The list in force. Cheap: an atomic load, no lock, no allocation.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Blocklist>> {
        self.current.load()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn install(&self, list: Blocklist, sha256: String) {
        let now = unix_now();
        let entries = entries_in_force(&list, now);
        let expiring = list.expiring_count(now);
        let entries_in_file = list.len();
        self.metrics.set_blocklist(&sha256, entries);
        let at = SystemTime::now();
        self.metrics.blocklist_last_success.set(unix_secs(at));
        self.metrics
            .blocklist_last_reload_success
            .set(unix_secs(at));
        // Under the state's lock: once the list is visible, so is what `/blocklist` says of
        // it, and a recount cannot mix the two lists.
        let mut state = self.lock_state();
        *state = LoadState {
            sha256,
            loaded_at: at,
            last_reload_success: at,
            entries,
            counted_at: now,
            expiring,
            entries_in_file,
            last_error: None,
        };
        let old = self.current.swap(Arc::new(list));
        drop(state);
        free_here(old);
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
        if crate::util::checksum(&bytes) == self.current.load().checksum() {
            self.metrics.reload(ReloadResult::Unchanged);
            self.record_read_success();
            self.refresh_counts();
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
                let now = unix_now();
                let old = self.current.load_full();
                let changes = old.changes_to(&parsed.blocklist, now);
                let sha256 = sha256_hex(&bytes);
                let previous = self.lock_state().sha256.clone();
                let audit = Box::new(Audit::between(
                    &old,
                    &parsed.blocklist,
                    now,
                    previous,
                    &sha256,
                ));
                drop(old);
                let entries = parsed.blocklist.len();
                self.install(parsed.blocklist, sha256);
                self.metrics.reload(ReloadResult::Success);
                ReloadOutcome::Applied {
                    changes,
                    audit,
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
        self.lock_state().last_error = Some(ReloadError {
            message: diagnostic::render(&errors).trim_end().to_owned(),
            at: SystemTime::now(),
        });
        ReloadOutcome::Failed(errors)
    }
}

fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What one change did to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Newly enforced (listed, or an expired entry given a later `until`).
    Added,
    /// No longer enforced: deleted, or its `until` moved into the past.
    Removed,
    /// Was in report mode, now enforced.
    NowEnforced,
    /// Was enforced, now in report mode.
    NowReport,
    /// Enforced in both, for longer now.
    Extended,
    /// Enforced in both, for less long now.
    Shortened,
    /// Listed in report mode (nothing blocked).
    ReportAdded,
    /// A report-mode entry removed.
    ReportRemoved,
    /// In report mode in both, with another `until`.
    ReportUntilChanged,
    /// Only the reason or metadata changed.
    DetailsChanged,
}

/// What a change of one entry (as in force before and after) means.
fn classify(before: Option<&Entry>, after: Option<&Entry>) -> Option<ChangeKind> {
    let enforced = |e: &Entry| e.mode == Mode::Enforce;
    Some(match (before, after) {
        (None, None) => return None,
        (None, Some(n)) if enforced(n) => ChangeKind::Added,
        (None, Some(_)) => ChangeKind::ReportAdded,
        (Some(o), None) if enforced(o) => ChangeKind::Removed,
        (Some(_), None) => ChangeKind::ReportRemoved,
        (Some(o), Some(n)) if enforced(o) != enforced(n) => {
            if enforced(n) {
                ChangeKind::NowEnforced
            } else {
                ChangeKind::NowReport
            }
        }
        (Some(o), Some(n)) if o.until != n.until => {
            if !enforced(n) {
                ChangeKind::ReportUntilChanged
            } else if n.is_stricter_than(o) {
                ChangeKind::Extended
            } else {
                ChangeKind::Shortened
            }
        }
        (Some(_), Some(_)) => ChangeKind::DetailsChanged,
    })
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::NowEnforced => "mode_enforce",
            ChangeKind::NowReport => "mode_report",
            ChangeKind::Extended => "until_extended",
            ChangeKind::Shortened => "until_shortened",
            ChangeKind::ReportAdded => "added_report",
            ChangeKind::ReportRemoved => "removed_report",
            ChangeKind::ReportUntilChanged => "until_changed_report",
            ChangeKind::DetailsChanged => "details_changed",
        }
    }
}

/// One changed entry: its kind (`identity`, `email`, `domain`), its key, and its `until`
/// before and after (`None`: none, or not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    pub kind: &'static str,
    pub key: String,
    pub change: ChangeKind,
    pub until_before: Option<i64>,
    pub until_after: Option<i64>,
}

impl std::fmt::Display for EntryChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.change.as_str(), self.kind, self.key)?;
        if matches!(
            self.change,
            ChangeKind::Extended | ChangeKind::Shortened | ChangeKind::Added
        ) || self.until_before != self.until_after
        {
            let show = |u: Option<i64>| u.map_or_else(|| "-".to_owned(), format_timestamp);
            if self.until_before.is_some() || self.until_after.is_some() {
                write!(
                    f,
                    " (until {} -> {})",
                    show(self.until_before),
                    show(self.until_after)
                )?;
            }
        }
        Ok(())
    }
}

/// Every change a reload made to what is enforced, with the file's checksums.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub sha256: String,
    pub previous_sha256: String,
    /// Identity changes first, then e-mails, then domains; each in key order. Every change
    /// when `full`, else the first [`AUDIT_INLINE`] (a million-id reload would otherwise hold
    /// a record per id only to log a count).
    pub changes: Vec<EntryChange>,
    /// Changes by kind of entry and change, all of them.
    counts: std::collections::BTreeMap<(&'static str, &'static str), usize>,
    /// Keep every change (the audit target logs at debug level).
    full: bool,
}

impl Audit {
    /// Compares two lists at `now`, entry by entry and every kind: additions and removals
    /// (enforced or in report mode), mode changes, `until` changes, and changes of reason or
    /// metadata. An entry whose `until` has passed counts as not listed.
    pub fn between(
        old: &Blocklist,
        new: &Blocklist,
        now: i64,
        previous_sha256: String,
        sha256: &str,
    ) -> Audit {
        let mut audit = Audit {
            sha256: sha256.to_owned(),
            previous_sha256,
            changes: Vec::new(),
            counts: Default::default(),
            full: tracing::enabled!(target: "kratos_gate::audit", tracing::Level::DEBUG),
        };
        crate::blocklist::diff::diff_each(old, new, |section, key, change| {
            let kind = match section {
                "identities" => "identity",
                "emails" => "email",
                _ => "domain",
            };
            let live = |e: Entry| e.in_force_at(now).then_some(e);
            let (before, after) = match change {
                Change::Added(n) => (None, live(n)),
                Change::Removed(o) => (live(o), None),
                Change::Changed(o, n) => (live(o), live(n)),
            };
            if let Some(change) = classify(before.as_ref(), after.as_ref()) {
                audit.record_with(kind, || key.to_string(), change, before, after);
            }
        });
        audit
    }

    fn keeps_another(&self) -> bool {
        self.full || self.changes.len() < AUDIT_INLINE
    }

    /// Counts a change, and keeps it (making its key) when it is kept.
    fn record_with(
        &mut self,
        kind: &'static str,
        key: impl FnOnce() -> String,
        change: ChangeKind,
        before: Option<Entry>,
        after: Option<Entry>,
    ) {
        *self.counts.entry((kind, change.as_str())).or_default() += 1;
        if self.keeps_another() {
            self.changes
                .push(change_of(kind, key(), change, before, after));
        }
    }

    /// Every change, kept or not.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Changes of one kind of entry (`identity`, `email`, `domain`).
    pub fn count(&self, kind: &str, change: Option<ChangeKind>) -> usize {
        self.counts
            .iter()
            .filter(|((k, c), _)| *k == kind && change.is_none_or(|x| x.as_str() == *c))
            .map(|(_, n)| n)
            .sum()
    }
}

fn change_of(
    kind: &'static str,
    key: String,
    change: ChangeKind,
    before: Option<Entry>,
    after: Option<Entry>,
) -> EntryChange {
    EntryChange {
        kind,
        key,
        change,
        until_before: before.and_then(|e| e.until),
        until_after: after.and_then(|e| e.until),
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
            audit,
            entries,
            warnings,
            elapsed,
        } => {
            for w in &warnings {
                tracing::warn!(%file, "{w}");
            }
            log_audit(store, &file, source, &audit, entries, elapsed);
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

/// Changes listed in the reload's info line; past this many the line names the first ones and
/// the counts, and every change is an event of its own at debug level.
const AUDIT_INLINE: usize = 20;

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
) {
    use ChangeKind::*;
    let in_force = store.lock_state().entries;
    let n = |kind: &str, changes: &[ChangeKind]| {
        changes
            .iter()
            .map(|c| audit.count(kind, Some(*c)))
            .sum::<usize>()
    };
    let all = |changes: &[ChangeKind]| {
        ["identity", "email", "domain"]
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
        changes = %listed.join("; "),
        elapsed_ms = (elapsed.as_secs_f64() * 10_000.0).round() / 10.0,
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
