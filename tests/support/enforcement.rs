//! Shared setup and assertions for the enforcement tests: a fake Kratos with a gateway in
//! front of it, one listed and one unlisted identity (each with a live session at the fake),
//! and the checks "no credential left", "the answer is Kratos's shape" and "the session was
//! revoked at Kratos".

pub use super::metrics::metric;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use kratos_gate::config::Config;
use uuid::Uuid;

use super::client::{self, Reply as Answer};
use super::fake_kratos::{
    fresh_cookie_value, fresh_token, fresh_uuid, FakeKratos, SessionSpec, Side, SESSION_COOKIE,
};
use super::gateway::{start_gateway_with, TestGateway};

/// The ops reason written next to the listed identity. It must never reach a client.
pub const REASON: &str = "chargeback fraud, ticket OPS-123";
/// The gateway's default `enforcement.message`.
pub const DEFAULT_MESSAGE: &str =
    "This account has been disabled. Please contact support for assistance.";
/// An anti-CSRF cookie as Kratos sets it next to the session cookie.
pub const CSRF_SET_COOKIE: &str = "csrf_token_3f1c7f527e434a3e9a8e2c1d7b7f6a103f1c7f527e434a3e9a8e2c1d7b7f6a10=q1w2e3r4t5y6u7i8o9p0AAAAAAAAAAAAAAAAAAAAAAA=; Path=/; Max-Age=31536000; HttpOnly; SameSite=Lax";
/// Bounded wait for anything asynchronous (revocations, lookups).
pub const WAIT: Duration = Duration::from_secs(5);

/// An identity with one session at the fake Kratos.
#[derive(Clone, Debug)]
pub struct Person {
    pub identity: Uuid,
    pub session: Uuid,
    pub token: String,
    pub cookie: String,
    pub email: String,
}

impl Person {
    pub fn new(name: &str) -> Person {
        let identity = fresh_uuid();
        Person {
            identity,
            session: fresh_uuid(),
            token: fresh_token(),
            cookie: fresh_cookie_value(),
            email: format!("{name}-{}@example.com", &identity.simple().to_string()[..8]),
        }
    }

    pub fn spec(&self) -> SessionSpec {
        SessionSpec::new(self.identity, self.session)
            .token(self.token.clone())
            .cookie(self.cookie.clone())
            .email(self.email.clone())
    }

    /// The `Set-Cookie` Kratos sends when it issues this person's session cookie.
    pub fn set_cookie(&self) -> String {
        format!(
            "{SESSION_COOKIE}={}; Path=/; Expires=Sun, 02 Aug 2026 10:00:00 GMT; Max-Age=86399; HttpOnly; SameSite=Lax",
            self.cookie
        )
    }

    /// `ory_kratos_session=<value>` for a `Cookie` request header.
    pub fn cookie_header(&self) -> String {
        format!("{SESSION_COOKIE}={}", self.cookie)
    }

    pub fn id(&self) -> String {
        self.identity.to_string()
    }
}

pub struct Setup {
    pub fake: FakeKratos,
    pub gw: TestGateway,
    pub listed: Person,
    pub unlisted: Person,
}

/// The blocklist with `listed` (with an ops reason) and nothing else.
pub fn blocklist_with_reason(listed: &Person) -> String {
    format!(
        "identities:\n  - id: {}\n    reason: \"{REASON}\"\n",
        listed.identity
    )
}

pub async fn setup() -> Setup {
    setup_with(|_| {}).await
}

/// A fake Kratos, both persons' sessions registered there, and a gateway in front whose
/// blocklist names `listed`. `configure` adjusts the gateway config.
pub async fn setup_with(configure: impl FnOnce(&mut Config)) -> Setup {
    let fake = FakeKratos::start().await;
    let listed = Person::new("listed");
    let unlisted = Person::new("unlisted");
    fake.add_session(listed.spec());
    fake.add_session(unlisted.spec());
    let gw = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_with_reason(&listed),
        configure,
    )
    .await;
    assert!(
        gw.wait_for_listed(&listed.id(), true, WAIT).await,
        "blocklist in force"
    );
    Setup {
        fake,
        gw,
        listed,
        unlisted,
    }
}

