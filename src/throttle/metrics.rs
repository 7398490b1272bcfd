//! Throttling's Prometheus series, registered by `crate::metrics::Metrics` under the
//! `kratos_gate_` prefix; every label value exists at zero from the start.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::metrics::LatencyHistogram;

/// `kind` of a throttled submission.
pub const KINDS: [&str; 6] = [
    "login",
    "recovery",
    "verification",
    "registration",
    "settings",
    "other",
];
/// `scope` of a refusal.
pub const SCOPES: [&str; 5] = [
    "identifier_network",
    "identifier",
    "network",
    "rate_limit",
    "store_unavailable",
];
/// Kinds whose failures are counted.
pub const FAILURE_KINDS: [&str; 3] = ["login", "recovery", "verification"];
/// `operation` of a store call.
pub const OPERATIONS: [&str; 3] = ["check", "refund", "success"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThrottledLabels {
    pub kind: &'static str,
    pub scope: &'static str,
    /// `enforce`, or `report` when only logged.
    pub mode: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindOnly {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Default)]
pub struct ThrottleMetrics {
    pub throttled: Family<ThrottledLabels, Counter>,
    pub failures: Family<KindOnly, Counter>,
    pub resets: Counter,
    pub store_errors: Family<OperationLabels, Counter>,
    pub store_seconds: Family<OperationLabels, LatencyHistogram>,
}

impl ThrottleMetrics {
    pub fn register(registry: &mut Registry) -> ThrottleMetrics {
        let m = ThrottleMetrics::default();
        registry.register(
            "throttled",
            "Self-service submissions refused by throttling (mode=report: only logged), by kind and the limit that refused them",
            m.throttled.clone(),
        );
        registry.register(
            "throttle_failures",
            "Failed logins and wrong one-time codes seen in Kratos's answers, by kind",
            m.failures.clone(),
        );
        registry.register(
            "throttle_resets",
            "Successful logins that reset an identifier's failure counters",
            m.resets.clone(),
        );
        registry.register(
            "throttle_store_errors",
            "Throttling store calls that failed (Redis unreachable or too slow); the fail mode applied",
            m.store_errors.clone(),
        );
        registry.register(
            "throttle_store_duration_seconds",
            "Time of one throttling store call, by operation",
            m.store_seconds.clone(),
        );
        for kind in KINDS {
            for scope in SCOPES {
                for mode in ["enforce", "report"] {
                    let _ = m
                        .throttled
                        .get_or_create(&ThrottledLabels { kind, scope, mode });
                }
            }
        }
        for kind in FAILURE_KINDS {
            let _ = m.failures.get_or_create(&KindOnly { kind });
        }
        for operation in OPERATIONS {
            let _ = m.store_errors.get_or_create(&OperationLabels { operation });
            let _ = m
                .store_seconds
                .get_or_create(&OperationLabels { operation });
        }
        m
    }
}
