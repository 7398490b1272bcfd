//! Header- and cookie-name confusion. oauth2-proxy (CVE-2025-64484) stripped `X-Forwarded-User`
//! but passed `X_Forwarded_User`, which a server behind it read as the same field. The gateway
//! strips nothing a client could re-spell into a credential: it decides on Kratos's response,
//! so a token in `X_Session_Token` is judged by what Kratos makes of it. Client-address fields
//! spelled with `_` reach Kratos under names Go's header canonicalisation keeps apart from the
//! real ones; names malformed at the byte level are refused by hyper before the gateway sees a
//! request; and the session cookie is recognised in any spelling, also when the configured
//! name itself carries a `__Host-` prefix.

use crate::support;

use http::Method;

use support::enforcement::{
    blocklist_with_reason, setup, wait_until, Person, CSRF_SET_COOKIE, FORM, WAIT,
};
use support::fake_kratos::{FakeKratos, RecordedCall, Reply, Side};
use support::fixtures;
use support::gateway::start_gateway_with;
use support::logs;
use support::raw::{
    assert_no_credential_bytes, assert_still_serving, exchange, first_status, send_and_drain,
};

/// Go's `textproto.CanonicalMIMEHeaderKey`, which is how Kratos names the fields it reads:
/// upper-case the first letter and every letter after `-`; `_` is an ordinary character.
fn go_canonical(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

#[tokio::test]
async fn underscore_spelled_session_token_never_yields_a_credential() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let spellings = [
        "X_Session_Token",
        "x_session_token",
        "X-Session_Token",
        "X_SESSION-TOKEN",
    ];

    // Kratos (Go) does not read these names: no session, nothing for the gateway to judge.
    for name in spellings {
        let (resp, conn) = exchange(
            s.gw.public,
            format!(
                "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\n{name}: {}\r\n\r\n",
                s.listed.token
            ),
        )
        .await;
        assert_eq!(resp.status, 401, "{name}");
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
        assert_no_credential_bytes(&conn.received, &s.listed);
    }
    // No block was needed: Kratos itself answered "no session" (nothing in the audit log).
    assert!(logs.audit("blocked").is_empty());

    // A server that does map `_` to `-` vouches for the session, and the gateway refuses it
    // on that answer, whatever the request's spelling was.
    let listed = s.listed.clone();
    s.fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::from_fn(move |call: &RecordedCall| {
            let normalised = call.headers.iter().any(|(k, v)| {
                k.as_str().replace('_', "-") == "x-session-token"
                    && v.as_bytes() == listed.token.as_bytes()
            });
            if normalised {
                Reply::json(
                    200,
                    fixtures::whoami_body(listed.identity, listed.session, None),
                )
                .header("x-kratos-authenticated-identity-id", &listed.id())
            } else {
                Reply::json(401, fixtures::WHOAMI_401_WIRE)
            }
        }),
    );
    for (n, name) in spellings.iter().enumerate() {
        let (resp, conn) = exchange(
            s.gw.public,
            format!(
                "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\n{name}: {}\r\n\r\n",
                s.listed.token
            ),
        )
        .await;
        assert_eq!(resp.status, 401, "{name}: {}", resp.text());
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
        assert_no_credential_bytes(&conn.received, &s.listed);
        assert_eq!(logs.audit("blocked").len(), n + 1, "{name}");
    }
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn underscore_spelled_client_address_fields_reach_kratos_under_no_name_it_reads() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let (resp, conn) = exchange(
        s.gw.public,
        format!(
            "GET /sessions/whoami HTTP/1.1\r\nHost: auth.example.com\r\n\
             X_Forwarded_For: 198.51.100.7\r\n\
             True_Client_IP: 198.51.100.8\r\n\
             X_Real_IP: 198.51.100.9\r\n\
             Cf_Connecting_Ip: 198.51.100.10\r\n\
             X_Forwarded_Host: evil.example\r\n\
             X_Forwarded_Proto: https\r\n\
             X-Session-Token: {}\r\n\r\n",
            s.listed.token
        ),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_no_credential_bytes(&conn.received, &s.listed);
    let call = s
        .fake
        .calls_matching(Side::Public, "GET", "/sessions/whoami")
        .pop()
        .expect("forwarded");
    // Under the names Kratos reads (CONTRACT.md section 11), only the gateway's own values.
    let read_by_kratos = [
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "True-Client-Ip",
        "Cf-Connecting-Ip",
        "X-Real-Ip",
    ];
    let mut seen: Vec<(String, String)> = call
        .headers
        .iter()
        .map(|(k, v)| {
            (
                go_canonical(k.as_str()),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .filter(|(k, _)| read_by_kratos.contains(&k.as_str()))
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Forwarded-Host", "auth.example.com"),
        ("X-Forwarded-Proto", "http"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(seen, expected, "{:?}", call.headers);
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0]["client_ip"], "127.0.0.1");
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn malformed_header_names_and_folded_lines_are_refused_before_kratos() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let token = s.listed.token.clone();
    let attempts = [
        // Whitespace between name and colon (RFC 9112 5.1: must be rejected with 400).
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token : {token}\r\n\r\n"),
        // A folded (obs-fold) continuation line.
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n {token}\r\n\r\n"),
        // A NUL inside a value.
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: a\0{token}\r\n\r\n"),
        // A name with a character no token may hold.
        format!("GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session(Token): {token}\r\n\r\n"),
    ];
    for attempt in &attempts {
        let got = send_and_drain(s.gw.public, attempt, std::time::Duration::from_secs(2)).await;
        // hyper answers 400 and closes, or just closes.
        let status = first_status(&got);
        assert!(
            status.is_none() || status == Some(400),
            "{attempt:?}: {}",
            String::from_utf8_lossy(&got)
        );
        assert_no_credential_bytes(&got, &s.listed);
    }
    // Nothing reached Kratos. hyper refuses these while parsing the request head, before the
    // gateway sees a request, so there is no audit event: the connection's end is logged.
    assert!(s.fake.calls().is_empty(), "{:?}", s.fake.calls());
    let ended = logs.connection_errors();
    assert_eq!(ended, attempts.len(), "{}", logs.text());
    // Still serving.
    let (resp, _) = exchange(
        s.gw.public,
        format!(
            "GET /sessions/whoami HTTP/1.1\r\nHost: a\r\nX-Session-Token: {}\r\n\r\n",
            s.unlisted.token
        ),
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn prefixed_session_cookie_name_in_the_config_is_recognised_in_any_spelling() {
    let (logs, _guard) = logs::capture();
    const NAME: &str = "__Host-ory_kratos_session";
    let fake = FakeKratos::start().await;
    let listed = Person::new("listed");
    fake.add_session(listed.spec());
    // Kratos with `session.cookie.name: __Host-ory_kratos_session`: whoami reads that name.
    let owner = listed.clone();
    fake.on_public(
        "ANY",
        "/sessions/whoami",
        Reply::from_fn(move |call: &RecordedCall| {
            let presented = call
                .header_all("cookie")
                .iter()
                .flat_map(|c| c.split(';'))
                .any(|c| c.trim() == format!("{NAME}={}", owner.cookie));
            if presented {
                Reply::json(
                    200,
                    fixtures::whoami_body(owner.identity, owner.session, None),
                )
                .header("x-kratos-authenticated-identity-id", &owner.id())
            } else {
                Reply::json(401, fixtures::WHOAMI_401_WIRE)
            }
        }),
    );
    let gw = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_with_reason(&listed),
        |c| c.inspection.session_cookie = NAME.to_owned(),
    )
    .await;
    assert!(gw.wait_for_listed(&listed.id(), true, WAIT).await);

    for (n, spelling) in [
        NAME,
        "__host-ory_kratos_session",
        "__Secure-ORY_KRATOS_SESSION",
    ]
    .iter()
    .enumerate()
    {
        // A browser form login: 303 with only the cookie, no body to read.
        fake.on_public(
            "POST",
            "/self-service/login",
            Reply::empty(303)
                .header("location", "https://app.example.com/")
                .header("set-cookie", CSRF_SET_COOKIE)
                .header(
                    "set-cookie",
                    &format!("{spelling}={}; Path=/; Secure; HttpOnly", listed.cookie),
                ),
        );
        let body = support::enforcement::login_form(&listed.email);
        let (resp, conn) = exchange(
            gw.public,
            format!(
                "POST /self-service/login?flow=1 HTTP/1.1\r\nHost: a\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
                FORM[0].1,
                body.len()
            ),
        )
        .await;
        assert_eq!(resp.status, 403, "{spelling}: {}", resp.text());
        assert_no_credential_bytes(&conn.received, &listed);
        // The CSRF cookie still passes.
        assert_eq!(resp.header_all("set-cookie"), vec![CSRF_SET_COOKIE]);
        assert_eq!(
            logs.audit("blocked").len(),
            n + 1,
            "{spelling}: {}",
            logs.text()
        );
        assert!(
            wait_until(WAIT, || fake.sessions_of(listed.identity).is_empty()).await,
            "{spelling}: not revoked"
        );
        fake.add_session(listed.spec());
    }
    let whoami_asked = fake.calls_matching(Side::Public, Method::GET, "/sessions/whoami");
    for call in &whoami_asked {
        let cookie = call.header("cookie").unwrap_or_default();
        assert!(cookie.starts_with(&format!("{NAME}=")), "{cookie}");
    }
    assert_still_serving(gw.public).await;
    gw.shutdown().await;
}
