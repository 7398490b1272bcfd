//! `canonical_path`, `extend_session_id` and `request_kind` on arbitrary paths: never panic,
//! the canonical form is well formed and a fixed point, and a path and its canonical form
//! are read alike.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    invariants::check_paths(&text);
});
