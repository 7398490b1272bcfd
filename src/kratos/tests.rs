//! How the Kratos client reads each answer: status → result or error, against a small fake
//! Kratos on port 0.

use std::sync::Arc;

use super::*;
use crate::testing::{self, reply, Server};

const IDENTITY: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
const SESSION: &str = "8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b";

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("uuid")
}

/// A client whose public and admin URLs are both `server`.
fn client(server: &Server) -> KratosClient {
    let config = testing::config(&server.url(), &server.url(), "");
    testing::kratos_client(&config, Some("admin-secret"))
}

fn token() -> Credential {
    Credential::Token("ory_st_abc".to_owned())
}

async fn whoami_with(status: u16, body: &'static str) -> Result<WhoamiAnswer, LookupError> {
    let kratos = Server::start(move |_| reply(status, body)).await;
    client(&kratos).whoami(&token()).await
}

#[tokio::test]
async fn whoami_200_names_the_identity_from_the_header_first_then_the_body() {
    let other = "11111111-2222-4333-8444-555555555555";
    let kratos = Server::start(move |_| {
        let mut r = reply(
            200,
            "{\"id\":\"8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b\",\"identity\":{\"id\":\"11111111-2222-4333-8444-555555555555\"}}",
        );
        r.headers_mut()
            .insert(IDENTITY_ID_HEADER.clone(), IDENTITY.parse().expect("v"));
        r
    })
    .await;
    let answer = client(&kratos).whoami(&token()).await.expect("answer");
    assert_eq!(
        answer,
        WhoamiAnswer::Identity {
            id: id(IDENTITY),
            session_id: Some(id(SESSION))
        }
    );

    let answer = whoami_with(
        200,
        "{\"identity\":{\"id\":\"11111111-2222-4333-8444-555555555555\"}}",
    )
    .await
    .expect("answer");
    assert_eq!(
        answer,
        WhoamiAnswer::Identity {
            id: id(other),
            session_id: None
        }
    );
}

#[tokio::test]
async fn whoami_200_without_an_identity_or_with_a_broken_body_is_an_error() {
    let e = whoami_with(200, "{\"id\":\"8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b\"}")
        .await
        .expect_err("no identity");
    assert!(matches!(e, LookupError::Body { what: "whoami", .. }), "{e}");
    let e = whoami_with(200, "<html>").await.expect_err("not json");
    assert!(matches!(e, LookupError::Body { .. }), "{e}");
}

#[tokio::test]
async fn whoami_401_is_no_session_whatever_its_body() {
    for body in ["{\"error\":{\"code\":401}}", "", "<html>nope</html>"] {
        assert_eq!(
            whoami_with(401, body).await.expect("answer"),
            WhoamiAnswer::NoSession
        );
    }
}

#[tokio::test]
async fn whoami_403_is_a_pending_second_factor_only_in_kratos_own_words() {
    let aal2 = "{\"error\":{\"id\":\"session_aal2_required\",\"code\":403}}";
    assert_eq!(
        whoami_with(403, aal2).await.expect("answer"),
        WhoamiAnswer::Aal2Required
    );
    for body in [
        "<html>Forbidden by the edge</html>",
        "{\"error\":{\"id\":\"security_csrf_violation\",\"code\":403}}",
        "{\"error\":{\"code\":403}}",
        "",
    ] {
        let e = whoami_with(403, body).await.expect_err(body);
        assert!(matches!(e, LookupError::Body { .. }), "{body}: {e}");
    }
}

#[tokio::test]
async fn whoami_any_other_status_is_a_status_error() {
    for status in [500u16, 502, 429, 404, 400, 302, 204] {
        let e = whoami_with(status, "").await.expect_err("status");
        match e {
            LookupError::Status { status: s, what } => {
                assert_eq!(s.as_u16(), status);
                assert_eq!(what, "whoami");
            }
            other => panic!("{status}: {other}"),
        }
    }
}

