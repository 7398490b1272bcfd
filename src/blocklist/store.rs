//! The blocklist in force: a snapshot swapped whole on every successful reload, so that a
//! lookup never locks and never sees half a list, and what `GET /blocklist` reports of it.
//! A list that fails to load leaves the last good one in force.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use super::audit::Audit;
use super::incremental::{read_failed, Failure, Input, ReadError, Reloaded, Tracker};
use super::source::Loaded;
use super::{Blocklist, Changes};
use crate::diagnostic::{self, Diagnostic};
use crate::metrics::{EntryCounts, Metrics, ReloadResult};
use crate::refresh::{Content, Opened, Source};
use crate::util::{unix_now, unix_secs};

/// The blocklist in force, swapped whole on every successful reload. Readers never lock.
pub struct BlocklistStore {
    current: ArcSwap<Blocklist>,
    source: Arc<dyn Source>,
    metrics: Arc<Metrics>,
    /// Serialises reloads (watch, poll and SIGHUP may fire together); readers never take it.
    reload_lock: Mutex<()>,
    /// What `GET /blocklist` reports; taken briefly by reloads and the ops listener only.
    state: Mutex<LoadState>,
    /// The content last fetched failed to parse: a source's "unchanged" then means that same
    /// broken content, and the error stays.
    fetched_invalid: AtomicBool,
    /// What the list in force was parsed from, for incremental reloads; taken by reloads
    /// only (under `reload_lock`).
    tracker: Mutex<Tracker>,
    /// A compaction is being built (at most one at a time: each is a whole new table).
    compacting: AtomicBool,
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

/// Entries in force at `now` (enforced, `until` not passed), by kind. Report-mode entries
/// block nothing and are not counted.
pub fn entries_in_force(list: &Blocklist, now: i64) -> EntryCounts {
    // Counted, not listed: a list of a million ids on every reload cost a reload's worth.
    let live = |e: &&super::Entry| e.in_force_at(now) && e.mode == super::Mode::Enforce;
    EntryCounts {
        identity: list.identities.enforced_count(now),
        email: list.emails.values().filter(live).count(),
        domain: list.domains.values().filter(live).count(),
        network: list.networks.iter().map(|(_, e)| e).filter(live).count(),
    }
}

/// What one pass over a source's content found.
enum Read {
    Unchanged,
    Empty,
    Parsed(Box<Reloaded>),
}

/// What one reload attempt did.
#[derive(Debug)]
pub enum ReloadOutcome {
    Unchanged,
    Applied {
        changes: Box<Changes>,
        /// Every change, for the audit log.
        audit: Box<Audit>,
        entries: usize,
        warnings: Vec<Diagnostic>,
        /// From reading the file to the new list being in force.
        elapsed: Duration,
        /// Only the changed region of the file was read.
        incremental: bool,
    },
    Failed(Vec<Diagnostic>),
}

impl BlocklistStore {
    /// Puts the list read at start-up in force; later reloads fetch from its source.
    pub fn new(loaded: Loaded, metrics: Arc<Metrics>) -> (Self, Vec<Diagnostic>) {
        let now = SystemTime::now();
        let store = BlocklistStore {
            current: ArcSwap::from_pointee(Blocklist::default()),
            source: loaded.source,
            metrics,
            reload_lock: Mutex::new(()),
            compacting: AtomicBool::new(false),
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
            fetched_invalid: AtomicBool::new(false),
            tracker: Mutex::new(loaded.tracker),
        };
        store.install(loaded.parsed.blocklist, loaded.sha256);
        store.metrics.reload(ReloadResult::Success);
        (store, loaded.parsed.warnings)
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

    /// Entries in force by kind, as last counted.
    pub fn entries_in_force(&self) -> EntryCounts {
        self.lock_state().entries
    }

    /// A list has been loaded: false only while a remote source started without one
    /// (`blocklist.require_on_start: false`) has not delivered its first list.
    pub fn has_list(&self) -> bool {
        !self.lock_state().sha256.is_empty()
    }

    /// The list in force. Cheap: an atomic load, no lock, no allocation.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Blocklist>> {
        self.current.load()
    }

    /// Where the list comes from (a path), for logs and `GET /blocklist`.
    pub fn name(&self) -> String {
        self.source.name()
    }

    pub fn source(&self) -> &Arc<dyn Source> {
        &self.source
    }

    /// Puts `list`, whose file has the SHA-256 `sha256`, in force.
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

