use super::*;
use crate::blocklist::scan::agreement::same_both_ways;
use crate::blocklist::{is_public_suffix, Matched, Parsed};
use crate::util::*;

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    Blocklist::parse(text, "blocklist.yaml")
}

#[test]
fn parses_bare_ids_and_full_entries() {
    let text = format!(
            "identities:\n  - {A}\n  - id: {B}\n    reason: chargeback fraud\n    until: 2999-01-01T00:00:00Z\n"
        );
    let parsed = parse(&text).expect("valid");
    let list = parsed.blocklist;
    assert_eq!(list.len(), 2);
    assert!(list.lookup_str(A).is_some());
    let (_, b) = list.lookup_str(B).expect("listed");
    assert_eq!(b.reason.as_deref(), Some("chargeback fraud"));
    assert_eq!(b.line, 3);
    assert!(parsed.warnings.is_empty());
}

#[test]
fn empty_and_comment_only_files_are_empty_lists() {
    for text in [
        "",
        "# nothing yet\n",
        "identities:\n",
        "identities: []\n",
        "---\n",
    ] {
        let parsed = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        assert!(parsed.blocklist.is_empty(), "{text:?}");
    }
}

#[test]
fn invalid_uuid_is_an_error_with_line_and_column() {
    let text = format!("identities:\n  - {A}\n  - not-a-uuid\n");
    let errs = parse(&text).expect_err("invalid");
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].line, errs[0].column), (3, 5));
    assert!(errs[0].message.contains("not-a-uuid"), "{}", errs[0]);
    assert!(errs[0]
        .to_string()
        .starts_with("blocklist.yaml:3:5: `not-a-uuid`"));
}

#[test]
fn every_bad_entry_is_reported() {
    let text = "identities:\n  - nope\n  - id: also-nope\n  - id: 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\n    until: tomorrow\n";
    let errs = parse(text).expect_err("invalid");
    let lines: Vec<u64> = errs.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 5], "{errs:?}");
    assert!(errs[2].message.contains("RFC 3339"));
}

#[test]
fn unknown_keys_are_errors_with_position() {
    let errs = parse(&format!("identities:\n  - id: {A}\n    reasn: typo\n")).expect_err("x");
    assert_eq!(errs[0].line, 3, "{errs:?}");
    assert!(errs[0].message.contains("reasn"), "{errs:?}");
    let errs = parse("identity:\n  - x\n").expect_err("x");
    assert_eq!(errs[0].line, 1, "{errs:?}");
    assert!(errs[0].message.contains("identity"), "{errs:?}");
}

#[test]
fn syntax_errors_have_position() {
    let errs = parse("identities:\n  - [unclosed\n").expect_err("x");
    assert!(errs[0].line >= 2, "{errs:?}");
}

