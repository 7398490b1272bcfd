//! Hop-by-hop abuse (CVE-2025-48865 and kin): a client names an end-to-end field in
//! `Connection` so that a proxy, obeying RFC 9110 7.6.1, drops it. The gateway does drop
//! whatever the client nominates from the request it forwards, so the attack can only take
//! away the client's own fields: the gateway sets its forwarding fields after the drop, never
//! reads the response's identity header from the request, and strips nominated fields from
//! Kratos's response only per Kratos's own `Connection` field. Raw requests, because client
//! libraries manage `Connection` themselves.

use crate::support;

use support::cases;

use http::Method;

use support::enforcement::{login_json, setup, wait_until, Setup, WAIT};
use support::fake_kratos::{RecordedCall, Reply, Side};
use support::fixtures;
use support::logs;
use support::raw::{assert_no_credential_bytes, assert_still_serving, exchange, RawResponse};

async fn whoami_with(s: &Setup, extra: &str, credential: &str) -> RawResponse {
    let (resp, conn) = exchange(
        s.gw.public,
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: auth.example.com\r\n{extra}{credential}\r\n\r\n"),
    )
    .await;
    assert_no_credential_bytes(&conn.received, &s.listed);
    resp
}

/// Waits for the revocation of a refused session, then registers it again for the next try.
async fn renew(s: &Setup) {
    assert!(
        wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()).await,
        "the refused session was not revoked"
    );
    s.fake.add_session(s.listed.spec());
}

fn last_whoami(s: &Setup) -> RecordedCall {
    s.fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami")
        .pop()
        .expect("whoami reached Kratos")
}

