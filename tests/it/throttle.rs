//! Throttling through whole gateways (issue 15): failed logins and wrong codes, answered by
//! a fake Kratos the way Kratos answers them, are counted per identifier and network; past a
//! limit the gateway answers 429 with `Retry-After` without asking Kratos; a successful login
//! resets the count; every submission counts against its network's rate; three gateways
//! sharing one real `redis-server` allow the limit once in total; Redis going away fails open
//! (or closed) and coming back is noticed. Without `throttle:` nothing is throttled.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;
use kratos_gate::config::Config;
use kratos_gate::throttle::config::{FailMode, RedisConfig};

use crate::support::client::Reply as Answer;
use crate::support::enforcement::{send, FORM, JSON};
use crate::support::fake_kratos::{fresh_token, fresh_uuid, FakeKratos, Reply, Side};
use crate::support::fixtures::native_login_body;
use crate::support::flows::{flow_reply, ui_message, Flow, FlowType, Submitted};
use crate::support::gateway::{start_gateway_with, TestGateway};
use crate::support::logs;
use crate::support::metrics::metric;

const PASSWORD: &str = "correct horse battery staple";
const LOGIN: &str = "/self-service/login?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f";

/// Kratos's password login: the right password gives a session (200 with `session_token`),
/// any other the login flow with 4000006 (400); a browser form post is sent back to the
/// login UI (303) without a session. A code login's first step answers the flow in state
/// `sent_email` (200, no session); a passkey login gives a session whatever the body's
/// `identifier` says.
fn password_login() -> Reply {
    let flow = Flow::new(FlowType::Api);
    let identity = fresh_uuid();
    Reply::from_fn(move |call| {
        let submitted = Submitted::of(call);
        let form = call
            .header("content-type")
            .is_some_and(|c| c.contains("x-www-form-urlencoded"));
        let right = submitted.text("password") == Some(PASSWORD);
        match submitted.text("method") {
            // A code login's first step: the code is sent, the flow answered (no session).
            Some("code") if submitted.text("code").is_none() => {
                return flow_reply(
                    flow.clone(),
                    200,
                    "sent_email",
                    vec![ui_message(
                        1_010_014,
                        "A code has been sent to the address you provided.",
                        "info",
                    )],
                )
            }
            // Another method signs someone in whatever `identifier` says (passkey, OIDC).
            Some("passkey") => {
                return Reply::json(
                    200,
                    native_login_body(identity, fresh_uuid(), &fresh_token()),
                )
            }
            _ => {}
        }
        match (right, form) {
            (true, _) => Reply::json(
                200,
                native_login_body(identity, fresh_uuid(), &fresh_token()),
            ),
            (false, true) => Reply::empty(303).header(
                "location",
                "https://app.example.com/login?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f",
            ),
            (false, false) => login_error(flow.clone()),
        }
    })
}

/// Kratos's answer to a wrong password (API and SPA flows): 400 with the login flow and the
/// "credentials invalid" message (id 4000006) in `ui.messages`, the submission echoed.
fn login_error(flow: Flow) -> Reply {
    flow_reply(
        flow,
        400,
        "choose_method",
        vec![ui_message(
            4_000_006,
            "The provided credentials are invalid, check for spelling mistakes in your password or username, email address, or phone number.",
            "error",
        )],
    )
}

fn login_body(identifier: &str, password: &str) -> String {
    serde_json::json!({"method": "password", "identifier": identifier, "password": password})
        .to_string()
}

/// A throttled gateway in front of `fake` (limits: 3 per identifier and network, 6 per
/// identifier, 50 per network; the rate limit off unless set by `configure`).
async fn gateway(fake: &FakeKratos, configure: impl FnOnce(&mut Config)) -> TestGateway {
    start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        "identities: []\n",
        |c| {
            c.forwarding.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
            let t = &mut c.throttle;
            t.enabled = true;
            t.failures.per_identifier_and_network = 3;
            t.failures.per_identifier = 6;
            t.failures.per_network = 50;
            t.rate_limit.submissions = 0;
            configure(c);
        },
    )
    .await
}

async fn login_from(gw: &TestGateway, ip: &str, identifier: &str, password: &str) -> Answer {
    login_raw(gw, ip, &login_body(identifier, password)).await
}

