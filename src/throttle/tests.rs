//! The rules end to end through [`Throttle`], against the in-process store and against a
//! real `redis-server` (started by each test on a free port; Debian's `redis-server`, which
//! `.ci/run` installs).

use std::net::{IpAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use super::config::{FailMode, RedisConfig, ThrottleConfig};
use super::metrics::{OperationLabels, ThrottleMetrics, ThrottledLabels};
use super::*;
use crate::config::HumanDuration;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn small() -> ThrottleConfig {
    let mut c = ThrottleConfig {
        enabled: true,
        ..ThrottleConfig::default()
    };
    c.failures.per_identifier_and_network = 3;
    c.failures.per_identifier = 6;
    c.failures.per_network = 50;
    c.rate_limit.submissions = 0;
    c
}

fn throttle(c: &ThrottleConfig) -> Throttle {
    let metrics = ThrottleMetrics::register(&mut Registry::default());
    Throttle::new(c, metrics).expect("valid").expect("enabled")
}

fn login<'a>(who: &'a str, from: &str) -> Submission<'a> {
    Submission {
        flow: Flow::Login,
        identifier: Some(who),
        client: ip(from),
        tries_secret: true,
    }
}

/// One login attempt that Kratos refuses (when let through); the verdict.
async fn fail(t: &Throttle, who: &str, from: &str) -> Verdict {
    let s = login(who, from);
    let v = t.check(&s, "t").await;
    if let Verdict::Pass(p) = v {
        t.settle(&s, p, Outcome::Failure, "t").await;
    }
    v
}

async fn succeed(t: &Throttle, who: &str, from: &str) -> Verdict {
    let s = login(who, from);
    let v = t.check(&s, "t").await;
    if let Verdict::Pass(p) = v {
        t.settle(&s, p, Outcome::Success, "t").await;
    }
    v
}

fn passed(v: Verdict) -> bool {
    matches!(v, Verdict::Pass(_))
}

fn scope(v: Verdict) -> Option<Scope> {
    match v {
        Verdict::Throttled { scope, .. } => Some(scope),
        _ => None,
    }
}

// ---- scenarios, run against both stores ----

async fn pair_limit_refuses_that_pair_only(t: &Throttle) {
    for _ in 0..3 {
        assert!(passed(fail(t, "alice@example.com", "198.51.100.7").await));
    }
    let v = fail(t, "Alice@Example.com ", "198.51.100.7").await;
    assert_eq!(scope(v), Some(Scope::IdentifierAndNetwork), "{v:?}");
    match v {
        Verdict::Throttled { retry_after, .. } => {
            assert!(
                retry_after >= Duration::from_secs(29) && retry_after <= Duration::from_secs(30)
            )
        }
        other => panic!("{other:?}"),
    }
    // The owner, elsewhere, and other identifiers from the attacker's network pass.
    assert!(passed(succeed(t, "alice@example.com", "203.0.113.9").await));
    assert!(passed(fail(t, "bob@example.com", "198.51.100.7").await));
    // Same /64: the same network; another /64: another.
    for _ in 0..3 {
        fail(t, "carol@example.com", "2001:db8:1:2::1").await;
    }
    assert_eq!(
        scope(fail(t, "carol@example.com", "2001:db8:1:2::ffff").await),
        Some(Scope::IdentifierAndNetwork)
    );
    assert!(passed(
        fail(t, "carol@example.com", "2001:db8:1:3::1").await
    ));
}

async fn identifier_limit_spares_networks_the_owner_signed_in_from(t: &Throttle) {
    assert!(passed(succeed(t, "dave@example.com", "192.0.2.10").await));
    let mut n = 0;
    for net in 1..=3 {
        for _ in 0..2 {
            assert!(passed(
                fail(t, "dave@example.com", &format!("10.0.0.{net}")).await
            ));
            n += 1;
        }
    }
    assert_eq!(n, 6);
    let v = fail(t, "dave@example.com", "10.0.0.4").await;
    assert_eq!(scope(v), Some(Scope::Identifier), "{v:?}");
    assert!(passed(succeed(t, "dave@example.com", "192.0.2.10").await));
    // The success reset the identifier's counters: other networks pass again.
    assert!(passed(fail(t, "dave@example.com", "10.0.0.5").await));
}

