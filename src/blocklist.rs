//! The blocklist: which identities may not hold a session.
//!
//! A parsed file becomes an immutable [`Blocklist`]; the reloader swaps whole snapshots
//! (see `reload.rs`), so a lookup never locks and never sees half a file.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};
use uuid::Uuid;

use crate::diagnostic::Diagnostic;

pub mod edit;
mod scan;

/// Whether a match is enforced or only reported (dry run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Enforce,
    /// Decide, log and count, but strip and revoke nothing.
    Report,
}

/// Why and until when one identity, address or domain is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// For ops and the audit log; never sent to clients.
    pub reason: Option<Arc<str>>,
    /// Unix seconds after which the entry no longer matches; `None` = indefinitely.
    pub until: Option<i64>,
    /// Position of the entry in the file it came from, for log messages and lint.
    pub line: u64,
    pub column: u64,
    pub mode: Mode,
    /// Free metadata for ops (`ticket`, `added_by`, `note`, and the `meta:` map), in file
    /// order; in audit events and `lookup`, never sent to clients.
    pub meta: Option<Metadata>,
}

/// An entry's metadata: (key, value) pairs in file order.
pub type Metadata = Arc<[(String, String)]>;

/// Metadata keys an entry may carry beside `meta:`.
pub const METADATA_KEYS: &[&str] = &["ticket", "added_by", "note"];

impl Entry {
    /// The metadata as `k=v,k=v` (empty when there is none), for audit events.
    pub fn meta_text(&self) -> String {
        let mut out = String::new();
        for (k, v) in self.meta.iter().flat_map(|m| m.iter()) {
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(k);
            out.push('=');
            out.push_str(v);
        }
        out
    }

    /// True while the entry is in force at `now` (unix seconds).
    pub fn in_force_at(&self, now: i64) -> bool {
        self.until.is_none_or(|until| now < until)
    }

    /// True when `self` blocks harder than `other`: an enforced entry over one in report
    /// mode, then, within one mode, the longer `until` (`None` = indefinitely).
    pub fn is_stricter_than(&self, other: &Entry) -> bool {
        self.strictness() > other.strictness()
    }

    fn strictness(&self) -> (bool, i128) {
        (
            self.mode == Mode::Enforce,
            self.until.map_or(i128::MAX, i128::from),
        )
    }
}

/// What on the list matched a given identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matched<'a> {
    Identity,
    Email(&'a str),
    Domain(&'a str),
}

impl std::fmt::Display for Matched<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matched::Identity => f.write_str("identity"),
            Matched::Email(e) => write!(f, "email:{e}"),
            Matched::Domain(d) => write!(f, "email_domain:{d}"),
        }
    }
}

/// An immutable, parsed blocklist.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Blocklist {
    identities: IdTable,
    /// Lower-cased addresses.
    emails: HashMap<String, Entry>,
    /// Lower-cased domains, without a trailing dot.
    domains: HashMap<String, Entry>,
    checksum: u64,
}

/// The identity entries, compact enough for millions of ids: the ids sorted, a directory
/// over their top bits (random UUIDs spread evenly, so a lookup reads one or two ids), and
/// per id its position plus, only for entries that have one, a `reason`/`until`/`mode`.
/// About 32 bytes an id, where a `HashMap<Uuid, Entry>` took about 150.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct IdTable {
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

const NO_EXTRA: u32 = u32::MAX;

/// An identity entry while parsing: 32 bytes, so a million-id file needs little beside the
/// table it becomes.
#[derive(Debug, Clone, Copy)]
struct IdRec {
    id: u128,
    line: u32,
    column: u32,
    /// Index into the collector's extras, or `NO_EXTRA`.
    extra: u32,
}

