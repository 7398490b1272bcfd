//! From text to a [`Blocklist`]: the items either reader yields (the line-oriented fast path
//! in `scan.rs`, serde-saphyr in `raw.rs`) are validated, merged and collected here, with
//! every error and warning at its `file:line:column`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_saphyr::Location;
use uuid::Uuid;

use super::incremental::content_checksum;
use super::keys::{domain_entry_key, email_key, Invalid};
use super::raw::raw_file;
use super::scan::{self, Layout};
use super::table::{Extra, IdRec, IdTable, NO_EXTRA};
use super::types::{Blocklist, Entry, Mode};
use crate::diagnostic::Diagnostic;
use crate::networks::{parse_network, NetworkError, NetworkTable};
use crate::util::{parse_timestamp, parse_uuid};

/// What parsing produced besides the list: things worth telling ops that do not make the file
/// invalid.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub blocklist: Blocklist,
    pub warnings: Vec<Diagnostic>,
}

/// The sections of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SectionKind {
    Identities,
    Emails,
    Domains,
    Networks,
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
pub(super) struct Pos {
    pub(super) line: u64,
    pub(super) column: u64,
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
pub(super) type Value<'a> = (Cow<'a, str>, Pos);

/// One list item as a parser read it, before validation.
#[derive(Debug)]
pub(super) enum Item<'a> {
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

/// Validates items as they come (from either parser) and builds the list.
pub(super) struct Collector<'s> {
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
    network_warnings: Vec<Diagnostic>,
    networks: NetworkTable,
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
            network_warnings: Vec::new(),
            networks: NetworkTable::default(),
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

    pub(super) fn item(&mut self, section: SectionKind, item: Item<'_>) {
        match section {
            SectionKind::Identities => self.identity(item),
            SectionKind::Emails => self.string(item, &EMAILS),
            SectionKind::Domains => self.string(item, &DOMAINS),
            SectionKind::Networks => self.network(item),
        }
    }

    /// A `networks` entry: a CIDR network or a single address, IPv4 or IPv6 (IPv4-mapped
    /// IPv6 as IPv4). Host bits set (`10.0.0.1/8`) are a warning: the whole network applies.
    fn network(&mut self, item: Item<'_>) {
        let Some(((value, at), entry)) = self.entry(item, "networks", "network") else {
            return;
        };
        let value = value.trim();
        match parse_network(value) {
            Ok(n) => {
                if let Some(message) = n.host_bits_warning(value) {
                    self.network_warnings
                        .push(Diagnostic::new(self.source, at.line, at.column, message));
                }
                match self.networks.get_mut(&n.net) {
                    Some(existing) => {
                        self.network_warnings.push(duplicate(
                            self.source,
                            "network",
                            &n.net,
                            &entry,
                            existing,
                        ));
                        merge_entries(existing, entry);
                    }
                    None => {
                        self.networks.insert(n.net, entry);
                    }
                }
            }
            Err(NetworkError::Malformed) => self.error(
                at,
                format!(
                    "`{value}` is not a network (expected a CIDR network or an address such as 192.0.2.0/24, 192.0.2.7 or 2001:db8::/32)"
                ),
            ),
            Err(e) => self.error(at, format!("`{value}`: {e}")),
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
        warnings.append(&mut self.network_warnings);
        Ok(Parsed {
            blocklist: Blocklist {
                identities: IdTable::build(ids, &self.extras).into(),
                emails: self.emails,
                domains: self.domains,
                networks: self.networks,
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

pub(super) fn is_blank_yaml(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---"
    })
}

/// [`Blocklist::parse`], with where the sections are when the line-oriented reader read the
/// file.
pub(super) fn parse_with_layout(
    text: &str,
    source: &str,
) -> Result<(Parsed, Option<Layout>), Vec<Diagnostic>> {
    read_whole(text, source)?.finish()
}

/// The fewest bytes a bare id item usually takes (`- ` or `  - `, the UUID's 36 characters,
/// the line feed): the identity records are reserved for the file's length over this, so a
/// large list does not grow them by doubling (which holds the old and the new buffer at once).
/// Pages of the reservation that no record reaches are not touched.
const ID_ITEM_BYTES: usize = 39;

/// A whole file read as far as it needs its text: the list is built from it after the text
/// can be freed (see [`read_whole`]).
pub(super) enum Whole<'n> {
    /// Read by the line-oriented reader (or blank): the items, not yet merged into a list.
    Collected(Collector<'n>, Option<Layout>, u64),
    /// Read by serde-saphyr.
    Parsed(Parsed),
}

/// The first half of [`parse_with_layout`]: everything that reads `text`. The result does not
/// borrow it; [`Whole::finish`] builds the list.
pub(super) fn read_whole<'n>(text: &str, source: &'n str) -> Result<Whole<'n>, Vec<Diagnostic>> {
    read_whole_summed(text, source, content_checksum(text.as_bytes()))
}

/// [`read_whole`] of a text whose [`content_checksum`] is `checksum`.
pub(super) fn read_whole_summed<'n>(
    text: &str,
    source: &'n str,
    checksum: u64,
) -> Result<Whole<'n>, Vec<Diagnostic>> {
    if is_blank_yaml(text) {
        return Ok(Whole::Collected(Collector::new(source), None, checksum));
    }
    let mut c = Collector::new(source);
    c.ids.reserve(text.len() / ID_ITEM_BYTES);
    if let Some(layout) = scan::scan_layout(text, &mut c) {
        return Ok(Whole::Collected(c, Some(layout), checksum));
    }
    drop(c);
    Blocklist::parse_with_serde_saphyr(text, source).map(Whole::Parsed)
}

