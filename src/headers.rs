//! Pure header operations. No I/O, no state: each function takes headers and returns or edits
//! them, so each is tested on its own below.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const HOP_COUNT: usize = 9;
const CLIENT_IP_COUNT: usize = 5;

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the non-standard ones proxies still meet). They
/// describe one connection and must not be forwarded; hyper writes its own framing.
static HOP_BY_HOP: [HeaderName; HOP_COUNT] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Client-IP fields Kratos believes blindly for `session.devices` (CONTRACT.md §11), and the
/// location fields it fills from Cloudflare's. Only a trusted proxy may set them.
static CLIENT_IP_HEADERS: [HeaderName; CLIENT_IP_COUNT] = [
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("cf-ipcity"),
    HeaderName::from_static("cf-ipcountry"),
];

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_SESSION_TOKEN: HeaderName = HeaderName::from_static("x-session-token");
pub static IDENTITY_ID_HEADER: HeaderName =
    HeaderName::from_static("x-kratos-authenticated-identity-id");

/// Which of the fields the proxy edits a header map holds, found in one pass over its fields
/// ([`Found::scan`]): each edit then touches only the fields that are there, instead of a
/// lookup or a removal per name (each of which hashes the name).
#[derive(Debug, Clone, Default)]
pub struct Found {
    bits: u32,
    /// The first `Host` value.
    host: Option<HeaderValue>,
    /// The first `X-Request-Id` value.
    request_id: Option<HeaderValue>,
}

/// A bit per field of [`Found`]; the hop-by-hop ones in the order of [`HOP_BY_HOP`], the
/// client-IP ones in the order of [`CLIENT_IP_HEADERS`].
const HOP_BITS: u32 = (1 << HOP_COUNT) - 1;
const CLIENT_IP_SHIFT: usize = HOP_COUNT;
const CLIENT_IP_BITS: u32 = ((1 << CLIENT_IP_COUNT) - 1) << CLIENT_IP_SHIFT;
const XFF: u32 = 1 << 14;
const XFP: u32 = 1 << 15;
const XFH: u32 = 1 << 16;
const HTTP2_SETTINGS: u32 = 1 << 17;
const HOST: u32 = 1 << 18;
/// More than one `Host` field.
const HOST_REPEATED: u32 = 1 << 19;
/// `Connection` lists `upgrade`.
const CONNECTION_UPGRADE: u32 = 1 << 20;
/// `Connection` lists a field outside the fixed hop-by-hop list.
const CONNECTION_NOMINATES: u32 = 1 << 21;
const REQUEST_ID: u32 = 1 << 22;
const CONNECTION: u32 = 1 << 0;
const UPGRADE: u32 = 1 << 8;
const TRANSFER_ENCODING: u32 = 1 << 7;

/// The bit of a field name, 0 for the fields [`Found`] does not track. Names are lowercase
/// in a `HeaderMap`.
fn bit_of(name: &HeaderName) -> u32 {
    match name.as_str() {
        "connection" => CONNECTION,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "proxy-authorization" => 1 << 4,
        "te" => 1 << 5,
        "trailer" => 1 << 6,
        "transfer-encoding" => TRANSFER_ENCODING,
        "upgrade" => UPGRADE,
        "true-client-ip" => 1 << CLIENT_IP_SHIFT,
        "cf-connecting-ip" => 1 << (CLIENT_IP_SHIFT + 1),
        "x-real-ip" => 1 << (CLIENT_IP_SHIFT + 2),
        "cf-ipcity" => 1 << (CLIENT_IP_SHIFT + 3),
        "cf-ipcountry" => 1 << (CLIENT_IP_SHIFT + 4),
        "x-forwarded-for" => XFF,
        "x-forwarded-proto" => XFP,
        "x-forwarded-host" => XFH,
        "http2-settings" => HTTP2_SETTINGS,
        "host" => HOST,
        "x-request-id" => REQUEST_ID,
        _ => 0,
    }
}

/// Whether a `Connection` token names a field of the fixed hop-by-hop list.
fn is_fixed_hop_by_hop(token: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| h.as_str().eq_ignore_ascii_case(token))
}

