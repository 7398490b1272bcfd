//! The public policy: the request phase (admin API refused, submissions read) and, through
//! the engine, the response phase (withheld, passed, signed out, failed closed).

use super::*;

#[tokio::test]
async fn the_public_request_phase_refuses_the_admin_api_and_asks_for_unencoded_bodies() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let mut ctx = PublicCtx::default();
    let refused = p
        .on_request(
            &exchange("GET", "/admin/identities"),
            &mut ctx,
            Request::get("/admin/identities")
                .body(crate::body::empty_body())
                .expect("r"),
        )
        .await
        .expect_err("refused");
    assert_eq!(refused.status(), StatusCode::NOT_FOUND);

    let forwarded = p
        .on_request(
            &exchange("GET", "/sessions/whoami"),
            &mut ctx,
            Request::get("/sessions/whoami")
                .header("accept-encoding", "gzip, br")
                .header("cookie", "ory_kratos_session=abc")
                .body(crate::body::empty_body())
                .expect("r"),
        )
        .await
        .expect("forwarded");
    assert_eq!(forwarded.headers()["accept-encoding"], "identity");
    assert!(ctx.session_cookie_sent);
}

async fn submit(
    p: &PublicPolicy,
    target: &str,
    content_type: &str,
    body: &str,
) -> (PublicCtx, Vec<u8>) {
    let mut ctx = PublicCtx::default();
    let request = Request::post(target)
        .header("content-type", content_type)
        .body(full_body(body.to_owned()))
        .expect("r");
    let forwarded = p
        .on_request(&exchange("POST", target), &mut ctx, request)
        .await
        .expect("forwarded");
    let bytes = http_body_util::BodyExt::collect(forwarded.into_body())
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (ctx, bytes)
}

#[tokio::test]
async fn a_login_submission_is_read_as_kratos_reads_it_and_forwarded_unchanged() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let body = "{\"method\":\"password\",\"identifier\":\"Listed@Example.com\",\"password\":\"x\"}";
    let (ctx, forwarded) = submit(&p, "/self-service/login?flow=1", "application/json", body).await;
    assert_eq!(forwarded, body.as_bytes());
    assert!(
        matches!(ctx.submission, Submission::Copied { .. }),
        "read only when needed"
    );
    match &*ctx.submission.read() {
        Submission::Read(s) => assert_eq!(s.identifier.as_deref(), Some("Listed@Example.com")),
        other => panic!("{other:?}"),
    }
    // A body too large to copy is forwarded whole, and marked unreadable.
    let p = public(&f, Some(16));
    let (ctx, forwarded) = submit(&p, "/self-service/login?flow=1", "application/json", body).await;
    assert_eq!(forwarded, body.as_bytes());
    assert!(matches!(ctx.submission, Submission::Unreadable));
    // Not a form or JSON: not read.
    let (ctx, _) = submit(&p, "/self-service/login", "text/plain", "identifier=x").await;
    assert!(matches!(ctx.submission, Submission::NotRead));
}

#[tokio::test]
async fn a_recovery_code_request_remembers_the_address_for_its_flow() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let p = public(&f, None);
    let target = format!("/self-service/recovery?flow={SESSION_3}");
    let (ctx, _) = submit(
        &p,
        &target,
        "application/x-www-form-urlencoded",
        "method=code&email=Listed%40Example.com",
    )
    .await;
    assert_eq!(ctx.recovery_flow, Some(id(SESSION_3)));
    let flow = p
        .recovery_addresses
        .get(&id(SESSION_3))
        .expect("remembered");
    assert_eq!(flow.addresses, ["listed@example.com"]);
}

/// The public policy behind the engine, in front of `kratos`.
async fn gateway(k: &Server, f: &Fixture) -> std::net::SocketAddr {
    testing::engine(&k.url(), public(f, None)).await
}

async fn body_text(response: http::Response<hyper::body::Incoming>) -> String {
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Request<crate::body::Body> {
    let mut r = Request::builder()
        .method(method)
        .uri(target)
        .header("host", "auth.example.com");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(crate::body::empty_body()).expect("request")
}

#[tokio::test]
async fn a_listed_identitys_login_answer_is_withheld_and_only_other_cookies_pass() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(
        addr,
        request("POST", "/self-service/login?flow=1&who=listed", &[]),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["csrf_token=abc; Path=/"]);
    let body = body_text(response).await;
    assert!(!body.contains("ory_st_new"), "{body}");
    assert!(body.contains("identity_disabled"), "{body}");
}

#[tokio::test]
async fn an_unlisted_identitys_login_answer_passes_byte_for_byte() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(addr, request("POST", "/self-service/login?flow=1", &[])).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = body_text(response).await;
    assert_eq!(
        body,
        json!({"session_token": "ory_st_new", "session": {"id": SESSION_2, "identity": {"id": OTHER}}})
            .to_string()
    );
}

#[tokio::test]
async fn whoami_of_a_listed_session_is_kratos_401_and_only_a_browser_gets_the_clearing_cookie() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let browser = testing::send(
        addr,
        request(
            "GET",
            "/sessions/whoami",
            &[("cookie", "ory_kratos_session=listed")],
        ),
    )
    .await;
    assert_eq!(browser.status(), StatusCode::UNAUTHORIZED);
    let clear = browser.headers()["set-cookie"]
        .to_str()
        .expect("v")
        .to_owned();
    assert!(clear.starts_with("ory_kratos_session=;"), "{clear}");
    assert_eq!(body_text(browser).await, crate::respond::WHOAMI_401);

    let app = testing::send(
        addr,
        request(
            "GET",
            "/sessions/whoami",
            &[("x-session-token", "ory_st_listed")],
        ),
    )
    .await;
    assert_eq!(app.status(), StatusCode::UNAUTHORIZED);
    assert!(app.headers().get("set-cookie").is_none());
    assert_eq!(body_text(app).await, crate::respond::WHOAMI_401);
}

#[tokio::test]
async fn a_credential_whose_owner_cannot_be_asked_does_not_leave() {
    // A recovery answer hands out a token; whoami about it fails.
    let k = Server::start(|seen: &Seen| {
        if seen.uri.path() == "/sessions/whoami" {
            reply(500, "")
        } else {
            reply(
                200,
                &json!({"continue_with": [{"ory_session_token": "ory_st_secret"}]}).to_string(),
            )
        }
    })
    .await;
    let f = fixture(&k, LIST).await;
    let addr = gateway(&k, &f).await;
    let response = testing::send(addr, request("POST", "/self-service/recovery?flow=1", &[])).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = body_text(response).await;
    assert!(!body.contains("ory_st_secret"), "{body}");
}
