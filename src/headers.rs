//! Pure header operations. No I/O, no state: each function takes headers and returns or edits
//! them, so each is tested on its own below.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the non-standard ones proxies still meet). They
/// describe one connection and must not be forwarded; hyper writes its own framing.
static HOP_BY_HOP: [HeaderName; 9] = [
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
static CLIENT_IP_HEADERS: [HeaderName; 5] = [
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

/// Removes hop-by-hop fields, including every field named in `Connection`
/// (RFC 9110 §7.6.1: "a proxy MUST ... remove any header field that is nominated by the
/// Connection header field").
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let nominated: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        // `keep-alive`, `upgrade`, `te`…: removed below anyway, without a name built here.
        .filter(|name| {
            !HOP_BY_HOP
                .iter()
                .any(|h| h.as_str().eq_ignore_ascii_case(name))
        })
        .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
        .collect();
    for name in nominated {
        headers.remove(name);
    }
    remove_all(headers, &HOP_BY_HOP);
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
    headers.contains_key(header::UPGRADE)
        || headers.contains_key("http2-settings")
        || headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
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
    let peer_ip = ip_text(peer.ip);
    if peer.trusted {
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let chain = if prior.is_empty() {
            peer_ip
        } else {
            format!("{}, {}", prior.join(", "), peer_ip)
        };
        set(headers, &X_FORWARDED_FOR, &chain);
    } else {
        scrub_client_ip_headers(headers);
        set(headers, &X_FORWARDED_FOR, &peer_ip);
        headers.remove(&X_FORWARDED_PROTO);
        headers.remove(&X_FORWARDED_HOST);
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        let proto = if peer.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !headers.contains_key(&X_FORWARDED_HOST) {
        if let Some(h) = host {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
    }
}

/// `ip` as `Display` writes it. IPv4 digit by digit: through `Display` it cost about 1,600
/// instructions, 3 % of a pass-through request (bench/callgrind.sh).
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut s = String::with_capacity(15);
    for (i, o) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            s.push('.');
        }
        if o >= 100 {
            s.push(char::from(b'0' + o / 100));
        }
        if o >= 10 {
            s.push(char::from(b'0' + o / 10 % 10));
        }
        s.push(char::from(b'0' + o % 10));
    }
    s
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
    headers
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
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
