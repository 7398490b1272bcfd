//! Prometheus metrics (prometheus-client), registered once and shared by every component.

use std::sync::atomic::AtomicU64;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub upstream_seconds: Family<ListenerLabels, Histogram>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    pub blocklist_entries: Gauge,
    pub blocklist_reloads: Family<ReloadLabels, Counter>,
    pub blocklist_last_success: Gauge<f64, AtomicU64>,
    pub blocked: Family<KindLabels, Counter>,
    pub revocations: Family<ResultLabels, Counter>,
    pub revocation_queue: Gauge,
    pub lookups: Family<LookupLabels, Counter>,
    pub fail_closed: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kratos_gate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by listener and status class",
            requests.clone(),
        );
        let upstream_seconds = Family::<ListenerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
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
        let blocklist_entries = Gauge::default();
        registry.register(
            "blocklist_entries",
            "Identities in the blocklist in force",
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
            "Unix time of the last successful blocklist load",
            blocklist_last_success.clone(),
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
        Metrics {
            registry,
            requests,
            upstream_seconds,
            upstream_errors,
            blocklist_entries,
            blocklist_reloads,
            blocklist_last_success,
            blocked,
            revocations,
            revocation_queue,
            lookups,
            fail_closed,
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
}
