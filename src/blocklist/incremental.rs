//! Reloads that cost what the edit costs: a one-line change to a million-id file re-reads
//! only the lines around it.
//!
//! After a whole-file parse by the line-oriented reader (`scan`) without a warning, the
//! [`Tracker`] keeps a fingerprint of the file instead of its bytes: the file cut into
//! chunks of whole lines (a chunk starts at a list item whose hash meets a condition, so
//! the cuts fall at the same items after an insertion or deletion and re-synchronise; and
//! at a section key and the line after it), each chunk's 128-bit hash, length and line
//! count (about 1 MB for 1,000,000 ids); the section keys' lines and where the
//! `identities:` block list is; and SHA-256 states about every 256 KiB.
//!
//! The next file is cut the same way and the two chunk lists aligned: between the chunks
//! they share are the changed regions, whole items ([`changed_regions`]). Each is read
//! alone, in the reader's state at that point of the file, when that is unambiguous: inside
//! the `identities` block, the line reader's shapes, no section key, and no invalid item,
//! no id listed twice or already listed elsewhere; outside the block, only comments and
//! blank lines changed; at most [`MAX_REGION_LINES`] lines in all. The new list is the last
//! one's entries with the regions' entries replaced and the later lines moved (see
//! [`super::table::Ids::with_region`]), and what changed is the regions' entries before and
//! after. Anything else is parsed whole.
//!
//! A file is read once, in order, through a buffer the tracker keeps ([`Tracker::scan`]):
//! that one pass takes the checksum (is it the list in force?), cuts and hashes the chunks
//! and feeds SHA-256 from the first chunk that differs from the last file's (resumed from
//! the last state kept before it: an unchanged start is not hashed again). Then only the
//! changed regions are read again, by position from the same open file, and checked against
//! the chunks' hashes; the whole file is in memory only for a whole parse. A file written in
//! place meanwhile is [`ReadError::Changed`], and read again by the caller.

use sha2::{Digest, Sha256};

use super::parse::{read_whole_summed, Collector, Parsed, SectionKind};
use super::scan::{scan_region, Layout};
use super::source::text_of;
use super::table::{IdTable, Ids};
use super::types::{Blocklist, Entry};
use crate::diagnostic::Diagnostic;
use crate::util::hex;

/// The largest changed region (lines, before or after the edit) read alone.
pub const MAX_REGION_LINES: u64 = 4096;

/// A chunk starts at one list item in this many (on average).
const CHUNK_ITEMS: u64 = 32;

/// A SHA-256 state is kept about every this many bytes.
const MARK_EVERY: usize = 256 * 1024;

/// What the last file put in force looked like, as far as an incremental reload needs it,
/// and the buffer files are read through.
#[derive(Default)]
pub struct Tracker {
    last: Option<FileIndex>,
    /// The SHA-256 (lower-case hex) of the last file read successfully.
    sha256: String,
    /// Kept between reloads: [`READ_BUFFER`] bytes, more only while a chunk is larger.
    buf: Vec<u8>,
    /// The buffer's size when not [`READ_BUFFER`] (tests).
    buffer: usize,
    /// The chunk list of the file before the last one, its allocation reused by the next
    /// pass.
    spare: Vec<Chunk>,
}

/// A map keyed by chunks or their hashes, which come from the operator's own file (not from
/// a client) and are seeded per process: hashed by foldhash, not by SipHash.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The buffer a file is read through.
pub const READ_BUFFER: usize = 512 * 1024;

struct FileIndex {
    chunks: Vec<Chunk>,
    marks: Vec<Mark>,
    block: Block,
    /// The line of every section key.
    keys: Vec<u64>,
    /// [`Blocklist::checksum`] of the list parsed from it.
    checksum: u64,
}
/// Some whole lines of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Chunk {
    hash: u128,
    len: u32,
    /// Line feeds in it.
    lines: u32,
}

/// The SHA-256 state after the bytes before chunk `chunk` (at byte `offset`).
#[derive(Clone)]
struct Mark {
    chunk: usize,
    offset: usize,
    state: Sha256,
}

/// The `identities:` block list.
#[derive(Debug, Clone, Copy)]
struct Block {
    key_line: u64,
    /// The line of the next section key, if one follows.
    end: Option<u64>,
    item_indent: usize,
}

impl Block {
    fn of(layout: &Layout) -> Option<Block> {
        let sections = &layout.sections;
        let at = sections
            .iter()
            .position(|s| s.kind == SectionKind::Identities)?;
        let s = sections.get(at)?;
        Some(Block {
            key_line: s.line,
            end: sections.get(at + 1).map(|n| n.line),
            item_indent: s.item_indent?,
        })
    }
}

/// What a reload read.
pub struct Reloaded {
    pub parsed: Parsed,
    /// For an incremental reload, the entries of the changed region before and after: all
    /// that differs between the last list and this one.
    region: Option<Box<(Blocklist, Blocklist)>>,
}

impl Reloaded {
    /// True when only the changed region was read.
    pub fn is_incremental(&self) -> bool {
        self.region.is_some()
    }

