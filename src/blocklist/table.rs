//! The identity entries in a compact table: millions of ids in about 32 bytes each.

use std::sync::Arc;

use uuid::Uuid;

use super::types::{Entry, Metadata, Mode};

/// The identity entries, compact enough for millions of ids: the ids sorted, a directory
/// over their top bits (random UUIDs spread evenly, so a lookup reads one or two ids), and
/// per id its position plus, only for entries that have one, a `reason`/`until`/`mode`.
/// About 32 bytes an id, where a `HashMap<Uuid, Entry>` took about 150.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct IdTable {
    /// Sorted, unique (`Uuid::as_u128`, which orders like the bytes).
    ids: Box<[u128]>,
    /// Parallel to `ids`.
    meta: Box<[Meta]>,
    extras: Box<[Extra]>,
    /// Parallel to `extras`: the index in `ids` of the entry each belongs to.
    owners: Box<[u32]>,
    /// `dir[p]..dir[p + 1]` are the ids whose top `bits` bits are `p`.
    dir: Box<[u32]>,
    bits: u32,
    /// Indexes into `ids` in the order of their lines, built with the table
    /// ([`IdTable::by_line`]): the entries of some lines are found without a pass over all.
    by_line: LineOrder,
}

/// [`IdTable::by_line`], once built. It follows from the table's entries, so it takes no
/// part in comparisons.
#[derive(Debug, Default, Clone)]
struct LineOrder(std::sync::OnceLock<Box<[u32]>>);

impl PartialEq for LineOrder {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for LineOrder {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    line: u32,
    column: u32,
    /// Index into `extras`, or `NO_EXTRA`.
    extra: u32,
}

pub(super) const NO_EXTRA: u32 = u32::MAX;

/// An identity entry while parsing: 32 bytes, so a million-id file needs little beside the
/// table it becomes.
#[derive(Debug, Clone, Copy)]
pub(super) struct IdRec {
    pub(super) id: u128,
    pub(super) line: u32,
    pub(super) column: u32,
    /// Index into the collector's extras, or `NO_EXTRA`.
    pub(super) extra: u32,
}

impl Extra {
    pub(super) fn of(entry: &Entry) -> Option<Extra> {
        (entry.reason.is_some()
            || entry.until.is_some()
            || entry.mode != Mode::Enforce
            || entry.meta.is_some())
        .then(|| Extra {
            reason: entry.reason.clone(),
            until: entry.until,
            mode: entry.mode,
            meta: entry.meta.clone(),
        })
    }
}

/// What a bare entry does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Extra {
    pub(super) reason: Option<Arc<str>>,
    pub(super) until: Option<i64>,
    pub(super) mode: Mode,
    pub(super) meta: Option<Metadata>,
}

impl IdTable {
    /// Builds the table from records sorted by id, without duplicates; `extras` are what
    /// their `extra` fields point to.
    pub(super) fn build(recs: Vec<IdRec>, extras: &[Extra]) -> Self {
        let n = recs.len();
        Self::build_from(
            n,
            recs.into_iter().map(|r| {
                (
                    r.id,
                    r.line,
                    r.column,
                    extras.get(r.extra as usize).cloned(),
                )
            }),
        )
    }

    /// Builds the table from entries sorted by id, without duplicates.
    pub(super) fn from_entries(n: usize, entries: impl Iterator<Item = (u128, Entry)>) -> Self {
        Self::build_from(
            n,
            entries.map(|(id, e)| {
                let line = u32::try_from(e.line).unwrap_or(u32::MAX);
                let column = u32::try_from(e.column).unwrap_or(u32::MAX);
                (id, line, column, Extra::of(&e))
            }),
        )
    }

