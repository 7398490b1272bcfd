//! Proves the fake Kratos (tests/support) behaves per CONTRACT.md.

use crate::support;

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use uuid::Uuid;

use support::client::{self, Reply as Resp, TestClient};
use support::fake_kratos::{
    fresh_cookie_value, fresh_token, fresh_uuid, FakeKratos, MethodMatch, RecordedCall, Reply,
    SessionSpec, Side, MAX_RECORDED_BODY, NO_CACHE, RECEIVED_BYTES_HEADER, SESSION_COOKIE,
};
use support::fixtures::{self, Json};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `ory_kratos_session=<value>`, for a `Cookie` header.
fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}")
}

/// Requests against one of the fake's listeners, sent with the shared test client.
struct Http {
    client: TestClient,
    base: String,
}

impl Http {
    fn new(base: String) -> Http {
        Http {
            client: client::http1(),
            base,
        }
    }

    fn http2(base: String) -> Http {
        Http {
            client: client::http2(),
            base,
        }
    }

    fn req(&self, method: Method, path: &str) -> http::request::Builder {
        client::request(method, &format!("{}{path}", self.base))
    }

    async fn send(&self, builder: http::request::Builder, body: impl Into<Bytes>) -> Resp {
        let request = builder.body(Full::new(body.into())).expect("valid request");
        tokio::time::timeout(TIMEOUT, client::send(&self.client, request))
            .await
            .expect("response in time")
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path), Bytes::new()).await
    }
}

struct Setup {
    fake: FakeKratos,
    public: Http,
    admin: Http,
    identity: Uuid,
    session: Uuid,
    token: String,
    cookie: String,
}

async fn setup() -> Setup {
    let fake = FakeKratos::start().await;
    let identity = fresh_uuid();
    let session = fresh_uuid();
    let token = fresh_token();
    let cookie = fresh_cookie_value();
    fake.add_session(
        SessionSpec::new(identity, session)
            .token(token.clone())
            .cookie(cookie.clone()),
    );
    Setup {
        public: Http::new(fake.public_url()),
        admin: Http::new(fake.admin_url()),
        fake,
        identity,
        session,
        token,
        cookie,
    }
}

fn assert_whoami_ok(s: &Setup, resp: &Resp) {
    assert_eq!(resp.status, StatusCode::OK, "body: {}", resp.text());
    let identity = s.identity.to_string();
    assert_eq!(
        resp.header("x-kratos-authenticated-identity-id"),
        Some(identity.as_str())
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        resp.text(),
        fixtures::whoami_body(s.identity, s.session, None)
    );
}

fn assert_whoami_401(resp: &Resp) {
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

// ---------------------------------------------------------------------------
// whoami
// ---------------------------------------------------------------------------

#[tokio::test]
async fn whoami_by_session_token_header() {
    let s = setup().await;
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);
    assert_eq!(resp.header("cache-control"), Some(NO_CACHE));
    assert_eq!(resp.version, Version::HTTP_11);
    let body = resp.json();
    assert_eq!(body["id"], s.session.to_string());
    assert_eq!(body["identity"]["id"], s.identity.to_string());
    assert_eq!(body["active"], true);
    assert!(body.get("tokenized").is_none());
}

#[tokio::test]
async fn whoami_by_cookie_among_other_cookies_and_split_cookie_fields() {
    let s = setup().await;
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("cookie", format!("a=1; {}; b=2", session_cookie(&s.cookie))),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);

    // The session cookie in a second Cookie field (HTTP/2 style splitting).
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("cookie", "csrf_token_abc=x")
                .header("cookie", session_cookie(&s.cookie)),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);
}

#[tokio::test]
async fn whoami_over_http2_with_split_cookie_headers() {
    let s = setup().await;
    let h2 = Http::http2(s.fake.public_url());
    let resp = h2
        .send(
            h2.req(Method::GET, "/sessions/whoami")
                .header("cookie", "a=1")
                .header("cookie", session_cookie(&s.cookie)),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.version, Version::HTTP_2);
    assert_whoami_ok(&s, &resp);
    let call = s
        .fake
        .wait_for_call(Side::Public, "GET", "/sessions/whoami", TIMEOUT)
        .await
        .expect("call recorded");
    assert_eq!(call.version, Version::HTTP_2);
    assert_eq!(call.uri, "/sessions/whoami");
}

#[tokio::test]
async fn whoami_by_bearer_token() {
    let s = setup().await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = s
            .public
            .send(
                s.public
                    .req(Method::GET, "/sessions/whoami")
                    .header("authorization", format!("{scheme} {}", s.token)),
                Bytes::new(),
            )
            .await;
        assert_whoami_ok(&s, &resp);
    }
    // Not exactly two space-separated parts, or another scheme: no credential.
    for value in [
        format!("Bearer  {}", s.token),
        format!("Bearer {} x", s.token),
        format!("Basic {}", s.token),
        "Bearer ".to_owned(),
    ] {
        let resp = s
            .public
            .send(
                s.public
                    .req(Method::GET, "/sessions/whoami")
                    .header("authorization", value),
                Bytes::new(),
            )
            .await;
        assert_whoami_401(&resp);
    }
}

#[tokio::test]
async fn whoami_credential_order_matches_kratos() {
    let s = setup().await;
    // A non-empty X-Session-Token is the only credential looked at.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", "ory_st_unknown")
                .header("cookie", session_cookie(&s.cookie))
                .header("authorization", format!("Bearer {}", s.token)),
            Bytes::new(),
        )
        .await;
    assert_whoami_401(&resp);
    // An empty one is ignored.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", "")
                .header("cookie", session_cookie(&s.cookie)),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);
    // A cookie that does not decode falls back to Bearer.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("cookie", session_cookie("garbage"))
                .header("authorization", format!("Bearer {}", s.token)),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);
}

