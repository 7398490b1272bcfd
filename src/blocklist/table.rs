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
    /// `dir[p]..dir[p + 1]` are the ids whose top `bits` bits are `p`.
    dir: Box<[u32]>,
    bits: u32,
}

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
        for (id, line, column, x) in recs {
            if let Some(slot) = dir.get_mut(prefix(id, bits) + 1) {
                *slot += 1;
            }
            let extra = match x {
                Some(x) => {
                    kept.push(x);
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
        IdTable {
            ids: ids.into(),
            meta: meta.into(),
            extras: kept.into(),
            dir: dir.into(),
            bits,
        }
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

    /// Entries with a `reason`, `until` or `mode` (the only ones that can expire).
    pub(super) fn iter_extra(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        self.meta
            .iter()
            .enumerate()
            .filter(|(_, m)| m.extra != NO_EXTRA)
            .filter_map(|(i, _)| Some((Uuid::from_u128(*self.ids.get(i)?), self.entry_at(i)?)))
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
    /// the end; sorted, not overlapping), each by id. One pass over the table.
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
        for (i, m) in self.base.meta.iter().enumerate() {
            let line = o.map_or(u64::from(m.line), |o| o.line(u64::from(m.line)));
            let Some(k) = which(line) else {
                continue;
            };
            let Some(&id) = self.base.ids.get(i) else {
                continue;
            };
            if o.is_some_and(|o| o.is_removed(id)) {
                continue;
            }
            if let (Some(mut e), Some(list)) = (self.base.entry_at(i), out.get_mut(k)) {
                e.line = line;
                list.push((id, e));
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
