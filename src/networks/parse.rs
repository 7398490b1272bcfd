//! Network spellings: CIDR prefixes and single addresses, canonicalised (host bits cleared,
//! IPv4-mapped IPv6 as IPv4).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

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
