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

use sha2::{Digest, Sha256};

use super::parse::{parse_with_layout, Collector, Parsed, SectionKind};
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

/// What the last file put in force looked like, as far as an incremental reload needs it.
#[derive(Default)]
pub struct Tracker {
    last: Option<FileIndex>,
}

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

/// What a reload read. The file's SHA-256 is left to [`Tracker::sha256`], so that the list
/// can be put in force first.
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

impl Tracker {
    /// Parses a whole file and remembers it; with its SHA-256.
    pub fn parse_full(
        &mut self,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Parsed, String), Vec<Diagnostic>> {
        let read = self.full(bytes, name, None)?;
        Ok((read.parsed, self.sha256(bytes)))
    }

    /// The SHA-256 (lower-case hex) of `bytes`, the file the last successful
    /// [`Tracker::reload`] read: from the last state kept before its first change when it was
    /// incremental.
    pub fn sha256(&mut self, bytes: &[u8]) -> String {
        match self.last.as_mut() {
            Some(last) => sha256_from(bytes, &last.chunks, &mut last.marks),
            None => crate::util::sha256_hex(bytes),
        }
    }

    /// Parses the next file: only its changed region when that is unambiguous, else all of
    /// it. `current` is the list parsed from the last file given here (with
    /// `checksum(bytes)` as `sum`). On an error nothing is remembered: the last list stays in
    /// force.
    pub fn reload(
        &mut self,
        current: &Blocklist,
        bytes: &[u8],
        sum: u64,
        name: &str,
    ) -> Result<Reloaded, Vec<Diagnostic>> {
        let chunks = chunks(bytes);
        if let Some(last) = self
            .last
            .as_ref()
            .filter(|l| l.checksum == current.checksum)
        {
            if let Some((reloaded, index)) = incremental(last, current, bytes, &chunks, sum, name) {
                self.last = Some(FileIndex { chunks, ..index });
                return Ok(reloaded);
            }
        }
        self.full(bytes, name, Some(chunks))
    }

    fn full(
        &mut self,
        bytes: &[u8],
        name: &str,
        chunks: Option<Vec<Chunk>>,
    ) -> Result<Reloaded, Vec<Diagnostic>> {
        let text = text_of(bytes, name)?;
        let (parsed, layout) = parse_with_layout(text, name)?;
        let chunks = chunks.unwrap_or_else(|| self::chunks(bytes));
        self.last = layout
            .filter(|_| parsed.warnings.is_empty())
            .and_then(|l| Some((Block::of(&l)?, l)))
            .map(|(block, layout)| FileIndex {
                chunks,
                marks: Vec::new(),
                block,
                keys: layout.sections.iter().map(|s| s.line).collect(),
                checksum: parsed.blocklist.checksum,
            });
        Ok(Reloaded {
            parsed,
            region: None,
        })
    }
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
        let ahead: std::collections::HashMap<&Chunk, usize> = old
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
    bytes: &[u8],
    chunks: &[Chunk],
    sum: u64,
    name: &str,
) -> Option<(Reloaded, FileIndex)> {
    let old = &last.chunks;
    let regions = changed_regions(old, chunks)?;
    let lines = |cs: &[Chunk]| cs.iter().map(|c| u64::from(c.lines)).sum::<u64>();
    let size = |cs: &[Chunk]| cs.iter().map(|c| c.len as usize).sum::<usize>();
    let total: u64 = regions
        .iter()
        .map(|r| {
            let o = old.get(r.old.0..r.old.1).map_or(u64::MAX, lines);
            let n = chunks.get(r.new.0..r.new.1).map_or(u64::MAX, lines);
            o.max(n)
        })
        .fold(0, u64::saturating_add);
    if total > MAX_REGION_LINES {
        return None;
    }
    let block = last.block;
    // Each region's old lines, and the entries there (one pass over the list).
    let mut spans = Vec::with_capacity(regions.len());
    for r in &regions {
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
    for r in &regions {
        let before = old.get(r.old.0..r.old.1)?;
        let after = chunks.get(r.new.0..r.new.1)?;
        let old_from = 1 + lines(old.get(..r.old.0)?);
        let from = 1 + lines(chunks.get(..r.new.0)?);
        let start = size(chunks.get(..r.new.0)?);
        let (old_lines, new_lines) = (lines(before), lines(after));
        // Old lines `old_from..old_to`; in the list as far as it is updated, `from..to`.
        let old_to = (!r.to_end).then_some(old_from + old_lines);
        let to = (!r.to_end).then_some(from + old_lines);
        let text = std::str::from_utf8(bytes.get(start..start + size(after))?).ok()?;
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
    // The SHA-256 states before the first region stay good.
    let first = regions.first().map_or(chunks.len(), |r| r.new.0);
    let keep = last.marks.partition_point(|m| m.chunk <= first);
    let marks: Vec<Mark> = last.marks.get(..keep)?.to_vec();
    let keys: Vec<u64> = last.keys.iter().map(|&k| moved(k)).collect();
    let index = FileIndex {
        chunks: Vec::new(),
        marks,
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

/// Cuts a file into chunks of whole lines: a chunk starts at the file's start and where
/// [`starts_chunk`] says.
fn chunks(bytes: &[u8]) -> Vec<Chunk> {
    let mut out = Vec::with_capacity(bytes.len() / 1024 + 1);
    let mut start = 0;
    let mut lines = 0u32;
    let mut line_start = 0;
    let mut after_key = false;
    let mut line_ends = memchr::memchr_iter(b'\n', bytes);
    loop {
        let end = line_ends.next();
        let line = bytes
            .get(line_start..end.unwrap_or(bytes.len()))
            .unwrap_or_default();
        let (cut, key) = starts_chunk(line);
        if line_start > start && (cut || after_key) {
            out.push(chunk(bytes, start, line_start, lines));
            start = line_start;
            lines = 0;
        }
        match end {
            Some(nl) => {
                lines += 1;
                line_start = nl + 1;
                after_key = key;
            }
            None => break,
        }
    }
    out.push(chunk(bytes, start, bytes.len(), lines));
    out
}

fn chunk(bytes: &[u8], from: usize, to: usize, lines: u32) -> Chunk {
    let part = bytes.get(from..to).unwrap_or_default();
    Chunk {
        hash: crate::util::content_hash(part),
        len: u32::try_from(part.len()).unwrap_or(u32::MAX),
        lines,
    }
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

/// The SHA-256 of `bytes`, cut into `chunks`, from the last state in `marks` (or from the
/// start); keeps a state about every [`MARK_EVERY`] bytes in `marks`.
fn sha256_from(bytes: &[u8], chunks: &[Chunk], marks: &mut Vec<Mark>) -> String {
    let (mut at, mut offset, mut state) = match marks.last() {
        Some(m) => (m.chunk, m.offset, m.state.clone()),
        None => (0, 0, Sha256::new()),
    };
    let mut last = offset;
    for c in chunks.get(at..).unwrap_or_default() {
        let end = offset + c.len as usize;
        state.update(bytes.get(offset..end).unwrap_or_default());
        offset = end;
        at += 1;
        if offset - last >= MARK_EVERY {
            marks.push(Mark {
                chunk: at,
                offset,
                state: state.clone(),
            });
            last = offset;
        }
    }
    hex(&state.finalize())
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
