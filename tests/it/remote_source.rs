//! `blocklist.url`: a list published on a real HTTP server (nginx, ETags) or a real
//! S3-compatible store (moto in server mode) reaches the gateway by polling with conditional
//! requests; an unchanged list costs a 304 and no parse; an unreachable source or a broken
//! list keeps the last good list (logged, counted, `/readyz` stays ready); start-up without
//! a list fails unless `blocklist.require_on_start: false`; `blocklist.cache_path` carries
//! the last good list over a restart during an outage; three gateway processes polling one
//! object all enforce a new list within 2 s.
//!
//! nginx (Debian `nginx`) and `moto_server` (`python3 -m pip install 'moto[server]'`) must be
//! installed: the tests fail without them (CI installs both, see `.ci/run`), unless
//! `KRATOS_GATE_TEST_SKIP_REMOTE=1` says to skip them.

use crate::support;
use crate::support::ports::{free_port, free_ports};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use object_store::ObjectStoreExt;

use kratos_gate::config::Config;
use support::enforcement::{send, Person};
use support::fake_kratos::FakeKratos;
use support::gateway::{start_gateway_with, TestGateway};
use support::metrics::metric;

/// Set to 1 to skip these tests on a machine without nginx or moto.
const SKIP: &str = "KRATOS_GATE_TEST_SKIP_REMOTE";

fn skipped() -> bool {
    if std::env::var(SKIP).is_ok_and(|v| v == "1") {
        eprintln!("skipped: {SKIP}=1");
        return true;
    }
    false
}

fn spawn_or_explain(cmd: &mut Command, what: &str, install: &str) -> Child {
    cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot run {what} ({e}): install it ({install}), or set {SKIP}=1 to skip the remote source tests")
    })
}

async fn wait_for_port(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start-up with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} not listening within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// nginx serving a temporary folder on a free port, with its pid file, logs and temporary
/// paths in a folder of its own, in the foreground as the current user.
struct Nginx {
    child: Child,
    root: tempfile::TempDir,
    conf: PathBuf,
    port: u16,
}

impl Nginx {
    async fn start() -> Nginx {
        Nginx::start_with_tls(None).await
    }

    /// With `tls` (certificate chain and key files), nginx serves HTTPS.
    async fn start_with_tls(tls: Option<(&Path, &Path)>) -> Nginx {
        // A free port can be taken by another test's server before nginx binds it: then
        // nginx exits and another port is tried.
        for _ in 0..5 {
            let root = tempfile::tempdir().expect("root");
            let port = free_port();
            let conf = Nginx::write_conf(root.path(), port, tls);
            let mut child = Nginx::spawn(&conf);
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                &mut child,
                "nginx",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            if matches!(child.try_wait(), Ok(None)) {
                return Nginx {
                    child,
                    root,
                    conf,
                    port,
                };
            }
        }
        panic!("nginx found no free port of its own in 5 tries");
    }