    /// Two lists whose differences are those from `old` (the list this reload started
    /// from) to the new one: the region's entries before and after, or `old` and the new
    /// list.
    pub fn diff_pair<'a>(&'a self, old: &'a Blocklist) -> (&'a Blocklist, &'a Blocklist) {
        match self.region.as_deref() {
            Some((before, after)) => (before, after),
            None => (old, &self.parsed.blocklist),
        }
    }
}

/// Where a reload reads a file's bytes: all in memory (a download), or a file opened once
/// and read by position, never by path, with the length it had when it was opened.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a std::fs::File, u64),
}

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    Io(std::io::Error),
    /// The file changed while it was read (written in place): read it again.
    Changed,
}

/// Why a reload put nothing in force.
#[derive(Debug)]
pub enum Failure {
    /// The content is not a valid list.
    Invalid(Vec<Diagnostic>),
    Read(ReadError),
    /// The content has to be parsed whole, and the caller asked for a changed region only.
    Whole,
}

impl Failure {
    /// The failure as the diagnostics of a reload of `name`.
    pub fn diagnostics(self, name: &str) -> Vec<Diagnostic> {
        match self {
            Failure::Invalid(d) => d,
            Failure::Read(e) => read_failed(&e, name),
            Failure::Whole => vec![Diagnostic::whole_file(
                name,
                "the file was not parsed whole".to_owned(),
            )],
        }
    }
}

impl From<ReadError> for Failure {
    fn from(e: ReadError) -> Self {
        Failure::Read(e)
    }
}

impl<'a> Input<'a> {
    fn len(&self) -> u64 {
        match self {
            Input::Bytes(b) => b.len() as u64,
            Input::File(_, len) => *len,
        }
    }

    /// Up to `buf.len()` bytes at `at`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        match self {
            Input::Bytes(b) => {
                let from = usize::try_from(at).unwrap_or(usize::MAX).min(b.len());
                let part = b.get(from..).unwrap_or_default();
                let n = part.len().min(buf.len());
                if let (Some(to), Some(from)) = (buf.get_mut(..n), part.get(..n)) {
                    to.copy_from_slice(from);
                }
                Ok(n)
            }
            Input::File(f, _) => read_file_at(f, buf, at),
        }
    }

    /// Bytes `from..to`: borrowed from memory, or read from the file. A file shorter than
    /// that changed since it was read.
    fn range(&self, from: usize, to: usize) -> Result<std::borrow::Cow<'a, [u8]>, ReadError> {
        match *self {
            Input::Bytes(b) => b
                .get(from..to)
                .map(std::borrow::Cow::Borrowed)
                .ok_or(ReadError::Changed),
            Input::File(..) => {
                let mut out = vec![0; to.saturating_sub(from)];
                let mut done = 0;
                while let Some(rest) = out.get_mut(done..).filter(|r| !r.is_empty()) {
                    match self.read_at(rest, (from + done) as u64) {
                        Ok(0) => return Err(ReadError::Changed),
                        Ok(n) => done += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(ReadError::Io(e)),
                    }
                }
                Ok(std::borrow::Cow::Owned(out))
            }
        }
    }
}

#[cfg(unix)]
fn read_file_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(f, buf, at)
}

#[cfg(not(unix))]
fn read_file_at(mut f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    use std::io::{Read, Seek};
    f.seek(std::io::SeekFrom::Start(at))?;
    f.read(buf)
}

/// One pass over a file: its checksum, its chunks and its SHA-256.
pub struct Scanned {
    /// [`content_checksum`] of the content.
    pub sum: u64,
    pub len: usize,
    chunks: Vec<Chunk>,
    marks: Vec<Mark>,
    sha256: String,
}

impl Tracker {
    /// Parses a whole file and remembers it; with its SHA-256.
    pub fn parse_full(
        &mut self,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Parsed, String), Vec<Diagnostic>> {
        let input = Input::Bytes(bytes);
        let scanned = self.scan(input).map_err(|e| read_failed(&e, name))?;
        match self.full(scanned, input, name) {
            Ok(read) => Ok((read.parsed, self.sha256.clone())),
            Err(f) => Err(f.diagnostics(name)),
        }
    }

    /// [`Tracker::parse_full`] of content handed over: its bytes are freed as soon as they
    /// are read, before the list is built, as a reload's whole parse does (start-up: a
    /// million-id file's 41 MB would otherwise add to the peak while the table is built).
    pub fn parse_full_owned(
        &mut self,
        bytes: Vec<u8>,
        name: &str,
    ) -> Result<(Parsed, String), Vec<Diagnostic>> {
        let scanned = self
            .scan(Input::Bytes(&bytes))
            .map_err(|e| read_failed(&e, name))?;
        match self.full_of(scanned, std::borrow::Cow::Owned(bytes), name) {
            Ok(read) => Ok((read.parsed, self.sha256.clone())),
            Err(f) => Err(f.diagnostics(name)),
        }
    }

    /// Remembers the file put in force; the chunk list of the one before is kept for the
    /// next pass to fill (a million-id file's is about 1 MB: not mapped and faulted in
    /// again on every reload).
    fn keep_last(&mut self, next: Option<FileIndex>) {
        if let Some(last) = std::mem::replace(&mut self.last, next) {
            self.spare = last.chunks;
        }
    }

