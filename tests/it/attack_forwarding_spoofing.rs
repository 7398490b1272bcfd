//! Spoofed forwarding fields. Oathkeeper (GHSA-vhr5-ggp3-qq85) and oauth2-proxy
//! (GHSA-7x63-xv5r-3p2x) matched their rules against client-sent `X-Forwarded-*` / `X-Forwarded-Uri`
//! fields; Kratos stores client-IP fields blindly as the session's device address
//! (CONTRACT.md section 11). Here trust comes only from the socket's peer address: from an
//! untrusted peer every client-address field Kratos reads is replaced or dropped, whatever its
//! case or how many lines it has, and no forwarding field changes what the gateway judges or
//! the address it logs. Requests are raw bytes, so every spelling reaches the gateway as sent.

use crate::support;

use http::Method;

use support::enforcement::{setup, setup_with, wait_until, Setup, WAIT};
use support::fake_kratos::{RecordedCall, Reply, Side};
use support::fixtures;
use support::logs;
use support::raw::{assert_no_credential_bytes, exchange};

/// Kratos's client-address and location fields (CONTRACT.md section 11), with the values
/// the attacker sends.
const CLIENT_ADDRESS_FIELDS: [&str; 9] = [
    "X-Forwarded-For: 198.51.100.7",
    "x-forwarded-for: 198.51.100.8, 10.0.0.1",
    "X-FORWARDED-FOR: 10.0.0.2",
    "True-Client-IP: 198.51.100.9",
    "CF-Connecting-IP: 198.51.100.10",
    "X-Real-IP: 198.51.100.11",
    "X-REAL-IP: 198.51.100.12",
    "Cf-Ipcity: Bern",
    "Cf-Ipcountry: CH",
];

/// Fields that other proxies have used to pick a rule or a route.
const ROUTING_FIELDS: [&str; 10] = [
    "X-Forwarded-Uri: /health/alive",
    "X-Original-URL: /health/alive",
    "X-Original-URI: /health/alive",
    "X-Rewrite-URL: /health/alive",
    "X-Forwarded-Prefix: /public",
    "X-Forwarded-Path: /health/alive",
    "X-Forwarded-Method: OPTIONS",
    "X-HTTP-Method-Override: OPTIONS",
    "X-Forwarded-Host: admin.internal",
    "X-Forwarded-Proto: https",
];

fn request(method: &str, target: &str, extra: &[&str], p_token: Option<&str>) -> String {
    let mut r = format!("{method} {target} HTTP/1.1\r\nHost: auth.example.com\r\n");
    for line in extra {
        r.push_str(line);
        r.push_str("\r\n");
    }
    if let Some(t) = p_token {
        r.push_str(&format!("X-Session-Token: {t}\r\n"));
    }
    if method != "GET" {
        r.push_str("Content-Length: 0\r\n");
    }
    r.push_str("\r\n");
    r
}

/// Kratos saw only the peer as the client, the client's own Host, and plain http.
fn assert_kratos_saw_only_the_peer(call: &RecordedCall) {
    assert_eq!(
        call.header_all("x-forwarded-for"),
        vec!["127.0.0.1"],
        "{call:?}"
    );
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        call.header_all("x-forwarded-host"),
        vec!["auth.example.com"]
    );
    for name in [
        "true-client-ip",
        "cf-connecting-ip",
        "x-real-ip",
        "cf-ipcity",
        "cf-ipcountry",
    ] {
        assert!(
            call.header(name).is_none(),
            "{name} reached Kratos: {call:?}"
        );
    }
}

fn last_whoami(s: &Setup) -> RecordedCall {
    s.fake
        .calls_matching(Side::Public, "ANY", "/sessions/whoami")
        .pop()
        .expect("whoami reached Kratos")
}

#[tokio::test]
async fn forged_client_address_fields_never_reach_kratos_or_the_audit_log() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut fields: Vec<&str> = CLIENT_ADDRESS_FIELDS.to_vec();
    fields.extend(["X-Forwarded-Proto: https", "X-Forwarded-Host: evil.example"]);

    // The unlisted identity: Kratos sees the peer only.
    let (resp, _) = exchange(
        s.gw.public,
        request("GET", "/sessions/whoami", &fields, Some(&s.unlisted.token)),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_kratos_saw_only_the_peer(&last_whoami(&s));

    // The listed identity: refused, and the audit event names the peer, not a forged address.
    let (resp, conn) = exchange(
        s.gw.public,
        request("GET", "/sessions/whoami", &fields, Some(&s.listed.token)),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
    assert_no_credential_bytes(&conn.received, &s.listed);
    assert_kratos_saw_only_the_peer(&last_whoami(&s));
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 1, "{}", logs.text());
    assert_eq!(blocked[0]["client_ip"], "127.0.0.1");
    assert!(
        !logs.text().contains("198.51.100."),
        "a forged address was logged"
    );

    // The admin listener replaces them just the same.
    s.fake.clear_calls();
    let (resp, _) = exchange(
        s.gw.admin,
        request("GET", "/admin/health/alive", &fields, None),
    )
    .await;
    assert_eq!(resp.status, 200);
    let call = s
        .fake
        .calls_matching(Side::Admin, "GET", "/admin/health/alive")
        .pop()
        .expect("forwarded");
    assert_kratos_saw_only_the_peer(&call);
}

