//! The admin API is not reachable through the public listener, however the path is spelled:
//! Kratos would answer with a redirect revealing its admin URL, and on a shared origin an
//! extend sent to the public side would skip the admin listener's check.

use crate::support;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use support::client::{http1, request, send};
use support::fake_kratos::{fresh_uuid, FakeKratos, Side};
use support::gateway::start_gateway;

#[tokio::test]
async fn admin_paths_are_404_on_the_public_listener_and_never_forwarded() {
    let fake = FakeKratos::start().await;
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    let sid = fresh_uuid();
    let attempts = [
        (Method::GET, "/admin/identities".to_owned()),
        (Method::PATCH, format!("/admin/sessions/{sid}/extend")),
        (Method::PATCH, format!("//Admin/./sessions/{sid}/extend")),
        (
            Method::DELETE,
            "/x/../admin/identities/abc/sessions".to_owned(),
        ),
        (Method::GET, "/%61dmin/courier/messages".to_owned()),
    ];
    for (method, path) in attempts {
        let reply = send(
            &http1(),
            request(method.clone(), &gw.public_url(&path))
                .body(Full::new(Bytes::new()))
                .expect("req"),
        )
        .await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(reply.json()["error"]["code"], 404, "{method} {path}");
    }
    assert!(
        fake.calls_matching(Side::Public, "ANY", "/").is_empty(),
        "{:?}",
        fake.calls()
    );
    // Paths that merely start with the letters pass.
    let reply = send(
        &http1(),
        request(Method::GET, &gw.public_url("/administrator"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        fake.calls_matching(Side::Public, "GET", "/administrator")
            .len(),
        1
    );
    gw.shutdown().await;
}