/// The tokens of every `Connection` value that is visible ASCII, trimmed, empty ones left out.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

impl Found {
    /// One pass over the fields of `headers`.
    pub fn scan(headers: &HeaderMap) -> Found {
        let mut found = Found::default();
        for (name, value) in headers {
            let bit = bit_of(name);
            if bit == 0 {
                continue;
            }
            if bit == REQUEST_ID {
                if found.request_id.is_none() {
                    found.request_id = Some(value.clone());
                }
            } else if bit == HOST {
                if found.host.is_some() {
                    found.bits |= HOST_REPEATED;
                } else {
                    found.host = Some(value.clone());
                }
            } else if bit == CONNECTION {
                let tokens = value.to_str().ok().into_iter().flat_map(|v| v.split(','));
                for token in tokens.map(str::trim).filter(|t| !t.is_empty()) {
                    if token.eq_ignore_ascii_case("upgrade") {
                        found.bits |= CONNECTION_UPGRADE;
                    } else if !is_fixed_hop_by_hop(token) {
                        found.bits |= CONNECTION_NOMINATES;
                    }
                }
            }
            found.bits |= bit;
        }
        found
    }

    /// The client asks to switch protocols (see [`is_upgrade_request`]).
    pub fn upgrade(&self) -> bool {
        self.bits & (UPGRADE | HTTP2_SETTINGS | CONNECTION_UPGRADE) != 0
    }

    /// A `Transfer-Encoding` field is present.
    pub fn transfer_encoding(&self) -> bool {
        self.bits & TRANSFER_ENCODING != 0
    }

    /// The `Host` value, when there is exactly one `Host` field.
    pub fn single_host(&self) -> Option<&HeaderValue> {
        self.host
            .as_ref()
            .filter(|_| self.bits & HOST_REPEATED == 0)
    }

    /// The first `Host` value.
    pub fn host(&self) -> Option<&HeaderValue> {
        self.host.as_ref()
    }

    /// The request's `X-Request-Id`, as [`request_id`] reads it.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_ref().and_then(usable_request_id)
    }

    /// Removes the fields of `mask` that are present, and forgets them.
    fn remove(&mut self, headers: &mut HeaderMap, mask: u32) {
        let mut present = self.bits & mask;
        self.bits &= !mask;
        while present != 0 {
            let i = present.trailing_zeros() as usize;
            present &= present - 1;
            let name = if i < CLIENT_IP_SHIFT {
                HOP_BY_HOP.get(i)
            } else {
                CLIENT_IP_HEADERS.get(i - CLIENT_IP_SHIFT)
            };
            if let Some(name) = name {
                headers.remove(name);
            }
        }
    }
}

/// Removes hop-by-hop fields, including every field named in `Connection`
/// (RFC 9110 §7.6.1: "a proxy MUST ... remove any header field that is nominated by the
/// Connection header field").
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let mut found = Found::scan(headers);
    strip_found_hop_by_hop(headers, &mut found);
}

/// [`strip_hop_by_hop`] with the fields found by [`Found::scan`] of the same map; `found`
/// describes the map afterwards.
pub fn strip_found_hop_by_hop(headers: &mut HeaderMap, found: &mut Found) {
    if found.bits & CONNECTION_NOMINATES != 0 {
        // Rare: a field listed by name. It may be any field, so the map is scanned again.
        let nominated: Vec<HeaderName> = connection_tokens(headers)
            // `keep-alive`, `upgrade`, `te`…: removed below anyway, without a name built here.
            .filter(|name| !is_fixed_hop_by_hop(name))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in nominated {
            headers.remove(name);
        }
        *found = Found::scan(headers);
    }
    found.remove(headers, HOP_BITS);
    found.bits &= !(CONNECTION_UPGRADE | CONNECTION_NOMINATES);
}

