//! The serde deserializer over the tree: every error named by its key path and placed at its
//! value, with what `collect.rs` needs to take the value out and go on.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{join, Entry, Node, Origin, Pos, Value};

#[derive(Debug, Clone)]
pub(super) enum Fix {
    /// The value at this location is wrong.
    Replace(Vec<usize>),
    /// The entry (or item) at this location should not be there.
    Remove(Vec<usize>),
    /// The map at this location lacks this key.
    Insert(Vec<usize>, String),
}

#[derive(Debug, Clone)]
pub(super) struct Place {
    pub(super) path: String,
    pub(super) at: Pos,
    pub(super) origin: Origin,
    pub(super) fix: Fix,
}

#[derive(Debug, Clone)]
enum Kind {
    Value,
    Unknown(String),
    Missing(String),
    Duplicate(String),
}

/// A deserialization error; placed at the innermost value that raised it.
#[derive(Debug, Clone)]
pub struct DeError {
    pub(super) message: String,
    kind: Kind,
    pub(super) place: Option<Box<Place>>,
}

impl DeError {
    fn value(message: String) -> DeError {
        DeError {
            message,
            kind: Kind::Value,
            place: None,
        }
    }

    /// Places an error raised while `de` was deserialized, unless an inner value took it.
    pub(super) fn locate(mut self, de: &NodeDe<'_>) -> DeError {
        if self.place.is_some() {
            return self;
        }
        let entries = match &de.node.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        };
        let find = |name: &str, nth: usize| {
            entries.and_then(|es| {
                es.iter()
                    .enumerate()
                    .filter(|(_, e)| e.key == name)
                    .nth(nth)
                    .map(|(i, e)| (i, e.key_at))
            })
        };
        let child = |i: usize| {
            let mut loc = de.loc.clone();
            loc.push(i);
            loc
        };
        let place = match &self.kind {
            Kind::Unknown(name) | Kind::Duplicate(name) => {
                let nth = usize::from(matches!(self.kind, Kind::Duplicate(_)));
                find(name, nth).map(|(i, at)| Place {
                    path: join(&de.path, name),
                    at,
                    origin: Origin::File,
                    fix: Fix::Remove(child(i)),
                })
            }
            Kind::Missing(name) => Some(Place {
                path: join(&de.path, name),
                at: if de.key_at.line > 0 {
                    de.key_at
                } else {
                    de.node.at
                },
                origin: de.node.origin.clone(),
                fix: Fix::Insert(de.loc.clone(), name.clone()),
            }),
            Kind::Value => None,
        };
        self.place = Some(Box::new(place.unwrap_or_else(|| Place {
            path: de.path.clone(),
            at: if de.node.at.line > 0 {
                de.node.at
            } else {
                de.key_at
            },
            origin: de.node.origin.clone(),
            fix: Fix::Replace(de.loc.clone()),
        })));
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn one_of(names: &[&str]) -> String {
    if names.is_empty() {
        return "no keys here".to_owned();
    }
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    format!("expected one of {}", quoted.join(", "))
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::value(msg.to_string())
    }
    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::value(match unexp {
            de::Unexpected::Str(s) => format!("`{s}` is not {exp}"),
            de::Unexpected::Unit => format!("no value; expected {exp}"),
            other => format!("expected {exp}, found {other}"),
        })
    }
    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }
    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::value(format!("`{variant}` is not allowed; {}", one_of(expected)))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError {
            message: format!("unknown key `{field}`; {}", one_of(expected)),
            kind: Kind::Unknown(field.to_owned()),
            place: None,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        DeError {
            message: format!("missing required key `{field}`"),
            kind: Kind::Missing(field.to_owned()),
            place: None,
        }
    }
    fn duplicate_field(field: &'static str) -> Self {
        DeError {
            message: format!("key `{field}` is given twice"),
            kind: Kind::Duplicate(field.to_owned()),
            place: None,
        }
    }
}

#[derive(Clone)]
pub(super) struct NodeDe<'a> {
    pub(super) node: &'a Node,
    pub(super) path: String,
    /// Indices from the root to this node.
    pub(super) loc: Vec<usize>,
    /// Where the key naming this node is.
    pub(super) key_at: Pos,
}

impl<'a> NodeDe<'a> {
    fn child(&self, i: usize, path: String, node: &'a Node, key_at: Pos) -> NodeDe<'a> {
        let mut loc = self.loc.clone();
        loc.push(i);
        NodeDe {
            node,
            path,
            loc,
            key_at,
        }
    }

    fn kind(&self) -> &'static str {
        match &self.node.value {
            Value::Null => "nothing",
            Value::Scalar(_) => "a single value",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    fn scalar(&self, expected: &str) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar(s) => Ok(s),
            _ => Err(DeError::value(format!(
                "expected {expected}, found {}",
                self.kind()
            ))),
        }
    }
}

