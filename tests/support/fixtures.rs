//! Kratos response fixtures and builders that turn them into wire bodies.
//!
//! The files live in `tests/fixtures/kratos/` (see the README there for where
//! each one comes from) and are found through `env!("CARGO_MANIFEST_DIR")`, so
//! the tests run from a plain clone.
//!
//! Kratos writes JSON with Go's `encoding/json`: compact, keys in struct order,
//! `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`, followed by `\n`.
//! `serde_json::Value` sorts object keys, so the builders work on [`Json`], a
//! small order-preserving JSON tree, and render it with [`Json::to_wire`].
//!
//! Builders substitute the placeholder values used by the fixtures
//! ([`FIXTURE_IDENTITY_ID`], [`FIXTURE_SESSION_ID`], [`FIXTURE_TOKEN`],
//! [`FIXTURE_EMAIL`]) wherever they occur as a whole JSON string, e.g. in
//! `session.id`, `session.identity.id`, `identity.id`, `session_token`,
//! `continue_with[].ory_session_token`, `traits.email` and the addresses.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

/// Identity id used by the synthesized fixtures (and the two real session files).
pub const FIXTURE_IDENTITY_ID: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
/// Session id used by the synthesized fixtures.
pub const FIXTURE_SESSION_ID: &str = "7efedf89-4dda-4636-8320-7506e58db1a3";
/// Session token used by the synthesized fixtures.
pub const FIXTURE_TOKEN: &str = "ory_st_3kQ9ZbXgT1mVw8LrPq2sYd7NfHc4JaEu";
/// E-mail address (`traits.email`, addresses) used by the synthesized fixtures.
pub const FIXTURE_EMAIL: &str = "alice@example.com";
/// Identity id of the real admin identity view fixture.
pub const ADMIN_IDENTITY_FIXTURE_ID: &str = "a251ebc2-880c-4f76-a8f3-38e6940eab0e";
/// Primary e-mail (traits, one address, one identifier) of the admin identity view fixture.
pub const ADMIN_IDENTITY_FIXTURE_EMAIL: &str = "foobar@ory.sh";

macro_rules! whoami_401_literal {
    () => {
        r#"{"error":{"code":401,"status":"Unauthorized","reason":"No valid session credentials found in the request.","message":"The request could not be authorized"}}"#
    };
}
macro_rules! sessions_401_literal {
    () => {
        r#"{"error":{"code":401,"status":"Unauthorized","reason":"No valid session cookie found.","message":"The request could not be authorized"}}"#
    };
}

/// The whoami 401 body exactly as in CONTRACT.md section 5 (compact, no `id`,
/// without the trailing newline). It equals the compact form of
/// `synthesized/whoami-401-no-valid-session.json`.
pub const WHOAMI_401: &str = whoami_401_literal!();
/// [`WHOAMI_401`] as written on the wire: followed by `\n`.
pub const WHOAMI_401_WIRE: &str = concat!(whoami_401_literal!(), "\n");
/// The `GET /sessions` 401 body (CONTRACT.md section 5), compact, no newline.
pub const SESSIONS_401: &str = sessions_401_literal!();
/// [`SESSIONS_401`] followed by `\n`, as on the wire.
pub const SESSIONS_401_WIRE: &str = concat!(sessions_401_literal!(), "\n");

/// Absolute path of a fixture, `name` relative to `tests/fixtures/kratos/`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/kratos")
        .join(name)
}

/// The raw text of a fixture file. Panics with the path if it cannot be read.
pub fn fixture_text(name: &str) -> String {
    let path = fixture_path(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()))
}

