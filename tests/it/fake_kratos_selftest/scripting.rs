//! The fake Kratos: scripted replies: precedence, delays, gzip, streams, echo, replies computed per call.

use super::*;

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
