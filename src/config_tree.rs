//! `gateway.yaml` as a tree that remembers where every value came from (line and column in
//! the file, an environment override, or `${VAR}` references), and a serde deserializer over
//! it that names the key of every error and can keep going past one.
//!
//! The YAML is read by serde-saphyr into [`Node`]s with their positions. Then:
//! - `KRATOS_GATE_<KEY PATH>` environment variables replace values ([`apply_overrides`]; the
//!   key paths are those of the JSON Schema of the config, so every key has one);
//! - `${VAR}` and `${VAR:-default}` inside values are expanded ([`expand_all`]);
//! - the typed config is deserialized from the tree ([`deserialize_all`]): an error is
//!   recorded with its key path and position, the value in error is removed (or, for a
//!   required key, replaced by a stand-in) and deserialization starts again, until it
//!   succeeds. Every bad key of the file is reported in one run.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// Environment variables overriding keys start with this.
pub const ENV_PREFIX: &str = "KRATOS_GATE_";

/// The process environment, as the config reads it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// A place in the config file; line 0 when a value has none (it came from the environment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl Pos {
    fn of(span: &serde_saphyr::Location) -> Pos {
        Pos {
            line: span.line(),
            column: span.column(),
        }
    }
}

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Written in the file as it is.
    File,
    /// An environment override (the variable's name).
    Env(String),
    /// Written in the file with `${VAR}` references, expanded from the environment (the text
    /// as written).
    Expanded(String),
    /// A stand-in for a required value in error, so that checking can go on.
    StandIn,
}

/// One value of the tree.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub at: Pos,
    pub origin: Origin,
    /// Where a scalar the YAML reader typed (a number, a boolean) is in the text: its text
    /// is taken from there as written (`0123` stays `0123`, `1.10` stays `1.10`).
    written: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub enum Value {
    Null,
    /// Any scalar, as text: numbers and booleans are read from it by the deserializer.
    Scalar(String),
    Seq(Vec<Node>),
    /// Entries in file order (a key given twice appears twice).
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_at: Pos,
    pub value: Node,
}

impl Node {
    fn new(value: Value, at: Pos, origin: Origin) -> Node {
        Node {
            value,
            at,
            origin,
            written: None,
        }
    }

    /// The node at a dotted key path (the last entry of a key given twice), if any.
    pub fn get(&self, path: &str) -> Option<&Node> {
        let mut node = self;
        for segment in path.split('.').filter(|s| !s.is_empty()) {
            match &node.value {
                Value::Map(entries) => {
                    node = &entries.iter().rev().find(|e| e.key == segment)?.value;
                }
                _ => return None,
            }
        }
        Some(node)
    }

    /// The position of the key that names `path` (or of its value), for messages about it.
    pub fn position(&self, path: &str) -> Option<Pos> {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (self.get(p)?, l),
            None => (self, path),
        };
        match &parent.value {
            Value::Map(entries) => entries.iter().rev().find(|e| e.key == last).map(|e| {
                if e.value.at.line > 0 {
                    e.value.at
                } else {
                    e.key_at
                }
            }),
            _ => None,
        }
    }

    /// Every scalar value with its key path and origin (for `check`'s "where it came from").
    pub fn scalars(&self) -> Vec<(String, &Node)> {
        let mut out = Vec::new();
        fn walk<'a>(node: &'a Node, path: String, out: &mut Vec<(String, &'a Node)>) {
            match &node.value {
                Value::Map(entries) => {
                    for e in entries {
                        walk(&e.value, join(&path, &e.key), out);
                    }
                }
                // A list from the environment is one value.
                Value::Seq(_) if node.origin != Origin::File => out.push((path, node)),
                Value::Seq(items) => {
                    for (i, item) in items.iter().enumerate() {
                        walk(item, format!("{path}[{i}]"), out);
                    }
                }
                _ => out.push((path, node)),
            }
        }
        walk(self, String::new(), &mut out);
        out
    }

    /// The value as one line of text (lists as `[a, b]`).
    pub fn display(&self) -> String {
        match &self.value {
            Value::Null => "~".to_owned(),
            Value::Scalar(s) => s.clone(),
            Value::Seq(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(Node::display)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Value::Map(_) => "{…}".to_owned(),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the YAML
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Keys, from the JSON Schema
// ---------------------------------------------------------------------------------------------

/// What the schema says about a key that takes a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyInfo {
    /// A list: an environment value is split at commas.
    pub list: bool,
    /// Also written as a map whose first required key takes the single value (a listener:
    /// `0.0.0.0:4455` or `{address: 0.0.0.0:4455, tls: …}`).
    pub map_key: Option<String>,
}

/// Every key path of `gateway.yaml` that takes a value, from the config's JSON Schema.
pub fn keys() -> &'static BTreeMap<String, KeyInfo> {
    static KEYS: OnceLock<BTreeMap<String, KeyInfo>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let schema = serde_json::Value::from(crate::schema::config_schema());
        let mut out = BTreeMap::new();
        object_keys(&schema, &schema, "", &mut out);
        out
    })
}