    fn write_conf(dir: &Path, port: u16, tls: Option<(&Path, &Path)>) -> PathBuf {
        let run = dir.join("run");
        let www = dir.join("www");
        std::fs::create_dir_all(&run).expect("run dir");
        std::fs::create_dir_all(&www).expect("www dir");
        let r = run.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\npid {r}/nginx.pid;\nerror_log {r}/error.log info;\n\
events {{ worker_connections 64; }}\n\
http {{\n  access_log {r}/access.log;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
  fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n\
  server {{\n    listen 127.0.0.1:{port}{};\n    root {};\n    etag on;\n  }}\n}}\n",
            match tls {
                Some((cert, key)) => format!(
                    " ssl;\n    ssl_certificate {};\n    ssl_certificate_key {}",
                    cert.display(),
                    key.display()
                ),
                None => String::new(),
            },
            www.display()
        );
        let path = run.join("nginx.conf");
        std::fs::write(&path, conf).expect("nginx.conf");
        path
    }

    fn spawn(conf: &Path) -> Child {
        spawn_or_explain(
            Command::new("nginx")
                .arg("-c")
                .arg(conf)
                .arg("-e")
                .arg(conf.with_file_name("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "nginx",
            "apt-get install nginx",
        )
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Publishes a file the way a deploy does: written aside, renamed into place.
    fn publish(&self, name: &str, text: &str) {
        let www = self.root.path().join("www");
        let tmp = www.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, www.join(name)).expect("rename");
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn restart(&mut self) {
        self.stop();
        self.child = Nginx::spawn(&self.conf);
        wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            &mut self.child,
            "nginx",
        )
        .await;
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// moto's S3-compatible server on a free port.
struct Moto {
    child: Child,
    endpoint: String,
}

const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_REGION", "us-east-1"),
    ("AWS_ALLOW_HTTP", "true"),
];

impl Moto {
    async fn start() -> Moto {
        // A free port can be taken by another test's server before moto binds it: the
        // server listening there must answer as S3 does, else another port is tried.
        for _ in 0..5 {
            let port = free_port();
            let mut child = spawn_or_explain(
                Command::new("moto_server")
                    .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
                "moto_server",
                "python3 -m pip install 'moto[server]'",
            );
            wait_for_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                &mut child,
                "moto_server",
            )
            .await;
            let endpoint = format!("http://127.0.0.1:{port}");
            let reply = support::client::send(
                &support::client::http1(),
                support::client::request(Method::GET, &format!("{endpoint}/"))
                    .body(Default::default())
                    .expect("request"),
            )
            .await;
            if reply.status == 200 && reply.text().contains("ListAllMyBucketsResult") {
                return Moto { child, endpoint };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server found no free port of its own in 5 tries");
    }

    /// A client of `bucket` (created here), signing as the gateway does.
    async fn bucket(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let reply = support::client::send(
            &support::client::http1(),
            support::client::request(Method::PUT, &format!("{}/{bucket}", self.endpoint))
                .body(Default::default())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, 200, "create bucket: {}", reply.text());
        let mut builder = object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(bucket);
        for (key, value) in AWS_ENV {
            builder = builder.with_config(key.to_ascii_lowercase().parse().expect("key"), value);
        }
        builder.build().expect("s3 client")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn put(store: &object_store::aws::AmazonS3, key: &str, text: &str) {
    store
        .put(
            &object_store::path::Path::from(key),
            text.as_bytes().to_vec().into(),
        )
        .await
        .expect("put");
}

fn list_of(people: &[&Person]) -> String {
    let mut s = String::from("identities:\n");
    for p in people {
        s.push_str(&format!("  - {}\n", p.identity));
    }
    s
}

async fn whoami_status(public: &str, p: &Person) -> u16 {
    send(
        Method::GET,
        &format!("{public}/sessions/whoami"),
        &[("x-session-token", p.token.as_str())],
        "",
    )
    .await
    .status
    .as_u16()
}

/// Waits until whoami of `p` answers `status` at every gateway; the time it took.
async fn until_whoami(publics: &[String], p: &Person, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    let mut pending: Vec<&String> = publics.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for url in pending {
            if whoami_status(url, p).await != status {
                still.push(url);
            }
        }
        pending = still;
        assert!(
            pending.is_empty() || started.elapsed() < within,
            "whoami of {} not {status} within {within:?} at {pending:?}",
            p.identity
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    started.elapsed()
}

async fn ops_get(gw: &TestGateway, path: &str) -> support::client::Reply {
    support::client::get(&gw.ops_url(path)).await
}

async fn metrics_of(gw: &TestGateway) -> String {
    ops_get(gw, "/metrics").await.text()
}

fn remote(c: &mut Config, url: &str) {
    c.blocklist.path = PathBuf::new();
    c.blocklist.url = Some(url.parse().expect("url"));
    c.blocklist.poll_interval = kratos_gate::config::HumanDuration(Duration::from_millis(200));
}

/// A fake Kratos knowing `people`'s sessions.
async fn kratos_with(people: &[&Person]) -> FakeKratos {
    let fake = FakeKratos::start().await;
    for p in people {
        fake.add_session(p.spec());
    }
    fake
}

#[tokio::test]
async fn a_list_published_over_http_reaches_the_gateway_and_an_unchanged_one_costs_a_304() {
    if skipped() {
        return;
    }
    let (alice, bob) = (Person::new("alice"), Person::new("bob"));
    let fake = kratos_with(&[&alice, &bob]).await;
    let nginx = Nginx::start().await;
    nginx.publish("list.yaml", &list_of(&[&alice]));
    let url = nginx.url("list.yaml");
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        remote(c, &url)
    })
    .await;
    let publics = vec![gw.public_url("")];
    assert_eq!(whoami_status(&publics[0], &alice).await, 401);
    assert_eq!(whoami_status(&publics[0], &bob).await, 200);

    // Unchanged: polls answered 304, nothing downloaded or parsed.
    let before = metrics_of(&gw).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let after = metrics_of(&gw).await;
    let m = |text: &str, series: &str| metric(text, series);
    let not_modified = r#"kratos_gate_blocklist_fetches_total{result="not_modified"}"#;
    let downloaded = r#"kratos_gate_blocklist_fetches_total{result="downloaded"}"#;
    let applied = r#"kratos_gate_blocklist_reloads_total{result="success"}"#;
    assert!(
        m(&after, not_modified) >= m(&before, not_modified) + 3.0,
        "{after}"
    );
    assert_eq!(m(&after, downloaded), m(&before, downloaded), "{after}");
    assert_eq!(m(&after, applied), m(&before, applied), "{after}");
    assert_eq!(
        m(&after, "kratos_gate_blocklist_fetched_bytes_total"),
        m(&before, "kratos_gate_blocklist_fetched_bytes_total")
    );
    let access = std::fs::read_to_string(nginx.root.path().join("run/access.log")).expect("log");
    assert!(access.contains("\" 304 "), "{access}");

    // A new list: bob is refused, alice no longer listed (her session was revoked when she
    // was listed, so whoami stays 401 at Kratos itself).
    nginx.publish("list.yaml", &list_of(&[&bob]));
    until_whoami(&publics, &bob, 401, Duration::from_secs(2)).await;
    assert!(
        gw.wait_for_listed(&alice.id(), false, Duration::from_secs(2))
            .await
    );
    let status = ops_get(&gw, "/blocklist").await.json();
    assert_eq!(status["source"], url.as_str(), "{status}");
    gw.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_source_or_a_broken_list_keeps_the_last_good_list() {
    if skipped() {
        return;
    }
    let (log, _guard) = support::logs::capture();
    let alice = Person::new("alice");
    let fake = kratos_with(&[&alice]).await;
    let mut nginx = Nginx::start().await;
    nginx.publish("list.yaml", &list_of(&[&alice]));
    let url = nginx.url("list.yaml");
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        remote(c, &url)
    })
    .await;
    let public = gw.public_url("");
    assert_eq!(whoami_status(&public, &alice).await, 401);

    // The source goes down: the list stays, errors are counted, the gateway stays ready.
    nginx.stop();
    let errors = r#"kratos_gate_blocklist_fetches_total{result="error"}"#;
    let failures = r#"kratos_gate_blocklist_reloads_total{result="failure"}"#;
    let before = metrics_of(&gw).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = metrics_of(&gw).await;
    assert!(
        metric(&after, errors) >= metric(&before, errors) + 2.0,
        "{after}"
    );
    assert!(
        metric(&after, failures) >= metric(&before, failures) + 2.0,
        "{after}"
    );
    assert_eq!(whoami_status(&public, &alice).await, 401);
    assert_eq!(ops_get(&gw, "/readyz").await.status, 200);
    let status = ops_get(&gw, "/blocklist").await.json();
    let last_error = status["last_error"].as_str().unwrap_or_default().to_owned();
    assert!(last_error.contains(&url), "{status}");

    // Back with a broken list: the last good list stays; the error names the position.
    nginx.publish(
        "list.yaml",
        &format!("identities:\n  - {}\n  - not-an-id\n", alice.identity),
    );
    nginx.restart().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let position = format!("{url}:3:");
    loop {
        let status = ops_get(&gw, "/blocklist").await.json();
        if status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&position))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no positioned error: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(whoami_status(&public, &alice).await, 401);
    assert_eq!(ops_get(&gw, "/readyz").await.status, 200);
    assert!(log.text().contains(&position), "{}", log.text());

    // Fixed: the new list is in force, the error cleared.
    nginx.publish("list.yaml", "identities: []\n");
    assert!(
        gw.wait_for_listed(&alice.id(), false, Duration::from_secs(2))
            .await
    );
    let status = ops_get(&gw, "/blocklist").await.json();
    assert!(status["last_error"].is_null(), "{status}");
    gw.shutdown().await;
}

#[tokio::test]
async fn start_up_without_a_list_fails_or_starts_not_ready_and_the_cache_bridges_an_outage() {
    if skipped() {
        return;
    }
    let alice = Person::new("alice");
    let fake = kratos_with(&[&alice]).await;
    let mut nginx = Nginx::start().await;
    let url = nginx.url("list.yaml");
    let state = tempfile::tempdir().expect("state");
    let cache = state.path().join("cache/list.yaml");

    // Nothing published yet (404) and no cache: start-up fails, naming the source and the way out.
    let dir = tempfile::tempdir().expect("dir");
    let config_path = dir.path().join("gateway.yaml");
    let text = support::gateway::config_text(&fake.public_url(), &fake.admin_url());
    let mut config = Config::from_yaml(&text, &config_path).expect("config");
    remote(&mut config, &url);
    let err = match kratos_gate::start(config.clone()).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started without a list"),
    };
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("require_on_start"), "{err}");

    // require_on_start: false starts, not ready, and becomes ready with the first list.
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        remote(c, &url);
        c.blocklist.require_on_start = false;
        c.blocklist.cache_path = Some(cache.clone());
    })
    .await;
    assert_eq!(ops_get(&gw, "/readyz").await.status, 503);
    nginx.publish("list.yaml", &list_of(&[&alice]));
    until_whoami(&[gw.public_url("")], &alice, 401, Duration::from_secs(2)).await;
    assert_eq!(ops_get(&gw, "/readyz").await.status, 200);
    // The cache holds the list in force.
    let deadline = Instant::now() + Duration::from_secs(2);
    while std::fs::read_to_string(&cache).ok().as_deref() != Some(list_of(&[&alice]).as_str()) {
        assert!(Instant::now() < deadline, "cache not written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;

    // A restart during an outage starts from the cache, ready, enforcing.
    nginx.stop();
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |c| {
        remote(c, &url);
        c.blocklist.cache_path = Some(cache.clone());
    })
    .await;
    assert_eq!(ops_get(&gw, "/readyz").await.status, 200);
    assert_eq!(whoami_status(&gw.public_url(""), &alice).await, 401);
    gw.shutdown().await;
}

