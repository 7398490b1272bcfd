//! Where the blocklist's bytes come from, and the list read and parsed at start-up.
//!
//! The store ([`super::store`]) takes its bytes from any [`Source`]: the file at
//! `blocklist.path` is a [`FileSource`]; a remote list implements [`Source`] and is chosen in
//! [`from_config`].

use std::path::Path;
use std::sync::Arc;

use super::incremental::Tracker;
use super::{Blocklist, Parsed};
use crate::config::BlocklistConfig;
use crate::diagnostic::Diagnostic;
use crate::refresh::{FileSource, Source};

/// The largest blocklist read (about six million ids). A path pointed at a log or a disk
/// image by mistake is refused with a clear error instead of exhausting the memory of the
/// gateway that guards logins; the last good list stays in force.
pub const MAX_BLOCKLIST_BYTES: u64 = 256 * 1024 * 1024;

/// The blocklist file at `path`, read once it has been left alone for `quiet`.
pub fn file(path: &Path, quiet: std::time::Duration) -> FileSource {
    FileSource::new(path, "blocklist", quiet, MAX_BLOCKLIST_BYTES)
}

/// The source the config names.
pub fn from_config(config: &BlocklistConfig) -> Result<Arc<dyn Source>, Vec<Diagnostic>> {
    if let Some(url) = &config.url {
        return crate::remote::source(config, url)
            .map(|s| Arc::new(s) as Arc<dyn Source>)
            .map_err(|m| vec![Diagnostic::whole_file(&crate::remote::shown(url), m)]);
    }
    Ok(Arc::new(file(&config.path, config.debounce.get())))
}

/// A list fetched and parsed, not yet in force: read once at start-up, checked, and handed to
/// the store ([`super::store::BlocklistStore::new`]) with the source it came from.
pub struct Loaded {
    pub source: Arc<dyn Source>,
    pub parsed: Parsed,
    /// Of the bytes parsed, lower-case hex.
    pub sha256: String,
    /// What the next reload needs to read only what changed.
    pub tracker: Tracker,
}

impl Loaded {
    /// Fetches the source's content ([`Source::fetch_first`]) and parses it; every problem
    /// as a diagnostic.
    pub async fn fetch(source: Arc<dyn Source>) -> Result<Loaded, Vec<Diagnostic>> {
        let name = source.name();
        let bytes = match source.fetch_first().await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(vec![Diagnostic::whole_file(
                    &name,
                    "the source sent no content".to_owned(),
                )])
            }
            Err(m) => return Err(vec![Diagnostic::whole_file(&name, m)]),
        };
        let mut tracker = Tracker::default();
        let (parsed, sha256) = tracker.parse_full_owned(bytes, &name)?;
        Ok(Loaded {
            source,
            parsed,
            sha256,
            tracker,
        })
    }
}

/// Reads and parses the file at `blocklist.path` now (blocking): what the binary checks
/// before it starts, handed to [`crate::start_with`] so that the list is parsed once.
pub fn read_file(config: &BlocklistConfig) -> Result<Loaded, Vec<Diagnostic>> {
    let file = file(&config.path, config.debounce.get());
    let name = file.name();
    let bytes = file
        .read_now()
        .map_err(|m| vec![Diagnostic::whole_file(&name, m)])?;
    let mut tracker = Tracker::default();
    let (parsed, sha256) = tracker.parse_full_owned(bytes, &name)?;
    Ok(Loaded {
        source: Arc::new(file),
        parsed,
        sha256,
        tracker,
    })
}

/// Reads and parses the list the config names, once, at start-up.
pub async fn load(config: &BlocklistConfig) -> Result<Loaded, Vec<Diagnostic>> {
    if let Some(url) = &config.url {
        // A remote list has start-up rules of its own: the cache, `require_on_start`.
        return crate::remote::load(config, url).await;
    }
    Loaded::fetch(from_config(config)?).await
}

/// Reads and parses a blocklist file now, without waiting for it to settle (`check
/// --blocklist`, `lookup`, `diff`).
pub fn read_blocklist(path: &Path) -> Result<Parsed, Vec<Diagnostic>> {
    let name = path.display().to_string();
    let bytes = file(path, std::time::Duration::ZERO)
        .read_now()
        .map_err(|m| vec![Diagnostic::whole_file(&name, m)])?;
    parse_bytes(&bytes, &name)
}

/// Parses a list's bytes; `name` names it in diagnostics.
pub fn parse_bytes(bytes: &[u8], name: &str) -> Result<Parsed, Vec<Diagnostic>> {
    Blocklist::parse(text_of(bytes, name)?, name)
}

/// A list's bytes as text; `name` names it in the error.
pub(super) fn text_of<'a>(bytes: &'a [u8], name: &str) -> Result<&'a str, Vec<Diagnostic>> {
    std::str::from_utf8(bytes)
        .map_err(|e| vec![Diagnostic::whole_file(name, format!("not UTF-8 text: {e}"))])
}
