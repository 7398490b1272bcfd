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

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::blocklist::{Entry, Mode};
use crate::diagnostic::Diagnostic;
use crate::headers::X_FORWARDED_FOR;

/// A network as listed: the prefix it denotes, and whether its spelling had host bits set
/// (`10.0.0.1/8` is the network `10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Canonical: host bits cleared, IPv4-mapped IPv6 prefixes as IPv4.
    pub net: IpNet,
    pub host_bits: bool,
}

impl Network {
    /// The warning for a spelling with host bits set, naming both readings.
    pub fn host_bits_warning(&self, spelled: &str) -> Option<String> {
        self.host_bits.then(|| {
            let one = match self.net {
                IpNet::V4(_) => 32,
                IpNet::V6(_) => 128,
            };
            let addr = spelled.trim().split('/').next().unwrap_or_default();
            format!(
                "{} has host bits set: it is the network {} (every address in it is matched); write {}, or {addr}/{one} for the one address",
                spelled.trim(),
                self.net,
                self.net
            )
        })
    }
}

/// Why a value is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "not an IP address or a CIDR network (such as 192.0.2.0/24, 192.0.2.7 or 2001:db8::/32)"
    )]
    Malformed,
    #[error("prefix length /{len} is longer than /{max}, the length of an {family} address")]
    PrefixTooLong {
        len: u32,
        max: u8,
        family: &'static str,
    },
}

/// Parses `192.0.2.0/24`, `192.0.2.7`, `2001:db8::/32`, `2001:db8::1` (surrounding white
/// space ignored). IPv4 octets with leading zeros, zone ids (`%eth0`) and prefix lengths that
/// are not plain decimal are refused.
pub fn parse_network(text: &str) -> Result<Network, NetworkError> {
    let t = text.trim();
    let (addr, len) = match t.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (t, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| NetworkError::Malformed)?;
    let (max, family) = match addr {
        IpAddr::V4(_) => (32u8, "IPv4"),
        IpAddr::V6(_) => (128u8, "IPv6"),
    };
    let len = match len {
        None => max,
        Some(l) => {
            if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err(NetworkError::Malformed);
            }
            let n: u32 = l.parse().map_err(|_| NetworkError::Malformed)?;
            if n > u32::from(max) {
                return Err(NetworkError::PrefixTooLong {
                    len: n,
                    max,
                    family,
                });
            }
            n as u8
        }
    };
    let net = IpNet::new(addr, len).map_err(|_| NetworkError::Malformed)?;
    Ok(Network {
        net: canonical(net.trunc()),
        host_bits: net.addr() != net.network(),
    })
}

/// An IPv6 prefix inside `::ffff:0:0/96` as the IPv4 prefix it denotes; anything else as it is.
pub fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

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

    /// Things worth fixing that do not make the list invalid: networks inside another listed
    /// network (already covered, or in the other mode), networks overlapping loopback,
    /// private, shared or link-local ranges (the address of an ingress that is not a trusted
    /// proxy would be refused, and with it every request it forwards), and IPv6 prefixes
    /// that span the IPv4-mapped range (IPv4 clients are matched by IPv4 entries only).
    /// Expired entries match nothing and are skipped (the list's own lint names them).
    pub fn lint(&self, source: &str, now: i64) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (net, e) in self.iter().filter(|(_, e)| e.in_force_at(now)) {
            let warn = |out: &mut Vec<Diagnostic>, message: String| {
                out.push(Diagnostic::new(source, e.line, e.column, message));
            };
            let mut covered: Option<(IpNet, u64)> = None;
            let mut conflicted = false;
            self.each_cover(net, |parent, pe| {
                if parent == net || !pe.in_force_at(now) {
                    return;
                }
                match (e.mode, pe.mode) {
                    (Mode::Report, Mode::Enforce) => {
                        conflicted = true;
                        warn(&mut out, format!(
                            "{net} is listed with `mode: report`, but the network {parent} (line {}) is enforced; the enforced entry applies",
                            pe.line
                        ));
                    }
                    (Mode::Enforce, Mode::Report) => {
                        conflicted = true;
                        warn(&mut out, format!(
                            "{net} is enforced, but the network {parent} (line {}) is listed with `mode: report`; for addresses in {net} the enforced entry applies",
                            pe.line
                        ));
                    }
                    _ if !e.is_stricter_than(pe) => covered = Some((parent, pe.line)),
                    _ => {}
                }
            });
            if let (Some((parent, line)), false) = (covered, conflicted) {
                warn(
                    &mut out,
                    format!("{net} is already covered by the network {parent} (line {line})"),
                );
            }
            let special: Vec<String> = SPECIAL
                .iter()
                .filter_map(|(range, what)| {
                    let range: IpNet = range.parse().ok()?;
                    overlaps(net, range).then(|| format!("{what} {range}"))
                })
                .collect();
            if !special.is_empty() {
                warn(&mut out, format!(
                    "{net} overlaps {}: a proxy or load balancer connecting from there that is not in forwarding.trusted_proxies is the client address of every request it forwards, and all of them would be refused",
                    special.join(", ")
                ));
            }
            if let IpNet::V6(v6) = net {
                if v6.prefix_len() < 96 && v6.contains(&mapped_range()) {
                    warn(&mut out, format!(
                        "{net} spans the IPv4-mapped range ::ffff:0:0/96, but IPv4 clients are matched by IPv4 entries only; list 0.0.0.0/0 (or the IPv4 networks meant) as well"
                    ));
                }
            }
        }
        out.sort_by_key(|d| (d.line, d.column));
        out
    }

    /// Entries that overlap `forwarding.trusted_proxies`: addresses there are taken for
    /// proxies and skipped in `X-Forwarded-For`, so such an entry matches only requests a
    /// proxy sends on its own behalf, and refuses every one of those.
    pub fn lint_trusted_proxies(
        &self,
        trusted: &[IpNet],
        source: &str,
        now: i64,
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for (net, e) in self.iter().filter(|(_, e)| e.in_force_at(now)) {
            for t in trusted.iter().map(|t| canonical(t.trunc())) {
                if overlaps(net, t) {
                    out.push(Diagnostic::new(source, e.line, e.column, format!(
                        "{net} overlaps the trusted proxies {t} (forwarding.trusted_proxies): addresses there are read as proxies, never as clients, so the entry matches only requests a proxy sends itself (health checks), and refuses all of them"
                    )));
                }
            }
        }
        out
    }
}