#[tokio::test]
async fn whoami_presents_the_credential_as_the_client_would() {
    let kratos = Server::start(|_| reply(401, "")).await;
    let c = client(&kratos);
    c.whoami(&token()).await.expect("answer");
    c.whoami(&Credential::Cookie("ory_kratos_session=xyz".to_owned()))
        .await
        .expect("answer");
    let seen = kratos.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].target(), "/sessions/whoami");
    assert_eq!(seen[0].headers["x-session-token"], "ory_st_abc");
    assert!(seen[0].headers.get("cookie").is_none());
    assert_eq!(seen[1].headers["cookie"], "ory_kratos_session=xyz");
    assert!(seen[1].headers.get("x-session-token").is_none());
    // The admin token never goes to the public API.
    assert!(seen
        .iter()
        .all(|s| s.headers.get("authorization").is_none()));
}

#[tokio::test]
async fn an_unreachable_kratos_is_a_transport_error() {
    let url = testing::closed_url().await;
    let config = testing::config(&url, &url, "");
    let c = testing::kratos_client(&config, None);
    let e = c.whoami(&token()).await.expect_err("down");
    assert!(
        matches!(e, LookupError::Transport { what: "whoami", .. }),
        "{e}"
    );
    let e = c.session_owner(id(SESSION)).await.expect_err("down");
    assert!(matches!(e, LookupError::Transport { .. }), "{e}");
    let e = c.revoke_session(id(SESSION)).await.expect_err("down");
    assert!(matches!(e, LookupError::Transport { .. }), "{e}");
}

#[tokio::test]
async fn session_owner_reads_the_expanded_identity_and_404_is_unknown() {
    let kratos = Server::start(|seen| {
        if seen.uri.path().ends_with("8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b") {
            reply(
                200,
                "{\"id\":\"8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b\",\"identity\":{\"id\":\"5ff66179-c240-4703-b0d8-494592cefff5\",\"traits\":{\"email\":\" Listed@Example.com\"}}}",
            )
        } else {
            reply(404, "{\"error\":{\"code\":404}}")
        }
    })
    .await;
    let c = client(&kratos);
    let owner = c
        .session_owner(id(SESSION))
        .await
        .expect("ok")
        .expect("known");
    assert_eq!(owner.id, id(IDENTITY));
    assert_eq!(owner.addresses, vec!["listed@example.com".to_owned()]);
    assert_eq!(c.session_owner(id(IDENTITY)).await.expect("ok"), None);
    let seen = kratos.seen();
    assert_eq!(
        seen[0].target(),
        format!("/admin/sessions/{SESSION}?expand=identity")
    );
    assert_eq!(seen[0].headers["authorization"], "Bearer admin-secret");
}

#[tokio::test]
async fn session_owner_without_an_identity_or_on_a_5xx_is_an_error() {
    let kratos =
        Server::start(|_| reply(200, "{\"id\":\"8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b\"}")).await;
    let e = client(&kratos)
        .session_owner(id(SESSION))
        .await
        .expect_err("no identity");
    assert!(matches!(e, LookupError::Body { .. }), "{e}");
    let kratos = Server::start(|_| reply(503, "")).await;
    let e = client(&kratos)
        .session_owner(id(SESSION))
        .await
        .expect_err("down");
    assert!(matches!(e, LookupError::Status { .. }), "{e}");
}

#[tokio::test]
async fn identity_addresses_are_cached_and_an_unknown_identity_has_none() {
    let kratos = Server::start(|seen| {
        if seen.uri.path().ends_with(IDENTITY) {
            reply(
                200,
                "{\"id\":\"5ff66179-c240-4703-b0d8-494592cefff5\",\"verifiable_addresses\":[{\"value\":\"a@example.com\"}],\"traits\":{\"email\":\"b@example.com\"}}",
            )
        } else {
            reply(404, "")
        }
    })
    .await;
    let c = client(&kratos);
    let first = c.identity_addresses(id(IDENTITY)).await.expect("ok");
    assert_eq!(&first[..], ["a@example.com", "b@example.com"]);
    let again = c.identity_addresses(id(IDENTITY)).await.expect("ok");
    assert!(Arc::ptr_eq(&first, &again));
    assert_eq!(
        kratos.seen().len(),
        1,
        "the second answer came from the cache"
    );
    assert!(c
        .identity_addresses(id(SESSION))
        .await
        .expect("ok")
        .is_empty());
    let kratos = Server::start(|_| reply(500, "")).await;
    let e = client(&kratos)
        .identity_addresses(id(IDENTITY))
        .await
        .expect_err("5xx");
    assert!(matches!(e, LookupError::Status { .. }), "{e}");
}