/// A gateway process polling a moto object, with the AWS settings in its environment.
struct GatewayProcess {
    child: Child,
    public: String,
    ops: String,
    _dir: tempfile::TempDir,
}

impl GatewayProcess {
    async fn start(fake: &FakeKratos, moto: &Moto, url: &str) -> GatewayProcess {
        let mut env: Vec<(String, String)> = AWS_ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("AWS_ENDPOINT_URL".to_owned(), moto.endpoint.clone()));
        GatewayProcess::start_with_env(fake, url, &env)
            .await
            .unwrap_or_else(|(status, log)| panic!("kratos-gate exited with {status}:\n{log}"))
    }

    /// Starts the gateway with `env` added; `Err` with its exit status and log when it exits
    /// at start-up.
    async fn start_with_env(
        fake: &FakeKratos,
        url: &str,
        env: &[(String, String)],
    ) -> Result<GatewayProcess, (std::process::ExitStatus, String)> {
        let dir = tempfile::tempdir().expect("dir");
        let [public, ops] = free_ports();
        let config = format!(
            "listen:\n  public: 127.0.0.1:{public}\n  ops: 127.0.0.1:{ops}\n\
upstream:\n  public: {}\n  admin: {}\n  lookup_timeout: 2s\n\
blocklist:\n  url: {url}\n",
            fake.public_url(),
            fake.admin_url()
        );
        let path = dir.path().join("gateway.yaml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kratos-gate"));
        cmd.arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (key, _) in std::env::vars() {
            if key.starts_with("KRATOS_GATE_") {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("spawn kratos-gate");
        let ops_url = format!("http://127.0.0.1:{ops}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let err =
                    std::fs::read_to_string(dir.path().join("stderr.log")).unwrap_or_default();
                return Err((status, err));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", ops))
                .await
                .is_ok()
                && support::client::get(&format!("{ops_url}/readyz"))
                    .await
                    .status
                    == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "gateway not ready within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(GatewayProcess {
            child,
            public: format!("http://127.0.0.1:{public}"),
            ops: ops_url,
            _dir: dir,
        })
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_gateway_processes_polling_one_s3_object_enforce_a_new_list_within_2_s() {
    if skipped() {
        return;
    }
    let people: Vec<Person> = (0..6).map(|i| Person::new(&format!("p{i}"))).collect();
    let fake = kratos_with(&people.iter().collect::<Vec<_>>()).await;
    let moto = Moto::start().await;
    let store = moto.bucket("lists").await;
    put(&store, "kratos/list.yaml", "identities: []\n").await;
    let url = "s3://lists/kratos/list.yaml";
    let mut gateways = Vec::new();
    for _ in 0..3 {
        gateways.push(GatewayProcess::start(&fake, &moto, url).await);
    }
    let publics: Vec<String> = gateways.iter().map(|g| g.public.clone()).collect();
    for p in &people {
        assert_eq!(whoami_status(&publics[0], p).await, 200);
    }
    let mut listed = Vec::new();
    let mut took = Vec::new();
    for p in &people {
        listed.push(p);
        put(&store, "kratos/list.yaml", &list_of(&listed)).await;
        took.push(until_whoami(&publics, p, 401, Duration::from_secs(2)).await);
    }
    eprintln!("propagation to 3 processes, per edit: {took:?}");
    // Unchanged polls are 304s at every replica. Within a few polls: moto may answer the
    // first poll after an upload with a new ETag for the same body, which is downloaded once
    // to check it.
    for g in &gateways {
        let deadline = Instant::now() + Duration::from_secs(6);
        loop {
            let text = support::client::get(&format!("{}/metrics", g.ops))
                .await
                .text();
            let not_modified = metric(
                &text,
                r#"kratos_gate_blocklist_fetches_total{result="not_modified"}"#,
            );
            if not_modified >= 1.0 {
                break;
            }
            assert!(Instant::now() < deadline, "{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A test CA and a certificate for `localhost` signed by it, as PEM files in `dir`: (CA,
/// chain, key).
fn tls_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("sign");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-chain.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).expect("ca");
    std::fs::write(&paths.1, format!("{}{}", leaf.pem(), ca.pem())).expect("chain");
    std::fs::write(&paths.2, key.serialize_pem()).expect("key");
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_source_is_fetched_when_its_certificate_is_trusted_and_refused_otherwise() {
    if skipped() {
        return;
    }
    let alice = Person::new("alice");
    let fake = kratos_with(&[&alice]).await;
    let pki = tempfile::tempdir().expect("pki");
    let (ca, chain, key) = tls_files(pki.path(), "server");
    let (other_ca, _, _) = tls_files(pki.path(), "other");
    let nginx = Nginx::start_with_tls(Some((&chain, &key))).await;
    nginx.publish("list.yaml", &list_of(&[&alice]));
    let url = format!("https://localhost:{}/list.yaml", nginx.port);
    // The system roots as rustls-native-certs reads them: here only SSL_CERT_FILE.
    let roots = |ca: &Path| vec![("SSL_CERT_FILE".to_owned(), ca.display().to_string())];

    let gw = GatewayProcess::start_with_env(&fake, &url, &roots(&ca))
        .await
        .unwrap_or_else(|(status, log)| panic!("exited with {status}:\n{log}"));
    assert_eq!(whoami_status(&gw.public, &alice).await, 401);
    drop(gw);

    // A certificate the roots do not vouch for: nothing fetched, start-up refused (exit 2).
    let (status, log) = match GatewayProcess::start_with_env(&fake, &url, &roots(&other_ca)).await {
        Err(failed) => failed,
        Ok(_) => panic!("started with an untrusted source"),
    };
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains(&url), "{log}");
    assert!(log.to_lowercase().contains("certificate"), "{log}");
}
