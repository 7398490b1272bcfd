//! The file as serde-saphyr reads it (every shape YAML allows, and every syntax error with
//! its position): the reader behind the fast path in `scan.rs`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::parse::{Item, Pos};

impl Item<'static> {
    pub(super) fn from_raw(item: Spanned<RawEntry>) -> Self {
        let at = Pos::from(item.referenced);
        let spanned = |v: Spanned<String>| (Cow::Owned(v.value), Pos::from(v.referenced));
        match item.value {
            RawEntry::Bare(v) => Item::Bare((Cow::Owned(v), at)),
            RawEntry::Full {
                key,
                reason,
                until,
                mode,
                meta,
            } => Item::Full {
                at,
                key: key.map(|(k, v)| (Cow::Owned(k), spanned(v))),
                reason: reason.map(Cow::Owned),
                until: until.map(spanned),
                mode: mode.map(spanned),
                meta: meta
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                    .collect(),
            },
        }
    }
}

/// The file as serde-saphyr reads it, every item with its position.
pub(super) fn raw_file(text: &str) -> Result<RawFile, serde_saphyr::Error> {
    // serde-saphyr's default budget stops at 250,000 nodes, a quarter of a million-id list.
    // The file is written by ops, not by clients: allow work in proportion to its size
    // (anchors and aliases keep their default limits).
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 250_000usize.max(text.len() / 8),
            max_events: 1_000_000usize.max(text.len() / 4),
            max_total_scalar_bytes: (64usize << 20).max(text.len()),
        },
    };
    serde_saphyr::from_str_with_options::<Option<RawFile>>(text, options)
        .map(Option::unwrap_or_default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) identities: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    pub(super) emails: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    pub(super) email_domains: Option<Vec<Spanned<RawEntry>>>,
    #[serde(default)]
    pub(super) networks: Option<Vec<Spanned<RawEntry>>>,
}

/// One list item: a bare value, or a map with the section's key (`id`, `email`, `domain`,
/// `network`) and
/// optional `reason`, `until` and `mode`.
// Short-lived parse intermediate; boxing would only add allocations per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum RawEntry {
    Bare(String),
    Full {
        key: Option<(String, Spanned<String>)>,
        reason: Option<String>,
        until: Option<Spanned<String>>,
        mode: Option<Spanned<String>>,
        meta: Vec<(String, String)>,
    },
}

const ENTRY_FIELDS: &[&str] = &[
    "id", "email", "domain", "network", "reason", "until", "mode", "ticket", "added_by", "note",
    "meta",
];

/// A `meta:` map of strings, in file order.
struct MetaMap(Vec<(String, String)>);

impl<'de> Deserialize<'de> for MetaMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = MetaMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of text keys to text values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaMap, A::Error> {
                let mut out: Vec<(String, String)> = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if out.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("duplicate meta key `{k}`")));
                    }
                    let v = map.next_value::<String>()?;
                    out.push((k, v));
                }
                Ok(MetaMap(out))
            }
        }
        deserializer.deserialize_map(MetaVisitor)
    }
}

impl<'de> Deserialize<'de> for RawEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = RawEntry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value, or a map with `id`/`email`/`domain`/`network` and optional `reason`, `until`, `mode`, `ticket`, `added_by`, `note`, `meta`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<RawEntry, E> {
                Ok(RawEntry::Bare(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEntry, A::Error> {
                let mut key: Option<(String, Spanned<String>)> = None;
                let mut reason = None;
                let mut until = None;
                let mut mode = None;
                let mut meta: Vec<(String, String)> = Vec::new();
                let mut meta_map = false;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "id" | "email" | "domain" | "network" => {
                            if let Some((prev, _)) = &key {
                                return Err(de::Error::custom(format!(
                                    "an entry has one of `id`, `email`, `domain`, `network`; this one has `{prev}` and `{k}`"
                                )));
                            }
                            let v = map.next_value::<Spanned<String>>()?;
                            key = Some((k, v));
                        }
                        "reason" => {
                            if reason.is_some() {
                                return Err(de::Error::duplicate_field("reason"));
                            }
                            reason = Some(map.next_value::<String>()?);
                        }
                        "until" => {
                            if until.is_some() {
                                return Err(de::Error::duplicate_field("until"));
                            }
                            until = Some(map.next_value::<Spanned<String>>()?);
                        }
                        "mode" => {
                            if mode.is_some() {
                                return Err(de::Error::duplicate_field("mode"));
                            }
                            mode = Some(map.next_value::<Spanned<String>>()?);
                        }
                        "ticket" | "added_by" | "note" => {
                            if meta.iter().any(|(seen, _)| *seen == k) {
                                return Err(de::Error::custom(format!("duplicate field `{k}`")));
                            }
                            let v = map.next_value::<String>()?;
                            meta.push((k, v));
                        }
                        "meta" => {
                            if meta_map {
                                return Err(de::Error::duplicate_field("meta"));
                            }
                            meta_map = true;
                            meta.extend(map.next_value::<MetaMap>()?.0);
                        }
                        other => return Err(de::Error::unknown_field(other, ENTRY_FIELDS)),
                    }
                }
                Ok(RawEntry::Full {
                    key,
                    reason,
                    until,
                    mode,
                    meta,
                })
            }
        }
        deserializer.deserialize_any(EntryVisitor)
    }
}