/// The environment variable that overrides `path`: `upstream.ca_file` →
/// `KRATOS_GATE_UPSTREAM_CA_FILE`.
pub fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

fn resolve<'a>(root: &'a serde_json::Value, s: &'a serde_json::Value) -> &'a serde_json::Value {
    let mut s = s;
    // References are local (`#/definitions/X`); a few hops at most.
    for _ in 0..8 {
        let Some(target) = s.get("$ref").and_then(serde_json::Value::as_str) else {
            break;
        };
        match target
            .strip_prefix('#')
            .and_then(|pointer| root.pointer(pointer))
        {
            Some(t) => s = t,
            None => break,
        }
    }
    s
}

/// The alternatives a schema allows (`anyOf`, `oneOf`, `allOf` flattened; references
/// followed).
fn alternatives<'a>(
    root: &'a serde_json::Value,
    s: &'a serde_json::Value,
    out: &mut Vec<&'a serde_json::Value>,
) {
    let s = resolve(root, s);
    let nested = ["anyOf", "oneOf", "allOf"]
        .iter()
        .filter_map(|k| s.get(*k).and_then(serde_json::Value::as_array))
        .flatten()
        .collect::<Vec<_>>();
    if nested.is_empty() {
        out.push(s);
    } else {
        for n in nested {
            alternatives(root, n, out);
        }
    }
}

fn object_keys(
    root: &serde_json::Value,
    s: &serde_json::Value,
    prefix: &str,
    out: &mut BTreeMap<String, KeyInfo>,
) {
    let Some(properties) = s.get("properties").and_then(serde_json::Value::as_object) else {
        return;
    };
    for (name, sub) in properties {
        let path = join(prefix, name);
        let mut alts = Vec::new();
        alternatives(root, sub, &mut alts);
        let mut info = KeyInfo::default();
        let mut takes_value = false;
        for alt in alts {
            let types: Vec<&str> = match alt.get("type") {
                Some(serde_json::Value::String(t)) => vec![t.as_str()],
                Some(serde_json::Value::Array(ts)) => {
                    ts.iter().filter_map(serde_json::Value::as_str).collect()
                }
                _ => Vec::new(),
            };
            if alt.get("properties").is_some() {
                object_keys(root, alt, &path, out);
                info.map_key = alt
                    .get("required")
                    .and_then(serde_json::Value::as_array)
                    .and_then(|r| r.first())
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
            } else if types.contains(&"array") {
                info.list = true;
                takes_value = true;
            } else if types.iter().any(|t| *t != "null") || alt.get("enum").is_some() {
                takes_value = true;
            }
        }
        if takes_value {
            out.insert(path, info);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Environment overrides and ${VAR}
// ---------------------------------------------------------------------------------------------

/// Where a value that was not written as it is in the file came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub path: String,
    /// The value in force, as text.
    pub value: String,
    pub origin: Origin,
    /// Where the key is in the file, when it is.
    pub at: Pos,
}

/// A problem found while applying the environment: key path, position, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeProblem {
    pub path: String,
    pub at: Pos,
    pub message: String,
}

/// Replaces the value of every key whose `KRATOS_GATE_…` variable is set (and not empty).
/// A list key takes a comma-separated value (`10.0.0.0/8,192.168.0.0/16`, or `[a, b]`).
pub fn apply_overrides(root: &mut Node, env: &dyn Fn(&str) -> Option<String>) -> Vec<TreeProblem> {
    let mut problems = Vec::new();
    // Shorter paths first: `listen.public` before `listen.public.address`.
    for (path, info) in keys() {
        let var = env_name(path);
        let Some(text) = env(&var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        let value = if info.list {
            let inner = text.trim();
            let inner = inner
                .strip_prefix('[')
                .and_then(|i| i.strip_suffix(']'))
                .unwrap_or(inner);
            Value::Seq(
                inner
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        Node::new(
                            Value::Scalar(s.to_owned()),
                            Pos::default(),
                            Origin::Env(var.clone()),
                        )
                    })
                    .collect(),
            )
        } else {
            Value::Scalar(text)
        };
        if let Err(message) = set(root, path, value, Origin::Env(var.clone())) {
            problems.push(TreeProblem {
                path: path.clone(),
                at: Pos::default(),
                message: format!("{message} (from ${var})"),
            });
        }
    }
    problems
}

