//! JSON Schemas of the files ops edit, for editors (`# yaml-language-server: $schema=…`):
//! `gateway.yaml` from the config types themselves, the blocklist from [`BlocklistFile`], a
//! mirror of the format the blocklist parser reads (its parser is hand-written for speed and
//! positions, so the types it fills are not the file's shape).
//!
//! The rendered schemas are committed under `schemas/`; `tests/signed_out_and_schemas.rs`
//! renders them again and fails when they differ, and validates every shipped example.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Serialize, Serializer};

use crate::config::{
    Config, GlobalMode, HumanDuration, ListenAddr, RuntimeLayout, SameSite, UpstreamUrl,
};

/// Where the committed schemas live, relative to the repository root.
pub const CONFIG_SCHEMA_PATH: &str = "schemas/gateway.schema.json";
pub const BLOCKLIST_SCHEMA_PATH: &str = "schemas/blocklist.schema.json";

/// A duration the way `humantime` reads it: numbers with units, e.g. `250ms`, `10s`, `1m 30s`.
const DURATION_PATTERN: &str = r"^\s*(0|([0-9]+\s*(nsec|ns|usec|us|µs|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+)$";
/// An IP socket address: `0.0.0.0:4455`, `[::1]:4455`.
const SOCKET_ADDR_PATTERN: &str =
    r"^\s*([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9A-Fa-f:.]+(%[0-9A-Za-z]+)?\]):[0-9]{1,5}\s*$";
/// A Kratos base URL: scheme, host and port only.
const UPSTREAM_PATTERN: &str = r"^\s*https?://[^/?#\s]+/?\s*$";
/// An RFC 3339 timestamp (`2027-01-01T00:00:00Z`, `2027-01-01T00:00:00+02:00`).
const TIMESTAMP_PATTERN: &str = r"^\s*[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})\s*$";
/// A UUID in its canonical 36-character form, the only one the blocklist takes.
const UUID_PATTERN: &str =
    r"^\s*[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\s*$";

fn generator() -> SchemaGenerator {
    // Draft 7: what yaml-language-server and most editors understand fully.
    SchemaSettings::draft07().into_generator()
}

/// The JSON Schema of `gateway.yaml`.
pub fn config_schema() -> Schema {
    let mut schema = generator().into_root_schema_for::<Config>();
    schema
        .ensure_object()
        .values_mut()
        .for_each(strip_null_defaults);
    for key in ["properties", "definitions"] {
        if let Some(value) = schema.get_mut(key) {
            allow_references(value);
        }
    }
    schema.insert("title".into(), "kratos-gate gateway.yaml".into());
    schema.insert(
        "description".into(),
        "kratos-gate configuration (README.md, Configuration). Generated from src/config/ by tests/it/signed_out_and_schemas.rs; do not edit by hand.".into(),
    );
    schema
}

/// The JSON Schema of the blocklist file.
pub fn blocklist_schema() -> Schema {
    let mut schema = generator().into_root_schema_for::<BlocklistFile>();
    schema
        .ensure_object()
        .values_mut()
        .for_each(strip_null_defaults);
    schema.insert("title".into(), "kratos-gate blocklist".into());
    schema
}

/// `"default": null` says nothing an editor can use (an unset optional key), nor does
/// `"default": ""` (an unset `blocklist.path` when `blocklist.url` stands instead).
fn strip_null_defaults(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if map
                .get("default")
                .is_some_and(|d| d.is_null() || d.as_str() == Some(""))
            {
                map.remove("default");
            }
            map.values_mut().for_each(strip_null_defaults);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_null_defaults),
        _ => {}
    }
}

/// A `${VAR}` or `${VAR:-default}` reference (README: Environment overrides and variables).
const REFERENCE_PATTERN: &str = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}";

/// Values of `gateway.yaml` may hold `${VAR}` references, expanded before they are read: a
/// value with one is accepted besides what the key's own schema accepts (the expanded value is
/// checked by `kratos-gate check`).
fn allow_references(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            // Schemas only: defaults and examples are values.
            map.iter_mut()
                .filter(|(k, _)| !matches!(k.as_str(), "default" | "examples" | "enum" | "const"))
                .for_each(|(_, v)| allow_references(v));
            if let Some(Value::String(pattern)) = map.get("pattern") {
                let either = format!("(?:{pattern})|{REFERENCE_PATTERN}");
                map.insert("pattern".into(), Value::String(either));
                return;
            }
            let types: Vec<&str> = match map.get("type") {
                Some(Value::String(t)) => vec![t.as_str()],
                Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let scalar = types
                .iter()
                .any(|t| matches!(*t, "integer" | "number" | "boolean"));
            if !(scalar || map.contains_key("enum")) || types.contains(&"array") {
                return;
            }
            // `{anyOf: [the key's schema, a reference]}`, with what editors show kept outside.
            let mut outer = serde_json::Map::new();
            for k in ["description", "default", "examples"] {
                if let Some(v) = map.remove(k) {
                    outer.insert(k.into(), v);
                }
            }
            let inner = Value::Object(std::mem::take(map));
            outer.insert(
                "anyOf".into(),
                serde_json::json!([inner, {"type": "string", "pattern": REFERENCE_PATTERN}]),
            );
            *map = outer;
        }
        Value::Array(items) => items.iter_mut().for_each(allow_references),
        _ => {}
    }
}

