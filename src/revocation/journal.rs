//! The revocation journal (`revocation.journal`): pending revocations survive a crash, a
//! `kill -9` and a restart.
//!
//! One append-only file, `revocations.journal`, in the configured directory; one line per
//! event:
//!
//! ```text
//! # kratos-gate revocation journal v1
//! + session 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10      accepted into the queue
//! + identity 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59
//! + identifier "mallory@example.com"                   JSON string: any byte sequence is one line
//! - session 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10      confirmed by Kratos
//! ```
//!
//! A target is pending when its last line is `+`. At start-up the file is read, the pending
//! targets (at most `queue_capacity`) are queued again, and the file is rewritten to just those
//! (temporary file, fsync, rename, fsync of the directory). It is rewritten the same way when it
//! grows past [`COMPACT_AT`] and four times what the pending targets need, and after a failed
//! write, so it never grows without bound and never keeps a half-written line in its middle.
//!
//! **Durability and the request path.** [`Revoker::revoke`](super::Revoker::revoke) runs on a
//! request thread and must not wait for a disk. It hands the event to one writer thread over a
//! channel; the writer takes everything that has arrived, writes it with one `write` and makes
//! it durable with one `fdatasync` (group commit: while one fsync runs, the next batch
//! gathers). So the client's answer (a 403, a 401) may leave before the `+` line is on disk:
//! a crash in that window — one fsync, a few milliseconds — loses that revocation, as it
//! would have before the journal. The credential itself never leaves either way; what may be
//! lost is only the revocation of a session the client did not get. A `-` line lost the same
//! way makes a restart send a revocation again, which is harmless (Kratos answers 404, counted
//! as success).
//!
//! The channel is unbounded, yet bounded in practice: a `+` is sent only when a target enters
//! the queue (at most `queue_capacity` are in it) and a `-` only when one leaves it.
//!
//! A crash mid-write leaves a last line without its newline: it is ignored at start-up, not an
//! error. Only one gateway may use a directory at a time (an advisory lock on `lock` in it,
//! which the kernel drops when the process dies, `kill -9` included).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::Target;

/// The journal's file name inside the configured directory.
pub const FILE_NAME: &str = "revocations.journal";
const TMP_NAME: &str = "revocations.journal.tmp";
const LOCK_NAME: &str = "lock";
const HEADER: &str = "# kratos-gate revocation journal v1\n";
/// The file is rewritten once it is larger than this and than four times what it needs.
pub const COMPACT_AT: u64 = 4 * 1024 * 1024;
/// Most events written (and fsync'd) together.
const MAX_BATCH: usize = 4096;

/// The line for one event, newline included.
fn line(add: bool, target: &Target) -> String {
    let sign = if add { '+' } else { '-' };
    match target {
        Target::Session(id) => format!("{sign} session {id}\n"),
        Target::IdentitySessions(id) => format!("{sign} identity {id}\n"),
        Target::IdentifierSessions(identifier) => {
            // A JSON string escapes newlines and control characters: one line, unambiguous.
            let quoted = serde_json::to_string(identifier)
                .unwrap_or_else(|_| format!("\"{}\"", identifier.escape_default()));
            format!("{sign} identifier {quoted}\n")
        }
    }
}

/// Reads one line (without its newline): `Some((is_add, target))`, or `None` if it is not an
/// event.
fn parse_line(line: &str) -> Option<(bool, Target)> {
    let (sign, rest) = line.split_once(' ')?;
    let add = match sign {
        "+" => true,
        "-" => false,
        _ => return None,
    };
    let (kind, value) = rest.split_once(' ')?;
    let target = match kind {
        "session" => Target::Session(Uuid::parse_str(value).ok()?),
        "identity" => Target::IdentitySessions(Uuid::parse_str(value).ok()?),
        "identifier" => {
            if !value.starts_with('"') {
                return None;
            }
            Target::IdentifierSessions(serde_json::from_str::<String>(value).ok()?)
        }
        _ => return None,
    };
    Some((add, target))
}

/// What a journal file says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Targets whose last event is `+`, in the order they were first accepted.
    pub pending: Vec<Target>,
    /// A last line without its newline (a crash during a write) was ignored.
    pub torn: bool,
    /// Complete lines that are not events (ignored).
    pub malformed: usize,
}