impl Extra {
    fn of(entry: &Entry) -> Option<Extra> {
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
struct Extra {
    reason: Option<Arc<str>>,
    until: Option<i64>,
    mode: Mode,
    meta: Option<Metadata>,
}

impl IdTable {
    /// Builds the table from records sorted by id, without duplicates; `extras` are what
    /// their `extra` fields point to.
    fn build(recs: Vec<IdRec>, extras: &[Extra]) -> Self {
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

    fn len(&self) -> usize {
        self.ids.len()
    }

    fn index_of(&self, id: u128) -> Option<usize> {
        let p = prefix(id, self.bits);
        let lo = *self.dir.get(p)? as usize;
        let hi = *self.dir.get(p + 1)? as usize;
        let i = self.ids.get(lo..hi)?.binary_search(&id).ok()?;
        Some(lo + i)
    }

    fn entry_at(&self, i: usize) -> Option<Entry> {
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

    fn get(&self, id: &Uuid) -> Option<Entry> {
        self.index_of(id.as_u128()).and_then(|i| self.entry_at(i))
    }

    /// Entries in id order.
    fn iter(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
        self.ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some((Uuid::from_u128(*id), self.entry_at(i)?)))
    }

    /// Entries with a `reason`, `until` or `mode` (the only ones that can expire).
    fn iter_extra(&self) -> impl Iterator<Item = (Uuid, Entry)> + '_ {
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

/// What parsing produced besides the list: things worth telling ops that do not make the file
/// invalid.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub blocklist: Blocklist,
    pub warnings: Vec<Diagnostic>,
}

/// The difference between two snapshots, for the reload log and for revoke-on-add.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Listed now, not listed (or no longer in force) before.
    pub added: Vec<Uuid>,
    /// Listed before, not listed now.
    pub removed: Vec<Uuid>,
    /// Listed in both, with a later (or removed) `until` now.
    pub extended: Vec<Uuid>,
    /// E-mail entries added or extended (domains cannot be resolved to identities up front).
    pub added_emails: Vec<String>,
    pub removed_emails: Vec<String>,
    /// Domain entries added or removed (logged only).
    pub added_domains: Vec<String>,
    pub removed_domains: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.extended.is_empty()
            && self.added_emails.is_empty()
            && self.removed_emails.is_empty()
            && self.added_domains.is_empty()
            && self.removed_domains.is_empty()
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The three sections of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SectionKind {
    Identities,
    Emails,
    Domains,
}

/// One section of the file: its YAML key, the key of its entries, and how an entry's text
/// becomes a map key.
struct Section {
    name: &'static str,
    key: &'static str,
    example: &'static str,
    parse: fn(&str) -> Result<String, Invalid>,
}

const EMAILS: Section = Section {
    name: "emails",
    key: "email",
    example: "spammer@example.com",
    parse: email_key,
};

const DOMAINS: Section = Section {
    name: "email_domains",
    key: "domain",
    example: "throwaway.example",
    parse: domain_entry_key,
};

/// A 1-based line and column in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    line: u64,
    column: u64,
}

impl From<Location> for Pos {
    fn from(l: Location) -> Self {
        Pos {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// A text value and where it starts.
type Value<'a> = (Cow<'a, str>, Pos);

/// One list item as a parser read it, before validation.
#[derive(Debug)]
enum Item<'a> {
    /// A bare value (`- 3f1c…`), at `Pos`.
    Bare(Value<'a>),
    /// A map (`- id: …` with optional `reason`, `until`, `mode`) starting at `at`.
    Full {
        at: Pos,
        /// Which of `id`, `email`, `domain`, and its value.
        key: Option<(Cow<'a, str>, Value<'a>)>,
        reason: Option<Cow<'a, str>>,
        until: Option<Value<'a>>,
        mode: Option<Value<'a>>,
        /// `ticket`, `added_by`, `note` and the `meta:` map's pairs, in file order.
        meta: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    },
}

impl Item<'static> {
    fn from_raw(item: Spanned<RawEntry>) -> Self {
        let at = Pos::from(item.referenced);
        let spanned = |v: Spanned<String>| (Cow::Owned(v.value), Pos::from(v.referenced));
        match item.value {
            RawEntry::Bare(v) => Item::Bare((Cow::Owned(v), at)),
            RawEntry::Full {
                key,
                reason,
                until,
                mode,
                meta,
            } => Item::Full {
                at,
                key: key.map(|(k, v)| (Cow::Owned(k), spanned(v))),
                reason: reason.map(Cow::Owned),
                until: until.map(spanned),
                mode: mode.map(spanned),
                meta: meta
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                    .collect(),
            },
        }
    }
}

/// Validates items as they come (from either parser) and builds the list.
struct Collector<'s> {
    source: &'s str,
    errors: Vec<Diagnostic>,
    /// Identity entries in file order; duplicates are merged in [`Collector::finish`].
    ids: Vec<IdRec>,
    extras: Vec<Extra>,
    /// Warnings per section, reported in section order whatever the order in the file.
    email_warnings: Vec<Diagnostic>,
    domain_warnings: Vec<Diagnostic>,
    emails: HashMap<String, Entry>,
    domains: HashMap<String, Entry>,
}

impl<'s> Collector<'s> {
    fn new(source: &'s str) -> Self {
        Collector {
            source,
            errors: Vec::new(),
            ids: Vec::new(),
            extras: Vec::new(),
            email_warnings: Vec::new(),
            domain_warnings: Vec::new(),
            emails: HashMap::new(),
            domains: HashMap::new(),
        }
    }

    fn error(&mut self, at: Pos, message: String) {
        self.errors
            .push(Diagnostic::new(self.source, at.line, at.column, message));
    }

    /// Turns one item into (key text as written, entry), or records why it is invalid.
    fn entry<'a>(
        &mut self,
        item: Item<'a>,
        section: &str,
        key: &str,
    ) -> Option<(Value<'a>, Entry)> {
        let (at, value, reason, until, mode, meta) = match item {
            Item::Bare(v) => (v.1, v, None, None, None, Vec::new()),
            Item::Full {
                at,
                key: entry_key,
                reason,
                until,
                mode,
                meta,
            } => match entry_key {
                Some((k, v)) if k == key => (at, v, reason, until, mode, meta),
                Some((k, v)) => {
                    self.error(
                        v.1,
                        format!("entries under `{section}` are written with `{key}:`, not `{k}:`"),
                    );
                    return None;
                }
                None => {
                    self.error(at, format!("entry has no `{key}`"));
                    return None;
                }
            },
        };
        let until = match until {
            None => None,
            Some((u, upos)) => match parse_timestamp(&u) {
                Some(ts) => Some(ts),
                None => {
                    self.error(
                        upos,
                        format!(
                            "`until: {}` is not an RFC 3339 timestamp (expected e.g. 2027-01-01T00:00:00Z)",
                            u.trim()
                        ),
                    );
                    return None;
                }
            },
        };
        let mode = match mode {
            None => Mode::Enforce,
            Some((m, mpos)) => match m.trim() {
                "enforce" => Mode::Enforce,
                "report" => Mode::Report,
                other => {
                    self.error(
                        mpos,
                        format!("`mode: {other}` is not a mode (expected enforce or report)"),
                    );
                    return None;
                }
            },
        };
        let reason = reason
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .map(Arc::<str>::from);
        let meta: Vec<(String, String)> = meta
            .into_iter()
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .collect();
        Some((
            value,
            Entry {
                reason,
                until,
                line: at.line,
                column: at.column,
                mode,
                meta: (!meta.is_empty()).then(|| meta.into()),
            },
        ))
    }

    fn item(&mut self, section: SectionKind, item: Item<'_>) {
        match section {
            SectionKind::Identities => self.identity(item),
            SectionKind::Emails => self.string(item, &EMAILS),
            SectionKind::Domains => self.string(item, &DOMAINS),
        }
    }

    fn identity(&mut self, item: Item<'_>) {
        let Some(((id, at), entry)) = self.entry(item, "identities", "id") else {
            return;
        };
        match parse_uuid(&id) {
            Some(uuid) => {
                let extra = match Extra::of(&entry) {
                    Some(x) => {
                        self.extras.push(x);
                        u32::try_from(self.extras.len() - 1).unwrap_or(NO_EXTRA)
                    }
                    None => NO_EXTRA,
                };
                self.ids.push(IdRec {
                    id: uuid.as_u128(),
                    line: u32::try_from(entry.line).unwrap_or(u32::MAX),
                    column: u32::try_from(entry.column).unwrap_or(u32::MAX),
                    extra,
                });
            }
            None => self.error(
                at,
                format!(
                    "`{}` is not an identity id (expected a UUID such as 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10)",
                    id.trim()
                ),
            ),
        }
    }

    fn string(&mut self, item: Item<'_>, section: &Section) {
        let Some(((value, at), entry)) = self.entry(item, section.name, section.key) else {
            return;
        };
        match (section.parse)(&value) {
            Ok(k) => {
                let (map, warnings) = if section.key == "email" {
                    (&mut self.emails, &mut self.email_warnings)
                } else {
                    (&mut self.domains, &mut self.domain_warnings)
                };
                match map.get_mut(&k) {
                    Some(existing) => {
                        warnings.push(duplicate(self.source, section.key, &k, &entry, existing));
                        merge_entries(existing, entry);
                    }
                    None => {
                        map.insert(k, entry);
                    }
                }
            }
            Err(invalid) => {
                let what = if section.key == "email" {
                    "an e-mail address"
                } else {
                    "a domain"
                };
                let value = value.trim();
                let message = match invalid {
                    Invalid::Malformed => {
                        format!("`{value}` is not {what} (expected e.g. {})", section.example)
                    }
                    Invalid::PublicSuffix => format!(
                        "{} entry `{value}` is a public suffix: it would block every address under it (list the domains under it instead)",
                        section.name
                    ),
                    Invalid::Idn => format!(
                        "`{value}` is not {what}: its domain is not a valid internationalised domain name (IDNA/UTS-46; expected e.g. {})",
                        section.example
                    ),
                };
                self.error(at, message);
            }
        }
    }

    /// Merges duplicate ids (the first keeps its place; the strictest entry applies, see
    /// [`merge_entries`]), then builds the list. Warnings come in section order, each section in file order.
    fn finish(mut self, checksum: u64) -> Result<Parsed, Vec<Diagnostic>> {
        if !self.errors.is_empty() {
            self.errors.sort_by_key(|d| (d.line, d.column));
            return Err(self.errors);
        }
        let mut ids = std::mem::take(&mut self.ids);
        // File order within one id: every entry has its own position.
        ids.sort_unstable_by_key(|r| (r.id, r.line, r.column));
        let mut warnings = Vec::new();
        let extras = &mut self.extras;
        let source = self.source;
        ids.dedup_by(|later, first| {
            if later.id != first.id {
                return false;
            }
            let entry_of = |r: &IdRec, extras: &[Extra]| {
                let x = extras.get(r.extra as usize);
                Entry {
                    reason: x.and_then(|x| x.reason.clone()),
                    until: x.and_then(|x| x.until),
                    line: u64::from(r.line),
                    column: u64::from(r.column),
                    mode: x.map_or(Mode::Enforce, |x| x.mode),
                    meta: x.and_then(|x| x.meta.clone()),
                }
            };
            let mut existing = entry_of(first, extras);
            let entry = entry_of(later, extras);
            warnings.push(duplicate(
                source,
                "identity",
                &Uuid::from_u128(first.id),
                &entry,
                &existing,
            ));
            merge_entries(&mut existing, entry);
            first.extra = match Extra::of(&existing) {
                Some(x) => {
                    extras.push(x);
                    u32::try_from(extras.len() - 1).unwrap_or(NO_EXTRA)
                }
                None => NO_EXTRA,
            };
            true
        });
        warnings.sort_by_key(|d| (d.line, d.column));
        warnings.append(&mut self.email_warnings);
        warnings.append(&mut self.domain_warnings);
        Ok(Parsed {
            blocklist: Blocklist {
                identities: IdTable::build(ids, &self.extras),
                emails: self.emails,
                domains: self.domains,
                checksum,
            },
            warnings,
        })
    }
}

fn duplicate(
    source: &str,
    what: &str,
    key: &dyn fmt::Display,
    entry: &Entry,
    existing: &Entry,
) -> Diagnostic {
    let message = if entry.mode == existing.mode {
        format!(
            "{what} {key} is listed twice (first at line {}); the longer block applies",
            existing.line
        )
    } else {
        format!(
            "{what} {key} is listed twice (first at line {}), once with `mode: report` and once enforced; the enforced entry applies",
            existing.line
        )
    };
    Diagnostic::new(source, entry.line, entry.column, message)
}

impl Blocklist {
    /// Parses blocklist YAML. `source` names the file in diagnostics.
    ///
    /// The common shapes (block sections of bare values and one-key-a-line maps) are read
    /// line by line; anything else, and every syntax error, goes through serde-saphyr. Both
    /// give the same list, warnings and `file:line:column` errors.
    pub fn parse(text: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
        let checksum = checksum(text.as_bytes());
        let mut c = Collector::new(source);
        if is_blank_yaml(text) || scan::scan(text, &mut c) {
            return c.finish(checksum);
        }
        Self::parse_with_serde_saphyr(text, source)
    }

    /// [`Blocklist::parse`] without the line-oriented fast path (benchmarks and tests).
    #[doc(hidden)]
    pub fn parse_with_serde_saphyr(text: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
        let checksum = checksum(text.as_bytes());
        let mut c = Collector::new(source);
        if !is_blank_yaml(text) {
            let raw = match raw_file(text) {
                Ok(raw) => raw,
                Err(err) => return Err(vec![Diagnostic::from_yaml(source, &err)]),
            };
            let sections = [
                (SectionKind::Identities, raw.identities),
                (SectionKind::Emails, raw.emails),
                (SectionKind::Domains, raw.email_domains),
            ];
            for (section, items) in sections {
                for item in items.unwrap_or_default() {
                    c.item(section, Item::from_raw(item));
                }
            }
        }
        c.finish(checksum)
    }

    /// The fast path alone: `None` when it leaves the file to serde-saphyr.
    #[doc(hidden)]
    pub fn parse_fast_path_only(
        text: &str,
        source: &str,
    ) -> Option<Result<Parsed, Vec<Diagnostic>>> {
        let mut c = Collector::new(source);
        (is_blank_yaml(text) || scan::scan(text, &mut c))
            .then(|| c.finish(checksum(text.as_bytes())))
    }

    /// The entry that blocks `id` now, if any. Allocation-free, O(1) for random ids.
    pub fn lookup(&self, id: &Uuid) -> Option<Entry> {
        self.lookup_at(id, unix_now())
    }

    pub fn lookup_at(&self, id: &Uuid, now: i64) -> Option<Entry> {
        self.identities.get(id).filter(|e| e.in_force_at(now))
    }

    /// Like [`Blocklist::lookup`] for an id in text form (a header, a JSON string).
    /// Text that is not a UUID matches nothing.
    pub fn lookup_str(&self, id: &str) -> Option<(Uuid, Entry)> {
        let uuid = parse_uuid(id)?;
        self.lookup(&uuid).map(|e| (uuid, e))
    }