/// A schema rendered the way it is committed: pretty JSON and a final newline.
pub fn render(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

fn duration_schema() -> Schema {
    json_schema!({
        "type": "string",
        "pattern": DURATION_PATTERN,
        "description": "A duration: a number and a unit, e.g. 250ms, 10s, 1m, 1m 30s, 1h.",
        "examples": ["250ms", "10s", "1m 30s"],
    })
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        duration_schema()
    }
}

/// Defaults appear in the schema as they are written in the file.
impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

impl Serialize for SameSite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Serialize for GlobalMode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            GlobalMode::Enforce => "enforce",
            GlobalMode::Report => "report",
        })
    }
}

impl Serialize for RuntimeLayout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            RuntimeLayout::Shared => "shared",
            RuntimeLayout::PerCore => "per_core",
        })
    }
}

impl JsonSchema for UpstreamUrl {
    fn schema_name() -> Cow<'static, str> {
        "UpstreamUrl".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": UPSTREAM_PATTERN,
            "description": "A Kratos base URL: http://host:port or https://host[:port], no path or query.",
            "examples": ["http://127.0.0.1:4433"],
        })
    }
}

/// `listen.ops`, `listen.hooks`, a listener's `address`.
pub fn socket_addr(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": SOCKET_ADDR_PATTERN,
        "description": "An IP address and port, e.g. 0.0.0.0:4455 or [::]:4455 (no host names).",
    })
}

/// An optional address: unset, empty (`""`) or an address.
pub fn opt_socket_addr(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "pattern": format!(r"^\s*$|{SOCKET_ADDR_PATTERN}"),
        "description": "An IP address and port, e.g. 0.0.0.0:4457 (unset: off).",
    })
}

/// `forwarding.trusted_proxies`.
pub fn cidr_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["array", "null"],
        "items": {
            "type": "string",
            "pattern": r"^\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\s*$",
            "description": "A CIDR (10.0.0.0/8, fd00::/8) or a single address.",
        },
        "default": [],
    })
}

/// `blocklist.path`: optional in the schema, since `blocklist.url` may stand instead.
pub fn opt_path(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "description": "The blocklist file (exactly one of path and url).",
    })
}

/// `blocklist.url`.
pub fn source_url(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "pattern": r"^\s*(https?|s3|gs|az)://[^/\s@]+(/\S*)?\s*$",
        "description": "A remote blocklist: https://host/path, http://host/path, s3://bucket/key, gs://bucket/object or az://container/blob.",
        "examples": ["s3://ops-lists/kratos/blocklist.yaml", "https://lists.example.com/blocklist.yaml"],
    })
}

/// `blocklist.poll_interval`: its default depends on the source kind.
pub fn opt_duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "pattern": DURATION_PATTERN,
        "description": "A duration: a number and a unit, e.g. 250ms, 10s, 1m, 1m 30s, 1h. Default 10s for path, 1s for url.",
        "examples": ["1s", "10s"],
    })
}

/// `enforcement.browser_redirect`.
pub fn opt_url(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "null"],
        "description": "A URL (or path) browsers are sent to with a 303, e.g. https://app.example.com/account-disabled.",
    })
}

impl JsonSchema for ListenAddr {
    fn schema_name() -> Cow<'static, str> {
        "ListenAddr".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let tls = generator.subschema_for::<crate::config::TlsFiles>();
        let address = socket_addr(generator);
        json_schema!({
            "description": "A proxy listener: an address (0.0.0.0:4455), or {address, tls: {cert, key}} to serve HTTPS.",
            "anyOf": [
                address,
                {
                    "type": "object",
                    "properties": {
                        "address": address,
                        "tls": tls,
                    },
                    "required": ["address"],
                    "additionalProperties": false,
                },
            ],
        })
    }
}

// ---------------------------------------------------------------------------
// The blocklist file's format
// ---------------------------------------------------------------------------