    /// Swaps in what the source gave ([`Source::open`], begun at `started`), if it changed
    /// and is valid. Blocking (reads, parses and diffs): run it off the async workers, and
    /// [`BlocklistStore::compact`] after acting on the outcome.
    pub fn apply(&self, opened: Opened, started: Instant) -> ReloadOutcome {
        match self.apply_within(opened, started, true) {
            Ok(outcome) => outcome,
            // Not given back when a whole parse is allowed.
            Err(_) => self.failed(read_failed(&ReadError::Changed, &self.source.name())),
        }
    }

    /// [`BlocklistStore::apply`] as far as it is cheap: the content is given back, with
    /// nothing done, when it has to be parsed whole (for [`BlocklistStore::apply`] on a
    /// thread that may take a larger share of a core).
    pub fn apply_incremental(
        &self,
        opened: Opened,
        started: Instant,
    ) -> Result<ReloadOutcome, Content> {
        self.apply_within(opened, started, false)
    }

    fn apply_within(
        &self,
        opened: Opened,
        started: Instant,
        whole: bool,
    ) -> Result<ReloadOutcome, Content> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        let name = self.source.name();
        let mut content = match opened {
            Ok(Some(c)) => c,
            Ok(None) if self.fetched_invalid.load(Ordering::Relaxed) => {
                self.metrics.reload(ReloadResult::Unchanged);
                return Ok(ReloadOutcome::Unchanged);
            }
            Ok(None) => return Ok(self.unchanged()),
            Err(m) => return Ok(self.failed(vec![Diagnostic::whole_file(&name, m)])),
        };
        let old = self.current.load_full();
        let mut tracker = self.tracker.lock().unwrap_or_else(|p| p.into_inner());
        // A file written in place while it is read is opened and read again, as long as it
        // settles within `MAX_SETTLE`.
        let read = loop {
            let input = match &content {
                Content::Bytes(b) => Input::Bytes(b),
                Content::File(f) => Input::File(f.file(), f.len()),
            };
            let attempt = self.read(&mut tracker, &old, input, &name, whole);
            let f = match content {
                Content::File(f) => f,
                bytes => break (attempt, bytes),
            };
            let again = match &attempt {
                Err(Failure::Read(ReadError::Changed)) => true,
                Err(Failure::Read(ReadError::Io(_))) => false,
                _ => !f.unchanged(),
            };
            if again {
                match f.reopen() {
                    Ok(f) => content = Content::File(f),
                    Err(m) => return Ok(self.failed(vec![Diagnostic::whole_file(&name, m)])),
                }
                continue;
            }
            if let Err(Failure::Read(ReadError::Io(e))) = &attempt {
                let m = format!("cannot read {}: {e}", f.what());
                return Ok(self.failed(vec![Diagnostic::whole_file(&name, m)]));
            }
            break (attempt, Content::File(f));
        };
        let (read, content) = read;
        Ok(match read {
            Ok(Read::Unchanged) => {
                self.fetched_invalid.store(false, Ordering::Relaxed);
                self.unchanged()
            }
            Ok(Read::Empty) => self.invalid(vec![Diagnostic::whole_file(
                &name,
                "the file is empty (a write in progress?); to clear the list write `identities: []`"
                    .to_owned(),
            )]),
            Ok(Read::Parsed(read)) => {
                let read = *read;
                self.fetched_invalid.store(false, Ordering::Relaxed);
                let now = unix_now();
                let previous = self.lock_state().sha256.clone();
                let sha256 = tracker.sha256().to_owned();
                drop(tracker);
                let (changes, audit) = {
                    let (before, after) = read.diff_pair(&old);
                    let changes = before.changes_to(after, now);
                    let audit = Box::new(Audit::between(before, after, now, previous, &sha256));
                    (changes, audit)
                };
                drop(old);
                let incremental = read.is_incremental();
                let entries = read.parsed.blocklist.len();
                let warnings = read.parsed.warnings;
                self.install(read.parsed.blocklist, sha256);
                self.metrics.reload(ReloadResult::Success);
                let elapsed = started.elapsed();
                if let Content::Bytes(bytes) = &content {
                    self.source.in_force(bytes);
                }
                ReloadOutcome::Applied {
                    changes: Box::new(changes),
                    audit,
                    entries,
                    warnings,
                    elapsed,
                    incremental,
                }
            }
            Err(Failure::Invalid(errors)) => self.invalid(errors),
            Err(Failure::Read(e)) => self.failed(read_failed(&e, &name)),
            Err(Failure::Whole) => return Err(content),
        })
    }

