//! The one decision, shared by the proxy's public and admin policies (`enforce/`) and the web
//! hook (`hooks.rs`): suspects (identities Kratos named, with the addresses of their records)
//! → hits (what on the list matches each, the strictest entry winning) → verdict (enforced or
//! reported).
//! The audit event and its metric are written here too, so both callers log the same fields.

use std::net::IpAddr;
use std::sync::Arc;

use uuid::Uuid;

use crate::blocklist::{Blocklist, Entry, Mode};
use crate::metrics::{KindLabels, Metrics};

/// An identity a response or hook call was attributed to: its id when known, and the
/// addresses of its Kratos record (`None` until fetched, which happens only when the list
/// has address entries: the common case allocates nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Suspect {
    pub id: Option<Uuid>,
    pub addresses: Option<Arc<[String]>>,
}

/// A listed identity, and the entry that decides about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub identity: Option<Uuid>,
    /// `identity`, `email:…` or `email_domain:…`.
    pub matched: String,
    pub entry: Entry,
}

/// The matches of one decision, split by whether they are enforced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub enforced: Vec<Hit>,
    pub reported: Vec<Hit>,
}

impl Verdict {
    /// Nobody listed: the answer passes, nothing to log (the common case, kept cheap).
    pub fn is_empty(&self) -> bool {
        self.enforced.is_empty() && self.reported.is_empty()
    }

    pub fn blocks(&self) -> bool {
        !self.enforced.is_empty()
    }
}

/// The strictest entry in force that matches `suspect`: its id, any of its addresses, or
/// any of their domains.
pub fn strictest_hit(list: &Blocklist, suspect: &Suspect, now: i64) -> Option<Hit> {
    let mut best: Option<Hit> = suspect
        .id
        .as_ref()
        .and_then(|id| list.lookup_at(id, now))
        .map(|entry| Hit {
            identity: suspect.id,
            matched: "identity".to_owned(),
            entry,
        });
    if list.has_address_entries() {
        for address in suspect.addresses.iter().flat_map(|a| a.iter()) {
            for (matched, entry) in list.address_matches(address, now) {
                if best
                    .as_ref()
                    .is_none_or(|b| entry.is_stricter_than(&b.entry))
                {
                    best = Some(Hit {
                        identity: suspect.id,
                        matched: matched.to_string(),
                        entry,
                    });
                }
            }
        }
    }
    best
}

/// Matches every suspect against the list in force. `report_only` (`blocklist.mode:
/// report`) turns every match into a dry run.
pub fn decide(list: &Blocklist, suspects: &[Suspect], now: i64, report_only: bool) -> Verdict {
    let mut verdict = Verdict::default();
    for s in suspects {
        if let Some(hit) = strictest_hit(list, s, now) {
            if hit.entry.mode == Mode::Report || report_only {
                verdict.reported.push(hit);
            } else {
                verdict.enforced.push(hit);
            }
        }
    }
    verdict
}

/// The decision on a client address: the strictest `networks` entry in force that contains
/// it, as a hit without an identity (`matched` = `network:…`). Nothing to do (and nothing
/// allocated) when the list has no networks.
pub fn decide_network(list: &Blocklist, client: IpAddr, now: i64, report_only: bool) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some((net, entry)) = list.lookup_network(client, now) {
        let hit = Hit {
            identity: None,
            matched: format!("network:{net}"),
            entry: entry.clone(),
        };
        if hit.entry.mode == Mode::Report || report_only {
            verdict.reported.push(hit);
        } else {
            verdict.enforced.push(hit);
        }
    }
    verdict
}

/// Where a decision was made and what was answered, for the audit event.
pub struct AuditContext<'a> {
    /// `login`, `whoami`, `extend`, `hook`, …
    pub kind: &'static str,
    pub client_ip: Option<IpAddr>,
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub session_id: Option<Uuid>,
    /// The status answered for enforced hits (for reported ones: what would have been).
    pub outcome: u16,
}

