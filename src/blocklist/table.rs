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
        for r in recs {
            if let Some(slot) = dir.get_mut(prefix(r.id, bits) + 1) {
                *slot += 1;
            }
            let extra = match extras.get(r.extra as usize) {
                Some(x) => {
                    kept.push(x.clone());
                    u32::try_from(kept.len() - 1).unwrap_or(NO_EXTRA)
                }
                None => NO_EXTRA,
            };
            ids.push(r.id);
            meta.push(Meta {
                line: r.line,
                column: r.column,
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

    pub(super) fn get(&self, id: &Uuid) -> Option<Entry> {
        self.index_of(id.as_u128()).and_then(|i| self.entry_at(i))
    }

    /// Entries in id order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((Uuid::from_u128(*id), self.entry_at(i)?)))
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