/// Computes the pending targets from the journal's bytes.
pub fn replay(bytes: &[u8]) -> Replay {
    let mut out = Replay::default();
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // After the last newline: empty, or the start of a line the crash cut short.
    if let Some(last) = lines.pop() {
        out.torn = !last.is_empty();
    }
    // Position in `order` of each target whose last event is `+`.
    let mut live: HashMap<Target, usize> = HashMap::new();
    let mut order: Vec<Option<Target>> = Vec::new();
    for raw in lines {
        let Ok(text) = std::str::from_utf8(raw) else {
            out.malformed += 1;
            continue;
        };
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(text) {
            Some((true, target)) => {
                if !live.contains_key(&target) {
                    live.insert(target.clone(), order.len());
                    order.push(Some(target));
                }
            }
            Some((false, target)) => {
                if let Some(slot) = live.remove(&target).and_then(|i| order.get_mut(i)) {
                    *slot = None;
                }
            }
            None => out.malformed += 1,
        }
    }
    out.pending = order.into_iter().flatten().collect();
    out
}

/// Writes `bytes` as the whole journal: a temporary file, fsync, rename over, fsync of the
/// directory. A crash at any point leaves either the old file or the new one.
fn rewrite(dir: &Path, bytes: &[u8]) -> io::Result<File> {
    let tmp = dir.join(TMP_NAME);
    let path = dir.join(FILE_NAME);
    {
        let mut f = private_file()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    OpenOptions::new().append(true).open(&path)
}

/// Files only the gateway's user reads: the journal names sessions and login addresses.
fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The journal's contents for exactly these pending targets.
fn compacted<'a>(pending: impl Iterator<Item = &'a Target>) -> Vec<u8> {
    let mut bytes = HEADER.as_bytes().to_vec();
    for t in pending {
        bytes.extend_from_slice(line(true, t).as_bytes());
    }
    bytes
}

enum Msg {
    Add(Target),
    Remove(Target),
    /// Answered once every event sent before it is on disk (or failed to get there).
    Sync(tokio::sync::oneshot::Sender<()>),
}

/// Sends events to the writer thread; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<Msg>,
}

impl Appender {
    /// `target` was accepted into the queue.
    pub fn accepted(&self, target: &Target) {
        let _ = self.tx.send(Msg::Add(target.clone()));
    }

    /// Kratos confirmed `target`.
    pub fn confirmed(&self, target: &Target) {
        let _ = self.tx.send(Msg::Remove(target.clone()));
    }

