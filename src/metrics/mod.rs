//! Prometheus metrics (prometheus-client), registered once and shared by every component.
//!
//! Conventions: every counter is created at zero for each label value the gateway knows, so
//! that `increase()` sees the first event; series on the request path are resolved once
//! (a family lookup takes a lock and hashes the labels); the gateway's own latency histograms
//! ([`LatencyHistogram`]) are lock-free. On Linux the standard `process_*` metrics are read
//! from `/proc` at each scrape.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

mod labels;
mod latency;
#[cfg(target_os = "linux")]
mod process;
#[cfg(test)]
mod tests;

pub use labels::*;
pub use latency::LatencyHistogram;

/// The crate version, the git commit and the compiler it was built from (`build.rs`;
/// "unknown" when built without git, from a tarball).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const COMMIT: &str = match option_env!("KRATOS_GATE_COMMIT") {
    Some(c) => c,
    None => "unknown",
};
pub const RUSTC: &str = match option_env!("KRATOS_GATE_RUSTC") {
    Some(r) => r,
    None => "unknown",
};

/// Every `kind` of `kratos_gate_blocked_total`: [`crate::paths::request_kind`]'s names, the
/// admin extend and the web hook.
pub const BLOCKED_KINDS: &[&str] = &[
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
];
pub const MODES: &[&str] = &["enforce", "report"];
/// Why a credential-bearing response was withheld (`GatewayError::label` of the errors that
/// reach the fail-closed answer, and trailer cookies).
pub const FAIL_CLOSED_REASONS: &[&str] = &[
    "attribution_unavailable",
    "too_large",
    "unreadable_encoding",
    "broken_response",
    "timeout",
    "bad_request",
    "trailer_cookie",
    "too_many_credentials",
    "request_body_timeout",
];
/// Every `GatewayError::label` the proxy counts as an upstream error.
pub const UPSTREAM_ERROR_REASONS: &[&str] = &[
    "unreachable",
    "timeout",
    "broken_response",
    "too_large",
    "unreadable_encoding",
    "attribution_unavailable",
    "upgrade_refused",
    "bad_request",
    "not_found",
    "too_many_credentials",
];
pub const REVOCATION_RESULTS: &[&str] = &["success", "retry", "dropped"];
/// Every (source, result) of `kratos_gate_attribution_lookups_total`.
pub const LOOKUPS: &[(&str, &[&str])] = &[
    ("header", &["found"]),
    ("body", &["found"]),
    ("admin", &["found", "not_found", "error"]),
    ("whoami", &["found", "no_session", "aal2_required", "error"]),
    (
        "identifier",
        &["found", "not_found", "error", "unreadable", "ambiguous"],
    ),
    ("admin_identity", &["found", "error"]),
];
/// The Kratos calls behind lookups (`kratos_gate_kratos_lookup_duration_seconds{source}`).
pub const KRATOS_LOOKUP_SOURCES: &[&str] = &["admin", "whoami", "identifier", "admin_identity"];
pub const ENTRY_KINDS: &[&str] = &["identity", "email", "domain"];
pub const REQUEST_LISTENERS: &[&str] = &["public", "admin", "hooks"];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_seconds: Family<ListenerLabels, LatencyHistogram>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    /// The gateway's own time per request, by listener: from the request head until the
    /// response head is ready (body streaming not included).
    pub request_seconds: Family<ListenerNameLabels, LatencyHistogram>,
    /// Client connections open on each worker runtime of a proxy listener.
    pub open_connections: Family<WorkerLabels, Gauge>,
    /// The gateway's calls to Kratos to attribute a credential, by source.
    pub kratos_lookup_seconds: Family<SourceLabels, LatencyHistogram>,
    /// One revocation attempt at Kratos (all its calls).
    pub revocation_seconds: LatencyHistogram,
    /// Entries in force (enforced, `until` not passed), by kind.
    pub blocklist_entries: EntryGauges,
    pub blocklist_reloads: Family<ReloadLabels, Counter>,
    /// When the list in force was loaded.
    pub blocklist_last_success: Gauge<f64, AtomicU64>,
    /// When the file was last read successfully (a change applied, or the same content).
    pub blocklist_last_reload_success: Gauge<f64, AtomicU64>,
    /// 1 for the SHA-256 of the file in force, no other series.
    pub blocklist_info: Family<Sha256Labels, Gauge>,
    pub blocked: Family<KindLabels, Counter>,
    pub revocations: Family<ResultLabels, Counter>,
    pub revocation_queue: Gauge,
    pub lookups: Family<LookupLabels, Counter>,
    pub fail_closed: Family<ReasonLabels, Counter>,
    /// Throttling's series (`kratos_gate_throttled_total`, …; src/throttle/metrics.rs).
    pub throttle: crate::throttle::metrics::ThrottleMetrics,
    /// A remote blocklist source's fetches (`kratos_gate_blocklist_fetches_total`, …;
    /// src/remote/); at zero for a file.
    pub remote: crate::remote::RemoteMetrics,
    /// The series of `lookups` for every (source, result) of [`LOOKUPS`], resolved once:
    /// [`Metrics::lookup`] counts on them without the family's lock and hashing.
    lookup_series: Vec<(&'static str, &'static str, Counter)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_remote(None)
    }

    /// The gateway's metrics, with the counters a remote blocklist source has kept since it
    /// was built (its start-up fetch included).
    pub fn with_remote(remote: Option<crate::remote::RemoteMetrics>) -> Self {
        let mut root = Registry::default();
        #[cfg(target_os = "linux")]
        root.register_collector(Box::new(process::ProcessCollector::new()));
        let registry = root.sub_registry_with_prefix("kratos_gate");
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "build_info",
            "The gateway's version, git commit and compiler; always 1",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: VERSION,
                commit: COMMIT,
                rustc: RUSTC,
            })
            .set(1);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by listener and status class",
            requests.clone(),
        );
        let request_seconds = Family::<ListenerNameLabels, LatencyHistogram>::default();
        registry.register(
            "request_duration_seconds",
            "Time the gateway took per request, from the request head until the response head was ready, by listener",
            request_seconds.clone(),
        );
        let open_connections = Family::<WorkerLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Client connections open on each worker runtime of a proxy listener (public, admin); one worker in the shared layout",
            open_connections.clone(),
        );
        let upstream_seconds = Family::<ListenerLabels, LatencyHistogram>::default();
        registry.register(
            "upstream_duration_seconds",
            "Time from forwarding a request to Kratos until its response headers arrived",
            upstream_seconds.clone(),
        );
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "upstream_errors",
            "Requests Kratos could not answer (unreachable, timeout, broken response)",
            upstream_errors.clone(),
        );
        let kratos_lookup_seconds = Family::<SourceLabels, LatencyHistogram>::default();
        registry.register(
            "kratos_lookup_duration_seconds",
            "Time of the gateway's calls to Kratos to attribute a credential, by source",
            kratos_lookup_seconds.clone(),
        );
        let revocation_seconds = LatencyHistogram::default();
        registry.register(
            "revocation_duration_seconds",
            "Time of one revocation attempt at Kratos's admin API",
            revocation_seconds.clone(),
        );
        let blocklist_entries = EntryGauges::default();
        registry.register(
            "blocklist_entries",
            "Blocklist entries in force (enforced, until not passed), by kind",
            blocklist_entries.clone(),
        );
        let blocklist_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "blocklist_reloads",
            "Blocklist reload attempts by result (unchanged = same content as before)",
            blocklist_reloads.clone(),
        );
        let blocklist_last_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "blocklist_last_success_timestamp_seconds",
            "Unix time the blocklist in force was loaded",
            blocklist_last_success.clone(),
        );
        let blocklist_last_reload_success = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "blocklist_last_reload_success_timestamp_seconds",
            "Unix time of the last reload that read the file successfully (changed or not)",
            blocklist_last_reload_success.clone(),
        );
        let blocklist_info = Family::<Sha256Labels, Gauge>::default();
        registry.register(
            "blocklist_info",
            "The SHA-256 of the blocklist file in force; always 1",
            blocklist_info.clone(),
        );
        let blocked = Family::<KindLabels, Counter>::default();
        registry.register(
            "blocked",
            "Responses refused (mode=enforce) or only reported (mode=report) because they carried or vouched for a listed identity's session",
            blocked.clone(),
        );
        let revocations = Family::<ResultLabels, Counter>::default();
        registry.register(
            "revocations",
            "Session revocations at Kratos by result (success, retry, dropped)",
            revocations.clone(),
        );
        let revocation_queue = Gauge::default();
        registry.register(
            "revocation_queue_depth",
            "Revocations queued or being retried",
            revocation_queue.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "attribution_lookups",
            "How credentials were attributed to identities, by source and result",
            lookups.clone(),
        );
        let fail_closed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "fail_closed",
            "Credential-bearing responses withheld because their owner could not be determined",
            fail_closed.clone(),
        );
        let throttle = crate::throttle::metrics::ThrottleMetrics::register(registry);
        let remote = remote.unwrap_or_default().registered(registry);
        let mut metrics = Metrics {
            registry: root,
            requests,
            upstream_seconds,
            upstream_errors,
            request_seconds,
            open_connections,
            kratos_lookup_seconds,
            revocation_seconds,
            blocklist_entries,
            blocklist_reloads,
            blocklist_last_success,
            blocklist_last_reload_success,
            blocklist_info,
            blocked,
            revocations,
            revocation_queue,
            lookups,
            fail_closed,
            throttle,
            remote,
            lookup_series: Vec::new(),
        };
        metrics.precreate();
        metrics.lookup_series = LOOKUPS
            .iter()
            .flat_map(|(source, results)| results.iter().map(move |result| (*source, *result)))
            .map(|(source, result)| {
                let counter = metrics
                    .lookups
                    .get_or_create(&LookupLabels { source, result })
                    .clone();
                (source, result, counter)
            })
            .collect();
        metrics
    }

    /// Every series of a known label value, at zero: a series that appears with its first
    /// event makes `increase()` and `rate()` miss that event.
    fn precreate(&self) {
        for listener in [Listener::Public, Listener::Admin] {
            for status in [
                StatusClass::Informational,
                StatusClass::Success,
                StatusClass::Redirection,
                StatusClass::ClientError,
                StatusClass::ServerError,
            ] {
                let _ = self
                    .requests
                    .get_or_create(&RequestLabels { listener, status });
            }
            let _ = self
                .upstream_seconds
                .get_or_create(&ListenerLabels { listener });
        }
        for listener in REQUEST_LISTENERS {
            let _ = self
                .request_seconds
                .get_or_create(&ListenerNameLabels { listener });
        }
        for kind in BLOCKED_KINDS {
            for mode in MODES {
                let _ = self.blocked.get_or_create(&KindLabels { kind, mode });
            }
        }
        for reason in FAIL_CLOSED_REASONS {
            let _ = self.fail_closed.get_or_create(&ReasonLabels { reason });
        }
        for reason in UPSTREAM_ERROR_REASONS {
            let _ = self.upstream_errors.get_or_create(&ReasonLabels { reason });
        }
        for result in REVOCATION_RESULTS {
            let _ = self.revocations.get_or_create(&ResultLabels { result });
        }
        for (source, results) in LOOKUPS {
            for result in *results {
                let _ = self.lookups.get_or_create(&LookupLabels { source, result });
            }
        }
        for source in KRATOS_LOOKUP_SOURCES {
            let _ = self
                .kratos_lookup_seconds
                .get_or_create(&SourceLabels { source });
        }
        for result in [
            ReloadResult::Success,
            ReloadResult::Unchanged,
            ReloadResult::Failure,
        ] {
            let _ = self
                .blocklist_reloads
                .get_or_create(&ReloadLabels { result });
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn reload(&self, result: ReloadResult) {
        self.blocklist_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    pub fn lookup(&self, source: &'static str, result: &'static str) {
        let known = self
            .lookup_series
            .iter()
            .find(|(s, r, _)| *s == source && *r == result);
        match known {
            Some((_, _, counter)) => {
                counter.inc();
            }
            None => {
                self.lookups
                    .get_or_create(&LookupLabels { source, result })
                    .inc();
            }
        }
    }

    pub fn fail_closed(&self, reason: &'static str) {
        self.fail_closed
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn revocation(&self, result: &'static str) {
        self.revocations
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// The request-duration series of one listener (`public`, `admin`, `hooks`), to be
    /// resolved once per listener and observed without a lookup.
    pub fn request_duration(&self, listener: &'static str) -> LatencyHistogram {
        self.request_seconds
            .get_or_create(&ListenerNameLabels { listener })
            .clone()
    }

    /// The open-connection gauges of a proxy listener's `workers` worker runtimes.
    pub fn open_connections(&self, listener: &'static str, workers: usize) -> Vec<Gauge> {
        (0..workers)
            .map(|w| {
                let worker = u32::try_from(w).unwrap_or(u32::MAX);
                self.open_connections
                    .get_or_create(&WorkerLabels { listener, worker })
                    .clone()
            })
            .collect()
    }

    /// The latency series of one kind of Kratos lookup (see [`KRATOS_LOOKUP_SOURCES`]).
    pub fn kratos_lookup_duration(&self, source: &'static str) -> LatencyHistogram {
        self.kratos_lookup_seconds
            .get_or_create(&SourceLabels { source })
            .clone()
    }

    /// Records how long one lookup at Kratos took.
    pub fn observe_lookup(&self, source: &'static str, elapsed: Duration) {
        self.kratos_lookup_seconds
            .get_or_create(&SourceLabels { source })
            .observe(elapsed);
    }

    /// Records how long one revocation attempt at Kratos took.
    pub fn observe_revocation(&self, elapsed: Duration) {
        self.revocation_seconds.observe(elapsed);
    }

    /// The blocklist in force: its file's SHA-256 (the only `blocklist_info` series) and its
    /// entries in force by kind.
    pub fn set_blocklist(&self, sha256: &str, counts: EntryCounts) {
        let labels = Sha256Labels {
            sha256: sha256.to_owned(),
        };
        let present = self.blocklist_info.get(&labels).is_some();
        if !present {
            self.blocklist_info.clear();
            self.blocklist_info.get_or_create(&labels).set(1);
        }
        self.set_entries(counts);
    }

    pub fn set_entries(&self, counts: EntryCounts) {
        let g = &self.blocklist_entries;
        for (gauge, n) in [
            (&g.identity, counts.identity),
            (&g.email, counts.email),
            (&g.domain, counts.domain),
            (&g.network, counts.network),
        ] {
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// `kratos_gate_blocklist_entries{kind}`, always in the order identity, email, domain,
/// network (a family would list them in hash order).
#[derive(Clone, Debug, Default)]
pub struct EntryGauges {
    pub identity: Gauge,
    pub email: Gauge,
    pub domain: Gauge,
    pub network: Gauge,
}

impl TypedMetric for EntryGauges {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for EntryGauges {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (kind, gauge) in [
            ("identity", &self.identity),
            ("email", &self.email),
            ("domain", &self.domain),
            ("network", &self.network),
        ] {
            gauge.encode(encoder.encode_family(&EntryKindLabels { kind })?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Entries in force by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCounts {
    pub identity: usize,
    pub email: usize,
    pub domain: usize,
    pub network: usize,
}
