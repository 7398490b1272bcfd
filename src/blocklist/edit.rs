//! Edits of the blocklist file for `kratos-gate block | unblock`.
//!
//! An edit is a line-oriented text change: the lines of the entries added, changed or
//! removed are the only ones touched; every other line (comments, blank lines, other
//! entries, their formatting) stays byte for byte. The result is parsed and linted by the
//! same code as `check` before it may be written, and written atomically
//! ([`replace_file`]).

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use uuid::Uuid;

use super::keys::{domain_entry_key, email_key};
use super::parse::SectionKind;
use super::raw::{raw_file, RawEntry, RawFile};
use super::scan;
use super::{Blocklist, Entry, Mode, Parsed, METADATA_KEYS};
use crate::diagnostic::Diagnostic;
use crate::networks::parse_network;
use crate::util::parse_uuid;

/// What an argument of `block`/`unblock` names, decided by its shape: a UUID is an identity,
/// text with `@` an e-mail address, an IP address or CIDR network a network, anything else a
/// domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    kind: SectionKind,
    /// As given, trimmed (written to the file in this spelling).
    text: String,
    /// The one spelling the list compares.
    key: String,
}

impl Target {
    pub fn classify(arg: &str) -> Result<Target, String> {
        let text = arg.trim().to_owned();
        if let Some(id) = parse_uuid(&text) {
            return Ok(Target {
                kind: SectionKind::Identities,
                key: id.to_string(),
                text,
            });
        }
        if let Ok(n) = parse_network(&text) {
            return Ok(Target {
                kind: SectionKind::Networks,
                key: n.net.to_string(),
                text,
            });
        }
        let (kind, key) = if text.contains('@') {
            (SectionKind::Emails, email_key(&text))
        } else {
            (SectionKind::Domains, domain_entry_key(&text))
        };
        match key {
            Ok(key) => Ok(Target { kind, text, key }),
            Err(super::keys::Invalid::PublicSuffix) => Err(format!(
                "`{text}` is a public suffix: it would block every address under it"
            )),
            Err(_) if kind == SectionKind::Emails => Err(format!(
                "`{text}` is neither an identity id (UUID) nor an e-mail address"
            )),
            Err(_) => Err(format!(
                "`{text}` is neither an identity id (UUID), an e-mail address, a network nor a domain"
            )),
        }
    }

    /// `identities`, `emails` or `email_domains`.
    pub fn section(&self) -> &'static str {
        section_name(self.kind)
    }

    /// The list's spelling of the key (lower-case UUID, address or ASCII domain).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The identity id, for an identity target.
    pub fn id(&self) -> Option<Uuid> {
        match self.kind {
            SectionKind::Identities => parse_uuid(&self.key),
            _ => None,
        }
    }

    /// The entry for this key in `list`, expired or not.
    pub fn entry_in(&self, list: &Blocklist) -> Option<Entry> {
        match self.kind {
            SectionKind::Identities => self.id().and_then(|id| list.identities.get(&id)),
            SectionKind::Emails => list.emails.get(&self.key).cloned(),
            SectionKind::Domains => list.domains.get(&self.key).cloned(),
            SectionKind::Networks => parse_network(&self.key)
                .ok()
                .and_then(|n| list.networks.get(&n.net).cloned()),
        }
    }

    fn entry_key(&self) -> &'static str {
        match self.kind {
            SectionKind::Identities => "id",
            SectionKind::Emails => "email",
            SectionKind::Domains => "domain",
            SectionKind::Networks => "network",
        }
    }

    /// True when `text` (an item's key as written) is this target in any spelling.
    fn is(&self, text: &str) -> bool {
        match self.kind {
            SectionKind::Identities => {
                parse_uuid(text).is_some_and(|id| self.id().is_some_and(|me| me == id))
            }
            SectionKind::Emails => email_key(text).is_ok_and(|k| k == self.key),
            SectionKind::Domains => domain_entry_key(text).is_ok_and(|k| k == self.key),
            SectionKind::Networks => {
                parse_network(text).is_ok_and(|n| n.net.to_string() == self.key)
            }
        }
    }
}