/// The merged entry for a key listed twice, whichever order the two are in, and whether
/// the file is read by the fast path or by serde-saphyr.
#[test]
fn strictest_duplicate_wins_in_either_order_and_either_parser() {
    let report_forever = "mode: report\n    reason: trial";
    let enforce_2999 = "until: 2999-01-01T00:00:00Z";
    let enforce_2998 = "until: 2998-01-01T00:00:00Z\n    reason: old ticket";
    let enforce_forever = "reason: fraud";
    let y2999 = parse_timestamp("2999-01-01T00:00:00Z");
    // (first, second, expected mode, until, reason)
    let cases = [
        (
            report_forever,
            enforce_2999,
            Mode::Enforce,
            y2999,
            Some("trial"),
        ),
        (
            enforce_2999,
            report_forever,
            Mode::Enforce,
            y2999,
            Some("trial"),
        ),
        (
            enforce_2998,
            enforce_2999,
            Mode::Enforce,
            y2999,
            Some("old ticket"),
        ),
        (
            enforce_2999,
            enforce_forever,
            Mode::Enforce,
            None,
            Some("fraud"),
        ),
        (
            enforce_forever,
            report_forever,
            Mode::Enforce,
            None,
            Some("fraud"),
        ),
        (
            enforce_2998,
            enforce_forever,
            Mode::Enforce,
            None,
            Some("fraud"),
        ),
    ];
    let now = unix_now();
    for (first, second, mode, until, reason) in cases {
        let text = format!(
                "identities:\n  - id: {A}\n    {first}\n  - id: {A}\n    {second}\nemails:\n  - email: a@x.example\n    {first}\n  - email: A@X.example\n    {second}\nemail_domains:\n  - domain: y.example\n    {first}\n  - domain: Y.example.\n    {second}\n"
            );
        assert!(same_both_ways(&text), "{text}");
        let parsed = parse(&text).expect("valid");
        assert_eq!(parsed.warnings.len(), 3, "{:?}", parsed.warnings);
        let list = parsed.blocklist;
        let entries = [
            list.lookup_str(A).expect("listed").1,
            list.lookup_address("a@x.example", now).expect("listed").1,
            list.lookup_address("b@y.example", now).expect("listed").1,
        ];
        // The merged entry keeps the first one's place.
        let (f, s) = (first.lines().count() as u64, second.lines().count() as u64);
        let lines = [2, 5 + f + s, 8 + 2 * (f + s)];
        for (e, line) in entries.into_iter().zip(lines) {
            assert_eq!(
                (e.mode, e.until, e.reason.as_deref(), e.line),
                (mode, until, reason, line),
                "{text}"
            );
        }
        // The same file in flow style (serde-saphyr only) merges the same way.
        let flow = format!(
            "identities: [{{id: {A}, {}}}, {{id: {A}, {}}}]\n",
            first.replace("\n    ", ", "),
            second.replace("\n    ", ", ")
        );
        assert!(!same_both_ways(&flow), "{flow}");
        let e = parse(&flow)
            .expect("valid")
            .blocklist
            .lookup_str(A)
            .expect("x")
            .1;
        assert_eq!(
            (e.mode, e.until, e.reason.as_deref()),
            (mode, until, reason)
        );
    }
}

#[test]
fn mixed_mode_duplicates_say_the_enforced_entry_applies() {
    let text = format!("identities:\n  - id: {A}\n    mode: report\n  - {A}\nemail_domains:\n  - x.example\n  - domain: x.example\n    mode: report\n");
    assert!(same_both_ways(&text));
    let parsed = parse(&text).expect("valid");
    let w: Vec<(u64, &str)> = parsed
        .warnings
        .iter()
        .map(|d| (d.line, d.message.as_str()))
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].0, 4);
    assert_eq!(w[1].0, 7);
    for (_, m) in &w {
        assert!(
            m.contains("`mode: report`") && m.contains("the enforced entry applies"),
            "{m}"
        );
        assert!(!m.contains("longer block"), "{m}");
    }
    assert_eq!(
        parsed.blocklist.lookup_str(A).expect("x").1.mode,
        Mode::Enforce
    );
    assert_eq!(
        parsed
            .blocklist
            .lookup_address("a@x.example", unix_now())
            .expect("x")
            .1
            .mode,
        Mode::Enforce
    );
}

#[test]
fn unicode_and_punycode_spellings_are_one_entry() {
    let now = unix_now();
    let unicode = parse("emails:\n  - Anna@Bücher.Example\nemail_domains:\n  - BÜCHER.example.\n  - domain: straße.example\n").expect("valid");
    let puny = parse("emails:\n  - anna@XN--BCHER-KVA.example\nemail_domains:\n  - xn--bcher-kva.EXAMPLE\n  - domain: xn--strae-oqa.example\n").expect("valid");
    for list in [&unicode.blocklist, &puny.blocklist] {
        // One spelling in the list: ASCII, lower-case, no trailing dot.
        let mut keys: Vec<&str> = list.domains.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["xn--bcher-kva.example", "xn--strae-oqa.example"]);
        assert!(list.emails.contains_key("anna@xn--bcher-kva.example"));
        for address in [
            "anna@bücher.example",
            "ANNA@BÜCHER.EXAMPLE",
            "anna@xn--bcher-kva.example",
            "Anna@XN--Bcher-Kva.Example.",
            " anna@Bücher.example ",
        ] {
            let all = list.address_matches(address, now);
            let got: Vec<String> = all.iter().map(|(m, _)| m.to_string()).collect();
            assert_eq!(
                got,
                [
                    "email:anna@xn--bcher-kva.example",
                    "email_domain:xn--bcher-kva.example"
                ],
                "{address}"
            );
        }
        for address in [
            "x@straße.example",
            "x@XN--STRAE-OQA.example",
            "x@sub.Straße.example",
        ] {
            assert!(
                matches!(
                    list.lookup_address(address, now),
                    Some((Matched::Domain("xn--strae-oqa.example"), _))
                ),
                "{address}"
            );
        }
        // Non-transitional UTS-46: ß is not ss.
        assert!(list.lookup_address("x@strasse.example", now).is_none());
        // A domain UTS-46 refuses still matches its listed parents.
        assert!(list
            .lookup_address("x@a\u{200d}\u{5d0}.bücher.example", now)
            .is_some());
        assert!(list.lookup_address("x@bücher.example.evil", now).is_none());
    }
    assert!(same_both_ways(
        "email_domains:\n  - Bücher.example\n  - xn--bcher-kva.example\n"
    ));
    // Both spellings in one file are one entry listed twice.
    let both = parse("email_domains:\n  - Bücher.example\n  - xn--bcher-kva.example\n").expect("v");
    assert_eq!(both.blocklist.len(), 1);
    assert_eq!(both.warnings.len(), 1);
    assert!(both.warnings[0]
        .message
        .contains("xn--bcher-kva.example is listed twice"));
}