    /// The SHA-256 (lower-case hex) of the file the last successful reload read.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Reads the whole content once, in order, through a buffer kept between reloads: its
    /// checksum, its chunks and, from the last state kept before its first chunk that
    /// differs from the last file's, its SHA-256 (an unchanged start is not hashed again).
    pub fn scan(&mut self, input: Input<'_>) -> Result<Scanned, ReadError> {
        let chunks = std::mem::take(&mut self.spare);
        if let Input::Bytes(_) = input {
            return self.scan_with(input, &mut Vec::new(), chunks);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let size = match self.buffer {
            0 => READ_BUFFER,
            n => n,
        };
        if buf.len() != size {
            buf = vec![0; size];
        }
        let result = self.scan_with(input, &mut buf, chunks);
        if buf.len() > size {
            // Grown for a large chunk: not kept.
            buf = Vec::new();
        }
        self.buf = buf;
        result
    }

    /// [`Tracker::scan`] through `buf`, into `chunks` (emptied first: its allocation is
    /// reused).
    fn scan_with(
        &self,
        input: Input<'_>,
        buf: &mut Vec<u8>,
        mut chunks: Vec<Chunk>,
    ) -> Result<Scanned, ReadError> {
        let (old_chunks, old_marks) = self
            .last
            .as_ref()
            .map_or((&[][..], &[][..]), |l| (&l.chunks[..], &l.marks[..]));
        let len = usize::try_from(input.len()).map_err(|_| ReadError::Changed)?;
        let mut pass = Pass {
            input,
            old: old_chunks,
            old_marks,
            chunks: {
                chunks.clear();
                chunks.reserve(len / 1024 + 1);
                chunks
            },
            marks: Vec::new(),
            sha: None,
            offset: 0,
            last_mark: 0,
            next_old: (!old_chunks.is_empty()).then_some(0),
            pending: None,
            by_hash: None,
            delta: 0,
            misses: 0,
        };
        match input {
            Input::Bytes(bytes) => {
                pass.process(bytes, true)?;
            }
            Input::File(..) => {
                let (mut filled, mut pos) = (0usize, 0u64);
                loop {
                    if filled == buf.len() {
                        buf.resize(buf.len() * 2, 0);
                    }
                    let n = match input.read_at(buf.get_mut(filled..).unwrap_or_default(), pos) {
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ReadError::Io(e)),
                    };
                    filled += n;
                    pos += n as u64;
                    let end = n == 0;
                    if pos > input.len() || (end && pos != input.len()) {
                        return Err(ReadError::Changed);
                    }
                    let data = buf.get(..filled).unwrap_or_default();
                    let used = pass.process(data, end)?;
                    if end {
                        break;
                    }
                    buf.copy_within(used..filled, 0);
                    filled -= used;
                }
            }
        }
        let sum = sum_of_chunks(&pass.chunks, len);
        let sha256 = match pass.sha.take() {
            None if pass.chunks.len() == old_chunks.len() => {
                // Every chunk as in the last file: the same bytes.
                pass.marks = old_marks.to_vec();
                self.sha256.clone()
            }
            sha => {
                let mut sha = match sha {
                    Some(s) => s,
                    None => pass.resume()?,
                };
                hex(&std::mem::replace(&mut sha, Sha256::new()).finalize())
            }
        };
        Ok(Scanned {
            sum,
            len,
            chunks: pass.chunks,
            marks: pass.marks,
            sha256,
        })
    }