    /// One pass over the content ([`Tracker::scan`]): the same as the list in force, empty,
    /// or read and parsed.
    fn read(
        &self,
        tracker: &mut Tracker,
        old: &Blocklist,
        input: Input<'_>,
        name: &str,
        whole: bool,
    ) -> Result<Read, Failure> {
        let scanned = tracker.scan(input)?;
        if scanned.sum == old.checksum() {
            return Ok(Read::Unchanged);
        }
        // Writing a file in place starts by truncating it: an empty file during a reload is
        // far more likely a write in progress than a wish to unblock everyone. An empty list
        // is written as `identities: []`.
        if scanned.len == 0 {
            return Ok(Read::Empty);
        }
        tracker
            .reload_scanned(old, scanned, input, name, whole)
            .map(|r| Read::Parsed(Box::new(r)))
    }

    /// Folds the list's identity overlay into a new table once it has grown: the same list,
    /// so no diff and no audit. For the reload thread, after a reload's outcome has been
    /// acted on (its audit logged, revocations queued): a million-id table takes a while.
    pub fn compact(&self) {
        if self.compacting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.compact_once();
        self.compacting.store(false, Ordering::Release);
    }

    /// The list in force has an overlay large enough to fold, and no fold is under way.
    pub fn wants_compaction(&self) -> bool {
        !self.compacting.load(Ordering::Acquire)
            && self.current.load().identities.needs_compaction()
    }

    fn compact_once(&self) {
        let list = self.current.load_full();
        // Built without the reload lock: on a low-priority thread this may take long, and a
        // reload meanwhile must not wait for it.
        let Some(compacted) = list.compacted() else {
            return;
        };
        let _guard = self.reload_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Only over the list it was built from: a reload may have put another in force.
        if Arc::ptr_eq(&self.current.load(), &list) {
            drop(list);
            let old = self.current.swap(Arc::new(compacted));
            free_here(old);
        }
    }

    /// The content fetched is not a list to put in force.
    fn invalid(&self, errors: Vec<Diagnostic>) -> ReloadOutcome {
        self.fetched_invalid.store(true, Ordering::Relaxed);
        self.failed(errors)
    }

