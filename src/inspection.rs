//! Pure analysis of Kratos responses: where a JSON body carries a session credential, which
//! sessions it vouches for, and whose they are. No I/O; `enforce.rs` decides what to do.

use std::io::Read;

use uuid::Uuid;

use crate::blocklist::parse_uuid;

mod tree;
pub use tree::{JsonView, Node};

/// A session object found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    pub id: Option<Uuid>,
    /// `identity.id` when the identity is expanded; `None` when it is `null` (a native login
    /// that still needs a second factor) or missing.
    pub identity_id: Option<Uuid>,
}

/// The overall shape of a body, which decides how a blocked answer looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shape {
    /// A bare session object (whoami, admin session): answered like "no session".
    Session,
    /// A list of sessions (`GET /sessions`).
    SessionList,
    /// Anything else (login, registration, recovery, token exchange, settings, flows).
    #[default]
    Other,
}

/// What a JSON body says about sessions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// `session_token` and `ory_session_token` values, wherever they appear.
    pub tokens: Vec<String>,
    pub sessions: Vec<SessionRef>,
    /// Every `identity.id` in the body (the session's, or a registration's top-level identity).
    pub identities: Vec<Uuid>,
    /// The e-mail addresses of those identities (verifiable, recovery, configured traits),
    /// lower-cased.
    pub addresses: Vec<String>,
    /// A `tokenized` JWT (`whoami?tokenize_as=`) is present: a credential of its own.
    pub tokenized: bool,
    pub shape: Shape,
}

impl Findings {
    /// The body hands out something a client can authenticate with.
    pub fn carries_credential(&self) -> bool {
        !self.tokens.is_empty() || self.tokenized
    }

    /// The body speaks for a session (credential or not), or names an identity: public
    /// responses that do are answers to that identity's session (settings flows), so a
    /// listed one is refused and its sessions revoked.
    pub fn vouches(&self) -> bool {
        self.carries_credential() || !self.sessions.is_empty() || !self.identities.is_empty()
    }
}