fn section_name(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Identities => "identities",
        SectionKind::Emails => "emails",
        SectionKind::Domains => "email_domains",
        SectionKind::Networks => "networks",
    }
}

/// What `block` sets; `None` keeps what the entry has (a new entry: nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub reason: Option<String>,
    /// RFC 3339, or `forever` to drop an `until`.
    pub until: Option<String>,
    /// `enforce` or `report`.
    pub mode: Option<String>,
    /// `ticket`, `added_by`, `note` or any other key (those go under `meta:`).
    pub meta: Vec<(String, String)>,
}

/// A successful edit: the new file text, and the list it parses to with its warnings.
#[derive(Debug)]
pub struct Edited {
    pub text: String,
    pub parsed: Parsed,
    pub lint: Vec<Diagnostic>,
}

/// Adds `target` with `fields` at the end of its section (creating the section), or, when
/// it is listed (in any spelling), rewrites its first entry in place with `fields` over the
/// entry's own and drops the other spellings. `Ok(None)`: nothing to change.
pub fn block(
    text: &str,
    source: &str,
    target: &Target,
    fields: &Fields,
    now: i64,
) -> Result<Option<Edited>, Vec<Diagnostic>> {
    let layout = Layout::read(text, source, target)?;
    let matching = layout.matching();
    let mut merged = Resolved::default();
    if let Some(raw) = matching.first().and_then(|m| m.raw.as_deref()) {
        merged = Resolved::of(raw);
    }
    if let Some(r) = &fields.reason {
        merged.reason = Some(r.clone()).filter(|r| !r.trim().is_empty());
    }
    if let Some(u) = &fields.until {
        merged.until = Some(u.clone()).filter(|u| !u.trim().eq_ignore_ascii_case("forever"));
    }
    if let Some(m) = &fields.mode {
        merged.mode = Some(m.clone()).filter(|m| m.trim() != "enforce");
    }
    for (k, v) in &fields.meta {
        match merged.meta.iter_mut().find(|(mk, _)| mk == k) {
            Some(slot) => slot.1 = v.clone(),
            None => merged.meta.push((k.clone(), v.clone())),
        }
    }
    merged.meta.retain(|(_, v)| !v.trim().is_empty());
    let nl = layout.newline();
    let mut out = layout.lines.clone();
    match matching.split_first() {
        Some((first, rest)) => {
            // The entry keeps its own spelling.
            let written = match first.raw.as_deref() {
                Some(RawEntry::Bare(v)) => v.clone(),
                Some(RawEntry::Full { key: Some(k), .. }) => k.1.value.clone(),
                _ => target.text.clone(),
            };
            let rendered = render(first.indent, &written, target, &merged, nl);
            let old: String = layout.span(first.start, first.end);
            if rest.is_empty() && old == rendered {
                return Ok(None);
            }
            // Later lines first, so that earlier indices stay valid.
            for item in rest.iter().rev() {
                out.drain(item.start..item.end);
            }
            out.splice(
                first.start..first.end,
                std::iter::once(Cow::Owned(rendered)),
            );
        }
        None => {
            let rendered = |indent| render(indent, &target.text, target, &merged, nl);
            match layout.sections.iter().find(|s| s.kind == target.kind) {
                Some(section) => match (&section.header_rest, section.items.last()) {
                    (HeaderRest::Flow, _) => {
                        return Err(vec![Diagnostic::new(
                            source,
                            section.header as u64 + 1,
                            1,
                            format!(
                                "`{}` is written as a flow sequence (`[…]`); write it as a list of `- ` lines to edit it with kratos-gate",
                                target.section()
                            ),
                        )]);
                    }
                    (_, Some(last)) => {
                        terminate(&mut out, last.end - 1, nl);
                        out.insert(last.end, Cow::Owned(rendered(last.indent)));
                    }
                    (HeaderRest::EmptyFlow(comment), None) => {
                        let header = format!("{}:{comment}{nl}", target.section());
                        out.splice(
                            section.header..section.header + 1,
                            [
                                Cow::Owned(header),
                                Cow::Owned(rendered(layout.default_indent())),
                            ],
                        );
                    }
                    (HeaderRest::Block, None) => {
                        terminate(&mut out, section.header, nl);
                        out.insert(
                            section.header + 1,
                            Cow::Owned(rendered(layout.default_indent())),
                        );
                    }
                },
                None => {
                    if let Some(last) = out.len().checked_sub(1) {
                        terminate(&mut out, last, nl);
                    }
                    out.push(Cow::Owned(format!("{}:{nl}", target.section())));
                    out.push(Cow::Owned(rendered(layout.default_indent())));
                }
            }
        }
    }
    let text = out.concat();
    let edited = validate(text, source, now)?;
    let listed = target.entry_in(&edited.parsed.blocklist);
    let want_mode = if merged.mode.as_deref().map(str::trim) == Some("report") {
        Mode::Report
    } else {
        Mode::Enforce
    };
    if listed.is_none_or(|e| e.mode != want_mode) {
        return Err(vec![Diagnostic::whole_file(
            source,
            format!(
                "the edit did not list {} as asked (the file's layout may need a hand edit); nothing written",
                target.text
            ),
        )]);
    }
    Ok(Some(edited))
}

