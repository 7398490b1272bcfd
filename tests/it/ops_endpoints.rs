//! The ops listener: liveness, readiness and Prometheus metrics with the families operators
//! alert on, holding sensible values after some traffic.

use crate::support;

use support::metrics::samples;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::Method;
use http_body_util::Full;

use support::client::{self, request, send};
use support::fake_kratos::{FakeKratos, Reply};
use support::gateway::{blocklist_of, replace_atomically, start_gateway};

const A: &str = "3f1c7f52-7e43-4a3e-9a8e-2c1d7b7f6a10";
const B: &str = "9b2e4c1a-0d5f-4c3b-8e7a-6f1d2c3b4a59";
const C: &str = "11111111-2222-4333-8444-555555555555";
const NOWHERE: &str = "http://127.0.0.1:9";

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
    for family in [
        "kratos_gate_requests",
        "kratos_gate_request_duration_seconds",
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
        metric(&m, "kratos_gate_blocklist_entries", &[("kind", "identity")]),
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

/// The gateway's own request durations: one observation per request, per listener.
#[tokio::test]
async fn request_duration_is_measured_per_listener() {
    let fake = FakeKratos::start().await;
    fake.on_public(
        "GET",
        "/slowish",
        Reply::text(200, "ok").delay(Duration::from_millis(30)),
    );
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), "").await;
    for _ in 0..2 {
        assert_eq!(client::get(&gw.public_url("/slowish")).await.status, 200);
    }
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    let public = [("listener", "public")];
    assert_eq!(
        metric(&m, "kratos_gate_request_duration_seconds_count", &public),
        Some(2.0),
        "{m}"
    );
    let sum = metric(&m, "kratos_gate_request_duration_seconds_sum", &public).expect("sum");
    assert!((0.06..5.0).contains(&sum), "sum {sum}");
    for listener in ["admin", "hooks"] {
        assert_eq!(
            metric(
                &m,
                "kratos_gate_request_duration_seconds_count",
                &[("listener", listener)]
            ),
            Some(0.0),
            "{listener}: {m}"
        );
    }
    gw.shutdown().await;
}

/// Every counter exists at zero for each label value the gateway knows before anything
/// happened, so that `increase()` sees the first event; and build and process metrics.
#[tokio::test]
async fn counters_are_precreated_at_zero_and_build_and_process_metrics_are_exported() {
    let gw = start_gateway(NOWHERE, NOWHERE, "").await;
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            metric(&m, name, labels),
            Some(0.0),
            "{name} {labels:?}: {m}"
        );
    };
    for kind in [
        "login",
        "registration",
        "recovery",
        "token_exchange",
        "whoami",
        "sessions",
        "settings",
        "verification",
        "extend",
        "hook",
        "other",
    ] {
        for mode in ["enforce", "report"] {
            zero(
                "kratos_gate_blocked_total",
                &[("kind", kind), ("mode", mode)],
            );
        }
    }
    for reason in [
        "attribution_unavailable",
        "too_large",
        "unreadable_encoding",
        "broken_response",
        "timeout",
        "trailer_cookie",
    ] {
        zero("kratos_gate_fail_closed_total", &[("reason", reason)]);
    }
    for reason in ["unreachable", "timeout", "broken_response"] {
        zero("kratos_gate_upstream_errors_total", &[("reason", reason)]);
    }
    for result in ["success", "retry", "dropped"] {
        zero("kratos_gate_revocations_total", &[("result", result)]);
    }
    for (source, result) in [
        ("header", "found"),
        ("body", "found"),
        ("admin", "error"),
        ("whoami", "found"),
        ("whoami", "error"),
        ("identifier", "error"),
        ("admin_identity", "error"),
    ] {
        zero(
            "kratos_gate_attribution_lookups_total",
            &[("source", source), ("result", result)],
        );
    }
    zero(
        "kratos_gate_blocklist_reloads_total",
        &[("result", "failure")],
    );
    for source in ["admin", "whoami", "identifier", "admin_identity"] {
        zero(
            "kratos_gate_kratos_lookup_duration_seconds_count",
            &[("source", source)],
        );
    }
    zero("kratos_gate_revocation_duration_seconds_count", &[]);
    for status in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        zero(
            "kratos_gate_requests_total",
            &[("listener", "public"), ("status", status)],
        );
    }

    let build = samples(&m)
        .into_iter()
        .find(|(n, _, _)| n == "kratos_gate_build_info")
        .unwrap_or_else(|| panic!("no build_info: {m}"));
    assert_eq!(build.2, 1.0);
    assert_eq!(build.1["version"], env!("CARGO_PKG_VERSION"));
    assert!(!build.1["commit"].is_empty(), "{build:?}");
    assert!(build.1["rustc"].starts_with("rustc "), "{build:?}");

    let process = |name: &str| metric(&m, name, &[]).unwrap_or_else(|| panic!("{name}: {m}"));
    assert!(process("process_cpu_seconds_total") >= 0.0);
    assert!(process("process_resident_memory_bytes") > 1_000_000.0);
    assert!(process("process_virtual_memory_bytes") > 1_000_000.0);
    assert!(process("process_open_fds") >= 3.0);
    assert!(process("process_max_fds") >= process("process_open_fds"));
    let start = process("process_start_time_seconds");
    assert!(
        start <= unix_now() + 1.0 && start > unix_now() - 3600.0,
        "start {start}"
    );
    gw.shutdown().await;
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).expect("text")[..64].to_owned()
}