    /// `n` (id, line, column, extra) sorted by id, without duplicates.
    fn build_from(n: usize, recs: impl Iterator<Item = (u128, u32, u32, Option<Extra>)>) -> Self {
        // About one id per directory slot, at most 4M slots (16 MiB).
        let bits = if n <= 1 {
            0
        } else {
            (usize::BITS - (n - 1).leading_zeros()).min(22)
        };
        let mut dir = vec![0u32; (1usize << bits) + 1];
        let mut ids = Vec::with_capacity(n);
        let mut meta = Vec::with_capacity(n);
        let mut kept = Vec::new();
        let mut owners = Vec::new();
        for (id, line, column, x) in recs {
            if let Some(slot) = dir.get_mut(prefix(id, bits) + 1) {
                *slot += 1;
            }
            let extra = match x {
                Some(x) => {
                    kept.push(x);
                    owners.push(u32::try_from(ids.len()).unwrap_or(u32::MAX));
                    u32::try_from(kept.len() - 1).unwrap_or(NO_EXTRA)
                }
                None => NO_EXTRA,
            };
            ids.push(id);
            meta.push(Meta {
                line,
                column,
                extra,
            });
        }
        let mut total = 0u32;
        for slot in dir.iter_mut() {
            total += *slot;
            *slot = total;
        }
        let table = IdTable {
            ids: ids.into(),
            meta: meta.into(),
            extras: kept.into(),
            owners: owners.into(),
            dir: dir.into(),
            bits,
            by_line: LineOrder::default(),
        };
        // Built with the table, on the thread that builds it, so that it is part of the
        // list's steady memory rather than an allocation the first reload adds.
        table.by_line();
        table
    }

    /// The indexes into `ids` ordered by line (entries on one line in any order). Built
    /// once per table, when the table is: 4 bytes an id.
    fn by_line(&self) -> &[u32] {
        self.by_line.0.get_or_init(|| line_order(&self.meta))
    }

    /// The line of the entry at index `i` in `ids`.
    fn line_at(&self, i: u32) -> u64 {
        self.meta
            .get(i as usize)
            .map_or(u64::MAX, |m| u64::from(m.line))
    }

    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    pub(super) fn index_of(&self, id: u128) -> Option<usize> {
        let p = prefix(id, self.bits);
        let lo = *self.dir.get(p)? as usize;
        let hi = *self.dir.get(p + 1)? as usize;
        let i = self.ids.get(lo..hi)?.binary_search(&id).ok()?;
        Some(lo + i)
    }

    pub(super) fn entry_at(&self, i: usize) -> Option<Entry> {
        let m = self.meta.get(i)?;
        let (reason, until, mode, meta) = match self.extras.get(m.extra as usize) {
            Some(x) => (x.reason.clone(), x.until, x.mode, x.meta.clone()),
            None => (None, None, Mode::Enforce, None),
        };
        Some(Entry {
            reason,
            until,
            line: u64::from(m.line),
            column: u64::from(m.column),
            mode,
            meta,
        })
    }

    fn iter_raw(&self) -> impl Iterator<Item = (u128, Entry)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((*id, self.entry_at(i)?)))
    }

    /// Entries with a `reason`, `until` or `mode` (the only ones that can expire), in id
    /// order, without a look at the bare ones.
    pub(super) fn iter_extra(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        self.owners.iter().filter_map(|&i| {
            let i = i as usize;
            Some((Uuid::from_u128(*self.ids.get(i)?), self.entry_at(i)?))
        })
    }
}

/// The identity entries of a list: a compact [`IdTable`], and after an incremental reload a
/// small [`Overlay`] of what changed since that table was built (see
/// [`super::incremental`]). Cheap to clone: both halves are shared.
#[derive(Debug, Default, Clone)]
pub(super) struct Ids {
    base: Arc<IdTable>,
    overlay: Option<Arc<Overlay>>,
}

/// What differs from the base table: entries added or changed, base entries gone, and the
/// line shifts of the base entries that stayed.
#[derive(Debug, Default, Clone)]
struct Overlay {
    /// Sorted by id, unique; each at its current position. An id also in the base is in
    /// `removed` too.
    added: Vec<(u128, Entry)>,
    /// Sorted, unique: base ids whose base entry no longer applies.
    removed: Vec<u128>,
    /// Applied in order to a base entry's line: at or after `.0`, moved by `.1`.
    shifts: Vec<(u64, i64)>,
}

