//! Every response the gateway writes itself, in one place: errors by the side that failed,
//! and the answers for a blocked identity. Bodies follow Kratos's error shape
//! (`{"error":{"id","code","status","reason","message"}}`, CONTRACT.md §8) so that Kratos's
//! SDKs and UIs parse them.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{full_body, Body};
use crate::error::GatewayError;

/// The client-facing side of each error: Kratos's error shape.
impl GatewayError {
    fn id(&self) -> &'static str {
        match self {
            GatewayError::UpgradeRefused => "upgrade_not_supported",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NotFound => "not_found",
            GatewayError::UpstreamUnreachable(_) | GatewayError::UpstreamBroken(_) => {
                "upstream_unreachable"
            }
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::ResponseTooLarge { .. }
            | GatewayError::UnreadableResponse(_)
            | GatewayError::TooManyCredentials(_) => "upstream_response_refused",
            GatewayError::AttributionUnavailable(_) => "session_check_unavailable",
            GatewayError::RequestBodyTimeout(_) => "request_timeout",
        }
    }

    /// The client-facing reason: says what happened without internal detail.
    fn reason(&self) -> &'static str {
        match self {
            GatewayError::UpgradeRefused => {
                "Protocol upgrades (Upgrade, h2c) are not supported by this endpoint."
            }
            GatewayError::BadRequest(r) => r,
            GatewayError::NotFound => "The requested resource could not be found.",
            GatewayError::UpstreamUnreachable(_) | GatewayError::UpstreamBroken(_) => {
                "The identity service could not be reached. Please try again later."
            }
            GatewayError::UpstreamTimeout(_) => {
                "The identity service did not answer in time. Please try again later."
            }
            GatewayError::ResponseTooLarge { .. }
            | GatewayError::UnreadableResponse(_)
            | GatewayError::TooManyCredentials(_) => {
                "The identity service sent a response that could not be checked."
            }
            GatewayError::RequestBodyTimeout(_) => "The request body was not received in time.",
            GatewayError::AttributionUnavailable(_) => {
                "The session could not be checked right now. Please try again later."
            }
        }
    }

    pub fn into_response(self, request_id: Option<&str>) -> Response<Body> {
        let status = self.status();
        let mut err = serde_json::json!({
            "id": self.id(),
            "code": status.as_u16(),
            "status": status.canonical_reason().unwrap_or(""),
            "reason": self.reason(),
            "message": default_message(status),
        });
        if let (Some(rid), Some(obj)) = (request_id, err.as_object_mut()) {
            obj.insert("request".to_owned(), rid.into());
        }
        let mut response = json_response(status, &serde_json::json!({ "error": err }));
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still be on its way: the connection cannot be reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// herodot's default `message` per status (CONTRACT.md §8).
fn default_message(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "The request was malformed or contained invalid parameters",
        401 => "The request could not be authorized",
        403 => "The requested action was forbidden",
        404 => "The requested resource could not be found",
        502 => "The upstream service responded improperly",
        503 => "The service is temporarily unavailable",
        504 => "The upstream service did not respond in time",
        _ => "An internal server error occurred, please contact the system administrator",
    }
}

/// A response the gateway writes itself: never cacheable (it is about a session), as Kratos
/// marks its own.
fn answer(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(full_body(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if !content_type.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate"),
    );
    resp
}

/// Compact JSON and a trailing newline, as Kratos writes it.
fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    answer(status, "application/json", body)
}

/// Kratos's answer to an id its UUID parser refuses (fixture
/// `kratos-error-400-malformed-uuid.json`), for an extend the gateway will not forward.
pub fn malformed_uuid(id: &str) -> Response<Body> {
    let message = format!("uuid: incorrect UUID format in string {id:?}");
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({"error": {"code": 400, "status": "Bad Request", "message": message}}),
    )
}

/// Kratos's whoami answer for "no session", byte for byte (CONTRACT.md §5).
pub const WHOAMI_401: &str = "{\"error\":{\"code\":401,\"status\":\"Unauthorized\",\"reason\":\"No valid session credentials found in the request.\",\"message\":\"The request could not be authorized\"}}\n";

/// Kratos's `GET /sessions` answer for "no session" (CONTRACT.md §5).
pub const SESSIONS_401: &str = "{\"error\":{\"code\":401,\"status\":\"Unauthorized\",\"reason\":\"No valid session cookie found.\",\"message\":\"The request could not be authorized\"}}\n";