impl Whole<'_> {
    /// The list, its warnings, and where its sections are when the line-oriented reader
    /// read it.
    pub(super) fn finish(self) -> Result<(Parsed, Option<Layout>), Vec<Diagnostic>> {
        match self {
            Whole::Collected(c, layout, checksum) => c.finish(checksum).map(|p| (p, layout)),
            Whole::Parsed(p) => Ok((p, None)),
        }
    }
}

impl Collector<'_> {
    /// A collector for the items of part of a file (see [`scan::scan_region`]).
    pub(super) fn for_region(source: &str) -> Collector<'_> {
        Collector::new(source)
    }

    /// The identity entries collected, sorted by id: `None` when an item was invalid, an
    /// id came twice, or another section had an item (what a whole-file parse would report
    /// as an error or a warning).
    pub(super) fn into_identities(self) -> Option<Vec<(u128, Entry)>> {
        if !self.errors.is_empty()
            || !self.emails.is_empty()
            || !self.domains.is_empty()
            || !self.networks.is_empty()
            || !self.email_warnings.is_empty()
            || !self.domain_warnings.is_empty()
            || !self.network_warnings.is_empty()
        {
            return None;
        }
        let extras = self.extras;
        let mut out: Vec<(u128, Entry)> = self
            .ids
            .into_iter()
            .map(|r| {
                let x = extras.get(r.extra as usize);
                let entry = Entry {
                    reason: x.and_then(|x| x.reason.clone()),
                    until: x.and_then(|x| x.until),
                    line: u64::from(r.line),
                    column: u64::from(r.column),
                    mode: x.map_or(Mode::Enforce, |x| x.mode),
                    meta: x.and_then(|x| x.meta.clone()),
                };
                (r.id, entry)
            })
            .collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        if out.windows(2).any(|w| matches!(w, [a, b] if a.0 == b.0)) {
            return None;
        }
        Some(out)
    }
}

impl Blocklist {
    /// Parses blocklist YAML. `source` names the file in diagnostics.
    ///
    /// The common shapes (block sections of bare values and one-key-a-line maps) are read
    /// line by line; anything else, and every syntax error, goes through serde-saphyr. Both
    /// give the same list, warnings and `file:line:column` errors.
    pub fn parse(text: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
        parse_with_layout(text, source).map(|(parsed, _)| parsed)
    }

    /// [`Blocklist::parse`] without the line-oriented fast path (benchmarks and tests).
    #[doc(hidden)]
    pub fn parse_with_serde_saphyr(text: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
        let checksum = content_checksum(text.as_bytes());
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
                (SectionKind::Networks, raw.networks),
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
            .then(|| c.finish(content_checksum(text.as_bytes())))
    }
}

#[cfg(test)]
pub(super) mod tests;
