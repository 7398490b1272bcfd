//! Findings that do not make a list invalid but are worth fixing (`kratos-gate check`).

use super::types::{Blocklist, Entry, Matched, Mode};
use crate::diagnostic::Diagnostic;
use crate::util::format_timestamp;

impl Blocklist {
    /// Things worth fixing that do not make the file invalid: expired entries (they match
    /// nothing), addresses already covered by a listed domain, and modes in conflict: an
    /// e-mail (or domain) in report mode under an enforced domain, or the reverse; and for
    /// networks, those named in [`crate::networks::NetworkTable::lint`]. (The same
    /// id, address or domain listed twice with both modes is a parse warning, see
    /// [`Parsed::warnings`]: the merged list no longer knows.)
    pub fn lint(&self, source: &str, now: i64) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for e in self.entries_with_until().filter(|e| !e.in_force_at(now)) {
            let until = e.until.map(format_timestamp).unwrap_or_default();
            out.push(Diagnostic::new(
                source,
                e.line,
                e.column,
                format!("entry expired at {until}; it matches nothing and can be removed"),
            ));
        }
        let domain_only = Blocklist {
            domains: self.domains.clone(),
            ..Blocklist::default()
        };
        let conflict = |what: &str, e: &Entry, d: &str, de: &Entry| -> Option<String> {
            match (e.mode, de.mode) {
                (Mode::Report, Mode::Enforce) => Some(format!(
                    "{what} is listed with `mode: report`, but the domain {d} (line {}) is enforced; the enforced entry applies",
                    de.line
                )),
                (Mode::Enforce, Mode::Report) => Some(format!(
                    "{what} is enforced, but the domain {d} (line {}) is listed with `mode: report`; for {what} the enforced entry applies",
                    de.line
                )),
                _ => None,
            }
        };
        for (email, e) in &self.emails {
            let in_force = e.in_force_at(now);
            let mut covered = None;
            let mut conflicted = false;
            domain_only.each_address_match(email, now, |m, de| {
                let Matched::Domain(d) = m else { return };
                if let Some(message) = conflict(email, e, d, de).filter(|_| in_force) {
                    conflicted = true;
                    out.push(Diagnostic::new(source, e.line, e.column, message));
                } else if covered.is_none() && !e.is_stricter_than(de) {
                    covered = Some((d, de.line));
                }
            });
            if let (Some((d, line)), false) = (covered, conflicted) {
                out.push(Diagnostic::new(
                    source,
                    e.line,
                    e.column,
                    format!("{email} is already covered by the domain {d} (line {line})"),
                ));
            }
        }
        for (domain, e) in self.domains.iter().filter(|(_, e)| e.in_force_at(now)) {
            let mut parent = domain.as_str();
            while let Some((_, p)) = parent.split_once('.') {
                parent = p;
                let Some((d, de)) = self.domains.get_key_value(parent) else {
                    continue;
                };
                if !de.in_force_at(now) {
                    continue;
                }
                if let Some(message) = conflict(domain, e, d, de) {
                    out.push(Diagnostic::new(source, e.line, e.column, message));
                }
            }
        }
        out.extend(self.networks.lint(source, now));
        out.sort_by_key(|d| (d.line, d.column));
        out
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
    fn lint_reports_mode_conflicts_between_addresses_and_domains() {
        let text = "emails:\n  - email: a@evil.example\n    mode: report\n  - email: b@trial.example\n  - c@evil.example\n  - email: d@x.evil.example\n    until: 2999-01-01T00:00:00Z\nemail_domains:\n  - evil.example\n  - domain: trial.example\n    mode: report\n  - domain: sub.evil.example\n    mode: report\n";
        let list = parse(text).expect("valid").blocklist;
        let lint = list.lint("bl.yaml", unix_now());
        let got: Vec<(u64, u64, &str)> = lint
            .iter()
            .map(|d| (d.line, d.column, d.message.as_str()))
            .collect();
        assert_eq!(got.len(), 5, "{got:#?}");
        assert_eq!((got[0].0, got[0].1), (2, 5));
        assert!(got[0].2.contains("a@evil.example is listed with `mode: report`, but the domain evil.example (line 9) is enforced; the enforced entry applies"), "{got:#?}");
        assert_eq!(got[1].0, 4);
        assert!(got[1].2.contains("b@trial.example is enforced, but the domain trial.example (line 10) is listed with `mode: report`; for b@trial.example the enforced entry applies"), "{got:#?}");
        assert_eq!(got[2].0, 5);
        assert!(
            got[2].2.contains("covered by the domain evil.example"),
            "{got:#?}"
        );
        assert_eq!(got[3].0, 6);
        assert!(
            got[3].2.contains("covered by the domain evil.example"),
            "{got:#?}"
        );
        assert_eq!((got[4].0, got[4].1), (12, 5));
        assert!(got[4].2.contains("sub.evil.example is listed with `mode: report`, but the domain evil.example (line 9) is enforced"), "{got:#?}");
    }

    #[test]
    fn an_address_that_outlasts_its_domain_is_not_covered() {
        let text = "emails:\n  - x@evil.example\nemail_domains:\n  - domain: evil.example\n    until: 2999-01-01T00:00:00Z\n";
        let list = parse(text).expect("valid").blocklist;
        assert!(list.lint("bl.yaml", unix_now()).is_empty());
    }

    #[test]
    fn lint_reports_expired_and_redundant_entries() {
        let text = format!("identities:\n  - id: {A}\n    until: 2001-01-01T00:00:00Z\nemails:\n  - a@evil.example\nemail_domains:\n  - evil.example\n");
        let list = parse(&text).expect("valid").blocklist;
        let lint = list.lint("bl.yaml", unix_now());
        assert_eq!(lint.len(), 2, "{lint:?}");
        assert_eq!(lint[0].line, 2);
        assert!(lint[0].message.contains("expired"));
        assert_eq!(lint[1].line, 5);
        assert!(lint[1]
            .message
            .contains("covered by the domain evil.example"));
    }
}