    /// Parses the content `scanned` came from: only its changed regions when that is
    /// unambiguous, else all of it. `current` is the list parsed from the last file given
    /// here. On an error nothing is remembered: the last list stays in force. Without
    /// `whole`, [`Failure::Whole`] instead of a whole parse.
    pub fn reload_scanned(
        &mut self,
        current: &Blocklist,
        scanned: Scanned,
        input: Input<'_>,
        name: &str,
        whole: bool,
    ) -> Result<Reloaded, Failure> {
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|l| l.checksum == current.checksum)
        {
            if let Some(regions) = regions_to_read(last, &scanned.chunks) {
                let texts = read_regions(&regions, &scanned.chunks, input)?;
                if let Some((reloaded, index)) = incremental(
                    last,
                    current,
                    &regions,
                    &texts,
                    &scanned.chunks,
                    scanned.sum,
                    name,
                ) {
                    let next = FileIndex {
                        chunks: scanned.chunks,
                        marks: scanned.marks,
                        ..index
                    };
                    self.keep_last(Some(next));
                    self.sha256 = scanned.sha256;
                    return Ok(reloaded);
                }
            }
        }
        if !whole {
            return Err(Failure::Whole);
        }
        self.full(scanned, input, name)
    }

    /// Reads and parses `bytes` ([`Tracker::scan`], then [`Tracker::reload_scanned`]).
    pub fn reload(
        &mut self,
        current: &Blocklist,
        bytes: &[u8],
        name: &str,
    ) -> Result<Reloaded, Vec<Diagnostic>> {
        let input = Input::Bytes(bytes);
        let scanned = self.scan(input).map_err(|e| read_failed(&e, name))?;
        self.reload_scanned(current, scanned, input, name, true)
            .map_err(|f| f.diagnostics(name))
    }

    fn full(
        &mut self,
        scanned: Scanned,
        input: Input<'_>,
        name: &str,
    ) -> Result<Reloaded, Failure> {
        let bytes = input.range(0, scanned.len)?;
        // Bytes read again from a file are those the pass took only if their checksum is.
        if matches!(input, Input::File(..)) && content_checksum(&bytes) != scanned.sum {
            return Err(ReadError::Changed.into());
        }
        self.full_of(scanned, bytes, name)
    }

    /// A whole parse of `bytes`, the content `scanned` describes.
    fn full_of(
        &mut self,
        scanned: Scanned,
        bytes: std::borrow::Cow<'_, [u8]>,
        name: &str,
    ) -> Result<Reloaded, Failure> {
        let text = text_of(&bytes, name).map_err(Failure::Invalid)?;
        let whole = read_whole_summed(text, name, scanned.sum).map_err(Failure::Invalid)?;
        // The list is built without the file's bytes: a read file's copy is freed first.
        drop(bytes);
        let (parsed, layout) = whole.finish().map_err(Failure::Invalid)?;
        let Scanned {
            chunks,
            marks,
            sha256,
            ..
        } = scanned;
        let next = layout
            .filter(|_| parsed.warnings.is_empty())
            .and_then(|l| Some((Block::of(&l)?, l)))
            .map(|(block, layout)| FileIndex {
                chunks,
                marks,
                block,
                keys: layout.sections.iter().map(|s| s.line).collect(),
                checksum: parsed.blocklist.checksum,
            });
        self.keep_last(next);
        self.sha256 = sha256;
        Ok(Reloaded {
            parsed,
            region: None,
        })
    }
}

/// A read error as the diagnostic of a reload.
pub fn read_failed(e: &ReadError, name: &str) -> Vec<Diagnostic> {
    let m = match e {
        ReadError::Io(e) => format!("cannot read the file: {e}"),
        ReadError::Changed => "the file kept changing while it was read".to_owned(),
    };
    vec![Diagnostic::whole_file(name, m)]
}

/// The state of one [`Tracker::scan`].
struct Pass<'a> {
    input: Input<'a>,
    old: &'a [Chunk],
    old_marks: &'a [Mark],
    chunks: Vec<Chunk>,
    marks: Vec<Mark>,
    /// From the first chunk that differs from the last file's on.
    sha: Option<Sha256>,
    /// Where the next chunk starts.
    offset: usize,
    /// Where the last state in `marks` was taken.
    last_mark: usize,
    /// The last file's chunk the next one is checked against by its hash alone, without
    /// cutting lines: after a chunk equal to the one before it in the last file.
    next_old: Option<usize>,
    /// A chunk found equal to the last file's this one (its length and lines), not yet
    /// taken: its end is a cut only if the line after it is as in the last file too.
    pending: Option<Chunk>,
    /// The last file's chunks by hash, to take up the check after a changed region that
    /// [`Pass::old_index`] did not find near.
    by_hash: Option<FastMap<u128, usize>>,
    /// The last file's index of a chunk less this file's, as of the last chunk found in
    /// both after a difference.
    delta: isize,
    /// Chunks cut since a difference that were not found in the last file near it.
    misses: usize,
}

