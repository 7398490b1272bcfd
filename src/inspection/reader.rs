//! One pass over a response body and no tree: session tokens are found anywhere (a
//! credential is a credential wherever it sits), but evidence of whose they are is read only
//! at positions Kratos fills from its own records (CONTRACT.md §14):
//!
//! | response kind (api.json)                         | positions read                       |
//! |--------------------------------------------------|--------------------------------------|
//! | `successfulNativeLogin`, token exchange, SPA 200 | `session.id`, `session.identity.id`, `session_token` |
//! | `successfulNativeRegistration`                   | the above and `identity.id`          |
//! | `settingsFlow`                                   | `identity.id`                        |
//! | any flow                                         | `continue_with[].ory_session_token`  |
//! | `session` (whoami, admin)                        | `id`, `identity.id`, `tokenized`     |
//! | list of sessions (`GET /sessions`)               | each item's `id`, `identity.id`      |
//!
//! All of these are members of the top-level value (or of the top-level array's items).
//! Client input (`transient_payload`, `ui`, `traits`, `metadata_*`) sits below other members
//! and is never read for evidence. Nothing is allocated per object or array: an echoed
//! payload of empty objects costs parse time, not memory. Nesting is bounded at 127 levels.
//!
//! The body is read by a byte scanner that accepts exactly the JSON texts serde_json
//! accepts (RFC 8259: no trailing content, valid escapes and no lone surrogates, no control
//! characters in strings, numbers within `f64`'s range, UTF-8) and decodes a string only
//! where it matters: member names (when they hold escapes) and the values at token and
//! evidence positions. String contents are skipped eight bytes at a time. The reader it
//! replaced, on serde_json's visitors, is kept as the tests' oracle (`oracle.rs`): the same
//! findings and the same refusals over fixtures and their mutations.

use std::borrow::Cow;

use uuid::Uuid;

use crate::util::parse_uuid;

#[cfg(test)]
mod oracle;

/// Distinct tokens kept; beyond this the body only records that there were more.
pub const MAX_TOKENS: usize = 4;
/// Session list items read for evidence; Kratos pages lists far below this.
pub const MAX_LISTED_SESSIONS: usize = 1000;

/// A session at a Kratos-authored position.
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

/// A session token found in a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub value: String,
    /// Found at a Kratos-authored position (`session_token` at the top, or a top-level
    /// `continue_with` item), where the body's own evidence speaks for it.
    pub authored: bool,
}

/// What a JSON body says about sessions.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Findings {
    /// Distinct `session_token` / `ory_session_token` values, wherever they appear (at most
    /// [`MAX_TOKENS`]).
    pub tokens: Vec<Token>,
    /// More distinct tokens than [`MAX_TOKENS`] were present.
    pub too_many_tokens: bool,
    /// A `tokenized` JWT (`whoami?tokenize_as=`) is present: a credential of its own.
    pub tokenized: bool,
    /// Sessions at Kratos-authored positions.
    pub sessions: Vec<SessionRef>,
    /// Identity ids at Kratos-authored positions (the sessions' and a top-level `identity`).
    pub identities: Vec<Uuid>,
    pub shape: Shape,
}

impl Findings {
    /// The body hands out something a client can authenticate with.
    pub fn carries_credential(&self) -> bool {
        !self.tokens.is_empty() || self.too_many_tokens || self.tokenized
    }

    /// The body speaks for a session (credential or not), or Kratos names an identity in it:
    /// public responses that do are answers to that identity's session (settings flows), so
    /// a listed one is refused and its sessions revoked.
    pub fn vouches(&self) -> bool {
        self.carries_credential() || !self.sessions.is_empty() || !self.identities.is_empty()
    }

    fn add_token(&mut self, value: &str, authored: bool) {
        if value.is_empty() {
            return;
        }
        if let Some(t) = self.tokens.iter_mut().find(|t| t.value == value) {
            t.authored |= authored;
            return;
        }
        if self.tokens.len() >= MAX_TOKENS {
            self.too_many_tokens = true;
            return;
        }
        push(
            &mut self.tokens,
            Token {
                value: value.to_owned(),
                authored,
            },
        );
    }

    fn add_identity(&mut self, id: Uuid) {
        if !self.identities.contains(&id) {
            push(&mut self.identities, id);
        }
    }

    fn add_session(&mut self, s: SessionRef) {
        if let Some(id) = s.identity_id {
            self.add_identity(id);
        }
        if !self.sessions.contains(&s) {
            push(&mut self.sessions, s);
        }
    }
}

/// Pushes `item`. The first push allocates room for four, as `Vec`'s growth from empty
/// would for these types, but without going through its growth path (a body has one or
/// two of each).
fn push<T>(items: &mut Vec<T>, item: T) {
    if items.capacity() == 0 {
        *items = Vec::with_capacity(4);
    }
    items.push(item);
}

/// Member names the reader reacts to; everything else is `Other`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    SessionToken,
    Tokenized,
    Session,
    Identity,
    ContinueWith,
    Id,
    /// A member only session objects have (`settingsFlow` has `id` and `identity` too).
    SessionOnly,
    Other,
}

impl Key {
    /// Dispatched on the length first: most names are none of these and cost one compare.
    #[inline(always)]
    fn of(name: &[u8]) -> Key {
        let is = |word: &[u8], key: Key| if name == word { key } else { Key::Other };
        match name.len() {
            2 => is(b"id", Key::Id),
            7 => is(b"session", Key::Session),
            8 => is(b"identity", Key::Identity),
            9 => is(b"tokenized", Key::Tokenized),
            13 if name == b"session_token" => Key::SessionToken,
            13 => is(b"continue_with", Key::ContinueWith),
            16 => is(b"authenticated_at", Key::SessionOnly),
            17 => is(b"ory_session_token", Key::SessionToken),
            22 => is(b"authentication_methods", Key::SessionOnly),
            29 => is(b"authenticator_assurance_level", Key::SessionOnly),
            _ => Key::Other,
        }
    }
}

