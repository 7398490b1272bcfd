//! Reading the YAML: serde-saphyr's values with their positions, numbers and booleans with
//! their text as written.

use std::fmt;

use serde::de::{self, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Entry, Node, Origin, Pos, Value};

/// A value as read, and whether the reader typed it (a number or a boolean).
struct Raw(Value, bool);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Raw, D::Error> {
        d.deserialize_any(RawVisitor)
    }
}

fn spanned(s: Spanned<Raw>) -> Node {
    let span = s.referenced.span();
    let mut node = Node::new(s.value.0, Pos::of(&s.referenced), Origin::File);
    if s.value.1 {
        node.written = span.byte_offset().zip(span.byte_len());
    }
    node
}

/// Typed scalars take their text as written in `text`.
fn as_written(node: &mut Node, text: &str) {
    if let Some((offset, len)) = node.written.take() {
        let written = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(offset.saturating_add(len)).ok())
            .and_then(|(start, end)| text.get(start..end))
            .map(str::trim)
            .filter(|w| !w.is_empty());
        if let (Some(w), Value::Scalar(s)) = (written, &mut node.value) {
            *s = w.to_owned();
        }
    }
    match &mut node.value {
        Value::Map(entries) => entries
            .iter_mut()
            .for_each(|e| as_written(&mut e.value, text)),
        Value::Seq(items) => items.iter_mut().for_each(|i| as_written(i, text)),
        _ => {}
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_string()), true))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v.to_owned()), false))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw(Value::Scalar(v), false))
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null, false))
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw(Value::Null, false))
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        Raw::deserialize(d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(spanned(item));
        }
        Ok(Raw(Value::Seq(items), false))
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Raw>>()? {
            let name = match key.value.0 {
                Value::Scalar(s) => s,
                Value::Null => String::new(),
                _ => {
                    return Err(de::Error::custom(
                        "a key must be a name, not a list or a map",
                    ))
                }
            };
            let value = spanned(map.next_value::<Spanned<Raw>>()?);
            entries.push(Entry {
                key: name,
                key_at: Pos::of(&key.referenced),
                value,
            });
        }
        Ok(Raw(Value::Map(entries), false))
    }
}

/// Reads YAML text into a tree; an empty document is an empty map.
pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    if text.trim().is_empty() {
        return Ok(Node::new(
            Value::Map(Vec::new()),
            Pos::default(),
            Origin::File,
        ));
    }
    let root: Spanned<Raw> = serde_saphyr::from_str(text)?;
    let mut node = spanned(root);
    as_written(&mut node, text);
    if matches!(node.value, Value::Null) {
        node.value = Value::Map(Vec::new());
    }
    Ok(node)
}
