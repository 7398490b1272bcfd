//! Invariants of the pure parsing and header functions, shared by the proptest properties
//! (`tests/properties.rs`, run by `cargo test`) and the cargo-fuzz targets (`fuzz/`, which
//! include this file with `#[path]`). Each `check_*` takes arbitrary input, must not panic
//! on its own account, and panics with a message when the function under test breaks an
//! invariant.
//!
//! `tests/properties.rs` uses all of it (as a private module, so the compiler reports anything
//! unused); each fuzz target uses a part and includes it as a public module.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use kratos_gate::blocklist::Blocklist;
use kratos_gate::headers::{
    is_session_cookie_name, session_cookies, set_cookie_name, set_cookie_value, strip_hop_by_hop,
    strip_session_set_cookies,
};
use kratos_gate::inspection::{
    decode, first_significant_byte, inspect_json, submitted, MAX_TOKENS,
};
use kratos_gate::paths::{canonical_path, extend_session_id, request_kind};
use kratos_gate::util::unix_now;

pub const SESSION_COOKIE: &str = "ory_kratos_session";

/// Header names the fuzzers and properties pick from, so that the interesting ones come up
/// often; arbitrary names are used too.
pub const INTERESTING_NAMES: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "set-cookie",
    "cookie",
    "x-session-token",
    "x-kratos-authenticated-identity-id",
    "host",
    "content-type",
    "x-secret-hop",
];

/// Fragments that make interesting header values (cookie names, Connection tokens).
pub const INTERESTING_VALUES: &[&str] = &[
    "ory_kratos_session=",
    "ORY_KRATOS_SESSION=",
    "__Host-ory_kratos_session=",
    "__Secure-ory_kratos_session=",
    "csrf_token_ab=",
    "; Path=/; HttpOnly",
    "keep-alive",
    "close",
    "x-secret-hop",
    "set-cookie",
    "Set-Cookie",
    ", ",
    " ",
    "\t",
    "=",
    ";",
];

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Builds a header map from raw (name, value) pairs, skipping pairs `http` rejects.
pub fn header_map(pairs: &[(Vec<u8>, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            h.append(n, v);
        }
    }
    h
}

