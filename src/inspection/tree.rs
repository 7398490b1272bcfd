//! A JSON tree that borrows from the body it was parsed from. The inspection reads every
//! response that can carry a credential; `serde_json::Value` costs a `String` per key and per
//! string and a `BTreeMap` per object, and a login body is parsed and thrown away at once.
//! Here strings are slices of the body unless they contain escapes, numbers are not kept,
//! and objects are vectors in document order. Parsing is serde_json's, so what parses, and
//! the nesting limit, are the same as for `Value`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

#[derive(Debug, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    /// Nothing the gateway reads is a number.
    Number,
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

/// Read access shared by [`Node`] and `serde_json::Value`, so that the address rules are
/// written once for response bodies (`Node`) and admin API answers (`Value`).
pub trait JsonView: Sized {
    /// The member named `key`; with duplicate keys the last one, as Go and serde_json read it.
    fn member(&self, key: &str) -> Option<&Self>;
    fn text(&self) -> Option<&str>;
    /// The elements of an array; empty for anything else.
    fn elements(&self) -> &[Self];
}

impl JsonView for Node<'_> {
    fn member(&self, key: &str) -> Option<&Self> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn text(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    fn elements(&self) -> &[Self] {
        match self {
            Node::Array(items) => items,
            _ => &[],
        }
    }
}

impl JsonView for Value {
    fn member(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }

    fn text(&self) -> Option<&str> {
        self.as_str()
    }

    fn elements(&self) -> &[Self] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }
}

/// A string that borrows from the input when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(v)))
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Node::Number)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Node::Number)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Node::Number)
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // serde_json gives no size hint; most objects in Kratos bodies have a handful of
        // members, and starting at eight saves the first reallocations.
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8).min(64));
        while let Some((Text(k), v)) = map.next_entry::<Text<'de>, Node<'de>>()? {
            members.push((k, v));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_borrow_unless_escaped() {
        let body = br#"{"a":"plain","b\u0020":"esc\"aped","n":1.5,"t":true,"z":null,"l":[1,"x"]}"#;
        let node = Node::parse(body).unwrap();
        let Node::Object(members) = &node else {
            panic!("{node:?}")
        };
        assert!(matches!(
            members[0],
            (Cow::Borrowed("a"), Node::Str(Cow::Borrowed("plain")))
        ));
        assert_eq!(members[1].0, "b ");
        assert!(matches!(&members[1].1, Node::Str(Cow::Owned(s)) if s == "esc\"aped"));
        assert_eq!(node.member("n"), Some(&Node::Number));
        assert_eq!(node.member("t"), Some(&Node::Bool(true)));
        assert_eq!(node.member("z"), Some(&Node::Null));
        assert_eq!(node.member("l").unwrap().elements().len(), 2);
        assert_eq!(node.member("missing"), None);
    }

    #[test]
    fn duplicate_keys_read_the_last_like_value_does() {
        let body = br#"{"id":"first","id":"second"}"#;
        let value: Value = serde_json::from_slice(body).unwrap();
        let node = Node::parse(body).unwrap();
        assert_eq!(node.member("id").and_then(JsonView::text), Some("second"));
        assert_eq!(value.member("id").and_then(JsonView::text), Some("second"));
    }

    #[test]
    fn accepts_and_refuses_what_value_does() {
        let deep_ok = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for body in [
            "{}",
            "[]",
            "1e400",
            "-0",
            "\"\\ud800\"",
            "{\"a\":1,}",
            "[1 2]",
            "{\"a\" 1}",
            "\u{feff}{}",
            "{} x",
            "18446744073709551616",
            deep_ok.as_str(),
            too_deep.as_str(),
        ] {
            let value = serde_json::from_slice::<Value>(body.as_bytes()).is_ok();
            let node = Node::parse(body.as_bytes()).is_ok();
            assert_eq!(node, value, "{body:?}");
        }
    }
}
