//! Property tests (proptest) for the invariants the fuzz targets in `fuzz/` check, so that
//! `cargo test` keeps checking them: the blocklist parser, the response inspector and the
//! path and header helpers never panic; stripping session `Set-Cookie`s leaves none and is
//! idempotent; Connection-nominated fields are gone after `strip_hop_by_hop`;
//! `canonical_path` is idempotent. The invariants themselves are in
//! `support/invariants.rs`, shared with the fuzz targets.

#[path = "support/invariants.rs"]
mod invariants;

#[path = "properties/incremental.rs"]
mod incremental;

use proptest::prelude::*;

use invariants::{INTERESTING_NAMES, INTERESTING_VALUES, SESSION_COOKIE};

const ID: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A header name: mostly interesting ones, sometimes arbitrary bytes.
fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::sample::select(INTERESTING_NAMES).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..8),
    ]
}

/// A header value: a few interesting fragments and arbitrary bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => prop::sample::select(INTERESTING_VALUES).prop_map(|s| s.as_bytes().to_vec()),
        1 => "[a-zA-Z0-9_ ,;=\t-]{0,10}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..6),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|ps| ps.concat())
}

fn pairs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    prop::collection::vec((name(), value()), 0..12)
}

/// Path-like text: segments built from the tricks a lax router undoes.
fn path() -> impl Strategy<Value = String> {
    let seg = prop_oneof![
        prop::sample::select(
            &[
                "admin",
                "sessions",
                "whoami",
                "extend",
                ID,
                ".",
                "..",
                "",
                "%2e",
                "%2E%2e",
                "%2f",
                "%5c",
                "%25",
                "%2525",
                "%252525",
                "%77",
                "%2577",
                "%252577",
                "%25252577",
                "%00",
                " ",
                "\\",
                "WHOAMI",
                "%65xtend",
                "%",
                "%%",
                "%4",
                "%zz",
                "\u{e9}",
                "%c3%a9",
                "%ff",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-zA-Z0-9%./\\\\ _-]{0,8}",
    ];
    prop::collection::vec(seg, 0..8).prop_map(|segs| {
        let mut p = String::new();
        for s in segs {
            p.push('/');
            p.push_str(&s);
        }
        p
    })
}

/// Blocklist-like YAML: sections, entries and fields in arbitrary combinations.
fn blocklist_text() -> impl Strategy<Value = String> {
    let line = prop::sample::select(
        &[
            "identities:",
            "emails:",
            "email_domains:",
            "identity:",
            "  - 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10",
            "  - 3F1C7F52-7E43-4A3E-9A8E-2C1D7B7F6A10",
            "  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59",
            "  - id: 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59",
            "  - id: not-a-uuid",
            "    reason: chargeback",
            "    reason:",
            "    until: 2027-01-01T00:00:00Z",
            "    until: 2001-01-01T00:00:00Z",
            "    until: tomorrow",
            "    mode: report",
            "    mode: maybe",
            "  - spammer@example.com",
            "  - email: a@b.example",
            "  - evil.example",
            "  - domain: x.example.",
            "  - \"@evil\"",
            "  - [unclosed",
            "  - {id: 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59, mode: report}",
            "  -",
            "---",
            "# comment",
            "",
            "  - &a x",
            "  - *a",
            "  - !!binary aGVsbG8=",
            "  - ~",
            "  - 12",
        ][..],
    );
    let free = "[a-z0-9:@. -]{0,12}";
    let any_line = prop_oneof![5 => line.prop_map(str::to_owned), 1 => free];
    prop::collection::vec(any_line, 0..12).prop_map(|lines| lines.join("\n"))
}

/// JSON-like bodies: valid Kratos-ish values, then sometimes cut short.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just(serde_json::json!("ory_st_abc")),
        Just(serde_json::json!("")),
        Just(serde_json::json!(null)),
        Just(serde_json::json!(ID)),
        Just(serde_json::json!("a@b.example")),
        any::<i64>().prop_map(serde_json::Value::from),
    ];
    let key = prop::sample::select(
        &[
            "session_token",
            "ory_session_token",
            "session",
            "identity",
            "id",
            "tokenized",
            "continue_with",
            "expires_at",
            "authenticated_at",
            "traits",
            "email",
            "verifiable_addresses",
            "value",
        ][..],
    );
    let value = leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|kvs| {
                serde_json::Value::Object(kvs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    });
    (
        value,
        any::<bool>(),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(v, cut, at, escape)| {
            let mut text = v.to_string();
            if escape {
                text = text.replace("session_token", "session\\u005ftoken");
            }
            let mut bytes = text.into_bytes();
            if cut && !bytes.is_empty() {
                bytes.truncate(at.index(bytes.len()));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn strip_hop_by_hop_removes_nominated_fields(pairs in pairs()) {
        invariants::check_strip_hop_by_hop(invariants::header_map(&pairs));
    }

    #[test]
    fn stripping_session_set_cookies_leaves_none_and_is_idempotent(
        pairs in pairs(),
        cookie in prop_oneof![Just(SESSION_COOKIE.to_owned()), "[a-zA-Z_]{0,12}"],
    ) {
        invariants::check_strip_session_set_cookies(invariants::header_map(&pairs), &cookie);
    }

    #[test]
    fn set_cookie_parts_are_trimmed_subslices(value in value()) {
        invariants::check_set_cookie_parts(&value);
    }

    #[test]
    fn canonical_path_is_idempotent_and_well_formed(p in path()) {
        invariants::check_paths(&p);
    }

    #[test]
    fn canonical_path_of_arbitrary_text(p in any::<String>()) {
        invariants::check_paths(&p);
    }

    #[test]
    fn blocklist_parser_never_panics(text in blocklist_text()) {
        invariants::check_blocklist(&text);
    }

    #[test]
    fn blocklist_parser_on_arbitrary_text(text in any::<String>()) {
        invariants::check_blocklist(&text);
    }

    #[test]
    fn inspector_fails_closed(body in body()) {
        invariants::check_first_significant_byte(&body);
        invariants::check_inspect_json(&body);
    }

    #[test]
    fn inspector_on_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..64)) {
        invariants::check_inspect_json(&body);
    }

    #[test]
    fn decode_never_panics_or_exceeds_the_limit(
        coding in prop::sample::select(&["gzip", "x-gzip", "deflate", "br", "identity", "gzip, br", "zstd", ""][..]),
        body in prop::collection::vec(any::<u8>(), 0..64),
        limit in prop::sample::select(&[0usize, 1, 64, 4096][..]),
    ) {
        invariants::check_decode(coding, &body, limit);
    }

    #[test]
    fn login_identifier_never_panics(
        content_type in prop_oneof![
            Just(None),
            Just(Some("application/json".to_owned())),
            Just(Some("application/x-www-form-urlencoded".to_owned())),
            "[a-zA-Z/;=, -]{0,40}".prop_map(Some),
        ],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            "[a-z_=&%0-9 ]{0,40}".prop_map(String::into_bytes),
            "\\{\"(identifier|password_identifier)\": ?\"[ a-z@.]{0,10}\"\\}".prop_map(String::into_bytes),
        ],
    ) {
        invariants::check_login_identifier(content_type.as_deref(), &body);
    }
}

