//! The reader as it was written on serde_json's visitors: kept for tests only, as the oracle
//! the byte scanner in `reader.rs` is compared with (`reader::tests`). Same positions, same
//! findings; errors are only compared as errors.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use uuid::Uuid;

use super::{Findings, Key, SessionRef, Shape, MAX_LISTED_SESSIONS};
use crate::util::parse_uuid;

/// Visitor methods for values that can hold nothing of interest.
macro_rules! scalars {
    () => {
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(Default::default())
        }
    };
}

/// Reads `body` (which starts like JSON). Anything after the first value but white space
/// is an error: Kratos never sends it, and clients differ on whether they read it. The
/// whole body is checked to be UTF-8 once (as JSON text must be, and as serde_json checks
/// each string), so that no string is checked again on its own.
pub fn read(body: &[u8]) -> Result<Findings, serde_json::Error> {
    let body = std::str::from_utf8(body)
        .map_err(|_| <serde_json::Error as serde::de::Error>::custom("not UTF-8"))?;
    read_str(body)
}

fn read_str(body: &str) -> Result<Findings, serde_json::Error> {
    let mut findings = Findings::default();
    let mut de = serde_json::Deserializer::from_str(body);
    de.deserialize_any(TopLevel { f: &mut findings })?;
    de.end()?;
    Ok(findings)
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key::of(v.as_bytes()))
    }
}

/// Calls `on_text` with a string value, or scans any other value.
struct Text<'a, F> {
    f: &'a mut Findings,
    on_text: F,
}

impl<'de, F: FnOnce(&mut Findings, &str)> DeserializeSeed<'de> for Text<'_, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnOnce(&mut Findings, &str)> Visitor<'de> for Text<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        (self.on_text)(self.f, v);
        Ok(())
    }
    scalars!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Scan { f: self.f }.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Scan { f: self.f }.visit_seq(seq)
    }
}

/// Any value below a non-authored position: finds tokens and `tokenized`, reads no evidence.
struct Scan<'a> {
    f: &'a mut Findings,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    scalars!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            scan_member(key, &mut map, self.f)?;
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Scan { f: &mut *self.f })?.is_some() {}
        Ok(())
    }
}

/// A member at a position that is not evidence: its tokens still count.
fn scan_member<'de, A: MapAccess<'de>>(
    key: Key,
    map: &mut A,
    f: &mut Findings,
) -> Result<(), A::Error> {
    match key {
        Key::SessionToken => map.next_value_seed(Text {
            f,
            on_text: |f: &mut Findings, v: &str| f.add_token(v, false),
        }),
        Key::Tokenized => map.next_value_seed(Text {
            f,
            on_text: |f: &mut Findings, v: &str| f.tokenized |= !v.is_empty(),
        }),
        _ => map.next_value_seed(Scan { f }),
    }
}

/// The top-level value: an object of a known response kind, or a list of sessions.
struct TopLevel<'a> {
    f: &'a mut Findings,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array")
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    scalars!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let top = AuthoredObject { f: self.f }.read(map)?;
        if top.is_session() {
            self.f.shape = Shape::Session;
            self.f.add_session(SessionRef {
                id: top.id,
                identity_id: top.identity.flatten(),
            });
        } else if let Some(Some(identity)) = top.identity {
            // `successfulNativeRegistration.identity`, `settingsFlow.identity`.
            self.f.add_identity(identity);
        }
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut items = 0usize;
        let mut all_sessions = true;
        while let Some(item) = seq.next_element_seed(Object(ListItem(&mut *self.f)))? {
            items += 1;
            match item {
                Some(s) if items <= MAX_LISTED_SESSIONS => self.f.add_session(s),
                Some(_) => {}
                None => all_sessions = false,
            }
        }
        if items > 0 && all_sessions {
            self.f.shape = Shape::SessionList;
        }
        Ok(())
    }
}

/// What the members of a top-level object (or list item) said.
#[derive(Default)]
struct Members {
    id: Option<Uuid>,
    has_id: bool,
    /// `identity` member: `Some(None)` when present but `null` or without an id.
    identity: Option<Option<Uuid>>,
    session_only: bool,
}

impl Members {
    /// `id`, an `identity` member (maybe `null`) and a member only sessions have.
    fn is_session(&self) -> bool {
        self.has_id && self.identity.is_some() && self.session_only
    }
}

/// Reads the members of a top-level object: the authored positions, and a scan of the rest.
struct AuthoredObject<'a> {
    f: &'a mut Findings,
}

impl AuthoredObject<'_> {
    fn read<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut m = Members::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::SessionToken => map.next_value_seed(Text {
                    f: &mut *self.f,
                    on_text: |f: &mut Findings, v: &str| f.add_token(v, true),
                })?,
                Key::Id => {
                    m.has_id = true;
                    m.id = read_id(&mut map, self.f)?;
                }
                Key::Identity => {
                    m.identity = Some(map.next_value_seed(Object(IdOf(&mut *self.f)))?)
                }
                Key::Session => {
                    if let Some(s) = map.next_value_seed(Object(SessionOf(&mut *self.f)))? {
                        self.f.add_session(s);
                    }
                }
                Key::ContinueWith => map.next_value_seed(ContinueWith { f: &mut *self.f })?,
                Key::SessionOnly => {
                    m.session_only = true;
                    map.next_value_seed(Scan { f: &mut *self.f })?;
                }
                other => scan_member(other, &mut map, self.f)?,
            }
        }
        Ok(m)
    }
}

