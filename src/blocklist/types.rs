//! What the list holds and how it is asked: entries, their mode and metadata, and the
//! immutable [`Blocklist`] with its lookups by id, address and domain.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use uuid::Uuid;

use super::keys::address_key;
use super::table::Ids;
use crate::networks::NetworkTable;
use crate::util::{parse_uuid, unix_now};

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
    pub(super) identities: Ids,
    /// Lower-cased addresses.
    pub(super) emails: HashMap<String, Entry>,
    /// Lower-cased domains, without a trailing dot.
    pub(super) domains: HashMap<String, Entry>,
    /// `networks`: matched against the client address of a request.
    pub(super) networks: NetworkTable,
    pub(super) checksum: u64,
}

impl Blocklist {
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
    pub(super) fn each_address_match<'a>(
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

    /// The entry that decides about a client address at `now`: the strictest in force
    /// whose network contains it (see [`NetworkTable::strictest_at`]). Allocation-free;
    /// nothing to do when the list has no networks.
    pub fn lookup_network(&self, ip: IpAddr, now: i64) -> Option<(IpNet, &Entry)> {
        self.networks.strictest_at(ip, now)
    }

    /// The `networks` entries.
    pub fn networks(&self) -> &NetworkTable {
        &self.networks
    }

    /// Number of entries in all sections, in force or not.
    pub fn len(&self) -> usize {
        self.identities.len() + self.emails.len() + self.domains.len() + self.networks.len()
    }

    pub fn identity_count(&self) -> usize {
        self.identities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry that has an `until` (bare identity entries, the bulk of a large list,
    /// cannot expire and are skipped).
    pub(super) fn entries_with_until(&self) -> impl Iterator<Item = Entry> + '_ {
        self.identities
            .iter_extra()
            .map(|(_, e)| e)
            .chain(self.emails.values().cloned())
            .chain(self.domains.values().cloned())
            .chain(self.networks.entries_with_until().cloned())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::*;
    use crate::diagnostic::Diagnostic;
    use crate::util::*;

    const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";

    fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
        Blocklist::parse(text, "blocklist.yaml")
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
}
