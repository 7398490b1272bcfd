//! Attribution: Kratos-authored positions, the admin API and whoami, submissions, bounds.

use super::*;

fn no_submission() -> Submission {
    Submission::NotRead
}

async fn attribute(
    f: &Fixture,
    submission: &Submission,
    body: Value,
    cookies: &[&str],
) -> Result<attribution::Attribution, GatewayError> {
    let recovery = RecoveryAddresses::new(10, Duration::from_secs(60));
    let request = attribution::Request {
        submission,
        recovery_flow: None,
        recovery_addresses: &recovery,
    };
    let cookies: Vec<String> = cookies.iter().map(|c| (*c).to_owned()).collect();
    attribution::attribute(&f.enforcer, &request, &findings(body), &cookies).await
}

fn suspects(a: &attribution::Attribution) -> Vec<Uuid> {
    a.suspects.iter().filter_map(|s| s.id).collect()
}

#[tokio::test]
async fn a_token_at_an_authored_position_is_vouched_for_by_the_body_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_unknown", "session": {"id": SESSION_2, "identity": {"id": LISTED}}}),
        &["ory_kratos_session=abc"],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);
    assert_eq!(a.sessions, [id(SESSION_2)]);
    assert!(k.seen().is_empty(), "{:?}", k.seen());
}

#[tokio::test]
async fn an_echoed_identity_is_no_evidence_and_the_token_is_asked_about() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    // The client wrote the identity into transient_payload; Kratos's word is whoami's.
    let a = attribute(
        &f,
        &no_submission(),
        json!({
            "transient_payload": {"identity": {"id": OTHER}, "session": {"id": SESSION, "identity": {"id": OTHER}}},
            "continue_with": [{"action": "set_ory_session_token", "ory_session_token": "ory_st_listed"}]
        }),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);
    assert!(a.sessions.is_empty(), "an echoed session is not revoked");
    let seen = k.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target(), "/sessions/whoami");
}

#[tokio::test]
async fn a_token_outside_the_authored_positions_is_asked_about_even_when_the_body_names_someone() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "transient_payload": {"session_token": "ory_st_listed"}}),
        &[],
    )
    .await
    .expect("attributed");
    let mut got = suspects(&a);
    got.sort();
    assert_eq!(got, [id(OTHER), id(LISTED)]);
}

#[tokio::test]
async fn more_distinct_credentials_than_kratos_hands_out_are_refused_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let e = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_a", "transient_payload": {"session_token": "ory_st_b"}}),
        &["ory_kratos_session=c"],
    )
    .await
    .expect_err("three credentials");
    assert!(matches!(e, GatewayError::TooManyCredentials(n) if n > MAX_CREDENTIALS));
    assert!(k.seen().is_empty());
}

#[test]
fn credentials_are_counted_once_each_and_a_cookie_set_by_kratos_is_authored() {
    let f = findings(
        json!({"session_token": "ory_st_a", "continue_with": [{"ory_session_token": "ory_st_a"}]}),
    );
    let c = credentials(
        &f,
        &[
            "ory_kratos_session=x".to_owned(),
            "ory_kratos_session=x".to_owned(),
        ],
    )
    .expect("two");
    assert_eq!(
        c,
        [
            (Credential::Token("ory_st_a".to_owned()), true),
            (Credential::Cookie("ory_kratos_session=x".to_owned()), true)
        ]
    );
    // More tokens than the reader keeps is too many, whatever was kept.
    let many: Vec<Value> = (0..10)
        .map(|i| json!({ "session_token": format!("ory_st_{i}") }))
        .collect();
    let f = findings(json!({ "transient_payload": many }));
    assert!(f.too_many_tokens);
    assert!(matches!(
        credentials(&f, &[]),
        Err(GatewayError::TooManyCredentials(_))
    ));
}

#[tokio::test]
async fn a_session_without_its_identity_is_attributed_by_the_admin_api() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"session_token": "ory_st_x", "session": {"id": SESSION, "identity": null}}),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(suspects(&a), [id(OTHER)]);
    let targets: Vec<String> = k.seen().iter().map(Seen::target).collect();
    assert_eq!(
        targets,
        [format!("/admin/sessions/{SESSION}?expand=identity")]
    );
}

#[tokio::test]
async fn more_unexpanded_sessions_than_lookups_allowed_are_refused_without_a_call() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let sessions: Vec<Value> = [SESSION, SESSION_2, SESSION_3]
        .iter()
        .map(|s| json!({"id": s, "identity": null, "authenticated_at": "2026-01-01T00:00:00Z"}))
        .collect();
    assert!(sessions.len() > MAX_LOOKUPS);
    let e = attribute(&f, &no_submission(), Value::Array(sessions), &[])
        .await
        .expect_err("too many lookups");
    assert!(matches!(e, GatewayError::TooManyCredentials(3)));
    assert!(k.seen().is_empty());
}