#[tokio::test]
async fn whoami_401_has_the_exact_contract_body() {
    let s = setup().await;
    assert_eq!(
        fixtures::WHOAMI_401,
        r#"{"error":{"code":401,"status":"Unauthorized","reason":"No valid session credentials found in the request.","message":"The request could not be authorized"}}"#
    );
    assert_eq!(
        fixtures::fixture_json("synthesized/whoami-401-no-valid-session.json").to_compact(),
        fixtures::WHOAMI_401
    );
    let resp = s.public.get("/sessions/whoami").await;
    assert_whoami_401(&resp);
    assert_eq!(resp.header("cache-control"), Some(NO_CACHE));
    assert!(resp.header("x-kratos-authenticated-identity-id").is_none());

    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", "ory_st_nope"),
            Bytes::new(),
        )
        .await;
    assert_whoami_401(&resp);
}

#[tokio::test]
async fn whoami_403_for_aal2_pending_session() {
    let s = setup().await;
    let session = fresh_uuid();
    let token = fresh_token();
    s.fake.add_session(
        SessionSpec::new(s.identity, session)
            .token(token.clone())
            .aal2_pending(),
    );
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.text(), fixtures::whoami_403_aal2_body());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.header("ory-error-id"), Some("session_aal2_required"));
    assert_eq!(resp.json()["error"]["id"], "session_aal2_required");
    // Go escapes & in strings.
    assert!(!resp.text().contains('&'));
}

#[tokio::test]
async fn whoami_accepts_any_method_and_tokenize_as() {
    let s = setup().await;
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let resp = s
            .public
            .send(
                s.public
                    .req(method.clone(), "/sessions/whoami")
                    .header("x-session-token", &s.token),
                Bytes::new(),
            )
            .await;
        assert_whoami_ok(&s, &resp);
        assert!(
            resp.header("cache-control").is_none(),
            "{method}: Cache-Control only on GET"
        );
    }

    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami?tokenize_as=jwt_example")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let body = resp.json();
    let jwt = body["tokenized"].as_str().expect("tokenized is a string");
    let claims = fixtures::jwt_claims(jwt).expect("JWT claims decode");
    assert_eq!(claims["sub"], s.identity.to_string());
    assert_eq!(claims["sid"], s.session.to_string());
    assert_eq!(claims["iss"], format!("{}/", s.fake.public_url()));
    // `tokenized` is the last key of the session.
    assert!(resp
        .text()
        .ends_with(&format!(",\"tokenized\":\"{jwt}\"}}\n")));
}

#[tokio::test]
async fn whoami_401_for_revoked_and_removed_sessions() {
    let s = setup().await;
    let whoami = || {
        s.public.send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
    };
    assert_whoami_ok(&s, &whoami().await);
    let before = Instant::now();
    let revoke = s
        .admin
        .send(
            s.admin
                .req(Method::DELETE, &format!("/admin/sessions/{}", s.session)),
            Bytes::new(),
        )
        .await;
    assert_eq!(revoke.status, StatusCode::NO_CONTENT);
    assert_whoami_401(&whoami().await);
    // The revocation is reported once, with when it happened.
    let ended = s.fake.drain_ended_sessions();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].0, s.session);
    assert!(ended[0].1 >= before);
    assert!(s.fake.drain_ended_sessions().is_empty());
    assert!(s.fake.remove_session(s.session));
    assert!(!s.fake.remove_session(s.session));
    assert_whoami_401(&whoami().await);
}

#[tokio::test]
async fn list_my_sessions_excludes_current_and_has_its_own_401() {
    let s = setup().await;
    let other = fresh_uuid();
    s.fake.add_session(SessionSpec::new(s.identity, other));
    s.fake
        .add_session(SessionSpec::new(fresh_uuid(), fresh_uuid()));
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("x-total-count"), Some("1"));
    assert_eq!(
        resp.text(),
        fixtures::sessions_list_body(&[(s.identity, other)])
    );

    let resp = s.public.get("/sessions").await;
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text(), fixtures::SESSIONS_401_WIRE);
    assert_eq!(
        fixtures::SESSIONS_401,
        r#"{"error":{"code":401,"status":"Unauthorized","reason":"No valid session cookie found.","message":"The request could not be authorized"}}"#
    );
}

// ---------------------------------------------------------------------------
// admin
// ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_session_lookup_with_and_without_expand() {
    let s = setup().await;
    let path = format!(
        "/admin/sessions/{}?expand=identity&expand=devices",
        s.session
    );
    let resp = s.admin.get(&path).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.header("cache-control"), Some(NO_CACHE));
    let body = resp.json();
    assert_eq!(body["id"], s.session.to_string());
    assert_eq!(body["identity"]["id"], s.identity.to_string());
    assert!(body["identity"].get("metadata_admin").is_some());
    assert!(body["devices"].is_array());
    // Identity expanded with devices is exactly the documented admin body.
    assert_eq!(resp.text(), fixtures::session_body(s.identity, s.session));

    // Unprefixed path and case-insensitive expand work too.
    let resp = s
        .admin
        .get(&format!("/sessions/{}?expand=Identity", s.session))
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.json()["identity"]["id"], s.identity.to_string());

    let resp = s.admin.get(&format!("/admin/sessions/{}", s.session)).await;
    assert_eq!(resp.status, StatusCode::OK);
    let body = resp.json();
    assert_eq!(body["identity"], serde_json::Value::Null);
    assert_eq!(body["id"], s.session.to_string());
    assert!(!resp.text().contains(&s.identity.to_string()));

    let resp = s
        .admin
        .get(&format!("/admin/sessions/{}", fresh_uuid()))
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        resp.text(),
        fixtures::fixture_wire("kratos-error-404-not-found.json")
    );
    assert_eq!(resp.header("content-type"), Some("application/json"));

    let resp = s.admin.get("/admin/sessions/not-a-uuid").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.text(),
        fixtures::fixture_wire("kratos-error-400-malformed-uuid.json")
    );
}

