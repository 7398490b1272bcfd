//! Pure analysis of Kratos responses: where a JSON body carries a session credential, which
//! sessions it vouches for, and whose they are. No I/O; the public policy (`enforce/`) decides what to do.

use std::borrow::Cow;
use std::io::Read;

use serde_json::Value;

mod reader;
pub use reader::{Findings, SessionRef, Shape, Token, MAX_TOKENS};

/// Text whose presence means a body must be parsed. A body with none of these cannot hold a
/// credential, a session or an identity at a position the reader looks at: Go's encoder
/// writes keys verbatim, and `\u` catches escapes.
const NEEDLES: [&[u8]; 5] = [
    b"session_token",
    b"\"identity\"",
    b"\"session\"",
    b"tokenized",
    b"\\u",
];

/// Searchers for [`NEEDLES`], built once: building one costs more than a search of a short
/// body that starts with the first needle.
static NEEDLE_FINDERS: std::sync::LazyLock<[memchr::memmem::Finder<'static>; 5]> =
    std::sync::LazyLock::new(|| NEEDLES.map(memchr::memmem::Finder::new));

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// Why a body that looked like JSON could not be judged.
#[derive(Debug, PartialEq, Eq)]
pub struct Unparseable;

/// Analyses a body that starts like JSON. A body that does not parse (or nests deeper than
/// 128 levels) but mentions a session token is `Err` (fail closed); one that mentions
/// nothing is `Ok(default)`.
pub fn inspect_json(body: &[u8]) -> Result<Findings, Unparseable> {
    if !NEEDLE_FINDERS.iter().any(|f| f.find(body).is_some()) {
        return Ok(Findings::default());
    }
    reader::read(body).or_else(|_| {
        if contains(body, b"session_token")
            || contains(body, b"ory_st_")
            || contains(body, b"tokenized")
        {
            Err(Unparseable)
        } else {
            Ok(Findings::default())
        }
    })
}

/// The e-mail addresses of an identity as Kratos's admin API or web hook describes it:
/// `verifiable_addresses[].value`, `recovery_addresses[].value` and the string (or strings)
/// at each of `email_traits` (dot-separated paths such as `traits.email`), trimmed and
/// lower-cased. Never applied to a response body a client can write into.
pub fn identity_addresses(identity: &Value, email_traits: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |v: &Value| {
        let items = match v {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for s in items.iter().filter_map(Value::as_str) {
            let a = s.trim().to_lowercase();
            if a.contains('@') && !out.contains(&a) {
                out.push(a);
            }
        }
    };
    for list in ["verifiable_addresses", "recovery_addresses"] {
        if let Some(Value::Array(items)) = identity.get(list) {
            for item in items {
                if let Some(v) = item.get("value") {
                    push(v);
                }
            }
        }
    }
    for path in email_traits {
        let mut v = Some(identity);
        for seg in path.split('.') {
            v = v.and_then(|x| x.get(seg));
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

/// Longest identifier or address the gateway resolves; a longer one is unreadable (fail
/// closed where it matters) rather than ignored.
const MAX_SUBMITTED_LEN: usize = 1024;

/// The fields of a self-service submission that name whose account it is about.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Login: `identifier`, else the password method's deprecated `password_identifier`,
    /// which Kratos's login schema accepts instead (`stringsx.Coalesce`).
    pub identifier: Option<String>,
    /// Recovery and verification: the address a code is sent to.
    pub email: Option<String>,
    /// A `code` was submitted (the recovery step that hands out a session).
    pub has_code: bool,
    /// The login `method` (trimmed, lower-cased): which strategy Kratos tries.
    pub method: Option<String>,
}

/// The submission could not be read the way Kratos reads it (or not within the gateway's
/// bounds): whose account it is about is unknown.
#[derive(Debug, PartialEq, Eq)]
pub struct UnreadableSubmission;

/// The submission fields the gateway reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Identifier,
    PasswordIdentifier,
    Email,
    Code,
    Method,
}

impl Field {
    /// The field a JSON member name sets, matched as Go's `encoding/json` matches struct
    /// fields: ignoring case, with the Kelvin sign and the long s folding to `k` and `s`.
    fn of(name: &str) -> Option<Field> {
        // As long as the longest field name: a longer member matches none.
        let mut folded = [0u8; "password_identifier".len()];
        let mut len = 0;
        for c in name.chars() {
            let b = match c {
                'ſ' => b's',
                '\u{212A}' => b'k',
                c if c.is_ascii() => c.to_ascii_lowercase() as u8,
                _ => return None,
            };
            *folded.get_mut(len)? = b;
            len += 1;
        }
        match folded.get(..len)? {
            b"identifier" => Some(Field::Identifier),
            b"password_identifier" => Some(Field::PasswordIdentifier),
            b"email" => Some(Field::Email),
            b"code" => Some(Field::Code),
            b"method" => Some(Field::Method),
            _ => None,
        }
    }
}

/// The members of the first JSON value of a submission, as Go assigns them to a struct:
/// every matching member in document order, the last one winning; `null` changes nothing;
/// a value of another type than a string makes the body unreadable (Go fails there too).
/// Unknown members are skipped without a depth limit.
/// A JSON string, borrowed from the body unless it holds escapes (serde's own `Cow`
/// always copies).
struct Text<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Values are borrowed from the body unless they hold escapes.
#[derive(Default)]
struct JsonSubmission<'de> {
    identifier: Option<Cow<'de, str>>,
    password_identifier: Option<Cow<'de, str>>,
    email: Option<Cow<'de, str>>,
    code: bool,
    method: Option<Cow<'de, str>>,
}

impl<'de> serde::Deserialize<'de> for JsonSubmission<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = JsonSubmission<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_unit<E>(self) -> Result<JsonSubmission<'de>, E> {
                Ok(JsonSubmission::default())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonSubmission<'de>, A::Error> {
                let mut out = JsonSubmission::default();
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let Some(field) = Field::of(&key) else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                        continue;
                    };
                    let Some(Text(value)) = map.next_value::<Option<Text<'de>>>()? else {
                        continue;
                    };
                    match field {
                        Field::Identifier => out.identifier = Some(value),
                        Field::PasswordIdentifier => out.password_identifier = Some(value),
                        Field::Email => out.email = Some(value),
                        Field::Code => out.code = true,
                        Field::Method => out.method = Some(value),
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields a client submitted in a self-service request body (JSON or form), read the
/// way Kratos reads them (CONTRACT.md §14):
///
/// - the decoder is chosen by the media types of the comma-separated `Content-Type`,
///   parameters ignored, JSON before form (ory/x `httpx.HasContentType`);
/// - JSON: only the first value counts, whatever follows it (Go's `json.Decoder`);
/// - form: the first value of each field (Go's `url.Values.Get`);
/// - any other body yields no fields.
pub fn submitted(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Submitted, UnreadableSubmission> {
    let media_type = |wanted: &str| {
        content_type.unwrap_or("").split(',').any(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(wanted)
        })
    };
    let usable = |s: &str| -> Result<Option<String>, UnreadableSubmission> {
        let s = s.trim();
        match s.len() {
            0 => Ok(None),
            n if n > MAX_SUBMITTED_LEN => Err(UnreadableSubmission),
            _ => Ok(Some(s.to_owned())),
        }
    };
    if media_type("application/json") {
        let first = serde_json::Deserializer::from_slice(body)
            .into_iter::<JsonSubmission>()
            .next();
        let Some(Ok(fields)) = first else {
            return Err(UnreadableSubmission);
        };
        let identifier = match fields
            .identifier
            .as_deref()
            .map(usable)
            .transpose()?
            .flatten()
        {
            Some(i) => Some(i),
            None => fields
                .password_identifier
                .as_deref()
                .map(usable)
                .transpose()?
                .flatten(),
        };
        Ok(Submitted {
            identifier,
            email: fields.email.as_deref().map(usable).transpose()?.flatten(),
            has_code: fields.code,
            method: fields
                .method
                .as_deref()
                .map(usable)
                .transpose()?
                .flatten()
                .map(|m| m.to_ascii_lowercase()),
        })
    } else if media_type("application/x-www-form-urlencoded") {
        let field = |name: &str| {
            form_urlencoded::parse(body)
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
        };
        let identifier = match field("identifier")
            .as_deref()
            .map(usable)
            .transpose()?
            .flatten()
        {
            Some(i) => Some(i),
            None => field("password_identifier")
                .as_deref()
                .map(usable)
                .transpose()?
                .flatten(),
        };
        Ok(Submitted {
            identifier,
            email: field("email").as_deref().map(usable).transpose()?.flatten(),
            has_code: field("code").is_some(),
            method: field("method")
                .as_deref()
                .map(usable)
                .transpose()?
                .flatten()
                .map(|m| m.to_ascii_lowercase()),
        })
    } else {
        Ok(Submitted::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::parse_uuid;
    use serde_json::json;

    #[test]
    fn the_login_method_is_read_as_go_reads_it() {
        let json = Some("application/json; charset=utf-8");
        let method = |ct, body: &str| submitted(ct, body.as_bytes()).expect("read").method;
        // Any case, the last member wins, only the first JSON value counts.
        let cases = [
            (
                r#"{"method":"Password","identifier":"a"} {"method":"oidc"}"#,
                "password",
            ),
            (r#"{"method":"oidc","METHOD":"password"}"#, "password"),
            (r#"{"method":"oidc","method":"password"}"#, "password"),
            (r#"{"method":"password","method":null}"#, "password"),
        ];
        for (body, want) in cases {
            assert_eq!(method(json, body).as_deref(), Some(want), "{body}");
        }
        let form = Some("application/x-www-form-urlencoded");
        assert_eq!(
            method(form, "method=code&method=password").as_deref(),
            Some("code")
        );
        assert_eq!(method(Some("text/plain"), "method=code"), None);
    }

    const ID: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
    const OTHER: &str = "0b7a3c52-2f43-4ad5-9d0e-0e5c3a6a7f10";
    const SID: &str = "7efedf89-4dda-4636-8320-7506e58db1a3";

    fn uuid(s: &str) -> uuid::Uuid {
        parse_uuid(s).expect("uuid")
    }

    fn session(identity: Value) -> Value {
        json!({"id": SID, "active": true, "expires_at": "2026-08-02T10:00:00Z",
            "authenticator_assurance_level": "aal1", "identity": identity, "devices": []})
    }

    fn inspect(v: &Value) -> Findings {
        inspect_json(v.to_string().as_bytes()).expect("parses")
    }

    fn token(value: &str, authored: bool) -> Token {
        Token {
            value: value.to_owned(),
            authored,
        }
    }

    #[test]
    fn addresses_from_every_place_of_an_identity_record() {
        let identity = json!({"id": ID,
            "traits": {"email": " Alice@Example.COM ", "emails": ["b@x.example", 3]},
            "verifiable_addresses": [{"value": "v@x.example", "via": "email"}],
            "recovery_addresses": [{"value": "alice@example.com"}, {"value": "+4912345"}]});
        let traits = vec!["traits.email".to_owned(), "traits.emails".to_owned()];
        let mut got = identity_addresses(&identity, &traits);
        got.sort();
        assert_eq!(got, vec!["alice@example.com", "b@x.example", "v@x.example"]);
    }

    #[test]
    fn native_login_token_and_identity_are_kratos_authored() {
        let f = inspect(
            &json!({"session_token": "ory_st_abc", "session": session(json!({"id": ID})), "continue_with": null}),
        );
        assert_eq!(f.tokens, vec![token("ory_st_abc", true)]);
        assert_eq!(f.identities, vec![uuid(ID)]);
        assert_eq!(
            f.sessions,
            vec![SessionRef {
                id: Some(uuid(SID)),
                identity_id: Some(uuid(ID))
            }]
        );
        assert_eq!(f.shape, Shape::Other);
        assert!(f.carries_credential());
    }

    #[test]
    fn aal2_pending_login_has_session_id_but_no_identity() {
        let f = inspect(
            &json!({"session_token": "ory_st_abc", "session": session(Value::Null), "continue_with": null}),
        );
        assert!(f.identities.is_empty());
        assert_eq!(
            f.sessions,
            vec![SessionRef {
                id: Some(uuid(SID)),
                identity_id: None
            }]
        );
    }

    #[test]
    fn continue_with_token_is_authored_and_registration_identity_counts() {
        let f = inspect(
            &json!({"identity": {"id": ID, "traits": {"email": "a@b.example"}},
            "continue_with": [{"action": "set_ory_session_token", "ory_session_token": "ory_st_zz"},
                              {"action": "show_verification_ui", "flow": {"id": OTHER}}]}),
        );
        assert_eq!(f.tokens, vec![token("ory_st_zz", true)]);
        assert_eq!(f.identities, vec![uuid(ID)]);
        assert!(f.sessions.is_empty());
    }

    /// Kratos echoes `transient_payload` and submitted `ui` values: nothing in them is
    /// evidence, but a token in them is still a credential.
    #[test]
    fn client_echoes_are_never_evidence() {
        let payload = json!({
            "identity": {"id": OTHER, "traits": {"email": "someone@unlisted.example"}},
            "session": session(json!({"id": OTHER})),
            "sessions": [session(json!({"id": OTHER}))],
            "email": "someone@unlisted.example",
            "session_token": "ory_st_echoed",
        });
        let recovery = json!({"id": SID, "type": "api", "state": "passed_challenge",
            "transient_payload": payload,
            "ui": {"nodes": [{"attributes": {"name": "email", "value": "someone@unlisted.example"}}]},
            "continue_with": [{"action": "set_ory_session_token", "ory_session_token": "ory_st_real"}]});
        let f = inspect(&recovery);
        assert!(f.identities.is_empty(), "{f:?}");
        assert!(f.sessions.is_empty(), "{f:?}");
        let mut tokens = f.tokens.clone();
        tokens.sort_by(|a, b| a.value.cmp(&b.value));
        assert_eq!(
            tokens,
            vec![token("ory_st_echoed", false), token("ory_st_real", true)]
        );
        assert_eq!(f.shape, Shape::Other);
    }

    #[test]
    fn a_token_echoed_and_authored_counts_once_as_authored() {
        let f = inspect(&json!({"transient_payload": {"session_token": "ory_st_x"},
            "continue_with": [{"ory_session_token": "ory_st_x"}]}));
        assert_eq!(f.tokens, vec![token("ory_st_x", true)]);
    }

    #[test]
    fn whoami_and_session_list_shapes() {
        let s = session(json!({"id": ID}));
        let f = inspect(&s);
        assert_eq!(f.shape, Shape::Session);
        assert_eq!(f.identities, vec![uuid(ID)]);
        assert!(!f.carries_credential());
        assert!(f.vouches());
        let list = inspect(&Value::Array(vec![s.clone(), s]));
        assert_eq!(list.shape, Shape::SessionList);
        assert_eq!(list.sessions.len(), 1, "duplicates collapse");
        assert_eq!(inspect(&json!([])).shape, Shape::Other);
        assert_eq!(
            inspect(&json!([session(json!({"id": ID})), {"id": 1}])).shape,
            Shape::Other
        );
    }

    #[test]
    fn settings_flow_names_its_identity_but_is_not_a_session() {
        let flow = json!({"id": SID, "type": "browser",
            "expires_at": "2026-08-01T11:00:00Z", "issued_at": "2026-08-01T10:00:00Z",
            "ui": {"nodes": []}, "identity": {"id": ID}, "state": "success",
            "transient_payload": {"identity": {"id": OTHER}}});
        let f = inspect(&flow);
        assert_eq!(f.shape, Shape::Other);
        assert!(f.sessions.is_empty(), "the flow id is not a session id");
        assert_eq!(f.identities, vec![uuid(ID)]);
        assert!(f.vouches());
    }

    #[test]
    fn escaped_keys_are_still_found() {
        let f = inspect_json(br#"{"session\u005ftoken":"ory_st_esc"}"#).expect("p");
        assert_eq!(f.tokens, vec![token("ory_st_esc", true)]);
    }

    #[test]
    fn every_copy_of_a_repeated_key_is_read() {
        let f =
            inspect_json(br#"{"session_token":"ory_st_first","session_token":"ory_st_second"}"#)
                .unwrap();
        assert_eq!(
            f.tokens,
            vec![token("ory_st_first", true), token("ory_st_second", true)]
        );
    }

    #[test]
    fn tokens_are_bounded_and_the_overflow_is_known() {
        let items: Vec<Value> = (0..5000)
            .map(|i| json!({"session_token": format!("ory_st_{i}")}))
            .collect();
        let f = inspect(&json!({"transient_payload": items}));
        assert_eq!(f.tokens.len(), MAX_TOKENS);
        assert!(f.too_many_tokens);
        assert!(f.carries_credential());
        let same: Vec<Value> = (0..5000).map(|_| json!({"session_token": "x"})).collect();
        let f = inspect(&json!({"transient_payload": same}));
        assert_eq!(f.tokens, vec![token("x", false)]);
        assert!(!f.too_many_tokens);
    }

    #[test]
    fn many_empty_objects_parse_to_nothing() {
        let mut body = br#"{"id":"x","identity":null,"transient_payload":["#.to_vec();
        for i in 0..340_000 {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{}");
        }
        body.extend_from_slice(b"]}");
        let f = inspect_json(&body).expect("parses");
        assert!(!f.vouches());
    }

    #[test]
    fn nesting_beyond_the_limit_fails_closed_only_when_a_token_is_named() {
        let deep = |inner: &str| {
            format!(
                "{{\"transient_payload\":{}{inner}{}}}",
                "[".repeat(3000),
                "]".repeat(3000)
            )
        };
        assert_eq!(inspect_json(deep("").as_bytes()), Ok(Findings::default()));
        let with_token = format!(
            "{{\"session_token\":\"ory_st_a\",\"x\":{}{}}}",
            "[".repeat(3000),
            "]".repeat(3000)
        );
        assert_eq!(inspect_json(with_token.as_bytes()), Err(Unparseable));
    }

    #[test]
    fn unrelated_and_empty_tokens_are_ignored() {
        assert!(!inspect_json(br#"{"ui":{"nodes":[]}}"#)
            .expect("p")
            .vouches());
        assert!(!inspect_json(br#"{"session_token":""}"#)
            .expect("p")
            .vouches());
        assert!(!inspect_json(br#"{"logout_token":"ory_lo_x"}"#)
            .expect("p")
            .vouches());
    }

    #[test]
    fn broken_json_with_a_token_fails_closed() {
        assert_eq!(
            inspect_json(br#"{"session_token":"ory_st_abc""#),
            Err(Unparseable)
        );
        for not_utf8 in [
            &b"{\"session_token\":\"ory_st_abc\",\"x\":\"\xff\"}"[..],
            b"{\"session_token\":\"ory_st_abc\"}\n\xc3",
            b"{\"session_token\":\"ory_st_abc\",\"\xed\xa0\x80\":1}",
        ] {
            assert_eq!(inspect_json(not_utf8), Err(Unparseable));
        }
        assert_eq!(inspect_json(br#"{"a":"#), Ok(Findings::default()));
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

    fn fields(ct: &str, body: &[u8]) -> Result<Submitted, UnreadableSubmission> {
        submitted(Some(ct), body)
    }

    fn identifier(ct: &str, body: &[u8]) -> Option<String> {
        fields(ct, body).expect("readable").identifier
    }

    #[test]
    fn identifiers_from_json_and_form() {
        const JSON: &str = "application/json";
        const FORM: &str = "application/x-www-form-urlencoded";
        assert_eq!(
            identifier(
                JSON,
                br#"{"method":"password","identifier":" a@b.c ","password":"x"}"#
            )
            .as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            identifier(FORM, b"method=password&identifier=a%40b.c&password=x").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            submitted(Some("text/plain"), b"identifier=a"),
            Ok(Submitted::default())
        );
        // Kratos decides by media type; parameters do not count.
        assert_eq!(
            identifier(
                "Application/X-WWW-Form-Urlencoded; profile=json",
                b"identifier=a%40b.c"
            )
            .as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            identifier(
                "text/plain, application/json; charset=utf-8",
                br#"{"identifier":"a@b.c"}"#
            )
            .as_deref(),
            Some("a@b.c")
        );
        // The deprecated field, and its place in Kratos's order.
        assert_eq!(
            identifier(JSON, br#"{"password_identifier":"a@b.c"}"#).as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            identifier(FORM, b"password_identifier=a%40b.c&identifier=&password=x").as_deref(),
            Some("a@b.c")
        );
        assert_eq!(
            identifier(
                JSON,
                br#"{"identifier":"first@b.c","password_identifier":"second@b.c"}"#
            )
            .as_deref(),
            Some("first@b.c")
        );
        // Go's url.Values.Get: the first value.
        assert_eq!(
            identifier(FORM, b"identifier=first%40b.c&identifier=second%40b.c").as_deref(),
            Some("first@b.c")
        );
    }

    /// Kratos's JSON decoder reads the first value and ignores what follows.
    #[test]
    fn only_the_first_json_value_counts() {
        const JSON: &str = "application/json";
        assert_eq!(
            identifier(
                JSON,
                br#"{"identifier":"listed@b.c"} {"identifier":"other@b.c"}"#
            )
            .as_deref(),
            Some("listed@b.c")
        );
        assert_eq!(
            identifier(JSON, br#"{"identifier":"listed@b.c"}garbage"#).as_deref(),
            Some("listed@b.c")
        );
    }

    /// Go's decoder nests 10,000 levels deep; members the gateway skips are skipped
    /// without a depth limit, so a deep member does not hide the identifier.
    #[test]
    fn a_deeply_nested_member_does_not_hide_the_identifier() {
        let deep = format!(
            r#"{{"x":{}{},"identifier":"listed@b.c"}}"#,
            "[".repeat(3000),
            "]".repeat(3000)
        );
        assert_eq!(
            identifier("application/json", deep.as_bytes()).as_deref(),
            Some("listed@b.c")
        );
    }

    #[test]
    fn what_cannot_be_read_as_kratos_reads_it_is_unreadable() {
        const JSON: &str = "application/json";
        assert_eq!(
            fields(JSON, br#"{"identifier":7}"#),
            Err(UnreadableSubmission)
        );
        assert_eq!(fields(JSON, b"not json"), Err(UnreadableSubmission));
        let long = format!(r#"{{"identifier":"{}@b.c"}}"#, "a".repeat(2000));
        assert_eq!(fields(JSON, long.as_bytes()), Err(UnreadableSubmission));
    }

    /// Go's `encoding/json` assigns struct fields from members matched without regard to case
    /// (the Kelvin sign and the long s included), the last one winning; `null` leaves the
    /// field as it was.
    #[test]
    fn members_are_matched_as_go_matches_struct_fields() {
        const JSON: &str = "application/json";
        assert_eq!(
            identifier(
                JSON,
                br#"{"identifier":"a@ok.example","IDENTIFIER":"listed@b.c"}"#
            )
            .as_deref(),
            Some("listed@b.c")
        );
        assert_eq!(
            identifier(JSON, br#"{"identifier":"a@b.c","identifier":"c@d.e"}"#).as_deref(),
            Some("c@d.e")
        );
        assert_eq!(
            identifier(
                JSON,
                "{\"password_identifier\":\"x@y.z\",\"paſſword_identifier\":\"listed@b.c\"}"
                    .as_bytes()
            )
            .as_deref(),
            Some("listed@b.c")
        );
        assert_eq!(
            identifier(JSON, br#"{"identifier":"listed@b.c","Identifier":null}"#).as_deref(),
            Some("listed@b.c")
        );
        assert_eq!(
            identifier(JSON, r#"{"identifıer":"x@y.z"}"#.as_bytes()),
            None,
            "dotless i does not fold"
        );
        // Longer than any field name: no field.
        assert_eq!(
            identifier(
                JSON,
                br#"{"identifier":"listed@b.c","password_identifierx":"x@y.z","identifierx":"x@y.z"}"#
            )
            .as_deref(),
            Some("listed@b.c")
        );
        // Escaped keys and values read as Go decodes them.
        assert_eq!(
            identifier(JSON, br#"{"identifier":"x@y.z","identifier":"listed@b.c"}"#).as_deref(),
            Some("listed@b.c")
        );
    }

    #[test]
    fn recovery_submissions_name_the_address_and_the_code_step() {
        let sent = fields(
            "application/json",
            br#"{"method":"code","email":"Listed@B.C","transient_payload":{"email":"x@y.z"}}"#,
        )
        .expect("r");
        assert_eq!(sent.email.as_deref(), Some("Listed@B.C"));
        assert!(!sent.has_code);
        let code = fields(
            "application/x-www-form-urlencoded",
            b"method=code&code=123456",
        )
        .expect("r");
        assert!(code.has_code);
        assert_eq!(code.email, None);
    }
}