    /// The entry that blocks an e-mail address now: the strictest of
    /// [`Blocklist::address_matches`] (enforce over report, then the longest `until`; on a
    /// tie the address itself, then the most specific domain). Allocation-free beyond the
    /// normalised address and the returned entry.
    pub fn lookup_address(&self, address: &str, now: i64) -> Option<(Matched<'_>, Entry)> {
        let mut best: Option<(Matched<'_>, &Entry)> = None;
        self.each_address_match(address, now, |m, e| {
            if best.is_none_or(|(_, b)| e.is_stricter_than(b)) {
                best = Some((m, e));
            }
        });
        best.map(|(m, e)| (m, e.clone()))
    }

    /// Every entry that matches an e-mail address now: the address itself, then its domain
    /// and each parent domain, most specific first (label-wise: `evil.example` matches
    /// `a.evil.example`, not `notevil.example`). Case-insensitive, surrounding white space
    /// ignored.
    pub fn address_matches(&self, address: &str, now: i64) -> Vec<(Matched<'_>, Entry)> {
        let mut out = Vec::new();
        self.each_address_match(address, now, |m, e| out.push((m, e.clone())));
        out
    }

    /// Calls `f` for every entry in force at `now` that matches `address`, in the order of
    /// [`Blocklist::address_matches`].
    fn each_address_match<'a>(
        &'a self,
        address: &str,
        now: i64,
        mut f: impl FnMut(Matched<'a>, &'a Entry),
    ) {
        if self.emails.is_empty() && self.domains.is_empty() {
            return;
        }
        let normalized = address_key(address);
        // `a@x.example.` is `a@x.example`: a suffix, so no copy.
        let normalized = normalized.trim_end_matches('.');
        if let Some((k, e)) = self.emails.get_key_value(normalized) {
            if e.in_force_at(now) {
                f(Matched::Email(k), e);
            }
        }
        if self.domains.is_empty() {
            return;
        }
        let Some((_, domain)) = normalized.rsplit_once('@') else {
            return;
        };
        let mut candidate = domain;
        loop {
            if let Some((k, e)) = self.domains.get_key_value(candidate) {
                if e.in_force_at(now) {
                    f(Matched::Domain(k), e);
                }
            }
            match candidate.split_once('.') {
                Some((_, parent)) if !parent.is_empty() => candidate = parent,
                _ => return,
            }
        }
    }

    /// True when matching needs the identity's addresses, not only its id.
    pub fn has_address_entries(&self) -> bool {
        !self.emails.is_empty() || !self.domains.is_empty()
    }

    /// Number of entries in all sections, in force or not.
    pub fn len(&self) -> usize {
        self.identities.len() + self.emails.len() + self.domains.len()
    }

    pub fn identity_count(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry that has an `until` (bare identity entries, the bulk of a large list,
    /// cannot expire and are skipped).
    fn entries_with_until(&self) -> impl Iterator<Item = Entry> + '_ {
        self.identities
            .iter_extra()
            .map(|(_, e)| e)
            .chain(self.emails.values().cloned())
            .chain(self.domains.values().cloned())
            .filter(|e| e.until.is_some())
    }

    /// Entries with an `until` that has not passed yet.
    pub fn expiring_count(&self, now: i64) -> usize {
        self.entries_with_until()
            .filter(|e| e.until.is_some_and(|u| now < u))
            .count()
    }

    /// Entries whose `until` has passed: they match nothing.
    pub fn expired_count(&self, now: i64) -> usize {
        self.entries_with_until()
            .filter(|e| !e.in_force_at(now))
            .count()
    }

    /// Things worth fixing that do not make the file invalid: expired entries (they match
    /// nothing), addresses already covered by a listed domain, and modes in conflict: an
    /// e-mail (or domain) in report mode under an enforced domain, or the reverse. (The same
    /// id, address or domain listed twice with both modes is a parse warning, see
    /// [`Parsed::warnings`]: the merged list no longer knows.)
    pub fn lint(&self, source: &str, now: i64) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for e in self.entries_with_until().filter(|e| !e.in_force_at(now)) {
            let until = e.until.map(format_timestamp).unwrap_or_default();
            out.push(Diagnostic::new(
                source,
                e.line,
                e.column,
                format!("entry expired at {until}; it matches nothing and can be removed"),
            ));
        }
        let domain_only = Blocklist {
            domains: self.domains.clone(),
            ..Blocklist::default()
        };
        let conflict = |what: &str, e: &Entry, d: &str, de: &Entry| -> Option<String> {
            match (e.mode, de.mode) {
                (Mode::Report, Mode::Enforce) => Some(format!(
                    "{what} is listed with `mode: report`, but the domain {d} (line {}) is enforced; the enforced entry applies",
                    de.line
                )),
                (Mode::Enforce, Mode::Report) => Some(format!(
                    "{what} is enforced, but the domain {d} (line {}) is listed with `mode: report`; for {what} the enforced entry applies",
                    de.line
                )),
                _ => None,
            }
        };
        for (email, e) in &self.emails {
            let in_force = e.in_force_at(now);
            let mut covered = None;
            let mut conflicted = false;
            domain_only.each_address_match(email, now, |m, de| {
                let Matched::Domain(d) = m else { return };
                if let Some(message) = conflict(email, e, d, de).filter(|_| in_force) {
                    conflicted = true;
                    out.push(Diagnostic::new(source, e.line, e.column, message));
                } else if covered.is_none() && !e.is_stricter_than(de) {
                    covered = Some((d, de.line));
                }
            });
            if let (Some((d, line)), false) = (covered, conflicted) {
                out.push(Diagnostic::new(
                    source,
                    e.line,
                    e.column,
                    format!("{email} is already covered by the domain {d} (line {line})"),
                ));
            }
        }
        for (domain, e) in self.domains.iter().filter(|(_, e)| e.in_force_at(now)) {
            let mut parent = domain.as_str();
            while let Some((_, p)) = parent.split_once('.') {
                parent = p;
                let Some((d, de)) = self.domains.get_key_value(parent) else {
                    continue;
                };
                if !de.in_force_at(now) {
                    continue;
                }
                if let Some(message) = conflict(domain, e, d, de) {
                    out.push(Diagnostic::new(source, e.line, e.column, message));
                }
            }
        }
        out.sort_by_key(|d| (d.line, d.column));
        out
    }

    /// Hash of the file content this list was parsed from.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Enforced ids in force now, for sweeps.
    pub fn identities_in_force(&self, now: i64) -> impl Iterator<Item = Uuid> + '_ {
        self.identities
            .iter()
            .filter(move |(_, e)| e.in_force_at(now) && e.mode == Mode::Enforce)
            .map(|(id, _)| id)
    }

    /// Enforced e-mail entries in force now, for sweeps.
    pub fn emails_in_force(&self, now: i64) -> impl Iterator<Item = &str> {
        self.emails
            .iter()
            .filter(move |(_, e)| e.in_force_at(now) && e.mode == Mode::Enforce)
            .map(|(k, _)| k.as_str())
    }

    /// What changed from `self` (older) to `newer`, judged at `now`. Entries in report mode
    /// count as not listed.
    pub fn changes_to(&self, newer: &Blocklist, now: i64) -> Changes {
        let (added, extended, removed) = diff_ids(&self.identities, &newer.identities, now);
        let (mut added_emails, extended_emails, removed_emails) =
            diff(&self.emails, &newer.emails, now);
        added_emails.extend(extended_emails);
        added_emails.sort();
        let (added_domains, _, removed_domains) = diff(&self.domains, &newer.domains, now);
        Changes {
            added,
            removed,
            extended,
            added_emails,
            removed_emails,
            added_domains,
            removed_domains,
        }
    }
}

/// [`diff`] for the identity tables: both are sorted, so one merge pass, already in order.
fn diff_ids(old: &IdTable, new: &IdTable, now: i64) -> (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>) {
    let enforced = |e: &Entry| e.in_force_at(now) && e.mode == Mode::Enforce;
    let mut added = Vec::new();
    let mut extended = Vec::new();
    let mut removed = Vec::new();
    let mut old_iter = old.iter().filter(|(_, e)| enforced(e)).peekable();
    for (id, new_entry) in new.iter().filter(|(_, e)| enforced(e)) {
        while let Some((gone, _)) = old_iter.next_if(|(o, _)| *o < id) {
            removed.push(gone);
        }
        match old_iter.next_if(|(o, _)| *o == id) {
            None => added.push(id),
            Some((_, old_entry)) => {
                if extends(&old_entry, &new_entry) {
                    extended.push(id);
                }
            }
        }
    }
    removed.extend(old_iter.map(|(id, _)| id));
    (added, extended, removed)
}

/// True when `new` blocks longer than `old`.
fn extends(old: &Entry, new: &Entry) -> bool {
    match (old.until, new.until) {
        (Some(_), None) => true,
        (Some(a), Some(b)) => b > a,
        _ => false,
    }
}

