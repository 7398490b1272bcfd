//! The fake Kratos: whoami on every credential form, and the caller's other sessions.

use super::*;

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