fn set(root: &mut Node, path: &str, value: Value, origin: Origin) -> Result<(), String> {
    let mut node = root;
    let mut walked = String::new();
    for segment in path.split('.') {
        if matches!(node.value, Value::Null) {
            node.value = Value::Map(Vec::new());
        }
        if let Value::Scalar(s) = &node.value {
            // A listener written as a single address becomes `{address: …}`.
            match keys().get(&walked).and_then(|k| k.map_key.clone()) {
                Some(k) => {
                    let single = Node::new(Value::Scalar(s.clone()), node.at, node.origin.clone());
                    node.value = Value::Map(vec![Entry {
                        key: k,
                        key_at: node.at,
                        value: single,
                    }]);
                }
                None => return Err(format!("{walked} is not a map")),
            }
        }
        let Value::Map(entries) = &mut node.value else {
            return Err(format!("{walked} is not a map"));
        };
        let index = match entries.iter().rposition(|e| e.key == segment) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    key: segment.to_owned(),
                    key_at: Pos::default(),
                    value: Node::new(Value::Null, Pos::default(), Origin::File),
                });
                entries.len() - 1
            }
        };
        node = match entries.get_mut(index) {
            Some(e) => &mut e.value,
            None => return Err(format!("{path}: no such key")),
        };
        walked = join(&walked, segment);
    }
    // A listener written as a map keeps its `tls`: the single value is its address.
    if let (Value::Map(entries), Value::Scalar(_), Some(k)) = (
        &mut node.value,
        &value,
        keys().get(path).and_then(|k| k.map_key.as_deref()),
    ) {
        let at = entries
            .iter()
            .rev()
            .find(|e| e.key == k)
            .map(|e| e.value.at)
            .unwrap_or_default();
        entries.retain(|e| e.key != k);
        entries.insert(
            0,
            Entry {
                key: k.to_owned(),
                key_at: at,
                value: Node::new(value, at, origin),
            },
        );
        return Ok(());
    }
    node.value = value;
    node.origin = origin;
    Ok(())
}

/// `${NAME}` and `${NAME:-default}` in `text`, from `env`; `$${` is a literal `${`. `None`
/// when the text has no reference. Errors name the reference.
pub fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !text.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    while let Some((before, after)) = rest.split_once('$') {
        out.push_str(before);
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
            changed = true;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some((inner, tail)) = tail.split_once('}') else {
                return Err(format!(
                    "`${{{tail}` has no closing `}}`; write ${{NAME}} or ${{NAME:-default}} (or $${{ for a literal ${{)"
                ));
            };
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`${{{inner}}}` is not a variable reference; write ${{NAME}} or ${{NAME:-default}} (letters, digits and _)"
                ));
            }
            let value = match (env(name), default) {
                (Some(v), Some(d)) if v.is_empty() => d.to_owned(),
                (Some(v), _) => v,
                (None, Some(d)) => d.to_owned(),
                (None, None) => {
                    return Err(format!(
                        "${{{name}}} is not set (write ${{{name}:-default}} for a default)"
                    ))
                }
            };
            out.push_str(&value);
            rest = tail;
            changed = true;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(out))
}

/// Expands `${VAR}` in every value written in the file. Problems carry the value's position.
pub fn expand_all(root: &mut Node, env: &dyn Fn(&str) -> Option<String>) -> Vec<TreeProblem> {
    let mut problems = Vec::new();
    fn walk(
        node: &mut Node,
        path: String,
        env: &dyn Fn(&str) -> Option<String>,
        problems: &mut Vec<TreeProblem>,
    ) {
        match &mut node.value {
            Value::Map(entries) => {
                for e in entries {
                    walk(&mut e.value, join(&path, &e.key), env, problems);
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, format!("{path}[{i}]"), env, problems);
                }
            }
            Value::Scalar(s) if node.origin == Origin::File => match expand(s, env) {
                Ok(None) => {}
                Ok(Some(expanded)) => {
                    node.origin = Origin::Expanded(std::mem::replace(s, expanded));
                }
                Err(message) => problems.push(TreeProblem {
                    path,
                    at: node.at,
                    message,
                }),
            },
            _ => {}
        }
    }
    walk(root, String::new(), env, &mut problems);
    problems
}