/// Ranges an ingress, a load balancer or a sidecar usually connects from.
const SPECIAL: &[(&str, &str)] = &[
    ("0.0.0.0/8", "\"this network\""),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared (carrier-grade NAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("::1/128", "loopback"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
];

fn mapped_range() -> Ipv6Net {
    Ipv6Net::new(std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96).unwrap_or_default()
}

/// True when one prefix contains the other (prefixes never overlap partially).
fn overlaps(a: IpNet, b: IpNet) -> bool {
    a.contains(&b) || b.contains(&a)
}

/// At most this many `X-Forwarded-For` elements are read, from the right.
const MAX_FORWARDED_HOPS: usize = 64;

/// The client address of a request as the gateway believes it. From a peer that is not in
/// `trusted` (`forwarding.trusted_proxies`), the peer itself. From a trusted proxy,
/// `X-Forwarded-For` is read from the right (the element the nearest proxy appended) past
/// every trusted proxy: the first address that is not one is the client's. When the chain
/// holds only trusted proxies, or is missing, the last of them (or the peer) is the client;
/// an element that is not an address (`unknown`, garbage) ends the walk there, keeping the
/// last trusted address, so nothing a client writes to the left of it is believed.
/// Addresses are canonical (`::ffff:192.0.2.1` is `192.0.2.1`); `1.2.3.4:80` and
/// `[2001:db8::1]:443` are read without their ports. Nothing allocated.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let mut hops = 0;
    for value in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
        let Ok(value) = value.to_str() else {
            return client;
        };
        for element in value.rsplit(',').map(str::trim) {
            if element.is_empty() {
                continue;
            }
            hops += 1;
            if hops > MAX_FORWARDED_HOPS {
                return client;
            }
            let Some(ip) = parse_forwarded_element(element) else {
                return client;
            };
            client = ip.to_canonical();
            if !is_trusted(&client) {
                return client;
            }
        }
    }
    client
}

