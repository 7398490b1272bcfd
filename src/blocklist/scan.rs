//! A line-oriented reader for the shapes a blocklist file nearly always has:
//!
//! ```yaml
//! identities:                      # a section key at column 1 (`identities`, `emails`,
//!   - 3f1c7f52-…                   #   `email_domains`, `networks`), or `key: []`
//!   - id: 9b2e4c1a-…               # a bare value, or a map of `id`/`email`/`domain`/`network`,
//!     reason: chargeback fraud     #   `reason`, `until`, `mode`, one key a line
//!     until: 2027-01-01T00:00:00Z
//!     ticket: OPS-123              # metadata: `ticket`, `added_by`, `note` (a `meta:`
//!                                  #   map is left to serde-saphyr)
//! ```
//!
//! with comments, blank lines, `---`, plain scalars that can only be strings, and quoted
//! scalars without escapes. It reads a 1,000,000-id file in a fraction of the time and memory
//! serde-saphyr takes, and hands the same items, at the same positions, to the same
//! validation. Anything else (flow collections, anchors, tags, block scalars, multi-line
//! values, tabs, a value YAML would read as a number, boolean or null, any syntax error) makes
//! it give up, and the file is parsed by serde-saphyr, which also writes every syntax error.
//! The tests in `scan/agreement.rs` check that both readers agree.

use std::borrow::Cow;

use super::parse::{Collector, Item, Pos, SectionKind, Value};

/// Feeds every item of `text` to `c` and returns true, or returns false as soon as the text
/// leaves the supported shapes (then `c` holds a partial result and must be discarded).
pub(super) fn scan(text: &str, c: &mut Collector<'_>) -> bool {
    scan_layout(text, c).is_some()
}

/// [`scan`], also giving where the file's sections are.
pub(super) fn scan_layout(text: &str, c: &mut Collector<'_>) -> Option<Layout> {
    let mut layout = Layout::default();
    scan_inner(text, 1, State::start(), c, &mut layout)?;
    Some(layout)
}

/// Feeds the items of some whole lines of the `identities` block list of a file (`text`,
/// starting at line `first_line`) to `c`, read as [`scan`] reads them there: items at
/// `item_indent`, no section key. False when the lines leave the supported shapes or the
/// block (then `c` must be discarded). `text` must start with an item (or be blank).
pub(super) fn scan_region(
    text: &str,
    first_line: u64,
    item_indent: usize,
    c: &mut Collector<'_>,
) -> bool {
    let state = State {
        section: Some(SectionKind::Identities),
        item_indent: Some(item_indent),
        flow_empty: false,
        // Every key taken: a section key in the region gives up.
        seen: [true; 4],
        started: true,
    };
    scan_inner(text, first_line, state, c, &mut Layout::default()).is_some()
}

/// Where the sections of a file read by [`scan_layout`] are, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Layout {
    pub(super) sections: Vec<SectionAt>,
}

/// One section key: its line, and the indent of its block items (`None`: none, or `key: []`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SectionAt {
    pub(super) kind: SectionKind,
    pub(super) line: u64,
    pub(super) item_indent: Option<usize>,
}

/// The reader's state between two lines.
struct State {
    section: Option<SectionKind>,
    /// The section's items' indent, once its first item was read; `None` also after `key: []`.
    item_indent: Option<usize>,
    flow_empty: bool,
    seen: [bool; 4],
    started: bool,
}

impl State {
    fn start() -> Self {
        State {
            section: None,
            item_indent: None,
            flow_empty: false,
            seen: [false; 4],
            started: false,
        }
    }
}

/// A map item being read: its position, the column of its keys, and the keys seen so far.
struct Pending<'a> {
    at: Pos,
    key_indent: usize,
    key: Option<(Cow<'a, str>, Value<'a>)>,
    reason: Option<Cow<'a, str>>,
    until: Option<Value<'a>>,
    mode: Option<Value<'a>>,
    /// `ticket`, `added_by`, `note` (a `meta:` map is left to serde-saphyr).
    meta: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Pending<'a> {
    /// Adds one `key: value`; `None` for an unknown or repeated key (serde-saphyr's error).
    fn add(&mut self, key: &'a str, value: Value<'a>) -> Option<()> {
        match key {
            "id" | "email" | "domain" | "network" => {
                if self.key.is_some() {
                    return None;
                }
                self.key = Some((Cow::Borrowed(key), value));
            }
            "reason" => {
                if self.reason.is_some() {
                    return None;
                }
                self.reason = Some(value.0);
            }
            "until" => {
                if self.until.is_some() {
                    return None;
                }
                self.until = Some(value);
            }
            "mode" => {
                if self.mode.is_some() {
                    return None;
                }
                self.mode = Some(value);
            }
            "ticket" | "added_by" | "note" => {
                if self.meta.iter().any(|(k, _)| k == key) {
                    return None;
                }
                self.meta.push((Cow::Borrowed(key), value.0));
            }
            _ => return None,
        }
        Some(())
    }

    fn into_item(self) -> Item<'a> {
        Item::Full {
            at: self.at,
            key: self.key,
            reason: self.reason,
            until: self.until,
            mode: self.mode,
            meta: self.meta,
        }
    }
}