/// Removes every field named in `names`. One pass over the names present (a
/// handful) finds which of them are there, and only those are removed: a removal per name
/// hashes each of them (callgrind: 19 removals, about 2,900 instructions of a
/// 56,000-instruction pass-through request).
fn remove_all(headers: &mut HeaderMap, names: &[HeaderName]) {
    // A bit per name; a name past the 64th has none and is always removed.
    let bit = |i: usize| u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i));
    let mut present = 0u64;
    for k in headers.keys() {
        if let Some(b) = names.iter().position(|n| n == k).and_then(bit) {
            present |= b;
        }
    }
    for (i, name) in names.iter().enumerate() {
        if bit(i).is_none_or(|b| present & b != 0) {
            headers.remove(name);
        }
    }
}

/// Joins several `Cookie` fields into one, separated by `"; "`. HTTP/2 clients send each
/// cookie in its own field; RFC 9113 §8.2.3 requires them to be concatenated this way before
/// the request goes on over HTTP/1.1, where a server may read only one `Cookie` line.
pub fn join_cookie_fields(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (values.next(), values.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for v in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(v.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, v);
    }
}

/// True when the client asks to switch protocols (`Upgrade`, including h2c's
/// `Connection: Upgrade, HTTP2-Settings`). Kratos has no use for upgrades, and an h2c upgrade
/// through a proxy tunnels requests past it.
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    Found::scan(headers).upgrade()
}

/// Drops client-IP fields that Kratos would store as the session's device address.
pub fn scrub_client_ip_headers(headers: &mut HeaderMap) {
    remove_all(headers, &CLIENT_IP_HEADERS);
}