/// A URL's password is not shown: `redis://user:secret@host` → `redis://user:***@host`.
pub fn mask_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => text.to_owned(),
    }
}

/// Every value that came from the environment, in key order (passwords in URLs masked).
pub fn provenance(root: &Node) -> Vec<Provenance> {
    root.scalars()
        .into_iter()
        .filter(|(_, n)| matches!(n.origin, Origin::Env(_) | Origin::Expanded(_)))
        .map(|(path, n)| Provenance {
            at: n.at,
            value: mask_password(&n.display()),
            origin: n.origin.clone(),
            path,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Deserializing with every error
// ---------------------------------------------------------------------------------------------

/// One error of the typed config: the key path, its position and origin, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    pub path: String,
    pub at: Pos,
    pub origin: Origin,
    pub message: String,
}

/// Deserializes `T` from the tree, reporting every error: after each one, the value in error
/// is taken out (a required one replaced by `stand_in(path)`) and deserialization starts
/// again. `T` is `None` only when a required value had no stand-in.
pub fn deserialize_all<T: de::DeserializeOwned>(
    root: &Node,
    stand_in: &dyn Fn(&str) -> Option<Value>,
) -> (Option<T>, Vec<KeyError>) {
    let mut tree = root.clone();
    let mut errors: Vec<KeyError> = Vec::new();
    let rounds = count(&tree) + 8;
    for _ in 0..rounds {
        let de = NodeDe {
            node: &tree,
            path: String::new(),
            loc: Vec::new(),
            key_at: Pos::default(),
        };
        let error = match T::deserialize(de.clone()) {
            Ok(v) => return (Some(v), errors),
            Err(e) => e.locate(&de),
        };
        let Some(place) = error.place.clone() else {
            return (None, errors);
        };
        let key_error = KeyError {
            path: place.path.clone(),
            at: place.at,
            origin: place.origin.clone(),
            message: error.message.clone(),
        };
        if errors.contains(&key_error) {
            return (None, errors);
        }
        errors.push(key_error);
        if !repair(&mut tree, &place, stand_in) {
            return (None, errors);
        }
    }
    (None, errors)
}

fn count(node: &Node) -> usize {
    1 + match &node.value {
        Value::Map(entries) => entries.iter().map(|e| count(&e.value)).sum(),
        Value::Seq(items) => items.iter().map(count).sum(),
        _ => 0,
    }
}

fn node_at_mut<'a>(root: &'a mut Node, loc: &[usize]) -> Option<&'a mut Node> {
    let mut node = root;
    for &i in loc {
        node = match &mut node.value {
            Value::Map(entries) => &mut entries.get_mut(i)?.value,
            Value::Seq(items) => items.get_mut(i)?,
            _ => return None,
        };
    }
    Some(node)
}

fn remove_at(root: &mut Node, loc: &[usize]) -> bool {
    let Some((&last, parent)) = loc.split_last() else {
        return false;
    };
    let Some(parent) = node_at_mut(root, parent) else {
        return false;
    };
    match &mut parent.value {
        Value::Map(entries) if last < entries.len() => {
            entries.remove(last);
            true
        }
        Value::Seq(items) if last < items.len() => {
            items.remove(last);
            true
        }
        _ => false,
    }
}