/// Removes every entry of `target` (in any spelling). `Ok(None)`: it is not listed.
pub fn unblock(
    text: &str,
    source: &str,
    target: &Target,
    now: i64,
) -> Result<Option<Edited>, Vec<Diagnostic>> {
    let layout = Layout::read(text, source, target)?;
    let matching = layout.matching();
    if matching.is_empty() {
        return Ok(None);
    }
    let mut out = layout.lines.clone();
    for item in matching.iter().rev() {
        out.drain(item.start..item.end);
    }
    let edited = validate(out.concat(), source, now)?;
    if target.entry_in(&edited.parsed.blocklist).is_some() {
        return Err(vec![Diagnostic::whole_file(
            source,
            format!(
                "the edit did not remove {} (the file's layout may need a hand edit); nothing written",
                target.text
            ),
        )]);
    }
    Ok(Some(edited))
}

/// Parses and lints `text` as `check` does.
fn validate(text: String, source: &str, now: i64) -> Result<Edited, Vec<Diagnostic>> {
    let parsed = Blocklist::parse(&text, source)?;
    let lint = parsed.blocklist.lint(source, now);
    Ok(Edited { text, parsed, lint })
}

/// Gives line `i` a line break if it has none (the file's last line).
fn terminate(lines: &mut [Cow<'_, str>], i: usize, nl: &str) {
    if let Some(line) = lines.get_mut(i) {
        if !line.ends_with('\n') {
            line.to_mut().push_str(nl);
        }
    }
}

/// An entry's fields as written (for an update), then as they will be written.
#[derive(Debug, Default)]
struct Resolved {
    reason: Option<String>,
    until: Option<String>,
    mode: Option<String>,
    meta: Vec<(String, String)>,
}

impl Resolved {
    fn of(raw: &RawEntry) -> Resolved {
        match raw {
            RawEntry::Bare(_) => Resolved::default(),
            RawEntry::Full {
                reason,
                until,
                mode,
                meta,
                ..
            } => Resolved {
                reason: reason.clone(),
                until: until.as_ref().map(|u| u.value.clone()),
                mode: mode
                    .as_ref()
                    .map(|m| m.value.clone())
                    .filter(|m| m.trim() != "enforce"),
                meta: meta.clone(),
            },
        }
    }
}

/// One entry as lines at `indent`: a bare `- key` when it has nothing else, else a block map
/// with one key a line (the shapes the fast reader takes).
fn render(indent: usize, written: &str, target: &Target, f: &Resolved, nl: &str) -> String {
    let pad = " ".repeat(indent);
    let bare = f.reason.is_none() && f.until.is_none() && f.mode.is_none() && f.meta.is_empty();
    if bare {
        return format!("{pad}- {}{nl}", yaml_scalar(written));
    }
    let mut out = format!(
        "{pad}- {}: {}{nl}",
        target.entry_key(),
        yaml_scalar(written)
    );
    let mut line = |k: &str, v: &str| {
        out.push_str(&format!("{pad}  {k}: {}{nl}", yaml_scalar(v)));
    };
    if let Some(r) = &f.reason {
        line("reason", r);
    }
    if let Some(u) = &f.until {
        line("until", u);
    }
    if let Some(m) = &f.mode {
        line("mode", m);
    }
    let (known, other): (Vec<_>, Vec<_>) = f
        .meta
        .iter()
        .partition(|(k, _)| METADATA_KEYS.contains(&k.as_str()));
    for (k, v) in known {
        line(k, v);
    }
    if !other.is_empty() {
        out.push_str(&format!("{pad}  meta:{nl}"));
        for (k, v) in other {
            out.push_str(&format!(
                "{pad}    {}: {}{nl}",
                yaml_scalar(k),
                yaml_scalar(v)
            ));
        }
    }
    out
}

/// `value` as a YAML scalar: plain when YAML reads it back as exactly this string (the
/// fast reader's own test), else double-quoted (JSON's escapes are YAML's).
fn yaml_scalar(value: &str) -> Cow<'_, str> {
    let plain = value.trim() == value
        && scan::scalar(value, 0, 1).is_some_and(|(v, _)| v == value && !value.starts_with('"'))
        && !value.starts_with('\'');
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(serde_json::to_string(value).unwrap_or_else(|_| format!("\"{value}\"")))
    }
}