/// One audit event and one `kratos_gate_blocked_total` increment per hit.
pub fn audit(metrics: &Metrics, verdict: &Verdict, ctx: &AuditContext<'_>) {
    for (hits, mode) in [
        (&verdict.enforced, "enforce"),
        (&verdict.reported, "report"),
    ] {
        for hit in hits {
            metrics
                .blocked
                .get_or_create(&KindLabels {
                    kind: ctx.kind,
                    mode,
                })
                .inc();
            tracing::warn!(
                target: "kratos_gate::audit",
                event = if mode == "report" { "would_block" } else { "blocked" },
                mode,
                kind = ctx.kind,
                identity_id = hit.identity.map(|s| s.to_string()).unwrap_or_default(),
                matched = %hit.matched,
                entry_line = hit.entry.line,
                session_id = ctx.session_id.map(|s| s.to_string()).unwrap_or_default(),
                reason = hit.entry.reason.as_deref().unwrap_or(""),
                meta = hit.entry.meta_text(),
                client_ip = ctx.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                request_id = ctx.request_id,
                method = ctx.method,
                path = ctx.path,
                outcome = ctx.outcome,
                "{}",
                if hit.matched.starts_with("network:") {
                    "request from a listed network"
                } else {
                    "session of a listed identity"
                }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
    const NOW: i64 = 1_800_000_000;

    fn list(yaml: &str) -> Blocklist {
        Blocklist::parse(yaml, "blocklist.yaml")
            .expect("parses")
            .blocklist
    }

    fn suspect(id: Option<&str>, addresses: &[&str]) -> Suspect {
        Suspect {
            id: id.map(|i| Uuid::parse_str(i).expect("uuid")),
            addresses: Some(addresses.iter().map(|a| (*a).to_owned()).collect()),
        }
    }

    fn modes(v: &Verdict) -> (usize, usize) {
        (v.enforced.len(), v.reported.len())
    }

    #[test]
    fn nobody_listed_is_an_empty_verdict() {
        let l = list("identities: []\n");
        assert!(decide(&l, &[suspect(Some(ID), &["a@b.example"])], NOW, false).is_empty());
        assert!(decide(&l, &[], NOW, false).is_empty());
    }

    #[test]
    fn an_enforced_entry_wins_over_a_report_entry_for_the_same_id_in_either_order() {
        for yaml in [
            format!("identities:\n  - {{id: {ID}, mode: report}}\n  - {ID}\n"),
            format!("identities:\n  - {ID}\n  - {{id: {ID}, mode: report}}\n"),
        ] {
            let v = decide(&list(&yaml), &[suspect(Some(ID), &[])], NOW, false);
            assert_eq!(modes(&v), (1, 0), "{yaml}");
        }
    }

    #[test]
    fn an_enforced_domain_wins_over_a_report_mode_address_and_the_reverse() {
        let yaml = "emails:\n  - {email: a@evil.example, mode: report}\nemail_domains:\n  - evil.example\n";
        let v = decide(
            &list(yaml),
            &[suspect(None, &["a@evil.example"])],
            NOW,
            false,
        );
        assert_eq!(modes(&v), (1, 0));
        assert_eq!(v.enforced[0].matched, "email_domain:evil.example");
        let yaml = "emails:\n  - a@evil.example\nemail_domains:\n  - {domain: evil.example, mode: report}\n";
        let v = decide(
            &list(yaml),
            &[suspect(None, &["a@evil.example"])],
            NOW,
            false,
        );
        assert_eq!(modes(&v), (1, 0));
        assert_eq!(v.enforced[0].matched, "email:a@evil.example");
    }

    #[test]
    fn an_enforced_address_wins_over_a_report_mode_id() {
        let yaml =
            format!("identities:\n  - {{id: {ID}, mode: report}}\nemails:\n  - a@b.example\n");
        let v = decide(
            &list(&yaml),
            &[suspect(Some(ID), &["a@b.example"])],
            NOW,
            false,
        );
        assert_eq!(modes(&v), (1, 0));
    }

    #[test]
    fn among_enforced_entries_the_longer_block_decides() {
        let yaml = format!(
            "identities:\n  - {{id: {ID}, until: 2030-01-01T00:00:00Z}}\nemails:\n  - a@b.example\n"
        );
        let v = decide(
            &list(&yaml),
            &[suspect(Some(ID), &["a@b.example"])],
            NOW,
            false,
        );
        assert_eq!(v.enforced[0].entry.until, None);
    }

    #[test]
    fn expired_entries_do_not_match_and_report_only_reports_everything() {
        let yaml = format!("identities:\n  - {{id: {ID}, until: 2020-01-01T00:00:00Z}}\n");
        assert!(decide(&list(&yaml), &[suspect(Some(ID), &[])], NOW, false).is_empty());
        let yaml = format!("identities:\n  - {ID}\n");
        let v = decide(&list(&yaml), &[suspect(Some(ID), &[])], NOW, true);
        assert_eq!(modes(&v), (0, 1));
    }

    #[test]
    fn a_client_address_is_decided_by_the_strictest_network() {
        let l = list("networks:\n  - {network: 10.0.0.0/8, mode: report}\n  - 10.1.0.0/16\n");
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let v = decide_network(&l, ip("10.1.2.3"), NOW, false);
        assert_eq!(modes(&v), (1, 0));
        assert_eq!(v.enforced[0].matched, "network:10.1.0.0/16");
        assert_eq!(v.enforced[0].identity, None);
        assert_eq!(
            modes(&decide_network(&l, ip("10.2.0.1"), NOW, false)),
            (0, 1)
        );
        assert_eq!(
            modes(&decide_network(&l, ip("10.1.2.3"), NOW, true)),
            (0, 1)
        );
        assert!(decide_network(&l, ip("11.0.0.1"), NOW, false).is_empty());
        assert!(decide_network(&list("identities: []\n"), ip("10.1.2.3"), NOW, false).is_empty());
    }

    #[test]
    fn one_hit_per_suspect() {
        let yaml = format!(
            "identities:\n  - {ID}\nemails:\n  - a@b.example\nemail_domains:\n  - b.example\n"
        );
        let v = decide(
            &list(&yaml),
            &[suspect(Some(ID), &["a@b.example", "c@b.example"])],
            NOW,
            false,
        );
        assert_eq!(modes(&v), (1, 0));
    }

    /// Who is listed how, whom the response names, the global mode → (enforced, reported).
    #[test]
    fn decision_table() {
        const OTHER: &str = "11111111-2222-4333-8444-555555555555";
        let unfetched = |id: &str| Suspect {
            id: Some(Uuid::parse_str(id).expect("uuid")),
            addresses: None,
        };
        let by_id = format!("identities:\n  - {ID}\n");
        let by_id_report = format!("identities:\n  - {{id: {ID}, mode: report}}\n");
        let until_later = format!("identities:\n  - {{id: {ID}, until: 2030-01-01T00:00:00Z}}\n");
        let by_email = "emails:\n  - a@b.example\n".to_owned();
        let by_domain = "email_domains:\n  - b.example\n".to_owned();
        let both = format!("identities:\n  - {ID}\n  - {OTHER}\n");
        // (case, list, suspects, blocklist.mode report, (enforced, reported))
        type Row<'a> = (&'a str, &'a str, Vec<Suspect>, bool, (usize, usize));
        let rows: Vec<Row> = vec![
            (
                "listed id",
                &by_id,
                vec![suspect(Some(ID), &[])],
                false,
                (1, 0),
            ),
            (
                "listed id, blocklist.mode report",
                &by_id,
                vec![suspect(Some(ID), &[])],
                true,
                (0, 1),
            ),
            (
                "entry in report mode",
                &by_id_report,
                vec![suspect(Some(ID), &[])],
                false,
                (0, 1),
            ),
            (
                "entry until a later date",
                &until_later,
                vec![suspect(Some(ID), &[])],
                false,
                (1, 0),
            ),
            (
                "another identity",
                &by_id,
                vec![suspect(Some(OTHER), &[])],
                false,
                (0, 0),
            ),
            (
                "listed address",
                &by_email,
                vec![suspect(Some(OTHER), &["a@b.example"])],
                false,
                (1, 0),
            ),
            (
                "addresses not fetched",
                &by_email,
                vec![unfetched(OTHER)],
                false,
                (0, 0),
            ),
            (
                "address in a listed domain",
                &by_domain,
                vec![suspect(None, &["z@b.example"])],
                false,
                (1, 0),
            ),
            (
                "address in another domain",
                &by_domain,
                vec![suspect(None, &["z@c.example"])],
                false,
                (0, 0),
            ),
            (
                "nobody named",
                &by_id,
                vec![suspect(None, &[])],
                false,
                (0, 0),
            ),
            (
                "one of two listed",
                &by_id,
                vec![suspect(Some(OTHER), &[]), suspect(Some(ID), &[])],
                false,
                (1, 0),
            ),
            (
                "both listed",
                &both,
                vec![suspect(Some(OTHER), &[]), suspect(Some(ID), &[])],
                false,
                (2, 0),
            ),
        ];
        for (name, yaml, suspects, report_only, want) in rows {
            let v = decide(&list(yaml), &suspects, NOW, report_only);
            assert_eq!(modes(&v), want, "{name}");
            assert_eq!(v.blocks(), want.0 > 0, "{name}");
            assert_eq!(v.is_empty(), want == (0, 0), "{name}");
        }
    }
}