fn repair(tree: &mut Node, place: &Place, stand_in: &dyn Fn(&str) -> Option<Value>) -> bool {
    match &place.fix {
        Fix::Replace(loc) => match stand_in(&place.path) {
            Some(v) => match node_at_mut(tree, loc) {
                Some(node) if node.origin != Origin::StandIn => {
                    node.value = v;
                    node.origin = Origin::StandIn;
                    true
                }
                _ => false,
            },
            None => remove_at(tree, loc),
        },
        Fix::Remove(loc) => remove_at(tree, loc),
        Fix::Insert(loc, key) => {
            let Some(v) = stand_in(&place.path) else {
                return false;
            };
            let Some(node) = node_at_mut(tree, loc) else {
                return false;
            };
            if matches!(node.value, Value::Null) {
                node.value = Value::Map(Vec::new());
            }
            match &mut node.value {
                Value::Map(entries) => {
                    entries.push(Entry {
                        key: key.clone(),
                        key_at: Pos::default(),
                        value: Node::new(v, Pos::default(), Origin::StandIn),
                    });
                    true
                }
                _ => false,
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Fix {
    /// The value at this location is wrong.
    Replace(Vec<usize>),
    /// The entry (or item) at this location should not be there.
    Remove(Vec<usize>),
    /// The map at this location lacks this key.
    Insert(Vec<usize>, String),
}

#[derive(Debug, Clone)]
struct Place {
    path: String,
    at: Pos,
    origin: Origin,
    fix: Fix,
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
    message: String,
    kind: Kind,
    place: Option<Box<Place>>,
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
    fn locate(mut self, de: &NodeDe<'_>) -> DeError {
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
struct NodeDe<'a> {
    node: &'a Node,
    path: String,
    /// Indices from the root to this node.
    loc: Vec<usize>,
    /// Where the key naming this node is.
    key_at: Pos,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        name: String,
        #[serde(default)]
        size: u32,
        #[serde(default)]
        enabled: bool,
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        count: usize,
        list: Vec<String>,
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn stand_in(path: &str) -> Option<Value> {
        (path == "name").then(|| Value::Scalar("stand-in".to_owned()))
    }

    #[test]
    fn every_error_is_reported_with_its_key_and_position() {
        let text = "name: [a]\nsize: big\nenabled: sometimes\ninner:\n  count: -1\n  lst: []\n";
        let tree = parse(text).expect("yaml");
        let (doc, errors) = deserialize_all::<Doc>(&tree, &stand_in);
        let doc = doc.expect("checked past every error");
        assert_eq!(
            (
                doc.name.as_str(),
                doc.size,
                doc.enabled,
                doc.inner.count,
                doc.inner.list.len()
            ),
            ("stand-in", 0, false, 0, 0)
        );
        let got: Vec<(String, u64, u64)> = errors
            .iter()
            .map(|e| (e.path.clone(), e.at.line, e.at.column))
            .collect();
        assert_eq!(
            got,
            [
                ("name".to_owned(), 1, 7),
                ("size".to_owned(), 2, 7),
                ("enabled".to_owned(), 3, 10),
                ("inner.count".to_owned(), 5, 10),
                ("inner.lst".to_owned(), 6, 3),
            ],
            "{errors:#?}"
        );
        assert!(errors[1]
            .message
            .contains("`big` is not a whole number (0 to 4294967295)"));
        assert!(errors[2]
            .message
            .contains("`sometimes` is not true or false"));
        assert!(errors[4]
            .message
            .contains("unknown key `lst`; expected one of `count`, `list`"));
    }

    #[test]
    fn a_missing_required_key_points_at_its_map() {
        let tree = parse("size: 3\n").expect("yaml");
        let (_, errors) = deserialize_all::<Doc>(&tree, &stand_in);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "name");
        assert!(errors[0].message.contains("missing required key `name`"));
    }

    #[test]
    fn references_expand_with_defaults_and_unset_ones_are_errors() {
        let env = |k: &str| match k {
            "HOST" => Some("kratos".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        assert_eq!(
            expand("http://${HOST}:${PORT:-4433}", &env),
            Ok(Some("http://kratos:4433".to_owned()))
        );
        assert_eq!(
            expand("${EMPTY:-x}${EMPTY}", &env),
            Ok(Some("x".to_owned()))
        );
        assert_eq!(
            expand("costs $5, $${HOST}", &env),
            Ok(Some("costs $5, ${HOST}".to_owned()))
        );
        assert_eq!(expand("plain", &env), Ok(None));
        assert!(expand("${NOPE}", &env)
            .expect_err("unset")
            .contains("${NOPE} is not set"));
        assert!(expand("${HOST", &env).is_err());
        assert!(expand("${1X}", &env).is_err());

        let mut tree = parse("name: ${HOST}\ninner:\n  list: [a, '${NOPE}']\n").expect("yaml");
        let problems = expand_all(&mut tree, &env);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, "inner.list[1]");
        assert_eq!((problems[0].at.line, problems[0].at.column), (3, 13));
        let p = provenance(&tree);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].path, "name");
        assert_eq!(p[0].value, "kratos");
        assert_eq!(p[0].origin, Origin::Expanded("${HOST}".to_owned()));
        let _ = no_env("x");
    }

    #[test]
    fn numbers_and_booleans_keep_their_text_as_written() {
        let tree = parse("a: 0123\nb: 1.10\nc: yes\nd: [007, true]\ne: \"0123\"\nf: 12 # note\n")
            .expect("yaml");
        let shown: Vec<String> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|k| tree.get(k).map(Node::display).unwrap_or_default())
            .collect();
        assert_eq!(shown, ["0123", "1.10", "yes", "[007, true]", "0123", "12"]);
    }

    #[test]
    fn passwords_in_urls_are_not_shown() {
        assert_eq!(
            mask_password("redis://gate:s3cret@redis:6379/0"),
            "redis://gate:***@redis:6379/0"
        );
        assert_eq!(
            mask_password("rediss://:s3cret@redis"),
            "rediss://:***@redis"
        );
        assert_eq!(mask_password("http://kratos:4433"), "http://kratos:4433");
        assert_eq!(mask_password("s3://bucket/a@b:c"), "s3://bucket/a@b:c");
        let env =
            |k: &str| (k == "KRATOS_GATE_THROTTLE_REDIS_URL").then(|| "redis://u:pw@r".to_owned());
        let mut tree = parse("throttle:\n  enabled: true\n").expect("yaml");
        assert_eq!(apply_overrides(&mut tree, &env), []);
        assert_eq!(provenance(&tree)[0].value, "redis://u:***@r");
    }

    #[test]
    fn every_config_key_has_an_environment_name_of_its_own() {
        let keys = keys();
        for k in [
            "listen.public",
            "listen.public.address",
            "listen.public.tls.cert",
            "listen.admin.tls.key",
            "listen.hooks",
            "upstream.public",
            "upstream.ca_file",
            "blocklist.path",
            "forwarding.trusted_proxies",
            "revocation.concurrency",
            "inspection.session_cookie_same_site",
            "log.access",
        ] {
            assert!(keys.contains_key(k), "{k} missing from {:?}", keys.keys());
        }
        assert!(!keys.contains_key("listen"));
        assert!(keys["forwarding.trusted_proxies"].list);
        assert_eq!(keys["listen.public"].map_key.as_deref(), Some("address"));
        let mut names: Vec<String> = keys.keys().map(|k| env_name(k)).collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "two keys share an environment name");
        assert_eq!(env_name("upstream.ca_file"), "KRATOS_GATE_UPSTREAM_CA_FILE");
    }

    #[test]
    fn overrides_replace_values_and_turn_a_single_address_into_a_map() {
        let mut tree =
            parse("listen:\n  public: 0.0.0.0:4455\n  ops: 0.0.0.0:9091\n").expect("yaml");
        let env = |k: &str| match k {
            "KRATOS_GATE_LISTEN_OPS" => Some("127.0.0.1:9999".to_owned()),
            "KRATOS_GATE_LISTEN_PUBLIC_TLS_CERT" => Some("c.pem".to_owned()),
            "KRATOS_GATE_FORWARDING_TRUSTED_PROXIES" => Some("10.0.0.0/8, 10.1.0.0/16".to_owned()),
            _ => None,
        };
        assert_eq!(apply_overrides(&mut tree, &env), []);
        assert_eq!(
            tree.get("listen.ops").map(Node::display).as_deref(),
            Some("127.0.0.1:9999")
        );
        assert_eq!(
            tree.get("listen.public.address")
                .map(Node::display)
                .as_deref(),
            Some("0.0.0.0:4455")
        );
        assert_eq!(
            tree.get("listen.public.tls.cert")
                .map(Node::display)
                .as_deref(),
            Some("c.pem")
        );
        assert_eq!(
            tree.get("forwarding.trusted_proxies")
                .map(Node::display)
                .as_deref(),
            Some("[10.0.0.0/8, 10.1.0.0/16]")
        );
        let p = provenance(&tree);
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "listen.public.tls.cert",
                "listen.ops",
                "forwarding.trusted_proxies"
            ]
        );
        assert_eq!(
            p[1].origin,
            Origin::Env("KRATOS_GATE_LISTEN_OPS".to_owned())
        );
        // The file's position of an overridden key is kept.
        assert_eq!(p[1].at.line, 3);
    }
}
