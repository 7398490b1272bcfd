//! Noticing that content changed, for the blocklist and the TLS certificates alike: a
//! [`Source`] gives its current bytes, a folder watch (notify) says when to ask again, a poll
//! backs the watch up, and a checksum of what was taken in tells new content from the same
//! content read again (the blocklist's from the hashes of its chunks, see
//! `blocklist::incremental`; the certificates' with [`crate::util::checksum`]).
//!
//! A local file is a [`FileSource`]; a remote list implements [`Source`] the same way and is
//! polled (it has no watch).

use std::any::Any;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::{watch, Notify};

/// What a fetch gives: the bytes; `None` when the source knows they are the ones it last
/// gave; or why it could not read them.
pub type Fetched = Result<Option<Vec<u8>>, String>;

/// A fetch in progress.
pub type Fetching<'a> = Pin<Box<dyn Future<Output = Fetched> + Send + 'a>>;

/// What [`Source::open`] gives: like [`Fetched`], with a file left open to be read by
/// whoever takes its content in, in the order and as far as it needs.
pub type Opened = Result<Option<Content>, String>;

/// An open in progress.
pub type Opening<'a> = Pin<Box<dyn Future<Output = Opened> + Send + 'a>>;

/// A source's content: bytes already in memory (a download), or a file opened once.
#[derive(Debug)]
pub enum Content {
    Bytes(Vec<u8>),
    File(OpenFile),
}

/// A regular file opened once it had settled: every read of its content goes through this
/// one handle, so a file renamed over the path meanwhile is never mixed with it.
#[derive(Debug)]
pub struct OpenFile {
    file: std::fs::File,
    stamp: (u64, Option<SystemTime>),
    source: FileSource,
    /// When the first attempt to read the content began.
    started: Instant,
}

impl OpenFile {
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.stamp.0
    }

    pub fn is_empty(&self) -> bool {
        self.stamp.0 == 0
    }

    /// True when the open file still has the length and modification time it had when it
    /// was opened: it was not written in place since.
    pub fn unchanged(&self) -> bool {
        self.file
            .metadata()
            .is_ok_and(|m| (m.len(), m.modified().ok()) == self.stamp)
    }

    /// The file at the same path opened again, once it has settled; an error once it has
    /// kept changing for [`MAX_SETTLE`] since the first attempt. Blocking.
    pub fn reopen(self) -> Result<OpenFile, String> {
        if self.started.elapsed() >= MAX_SETTLE {
            return Err("the file kept changing while it was read".to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
        open_settled(&self.source, self.started)
    }

    /// What to call the file in an error ("cannot read blocklist: …").
    pub fn what(&self) -> &'static str {
        self.source.what
    }
}

/// Content that can change: its bytes now, and (when it can tell) when to look again.
pub trait Source: Send + Sync + 'static {
    /// How diagnostics, logs and `GET /blocklist` name the content: a path, or a URL without
    /// credentials.
    fn name(&self) -> String;

    /// The content now. `Ok(None)`: the source knows the content is the one it last gave
    /// (a `304 Not Modified` to a conditional request), whether that one was valid or not; a
    /// source that cannot tell gives the bytes and the caller compares checksums. `Err`: why
    /// it could not be read (the last good content stays in use). A source bounds the bytes
    /// it accepts (a file: [`FileSource`]'s `max_bytes`) and the time it takes.
    fn fetch(&self) -> Fetching<'_>;

    /// The content for the first load at start-up. A file does not wait for a write to
    /// settle here (there is no earlier content to keep); by default, [`Source::fetch`].
    fn fetch_first(&self) -> Fetching<'_> {
        self.fetch()
    }

    /// The content now, as [`Source::fetch`] gives it, or a file opened for reading. By
    /// default the bytes [`Source::fetch`] gives.
    fn open(&self) -> Opening<'_> {
        Box::pin(async move { self.fetch().await.map(|b| b.map(Content::Bytes)) })
    }

    /// The content this source last gave is now in force (parsed and swapped in). A remote
    /// source keeps it as its local copy (`blocklist.cache_path`); by default nothing.
    fn in_force(&self, content: &[u8]) {
        let _ = content;
    }

    /// The counters of a source that fetches over the network (`blocklist.url`), for the
    /// gateway's metrics; `None` for a file.
    fn fetch_metrics(&self) -> Option<crate::remote::RemoteMetrics> {
        None
    }

    /// Starts telling `changed` when the content may have changed (a folder watch); `None`
    /// when the source can only be polled, or the watch could not be set up (tried again on
    /// every poll). Dropping the returned value stops the watch.
    fn watch(&self, changed: &Arc<Notify>) -> Option<WatchGuard> {
        let _ = changed;
        None
    }
}