#[tokio::test]
async fn admin_identity_sessions_delete_204_then_404() {
    let s = setup().await;
    s.fake
        .add_session(SessionSpec::new(s.identity, fresh_uuid()));
    let path = format!("/admin/identities/{}/sessions", s.identity);
    let resp = s
        .admin
        .send(s.admin.req(Method::DELETE, &path), Bytes::new())
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert!(resp.body.is_empty());
    assert!(s.fake.sessions_of(s.identity).is_empty());
    assert!(s.fake.session_status(s.session).is_none());

    let resp = s
        .admin
        .send(s.admin.req(Method::DELETE, &path), Bytes::new())
        .await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(
        resp.text(),
        "{\"error\":{\"code\":404,\"status\":\"Not Found\",\"message\":\"Unable to locate the resource\"}}\n"
    );

    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
        .await;
    assert_whoami_401(&resp);
}

#[tokio::test]
async fn admin_revoke_and_extend_session() {
    let s = setup().await;
    let path = format!("/admin/sessions/{}/extend", s.session);
    let resp = s
        .admin
        .send(s.admin.req(Method::PATCH, &path), Bytes::new())
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.text(),
        fixtures::whoami_body(s.identity, s.session, None)
    );
    assert_eq!(
        s.fake.session_status(s.session).map(|st| st.extended),
        Some(1)
    );

    let resp = s
        .admin
        .send(
            s.admin
                .req(Method::DELETE, &format!("/sessions/{}", s.session)),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.fake.session_status(s.session).map(|st| st.revoked),
        Some(true)
    );
    // Already revoked: still 204 (Postgres semantics); the row is kept.
    let resp = s
        .admin
        .send(
            s.admin
                .req(Method::DELETE, &format!("/admin/sessions/{}", s.session)),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    let body = s
        .admin
        .get(&format!("/admin/sessions/{}?expand=identity", s.session))
        .await
        .json();
    assert_eq!(body["active"], false);

    let unknown = fresh_uuid();
    for (method, path) in [
        (Method::DELETE, format!("/admin/sessions/{unknown}")),
        (Method::PATCH, format!("/admin/sessions/{unknown}/extend")),
    ] {
        let resp = s.admin.send(s.admin.req(method, &path), Bytes::new()).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(resp.text(), fixtures::error_404_body());
    }
}

#[tokio::test]
async fn admin_identities_lookup() {
    let s = setup().await;
    let bob = fresh_uuid();
    s.fake
        .add_session(SessionSpec::new(bob, fresh_uuid()).email("bob@example.org"));

    let resp = s
        .admin
        .get("/admin/identities?credentials_identifier=bob%40example.org")
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    let list = resp.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], bob.to_string());
    assert_eq!(list[0]["traits"]["email"], "bob@example.org");
    assert!(list[0]["credentials"]["password"].get("config").is_none());

    let resp = s
        .admin
        .get("/admin/identities?credentials_identifier=nobody@example.org")
        .await;
    assert_eq!(resp.text(), "[]\n");

    let resp = s.admin.get(&format!("/admin/identities/{bob}")).await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), fixtures::identity_body(bob, "bob@example.org"));
    let resp = s.admin.get(&format!("/identities/{}", fresh_uuid())).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn admin_failures_and_delay() {
    let s = setup().await;
    s.fake.set_admin_failures(2);
    let path = format!("/admin/sessions/{}", s.session);
    for _ in 0..2 {
        let resp = s.admin.get(&path).await;
        assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.json()["error"]["code"], 500);
        assert_eq!(resp.header("content-type"), Some("application/json"));
    }
    assert_eq!(s.admin.get(&path).await.status, StatusCode::OK);

    s.fake.set_admin_delay(Duration::from_millis(300));
    let started = Instant::now();
    assert_eq!(s.admin.get(&path).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));
    s.fake.set_admin_delay(Duration::ZERO);
    // The public side is not delayed.
    let started = Instant::now();
    s.public.get("/health/alive").await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

// ---------------------------------------------------------------------------
// routing
// ---------------------------------------------------------------------------

#[tokio::test]
async fn go_mux_routing_by_default() {
    let s = setup().await;
    let with_token = |path: &str| {
        s.public.send(
            s.public
                .req(Method::GET, path)
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
    };
    // Segments are percent-decoded before matching, like Go 1.22's ServeMux.
    assert_whoami_ok(&s, &with_token("/sessions/%77hoami").await);
    // Unclean paths are redirected.
    let resp = with_token("//sessions/whoami?x=1").await;
    assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.header("location"), Some("/sessions/whoami?x=1"));
    let resp = with_token("/sessions/x/../whoami").await;
    assert_eq!(resp.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(resp.header("location"), Some("/sessions/whoami"));
    let resp = with_token("/sessions/whoami//").await;
    assert_eq!(resp.header("location"), Some("/sessions/whoami/"));
    // Trailing slash and case matter.
    for path in ["/sessions/whoami/", "/Sessions/whoami"] {
        let resp = with_token(path).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(resp.text(), "404 page not found\n");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
    }
    // `/sessions/WHOAMI` is `/sessions/{id}`, which only has DELETE.
    let resp = with_token("/sessions/WHOAMI").await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.text(), "Method Not Allowed\n");
    assert_eq!(resp.header("allow"), Some("DELETE"));
}

