//! The ops listener: liveness, readiness and Prometheus metrics with the families operators
//! alert on, holding sensible values after some traffic.

mod support;

use support::metrics::samples;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use support::client::{self, request, send};
use support::fake_kratos::{FakeKratos, Reply};
use support::gateway::{blocklist_of, start_gateway};

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";

/// The series `name` with exactly these labels.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples(text)
        .into_iter()
        .find(|(n, l, _)| n == name && *l == want)
        .map(|(_, _, v)| v)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

#[tokio::test]
async fn healthz_answers_200() {
    let gw = start_gateway("http://127.0.0.1:9", "http://127.0.0.1:9", "").await;
    let r = client::get(&gw.ops_url("/healthz")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    // HEAD works for probes that use it.
    let r = send(
        &client::http1(),
        request(Method::HEAD, &gw.ops_url("/healthz"))
            .body(Full::new(Bytes::new()))
            .expect("req"),
    )
    .await;
    assert_eq!(r.status, 200);
    gw.shutdown().await;
}

#[tokio::test]
async fn readyz_answers_200_while_serving() {
    // Ready does not depend on Kratos: a probe failing with Kratos would take every gateway
    // out of the load balancer at once; clients get 502s instead.
    let gw = start_gateway(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9",
        &blocklist_of(&[A]),
    )
    .await;
    assert!(gw.gateway().is_ready());
    let r = client::get(&gw.ops_url("/readyz")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ready\n");
    gw.shutdown().await;
}

#[tokio::test]
async fn unknown_ops_path_is_404_and_other_methods_405() {
    let gw = start_gateway("http://127.0.0.1:9", "http://127.0.0.1:9", "").await;
    for path in ["/", "/metrics/", "/health", "/readyz/x", "/sessions/whoami"] {
        let r = client::get(&gw.ops_url(path)).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = client::post_json(&gw.ops_url("/metrics"), "{}").await;
    assert_eq!(r.status, 405);
    gw.shutdown().await;
}

#[tokio::test]
async fn metrics_report_traffic_upstream_latency_and_blocklist_state() {
    let started = unix_now();
    let fake = FakeKratos::start().await;
    fake.on_public("GET", "/ok", Reply::text(200, "ok"));
    fake.on_public(
        "GET",
        "/slowish",
        Reply::text(200, "ok").delay(Duration::from_millis(20)),
    );
    fake.on_public("GET", "/moved", Reply::empty(303).header("location", "/ok"));
    fake.on_public("GET", "/broken", Reply::text(500, "boom"));
    let gw = start_gateway(
        &fake.public_url(),
        &fake.admin_url(),
        &blocklist_of(&[A, B]),
    )
    .await;

    for _ in 0..3 {
        assert_eq!(client::get(&gw.public_url("/ok")).await.status, 200);
    }
    assert_eq!(client::get(&gw.public_url("/slowish")).await.status, 200);
    assert_eq!(client::get(&gw.public_url("/moved")).await.status, 303);
    assert_eq!(
        client::get(&gw.public_url("/no-such-route")).await.status,
        404
    );
    assert_eq!(client::get(&gw.public_url("/broken")).await.status, 500);
    assert_eq!(
        client::get(&gw.admin_url("/admin/health/alive"))
            .await
            .status,
        200
    );

    let r = client::get(&gw.ops_url("/metrics")).await;
    assert_eq!(r.status, 200);
    let ct = r.headers["content-type"].to_str().expect("text");
    assert!(
        ct.starts_with("text/plain") || ct.starts_with("application/openmetrics-text"),
        "{ct}"
    );
    let m = r.text();
    assert!(m.ends_with("# EOF\n"), "not a complete exposition: {m}");
    // (Labelled families without any series yet, such as the upstream errors, are left out
    // of the exposition, as Prometheus clients do; upstream_failures.rs covers those.)
    for family in [
        "kratos_gate_requests",
        "kratos_gate_upstream_duration_seconds",
        "kratos_gate_blocklist_entries",
        "kratos_gate_blocklist_reloads",
        "kratos_gate_blocklist_last_success_timestamp_seconds",
    ] {
        assert!(
            m.lines()
                .any(|l| l.starts_with(&format!("# TYPE {family} "))),
            "no TYPE line for {family}: {m}"
        );
    }

    // Requests by listener and status class.
    let requests = |listener: &str, status: &str| {
        metric(
            &m,
            "kratos_gate_requests_total",
            &[("listener", listener), ("status", status)],
        )
    };
    assert_eq!(requests("public", "2xx"), Some(4.0), "{m}");
    assert_eq!(requests("public", "3xx"), Some(1.0), "{m}");
    assert_eq!(requests("public", "4xx"), Some(1.0), "{m}");
    assert_eq!(requests("public", "5xx"), Some(1.0), "{m}");
    assert_eq!(requests("admin", "2xx"), Some(1.0), "{m}");

    // Upstream latency histogram: one observation per forwarded request, cumulative buckets.
    let public = [("listener", "public")];
    assert_eq!(
        metric(&m, "kratos_gate_upstream_duration_seconds_count", &public),
        Some(7.0),
        "{m}"
    );
    let sum = metric(&m, "kratos_gate_upstream_duration_seconds_sum", &public).expect("sum");
    assert!((0.02..5.0).contains(&sum), "sum {sum}");
    let mut buckets: Vec<(f64, f64)> = samples(&m)
        .into_iter()
        .filter(|(n, l, _)| {
            n == "kratos_gate_upstream_duration_seconds_bucket"
                && l.get("listener").map(String::as_str) == Some("public")
        })
        .map(|(_, l, v)| {
            let le = match l["le"].as_str() {
                "+Inf" => f64::INFINITY,
                x => x.parse().expect("le"),
            };
            (le, v)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 5, "{m}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "buckets not cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().copied(), Some((f64::INFINITY, 7.0)));
    // The 20 ms request is above the 10 ms bucket.
    let under_10ms = buckets
        .iter()
        .filter(|(le, _)| *le <= 0.01)
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    assert!(under_10ms <= 6.0, "{buckets:?}");
    assert_eq!(
        metric(
            &m,
            "kratos_gate_upstream_duration_seconds_count",
            &[("listener", "admin")]
        ),
        Some(1.0)
    );

    // Blocklist state.
    assert_eq!(
        metric(&m, "kratos_gate_blocklist_entries", &[]),
        Some(2.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            "kratos_gate_blocklist_reloads_total",
            &[("result", "success")]
        )
        .is_some_and(|v| v >= 1.0),
        "{m}"
    );
    let last = metric(
        &m,
        "kratos_gate_blocklist_last_success_timestamp_seconds",
        &[],
    )
    .expect("last success");
    assert!(
        last >= started.floor() - 1.0 && last <= unix_now() + 1.0,
        "last success {last}, test started {started}"
    );
    gw.shutdown().await;
}