impl Overlay {
    fn line(&self, mut line: u64) -> u64 {
        for &(from, by) in &self.shifts {
            if line >= from {
                line = line.saturating_add_signed(by);
            }
        }
        line
    }

    fn is_removed(&self, id: u128) -> bool {
        self.removed.binary_search(&id).is_ok()
    }
}

impl From<IdTable> for Ids {
    fn from(table: IdTable) -> Self {
        Ids {
            base: Arc::new(table),
            overlay: None,
        }
    }
}

impl PartialEq for Ids {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Ids {}

/// Past this many added and removed ids, or this many line shifts, an overlay is folded into
/// a new table ([`Ids::needs_compaction`]).
const OVERLAY_MAX_IDS: usize = 4096;
const OVERLAY_MAX_SHIFTS: usize = 16;

impl Ids {
    pub(super) fn len(&self) -> usize {
        match &self.overlay {
            None => self.base.len(),
            Some(o) => self.base.len() - o.removed.len() + o.added.len(),
        }
    }

    /// The entry of `id`, at its current position. Allocation-free.
    pub(super) fn get(&self, id: &Uuid) -> Option<Entry> {
        self.get_raw(id.as_u128())
    }

    pub(super) fn get_raw(&self, id: u128) -> Option<Entry> {
        let Some(o) = self.overlay.as_deref() else {
            return self.base.index_of(id).and_then(|i| self.base.entry_at(i));
        };
        if let Ok(i) = o.added.binary_search_by_key(&id, |(k, _)| *k) {
            return o.added.get(i).map(|(_, e)| e.clone());
        }
        let i = self.base.index_of(id)?;
        if o.is_removed(id) {
            return None;
        }
        let mut e = self.base.entry_at(i)?;
        e.line = o.line(e.line);
        Some(e)
    }