fn entries(h: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    h.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// Fields by name, each name's values in order: what HTTP gives meaning to (the relative
/// order of fields with different names carries none, and `HeaderMap` does not keep it
/// across removals).
fn by_name(
    e: &[(HeaderName, HeaderValue)],
) -> std::collections::BTreeMap<String, Vec<HeaderValue>> {
    let mut m = std::collections::BTreeMap::<String, Vec<HeaderValue>>::new();
    for (n, v) in e {
        m.entry(n.as_str().to_owned()).or_default().push(v.clone());
    }
    m
}

/// `strip_hop_by_hop`: no hop-by-hop field and no field nominated by any `Connection` line
/// survives; every other field survives unchanged and in order; a second call changes
/// nothing.
pub fn check_strip_hop_by_hop(mut h: HeaderMap) {
    let before = entries(&h);
    let nominated: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    strip_hop_by_hop(&mut h);
    for name in HOP_BY_HOP {
        assert!(!h.contains_key(name), "hop-by-hop {name} survived: {h:?}");
    }
    for name in &nominated {
        assert!(
            !h.contains_key(name),
            "Connection-nominated {name} survived: {h:?}"
        );
    }
    let expected: Vec<(HeaderName, HeaderValue)> = before
        .into_iter()
        .filter(|(n, _)| !HOP_BY_HOP.contains(&n.as_str()) && !nominated.contains(n))
        .collect();
    assert_eq!(
        by_name(&entries(&h)),
        by_name(&expected),
        "an end-to-end field was changed"
    );
    let once = h.clone();
    strip_hop_by_hop(&mut h);
    assert_eq!(h, once, "strip_hop_by_hop is not idempotent");
}

/// `set_cookie_name` / `set_cookie_value`: sub-slices of the input, trimmed, the name
/// without `=`, the value without `;`.
pub fn check_set_cookie_parts(value: &[u8]) {
    let name = set_cookie_name(value);
    let val = set_cookie_value(value);
    assert!(!name.contains(&b'='), "name {name:?} contains '='");
    assert!(!val.contains(&b';'), "value {val:?} contains ';'");
    for part in [name, val] {
        assert!(
            part.first().is_none_or(|b| !b.is_ascii_whitespace())
                && part.last().is_none_or(|b| !b.is_ascii_whitespace()),
            "{part:?} is not trimmed"
        );
        assert!(
            value.windows(part.len().max(1)).any(|w| w == part) || part.is_empty(),
            "{part:?} is not part of {value:?}"
        );
    }
    if !value.contains(&b'=') {
        assert!(val.is_empty(), "a value without '='");
    }
}

/// `strip_session_set_cookies` / `session_cookies`: afterwards no session `Set-Cookie`
/// remains (any value, any spelling the gateway recognises) and `session_cookies` is empty;
/// the count returned is what was removed; other `Set-Cookie`s and all other fields stay,
/// in order; a second call removes nothing and changes nothing.
pub fn check_strip_session_set_cookies(mut h: HeaderMap, cookie: &str) {
    let is_session =
        |v: &HeaderValue| is_session_cookie_name(set_cookie_name(v.as_bytes()), cookie);
    let before = entries(&h);
    let found = session_cookies(&h, cookie);
    let sessions = h
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| is_session(v))
        .count();
    assert!(
        found.len() <= sessions,
        "session_cookies found more than there are"
    );
    let removed = strip_session_set_cookies(&mut h, cookie);
    assert_eq!(removed, sessions, "wrong count removed");
    assert!(
        session_cookies(&h, cookie).is_empty(),
        "session_cookies after stripping: {h:?}"
    );
    assert!(
        !h.get_all(header::SET_COOKIE).iter().any(is_session),
        "a session Set-Cookie survived: {h:?}"
    );
    let kept_cookies: Vec<&HeaderValue> = before
        .iter()
        .filter(|(n, v)| n == header::SET_COOKIE && !is_session(v))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        h.get_all(header::SET_COOKIE).iter().collect::<Vec<_>>(),
        kept_cookies,
        "other Set-Cookies changed"
    );
    let others = |e: &[(HeaderName, HeaderValue)]| -> Vec<(HeaderName, HeaderValue)> {
        e.iter()
            .filter(|(n, _)| n != header::SET_COOKIE)
            .cloned()
            .collect()
    };
    assert_eq!(
        by_name(&others(&entries(&h))),
        by_name(&others(&before)),
        "other fields changed"
    );
    let once = h.clone();
    assert_eq!(
        strip_session_set_cookies(&mut h, cookie),
        0,
        "not idempotent"
    );
    assert_eq!(h, once, "second strip changed the map");
}

/// `canonical_path`: starts with `/`, has no empty, `.` or `..` segment, no `\`, no ASCII
/// upper case, no trailing `/` (except the root), and is a fixed point; the extend check and
/// the request kind read a path and its canonical form alike.
pub fn check_paths(raw: &str) {
    let c = canonical_path(raw);
    assert!(c.starts_with('/'), "{raw:?} -> {c:?}");
    assert!(!c.contains('\\'), "{raw:?} -> {c:?}");
    assert!(
        !c.bytes().any(|b| b.is_ascii_uppercase()),
        "{raw:?} -> {c:?}"
    );
    if c != "/" {
        assert!(!c.ends_with('/'), "{raw:?} -> {c:?}");
        for seg in c.split('/').skip(1) {
            assert!(
                !seg.is_empty() && seg != "." && seg != "..",
                "{raw:?} -> {c:?}: segment {seg:?}"
            );
        }
    }
    let again = canonical_path(&c);
    assert_eq!(again, c, "canonical_path is not idempotent for {raw:?}");
    assert_eq!(
        extend_session_id(raw),
        extend_session_id(&c),
        "extend check differs for {raw:?} and {c:?}"
    );
    assert_eq!(
        request_kind(raw),
        request_kind(&c),
        "kind differs for {raw:?}"
    );
    if let Some(id) = extend_session_id(raw) {
        assert!(!id.contains('/'), "{raw:?}: id {id:?}");
    }
}

