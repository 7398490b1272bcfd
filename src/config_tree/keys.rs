//! Keys, from the JSON Schema: every key path that takes a value, and its environment name.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::{join, ENV_PREFIX};

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