/// The signed-out answer for whoami and session listing. `clear` is the session cookie's
/// clearing `Set-Cookie` ([`clearing_cookie`]), for a request that presented the cookie.
pub fn signed_out(body: &'static str, clear: Option<&HeaderValue>) -> Response<Body> {
    let mut resp = answer(
        StatusCode::UNAUTHORIZED,
        "application/json",
        Bytes::from_static(body.as_bytes()),
    );
    if let Some(c) = clear {
        resp.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    resp
}

/// The `Set-Cookie` that removes the session cookie from a browser, as Kratos writes it at
/// logout (CONTRACT.md §3.3: `MaxAge = -1`, which Go writes as `Max-Age=0` and an `Expires`
/// in 1970) with the attributes Kratos set it with: Go's attribute order `Path`, `Domain`,
/// `Expires`, `Max-Age`, `HttpOnly`, `Secure`, `SameSite`. The value is empty: nothing a
/// browser could present again.
pub fn clearing_cookie(c: &crate::config::Inspection) -> HeaderValue {
    let mut v = format!("{}=; Path={}", c.session_cookie, c.session_cookie_path);
    if let Some(domain) = &c.session_cookie_domain {
        v.push_str("; Domain=");
        // Go drops a leading dot (RFC 6265 §5.2.3 ignores it).
        v.push_str(domain.trim_start_matches('.'));
    }
    v.push_str("; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly");
    if c.session_cookie_secure {
        v.push_str("; Secure");
    }
    v.push_str("; SameSite=");
    v.push_str(c.session_cookie_same_site.as_str());
    // Config validation keeps every part a valid header value.
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// True when a request presents the session cookie (in any spelling the gateway recognises
/// as it, in any `Cookie` field): a browser session, as opposed to a token client. Runs on
/// every public request, so it allocates nothing.
pub fn presents_session_cookie(headers: &http::HeaderMap, session_cookie: &str) -> bool {
    let wanted = bare_cookie_name(session_cookie.as_bytes());
    headers.get_all(header::COOKIE).iter().any(|field| {
        field.as_bytes().split(|b| *b == b';').any(|pair| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            bare_cookie_name(name.trim_ascii()).eq_ignore_ascii_case(wanted)
        })
    })
}

/// A cookie name without the `__Host-`/`__Secure-` prefixes (any case), as
/// `headers::is_session_cookie_name` compares names.
fn bare_cookie_name(name: &[u8]) -> &[u8] {
    let mut n = name;
    for prefix in [&b"__host-"[..], b"__secure-"] {
        if let (Some(head), Some(rest)) = (n.get(..prefix.len()), n.get(prefix.len()..)) {
            if head.eq_ignore_ascii_case(prefix) {
                n = rest;
            }
        }
    }
    n
}

/// 403 `identity_disabled` for JSON clients and for the admin extend.
pub fn identity_disabled(message: &str, request_id: Option<&str>) -> Response<Body> {
    let mut err = serde_json::json!({
        "id": "identity_disabled",
        "code": 403,
        "status": "Forbidden",
        "reason": "This account was disabled.",
        "message": message,
    });
    if let (Some(rid), Some(obj)) = (request_id, err.as_object_mut()) {
        obj.insert("request".to_owned(), rid.into());
    }
    let mut resp = json_response(StatusCode::FORBIDDEN, &serde_json::json!({ "error": err }));
    resp.headers_mut().insert(
        "ory-error-id",
        HeaderValue::from_static("identity_disabled"),
    );
    resp
}

/// `error.id` of the answer to a request from a listed network (`networks:`).
pub const NETWORK_BLOCKED: &str = "network_blocked";

/// 403 `network_blocked`: a self-service flow or token exchange from a network on the
/// blocklist, answered without asking Kratos. A browser (a request that accepts no JSON)
/// gets a small HTML page with the same status instead.
pub fn network_blocked(browser: bool, request_id: Option<&str>) -> Response<Body> {
    let reason = "Requests from this network are not allowed.";
    if browser {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Access blocked</title></head>\n<body><h1>Access blocked</h1><p>{reason}</p></body></html>\n"
        );
        let mut resp = answer(StatusCode::FORBIDDEN, "text/html; charset=utf-8", html);
        resp.headers_mut()
            .insert("ory-error-id", HeaderValue::from_static(NETWORK_BLOCKED));
        return resp;
    }
    let mut err = serde_json::json!({
        "id": NETWORK_BLOCKED,
        "code": 403,
        "status": "Forbidden",
        "reason": reason,
        "message": default_message(StatusCode::FORBIDDEN),
    });
    if let (Some(rid), Some(obj)) = (request_id, err.as_object_mut()) {
        obj.insert("request".to_owned(), rid.into());
    }
    let mut resp = json_response(StatusCode::FORBIDDEN, &serde_json::json!({ "error": err }));
    resp.headers_mut()
        .insert("ory-error-id", HeaderValue::from_static(NETWORK_BLOCKED));
    resp
}