#[tokio::test]
async fn loose_routing() {
    let s = setup().await;
    s.fake.set_loose_routing(true);
    for path in [
        "//sessions/%77hoami/",
        "/Sessions/WhoAmI",
        "/sessions/./x/../whoami",
        "/sessions%2Fwhoami",
        "/%53essions//whoami//",
    ] {
        let resp = s
            .public
            .send(
                s.public
                    .req(Method::GET, path)
                    .header("x-session-token", &s.token),
                Bytes::new(),
            )
            .await;
        assert_whoami_ok(&s, &resp);
    }
    // The recorded uri is exactly what was sent.
    let calls = s.fake.calls();
    assert_eq!(calls[0].uri, "//sessions/%77hoami/");

    // Scripts are matched on the normalised path too.
    s.fake.on_public(
        "GET",
        "/self-service/login/api",
        Reply::json(200, "{\"x\":1}\n"),
    );
    let resp = s.public.get("/SELF-SERVICE//login/./api/").await;
    assert_eq!(resp.text(), "{\"x\":1}\n");

    s.fake.set_loose_routing(false);
    let resp = s.public.get("/Sessions/WhoAmI").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn unknown_paths_methods_health_and_admin_redirect() {
    let s = setup().await;
    for http in [&s.public, &s.admin] {
        let resp = http.get("/nope").await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(resp.text(), "404 page not found\n");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8")
        );

        let resp = http.get("/health/alive").await;
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.text(), "{\"status\":\"ok\"}\n");
    }
    let resp = s
        .public
        .send(s.public.req(Method::POST, "/sessions"), Bytes::new())
        .await;
    assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.header("allow"), Some("DELETE, GET, HEAD"));
    // A Kratos route the fake leaves out says so.
    let resp = s
        .public
        .send(s.public.req(Method::DELETE, "/sessions"), Bytes::new())
        .await;
    assert_eq!(resp.status, StatusCode::NOT_IMPLEMENTED);

    let resp = s
        .public
        .get("/admin/identities?credentials_identifier=a")
        .await;
    assert_eq!(resp.status, StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(
        resp.header("location"),
        Some(
            format!(
                "{}/admin/identities?credentials_identifier=a",
                s.fake.admin_url()
            )
            .as_str()
        )
    );
}

// ---------------------------------------------------------------------------
// scripting
// ---------------------------------------------------------------------------

#[tokio::test]
async fn scripted_reply_with_two_set_cookie_headers_takes_precedence() {
    let s = setup().await;
    let body = fixtures::spa_login_body(s.identity, s.session);
    s.fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, body.clone())
            .header(
                "set-cookie",
                "csrf_token_abc=q1w2; Path=/; HttpOnly; SameSite=Lax",
            )
            .header(
                "set-cookie",
                &format!(
                    "ory_kratos_session={}; Path=/; HttpOnly; SameSite=Lax",
                    s.cookie
                ),
            ),
    );
    let resp = s
        .public
        .send(
            s.public
                .req(Method::POST, "/self-service/login?flow=abc")
                .header("content-type", "application/json"),
            r#"{"method":"password"}"#,
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), body);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let cookies: Vec<&str> = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text"))
        .collect();
    assert_eq!(cookies.len(), 2);
    assert!(cookies[0].starts_with("csrf_token_abc="));
    assert!(cookies[1].starts_with("ory_kratos_session="));

    // Precedence over a built-in, limited with times(); the newest script wins.
    s.fake
        .on_public("ANY", "/sessions/whoami", Reply::text(503, "old").times(1));
    s.fake.on_public(
        MethodMatch::Any,
        "/sessions/whoami",
        Reply::text(502, "down").times(1),
    );
    let resp = s.public.get("/sessions/whoami").await;
    assert_eq!(resp.status, StatusCode::BAD_GATEWAY);
    assert_eq!(resp.text(), "down");
    assert_eq!(
        s.public.get("/sessions/whoami").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Both scripts used up: the built-in answers again.
    assert_whoami_401(&s.public.get("/sessions/whoami").await);

    // Admin scripts match with and without the /admin prefix.
    s.fake.on_admin(
        Method::GET,
        "/identities",
        Reply::json(200, "[]\n").header("x-scripted", "1"),
    );
    let resp = s
        .admin
        .get("/admin/identities?credentials_identifier=x")
        .await;
    assert_eq!(resp.header("x-scripted"), Some("1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_and_slow_replies_on_a_multi_thread_runtime() {
    let s = setup().await;
    s.fake.on_public(
        "GET",
        "/slow-headers",
        Reply::text(200, "late").delay(Duration::from_millis(200)),
    );
    s.fake.on_public(
        "GET",
        "/slow-body",
        Reply::chunks(200, 3, 4).chunk_interval(Duration::from_millis(100)),
    );
    let started = Instant::now();
    let resp = s.public.get("/slow-headers").await;
    assert_eq!(resp.text(), "late");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let started = Instant::now();
    let resp = s.public.get("/slow-body").await;
    assert_eq!(resp.text(), "xxxxxxxxxxxx");
    assert!(started.elapsed() >= Duration::from_millis(200));
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &s.token),
            Bytes::new(),
        )
        .await;
    assert_whoami_ok(&s, &resp);
}

#[tokio::test]
async fn gzip_reply_decodes_back() {
    let s = setup().await;
    let body = fixtures::native_login_body(s.identity, s.session, &s.token);
    s.fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(200, body.clone()).gzip(),
    );
    let resp = s
        .public
        .send(
            s.public.req(Method::POST, "/self-service/login?flow=1"),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.header("content-encoding"), Some("gzip"));
    assert_ne!(resp.body.as_ref(), body.as_bytes());
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(resp.body.as_ref())
        .read_to_string(&mut decoded)
        .expect("valid gzip");
    assert_eq!(decoded, body);

    // Streaming gzip of generated chunks.
    s.fake
        .on_public("GET", "/big.gz", Reply::chunks(200, 64, 16 * 1024).gzip());
    let resp = s.public.get("/big.gz").await;
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(resp.body.as_ref())
        .read_to_end(&mut decoded)
        .expect("valid gzip");
    assert_eq!(decoded.len(), 64 * 16 * 1024);
    assert!(decoded.iter().all(|&b| b == b'x'));
}