#[tokio::test]
async fn identifier_search_sends_the_identifier_encoded_and_reads_a_list() {
    let kratos = Server::start(|_| {
        reply(
            200,
            "[{\"id\":\"5ff66179-c240-4703-b0d8-494592cefff5\"},{\"id\":\"not-a-uuid\"}]",
        )
    })
    .await;
    let found = client(&kratos)
        .identities_by_identifier("a+b@example.com")
        .await
        .expect("ok");
    assert_eq!(found.len(), 1, "an entry without a valid id is no owner");
    assert_eq!(found[0].id, id(IDENTITY));
    assert_eq!(
        kratos.seen()[0].target(),
        "/admin/identities?credentials_identifier=a%2Bb%40example.com"
    );

    let kratos = Server::start(|_| reply(200, "{\"id\":\"x\"}")).await;
    let e = client(&kratos)
        .identities_by_identifier("a@example.com")
        .await
        .expect_err("not a list");
    assert!(matches!(e, LookupError::Body { .. }), "{e}");
    // 404 is no answer for a search.
    let kratos = Server::start(|_| reply(404, "")).await;
    let e = client(&kratos)
        .identities_by_identifier("a@example.com")
        .await
        .expect_err("404");
    assert!(matches!(e, LookupError::Status { .. }), "{e}");
}

#[tokio::test]
async fn a_revocation_is_done_on_success_or_404_and_fails_on_anything_else() {
    for (status, done) in [
        (204u16, true),
        (200, true),
        (404, true),
        (500, false),
        (429, false),
        (401, false),
    ] {
        let kratos = Server::start(move |_| reply(status, "")).await;
        let c = client(&kratos);
        assert_eq!(
            c.revoke_session(id(SESSION)).await.is_ok(),
            done,
            "{status}"
        );
        assert_eq!(
            c.revoke_identity_sessions(id(IDENTITY)).await.is_ok(),
            done,
            "{status}"
        );
        let seen = kratos.seen();
        assert_eq!(seen[0].method, http::Method::DELETE);
        assert_eq!(seen[0].target(), format!("/admin/sessions/{SESSION}"));
        assert_eq!(
            seen[1].target(),
            format!("/admin/identities/{IDENTITY}/sessions")
        );
        assert_eq!(seen[1].headers["authorization"], "Bearer admin-secret");
    }
}

#[tokio::test]
async fn an_answer_larger_than_the_bound_is_refused() {
    let big: &'static str =
        Box::leak(format!("{{\"pad\":\"{}\"}}", "x".repeat(Reply::MAX_BODY)).into_boxed_str());
    let e = whoami_with(200, big).await.expect_err("too large");
    match e {
        LookupError::Body { detail, .. } => assert!(detail.contains("larger than"), "{detail}"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn lookups_are_timed_and_revocations_are_not() {
    let kratos = Server::start(|_| reply(401, "")).await;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let c = client(&kratos).with_metrics(Arc::clone(&metrics));
    c.whoami(&token()).await.expect("answer");
    c.revoke_session(id(SESSION))
        .await
        .expect_err("401 is no revocation");
    let text = metrics.encode();
    let counts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("kratos_lookup_duration_seconds_count{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(counts.len(), 1, "{text}");
    assert!(
        counts[0].contains("source=\"whoami\"") && counts[0].ends_with(" 1"),
        "{text}"
    );
}