/// Compressed bodies round-trip through `decode` within the limit (a property with a
/// generator the byte-level one cannot reach).
#[test]
fn gzip_roundtrip_within_limits() {
    use std::io::Write;
    proptest!(config(), |(data in prop::collection::vec(any::<u8>(), 0..512), limit in 0usize..600)| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).expect("gzip into a Vec");
        let compressed = gz.finish().expect("gzip");
        match kratos_gate::inspection::decode("gzip", &compressed, limit) {
            Ok(out) => prop_assert!(out == data && out.len() <= limit),
            Err(e) => prop_assert!(data.len() > limit, "{e:?}"),
        }
    });
}

/// Counts the bytes allocated by the thread that turned counting on, so that one test can
/// measure a function while other tests run on other threads.
mod allocations {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        static COUNTING: Cell<bool> = const { Cell::new(false) };
        static LIVE: Cell<usize> = const { Cell::new(0) };
        static PEAK: Cell<usize> = const { Cell::new(0) };
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if COUNTING.with(Cell::get) {
                let live = LIVE.with(|l| {
                    l.set(l.get() + layout.size());
                    l.get()
                });
                PEAK.with(|p| p.set(p.get().max(live)));
            }
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if COUNTING.with(Cell::get) {
                LIVE.with(|l| l.set(l.get().saturating_sub(layout.size())));
            }
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    /// The most bytes `f` had allocated at once on this thread.
    pub fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
        LIVE.with(|l| l.set(0));
        PEAK.with(|p| p.set(0));
        COUNTING.with(|c| c.set(true));
        let out = f();
        COUNTING.with(|c| c.set(false));
        (out, PEAK.with(Cell::get))
    }
}

#[global_allocator]
static ALLOCATOR: allocations::Counting = allocations::Counting;

/// Kratos echoes `transient_payload`: a 1 MB submission of empty objects comes back as a 1 MB
/// answer to inspect. Reading it must cost memory in proportion to what it can hold (a few
/// tokens), not to the number of objects: a tree of the echo took 160 MB a request.
#[test]
fn an_echo_of_many_empty_objects_costs_no_memory_per_object() {
    let mut body =
        br#"{"id":"f","state":"sent_email","identity":null,"transient_payload":["#.to_vec();
    for i in 0..340_000 {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{}");
    }
    body.extend_from_slice(br#"],"continue_with":[{"ory_session_token":"ory_st_x"}]}"#);
    let (findings, peak) =
        allocations::peak_of(|| kratos_gate::inspection::inspect_json(&body).expect("parses"));
    assert!(findings.carries_credential());
    assert!(
        peak < 64 * 1024,
        "inspecting a {} byte echo allocated {peak} bytes at once",
        body.len()
    );
}
