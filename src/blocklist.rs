//! The blocklist: which identities may not hold a session.
//!
//! A parsed file becomes an immutable [`Blocklist`]; the reloader swaps whole snapshots
//! (see `reload.rs`), so a lookup never locks and never sees half a file.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;
use uuid::Uuid;

use crate::diagnostic::Diagnostic;

/// Why and until when one identity is listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// For ops and the audit log; never sent to clients.
    pub reason: Option<Arc<str>>,
    /// Unix seconds after which the entry no longer matches; `None` = indefinitely.
    pub until: Option<i64>,
    /// Line of the entry in the file it came from, for log messages.
    pub line: u64,
}

impl Entry {
    /// True while the entry is in force at `now` (unix seconds).
    pub fn in_force_at(&self, now: i64) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// An immutable, parsed blocklist.
#[derive(Debug, Default, Clone)]
pub struct Blocklist {
    identities: HashMap<Uuid, Entry>,
    checksum: u64,
}

/// What parsing produced besides the list: things worth telling ops that do not make the file
/// invalid.
#[derive(Debug)]
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
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.extended.is_empty()
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Blocklist {
    /// Parses blocklist YAML. `source` names the file in diagnostics.
    pub fn parse(text: &str, source: &str) -> Result<Parsed, Vec<Diagnostic>> {
        let checksum = checksum(text.as_bytes());
        let raw: RawFile = if is_blank_yaml(text) {
            RawFile::default()
        } else {
            match serde_saphyr::from_str::<Option<RawFile>>(text) {
                Ok(raw) => raw.unwrap_or_default(),
                Err(err) => return Err(vec![Diagnostic::from_yaml(source, &err)]),
            }
        };

        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let mut identities: HashMap<Uuid, Entry> = HashMap::new();
        let mut first_line: HashMap<Uuid, u64> = HashMap::new();

        for item in raw.identities.unwrap_or_default() {
            let item_line = item.referenced.line();
            let item_column = item.referenced.column();
            let (id, reason, until) = match item.value {
                RawEntry::Bare(id) => (
                    Spanned {
                        value: id,
                        referenced: item.referenced,
                        defined: item.defined,
                    },
                    None,
                    None,
                ),
                RawEntry::Full { id, reason, until } => match id {
                    Some(id) => (id, reason, until),
                    None => {
                        errors.push(Diagnostic::new(
                            source,
                            item_line,
                            item_column,
                            "entry has no `id`",
                        ));
                        continue;
                    }
                },
            };
            let uuid = match parse_uuid(&id.value) {
                Some(u) => u,
                None => {
                    errors.push(Diagnostic::new(
                        source,
                        id.referenced.line(),
                        id.referenced.column(),
                        format!(
                            "`{}` is not an identity id (expected a UUID such as 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10)",
                            id.value.trim()
                        ),
                    ));
                    continue;
                }
            };
            let until = match until {
                None => None,
                Some(u) => match parse_timestamp(&u.value) {
                    Some(ts) => Some(ts),
                    None => {
                        errors.push(Diagnostic::new(
                            source,
                            u.referenced.line(),
                            u.referenced.column(),
                            format!(
                                "`until: {}` is not an RFC 3339 timestamp (expected e.g. 2027-01-01T00:00:00Z)",
                                u.value.trim()
                            ),
                        ));
                        continue;
                    }
                },
            };
            let reason = reason
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .map(Arc::<str>::from);
            let entry = Entry {
                reason,
                until,
                line: item_line,
            };
            match identities.get_mut(&uuid) {
                Some(existing) => {
                    let first = first_line.get(&uuid).copied().unwrap_or(0);
                    warnings.push(Diagnostic::new(
                        source,
                        item_line,
                        item_column,
                        format!("identity {uuid} is listed twice (first at line {first}); the longer block applies"),
                    ));
                    merge_entries(existing, entry);
                }
                None => {
                    first_line.insert(uuid, item_line);
                    identities.insert(uuid, entry);
                }
            }
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Parsed {
            blocklist: Blocklist {
                identities,
                checksum,
            },
            warnings,
        })
    }

    /// The entry that blocks `id` now, if any. Allocation-free, O(1).
    pub fn lookup(&self, id: &Uuid) -> Option<&Entry> {
        self.lookup_at(id, unix_now())
    }

    pub fn lookup_at(&self, id: &Uuid, now: i64) -> Option<&Entry> {
        self.identities.get(id).filter(|e| e.in_force_at(now))
    }

    /// Like [`Blocklist::lookup`] for an id in text form (a header, a JSON string).
    /// Text that is not a UUID matches nothing.
    pub fn lookup_str(&self, id: &str) -> Option<(Uuid, &Entry)> {
        let uuid = parse_uuid(id)?;
        self.lookup(&uuid).map(|e| (uuid, e))
    }

    /// Number of listed identities, in force or not.
    pub fn len(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Entries with an `until` that has not passed yet.
    pub fn expiring_count(&self, now: i64) -> usize {
        self.identities
            .values()
            .filter(|e| e.until.is_some_and(|u| now < u))
            .count()
    }

    /// Entries whose `until` has passed: they match nothing.
    pub fn expired_count(&self, now: i64) -> usize {
        self.identities
            .values()
            .filter(|e| !e.in_force_at(now))
            .count()
    }

    /// Hash of the file content this list was parsed from.
    pub fn checksum(&self) -> u64 {
        self.checksum
    }

    /// Ids in force now, for sweeps.
    pub fn identities_in_force(&self, now: i64) -> impl Iterator<Item = &Uuid> {
        self.identities
            .iter()
            .filter(move |(_, e)| e.in_force_at(now))
            .map(|(id, _)| id)
    }

    /// What changed from `self` (older) to `newer`, judged at `now`.
    pub fn changes_to(&self, newer: &Blocklist, now: i64) -> Changes {
        let mut changes = Changes::default();
        for (id, new_entry) in &newer.identities {
            if !new_entry.in_force_at(now) {
                continue;
            }
            match self.identities.get(id).filter(|e| e.in_force_at(now)) {
                None => changes.added.push(*id),
                Some(old) => {
                    let longer = match (old.until, new_entry.until) {
                        (Some(_), None) => true,
                        (Some(a), Some(b)) => b > a,
                        _ => false,
                    };
                    if longer {
                        changes.extended.push(*id);
                    }
                }
            }
        }
        for (id, old) in &self.identities {
            if old.in_force_at(now) && newer.lookup_at(id, now).is_none() {
                changes.removed.push(*id);
            }
        }
        changes.added.sort();
        changes.removed.sort();
        changes.extended.sort();
        changes
    }
}

/// Two entries for one id: the block that lasts longer wins, and the first reason stays.
fn merge_entries(existing: &mut Entry, other: Entry) {
    existing.until = match (existing.until, other.until) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(a.max(b)),
    };
    if existing.reason.is_none() {
        existing.reason = other.reason;
    }
}

/// Content hash used to skip re-parsing an unchanged file (not a security boundary).
pub fn checksum(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    identities: Option<Vec<Spanned<RawEntry>>>,
}

/// One item under `identities:`: a bare id or `{id, reason, until}`.
#[derive(Debug)]
enum RawEntry {
    Bare(String),
    Full {
        id: Option<Spanned<String>>,
        reason: Option<String>,
        until: Option<Spanned<String>>,
    },
}

const ENTRY_FIELDS: &[&str] = &["id", "reason", "until"];

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an identity id, or a map with `id` and optional `reason` and `until`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut id = None;
                let mut reason = None;
                let mut until = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "id" => {
                            if id.is_some() {
                                return Err(de::Error::duplicate_field("id"));
                            }
                            id = Some(map.next_value::<Spanned<String>>()?);
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
                        other => return Err(de::Error::unknown_field(other, ENTRY_FIELDS)),
                    }
                }
                Ok(RawEntry::Full { id, reason, until })
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
}