async fn blocklist_status(gw: &support::gateway::TestGateway) -> serde_json::Value {
    let r = client::get(&gw.ops_url("/blocklist")).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers["content-type"].to_str().expect("text"),
        "application/json"
    );
    r.json()
}

/// `GET /blocklist`: the file's SHA-256, the entries in force by kind (expired ones and
/// report-mode ones not counted), where it came from and when, the global mode; and the
/// same numbers in the metrics.
#[tokio::test]
async fn blocklist_status_names_checksum_entries_in_force_by_kind_and_source() {
    let list = format!(
        "identities:\n  - {A}\n  - id: {B}\n    until: 2001-01-01T00:00:00Z\n  - id: {C}\n    mode: report\n\
         emails:\n  - one@example.org\n  - email: two@example.org\n    until: 2002-01-01T00:00:00Z\n  - three@example.org\n\
         email_domains:\n  - evil.example\n  - domain: old.example\n    until: 2003-01-01T00:00:00Z\n\
         networks:\n  - 192.0.2.0/24\n  - network: 198.51.100.0/24\n    mode: report\n"
    );
    let started = unix_now();
    let gw = start_gateway(NOWHERE, NOWHERE, &list).await;
    let s = blocklist_status(&gw).await;
    let sha = sha256_of(&gw.blocklist_path());
    assert_eq!(s["sha256"], sha, "{s}");
    assert_eq!(
        s["entries"],
        serde_json::json!({"identity": 1, "email": 2, "domain": 1, "network": 1}),
        "{s}"
    );
    assert_eq!(s["entries_in_file"], 10, "{s}");
    assert_eq!(s["mode"], "enforce");
    assert_eq!(
        s["source"],
        gw.blocklist_path().display().to_string(),
        "{s}"
    );
    assert!(s["last_error"].is_null(), "{s}");
    assert!(s["last_error_at"].is_null(), "{s}");
    let loaded_at = s["loaded_at"].as_str().expect("loaded_at");
    let loaded =
        time::OffsetDateTime::parse(loaded_at, &time::format_description::well_known::Rfc3339)
            .expect("RFC 3339")
            .unix_timestamp() as f64;
    assert!(
        loaded >= started.floor() - 1.0 && loaded <= unix_now() + 1.0,
        "{loaded_at}"
    );

    let m = client::get(&gw.ops_url("/metrics")).await.text();
    assert_eq!(
        metric(&m, "kratos_gate_blocklist_info", &[("sha256", &sha)]),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        samples(&m)
            .iter()
            .filter(|(n, _, _)| n == "kratos_gate_blocklist_info")
            .count(),
        1,
        "{m}"
    );
    for (kind, n) in [
        ("identity", 1.0),
        ("email", 2.0),
        ("domain", 1.0),
        ("network", 1.0),
    ] {
        assert_eq!(
            metric(&m, "kratos_gate_blocklist_entries", &[("kind", kind)]),
            Some(n),
            "{kind}: {m}"
        );
    }
    let last = metric(
        &m,
        "kratos_gate_blocklist_last_reload_success_timestamp_seconds",
        &[],
    )
    .expect("last reload success");
    assert!(
        last >= started.floor() - 1.0 && last <= unix_now() + 1.0,
        "{last}"
    );
    gw.shutdown().await;
}

