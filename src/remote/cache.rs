//! The local copy of the last good list (`blocklist.cache_path`), written atomically.

use std::path::{Path, PathBuf};

use super::too_large;
use crate::blocklist::source::MAX_BLOCKLIST_BYTES;

/// The local copy of the last good list (`blocklist.cache_path`).
#[derive(Debug, Clone)]
pub struct Cache {
    path: PathBuf,
}

impl Cache {
    pub fn new(path: &Path) -> Self {
        Cache {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the list atomically: a reader (or a restart) sees the old copy or the new one,
    /// never a part. The folder is created if missing.
    pub fn store(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            // The rename itself reaches the disk with the folder.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// The cached list, if there is one (bounded like a blocklist file).
    pub fn load(&self) -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(&self.path)
            .map_err(|e| format!("{}: cannot read the cached list: {e}", self.path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_BLOCKLIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: cannot read the cached list: {e}", self.path.display()))?;
        if bytes.len() as u64 > MAX_BLOCKLIST_BYTES {
            return Err(format!("{}: {}", self.path.display(), too_large()));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = Cache::new(&dir.path().join("state/list.yaml"));
        assert!(cache.load().is_err());
        cache.store(b"identities: [a]\n").expect("store");
        cache.store(b"identities: []\n").expect("store again");
        assert_eq!(cache.load().expect("load"), b"identities: []\n");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("list.yaml")]);
    }
}