/// Sends one HTTP/1.1 request and collects the whole answer.
pub async fn send(method: Method, url: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut b = client::request(method, url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("valid request");
    tokio::time::timeout(WAIT, client::send(&client::http1(), req))
        .await
        .expect("answer within the bounded wait")
}

/// JSON request headers as a native app or SPA sends them.
pub const JSON: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json"),
];
/// A browser form post.
pub const FORM: [(&str, &str); 2] = [
    ("content-type", "application/x-www-form-urlencoded"),
    (
        "accept",
        "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    ),
];

/// A password login body as the SDK and SPAs send it.
pub fn login_json(identifier: &str) -> String {
    serde_json::json!({"method": "password", "identifier": identifier, "password": "correct horse"})
        .to_string()
}

/// A password login form as a browser posts it.
pub fn login_form(identifier: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", "q1w2e3r4t5y6u7i8o9p0")
        .append_pair("method", "password")
        .append_pair("identifier", identifier)
        .append_pair("password", "correct horse")
        .finish()
}

/// Every `Set-Cookie` that hands out the session cookie, in any spelling: every one naming
/// it except a clearing cookie (an empty value that expires at once), which hands out nothing.
pub fn session_set_cookies(answer: &Answer) -> Vec<String> {
    answer
        .set_cookies()
        .into_iter()
        .filter(|c| {
            let name = c
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            name.trim_start_matches("__host-")
                .trim_start_matches("__secure-")
                .contains(SESSION_COOKIE)
                && !is_clearing_cookie(c)
        })
        .collect()
}

/// A `Set-Cookie` that removes a cookie: an empty value and `Max-Age=0`.
pub fn is_clearing_cookie(set_cookie: &str) -> bool {
    let mut parts = set_cookie.split(';').map(str::trim);
    let value_empty = parts
        .next()
        .and_then(|pair| pair.split_once('='))
        .is_some_and(|(_, v)| v.trim().is_empty());
    value_empty && parts.any(|a| a.eq_ignore_ascii_case("max-age=0"))
}

/// Nothing in the answer lets its holder act as `p`: no session `Set-Cookie`, neither the
/// token nor the cookie value anywhere in headers or body, no session token of any kind.
pub fn assert_no_credential(answer: &Answer, p: &Person) {
    assert!(
        session_set_cookies(answer).is_empty(),
        "a session Set-Cookie left the gateway: {:?}",
        answer.set_cookies()
    );
    let body = answer.text();
    for secret in [
        p.token.as_str(),
        p.cookie.as_str(),
        "ory_st_",
        "session_token",
    ] {
        assert!(
            !body.contains(secret),
            "{secret:?} in the body of the answer: {body}"
        );
    }
    for (name, value) in &answer.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        for secret in [p.token.as_str(), p.cookie.as_str(), "ory_st_"] {
            assert!(
                !value.contains(secret),
                "{secret:?} in header {name}: {value}"
            );
        }
    }
    assert!(
        answer
            .headers
            .get("x-kratos-authenticated-identity-id")
            .is_none(),
        "the answer vouches for an identity"
    );
}

/// The ops reason never reaches a client.
pub fn assert_no_reason(answer: &Answer) {
    assert!(
        !answer.text().contains("OPS-123") && !answer.text().contains("chargeback"),
        "the ops reason leaked: {}",
        answer.text()
    );
    for (name, value) in &answer.headers {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains("OPS-123"),
            "the ops reason leaked in {name}"
        );
    }
}

/// 403 `{"error":{"id":"identity_disabled","code":403,"status":"Forbidden","message":…}}`.
pub fn assert_identity_disabled(answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "body: {}",
        answer.text()
    );
    assert_eq!(
        answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let v = answer.json();
    let error = &v["error"];
    assert_eq!(error["id"], "identity_disabled", "{v}");
    assert_eq!(error["code"], 403, "{v}");
    assert_eq!(error["status"], "Forbidden", "{v}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    assert_no_reason(answer);
}

/// The browser answer without `enforcement.browser_redirect`: a small HTML 403 page.
pub fn assert_disabled_page(answer: &Answer) {
    assert_eq!(
        answer.status,
        StatusCode::FORBIDDEN,
        "body: {}",
        answer.text()
    );
    let ct = answer
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(ct.starts_with("text/html"), "content-type {ct}");
    assert!(answer.text().contains(DEFAULT_MESSAGE), "{}", answer.text());
    assert!(answer.headers.get("location").is_none());
    assert_no_reason(answer);
}

/// How Kratos was asked to revoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// `DELETE /admin/sessions/{session}`: the session id was known.
    Session,
    /// `DELETE /admin/identities/{identity}/sessions`: only the identity was known.
    IdentitySessions,
}

