//! The fake Kratos: ids and request bodies as Kratos parses them (CONTRACT.md section 14).

use super::*;

/// Every spelling gofrs/uuid `FromString` accepts, for a given id, as it may appear in a
/// request path (the braced forms percent-encoded, as Go's router decodes them).
fn kratos_id_spellings(id: Uuid) -> Vec<String> {
    let canonical = id.to_string();
    let simple = id.simple().to_string();
    vec![
        canonical.clone(),
        canonical.to_ascii_uppercase(),
        simple.clone(),
        simple.to_ascii_uppercase(),
        format!("%7B{canonical}%7D"),
        format!("%7b{simple}%7d"),
        format!("urn:uuid:{canonical}"),
        format!("urn:uuid:{}", simple.to_ascii_uppercase()),
    ]
}

#[test]
fn ids_parse_like_gofrs_uuid() {
    use support::fake_kratos::parse_uuid_like_kratos as parse;
    let id = fresh_uuid();
    let canonical = id.to_string();
    let simple = id.simple().to_string();
    for text in [
        canonical.clone(),
        canonical.to_ascii_uppercase(),
        simple.clone(),
        simple.to_ascii_uppercase(),
        format!("{{{canonical}}}"),
        format!("{{{simple}}}"),
        format!("urn:uuid:{canonical}"),
        format!("urn:uuid:{simple}"),
    ] {
        assert_eq!(parse(&text), Some(id), "{text}");
    }
    for text in [
        String::new(),
        "not-a-uuid".to_owned(),
        format!("URN:UUID:{canonical}"),
        format!("({canonical})"),
        format!("{{{canonical}"),
        format!("{canonical}x"),
        canonical.replace('-', "_"),
        format!("{}g", &simple[..31]),
        format!(" {simple}"),
    ] {
        assert_eq!(parse(&text), None, "{text:?}");
    }
}

#[tokio::test]
async fn admin_routes_accept_every_id_spelling_kratos_accepts() {
    let s = setup().await;
    for (n, spelling) in kratos_id_spellings(s.session).into_iter().enumerate() {
        let resp = s
            .admin
            .get(&format!("/admin/sessions/{spelling}?expand=identity"))
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.session.to_string(), "{spelling}");
        let resp = s
            .admin
            .send(
                s.admin
                    .req(Method::PATCH, &format!("/admin/sessions/{spelling}/extend")),
                Bytes::new(),
            )
            .await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.session.to_string(), "{spelling}");
        assert_eq!(
            s.fake.session_status(s.session).map(|st| st.extended),
            Some(n as u32 + 1),
            "{spelling}"
        );
    }
    for spelling in kratos_id_spellings(s.identity) {
        let resp = s.admin.get(&format!("/admin/identities/{spelling}")).await;
        assert_eq!(resp.status, StatusCode::OK, "{spelling}: {}", resp.text());
        assert_eq!(resp.json()["id"], s.identity.to_string(), "{spelling}");
    }
    // The last spelling revokes; all of them name the one session.
    let spelling = format!("urn:uuid:{}", s.session.simple());
    let resp = s
        .admin
        .send(
            s.admin
                .req(Method::DELETE, &format!("/admin/sessions/{spelling}")),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.fake.session_status(s.session).map(|st| st.revoked),
        Some(true)
    );
    // What gofrs refuses stays a 400.
    let resp = s
        .admin
        .get(&format!("/admin/sessions/URN:UUID:{}", s.session))
        .await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{}", resp.text());
}

#[test]
fn json_bodies_are_read_like_gos_decoder() {
    use support::flows::{first_json_value, Submitted};
    let json = Some("application/json");
    // The first value counts; whatever follows is ignored.
    for body in [
        r#"{"identifier":"a@x.example","password":"p","method":"password"} {"identifier":"b@y.example"}"#,
        r#"{"identifier":"a@x.example","password":"p","method":"password"}garbage"#,
        " \n{\"identifier\":\"a@x.example\"}\n",
        r#"{"identifier":"b@y.example","identifier":"a@x.example"}"#,
    ] {
        let s = Submitted::parse(json, body.as_bytes());
        assert_eq!(s.text("identifier"), Some("a@x.example"), "{body}");
    }
    // Deep nesting is fine up to Go's 10,000 levels.
    let deep = format!(
        r#"{{"identifier":"a@x.example","x":{}{}}}"#,
        "[".repeat(3000),
        "]".repeat(3000)
    );
    let s = Submitted::parse(json, deep.as_bytes());
    assert_eq!(s.text("identifier"), Some("a@x.example"));
    let deepest = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(first_json_value(deepest.as_bytes()).is_ok());
    let too_deep = format!("{}{}", "[".repeat(10_001), "]".repeat(10_001));
    assert!(first_json_value(too_deep.as_bytes()).is_err());
    // Broken first values and non-objects decode to nothing.
    for body in ["", "{", r#"{"identifier":}"#, "[1]", "garbage{}"] {
        assert_eq!(
            Submitted::parse(json, body.as_bytes()).fields,
            None,
            "{body}"
        );
    }
    // Values keep their form: numbers (normalised: serde_json has no raw numbers), escapes, order.
    let v = first_json_value(br#"{"b":1.5,"a":"\u00e9\n","c":[true,null,{}]}"#).expect("json");
    assert_eq!(v.to_compact(), r#"{"b":1.5,"a":"é\n","c":[true,null,{}]}"#);
    // The content type decides; parameters and case do not matter.
    let body = br#"{"identifier":"a@x.example"}"#;
    assert!(
        Submitted::parse(Some("Application/JSON; charset=utf-8"), body)
            .text("identifier")
            .is_some()
    );
    assert_eq!(Submitted::parse(Some("text/plain"), body).fields, None);
    assert_eq!(Submitted::parse(None, body).fields, None);
}

#[test]
fn form_bodies_are_read_like_kratos() {
    use support::flows::Submitted;
    let form = Some("application/x-www-form-urlencoded");
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf_token", "c")
        .append_pair("method", "code")
        .append_pair("email", "a@x.example")
        .append_pair("traits.email", "t@x.example")
        .append_pair("traits.name.first", "Ann")
        .append_pair("transient_payload", r#"{"identity":{"id":"x"}}"#)
        .finish();
    let s = Submitted::parse(form, body.as_bytes());
    assert_eq!(s.text("email"), Some("a@x.example"));
    assert_eq!(
        s.transient_payload().map(Json::to_compact).as_deref(),
        Some(r#"{"identity":{"id":"x"}}"#)
    );
    assert_eq!(
        s.field("traits").map(Json::to_compact).as_deref(),
        Some(r#"{"email":"t@x.example","name":{"first":"Ann"}}"#)
    );
    let s = Submitted::parse(Some("multipart/form-data; boundary=x"), body.as_bytes());
    assert_eq!(s.field("email"), None);
}