/// `Blocklist::parse`: never panics; an error names at least one position; a parsed list
/// answers lookups, lint and diffs, and every id it reports as added is in force.
pub fn check_blocklist(text: &str) {
    match Blocklist::parse(text, "fuzz.yaml") {
        Err(errors) => assert!(!errors.is_empty(), "an error without diagnostics"),
        Ok(parsed) => {
            let list = parsed.blocklist;
            let now = unix_now();
            let diff = Blocklist::default().changes_to(&list, now);
            for id in &diff.added {
                assert!(list.lookup_at(id, now).is_some(), "added {id} not in force");
                assert!(list.lookup_str(&id.to_string()).is_some());
            }
            assert!(diff.removed.is_empty());
            assert!(
                list.changes_to(&list, now).is_empty(),
                "a list differs from itself"
            );
            assert!(list.identity_count() <= list.len());
            assert!(list.expired_count(now) <= list.len());
            assert!(list.expiring_count(now) <= list.len());
            let _ = list.lint("fuzz.yaml", now);
            for line in text.lines().take(8) {
                let _ = list.lookup_str(line);
                let _ = list.lookup_address(line, now);
            }
            // The same text parses to the same list.
            let again = Blocklist::parse(text, "fuzz.yaml").expect("parsed once, parses again");
            assert!(list.changes_to(&again.blocklist, now).is_empty());
        }
    }
}

/// Tokens a body carries, found without the inspector's pre-filter: every non-empty string
/// under a `session_token` or `ory_session_token` key, anywhere.
fn tokens_in(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                if let ("session_token" | "ory_session_token", Value::String(t)) =
                    (k.as_str(), child)
                {
                    if !t.is_empty() {
                        out.push(t.clone());
                    }
                }
                tokens_in(child, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| tokens_in(i, out)),
        _ => {}
    }
}

/// `inspect_json`: fails closed. Every token a parseable body carries is found (the
/// pre-filter hides none); a body that does not parse but mentions a token is an error.
pub fn check_inspect_json(body: &[u8]) {
    let result = inspect_json(body);
    let _ = first_significant_byte(body);
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => {
            let findings = result.expect("a body that parses is judged");
            let mut expected = Vec::new();
            tokens_in(&value, &mut expected);
            expected.sort();
            expected.dedup();
            if expected.len() > MAX_TOKENS {
                assert!(findings.too_many_tokens, "overflow not reported");
            } else {
                for t in &expected {
                    assert!(
                        findings.tokens.iter().any(|f| &f.value == t),
                        "token {t:?} missed in {:?}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
            if !expected.is_empty() {
                assert!(findings.carries_credential());
            }
        }
        Err(_) => {
            // A token is only ever recognised under its key, so a body that cannot be read
            // fails closed when it names the key, or when it mentions a token value and
            // anything that makes it worth reading (the inspector's pre-filter).
            let mentions = |n: &[u8]| body.windows(n.len()).any(|w| w == n);
            let worth_reading = [
                &b"session_token"[..],
                b"\"identity\"",
                b"\"session\"",
                b"tokenized",
                b"\\u",
            ]
            .iter()
            .any(|n| mentions(n));
            if mentions(b"session_token") || (worth_reading && mentions(b"ory_st_")) {
                assert!(
                    result.is_err(),
                    "unparseable body with a token passed: {:?}",
                    String::from_utf8_lossy(body)
                );
            }
        }
    }
}

/// `first_significant_byte`: the first byte that is not white space, after an optional BOM.
pub fn check_first_significant_byte(chunk: &[u8]) {
    let got = first_significant_byte(chunk);
    let rest = chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk);
    assert_eq!(got, rest.iter().copied().find(|b| !b.is_ascii_whitespace()));
}

/// `decode`: never panics and never returns more than `limit` bytes.
pub fn check_decode(encoding: &str, body: &[u8], limit: usize) {
    if let Ok(out) = decode(encoding, body, limit) {
        assert!(
            out.len() <= limit || out == body,
            "decode exceeded the limit"
        );
    }
}

/// `submitted`: never panics; an identifier or address is trimmed, non-empty and at most
/// 1024 bytes.
pub fn check_login_identifier(content_type: Option<&str>, body: &[u8]) {
    if let Ok(fields) = submitted(content_type, body) {
        for id in fields.identifier.iter().chain(fields.email.iter()) {
            assert!(!id.is_empty() && id.len() <= 1024, "{id:?}");
            assert_eq!(id.trim(), id, "not trimmed");
        }
    }
}