#[tokio::test]
async fn streamed_large_reply() {
    let s = setup().await;
    const CHUNK: usize = 64 * 1024;
    const COUNT: u64 = 1024; // 64 MiB
    s.fake
        .on_public("GET", "/big", Reply::chunks(200, COUNT, CHUNK));
    s.fake.on_public(
        "GET",
        "/big-with-length",
        Reply::chunks(200, 4, 10).known_length(),
    );
    let request = client::request(Method::GET, &format!("{}/big", s.fake.public_url()))
        .body(Full::new(Bytes::new()))
        .expect("valid request");
    let response = client::http1().request(request).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response
            .headers()
            .get("transfer-encoding")
            .map(|v| v.as_bytes()),
        Some(&b"chunked"[..])
    );
    let mut body = response.into_body();
    let mut total: u64 = 0;
    while let Some(frame) = tokio::time::timeout(Duration::from_secs(30), body.frame())
        .await
        .expect("frame in time")
    {
        if let Ok(data) = frame.expect("frame").into_data() {
            assert!(data.iter().all(|&b| b == b'x'));
            total += data.len() as u64;
        }
    }
    assert_eq!(total, COUNT * CHUNK as u64);

    let resp = s.public.get("/big-with-length").await;
    assert_eq!(resp.header("content-length"), Some("40"));
    assert_eq!(resp.body.len(), 40);
}

#[tokio::test]
async fn echo_streams_upload_back_and_recording_is_capped() {
    let s = setup().await;
    s.fake.on_public("POST", "/upload", Reply::echo(200));
    let upload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let resp = s
        .public
        .send(
            s.public
                .req(Method::POST, "/upload?x=1")
                .header("content-type", "application/x-test"),
            upload.clone(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header(RECEIVED_BYTES_HEADER),
        Some(upload.len().to_string().as_str())
    );
    assert_eq!(resp.header("content-type"), Some("application/x-test"));
    assert_eq!(resp.body.len(), upload.len());
    assert!(resp.body.as_ref() == upload.as_slice());

    let call = s
        .fake
        .wait_for_call(Side::Public, Method::POST, "/upload", TIMEOUT)
        .await
        .expect("recorded");
    assert_eq!(call.body_len, upload.len() as u64);
    assert_eq!(call.body.len(), MAX_RECORDED_BODY);
    assert_eq!(call.body.as_ref(), &upload[..MAX_RECORDED_BODY]);
    assert_eq!(call.uri, "/upload?x=1");
}

#[tokio::test]
async fn dynamic_reply_sees_the_recorded_call() {
    let s = setup().await;
    s.fake.on_admin(
        "ANY",
        "/admin/identities",
        Reply::from_fn(|call: &RecordedCall| {
            let who = call
                .query_param("credentials_identifier")
                .unwrap_or_default();
            Reply::json(
                200,
                format!("[{{\"who\":\"{who}\",\"len\":{}}}]\n", call.body_len),
            )
        })
        .header("x-dynamic", "yes"),
    );
    let resp = s
        .admin
        .get("/identities?credentials_identifier=carol%40example.org")
        .await;
    assert_eq!(resp.text(), "[{\"who\":\"carol@example.org\",\"len\":0}]\n");
    assert_eq!(resp.header("x-dynamic"), Some("yes"));
}

// ---------------------------------------------------------------------------
// recording
// ---------------------------------------------------------------------------

#[tokio::test]
async fn records_calls() {
    let s = setup().await;
    s.public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami?tokenize_as=a%20b")
                .header("x-session-token", &s.token)
                .header("x-request-id", "r-1"),
            Bytes::new(),
        )
        .await;
    s.admin
        .send(
            s.admin.req(
                Method::DELETE,
                &format!("/admin/identities/{}/sessions", fresh_uuid()),
            ),
            Bytes::new(),
        )
        .await;

    let calls = s.fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].side, Side::Public);
    assert_eq!(calls[0].method, Method::GET);
    assert_eq!(calls[0].uri, "/sessions/whoami?tokenize_as=a%20b");
    assert_eq!(calls[0].query_param("tokenize_as").as_deref(), Some("a b"));
    assert_eq!(calls[0].header("x-request-id"), Some("r-1"));
    assert_eq!(calls[0].version, Version::HTTP_11);
    assert!(calls[0].body.is_empty());
    assert_eq!(calls[1].side, Side::Admin);
    assert_eq!(calls[1].method, Method::DELETE);

    assert_eq!(
        s.fake
            .calls_matching(Side::Admin, "DELETE", "/admin/identities/")
            .len(),
        1
    );
    assert_eq!(
        s.fake.calls_matching(Side::Admin, "GET", "/admin/").len(),
        0
    );
    assert_eq!(
        s.fake
            .calls_matching(Side::Public, "ANY", "/sessions")
            .len(),
        1
    );

    // wait_for_call waits for a call that arrives later.
    let session_path = format!("/admin/sessions/{}", s.session);
    let admin = Http::new(s.fake.admin_url());
    let path = session_path.clone();
    let later = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin
            .send(
                admin
                    .req(Method::GET, &format!("{path}?expand=identity"))
                    .header("authorization", "Bearer ory_pat_x"),
                Bytes::new(),
            )
            .await
            .status
    });
    let call = s
        .fake
        .wait_for_call(Side::Admin, "GET", &session_path, TIMEOUT)
        .await
        .expect("call arrives");
    assert_eq!(call.query(), Some("expand=identity"));
    assert_eq!(call.header("authorization"), Some("Bearer ory_pat_x"));
    assert_eq!(later.await.expect("task"), StatusCode::OK);
    assert!(s
        .fake
        .wait_for_call(Side::Public, "GET", "/never", Duration::from_millis(50))
        .await
        .is_none());

    // Draining takes the calls recorded so far, oldest first, and forgets them.
    let drained = s.fake.drain_calls();
    assert_eq!(drained.len(), 3);
    assert!(drained.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(s.fake.calls().is_empty());
    s.public.get("/health/alive").await;
    s.fake.clear_calls();
    assert!(s.fake.calls().is_empty());
    assert!(s.fake.connections_accepted(Side::Public) >= 1);
}