macro_rules! number {
    ($method:ident, $visit:ident, $t:ty, $what:expr) => {
        fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let what = format!("{} ({} to {})", $what, <$t>::MIN, <$t>::MAX);
            let s = self.scalar(&what)?;
            match s.trim().replace('_', "").parse::<$t>() {
                Ok(n) => v.$visit(n),
                Err(_) => Err(DeError::value(format!("`{s}` is not {what}"))),
            }
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => v.visit_unit(),
            Value::Scalar(s) => v.visit_str(s),
            Value::Seq(_) => self.deserialize_seq(v),
            Value::Map(_) => self.deserialize_map(v),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let s = self.scalar("true or false")?;
        match s.trim() {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
                v.visit_bool(true)
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
                v.visit_bool(false)
            }
            _ => Err(DeError::value(format!("`{s}` is not true or false"))),
        }
    }

    number!(deserialize_i8, visit_i8, i8, "a whole number");
    number!(deserialize_i16, visit_i16, i16, "a whole number");
    number!(deserialize_i32, visit_i32, i32, "a whole number");
    number!(deserialize_i64, visit_i64, i64, "a whole number");
    number!(deserialize_u8, visit_u8, u8, "a whole number");
    number!(deserialize_u16, visit_u16, u16, "a whole number");
    number!(deserialize_u32, visit_u32, u32, "a whole number");
    number!(deserialize_u64, visit_u64, u64, "a whole number");
    number!(deserialize_f32, visit_f32, f32, "a number");
    number!(deserialize_f64, visit_f64, f64, "a number");

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_str(self.scalar("text")?)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => v.visit_unit(),
            _ => Err(DeError::value(format!(
                "expected nothing, found {}",
                self.kind()
            ))),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Seq(items) => v.visit_seq(SeqDe {
                parent: self.clone(),
                items,
                next: 0,
            }),
            Value::Null => v.visit_seq(SeqDe {
                parent: self.clone(),
                items: &[],
                next: 0,
            }),
            _ => Err(DeError::value(format!(
                "expected a list, found {}",
                match &self.node.value {
                    Value::Scalar(s) => format!("`{s}`"),
                    _ => self.kind().to_owned(),
                }
            ))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(entries) => v.visit_map(MapDe {
                parent: self.clone(),
                entries,
                next: 0,
            }),
            // A section with nothing under it is an empty one.
            Value::Null => v.visit_map(MapDe {
                parent: self.clone(),
                entries: &[],
                next: 0,
            }),
            _ => Err(DeError::value(format!(
                "expected a map of keys, found {}",
                match &self.node.value {
                    Value::Scalar(s) => format!("`{s}`"),
                    _ => self.kind().to_owned(),
                }
            ))),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Map(_) | Value::Null => self.deserialize_map(v),
            _ => Err(DeError::value(format!(
                "expected a map with the keys {}, found {}",
                fields
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                match &self.node.value {
                    Value::Scalar(s) => format!("`{s}`"),
                    _ => self.kind().to_owned(),
                }
            ))),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let s = self.scalar(&one_of(variants))?;
        v.visit_enum(s.trim().into_deserializer())
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct MapDe<'a> {
    parent: NodeDe<'a>,
    entries: &'a [Entry],
    next: usize,
}

impl<'de> de::MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(entry.key.as_str().into_deserializer())
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let i = self.next;
        self.next += 1;
        let Some(entry) = self.entries.get(i) else {
            return Err(DeError::value("a value without a key".to_owned()));
        };
        let child = self.parent.child(
            i,
            join(&self.parent.path, &entry.key),
            &entry.value,
            entry.key_at,
        );
        seed.deserialize(child.clone())
            .map_err(|e| e.locate(&child))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len().saturating_sub(self.next))
    }
}

struct SeqDe<'a> {
    parent: NodeDe<'a>,
    items: &'a [Node],
    next: usize,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let i = self.next;
        let Some(item) = self.items.get(i) else {
            return Ok(None);
        };
        self.next += 1;
        let child = self
            .parent
            .child(i, format!("{}[{i}]", self.parent.path), item, item.at);
        seed.deserialize(child.clone())
            .map(Some)
            .map_err(|e| e.locate(&child))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len().saturating_sub(self.next))
    }
}
