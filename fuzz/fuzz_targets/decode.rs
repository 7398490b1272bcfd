//! `decode` on arbitrary `Content-Encoding` values and bodies: never panics and never
//! returns more than the limit. The first byte picks the coding list and the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

const CODINGS: &[&str] = &[
    "gzip",
    "x-gzip",
    "deflate",
    "br",
    "identity",
    "gzip, gzip",
    "deflate, br",
    "br, gzip, identity",
    "zstd",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let coding = CODINGS[usize::from(selector) % CODINGS.len()];
    let limit = [0, 1, 64, 4096, 1 << 20][usize::from(selector >> 4) % 5];
    invariants::check_decode(coding, body, limit);
    // The body's own text as a coding list, too.
    if let Ok(text) = std::str::from_utf8(body) {
        invariants::check_decode(text, b"", 16);
    }
});
