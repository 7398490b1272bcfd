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
//!
//! Files: `read.rs` (the YAML read into nodes with positions), `keys.rs` (every key path, from
//! the JSON Schema), `env.rs` (overrides, `${VAR}`, where values came from), `collect.rs`
//! (deserializing with every error), `deserializer.rs` (the serde deserializer over the tree
//! and its error), `tests.rs`.

mod collect;
mod deserializer;
mod env;
mod keys;
mod read;

pub use collect::{deserialize_all, KeyError};
pub use deserializer::DeError;
pub use env::{
    apply_overrides, expand, expand_all, mask_password, provenance, Provenance, TreeProblem,
};
pub use keys::{env_name, keys, KeyInfo};
pub use read::parse;

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

#[cfg(test)]
mod tests;
