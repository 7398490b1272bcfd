//! The fake Kratos: the fixture builders and the fixtures as Go renders them.

use super::*;

#[test]
fn fixture_builders_substitute_ids_everywhere() {
    let identity = Uuid::from_u128(0x1111_1111_1111_4111_8111_1111_1111_1111);
    let session = Uuid::from_u128(0x2222_2222_2222_4222_8222_2222_2222_2222);
    let token = "ory_st_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let placeholders = [
        fixtures::FIXTURE_IDENTITY_ID,
        fixtures::FIXTURE_SESSION_ID,
        fixtures::FIXTURE_TOKEN,
    ];

    let body = fixtures::native_registration_body(identity, session, token);
    assert!(body.ends_with("}\n") && !body.trim_end().contains('\n'));
    for placeholder in placeholders {
        assert!(!body.contains(placeholder), "{placeholder} left in {body}");
    }
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["session_token"], token);
    assert_eq!(v["session"]["id"], session.to_string());
    assert_eq!(v["session"]["identity"]["id"], identity.to_string());
    assert_eq!(v["identity"]["id"], identity.to_string());
    let continue_with = v["continue_with"].as_array().expect("array");
    assert!(continue_with
        .iter()
        .any(|c| c["action"] == "set_ory_session_token" && c["ory_session_token"] == token));
    // Key order of the fixture is kept.
    assert!(body.starts_with("{\"session_token\":"));

    let body = fixtures::native_login_aal2_pending_body(session, token);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["session"]["identity"], serde_json::Value::Null);
    assert_eq!(v["session_token"], token);
    assert_eq!(v["continue_with"], serde_json::Value::Null);

    let v: serde_json::Value =
        serde_json::from_str(&fixtures::native_recovery_body(token)).expect("JSON");
    assert_eq!(v["continue_with"][0]["ory_session_token"], token);

    for body in [
        fixtures::native_login_body(identity, session, token),
        fixtures::spa_login_body(identity, session),
        fixtures::spa_registration_body(identity, session),
        fixtures::token_exchange_body(identity, session, token),
        fixtures::whoami_body(identity, session, Some("a.b.c")),
        fixtures::session_body(identity, session),
        fixtures::sessions_list_body(&[(identity, session)]),
    ] {
        for placeholder in placeholders {
            assert!(!body.contains(placeholder), "{placeholder} left in {body}");
        }
        assert!(body.contains(&identity.to_string()));
        assert!(body.ends_with('\n'));
    }

    let body = fixtures::whoami_body_with_email(identity, session, Some("dave@example.net"), None);
    assert!(!body.contains(fixtures::FIXTURE_EMAIL));
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["identity"]["traits"]["email"], "dave@example.net");
    assert_eq!(
        v["identity"]["verifiable_addresses"][0]["value"],
        "dave@example.net"
    );
    assert_eq!(
        v["identity"]["recovery_addresses"][0]["value"],
        "dave@example.net"
    );

    let v: serde_json::Value =
        serde_json::from_str(&fixtures::identity_body(identity, "erin@example.com")).expect("JSON");
    assert_eq!(v["id"], identity.to_string());
    assert_eq!(v["traits"]["email"], "erin@example.com");
    assert_eq!(v["recovery_addresses"][0]["value"], "erin@example.com");
}

#[test]
fn fixtures_load_and_render_like_go() {
    let value = fixtures::fixture("synthesized/native-login-200.json");
    assert_eq!(
        value["session"]["identity"]["id"],
        fixtures::FIXTURE_IDENTITY_ID
    );
    // Go escapes <, > and & in strings.
    assert!(fixtures::spa_login_422_body().contains("aal=aal2\\u0026return_to="));
    let json = Json::parse(r#"{"b":"<&>","a":[1,2.5,null,true]}"#).expect("parse");
    assert_eq!(
        json.to_wire(),
        "{\"b\":\"\\u003c\\u0026\\u003e\",\"a\":[1,2.5,null,true]}\n"
    );
    assert_eq!(
        Json::parse(&json.to_compact())
            .expect("round trip")
            .to_value(),
        json.to_value()
    );
    assert_eq!(fixtures::base64url(b"hello?"), "aGVsbG8_");
    assert_eq!(
        fixtures::base64url_decode("aGVsbG8_").as_deref(),
        Some(&b"hello?"[..])
    );
    // Every copied fixture parses.
    for entry in std::fs::read_dir(fixtures::fixture_path("synthesized")).expect("fixtures dir") {
        let name = format!(
            "synthesized/{}",
            entry.expect("entry").file_name().to_string_lossy()
        );
        fixtures::fixture_json(&name);
    }
}
