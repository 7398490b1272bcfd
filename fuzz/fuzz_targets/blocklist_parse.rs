//! `Blocklist::parse` on arbitrary text: never panics; a parsed list answers lookups, lint
//! and diffs consistently (see `check_blocklist`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        invariants::check_blocklist(text);
    }
});