/// A fixture parsed as `serde_json::Value` (object keys end up sorted).
/// Example: `fixture("synthesized/native-login-200.json")`.
pub fn fixture(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture_text(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not valid JSON: {e}"))
}

/// A fixture parsed into the order-preserving [`Json`] tree (cached per name).
pub fn fixture_json(name: &str) -> Json {
    static CACHE: OnceLock<Mutex<HashMap<String, Json>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(json) = lock(cache).get(name) {
        return json.clone();
    }
    let json = Json::parse(&fixture_text(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not valid JSON: {e}"));
    lock(cache).insert(name.to_owned(), json.clone());
    json
}

/// A fixture, unchanged, in wire form (compact JSON + `\n`).
pub fn fixture_wire(name: &str) -> String {
    fixture_json(name).to_wire()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------
// Order-preserving JSON
// ---------------------------------------------------------------------------

/// A JSON value that keeps object keys in document order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// Parses JSON text, keeping key order.
    pub fn parse(text: &str) -> Result<Json, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// A JSON string value.
    pub fn str(s: impl Into<String>) -> Json {
        Json::String(s.into())
    }

    /// Converts a `serde_json::Value` (its object keys are in its own order,
    /// which is sorted unless serde_json's `preserve_order` is on).
    pub fn from_value(value: &serde_json::Value) -> Json {
        match value {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Number(n.clone()),
            serde_json::Value::String(s) => Json::String(s.clone()),
            serde_json::Value::Array(a) => Json::Array(a.iter().map(Json::from_value).collect()),
            serde_json::Value::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Json::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to a `serde_json::Value` (for assertions).
    pub fn to_value(&self) -> serde_json::Value {
        match self {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::Number(n) => serde_json::Value::Number(n.clone()),
            Json::String(s) => serde_json::Value::String(s.clone()),
            Json::Array(a) => serde_json::Value::Array(a.iter().map(Json::to_value).collect()),
            Json::Object(o) => serde_json::Value::Object(
                o.iter().map(|(k, v)| (k.clone(), v.to_value())).collect(),
            ),
        }
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The member `key` of an object, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Json> {
        match self {
            Json::Object(members) => members.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The string value, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// Sets `key` to `value`: replaced in place if present, appended otherwise.
    /// Panics if `self` is not an object.
    pub fn set(&mut self, key: &str, value: Json) -> &mut Json {
        let Json::Object(members) = self else {
            panic!("Json::set({key:?}) on a non-object");
        };
        if let Some(slot) = members.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            members.push((key.to_owned(), value));
        }
        self
    }

    /// Inserts (or replaces) `key` right after the member `after`; appends if
    /// `after` is missing. Panics if `self` is not an object.
    pub fn insert_after(&mut self, after: &str, key: &str, value: Json) -> &mut Json {
        let Json::Object(members) = self else {
            panic!("Json::insert_after({key:?}) on a non-object");
        };
        members.retain(|(k, _)| k != key);
        let at = members
            .iter()
            .position(|(k, _)| k == after)
            .map_or(members.len(), |i| i + 1);
        members.insert(at, (key.to_owned(), value));
        self
    }

    /// Removes the member `key` of an object.
    pub fn remove(&mut self, key: &str) -> Option<Json> {
        match self {
            Json::Object(members) => {
                let i = members.iter().position(|(k, _)| k == key)?;
                Some(members.remove(i).1)
            }
            _ => None,
        }
    }

    /// Replaces every string value equal to one of the `from` values with the
    /// corresponding `to` (simultaneously, so replacements never chain).
    /// Returns how many values were replaced.
    pub fn replace_strings(&mut self, pairs: &[(String, String)]) -> usize {
        match self {
            Json::String(s) => match pairs.iter().find(|(from, _)| from == s) {
                Some((_, to)) => {
                    s.clone_from(to);
                    1
                }
                None => 0,
            },
            Json::Array(items) => items.iter_mut().map(|v| v.replace_strings(pairs)).sum(),
            Json::Object(members) => members
                .iter_mut()
                .map(|(_, v)| v.replace_strings(pairs))
                .sum(),
            _ => 0,
        }
    }

    /// Compact JSON the way Go's `encoding/json` writes it (key order kept,
    /// HTML-safe escaping), without a trailing newline.
    pub fn to_compact(&self) -> String {
        let mut out = String::new();
        self.write_compact(&mut out);
        out
    }

    /// Compact JSON followed by `\n`: what Kratos puts on the wire.
    pub fn to_wire(&self) -> String {
        let mut out = self.to_compact();
        out.push('\n');
        out
    }

    fn write_compact(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Json::String(s) => write_go_string(out, s),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_compact(out);
                }
                out.push(']');
            }
            Json::Object(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_go_string(out, k);
                    out.push(':');
                    v.write_compact(out);
                }
                out.push('}');
            }
        }
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_compact())
    }
}

/// Writes a JSON string like Go's `encoding/json` (Go ≥ 1.22, HTML escaping on).
fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Json, D::Error> {
        struct JsonVisitor;

        impl<'de> Visitor<'de> for JsonVisitor {
            type Value = Json;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Number(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(v)
                    .map(Json::Number)
                    .ok_or_else(|| E::custom("non-finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::String(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::String(v))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    // Like Go, a repeated key keeps the last value.
                    members.retain(|(existing, _)| existing != &k);
                    members.push((k, v));
                }
                Ok(Json::Object(members))
            }
        }

        deserializer.deserialize_any(JsonVisitor)
    }
}

// ---------------------------------------------------------------------------
// Substitution
// ---------------------------------------------------------------------------

/// A set of whole-string substitutions applied to a fixture.
///
/// `identity`, `session`, `token` and `email` replace the synthesized
/// fixtures' placeholders; `replace` adds any other pair.
#[derive(Clone, Debug, Default)]
pub struct Subst {
    pairs: Vec<(String, String)>,
}

impl Subst {
    pub fn new() -> Subst {
        Subst::default()
    }

    /// Replaces [`FIXTURE_IDENTITY_ID`].
    pub fn identity(self, identity_id: Uuid) -> Subst {
        self.replace(FIXTURE_IDENTITY_ID, &identity_id.to_string())
    }

    /// Replaces [`FIXTURE_SESSION_ID`].
    pub fn session(self, session_id: Uuid) -> Subst {
        self.replace(FIXTURE_SESSION_ID, &session_id.to_string())
    }

    /// Replaces [`FIXTURE_TOKEN`].
    pub fn token(self, token: &str) -> Subst {
        self.replace(FIXTURE_TOKEN, token)
    }

    /// Replaces [`FIXTURE_EMAIL`] (traits and addresses).
    pub fn email(self, email: &str) -> Subst {
        self.replace(FIXTURE_EMAIL, email)
    }

    /// Replaces [`FIXTURE_EMAIL`] if `email` is given.
    pub fn maybe_email(self, email: Option<&str>) -> Subst {
        match email {
            Some(email) => self.email(email),
            None => self,
        }
    }

    /// Replaces every string value equal to `from` with `to`.
    pub fn replace(mut self, from: &str, to: &str) -> Subst {
        self.pairs.push((from.to_owned(), to.to_owned()));
        self
    }

    /// Applies the substitutions in place.
    pub fn apply(&self, json: &mut Json) {
        json.replace_strings(&self.pairs);
    }

    /// Loads fixture `name` and applies the substitutions.
    pub fn render(&self, name: &str) -> Json {
        let mut json = fixture_json(name);
        self.apply(&mut json);
        json
    }
}

// ---------------------------------------------------------------------------
// JSON-level builders (used by the fake; tweak and call `to_wire`)
// ---------------------------------------------------------------------------

/// A session as whoami returns it (identity expanded, public view, devices),
/// from `synthesized/whoami-200.json`.
pub fn session_json(identity_id: Uuid, session_id: Uuid, email: Option<&str>) -> Json {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .maybe_email(email)
        .render("synthesized/whoami-200.json")
}

/// Turns the expanded identity of a session into the admin view
/// (adds `metadata_admin` after `metadata_public`, as `GET /admin/sessions/{id}?expand=identity` does).
pub fn make_admin_session_view(session: &mut Json) {
    if let Some(identity @ Json::Object(_)) = session.get_mut("identity") {
        identity.insert_after("metadata_public", "metadata_admin", Json::Null);
    }
}

/// An identity in the admin view of `GET /admin/identities/{id}` without
/// `include_credential`: the real `kratos-identity-with-credentials-admin-view.json`
/// with the credentials' `config` removed, its id replaced and, if given, its
/// primary address `foobar@ory.sh` replaced by `email` (traits, addresses, identifiers).
pub fn identity_json(identity_id: Uuid, email: Option<&str>) -> Json {
    let mut subst = Subst::new().replace(ADMIN_IDENTITY_FIXTURE_ID, &identity_id.to_string());
    if let Some(email) = email {
        subst = subst.replace(ADMIN_IDENTITY_FIXTURE_EMAIL, email);
    }
    let mut identity = subst.render("kratos-identity-with-credentials-admin-view.json");
    if let Some(Json::Object(credentials)) = identity.get_mut("credentials") {
        for (_, credential) in credentials.iter_mut() {
            credential.remove("config");
        }
    }
    identity
}

// ---------------------------------------------------------------------------
// Wire-body builders (compact JSON + "\n")
// ---------------------------------------------------------------------------

/// `POST /self-service/login` (API flow) 200: `session_token`, `session`
/// (identity expanded), `"continue_with":null`.
pub fn native_login_body(identity_id: Uuid, session_id: Uuid, token: &str) -> String {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .token(token)
        .render("synthesized/native-login-200.json")
        .to_wire()
}

/// Native login 200 when a second factor is still required: a real token but
/// `"identity": null`.
pub fn native_login_aal2_pending_body(session_id: Uuid, token: &str) -> String {
    Subst::new()
        .session(session_id)
        .token(token)
        .render("synthesized/native-login-200-aal2-still-required.json")
        .to_wire()
}

/// SPA (browser flow, JSON) login 200: `session` + `continue_with[redirect_browser_to]`,
/// no token (the cookie travels in `Set-Cookie`).
pub fn spa_login_body(identity_id: Uuid, session_id: Uuid) -> String {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .render("synthesized/spa-login-200.json")
        .to_wire()
}

/// SPA login 422 `browser_location_change_required` (second factor needed).
/// Note `&` is written as `\u0026`, as Go does.
pub fn spa_login_422_body() -> String {
    fixture_wire("synthesized/spa-login-422-aal2-browser-location-change-required.json")
}

/// Native registration 200 with the `session` hook: `session_token`, `session`,
/// `identity` and `continue_with[…, set_ory_session_token]` carrying `token`.
pub fn native_registration_body(identity_id: Uuid, session_id: Uuid, token: &str) -> String {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .token(token)
        .render("synthesized/native-registration-200-with-session-hook.json")
        .to_wire()
}

/// SPA registration 200 with the `session` hook: `session`, `identity`, `continue_with`.
pub fn spa_registration_body(identity_id: Uuid, session_id: Uuid) -> String {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .render("synthesized/spa-registration-200-with-session-hook.json")
        .to_wire()
}

/// `GET /sessions/token-exchange` 200: `session_token` + `session`, no `continue_with`.
pub fn token_exchange_body(identity_id: Uuid, session_id: Uuid, token: &str) -> String {
    Subst::new()
        .identity(identity_id)
        .session(session_id)
        .token(token)
        .render("synthesized/token-exchange-200.json")
        .to_wire()
}

/// Native recovery (code) 200: the recovery flow with
/// `continue_with[set_ory_session_token]` = `token`; no identity or session id.
pub fn native_recovery_body(token: &str) -> String {
    Subst::new()
        .token(token)
        .render("synthesized/native-recovery-200-code-continue-with.json")
        .to_wire()
}

/// `GET /sessions/whoami` 200 body; `tokenized` (the JWT of `?tokenize_as=`)
/// is appended as the last session key when given.
pub fn whoami_body(identity_id: Uuid, session_id: Uuid, tokenized: Option<&str>) -> String {
    whoami_body_with_email(identity_id, session_id, None, tokenized)
}

/// Like [`whoami_body`], with `traits.email` and the addresses set to `email`.
pub fn whoami_body_with_email(
    identity_id: Uuid,
    session_id: Uuid,
    email: Option<&str>,
    tokenized: Option<&str>,
) -> String {
    let mut session = session_json(identity_id, session_id, email);
    if let Some(jwt) = tokenized {
        session.set("tokenized", Json::str(jwt));
    }
    session.to_wire()
}

/// `GET /admin/sessions/{id}?expand=identity` 200: the session with the
/// identity expanded in the admin view (`metadata_admin` included).
pub fn session_body(identity_id: Uuid, session_id: Uuid) -> String {
    let mut session = session_json(identity_id, session_id, None);
    make_admin_session_view(&mut session);
    session.to_wire()
}

/// A JSON array of sessions (identity expanded, public view) as returned by
/// `GET /sessions`; one entry per `(identity_id, session_id)`.
pub fn sessions_list_body(sessions: &[(Uuid, Uuid)]) -> String {
    Json::Array(
        sessions
            .iter()
            .map(|(identity_id, session_id)| session_json(*identity_id, *session_id, None))
            .collect(),
    )
    .to_wire()
}

/// whoami 403 `session_aal2_required` (with top-level `redirect_browser_to`).
pub fn whoami_403_aal2_body() -> String {
    fixture_wire("synthesized/whoami-403-session-aal2-required.json")
}

/// The standard admin 404 body (`Unable to locate the resource`).
pub fn error_404_body() -> String {
    fixture_wire("kratos-error-404-not-found.json")
}

/// `GET /admin/identities/{id}` 200 for `identity_id` with primary e-mail `email`
/// (see [`identity_json`]).
pub fn identity_body(identity_id: Uuid, email: &str) -> String {
    identity_json(identity_id, Some(email)).to_wire()
}

// ---------------------------------------------------------------------------
// Fake `tokenize_as` JWTs
// ---------------------------------------------------------------------------

/// An unsigned-looking JWT shaped like Kratos's `tokenize_as` output:
/// header `{"alg":"ES256","kid":"fake-kratos","typ":"JWT"}`, claims
/// `exp`, `iat`, `iss`, `jti`, `nbf`, `sid`, `sub` (sorted, like Go's map
/// marshalling), and a dummy signature. Not verifiable.
pub fn fake_jwt(identity_id: Uuid, session_id: Uuid, issuer: &str, now_unix: u64) -> String {
    let header = r#"{"alg":"ES256","kid":"fake-kratos","typ":"JWT"}"#;
    let claims = Json::Object(vec![
        ("exp".into(), Json::Number((now_unix + 60).into())),
        ("iat".into(), Json::Number(now_unix.into())),
        ("iss".into(), Json::str(issuer)),
        ("jti".into(), Json::str(session_id.simple().to_string())),
        ("nbf".into(), Json::Number(now_unix.into())),
        ("sid".into(), Json::str(session_id.to_string())),
        ("sub".into(), Json::str(identity_id.to_string())),
    ]);
    format!(
        "{}.{}.{}",
        base64url(header.as_bytes()),
        base64url(claims.to_compact().as_bytes()),
        base64url(b"fake-kratos-signature")
    )
}

/// Decodes the claims (middle part) of a JWT, e.g. one made by [`fake_jwt`].
pub fn jwt_claims(jwt: &str) -> Option<serde_json::Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&base64url_decode(payload)?).ok()
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
pub fn base64url(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(B64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Decodes base64url (padding optional); `None` on invalid input.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = B64URL.iter().position(|&x| x == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
