//! Small helpers the whole crate shares: the clock in unix seconds, RFC 3339 timestamps,
//! canonical UUIDs, and content hashes (a fast checksum to notice a change, SHA-256 to name
//! a file's content to ops).

use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// Now, in whole unix seconds (0 for a clock before 1970).
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `t` in fractional unix seconds (0 before 1970), as the metrics export times.
pub fn unix_secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Parses a UUID in its hyphenated form, ignoring surrounding white space.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let t = text.trim();
    // Only the canonical 36-character form: braces, urn: prefixes and the simple form are
    // spellings Kratos never produces, and accepting them would make typos silently valid.
    if t.len() != 36 {
        return None;
    }
    Uuid::try_parse(t).ok()
}

/// Parses an RFC 3339 timestamp into unix seconds.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let t = text.trim();
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|dt| dt.unix_timestamp())
}

/// Unix seconds as RFC 3339 (UTC); the number itself when out of range.
pub fn format_timestamp(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// Content hash used to skip re-reading unchanged content: 64-bit xxh3 (twox-hash, which
/// picks the CPU's widest vector instructions at run time), at memory speed (a
/// million-id list is checksummed on every poll and reload). Seeded per process
/// ([`hash_seed`]): the sums are only compared within one process, and content crafted to
/// collide with the list in force cannot be prepared without the seed.
pub fn checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(hash_seed(), bytes)
}

/// [`checksum`] of content taken in piece by piece.
pub struct Checksum(twox_hash::XxHash3_64);

impl Checksum {
    pub fn new() -> Self {
        Checksum(twox_hash::XxHash3_64::with_seed(hash_seed()))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        std::hash::Hasher::write(&mut self.0, bytes);
    }

    /// The [`checksum`] of everything given to [`Checksum::update`].
    pub fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

impl Default for Checksum {
    fn default() -> Self {
        Self::new()
    }
}

/// 128-bit xxh3 with the process's seed, for content compared within this process only
/// (the chunks of the last blocklist file): every byte of a reloaded file goes through it.
pub fn content_hash(bytes: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot_with_seed(hash_seed(), bytes)
}

/// A random seed, fixed for the process: std's `RandomState` keys come from the OS.
fn hash_seed() -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0x6b67_u64))
}

/// Lower-case hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        use std::fmt::Write as _;
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_sees_every_one_byte_change_and_every_length() {
        let base: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let sum = checksum(&base);
        assert_eq!(sum, checksum(&base.clone()));
        for at in 0..base.len() {
            let mut changed = base.clone();
            changed[at] ^= 0x5a;
            assert_ne!(checksum(&changed), sum, "byte {at}");
        }
        for len in 0..base.len() {
            assert_ne!(checksum(&base[..len]), sum, "length {len}");
        }
        assert_ne!(checksum(b"abc"), checksum(b"abc\0"));
    }

    #[test]
    fn a_checksum_taken_piece_by_piece_is_the_same() {
        let base: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        for cuts in [
            &[][..],
            &[0, 1][..],
            &[7, 300, 301, 4096][..],
            &[240, 256, 1024][..],
        ] {
            let mut sum = Checksum::new();
            let mut at = 0;
            for &c in cuts.iter().chain([base.len()].iter()) {
                sum.update(&base[at..c]);
                at = c;
            }
            assert_eq!(sum.finish(), checksum(&base), "{cuts:?}");
        }
    }
}
