//! What changed between two lists: the enforced changes a reload acts on (revoke-on-add),
//! and every added, removed or changed entry for the audit log and `kratos-gate diff`.

use std::collections::HashMap;

use ipnet::IpNet;
use uuid::Uuid;

use super::table::Ids;
use super::types::{Blocklist, Entry, Mode};

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
    /// Network entries added or removed (logged only: they match clients, not identities).
    pub added_networks: Vec<IpNet>,
    pub removed_networks: Vec<IpNet>,
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
            && self.added_networks.is_empty()
            && self.removed_networks.is_empty()
    }
}

impl Blocklist {
    /// What changed from `self` (older) to `newer`, judged at `now`. Entries in report mode
    /// count as not listed.
    pub fn changes_to(&self, newer: &Blocklist, now: i64) -> Changes {
        let (added, extended, removed) = diff_ids(&self.identities, &newer.identities, now);
        let (mut added_emails, extended_emails, removed_emails) =
            diff_map(&self.emails, &newer.emails, now);
        added_emails.extend(extended_emails);
        added_emails.sort();
        let (added_domains, _, removed_domains) = diff_map(&self.domains, &newer.domains, now);
        let (added_networks, removed_networks) = self.networks.changes_to(&newer.networks, now);
        Changes {
            added,
            removed,
            extended,
            added_emails,
            removed_emails,
            added_domains,
            removed_domains,
            added_networks,
            removed_networks,
        }
    }
}

/// [`diff_map`] for the identity tables: both are sorted, so one merge pass, already in order.
fn diff_ids(old: &Ids, new: &Ids, now: i64) -> (Vec<Uuid>, Vec<Uuid>, Vec<Uuid>) {
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
fn diff_map<K: Clone + Ord + std::hash::Hash + Eq>(
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

/// One difference between two lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// `identities`, `emails`, `email_domains` or `networks`.
    pub section: &'static str,
    /// The list's spelling of the id, address or domain.
    pub key: String,
    pub change: Change,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(Entry),
    Removed(Entry),
    /// Mode, `until`, reason or metadata differ: (old, new).
    Changed(Entry, Entry),
}

/// True when two entries say the same (their place in the file aside).
fn same(a: &Entry, b: &Entry) -> bool {
    a.mode == b.mode && a.until == b.until && a.reason == b.reason && a.meta == b.meta
}

/// The key of an entry in [`diff_each`], made into text only by whoever needs it (a
/// million-id diff would otherwise format every id).
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    Id(Uuid),
    Text(&'a str),
    Network(IpNet),
}

impl std::fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Id(id) => write!(f, "{id}"),
            Key::Text(t) => f.write_str(t),
            Key::Network(n) => write!(f, "{n}"),
        }
    }
}

/// Calls `f` for every entry added, removed or changed from `old` to `new`, by section
/// (identities, e-mails, domains), each section in key order.
pub fn diff_each(
    old: &Blocklist,
    new: &Blocklist,
    mut f: impl FnMut(&'static str, Key<'_>, Change),
) {
    // Identities: both tables are sorted by id.
    let mut old_ids = old.identities.iter().peekable();
    for (id, n) in new.identities.iter() {
        while let Some((gone, o)) = old_ids.next_if(|(o, _)| *o < id) {
            f("identities", Key::Id(gone), Change::Removed(o));
        }
        match old_ids.next_if(|(o, _)| *o == id) {
            None => f("identities", Key::Id(id), Change::Added(n)),
            Some((_, o)) if !same(&o, &n) => f("identities", Key::Id(id), Change::Changed(o, n)),
            Some(_) => {}
        }
    }
    for (gone, o) in old_ids {
        f("identities", Key::Id(gone), Change::Removed(o));
    }
    for (section, o, n) in [
        ("emails", &old.emails, &new.emails),
        ("email_domains", &old.domains, &new.domains),
    ] {
        let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            match (o.get(k), n.get(k)) {
                (None, Some(e)) => f(section, Key::Text(k), Change::Added(e.clone())),
                (Some(e), None) => f(section, Key::Text(k), Change::Removed(e.clone())),
                (Some(a), Some(b)) if !same(a, b) => {
                    f(section, Key::Text(k), Change::Changed(a.clone(), b.clone()))
                }
                _ => {}
            }
        }
    }
    // Networks: both tables iterate in one order (IPv4, then IPv6, each by address).
    let mut old_nets = old.networks.iter().peekable();
    for (net, n) in new.networks.iter() {
        while let Some((gone, o)) = old_nets.next_if(|(o, _)| net_order(*o) < net_order(net)) {
            f("networks", Key::Network(gone), Change::Removed(o.clone()));
        }
        match old_nets.next_if(|(o, _)| *o == net) {
            None => f("networks", Key::Network(net), Change::Added(n.clone())),
            Some((_, o)) if !same(o, n) => f(
                "networks",
                Key::Network(net),
                Change::Changed(o.clone(), n.clone()),
            ),
            Some(_) => {}
        }
    }
    for (gone, o) in old_nets {
        f("networks", Key::Network(gone), Change::Removed(o.clone()));
    }
}

/// The order [`crate::networks::NetworkTable::iter`] yields networks in.
fn net_order(n: IpNet) -> (bool, u128, u8) {
    match n {
        IpNet::V4(v4) => (false, u128::from(u32::from(v4.network())), v4.prefix_len()),
        IpNet::V6(v6) => (true, u128::from(v6.network()), v6.prefix_len()),
    }
}

/// Every entry added, removed or changed from `old` to `new` (see [`diff_each`]).
pub fn differences(old: &Blocklist, new: &Blocklist) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_each(old, new, |section, key, change| {
        out.push(Difference {
            section,
            key: key.to_string(),
            change,
        })
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blocklist::*;
    use crate::diagnostic::Diagnostic;
    use crate::util::*;

    const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
    const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

    fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
        Blocklist::parse(text, "blocklist.yaml")
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

    #[test]
    fn diff_finds_added_removed_and_changed() {
        let old = Blocklist::parse(
            &format!("identities:\n  - {A}\nemails:\n  - a@b.example\n  - c@d.example\n"),
            "old",
        )
        .expect("old")
        .blocklist;
        let new = Blocklist::parse(
            "emails:\n  - {email: A@b.example, ticket: T-1}\n  - c@d.example\nemail_domains:\n  - e.example\n",
            "new",
        )
        .expect("new")
        .blocklist;
        let d = differences(&old, &new);
        let summary: Vec<(&str, &str, &str)> = d
            .iter()
            .map(|x| {
                let c = match x.change {
                    Change::Added(_) => "+",
                    Change::Removed(_) => "-",
                    Change::Changed(..) => "~",
                };
                (x.section, x.key.as_str(), c)
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("identities", A, "-"),
                ("emails", "a@b.example", "~"),
                ("email_domains", "e.example", "+")
            ]
        );
        assert!(differences(&new, &new).is_empty());
    }
}