    /// Entries in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        let o = self.overlay.as_deref();
        let removed: &[u128] = o.map_or(&[], |o| &o.removed);
        let added: &[(u128, Entry)] = o.map_or(&[], |o| &o.added);
        let mut r = 0;
        let mut base = self
            .base
            .iter_raw()
            .filter(move |(id, _)| {
                while removed.get(r).is_some_and(|x| x < id) {
                    r += 1;
                }
                removed.get(r) != Some(id)
            })
            .map(move |(id, mut e)| {
                if let Some(o) = o {
                    e.line = o.line(e.line);
                }
                (id, e)
            })
            .peekable();
        let mut added = added.iter().peekable();
        std::iter::from_fn(move || {
            let take_added = match (base.peek(), added.peek()) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some((b, _)), Some((a, _))) => a < b,
            };
            if take_added {
                added.next().map(|(a, e)| (*a, e.clone()))
            } else {
                base.next()
            }
        })
        .map(|(id, e)| (Uuid::from_u128(id), e))
    }

    /// Entries with a `reason`, `until` or `mode` (the only ones that can expire).
    pub(super) fn iter_extra(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        let o = self.overlay.as_deref();
        let added: &[(u128, Entry)] = o.map_or(&[], |o| &o.added);
        self.base
            .iter_extra()
            .filter(move |(id, _)| !o.is_some_and(|o| o.is_removed(id.as_u128())))
            .map(move |(id, mut e)| {
                if let Some(o) = o {
                    e.line = o.line(e.line);
                }
                (id, e)
            })
            .chain(
                added
                    .iter()
                    .filter(|(_, e)| Extra::of(e).is_some())
                    .map(|(id, e)| (Uuid::from_u128(*id), e.clone())),
            )
    }

    /// Enforced entries in force at `now`, counted without looking at the bare entries one
    /// by one (they are always enforced and in force).
    pub(super) fn enforced_count(&self, now: i64) -> usize {
        let live = |e: &Entry| e.mode == Mode::Enforce && e.in_force_at(now);
        let base = &self.base;
        let bare = base.len() - base.extras.len();
        let with_extra = base
            .extras
            .iter()
            .filter(|x| x.mode == Mode::Enforce && x.until.is_none_or(|u| now < u))
            .count();
        let Some(o) = self.overlay.as_deref() else {
            return bare + with_extra;
        };
        let gone = o
            .removed
            .iter()
            .filter(|id| {
                base.index_of(**id)
                    .and_then(|i| base.entry_at(i))
                    .is_some_and(|e| live(&e))
            })
            .count();
        let added = o.added.iter().filter(|(_, e)| live(e)).count();
        bare + with_extra + added - gone
    }

    /// The entries whose current line is in each of `ranges` (`from..to`, `to` `None`: to
    /// the end; sorted, not overlapping), each by id. The base entries are looked at only
    /// where their lines in the base could have been moved into a range: the range widened
    /// by every line shift of the overlay (a shift by `by` moves a line by `by` or not at
    /// all), found by binary search in the base's line order.
    pub(super) fn in_ranges(&self, ranges: &[(u64, Option<u64>)]) -> Vec<Vec<(u128, Entry)>> {
        let mut out: Vec<Vec<(u128, Entry)>> = vec![Vec::new(); ranges.len()];
        let which = |line: u64| {
            let k = ranges
                .partition_point(|(from, _)| *from <= line)
                .checked_sub(1)?;
            let (_, to) = ranges.get(k)?;
            to.is_none_or(|t| line < t).then_some(k)
        };
        let o = self.overlay.as_deref();
        let shifts = o.map_or(&[][..], |o| &o.shifts[..]);
        // How far back and forward a base line may have moved.
        let up: u64 = shifts.iter().map(|(_, by)| by.max(&0).unsigned_abs()).sum();
        let down: u64 = shifts.iter().map(|(_, by)| by.min(&0).unsigned_abs()).sum();
        let base = &*self.base;
        let order = base.by_line();
        for (&(from, to), list) in ranges.iter().zip(out.iter_mut()) {
            let lo = from.saturating_sub(up);
            let hi = to.map(|t| t.saturating_add(down));
            let first = order.partition_point(|&i| base.line_at(i) < lo);
            for &i in order.get(first..).unwrap_or_default() {
                let base_line = base.line_at(i);
                if hi.is_some_and(|h| base_line >= h) {
                    break;
                }
                let line = o.map_or(base_line, |o| o.line(base_line));
                if line < from || to.is_some_and(|t| line >= t) {
                    continue;
                }
                let Some(&id) = base.ids.get(i as usize) else {
                    continue;
                };
                if o.is_some_and(|o| o.is_removed(id)) {
                    continue;
                }
                if let Some(mut e) = base.entry_at(i as usize) {
                    e.line = line;
                    list.push((id, e));
                }
            }
        }
        for (id, e) in o.map_or(&[][..], |o| &o.added[..]) {
            if let Some(list) = which(e.line).and_then(|k| out.get_mut(k)) {
                list.push((*id, e.clone()));
            }
        }
        for list in &mut out {
            list.sort_unstable_by_key(|(id, _)| *id);
        }
        out
    }

    /// These entries with the ones of lines `from..to` (`old`, as [`Ids::in_ranges`] gave
    /// them) replaced by `new` (sorted by id, unique, none of them elsewhere in the list), and
    /// the lines from `to` on moved by `by`.
    pub(super) fn with_region(
        &self,
        from: u64,
        to: Option<u64>,
        by: i64,
        old: &[(u128, Entry)],
        new: Vec<(u128, Entry)>,
    ) -> Ids {
        let mut o = self.overlay.as_deref().cloned().unwrap_or_default();
        let inside = |line: u64| line >= from && to.is_none_or(|t| line < t);
        let mut added: Vec<(u128, Entry)> = std::mem::take(&mut o.added)
            .into_iter()
            .filter(|(_, e)| !inside(e.line))
            .map(|(id, mut e)| {
                if let Some(t) = to {
                    if e.line >= t {
                        e.line = e.line.saturating_add_signed(by);
                    }
                }
                (id, e)
            })
            .collect();
        if let Some(t) = to {
            if by != 0 {
                o.shifts.push((t, by));
            }
        }
        let mut removed: Vec<u128> = std::mem::take(&mut o.removed);
        for (id, _) in old {
            if self.base.index_of(*id).is_some() {
                removed.push(*id);
            }
        }
        removed.sort_unstable();
        removed.dedup();
        // A new entry that is the base's entry at the place the base entry now maps to
        // is the base entry: no overlay record for it.
        let mut kept_from_base = Vec::new();
        for (id, e) in new {
            let same_as_base = self
                .base
                .index_of(id)
                .and_then(|i| self.base.entry_at(i))
                .is_some_and(|mut b| {
                    b.line = o.line(b.line);
                    b == e
                });
            if same_as_base {
                kept_from_base.push(id);
            } else {
                added.push((id, e));
            }
        }
        removed.retain(|id| kept_from_base.binary_search(id).is_err());
        added.sort_unstable_by_key(|(id, _)| *id);
        o.added = added;
        o.removed = removed;
        Ids {
            base: Arc::clone(&self.base),
            overlay: Some(Arc::new(o)),
        }
    }

    /// True when the overlay has grown enough to be folded into a new table.
    pub(super) fn needs_compaction(&self) -> bool {
        self.overlay.as_deref().is_some_and(|o| {
            o.added.len() + o.removed.len() > OVERLAY_MAX_IDS || o.shifts.len() > OVERLAY_MAX_SHIFTS
        })
    }

    /// The same entries in one new table, without an overlay.
    pub(super) fn compacted(&self) -> Ids {
        let n = self.len();
        let table = IdTable::from_entries(n, self.iter().map(|(id, e)| (id.as_u128(), e)));
        Ids::from(table)
    }

    #[cfg(test)]
    pub(super) fn has_overlay(&self) -> bool {
        self.overlay.is_some()
    }

    /// Ids added and removed by the overlay.
    #[cfg(test)]
    pub(super) fn overlay_ids(&self) -> usize {
        self.overlay
            .as_deref()
            .map_or(0, |o| o.added.len() + o.removed.len())
    }
}