#[tokio::test]
async fn whoami_trouble_fails_closed_and_401_grants_nothing() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let e = attribute(
        &f,
        &no_submission(),
        json!({"continue_with": [{"ory_session_token": "ory_st_down"}]}),
        &[],
    )
    .await
    .expect_err("whoami 500");
    assert!(matches!(e, GatewayError::AttributionUnavailable(_)));
    let a = attribute(
        &f,
        &no_submission(),
        json!({"continue_with": [{"ory_session_token": "ory_st_nobody"}]}),
        &[],
    )
    .await
    .expect("no session");
    assert!(a.suspects.is_empty());
}

#[tokio::test]
async fn a_first_factor_session_is_attributed_through_the_submitted_identifier() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let body = json!({"continue_with": [{"ory_session_token": "ory_st_aal1"}]});
    let read = Submission::Read(Submitted {
        identifier: Some("listed@example.com".to_owned()),
        ..Submitted::default()
    });
    let a = attribute(&f, &read, body.clone(), &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);

    // A submission only copied in the request phase is read here, the same way.
    let copied = |content_type: &'static str, body: &'static str| Submission::Copied {
        content_type: Some(http::HeaderValue::from_static(content_type)),
        body: bytes::Bytes::from_static(body.as_bytes()),
    };
    let json = copied(
        "application/json",
        r#"{"identifier":" listed@example.com "}"#,
    );
    let a = attribute(&f, &json, body.clone(), &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);
    let form = copied(
        "application/x-www-form-urlencoded",
        "password_identifier=listed%40example.com",
    );
    let a = attribute(&f, &form, body.clone(), &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);

    // Kratos read an account from a body the gateway could not: fail closed.
    let e = attribute(&f, &Submission::Unreadable, body.clone(), &[])
        .await
        .expect_err("unreadable");
    assert!(matches!(e, GatewayError::BadRequest(_)));
    let broken = copied(
        "application/json",
        r#"{"identifier":["listed@example.com"]}"#,
    );
    let e = attribute(&f, &broken, body.clone(), &[])
        .await
        .expect_err("unreadable once read");
    assert!(matches!(e, GatewayError::BadRequest(_)));
    // Nothing submitted: the owner stays unknown, the session grants nothing yet.
    let a = attribute(&f, &no_submission(), body, &[])
        .await
        .expect("passes");
    assert!(a.suspects.is_empty());
}

#[tokio::test]
async fn a_recovery_session_is_attributed_through_the_address_the_code_went_to() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let recovery = RecoveryAddresses::new(10, Duration::from_secs(60));
    let flow = id(SESSION_3);
    recovery.remember(flow, "Listed@Example.com");
    let request = attribution::Request {
        submission: &Submission::NotRead,
        recovery_flow: Some(flow),
        recovery_addresses: &recovery,
    };
    let body = findings(json!({"continue_with": [{"ory_session_token": "ory_st_aal1"}]}));
    let a = attribution::attribute(&f.enforcer, &request, &body, &[])
        .await
        .expect("attributed");
    assert_eq!(suspects(&a), [id(LISTED)]);

    // A flow sent codes to more addresses than are kept cannot say whose it is.
    for a in ["a@example.com", "b@example.com"] {
        recovery.remember(flow, a);
    }
    let e = attribution::attribute(&f.enforcer, &request, &body, &[])
        .await
        .expect_err("ambiguous");
    assert!(matches!(e, GatewayError::BadRequest(_)));
}

#[tokio::test]
async fn addresses_are_fetched_only_for_a_list_with_address_entries_and_bounded() {
    let k = kratos().await;
    let f = fixture(&k, LIST).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "session_token": "ory_st_x"}),
        &[],
    )
    .await
    .expect("attributed");
    assert_eq!(a.suspects[0].addresses, None);
    assert!(k.seen().is_empty());

    let f = fixture(&k, LIST_WITH_ADDRESSES).await;
    let a = attribute(
        &f,
        &no_submission(),
        json!({"identity": {"id": OTHER}, "session_token": "ory_st_x"}),
        &[],
    )
    .await
    .expect("attributed");
    let addresses = a.suspects[0].addresses.clone().expect("fetched");
    assert_eq!(&addresses[..], [format!("{OTHER}@example.com")]);

    let mut many: Vec<crate::decision::Suspect> = (0..=MAX_OWNERS)
        .map(|i| crate::decision::Suspect {
            id: Some(Uuid::from_u128(i as u128 + 1)),
            addresses: None,
        })
        .collect();
    let before = k.seen().len();
    let e = attribution::with_addresses(&f.enforcer, &mut many)
        .await
        .expect_err("too many owners");
    assert!(matches!(e, GatewayError::TooManyCredentials(_)));
    assert_eq!(k.seen().len(), before, "no lookup made");
}