/// Keeps a watch running while held.
pub struct WatchGuard {
    _watch: Box<dyn Any + Send>,
}

impl WatchGuard {
    pub fn new(inner: impl Any + Send) -> Self {
        WatchGuard {
            _watch: Box::new(inner),
        }
    }
}

/// A local file, read once it has been left alone for `quiet`, at most `max_bytes`.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    /// What the file is, in errors ("cannot read blocklist: …").
    what: &'static str,
    quiet: Duration,
    max_bytes: u64,
}

impl FileSource {
    pub fn new(path: &Path, what: &'static str, quiet: Duration, max_bytes: u64) -> Self {
        FileSource {
            path: path.to_path_buf(),
            what,
            quiet,
            max_bytes,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file now, without waiting for it to settle (one-off commands). Blocking.
    pub fn read_now(&self) -> Result<Vec<u8>, String> {
        read_file(&self.path, self.what, self.max_bytes)
    }

    /// The file once it has been left alone for `quiet` ([`read_settled_file`]). Blocking.
    pub fn read_settled(&self) -> Result<Vec<u8>, String> {
        read_settled_file(&self.path, self.what, self.quiet, self.max_bytes)
    }

    /// `read` on Tokio's blocking threads.
    fn read_off_workers(&self, read: fn(&FileSource) -> Result<Vec<u8>, String>) -> Fetching<'_> {
        let file = self.clone();
        Box::pin(async move {
            match tokio::task::spawn_blocking(move || read(&file)).await {
                Ok(read) => read.map(Some),
                Err(e) => Err(format!("the read did not finish: {e}")),
            }
        })
    }
}

impl Source for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn fetch(&self) -> Fetching<'_> {
        self.read_off_workers(FileSource::read_settled)
    }

    fn fetch_first(&self) -> Fetching<'_> {
        self.read_off_workers(FileSource::read_now)
    }

    #[cfg(unix)]
    fn open(&self) -> Opening<'_> {
        let file = self.clone();
        Box::pin(async move {
            let open = move || open_settled(&file, Instant::now());
            match tokio::task::spawn_blocking(open).await {
                Ok(open) => open.map(|f| Some(Content::File(f))),
                Err(e) => Err(format!("the read did not finish: {e}")),
            }
        })
    }

    fn watch(&self, changed: &Arc<Notify>) -> Option<WatchGuard> {
        watch_dir(&folder_of(&self.path), changed).map(WatchGuard::new)
    }
}

/// The folder a file is in (`.` for a bare name). Watched instead of the file: editors
/// replace files by rename and Kubernetes swaps a `..data` symlink, and a watch on the file
/// itself dies with its first inode.
pub fn folder_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
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

/// The longest a read waits for content that keeps changing.
pub const MAX_SETTLE: Duration = Duration::from_secs(1);

