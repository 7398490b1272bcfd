//! `inspection::submitted` (login identifier, recovery address) on arbitrary `Content-Type` values and bodies. Input: the content type
//! up to the first NUL, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b"application/json"[..], data),
    };
    let ct = std::str::from_utf8(ct).ok();
    invariants::check_login_identifier(ct, body);
    invariants::check_login_identifier(Some("application/x-www-form-urlencoded"), body);
    invariants::check_login_identifier(Some("application/json"), body);
});