impl Pass<'_> {
    /// Takes in `data`, which starts at a chunk's start (where the last call left off);
    /// `end` when it ends the file. Returns the bytes taken: `data` up to the first chunk
    /// not known to be complete, read again with what follows.
    ///
    /// While the chunks are those of the last file, each next one is checked by hashing as
    /// many bytes as the last file's had, without looking at lines. Such a chunk is taken
    /// once the one after it is found equal too (its first line then is as in the last file,
    /// so the cut before it falls where it did); when the one after it is not, the lines are
    /// cut again from its start. The chunks are those a cut of every line would give.
    fn process(&mut self, data: &[u8], end: bool) -> Result<usize, ReadError> {
        // The pending chunk, if any, is where the last call left off.
        let mut at = self.pending.map_or(0, |p| p.len as usize);
        loop {
            if let Some(i) = self.next_old {
                let start = at - self.pending.map_or(0, |p| p.len as usize);
                let next = self.old.get(i).copied();
                let fits = next.filter(|c| at + c.len as usize <= data.len());
                match fits {
                    // Followed by at least one byte: not the file's last chunk.
                    Some(c) if at + (c.len as usize) < data.len() => {
                        let bytes = data.get(at..at + c.len as usize).unwrap_or_default();
                        if crate::util::content_hash(bytes) == c.hash {
                            if let Some(p) = self.pending.take() {
                                let taken = data.get(start..at).unwrap_or_default();
                                self.take(taken, p)?;
                            }
                            self.pending = Some(c);
                            at += c.len as usize;
                            self.next_old = Some(i + 1);
                            continue;
                        }
                    }
                    _ if !end && next.is_some() => return Ok(start),
                    _ => {}
                }
                // Not equal, or the end of either file: the lines from the pending chunk on
                // are cut.
                self.pending = None;
                self.next_old = None;
                at = start;
            }
            let rest = data.get(at..).unwrap_or_default();
            let mut resync = None;
            let cut = cut_chunks(rest, end, |bytes, lines| {
                let c = Chunk {
                    hash: crate::util::content_hash(bytes),
                    len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                    lines,
                };
                self.take(bytes, c)?;
                resync = self.old_index(&c).map(|j| j + 1);
                Ok(resync.is_some())
            })?;
            at += cut.used;
            if cut.finished {
                return Ok(data.len());
            }
            match resync {
                Some(j) if cut.stopped => self.next_old = Some(j),
                _ => return Ok(at),
            }
        }
    }

    /// Where chunk `c`, just taken, is in the last file: the one at the same place while
    /// every chunk so far has been the last file's; else an equal one within
    /// [`RESYNC_WINDOW`] chunks of where the chunks found in both since the difference put
    /// it (after an edit the next common chunk is there, and no map of every chunk is
    /// built); after more than [`RESYNC_WINDOW`] chunks not found so, the first equal one
    /// anywhere. Which equal chunk is taken does not change the chunks cut: the ones after
    /// it are checked by their hashes.
    fn old_index(&mut self, c: &Chunk) -> Option<usize> {
        let at = self.chunks.len() - 1;
        if self.sha.is_none() {
            return (self.old.get(at) == Some(c)).then_some(at);
        }
        let old = self.old;
        if self.misses <= RESYNC_WINDOW {
            let expect = at.saturating_add_signed(self.delta);
            let from = expect.saturating_sub(RESYNC_WINDOW).min(old.len());
            let to = expect.saturating_add(RESYNC_WINDOW + 1).min(old.len());
            let near = old.get(from..to).unwrap_or_default();
            if let Some(k) = near.iter().position(|o| o == c) {
                self.misses = 0;
                self.delta = (from + k) as isize - at as isize;
                return Some(from + k);
            }
            self.misses += 1;
            if self.misses <= RESYNC_WINDOW {
                return None;
            }
        }
        let by_hash = self.by_hash.get_or_insert_with(|| {
            let mut m = FastMap::with_capacity_and_hasher(old.len(), Default::default());
            for (k, o) in old.iter().enumerate().rev() {
                m.insert(o.hash, k);
            }
            m
        });
        by_hash
            .get(&c.hash)
            .copied()
            .filter(|&j| old.get(j) == Some(c))
    }

    /// Takes the next chunk, `bytes`.
    fn take(&mut self, bytes: &[u8], c: Chunk) -> Result<(), ReadError> {
        let at = self.chunks.len();
        if self.sha.is_none() && self.old.get(at) != Some(&c) {
            self.sha = Some(self.resume()?);
        }
        self.chunks.push(c);
        self.offset += bytes.len();
        if let Some(sha) = self.sha.as_mut() {
            sha.update(bytes);
            if self.offset - self.last_mark >= MARK_EVERY {
                self.marks.push(Mark {
                    chunk: at + 1,
                    offset: self.offset,
                    state: sha.clone(),
                });
                self.last_mark = self.offset;
                // Hashing a large file is most of a reload's CPU (20 ms for 41 MB). The
                // reload thread runs at nice 19, but a thread holding a core keeps it for its
                // time slice (1.4 ms on 2 CPUs) against a request's thread that wakes: offering
                // the core every 256 KB (about 0.15 ms) bounds that wait. When nothing else
                // is runnable the scan goes on at once.
                std::thread::yield_now();
            }
        }
        Ok(())
    }

    /// The SHA-256 state at the start of the next chunk, the chunks before it being the last
    /// file's: from the last state kept before it, over the bytes since (read again).
    fn resume(&mut self) -> Result<Sha256, ReadError> {
        let at = self.chunks.len();
        let keep = self.old_marks.partition_point(|m| m.chunk <= at);
        self.marks = self.old_marks.get(..keep).unwrap_or_default().to_vec();
        let (mut sha, from) = match self.marks.last() {
            Some(m) => (m.state.clone(), m.offset),
            None => (Sha256::new(), 0),
        };
        sha.update(&self.input.range(from, self.offset)?);
        self.last_mark = from;
        Ok(sha)
    }
}

/// The changed regions between the last file and the chunks of the next one, when they are
/// few and small enough to be read alone.
fn regions_to_read(last: &FileIndex, chunks: &[Chunk]) -> Option<Vec<Change>> {
    let old = &last.chunks;
    let regions = changed_regions(old, chunks)?;
    let total: u64 = regions
        .iter()
        .map(|r| {
            let o = old.get(r.old.0..r.old.1).map_or(u64::MAX, lines_in);
            let n = chunks.get(r.new.0..r.new.1).map_or(u64::MAX, lines_in);
            o.max(n)
        })
        .fold(0, u64::saturating_add);
    (total <= MAX_REGION_LINES).then_some(regions)
}

fn lines_in(cs: &[Chunk]) -> u64 {
    cs.iter().map(|c| u64::from(c.lines)).sum()
}

fn size_of(cs: &[Chunk]) -> usize {
    cs.iter().map(|c| c.len as usize).sum()
}

