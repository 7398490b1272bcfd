//! The fake Kratos: recorded calls, and shutting down when dropped.

use super::*;

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
