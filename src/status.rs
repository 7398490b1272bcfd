//! `GET /blocklist` on the ops listener: what this pod enforces. The file's SHA-256 (compare
//! it across pods, or with `sha256sum blocklist.yaml`), the entries in force by kind, when the
//! list was loaded and from where, the last reload error while the file stays broken, and the
//! global mode.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::blocklist::store::{BlocklistStore, LoadState};
use crate::util::{format_timestamp, unix_secs};

/// What the ops listener reports about the blocklist.
pub struct Status {
    pub blocklist: Arc<BlocklistStore>,
    /// `blocklist.mode`: `enforce`, or `report` when every match is a dry run.
    pub mode: &'static str,
}

/// The JSON of `GET /blocklist`.
#[derive(Debug, Serialize)]
pub struct BlocklistStatus {
    /// Lower-case hex SHA-256 of the file the list in force was parsed from.
    pub sha256: String,
    /// The file's path.
    pub source: String,
    /// RFC 3339, UTC.
    pub loaded_at: String,
    /// The last read of the file that succeeded (a change applied, or the same content).
    pub last_reload_success_at: String,
    /// Entries in force (enforced, `until` not passed), by kind.
    pub entries: Entries,
    /// Entries in the file, in force or not.
    pub entries_in_file: usize,
    /// `enforce` or `report` (`blocklist.mode`).
    pub mode: &'static str,
    /// Every error of the last reload, as `file:line:column: message` lines, while the file
    /// stays broken (the last good list is in force meanwhile); `null` otherwise.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Entries {
    pub identity: usize,
    pub email: usize,
    pub domain: usize,
    pub network: usize,
}

/// RFC 3339 in UTC, to the second (the epoch for a time before it).
pub fn rfc3339(t: SystemTime) -> String {
    format_timestamp(unix_secs(t) as i64)
}

impl Status {
    pub fn new(blocklist: Arc<BlocklistStore>, report_only: bool) -> Self {
        Status {
            blocklist,
            mode: if report_only { "report" } else { "enforce" },
        }
    }

    /// The current status. Blocking for a large list when an entry has lapsed since the
    /// last count: call it off the async workers.
    pub fn blocklist_status(&self) -> BlocklistStatus {
        let s: LoadState = self.blocklist.state();
        BlocklistStatus {
            sha256: s.sha256,
            source: self.blocklist.name(),
            loaded_at: rfc3339(s.loaded_at),
            last_reload_success_at: rfc3339(s.last_reload_success),
            entries: Entries {
                identity: s.entries.identity,
                email: s.entries.email,
                domain: s.entries.domain,
                network: s.entries.network,
            },
            entries_in_file: s.entries_in_file,
            mode: self.mode,
            last_error_at: s.last_error.as_ref().map(|e| rfc3339(e.at)),
            last_error: s.last_error.map(|e| e.message),
        }
    }

    pub fn blocklist_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(&self.blocklist_status())
            .unwrap_or_else(|_| "{}".to_owned());
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_to_the_second() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_796_299_200_500);
        assert_eq!(rfc3339(t), "2026-12-03T12:00:00Z");
    }
}
