//! Deserializing with every error: after each one the value in error is taken out (or stood in
//! for) and deserialization starts again.

use serde::de;

use super::deserializer::{Fix, NodeDe, Place};
use super::{Entry, Node, Origin, Pos, Value};

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