/// Reads the file once it has not been modified for `quiet`, and checks that it did not
/// change during the read. A file written in place passes through every prefix of itself,
/// and each prefix that ends at a line may be valid content: read too early, a blocklist
/// would unblock the ids after it until the next event. A file still changing after
/// [`MAX_SETTLE`] is an error (the last good content stays; the writer's next event tries
/// again).
pub fn read_settled_file(
    path: &Path,
    what: &str,
    quiet: Duration,
    max_bytes: u64,
) -> Result<Vec<u8>, String> {
    let started = Instant::now();
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
        let bytes = read_file(path, what, max_bytes)?;
        if stamp(path) == before {
            return Ok(bytes);
        }
        if !in_time {
            return Err("the file kept changing while it was read".to_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Opens the file once it has not been modified for `quiet` (as [`read_settled_file`] reads
/// it; waiting at most until [`MAX_SETTLE`] after `started`), a regular file of at most
/// `max_bytes`. Whoever reads it checks [`OpenFile::unchanged`] after the read.
pub fn open_settled(source: &FileSource, started: Instant) -> Result<OpenFile, String> {
    let what = source.what;
    loop {
        let age = std::fs::metadata(&source.path)
            .ok()
            .and_then(|m| m.modified().ok())
            .and_then(|m| SystemTime::now().duration_since(m).ok());
        if let Some(age) = age.filter(|age| *age < source.quiet && started.elapsed() < MAX_SETTLE) {
            std::thread::sleep(source.quiet.saturating_sub(age));
            continue;
        }
        let file =
            std::fs::File::open(&source.path).map_err(|e| format!("cannot read {what}: {e}"))?;
        let meta = file
            .metadata()
            .map_err(|e| format!("cannot read {what}: {e}"))?;
        if !meta.is_file() {
            return Err(format!("cannot read {what}: not a regular file"));
        }
        if meta.len() > source.max_bytes {
            return Err(too_large(what, source.max_bytes));
        }
        return Ok(OpenFile {
            file,
            stamp: (meta.len(), meta.modified().ok()),
            source: source.clone(),
            started,
        });
    }
}

fn too_large(what: &str, max_bytes: u64) -> String {
    format!(
        "the file is larger than {} MiB, the most a {what} may be",
        max_bytes / (1024 * 1024)
    )
}

/// Reads a regular file of at most `max_bytes`: a path pointed at a log or a disk image by
/// mistake is refused with a clear error instead of exhausting the memory of the gateway.
pub fn read_file(path: &Path, what: &str, max_bytes: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("cannot read {what}: not a regular file"));
    }
    let too_large = || too_large(what, max_bytes);
    if meta.len() > max_bytes {
        return Err(too_large());
    }
    // Bounded again while reading: the file may grow after the size was looked at.
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {what}: {e}"))?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

/// How a reloader is told to look again.
#[derive(Clone)]
pub struct Triggers {
    /// A watched source may have changed.
    pub changed: Arc<Notify>,
    /// SIGHUP or an explicit request: look now, no debounce.
    pub now: Arc<Notify>,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            changed: Arc::new(Notify::new()),
            now: Arc::new(Notify::new()),
        }
    }
}

/// Why a reloader looks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Watch,
    Signal,
    Poll,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Watch => "watch",
            Trigger::Signal => "signal",
            Trigger::Poll => "poll",
        }
    }
}

/// When to look at a set of sources again: on a watched change once it has been quiet for
/// `debounce`, on [`Triggers::now`], and every `poll`.
pub struct Schedule {
    sources: Vec<Arc<dyn Source>>,
    triggers: Triggers,
    /// One per source; a `None` is set up again on every poll.
    watches: Vec<Option<WatchGuard>>,
    poll: tokio::time::Interval,
    debounce: Duration,
}

impl Schedule {
    /// Starts the sources' watches now (call it before the first read is taken for current,
    /// so that no later change slips past), and looks once more right away for a change
    /// made in between (cheap when nothing changed: a checksum). Needs a Tokio runtime.
    pub fn start(
        sources: Vec<Arc<dyn Source>>,
        triggers: Triggers,
        poll: Duration,
        debounce: Duration,
    ) -> Self {
        let watches = sources.iter().map(|s| s.watch(&triggers.changed)).collect();
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        triggers.changed.notify_one();
        Schedule {
            sources,
            triggers,
            watches,
            poll,
            debounce,
        }
    }

