//! The fake Kratos: routing like Go's ServeMux, loose routing, unknown paths and methods.

use super::*;

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