fn logins_at_kratos(fake: &FakeKratos) -> usize {
    fake.calls_matching(Side::Public, Method::POST, "/self-service/login")
        .len()
}

fn assert_throttled(a: &Answer) {
    assert_eq!(a.status, 429, "{}", a.text());
    let retry: u64 = a
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry), "{retry}");
    let v = a.json();
    assert_eq!(v["error"]["id"], "self_service_throttled", "{v}");
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(a.header("ory-error-id"), Some("self_service_throttled"));
}

#[tokio::test]
async fn failed_logins_past_the_limit_get_429_without_reaching_kratos() {
    let (log, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    for _ in 0..3 {
        let a = login_from(&gw, "198.51.100.7", "alice@example.com", "wrong").await;
        assert_eq!(a.status, 400, "Kratos's own answer");
        assert_eq!(a.json()["ui"]["messages"][0]["id"], 4_000_006);
    }
    let a = login_from(&gw, "198.51.100.7", "ALICE@example.com", "wrong").await;
    assert_throttled(&a);
    // Even the right password waits: the pair is refused before Kratos is asked.
    assert_throttled(&login_from(&gw, "198.51.100.7", "alice@example.com", PASSWORD).await);
    assert_eq!(logins_at_kratos(&fake), 3);
    // The owner on another network, and other identifiers on the attacker's, are not slowed.
    assert_eq!(
        login_from(&gw, "203.0.113.20", "alice@example.com", PASSWORD)
            .await
            .status,
        200
    );
    assert_eq!(
        login_from(&gw, "198.51.100.7", "bob@example.com", "wrong")
            .await
            .status,
        400
    );
    let m = gw.gateway().metrics().encode();
    assert_eq!(
        metric(
            &m,
            "kratos_gate_throttled_total{kind=\"login\",scope=\"identifier_network\",mode=\"enforce\"}"
        ),
        2.0,
        "{m}"
    );
    assert!(metric(&m, "kratos_gate_throttle_failures_total{kind=\"login\"}") >= 4.0);
    // Every decision is an audit event.
    let refusals = log.audit("throttled");
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    let r = &refusals[0];
    assert_eq!(r["kind"], "login");
    assert_eq!(r["scope"], "identifier_network");
    assert_eq!(r["mode"], "enforce");
    assert_eq!(r["identifier"], "alice@example.com");
    assert_eq!(r["network"], "198.51.100.7/32");
    assert!(r["retry_after_s"].as_u64().is_some_and(|s| s >= 1), "{r}");
    assert!(
        r["request_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{r}"
    );
    let failures = log.audit("throttle_failure");
    assert_eq!(failures.len(), 4, "{failures:?}");
    assert!(failures.iter().all(|f| f.get("password").is_none()));
}

#[tokio::test]
async fn a_successful_login_resets_the_identifiers_count() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    for _ in 0..2 {
        login_from(&gw, "198.51.100.8", "carol@example.com", "wrong").await;
    }
    assert_eq!(
        login_from(&gw, "198.51.100.8", "carol@example.com", PASSWORD)
            .await
            .status,
        200
    );
    for _ in 0..3 {
        let a = login_from(&gw, "198.51.100.8", "carol@example.com", "typo").await;
        assert_eq!(a.status, 400);
    }
    assert_throttled(&login_from(&gw, "198.51.100.8", "carol@example.com", "typo").await);
}

/// A login body with another `method`.
async fn login_with(gw: &TestGateway, ip: &str, body: serde_json::Value) -> Answer {
    login_raw(gw, ip, &body.to_string()).await
}

#[tokio::test]
async fn answers_without_a_password_checked_do_not_reset_the_count() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    let ip = "198.51.100.15";
    let victim = "victor@example.com";
    for _ in 0..2 {
        assert_eq!(login_from(&gw, ip, victim, "guess").await.status, 400);
    }
    // A code sent to the victim (200, no session) and the attacker's own passkey login with
    // the victim's identifier in the body (200, a session, but not the victim's password)
    // reset nothing.
    let sent = login_with(
        &gw,
        ip,
        serde_json::json!({"method": "code", "identifier": victim}),
    )
    .await;
    assert_eq!(sent.status, 200);
    let passkey = login_with(
        &gw,
        ip,
        serde_json::json!({"method": "passkey", "identifier": victim}),
    )
    .await;
    assert_eq!(passkey.status, 200);
    assert_eq!(login_from(&gw, ip, victim, "guess").await.status, 400);
    assert_throttled(&login_from(&gw, ip, victim, "guess").await);
}