fn scan_inner<'a>(
    text: &'a str,
    first_line: u64,
    state: State,
    c: &mut Collector<'_>,
    layout: &mut Layout,
) -> Option<()> {
    let State {
        mut section,
        mut item_indent,
        mut flow_empty,
        mut seen,
        mut started,
    } = state;
    let mut pending: Option<Pending<'a>> = None;

    for (n, line) in text.split('\n').enumerate() {
        let line_no = n as u64 + first_line;
        if !printable(line) {
            return None;
        }
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if indent == 0 && !is_item(content) {
            // A section key, or the document start.
            if let Some(p) = pending.take() {
                c.item(section?, p.into_item());
            }
            if content.trim_end_matches(' ') == "---" && !started {
                started = true;
                continue;
            }
            started = true;
            let (key, rest) = content.split_once(':')?;
            let kind = match key {
                "identities" => SectionKind::Identities,
                "emails" => SectionKind::Emails,
                "email_domains" => SectionKind::Domains,
                "networks" => SectionKind::Networks,
                _ => return None,
            };
            let slot = seen.get_mut(kind as usize)?;
            if *slot {
                return None; // a repeated key is serde-saphyr's error to report
            }
            *slot = true;
            if !(rest.is_empty() || rest.starts_with(' ')) {
                return None;
            }
            let rest = strip_comment(rest)?;
            flow_empty = match rest {
                "" => false,
                "[]" => true,
                _ => return None,
            };
            section = Some(kind);
            item_indent = None;
            layout.sections.push(SectionAt {
                kind,
                line: line_no,
                item_indent: None,
            });
            continue;
        }
        started = true;
        let kind = section?;
        if is_item(content) {
            if flow_empty {
                return None;
            }
            match item_indent {
                None => {
                    item_indent = Some(indent);
                    if let Some(at) = layout.sections.last_mut() {
                        at.item_indent = Some(indent);
                    }
                }
                Some(i) if i == indent => {}
                Some(_) => return None,
            }
            if let Some(p) = pending.take() {
                c.item(kind, p.into_item());
            }
            // `- ` and the spaces after it.
            let after_dash = content.get(1..)?;
            let value = after_dash.trim_start_matches(' ');
            let col = indent + 1 + (after_dash.len() - value.len()); // 0-based
            if value.is_empty() || value.starts_with('#') {
                return None; // a null item, or a nested block
            }
            match split_key(value) {
                Some((key, rest)) => {
                    let mut p = Pending {
                        at: Pos {
                            line: line_no,
                            column: col as u64 + 1,
                        },
                        key_indent: col,
                        key: None,
                        reason: None,
                        until: None,
                        mode: None,
                        meta: Vec::new(),
                    };
                    let v = map_value(rest, col + key.len() + 1, line_no)?;
                    p.add(key, v)?;
                    pending = Some(p);
                }
                None => {
                    let v = scalar(value, col, line_no)?;
                    c.item(kind, Item::Bare(v));
                }
            }
            continue;
        }
        // A further key of the map item being read.
        let p = pending.as_mut()?;
        if indent != p.key_indent {
            return None;
        }
        let (key, rest) = split_key(content)?;
        let v = map_value(rest, indent + key.len() + 1, line_no)?;
        p.add(key, v)?;
    }
    if let Some(p) = pending.take() {
        c.item(section?, p.into_item());
    }
    Some(())
}

/// `- x` or a lone `-`.
fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// `key: rest` or `key:` for the keys a map item may have; anything else is no key.
pub(super) fn split_key(content: &str) -> Option<(&str, &str)> {
    let end = content.find(|ch: char| !(ch.is_ascii_lowercase() || ch == '_'))?;
    let (key, rest) = content.split_at(end);
    let rest = rest.strip_prefix(':')?;
    if !(rest.is_empty() || rest.starts_with(' ')) || key.is_empty() {
        return None;
    }
    Some((key, rest))
}

/// The value after `key:` (`rest` starts after the colon, at 0-based column `col`).
fn map_value(rest: &str, col: usize, line: u64) -> Option<Value<'_>> {
    let value = rest.trim_start_matches(' ');
    if value.is_empty() || value.starts_with('#') {
        return None; // null
    }
    scalar(value, col + (rest.len() - value.len()), line)
}

/// A scalar that starts at 0-based column `col` and runs to the end of the line (or to a
/// comment). `None` unless YAML reads it as this exact string.
pub(super) fn scalar(text: &str, col: usize, line: u64) -> Option<Value<'_>> {
    let at = Pos {
        line,
        column: col as u64 + 1,
    };
    let quote = text.chars().next()?;
    if quote == '"' || quote == '\'' {
        let inner = text.get(1..)?;
        let close = inner.find(quote)?;
        let (value, after) = inner.split_at(close);
        if value.contains('\\') || after.get(1..)?.starts_with(quote) {
            return None; // escapes, or '' inside single quotes
        }
        let after = after.get(1..)?;
        if !(after.is_empty() || after.starts_with(' ')) || !strip_comment(after)?.is_empty() {
            return None;
        }
        return Some((Cow::Borrowed(value), at));
    }
    let value = before_comment(text).trim_end_matches(' ');
    if value.is_empty()
        || value.starts_with(|ch: char| "-?:,[]{}#&*!|>'\"%@`".contains(ch))
        || (value.contains(':') && (value.contains(": ") || value.ends_with(':')))
        || !plain_is_string(value)
    {
        return None;
    }
    Some((Cow::Borrowed(value), at))
}