/// `error.id` of the answer to a throttled self-service submission (`throttle:`).
pub const THROTTLED: &str = "self_service_throttled";
/// `error.id` of the answer when the throttling store cannot be asked and
/// `throttle.redis.fail` is `closed`.
pub const THROTTLE_UNAVAILABLE: &str = "self_service_throttle_unavailable";

/// 429 `self_service_throttled` with `Retry-After` (whole seconds): too many failed attempts
/// for this identifier or from this network, or too many submissions from this network;
/// answered without asking Kratos. A browser (a request that accepts no JSON) gets a small
/// HTML page with the same status and header.
pub fn throttled(
    browser: bool,
    retry_after: std::time::Duration,
    request_id: Option<&str>,
) -> Response<Body> {
    let secs = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
    let reason = format!("Too many attempts. Please try again in {secs} seconds.");
    let mut resp = limited(
        StatusCode::TOO_MANY_REQUESTS,
        THROTTLED,
        "The request was rejected due to too many attempts",
        &reason,
        browser,
        request_id,
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

/// 503 `self_service_throttle_unavailable`: the throttling store (Redis) cannot be asked and
/// `throttle.redis.fail` is `closed`.
pub fn throttle_unavailable(browser: bool, request_id: Option<&str>) -> Response<Body> {
    let mut resp = limited(
        StatusCode::SERVICE_UNAVAILABLE,
        THROTTLE_UNAVAILABLE,
        default_message(StatusCode::SERVICE_UNAVAILABLE),
        "Sign-in attempts cannot be checked right now. Please try again shortly.",
        browser,
        request_id,
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

fn limited(
    status: StatusCode,
    id: &'static str,
    message: &str,
    reason: &str,
    browser: bool,
    request_id: Option<&str>,
) -> Response<Body> {
    let mut resp = if browser {
        let html = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Please wait</title></head>\n<body><h1>Please wait</h1><p>{reason}</p></body></html>\n"
        );
        answer(status, "text/html; charset=utf-8", html)
    } else {
        let mut err = serde_json::json!({
            "id": id,
            "code": status.as_u16(),
            "status": status.canonical_reason().unwrap_or_default(),
            "reason": reason,
            "message": message,
        });
        if let (Some(rid), Some(obj)) = (request_id, err.as_object_mut()) {
            obj.insert("request".to_owned(), rid.into());
        }
        json_response(status, &serde_json::json!({ "error": err }))
    };
    resp.headers_mut()
        .insert("ory-error-id", HeaderValue::from_static(id));
    resp
}

/// The answer for a browser form flow: a 303 to the configured page, or a small HTML 403.
pub fn identity_disabled_browser(message: &str, redirect: Option<&http::Uri>) -> Response<Body> {
    if let Some(target) = redirect {
        if let Ok(location) = HeaderValue::from_str(&target.to_string()) {
            let mut resp = answer(StatusCode::SEE_OTHER, "", Bytes::new());
            resp.headers_mut().insert(header::LOCATION, location);
            return resp;
        }
    }
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Account disabled</title></head>\n<body><h1>Account disabled</h1><p>{}</p></body></html>\n",
        escape_html(message)
    );
    answer(StatusCode::FORBIDDEN, "text/html; charset=utf-8", html)
}

fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body_of(resp: Response<Body>) -> serde_json::Value {
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn gateway_errors_have_kratos_shape() {
        let resp = GatewayError::UpstreamTimeout(std::time::Duration::from_secs(1))
            .into_response(Some("req-1"));
        assert_eq!(resp.status(), 504);
        let v = body_of(resp).await;
        assert_eq!(v["error"]["code"], 504);
        assert_eq!(v["error"]["status"], "Gateway Timeout");
        assert_eq!(v["error"]["request"], "req-1");
        assert!(v["error"]["message"].is_string());
    }

    #[tokio::test]
    async fn identity_disabled_shape() {
        let resp = identity_disabled("nope", None);
        assert_eq!(resp.status(), 403);
        let v = body_of(resp).await;
        assert_eq!(v["error"]["id"], "identity_disabled");
        assert_eq!(v["error"]["code"], 403);
        assert_eq!(v["error"]["status"], "Forbidden");
        assert_eq!(v["error"]["message"], "nope");
    }

    #[tokio::test]
    async fn throttled_shape() {
        let resp = throttled(
            false,
            std::time::Duration::from_millis(29_200),
            Some("req-7"),
        );
        assert_eq!(resp.status(), 429);
        assert_eq!(resp.headers()["retry-after"], "30");
        assert_eq!(resp.headers()["ory-error-id"], "self_service_throttled");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v = body_of(resp).await;
        assert_eq!(v["error"]["id"], "self_service_throttled");
        assert_eq!(v["error"]["code"], 429);
        assert_eq!(v["error"]["status"], "Too Many Requests");
        assert_eq!(v["error"]["request"], "req-7");
        let resp = throttled(true, std::time::Duration::ZERO, None);
        assert_eq!(resp.headers()["retry-after"], "1");
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        let resp = throttle_unavailable(false, None);
        assert_eq!(resp.status(), 503);
        let v = body_of(resp).await;
        assert_eq!(v["error"]["id"], "self_service_throttle_unavailable");
    }

    #[tokio::test]
    async fn network_blocked_shape() {
        let resp = network_blocked(false, Some("req-9"));
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["ory-error-id"], "network_blocked");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v = body_of(resp).await;
        assert_eq!(v["error"]["id"], "network_blocked");
        assert_eq!(v["error"]["code"], 403);
        assert_eq!(v["error"]["status"], "Forbidden");
        assert_eq!(v["error"]["request"], "req-9");
        assert_eq!(v["error"]["message"], "The requested action was forbidden");
        let resp = network_blocked(true, None);
        assert_eq!(resp.status(), 403);
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
    }

    #[test]
    fn browser_answer_escapes_and_redirects() {
        let r = identity_disabled_browser("<b>", None);
        assert_eq!(r.status(), 403);
        let uri: http::Uri = "https://app.example.com/blocked".parse().expect("uri");
        let r = identity_disabled_browser("x", Some(&uri));
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "https://app.example.com/blocked");
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }

    #[test]
    fn clearing_cookie_is_kratos_logout_cookie() {
        let mut c = crate::config::Inspection::default();
        assert_eq!(
            clearing_cookie(&c),
            "ory_kratos_session=; Path=/; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax"
        );
        c.session_cookie_path = "/auth".to_owned();
        c.session_cookie_domain = Some(".example.com".to_owned());
        c.session_cookie_secure = false;
        c.session_cookie_same_site = crate::config::SameSite::None;
        assert_eq!(
            clearing_cookie(&c),
            "ory_kratos_session=; Path=/auth; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; SameSite=None"
        );
        let set = HeaderValue::from_static("ory_kratos_session=; Path=/; Max-Age=0");
        assert!(!crate::headers::sets_session_cookie(
            &set,
            "ory_kratos_session"
        ));
    }

    #[test]
    fn session_cookie_is_recognised_in_the_spellings_headers_recognises() {
        let names = [
            "ory_kratos_session",
            "ORY_KRATOS_SESSION",
            "__Host-ory_kratos_session",
            "__SECURE-Ory_Kratos_Session",
            "__Host-__Secure-ory_kratos_session",
            "__Secure-__Host-ory_kratos_session",
            "ory_kratos_session_x",
            "xory_kratos_session",
            "__host",
            "",
        ];
        for name in names {
            let mut h = http::HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("a=1; {name}=v; b=2")).expect("value"),
            );
            assert_eq!(
                presents_session_cookie(&h, "ory_kratos_session"),
                crate::headers::is_session_cookie_name(name.as_bytes(), "ory_kratos_session"),
                "{name}"
            );
        }
        // Any of several Cookie fields (HTTP/2 splits them); none at all.
        let mut h = http::HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static(" ory_kratos_session=v"),
        );
        assert!(presents_session_cookie(&h, "ory_kratos_session"));
        assert!(!presents_session_cookie(
            &http::HeaderMap::new(),
            "ory_kratos_session"
        ));
    }

    #[test]
    fn whoami_401_is_kratos_exact() {
        let v: serde_json::Value = serde_json::from_str(WHOAMI_401).expect("json");
        assert!(v["error"].get("id").is_none());
        assert_eq!(
            v["error"]["reason"],
            "No valid session credentials found in the request."
        );
    }
}