#[tokio::test]
async fn the_identifier_limit_spans_networks_but_spares_the_owners_network() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    assert_eq!(
        login_from(&gw, "192.0.2.50", "dave@example.com", PASSWORD)
            .await
            .status,
        200
    );
    for net in 1..=3 {
        for _ in 0..2 {
            let ip = format!("10.9.{net}.1");
            assert_eq!(
                login_from(&gw, &ip, "dave@example.com", "x").await.status,
                400
            );
        }
    }
    assert_throttled(&login_from(&gw, "10.9.4.1", "dave@example.com", "x").await);
    assert_eq!(
        login_from(&gw, "192.0.2.50", "dave@example.com", PASSWORD)
            .await
            .status,
        200,
        "the network the owner signed in from is not refused"
    );
}

#[tokio::test]
async fn browser_form_logins_sent_back_to_the_form_count_as_failures() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    let body = "method=password&identifier=erin%40example.com&password=nope";
    let mut headers = FORM.to_vec();
    headers.push(("x-forwarded-for", "198.51.100.9"));
    for _ in 0..3 {
        let a = send(Method::POST, &gw.public_url(LOGIN), &headers, body).await;
        assert_eq!(a.status, 303);
    }
    let a = send(Method::POST, &gw.public_url(LOGIN), &headers, body).await;
    assert_eq!(a.status, 429);
    assert!(a.header("retry-after").is_some());
    assert!(a
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
}