/// The body is not a JSON text serde_json would accept, or nests too deep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

type Res<T> = Result<T, Malformed>;

/// Nesting levels of arrays and objects entered before the body is refused: serde_json's
/// recursion limit (128 counts down, and reaching 0 fails).
const MAX_DEPTH: u8 = 127;

/// Reads `body` (which starts like JSON). Anything after the first value but white space
/// is an error: Kratos never sends it, and clients differ on whether they read it. The body
/// must be UTF-8 (as JSON text must be): outside strings only ASCII passes the grammar, and
/// a string with other bytes is checked on its own.
pub fn read(body: &[u8]) -> Result<Findings, Malformed> {
    let mut p = Scanner {
        bytes: body,
        at: 0,
        depth: 0,
        f: Findings::default(),
    };
    p.top_level()?;
    p.skip_ws();
    if p.at != body.len() {
        return Err(Malformed);
    }
    Ok(p.f)
}

impl Key {
    /// The lengths of all known names, one bit each.
    const ALL: u32 =
        1 << 2 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 13 | 1 << 16 | 1 << 17 | 1 << 22 | 1 << 29;
    /// The lengths of the names that count below a non-authored position: `tokenized`,
    /// `session_token`, `ory_session_token` (and `continue_with`, which is `session_token`'s
    /// length and counts nothing there).
    const TOKENS: u32 = 1 << 9 | 1 << 13 | 1 << 17;
    /// The length of `id`.
    const ID: u32 = 1 << 2;
    /// The length of `identity`.
    const IDENTITY: u32 = 1 << 8;

    /// The key of the plain member name at `start..end` of `body`: a name of a length
    /// outside `lengths` is `Other` before its bytes are looked at.
    #[inline(always)]
    fn of_plain(body: &[u8], start: usize, end: usize, lengths: u32) -> Key {
        let len = end.wrapping_sub(start);
        if len >= 32 || lengths >> len & 1 == 0 {
            return Key::Other;
        }
        match body.get(start..end) {
            Some(name) => Key::of(name),
            None => Key::Other,
        }
    }

    /// The key of a member name with escapes or bytes outside ASCII.
    #[inline(never)]
    fn of_escaped(raw: &[u8]) -> Key {
        // The longest name the reader knows; a longer one is `Other` whatever it decodes to.
        if raw.len() > 6 * "ory_session_token".len() {
            return Key::Other;
        }
        value(raw, false).map_or(Key::Other, |name| Key::of(name.as_bytes()))
    }
}

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
const BACKSLASHES: u64 = ONES * b'\\' as u64;

/// `x ^ 0x02` in each byte takes the quote to 0x20 and the control characters onto
/// 0x00..=0x1f, and no other byte below 0x21: one subtraction of 0x21 flags all of them.
const fn quotes_or_controls(x: u64) -> u64 {
    (x ^ (ONES * 0x02)).wrapping_sub(ONES * 0x21)
}

/// High bit set at each `"`, `\` or control character in `x` (exact up to the lowest one).
/// Below the lowest, every byte is another ASCII character or a byte with its high bit set:
/// neither subtraction borrows from it, and `!x` clears what the high bytes leave.
const fn specials(x: u64) -> u64 {
    (quotes_or_controls(x) | (x ^ BACKSLASHES).wrapping_sub(ONES)) & !x & HIGHS
}

/// [`specials`], and bytes outside ASCII (exact up to the lowest one): below it, every byte
/// is plain ASCII, which neither subtraction borrows from. A byte with its high bit set
/// keeps it after the xor with the backslash, and the subtraction clears it only from 0xdc,
/// whose `x ^ 0x02 - 0x21` (0xbd) has it.
const fn specials_or_high(x: u64) -> u64 {
    (quotes_or_controls(x) | (x ^ BACKSLASHES).wrapping_sub(ONES)) & HIGHS
}

fn hex_digit(b: u8) -> Option<u16> {
    (b as char).to_digit(16).map(|d| d as u16)
}

/// The value of a string the scanner has validated, from its bytes between the quotes;
/// `plain` as [`Scanner::string`] says.
fn value(raw: &[u8], plain: bool) -> Res<Cow<'_, str>> {
    // `Err` only if the bytes were not UTF-8, which the scanner checked.
    let text = std::str::from_utf8(raw).map_err(|_| Malformed)?;
    Ok(if plain {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(decode(text))
    })
}

