//! Environment overrides (`KRATOS_GATE_<KEY PATH>`) and `${VAR}` references, and where a value
//! that was not written as it is in the file came from.

use super::keys::{env_name, keys};
use super::{join, Entry, Node, Origin, Pos, Value};

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
