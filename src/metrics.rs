//! Prometheus metrics (prometheus-client), registered once and shared by every component.
//!
//! Conventions: every counter is created at zero for each label value the gateway knows, so
//! that `increase()` sees the first event; series on the request path are resolved once
//! (a family lookup takes a lock and hashes the labels); the gateway's own latency histograms
//! ([`LatencyHistogram`]) are lock-free. On Linux the standard `process_*` metrics are read
//! from `/proc` at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{
    EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Listener {
    Public,
    Admin,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum StatusClass {
    Informational,
    Success,
    Redirection,
    ClientError,
    ServerError,
}

impl EncodeLabelValue for Listener {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Listener::Public => "public",
            Listener::Admin => "admin",
        })
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirection => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
        })
    }
}

impl StatusClass {
    pub fn of(status: http::StatusCode) -> Self {
        match status.as_u16() {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirection,
            400..=499 => StatusClass::ClientError,
            _ => StatusClass::ServerError,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: Listener,
    pub status: StatusClass,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: Listener,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    Success,
    Unchanged,
    Failure,
}

impl EncodeLabelValue for ReloadResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            ReloadResult::Success => "success",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failure => "failure",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
    /// `enforce`, or `report` for dry-run matches that were only logged.
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub source: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// `listener` of the gateway's own request durations (`public`, `admin`, `hooks`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerNameLabels {
    pub listener: &'static str,
}

/// `kind` of blocklist entries: `identity`, `email`, `domain`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntryKindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Sha256Labels {
    pub sha256: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    commit: &'static str,
    rustc: &'static str,
}

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

/// Upper bounds of the latency buckets: 0.5 ms to about 16 s, doubling.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 16).collect()
}

/// A histogram of durations that never locks: one atomic add per bucket, count and sum (in
/// nanoseconds). prometheus-client's `Histogram` takes a write lock per observation, which
/// every request thread would contend for.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Arc<LatencyInner>);

#[derive(Debug)]
struct LatencyInner {
    bounds: Vec<f64>,
    /// Per bucket (not cumulative), one more than `bounds` for +Inf.
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        let bounds = latency_buckets();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        LatencyHistogram(Arc::new(LatencyInner {
            bounds,
            counts,
            sum_nanos: AtomicU64::new(0),
        }))
    }
}

