//! The client address of a request, believed from `X-Forwarded-For` only past trusted
//! proxies.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

use crate::headers::X_FORWARDED_FOR;

/// At most this many `X-Forwarded-For` elements are read, from the right.
pub(super) const MAX_FORWARDED_HOPS: usize = 64;

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