/// What the gateway knows about the connection a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub ip: IpAddr,
    /// The peer is one of `forwarding.trusted_proxies`.
    pub trusted: bool,
    /// The request arrived over TLS.
    pub tls: bool,
}

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`.
///
/// From an untrusted peer everything the client sent is replaced: `X-Forwarded-For` becomes
/// the peer address alone and the client-IP fields are dropped. From a trusted proxy its chain
/// is kept and the peer appended, and its `-Proto`/`-Host` stand.
pub fn set_forwarding(headers: &mut HeaderMap, peer: Peer, host: Option<&HeaderValue>) {
    let mut found = Found::scan(headers);
    set_found_forwarding(headers, &mut found, peer, host);
}

/// [`set_forwarding`] with the fields found by [`Found::scan`] of the same map.
pub fn set_found_forwarding(
    headers: &mut HeaderMap,
    found: &mut Found,
    peer: Peer,
    host: Option<&HeaderValue>,
) {
    let peer_ip = ip_text(peer.ip);
    if peer.trusted {
        let peer_ip = peer_ip.as_str();
        if found.bits & XFF == 0 {
            set(headers, &X_FORWARDED_FOR, peer_ip);
        } else {
            let prior: Vec<&str> = headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            let chain = if prior.is_empty() {
                peer_ip.to_owned()
            } else {
                format!("{}, {}", prior.join(", "), peer_ip)
            };
            set(headers, &X_FORWARDED_FOR, &chain);
        }
    } else {
        found.remove(headers, CLIENT_IP_BITS);
        match HeaderValue::from_bytes(peer_ip.as_bytes()) {
            Ok(v) => {
                headers.insert(X_FORWARDED_FOR.clone(), v);
            }
            Err(_) => {
                headers.remove(&X_FORWARDED_FOR);
            }
        }
        // What the client sent is replaced below (`insert` replaces every value).
        found.bits &= !XFP;
        if host.is_some() {
            found.bits &= !XFH;
        } else if found.bits & XFH != 0 {
            headers.remove(&X_FORWARDED_HOST);
            found.bits &= !XFH;
        }
    }
    found.bits |= XFF;
    if found.bits & XFP == 0 {
        let proto = if peer.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
        found.bits |= XFP;
    }
    if found.bits & XFH == 0 {
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
            found.bits |= XFH;
        }
    }
}

/// `ip` as `Display` writes it. IPv4 digit by digit into a buffer on the stack: through
/// `Display` it cost about 1,600 instructions, 3 % of a pass-through request
/// (bench/callgrind.sh), and a `String` an allocation per request.
fn ip_text(ip: IpAddr) -> IpText {
    let IpAddr::V4(v4) = ip else {
        return IpText::Other(ip.to_string());
    };
    let mut buf = [0u8; 15];
    let mut len = 0;
    let mut push = |b: u8| {
        if let Some(slot) = buf.get_mut(len) {
            *slot = b;
            len += 1;
        }
    };
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            push(b'.');
        }
        if o >= 100 {
            push(b'0' + o / 100);
        }
        if o >= 10 {
            push(b'0' + o / 10 % 10);
        }
        push(b'0' + o % 10);
    }
    IpText::V4(buf, len)
}

/// The text of an address: an IPv4 address on the stack, any other in a `String`.
#[derive(Debug)]
enum IpText {
    V4([u8; 15], usize),
    Other(String),
}

impl IpText {
    fn as_bytes(&self) -> &[u8] {
        match self {
            IpText::V4(buf, len) => buf.get(..*len).unwrap_or_default(),
            IpText::Other(s) => s.as_bytes(),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            IpText::V4(buf, len) => buf
                .get(..*len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default(),
            IpText::Other(s) => s,
        }
    }
}

impl PartialEq<String> for IpText {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for IpText {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

fn set(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(v) => {
            headers.insert(name.clone(), v);
        }
        Err(_) => {
            headers.remove(name);
        }
    }
}

/// The cookie name of a `Set-Cookie` value (the text before the first `=`), trimmed.
pub fn set_cookie_name(value: &[u8]) -> &[u8] {
    let end = value.iter().position(|b| *b == b'=').unwrap_or(value.len());
    value.get(..end).map(trim_ascii).unwrap_or_default()
}

/// The cookie value of a `Set-Cookie` value (between the first `=` and the first `;`).
pub fn set_cookie_value(value: &[u8]) -> &[u8] {
    let Some(eq) = value.iter().position(|b| *b == b'=') else {
        return b"";
    };
    let rest = value.get(eq + 1..).unwrap_or_default();
    let end = rest.iter().position(|b| *b == b';').unwrap_or(rest.len());
    trim_ascii(rest.get(..end).unwrap_or_default())
}

/// True when `name` is the session cookie. Compared without regard to case and to the
/// `__Host-`/`__Secure-` prefixes: cookie names are case-sensitive for browsers, but a proxy
/// that guards credentials withholds every spelling a client might still accept.
pub fn is_session_cookie_name(name: &[u8], session_cookie: &str) -> bool {
    let bare = |b: &[u8]| {
        let mut n = b.to_ascii_lowercase();
        for prefix in [&b"__host-"[..], b"__secure-"] {
            if n.starts_with(prefix) {
                n.drain(..prefix.len());
            }
        }
        n
    };
    bare(name) == bare(session_cookie.as_bytes())
}

/// True when this `Set-Cookie` hands out the session cookie (a non-empty value; an empty
/// value is Kratos clearing it at logout).
pub fn sets_session_cookie(value: &HeaderValue, session_cookie: &str) -> bool {
    let v = value.as_bytes();
    is_session_cookie_name(set_cookie_name(v), session_cookie) && !set_cookie_value(v).is_empty()
}

/// True when a `Set-Cookie` line carries the session cookie after a comma
/// (`csrf=1, ory_kratos_session=…`). RFC 6265 §3 forbids folding `Set-Cookie` lines, but some
/// clients still split them on commas, so such a line may hand out a credential that
/// [`sets_session_cookie`] does not see.
pub fn hides_session_cookie(value: &HeaderValue, session_cookie: &str) -> bool {
    value.as_bytes().split(|b| *b == b',').skip(1).any(|part| {
        is_session_cookie_name(set_cookie_name(part), session_cookie)
            && !set_cookie_value(part).is_empty()
    })
}

/// The transfer codings of a response other than `chunked` (RFC 9112 §6.1), joined. The
/// HTTP client undoes only `chunked`; a body under any other coding cannot be read.
pub fn transfer_codings_besides_chunked(headers: &HeaderMap) -> Option<String> {
    let mut others: Vec<String> = Vec::new();
    for v in headers.get_all(header::TRANSFER_ENCODING) {
        for coding in String::from_utf8_lossy(v.as_bytes()).split(',') {
            let coding = coding.trim().to_ascii_lowercase();
            if !coding.is_empty() && coding != "chunked" {
                others.push(coding);
            }
        }
    }
    (!others.is_empty()).then(|| others.join(", "))
}

/// A `name=value` pair for every session `Set-Cookie` in a response, named `session_cookie`
/// whatever spelling the response used: the value is what a client can present to Kratos
/// under Kratos's own name, so that is how its owner is asked for.
pub fn session_cookies(headers: &HeaderMap, session_cookie: &str) -> Vec<String> {
    headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| sets_session_cookie(v, session_cookie))
        .map(|v| {
            format!(
                "{session_cookie}={}",
                String::from_utf8_lossy(set_cookie_value(v.as_bytes()))
            )
        })
        .collect()
}

/// Removes every `Set-Cookie` that names the session cookie (whatever its value), keeping
/// others such as the CSRF cookie. Returns how many were removed.
pub fn strip_session_set_cookies(headers: &mut HeaderMap, session_cookie: &str) -> usize {
    let all: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .cloned()
        .collect();
    let (session, other): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|v| is_session_cookie_name(set_cookie_name(v.as_bytes()), session_cookie));
    if session.is_empty() {
        return 0;
    }
    headers.remove(header::SET_COOKIE);
    for v in other {
        headers.append(header::SET_COOKIE, v);
    }
    session.len()
}

/// The request's `X-Request-Id`, when it is short printable text.
pub fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get(&X_REQUEST_ID).and_then(usable_request_id)
}

fn usable_request_id(value: &HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    b.get(start..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_nominated_fields_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("x-session-token", "ory_st_x"),
            ("host", "auth.example.com"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-session-token", "host"]);
        // idempotent
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn each_tracked_name_has_the_bit_of_its_place_in_the_lists() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(bit_of(name), 1 << i, "{name}");
        }
        for (i, name) in CLIENT_IP_HEADERS.iter().enumerate() {
            assert_eq!(bit_of(name), 1 << (CLIENT_IP_SHIFT + i), "{name}");
        }
        assert_eq!(HOP_BITS & CLIENT_IP_BITS, 0);
        let others = [
            XFF,
            XFP,
            XFH,
            HTTP2_SETTINGS,
            HOST,
            HOST_REPEATED,
            REQUEST_ID,
        ];
        for bit in others
            .into_iter()
            .chain([CONNECTION_UPGRADE, CONNECTION_NOMINATES])
        {
            assert_eq!(bit & (HOP_BITS | CLIENT_IP_BITS), 0);
            assert_eq!(bit.count_ones(), 1);
        }
        assert_eq!(bit_of(&HeaderName::from_static("x-other")), 0);
        for name in &HOP_BY_HOP {
            assert!(is_fixed_hop_by_hop(name.as_str()), "{name}");
            assert!(is_fixed_hop_by_hop(&name.as_str().to_ascii_uppercase()));
        }
        for other in ["close", "x-secret-hop", "keep-alive2", "t", "", "trailers"] {
            assert!(!is_fixed_hop_by_hop(other), "{other}");
        }
    }

    #[test]
    fn connection_tokens_in_any_case_and_fields_nominate_their_fields() {
        let mut h = map(&[
            ("Connection", "X-One,x-TWO ,\tKeep-Alive"),
            ("x-one", "1"),
            ("connection", "CLOSE"),
            ("X-Two", "2"),
            ("connection", "x-three"),
            ("x-three", "3"),
            ("x-four", "4"),
            ("Keep-Alive", "timeout=5"),
        ]);
        assert!(!is_upgrade_request(&h));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["x-four"]);
        // Tokens that name fixed hop-by-hop fields only: those go, nothing else.
        let mut h = map(&[
            ("connection", "TE, Upgrade"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-four", "4"),
        ]);
        let found = Found::scan(&h);
        assert!(found.upgrade());
        assert_eq!(found.bits & CONNECTION_NOMINATES, 0);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-four"]);
        assert!(is_upgrade_request(&map(&[
            ("connection", "close"),
            ("connection", " UPGRADE ")
        ])));
    }

    /// One scan, then the strip and the forwarding fields on what it found, edit a map as the
    /// functions that scan for themselves do, including when `Connection` lists a field the
    /// forwarding step reads.
    #[test]
    fn edits_on_one_scan_match_edits_that_scan_again() {
        let cases: [&[(&str, &str)]; 6] = [
            &[("host", "a.example"), ("accept", "*/*")],
            &[
                ("host", "a.example"),
                ("connection", "x-forwarded-proto, X-Forwarded-For"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-host", "b.example"),
            ],
            &[
                ("connection", "keep-alive, x-real-ip, host"),
                ("x-real-ip", "1.2.3.4"),
                ("cf-ipcity", "X"),
                ("host", "a.example"),
                ("transfer-encoding", "chunked"),
            ],
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("x-forwarded-for", " , 10.0.0.2"),
                ("x-forwarded-host", "b.example"),
                ("true-client-ip", "1.2.3.4"),
            ],
            &[
                ("connection", "x-forwarded-host"),
                ("x-forwarded-host", "b"),
            ],
            &[("host", "a.example"), ("host", "b.example"), ("te", "x")],
        ];
        for pairs in cases {
            for trusted in [false, true] {
                for host in [None, Some(HeaderValue::from_static("c.example"))] {
                    let peer = Peer {
                        ip: "10.0.0.3".parse().expect("ip"),
                        trusted,
                        tls: trusted,
                    };
                    let mut apart = map(pairs);
                    strip_hop_by_hop(&mut apart);
                    set_forwarding(&mut apart, peer, host.as_ref());
                    let mut once = map(pairs);
                    let mut found = Found::scan(&once);
                    strip_found_hop_by_hop(&mut once, &mut found);
                    set_found_forwarding(&mut once, &mut found, peer, host.as_ref());
                    assert_eq!(apart, once, "{pairs:?} trusted={trusted} host={host:?}");
                    let mut again = Found::scan(&once);
                    again.bits &= !XFF;
                    assert_eq!(found.bits & !XFF, again.bits, "{pairs:?}");
                    assert_eq!(found.host, again.host, "{pairs:?}");
                }
            }
        }
    }

    #[test]
    fn the_host_is_single_only_once() {
        let found = Found::scan(&map(&[("Host", "a.example"), ("accept", "*/*")]));
        assert_eq!(
            found.single_host().map(|h| h.as_bytes()),
            Some(&b"a.example"[..])
        );
        let found = Found::scan(&map(&[("host", "a.example"), ("host", "b.example")]));
        assert_eq!(found.single_host(), None);
        assert_eq!(found.host().map(|h| h.as_bytes()), Some(&b"a.example"[..]));
        let mut h = map(&[("connection", "host"), ("host", "a.example")]);
        let mut found = Found::scan(&h);
        strip_found_hop_by_hop(&mut h, &mut found);
        assert!(h.is_empty());
        assert_eq!(found.host(), None);
        let ids = Found::scan(&map(&[("x-request-id", "r-1"), ("X-Request-Id", "r-2")]));
        assert_eq!(ids.request_id(), Some("r-1"));
        let long = "r".repeat(129);
        for bad in ["", long.as_str()] {
            let h = map(&[("x-request-id", bad)]);
            assert_eq!(Found::scan(&h).request_id(), None);
            assert_eq!(request_id(&h), None);
        }
        let te = Found::scan(&map(&[("Transfer-Encoding", "gzip")]));
        assert!(te.transfer_encoding());
        assert!(!Found::scan(&map(&[("host", "a")])).transfer_encoding());
    }

    #[test]
    fn each_hop_by_hop_or_client_ip_field_alone_is_removed() {
        for name in HOP_BY_HOP.iter().chain(&CLIENT_IP_HEADERS) {
            let mut h = map(&[("host", "a.example"), ("accept", "*/*")]);
            h.append(name.clone(), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut h);
            scrub_client_ip_headers(&mut h);
            assert!(!h.contains_key(name), "{name} left");
            assert_eq!(h.len(), 2, "{name}");
        }
    }

    #[test]
    fn ip_text_writes_what_display_writes() {
        for o in 0..=255u8 {
            for ip in [
                IpAddr::from([o, 0, 0, 1]),
                IpAddr::from([127, o, 100, 9]),
                IpAddr::from([10, 99, o, 255]),
                IpAddr::from([1, 2, 3, o]),
                IpAddr::from([o, o, o, o]),
            ] {
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        assert_eq!(ip_text(v6), "2001:db8::1");
    }

    #[test]
    fn remove_all_removes_every_listed_name_present_even_past_64() {
        let names: Vec<HeaderName> = (0..70)
            .map(|i| HeaderName::from_bytes(format!("x-n{i}").as_bytes()).expect("name"))
            .collect();
        let mut h = map(&[
            ("host", "a.example"),
            ("x-n3", "1"),
            ("x-n69", "1"),
            ("x-n3", "2"),
        ]);
        remove_all(&mut h, &names);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["host"]
        );
    }

    #[test]
    fn split_cookie_fields_are_joined_in_order() {
        let mut h = map(&[
            ("cookie", "a=1"),
            ("x-other", "x"),
            ("cookie", "b=2; c=3"),
            ("cookie", "d=4"),
        ]);
        join_cookie_fields(&mut h);
        let cookies: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(cookies, vec!["a=1; b=2; c=3; d=4"]);
        let mut one = map(&[("cookie", "a=1")]);
        join_cookie_fields(&mut one);
        assert_eq!(one["cookie"], "a=1");
        let mut none = HeaderMap::new();
        join_cookie_fields(&mut none);
        assert!(none.is_empty());
    }

    #[test]
    fn connection_cannot_nominate_invalid_names_into_a_panic() {
        let mut h = map(&[("connection", ",, ,\t, bad name ,")]);
        strip_hop_by_hop(&mut h);
        assert!(h.is_empty());
    }

    #[test]
    fn upgrade_requests_are_recognised() {
        assert!(is_upgrade_request(&map(&[("upgrade", "h2c")])));
        assert!(is_upgrade_request(&map(&[(
            "connection",
            "Upgrade, HTTP2-Settings"
        )])));
        assert!(is_upgrade_request(&map(&[(
            "http2-settings",
            "AAMAAABkAAQAAP__"
        )])));
        assert!(!is_upgrade_request(&map(&[("connection", "keep-alive")])));
    }

    #[test]
    fn untrusted_peer_cannot_forge_forwarding_or_client_ip() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("true-client-ip", "1.2.3.4"),
            ("cf-connecting-ip", "1.2.3.4"),
            ("x-real-ip", "1.2.3.4"),
            ("cf-ipcountry", "XX"),
        ]);
        let peer = Peer {
            ip: "203.0.113.9".parse().expect("ip"),
            trusted: false,
            tls: false,
        };
        set_forwarding(
            &mut h,
            peer,
            Some(&HeaderValue::from_static("auth.example.com")),
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "auth.example.com");
        for n in [
            "true-client-ip",
            "cf-connecting-ip",
            "x-real-ip",
            "cf-ipcountry",
        ] {
            assert!(!h.contains_key(n), "{n} forwarded");
        }
    }

    #[test]
    fn trusted_proxy_chain_is_kept_and_peer_appended() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.1"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "198.51.100.1"),
        ]);
        let peer = Peer {
            ip: "10.0.0.3".parse().expect("ip"),
            trusted: true,
            tls: false,
        };
        set_forwarding(&mut h, peer, None);
        assert_eq!(h["x-forwarded-for"], "198.51.100.1, 10.0.0.2, 10.0.0.3");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "198.51.100.1");
    }

    #[test]
    fn set_cookie_parts() {
        let v = b"ory_kratos_session=MTc1NDA=; Path=/; HttpOnly";
        assert_eq!(set_cookie_name(v), b"ory_kratos_session");
        assert_eq!(set_cookie_value(v), b"MTc1NDA=");
        assert_eq!(set_cookie_name(b" a =b"), b"a");
        assert_eq!(set_cookie_value(b"novalue"), b"");
        assert_eq!(set_cookie_name(b""), b"");
    }

    #[test]
    fn session_cookie_names_match_any_case_and_prefix() {
        for n in [
            "ory_kratos_session",
            "ORY_KRATOS_SESSION",
            "__Host-ory_kratos_session",
            "__Secure-Ory_Kratos_Session",
        ] {
            assert!(
                is_session_cookie_name(n.as_bytes(), "ory_kratos_session"),
                "{n}"
            );
        }
        // A configured name with a prefix (Kratos's `session.cookie.name`) matches the same way.
        for n in [
            "__Host-ory_kratos_session",
            "ory_kratos_session",
            "__SECURE-Ory_Kratos_Session",
        ] {
            assert!(
                is_session_cookie_name(n.as_bytes(), "__Host-ory_kratos_session"),
                "{n}"
            );
        }
        for n in ["ory_kratos_session2", "csrf_token_abc", "ory_kratos", ""] {
            assert!(
                !is_session_cookie_name(n.as_bytes(), "ory_kratos_session"),
                "{n}"
            );
        }
    }

    #[test]
    fn strip_keeps_other_cookies_and_is_idempotent() {
        let mut h = map(&[
            ("set-cookie", "csrf_token_ab=q1w2; Path=/; HttpOnly"),
            ("set-cookie", "ory_kratos_session=MTc1; Path=/; HttpOnly"),
            ("set-cookie", "ORY_KRATOS_SESSION=MTc2; Path=/"),
        ]);
        assert_eq!(
            session_cookies(&h, "ory_kratos_session"),
            vec!["ory_kratos_session=MTc1", "ory_kratos_session=MTc2"]
        );
        assert_eq!(strip_session_set_cookies(&mut h, "ory_kratos_session"), 2);
        let left: Vec<_> = h.get_all("set-cookie").iter().collect();
        assert_eq!(left, vec!["csrf_token_ab=q1w2; Path=/; HttpOnly"]);
        assert_eq!(strip_session_set_cookies(&mut h, "ory_kratos_session"), 0);
        assert!(session_cookies(&h, "ory_kratos_session").is_empty());
    }

    #[test]
    fn a_session_cookie_folded_behind_a_comma_is_seen() {
        let folded =
            HeaderValue::from_static("csrf_token_x=1; Path=/, ory_kratos_session=abc; Path=/");
        assert!(hides_session_cookie(&folded, "ory_kratos_session"));
        assert!(!sets_session_cookie(&folded, "ory_kratos_session"));
        let dated = HeaderValue::from_static(
            "ory_kratos_session=abc; Expires=Sun, 02 Aug 2026 10:00:00 GMT",
        );
        assert!(!hides_session_cookie(&dated, "ory_kratos_session"));
        let cleared = HeaderValue::from_static("a=1, ory_kratos_session=; Max-Age=0");
        assert!(!hides_session_cookie(&cleared, "ory_kratos_session"));
    }

    #[test]
    fn transfer_codings_other_than_chunked_are_named() {
        assert_eq!(
            transfer_codings_besides_chunked(&map(&[("transfer-encoding", "chunked")])),
            None
        );
        assert_eq!(transfer_codings_besides_chunked(&map(&[])), None);
        assert_eq!(
            transfer_codings_besides_chunked(&map(&[("transfer-encoding", "gzip, Chunked")]))
                .as_deref(),
            Some("gzip")
        );
        assert_eq!(
            transfer_codings_besides_chunked(&map(&[
                ("transfer-encoding", "br"),
                ("transfer-encoding", "chunked")
            ]))
            .as_deref(),
            Some("br")
        );
    }

    #[test]
    fn clearing_cookie_is_not_a_credential() {
        let clear = HeaderValue::from_static("ory_kratos_session=; Path=/; Max-Age=0");
        assert!(!sets_session_cookie(&clear, "ory_kratos_session"));
        let set = HeaderValue::from_static("ory_kratos_session=abc; Path=/");
        assert!(sets_session_cookie(&set, "ory_kratos_session"));
    }
}