impl LatencyHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = self.0.bounds.partition_point(|b| *b < secs);
        if let Some(c) = self.0.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.0
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for LatencyHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        // The count is the buckets' total, so that `+Inf` always equals `_count`.
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(self.0.counts.len());
        let mut count = 0u64;
        for (i, c) in self.0.counts.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            count += n;
            buckets.push((self.0.bounds.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_seconds: Family<ListenerLabels, Histogram>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    /// The gateway's own time per request, by listener: from the request head until the
    /// response head is ready (body streaming not included).
    pub request_seconds: Family<ListenerNameLabels, LatencyHistogram>,
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
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
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
        let upstream_seconds = Family::<ListenerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
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
        let metrics = Metrics {
            registry: root,
            requests,
            upstream_seconds,
            upstream_errors,
            request_seconds,
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
        };
        metrics.precreate();
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
        self.lookups
            .get_or_create(&LookupLabels { source, result })
            .inc();
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
        ] {
            gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// `kratos_gate_blocklist_entries{kind}`, always in the order identity, email, domain (a
/// family would list them in hash order).
#[derive(Clone, Debug, Default)]
pub struct EntryGauges {
    pub identity: Gauge,
    pub email: Gauge,
    pub domain: Gauge,
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
}

/// The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
/// `process_start_time_seconds`), read from `/proc/self` at each scrape as the Go and Python
/// clients do. prometheus-client has no process collector.
#[cfg(target_os = "linux")]
mod process {
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::metrics::gauge::ConstGauge;

    /// Clock ticks per second of `/proc/*/stat` times: USER_HZ, 100 on every Linux
    /// architecture Rust targets (the Go client's procfs assumes the same).
    const USER_HZ: f64 = 100.0;

    #[derive(Debug)]
    pub struct ProcessCollector {
        boot_time: Option<f64>,
    }

    impl ProcessCollector {
        pub fn new() -> Self {
            ProcessCollector {
                boot_time: boot_time(),
            }
        }
    }

    /// `btime` of `/proc/stat`: when the machine booted, in unix seconds.
    fn boot_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        stat.lines()
            .find_map(|l| l.strip_prefix("btime "))
            .and_then(|v| v.trim().parse().ok())
    }

    #[derive(Debug, Default, PartialEq)]
    pub struct Sample {
        pub cpu_seconds: f64,
        pub start_ticks: f64,
        pub virtual_bytes: f64,
        pub resident_bytes: f64,
    }

    /// The fields of `/proc/self/stat` after the command name (which may hold spaces and
    /// parentheses, hence the last `)`).
    pub fn parse_stat(stat: &str) -> Option<Sample> {
        let (_, rest) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is index 0 here: utime 14, stime 15, starttime 22, vsize 23.
        let num = |field: usize| -> Option<f64> { fields.get(field - 3)?.parse().ok() };
        Some(Sample {
            cpu_seconds: (num(14)? + num(15)?) / USER_HZ,
            start_ticks: num(22)?,
            virtual_bytes: num(23)?,
            resident_bytes: 0.0,
        })
    }

    /// `VmRSS` of `/proc/self/status`, in bytes (no page size needed).
    pub fn parse_rss(status: &str) -> Option<f64> {
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024.0)
    }

    /// The soft limit on open files, from `/proc/self/limits`.
    pub fn parse_max_fds(limits: &str) -> Option<f64> {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.trim_start_matches("Max open files")
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    fn gauge(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: f64,
    ) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(value);
        let m = encoder.encode_descriptor(name, help, None, g.metric_type())?;
        g.encode(m)
    }

    impl Collector for ProcessCollector {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let stat = std::fs::read_to_string("/proc/self/stat")
                .ok()
                .and_then(|s| parse_stat(&s));
            if let Some(s) = &stat {
                let cpu = ConstCounter::new(s.cpu_seconds);
                let m = encoder.encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds",
                    None,
                    cpu.metric_type(),
                )?;
                cpu.encode(m)?;
            }
            if let Some(rss) = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| parse_rss(&s))
            {
                gauge(
                    &mut encoder,
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes",
                    rss,
                )?;
            }
            if let Some(s) = &stat {
                gauge(
                    &mut encoder,
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes",
                    s.virtual_bytes,
                )?;
            }
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                // The directory handle being read is one of them.
                let open = dir.count().saturating_sub(1);
                gauge(
                    &mut encoder,
                    "process_open_fds",
                    "Number of open file descriptors",
                    open as f64,
                )?;
            }
            if let Some(max) = std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| parse_max_fds(&s))
            {
                gauge(
                    &mut encoder,
                    "process_max_fds",
                    "Maximum number of open file descriptors",
                    max,
                )?;
            }
            if let (Some(s), Some(boot)) = (&stat, self.boot_time) {
                gauge(
                    &mut encoder,
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds",
                    boot + s.start_ticks / USER_HZ,
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(text: &str, line: &str) -> bool {
        text.lines().any(|l| l == line)
    }

    #[test]
    fn counters_exist_at_zero_before_any_event() {
        let m = Metrics::new();
        let text = m.encode();
        for kind in BLOCKED_KINDS {
            for mode in MODES {
                assert!(
                    has(
                        &text,
                        &format!("kratos_gate_blocked_total{{kind=\"{kind}\",mode=\"{mode}\"}} 0")
                    ),
                    "{kind} {mode}: {text}"
                );
            }
        }
        for reason in FAIL_CLOSED_REASONS {
            assert!(has(
                &text,
                &format!("kratos_gate_fail_closed_total{{reason=\"{reason}\"}} 0")
            ));
        }
        for result in ["success", "unchanged", "failure"] {
            assert!(has(
                &text,
                &format!("kratos_gate_blocklist_reloads_total{{result=\"{result}\"}} 0")
            ));
        }
        assert!(has(
            &text,
            "kratos_gate_attribution_lookups_total{source=\"whoami\",result=\"error\"} 0"
        ));
        assert!(has(
            &text,
            "kratos_gate_revocations_total{result=\"dropped\"} 0"
        ));
        assert!(has(
            &text,
            "kratos_gate_upstream_errors_total{reason=\"unreachable\"} 0"
        ));
    }

    #[test]
    fn build_info_names_version_commit_and_compiler() {
        let text = Metrics::new().encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("kratos_gate_build_info{"))
            .expect("build_info");
        assert!(line.contains(&format!("version=\"{VERSION}\"")), "{line}");
        assert!(line.contains("commit=\""), "{line}");
        assert!(line.contains("rustc=\"rustc "), "{line}");
        assert!(line.ends_with(" 1"), "{line}");
    }

    #[test]
    fn latency_histogram_is_cumulative_and_counts_match() {
        let m = Metrics::new();
        let h = m.request_duration("public");
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        assert_eq!(h.count(), 3);
        let text = m.encode();
        let public = |suffix: &str| {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!(
                        "kratos_gate_request_duration_seconds_{suffix}{{listener=\"public\""
                    ))
                })
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
        };
        assert_eq!(public("count").as_deref(), Some("3"), "{text}");
        let sum: f64 = public("sum").expect("sum").parse().expect("number");
        assert!((sum - 100.0031).abs() < 1e-6, "{sum}");
        assert!(
            has(
                &text,
                "kratos_gate_request_duration_seconds_bucket{le=\"0.0005\",listener=\"public\"} 1"
            ) || has(
                &text,
                "kratos_gate_request_duration_seconds_bucket{listener=\"public\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        assert!(
            has(
                &text,
                "kratos_gate_request_duration_seconds_bucket{le=\"+Inf\",listener=\"public\"} 3"
            ),
            "{text}"
        );
    }

    #[test]
    fn blocklist_info_has_one_series_for_the_list_in_force() {
        let m = Metrics::new();
        m.set_blocklist("aa", EntryCounts::default());
        m.set_blocklist(
            "bb",
            EntryCounts {
                identity: 3,
                email: 2,
                domain: 1,
            },
        );
        let text = m.encode();
        assert!(
            has(&text, "kratos_gate_blocklist_info{sha256=\"bb\"} 1"),
            "{text}"
        );
        assert!(!text.contains("sha256=\"aa\""), "{text}");
        assert!(has(
            &text,
            "kratos_gate_blocklist_entries{kind=\"identity\"} 3"
        ));
        assert!(has(
            &text,
            "kratos_gate_blocklist_entries{kind=\"email\"} 2"
        ));
        assert!(has(
            &text,
            "kratos_gate_blocklist_entries{kind=\"domain\"} 1"
        ));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_metrics_are_read_from_proc() {
        let text = Metrics::new().encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value: f64 = text
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: {text}"));
            assert!(value >= 0.0, "{name} {value}");
        }
        let stat =
            "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 9000 123456 789";
        let s = process::parse_stat(stat).expect("parsed");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.start_ticks, 9000.0);
        assert_eq!(s.virtual_bytes, 123456.0);
        assert_eq!(
            process::parse_rss("Name:\tx\nVmRSS:\t    2048 kB\n"),
            Some(2048.0 * 1024.0)
        );
        assert_eq!(
            process::parse_max_fds(
                "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n"
            ),
            Some(1024.0)
        );
    }
}