#[test]
fn an_invalid_idn_is_an_error_with_its_position() {
    let text = "email_domains:\n  - fine.example\n  - xn--zz.example\n  - domain: a\u{200d}b.example\nemails:\n  - email: a@xn--a-ecp.example\n  - bad@xn--.example\n";
    for errs in [
        parse(text).expect_err("invalid"),
        Blocklist::parse_with_serde_saphyr(text, "blocklist.yaml").expect_err("invalid"),
    ] {
        let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.column)).collect();
        assert_eq!(at, vec![(3, 5), (4, 13), (6, 12), (7, 5)], "{errs:?}");
        for e in &errs {
            assert!(
                e.message
                    .contains("not a valid internationalised domain name"),
                "{e}"
            );
        }
        assert!(
            errs[0]
                .to_string()
                .starts_with("blocklist.yaml:3:5: `xn--zz.example` is not a domain"),
            "{}",
            errs[0]
        );
    }
    // Malformed ASCII stays "not a domain" without IDN talk.
    let errs = parse("email_domains:\n  - bad..domain\n  - -x.example\n").expect_err("x");
    assert_eq!(errs.len(), 2);
    assert!(
        errs.iter()
            .all(|e| !e.message.contains("internationalised")),
        "{errs:?}"
    );
}

#[test]
fn public_suffixes_are_refused_as_domain_entries() {
    for suffix in [
        "com",
        "co.uk",
        "CO.UK.",
        "github.io",
        "blogspot.com",
        "公司.cn",
        "xn--55qx5d.cn",
        "uk",
        "foo.ck",
    ] {
        let text = format!("email_domains:\n  - good.example\n  - domain: {suffix}\n");
        for errs in [
            parse(&text).expect_err(suffix),
            Blocklist::parse_with_serde_saphyr(&text, "blocklist.yaml").expect_err(suffix),
        ] {
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!((errs[0].line, errs[0].column), (3, 13), "{errs:?}");
            assert_eq!(
                    errs[0].message,
                    format!("email_domains entry `{suffix}` is a public suffix: it would block every address under it (list the domains under it instead)")
                );
        }
    }
    // Registrable domains and names below a suffix are fine, and so are names the list
    // does not know; an address at a suffix is an e-mail entry, not a domain one.
    let fine = "email_domains:\n  - example.co.uk\n  - evil.github.io\n  - a.b.com\n  - www.ck\n  - example\n  - corp.internal\n  - bücher.de\nemails:\n  - root@com\n";
    let list = parse(fine).expect("valid").blocklist;
    assert_eq!(list.len(), 8);
    assert!(is_public_suffix("xn--55qx5d.cn"));
    assert!(!is_public_suffix("xn--bcher-kva.de"));
    assert!(!is_public_suffix("example"));
}

#[test]
fn duplicate_id_is_a_warning_and_the_longer_block_wins() {
    let text = format!("identities:\n  - id: {A}\n    until: 2000-01-01T00:00:00Z\n  - {A}\n");
    let parsed = parse(&text).expect("valid");
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(parsed.warnings[0].line, 4);
    assert!(
        parsed.blocklist.lookup_str(A).is_some(),
        "bare duplicate blocks forever"
    );
}