#[tokio::test]
async fn wrong_recovery_codes_count_against_the_flows_address() {
    let fake = FakeKratos::start().await;
    let flow = Flow::new(FlowType::Api);
    let wrong_code = flow_reply(
        flow.clone(),
        200,
        "sent_email",
        vec![ui_message(
            4_060_006,
            "The recovery code is invalid or has already been used. Please try again.",
            "error",
        )],
    );
    fake.on_public("POST", "/self-service/recovery", wrong_code);
    let gw = gateway(&fake, |_| {}).await;
    let path = format!("/self-service/recovery?flow={}", flow.id);
    let mut headers = JSON.to_vec();
    headers.push(("x-forwarded-for", "198.51.100.10"));
    let first = r#"{"method":"code","email":"frank@example.com"}"#;
    assert_eq!(
        send(Method::POST, &gw.public_url(&path), &headers, first)
            .await
            .status,
        200
    );
    for code in ["111111", "222222", "333333"] {
        let body = format!(r#"{{"method":"code","code":"{code}"}}"#);
        let a = send(Method::POST, &gw.public_url(&path), &headers, &body).await;
        assert_eq!(a.status, 200);
    }
    let a = send(
        Method::POST,
        &gw.public_url(&path),
        &headers,
        r#"{"method":"code","code":"444444"}"#,
    )
    .await;
    assert_throttled(&a);
    // Another address's flow from the same network is not refused.
    let other = Flow::new(FlowType::Api);
    let other_path = format!("/self-service/recovery?flow={}", other.id);
    send(
        Method::POST,
        &gw.public_url(&other_path),
        &headers,
        r#"{"method":"code","email":"grace@example.com"}"#,
    )
    .await;
    let a = send(
        Method::POST,
        &gw.public_url(&other_path),
        &headers,
        r#"{"method":"code","code":"555555"}"#,
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn wrong_verification_codes_count_against_the_flows_address() {
    let fake = FakeKratos::start().await;
    let flow = Flow::new(FlowType::Api);
    let answer = flow_reply(
        flow.clone(),
        200,
        "sent_email",
        vec![ui_message(
            4_070_006,
            "The verification code is invalid or has already been used. Please try again.",
            "error",
        )],
    );
    fake.on_public("POST", "/self-service/verification", answer);
    let gw = gateway(&fake, |_| {}).await;
    let path = format!("/self-service/verification?flow={}", flow.id);
    let mut headers = JSON.to_vec();
    headers.push(("x-forwarded-for", "198.51.100.16"));
    let first = r#"{"method":"code","email":"walter@example.com"}"#;
    send(Method::POST, &gw.public_url(&path), &headers, first).await;
    for _ in 0..3 {
        let body = r#"{"method":"code","code":"000000"}"#;
        assert_eq!(
            send(Method::POST, &gw.public_url(&path), &headers, body)
                .await
                .status,
            200
        );
    }
    let a = send(
        Method::POST,
        &gw.public_url(&path),
        &headers,
        r#"{"method":"code","code":"000001"}"#,
    )
    .await;
    assert_throttled(&a);
    let m = gw.gateway().metrics().encode();
    assert_eq!(
        metric(
            &m,
            "kratos_gate_throttle_failures_total{kind=\"verification\"}"
        ),
        3.0,
        "{m}"
    );
}

#[tokio::test]
async fn every_self_service_submission_counts_against_its_networks_rate() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/registration", Reply::json(400, "{}"));
    let gw = gateway(&fake, |c| {
        c.throttle.rate_limit.submissions = 3;
    })
    .await;
    let register = |ip: &'static str| {
        let url =
            gw.public_url("/self-service/registration?flow=6f5a3c2e-1d4b-4a59-9e8f-7c6b5a4d3e2f");
        async move {
            let mut headers = JSON.to_vec();
            headers.push(("x-forwarded-for", ip));
            send(Method::POST, &url, &headers, r#"{"method":"password"}"#).await
        }
    };
    for _ in 0..3 {
        assert_eq!(register("198.51.100.11").await.status, 400);
    }
    assert_throttled(&register("198.51.100.11").await);
    assert_eq!(
        register("198.51.100.12").await.status,
        400,
        "another network"
    );
    // Reads are not submissions.
    let a = send(
        Method::GET,
        &gw.public_url("/self-service/registration/api"),
        &[("x-forwarded-for", "198.51.100.11")],
        "",
    )
    .await;
    assert_ne!(a.status, 429);
}

#[tokio::test]
async fn report_mode_logs_and_counts_but_refuses_nothing() {
    let (log, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |c| {
        c.throttle.mode = kratos_gate::config::GlobalMode::Report;
    })
    .await;
    for _ in 0..8 {
        let a = login_from(&gw, "198.51.100.13", "heidi@example.com", "wrong").await;
        assert_eq!(a.status, 400);
    }
    assert_eq!(logins_at_kratos(&fake), 8);
    let m = gw.gateway().metrics().encode();
    assert!(
        metric(
            &m,
            "kratos_gate_throttled_total{kind=\"login\",scope=\"identifier_network\",mode=\"report\"}"
        ) >= 1.0,
        "{m}"
    );
    let reported = log.audit("would_throttle");
    assert!(!reported.is_empty());
    assert!(reported.iter().all(|e| e["mode"] == "report"));
    assert!(log.audit("throttled").is_empty());
}

#[tokio::test]
async fn without_throttle_nothing_is_throttled() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |c| c.throttle.enabled = false).await;
    for _ in 0..20 {
        let a = login_from(&gw, "198.51.100.14", "ivan@example.com", "wrong").await;
        assert_eq!(a.status, 400);
    }
    assert_eq!(logins_at_kratos(&fake), 20);
}

// ---- a real Redis ----

struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// On a free port; another test's server can take it before Redis binds it, so a
    /// port where no Redis answers is given up for another.
    fn start() -> RedisServer {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("port")
                .local_addr()
                .expect("addr")
                .port();
            let mut s = RedisServer { port, child: None };
            if s.try_run() {
                return s;
            }
            s.kill();
        }
        panic!("redis-server found no free port of its own in 5 tries");
    }

    fn run(&mut self) {
        assert!(
            self.try_run(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    fn try_run(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if redis_answers_ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether a Redis answers PING on `port` (not merely something listening there).
fn redis_answers_ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer[..5]).is_ok()
        && &answer[..5] == b"+PONG"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn use_redis(c: &mut Config, port: u16, fail: FailMode) {
    c.throttle.redis = Some(RedisConfig {
        url: format!("redis://127.0.0.1:{port}").parse().expect("url"),
        password_file: None,
        ca_file: None,
        fail,
        timeout: kratos_gate::config::HumanDuration(Duration::from_millis(300)),
        key_prefix: "it".to_owned(),
    });
}

#[tokio::test]
async fn three_gateways_sharing_redis_let_the_limit_through_once_in_total() {
    let redis = RedisServer::start();
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(gateway(&fake, |c| use_redis(c, redis.port, FailMode::Open)).await);
    }
    // One after another, round robin.
    let mut statuses = Vec::new();
    for i in 0..12 {
        statuses.push(
            login_from(&gws[i % 3], "198.51.100.20", "judy@example.com", "x")
                .await
                .status,
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 400).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(logins_at_kratos(&fake), 3, "not three times the limit");
    // All at once.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let url = gws[i % 3].public_url(LOGIN);
            tokio::spawn(async move {
                let mut headers = JSON.to_vec();
                headers.push(("x-forwarded-for", "198.51.100.21"));
                send(
                    Method::POST,
                    &url,
                    &headers,
                    &login_body("mallory@example.com", "x"),
                )
                .await
                .status
            })
        })
        .collect();
    let mut through = 0;
    for t in tasks {
        through += usize::from(t.await.expect("task") == 400);
    }
    assert_eq!(through, 3);
    // Unlisted users elsewhere are never slowed.
    for (i, gw) in gws.iter().enumerate() {
        let ip = format!("203.0.113.{}", 30 + i);
        assert_eq!(
            login_from(gw, &ip, "niaj@example.com", PASSWORD)
                .await
                .status,
            200
        );
    }
}

#[tokio::test]
async fn redis_going_away_fails_open_and_readiness_stays() {
    let mut redis = RedisServer::start();
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |c| use_redis(c, redis.port, FailMode::Open)).await;
    for _ in 0..2 {
        assert_eq!(
            login_from(&gw, "198.51.100.30", "oscar@example.com", "x")
                .await
                .status,
            400
        );
    }
    redis.kill();
    for _ in 0..5 {
        assert_eq!(
            login_from(&gw, "198.51.100.30", "oscar@example.com", "x")
                .await
                .status,
            400
        );
    }
    let ready = send(Method::GET, &gw.ops_url("/readyz"), &[], "").await;
    assert_eq!(ready.status, 200, "Redis is not part of readiness");
    let m = gw.gateway().metrics().encode();
    assert!(
        metric(
            &m,
            "kratos_gate_throttle_store_errors_total{operation=\"check\"}"
        ) >= 5.0,
        "{m}"
    );
    // Back (empty): counting resumes.
    redis.run();
    let mut refused = false;
    for _ in 0..60 {
        if login_from(&gw, "198.51.100.31", "peggy@example.com", "x")
            .await
            .status
            == 429
        {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "throttling works again once Redis answers");
}

#[tokio::test]
async fn redis_going_away_with_fail_closed_answers_503() {
    let mut redis = RedisServer::start();
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |c| use_redis(c, redis.port, FailMode::Closed)).await;
    assert_eq!(
        login_from(&gw, "198.51.100.40", "rupert@example.com", "x")
            .await
            .status,
        400
    );
    redis.kill();
    let a = login_from(&gw, "198.51.100.40", "rupert@example.com", PASSWORD).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["error"]["id"], "self_service_throttle_unavailable");
    assert_eq!(logins_at_kratos(&fake), 1);
    // Session checks are not throttled and do not need Redis.
    let who = send(Method::GET, &gw.public_url("/sessions/whoami"), &[], "").await;
    assert_ne!(who.status, 503);
}

/// `with_redis` minus `throttle.redis` equals `without`; the removed part.
fn only_redis_added(without: &str, with_redis: &str) -> serde_json::Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(root.join(p)).expect("read");
        serde_saphyr::from_str(&text).expect("yaml")
    };
    let standalone = read(without);
    let mut redis_variant = read(with_redis);
    let redis = redis_variant["throttle"]
        .as_object_mut()
        .and_then(|t| t.remove("redis"))
        .expect("throttle.redis");
    assert_eq!(
        standalone, redis_variant,
        "{with_redis}: only throttle.redis differs"
    );
    assert_eq!(
        standalone["throttle"]["enabled"], true,
        "{without} throttles"
    );
    redis
}

