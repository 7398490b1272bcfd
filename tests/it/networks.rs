//! `networks:` entries: a request from a listed network gets 403 `network_blocked` on every
//! self-service flow and the token exchange, and Kratos's own 401 on session checks, without
//! reaching Kratos; the client address is believed from trusted proxies only; report mode
//! lets through; a reload adds and removes networks; `check` names what is worth fixing.

use crate::support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use kratos_gate::config::GlobalMode;
use support::client::{get, http1, request, send, Reply};
use support::fake_kratos::{fresh_token, fresh_uuid, FakeKratos, SessionSpec, Side};
use support::fixtures::{SESSIONS_401_WIRE, WHOAMI_401_WIRE};
use support::gateway::{
    config_text, replace_atomically, start_gateway_with, write_file, TestGateway,
};
use support::logs;

/// Every kind of self-service request (init and submit of each flow, an OIDC callback) and
/// the token exchange.
const FLOWS: &[(&str, &str)] = &[
    ("GET", "/self-service/login/api"),
    ("GET", "/self-service/login/browser"),
    (
        "POST",
        "/self-service/login?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
    ("GET", "/self-service/registration/api"),
    (
        "POST",
        "/self-service/registration?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
    ("GET", "/self-service/recovery/browser"),
    (
        "POST",
        "/self-service/recovery?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
    ("GET", "/self-service/verification/api"),
    (
        "POST",
        "/self-service/verification?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
    ("GET", "/self-service/settings/api"),
    (
        "POST",
        "/self-service/settings?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
    (
        "GET",
        "/self-service/methods/oidc/callback/google?code=x&state=y",
    ),
    (
        "GET",
        "/sessions/token-exchange?init_code=a&return_to_code=b",
    ),
    // Spellings a lax router routes to the same flows.
    ("GET", "//self-service/%6cogin/api"),
    (
        "POST",
        "/Self-Service/Login/?flow=5ff66179-c240-4703-b0d8-494592cefff5",
    ),
];

async fn gateway(fake: &FakeKratos, list: &str, trusted: &[&str], report: bool) -> TestGateway {
    let trusted: Vec<ipnet::IpNet> = trusted
        .iter()
        .map(|t| t.parse().expect("trusted proxy"))
        .collect();
    start_gateway_with(&fake.public_url(), &fake.admin_url(), list, move |c| {
        c.forwarding.trusted_proxies = trusted;
        if report {
            c.blocklist.mode = GlobalMode::Report;
        }
    })
    .await
}

/// Sends `method path` as an API client (`Accept: application/json`), with `headers`.
async fn call(gw: &TestGateway, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut b = request(method.clone(), &gw.public_url(path)).header("accept", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let body = if method == Method::POST {
        b = b.header("content-type", "application/json");
        Bytes::from_static(
            b"{\"method\":\"password\",\"identifier\":\"a@b.example\",\"password\":\"x\"}",
        )
    } else {
        Bytes::new()
    };
    send(&http1(), b.body(Full::new(body)).expect("request")).await
}

fn assert_network_blocked(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.text());
    let v = reply.json();
    assert_eq!(v["error"]["id"], "network_blocked", "{what}");
    assert_eq!(v["error"]["code"], 403, "{what}");
    assert_eq!(v["error"]["status"], "Forbidden", "{what}");
    assert!(v["error"]["request"].is_string(), "{what}");
}

/// Every flow is refused with `network_blocked`, and Kratos sees none of them.
async fn assert_every_flow_refused(gw: &TestGateway, fake: &FakeKratos, headers: &[(&str, &str)]) {
    fake.clear_calls();
    for (method, path) in FLOWS {
        let reply = call(gw, method, path, headers).await;
        assert_network_blocked(&reply, &format!("{method} {path}"));
    }
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
}

/// Every flow reaches Kratos.
async fn assert_every_flow_passes(gw: &TestGateway, fake: &FakeKratos, headers: &[(&str, &str)]) {
    for (method, path) in FLOWS {
        fake.clear_calls();
        let reply = call(gw, method, path, headers).await;
        assert_ne!(
            reply.json_opt_id().as_deref(),
            Some("network_blocked"),
            "{method} {path}"
        );
        assert_eq!(
            fake.calls().len(),
            1,
            "{method} {path} reaches Kratos: {}",
            reply.text()
        );
    }
}

trait ErrorId {
    fn json_opt_id(&self) -> Option<String>;
}

impl ErrorId for Reply {
    fn json_opt_id(&self) -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["error"]["id"].as_str().map(str::to_owned))
    }
}

fn metric(text: &str, kind: &str, mode: &str) -> u64 {
    let key = format!("kratos_gate_blocked_total{{kind=\"{kind}\",mode=\"{mode}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_listed_ipv4_client_is_refused_on_every_flow_without_reaching_kratos() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let list = "networks:\n  - network: 127.0.0.0/8\n    reason: abuse OPS-9\n    ticket: OPS-9\n";
    let gw = gateway(&fake, list, &[], false).await;
    assert_every_flow_refused(&gw, &fake, &[]).await;

    // A browser gets the same refusal as a page.
    let reply = send(
        &http1(),
        request(Method::GET, &gw.public_url("/self-service/login/browser"))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
    .await;
    assert_eq!(reply.status, 403);
    assert_eq!(reply.headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(reply.headers["ory-error-id"], "network_blocked");
    assert!(!reply.text().contains("abuse"), "the reason stays with ops");

    let blocked = logs.audit("blocked");
    assert!(blocked.len() >= FLOWS.len(), "{blocked:#?}");
    let login = blocked
        .iter()
        .find(|e| e["kind"] == "login")
        .expect("a login audit event");
    assert_eq!(login["matched"], "network:127.0.0.0/8");
    assert_eq!(login["client_ip"], "127.0.0.1");
    assert_eq!(login["reason"], "abuse OPS-9");
    assert_eq!(login["meta"], "ticket=OPS-9");
    assert_eq!(login["outcome"], 403);
    assert!(blocked.iter().any(|e| e["kind"] == "token_exchange"));
    assert!(blocked.iter().any(|e| e["kind"] == "registration"));

    let metrics = get(&gw.ops_url("/metrics")).await.text();
    assert!(metric(&metrics, "login", "enforce") >= 5, "{metrics}");
    assert_eq!(
        metric(&metrics, "token_exchange", "enforce"),
        1,
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn session_checks_from_a_listed_network_get_kratos_401() {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.add_session(SessionSpec::new(identity, session).token(token.clone()));
    let gw = gateway(&fake, "networks:\n  - 127.0.0.1\n", &[], false).await;
    fake.clear_calls();
    for method in ["GET", "POST"] {
        for path in ["/sessions/whoami", "/sessions/%77hoami"] {
            let reply = call(&gw, method, path, &[("x-session-token", &token)]).await;
            assert_eq!(reply.status, 401, "{method} {path}");
            assert_eq!(reply.text(), WHOAMI_401_WIRE, "{method} {path}");
        }
    }
    let reply = call(&gw, "GET", "/sessions", &[("x-session-token", &token)]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.text(), SESSIONS_401_WIRE);
    assert!(fake.calls().is_empty(), "{:?}", fake.calls());
    // The session itself is not revoked: the block is on the network, not the identity.
    assert!(fake.session_status(session).is_some_and(|s| !s.revoked));
    gw.shutdown().await;
}

#[tokio::test]
async fn a_listed_ipv6_network_behind_a_trusted_proxy_is_refused() {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.add_session(SessionSpec::new(identity, session).token(token.clone()));
    let list = "networks:\n  - 2001:db8::/32\n  - ::ffff:192.0.2.0/120\n";
    let gw = gateway(&fake, list, &["127.0.0.1/32"], false).await;
    // The client wrote its own entry; the proxy appended the address it saw.
    let listed = [("x-forwarded-for", "198.51.100.1, 2001:db8:0:1::7")];
    assert_every_flow_refused(&gw, &fake, &listed).await;
    let reply = call(
        &gw,
        "GET",
        "/sessions/whoami",
        &[listed[0], ("x-session-token", &token)],
    )
    .await;
    assert_eq!(reply.text(), WHOAMI_401_WIRE);
    // IPv4 in an IPv4-mapped entry, and an address with its port.
    let mapped = [("x-forwarded-for", "192.0.2.200:51234")];
    assert_every_flow_refused(&gw, &fake, &mapped).await;

    // Next door is not listed.
    let other = [("x-forwarded-for", "2001:db9::7")];
    assert_every_flow_passes(&gw, &fake, &other).await;
    let reply = call(
        &gw,
        "GET",
        "/sessions/whoami",
        &[other[0], ("x-session-token", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.shutdown().await;
}

#[tokio::test]
async fn unlisted_clients_are_never_affected() {
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.add_session(SessionSpec::new(identity, session).token(token.clone()));
    let list = "networks:\n  - 203.0.113.0/24\n  - 2001:db8::/32\n  - 127.0.0.2\n";
    let gw = gateway(&fake, list, &[], false).await;
    assert_every_flow_passes(&gw, &fake, &[]).await;
    let reply = call(
        &gw,
        "GET",
        "/sessions/whoami",
        &[("x-session-token", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    gw.shutdown().await;
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_not_believed() {
    let fake = FakeKratos::start().await;
    // A listed address in X-Forwarded-For from a peer that is no trusted proxy changes
    // nothing: the peer (127.0.0.1) is the client.
    for trusted in [&[][..], &["10.0.0.0/8"][..]] {
        let gw = gateway(&fake, "networks:\n  - 203.0.113.0/24\n", trusted, false).await;
        let spoofed = [("x-forwarded-for", "203.0.113.9")];
        assert_every_flow_passes(&gw, &fake, &spoofed).await;
        gw.shutdown().await;
    }
    // And a listed client cannot step out of its network by naming another address.
    let gw = gateway(&fake, "networks:\n  - 127.0.0.1\n", &[], false).await;
    let spoofed = [
        ("x-forwarded-for", "198.51.100.1"),
        ("x-real-ip", "198.51.100.1"),
        ("true-client-ip", "198.51.100.1"),
    ];
    assert_every_flow_refused(&gw, &fake, &spoofed).await;
    gw.shutdown().await;
}

#[tokio::test]
async fn logout_and_other_paths_pass_from_a_listed_network() {
    let fake = FakeKratos::start().await;
    let gw = gateway(&fake, "networks:\n  - 127.0.0.1\n", &[], false).await;
    for (method, path) in [
        ("GET", "/self-service/logout/browser"),
        ("DELETE", "/self-service/logout/api"),
        ("GET", "/self-service/errors?id=x"),
        ("GET", "/health/ready"),
        ("GET", "/schemas/default"),
    ] {
        fake.clear_calls();
        let reply = call(&gw, method, path, &[]).await;
        assert_ne!(reply.json_opt_id().as_deref(), Some("network_blocked"));
        assert_eq!(fake.calls().len(), 1, "{method} {path}");
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn report_mode_audits_and_counts_but_lets_through() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let list = "networks:\n  - network: 127.0.0.0/8\n    mode: report\n";
    let gw = gateway(&fake, list, &[], false).await;
    assert_every_flow_passes(&gw, &fake, &[]).await;
    let would = logs.audit("would_block");
    assert!(would.len() >= FLOWS.len(), "{would:#?}");
    assert!(would
        .iter()
        .all(|e| e["matched"] == "network:127.0.0.0/8" && e["mode"] == "report"));
    assert!(logs.audit("blocked").is_empty());
    let metrics = get(&gw.ops_url("/metrics")).await.text();
    assert!(metric(&metrics, "login", "report") >= 5, "{metrics}");
    assert_eq!(metric(&metrics, "login", "enforce"), 0, "{metrics}");
    gw.shutdown().await;

    // `blocklist.mode: report` makes every network entry a dry run too.
    let gw = gateway(&fake, "networks:\n  - 127.0.0.1\n", &[], true).await;
    assert_every_flow_passes(&gw, &fake, &[]).await;
    gw.shutdown().await;
}

/// Polls until a login init from here is refused (`true`) or passes (`false`).
async fn wait_for_refusal(gw: &TestGateway, refused: bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = call(gw, "GET", "/self-service/login/api", &[]).await;
        if (reply.json_opt_id().as_deref() == Some("network_blocked")) == refused {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_reload_adds_and_removes_a_network() {
    let (logs, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    let gw = gateway(&fake, "identities: []\n", &[], false).await;
    assert!(wait_for_refusal(&gw, false).await);
    replace_atomically(&gw.blocklist_path(), "networks:\n  - 127.0.0.0/24\n");
    assert!(
        wait_for_refusal(&gw, true).await,
        "added network not in force"
    );
    assert_every_flow_refused(&gw, &fake, &[]).await;
    replace_atomically(&gw.blocklist_path(), "networks:\n  - 198.51.100.0/24\n");
    assert!(
        wait_for_refusal(&gw, false).await,
        "removed network still in force"
    );
    assert_every_flow_passes(&gw, &fake, &[]).await;

    // Each reload's audit names the networks added and removed.
    let reloads = logs.audit("blocklist_reloaded");
    assert_eq!(reloads.len(), 2, "{reloads:#?}");
    assert_eq!(reloads[0]["networks_added"], 1);
    assert_eq!(reloads[0]["networks"], 1);
    assert!(reloads[0]["changes"]
        .as_str()
        .is_some_and(|c| c.contains("127.0.0.0/24")));
    assert_eq!(reloads[1]["networks_added"], 1);
    assert_eq!(reloads[1]["networks_removed"], 1);
    let changes = reloads[1]["changes"].as_str().unwrap_or_default();
    assert!(
        changes.contains("127.0.0.0/24") && changes.contains("198.51.100.0/24"),
        "{changes}"
    );
    let metrics = get(&gw.ops_url("/metrics")).await.text();
    assert!(
        metrics.contains("kratos_gate_blocklist_entries{kind=\"network\"} 1"),
        "{metrics}"
    );
    gw.shutdown().await;
}

fn kratos_gate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kratos-gate"))
        .args(args)
        .output()
        .expect("run kratos-gate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_names_what_is_worth_fixing_in_networks() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("blocklist.yaml");
    write_file(
        &file,
        "networks:\n  - 10.0.0.1/8\n  - 203.0.113.0/24\n  - 203.0.113.128/25\n  - network: 198.51.100.0/24\n    mode: report\n  - 198.51.100.7\n  - 2001:db8::/32\n",
    );
    let name = file.display().to_string();
    let (code, out, err) = kratos_gate(&["check", "--blocklist", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("7 entries") || out.contains("6 entries"),
        "{out}"
    );
    for expected in [
        format!("{name}:2:5: 10.0.0.1/8 has host bits set: it is the network 10.0.0.0/8"),
        format!("{name}:2:5: 10.0.0.0/8 overlaps private 10.0.0.0/8"),
        format!("{name}:4:5: 203.0.113.128/25 is already covered by the network 203.0.113.0/24 (line 3)"),
        format!("{name}:7:5: 198.51.100.7/32 is enforced, but the network 198.51.100.0/24 (line 5) is listed with `mode: report`"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in\n{err}");
    }
    assert!(err.lines().all(|l| l.ends_with("(warning)")), "{err}");
    assert!(!err.contains("2001:db8::/32"), "{err}");

    // Errors: every bad entry with its position, exit 2.
    write_file(
        &file,
        "networks:\n  - 192.0.2.0/33\n  - example.com\n  - {network: 2001:db8::/32, until: soon}\n",
    );
    let (code, _, err) = kratos_gate(&["check", "--blocklist", &name]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{name}:2:5: `192.0.2.0/33`: prefix length /33 is longer than /32"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:3:5: `example.com` is not a network")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{name}:4:")) && err.contains("`until: soon`"),
        "{err}"
    );

    // With the config: a network over a trusted proxy.
    write_file(&file, "networks:\n  - 203.0.113.0/24\n");
    let config = dir.path().join("gateway.yaml");
    write_file(
        &config,
        &format!(
            "{}forwarding:\n  trusted_proxies: [203.0.113.10]\n",
            config_text("http://127.0.0.1:4433", "http://127.0.0.1:4434")
        ),
    );
    let (code, out, err) = kratos_gate(&[
        "check",
        "--offline",
        "--config",
        &config.display().to_string(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("203.0.113.0/24 overlaps the trusted proxies 203.0.113.10/32"),
        "{err}"
    );
}

#[test]
fn diff_lists_network_changes() {
    let dir = tempfile::tempdir().expect("tmp");
    let old = dir.path().join("old.yaml");
    let new = dir.path().join("new.yaml");
    write_file(&old, "networks:\n  - 192.0.2.0/24\n  - 2001:db8::/32\n");
    write_file(
        &new,
        "networks:\n  - network: 192.0.2.0/24\n    mode: report\n  - 198.51.100.7\n",
    );
    let (code, out, err) = kratos_gate(&[
        "diff",
        &old.display().to_string(),
        &new.display().to_string(),
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("+ 198.51.100.7/32"), "{out}");
    assert!(out.contains("- 2001:db8::/32"), "{out}");
    assert!(out.contains("~ 192.0.2.0/24"), "{out}");
}

#[tokio::test]
async fn a_fresh_identity_and_session_are_untouched_by_a_network_entry() {
    // Network entries never name identities: a reload adding one revokes nothing.
    let fake = FakeKratos::start().await;
    let (identity, session, token) = (fresh_uuid(), fresh_uuid(), fresh_token());
    fake.add_session(SessionSpec::new(identity, session).token(token));
    let gw = gateway(&fake, "identities: []\n", &[], false).await;
    replace_atomically(&gw.blocklist_path(), "networks:\n  - 127.0.0.1\n");
    assert!(wait_for_refusal(&gw, true).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(fake
        .calls_matching(Side::Admin, "ANY", "/admin")
        .iter()
        .all(|c| c.method != Method::DELETE));
    assert!(fake.session_status(session).is_some_and(|s| !s.revoked));
    gw.shutdown().await;
}

/// Calls `POST /hooks/kratos` with `body`.
async fn hook(gw: &TestGateway, body: &str) -> Reply {
    let addr = gw.gateway().hooks_addr.expect("hooks listener");
    send(
        &http1(),
        request(Method::POST, &format!("http://{addr}/hooks/kratos"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request"),
    )
    .await
}

#[tokio::test]
async fn the_web_hook_refuses_flows_whose_client_address_is_listed() {
    let (logs, _guard) = logs::capture();
    let list = "networks:\n  - 203.0.113.0/24\n  - network: 198.51.100.0/24\n    mode: report\n";
    let gw = start_gateway_with("http://127.0.0.1:9", "http://127.0.0.1:9", list, |c| {
        c.listen.hooks = Some("127.0.0.1:0".parse().expect("addr"));
    })
    .await;
    let identity = format!(
        r#"{{"id":"{}","traits":{{"email":"a@good.example"}}}}"#,
        fresh_uuid()
    );
    // Kratos renders `ctx.request_headers['True-Client-Ip']` as a list; a string works too;
    // `before` hooks have no identity.
    for body in [
        format!(r#"{{"identity":{identity},"client_ip":"203.0.113.7"}}"#),
        format!(r#"{{"identity":{identity},"client_ip":["203.0.113.7"]}}"#),
        r#"{"identity":null,"client_ip":["203.0.113.7:51000"]}"#.to_owned(),
    ] {
        let reply = hook(&gw, &body).await;
        assert_eq!(reply.status, 403, "{body}");
        let v = reply.json();
        assert_eq!(v["messages"][0]["messages"][0]["id"], 4010011);
        assert_eq!(
            v["messages"][0]["messages"][0]["text"],
            "Requests from your network are not allowed."
        );
    }
    for body in [
        format!(r#"{{"identity":{identity},"client_ip":"192.0.2.1"}}"#),
        format!(r#"{{"identity":{identity}}}"#),
        format!(r#"{{"identity":{identity},"client_ip":null}}"#),
        r#"{"identity":null,"client_ip":"198.51.100.7"}"#.to_owned(),
    ] {
        assert_eq!(hook(&gw, &body).await.status, 204, "{body}");
    }
    assert_eq!(hook(&gw, r#"{"identity":null}"#).await.status, 400);
    let blocked = logs.audit("blocked");
    assert_eq!(blocked.len(), 3, "{blocked:#?}");
    assert!(blocked
        .iter()
        .all(|e| e["kind"] == "hook" && e["client_ip"] == "203.0.113.7"));
    let would = logs.audit("would_block");
    assert_eq!(would.len(), 1, "{would:#?}");
    assert_eq!(would[0]["matched"], "network:198.51.100.0/24");
    gw.shutdown().await;
}

#[test]
fn block_unblock_and_lookup_of_networks() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("blocklist.yaml");
    write_file(&file, "# ops list\nidentities: []\n");
    let name = file.display().to_string();
    let (code, out, err) = kratos_gate(&[
        "block",
        "203.0.113.0/24",
        "--reason",
        "abuse",
        "--meta",
        "ticket=OPS-5",
        "--blocklist",
        &name,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = kratos_gate(&["block", "::1", "--mode", "report", "--blocklist", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("# ops list\nidentities: []\n"), "{text}");
    assert!(text.contains("networks:\n"), "{text}");
    assert!(text.contains("network: 203.0.113.0/24"), "{text}");
    assert!(text.contains("reason: abuse"), "{text}");
    let list = kratos_gate::blocklist::Blocklist::parse(&text, "b.yaml")
        .expect("valid")
        .blocklist;
    assert_eq!(list.networks().len(), 2);

    // lookup: every network containing the address, strictest first.
    let (code, out, err) = kratos_gate(&["lookup", "203.0.113.9", "--blocklist", &name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            "network:203.0.113.0/24 mode=enforce until=forever reason=abuse meta=ticket=OPS-5"
        ),
        "{out}"
    );
    assert!(
        out.contains("listed: enforce by network:203.0.113.0/24"),
        "{out}"
    );
    let (code, out, _) = kratos_gate(&["lookup", "::1", "--blocklist", &name]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("listed: report by network:::1/128"), "{out}");
    let (code, out, _) = kratos_gate(&["lookup", "198.51.100.1", "--blocklist", &name]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("not listed: 198.51.100.1"), "{out}");

    // unblock in another spelling of the same network (host bits, mapped form).
    let (code, out, err) =
        kratos_gate(&["unblock", "::ffff:203.0.113.7/120", "--blocklist", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, _) = kratos_gate(&["lookup", "203.0.113.9", "--blocklist", &name]);
    assert_eq!(code, 1);
    let (code, _, _) = kratos_gate(&["unblock", "203.0.113.0/24", "--blocklist", &name]);
    assert_eq!(code, 1, "not listed any more");
}