#[test]
fn invalid_addresses_and_wrong_keys_are_errors() {
    let text = "emails:\n  - not an address\n  - id: 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10\nemail_domains:\n  - \"@evil.example\"\n  - bad..domain\n";
    let errs = parse(text).expect_err("invalid");
    let at: Vec<(u64, u64)> = errs.iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(at, vec![(2, 5), (3, 9), (5, 5), (6, 5)], "{errs:?}");
    assert!(errs[1].message.contains("`email:`"), "{errs:?}");
}

#[test]
fn metadata_is_accepted_in_both_readers_and_kept_in_file_order() {
    let text = format!(
            "identities:\n  - id: {A}\n    ticket: OPS-1\n    added_by: alice\n    note: \"called, no answer\"\n"
        );
    assert!(
        same_both_ways(&text),
        "the fast path takes ticket/added_by/note"
    );
    let p = parse(&text).expect("parses");
    let e = p
        .blocklist
        .lookup_at(&Uuid::parse_str(A).expect("uuid"), 0)
        .expect("listed");
    assert_eq!(
        e.meta_text(),
        "ticket=OPS-1,added_by=alice,note=called, no answer"
    );
    let text = "emails:\n  - email: a@b.example\n    ticket: T-2\n    meta:\n      team: fraud\n      case: \"42\"\n";
    assert!(!same_both_ways(text), "a meta: map is serde-saphyr's");
    let p = parse(text).expect("parses");
    let (_, e) = p
        .blocklist
        .lookup_address("a@b.example", 0)
        .expect("listed");
    assert_eq!(e.meta_text(), "ticket=T-2,team=fraud,case=42");
    for bad in [
        "emails:\n  - email: a@b.example\n    meta: [x]\n",
        "emails:\n  - email: a@b.example\n    ticket: a\n    ticket: b\n",
        "emails:\n  - email: a@b.example\n    owner: bob\n",
    ] {
        assert!(parse(bad).is_err(), "{bad}");
        same_both_ways(bad);
    }
}

#[test]
fn report_mode_per_entry() {
    let text = format!("identities:\n  - id: {A}\n    mode: report\n  - {B}\n");
    let list = parse(&text).expect("valid").blocklist;
    assert_eq!(list.lookup_str(A).expect("listed").1.mode, Mode::Report);
    assert_eq!(list.lookup_str(B).expect("listed").1.mode, Mode::Enforce);
    let errs = parse(&format!("identities:\n  - id: {A}\n    mode: maybe\n")).expect_err("x");
    assert_eq!((errs[0].line, errs[0].column), (3, 11));
    // Report entries are not "added" for revoke-on-add.
    let c = Blocklist::default().changes_to(&list, unix_now());
    assert_eq!(c.added, vec![parse_uuid(B).expect("u")]);
}

#[test]
fn a_whole_read_needs_no_text_to_build_and_reserves_its_id_records() {
    let ids: Vec<String> = (0..2000u128)
        .map(|i| {
            Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)).to_string()
        })
        .collect();
    let bare = format!(
        "identities:\n{}  - {}\n",
        ids.iter()
            .map(|id| format!("  - {id}\n"))
            .collect::<String>(),
        ids[7]
    );
    let flow = format!("identities: [{}]\n", ids.join(", "));
    for text in [bare.clone(), flow, "# nothing\n".to_owned()] {
        let expected = Blocklist::parse(&text, "f.yaml");
        let owned = text.clone();
        let whole = read_whole(&owned, "f.yaml").unwrap();
        if let Whole::Collected(c, Some(_), _) = &whole {
            assert!(c.ids.capacity() >= c.ids.len());
            assert!(c.ids.capacity() >= text.len() / ID_ITEM_BYTES);
        }
        drop(owned);
        assert_eq!(whole.finish().map(|(p, _)| p), expected);
    }
    let whole = read_whole(&bare, "f.yaml").unwrap();
    let Whole::Collected(c, Some(_), _) = &whole else {
        panic!("bare ids are read by the line-oriented reader");
    };
    assert_eq!(c.ids.len(), 2001);
    assert!(c.ids.capacity() >= 2001, "reserved, not grown");
    let (parsed, _) = whole.finish().unwrap();
    assert_eq!(parsed.blocklist.len(), 2000);
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
}