/// An address as proxies write it: `192.0.2.7`, `2001:db8::1`, `192.0.2.7:4711`,
/// `[2001:db8::1]` or `[2001:db8::1]:443` (ports dropped); not canonicalised.
pub fn parse_forwarded_element(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse::<std::net::Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderValue;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn net(text: &str) -> IpNet {
        parse_network(text).expect("network").net
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn entry(line: u64, mode: Mode, until: Option<i64>) -> Entry {
        Entry {
            reason: None,
            until,
            line,
            column: 5,
            mode,
            meta: None,
        }
    }

    fn table(entries: &[(&str, Mode, Option<i64>)]) -> NetworkTable {
        let mut t = NetworkTable::default();
        for (i, (n, mode, until)) in entries.iter().enumerate() {
            t.insert(net(n), entry(i as u64 + 2, *mode, *until));
        }
        t
    }

    #[test]
    fn parses_cidrs_and_single_addresses_of_both_families() {
        assert_eq!(net("192.0.2.0/24").to_string(), "192.0.2.0/24");
        assert_eq!(net(" 192.0.2.7 ").to_string(), "192.0.2.7/32");
        assert_eq!(net("2001:DB8::/32").to_string(), "2001:db8::/32");
        assert_eq!(net("2001:db8::1").to_string(), "2001:db8::1/128");
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(net("::/0").to_string(), "::/0");
    }

    #[test]
    fn refuses_what_is_not_a_network() {
        for bad in [
            "",
            "example.com",
            "192.0.2",
            "192.0.2.256",
            "010.0.0.1",
            "192.0.2.0/",
            "192.0.2.0/+8",
            "192.0.2.0/-1",
            "192.0.2.0/8/8",
            "192.0.2.0 /8",
            "fe80::1%eth0",
            "[2001:db8::1]",
            "1.2.3.4:80",
            "2001:db8::/1x",
        ] {
            assert_eq!(parse_network(bad), Err(NetworkError::Malformed), "{bad:?}");
        }
        assert!(matches!(
            parse_network("192.0.2.0/33"),
            Err(NetworkError::PrefixTooLong {
                len: 33,
                max: 32,
                ..
            })
        ));
        assert!(matches!(
            parse_network("::/129"),
            Err(NetworkError::PrefixTooLong { max: 128, .. })
        ));
        assert!(parse_network("192.0.2.0/0000").is_err());
    }

    #[test]
    fn host_bits_are_cleared_and_warned_about() {
        let n = parse_network("10.0.0.1/8").expect("parses");
        assert_eq!(n.net.to_string(), "10.0.0.0/8");
        assert!(n.host_bits);
        let w = n.host_bits_warning("10.0.0.1/8").expect("warning");
        assert!(w.contains("10.0.0.0/8") && w.contains("10.0.0.1/32"), "{w}");
        for clean in ["10.0.0.0/8", "10.0.0.1", "2001:db8::/32"] {
            let n = parse_network(clean).expect("parses");
            assert!(!n.host_bits, "{clean}");
            assert_eq!(n.host_bits_warning(clean), None);
        }
        assert!(parse_network("2001:db8::1/32").expect("parses").host_bits);
    }

    #[test]
    fn ipv4_mapped_ipv6_is_ipv4_in_the_list_and_in_lookups() {
        assert_eq!(net("::ffff:192.0.2.7").to_string(), "192.0.2.7/32");
        assert_eq!(net("::ffff:192.0.2.0/120").to_string(), "192.0.2.0/24");
        assert_eq!(net("::ffff:0:0/96").to_string(), "0.0.0.0/0");
        // Shorter than /96: an IPv6 prefix, kept as it is.
        assert_eq!(net("::/64").to_string(), "::/64");
        let t = table(&[("::ffff:192.0.2.0/120", Mode::Enforce, None)]);
        assert!(t.strictest_at(ip("192.0.2.9"), NOW).is_some());
        assert!(t.strictest_at(ip("::ffff:192.0.2.9"), NOW).is_some());
        assert!(t.strictest_at(ip("192.0.3.9"), NOW).is_none());
        let t = table(&[("192.0.2.0/24", Mode::Enforce, None)]);
        assert!(t.strictest_at(ip("::ffff:192.0.2.9"), NOW).is_some());
        assert!(t.get(&net("::ffff:192.0.2.0/120")).is_some());
    }

    #[test]
    fn an_address_matches_every_network_containing_it_and_nothing_else() {
        let t = table(&[
            ("10.0.0.0/8", Mode::Enforce, None),
            ("10.1.0.0/16", Mode::Enforce, None),
            ("10.1.2.3", Mode::Enforce, None),
            ("2001:db8::/32", Mode::Enforce, None),
        ]);
        let mut seen = Vec::new();
        t.each_match(ip("10.1.2.3"), NOW, |n, _| seen.push(n.to_string()));
        assert_eq!(seen, ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.3/32"]);
        assert_eq!(
            t.strictest_at(ip("10.1.2.3"), NOW)
                .map(|(n, _)| n.to_string()),
            Some("10.1.2.3/32".into()),
            "on a tie the most specific network"
        );
        assert!(t.strictest_at(ip("11.0.0.1"), NOW).is_none());
        assert!(t.strictest_at(ip("9.255.255.255"), NOW).is_none());
        assert!(t.strictest_at(ip("2001:db8:ffff::1"), NOW).is_some());
        assert!(t.strictest_at(ip("2001:db9::1"), NOW).is_none());
        // Families never mix: ::a01:203 is not 10.1.2.3.
        assert!(t.strictest_at(ip("::a01:203"), NOW).is_none());
    }

    #[test]
    fn the_strictest_entry_decides_enforce_then_longest_until() {
        // An enforced /8 wins over a report-mode /24 inside it, and the reverse.
        let t = table(&[
            ("10.0.0.0/8", Mode::Enforce, None),
            ("10.1.2.0/24", Mode::Report, None),
        ]);
        let (n, e) = t.strictest_at(ip("10.1.2.3"), NOW).expect("hit");
        assert_eq!(
            (n.to_string().as_str(), e.mode),
            ("10.0.0.0/8", Mode::Enforce)
        );
        let t = table(&[
            ("10.0.0.0/8", Mode::Report, None),
            ("10.1.2.0/24", Mode::Enforce, None),
        ]);
        let (n, e) = t.strictest_at(ip("10.1.2.3"), NOW).expect("hit");
        assert_eq!(
            (n.to_string().as_str(), e.mode),
            ("10.1.2.0/24", Mode::Enforce)
        );
        let (_, e) = t.strictest_at(ip("10.9.9.9"), NOW).expect("hit");
        assert_eq!(e.mode, Mode::Report);
        // Within one mode the longer block decides, whatever the prefix length.
        let t = table(&[
            ("10.0.0.0/8", Mode::Enforce, Some(NOW + 10)),
            ("10.1.2.0/24", Mode::Enforce, Some(NOW + 5)),
        ]);
        let (n, _) = t.strictest_at(ip("10.1.2.3"), NOW).expect("hit");
        assert_eq!(n.to_string(), "10.0.0.0/8");
        let t = table(&[
            ("10.0.0.0/8", Mode::Enforce, Some(NOW + 10)),
            ("10.1.2.0/24", Mode::Enforce, None),
        ]);
        let (n, _) = t.strictest_at(ip("10.1.2.3"), NOW).expect("hit");
        assert_eq!(n.to_string(), "10.1.2.0/24");
    }

    #[test]
    fn expired_entries_stop_matching_at_their_until() {
        let t = table(&[
            ("10.0.0.0/8", Mode::Enforce, Some(NOW)),
            ("10.1.0.0/16", Mode::Report, None),
        ]);
        let (_, e) = t.strictest_at(ip("10.1.0.1"), NOW - 1).expect("hit");
        assert_eq!(e.mode, Mode::Enforce);
        let (_, e) = t.strictest_at(ip("10.1.0.1"), NOW).expect("hit");
        assert_eq!(e.mode, Mode::Report);
        assert!(t.strictest_at(ip("10.2.0.1"), NOW).is_none());
        assert_eq!(t.entries_with_until().count(), 1);
    }

    #[test]
    fn lookups_on_a_hundred_thousand_prefixes() {
        let mut t = NetworkTable::default();
        for i in 0..100_000u32 {
            // /24s from 1.0.0.0 to 2.134.159.0, and as many /48s under 2001::/16.
            let v4 = std::net::Ipv4Addr::from((0x0001_0000 + i) << 8);
            t.insert(
                IpNet::V4(Ipv4Net::new(v4, 24).expect("net")),
                entry(1, Mode::Enforce, None),
            );
            let v6 = std::net::Ipv6Addr::from(0x2001_0000u128 << 96 | u128::from(i) << 80);
            t.insert(
                IpNet::V6(Ipv6Net::new(v6, 48).expect("net")),
                entry(1, Mode::Enforce, None),
            );
        }
        assert_eq!(t.len(), 200_000);
        assert!(t.strictest_at(ip("1.0.0.7"), NOW).is_some());
        assert!(t.strictest_at(ip("2.134.159.200"), NOW).is_some());
        assert!(t.strictest_at(ip("2.134.160.1"), NOW).is_none());
        assert!(t.strictest_at(ip("2001:0:1::5"), NOW).is_some());
        assert!(t.strictest_at(ip("2001:1:86a0::5"), NOW).is_none());
    }

    #[test]
    fn changes_name_enforced_networks_added_and_removed() {
        let old = table(&[
            ("10.0.0.0/8", Mode::Enforce, None),
            ("192.0.2.0/24", Mode::Enforce, None),
            ("2001:db8::/32", Mode::Report, None),
        ]);
        let new = table(&[
            ("10.0.0.0/8", Mode::Enforce, None),
            ("198.51.100.7", Mode::Enforce, None),
            ("2001:db8::/32", Mode::Enforce, None),
        ]);
        let (added, removed) = old.changes_to(&new, NOW);
        let s = |v: Vec<IpNet>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(s(added), ["198.51.100.7/32", "2001:db8::/32"]);
        assert_eq!(s(removed), ["192.0.2.0/24"]);
        assert_eq!(old.changes_to(&old.clone(), NOW), (vec![], vec![]));
    }

    #[test]
    fn lint_names_covered_networks_and_mode_conflicts() {
        let t = table(&[
            ("203.0.113.0/24", Mode::Enforce, None),
            ("203.0.113.128/25", Mode::Enforce, None),
            ("203.0.113.7", Mode::Report, None),
            ("198.51.100.0/24", Mode::Report, None),
            ("198.51.100.7", Mode::Enforce, None),
            ("2001:db8::/32", Mode::Enforce, Some(NOW + 10)),
            ("2001:db8:1::/48", Mode::Enforce, None),
        ]);
        let text: Vec<String> = t
            .lint("b.yaml", NOW)
            .iter()
            .map(ToString::to_string)
            .collect();
        let all = text.join("\n");
        assert!(
            all.contains("b.yaml:3:5: 203.0.113.128/25 is already covered by the network 203.0.113.0/24 (line 2)"),
            "{all}"
        );
        assert!(all.contains("b.yaml:4:5: 203.0.113.7/32 is listed with `mode: report`, but the network 203.0.113.0/24 (line 2) is enforced"), "{all}");
        assert!(all.contains("b.yaml:6:5: 198.51.100.7/32 is enforced, but the network 198.51.100.0/24 (line 5) is listed with `mode: report`"), "{all}");
        // A longer block inside a shorter one is not redundant.
        assert!(!all.contains("2001:db8:1::/48"), "{all}");
        assert_eq!(text.len(), 3, "{all}");
    }

    #[test]
    fn lint_warns_about_ranges_an_ingress_connects_from() {
        for (n, what) in [
            ("10.1.0.0/16", "private 10.0.0.0/8"),
            ("127.0.0.1", "loopback 127.0.0.0/8"),
            ("169.254.0.0/16", "link-local 169.254.0.0/16"),
            ("100.64.0.0/10", "shared (carrier-grade NAT) 100.64.0.0/10"),
            ("fd00::/8", "unique local fc00::/7"),
            ("::1", "loopback ::1/128"),
            ("fe80::/64", "link-local fe80::/10"),
            ("172.0.0.0/8", "private 172.16.0.0/12"),
        ] {
            let t = table(&[(n, Mode::Enforce, None)]);
            let lint = t.lint("b.yaml", NOW);
            assert_eq!(lint.len(), 1, "{n}: {lint:?}");
            assert!(lint[0].message.contains(what), "{n}: {}", lint[0].message);
            assert!(lint[0].message.contains("forwarding.trusted_proxies"));
        }
        let t = table(&[("0.0.0.0/0", Mode::Enforce, None)]);
        let m = &t.lint("b.yaml", NOW)[0].message;
        assert!(
            m.contains("private 10.0.0.0/8") && m.contains("loopback 127.0.0.0/8"),
            "{m}"
        );
        for public in ["192.0.2.0/24", "2001:db8::/32", "8.8.8.8", "172.32.0.0/11"] {
            let t = table(&[(public, Mode::Enforce, None)]);
            assert!(t.lint("b.yaml", NOW).is_empty(), "{public}");
        }
        // Expired entries are left to the list's own lint.
        let t = table(&[("10.0.0.0/8", Mode::Enforce, Some(NOW - 1))]);
        assert!(t.lint("b.yaml", NOW).is_empty());
    }

    #[test]
    fn lint_warns_about_ipv6_prefixes_spanning_the_mapped_range() {
        let t = table(&[("::/0", Mode::Enforce, None)]);
        let lint = t.lint("b.yaml", NOW);
        assert!(
            lint.iter().any(|d| d.message.contains("::ffff:0:0/96")),
            "{lint:?}"
        );
        let t = table(&[("2001:db8::/32", Mode::Enforce, None)]);
        assert!(t.lint("b.yaml", NOW).is_empty());
    }

    #[test]
    fn lint_warns_about_entries_over_trusted_proxies() {
        let t = table(&[
            ("203.0.113.0/24", Mode::Enforce, None),
            ("198.51.100.7", Mode::Enforce, None),
        ]);
        let trusted = [net("203.0.113.10"), net("192.0.2.0/24")];
        let lint = t.lint_trusted_proxies(&trusted, "b.yaml", NOW);
        assert_eq!(lint.len(), 1, "{lint:?}");
        assert!(
            lint[0].message.contains("203.0.113.10/32"),
            "{}",
            lint[0].message
        );
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&X_FORWARDED_FOR, HeaderValue::from_str(v).expect("value"));
        }
        h
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = [net("10.0.0.0/8")];
        assert_eq!(
            client_address(ip("198.51.100.9"), &xff(&["203.0.113.5"]), &trusted),
            ip("198.51.100.9")
        );
        assert_eq!(
            client_address(ip("::ffff:198.51.100.9"), &xff(&[]), &[]),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn a_trusted_chain_is_read_from_the_right_past_trusted_proxies() {
        let trusted = [net("10.0.0.0/8"), net("2001:db8:ff::/48")];
        let peer = ip("10.0.0.1");
        // The client wrote 1.1.1.1; the proxy appended the address it saw.
        let h = xff(&["1.1.1.1, 203.0.113.5"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("203.0.113.5"));
        let h = xff(&["1.1.1.1, 203.0.113.5, 10.9.9.9"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("203.0.113.5"));
        // Several header lines are one list, in order.
        let h = xff(&["1.1.1.1", "203.0.113.5", "10.9.9.9"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("203.0.113.5"));
        // Ports, brackets, mapped addresses.
        let h = xff(&["203.0.113.5:4711"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("203.0.113.5"));
        let h = xff(&["[2001:db8::7]:443, [2001:db8:ff::1]"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("2001:db8::7"));
        let h = xff(&["::ffff:203.0.113.5"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("203.0.113.5"));
        // Only proxies: the leftmost of them; nothing: the peer.
        let h = xff(&["10.2.2.2, 10.3.3.3"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("10.2.2.2"));
        assert_eq!(client_address(peer, &xff(&[]), &trusted), peer);
    }

    #[test]
    fn garbage_in_the_chain_ends_the_walk_at_the_last_trusted_address() {
        let trusted = [net("10.0.0.0/8")];
        let peer = ip("10.0.0.1");
        let h = xff(&["203.0.113.5, unknown, 10.7.7.7"]);
        assert_eq!(client_address(peer, &h, &trusted), ip("10.7.7.7"));
        let h = xff(&["203.0.113.5, , 10.7.7.7"]);
        assert_eq!(
            client_address(peer, &h, &trusted),
            ip("203.0.113.5"),
            "empty elements are skipped"
        );
        // A chain longer than the bound stops at a trusted address, never at a client's.
        let long = vec!["10.1.1.1"; MAX_FORWARDED_HOPS + 1].join(", ");
        let h = xff(&[&format!("203.0.113.5, {long}")]);
        assert_eq!(client_address(peer, &h, &trusted), ip("10.1.1.1"));
    }

    use crate::blocklist::Blocklist;

    const FILE: &str = "networks:\n  - 192.0.2.0/24\n  - network: 2001:db8::/32\n    reason: abuse\n    until: 2100-01-01T00:00:00Z\n    mode: report\n    ticket: OPS-7\n  - \"::1\"\n  - '::ffff:198.51.100.7'\n  - 203.0.113.9 # one address\n";

    #[test]
    fn both_readers_read_the_networks_section_alike() {
        let fast = Blocklist::parse_fast_path_only(FILE, "b.yaml");
        let saphyr = Blocklist::parse_with_serde_saphyr(FILE, "b.yaml").expect("valid");
        if let Some(fast) = fast {
            assert_eq!(fast.expect("valid"), saphyr);
        }
        assert_eq!(Blocklist::parse(FILE, "b.yaml").expect("valid"), saphyr);
        let list = saphyr.blocklist;
        assert_eq!(list.len(), 5);
        assert_eq!(list.networks().len(), 5);
        let (n, e) = list.lookup_network(ip("2001:db8::5"), NOW).expect("listed");
        assert_eq!(n.to_string(), "2001:db8::/32");
        assert_eq!(
            (e.mode, e.reason.as_deref(), e.line, e.column),
            (Mode::Report, Some("abuse"), 3, 5)
        );
        assert_eq!(e.meta_text(), "ticket=OPS-7");
        assert!(list.lookup_network(ip("::1"), NOW).is_some());
        assert!(list.lookup_network(ip("198.51.100.7"), NOW).is_some());
        assert!(list.lookup_network(ip("203.0.113.9"), NOW).is_some());
        assert!(list.lookup_network(ip("203.0.113.10"), NOW).is_none());
        assert_eq!(list.expiring_count(NOW), 1);
    }

    #[test]
    fn plain_addresses_are_read_as_text_by_both_readers() {
        let text = "networks:\n  - 10.0.0.0/8\n  - 192.0.2.7\n  - 2001:db8::1\n  - 2001:db8::/48\n  - fe80::/10\n";
        let saphyr = Blocklist::parse_with_serde_saphyr(text, "b.yaml").expect("valid");
        assert_eq!(saphyr.blocklist.networks().len(), 5);
        let fast = Blocklist::parse_fast_path_only(text, "b.yaml").expect("the fast path reads it");
        assert_eq!(fast.expect("valid"), saphyr);
    }

    #[test]
    fn bad_networks_are_errors_at_their_position() {
        let text = "networks:\n  - 192.0.2.0/33\n  - not-a-network\n  - id: 192.0.2.1\n  - {network: \"10.0.0.0/8\", mode: sometimes}\n  - network: 2001:db8::/129\n";
        for errors in [
            Blocklist::parse(text, "b.yaml").expect_err("invalid"),
            Blocklist::parse_with_serde_saphyr(text, "b.yaml").expect_err("invalid"),
        ] {
            let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
            assert_eq!(text.len(), 5, "{text:#?}");
            assert_eq!(
                text[0],
                "b.yaml:2:5: `192.0.2.0/33`: prefix length /33 is longer than /32, the length of an IPv4 address"
            );
            assert!(
                text[1].starts_with("b.yaml:3:5: `not-a-network` is not a network"),
                "{}",
                text[1]
            );
            assert!(
                text[2].starts_with("b.yaml:4:") && text[2].contains("written with `network:`"),
                "{}",
                text[2]
            );
            assert!(
                text[3].starts_with("b.yaml:5:") && text[3].contains("`mode: sometimes`"),
                "{}",
                text[3]
            );
            assert!(
                text[4].starts_with("b.yaml:6:") && text[4].contains("/129"),
                "{}",
                text[4]
            );
        }
    }

    #[test]
    fn host_bits_and_networks_listed_twice_are_warnings() {
        let text = "networks:\n  - 10.0.0.1/8\n  - 192.0.2.1\n  - network: ::ffff:192.0.2.1\n    mode: report\n";
        let parsed = Blocklist::parse(text, "b.yaml").expect("valid");
        let w: Vec<String> = parsed.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 2, "{w:#?}");
        assert!(
            w[0].starts_with("b.yaml:2:5: 10.0.0.1/8 has host bits set"),
            "{}",
            w[0]
        );
        assert!(
            w[1].starts_with("b.yaml:4:5: network 192.0.2.1/32 is listed twice (first at line 3)")
                && w[1].contains("the enforced entry applies"),
            "{}",
            w[1]
        );
        let list = parsed.blocklist;
        assert_eq!(list.networks().len(), 2);
        let (_, e) = list.lookup_network(ip("192.0.2.1"), NOW).expect("listed");
        assert_eq!(e.mode, Mode::Enforce);
        assert!(list.lookup_network(ip("10.255.0.1"), NOW).is_some());
    }

    #[test]
    fn entries_come_in_address_then_length_order() {
        let mut t = NetworkTable::default();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 33) as u8;
            let v4 = Ipv4Net::new(std::net::Ipv4Addr::from((x >> 32) as u32), len).expect("net");
            t.insert(IpNet::V4(v4), entry(1, Mode::Enforce, None));
            let v6 =
                Ipv6Net::new(std::net::Ipv6Addr::from(u128::from(x) << 64), len * 2).expect("net");
            t.insert(IpNet::V6(v6), entry(1, Mode::Enforce, None));
        }
        let got: Vec<IpNet> = t.iter().map(|(n, _)| n).collect();
        let mut sorted = got.clone();
        sorted.sort_by_key(|n| (matches!(n, IpNet::V6(_)), n.network(), n.prefix_len()));
        assert_eq!(got, sorted);
    }

    #[test]
    fn the_list_lints_and_diffs_its_networks() {
        let old = Blocklist::parse(
            "networks:\n  - 10.0.0.0/8\n  - 203.0.113.0/24\n  - 198.51.100.7\n",
            "old.yaml",
        )
        .expect("valid")
        .blocklist;
        let new = Blocklist::parse(
            "networks:\n  - 203.0.113.0/24\n  - 203.0.113.128/25\n  - network: 198.51.100.7\n    mode: report\n  - 2001:db8::/32\n  - network: 192.0.2.0/24\n    until: 2001-01-01T00:00:00Z\n",
            "new.yaml",
        )
        .expect("valid")
        .blocklist;
        let lint: Vec<String> = old
            .lint("old.yaml", NOW)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lint.len(), 1, "{lint:#?}");
        assert!(lint[0].starts_with("old.yaml:2:5: 10.0.0.0/8 overlaps private 10.0.0.0/8"));
        let lint: Vec<String> = new
            .lint("new.yaml", NOW)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(lint.len(), 2, "{lint:#?}");
        assert!(lint[0].starts_with("new.yaml:3:5: 203.0.113.128/25 is already covered"));
        assert!(
            lint[1].starts_with("new.yaml:7:5: entry expired"),
            "{}",
            lint[1]
        );
        let c = old.changes_to(&new, NOW);
        let s = |v: &[IpNet]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(s(&c.added_networks), ["203.0.113.128/25", "2001:db8::/32"]);
        assert_eq!(s(&c.removed_networks), ["10.0.0.0/8", "198.51.100.7/32"]);
        let d: Vec<(String, String)> = crate::blocklist::diff::differences(&old, &new)
            .into_iter()
            .map(|d| {
                let c = match d.change {
                    crate::blocklist::diff::Change::Added(_) => "+",
                    crate::blocklist::diff::Change::Removed(_) => "-",
                    crate::blocklist::diff::Change::Changed(..) => "~",
                };
                (d.section.to_owned(), format!("{c}{}", d.key))
            })
            .collect();
        let want = [
            "-10.0.0.0/8",
            "+192.0.2.0/24",
            "~198.51.100.7/32",
            "+203.0.113.128/25",
            "+2001:db8::/32",
        ];
        assert_eq!(
            d,
            want.iter()
                .map(|k| ("networks".to_owned(), (*k).to_owned()))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn entries_keep_their_metadata() {
        let mut t = NetworkTable::default();
        let mut e = entry(3, Mode::Enforce, None);
        e.reason = Some(Arc::from("abuse"));
        t.insert(net("192.0.2.0/24"), e);
        let (_, got) = t.strictest_at(ip("192.0.2.1"), NOW).expect("hit");
        assert_eq!(got.reason.as_deref(), Some("abuse"));
        assert!(t.get_mut(&net("192.0.2.0/24")).is_some());
        assert!(t.remove(&net("192.0.2.0/24")).is_some());
        assert!(t.is_empty());
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        /// A prefix drawn near a few bases, so that prefixes nest and addresses hit them.
        fn prefix() -> impl Strategy<Value = IpNet> {
            prop_oneof![
                (any::<u8>(), any::<u8>(), 0u8..=32).prop_map(|(a, b, len)| {
                    let addr = std::net::Ipv4Addr::new(10, a & 0x0f, b & 0x0f, a ^ b);
                    IpNet::V4(Ipv4Net::new(addr, len).expect("len").trunc())
                }),
                (any::<u16>(), 0u8..=128).prop_map(|(x, len)| {
                    let addr =
                        std::net::Ipv6Addr::new(0x2001, 0xdb8, x & 0x0f, 0, 0, 0, 0, x & 0xff);
                    IpNet::V6(Ipv6Net::new(addr, len).expect("len").trunc())
                }),
            ]
        }

        fn address() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                (any::<u8>(), any::<u8>()).prop_map(|(a, b)| {
                    IpAddr::from(std::net::Ipv4Addr::new(10, a & 0x0f, b & 0x0f, a ^ b))
                }),
                any::<u16>().prop_map(|x| {
                    IpAddr::from(std::net::Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        x & 0x0f,
                        0,
                        0,
                        0,
                        0,
                        x & 0xff,
                    ))
                }),
                any::<u32>().prop_map(|x| IpAddr::from(std::net::Ipv4Addr::from(x))),
            ]
        }

        fn listed() -> impl Strategy<Value = (IpNet, Mode, Option<i64>)> {
            (
                prefix(),
                prop_oneof![Just(Mode::Enforce), Just(Mode::Report)],
                prop_oneof![Just(None), (NOW - 5..NOW + 5).prop_map(Some)],
            )
        }

        /// The entry that decides, by a scan of every entry.
        fn by_scan(entries: &[(IpNet, Entry)], ip: IpAddr) -> Option<(IpNet, Mode, Option<i64>)> {
            let mut best: Option<&(IpNet, Entry)> = None;
            for x in entries {
                if !x.0.contains(&ip) || !x.1.in_force_at(NOW) {
                    continue;
                }
                let better = match best {
                    None => true,
                    Some(b) => {
                        x.1.is_stricter_than(&b.1)
                            || (!b.1.is_stricter_than(&x.1) && x.0.prefix_len() > b.0.prefix_len())
                    }
                };
                if better {
                    best = Some(x);
                }
            }
            best.map(|(n, e)| (*n, e.mode, e.until))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn the_trie_decides_as_a_scan_of_every_entry(
                list in prop::collection::vec(listed(), 0..40),
                ips in prop::collection::vec(address(), 1..20),
            ) {
                let mut table = NetworkTable::default();
                let mut entries: Vec<(IpNet, Entry)> = Vec::new();
                for (i, (net, mode, until)) in list.into_iter().enumerate() {
                    // One entry a network, as the parser leaves it after merging.
                    if entries.iter().any(|(n, _)| *n == net) {
                        continue;
                    }
                    let e = entry(i as u64 + 2, mode, until);
                    table.insert(net, e.clone());
                    entries.push((net, e));
                }
                for ip in ips {
                    let got = table.strictest_at(ip, NOW).map(|(n, e)| (n, e.mode, e.until));
                    prop_assert_eq!(got, by_scan(&entries, ip), "{}", ip);
                }
            }

            #[test]
            fn a_parsed_network_reads_back_as_itself(text in "[0-9a-fA-F:./% \\[\\]]{0,40}") {
                if let Ok(n) = parse_network(&text) {
                    let again = parse_network(&n.net.to_string());
                    prop_assert_eq!(again.map(|m| m.net), Ok(n.net));
                }
            }

            #[test]
            fn the_client_is_the_peer_or_an_address_from_the_chain(
                values in prop::collection::vec("[0-9a-f:., \\[\\]unknow]{0,30}", 0..4),
                trusted_peer in any::<bool>(),
            ) {
                let peer: IpAddr = if trusted_peer { "10.0.0.1" } else { "198.51.100.1" }
                    .parse()
                    .expect("ip");
                let mut h = HeaderMap::new();
                for v in &values {
                    if let Ok(v) = http::HeaderValue::from_str(v) {
                        h.append(&X_FORWARDED_FOR, v);
                    }
                }
                let trusted = [net("10.0.0.0/8")];
                let client = client_address(peer, &h, &trusted);
                if !trusted_peer {
                    prop_assert_eq!(client, peer);
                } else if client != peer {
                    let named = values.iter().flat_map(|v| v.split(',')).any(|e| {
                        parse_forwarded_element(e.trim()).is_some_and(|ip| ip.to_canonical() == client)
                    });
                    prop_assert!(named, "{} from {:?}", client, values);
                }
            }
        }
    }
}
