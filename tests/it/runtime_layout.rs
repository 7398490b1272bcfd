//! The per-core layout (`server.runtime: per_core`): one single-threaded runtime per core,
//! each accepting on its own socket of the same port. Connections land on every worker and
//! are all answered, on both proxy listeners; shutdown stops the workers and closes every
//! socket of the port. (The whole suite runs in both layouts: `.ci/run`.)

use crate::support;

use std::time::Duration;

use kratos_gate::config::RuntimeLayout;
use support::client;
use support::fake_kratos::{FakeKratos, Reply};
use support::gateway::{blocklist_of, start_gateway_with, TestGateway};
use support::metrics::metric;
use support::raw;

const LISTED: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";

/// Threads of this process named like the gateway's worker runtimes.
fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("kg-worker-"))
        .count()
}

/// A gateway in the per-core layout in front of `fake`.
async fn start_per_core(fake: &FakeKratos) -> TestGateway {
    start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
        |c| c.server.runtime = RuntimeLayout::PerCore,
    )
    .await
}

#[tokio::test]
async fn per_core_workers_share_the_port_answer_every_connection_and_stop_on_shutdown() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/layout", Reply::text(200, "ok"));
    fake.on_admin("ANY", "/admin/layout", Reply::text(200, "admin ok"));
    let gw = start_per_core(&fake).await;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(worker_threads() >= cores, "{} workers", worker_threads());

    // A fresh connection per request: the kernel spreads them over the workers' sockets.
    let mut answers = Vec::new();
    for i in 0..32 {
        let url = if i % 4 == 0 {
            gw.admin_url("/admin/layout")
        } else {
            gw.public_url("/layout")
        };
        answers.push(tokio::spawn(async move { client::get(&url).await }));
    }
    for a in answers {
        let reply = tokio::time::timeout(Duration::from_secs(10), a)
            .await
            .expect("answered in time")
            .expect("task");
        assert_eq!(reply.status, 200);
    }

    let (public_url, admin_url) = (gw.public_url("/layout"), gw.admin_url("/admin/layout"));
    gw.shutdown().await;
    for url in [public_url, admin_url] {
        assert!(
            !answered_by_this_gateway(&url).await,
            "{url} still answered after shutdown"
        );
    }
}

/// Whether `url` still reaches this test's gateway. Once the gateway is shut down its port is
/// free, and a test running in parallel may be given it: a connection there alone proves
/// nothing, only this test's fake route answering through it does.
async fn answered_by_this_gateway(url: &str) -> bool {
    use http_body_util::{BodyExt, Full};
    let req = client::request(http::Method::GET, url)
        .body(Full::new(bytes::Bytes::new()))
        .expect("request");
    let Ok(Ok(resp)) =
        tokio::time::timeout(Duration::from_secs(5), client::http1().request(req)).await
    else {
        return false;
    };
    let ok = resp.status() == 200;
    let body = resp.into_body().collect().await.map(|b| b.to_bytes());
    ok && body.is_ok_and(|b| b.as_ref() == b"ok" || b.as_ref() == b"admin ok")
}

/// A second gateway started on the port of a running one (a stale instance left behind) is
/// refused, as in the shared layout: SO_REUSEPORT must not let it take half the connections
/// with whatever list it holds.
#[tokio::test]
async fn a_second_per_core_gateway_on_a_port_in_use_is_refused() {
    let fake = FakeKratos::start().await;
    let per_core = |c: &mut kratos_gate::config::Config| c.server.runtime = RuntimeLayout::PerCore;
    let first = start_gateway_with(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[LISTED]),
        per_core,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    support::gateway::write_file(&dir.path().join("blocklist.yaml"), &blocklist_of(&[]));
    let path = dir.path().join("gateway.yaml");
    let text = support::gateway::config_text(&fake.public_url(), &fake.admin_url());
    let mut config = kratos_gate::config::Config::from_yaml(&text, &path).expect("config");
    per_core(&mut config);
    config.listen.public.address = first.public;
    match kratos_gate::start(config).await {
        Err(kratos_gate::StartError::Bind { listener, addr, .. }) => {
            assert_eq!((listener, addr), ("public", first.public));
        }
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a second gateway started on {}", first.public),
    }
    first.shutdown().await;
}

/// The kernel spreads connections over the workers' sockets by a hash of their ports: a few
/// long-lived connections (an ingress's keep-alive pool) often land 13 to 19, leaving one core
/// to queue while another idles. Whichever worker accepts, every worker ends up with the
/// same share, shown per worker in `kratos_gate_open_connections`; a closed connection
/// leaves its worker's count.
#[tokio::test]
async fn per_core_workers_get_an_even_share_of_long_lived_connections() {
    let fake = FakeKratos::start().await;
    fake.on_public("ANY", "/layout", Reply::text(200, "ok"));
    let gw = start_per_core(&fake).await;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let open = |metrics: &str| -> Vec<f64> {
        (0..workers)
            .map(|w| {
                metric(
                    metrics,
                    &format!("kratos_gate_open_connections{{listener=\"public\",worker=\"{w}\"}} "),
                )
            })
            .collect()
    };
    let each = 16;
    let mut conns = Vec::new();
    // One at a time, each answered before the next connects: every placement sees the
    // counts the earlier ones left.
    for _ in 0..each * workers {
        let (reply, conn) =
            raw::exchange(gw.public, "GET /layout HTTP/1.1\r\nHost: gateway\r\n\r\n").await;
        assert_eq!(reply.status, 200);
        conns.push(conn);
    }
    let m = gw.gateway().metrics().encode();
    assert_eq!(open(&m), vec![each as f64; workers], "{m}");

    // Closed connections leave the counts (each worker notices its own in its own time).
    conns.clear();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = gw.gateway().metrics().encode();
        if open(&m) == vec![0.0; workers] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.shutdown().await;
}