/// The value of an `id` member as a UUID (tokens in a non-string value still count).
fn read_id<'de, A: MapAccess<'de>>(
    map: &mut A,
    f: &mut Findings,
) -> Result<Option<Uuid>, A::Error> {
    let mut id = None;
    map.next_value_seed(Text {
        f,
        on_text: |_: &mut Findings, v: &str| id = parse_uuid(v),
    })?;
    Ok(id)
}

/// What reads the members of one kind of object. Any other value where the object is
/// expected yields the default, after its tokens were found.
trait ObjectReader {
    type Out: Default;
    fn findings(&mut self) -> &mut Findings;
    fn read<'de, A: MapAccess<'de>>(self, map: A) -> Result<Self::Out, A::Error>;
}

/// A value read by `R` when it is an object.
struct Object<R>(R);

impl<'de, R: ObjectReader> DeserializeSeed<'de> for Object<R> {
    type Value = R::Out;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<R::Out, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, R: ObjectReader> Visitor<'de> for Object<R> {
    type Value = R::Out;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, _: &str) -> Result<R::Out, E> {
        Ok(R::Out::default())
    }
    scalars!();
    fn visit_seq<A: SeqAccess<'de>>(mut self, seq: A) -> Result<R::Out, A::Error> {
        Scan {
            f: self.0.findings(),
        }
        .visit_seq(seq)
        .map(|()| R::Out::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<R::Out, A::Error> {
        self.0.read(map)
    }
}

/// An item of a top-level array: a session (its `id`, `identity.id` and a session-only
/// member), or something else. Tokens are still found anywhere; nothing else is evidence.
struct ListItem<'a>(&'a mut Findings);

impl ObjectReader for ListItem<'_> {
    type Out = Option<SessionRef>;
    fn findings(&mut self) -> &mut Findings {
        self.0
    }
    fn read<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let mut m = Members::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Id => {
                    m.has_id = true;
                    m.id = read_id(&mut map, self.0)?;
                }
                Key::Identity => {
                    m.identity = Some(map.next_value_seed(Object(IdOf(&mut *self.0)))?)
                }
                Key::SessionOnly => {
                    m.session_only = true;
                    map.next_value_seed(Scan { f: &mut *self.0 })?;
                }
                other => scan_member(other, &mut map, self.0)?,
            }
        }
        Ok(m.is_session().then_some(SessionRef {
            id: m.id,
            identity_id: m.identity.flatten(),
        }))
    }
}

/// The `id` member of an identity object; `None` for `null`, a non-object or no id. Below
/// the id, everything is the identity's own data (traits, metadata), possibly user-written:
/// scanned for tokens only.
struct IdOf<'a>(&'a mut Findings);

impl ObjectReader for IdOf<'_> {
    type Out = Option<Uuid>;
    fn findings(&mut self) -> &mut Findings {
        self.0
    }
    fn read<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let mut id = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Id => id = read_id(&mut map, self.0)?,
                other => scan_member(other, &mut map, self.0)?,
            }
        }
        Ok(id)
    }
}

/// A `session` member: its `id` and `identity.id`; `None` when it is not an object.
struct SessionOf<'a>(&'a mut Findings);

impl ObjectReader for SessionOf<'_> {
    type Out = Option<SessionRef>;
    fn findings(&mut self) -> &mut Findings {
        self.0
    }
    fn read<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Out, A::Error> {
        let mut s = SessionRef {
            id: None,
            identity_id: None,
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Id => s.id = read_id(&mut map, self.0)?,
                Key::Identity => s.identity_id = map.next_value_seed(Object(IdOf(&mut *self.0)))?,
                other => scan_member(other, &mut map, self.0)?,
            }
        }
        Ok(Some(s))
    }
}

/// A top-level `continue_with`: its items' `ory_session_token` are Kratos's.
struct ContinueWith<'a> {
    f: &'a mut Findings,
}

impl<'de> DeserializeSeed<'de> for ContinueWith<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ContinueWith<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of continue_with items")
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    scalars!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        Scan { f: self.f }.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Object(ContinueWithItem(&mut *self.f)))?
            .is_some()
        {}
        Ok(())
    }
}

/// One `continue_with` item: an `ory_session_token` in it is Kratos-authored.
struct ContinueWithItem<'a>(&'a mut Findings);

impl ObjectReader for ContinueWithItem<'_> {
    type Out = ();
    fn findings(&mut self) -> &mut Findings {
        self.0
    }
    fn read<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::SessionToken => map.next_value_seed(Text {
                    f: &mut *self.0,
                    on_text: |f: &mut Findings, v: &str| f.add_token(v, true),
                })?,
                other => scan_member(other, &mut map, self.0)?,
            }
        }
        Ok(())
    }
}