#[tokio::test]
async fn shuts_down_when_dropped() {
    let fake = FakeKratos::start().await;
    let addrs = [fake.public_addr, fake.admin_addr];
    assert_eq!(
        Http::new(fake.public_url())
            .get("/health/alive")
            .await
            .status,
        StatusCode::OK
    );
    drop(fake);
    for addr in addrs {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} still accepting after drop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// fixtures
// ---------------------------------------------------------------------------

#[test]
fn fixture_builders_substitute_ids_everywhere() {
    let identity = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    let session = Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222);
    let token = "ory_st_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let placeholders = [
        fixtures::FIXTURE_IDENTITY_ID,
        fixtures::FIXTURE_SESSION_ID,
        fixtures::FIXTURE_TOKEN,
    ];

    let body = fixtures::native_registration_body(identity, session, token);
    assert!(body.ends_with("}\n") && !body.trim_end().contains('\n'));
    for placeholder in placeholders {
        assert!(!body.contains(placeholder), "{placeholder} left in {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["session_token"], token);
    assert_eq!(v["session"]["id"], session.to_string());
    assert_eq!(v["session"]["identity"]["id"], identity.to_string());
    assert_eq!(v["identity"]["id"], identity.to_string());
    let continue_with = v["continue_with"].as_array().expect("array");
    assert!(continue_with
        .iter()
        .any(|c| c["action"] == "set_ory_session_token" && c["ory_session_token"] == token));
    // Key order of the fixture is kept.
    assert!(body.starts_with("{\"session_token\":"));

    let body = fixtures::native_login_aal2_pending_body(session, token);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["session"]["identity"], serde_json::Value::Null);
    assert_eq!(v["session_token"], token);
    assert_eq!(v["continue_with"], serde_json::Value::Null);

    let v: serde_json::Value =
        serde_json::from_str(&fixtures::native_recovery_body(token)).expect("JSON");
    assert_eq!(v["continue_with"][0]["ory_session_token"], token);

    for body in [
        fixtures::native_login_body(identity, session, token),
        fixtures::spa_login_body(identity, session),
        fixtures::spa_registration_body(identity, session),
        fixtures::token_exchange_body(identity, session, token),
        fixtures::whoami_body(identity, session, Some("a.b.c")),
        fixtures::session_body(identity, session),
        fixtures::sessions_list_body(&[(identity, session)]),
    ] {
        for placeholder in placeholders {
            assert!(!body.contains(placeholder), "{placeholder} left in {body}");
        }
        assert!(body.contains(&identity.to_string()));
        assert!(body.ends_with('\n'));
    }

    let body = fixtures::whoami_body_with_email(identity, session, Some("dave@example.net"), None);
    assert!(!body.contains(fixtures::FIXTURE_EMAIL));
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["identity"]["traits"]["email"], "dave@example.net");
    assert_eq!(
        v["identity"]["verifiable_addresses"][0]["value"],
        "dave@example.net"
    );
    assert_eq!(
        v["identity"]["recovery_addresses"][0]["value"],
        "dave@example.net"
    );

    let v: serde_json::Value =
        serde_json::from_str(&fixtures::identity_body(identity, "erin@example.com")).expect("JSON");
    assert_eq!(v["id"], identity.to_string());
    assert_eq!(v["traits"]["email"], "erin@example.com");
    assert_eq!(v["recovery_addresses"][0]["value"], "erin@example.com");
}

#[test]
fn fixtures_load_and_render_like_go() {
    let value = fixtures::fixture("synthesized/native-login-200.json");
    assert_eq!(
        value["session"]["identity"]["id"],
        fixtures::FIXTURE_IDENTITY_ID
    );
    // Go escapes <, > and & in strings.
    assert!(fixtures::spa_login_422_body().contains("aal=aal2\\u0026return_to="));
    let json = Json::parse(r#"{"b":"<&>","a":[1,2.5,null,true]}"#).expect("parse");
    assert_eq!(
        json.to_wire(),
        "{\"b\":\"\\u003c\\u0026\\u003e\",\"a\":[1,2.5,null,true]}\n"
    );
    assert_eq!(
        Json::parse(&json.to_compact())
            .expect("round trip")
            .to_value(),
        json.to_value()
    );
    assert_eq!(fixtures::base64url(b"hello?"), "aGVsbG8_");
    assert_eq!(
        fixtures::base64url_decode("aGVsbG8_").as_deref(),
        Some(&b"hello?"[..])
    );
    // Every copied fixture parses.
    for entry in std::fs::read_dir(fixtures::fixture_path("synthesized")).expect("fixtures dir") {
        let name = format!(
            "synthesized/{}",
            entry.expect("entry").file_name().to_string_lossy()
        );
        fixtures::fixture_json(&name);
    }
}

// ---------------------------------------------------------------------------
// ids and request bodies as Kratos parses them (CONTRACT.md section 14)
// ---------------------------------------------------------------------------

/// Every spelling gofrs/uuid `FromString` accepts, for a given id, as it may appear in a
/// request path (the braced forms percent-encoded, as Go's router decodes them).
fn kratos_id_spellings(id: Uuid) -> Vec<String> {
    let canonical = id.to_string();
    let simple = id.simple().to_string();
    vec![
        canonical.clone(),
        canonical.to_ascii_uppercase(),
        simple.clone(),
        simple.to_ascii_uppercase(),
        format!("%7B{canonical}%7D"),
        format!("%7b{simple}%7d"),
        format!("urn:uuid:{canonical}"),
        format!("urn:uuid:{}", simple.to_ascii_uppercase()),
    ]
}

#[test]
fn ids_parse_like_gofrs_uuid() {
    use support::fake_kratos::parse_uuid_like_kratos as parse;
    let id = fresh_uuid();
    let canonical = id.to_string();
    let simple = id.simple().to_string();
    for text in [
        canonical.clone(),
        canonical.to_ascii_uppercase(),
        simple.clone(),
        simple.to_ascii_uppercase(),
        format!("{{{canonical}}}"),
        format!("{{{simple}}}"),
        format!("urn:uuid:{canonical}"),
        format!("urn:uuid:{simple}"),
    ] {
        assert_eq!(parse(&text), Some(id), "{text}");
    }
    for text in [
        String::new(),
        "not-a-uuid".to_owned(),
        format!("URN:UUID:{canonical}"),
        format!("({canonical})"),
        format!("{{{canonical}"),
        format!("{canonical}x"),
        canonical.replace('-', "_"),
        format!("{}g", &simple[..31]),
        format!(" {simple}"),
    ] {
        assert_eq!(parse(&text), None, "{text:?}");
    }
}

#[tokio::test]
async fn admin_routes_accept_every_id_spelling_kratos_accepts() {
    let s = setup().await;
    for (n, spelling) in kratos_id_spellings(s.session).into_iter().enumerate() {
        let resp = s
            .admin
            .get(&format!("/admin/sessions/{spelling}?expand=identity"))
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.session.to_string(), "{spelling}");
        let resp = s
            .admin
            .send(
                s.admin
                    .req(Method::PATCH, &format!("/admin/sessions/{spelling}/extend")),
                Bytes::new(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.session.to_string(), "{spelling}");
        assert_eq!(
            s.fake.session_status(s.session).map(|st| st.extended),
            Some(n as u32 + 1),
            "{spelling}"
        );
    }
    for spelling in kratos_id_spellings(s.identity) {
        let resp = s.admin.get(&format!("/admin/identities/{spelling}")).await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.identity.to_string(), "{spelling}");
    }
    // The last spelling revokes; all of them name the one session.
    let spelling = format!("urn:uuid:{}", s.session.simple());
    let resp = s
        .admin
        .send(
            s.admin
                .req(Method::DELETE, &format!("/admin/sessions/{spelling}")),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.fake.session_status(s.session).map(|st| st.revoked),
        Some(true)
    );
    // What gofrs refuses stays a 400.
    let resp = s
        .admin
        .get(&format!("/admin/sessions/URN:UUID:{}", s.session))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
}