/// Text whose presence means a body must be parsed. A body with none of these cannot hold a
/// credential or a session: Go's encoder writes keys verbatim, and `\u` catches escapes.
const NEEDLES: [&[u8]; 5] = [
    b"session_token",
    b"\"identity\"",
    b"expires_at",
    b"tokenized",
    b"\\u",
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Why a body that looked like JSON could not be judged.
#[derive(Debug, PartialEq, Eq)]
pub struct Unparseable;

/// Analyses a body that starts like JSON. A body that does not parse but mentions a session
/// token is `Err` (fail closed); one that mentions nothing is `Ok(default)`.
pub fn inspect_json(body: &[u8], email_traits: &[String]) -> Result<Findings, Unparseable> {
    if !NEEDLES.iter().any(|n| contains(body, n)) {
        return Ok(Findings::default());
    }
    let tree = match Node::parse(body) {
        Ok(v) => v,
        Err(_) => {
            return if contains(body, b"session_token")
                || contains(body, b"ory_st_")
                || contains(body, b"tokenized")
            {
                Err(Unparseable)
            } else {
                Ok(Findings::default())
            };
        }
    };
    let mut f = Findings::default();
    walk(&tree, email_traits, &mut f);
    f.shape = match &tree {
        Node::Object(_) if session_ref(&tree).is_some() => Shape::Session,
        Node::Array(items)
            if !items.is_empty() && items.iter().all(|i| session_ref(i).is_some()) =>
        {
            Shape::SessionList
        }
        _ => Shape::Other,
    };
    Ok(f)
}

/// An object is a session when it has an `id`, an `identity` key (maybe `null`) and a field
/// only sessions have. `expires_at` and `issued_at` do not count: every self-service flow has
/// them too, and a settings flow also has `id` and `identity` (api.json `settingsFlow`).
fn session_ref(o: &Node) -> Option<SessionRef> {
    let id = o.member("id")?;
    let identity = o.member("identity")?;
    let has_session_field = [
        "authenticated_at",
        "authenticator_assurance_level",
        "authentication_methods",
    ]
    .iter()
    .any(|k| o.member(k).is_some());
    if !has_session_field {
        return None;
    }
    Some(SessionRef {
        id: id.text().and_then(parse_uuid),
        identity_id: identity
            .member("id")
            .and_then(JsonView::text)
            .and_then(parse_uuid),
    })
}

/// Every member of every object, duplicates included: a credential under a repeated key is
/// found whichever copy a client reads.
fn walk(v: &Node, email_traits: &[String], f: &mut Findings) {
    match v {
        Node::Object(members) => {
            if let Some(s) = session_ref(v) {
                f.sessions.push(s);
            }
            for (k, child) in members {
                match (k.as_ref(), child) {
                    ("session_token" | "ory_session_token", Node::Str(t)) if !t.is_empty() => {
                        f.tokens.push(t.as_ref().to_owned())
                    }
                    ("tokenized", Node::Str(t)) if !t.is_empty() => f.tokenized = true,
                    ("identity", identity @ Node::Object(_)) => {
                        if let Some(id) = identity
                            .member("id")
                            .and_then(JsonView::text)
                            .and_then(parse_uuid)
                        {
                            if !f.identities.contains(&id) {
                                f.identities.push(id);
                            }
                        }
                        for a in identity_addresses(identity, email_traits) {
                            if !f.addresses.contains(&a) {
                                f.addresses.push(a);
                            }
                        }
                    }
                    _ => {}
                }
                walk(child, email_traits, f);
            }
        }
        Node::Array(items) => {
            for i in items {
                walk(i, email_traits, f);
            }
        }
        _ => {}
    }
}

/// The e-mail addresses of an identity object: `verifiable_addresses[].value`,
/// `recovery_addresses[].value` and the string (or strings) at each of `email_traits`
/// (dot-separated paths such as `traits.email`), trimmed and lower-cased.
pub fn identity_addresses<J: JsonView>(identity: &J, email_traits: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &J| {
        let single = v.text();
        let strings = single
            .into_iter()
            .chain(v.elements().iter().filter_map(JsonView::text));
        for s in strings {
            let a = s.trim().to_lowercase();
            if a.contains('@') && !out.contains(&a) {
                out.push(a);
            }
        }
    };
    for list in ["verifiable_addresses", "recovery_addresses"] {
        if let Some(items) = identity.member(list) {
            for item in items.elements() {
                if let Some(v) = item.member("value") {
                    push(v);
                }
            }
        }
    }
    for path in email_traits {
        let mut v = Some(identity);
        for seg in path.split('.') {
            v = v.and_then(|x| x.member(seg));
        }
        if let Some(v) = v {
            push(v);
        }
    }
    out
}

/// The first byte that is not white space or a UTF-8 byte-order mark, if any.
pub fn first_significant_byte(chunk: &[u8]) -> Option<u8> {
    let chunk = chunk.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(chunk);
    chunk.iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// A body starting with this byte may be a JSON object or array, and so may carry a
/// credential.
pub fn may_be_json(first: u8) -> bool {
    first == b'{' || first == b'['
}

#[derive(Debug, PartialEq, Eq)]
pub enum DecodeError {
    Unsupported(String),
    Corrupt(String),
    TooLarge,
}

/// Undoes `Content-Encoding` (gzip, x-gzip, deflate, br, identity; several applied in order),
/// refusing output over `limit` bytes.
pub fn decode(content_encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let codings: Vec<String> = content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let mut data = body.to_vec();
    for coding in codings.iter().rev() {
        data = match coding.as_str() {
            "identity" => data,
            "gzip" | "x-gzip" => read_limited(flate2::read::MultiGzDecoder::new(&data[..]), limit)?,
            "deflate" => match read_limited(flate2::read::ZlibDecoder::new(&data[..]), limit) {
                Ok(d) => d,
                // Some servers send raw deflate without the zlib wrapper.
                Err(DecodeError::Corrupt(_)) => {
                    read_limited(flate2::read::DeflateDecoder::new(&data[..]), limit)?
                }
                Err(e) => return Err(e),
            },
            "br" => read_limited(
                brotli_decompressor::Decompressor::new(&data[..], 4096),
                limit,
            )?,
            other => return Err(DecodeError::Unsupported(other.to_owned())),
        };
    }
    Ok(data)
}

fn read_limited(reader: impl Read, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

/// Request fields Kratos takes the login identifier from, in its order: `identifier`, then
/// the password method's deprecated `password_identifier`, which its login schema accepts
/// instead (`stringsx.Coalesce(p.Identifier, p.LegacyIdentifier)`).
const IDENTIFIER_FIELDS: [&str; 2] = ["identifier", "password_identifier"];

/// The identifier a client submitted in a login request body (JSON or form).
///
/// The body is read the way Kratos chooses its decoder (ory/x `httpx.HasContentType`): by
/// the media types of the comma-separated `Content-Type` value, parameters ignored, JSON
/// before form. A parameter that merely mentions "json" does not make a form body JSON.
pub fn login_identifier(content_type: Option<&str>, body: &[u8]) -> Option<String> {
    let media_type = |wanted: &str| {
        content_type.unwrap_or("").split(',').any(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(wanted)
        })
    };
    let usable = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.len() <= 512).then(|| s.to_owned())
    };
    if media_type("application/json") {
        let tree = Node::parse(body).ok()?;
        IDENTIFIER_FIELDS
            .iter()
            .find_map(|name| tree.member(name).and_then(JsonView::text).and_then(usable))
    } else if media_type("application/x-www-form-urlencoded") {
        IDENTIFIER_FIELDS.iter().find_map(|name| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| usable(&v))
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const ID: &str = "5ff66179-c240-4703-b0d8-494592cefff5";

    fn traits() -> Vec<String> {
        vec!["traits.email".to_owned(), "traits.emails".to_owned()]
    }

    #[test]
    fn addresses_from_every_place() {
        let identity = serde_json::json!({"id": ID,
            "traits": {"email": " Alice@Example.COM ", "emails": ["b@x.example", 3]},
            "verifiable_addresses": [{"value": "v@x.example", "via": "email"}],
            "recovery_addresses": [{"value": "alice@example.com"}, {"value": "+4912345"}]});
        let mut got = identity_addresses(&identity, &traits());
        got.sort();
        assert_eq!(got, vec!["alice@example.com", "b@x.example", "v@x.example"]);
        let body = serde_json::json!({"session_token": "ory_st_x", "session": session(identity)});
        let f = inspect_json(body.to_string().as_bytes(), &traits()).expect("p");
        assert_eq!(f.addresses.len(), 3);
    }
    const SID: &str = "7efedf89-4dda-4636-8320-7506e58db1a3";

    fn session(identity: Value) -> Value {
        serde_json::json!({"id": SID, "active": true, "expires_at": "2026-08-02T10:00:00Z",
            "authenticator_assurance_level": "aal1", "identity": identity, "devices": []})
    }

    #[test]
    fn native_login_token_and_identity() {
        let body = serde_json::json!({"session_token": "ory_st_abc", "session": session(serde_json::json!({"id": ID})), "continue_with": null});
        let f = inspect_json(body.to_string().as_bytes(), &traits()).expect("parse");
        assert_eq!(f.tokens, vec!["ory_st_abc"]);
        assert_eq!(f.identities, vec![parse_uuid(ID).expect("u")]);
        assert_eq!(f.sessions.len(), 1);
        assert_eq!(f.sessions[0].id, parse_uuid(SID));
        assert_eq!(f.shape, Shape::Other);
        assert!(f.carries_credential());
    }

    #[test]
    fn aal2_pending_login_has_session_id_but_no_identity() {
        let body = serde_json::json!({"session_token": "ory_st_abc", "session": session(Value::Null), "continue_with": null});
        let f = inspect_json(body.to_string().as_bytes(), &traits()).expect("parse");
        assert!(f.identities.is_empty());
        assert_eq!(f.sessions[0].identity_id, None);
        assert_eq!(f.sessions[0].id, parse_uuid(SID));
    }

    #[test]
    fn continue_with_token_anywhere() {
        let body = r#"{"id":"x","state":"passed_challenge","continue_with":[{"action":"set_ory_session_token","ory_session_token":"ory_st_zz"},{"action":"show_settings_ui"}]}"#;
        let f = inspect_json(body.as_bytes(), &traits()).expect("parse");
        assert_eq!(f.tokens, vec!["ory_st_zz"]);
        assert!(f.sessions.is_empty());
    }

    #[test]
    fn whoami_and_session_list_shapes() {
        let s = session(serde_json::json!({"id": ID}));
        let f = inspect_json(s.to_string().as_bytes(), &traits()).expect("parse");
        assert_eq!(f.shape, Shape::Session);
        assert!(!f.carries_credential());
        assert!(f.vouches());
        let list = Value::Array(vec![s.clone(), s]);
        assert_eq!(
            inspect_json(list.to_string().as_bytes(), &traits())
                .expect("p")
                .shape,
            Shape::SessionList
        );
        assert_eq!(
            inspect_json(b"[]", &traits()).expect("p").shape,
            Shape::Other
        );
    }

    #[test]
    fn settings_flow_is_not_a_session() {
        let flow = serde_json::json!({"id": SID, "type": "browser",
            "expires_at": "2026-08-01T11:00:00Z", "issued_at": "2026-08-01T10:00:00Z",
            "request_url": "https://auth.example.com/self-service/settings/browser",
            "ui": {"nodes": []}, "identity": {"id": ID}, "state": "success"});
        let f = inspect_json(flow.to_string().as_bytes(), &traits()).expect("parse");
        assert_eq!(f.shape, Shape::Other);
        assert!(f.sessions.is_empty(), "the flow id is not a session id");
        assert_eq!(f.identities, vec![parse_uuid(ID).expect("u")]);
        assert!(
            f.vouches(),
            "it names the identity whose session fetched it"
        );
    }

    #[test]
    fn escaped_keys_are_still_found() {
        let body = br#"{"session\u005ftoken":"ory_st_esc"}"#;
        assert_eq!(
            inspect_json(body, &traits()).expect("p").tokens,
            vec!["ory_st_esc"]
        );
    }

    #[test]
    fn every_copy_of_a_repeated_key_is_read() {
        // A client library may read either copy; both are credentials.
        let body = br#"{"session_token":"ory_st_first","session_token":"ory_st_second"}"#;
        let f = inspect_json(body, &traits()).unwrap();
        assert_eq!(f.tokens, ["ory_st_first", "ory_st_second"]);
    }

    #[test]
    fn unrelated_and_empty_tokens_are_ignored() {
        assert!(!inspect_json(br#"{"ui":{"nodes":[]}}"#, &traits())
            .expect("p")
            .vouches());
        assert!(!inspect_json(br#"{"session_token":""}"#, &traits())
            .expect("p")
            .vouches());
        assert!(!inspect_json(br#"{"logout_token":"ory_lo_x"}"#, &traits())
            .expect("p")
            .vouches());
    }

    #[test]
    fn broken_json_with_a_token_fails_closed() {
        assert_eq!(
            inspect_json(br#"{"session_token":"ory_st_abc""#, &traits()),
            Err(Unparseable)
        );
        assert_eq!(
            inspect_json(br#"{"a":"#, &traits()),
            Ok(Findings::default())
        );
    }

    #[test]
    fn sniffing() {
        assert_eq!(first_significant_byte(b"\xEF\xBB\xBF \n {"), Some(b'{'));
        assert_eq!(first_significant_byte(b"   "), None);
        assert!(may_be_json(b'['));
        assert!(!may_be_json(b'<'));
    }

    #[test]
    fn decoding_roundtrips_and_limits() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"{\"session_token\":\"ory_st_x\"}")
            .expect("w");
        let data = gz.finish().expect("gz");
        assert_eq!(
            decode("gzip", &data, 1024).expect("d"),
            b"{\"session_token\":\"ory_st_x\"}"
        );
        assert_eq!(decode("gzip", &data, 4), Err(DecodeError::TooLarge));
        assert!(matches!(
            decode("zstd", &data, 1024),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(matches!(
            decode("gzip", b"not gzip", 1024),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(decode("identity", b"x", 10).expect("d"), b"x");
    }

    #[test]
    fn identifiers_from_json_and_form() {
        assert_eq!(
            login_identifier(
                Some("application/json"),
                br#"{"method":"password","identifier":" a@b.c ","password":"x"}"#
            ),
            Some("a@b.c".to_owned())
        );
        assert_eq!(
            login_identifier(
                Some("application/x-www-form-urlencoded"),
                b"method=password&identifier=a%40b.c&password=x"
            ),
            Some("a@b.c".to_owned())
        );
        assert_eq!(login_identifier(Some("text/plain"), b"identifier=a"), None);
        // Kratos decides by media type; parameters do not count.
        assert_eq!(
            login_identifier(
                Some("Application/X-WWW-Form-Urlencoded; profile=json"),
                b"identifier=a%40b.c"
            ),
            Some("a@b.c".to_owned())
        );
        assert_eq!(
            login_identifier(
                Some("text/plain, application/json; charset=utf-8"),
                br#"{"identifier":"a@b.c"}"#
            ),
            Some("a@b.c".to_owned())
        );
        // Kratos's password login accepts the deprecated field instead of `identifier`.
        assert_eq!(
            login_identifier(
                Some("application/json"),
                br#"{"method":"password","password_identifier":"a@b.c","password":"x"}"#
            ),
            Some("a@b.c".to_owned())
        );
        assert_eq!(
            login_identifier(
                Some("application/x-www-form-urlencoded"),
                b"method=password&password_identifier=a%40b.c&identifier=&password=x"
            ),
            Some("a@b.c".to_owned())
        );
        assert_eq!(
            login_identifier(
                Some("application/json"),
                br#"{"identifier":"first@b.c","password_identifier":"second@b.c"}"#
            ),
            Some("first@b.c".to_owned())
        );
    }
}
