//! Lints of the network entries: covered networks, mode conflicts, ranges an ingress
//! connects from, IPv6 prefixes over the IPv4-mapped range, entries over trusted proxies.

use ipnet::{IpNet, Ipv6Net};

use super::{canonical, NetworkTable};
use crate::blocklist::Mode;
use crate::diagnostic::Diagnostic;

impl NetworkTable {
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