/// The blocklist: identities, e-mail addresses and e-mail domains that may not hold a
/// session, and networks whose clients may not use self-service flows or sessions. Each list
/// item is a bare value or a map with the section's key (`id`, `email`, `domain`, `network`)
/// and optional `reason`, `until`, `mode` and metadata. `reason` and metadata are
/// for ops and the audit log; they are never sent to clients.
#[derive(Debug, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlocklistFile {
    /// Kratos identity ids (UUIDs).
    #[serde(default)]
    pub identities: Option<Vec<IdentityItem>>,
    /// E-mail addresses, matched against the identity's verifiable and recovery addresses and
    /// `blocklist.email_traits`, without regard to case.
    #[serde(default)]
    pub emails: Option<Vec<EmailItem>>,
    /// E-mail domains (not a bare public suffix), matched against the identity's addresses.
    #[serde(default)]
    pub email_domains: Option<Vec<DomainItem>>,
    /// Client networks (CIDR) or addresses, IPv4 or IPv6, matched against the client address
    /// (believed from `forwarding.trusted_proxies` only): self-service flows and the token
    /// exchange get 403, session checks 401.
    #[serde(default)]
    pub networks: Option<Vec<NetworkItem>>,
}

/// A network entry: the network or address, or a map with `network`.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum NetworkItem {
    Bare(#[schemars(schema_with = "network")] String),
    Full(NetworkEntry),
}

/// A network entry written as a map: `network` and optional details.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    #[schemars(schema_with = "network")]
    pub network: String,
    #[serde(flatten)]
    pub details: EntryDetails,
}

/// An identity entry: its id, or a map with `id`.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum IdentityItem {
    Bare(#[schemars(schema_with = "uuid")] String),
    Full(IdentityEntry),
}

/// An e-mail entry: the address, or a map with `email`.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum EmailItem {
    Bare(#[schemars(schema_with = "email")] String),
    Full(EmailEntry),
}

/// A domain entry: the domain, or a map with `domain`.
#[derive(Debug, JsonSchema)]
#[serde(untagged)]
pub enum DomainItem {
    Bare(#[schemars(schema_with = "domain")] String),
    Full(DomainEntry),
}

/// An identity entry written as a map: `id` and optional details.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityEntry {
    #[schemars(schema_with = "uuid")]
    pub id: String,
    #[serde(flatten)]
    pub details: EntryDetails,
}

/// An e-mail entry written as a map: `email` and optional details.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailEntry {
    #[schemars(schema_with = "email")]
    pub email: String,
    #[serde(flatten)]
    pub details: EntryDetails,
}

/// A domain entry written as a map: `domain` and optional details.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    #[schemars(schema_with = "domain")]
    pub domain: String,
    #[serde(flatten)]
    pub details: EntryDetails,
}

/// What an entry may say besides what it lists.
#[derive(Debug, JsonSchema)]
pub struct EntryDetails {
    /// Why it is listed: for ops and the audit log, never sent to clients.
    #[serde(default)]
    #[schemars(schema_with = "text")]
    pub reason: Option<String>,
    /// When the entry stops matching (RFC 3339); unset: indefinitely.
    #[serde(default)]
    #[schemars(schema_with = "timestamp")]
    pub until: Option<String>,
    /// `report`: this entry is a dry run (logged and counted, nothing stripped or revoked).
    #[serde(default)]
    #[schemars(with = "EntryMode")]
    pub mode: Option<EntryMode>,
    /// Metadata for ops (audit events, `kratos-gate lookup`); never sent to clients.
    #[serde(default)]
    #[schemars(schema_with = "text")]
    pub ticket: Option<String>,
    /// Metadata: who listed it.
    #[serde(default)]
    #[schemars(schema_with = "text")]
    pub added_by: Option<String>,
    /// Metadata: a free note.
    #[serde(default)]
    #[schemars(schema_with = "text")]
    pub note: Option<String>,
    /// Further metadata: text keys to text values.
    #[serde(default)]
    #[schemars(schema_with = "meta")]
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryMode {
    Enforce,
    Report,
}

fn uuid(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": UUID_PATTERN,
        "description": "A Kratos identity id in its canonical form, e.g. 3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10.",
    })
}

fn email(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": r"^[^@\s]+@[^@\s]+$",
        "description": "An e-mail address, e.g. spammer@example.com (matched without regard to case).",
    })
}

fn domain(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": r"^\s*[^@\s/:]+\.?\s*$",
        "description": "An e-mail domain, e.g. throwaway.example (not a public suffix such as com).",
    })
}

fn network(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": r"^\s*[0-9A-Fa-f:.]+(/[0-9]{1,3})?\s*$",
        "description": "A CIDR network or a single address, IPv4 or IPv6, e.g. 192.0.2.0/24, 192.0.2.7, 2001:db8::/32.",
    })
}

/// Free text: YAML reads `ticket: 1234` as a number, the parser takes it as its text.
fn text(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["string", "number", "boolean"],
    })
}

fn meta(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
    })
}

fn timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": TIMESTAMP_PATTERN,
        "description": "An RFC 3339 timestamp, e.g. 2027-01-01T00:00:00Z; the entry matches until then.",
    })
}
