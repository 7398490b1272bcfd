//! The fake Kratos: flow answers that echo the client (CONTRACT.md section 14).

use super::*;

const PAYLOAD: &str = r#"{"identity":{"id":"00000000-0000-4000-8000-000000000001","traits":{"email":"<x>@unlisted.example"}},"n":[1.0,{}],"session_token":"ory_st_fromtheclient"}"#;

async fn post(http: &Http, path: &str, content_type: &str, accept: &str, body: String) -> Resp {
    http.send(
        http.req(Method::POST, path)
            .header("content-type", content_type)
            .header("accept", accept),
        body,
    )
    .await
}

#[tokio::test]
async fn recovery_code_sent_echoes_payload_and_address_for_anyone() {
    use support::flows::{recovery_code_sent, Flow, FlowType};
    let s = setup().await;
    let flow = Flow::new(FlowType::Api);
    let flow_id = flow.id;
    s.fake
        .on_public("POST", "/self-service/recovery", recovery_code_sent(flow));
    let body = format!(
        r#"{{"method":"code","email":"nobody@unknown.example","transient_payload":{PAYLOAD}}}"#
    );
    let resp = post(
        &s.public,
        &format!("/self-service/recovery?flow={flow_id}"),
        "application/json",
        "application/json",
        body,
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let v = resp.json();
    assert_eq!(v["id"], flow_id.to_string());
    assert_eq!(v["type"], "api");
    assert_eq!(v["state"], "sent_email");
    assert_eq!(v["ui"]["messages"][0]["id"], 1_060_003);
    for key in [
        "id",
        "type",
        "expires_at",
        "issued_at",
        "request_url",
        "ui",
        "state",
    ] {
        assert!(v.get(key).is_some(), "recoveryFlow requires {key}: {v}");
    }
    // The payload is the client's, byte for byte in Go's form (HTML-escaped, compact).
    let wire_payload = Json::parse(PAYLOAD).expect("json").to_compact();
    assert!(
        resp.text()
            .contains(&format!("\"transient_payload\":{wire_payload}")),
        "{}",
        resp.text()
    );
    assert!(resp.text().contains("\\u003cx\\u003e"), "Go escapes <>");
    let email = v["ui"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["attributes"]["name"] == "email")
        .expect("email node");
    assert_eq!(email["attributes"]["value"], "nobody@unknown.example");
    assert!(v.get("continue_with").is_none());
    assert!(resp.header("set-cookie").is_none());
    // The same as a form (the payload is JSON text in a field).
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("method", "code")
        .append_pair("email", "f@unknown.example")
        .append_pair("transient_payload", PAYLOAD)
        .finish();
    let resp = post(
        &s.public,
        &format!("/self-service/recovery?flow={flow_id}"),
        "application/x-www-form-urlencoded",
        "application/json",
        form,
    )
    .await;
    assert_eq!(
        resp.json()["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
}

#[tokio::test]
async fn native_recovery_hands_out_a_real_token_and_no_identity_id() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let spec = SessionSpec::new(identity, session).token(token.clone());
    let flow = Flow::new(FlowType::Api);
    let path = format!("/self-service/recovery?flow={}", flow.id);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    // Step 1: the code is sent; no session exists yet.
    let resp = post(
        &s.public,
        &path,
        "application/json",
        "application/json",
        r#"{"method":"code","email":"r@x.example"}"#.to_owned(),
    )
    .await;
    assert_eq!(resp.json()["state"], "sent_email");
    assert_eq!(s.fake.session_status(session), None);
    // Step 2: the code; the session is created and its token handed out.
    let resp = post(
        &s.public,
        &path,
        "application/json",
        "application/json",
        format!(r#"{{"method":"code","code":"123456","transient_payload":{PAYLOAD}}}"#),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let v = resp.json();
    assert_eq!(v["state"], "passed_challenge");
    assert_eq!(v["continue_with"][0]["action"], "set_ory_session_token");
    assert_eq!(v["continue_with"][0]["ory_session_token"], token.as_str());
    assert_eq!(v["continue_with"][1]["action"], "show_settings_ui");
    assert!(v["continue_with"][1]["flow"]["id"].is_string());
    assert!(v["continue_with"][1]["flow"]["url"].is_string());
    assert_eq!(
        v["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
    let code = v["ui"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["attributes"]["name"] == "code")
        .expect("code node");
    assert_eq!(code["attributes"]["value"], "123456");
    // Nothing Kratos wrote names the identity or the session.
    let mut kratos_part = v.clone();
    kratos_part
        .as_object_mut()
        .expect("object")
        .remove("transient_payload");
    let text = kratos_part.to_string();
    assert!(!text.contains(&identity.to_string()), "{text}");
    assert!(!text.contains(&session.to_string()), "{text}");
    // The token is a live session.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("x-kratos-authenticated-identity-id"),
        Some(identity.to_string().as_str())
    );
}

#[tokio::test]
async fn recovery_of_an_identity_with_a_second_factor_is_aal1() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let token = fresh_token();
    let spec = SessionSpec::new(fresh_uuid(), fresh_uuid())
        .token(token.clone())
        .aal2_pending();
    let flow = Flow::new(FlowType::Api);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/json",
        "application/json",
        r#"{"method":"code","code":"123456"}"#.to_owned(),
    )
    .await;
    assert_eq!(
        resp.json()["continue_with"][0]["ory_session_token"],
        token.as_str()
    );
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("x-session-token", &token),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
    assert_eq!(resp.json()["error"]["id"], "session_aal2_required");
}

#[tokio::test]
async fn browser_recovery_sets_the_session_cookie_with_the_echo() {
    use support::flows::{recovery, Flow, FlowType};
    let s = setup().await;
    let (identity, cookie) = (fresh_uuid(), fresh_cookie_value());
    let spec = SessionSpec::new(identity, fresh_uuid()).cookie(cookie.clone());
    let flow = Flow::new(FlowType::Browser);
    s.fake.on_public(
        "POST",
        "/self-service/recovery",
        recovery(s.fake.registry(), flow, spec),
    );
    // SPA: 200 flow + Set-Cookie.
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/json",
        "application/json",
        format!(r#"{{"method":"code","code":"123456","transient_payload":{PAYLOAD}}}"#),
    )
    .await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.text());
    let cookies: Vec<&str> = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().expect("text"))
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(
        cookies[1].starts_with(&session_cookie(&cookie)),
        "{cookies:?}"
    );
    let v = resp.json();
    assert_eq!(v["type"], "browser");
    assert_eq!(v["continue_with"][0]["action"], "show_settings_ui");
    assert_eq!(
        v["transient_payload"],
        Json::parse(PAYLOAD).expect("json").to_value()
    );
    assert!(!resp.text().contains(&identity.to_string()));
    // The cookie is a live session.
    let resp = s
        .public
        .send(
            s.public
                .req(Method::GET, "/sessions/whoami")
                .header("cookie", session_cookie(&cookie)),
            Bytes::new(),
        )
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    // A browser form gets a 303 with the cookie.
    let form = "method=code&code=123456".to_owned();
    let resp = post(
        &s.public,
        "/self-service/recovery?flow=f",
        "application/x-www-form-urlencoded",
        "text/html,*/*;q=0.8",
        form,
    )
    .await;
    assert_eq!(resp.status, StatusCode::SEE_OTHER);
    assert!(resp
        .header("location")
        .is_some_and(|l| l.contains("/settings?flow=")));
    assert_eq!(resp.headers.get_all("set-cookie").iter().count(), 2);
}