async fn success_resets_the_identifier(t: &Throttle) {
    for _ in 0..2 {
        fail(t, "erin@example.com", "198.51.100.20").await;
    }
    assert!(passed(
        succeed(t, "erin@example.com", "198.51.100.20").await
    ));
    for _ in 0..3 {
        assert!(passed(fail(t, "erin@example.com", "198.51.100.20").await));
    }
    assert!(!passed(fail(t, "erin@example.com", "198.51.100.20").await));
}

async fn answers_that_are_not_failures_are_counted_back(t: &Throttle) {
    for _ in 0..20 {
        let s = login("frank@example.com", "198.51.100.30");
        let Verdict::Pass(p) = t.check(&s, "t").await else {
            panic!("refused")
        };
        t.settle(&s, p, Outcome::Other, "t").await;
    }
    for _ in 0..3 {
        assert!(passed(fail(t, "frank@example.com", "198.51.100.30").await));
    }
    assert!(!passed(fail(t, "frank@example.com", "198.51.100.30").await));
}

async fn attempts_in_flight_at_once_cannot_pass_the_limit(t: Arc<Throttle>) {
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let t = Arc::clone(&t);
            tokio::spawn(async move {
                let s = login("grace@example.com", "198.51.100.40");
                let v = t.check(&s, "t").await;
                tokio::time::sleep(Duration::from_millis(20)).await; // Kratos hashing
                if let Verdict::Pass(p) = v {
                    t.settle(&s, p, Outcome::Failure, "t").await;
                    true
                } else {
                    false
                }
            })
        })
        .collect();
    let mut through = 0;
    for task in tasks {
        through += usize::from(task.await.expect("task"));
    }
    assert_eq!(through, 3);
}

async fn network_limit_and_rate_limit(make: impl Fn(&ThrottleConfig) -> Throttle) {
    let mut c = small();
    c.failures.per_network = 5;
    let t = make(&c);
    for i in 0..5 {
        assert!(passed(
            fail(&t, &format!("user{i}@example.com"), "198.51.100.50").await
        ));
    }
    let v = fail(&t, "user9@example.com", "198.51.100.50").await;
    assert_eq!(scope(v), Some(Scope::Network), "{v:?}");
    assert!(passed(fail(&t, "user9@example.com", "198.51.100.51").await));

    let mut c = small();
    c.rate_limit.submissions = 3;
    c.rate_limit.per = HumanDuration(Duration::from_secs(60));
    let t = make(&c);
    let sub = |from| Submission {
        flow: Flow::Registration,
        identifier: None,
        client: ip(from),
        tries_secret: false,
    };
    for _ in 0..3 {
        assert!(passed(t.check(&sub("198.51.100.60"), "t").await));
    }
    match t.check(&sub("198.51.100.60"), "t").await {
        Verdict::Throttled {
            scope: Scope::RateLimit,
            retry_after,
        } => {
            assert!(retry_after > Duration::from_secs(15) && retry_after <= Duration::from_secs(20))
        }
        other => panic!("{other:?}"),
    }
    assert!(passed(t.check(&sub("198.51.100.61"), "t").await));
}

async fn report_mode_lets_everything_through(make: impl Fn(&ThrottleConfig) -> Throttle) {
    let mut c = small();
    c.mode = crate::config::GlobalMode::Report;
    let t = make(&c);
    for _ in 0..10 {
        assert!(passed(fail(&t, "heidi@example.com", "198.51.100.70").await));
    }
    let reported = t
        .metrics
        .throttled
        .get_or_create(&ThrottledLabels {
            kind: "login",
            scope: "identifier_network",
            mode: "report",
        })
        .get();
    assert!(reported >= 1, "{reported}");
}

