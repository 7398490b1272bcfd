//! Network entries of the blocklist (`networks:`): IPv4 and IPv6 prefixes or single
//! addresses, matched against the client address of a request.
//!
//! Prefixes live in two prefix tries (`prefix-trie`, a tree bitmap of five bits a node): a
//! lookup walks at most 7 nodes for IPv4 and 26 for IPv6, whatever the length of the list,
//! and sees every listed prefix that contains the address, so the strictest entry decides as
//! everywhere else on the list (enforce over report, then the longest `until`; on a tie the
//! most specific prefix).
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are IPv4 addresses, in the list and in the
//! client addresses matched: a dual-stack socket reports IPv4 clients that way.

mod client;
mod lint;
mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::blocklist::{Entry, Mode};

pub use client::{client_address, parse_forwarded_element};
pub use parse::{canonical, parse_network, Network, NetworkError};

/// The network entries of one blocklist snapshot.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetworkTable {
    v4: PrefixMap<Ipv4Net, Entry>,
    v6: PrefixMap<Ipv6Net, Entry>,
}

impl fmt::Debug for NetworkTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl NetworkTable {
    /// Lists `net` (canonicalised); returns the entry it replaces, if it was listed.
    pub fn insert(&mut self, net: IpNet, entry: Entry) -> Option<Entry> {
        match canonical(net.trunc()) {
            IpNet::V4(n) => self.v4.insert(n, entry),
            IpNet::V6(n) => self.v6.insert(n, entry),
        }
    }

    /// The entry of exactly `net`, if listed.
    pub fn get(&self, net: &IpNet) -> Option<&Entry> {
        match canonical(net.trunc()) {
            IpNet::V4(n) => self.v4.get(&n),
            IpNet::V6(n) => self.v6.get(&n),
        }
    }

    pub fn get_mut(&mut self, net: &IpNet) -> Option<&mut Entry> {
        match canonical(net.trunc()) {
            IpNet::V4(n) => self.v4.get_mut(&n),
            IpNet::V6(n) => self.v6.get_mut(&n),
        }
    }

    /// Removes exactly `net`.
    pub fn remove(&mut self, net: &IpNet) -> Option<Entry> {
        match canonical(net.trunc()) {
            IpNet::V4(n) => self.v4.remove(&n),
            IpNet::V6(n) => self.v6.remove(&n),
        }
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Every entry, IPv4 first, each family in (address, prefix length) order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Entry)> + '_ {
        self.v4
            .iter()
            .map(|(n, e)| (IpNet::V4(n), e))
            .chain(self.v6.iter().map(|(n, e)| (IpNet::V6(n), e)))
    }

    /// Calls `f` for every listed prefix that contains `net` (itself included), in force or
    /// not, shortest first. At most 33 (IPv4) or 129 (IPv6) calls; nothing allocated.
    pub fn each_cover<'a>(&'a self, net: IpNet, mut f: impl FnMut(IpNet, &'a Entry)) {
        match canonical(net.trunc()) {
            IpNet::V4(n) => {
                for (p, e) in self.v4.cover(&n) {
                    f(IpNet::V4(p), e);
                }
            }
            IpNet::V6(n) => {
                for (p, e) in self.v6.cover(&n) {
                    f(IpNet::V6(p), e);
                }
            }
        }
    }

    /// Calls `f` for every entry in force at `now` whose network contains `ip`, shortest
    /// prefix first.
    pub fn each_match<'a>(&'a self, ip: IpAddr, now: i64, mut f: impl FnMut(IpNet, &'a Entry)) {
        if self.is_empty() {
            return;
        }
        self.each_cover(IpNet::from(ip.to_canonical()), |n, e| {
            if e.in_force_at(now) {
                f(n, e);
            }
        });
    }

    /// The entry that decides about `ip` at `now`: the strictest in force whose network
    /// contains it (enforce over report, then the longest `until`; on a tie the longest
    /// prefix). Allocation-free.
    pub fn strictest_at(&self, ip: IpAddr, now: i64) -> Option<(IpNet, &Entry)> {
        let mut best: Option<(IpNet, &Entry)> = None;
        self.each_match(ip, now, |n, e| {
            // Shortest first: on a tie the later, longer prefix wins.
            if best.is_none_or(|(_, b)| !b.is_stricter_than(e)) {
                best = Some((n, e));
            }
        });
        best
    }

    /// Entries with an `until`, for the expiry counts and lint of the whole list.
    pub fn entries_with_until(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.iter().map(|(_, e)| e).filter(|e| e.until.is_some())
    }

    /// Enforced entries in force at `now` in `newer` and not in `self` (added, or extended
    /// to a later `until`), and in `self` but not in `newer` (removed), each sorted.
    pub fn changes_to(&self, newer: &NetworkTable, now: i64) -> (Vec<IpNet>, Vec<IpNet>) {
        let enforced = |e: &Entry| e.in_force_at(now) && e.mode == Mode::Enforce;
        let mut added: Vec<IpNet> = newer
            .iter()
            .filter(|(n, e)| enforced(e) && self.get(n).is_none_or(|o| !enforced(o)))
            .map(|(n, _)| n)
            .collect();
        let mut removed: Vec<IpNet> = self
            .iter()
            .filter(|(n, e)| enforced(e) && newer.get(n).is_none_or(|o| !enforced(o)))
            .map(|(n, _)| n)
            .collect();
        added.sort();
        removed.sort();
        (added, removed)
    }
}
