//! The fake Kratos: the admin API: session lookup, revocation, extension, identities, failures and delay.

use super::*;

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