/// (added, extended, removed) keys between two maps, for enforced entries in force at `now`.
fn diff<K: Clone + Ord + std::hash::Hash + Eq>(
    old: &HashMap<K, Entry>,
    new: &HashMap<K, Entry>,
    now: i64,
) -> (Vec<K>, Vec<K>, Vec<K>) {
    let enforced = |e: &&Entry| e.in_force_at(now) && e.mode == Mode::Enforce;
    let mut added = Vec::new();
    let mut extended = Vec::new();
    let mut removed = Vec::new();
    for (k, new_entry) in new.iter().filter(|(_, e)| enforced(e)) {
        match old.get(k).filter(enforced) {
            None => added.push(k.clone()),
            Some(old_entry) => {
                if extends(old_entry, new_entry) {
                    extended.push(k.clone());
                }
            }
        }
    }
    for (k, _) in old.iter().filter(|(_, e)| enforced(e)) {
        if new.get(k).filter(enforced).is_none() {
            removed.push(k.clone());
        }
    }
    added.sort();
    extended.sort();
    removed.sort();
    (added, extended, removed)
}

/// Why a value is not an e-mail address or a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Invalid {
    /// Not the shape of one.
    Malformed,
    /// The domain is not a valid internationalised domain name (IDNA/UTS-46).
    Idn,
    /// A domain entry that is a public suffix (`com`, `co.uk`, `github.io`).
    PublicSuffix,
}

/// Lower-cases and checks an e-mail address: one `@`-separated local part and a domain,
/// the domain in its ASCII (punycode) form, see [`normalize_domain`].
pub fn normalize_email(text: &str) -> Option<String> {
    email_key(text).ok()
}

/// Checks a domain and gives its one spelling: ASCII, lower-case, without a trailing dot.
/// An internationalised name is converted to punycode by UTS-46 (as browsers do), so
/// `Bücher.example` and `xn--bcher-kva.example` are the same domain. Labels are letters,
/// digits, `-` and `_`.
pub fn normalize_domain(text: &str) -> Option<String> {
    domain_key(text).ok()
}

fn email_key(text: &str) -> Result<String, Invalid> {
    let t = text.trim();
    let (local, domain) = t.rsplit_once('@').ok_or(Invalid::Malformed)?;
    if local.is_empty() || local.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Invalid::Malformed);
    }
    let domain = domain_ascii(domain)?;
    // One allocation for the key, as for a plain lower-cased copy.
    let mut key = String::with_capacity(local.len() + 1 + domain.len());
    if local.is_ascii() {
        key.extend(local.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        key.push_str(&local.to_lowercase());
    }
    key.push('@');
    key.push_str(&domain);
    Ok(key)
}

fn domain_key(text: &str) -> Result<String, Invalid> {
    domain_ascii(text).map(Cow::into_owned)
}

/// [`domain_key`], borrowing from `text` when it is already in its one spelling.
fn domain_ascii(text: &str) -> Result<Cow<'_, str>, Invalid> {
    let t = text.trim().trim_end_matches('.');
    if t.is_empty() || t.len() > 1024 {
        return Err(Invalid::Malformed);
    }
    let ascii = match domain_to_ascii(t)? {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim_end_matches('.')),
        Cow::Owned(o) => Cow::Owned(o.trim_end_matches('.').to_owned()),
    };
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(Invalid::Malformed);
    }
    let ok = ascii.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    if ok {
        Ok(ascii)
    } else {
        Err(Invalid::Malformed)
    }
}

/// An `email_domains` entry: a domain ([`domain_key`]) that is not itself a public suffix.
fn domain_entry_key(text: &str) -> Result<String, Invalid> {
    let key = domain_key(text)?;
    if is_public_suffix(&key) {
        return Err(Invalid::PublicSuffix);
    }
    Ok(key)
}

/// True when `domain` (ASCII, lower-case, no trailing dot) is itself a suffix on the Public
/// Suffix List compiled into the `psl` crate: an ICANN one (`com`, `co.uk`, `公司.cn`) or a
/// private one (`github.io`, `blogspot.com`), each of whose subdomains belongs to someone
/// else. A name the list does not know (`example`, `internal`) is not one.
pub fn is_public_suffix(domain: &str) -> bool {
    use psl::Psl;
    // The compiled list holds internationalised suffixes in Unicode only.
    let unicode;
    let name = if domain.split('.').any(|l| l.starts_with("xn--")) {
        unicode = idna::domain_to_unicode(domain).0;
        unicode.as_str()
    } else {
        domain
    };
    psl::List
        .suffix(name.as_bytes())
        .is_some_and(|s| s.is_known() && s.as_bytes() == name.as_bytes())
}

/// UTS-46 ToASCII (non-transitional, as in URLs): maps (lower-cases, NFC), checks, and
/// punycode-encodes every label that is not ASCII; checks every `xn--` label too. A name that
/// is ASCII but not a valid domain (`bad..domain`, `@x`) is left for the label check, so that
/// it reads as malformed rather than as a bad IDN.
fn domain_to_ascii(domain: &str) -> Result<Cow<'_, str>, Invalid> {
    let is_idn = !domain.is_ascii()
        || domain
            .split('.')
            .any(|l| l.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("xn--")));
    match idna::domain_to_ascii_cow(domain.as_bytes(), idna::AsciiDenyList::URL) {
        Ok(ascii) => Ok(ascii),
        Err(_) if is_idn => Err(Invalid::Idn),
        Err(_) => Err(Invalid::Malformed),
    }
}

/// An address as [`Blocklist::address_matches`] compares it: trimmed, lower-case, the domain
/// in ASCII. An ASCII address (nearly all) costs one lower-cased copy, as before; only an
/// address with non-ASCII characters goes through UTS-46. In a domain that UTS-46 refuses,
/// each label it accepts is converted alone, so the domain's listed parents still match.
fn address_key(address: &str) -> String {
    let t = address.trim();
    if t.is_ascii() {
        return t.to_ascii_lowercase();
    }
    match t.rsplit_once('@') {
        Some((local, domain)) => {
            let mut key = local.to_lowercase();
            key.push('@');
            match domain_to_ascii(domain) {
                Ok(ascii) => key.push_str(&ascii),
                // Label by label: the labels UTS-46 accepts in their ASCII form.
                Err(_) => {
                    for (i, label) in domain.split('.').enumerate() {
                        if i > 0 {
                            key.push('.');
                        }
                        match domain_to_ascii(label) {
                            Ok(ascii) => key.push_str(&ascii),
                            Err(_) => key.push_str(&label.to_lowercase()),
                        }
                    }
                }
            }
            key
        }
        None => t.to_lowercase(),
    }
}

/// Two entries for one id, address or domain: the strictest wins (enforce over report, then
/// the longer `until`, `None` being forever) with its reason, else the other's reason. The
/// merged entry keeps the first one's place in the file. Both parsers merge through here.
fn merge_entries(existing: &mut Entry, other: Entry) {
    if other.is_stricter_than(existing) {
        existing.mode = other.mode;
        existing.until = other.until;
        if other.reason.is_some() {
            existing.reason = other.reason;
        }
        if other.meta.is_some() {
            existing.meta = other.meta;
        }
    } else {
        if existing.reason.is_none() {
            existing.reason = other.reason;
        }
        if existing.meta.is_none() {
            existing.meta = other.meta;
        }
    }
}

/// Content hash used to skip re-parsing an unchanged file (not a security boundary: whoever
/// can write the file decides the list anyway). Eight bytes a step: SipHash took a tenth of a
/// million-id reload. Each step is a bijection of the running state, so a change confined to
/// one eight-byte word always changes the result.
pub fn checksum(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    let mut mix = |w: [u8; 8]| h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        mix(word);
    }
    let mut last = [0u8; 8];
    for (d, s) in last.iter_mut().zip(words.remainder()) {
        *d = *s;
    }
    mix(last);
    h ^ (h >> 32)
}

/// Parses a UUID in its hyphenated form, ignoring surrounding white space.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let t = text.trim();
    // Only the canonical 36-character form: braces, urn: prefixes and the simple form are
    // spellings Kratos never produces, and accepting them would make typos silently valid.
    if t.len() != 36 {
        return None;
    }
    Uuid::try_parse(t).ok()
}

/// Parses an RFC 3339 timestamp into unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|dt| dt.unix_timestamp())
}

pub fn format_timestamp(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// The file as serde-saphyr reads it, every item with its position.
fn raw_file(text: &str) -> Result<RawFile, serde_saphyr::Error> {
    // serde-saphyr's default budget stops at 250,000 nodes, a quarter of a million-id list.
    // The file is written by ops, not by clients: allow work in proportion to its size
    // (anchors and aliases keep their default limits).
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 250_000usize.max(text.len() / 8),
            max_events: 1_000_000usize.max(text.len() / 4),
            max_total_scalar_bytes: (64usize << 20).max(text.len()),
        },
    };
    serde_saphyr::from_str_with_options::<Option<RawFile>>(text, options)
        .map(Option::unwrap_or_default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    identities: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    emails: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    email_domains: Option<Vec<Spanned<RawEntry>>>,
}

/// One list item: a bare value, or a map with the section's key (`id`, `email`, `domain`) and
/// optional `reason`, `until` and `mode`.
// Short-lived parse intermediate; boxing would only add allocations per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum RawEntry {
    Bare(String),
    Full {
        key: Option<(String, Spanned<String>)>,
        reason: Option<String>,
        until: Option<Spanned<String>>,
        mode: Option<Spanned<String>>,
        meta: Vec<(String, String)>,
    },
}

const ENTRY_FIELDS: &[&str] = &[
    "id", "email", "domain", "reason", "until", "mode", "ticket", "added_by", "note", "meta",
];