/// Indexes into `meta` ordered by line. One id a line, lines not much sparser than the
/// entries (a list of items): ranked through a bitmap of the lines, in two passes; else
/// sorted.
fn line_order(meta: &[Meta]) -> Box<[u32]> {
    let n = meta.len();
    let last = meta.iter().map(|m| m.line as usize).max().unwrap_or(0);
    if last <= 8 * n + 4096 {
        let mut bits = vec![0u64; last / 64 + 1];
        let mut unique = true;
        for m in meta {
            let line = m.line as usize;
            if let Some(w) = bits.get_mut(line / 64) {
                let bit = 1u64 << (line % 64);
                unique &= *w & bit == 0;
                *w |= bit;
            }
        }
        if unique {
            // Lines before each word's.
            let mut before = Vec::with_capacity(bits.len());
            let mut total = 0u32;
            for w in &bits {
                before.push(total);
                total += w.count_ones();
            }
            let mut order = vec![0u32; n];
            for (i, m) in meta.iter().enumerate() {
                let line = m.line as usize;
                let (Some(w), Some(b)) = (bits.get(line / 64), before.get(line / 64)) else {
                    continue;
                };
                let below = w & ((1u64 << (line % 64)) - 1);
                if let Some(slot) = order.get_mut((b + below.count_ones()) as usize) {
                    *slot = i as u32;
                }
            }
            return order.into();
        }
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    order.sort_unstable_by_key(|&i| meta.get(i as usize).map_or(u32::MAX, |m| m.line));
    order.into()
}

fn prefix(id: u128, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        (id >> (128 - bits)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::scan::agreement::Rng;
    use crate::blocklist::*;
    use crate::diagnostic::Diagnostic;

    pub(super) fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
        Blocklist::parse(text, "blocklist.yaml")
    }

    #[test]
    pub(super) fn compact_table_lookups() {
        let mut rng = Rng(7);
        let ids: Vec<Uuid> = (0..5000)
            .map(|_| Uuid::from_u64_pair(rng.next(), rng.next()))
            .collect();
        let mut text = String::from("identities:\n");
        for id in &ids {
            text.push_str(&format!("  - {id}\n"));
        }
        // Ids at the ends of the key space.
        text.push_str("  - 00000000-0000-4000-8000-000000000000\n");
        text.push_str("  - ffffffff-ffff-4fff-bfff-ffffffffffff\n");
        let list = parse(&text).expect("valid").blocklist;
        for (i, id) in ids.iter().enumerate() {
            let e = list.lookup(id).expect("listed");
            assert_eq!(e.line, i as u64 + 2);
            assert_eq!(e.column, 5);
        }
        for s in [
            "00000000-0000-4000-8000-000000000000",
            "ffffffff-ffff-4fff-bfff-ffffffffffff",
        ] {
            assert!(list.lookup_str(s).is_some(), "{s}");
        }
        for _ in 0..5000 {
            let other = Uuid::from_u64_pair(rng.next(), rng.next());
            assert!(list.lookup(&other).is_none());
        }
        assert!(Blocklist::default().lookup(&ids[0]).is_none());
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;
    use crate::blocklist::scan::agreement::Rng;
    use crate::blocklist::Blocklist;

    /// The entries of `ranges` by a look at every entry.
    fn every(ids: &Ids, ranges: &[(u64, Option<u64>)]) -> Vec<Vec<(u128, Entry)>> {
        ranges
            .iter()
            .map(|&(from, to)| {
                ids.iter()
                    .filter(|(_, e)| e.line >= from && to.is_none_or(|t| e.line < t))
                    .map(|(id, e)| (id.as_u128(), e))
                    .collect()
            })
            .collect()
    }

    fn bare(line: u64) -> Entry {
        Entry {
            reason: None,
            until: None,
            line,
            column: 5,
            mode: Mode::Enforce,
            meta: None,
        }
    }

    fn list(rng: &mut Rng, n: usize) -> (Ids, u64) {
        let mut text = String::from("identities:\n");
        let mut lines = 1;
        for _ in 0..n {
            if rng.next().is_multiple_of(5) {
                text.push_str("  # a comment\n");
                lines += 1;
            }
            let id = Uuid::from_u64_pair(rng.next(), rng.next());
            text.push_str(&format!("  - {id}\n"));
            lines += 1;
        }
        let list = Blocklist::parse(&text, "x").expect("valid").blocklist;
        (list.identities, lines)
    }

    #[test]
    fn the_entries_of_line_ranges_are_those_a_look_at_every_entry_finds() {
        let mut rng = Rng(17);
        for round in 0..20 {
            let (mut ids, mut lines) = list(&mut rng, 500 + round * 50);
            for step in 0..30 {
                // Lines `from..to` replaced by `k` new entries.
                let from = 2 + rng.next() % (lines - 1);
                let to_end = rng.next().is_multiple_of(10);
                let len = (rng.next() % 6).min(lines + 1 - from);
                let to = (!to_end).then_some(from + len);
                let k = rng.next() % 6;
                let old = ids.in_ranges(&[(from, to)]).remove(0);
                assert_eq!(old, every(&ids, &[(from, to)]).remove(0), "{round} {step}");
                let mut new: Vec<(u128, Entry)> = (0..k)
                    .map(|j| {
                        let id = Uuid::from_u64_pair(rng.next(), rng.next()).as_u128();
                        (id, bare(from + j))
                    })
                    .collect();
                new.sort_unstable_by_key(|(id, _)| *id);
                let by = k as i64 - len as i64;
                ids = ids.with_region(from, to, by, &old, new);
                lines = match to {
                    Some(_) => lines.saturating_add_signed(by),
                    None => from + k - 1,
                }
                .max(2);
                for _ in 0..4 {
                    let mut cuts: Vec<u64> = (0..1 + rng.next() % 6)
                        .map(|_| 1 + rng.next() % (lines + 2))
                        .collect();
                    cuts.sort_unstable();
                    cuts.dedup();
                    let mut ranges: Vec<(u64, Option<u64>)> =
                        cuts.windows(2).map(|w| (w[0], Some(w[1]))).collect();
                    if rng.next().is_multiple_of(2) {
                        ranges.push((cuts[cuts.len() - 1], None));
                    }
                    assert_eq!(
                        ids.in_ranges(&ranges),
                        every(&ids, &ranges),
                        "{round} {step}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_base_entry_put_back_out_of_line_order_is_found() {
        // Base entries on lines 2..=11; lines 4..7 become one new id (the later lines move
        // up by two), then the line that holds the base entry of line 7 becomes the base
        // entry of line 6 again, at its own line: two base entries now out of line order.
        let ids: Vec<u128> = (1..=10u128).map(|i| i << 100 | i).collect();
        let table =
            IdTable::from_entries(10, ids.iter().map(|&id| (id, bare(1 + (id & 0xff) as u64))));
        let mut list = Ids::from(table);
        let at = |id: u128| (id, bare(1 + (id & 0xff) as u64));
        let old = list.in_ranges(&[(4, Some(7))]).remove(0);
        assert_eq!(old.len(), 3);
        list = list.with_region(4, Some(7), -2, &old, vec![(99, bare(4))]);
        // Line 6 now holds the base entry of line 8; the base entry of line 6 goes back there,
        // after the base entry of line 7 (now on line 5).
        let old = list.in_ranges(&[(6, Some(7))]).remove(0);
        assert_eq!(old, vec![(ids[6], bare(6))]);
        list = list.with_region(6, Some(7), 0, &old, vec![at(ids[4])]);
        assert_eq!(list.get_raw(ids[4]), Some(bare(6)));
        assert_eq!(list.get_raw(ids[5]), Some(bare(5)));
        assert_eq!(list.get_raw(ids[6]), None);
        for ranges in [
            vec![(5, Some(6))],
            vec![(6, Some(7))],
            vec![(5, Some(7))],
            vec![(1, Some(6)), (6, None)],
        ] {
            assert_eq!(list.in_ranges(&ranges), every(&list, &ranges), "{ranges:?}");
        }
    }

    #[test]
    fn the_entries_with_extras_are_found_without_the_bare_ones() {
        let mut rng = Rng(23);
        let mut text = String::from("identities:\n");
        for i in 0..400 {
            let id = Uuid::from_u64_pair(rng.next(), rng.next());
            match i % 7 {
                0 => text.push_str(&format!("  - id: {id}\n    reason: r{i}\n")),
                3 => text.push_str(&format!("  - id: {id}\n    until: 2001-01-01T00:00:00Z\n")),
                _ => text.push_str(&format!("  - {id}\n")),
            }
        }
        let list = Blocklist::parse(&text, "x").expect("valid").blocklist;
        let table = &list.identities.base;
        let want: Vec<(Uuid, Entry)> = table
            .iter_raw()
            .filter(|(_, e)| Extra::of(e).is_some())
            .map(|(id, e)| (Uuid::from_u128(id), e))
            .collect();
        assert_eq!(want.len(), 115);
        assert_eq!(table.iter_extra().collect::<Vec<_>>(), want);
    }

    #[test]
    fn the_line_order_sorts_unique_sparse_and_shared_lines() {
        let meta = |lines: &[u32]| -> Vec<Meta> {
            lines
                .iter()
                .map(|&line| Meta {
                    line,
                    column: 1,
                    extra: NO_EXTRA,
                })
                .collect()
        };
        for lines in [
            vec![],
            vec![5],
            vec![9, 2, 7, 3, 100, 64, 63, 65],
            vec![4, 4, 2, 9, 2],
            vec![1_000_000, 3, 2],
        ] {
            let m = meta(&lines);
            let order = line_order(&m);
            let got: Vec<u32> = order.iter().map(|&i| lines[i as usize]).collect();
            let mut want = lines.clone();
            want.sort_unstable();
            assert_eq!(got, want);
            let mut seen = order.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..lines.len() as u32).collect::<Vec<_>>());
        }
    }
}