#[test]
fn the_redis_configs_of_the_shipped_layouts_only_add_throttle_redis() {
    let k8s = only_redis_added(
        "deploy/kubernetes/overlays/standalone/gateway.yaml",
        "deploy/kubernetes/components/redis/gateway-redis.yaml",
    );
    assert!(k8s["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("redis://kratos-gate-redis:")));
    let compose = only_redis_added(
        "deploy/compose/kratos-gate/gateway.yaml",
        "deploy/compose/kratos-gate/gateway-redis.yaml",
    );
    assert!(compose["url"]
        .as_str()
        .is_some_and(|u| u.starts_with("redis://redis:")));
}

/// A login body as raw text (duplicate members, any spelling), from `ip`.
async fn login_raw(gw: &TestGateway, ip: &str, body: &str) -> Answer {
    let mut headers = JSON.to_vec();
    headers.push(("x-forwarded-for", ip));
    send(Method::POST, &gw.public_url(LOGIN), &headers, body).await
}

#[tokio::test]
async fn a_method_spelled_or_repeated_as_go_reads_it_still_counts() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    // Kratos (Go's encoding/json) matches `METHOD` to `method` and keeps the last member:
    // each of these is a password attempt at Kratos, and each is counted.
    let attempts = [
        r#"{"method":"oidc","METHOD":"password","identifier":"carol@example.com","password":"a"}"#,
        r#"{"method":"oidc","method":"password","identifier":"carol@example.com","password":"b"}"#,
        r#"{"Method":"password","identifier":"carol@example.com","password":"c"}"#,
    ];
    for body in attempts {
        assert_eq!(login_raw(&gw, "198.51.100.9", body).await.status, 400);
    }
    assert_throttled(&login_from(&gw, "198.51.100.9", "carol@example.com", "d").await);
    assert_eq!(logins_at_kratos(&fake), 3);
}

#[tokio::test]
async fn a_login_too_large_to_read_is_refused_while_throttling() {
    let fake = FakeKratos::start().await;
    fake.on_public("POST", "/self-service/login", password_login());
    let gw = gateway(&fake, |_| {}).await;
    // Padding past inspection.login_body_limit_bytes would hide the identifier from the
    // count; Kratos would still check the password. The gateway refuses it unread.
    let padded = serde_json::json!({
        "method": "password", "identifier": "dave@example.com", "password": "wrong",
        "transient_payload": {"pad": "x".repeat(64 * 1024)},
    })
    .to_string();
    let a = login_raw(&gw, "198.51.100.10", &padded).await;
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(logins_at_kratos(&fake), 0);
    // A readable attempt from the same client is answered by Kratos as before.
    assert_eq!(
        login_from(&gw, "198.51.100.10", "dave@example.com", "wrong")
            .await
            .status,
        400
    );
    assert_eq!(logins_at_kratos(&fake), 1);
}

#[tokio::test]
async fn a_failure_answer_swollen_past_the_read_limit_still_counts() {
    let fake = FakeKratos::start().await;
    // Kratos's wrong-password answer with a large echo (a transient payload written with
    // Go's escapes can grow several times over): too large to read, still not given back.
    fake.on_public(
        "POST",
        "/self-service/login",
        Reply::json(
            400,
            serde_json::json!({
                "id": fresh_uuid().to_string(),
                "ui": {"messages": [{"id": 4_000_006, "type": "error", "text": "invalid"}]},
                "transient_payload": {"echo": "\\u003c".repeat(60_000)},
            }),
        ),
    );
    let gw = gateway(&fake, |_| {}).await;
    for _ in 0..3 {
        let a = login_from(&gw, "198.51.100.11", "erin@example.com", "wrong").await;
        assert_eq!(a.status, 400);
    }
    assert_throttled(&login_from(&gw, "198.51.100.11", "erin@example.com", "wrong").await);
    assert_eq!(logins_at_kratos(&fake), 3);
}