/// A broken reload: the last good list (and its checksum) stays, `/blocklist` names the error
/// with file:line:column and when; a good file clears it and changes the checksum in both
/// `/blocklist` and `kratos_gate_blocklist_info`.
#[tokio::test]
async fn blocklist_status_reports_the_last_reload_error_until_a_good_file_is_read() {
    let gw = start_gateway(NOWHERE, NOWHERE, &blocklist_of(&[A])).await;
    let good_sha = sha256_of(&gw.blocklist_path());
    replace_atomically(
        &gw.blocklist_path(),
        &format!("identities:\n  - {A}\n  - not-a-uuid\n"),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let s = loop {
        let s = blocklist_status(&gw).await;
        if !s["last_error"].is_null() {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no error reported: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let error = s["last_error"].as_str().expect("message");
    let file = gw.blocklist_path().display().to_string();
    assert!(
        error.starts_with(&format!("{file}:3:5: ")),
        "not file:line:column: {error}"
    );
    assert!(
        s["last_error_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{s}"
    );
    assert_eq!(s["sha256"], good_sha, "the last good list stays: {s}");
    assert_eq!(s["entries"]["identity"], 1);
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    assert_eq!(
        metric(&m, "kratos_gate_blocklist_info", &[("sha256", &good_sha)]),
        Some(1.0),
        "{m}"
    );

    replace_atomically(&gw.blocklist_path(), &blocklist_of(&[A, B]));
    assert!(gw.wait_for_listed(B, true, Duration::from_secs(2)).await);
    let new_sha = sha256_of(&gw.blocklist_path());
    assert_ne!(new_sha, good_sha);
    let s = blocklist_status(&gw).await;
    assert!(s["last_error"].is_null(), "{s}");
    assert_eq!(s["sha256"], new_sha, "{s}");
    assert_eq!(s["entries"]["identity"], 2, "{s}");
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    let info: Vec<_> = samples(&m)
        .into_iter()
        .filter(|(n, _, _)| n == "kratos_gate_blocklist_info")
        .map(|(_, l, _)| l["sha256"].clone())
        .collect();
    assert_eq!(info, vec![new_sha], "{m}");
    gw.shutdown().await;
}

/// An entry whose `until` passes while the list is loaded stops being counted without a
/// reload.
#[tokio::test]
async fn an_entry_that_lapses_leaves_the_count() {
    let until = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let until = until
        .replace_nanosecond(0)
        .expect("ns")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let list = format!("identities:\n  - {A}\n  - id: {B}\n    until: {until}\n");
    let gw = start_gateway(NOWHERE, NOWHERE, &list).await;
    assert_eq!(blocklist_status(&gw).await["entries"]["identity"], 2);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(blocklist_status(&gw).await["entries"]["identity"], 1);
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    assert_eq!(
        metric(&m, "kratos_gate_blocklist_entries", &[("kind", "identity")]),
        Some(1.0),
        "{m}"
    );
    gw.shutdown().await;
}

/// Metric names (`kratos_gate_…`, `process_…`) in a text: PromQL expressions, README rows.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in text
        .match_indices("kratos_gate_")
        .chain(text.match_indices("process_"))
    {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        out.insert(name);
    }
    out
}

/// The shipped alerts and dashboard name only series the gateway exports, and README's
/// metrics table names every family it exports: checked against a scrape.
#[tokio::test]
async fn shipped_alerts_dashboard_and_readme_name_exactly_what_a_scrape_exports() {
    let gw = start_gateway(NOWHERE, NOWHERE, &blocklist_of(&[A])).await;
    let m = client::get(&gw.ops_url("/metrics")).await.text();
    gw.shutdown().await;
    let exported: std::collections::BTreeSet<String> =
        samples(&m).into_iter().map(|(n, _, _)| n).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/monitoring/grafana-dashboard.json")).expect("JSON");
    let mut exprs = String::new();
    let mut panels: Vec<&serde_json::Value> = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        panels.push(p);
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push_str(t["expr"].as_str().expect("expr"));
            exprs.push('\n');
        }
    }
    let rules = read("deploy/monitoring/kratos-gate.rules.yaml");
    for (what, text) in [("dashboard", exprs.as_str()), ("rules", rules.as_str())] {
        let named = metric_names(text);
        assert!(named.len() > 5, "{what}: {named:?}");
        let missing: Vec<_> = named.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{what} names series no scrape has: {missing:?}"
        );
    }

    // README: every exported family has a row (histogram series belong to their family).
    let readme = read("README.md");
    let documented: std::collections::BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .filter(|n| n.starts_with("kratos_gate_") || n.starts_with("process_"))
        .map(str::to_owned)
        .collect();
    let family = |n: &str| {
        ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| n.strip_suffix(s))
            .unwrap_or(n)
            .to_owned()
    };
    let undocumented: Vec<_> = exported
        .iter()
        .filter(|n| !documented.contains(*n) && !documented.contains(&family(n)))
        .collect();
    assert!(
        undocumented.is_empty(),
        "exported but not in README's metrics table: {undocumented:?}"
    );
    let stale: Vec<_> = documented
        .iter()
        .filter(|d| !exported.iter().any(|n| n == *d || family(n) == **d))
        .collect();
    assert!(
        stale.is_empty(),
        "in README's table, not exported: {stale:?}"
    );
}