    pub fn triggers(&self) -> &Triggers {
        &self.triggers
    }

    /// The next reason to look again; `None` once `stop` turns true (or its sender is gone).
    pub async fn next(&mut self, stop: &mut watch::Receiver<bool>) -> Option<Trigger> {
        loop {
            return Some(tokio::select! {
                _ = self.triggers.changed.notified() => {
                    settle(&self.triggers.changed, self.debounce).await;
                    Trigger::Watch
                }
                _ = self.triggers.now.notified() => Trigger::Signal,
                _ = self.poll.tick() => {
                    for (source, watch) in self.sources.iter().zip(self.watches.iter_mut()) {
                        if watch.is_none() {
                            *watch = source.watch(&self.triggers.changed);
                        }
                    }
                    Trigger::Poll
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() { return None } else { continue }
                }
            });
        }
    }
}

/// Waits until the events have been quiet for `debounce`: content written in several chunks
/// is read once it is complete, not after its first chunk. Bounded, so that a folder that
/// never stops changing is still read.
async fn settle(events: &Notify, debounce: Duration) {
    let deadline = tokio::time::Instant::now() + debounce.saturating_mul(10).max(MAX_SETTLE);
    loop {
        tokio::select! {
            _ = events.notified() => {
                if tokio::time::Instant::now() >= deadline {
                    events.notify_one(); // look now, and once more for this event
                    return;
                }
            }
            () = tokio::time::sleep(debounce) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_by_size() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 2 * 1024 * 1024 + 1]).expect("write");
        let err = read_file(&path, "blocklist", 2 * 1024 * 1024).expect_err("too large");
        assert_eq!(
            err,
            "the file is larger than 2 MiB, the most a blocklist may be"
        );
        assert!(read_file(dir.path(), "blocklist", 10)
            .expect_err("a folder")
            .contains("not a regular file"));
    }

    #[test]
    fn a_fresh_file_is_read_once_it_has_been_quiet() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("list");
        std::fs::write(&path, b"abc").expect("write");
        let quiet = Duration::from_millis(300);
        let started = Instant::now();
        let source = FileSource::new(&path, "list", quiet, 1024);
        assert_eq!(source.read_settled().expect("read"), b"abc");
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(source.read_now().expect("read"), b"abc");
    }

    #[tokio::test]
    async fn a_watched_change_triggers_once_quiet_and_the_poll_ticks() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("list");
        std::fs::write(&path, b"a").expect("write");
        let source: Arc<dyn Source> =
            Arc::new(FileSource::new(&path, "list", Duration::ZERO, 1024));
        let (_stop_tx, mut stop) = watch::channel(false);
        let mut schedule = Schedule::start(
            vec![source],
            Triggers::default(),
            Duration::from_millis(400),
            Duration::from_millis(20),
        );
        // The look right after start.
        assert_eq!(schedule.next(&mut stop).await, Some(Trigger::Watch));
        std::fs::write(&path, b"b").expect("write");
        let next = tokio::time::timeout(Duration::from_secs(5), schedule.next(&mut stop)).await;
        assert!(
            matches!(next, Ok(Some(Trigger::Watch | Trigger::Poll))),
            "{next:?}"
        );
        schedule.triggers().now.notify_one();
        assert_eq!(schedule.next(&mut stop).await, Some(Trigger::Signal));
    }

    #[tokio::test]
    async fn stop_ends_the_schedule() {
        let (stop_tx, mut stop) = watch::channel(false);
        let mut schedule = Schedule::start(
            Vec::new(),
            Triggers::default(),
            Duration::from_secs(60),
            Duration::from_millis(20),
        );
        assert_eq!(schedule.next(&mut stop).await, Some(Trigger::Watch));
        stop_tx.send(true).expect("send");
        assert_eq!(schedule.next(&mut stop).await, None);
    }
}