    fn unchanged(&self) -> ReloadOutcome {
        self.metrics.reload(ReloadResult::Unchanged);
        self.record_read_success();
        self.refresh_counts();
        ReloadOutcome::Unchanged
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::incremental::Tracker;
    use crate::blocklist::source::file;
    use crate::util::sha256_hex;

    fn ids(n: u64) -> Vec<String> {
        (0..n)
            .map(|i| {
                let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                uuid::Uuid::from_u64_pair(x, x.rotate_left(17)).to_string()
            })
            .collect()
    }

    fn text(ids: &[String]) -> String {
        let mut t = String::from("identities:\n");
        for id in ids {
            t.push_str(&format!("  - {id}\n"));
        }
        t
    }

    fn store(t: &str) -> BlocklistStore {
        let dir = std::env::temp_dir().join(format!("kg-store-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        store_at(&dir.join("blocklist.yaml"), t)
    }

    fn store_at(path: &std::path::Path, t: &str) -> BlocklistStore {
        std::fs::write(path, t).expect("write");
        let mut tracker = Tracker::default();
        let (parsed, sha256) = tracker
            .parse_full(t.as_bytes(), "blocklist.yaml")
            .expect("valid");
        let loaded = Loaded {
            source: Arc::new(file(path, Duration::ZERO)),
            parsed,
            sha256,
            tracker,
        };
        BlocklistStore::new(loaded, Arc::new(Metrics::new())).0
    }

    #[test]
    fn a_small_edit_is_applied_incrementally_with_its_changes_and_checksum() {
        let mut list = ids(3000);
        let s = store(&text(&list));
        let added = ids(3001).pop().expect("one more");
        list.insert(1500, added.clone());
        let removed = list.remove(10);
        let t = text(&list);
        let outcome = s.apply(
            Ok(Some(Content::Bytes(t.clone().into_bytes()))),
            Instant::now(),
        );
        let ReloadOutcome::Applied {
            changes,
            incremental,
            entries,
            ..
        } = outcome
        else {
            panic!("not applied: {outcome:?}");
        };
        assert!(incremental);
        assert_eq!(entries, 3000);
        let id = |s: &str| uuid::Uuid::parse_str(s).expect("uuid");
        assert_eq!(changes.added, vec![id(&added)]);
        assert_eq!(changes.removed, vec![id(&removed)]);
        assert_eq!(s.state().sha256, sha256_hex(t.as_bytes()));
        assert_eq!(s.state().entries.identity, 3000);
        let want = Blocklist::parse(&t, "x").expect("valid").blocklist;
        assert_eq!(**s.snapshot(), want);
        assert!(s.snapshot().lookup(&id(&added)).is_some());
        assert!(s.snapshot().lookup(&id(&removed)).is_none());
    }

    /// A 2,000-id list, and 40 edits of it that each insert one more id: each insertion
    /// moves the lines after it, a line shift per reload.
    fn list_and_insertions() -> (String, Vec<String>) {
        let mut list = ids(2000);
        let first = text(&list);
        let more = ids(2100);
        let edits = more
            .iter()
            .skip(2000)
            .take(40)
            .enumerate()
            .map(|(k, id)| {
                list.insert(100 + 37 * k, id.clone());
                text(&list)
            })
            .collect();
        (first, edits)
    }

    #[test]
    fn a_growing_overlay_is_compacted_into_an_equal_list() {
        let (first, edits) = list_and_insertions();
        let s = store(&first);
        for (k, t) in edits.into_iter().enumerate() {
            let outcome = s.apply(
                Ok(Some(Content::Bytes(t.clone().into_bytes()))),
                Instant::now(),
            );
            assert!(
                matches!(
                    outcome,
                    ReloadOutcome::Applied {
                        incremental: true,
                        ..
                    }
                ),
                "{k}: {outcome:?}"
            );
            let want = Blocklist::parse(&t, "x").expect("valid").blocklist;
            assert_eq!(**s.snapshot(), want, "{k}");
            s.compact();
            assert_eq!(**s.snapshot(), want, "{k}");
        }
        // At most OVERLAY_MAX_SHIFTS shifts stay in the overlay.
        assert!(!s.snapshot().identities.needs_compaction());
    }

    #[test]
    fn one_compaction_at_a_time_and_none_while_one_is_under_way() {
        let (first, edits) = list_and_insertions();
        let last = edits.last().expect("edits").clone();
        let s = store(&first);
        for t in edits {
            s.apply(Ok(Some(Content::Bytes(t.into_bytes()))), Instant::now());
        }
        assert!(s.snapshot().identities.needs_compaction());
        assert!(s.wants_compaction());
        // Another thread's fold is under way: no second one is built or wanted.
        s.compacting.store(true, Ordering::Release);
        assert!(!s.wants_compaction());
        s.compact();
        assert!(s.snapshot().identities.needs_compaction());
        s.compacting.store(false, Ordering::Release);
        s.compact();
        assert!(!s.snapshot().identities.needs_compaction());
        assert!(!s.wants_compaction());
        assert_eq!(
            **s.snapshot(),
            Blocklist::parse(&last, "x").expect("valid").blocklist
        );
    }

    #[test]
    fn a_file_written_in_place_after_it_was_opened_is_read_again() {
        let mut list = ids(3000);
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("blocklist.yaml");
        let s = store_at(&path, &text(&list));
        let source = file(&path, Duration::ZERO);
        // Opened with one content, written in place with another before the read.
        list.insert(10, ids(3001).pop().expect("one more"));
        std::fs::write(&path, text(&list)).expect("write");
        let opened = crate::refresh::open_settled(&source, Instant::now()).expect("open");
        std::thread::sleep(Duration::from_millis(20));
        list.remove(2000);
        let t = text(&list);
        std::fs::write(&path, &t).expect("write");
        let outcome = s.apply(Ok(Some(Content::File(opened))), Instant::now());
        assert!(
            matches!(outcome, ReloadOutcome::Applied { .. }),
            "{outcome:?}"
        );
        let want = Blocklist::parse(&t, "x").expect("valid").blocklist;
        assert_eq!(**s.snapshot(), want);
        assert_eq!(s.state().sha256, sha256_hex(t.as_bytes()));
        // The same file again: unchanged.
        let opened = crate::refresh::open_settled(&source, Instant::now()).expect("open");
        let outcome = s.apply_incremental(Ok(Some(Content::File(opened))), Instant::now());
        assert!(
            matches!(outcome, Ok(ReloadOutcome::Unchanged)),
            "{outcome:?}"
        );
        // A change that needs a whole parse is handed back by the incremental step.
        let bad = format!("emails:\n  - a@evil.example\n{t}");
        std::fs::write(&path, &bad).expect("write");
        let opened = crate::refresh::open_settled(&source, Instant::now()).expect("open");
        let Err(content) = s.apply_incremental(Ok(Some(Content::File(opened))), Instant::now())
        else {
            panic!("not handed back");
        };
        assert!(matches!(
            s.apply(Ok(Some(content)), Instant::now()),
            ReloadOutcome::Applied {
                incremental: false,
                ..
            }
        ));
    }
}