    /// Waits until every event sent so far has been written and fsync'd (graceful shutdown).
    pub async fn sync(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.tx.send(Msg::Sync(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// An opened journal: what to queue again, and the appender for new events.
pub struct Opened {
    pub appender: Appender,
    /// Pending targets to queue again (at most the capacity given to [`open`]).
    pub requeue: Vec<Target>,
    /// Pending targets beyond the capacity, not queued and no longer in the journal.
    pub dropped: Vec<Target>,
    pub torn: bool,
    pub malformed: usize,
}

/// Opens (creating if needed) the journal directory, takes its lock, reads the journal,
/// rewrites it to its first `capacity` pending targets and starts the writer thread.
pub fn open(dir: &Path, capacity: usize) -> Result<Opened, String> {
    open_with(dir, capacity, COMPACT_AT)
}

fn open_with(dir: &Path, capacity: usize, compact_at: u64) -> Result<Opened, String> {
    let fail = |what: &str, e: io::Error| {
        format!("revocation.journal: cannot {what} {}: {e}", dir.display())
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| fail("create the directory", e))?;
    let lock = private_file()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_NAME))
        .map_err(|e| fail("write in the directory", e))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(format!(
                "revocation.journal: {} is in use by another kratos-gate (each gateway needs a directory of its own)",
                dir.display()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail("lock a file in", e)),
    }
    let path = dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(fail("read the journal in", e)),
    };
    let Replay {
        mut pending,
        torn,
        malformed,
    } = replay(&bytes);
    let dropped = if pending.len() > capacity {
        pending.split_off(capacity)
    } else {
        Vec::new()
    };
    let fresh = compacted(pending.iter());
    let file = rewrite(dir, &fresh).map_err(|e| fail("write the journal in", e))?;
    let (tx, rx) = mpsc::channel();
    let writer = Writer {
        dir: dir.to_path_buf(),
        file,
        size: fresh.len() as u64,
        live_bytes: fresh.len() as u64,
        live: pending.iter().cloned().collect(),
        compact_at,
        needs_rewrite: false,
        last_error_log: None,
        _lock: lock,
    };
    std::thread::Builder::new()
        .name("revocation-journal".to_owned())
        .spawn(move || writer.run(rx))
        .map_err(|e| format!("revocation.journal: cannot start the writer thread: {e}"))?;
    Ok(Opened {
        appender: Appender { tx },
        requeue: pending,
        dropped,
        torn,
        malformed,
    })
}

struct Writer {
    dir: PathBuf,
    file: File,
    /// Bytes in the file.
    size: u64,
    /// Bytes the pending targets need (header included).
    live_bytes: u64,
    live: std::collections::HashSet<Target>,
    compact_at: u64,
    /// A write failed: the file's tail may be half a line, so rewrite it whole next time.
    needs_rewrite: bool,
    last_error_log: Option<Instant>,
    /// Held for the writer's lifetime: one gateway per directory.
    _lock: File,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        // Ends when every appender is gone (the gateway stopped).
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.write_batch(batch);
        }
    }

    fn write_batch(&mut self, batch: Vec<Msg>) {
        let mut buf = String::new();
        let mut waiting = Vec::new();
        for m in batch {
            match m {
                Msg::Add(t) => {
                    let l = line(true, &t);
                    if self.live.insert(t) {
                        self.live_bytes += l.len() as u64;
                        buf.push_str(&l);
                    }
                }
                Msg::Remove(t) => {
                    if self.live.remove(&t) {
                        self.live_bytes =
                            self.live_bytes.saturating_sub(line(true, &t).len() as u64);
                        buf.push_str(&line(false, &t));
                    }
                }
                Msg::Sync(reply) => waiting.push(reply),
            }
        }
        if !buf.is_empty() || self.needs_rewrite {
            let grown = self.size + buf.len() as u64;
            let result = if self.needs_rewrite
                || (grown > self.compact_at && grown > self.live_bytes.saturating_mul(4))
            {
                self.compact()
            } else {
                self.append(buf.as_bytes())
            };
            match result {
                Ok(()) => {
                    if self.needs_rewrite {
                        tracing::info!(dir = %self.dir.display(), "revocation journal written again");
                    }
                    self.needs_rewrite = false;
                }
                Err(e) => {
                    self.needs_rewrite = true;
                    let now = Instant::now();
                    if self
                        .last_error_log
                        .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
                    {
                        self.last_error_log = Some(now);
                        tracing::error!(dir = %self.dir.display(), error = %e, pending = self.live.len(), "cannot write the revocation journal; revocations go on, but a crash now would lose the unwritten ones");
                    }
                }
            }
        }
        for w in waiting {
            let _ = w.send(());
        }
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.file.sync_data()?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn compact(&mut self) -> io::Result<()> {
        let bytes = compacted(self.live.iter());
        self.file = rewrite(&self.dir, &bytes)?;
        self.size = bytes.len() as u64;
        self.live_bytes = self.size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Vec<Target> {
        vec![
            Target::Session(Uuid::from_u128(1)),
            Target::IdentitySessions(Uuid::from_u128(2)),
            Target::IdentifierSessions("mallory@example.com".to_owned()),
            Target::IdentifierSessions("two\nlines \"quoted\" \\ ünï\u{0}".to_owned()),
            Target::IdentifierSessions(String::new()),
            Target::IdentifierSessions("- session 00000000-0000-0000-0000-000000000001".to_owned()),
        ]
    }

    #[test]
    fn every_target_round_trips_as_one_line() {
        for t in targets() {
            for add in [true, false] {
                let l = line(add, &t);
                assert!(l.ends_with('\n'));
                assert_eq!(l.matches('\n').count(), 1, "{l:?}");
                assert_eq!(parse_line(l.trim_end_matches('\n')), Some((add, t.clone())));
            }
        }
    }

    #[test]
    fn pending_is_added_and_not_confirmed_in_first_order() {
        let [a, b, c, ..] = <[Target; 6]>::try_from(targets()).unwrap();
        let mut text = HEADER.to_owned();
        for (add, t) in [
            (true, &a),
            (true, &b),
            (false, &a),
            (true, &c),
            (true, &a),
            (false, &b),
            (true, &b),
            (false, &b),
        ] {
            text.push_str(&line(add, t));
        }
        let r = replay(text.as_bytes());
        assert_eq!(r.pending, vec![c, a]);
        assert!(!r.torn);
        assert_eq!(r.malformed, 0);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let a = Target::Session(Uuid::from_u128(7));
        let b = Target::IdentitySessions(Uuid::from_u128(8));
        let whole = format!("{HEADER}{}{}", line(true, &a), line(true, &b));
        // Every cut inside b's line: a stays, b is not half-read.
        let start = whole.len() - line(true, &b).len();
        for cut in start + 1..whole.len() {
            let r = replay(&whole.as_bytes()[..cut]);
            assert_eq!(r.pending, vec![a.clone()], "cut at {cut}");
            assert!(r.torn);
            assert_eq!(r.malformed, 0);
        }
        // A torn `-` keeps the target pending: it is sent again, which is harmless.
        let text = format!("{}{}", line(true, &a), line(false, &a));
        let r = replay(&text.as_bytes()[..text.len() - 1]);
        assert_eq!(r.pending, vec![a.clone()]);
        assert_eq!(replay(b"").pending, vec![]);
        assert!(!replay(b"").torn);
    }

    #[test]
    fn malformed_lines_are_skipped_and_counted() {
        let a = Target::Session(Uuid::from_u128(9));
        let text = format!(
            "{HEADER}garbage\n+ session not-a-uuid\n+ identifier unquoted\n{}",
            line(true, &a)
        );
        let mut bytes = text.into_bytes();
        // Invalid UTF-8: a line of its own, and inside an identifier.
        bytes.extend_from_slice(b"\xff\n+ identifier \"\xff\"\n");
        let r = replay(&bytes);
        assert_eq!(r.pending, vec![a]);
        assert_eq!(r.malformed, 5);
    }

    fn journal_text(dir: &Path) -> String {
        std::fs::read_to_string(dir.join(FILE_NAME)).unwrap()
    }

    /// Waits until everything sent is on disk.
    fn sync(a: &Appender) {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(a.sync());
    }

    #[test]
    fn open_replays_caps_and_compacts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("new/journal");
        let ts = targets();
        {
            let o = open(&dir, 100).unwrap();
            assert!(o.requeue.is_empty());
            for t in &ts {
                o.appender.accepted(t);
            }
            o.appender.confirmed(&ts[1]);
            sync(&o.appender);
        }
        // Simulated crash mid-write.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE_NAME))
            .unwrap();
        f.write_all(b"- session 00000000-0000").unwrap();
        drop(f);
        // The first writer thread is gone once its appender is; wait for its lock.
        let o = retry_open(&dir, 3);
        assert!(o.torn);
        let expected: Vec<Target> = ts.iter().filter(|t| **t != ts[1]).cloned().collect();
        assert_eq!(o.requeue, expected[..3].to_vec());
        assert_eq!(o.dropped, expected[3..].to_vec());
        // Rewritten to just the queued ones.
        assert_eq!(
            journal_text(&dir),
            String::from_utf8(compacted(expected[..3].iter())).unwrap()
        );
        assert!(!dir.join(TMP_NAME).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&dir.join(FILE_NAME)), 0o600);
        }
        drop(o);
    }

    fn retry_open(dir: &Path, capacity: usize) -> Opened {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match open(dir, capacity) {
                Ok(o) => return o,
                Err(e) if e.contains("in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn a_second_gateway_cannot_use_the_same_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let o = open(tmp.path(), 10).unwrap();
        let err = open(tmp.path(), 10).err().unwrap();
        assert!(err.contains("in use by another kratos-gate"), "{err}");
        drop(o);
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let err = open(&file.join("journal"), 10).err().unwrap();
        assert!(
            err.starts_with("revocation.journal: cannot create the directory"),
            "{err}"
        );
    }

    #[test]
    fn the_file_is_compacted_when_it_grows() {
        let tmp = tempfile::tempdir().unwrap();
        let compact_at = 4096;
        let o = open_with(tmp.path(), 100, compact_at).unwrap();
        let keep = Target::IdentifierSessions("stays@example.com".to_owned());
        o.appender.accepted(&keep);
        let mut largest = 0;
        for i in 0..2000u128 {
            let t = Target::Session(Uuid::from_u128(i));
            o.appender.accepted(&t);
            o.appender.confirmed(&t);
            if i % 50 == 0 {
                sync(&o.appender);
                largest = largest.max(std::fs::metadata(tmp.path().join(FILE_NAME)).unwrap().len());
            }
        }
        sync(&o.appender);
        // 2000 accepted and confirmed: about 200 KB without compaction; batches are at most
        // 100 events (about 6 KB) here.
        assert!(largest < compact_at + 8 * 1024, "{largest}");
        let r = replay(
            std::fs::read(tmp.path().join(FILE_NAME))
                .unwrap()
                .as_slice(),
        );
        assert_eq!(r.pending, vec![keep]);
        drop(o);
    }

    #[test]
    fn duplicate_and_unknown_events_write_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let o = open(tmp.path(), 100).unwrap();
        let t = Target::Session(Uuid::from_u128(3));
        o.appender.accepted(&t);
        o.appender.accepted(&t);
        o.appender.confirmed(&Target::Session(Uuid::from_u128(4)));
        sync(&o.appender);
        assert_eq!(
            journal_text(tmp.path()),
            format!("{HEADER}{}", line(true, &t))
        );
        drop(o);
    }
}