impl Revocation {
    pub fn path(self, p: &Person) -> String {
        match self {
            Revocation::Session => format!("/admin/sessions/{}", p.session),
            Revocation::IdentitySessions => format!("/admin/identities/{}/sessions", p.identity),
        }
    }
}

/// Waits for the revocation call at the fake's admin API, then for the session to be dead
/// there (revoked, or deleted with all of the identity's sessions).
pub async fn assert_revoked(fake: &FakeKratos, p: &Person, how: Revocation) {
    let path = how.path(p);
    assert!(
        fake.wait_for_call(Side::Admin, Method::DELETE, &path, WAIT)
            .await
            .is_some(),
        "no DELETE {path} at Kratos; admin calls: {:?}",
        fake.calls_matching(Side::Admin, "ANY", "/")
            .iter()
            .map(|c| format!("{} {}", c.method, c.uri))
            .collect::<Vec<_>>()
    );
    assert!(
        wait_until(WAIT, || fake
            .session_status(p.session)
            .is_none_or(|s| s.revoked))
        .await,
        "session {} still alive at Kratos",
        p.session
    );
}

/// Polls `cond` every 10 ms until it holds or `within` has passed.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Setup {
    pub fn public(&self, path: &str) -> String {
        self.gw.public_url(path)
    }

    pub fn admin(&self, path: &str) -> String {
        self.gw.admin_url(path)
    }

    /// The same request straight to the fake's public listener (what Kratos answers).
    pub fn direct(&self, path: &str) -> String {
        format!("{}{path}", self.fake.public_url())
    }

    pub fn metrics(&self) -> String {
        self.gw.gateway().metrics().encode()
    }

    /// No revocation was queued or done, and nothing was counted as blocked.
    pub fn assert_nothing_blocked(&self) {
        let m = self.metrics();
        assert_eq!(
            metric(&m, "kratos_gate_revocation_queue_depth "),
            0.0,
            "{m}"
        );
        // Every counter exists from the start at zero: none may have moved.
        assert!(
            !m.lines()
                .filter(|l| l.starts_with("kratos_gate_revocations_total{")
                    || l.starts_with("kratos_gate_blocked_total{"))
                .any(|l| !l.ends_with(" 0")),
            "something was blocked or revoked:\n{m}"
        );
        assert!(
            self.fake
                .calls_matching(Side::Admin, Method::DELETE, "/")
                .is_empty(),
            "a revocation reached Kratos"
        );
    }
}

/// The answer passed on is Kratos's, byte for byte: status, body, `Set-Cookie`s, `Location`
/// and `Content-Encoding`.
pub fn assert_same_as_upstream(via_gateway: &Answer, direct: &Answer) {
    assert_eq!(via_gateway.status, direct.status);
    assert_eq!(
        via_gateway.body,
        direct.body,
        "body differs:\n gateway: {}\n kratos:  {}",
        via_gateway.text(),
        direct.text()
    );
    assert_eq!(via_gateway.set_cookies(), direct.set_cookies());
    for name in [
        "location",
        "content-encoding",
        "content-type",
        "x-kratos-authenticated-identity-id",
    ] {
        assert_eq!(
            via_gateway.headers.get(name),
            direct.headers.get(name),
            "header {name}"
        );
    }
}

/// The gateway still answers an ordinary request after an attack on another connection.
pub async fn still_serving(s: &Setup) {
    let (resp, _) = super::raw::exchange(
        s.gw.public,
        format!(
            "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: {}\r\n\r\n",
            s.unlisted.token
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "the gateway stopped serving");
}
