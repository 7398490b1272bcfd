//! The fast path agrees with serde-saphyr: on the common shapes, on what it leaves alone,
//! on generated files and on a large list.

use uuid::Uuid;

use crate::blocklist::{Blocklist, Parsed};
use crate::diagnostic::Diagnostic;

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

fn parse(text: &str) -> Result<Parsed, Vec<Diagnostic>> {
    Blocklist::parse(text, "blocklist.yaml")
}

// --- the fast path gives what serde-saphyr gives --------------------------------------

/// Parses `text` both ways; when the fast path takes it, both results must be equal.
/// Returns whether the fast path took it.
pub(crate) fn same_both_ways(text: &str) -> bool {
    let slow = Blocklist::parse_with_serde_saphyr(text, "bl.yaml");
    match Blocklist::parse_fast_path_only(text, "bl.yaml") {
        Some(fast) => {
            assert_eq!(fast, slow, "the two readers disagree on:\n{text}");
            assert_eq!(Blocklist::parse(text, "bl.yaml"), slow);
            true
        }
        None => {
            assert_eq!(Blocklist::parse(text, "bl.yaml"), slow);
            false
        }
    }
}

#[test]
fn fast_path_takes_the_common_shapes_and_agrees() {
    let common = [
            format!("identities:\n  - {A}\n  - id: {B}\n    reason: chargeback fraud, ticket OPS-123\n    until: 2027-01-01T00:00:00Z\n"),
            format!("# list\n---\nidentities:\n- {A}   # a comment\n- id: {B}\n  mode: report\n\nemails:\n  - spammer@example.com\n  - email: x@y.example\n    reason: abuse # why\nemail_domains:\n  - throwaway.example\n  - domain: evil.example.\n"),
            format!("emails: []\nidentities:\n    -   id: {B}\n        reason: \"quoted: text\"\n    - '{A}'\n    - \"{A}\"\n"),
            format!("identities:\n  - {A}\n  - {}\n  - id: {A}\n    until: 2000-01-01T00:00:00Z\n", A.to_uppercase()),
            format!("identities:\n  - not-a-uuid\n  - id: {A}\n    until: tomorrow\n  - id: {B}\n    mode: maybe\n  - reason: no id\nemails:\n  - id: {A}\n  - not an address\nemail_domains:\n  - bad..domain\n"),
            format!("identities:\n  - reason: first\n    id: {A}\n  - mode: enforce\n    until: 2999-01-01T00:00:00+02:00\n    id: {B}\n"),
            "email_domains:\n  - x.example\n  - x.example\nemails:\n  - a@x.example\n  - A@X.example\n  - email: a@x.example\n    until: 2001-01-01T00:00:00Z\n".to_owned(),
            format!("identities:\n  - id: {A}\n    reason: Betrug – Ticket ÄÖÜ [OPS-1] {{x}}, 50%\n"),
            format!("identities:\n  - id: {A}\n    reason: \"\"\n  - ''\n"),
            "identities:\n".to_owned(),
            "identities: [] # none\nemails:\nemail_domains: []\n".to_owned(),
        ];
    for text in &common {
        assert!(same_both_ways(text), "the fast path should take:\n{text}");
    }
}

#[test]
fn fast_path_leaves_everything_else_to_serde_saphyr() {
    let other = [
        format!("identities: [{A}, {B}]\n"),
        format!("identities:\n  - &a {A}\n  - *a\n"),
        format!("identities:\n  - !!str {A}\n"),
        format!("identities:\n\t- {A}\n"),
        format!("identities:\r\n  - {A}\r\n"),
        format!("identities:\n  - id: {A}\n    reason: >\n      folded\n"),
        format!("identities:\n  - id: {A}\n    reason: two\n      lines\n"),
        format!("identities:\n  - {A}\n   - {B}\n"),
        format!("identities:\n  - id: {A}\n    id: {B}\n"),
        format!("identities:\n  - id: {A}\n    email: a@b.example\n"),
        format!("identities:\n  - id: {A}\n    reasn: typo\n"),
        format!("identities:\n  - {A}\nidentities:\n  - {B}\n"),
        "identity:\n  - x\n".to_owned(),
        "identities:\n  - [unclosed\n".to_owned(),
        "identities:\n  - ~\n  - null\n".to_owned(),
        "identities:\n  - 123\n  - 1e5\n  - 0x1F\n  - yes\n".to_owned(),
        "identities:\n  -\n".to_owned(),
        "identities:\n  - id:\n".to_owned(),
        "identities:\n  - 'it''s'\n".to_owned(),
        "identities:\n  - \"esc\\n\"\n".to_owned(),
        "identities:\n  - a: b: c\n".to_owned(),
        "identities:# x\n".to_owned(),
        "--- # x\nidentities:\n".to_owned(),
        "identities:\n  - x\n...\n".to_owned(),
        "\u{feff}identities:\n".to_owned(),
        "identities:\n  - a\u{2028}b\n".to_owned(),
        "identities:\n  - id: x\n      reason: deeper\n".to_owned(),
        "identities:\n  - - nested\n".to_owned(),
        "- a\n".to_owned(),
        "identities:\n  foo: bar\n".to_owned(),
    ];
    for text in &other {
        assert!(
            !same_both_ways(text),
            "the fast path should leave:\n{text:?}"
        );
    }
}