/// A `meta:` map of strings, in file order.
struct MetaMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for MetaMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = MetaMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of text keys to text values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaMap, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("duplicate meta key `{k}`")));
                    }
                    let v = map.next_value::<String>()?;
                    out.push((k, v));
                }
                Ok(MetaMap(out))
            }
        }
        deserializer.deserialize_map(MetaVisitor)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value, or a map with `id`/`email`/`domain` and optional `reason`, `until`, `mode`, `ticket`, `added_by`, `note`, `meta`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut key: Option<(String, Spanned<String>)> = None;
                let mut reason = None;
                let mut until = None;
                let mut mode = None;
                let mut meta: Vec<(String, String)> = Vec::new();
                let mut meta_map = false;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "id" | "email" | "domain" => {
                            if let Some((prev, _)) = &key {
                                return Err(de::Error::custom(format!(
                                    "an entry has one of `id`, `email`, `domain`; this one has `{prev}` and `{k}`"
                                )));
                            }
                            let v = map.next_value::<Spanned<String>>()?;
                            key = Some((k, v));
                        }
                        "reason" => {
                            if reason.is_some() {
                                return Err(de::Error::duplicate_field("reason"));
                            }
                            reason = Some(map.next_value::<String>()?);
                        }
                        "until" => {
                            if until.is_some() {
                                return Err(de::Error::duplicate_field("until"));
                            }
                            until = Some(map.next_value::<Spanned<String>>()?);
                        }
                        "mode" => {
                            if mode.is_some() {
                                return Err(de::Error::duplicate_field("mode"));
                            }
                            mode = Some(map.next_value::<Spanned<String>>()?);
                        }
                        "ticket" | "added_by" | "note" => {
                            if meta.iter().any(|(seen, _)| *seen == k) {
                                return Err(de::Error::custom(format!("duplicate field `{k}`")));
                            }
                            let v = map.next_value::<String>()?;
                            meta.push((k, v));
                        }
                        "meta" => {
                            if meta_map {
                                return Err(de::Error::duplicate_field("meta"));
                            }
                            meta_map = true;
                            meta.extend(map.next_value::<MetaMap>()?.0);
                        }
                        other => return Err(de::Error::unknown_field(other, ENTRY_FIELDS)),
                    }
                }
                Ok(RawEntry::Full {
                    key,
                    reason,
                    until,
                    mode,
                    meta,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
    const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

    fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
        Blocklist::parse(text, "blocklist.yaml")
    }

    #[test]
    fn checksum_sees_every_one_byte_change_and_every_length() {
        let base: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sum = checksum(&base);
        assert_eq!(sum, checksum(&base.clone()));
        for at in 0..base.len() {
            let mut changed = base.clone();
            changed[at] ^= 0x5a;
            assert_ne!(checksum(&changed), sum, "byte {at}");
        }
        for len in 0..base.len() {
            assert_ne!(checksum(&base[..len]), sum, "length {len}");
        }
        assert_ne!(checksum(b"abc"), checksum(b"abc\0"));
    }
    #[test]
    fn parses_bare_ids_and_full_entries() {
        let text = format!(
            "identities:\n  - {A}\n  - id: {B}\n    reason: chargeback fraud\n    until: 2999-01-01T00:00:00Z\n"
        );
        let parsed = parse(&text).expect("valid");
        let list = parsed.blocklist;
        assert_eq!(list.len(), 2);
        assert!(list.lookup_str(A).is_some());
        let (_, b) = list.lookup_str(B).expect("listed");
        assert_eq!(b.reason.as_deref(), Some("chargeback fraud"));
        assert_eq!(b.line, 3);
        assert!(parsed.warnings.is_empty());
    }

    #[test]
    fn empty_and_comment_only_files_are_empty_lists() {
        for text in [
            "",
            "# nothing yet\n",
            "identities:\n",
            "identities: []\n",
            "---\n",
        ] {
            let parsed = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
            assert!(parsed.blocklist.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn invalid_uuid_is_an_error_with_line_and_column() {
        let text = format!("identities:\n  - {A}\n  - not-a-uuid\n");
        let errs = parse(&text).expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert_eq!((errs[0].line, errs[0].column), (3, 5));
        assert!(errs[0].message.contains("not-a-uuid"), "{}", errs[0]);
        assert!(errs[0]
            .to_string()
            .starts_with("blocklist.yaml:3:5: `not-a-uuid`"));
    }

    #[test]
    fn every_bad_entry_is_reported() {
        let text = "identities:\n  - nope\n  - id: also-nope\n  - id: 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\n    until: tomorrow\n";
        let errs = parse(text).expect_err("invalid");
        let lines: Vec<u64> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 5], "{errs:?}");
        assert!(errs[2].message.contains("RFC 3339"));
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let errs = parse(&format!("identities:\n  - id: {A}\n    reasn: typo\n")).expect_err("x");
        assert_eq!(errs[0].line, 3, "{errs:?}");
        assert!(errs[0].message.contains("reasn"), "{errs:?}");
        let errs = parse("identity:\n  - x\n").expect_err("x");
        assert_eq!(errs[0].line, 1, "{errs:?}");
        assert!(errs[0].message.contains("identity"), "{errs:?}");
    }

    #[test]
    fn syntax_errors_have_position() {
        let errs = parse("identities:\n  - [unclosed\n").expect_err("x");
        assert!(errs[0].line >= 2, "{errs:?}");
    }

    /// The merged entry for a key listed twice, whichever order the two are in, and whether
    /// the file is read by the fast path or by serde-saphyr.
    #[test]
    fn strictest_duplicate_wins_in_either_order_and_either_parser() {
        let report_forever = "mode: report\n    reason: trial";
        let enforce_2999 = "until: 2999-01-01T00:00:00Z";
        let enforce_2998 = "until: 2998-01-01T00:00:00Z\n    reason: old ticket";
        let enforce_forever = "reason: fraud";
        let y2999 = parse_timestamp("2999-01-01T00:00:00Z");
        // (first, second, expected mode, until, reason)
        let cases = [
            (
                report_forever,
                enforce_2999,
                Mode::Enforce,
                y2999,
                Some("trial"),
            ),
            (
                enforce_2999,
                report_forever,
                Mode::Enforce,
                y2999,
                Some("trial"),
            ),
            (
                enforce_2998,
                enforce_2999,
                Mode::Enforce,
                y2999,
                Some("old ticket"),
            ),
            (
                enforce_2999,
                enforce_forever,
                Mode::Enforce,
                None,
                Some("fraud"),
            ),
            (
                enforce_forever,
                report_forever,
                Mode::Enforce,
                None,
                Some("fraud"),
            ),
            (
                enforce_2998,
                enforce_forever,
                Mode::Enforce,
                None,
                Some("fraud"),
            ),
        ];
        let now = unix_now();
        for (first, second, mode, until, reason) in cases {
            let text = format!(
                "identities:\n  - id: {A}\n    {first}\n  - id: {A}\n    {second}\nemails:\n  - email: a@x.example\n    {first}\n  - email: A@X.example\n    {second}\nemail_domains:\n  - domain: y.example\n    {first}\n  - domain: Y.example.\n    {second}\n"
            );
            assert!(same_both_ways(&text), "{text}");
            let parsed = parse(&text).expect("valid");
            assert_eq!(parsed.warnings.len(), 3, "{:?}", parsed.warnings);
            let list = parsed.blocklist;
            let entries = [
                list.lookup_str(A).expect("listed").1,
                list.lookup_address("a@x.example", now).expect("listed").1,
                list.lookup_address("b@y.example", now).expect("listed").1,
            ];
            // The merged entry keeps the first one's place.
            let (f, s) = (first.lines().count() as u64, second.lines().count() as u64);
            let lines = [2, 5 + f + s, 8 + 2 * (f + s)];
            for (e, line) in entries.into_iter().zip(lines) {
                assert_eq!(
                    (e.mode, e.until, e.reason.as_deref(), e.line),
                    (mode, until, reason, line),
                    "{text}"
                );
            }
            // The same file in flow style (serde-saphyr only) merges the same way.
            let flow = format!(
                "identities: [{{id: {A}, {}}}, {{id: {A}, {}}}]\n",
                first.replace("\n    ", ", "),
                second.replace("\n    ", ", ")
            );
            assert!(!same_both_ways(&flow), "{flow}");
            let e = parse(&flow)
                .expect("valid")
                .blocklist
                .lookup_str(A)
                .expect("x")
                .1;
            assert_eq!(
                (e.mode, e.until, e.reason.as_deref()),
                (mode, until, reason)
            );
        }
    }

    #[test]
    fn mixed_mode_duplicates_say_the_enforced_entry_applies() {
        let text = format!("identities:\n  - id: {A}\n    mode: report\n  - {A}\nemail_domains:\n  - x.example\n  - domain: x.example\n    mode: report\n");
        assert!(same_both_ways(&text));
        let parsed = parse(&text).expect("valid");
        let w: Vec<(u64, &str)> = parsed
            .warnings
            .iter()
            .map(|d| (d.line, d.message.as_str()))
            .collect();
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(w[0].0, 4);
        assert_eq!(w[1].0, 7);
        for (_, m) in &w {
            assert!(
                m.contains("`mode: report`") && m.contains("the enforced entry applies"),
                "{m}"
            );
            assert!(!m.contains("longer block"), "{m}");
        }
        assert_eq!(
            parsed.blocklist.lookup_str(A).expect("x").1.mode,
            Mode::Enforce
        );
        assert_eq!(
            parsed
                .blocklist
                .lookup_address("a@x.example", unix_now())
                .expect("x")
                .1
                .mode,
            Mode::Enforce
        );
    }

    #[test]
    fn address_matches_lists_every_entry_and_lookup_picks_the_strictest() {
        let text = "emails:\n  - email: A@Sub.Evil.example\n    mode: report\nemail_domains:\n  - domain: sub.evil.example\n    until: 2999-01-01T00:00:00Z\n  - evil.example\n  - domain: example\n    mode: report\n  - domain: other.example\n    until: 2001-01-01T00:00:00Z\n";
        let list = parse(text).expect("valid").blocklist;
        let now = unix_now();
        let all = list.address_matches(" a@SUB.evil.EXAMPLE ", now);
        let matched: Vec<String> = all.iter().map(|(m, _)| m.to_string()).collect();
        assert_eq!(
            matched,
            vec![
                "email:a@sub.evil.example",
                "email_domain:sub.evil.example",
                "email_domain:evil.example",
                "email_domain:example",
            ]
        );
        assert_eq!(all[0].1.mode, Mode::Report);
        assert_eq!(all[1].1.line, 5);
        // The strictest: enforced, and forever beats 2999.
        let (m, e) = list
            .lookup_address("a@sub.evil.example", now)
            .expect("listed");
        assert_eq!(m, Matched::Domain("evil.example"));
        assert_eq!((e.mode, e.until), (Mode::Enforce, None));
        // Until 2999 the sub-domain and the parent are both enforced; after it, the parent.
        let (m, _) = list
            .lookup_address("b@sub.evil.example", now)
            .expect("listed");
        assert_eq!(m, Matched::Domain("evil.example"));
        // A tie goes to the most specific match; report only where nothing is enforced.
        let (m, e) = list.lookup_address("b@plain.example", now).expect("listed");
        assert_eq!((m, e.mode), (Matched::Domain("example"), Mode::Report));
        // Expired entries are left out.
        let other = list.address_matches("b@other.example", now);
        assert_eq!(other.len(), 1, "{other:?}");
        assert_eq!(other[0].0, Matched::Domain("example"));
        assert!(list.address_matches("nobody", now).is_empty());
        assert!(list.address_matches("", now).is_empty());
        assert!(Blocklist::default()
            .address_matches("a@evil.example", now)
            .is_empty());
        // Without domains, the e-mail entry alone.
        let only = parse("emails: [x@y.example]\n").expect("v").blocklist;
        assert_eq!(only.address_matches("X@y.example", now).len(), 1);
        assert!(only.lookup_address("x@z.example", now).is_none());
    }

    #[test]
    fn unicode_and_punycode_spellings_are_one_entry() {
        let now = unix_now();
        let unicode = parse("emails:\n  - Anna@Bücher.Example\nemail_domains:\n  - BÜCHER.example.\n  - domain: straße.example\n").expect("valid");
        let puny = parse("emails:\n  - anna@XN--BCHER-KVA.example\nemail_domains:\n  - xn--bcher-kva.EXAMPLE\n  - domain: xn--strae-oqa.example\n").expect("valid");
        for list in [&unicode.blocklist, &puny.blocklist] {
            // One spelling in the list: ASCII, lower-case, no trailing dot.
            let mut keys: Vec<&str> = list.domains.keys().map(String::as_str).collect();
            keys.sort();
            assert_eq!(keys, ["xn--bcher-kva.example", "xn--strae-oqa.example"]);
            assert!(list.emails.contains_key("anna@xn--bcher-kva.example"));
            for address in [
                "anna@bücher.example",
                "ANNA@BÜCHER.EXAMPLE",
                "anna@xn--bcher-kva.example",
                "Anna@XN--Bcher-Kva.Example.",
                " anna@Bücher.example ",
            ] {
                let all = list.address_matches(address, now);
                let got: Vec<String> = all.iter().map(|(m, _)| m.to_string()).collect();
                assert_eq!(
                    got,
                    [
                        "email:anna@xn--bcher-kva.example",
                        "email_domain:xn--bcher-kva.example"
                    ],
                    "{address}"
                );
            }
            for address in [
                "x@straße.example",
                "x@XN--STRAE-OQA.example",
                "x@sub.Straße.example",
            ] {
                assert!(
                    matches!(
                        list.lookup_address(address, now),
                        Some((Matched::Domain("xn--strae-oqa.example"), _))
                    ),
                    "{address}"
                );
            }
            // Non-transitional UTS-46: ß is not ss.
            assert!(list.lookup_address("x@strasse.example", now).is_none());
            // A domain UTS-46 refuses still matches its listed parents.
            assert!(list
                .lookup_address("x@a\u{200d}\u{5d0}.bücher.example", now)
                .is_some());
            assert!(list.lookup_address("x@bücher.example.evil", now).is_none());
        }
        assert!(same_both_ways(
            "email_domains:\n  - Bücher.example\n  - xn--bcher-kva.example\n"
        ));
        // Both spellings in one file are one entry listed twice.
        let both =
            parse("email_domains:\n  - Bücher.example\n  - xn--bcher-kva.example\n").expect("v");
        assert_eq!(both.blocklist.len(), 1);
        assert_eq!(both.warnings.len(), 1);
        assert!(both.warnings[0]
            .message
            .contains("xn--bcher-kva.example is listed twice"));
    }

    #[test]
    fn an_invalid_idn_is_an_error_with_its_position() {
        let text = "email_domains:\n  - fine.example\n  - xn--zz.example\n  - domain: a\u{200d}b.example\nemails:\n  - email: a@xn--a-ecp.example\n  - bad@xn--.example\n";
        for errs in [
            parse(text).expect_err("invalid"),
            Blocklist::parse_with_serde_saphyr(text, "blocklist.yaml").expect_err("invalid"),
        ] {
            let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.column)).collect();
            assert_eq!(at, vec![(3, 5), (4, 13), (6, 12), (7, 5)], "{errs:?}");
            for e in &errs {
                assert!(
                    e.message
                        .contains("not a valid internationalised domain name"),
                    "{e}"
                );
            }
            assert!(
                errs[0]
                    .to_string()
                    .starts_with("blocklist.yaml:3:5: `xn--zz.example` is not a domain"),
                "{}",
                errs[0]
            );
        }
        // Malformed ASCII stays "not a domain" without IDN talk.
        let errs = parse("email_domains:\n  - bad..domain\n  - -x.example\n").expect_err("x");
        assert_eq!(errs.len(), 2);
        assert!(
            errs.iter()
                .all(|e| !e.message.contains("internationalised")),
            "{errs:?}"
        );
    }

    #[test]
    fn public_suffixes_are_refused_as_domain_entries() {
        for suffix in [
            "com",
            "co.uk",
            "CO.UK.",
            "github.io",
            "blogspot.com",
            "公司.cn",
            "xn--55qx5d.cn",
            "uk",
            "foo.ck",
        ] {
            let text = format!("email_domains:\n  - good.example\n  - domain: {suffix}\n");
            for errs in [
                parse(&text).expect_err(suffix),
                Blocklist::parse_with_serde_saphyr(&text, "blocklist.yaml").expect_err(suffix),
            ] {
                assert_eq!(errs.len(), 1, "{errs:?}");
                assert_eq!((errs[0].line, errs[0].column), (3, 13), "{errs:?}");
                assert_eq!(
                    errs[0].message,
                    format!("email_domains entry `{suffix}` is a public suffix: it would block every address under it (list the domains under it instead)")
                );
            }
        }
        // Registrable domains and names below a suffix are fine, and so are names the list
        // does not know; an address at a suffix is an e-mail entry, not a domain one.
        let fine = "email_domains:\n  - example.co.uk\n  - evil.github.io\n  - a.b.com\n  - www.ck\n  - example\n  - corp.internal\n  - bücher.de\nemails:\n  - root@com\n";
        let list = parse(fine).expect("valid").blocklist;
        assert_eq!(list.len(), 8);
        assert!(is_public_suffix("xn--55qx5d.cn"));
        assert!(!is_public_suffix("xn--bcher-kva.de"));
        assert!(!is_public_suffix("example"));
    }

    #[test]
    fn lint_reports_mode_conflicts_between_addresses_and_domains() {
        let text = "emails:\n  - email: a@evil.example\n    mode: report\n  - email: b@trial.example\n  - c@evil.example\n  - email: d@x.evil.example\n    until: 2999-01-01T00:00:00Z\nemail_domains:\n  - evil.example\n  - domain: trial.example\n    mode: report\n  - domain: sub.evil.example\n    mode: report\n";
        let list = parse(text).expect("valid").blocklist;
        let lint = list.lint("bl.yaml", unix_now());
        let got: Vec<(u64, u64, &str)> = lint
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!((got[0].0, got[0].1), (2, 5));
        assert!(got[0].2.contains("a@evil.example is listed with `mode: report`, but the domain evil.example (line 9) is enforced; the enforced entry applies"), "{got:#?}");
        assert_eq!(got[1].0, 4);
        assert!(got[1].2.contains("b@trial.example is enforced, but the domain trial.example (line 10) is listed with `mode: report`; for b@trial.example the enforced entry applies"), "{got:#?}");
        assert_eq!(got[2].0, 5);
        assert!(
            got[2].2.contains("covered by the domain evil.example"),
            "{got:#?}"
        );
        assert_eq!(got[3].0, 6);
        assert!(
            got[3].2.contains("covered by the domain evil.example"),
            "{got:#?}"
        );
        assert_eq!((got[4].0, got[4].1), (12, 5));
        assert!(got[4].2.contains("sub.evil.example is listed with `mode: report`, but the domain evil.example (line 9) is enforced"), "{got:#?}");
    }

    #[test]
    fn an_address_that_outlasts_its_domain_is_not_covered() {
        let text = "emails:\n  - x@evil.example\nemail_domains:\n  - domain: evil.example\n    until: 2999-01-01T00:00:00Z\n";
        let list = parse(text).expect("valid").blocklist;
        assert!(list.lint("bl.yaml", unix_now()).is_empty());
    }

    #[test]
    fn duplicate_id_is_a_warning_and_the_longer_block_wins() {
        let text = format!("identities:\n  - id: {A}\n    until: 2000-01-01T00:00:00Z\n  - {A}\n");
        let parsed = parse(&text).expect("valid");
        assert_eq!(parsed.warnings.len(), 1);
        assert_eq!(parsed.warnings[0].line, 4);
        assert!(
            parsed.blocklist.lookup_str(A).is_some(),
            "bare duplicate blocks forever"
        );
    }

    #[test]
    fn entry_past_until_no_longer_matches() {
        let text = format!("identities:\n  - id: {A}\n    until: 2030-01-01T00:00:00Z\n");
        let list = parse(&text).expect("valid").blocklist;
        let id = parse_uuid(A).expect("uuid");
        let until = parse_timestamp("2030-01-01T00:00:00Z").expect("ts");
        assert!(list.lookup_at(&id, until - 1).is_some());
        assert!(list.lookup_at(&id, until).is_none());
        assert_eq!(list.expiring_count(until - 1), 1);
        assert_eq!(list.expired_count(until), 1);
    }

    #[test]
    fn only_canonical_uuids_match() {
        let list = parse(&format!("identities: [{A}]\n"))
            .expect("valid")
            .blocklist;
        assert!(list.lookup_str(A).is_some());
        assert!(list.lookup_str(&A.to_uppercase()).is_some());
        assert!(list.lookup_str(&A.replace('-', "")).is_none());
        assert!(list.lookup_str("").is_none());
        assert!(list.lookup_str("\u{0}").is_none());
    }

    #[test]
    fn changes_report_added_removed_and_extended() {
        let old = parse(&format!(
            "identities:\n  - {A}\n  - id: {B}\n    until: 2100-01-01T00:00:00Z\n"
        ))
        .expect("v")
        .blocklist;
        let new = parse(&format!(
            "identities:\n  - {B}\n  - 11111111-2222-4333-8444-555555555555\n"
        ))
        .expect("v")
        .blocklist;
        let c = old.changes_to(&new, unix_now());
        assert_eq!(
            c.added,
            vec![parse_uuid("11111111-2222-4333-8444-555555555555").expect("u")]
        );
        assert_eq!(c.removed, vec![parse_uuid(A).expect("u")]);
        assert_eq!(c.extended, vec![parse_uuid(B).expect("u")]);
    }

    #[test]
    fn emails_and_domains_match_case_insensitively_and_label_wise() {
        let text = "emails:\n  - Spammer@Example.com\n  - email: other@example.org\n    reason: abuse\nemail_domains:\n  - evil.example\n  - domain: throwaway.example.\n";
        let list = parse(text).expect("valid").blocklist;
        let now = unix_now();
        assert!(list.has_address_entries());
        assert!(matches!(
            list.lookup_address(" spammer@EXAMPLE.com ", now),
            Some((Matched::Email(_), _))
        ));
        assert!(list.lookup_address("other@example.org", now).is_some());
        assert!(list
            .lookup_address("spammer@example.com.evil", now)
            .is_none());
        for hit in [
            "x@evil.example",
            "x@a.evil.example",
            "x@A.B.EVIL.EXAMPLE",
            "x@throwaway.example",
            "x@evil.example.",
        ] {
            assert!(
                matches!(list.lookup_address(hit, now), Some((Matched::Domain(_), _))),
                "{hit}"
            );
        }
        for miss in [
            "x@notevil.example",
            "x@evil.example.com",
            "x@example",
            "evil.example",
            "x@evil-example",
            "",
        ] {
            assert!(list.lookup_address(miss, now).is_none(), "{miss}");
        }
    }

    #[test]
    fn invalid_addresses_and_wrong_keys_are_errors() {
        let text = "emails:\n  - not an address\n  - id: 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\nemail_domains:\n  - \"@evil.example\"\n  - bad..domain\n";
        let errs = parse(text).expect_err("invalid");
        let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, vec![(2, 5), (3, 9), (5, 5), (6, 5)], "{errs:?}");
        assert!(errs[1].message.contains("`email:`"), "{errs:?}");
    }

    #[test]
    fn metadata_is_accepted_in_both_readers_and_kept_in_file_order() {
        let text = format!(
            "identities:\n  - id: {A}\n    ticket: OPS-1\n    added_by: alice\n    note: \"called, no answer\"\n"
        );
        assert!(
            same_both_ways(&text),
            "the fast path takes ticket/added_by/note"
        );
        let p = parse(&text).expect("parses");
        let e = p
            .blocklist
            .lookup_at(&Uuid::parse_str(A).expect("uuid"), 0)
            .expect("listed");
        assert_eq!(
            e.meta_text(),
            "ticket=OPS-1,added_by=alice,note=called, no answer"
        );
        let text = "emails:\n  - email: a@b.example\n    ticket: T-2\n    meta:\n      team: fraud\n      case: \"42\"\n";
        assert!(!same_both_ways(text), "a meta: map is serde-saphyr's");
        let p = parse(text).expect("parses");
        let (_, e) = p
            .blocklist
            .lookup_address("a@b.example", 0)
            .expect("listed");
        assert_eq!(e.meta_text(), "ticket=T-2,team=fraud,case=42");
        for bad in [
            "emails:\n  - email: a@b.example\n    meta: [x]\n",
            "emails:\n  - email: a@b.example\n    ticket: a\n    ticket: b\n",
            "emails:\n  - email: a@b.example\n    owner: bob\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
            same_both_ways(bad);
        }
    }

    #[test]
    fn report_mode_per_entry() {
        let text = format!("identities:\n  - id: {A}\n    mode: report\n  - {B}\n");
        let list = parse(&text).expect("valid").blocklist;
        assert_eq!(list.lookup_str(A).expect("listed").1.mode, Mode::Report);
        assert_eq!(list.lookup_str(B).expect("listed").1.mode, Mode::Enforce);
        let errs = parse(&format!("identities:\n  - id: {A}\n    mode: maybe\n")).expect_err("x");
        assert_eq!((errs[0].line, errs[0].column), (3, 11));
        // Report entries are not "added" for revoke-on-add.
        let c = Blocklist::default().changes_to(&list, unix_now());
        assert_eq!(c.added, vec![parse_uuid(B).expect("u")]);
    }

    #[test]
    fn lint_reports_expired_and_redundant_entries() {
        let text = format!("identities:\n  - id: {A}\n    until: 2001-01-01T00:00:00Z\nemails:\n  - a@evil.example\nemail_domains:\n  - evil.example\n");
        let list = parse(&text).expect("valid").blocklist;
        let lint = list.lint("bl.yaml", unix_now());
        assert_eq!(lint.len(), 2, "{lint:?}");
        assert_eq!(lint[0].line, 2);
        assert!(lint[0].message.contains("expired"));
        assert_eq!(lint[1].line, 5);
        assert!(lint[1]
            .message
            .contains("covered by the domain evil.example"));
    }

    #[test]
    fn email_changes_are_reported() {
        let old = parse("emails: [a@x.example]\n").expect("v").blocklist;
        let new = parse("emails: [b@x.example]\nemail_domains: [y.example]\n")
            .expect("v")
            .blocklist;
        let c = old.changes_to(&new, unix_now());
        assert_eq!(c.added_emails, vec!["b@x.example".to_owned()]);
        assert_eq!(c.removed_emails, vec!["a@x.example".to_owned()]);
        assert_eq!(c.added_domains, vec!["y.example".to_owned()]);
    }

    // --- the fast path gives what serde-saphyr gives --------------------------------------

    /// Parses `text` both ways; when the fast path takes it, both results must be equal.
    /// Returns whether the fast path took it.
    fn same_both_ways(text: &str) -> bool {
        let slow = Blocklist::parse_with_serde_saphyr(text, "bl.yaml");
        match Blocklist::parse_fast_path_only(text, "bl.yaml") {
            Some(fast) => {
                assert_eq!(fast, slow, "the two readers disagree on:\n{text}");
                assert_eq!(Blocklist::parse(text, "bl.yaml"), slow);
                true
            }
            None => {
                assert_eq!(Blocklist::parse(text, "bl.yaml"), slow);
                false
            }
        }
    }

    #[test]
    fn fast_path_takes_the_common_shapes_and_agrees() {
        let common = [
            format!("identities:\n  - {A}\n  - id: {B}\n    reason: chargeback fraud, ticket OPS-123\n    until: 2027-01-01T00:00:00Z\n"),
            format!("# list\n---\nidentities:\n- {A}   # a comment\n- id: {B}\n  mode: report\n\nemails:\n  - spammer@example.com\n  - email: x@y.example\n    reason: abuse # why\nemail_domains:\n  - throwaway.example\n  - domain: evil.example.\n"),
            format!("emails: []\nidentities:\n    -   id: {B}\n        reason: \"quoted: text\"\n    - '{A}'\n    - \"{A}\"\n"),
            format!("identities:\n  - {A}\n  - {}\n  - id: {A}\n    until: 2000-01-01T00:00:00Z\n", A.to_uppercase()),
            format!("identities:\n  - not-a-uuid\n  - id: {A}\n    until: tomorrow\n  - id: {B}\n    mode: maybe\n  - reason: no id\nemails:\n  - id: {A}\n  - not an address\nemail_domains:\n  - bad..domain\n"),
            format!("identities:\n  - reason: first\n    id: {A}\n  - mode: enforce\n    until: 2999-01-01T00:00:00+02:00\n    id: {B}\n"),
            "email_domains:\n  - x.example\n  - x.example\nemails:\n  - a@x.example\n  - A@X.example\n  - email: a@x.example\n    until: 2001-01-01T00:00:00Z\n".to_owned(),
            format!("identities:\n  - id: {A}\n    reason: Betrug – Ticket ÄÖÜ [OPS-1] {{x}}, 50%\n"),
            format!("identities:\n  - id: {A}\n    reason: \"\"\n  - ''\n"),
            "identities:\n".to_owned(),
            "identities: [] # none\nemails:\nemail_domains: []\n".to_owned(),
        ];
        for text in &common {
            assert!(same_both_ways(text), "the fast path should take:\n{text}");
        }
    }

    #[test]
    fn fast_path_leaves_everything_else_to_serde_saphyr() {
        let other = [
            format!("identities: [{A}, {B}]\n"),
            format!("identities:\n  - &a {A}\n  - *a\n"),
            format!("identities:\n  - !!str {A}\n"),
            format!("identities:\n\t- {A}\n"),
            format!("identities:\r\n  - {A}\r\n"),
            format!("identities:\n  - id: {A}\n    reason: >\n      folded\n"),
            format!("identities:\n  - id: {A}\n    reason: two\n      lines\n"),
            format!("identities:\n  - {A}\n   - {B}\n"),
            format!("identities:\n  - id: {A}\n    id: {B}\n"),
            format!("identities:\n  - id: {A}\n    email: a@b.example\n"),
            format!("identities:\n  - id: {A}\n    reasn: typo\n"),
            format!("identities:\n  - {A}\nidentities:\n  - {B}\n"),
            "identity:\n  - x\n".to_owned(),
            "identities:\n  - [unclosed\n".to_owned(),
            "identities:\n  - ~\n  - null\n".to_owned(),
            "identities:\n  - 123\n  - 1e5\n  - 0x1F\n  - yes\n".to_owned(),
            "identities:\n  -\n".to_owned(),
            "identities:\n  - id:\n".to_owned(),
            "identities:\n  - 'it''s'\n".to_owned(),
            "identities:\n  - \"esc\\n\"\n".to_owned(),
            "identities:\n  - a: b: c\n".to_owned(),
            "identities:# x\n".to_owned(),
            "--- # x\nidentities:\n".to_owned(),
            "identities:\n  - x\n...\n".to_owned(),
            "\u{feff}identities:\n".to_owned(),
            "identities:\n  - a\u{2028}b\n".to_owned(),
            "identities:\n  - id: x\n      reason: deeper\n".to_owned(),
            "identities:\n  - - nested\n".to_owned(),
            "- a\n".to_owned(),
            "identities:\n  foo: bar\n".to_owned(),
        ];
        for text in &other {
            assert!(
                !same_both_ways(text),
                "the fast path should leave:\n{text:?}"
            );
        }
    }

    /// A small deterministic generator (xorshift), so that the test needs no crate and fails
    /// the same way every time.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
    }

    const SCALARS: &[&str] = &[
        A,
        B,
        "3F1C7F52-7E43-4A3E-9A8E-2C1D7B7F6A10",
        "11111111-2222-4333-8444-555555555555",
        "12345678-1234-4e34-8234-123456789012",
        "not-a-uuid",
        "spammer@example.com",
        "Spammer@Example.COM",
        "x@evil.example",
        "evil.example",
        "evil.example.",
        "bad..domain",
        "@evil.example",
        "Bücher.example",
        "x@bücher.example",
        "xn--bcher-kva.example",
        "xn--zz.example",
        "2027-01-01T00:00:00Z",
        "2001-01-01T00:00:00Z",
        "2027-01-01",
        "tomorrow",
        "report",
        "enforce",
        "maybe",
        "chargeback fraud, ticket OPS-123",
        "fraud [OPS-1] {x}",
        "Betrug – ÄÖÜ",
        "a #b",
        "a # comment",
        "a: b",
        "a:b",
        "'single'",
        "\"double\"",
        "''",
        "\"\"",
        "'it''s'",
        "\"tab\\t\"",
        "null",
        "~",
        "yes",
        "No",
        "on",
        "true",
        "123",
        "-1",
        "1.5",
        "1e5",
        ".inf",
        "0x1F",
        "0o17",
        "0b101",
        "0b3f1c7f-7e43-4a3e-9a8e-2c1d7b7f6a10",
        "0xabc.example",
        "1e5-x",
        "2027-01-01x",
        "1_000",
        "12:30",
        "-x",
        "?x",
        "*alias",
        "&anchor x",
        "!tag x",
        "|",
        ">",
        "%x",
        "`x`",
        "x ",
        "[a]",
        "{a: b}",
        "",
    ];
    const KEYS: &[&str] = &[
        "id", "email", "domain", "reason", "until", "mode", "Id", "reasn",
    ];

    fn random_item(rng: &mut Rng, indent: &str, out: &mut String) {
        let dash_spaces = if rng.chance(90) { " " } else { "   " };
        if rng.chance(45) {
            out.push_str(&format!("{indent}-{dash_spaces}{}\n", rng.pick(SCALARS)));
            return;
        }
        let key_indent = format!("{indent} {dash_spaces}");
        let n = 1 + rng.below(4);
        for k in 0..n {
            let key = if k == 0 && rng.chance(70) {
                rng.pick(&["id", "email", "domain"])
            } else if rng.chance(90) {
                rng.pick(&KEYS[3..6])
            } else {
                rng.pick(KEYS)
            };
            let value = rng.pick(SCALARS);
            let comment = if rng.chance(10) { "  # note" } else { "" };
            if k == 0 {
                out.push_str(&format!("{indent}-{dash_spaces}{key}: {value}{comment}\n"));
            } else {
                let extra = if rng.chance(3) { " " } else { "" };
                out.push_str(&format!("{key_indent}{extra}{key}: {value}{comment}\n"));
            }
            if rng.chance(5) {
                out.push_str(&format!("{key_indent}# between keys\n"));
            }
        }
    }

    fn random_document(rng: &mut Rng) -> String {
        let mut out = String::new();
        if rng.chance(10) {
            out.push_str("---\n");
        }
        if rng.chance(10) {
            out.push_str("# header\n\n");
        }
        let sections = 1 + rng.below(3);
        for _ in 0..sections {
            let name = if rng.chance(97) {
                rng.pick(&["identities", "emails", "email_domains"])
            } else {
                "identity"
            };
            if rng.chance(8) {
                out.push_str(&format!("{name}: []\n"));
                continue;
            }
            out.push_str(&format!("{name}:\n"));
            let indent = rng.pick(&["", "  ", "    "]);
            for _ in 0..rng.below(6) {
                random_item(rng, indent, &mut out);
                if rng.chance(5) {
                    out.push('\n');
                }
            }
        }
        if rng.chance(3) {
            out = out.replacen('\n', "\n\t", 1);
        }
        if rng.chance(3) {
            out = out.replace('\n', "\r\n");
        }
        if rng.chance(10) && out.ends_with('\n') {
            out.pop();
        }
        out
    }

    #[test]
    fn fast_path_agrees_with_serde_saphyr_on_generated_files() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut taken = 0;
        let total = 4000;
        for _ in 0..total {
            let text = random_document(&mut rng);
            if same_both_ways(&text) {
                taken += 1;
            }
        }
        // Most generated files have some odd value in them; a good share must still be taken.
        assert!(
            taken > total / 10,
            "the fast path took only {taken} of {total}"
        );
    }

    #[test]
    fn fast_path_agrees_on_every_single_scalar() {
        for section in ["identities", "emails", "email_domains"] {
            for v in SCALARS {
                same_both_ways(&format!("{section}:\n  - {v}\n"));
                for key in KEYS {
                    same_both_ways(&format!("{section}:\n  - {key}: {v}\n"));
                    same_both_ways(&format!("{section}:\n  - id: {A}\n    {key}: {v}\n"));
                }
            }
        }
    }

    #[test]
    fn large_generated_list_parses_the_same_both_ways() {
        let mut rng = Rng(42);
        let mut text = String::from("identities:\n");
        for i in 0..20_000u64 {
            let id = Uuid::from_u64_pair(rng.next(), rng.next());
            if i % 97 == 0 {
                text.push_str(&format!(
                    "  - id: {id}\n    reason: r{i}\n    until: 2099-01-01T00:00:00Z\n"
                ));
            } else {
                text.push_str(&format!("  - {id}\n"));
            }
            if i % 1000 == 0 {
                text.push_str(&format!("  - {}\n", id.to_string().to_uppercase()));
            }
        }
        assert!(same_both_ways(&text));
        let list = parse(&text).expect("valid").blocklist;
        assert_eq!(list.len(), 20_000);
    }

    #[test]
    fn compact_table_lookups() {
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