/// The new bytes of each region, read again and checked against the chunks' hashes: a file
/// written in place since the pass is [`ReadError::Changed`].
fn read_regions<'a>(
    regions: &[Change],
    chunks: &[Chunk],
    input: Input<'a>,
) -> Result<Vec<std::borrow::Cow<'a, [u8]>>, ReadError> {
    let mut out = Vec::with_capacity(regions.len());
    for r in regions {
        let start = size_of(chunks.get(..r.new.0).unwrap_or_default());
        let after = chunks.get(r.new.0..r.new.1).unwrap_or_default();
        let bytes = input.range(start, start + size_of(after))?;
        if matches!(input, Input::File(..)) {
            let mut at = 0;
            for c in after {
                let part = bytes.get(at..at + c.len as usize).unwrap_or_default();
                if crate::util::content_hash(part) != c.hash {
                    return Err(ReadError::Changed);
                }
                at += c.len as usize;
            }
        }
        out.push(bytes);
    }
    Ok(out)
}

/// One changed region: old chunks `old.0..old.1` became new chunks `new.0..new.1`, the last
/// ones of the file when `to_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Change {
    old: (usize, usize),
    new: (usize, usize),
    to_end: bool,
}

/// Chunks looked ahead for the next common one after a difference.
const RESYNC_WINDOW: usize = 256;

/// At most this many changed regions are read alone.
const MAX_REGIONS: usize = 64;

/// Aligns two chunk lists: the regions where they differ, in order, or `None` when a
/// difference does not re-synchronise within [`RESYNC_WINDOW`] chunks or there are too
/// many. Between the regions the chunks are equal.
fn changed_regions(old: &[Chunk], new: &[Chunk]) -> Option<Vec<Change>> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    loop {
        while let (Some(a), Some(b)) = (old.get(i), new.get(j)) {
            if a != b {
                break;
            }
            i += 1;
            j += 1;
        }
        if i == old.len() && j == new.len() {
            return Some(out);
        }
        if out.len() == MAX_REGIONS {
            return None;
        }
        // The first later new chunk that is one of the next old ones.
        let ahead: FastMap<&Chunk, usize> = old
            .get(i..old.len().min(i + RESYNC_WINDOW))?
            .iter()
            .enumerate()
            .rev()
            .map(|(k, c)| (c, i + k))
            .collect();
        let hit = new
            .get(j..new.len().min(j + RESYNC_WINDOW))?
            .iter()
            .enumerate()
            .find_map(|(k, c)| ahead.get(c).map(|&oi| (oi, j + k)));
        match hit {
            Some((oi, nj)) => {
                out.push(Change {
                    old: (i, oi),
                    new: (j, nj),
                    to_end: false,
                });
                i = oi;
                j = nj;
            }
            None if old.len() - i <= RESYNC_WINDOW && new.len() - j <= RESYNC_WINDOW => {
                out.push(Change {
                    old: (i, old.len()),
                    new: (j, new.len()),
                    to_end: true,
                });
                return Some(out);
            }
            None => return None,
        }
    }
}

