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
            let addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, x & 0x0f, 0, 0, 0, 0, x & 0xff);
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