/// Decodes the escapes of a string the scanner has validated.
fn decode(raw: &str) -> String {
    let hex = |digits: Option<&str>| {
        digits
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .unwrap_or(0xFFFD)
    };
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((before, after)) = rest.split_once('\\') {
        out.push_str(before);
        let (c, used) = match after.as_bytes().first() {
            Some(b'b') => ('\u{8}', 1),
            Some(b'f') => ('\u{c}', 1),
            Some(b'n') => ('\n', 1),
            Some(b'r') => ('\r', 1),
            Some(b't') => ('\t', 1),
            Some(b'u') => {
                let n = hex(after.get(1..5));
                if (0xD800..0xDC00).contains(&n) {
                    let low = hex(after.get(7..11));
                    let c = 0x10000 + ((n - 0xD800) << 10) + low.wrapping_sub(0xDC00);
                    (char::from_u32(c).unwrap_or('\u{fffd}'), 11)
                } else {
                    (char::from_u32(n).unwrap_or('\u{fffd}'), 5)
                }
            }
            Some(&other) => (char::from(other), 1),
            None => ('\u{fffd}', 0),
        };
        out.push(c);
        rest = after.get(used..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// The end of the white space from `i`: runs of spaces (indentation) eight bytes at a time.
fn white_space_end(b: &[u8], mut i: usize) -> usize {
    loop {
        while let Some(chunk) = b.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let other = u64::from_le_bytes(word) ^ (ONES * b' ' as u64);
            if other != 0 {
                i += (other.trailing_zeros() / 8) as usize;
                break;
            }
            i += 8;
        }
        match b.get(i) {
            Some(b' ' | b'\n' | b'\t' | b'\r') => i += 1,
            _ => return i,
        }
    }
}

/// The cursor over the body, and what was found so far.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: u8,
    f: Findings,
}

impl<'a> Scanner<'a> {
    /// The byte at the cursor; 0 at the end (where a NUL byte could stand, it is an error
    /// too).
    #[inline(always)]
    fn peek(&self) -> u8 {
        self.bytes.get(self.at).copied().unwrap_or(0)
    }

    /// Skips white space; returns the byte after it (0 at the end). Compact JSON has none:
    /// a byte above the space is returned at once.
    #[inline(always)]
    fn skip_ws(&mut self) -> u8 {
        let c = self.peek();
        if c > b' ' {
            c
        } else {
            self.skip_ws_at(c)
        }
    }

    fn skip_ws_at(&mut self, c: u8) -> u8 {
        if let b' ' | b'\n' | b'\t' | b'\r' = c {
            self.at = white_space_end(self.bytes, self.at + 1);
            self.peek()
        } else {
            c
        }
    }

    /// The string at the cursor (its opening quote), validated and consumed; `true` when it
    /// is plain: ASCII without escapes, its bytes are its value. Plain ASCII is skipped
    /// here, eight bytes at a time; anything else is [`Scanner::string_rest`]'s.
    #[inline(always)]
    fn string(&mut self) -> Res<bool> {
        let b = self.bytes;
        let mut i = self.at + 1;
        if let Some(last) = b.len().checked_sub(8) {
            // `last` is the last index a whole word starts at.
            while i <= last {
                let Some(chunk) = b.get(i..).and_then(<[u8]>::first_chunk::<8>) else {
                    break;
                };
                let found = specials_or_high(u64::from_le_bytes(*chunk));
                if found != 0 {
                    let k = (found.trailing_zeros() / 8) as usize;
                    if chunk.get(k) == Some(&b'"') {
                        self.at = i + k + 1;
                        return Ok(true);
                    }
                    return self.string_rest(i + k);
                }
                i += 8;
            }
        }
        self.string_rest(i)
    }

    /// The rest of the string at the cursor from `i`: escapes, bytes outside ASCII (the
    /// string is then checked to be UTF-8), control characters, the body's last bytes.
    #[inline(never)]
    fn string_rest(&mut self, mut i: usize) -> Res<bool> {
        let b = self.bytes;
        let start = self.at + 1;
        let mut escaped = false;
        loop {
            while let Some(chunk) = b.get(i..i + 8) {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                let found = specials(u64::from_le_bytes(word));
                if found != 0 {
                    i += (found.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match *b.get(i).ok_or(Malformed)? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i = self.escape(i + 1)?;
                }
                c if c < 0x20 => return Err(Malformed),
                _ => i += 1,
            }
        }
        let bytes = b.get(start..i).ok_or(Malformed)?;
        let ascii = bytes.is_ascii();
        if !ascii && std::str::from_utf8(bytes).is_err() {
            return Err(Malformed);
        }
        self.at = i + 1;
        Ok(ascii && !escaped)
    }

    /// The bytes between the quotes of the string just consumed, which opened at `start`.
    #[inline(always)]
    fn contents(&self, start: usize) -> &'a [u8] {
        self.bytes.get(start + 1..self.at - 1).unwrap_or_default()
    }

    /// Validates the escape whose letter is at `i`; returns the index after it.
    fn escape(&self, i: usize) -> Res<usize> {
        let b = self.bytes;
        let hex = |at: usize| -> Res<u16> {
            let digits = b.get(at..at + 4).ok_or(Malformed)?;
            digits.iter().try_fold(0u16, |n, &d| {
                hex_digit(d).map(|d| n << 4 | d).ok_or(Malformed)
            })
        };
        match *b.get(i).ok_or(Malformed)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(i + 1),
            b'u' => {
                let n = hex(i + 1)?;
                match n {
                    0xDC00..=0xDFFF => Err(Malformed),
                    0xD800..=0xDBFF => {
                        if b.get(i + 5..i + 7) != Some(b"\\u") {
                            return Err(Malformed);
                        }
                        match hex(i + 7)? {
                            0xDC00..=0xDFFF => Ok(i + 11),
                            _ => Err(Malformed),
                        }
                    }
                    _ => Ok(i + 5),
                }
            }
            _ => Err(Malformed),
        }
    }

    /// A number, `true`, `false` or `null` at the cursor; anything else is an error.
    fn scalar(&mut self) -> Res<()> {
        let b = self.bytes;
        let literal = |word: &[u8]| {
            if b.get(self.at..self.at + word.len()) == Some(word) {
                Ok(self.at + word.len())
            } else {
                Err(Malformed)
            }
        };
        self.at = match b.get(self.at) {
            Some(b't') => literal(b"true")?,
            Some(b'f') => literal(b"false")?,
            Some(b'n') => literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(Malformed),
        };
        Ok(())
    }

    /// Validates the number at the cursor; returns the index after it. A number that may
    /// be out of `f64`'s range (an exponent, or over 300 integer digits) is given to
    /// serde_json, whose range check is the one that counts.
    #[inline(never)]
    fn number(&self) -> Res<usize> {
        let b = self.bytes;
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let start = self.at;
        let mut i = start + usize::from(b.get(start) == Some(&b'-'));
        let int_start = i;
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if b.get(i).is_some_and(u8::is_ascii_digit) {
                    return Err(Malformed);
                }
            }
            Some(b'1'..=b'9') => i = digits(i),
            _ => return Err(Malformed),
        }
        let mut risky = i - int_start > 300;
        if b.get(i) == Some(&b'.') {
            let from = i + 1;
            i = digits(from);
            if i == from {
                return Err(Malformed);
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let from = i;
            i = digits(from);
            if i == from {
                return Err(Malformed);
            }
            risky = true;
        }
        if risky && serde_json::from_slice::<f64>(b.get(start..i).ok_or(Malformed)?).is_err() {
            return Err(Malformed);
        }
        Ok(i)
    }

    /// Enters the array or object whose bracket is at the cursor.
    #[inline(always)]
    fn enter(&mut self) -> Res<()> {
        self.at += 1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Malformed);
        }
        Ok(())
    }

    /// After an item or a member: `true` past a comma, `false` past `close` (the container
    /// is left).
    #[inline(always)]
    fn more(&mut self, close: u8) -> Res<bool> {
        let c = self.skip_ws();
        self.at += 1;
        if c == b',' {
            Ok(true)
        } else if c == close {
            self.depth -= 1;
            Ok(false)
        } else {
            Err(Malformed)
        }
    }

    /// A member's name (its opening quote at the cursor) and the colon after it.
    #[inline(always)]
    fn name(&mut self, lengths: u32) -> Res<Key> {
        let start = self.at;
        let key = if self.string()? {
            Key::of_plain(self.bytes, start + 1, self.at - 1, lengths)
        } else {
            Key::of_escaped(self.contents(start))
        };
        if self.skip_ws() != b':' {
            return Err(Malformed);
        }
        self.at += 1;
        Ok(key)
    }

    /// The members of the object at the cursor: `member` is called with each name's key
    /// and the cursor before its value, which it must consume.
    #[inline(always)]
    fn object(&mut self, member: impl FnMut(&mut Self, Key) -> Res<()>) -> Res<()> {
        self.object_of_keys(Key::ALL, member)
    }

    /// [`Scanner::object`], where only names of the `lengths` matter: the others are `Other`.
    #[inline(always)]
    fn object_of_keys(
        &mut self,
        lengths: u32,
        mut member: impl FnMut(&mut Self, Key) -> Res<()>,
    ) -> Res<()> {
        self.enter()?;
        let mut c = self.skip_ws();
        if c == b'}' {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if c != b'"' {
                return Err(Malformed);
            }
            let key = self.name(lengths)?;
            member(self, key)?;
            if !self.more(b'}')? {
                return Ok(());
            }
            c = self.skip_ws();
        }
    }

    /// The items of the array at the cursor: `item` is called with the cursor before each.
    #[inline(always)]
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Res<()>) -> Res<()> {
        self.enter()?;
        if self.skip_ws() == b']' {
            self.at += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            item(self)?;
            if !self.more(b']')? {
                return Ok(());
            }
        }
    }

    /// Any value below a non-authored position: finds tokens and `tokenized`, reads no
    /// evidence. A string is skipped here; arrays and objects are [`Scanner::scan_nested`]'s.
    #[inline(always)]
    fn scan(&mut self) -> Res<()> {
        match self.skip_ws() {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.scan_nested(),
            _ => self.scalar(),
        }
    }

    /// The array or object at the cursor, below a non-authored position.
    #[inline(never)]
    fn scan_nested(&mut self) -> Res<()> {
        if self.peek() == b'{' {
            self.object_of_keys(Key::TOKENS, Self::scan_member)
        } else {
            self.array(Self::scan)
        }
    }

    /// A member at a position that is not evidence: its tokens still count.
    #[inline(always)]
    fn scan_member(&mut self, key: Key) -> Res<()> {
        match key {
            Key::SessionToken => self.text(|f, v| f.add_token(v, false)),
            Key::Tokenized => self.text(|f, v| f.tokenized |= !v.is_empty()),
            _ => self.scan(),
        }
    }

    /// Calls `on_text` with a string value, or scans any other value.
    fn text(&mut self, on_text: impl FnOnce(&mut Findings, &str)) -> Res<()> {
        if self.skip_ws() == b'"' {
            let start = self.at;
            let plain = self.string()?;
            let v = value(self.contents(start), plain)?;
            on_text(&mut self.f, &v);
            Ok(())
        } else {
            self.scan()
        }
    }

    /// The value of an `id` member as a UUID (tokens in a non-string value still count).
    fn id(&mut self) -> Res<Option<Uuid>> {
        if self.skip_ws() != b'"' {
            return self.scan().map(|()| None);
        }
        let start = self.at;
        if self.string()? {
            return Ok(uuid_of_ascii(self.contents(start)));
        }
        Ok(parse_uuid(&value(self.contents(start), false)?))
    }

    /// A value read by `read` when it is an object; any other value yields the default,
    /// after its tokens were found.
    #[inline(always)]
    fn object_of<T: Default>(&mut self, read: impl FnOnce(&mut Self) -> Res<T>) -> Res<T> {
        if self.skip_ws() == b'{' {
            read(self)
        } else {
            self.scan().map(|()| T::default())
        }
    }

    /// The `id` member of an identity object; `None` for `null`, a non-object or no id.
    /// Below the id, everything is the identity's own data (traits, metadata), possibly
    /// user-written: scanned for tokens only.
    fn identity_id(&mut self) -> Res<Option<Uuid>> {
        self.object_of(|p| {
            let mut id = None;
            p.object_of_keys(Key::TOKENS | Key::ID, |p, key| match key {
                Key::Id => p.id().map(|v| id = v),
                other => p.scan_member(other),
            })?;
            Ok(id)
        })
    }

    /// A `session` member: its `id` and `identity.id`; `None` when it is not an object.
    fn session(&mut self) -> Res<Option<SessionRef>> {
        self.object_of(|p| {
            let mut s = SessionRef {
                id: None,
                identity_id: None,
            };
            p.object_of_keys(Key::TOKENS | Key::ID | Key::IDENTITY, |p, key| match key {
                Key::Id => p.id().map(|v| s.id = v),
                Key::Identity => p.identity_id().map(|v| s.identity_id = v),
                other => p.scan_member(other),
            })?;
            Ok(Some(s))
        })
    }

    /// A top-level `continue_with`: its items' `ory_session_token` are Kratos's.
    fn continue_with(&mut self) -> Res<()> {
        if self.skip_ws() != b'[' {
            return self.scan();
        }
        self.array(|p| {
            p.object_of(|p| {
                p.object_of_keys(Key::TOKENS, |p, key| match key {
                    Key::SessionToken => p.text(|f, v| f.add_token(v, true)),
                    other => p.scan_member(other),
                })
            })
        })
    }

    /// An item of a top-level array: a session (its `id`, `identity.id` and a session-only
    /// member), or something else. Tokens are still found anywhere; nothing else is
    /// evidence.
    fn list_item(&mut self) -> Res<Option<SessionRef>> {
        self.object_of(|p| {
            let mut m = Members::default();
            p.object(|p, key| match key {
                Key::Id => {
                    m.has_id = true;
                    p.id().map(|v| m.id = v)
                }
                Key::Identity => p.identity_id().map(|v| m.identity = Some(v)),
                Key::SessionOnly => {
                    m.session_only = true;
                    p.scan()
                }
                other => p.scan_member(other),
            })?;
            Ok(m.is_session().then_some(SessionRef {
                id: m.id,
                identity_id: m.identity.flatten(),
            }))
        })
    }

    /// The members of a top-level object: the authored positions, and a scan of the rest.
    fn authored_object(&mut self) -> Res<Members> {
        let mut m = Members::default();
        self.object(|p, key| match key {
            Key::SessionToken => p.text(|f, v| f.add_token(v, true)),
            Key::Id => {
                m.has_id = true;
                p.id().map(|v| m.id = v)
            }
            Key::Identity => p.identity_id().map(|v| m.identity = Some(v)),
            Key::Session => {
                if let Some(s) = p.session()? {
                    p.f.add_session(s);
                }
                Ok(())
            }
            Key::ContinueWith => p.continue_with(),
            Key::SessionOnly => {
                m.session_only = true;
                p.scan()
            }
            other => p.scan_member(other),
        })?;
        Ok(m)
    }

    /// The top-level value: an object of a known response kind, or a list of sessions.
    fn top_level(&mut self) -> Res<()> {
        match self.skip_ws() {
            b'{' => {
                let top = self.authored_object()?;
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
            b'[' => {
                let mut items = 0usize;
                let mut all_sessions = true;
                self.array(|p| {
                    let item = p.list_item()?;
                    items += 1;
                    match item {
                        Some(s) if items <= MAX_LISTED_SESSIONS => p.f.add_session(s),
                        Some(_) => {}
                        None => all_sessions = false,
                    }
                    Ok(())
                })?;
                if items > 0 && all_sessions {
                    self.f.shape = Shape::SessionList;
                }
                Ok(())
            }
            b'"' => self.string().map(drop),
            _ => self.scalar(),
        }
    }
}