/// What follows a section's `name:`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HeaderRest {
    /// Nothing (or a comment): a block list follows.
    Block,
    /// `[]`, with the comment after it (` # …`) if any.
    EmptyFlow(String),
    /// A flow sequence with items: not edited line by line.
    Flow,
}

/// A section of the file: the line of its key and its items.
#[derive(Debug)]
struct SectionAt {
    kind: SectionKind,
    /// 0-based line index of `name:`.
    header: usize,
    header_rest: HeaderRest,
    items: Vec<ItemAt>,
}

/// An item's lines: from its `-` line to its last line that is not blank or a comment.
#[derive(Debug)]
struct ItemAt {
    start: usize,
    /// Exclusive.
    end: usize,
    /// Column of its `-`.
    indent: usize,
    /// True when it lists the target.
    matches: bool,
    /// As serde-saphyr reads it (for a matching item at least).
    /// Boxed: a million-item file holds a million of these.
    raw: Option<Box<RawEntry>>,
}

/// The file's lines (each with its line break) and where its sections and items are.
struct Layout<'a> {
    lines: Vec<Cow<'a, str>>,
    sections: Vec<SectionAt>,
}

impl<'a> Layout<'a> {
    /// Reads the layout and finds the items that list `target`. A file in the shapes of the
    /// fast reader (nearly every file; one entry key a line) is followed line by line, and
    /// only the matching items are read by serde-saphyr (a million-id file is not held as
    /// YAML nodes). Any other file is checked against serde-saphyr's reading of it: the same
    /// items, each starting within the lines found for it. A file that is not a valid list,
    /// or whose layout this reader does not follow, is an error.
    fn read(text: &'a str, source: &str, target: &Target) -> Result<Layout<'a>, Vec<Diagnostic>> {
        let fast = match Blocklist::parse_fast_path_only(text, source) {
            Some(parsed) => {
                parsed?;
                true
            }
            None => {
                Blocklist::parse(text, source)?;
                false
            }
        };
        let lines: Vec<Cow<'a, str>> = text.split_inclusive('\n').map(Cow::Borrowed).collect();
        let mut sections: Vec<SectionAt> = Vec::new();
        let mut in_section = false;
        for (i, line) in lines.iter().enumerate() {
            let bare = line.trim_end_matches(['\n', '\r']);
            let content = bare.trim_start_matches(' ');
            let indent = bare.len() - content.len();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let is_item = content == "-" || content.starts_with("- ");
            if indent == 0 && !is_item {
                in_section = false;
                let Some((key, rest)) = content.split_once(':') else {
                    continue;
                };
                let kind = match key {
                    "identities" => SectionKind::Identities,
                    "emails" => SectionKind::Emails,
                    "email_domains" => SectionKind::Domains,
                    "networks" => SectionKind::Networks,
                    _ => continue,
                };
                let trimmed = rest.trim_start_matches(' ');
                let header_rest = if trimmed.is_empty() || trimmed.starts_with('#') {
                    HeaderRest::Block
                } else if let Some(after) = trimmed.strip_prefix("[]") {
                    if after.is_empty() || after.starts_with(" #") || after.trim().is_empty() {
                        HeaderRest::EmptyFlow(after.trim_end().to_owned())
                    } else {
                        HeaderRest::Flow
                    }
                } else {
                    HeaderRest::Flow
                };
                sections.push(SectionAt {
                    kind,
                    header: i,
                    header_rest,
                    items: Vec::new(),
                });
                in_section = true;
                continue;
            }
            let Some(section) = sections.last_mut().filter(|_| in_section) else {
                continue;
            };
            let first_indent = section.items.first().map(|it| it.indent);
            if is_item && first_indent.is_none_or(|fi| fi == indent) {
                section.items.push(ItemAt {
                    start: i,
                    end: i + 1,
                    indent,
                    matches: false,
                    raw: None,
                });
            } else if let Some(item) = section.items.last_mut() {
                item.end = i + 1;
            }
        }
        let layout_error = |line: u64| {
            vec![Diagnostic::new(
                source,
                line.max(1),
                1,
                "kratos-gate cannot follow this file's layout line by line (one entry per `- ` line, sections at column 1); edit it by hand",
            )]
        };
        if fast {
            for section in &mut sections {
                let name = section_name(section.kind);
                for item in &mut section.items {
                    let item_lines = lines.get(item.start..item.end).unwrap_or_default();
                    item.matches = fast_item_key(item_lines).is_some_and(|k| target.is(&k));
                    if item.matches {
                        // `name:` and this item alone, as serde-saphyr reads it.
                        let doc = format!("{name}:\n{}", item_lines.concat());
                        let raw =
                            raw_file(&doc).map_err(|_| layout_error(item.start as u64 + 1))?;
                        item.raw = [raw.identities, raw.emails, raw.email_domains]
                            .into_iter()
                            .flatten()
                            .flatten()
                            .next()
                            .map(|s| Box::new(s.value));
                    }
                }
            }
            return Ok(Layout { lines, sections });
        }
        let raw: RawFile = if super::parse::is_blank_yaml(text) {
            RawFile::default()
        } else {
            raw_file(text).map_err(|e| vec![Diagnostic::from_yaml(source, &e)])?
        };
        let from_serde = [
            (SectionKind::Identities, raw.identities),
            (SectionKind::Emails, raw.emails),
            (SectionKind::Domains, raw.email_domains),
            (SectionKind::Networks, raw.networks),
        ];
        for (kind, items) in from_serde {
            let items = items.unwrap_or_default();
            let mut found = sections.iter_mut().filter(|s| s.kind == kind);
            let section = found.next();
            if found.next().is_some() {
                return Err(layout_error(1));
            }
            let Some(section) = section else {
                if let Some(first) = items.first() {
                    return Err(layout_error(first.referenced.line()));
                }
                continue;
            };
            if section.items.len() != items.len() {
                return Err(layout_error(section.header as u64 + 1));
            }
            for (at, item) in section.items.iter_mut().zip(items) {
                let line = usize::try_from(item.referenced.line()).unwrap_or(usize::MAX);
                if !(at.start < line && line <= at.end) {
                    return Err(layout_error(item.referenced.line()));
                }
                at.matches = match &item.value {
                    RawEntry::Bare(v) => target.is(v),
                    RawEntry::Full { key, .. } => {
                        key.as_ref().is_some_and(|(_, v)| target.is(&v.value))
                    }
                };
                at.raw = Some(Box::new(item.value));
            }
        }
        Ok(Layout { lines, sections })
    }

    /// The items of the target's section that name it, in file order.
    fn matching(&self) -> Vec<&ItemAt> {
        self.sections
            .iter()
            .flat_map(|s| s.items.iter())
            .filter(|item| item.matches)
            .collect()
    }

    fn span(&self, start: usize, end: usize) -> String {
        self.lines.get(start..end).unwrap_or_default().concat()
    }

    /// `\r\n` when the file's first line ends so, else `\n`.
    fn newline(&self) -> &'static str {
        match self.lines.first() {
            Some(l) if l.ends_with("\r\n") => "\r\n",
            _ => "\n",
        }
    }

