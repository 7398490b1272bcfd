//! The admin policy: extends of listed identities' sessions.

use super::*;

async fn extend(
    f: &Fixture,
    target: &str,
) -> Result<Request<crate::body::Body>, http::Response<crate::body::Body>> {
    let policy = AdminPolicy::new(Arc::clone(&f.enforcer));
    let request = Request::patch(target)
        .body(crate::body::empty_body())
        .expect("r");
    policy
        .on_request(&exchange("PATCH", target), &mut (), request)
        .await
}

#[tokio::test]
async fn an_extend_of_a_listed_identitys_session_is_refused_and_the_session_revoked() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let dashless = SESSION_2.replace('-', "").to_uppercase();
    for target in [
        format!("/admin/sessions/{SESSION_2}/extend"),
        format!("/sessions/{dashless}/extend"),
    ] {
        let refused = extend(&f, &target).await.expect_err("refused");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{target}");
        assert_eq!(refused.headers()["ory-error-id"], "identity_disabled");
    }
    let revoked = format!("/admin/sessions/{SESSION_2}");
    tokio::time::timeout(Duration::from_secs(10), async {
        while !k
            .seen()
            .iter()
            .any(|s| s.method == http::Method::DELETE && s.target() == revoked)
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the session is revoked");
}

#[tokio::test]
async fn an_extend_of_anyone_else_or_an_unknown_session_goes_through() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    for target in [
        format!("/admin/sessions/{SESSION}/extend"),
        format!("/admin/sessions/{OTHER}/extend"),
        "/admin/identities".to_owned(),
    ] {
        let forwarded = extend(&f, &target).await.expect("forwarded");
        assert_eq!(forwarded.uri().path(), target);
    }
    // Only the two extends asked about their session; nothing was revoked.
    let seen = k.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|s| s.method == http::Method::GET));
}

#[tokio::test]
async fn an_extend_kratos_would_refuse_or_cannot_check_is_not_forwarded() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let bad = extend(&f, "/admin/sessions/not-a-uuid/extend")
        .await
        .expect_err("malformed");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(
        k.seen().is_empty(),
        "Kratos is not asked about an id it would refuse"
    );
    let unavailable = extend(&f, &format!("/admin/sessions/{SESSION_3}/extend"))
        .await
        .expect_err("Kratos failing");
    assert_eq!(unavailable.status(), StatusCode::SERVICE_UNAVAILABLE);
}
