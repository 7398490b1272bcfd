use std::sync::Arc;

use http::HeaderValue;

use http::HeaderMap;
use ipnet::{Ipv4Net, Ipv6Net};

use super::client::MAX_FORWARDED_HOPS;
use super::*;
use crate::headers::X_FORWARDED_FOR;

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
        let v6 = Ipv6Net::new(std::net::Ipv6Addr::from(u128::from(x) << 64), len * 2).expect("net");
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

mod properties;