#[tokio::test]
async fn routing_fields_do_not_change_what_the_gateway_judges() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut fields: Vec<&str> = ROUTING_FIELDS.to_vec();
    fields.push("Forwarded: for=198.51.100.7;host=admin.internal;proto=https");

    // Public: a whoami dressed up as a health check is still judged as what Kratos answers.
    for method in ["GET", "POST"] {
        s.fake.add_session(s.listed.spec());
        let (resp, conn) = exchange(
            s.gw.public,
            request(method, "/sessions/whoami", &fields, Some(&s.listed.token)),
        )
        .await;
        assert_eq!(resp.status, 401, "{method}: {}", resp.text());
        assert_no_credential_bytes(&conn.received, &s.listed);
        // The refusal revokes the session; let that land before it is registered again.
        assert!(
            wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()).await,
            "the refused session was not revoked"
        );
    }

    // Admin: an extend dressed up as anything else is refused and not forwarded.
    s.fake.add_session(s.listed.spec());
    let id = s.listed.session;
    let (resp, _) = exchange(
        s.gw.admin,
        request(
            "PATCH",
            &format!("/admin/sessions/{id}/extend"),
            &fields,
            None,
        ),
    )
    .await;
    assert_eq!(resp.status, 403, "{}", resp.text());
    assert!(s
        .fake
        .calls_matching(Side::Admin, Method::PATCH, "/")
        .is_empty());

    // And a harmless request dressed up as an extend stays harmless: the gateway forwards it,
    // Kratos routes on the real method and path, nothing is extended.
    s.fake.on_admin(
        "ANY",
        "/admin/health/alive",
        Reply::json(200, "{\"status\":\"ok\"}"),
    );
    let disguise = [
        format!("X-Original-URL: /admin/sessions/{id}/extend"),
        format!("X-Forwarded-Uri: /admin/sessions/{id}/extend"),
        "X-HTTP-Method-Override: PATCH".to_owned(),
    ];
    let disguise: Vec<&str> = disguise.iter().map(String::as_str).collect();
    let (resp, _) = exchange(
        s.gw.admin,
        request("GET", "/admin/health/alive", &disguise, None),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(s.fake.session_status(id).map(|st| st.extended), Some(0));

    let blocked = logs.audit("blocked");
    assert_eq!(blocked.iter().filter(|e| e["kind"] == "whoami").count(), 2);
    assert_eq!(blocked.iter().filter(|e| e["kind"] == "extend").count(), 1);
    for e in &blocked {
        assert_eq!(e["client_ip"], "127.0.0.1", "{e}");
    }
}

#[tokio::test]
async fn a_trusted_proxy_cannot_be_impersonated_with_forwarding_fields() {
    let (logs, _guard) = logs::capture();
    // Only 10.0.0.0/8 is trusted; the test client connects from 127.0.0.1.
    let s = setup_with(|c| {
        c.forwarding.trusted_proxies = vec!["10.0.0.0/8".parse().expect("cidr")];
    })
    .await;
    let fields = [
        "X-Forwarded-For: 10.0.0.5",
        "X-Real-IP: 10.0.0.5",
        "True-Client-IP: 10.0.0.5",
        "Forwarded: for=10.0.0.5",
        "X-Forwarded-Proto: https",
    ];
    let (resp, conn) = exchange(
        s.gw.public,
        request("GET", "/sessions/whoami", &fields, Some(&s.listed.token)),
    )
    .await;
    assert_eq!(resp.status, 401);
    assert_no_credential_bytes(&conn.received, &s.listed);
    let call = last_whoami(&s);
    assert_eq!(call.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(call.header_all("x-forwarded-proto"), vec!["http"]);
    assert!(call.header("x-real-ip").is_none());
    assert!(call.header("true-client-ip").is_none());
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 1, "{}", logs.text());
    assert_eq!(blocked[0]["client_ip"], "127.0.0.1");

    // Still serving.
    let (resp, _) = exchange(
        s.gw.public,
        request("GET", "/sessions/whoami", &[], Some(&s.unlisted.token)),
    )
    .await;
    assert_eq!(resp.status, 200);
}
