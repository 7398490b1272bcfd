//! `inspect_json` and `first_significant_byte` on arbitrary bodies: never panic, and the
//! inspector fails closed (every token of a parseable body is found; an unparseable body
//! that mentions a token is an error).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

fuzz_target!(|data: &[u8]| {
    invariants::check_first_significant_byte(data);
    invariants::check_inspect_json(data);
});