#[tokio::test]
async fn connection_naming_the_identity_header_does_not_hide_a_listed_session() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let token = format!("X-Session-Token: {}", s.listed.token);
    let nominations = [
        "Connection: X-Kratos-Authenticated-Identity-Id\r\n",
        "Connection: keep-alive, x-kratos-authenticated-identity-id\r\n",
        "Connection: keep-alive\r\nConnection: X-KRATOS-AUTHENTICATED-IDENTITY-ID, Set-Cookie\r\n",
        "Connection: Set-Cookie, Content-Type, Content-Length, Transfer-Encoding\r\n",
    ];
    for (n, extra) in nominations.iter().enumerate() {
        let resp = whoami_with(&s, extra, &token).await;
        assert_eq!(resp.status, 401, "{extra:?}: {}", resp.text());
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
        assert_eq!(logs.audit("blocked").len(), n + 1, "{extra:?}");
        renew(&s).await;
    }

    // Kratos's (or a mesh's) own `Connection` naming the identity header removes it from
    // the response before it is judged; the whoami body still names the identity.
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::json(
            200,
            fixtures::whoami_body(s.listed.identity, s.listed.session, None),
        )
        .header("x-kratos-authenticated-identity-id", &s.listed.id())
        .header("connection", "X-Kratos-Authenticated-Identity-Id")
        .header("set-cookie", &s.listed.set_cookie())
        .times(1),
    );
    let resp = whoami_with(&s, "", &token).await;
    assert_eq!(resp.status, 401, "{}", resp.text());
    assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
    assert_eq!(logs.audit("blocked").len(), nominations.len() + 1);
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn connection_naming_the_clients_credential_only_takes_it_away() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let cases = [
        (
            "Connection: Cookie\r\n",
            format!("Cookie: {}", s.listed.cookie_header()),
            "cookie",
        ),
        (
            "Connection: X-Session-Token\r\n",
            format!("X-Session-Token: {}", s.listed.token),
            "x-session-token",
        ),
        (
            "Connection: close, Authorization\r\n",
            format!("Authorization: Bearer {}", s.listed.token),
            "authorization",
        ),
    ];
    for (extra, credential, field) in &cases {
        let resp = whoami_with(&s, extra, credential).await;
        // Kratos never saw the credential, and answered "no session" itself.
        assert!(
            last_whoami(&s).header(field).is_none(),
            "{field} reached Kratos"
        );
        assert_eq!(resp.status, 401, "{extra:?}");
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
    }
    // Nothing was refused by the gateway: the client only removed its own credential, so
    // there is no audit event for these.
    assert!(logs.audit("blocked").is_empty(), "{}", logs.text());

    // The same credentials with an unrelated nomination reach Kratos and are refused.
    for (n, (_, credential, field)) in cases.iter().enumerate() {
        let resp = whoami_with(&s, "Connection: X-Unrelated\r\n", credential).await;
        assert!(
            last_whoami(&s).header(field).is_some(),
            "{field} was dropped"
        );
        assert_eq!(resp.status, 401);
        assert_eq!(
            logs.audit("blocked").len(),
            n + 1,
            "{field}: {}",
            logs.text()
        );
        renew(&s).await;
    }
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn connection_cannot_remove_what_the_gateway_sets_or_needs() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let resp = whoami_with(
        &s,
        "Connection: X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Host, Accept-Encoding, X-Request-Id\r\n\
         X-Forwarded-For: 198.51.100.7\r\nX-Request-Id: attacker-chosen\r\n",
        &format!("X-Session-Token: {}", s.listed.token),
    )
    .await;
    assert_eq!(resp.status, 401);
    let call = last_whoami(&s);
    assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["auth.example.com"]
    );
    assert_eq!(call.header_all("host"), vec!["auth.example.com"]);
    assert_eq!(call.header_all("accept-encoding"), vec!["identity"]);
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["client_ip"], "127.0.0.1");

    // `Connection: Content-Length` on a login: Kratos still gets the whole body (the
    // gateway frames the forwarded request itself), and the answer is judged.
    cases::native_login(&s.listed).script(&s);
    let body = login_json(&s.listed.email);
    let (resp, conn) = exchange(
        s.gw.public,
        format!(
            "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nConnection: Content-Length, Set-Cookie\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert_no_credential_bytes(&conn.received, &s.listed);
    let login = s
        .fake
        .calls_matching(Side::Public, "POST", "/self-service/login")
        .pop()
        .expect("forwarded");
    assert_eq!(login.body_text(), body);
    assert_eq!(logs.audit("blocked").len(), 2);
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn connection_content_type_cannot_hide_the_login_identifier() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    // A login needing a second factor (SPA 422 with a first-factor cookie): the owner is
    // found from the identifier the client submitted. Dropping `Content-Type` would hide
    // the identifier from the gateway, but Kratos cannot read such a body either
    // (ory/x decoderx refuses a POST without a form or JSON type) and sets no cookie.
    let listed = s.listed.clone();
    s.fake.add_session(listed.spec().aal2_pending());
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::from_fn(
            move |call: &RecordedCall| match call.header("content-type") {
                None => Reply::kratos_error(
                    400,
                    None,
                    Some("HTTP POST Request used unknown HTTP Header \"Content-Type: \""),
                    "The request was malformed or contained invalid parameters",
                ),
                Some(_) => Reply::json(422, fixtures::spa_login_422_body())
                    .header("set-cookie", &listed.set_cookie()),
            },
        ),
    );
    let body = login_json(&s.listed.email);
    for extra in ["Connection: Content-Type\r\n", ""] {
        let (resp, conn) = exchange(
            s.gw.public,
            format!(
                "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\n{extra}Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
        .await;
        assert_no_credential_bytes(&conn.received, &s.listed);
        if extra.is_empty() {
            // With the field: the cookie is attributed through the identifier and refused.
            assert_eq!(resp.status, 403, "{}", resp.text());
        } else {
            // Without it: Kratos's own refusal, no cookie to withhold.
            assert_eq!(resp.status, 400, "{}", resp.text());
        }
    }
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 1, "{}", logs.text());
    assert_eq!(blocked[0]["kind"], "login");
    assert_still_serving(s.gw.public).await;
}