    /// The indent of the file's first item, else two spaces.
    fn default_indent(&self) -> usize {
        self.sections
            .iter()
            .find_map(|s| s.items.first().map(|it| it.indent))
            .unwrap_or(2)
    }
}

/// The key (`id`, `email`, `domain` value, or the bare value) of an item in the fast
/// reader's shapes: a bare scalar, or one `key: value` a line.
fn fast_item_key<'l>(lines: &'l [Cow<'_, str>]) -> Option<Cow<'l, str>> {
    for (n, line) in lines.iter().enumerate() {
        let mut content = line.trim_end_matches(['\n', '\r']).trim_start_matches(' ');
        if n == 0 {
            content = content.strip_prefix('-')?.trim_start_matches(' ');
        }
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        match scan::split_key(content) {
            Some((key, rest)) => {
                if matches!(key, "id" | "email" | "domain" | "network") {
                    let value = rest.trim_start_matches(' ');
                    return scan::scalar(value, 0, 1).map(|(v, _)| v);
                }
            }
            None if n == 0 => return scan::scalar(content, 0, 1).map(|(v, _)| v),
            None => {}
        }
    }
    None
}

/// Replaces `path` with `bytes` atomically: a temporary file in the same folder, written,
/// flushed to disk and renamed over it (readers see the old file or the new one, never a
/// part). A symbolic link is followed: its target is replaced. The file's permissions are
/// kept.
pub fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let path = match std::fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => path.to_owned(),
        Err(e) => return Err(e),
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blocklist".to_owned());
    let tmp = dir.join(format!(".{name}.kratos-gate-{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        if let Ok(meta) = std::fs::metadata(&path) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        // The rename itself on disk.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
    const NOW: i64 = 1_800_000_000;

    fn t(arg: &str) -> Target {
        Target::classify(arg).expect("target")
    }

    #[test]
    fn shapes_decide_the_section() {
        assert_eq!(t(A).section(), "identities");
        assert_eq!(t(&A.to_uppercase()).key(), A);
        assert_eq!(t("A@B.example").section(), "emails");
        assert_eq!(t("Bücher.example").key(), "xn--bcher-kva.example");
        assert!(Target::classify("com").is_err());
        assert!(Target::classify("not a domain").is_err());
    }

    #[test]
    fn block_adds_at_the_end_of_the_section_and_keeps_the_rest() {
        let text = "# head\nidentities:\n  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59 # x\n\n  # trailing\nemails:\n  - a@b.example\n";
        let fields = Fields {
            reason: Some("fraud: yes".into()),
            meta: vec![
                ("ticket".into(), "OPS-1".into()),
                ("x y".into(), "1".into()),
            ],
            ..Fields::default()
        };
        let e = block(text, "f", &t(A), &fields, NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(
            e.text,
            format!("# head\nidentities:\n  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59 # x\n  - id: {A}\n    reason: \"fraud: yes\"\n    ticket: OPS-1\n    meta:\n      x y: \"1\"\n\n  # trailing\nemails:\n  - a@b.example\n")
        );
        let entry = t(A).entry_in(&e.parsed.blocklist).expect("listed");
        assert_eq!(entry.meta_text(), "ticket=OPS-1,x y=1");
        // Unblock gives back the original.
        let back = unblock(&e.text, "f", &t(&A.to_uppercase()), NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(back.text, text);
    }

    #[test]
    fn empty_flow_sections_and_missing_sections_are_written() {
        let e = block(
            "emails: [] # none\n",
            "f",
            &t("x@y.example"),
            &Fields::default(),
            NOW,
        )
        .expect("ok")
        .expect("changed");
        assert_eq!(e.text, "emails: # none\n  - x@y.example\n");
        let e = block(
            "emails:\n- a@b.example",
            "f",
            &t("evil.example"),
            &Fields::default(),
            NOW,
        )
        .expect("ok")
        .expect("changed");
        assert_eq!(
            e.text,
            "emails:\n- a@b.example\nemail_domains:\n- evil.example\n"
        );
        let e = block("", "f", &t(A), &Fields::default(), NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(e.text, format!("identities:\n  - {A}\n"));
    }

    #[test]
    fn an_update_rewrites_the_first_spelling_and_drops_the_others() {
        let text = "email_domains:\n  - domain: Bücher.example\n    reason: r\n  - other.example\n  - xn--bcher-kva.example\n";
        let fields = Fields {
            mode: Some("report".into()),
            ..Fields::default()
        };
        let e = block(text, "f", &t("bücher.example"), &fields, NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(
            e.text,
            "email_domains:\n  - domain: Bücher.example\n    reason: r\n    mode: report\n  - other.example\n"
        );
        assert!(block(&e.text, "f", &t("bücher.example"), &fields, NOW)
            .expect("ok")
            .is_none());
    }

    #[test]
    fn the_line_reader_finds_keys_after_other_keys_and_quoted_keys() {
        let text = format!(
            "identities:\n  - reason: first\n    # inside\n    id: '{}'\n    ticket: T\n  - \"{A}\" # again\n  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59\n",
            A.to_uppercase()
        );
        assert!(Blocklist::parse_fast_path_only(&text, "f").is_some());
        let fields = Fields {
            until: Some("2999-01-01T00:00:00Z".into()),
            ..Fields::default()
        };
        let e = block(&text, "f", &t(A), &fields, NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(
            e.text,
            format!(
                "identities:\n  - id: {}\n    reason: first\n    until: 2999-01-01T00:00:00Z\n    ticket: T\n  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59\n",
                A.to_uppercase()
            )
        );
        let e = unblock(&text, "f", &t(A), NOW)
            .expect("ok")
            .expect("changed");
        assert_eq!(
            e.text,
            "identities:\n  - 9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59\n"
        );
    }

    #[test]
    fn an_invalid_result_is_an_error() {
        let fields = Fields {
            until: Some("notadate".into()),
            ..Fields::default()
        };
        assert!(block("identities: []\n", "f", &t(A), &fields, NOW).is_err());
        assert!(block("identities: [x]\n", "f", &t(A), &Fields::default(), NOW).is_err());
        assert!(block(
            &format!("identities: [{A}]\n"),
            "f",
            &t("9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59"),
            &Fields::default(),
            NOW
        )
        .is_err());
    }
}