/// `8-4-4-4-12` hex digits: never a number, boolean or null (the hot case of a big list).
/// Without a branch per byte: random hex digits defeat branch prediction, and this ran for
/// most of a million-id reload.
fn is_uuid_shaped(value: &str) -> bool {
    const DASH: [bool; 36] = {
        let mut d = [false; 36];
        d[8] = true;
        d[13] = true;
        d[18] = true;
        d[23] = true;
        d
    };
    let bytes = value.as_bytes();
    bytes.len() == 36
        && bytes.iter().zip(DASH).fold(true, |ok, (&b, dash)| {
            let hex = (b.wrapping_sub(b'0') < 10) | ((b | 0x20).wrapping_sub(b'a') < 6);
            ok & if dash { b == b'-' } else { hex }
        })
}

/// The text before a comment (` #`), or all of it.
fn before_comment(text: &str) -> &str {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(i) = bytes
        .get(from..)
        .and_then(|b| b.iter().position(|&c| c == b'#'))
    {
        let at = from + i;
        if at > 0 && bytes.get(at - 1) == Some(&b' ') {
            return text.get(..at - 1).unwrap_or(text);
        }
        from = at + 1;
    }
    text
}

/// Drops a trailing comment (` # …`) and spaces; `None` when `#` follows something directly.
fn strip_comment(text: &str) -> Option<&str> {
    let t = text.trim_start_matches(' ');
    if t.starts_with('#') {
        return Some("");
    }
    Some(before_comment(text).trim_matches(' '))
}

/// True when YAML (any schema serde-saphyr may apply: 1.1 booleans, 1.2 numbers, `~`) can
/// only read this plain scalar as a string. Conservative: anything that might be a number
/// is refused, even if it is not one.
fn plain_is_string(value: &str) -> bool {
    // A dotted quad (a `networks` entry) has too many dots for a number in any schema.
    if is_uuid_shaped(value) || value.contains('@') || value.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    let words = [
        "~", "null", "y", "yes", "n", "no", "true", "false", "on", "off",
    ];
    if words.iter().any(|w| value.eq_ignore_ascii_case(w)) {
        return false;
    }
    let lower = value.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "inf" | ".inf" | "infinity" | "nan" | ".nan") {
        return false;
    }
    // `0x…`, `0o…`, `0b…` with nothing but (hex) digits after (a UUID can start `0b3f…`).
    let radix = ["0x", "0o", "0b"].iter().any(|p| {
        unsigned
            .strip_prefix(p)
            .is_some_and(|rest| rest.chars().all(|ch| ch.is_ascii_hexdigit() || ch == '_'))
    });
    let numeric = unsigned
        .chars()
        .all(|ch| ch.is_ascii_digit() || "._e+-:".contains(ch));
    // A sign anywhere but after an exponent's `e` (a UUID's or a date's hyphens) is in no
    // number; about one random UUID in 75,000 has nothing but digits, `e` and hyphens.
    let mut prev = ' ';
    let inner_sign = unsigned.chars().any(|ch| {
        let inner = (ch == '-' || ch == '+') && prev != 'e';
        prev = ch;
        inner
    });
    !(radix || (numeric && !inner_sign))
}

/// Every character YAML allows in a line (no tab, no CR, no other line breaks, no controls).
fn printable(line: &str) -> bool {
    if line.is_ascii() {
        return !line.bytes().any(|b| b < 0x20 || b == 0x7f);
    }
    !line.chars().any(|ch| {
        ch < ' '
            || ('\u{7f}'..='\u{9f}').contains(&ch)
            || matches!(
                ch,
                '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )
    })
}

#[cfg(test)]
pub(super) mod agreement;

#[cfg(test)]
mod tests {
    use super::is_uuid_shaped;

    #[test]
    fn uuid_shape_is_exact() {
        assert!(is_uuid_shaped("5ff66179-c240-4703-b0d8-494592cefff5"));
        assert!(is_uuid_shaped("ABCDEF01-2345-6789-abcd-ef0123456789"));
        for bad in [
            "",
            "5ff66179-c240-4703-b0d8-494592cefff",
            "5ff66179-c240-4703-b0d8-494592cefff55",
            "5ff66179c240-4703-b0d8-494592cefff5-",
            "5ff66179-c240-4703-b0d8-494592cefffg",
            "5ff66179-c240-4703-b0d8_494592cefff5",
            "-ff66179-c240-4703-b0d8-494592cefff5",
            "5ff66179-c240-4703-b0d8-494592ceff\u{e9}",
        ] {
            assert!(!is_uuid_shaped(bad), "{bad:?}");
        }
    }
}
