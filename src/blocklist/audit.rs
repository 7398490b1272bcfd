//! The audit of a reload: every entry whose enforcement changed, by kind of entry and kind
//! of change, with the checksums of the lists before and after.

use super::diff::Change;
use super::{Blocklist, Entry, Mode};
use crate::util::format_timestamp;

/// Changes listed in the reload's info line; past this many the line names the first ones and
/// the counts, and every change is an event of its own at debug level.
pub const AUDIT_INLINE: usize = 20;

/// What one change did to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Newly enforced (listed, or an expired entry given a later `until`).
    Added,
    /// No longer enforced: deleted, or its `until` moved into the past.
    Removed,
    /// Was in report mode, now enforced.
    NowEnforced,
    /// Was enforced, now in report mode.
    NowReport,
    /// Enforced in both, for longer now.
    Extended,
    /// Enforced in both, for less long now.
    Shortened,
    /// Listed in report mode (nothing blocked).
    ReportAdded,
    /// A report-mode entry removed.
    ReportRemoved,
    /// In report mode in both, with another `until`.
    ReportUntilChanged,
    /// Only the reason or metadata changed.
    DetailsChanged,
}

/// What a change of one entry (as in force before and after) means.
fn classify(before: Option<&Entry>, after: Option<&Entry>) -> Option<ChangeKind> {
    let enforced = |e: &Entry| e.mode == Mode::Enforce;
    Some(match (before, after) {
        (None, None) => return None,
        (None, Some(n)) if enforced(n) => ChangeKind::Added,
        (None, Some(_)) => ChangeKind::ReportAdded,
        (Some(o), None) if enforced(o) => ChangeKind::Removed,
        (Some(_), None) => ChangeKind::ReportRemoved,
        (Some(o), Some(n)) if enforced(o) != enforced(n) => {
            if enforced(n) {
                ChangeKind::NowEnforced
            } else {
                ChangeKind::NowReport
            }
        }
        (Some(o), Some(n)) if o.until != n.until => {
            if !enforced(n) {
                ChangeKind::ReportUntilChanged
            } else if n.is_stricter_than(o) {
                ChangeKind::Extended
            } else {
                ChangeKind::Shortened
            }
        }
        (Some(_), Some(_)) => ChangeKind::DetailsChanged,
    })
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::NowEnforced => "mode_enforce",
            ChangeKind::NowReport => "mode_report",
            ChangeKind::Extended => "until_extended",
            ChangeKind::Shortened => "until_shortened",
            ChangeKind::ReportAdded => "added_report",
            ChangeKind::ReportRemoved => "removed_report",
            ChangeKind::ReportUntilChanged => "until_changed_report",
            ChangeKind::DetailsChanged => "details_changed",
        }
    }
}

/// One changed entry: its kind (`identity`, `email`, `domain`, `network`), its key, and its `until`
/// before and after (`None`: none, or not listed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryChange {
    pub kind: &'static str,
    pub key: String,
    pub change: ChangeKind,
    pub until_before: Option<i64>,
    pub until_after: Option<i64>,
}

impl std::fmt::Display for EntryChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.change.as_str(), self.kind, self.key)?;
        if matches!(
            self.change,
            ChangeKind::Extended | ChangeKind::Shortened | ChangeKind::Added
        ) || self.until_before != self.until_after
        {
            let show = |u: Option<i64>| u.map_or_else(|| "-".to_owned(), format_timestamp);
            if self.until_before.is_some() || self.until_after.is_some() {
                write!(
                    f,
                    " (until {} -> {})",
                    show(self.until_before),
                    show(self.until_after)
                )?;
            }
        }
        Ok(())
    }
}

/// Every change a reload made to what is enforced, with the file's checksums.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    pub sha256: String,
    pub previous_sha256: String,
    /// Identity changes first, then e-mails, then domains; each in key order. Every change
    /// when `full`, else the first [`AUDIT_INLINE`] (a million-id reload would otherwise hold
    /// a record per id only to log a count).
    pub changes: Vec<EntryChange>,
    /// Changes by kind of entry and change, all of them.
    counts: std::collections::BTreeMap<(&'static str, &'static str), usize>,
    /// Keep every change (the audit target logs at debug level).
    full: bool,
}

impl Audit {
    /// Compares two lists at `now`, entry by entry and every kind: additions and removals
    /// (enforced or in report mode), mode changes, `until` changes, and changes of reason or
    /// metadata. An entry whose `until` has passed counts as not listed.
    pub fn between(
        old: &Blocklist,
        new: &Blocklist,
        now: i64,
        previous_sha256: String,
        sha256: &str,
    ) -> Audit {
        let mut audit = Audit {
            sha256: sha256.to_owned(),
            previous_sha256,
            changes: Vec::new(),
            counts: Default::default(),
            full: tracing::enabled!(target: "kratos_gate::audit", tracing::Level::DEBUG),
        };
        crate::blocklist::diff::diff_each(old, new, |section, key, change| {
            let kind = match section {
                "identities" => "identity",
                "emails" => "email",
                "networks" => "network",
                _ => "domain",
            };
            let live = |e: Entry| e.in_force_at(now).then_some(e);
            let (before, after) = match change {
                Change::Added(n) => (None, live(n)),
                Change::Removed(o) => (live(o), None),
                Change::Changed(o, n) => (live(o), live(n)),
            };
            if let Some(change) = classify(before.as_ref(), after.as_ref()) {
                audit.record_with(kind, || key.to_string(), change, before, after);
            }
        });
        audit
    }

    fn keeps_another(&self) -> bool {
        self.full || self.changes.len() < AUDIT_INLINE
    }

    /// Counts a change, and keeps it (making its key) when it is kept.
    fn record_with(
        &mut self,
        kind: &'static str,
        key: impl FnOnce() -> String,
        change: ChangeKind,
        before: Option<Entry>,
        after: Option<Entry>,
    ) {
        *self.counts.entry((kind, change.as_str())).or_default() += 1;
        if self.keeps_another() {
            self.changes
                .push(change_of(kind, key(), change, before, after));
        }
    }

    /// Every change, kept or not.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }

    /// Changes of one kind of entry (`identity`, `email`, `domain`, `network`).
    pub fn count(&self, kind: &str, change: Option<ChangeKind>) -> usize {
        self.counts
            .iter()
            .filter(|((k, c), _)| *k == kind && change.is_none_or(|x| x.as_str() == *c))
            .map(|(_, n)| n)
            .sum()
    }
}

fn change_of(
    kind: &'static str,
    key: String,
    change: ChangeKind,
    before: Option<Entry>,
    after: Option<Entry>,
) -> EntryChange {
    EntryChange {
        kind,
        key,
        change,
        until_before: before.and_then(|e| e.until),
        until_after: after.and_then(|e| e.until),
    }
}