#[test]
fn json_bodies_are_read_like_gos_decoder() {
    use support::flows::{first_json_value, Submitted};
    let json = Some("application/json");
    // The first value counts; whatever follows is ignored.
    for body in [
        r#"{"identifier":"a@x.example","password":"p","method":"password"} {"identifier":"b@y.example"}"#,
        r#"{"identifier":"a@x.example","password":"p","method":"password"}garbage"#,
        " \n{\"identifier\":\"a@x.example\"}\n",
        r#"{"identifier":"b@y.example","identifier":"a@x.example"}"#,
    ] {
        let s = Submitted::parse(json, body.as_bytes());
        assert_eq!(s.text("identifier"), Some("a@x.example"), "{body}");
    }
    // Deep nesting is fine up to Go's 10,000 levels.
    let deep = format!(
        r#"{{"identifier":"a@x.example","x":{}{}}}"#,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let s = Submitted::parse(json, deep.as_bytes());
    assert_eq!(s.text("identifier"), Some("a@x.example"));
    let deepest = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(first_json_value(deepest.as_bytes()).is_ok());
    let too_deep = format!("{}{}", "[".repeat(10_001), "]".repeat(10_001));
    assert!(first_json_value(too_deep.as_bytes()).is_err());
    // Broken first values and non-objects decode to nothing.
    for body in ["", "{", r#"{"identifier":}"#, "[1]", "garbage{}"] {
        assert_eq!(
            Submitted::parse(json, body.as_bytes()).fields,
            None,
            "{body}"
        );
    }
    // Values keep their form: numbers (normalised: serde_json has no raw numbers), escapes, order.
    let v = first_json_value(br#"{"b":1.5,"a":"\u00e9\n","c":[true,null,{}]}"#).expect("json");
    assert_eq!(v.to_compact(), r#"{"b":1.5,"a":"é\n","c":[true,null,{}]}"#);
    // The content type decides; parameters and case do not matter.
    let body = br#"{"identifier":"a@x.example"}"#;
    assert!(
        Submitted::parse(Some("Application/JSON; charset=utf-8"), body)
            .text("identifier")
            .is_some()
    );
    assert_eq!(Submitted::parse(Some("text/plain"), body).fields, None);
    assert_eq!(Submitted::parse(None, body).fields, None);
}

#[test]
fn form_bodies_are_read_like_kratos() {
    use support::flows::Submitted;
    let form = Some("application/x-www-form-urlencoded");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", "c")
        .append_pair("method", "code")
        .append_pair("email", "a@x.example")
        .append_pair("traits.email", "t@x.example")
        .append_pair("traits.name.first", "Ann")
        .append_pair("transient_payload", r#"{"identity":{"id":"x"}}"#)
        .finish();
    let s = Submitted::parse(form, body.as_bytes());
    assert_eq!(s.text("email"), Some("a@x.example"));
    assert_eq!(
        s.transient_payload().map(Json::to_compact).as_deref(),
        Some(r#"{"identity":{"id":"x"}}"#)
    );
    assert_eq!(
        s.field("traits").map(Json::to_compact).as_deref(),
        Some(r#"{"email":"t@x.example","name":{"first":"Ann"}}"#)
    );
    let s = Submitted::parse(Some("multipart/form-data; boundary=x"), body.as_bytes());
    assert_eq!(s.field("email"), None);
}

// ---------------------------------------------------------------------------
// flow answers that echo the client (CONTRACT.md section 14)
// ---------------------------------------------------------------------------

const PAYLOAD: &str = r#"{"identity":{"id":"00000000-0000-4000-8000-000000000001","traits":{"email":"<x>@unlisted.example"}},"n":[1.0,{}],"session_token":"ory_st_fromtheclient"}"#;

async fn post(http: &Http, path: &str, content_type: &str, accept: &str, body: String) -> Resp {
    http.send(
        http.req(Method::POST, path)
            .header("content-type", content_type)
            .header("accept", accept),
        body,
    )
    .await
}

#[tokio::test]
async fn recovery_code_sent_echoes_payload_and_address_for_anyone() {
    use support::flows::{recovery_code_sent, Flow, FlowType};
    let s = setup().await;
    let flow = Flow::new(FlowType::Api);
    let flow_id = flow.id;
    s.fake
        .on_public("POST", "/self-service/recovery", recovery_code_sent(flow));
    let body = format!(
        r#"{{"method":"code","email":"nobody@unknown.example","transient_payload":{PAYLOAD}}}"#
    );
    let resp = post(
        &s.public,
        &format!("/self-service/recovery?flow={flow_id}"),
        "application/json",
        "application/json",
        body,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let v = resp.json();
    assert_eq!(v["id"], flow_id.to_string());
    assert_eq!(v["type"], "api");
    assert_eq!(v["state"], "sent_email");
    assert_eq!(v["ui"]["messages"][0]["id"], 1_060_003);
    for key in [
        "id",
        "type",
        "expires_at",
        "issued_at",
        "request_url",
        "ui",
        "state",
    ] {
        assert!(v.get(key).is_some(), "recoveryFlow requires {key}: {v}");
    }
    // The payload is the client's, byte for byte in Go's form (HTML-escaped, compact).
    let wire_payload = Json::parse(PAYLOAD).expect("json").to_compact();
    assert!(
        resp.text()
            .contains(&format!("\"transient_payload\":{wire_payload}")),
        "{}",
        resp.text()
    );
    assert!(resp.text().contains("\\u003cx\\u003e"), "Go escapes <>");
    let email = v["ui"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["attributes"]["name"] == "email")
        .expect("email node");
    assert_eq!(email["attributes"]["value"], "nobody@unknown.example");
    assert!(v.get("continue_with").is_none());
    assert!(resp.header("set-cookie").is_none());
    // The same as a form (the payload is JSON text in a field).
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("method", "code")
        .append_pair("email", "f@unknown.example")
        .append_pair("transient_payload", PAYLOAD)
        .finish();
    let resp = post(
        &s.public,
        &format!("/self-service/recovery?flow={flow_id}"),
        "application/x-www-form-urlencoded",
        "application/json",
        form,
    )
    .await;
    assert_eq!(
        resp.json()["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
}

#[tokio::test]
async fn native_recovery_hands_out_a_real_token_and_no_identity_id() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let spec = SessionSpec::new(identity, session).token(token.clone());
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    // Step 1: the code is sent; no session exists yet.
    let resp = post(
        &s.public,
        &path,
        "application/json",
        "application/json",
        r#"{"method":"code","email":"r@x.example"}"#.to_owned(),
    )
    .await;
    assert_eq!(resp.json()["state"], "sent_email");
    assert_eq!(s.fake.session_status(session), None);
    // Step 2: the code; the session is created and its token handed out.
    let resp = post(
        &s.public,
        &path,
        "application/json",
        "application/json",
        format!(r#"{{"method":"code","code":"123456","transient_payload":{PAYLOAD}}}"#),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["state"], "passed_challenge");
    assert_eq!(v["continue_with"][0]["action"], "set_ory_session_token");
    assert_eq!(v["continue_with"][0]["ory_session_token"], token.as_str());
    assert_eq!(v["continue_with"][1]["action"], "show_settings_ui");
    assert!(v["continue_with"][1]["flow"]["id"].is_string());
    assert!(v["continue_with"][1]["flow"]["url"].is_string());
    assert_eq!(
        v["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
    let code = v["ui"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["attributes"]["name"] == "code")
        .expect("code node");
    assert_eq!(code["attributes"]["value"], "123456");
    // Nothing Kratos wrote names the identity or the session.
    let mut kratos_part = v.clone();
    kratos_part
        .as_object_mut()
        .expect("object")
        .remove("transient_payload");
    let text = kratos_part.to_string();
    assert!(!text.contains(&identity.to_string()), "{text}");
    assert!(!text.contains(&session.to_string()), "{text}");
    // The token is a live session.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("x-kratos-authenticated-identity-id"),
        Some(identity.to_string().as_str())
    );
}

#[tokio::test]
async fn recovery_of_an_identity_with_a_second_factor_is_aal1() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let token = fresh_token();
    let spec = SessionSpec::new(fresh_uuid(), fresh_uuid())
        .token(token.clone())
        .aal2_pending();
    let flow = Flow::new(FlowType::Api);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/json",
        "application/json",
        r#"{"method":"code","code":"123456"}"#.to_owned(),
    )
    .await;
    assert_eq!(
        resp.json()["continue_with"][0]["ory_session_token"],
        token.as_str()
    );
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.json()["error"]["id"], "session_aal2_required");
}

#[tokio::test]
async fn browser_recovery_sets_the_session_cookie_with_the_echo() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let (identity, cookie) = (fresh_uuid(), fresh_cookie_value());
    let spec = SessionSpec::new(identity, fresh_uuid()).cookie(cookie.clone());
    let flow = Flow::new(FlowType::Browser);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    // SPA: 200 flow + Set-Cookie.
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/json",
        "application/json",
        format!(r#"{{"method":"code","code":"123456","transient_payload":{PAYLOAD}}}"#),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let cookies: Vec<&str> = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text"))
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[1].starts_with(&session_cookie(&cookie)),
        "{cookies:?}"
    );
    let v = resp.json();
    assert_eq!(v["type"], "browser");
    assert_eq!(v["continue_with"][0]["action"], "show_settings_ui");
    assert_eq!(
        v["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
    assert!(!resp.text().contains(&identity.to_string()));
    // The cookie is a live session.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("cookie", session_cookie(&cookie)),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    // A browser form gets a 303 with the cookie.
    let form = "method=code&code=123456".to_owned();
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/x-www-form-urlencoded",
        "text/html,*/*;q=0.8",
        form,
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp
        .header("location")
        .is_some_and(|l| l.contains("/settings?flow=")));
    assert_eq!(resp.headers.get_all("set-cookie").iter().count(), 2);
}