async fn all_scenarios(make: impl Fn(&ThrottleConfig) -> Throttle) {
    let t = make(&small());
    pair_limit_refuses_that_pair_only(&t).await;
    identifier_limit_spares_networks_the_owner_signed_in_from(&t).await;
    success_resets_the_identifier(&t).await;
    answers_that_are_not_failures_are_counted_back(&t).await;
    attempts_in_flight_at_once_cannot_pass_the_limit(Arc::new(make(&small()))).await;
    network_limit_and_rate_limit(&make).await;
    report_mode_lets_everything_through(&make).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_applies_every_rule() {
    all_scenarios(throttle).await;
}

#[test]
fn memory_store_stays_bounded_whatever_clients_send() {
    let store = MemoryStore::new(1000);
    let limits = Limits {
        pair: rules::Limit {
            threshold: 3,
            window: 60_000_000,
            base: 1_000_000,
            cap: 2_000_000,
        },
        identifier: rules::Limit {
            threshold: 6,
            window: 60_000_000,
            base: 1_000_000,
            cap: 2_000_000,
        },
        network: rules::Limit {
            threshold: 1_000_000,
            window: 60_000_000,
            base: 1_000_000,
            cap: 2_000_000,
        },
        rate: None,
        remember: 0,
    };
    for i in 0..50_000u32 {
        let q = Query {
            pair: Some(super::key(b"pair", b"login", &i.to_be_bytes(), b"n")),
            identifier: Some(super::key(b"identifier", b"login", &i.to_be_bytes(), b"")),
            network: super::key(b"network", b"login", b"", b"n"),
            known: None,
            rate: None,
            count_network: true,
        };
        let _ = block_on(store.attempt(&q, &limits));
    }
    let held = store.len();
    assert!(held <= 1000, "{held} entries held");
}

/// Runs a ready future (the in-process store never waits).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

// ---- a real Redis ----

/// A `redis-server` of its own on a free port, without persistence; killed on drop.
struct RedisServer {
    port: u16,
    child: Option<Child>,
    args: Vec<String>,
}

impl RedisServer {
    /// On a free port; another test's server can take it before Redis binds it (Redis then
    /// exits), so such a port is given up for another.
    fn start(extra: &[&str]) -> RedisServer {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .expect("free port")
                .local_addr()
                .expect("addr")
                .port();
            let mut server = RedisServer {
                port,
                child: None,
                args: extra.iter().map(|s| (*s).to_owned()).collect(),
            };
            if server.try_run() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server found no free port of its own in 5 tries");
    }

    fn run(&mut self) {
        assert!(
            self.try_run(),
            "redis-server did not start on {}",
            self.port
        );
    }

    /// Starts Redis on `self.port`: whether it listens there and is still running (a Redis
    /// that could not bind exits at once, while something else may answer the port).
    fn try_run(&mut self) -> bool {
        let port = self.port.to_string();
        let tls = self.args.iter().any(|a| a == "--tls-port");
        let args: Vec<&str> = if tls {
            // `--tls-port 0` in the arguments stands for the free port; plain TCP off.
            let mut v = vec!["--port", "0", "--tls-port", port.as_str()];
            let mut rest = self.args.iter().map(String::as_str);
            while let Some(a) = rest.next() {
                if a == "--tls-port" {
                    rest.next();
                } else {
                    v.push(a);
                }
            }
            v
        } else {
            let mut v = vec!["--port", port.as_str()];
            v.extend(self.args.iter().map(String::as_str));
            v
        };
        let child = Command::new(redis_server())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                std::thread::sleep(Duration::from_millis(100));
                return self
                    .child
                    .as_mut()
                    .is_some_and(|c| matches!(c.try_wait(), Ok(None)));
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

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server() -> PathBuf {
    std::env::var_os("REDIS_SERVER").map_or_else(|| PathBuf::from("redis-server"), PathBuf::from)
}

fn with_redis(c: &ThrottleConfig, url: &str, fail: FailMode) -> ThrottleConfig {
    let mut c = c.clone();
    c.redis = Some(RedisConfig {
        url: url.parse().expect("url"),
        password_file: None,
        ca_file: None,
        fail,
        timeout: HumanDuration(Duration::from_millis(300)),
        key_prefix: "kratos-gate-test".to_owned(),
    });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_applies_every_rule() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    // Each scenario on a fresh database state: flush between throttles is not needed, the
    // identifiers differ; a distinct prefix per throttle keeps the rate-limit scenario apart.
    let counter = std::sync::atomic::AtomicU32::new(0);
    all_scenarios(|c| {
        let mut c = with_redis(c, &url, FailMode::Open);
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(r) = c.redis.as_mut() {
            r.key_prefix = format!("t{n}");
        }
        let t = throttle(&c);
        assert_eq!(t.store_name(), "redis");
        t
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateways_sharing_redis_allow_the_limit_once_in_total() {
    let server = RedisServer::start(&[]);
    let c = with_redis(&small(), &server.url(), FailMode::Open);
    let gateways: Vec<Arc<Throttle>> = (0..3).map(|_| Arc::new(throttle(&c))).collect();
    // Round robin, one after another.
    let mut through = 0;
    for i in 0..30 {
        through += usize::from(passed(
            fail(&gateways[i % 3], "ivan@example.com", "198.51.100.80").await,
        ));
    }
    assert_eq!(through, 3, "the pair limit, not three times it");
    // All at once, from every gateway.
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let t = Arc::clone(&gateways[i % 3]);
            tokio::spawn(async move { passed(fail(&t, "judy@example.com", "198.51.100.81").await) })
        })
        .collect();
    let mut through = 0;
    for task in tasks {
        through += usize::from(task.await.expect("task"));
    }
    assert_eq!(through, 3);
    // The identifier limit across networks, spread over the gateways.
    let mut through = 0;
    for i in 0..30 {
        let net = format!("10.1.{}.1", i / 2);
        through += usize::from(passed(
            fail(&gateways[i % 3], "mallory@example.com", &net).await,
        ));
    }
    assert_eq!(through, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_by_default_and_recovers_when_it_returns() {
    let mut server = RedisServer::start(&[]);
    let t = throttle(&with_redis(&small(), &server.url(), FailMode::Open));
    for _ in 0..2 {
        assert!(passed(fail(&t, "oscar@example.com", "198.51.100.90").await));
    }
    server.kill();
    let errors = || {
        t.metrics
            .store_errors
            .get_or_create(&OperationLabels { operation: "check" })
            .get()
    };
    let before = errors();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        assert!(passed(fail(&t, "oscar@example.com", "198.51.100.90").await));
    }
    assert!(errors() >= before + 10, "every unanswered call is counted");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "each call waits at most the timeout"
    );
    // Back (empty: no persistence): counting starts again.
    server.run();
    let mut recovered = false;
    for _ in 0..100 {
        let s = login("peggy@example.com", "198.51.100.91");
        if let Verdict::Pass(p) = t.check(&s, "t").await {
            if p.counted {
                t.settle(&s, p, Outcome::Failure, "t").await;
                recovered = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the store is used again once Redis answers");
    for _ in 0..2 {
        assert!(passed(fail(&t, "peggy@example.com", "198.51.100.91").await));
    }
    assert_eq!(
        scope(fail(&t, "peggy@example.com", "198.51.100.91").await),
        Some(Scope::IdentifierAndNetwork)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_with_fail_closed_refuses_until_it_returns() {
    let mut server = RedisServer::start(&[]);
    let t = throttle(&with_redis(&small(), &server.url(), FailMode::Closed));
    assert!(passed(
        fail(&t, "rupert@example.com", "198.51.100.95").await
    ));
    server.kill();
    assert_eq!(
        fail(&t, "rupert@example.com", "198.51.100.95").await,
        Verdict::Unavailable
    );
    server.run();
    let mut back = false;
    for _ in 0..100 {
        if passed(fail(&t, "rupert@example.com", "198.51.100.95").await) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_auth_from_the_url_or_a_password_file() {
    let server = RedisServer::start(&["--requirepass", "s3cret-pw"]);
    let port = server.port;
    let good = with_redis(
        &small(),
        &format!("redis://:s3cret-pw@127.0.0.1:{port}"),
        FailMode::Closed,
    );
    assert!(passed(
        fail(&throttle(&good), "sybil@example.com", "198.51.100.96").await
    ));
    let wrong = with_redis(
        &small(),
        &format!("redis://:nope@127.0.0.1:{port}"),
        FailMode::Closed,
    );
    assert_eq!(
        fail(&throttle(&wrong), "sybil@example.com", "198.51.100.96").await,
        Verdict::Unavailable
    );
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("redis-password");
    std::fs::write(&file, "s3cret-pw\n").expect("write");
    let mut from_file = with_redis(
        &small(),
        &format!("redis://127.0.0.1:{port}"),
        FailMode::Closed,
    );
    if let Some(r) = from_file.redis.as_mut() {
        r.password_file = Some(file);
    }
    assert!(passed(
        fail(&throttle(&from_file), "sybil@example.com", "198.51.100.96").await
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_with_a_private_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().expect("dir");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("sign");
    let file = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let (crt, srv_key, ca_pem) = (
        file("srv.crt", cert.pem()),
        file("srv.key", key.serialize_pem()),
        file("ca.crt", ca.pem()),
    );
    let server = RedisServer::start(&[
        "--tls-port",
        "0",
        "--tls-cert-file",
        &crt,
        "--tls-key-file",
        &srv_key,
        "--tls-ca-cert-file",
        &ca_pem,
        "--tls-auth-clients",
        "no",
    ]);
    // The free port serves TLS only: plain --port is moved to --tls-port.
    let url = format!("rediss://localhost:{}", server.port);
    let mut c = with_redis(&small(), &url, FailMode::Closed);
    if let Some(r) = c.redis.as_mut() {
        r.ca_file = Some(PathBuf::from(&ca_pem));
    }
    let t = throttle(&c);
    for _ in 0..3 {
        assert!(passed(fail(&t, "trent@example.com", "198.51.100.97").await));
    }
    assert_eq!(
        scope(fail(&t, "trent@example.com", "198.51.100.97").await),
        Some(Scope::IdentifierAndNetwork),
        "counted over TLS"
    );
    // Without the CA the server is not trusted: fail closed answers Unavailable.
    let untrusted = throttle(&with_redis(&small(), &url, FailMode::Closed));
    assert_eq!(
        fail(&untrusted, "trent@example.com", "198.51.100.97").await,
        Verdict::Unavailable
    );
}

#[tokio::test]
async fn a_tls_url_builds_a_client_on_the_ring_provider() {
    let c = with_redis(
        &small(),
        "rediss://user:pw@redis.example:6380/1",
        FailMode::Open,
    );
    let t = throttle(&c);
    assert_eq!(t.store_name(), "redis");
}

/// The Lua scripts and the in-process store apply the same rules: one pseudo-random sequence
/// of attempts and outcomes over a few identifiers and networks gets the same verdict, step
/// by step, from both (well within the backoff, so time does not decide).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_in_process_stores_agree_step_by_step() {
    let server = RedisServer::start(&[]);
    let mut c = small();
    c.failures.per_network = 6;
    c.rate_limit.submissions = 15;
    c.rate_limit.per = HumanDuration(Duration::from_secs(600));
    let memory = throttle(&c);
    let redis = throttle(&with_redis(&c, &server.url(), FailMode::Closed));
    let who = ["a@example.com", "b@example.com", "c@example.com"];
    let from = ["198.51.100.1", "198.51.100.2", "2001:db8::1"];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut seen = std::collections::HashSet::new();
    for step in 0..300 {
        let (w, f, o) = (next(3), next(3), next(10));
        let s = Submission {
            flow: if next(5) == 0 {
                Flow::Registration
            } else {
                Flow::Login
            },
            identifier: Some(who[w as usize]),
            client: ip(from[f as usize]),
            tries_secret: true,
        };
        let outcome = match o {
            0 => Outcome::Success,
            1..=2 => Outcome::Other,
            _ => Outcome::Failure,
        };
        let (vm, vr) = (memory.check(&s, "m").await, redis.check(&s, "r").await);
        let shape = |v: Verdict| match v {
            Verdict::Pass(_) => None,
            Verdict::Throttled { scope, .. } => Some(scope),
            Verdict::Unavailable => panic!("redis unavailable at step {step}"),
        };
        assert_eq!(shape(vm), shape(vr), "step {step}: {s:?} {outcome:?}");
        seen.insert(shape(vm));
        if let (Verdict::Pass(pm), Verdict::Pass(pr)) = (vm, vr) {
            memory.settle(&s, pm, outcome, "m").await;
            redis.settle(&s, pr, outcome, "r").await;
        }
    }
    // The sequence reaches every limit.
    for scope in [
        None,
        Some(Scope::IdentifierAndNetwork),
        Some(Scope::Identifier),
        Some(Scope::Network),
        Some(Scope::RateLimit),
    ] {
        assert!(seen.contains(&scope), "{scope:?} never decided: {seen:?}");
    }
}