/// A small deterministic generator (xorshift), so that the test needs no crate and fails
/// the same way every time.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const SCALARS: &[&str] = &[
    A,
    B,
    "3F1C7F52-7E43-4A3E-9A8E-2C1D7B7F6A10",
    "11111111-2222-4333-8444-555555555555",
    "12345678-1234-4e34-8234-123456789012",
    "not-a-uuid",
    "spammer@example.com",
    "Spammer@Example.COM",
    "x@evil.example",
    "evil.example",
    "evil.example.",
    "bad..domain",
    "@evil.example",
    "Bücher.example",
    "x@bücher.example",
    "xn--bcher-kva.example",
    "xn--zz.example",
    "2027-01-01T00:00:00Z",
    "2001-01-01T00:00:00Z",
    "2027-01-01",
    "tomorrow",
    "report",
    "enforce",
    "maybe",
    "chargeback fraud, ticket OPS-123",
    "fraud [OPS-1] {x}",
    "Betrug – ÄÖÜ",
    "a #b",
    "a # comment",
    "a: b",
    "a:b",
    "'single'",
    "\"double\"",
    "''",
    "\"\"",
    "'it''s'",
    "\"tab\\t\"",
    "null",
    "~",
    "yes",
    "No",
    "on",
    "true",
    "123",
    "-1",
    "1.5",
    "1e5",
    ".inf",
    "0x1F",
    "0o17",
    "0b101",
    "0b3f1c7f-7e43-4a3e-9a8e-2c1d7b7f6a10",
    "0xabc.example",
    "1e5-x",
    "2027-01-01x",
    "1_000",
    "12:30",
    "-x",
    "?x",
    "*alias",
    "&anchor x",
    "!tag x",
    "|",
    ">",
    "%x",
    "`x`",
    "x ",
    "[a]",
    "{a: b}",
    "",
];
const KEYS: &[&str] = &[
    "id", "email", "domain", "reason", "until", "mode", "Id", "reasn",
];

fn random_item(rng: &mut Rng, indent: &str, out: &mut String) {
    let dash_spaces = if rng.chance(90) { " " } else { "   " };
    if rng.chance(45) {
        out.push_str(&format!("{indent}-{dash_spaces}{}\n", rng.pick(SCALARS)));
        return;
    }
    let key_indent = format!("{indent} {dash_spaces}");
    let n = 1 + rng.below(4);
    for k in 0..n {
        let key = if k == 0 && rng.chance(70) {
            rng.pick(&["id", "email", "domain"])
        } else if rng.chance(90) {
            rng.pick(&KEYS[3..6])
        } else {
            rng.pick(KEYS)
        };
        let value = rng.pick(SCALARS);
        let comment = if rng.chance(10) { "  # note" } else { "" };
        if k == 0 {
            out.push_str(&format!("{indent}-{dash_spaces}{key}: {value}{comment}\n"));
        } else {
            let extra = if rng.chance(3) { " " } else { "" };
            out.push_str(&format!("{key_indent}{extra}{key}: {value}{comment}\n"));
        }
        if rng.chance(5) {
            out.push_str(&format!("{key_indent}# between keys\n"));
        }
    }
}

fn random_document(rng: &mut Rng) -> String {
    let mut out = String::new();
    if rng.chance(10) {
        out.push_str("---\n");
    }
    if rng.chance(10) {
        out.push_str("# header\n\n");
    }
    let sections = 1 + rng.below(3);
    for _ in 0..sections {
        let name = if rng.chance(97) {
            rng.pick(&["identities", "emails", "email_domains"])
        } else {
            "identity"
        };
        if rng.chance(8) {
            out.push_str(&format!("{name}: []\n"));
            continue;
        }
        out.push_str(&format!("{name}:\n"));
        let indent = rng.pick(&["", "  ", "    "]);
        for _ in 0..rng.below(6) {
            random_item(rng, indent, &mut out);
            if rng.chance(5) {
                out.push('\n');
            }
        }
    }
    if rng.chance(3) {
        out = out.replacen('\n', "\n\t", 1);
    }
    if rng.chance(3) {
        out = out.replace('\n', "\r\n");
    }
    if rng.chance(10) && out.ends_with('\n') {
        out.pop();
    }
    out
}

#[test]
fn fast_path_agrees_with_serde_saphyr_on_generated_files() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut taken = 0;
    let total = 4000;
    for _ in 0..total {
        let text = random_document(&mut rng);
        if same_both_ways(&text) {
            taken += 1;
        }
    }
    // Most generated files have some odd value in them; a good share must still be taken.
    assert!(
        taken > total / 10,
        "the fast path took only {taken} of {total}"
    );
}

#[test]
fn fast_path_agrees_on_every_single_scalar() {
    for section in ["identities", "emails", "email_domains"] {
        for v in SCALARS {
            same_both_ways(&format!("{section}:\n  - {v}\n"));
            for key in KEYS {
                same_both_ways(&format!("{section}:\n  - {key}: {v}\n"));
                same_both_ways(&format!("{section}:\n  - id: {A}\n    {key}: {v}\n"));
            }
        }
    }
}

#[test]
fn large_generated_list_parses_the_same_both_ways() {
    let mut rng = Rng(42);
    let mut text = String::from("identities:\n");
    for i in 0..20_000u64 {
        let id = Uuid::from_u64_pair(rng.next(), rng.next());
        if i % 97 == 0 {
            text.push_str(&format!(
                "  - id: {id}\n    reason: r{i}\n    until: 2099-01-01T00:00:00Z\n"
            ));
        } else {
            text.push_str(&format!("  - {id}\n"));
        }
        if i % 1000 == 0 {
            text.push_str(&format!("  - {}\n", id.to_string().to_uppercase()));
        }
    }
    assert!(same_both_ways(&text));
    let list = parse(&text).expect("valid").blocklist;
    assert_eq!(list.len(), 20_000);
}
