//! The header helpers on arbitrary header maps: `strip_hop_by_hop` (hop-by-hop and
//! Connection-nominated fields gone, the rest untouched, idempotent), `set_cookie_name` /
//! `set_cookie_value`, `session_cookies` and `strip_session_set_cookies` (no session
//! Set-Cookie left, `session_cookies` empty, idempotent).
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/support/invariants.rs"]
pub mod invariants;

use invariants::{INTERESTING_NAMES, INTERESTING_VALUES, SESSION_COOKIE};

fn piece<'a>(u: &mut Unstructured<'a>, dictionary: &[&'static str]) -> Result<Vec<u8>> {
    let pick: u8 = u.arbitrary()?;
    Ok(match dictionary.get(usize::from(pick)) {
        Some(s) => s.as_bytes().to_vec(),
        None => {
            let len = u.int_in_range(0..=12)?;
            u.bytes(len)?.to_vec()
        }
    })
}

fn pairs(u: &mut Unstructured<'_>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for _ in 0..u.int_in_range(0..=12)? {
        let name = piece(u, INTERESTING_NAMES)?;
        let mut value = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            value.extend(piece(u, INTERESTING_VALUES)?);
        }
        out.push((name, value));
    }
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(pairs) = pairs(&mut u) else { return };
    let cookie = match u.arbitrary::<Option<String>>() {
        Ok(Some(c)) => c,
        _ => SESSION_COOKIE.to_owned(),
    };
    let map = invariants::header_map(&pairs);
    invariants::check_strip_hop_by_hop(map.clone());
    invariants::check_strip_session_set_cookies(map.clone(), SESSION_COOKIE);
    invariants::check_strip_session_set_cookies(map, &cookie);
    for (_, value) in &pairs {
        invariants::check_set_cookie_parts(value);
    }
});