/// The incremental reload, or `None` when the file must be parsed whole. The index returned
/// has no chunks yet: they are `chunks`.
fn incremental(
    last: &FileIndex,
    current: &Blocklist,
    regions: &[Change],
    texts: &[std::borrow::Cow<'_, [u8]>],
    chunks: &[Chunk],
    sum: u64,
    name: &str,
) -> Option<(Reloaded, FileIndex)> {
    let old = &last.chunks;
    let lines = lines_in;
    let block = last.block;
    // Each region's old lines, and the entries there (one pass over the list).
    let mut spans = Vec::with_capacity(regions.len());
    for r in regions {
        let from = 1 + lines(old.get(..r.old.0)?);
        let to = (!r.to_end).then_some(from + lines(old.get(r.old.0..r.old.1)?));
        spans.push((from, to));
    }
    let mut olds = current.identities.in_ranges(&spans).into_iter();
    let mut ids = current.identities.clone();
    let mut gone_all: Vec<(u128, Entry)> = Vec::new();
    let mut new_all: Vec<(u128, Entry)> = Vec::new();
    // (old line from which, lines moved by) per region, in old lines.
    let mut moves: Vec<(Option<u64>, i64)> = Vec::new();
    // Lines the regions before this one moved the rest by.
    let mut shift: i64 = 0;
    for (r, text) in regions.iter().zip(texts) {
        let before = old.get(r.old.0..r.old.1)?;
        let after = chunks.get(r.new.0..r.new.1)?;
        let old_from = 1 + lines(old.get(..r.old.0)?);
        let from = 1 + lines(chunks.get(..r.new.0)?);
        let (old_lines, new_lines) = (lines(before), lines(after));
        // Old lines `old_from..old_to`; in the list as far as it is updated, `from..to`.
        let old_to = (!r.to_end).then_some(old_from + old_lines);
        let to = (!r.to_end).then_some(from + old_lines);
        let text = std::str::from_utf8(text).ok()?;
        let mut c = Collector::for_region(name);
        if !scan_region(text, from, block.item_indent, &mut c) {
            return None;
        }
        let new = c.into_identities()?;
        // In old lines: the same entries as in `ids` (`from..to`), earlier regions being
        // before this one.
        let gone = olds.next()?;
        let in_block = old_from > block.key_line
            && match (old_to, block.end) {
                (None, Some(_)) => false,
                (Some(t), Some(end)) => t <= end,
                (_, None) => true,
            };
        // Outside the identities block only comments and blank lines may change: no key, no
        // item before or after.
        if !in_block
            && (!new.is_empty()
                || !gone.is_empty()
                || other_entries_in(current, old_from, old_to)
                || last
                    .keys
                    .iter()
                    .any(|&k| k >= old_from && old_to.is_none_or(|t| k < t)))
        {
            return None;
        }
        // An id of the region listed elsewhere too is a duplicate: a warning, parsed whole.
        if new.iter().any(|(id, _)| {
            ids.get_raw(*id).is_some() && gone.binary_search_by_key(id, |(k, _)| *k).is_err()
        }) {
            return None;
        }
        let by = i64::try_from(new_lines).ok()? - i64::try_from(old_lines).ok()?;
        ids = ids.with_region(from, to, by, &gone, new.clone());
        gone_all.extend(gone);
        new_all.extend(new);
        moves.push((old_to, by));
        shift += by;
    }
    // Lines of the old file as they are in the new one.
    let moved = |line: u64| {
        let by: i64 = moves
            .iter()
            .filter(|(t, _)| t.is_some_and(|t| line >= t))
            .map(|(_, by)| by)
            .sum();
        line.saturating_add_signed(by)
    };
    gone_all.sort_unstable_by_key(|(id, _)| *id);
    new_all.sort_unstable_by_key(|(id, _)| *id);
    let region_list = |entries: &[(u128, Entry)]| Blocklist {
        identities: Ids::from(IdTable::from_entries(
            entries.len(),
            entries.iter().cloned(),
        )),
        ..Blocklist::default()
    };
    let region = Box::new((region_list(&gone_all), region_list(&new_all)));
    let shift_entry = |e: &Entry| {
        let mut e = e.clone();
        e.line = moved(e.line);
        e
    };
    let mut networks = current.networks.clone();
    if shift != 0 || moves.iter().any(|m| m.1 != 0) {
        let nets: Vec<_> = current.networks.iter().map(|(n, _)| n).collect();
        for n in nets {
            if let Some(e) = networks.get_mut(&n) {
                e.line = moved(e.line);
            }
        }
    }
    let blocklist = Blocklist {
        identities: ids,
        emails: current
            .emails
            .iter()
            .map(|(k, e)| (k.clone(), shift_entry(e)))
            .collect(),
        domains: current
            .domains
            .iter()
            .map(|(k, e)| (k.clone(), shift_entry(e)))
            .collect(),
        networks,
        checksum: sum,
    };
    let keys: Vec<u64> = last.keys.iter().map(|&k| moved(k)).collect();
    let index = FileIndex {
        chunks: Vec::new(),
        marks: Vec::new(),
        block: Block {
            key_line: moved(block.key_line),
            end: block.end.map(moved),
            ..block
        },
        keys,
        checksum: sum,
    };
    let reloaded = Reloaded {
        parsed: Parsed {
            blocklist,
            warnings: Vec::new(),
        },
        region: Some(region),
    };
    Some((reloaded, index))
}

/// True when an e-mail, domain or network entry starts in old lines `from..to`.
fn other_entries_in(list: &Blocklist, from: u64, to: Option<u64>) -> bool {
    let inside = |e: &Entry| e.line >= from && to.is_none_or(|t| e.line < t);
    list.emails.values().any(inside)
        || list.domains.values().any(inside)
        || list.networks.iter().any(|(_, e)| inside(e))
}

/// The checksum of a file's content that tells it from the content of the list in force
/// ([`Blocklist::checksum`]): a hash of its chunks' hashes ([`cut_chunks`]) and its length,
/// so that the pass that hashes the chunks takes it without hashing every byte twice. Equal
/// content cuts into equal chunks, so its checksum is equal however it was read; content that
/// differs in any byte has a chunk whose 128-bit hash differs. Seeded per process, as the
/// chunks' hashes are ([`crate::util::content_hash`]).
pub(super) fn content_checksum(bytes: &[u8]) -> u64 {
    let mut chunks = Vec::new();
    let cut = cut_chunks(bytes, true, |part, lines| {
        chunks.push(Chunk {
            hash: crate::util::content_hash(part),
            len: u32::try_from(part.len()).unwrap_or(u32::MAX),
            lines,
        });
        Ok::<_, std::convert::Infallible>(false)
    });
    debug_assert!(cut.is_ok_and(|c| c.finished));
    sum_of_chunks(&chunks, bytes.len())
}

/// [`content_checksum`] of content cut into `chunks`, `len` bytes in all.
fn sum_of_chunks(chunks: &[Chunk], len: usize) -> u64 {
    const BATCH: usize = 64;
    let mut sum = crate::util::Checksum::new();
    let mut bytes = [0u8; BATCH * 24];
    for batch in chunks.chunks(BATCH) {
        for (c, to) in batch.iter().zip(bytes.chunks_exact_mut(24)) {
            let (hash, rest) = to.split_at_mut(16);
            let (len, lines) = rest.split_at_mut(4);
            hash.copy_from_slice(&c.hash.to_le_bytes());
            len.copy_from_slice(&c.len.to_le_bytes());
            lines.copy_from_slice(&c.lines.to_le_bytes());
        }
        sum.update(bytes.get(..batch.len() * 24).unwrap_or_default());
    }
    sum.update(&(len as u64).to_le_bytes());
    sum.finish()
}

/// What [`cut_chunks`] took.
struct Cut {
    /// Bytes in the chunks given.
    used: usize,
    /// `emit` asked to stop after the last one.
    stopped: bool,
    /// The file's last chunk was given.
    finished: bool,
}

/// Cuts `data`, which starts at a chunk's start, into chunks of whole lines: a chunk
/// starts at the file's start and where [`starts_chunk`] says. Gives each complete chunk
/// and its line feeds to `emit` (which returns true to stop there), up to all of `data`
/// when it ends the file (`end`), else up to the start of the chunk its last, incomplete,
/// line is in (read again with what follows). Where the chunks are cut depends only on the
/// lines from a chunk's start on, so reading again from there cuts them as one pass over
/// the whole file would.
fn cut_chunks<E>(
    data: &[u8],
    end: bool,
    mut emit: impl FnMut(&[u8], u32) -> Result<bool, E>,
) -> Result<Cut, E> {
    let mut start = 0;
    let mut lines = 0u32;
    let mut line_start = 0;
    let mut after_key = false;
    let mut line_ends = memchr::memchr_iter(b'\n', data);
    loop {
        let nl = line_ends.next();
        if nl.is_none() && !end {
            return Ok(Cut {
                used: start,
                stopped: false,
                finished: false,
            });
        }
        let line = data
            .get(line_start..nl.unwrap_or(data.len()))
            .unwrap_or_default();
        let (cut, key) = starts_chunk(line);
        if line_start > start && (cut || after_key) {
            let stop = emit(data.get(start..line_start).unwrap_or_default(), lines)?;
            start = line_start;
            lines = 0;
            if stop {
                return Ok(Cut {
                    used: start,
                    stopped: true,
                    finished: false,
                });
            }
        }
        match nl {
            Some(nl) => {
                lines += 1;
                line_start = nl + 1;
                after_key = key;
            }
            None => break,
        }
    }
    let stopped = emit(data.get(start..).unwrap_or_default(), lines)?;
    Ok(Cut {
        used: data.len(),
        stopped,
        finished: true,
    })
}

/// Whether a chunk starts at `line`: a list item whose hash is one in [`CHUNK_ITEMS`], or
/// a line at column 1 that is no item, comment or blank line (a section key); and whether
/// it is such a key (the line after one starts a chunk too). Section keys cut chunks so
/// that a changed region ends at the key after its block and starts after the key before.
fn starts_chunk(line: &[u8]) -> (bool, bool) {
    let spaces = line.iter().take_while(|&&b| b == b' ').count();
    let content = line.get(spaces..).unwrap_or_default();
    if content.starts_with(b"- ") || content == b"-" {
        return (cut_hash(line).is_multiple_of(CHUNK_ITEMS), false);
    }
    let key = spaces == 0 && content.first().is_some_and(|&b| b != b'#');
    (key, key)
}

/// The hash of a list item's line that decides whether a chunk starts there: its first 16
/// and last 8 bytes (the indentation, the start of the value, the end of the line; fewer in
/// a shorter line) and its length, folded by 128-bit multiplications. Cheaper than hashing
/// the whole line, and enough to spread the cuts: for an id line, 20 of its hex digits.
/// Only where chunks are cut depends on it; whether two chunks are equal is decided by
/// their hashes over every byte.
fn cut_hash(line: &[u8]) -> u64 {
    // Eight bytes from `at` as a little-endian number; fewer, zero-extended, at the end.
    let word = |at: usize| match line.get(at..at + 8).map(<[u8; 8]>::try_from) {
        Some(Ok(w)) => u64::from_le_bytes(w),
        _ => line
            .get(at..)
            .unwrap_or_default()
            .iter()
            .rev()
            .fold(0, |w, &b| w << 8 | u64::from(b)),
    };
    let fold = |x: u64, y: u64| {
        let p = u128::from(x) * u128::from(y);
        (p as u64) ^ ((p >> 64) as u64)
    };
    let head = fold(
        word(0) ^ 0x9e37_79b9_7f4a_7c15,
        word(8) ^ 0xc2b2_ae3d_27d4_eb4f,
    );
    let tail = word(line.len().saturating_sub(8)) ^ line.len() as u64;
    fold(head ^ tail, 0x1656_67b1_9e37_79f9)
}

impl Blocklist {
    /// This list with its identity overlay folded into a new table, when the overlay has
    /// grown past its limits; `None` otherwise. Equal to `self` in every respect.
    #[doc(hidden)]
    pub fn compacted(&self) -> Option<Blocklist> {
        self.identities
            .needs_compaction()
            .then(|| self.compacted_now())
    }

    /// [`Blocklist::compacted`] whatever the overlay's size.
    #[doc(hidden)]
    pub fn compacted_now(&self) -> Blocklist {
        Blocklist {
            identities: self.identities.compacted(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests;