/// `parse_uuid` of ASCII text without escapes or control characters, whose only white
/// space can be spaces: read from the bytes, with no UTF-8 check.
fn uuid_of_ascii(bytes: &[u8]) -> Option<Uuid> {
    // At 36 bytes already, white space at either end would leave fewer after the trim, and
    // is not a hex digit or a hyphen: no id either way.
    let t = if bytes.len() == 36 {
        bytes
    } else {
        bytes.trim_ascii()
    };
    if t.len() != 36 {
        return None;
    }
    Uuid::try_parse_ascii(t).ok()
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

#[cfg(test)]
mod tests {
    //! The scanner against the serde reader it replaced: for every body, the same findings,
    //! or both refuse it.

    use super::*;

    /// Compares both readers on `body`; `true` when the body was accepted.
    fn same(body: &[u8]) -> bool {
        let new = read(body);
        let old = oracle::read(body);
        match (&new, &old) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    a,
                    b,
                    "findings differ on {:?}",
                    String::from_utf8_lossy(body)
                );
                true
            }
            (Err(_), Err(_)) => false,
            _ => panic!(
                "scanner {new:?}, oracle {old:?} on {:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }

    /// xorshift64*: the same bodies on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    const ID: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
    const SID: &str = "7efedf89-4dda-4636-8320-7506e58db1a3";

    fn fixtures() -> Vec<Vec<u8>> {
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kratos"
        ))];
        // The shared copy of the Kratos fixtures, where the workspace has it.
        let shared =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kratos/fixtures");
        if shared.is_dir() {
            dirs.push(shared);
        }
        let mut out = Vec::new();
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("fixtures") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    out.push(std::fs::read(&path).expect("fixture"));
                }
            }
        }
        out
    }

    /// Member names, spelled plainly and with escapes.
    const KEYS: &[&str] = &[
        "session_token",
        "ory_session_token",
        "session\\u005ftoken",
        "\\u0073ession_token",
        "ory_session\\u005Ftoken",
        "tokenized",
        "tokeniz\\u0065d",
        "session",
        "sessio\\u006e",
        "identity",
        "identit\\u0079",
        "continue_with",
        "continue\\u005fwith",
        "id",
        "\\u0069d",
        "authenticated_at",
        "authenticator_assurance_level",
        "authentication_methods",
        "transient_payload",
        "ui",
        "traits",
        "nodes",
        "value",
        "x",
        "",
        "session_token\\u0000",
        "ib",
        "sessiom",
        "continue_wiht",
        "ory_session_tokem",
        "authenticated_on",
        "\\ud83d\\ude00",
        "\\\"id",
        "sessión",
    ];

    /// String values: ids in several spellings, tokens, escapes.
    const STRINGS: &[&str] = &[
        ID,
        SID,
        "5FF66179-C240-4703-B0D8-494592CEFFF5",
        "{5ff66179-c240-4703-b0d8-494592cefff5}",
        "urn:uuid:7efedf89-4dda-4636-8320-7506e58db1a3",
        "5ff66179c2404703b0d8494592cefff5",
        " 5ff66179-c240-4703-b0d8-494592cefff5  ",
        "\\t5ff66179-c240-4703-b0d8-494592cefff5\\u000b",
        "\\u00a05ff66179-c240-4703-b0d8-494592cefff5",
        "\u{3000}5ff66179-c240-4703-b0d8-494592cefff5",
        "5ff66179-c240-4703-b0d8-494592cefff5 x",
        "5ff66179-c240-4703-b0d8-494592cefff\\u0035",
        "ory_st_a",
        "ory_st_b",
        "ory_st_c",
        "ory_st_d",
        "ory_st_e",
        "ory_st_\\u00e9\\ud83d\\ude00",
        "ory_st_\\n\\t\\\\\\/\\b\\f\\r\\\"",
        "",
        "aal1",
        "eyJhbGciOi.tokenized.jwt",
        "ory_st_é",
        "Ünïcödé-ünïcödé-ünïcödé \u{7f}",
        "名前",
    ];

    const SCALARS: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-12.5e3",
        "1e400",
        "1e-400",
        "3.14",
        "18446744073709551616",
        "-9223372036854775809",
    ];

    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        let roll = if depth > 6 {
            rng.below(4)
        } else {
            rng.below(7)
        };
        match roll {
            0 | 1 => {
                out.push('"');
                out.push_str(rng.pick(STRINGS));
                out.push('"');
            }
            2 => out.push_str(rng.pick(SCALARS)),
            3 => out.push_str(rng.pick(&["{}", "[]", "null"])),
            4 | 5 => object(rng, depth + 1, out),
            _ => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    value(rng, depth + 1, out);
                }
                out.push(']');
            }
        }
    }

    fn object(rng: &mut Rng, depth: usize, out: &mut String) {
        out.push('{');
        for i in 0..rng.below(6) {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            out.push_str(rng.pick(KEYS));
            out.push_str(rng.pick(&["\":", "\" : ", "\"\n:\t"]));
            value(rng, depth, out);
        }
        out.push('}');
    }

    /// A body shaped like Kratos's answers (a session, a login, a list), random elsewhere.
    fn generated(rng: &mut Rng) -> String {
        let mut out = String::new();
        match rng.below(4) {
            0 => object(rng, 0, &mut out),
            1 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    if rng.below(3) == 0 {
                        value(rng, 1, &mut out);
                    } else {
                        session_like(rng, &mut out);
                    }
                }
                out.push(']');
            }
            2 => session_like(rng, &mut out),
            _ => {
                out.push_str("{\"session_token\":\"ory_st_a\",\"session\":");
                session_like(rng, &mut out);
                out.push_str(",\"continue_with\":[{\"ory_session_token\":\"ory_st_b\"},");
                value(rng, 1, &mut out);
                out.push_str("],\"transient_payload\":");
                value(rng, 1, &mut out);
                out.push('}');
            }
        }
        out
    }

    fn session_like(rng: &mut Rng, out: &mut String) {
        out.push_str(&format!("{{\"id\":\"{SID}\""));
        if rng.below(4) != 0 {
            out.push_str(",\"authenticated_at\":\"2026-08-01T10:00:00Z\"");
        }
        match rng.below(4) {
            0 => {}
            1 => out.push_str(",\"identity\":null"),
            2 => {
                out.push_str(&format!(",\"identity\":{{\"id\":\"{ID}\",\"traits\":"));
                value(rng, 2, out);
                out.push('}');
            }
            _ => {
                out.push_str(",\"identity\":");
                value(rng, 2, out);
            }
        }
        if rng.below(2) == 0 {
            out.push_str(",\"devices\":");
            value(rng, 2, out);
        }
        out.push('}');
    }

    /// Bytes and snippets a mutation writes into a body.
    const SNIPPETS: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b" ",
        b"\x00",
        b"\x1f",
        b"\t",
        b"\x7f",
        b"\xff",
        b"\xc3\xa9",
        b"\xef\xbb\xbf",
        b"e",
        b"E",
        b"-",
        b"+",
        b"0",
        b".",
        b"\\u",
        b"\\u005f",
        b"\\ud800",
        b"\\udc00",
        b"\\ud800\\udc00",
        b"\\ud800\\u0041",
        b"\\x",
        b"\\U0041",
        b"1e400",
        b"1e-400",
        b"01",
        b"-",
        b"tru",
        b"nul",
        b"NaN",
        b"Infinity",
        b"\"session_token\":\"ory_st_z\",",
        b"\"session\\u005ftoken\":\"ory_st_y\",",
        b"\"id\":\"7efedf89-4dda-4636-8320-7506e58db1a3\",",
        b"\"identity\":null,",
        b"\"authenticated_at\":1,",
        b"\"tokenized\":\"t\",",
        b"garbage",
    ];

    fn mutate(rng: &mut Rng, body: &[u8]) -> Vec<u8> {
        let mut b = body.to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(b.len() + 1);
            match rng.below(5) {
                0 if at < b.len() => b[at] = rng.next() as u8,
                1 => b.truncate(at),
                2 => {
                    let end = (at + rng.below(16)).min(b.len());
                    b.drain(at..end);
                }
                _ => {
                    let s = rng.pick(SNIPPETS);
                    b.splice(at..at, s.iter().copied());
                }
            }
        }
        b
    }

    #[test]
    fn fixtures_and_their_mutations_read_as_the_serde_reader_reads_them() {
        let fixtures = fixtures();
        assert!(fixtures.len() >= 19, "{} fixtures", fixtures.len());
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut accepted, mut refused) = (0, 0);
        for body in &fixtures {
            assert!(same(body), "a fixture is refused");
            for _ in 0..400 {
                if same(&mutate(&mut rng, body)) {
                    accepted += 1;
                } else {
                    refused += 1;
                }
            }
        }
        // Both outcomes are exercised in numbers.
        assert!(
            accepted > 1000 && refused > 1000,
            "{accepted} accepted, {refused} refused"
        );
    }

    #[test]
    fn generated_bodies_and_their_mutations_read_as_the_serde_reader_reads_them() {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        let (mut accepted, mut vouching, mut refused) = (0, 0, 0);
        for _ in 0..20_000 {
            let body = generated(&mut rng);
            if same(body.as_bytes()) {
                accepted += 1;
                vouching += usize::from(read(body.as_bytes()).is_ok_and(|f| f.vouches()));
            } else {
                refused += 1;
            }
            for _ in 0..2 {
                if !same(&mutate(&mut rng, body.as_bytes())) {
                    refused += 1;
                }
            }
        }
        assert!(
            accepted > 5000 && vouching > 2000 && refused > 5000,
            "{accepted} {vouching} {refused}"
        );
    }

    #[test]
    fn edge_cases_read_as_the_serde_reader_reads_them() {
        let t = r#""session_token":"ory_st_a""#;
        let mut bodies: Vec<String> = vec![
            String::new(),
            " ".into(),
            "\u{feff}{}".into(),
            format!("{{{t}}} x"),
            format!("{{{t}}}\n\t\r "),
            format!("{{{t}}}{{}}"),
            format!("[{{{t}}}]"),
            format!("{{{t},}}"),
            format!("[{{{t}}},]"),
            format!("{{{t} 1}}"),
            r#"{"session\u005ftoken":"ory_st_esc","\u0073ession_token":"ory_st_esc2"}"#.into(),
            r#"{"session_token":"ory_st_a","session_token":"ory_st_b","session_token":"ory_st_a"}"#
                .into(),
            r#"{"session_token":"\ud800"}"#.into(),
            r#"{"session_token":"\udc00"}"#.into(),
            r#"{"session_token":"\ud800\udc00"}"#.into(),
            r#"{"session_token":"\ud800\ud800\udc00"}"#.into(),
            r#"{"session_token":"\ud800x"}"#.into(),
            r#"{"session_token":"\ud800\n"}"#.into(),
            r#"{"session_token":"\u00"}"#.into(),
            r#"{"session_token":"\u00g0"}"#.into(),
            r#"{"session_token":"\a"}"#.into(),
            "{\"session_token\":\"a\tb\"}".into(),
            "{\"session_token\":\"a\u{7f}b\"}".into(),
            format!("{{{t},\"n\":1e308}}"),
            format!("{{{t},\"n\":1.7976931348623157e308}}"),
            format!("{{{t},\"n\":1.7976931348623159e308}}"),
            format!("{{{t},\"n\":1.8e308}}"),
            format!("{{{t},\"n\":-1e309}}"),
            format!("{{{t},\"n\":1e-99999999999}}"),
            format!("{{{t},\"n\":1e99999999999}}"),
            format!("{{{t},\"n\":0e99999999999}}"),
            format!("{{{t},\"n\":{}}}", "9".repeat(308)),
            format!("{{{t},\"n\":{}}}", "9".repeat(309)),
            format!("{{{t},\"n\":{}.5}}", "1".repeat(300)),
            format!("{{{t},\"n\":0.{}}}", "0".repeat(1000)),
            format!("{{{t},\"n\":01}}"),
            format!("{{{t},\"n\":-}}"),
            format!("{{{t},\"n\":1.}}"),
            format!("{{{t},\"n\":1e+}}"),
            format!("{{{t},\"n\":.5}}"),
            format!("{{{t},\"n\":+1}}"),
            format!("{{{t},\"n\":-0.0E+0}}"),
            format!("{{{t},\"n\":nul}}"),
            format!("{{{t},\"n\":True}}"),
            format!("{{{t},1:2}}"),
            format!(
                r#"{{"transient_payload":{{"session":{{"id":"{SID}","identity":{{"id":"{ID}"}}}},"identity":{{"id":"{ID}"}}}},"ui":{{"nodes":[{{"attributes":{{"value":"ory_st_x","session_token":"ory_st_ui"}}}}]}},"traits":{{"tokenized":"jwt"}}}}"#
            ),
            format!(r#"{{"id":"{SID}","identity":null,"authenticated_at":"x","tokenized":"jwt"}}"#),
            format!(
                r#"{{"id":"{SID}","id":"nope","identity":{{"id":"{ID}"}},"identity":[],"devices":[],"authentication_methods":[]}}"#
            ),
            format!(
                r#"[{{"id":"{SID}","identity":{{"id":"{ID}"}},"authenticated_at":"x"}},{{"id":"{SID}","identity":null,"authenticator_assurance_level":"aal1"}}]"#
            ),
            format!(r#"[{{"id":"{SID}","identity":{{"id":"{ID}"}},"authenticated_at":"x"}},"x"]"#),
            format!(
                r#"{{"continue_with":{{"ory_session_token":"ory_st_map"}},"session":[{{"id":"{SID}"}}],"identity":"{ID}"}}"#
            ),
            format!(
                r#"{{"continue_with":[[{{"ory_session_token":"ory_st_nested"}}],"x",{{"ory_session_token":{{"session_token":"ory_st_deep"}}}}]}}"#
            ),
        ];
        // Nesting at and past the limit, of arrays and of objects, with a token inside.
        for n in [1, 126, 127, 128, 129, 200] {
            bodies.push(format!("{}{}", "[".repeat(n), "]".repeat(n)));
            bodies.push(format!("{}{{{t}}}{}", "[".repeat(n - 1), "]".repeat(n - 1)));
            bodies.push(format!(
                "{}{{{t}}}{}",
                "{\"a\":".repeat(n - 1),
                "}".repeat(n - 1)
            ));
            bodies.push(format!(
                "{{{t},\"transient_payload\":{}{}}}",
                "[".repeat(n),
                "]".repeat(n)
            ));
        }
        let mut accepted = 0;
        for body in &bodies {
            accepted += usize::from(same(body.as_bytes()));
        }
        for bytes in [
            &b"{\"session_token\":\"ory_st_a\",\"x\":\"\xff\"}"[..],
            b"{\"session_token\":\"ory_st_a\"}\n\xc3",
            b"\xef\xbb\xbf{\"session_token\":\"ory_st_a\"}",
            b"{\"session_token\":\"ory_st_a\x00\"}",
        ] {
            assert!(!same(bytes));
        }
        assert!(accepted > 20, "{accepted} of {} accepted", bodies.len());
    }

    /// The index of the lowest byte of `x` that `flagged` says is one, byte by byte.
    fn lowest(x: u64, flagged: impl Fn(u8) -> bool) -> Option<usize> {
        x.to_le_bytes().iter().position(|&b| flagged(b))
    }

    fn special(b: u8) -> bool {
        b == b'"' || b == b'\\' || b < 0x20
    }

    /// The lowest flagged byte of a word-at-a-time formula, as the scanner reads it.
    fn lowest_flag(found: u64) -> Option<usize> {
        (found != 0).then(|| (found.trailing_zeros() / 8) as usize)
    }

    fn check_word(x: u64) {
        assert_eq!(
            lowest_flag(specials(x)),
            lowest(x, special),
            "specials({x:#018x})"
        );
        assert_eq!(
            lowest_flag(specials_or_high(x)),
            lowest(x, |b| special(b) || b >= 0x80),
            "specials_or_high({x:#018x})"
        );
    }

    #[test]
    fn the_first_push_makes_the_room_vecs_growth_would() {
        // The growth of an empty Vec by one push is what is compared.
        #[allow(clippy::vec_init_then_push)]
        fn check<T: Clone>(item: T) {
            let mut grown = Vec::new();
            grown.push(item.clone());
            let mut ours = Vec::new();
            push(&mut ours, item);
            assert_eq!(ours.capacity(), grown.capacity());
        }
        check(Token {
            value: "ory_st_a".into(),
            authored: true,
        });
        check(Uuid::nil());
        check(SessionRef {
            id: None,
            identity_id: None,
        });
    }

    #[test]
    fn ids_are_read_from_plain_bytes_as_parse_uuid_reads_them() {
        for text in [
            ID,
            SID,
            " 5ff66179-c240-4703-b0d8-494592cefff5",
            "5ff66179-c240-4703-b0d8-494592cefff5   ",
            "5FF66179-C240-4703-B0D8-494592CEFFF5",
            "5ff66179c2404703b0d8494592cefff5",
            "{5ff66179-c240-4703-b0d8-494592cefff5}",
            "5ff66179-c240-4703-b0d8-494592cefffg",
            "5ff66179-c240-4703-b0d8_494592cefff5",
            "5ff66179-c240-4703-b0d8-494592cefff",
            " 5ff66179-c240-4703-b0d8-494592cefff",
            "5ff66179-c240-4703-b0d8-494592cefff ",
            "",
            " ",
        ] {
            assert_eq!(uuid_of_ascii(text.as_bytes()), parse_uuid(text), "{text:?}");
        }
    }

    #[test]
    fn word_at_a_time_flags_find_the_lowest_special_byte() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        // Every byte value at every position, below it bytes that are not flagged (plain
        // ASCII, and for `specials` bytes outside ASCII too), above it anything.
        for at in 0..8 {
            for v in 0..=255u8 {
                for _ in 0..64 {
                    let mut bytes = rng.next().to_le_bytes();
                    for b in &mut bytes[..at] {
                        *b = match rng.below(3) {
                            0 => 0x20 + (rng.next() % 0x60) as u8,
                            1 => 0x80 | rng.next() as u8,
                            _ => rng.pick(b" #[]{}~\x7f!"),
                        };
                        if special(*b) {
                            *b = b'a';
                        }
                    }
                    bytes[at] = v;
                    check_word(u64::from_le_bytes(bytes));
                }
            }
        }
        // Every pair of bytes in the two lowest positions.
        for pair in 0..=u16::MAX {
            let high = rng.next() & !0xFFFF;
            check_word(high | u64::from(pair));
        }
        // Words of bytes near the edges: the quote, the backslash, 0x20, 0x7f, 0x80.
        let edges: Vec<u8> = (0..=255u8)
            .filter(|b| matches!(b, 0x00..=0x02 | 0x1e..=0x24 | 0x5a..=0x5e | 0x7e..=0x82 | 0xdd | 0xfe | 0xff))
            .collect();
        for _ in 0..200_000 {
            let mut bytes = [0u8; 8];
            for b in &mut bytes {
                *b = rng.pick(&edges);
            }
            check_word(u64::from_le_bytes(bytes));
            check_word(rng.next());
        }
    }

    #[test]
    fn the_depth_limit_is_serde_jsons() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(read(nested(127).as_bytes()).is_ok());
        assert_eq!(read(nested(128).as_bytes()), Err(Malformed));
        assert!(oracle::read(nested(127).as_bytes()).is_ok());
        assert!(oracle::read(nested(128).as_bytes()).is_err());
    }
}
