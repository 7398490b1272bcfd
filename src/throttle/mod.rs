//! Brute-force throttling: failed logins and wrong one-time codes are counted per identifier
//! and network, per identifier, and per network, with exponential backoff; every self-service
//! submission counts against its network's rate. State lives in-process ([`MemoryStore`],
//! bounded) or in Redis ([`RedisStore`], shared by every replica). The policy asks
//! [`Throttle::check`] before forwarding a submission and reports what Kratos answered with
//! [`Throttle::failure`] and [`Throttle::success`].
//!
//! Anti-lockout: the identifier-and-network counter refuses first (`per_identifier_and_network`
//! failures), so an attacker on one network cannot lock the owner out from theirs; only
//! `per_identifier` failures across networks refuse the identifier everywhere, and not from a
//! network the identifier signed in from within `remember_networks`.

pub mod config;
pub mod gate;
pub mod metrics;
pub mod redis;
pub mod rules;
pub mod store;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

pub use self::config::{FailMode, ThrottleConfig};
use self::metrics::{KindOnly, OperationLabels, ThrottleMetrics, ThrottledLabels};
pub use self::redis::RedisStore;
use self::rules::{Limit, Rate};
pub use self::store::{Counts, Hit, Key, Limits, MemoryStore, Query, Scope, Store, StoreError};
use crate::config::GlobalMode;

/// Which self-service flow a submission belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flow {
    Login,
    Recovery,
    Verification,
    Registration,
    Settings,
    Other,
}

impl Flow {
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Login => "login",
            Flow::Recovery => "recovery",
            Flow::Verification => "verification",
            Flow::Registration => "registration",
            Flow::Settings => "settings",
            Flow::Other => "other",
        }
    }

    /// Flows whose failures are counted per identifier (login) or address (codes).
    pub fn counted(self) -> bool {
        matches!(self, Flow::Login | Flow::Recovery | Flow::Verification)
    }
}

/// One submission: its flow, the identifier or address it names (as submitted), the client.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    pub flow: Flow,
    pub identifier: Option<&'a str>,
    pub client: IpAddr,
    /// Tries a secret (a password or a one-time code): counted per identifier and network.
    /// Other submissions only count against their network's rate.
    pub tries_secret: bool,
}

/// What to do with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it, then report Kratos's answer with [`Throttle::settle`].
    Pass(Pending),
    /// Answer 429 with `Retry-After` (whole seconds, at least 1).
    Throttled { scope: Scope, retry_after: Duration },
    /// The store could not be asked and `redis.fail` is `closed`: answer 503.
    Unavailable,
}

/// A submission let through, waiting for Kratos's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// The attempt was counted (not when the store could not be asked, or in report mode
    /// past a limit).
    counted: bool,
}

/// What Kratos answered a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Credentials invalid (4000006) or a wrong one-time code (4010008, 4060006, 4070006).
    Failure,
    /// A login that gave a session.
    Success,
    /// Anything else (a code sent, a validation error, an expired flow, Kratos down).
    Other,
}

enum AnyStore {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl AnyStore {
    async fn attempt(&self, q: &Query, l: &Limits) -> Result<(Hit, Counts), StoreError> {
        match self {
            AnyStore::Memory(s) => s.attempt(q, l).await,
            AnyStore::Redis(s) => s.attempt(q, l).await,
        }
    }
    async fn refund(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.refund(q, l).await,
            AnyStore::Redis(s) => s.refund(q, l).await,
        }
    }
    async fn success(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        match self {
            AnyStore::Memory(s) => s.success(q, l).await,
            AnyStore::Redis(s) => s.success(q, l).await,
        }
    }
}

/// The throttle: the store, the limits in force and how to answer.
pub struct Throttle {
    store: AnyStore,
    limits: Limits,
    ipv4: u8,
    ipv6: u8,
    report: bool,
    fail: FailMode,
    metrics: ThrottleMetrics,
    /// The address a recovery or verification flow's code was sent to, by flow id (bounded;
    /// Kratos's default flow lifespan is an hour).
    flow_addresses: moka::sync::Cache<uuid::Uuid, Arc<str>>,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Longest identifier shown in an audit line (the full one is hashed into the key).
const SHOWN_IDENTIFIER: usize = 128;

impl Throttle {
    /// The throttle of `config`, or `None` when throttling is off. Redis is not contacted
    /// here (see [`RedisStore::new`]).
    pub fn new(
        config: &ThrottleConfig,
        metrics: ThrottleMetrics,
    ) -> Result<Option<Throttle>, String> {
        if !config.enabled {
            return Ok(None);
        }
        if let Some(first) = config.validate().into_iter().next() {
            return Err(first);
        }
        let (fail, store) = match &config.redis {
            Some(r) => (r.fail, AnyStore::Redis(RedisStore::new(r)?)),
            None => (
                FailMode::Open,
                AnyStore::Memory(MemoryStore::new(config.memory.capacity)),
            ),
        };
        let f = &config.failures;
        let limit = |threshold| Limit {
            threshold,
            window: micros(f.window.get()),
            base: micros(config.backoff.base.get()),
            cap: micros(config.backoff.cap.get()),
        };
        Ok(Some(Throttle {
            store,
            limits: Limits {
                pair: limit(f.per_identifier_and_network),
                identifier: limit(f.per_identifier),
                network: limit(f.per_network),
                rate: Rate::new(
                    config.rate_limit.submissions,
                    micros(config.rate_limit.per.get()),
                ),
                remember: micros(f.remember_networks.get()),
            },
            ipv4: config.networks.ipv4,
            ipv6: config.networks.ipv6,
            report: config.mode == GlobalMode::Report,
            fail,
            metrics,
            flow_addresses: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3600))
                .build(),
        }))
    }

    /// The store's name, for logs: `memory` or `redis`.
    pub fn store_name(&self) -> &'static str {
        match self.store {
            AnyStore::Memory(_) => "memory",
            AnyStore::Redis(_) => "redis",
        }
    }

    /// The client's network: its address cut to the configured prefix length.
    pub fn network(&self, ip: IpAddr) -> IpNet {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let len = match ip {
            IpAddr::V4(_) => self.ipv4,
            IpAddr::V6(_) => self.ipv6,
        };
        IpNet::new(ip, len).map_or_else(|_| IpNet::from(ip), |n| n.trunc())
    }

    fn query(&self, s: &Submission<'_>, rate: bool) -> Query {
        let net = self.network(s.client);
        let net_bytes: Vec<u8> = match net {
            IpNet::V4(n) => [
                [4, n.prefix_len()].as_slice(),
                n.network().octets().as_slice(),
            ]
            .concat(),
            IpNet::V6(n) => [
                [6, n.prefix_len()].as_slice(),
                n.network().octets().as_slice(),
            ]
            .concat(),
        };
        let flow = s.flow.as_str().as_bytes();
        let counted = s.tries_secret && s.flow.counted();
        let identifier = s
            .identifier
            .filter(|_| counted)
            .map(normalise)
            .filter(|i| !i.is_empty());
        let id = identifier.as_deref().map(str::as_bytes);
        Query {
            pair: id.map(|i| key(b"pair", flow, i, &net_bytes)),
            identifier: id.map(|i| key(b"identifier", flow, i, b"")),
            network: key(b"network", flow, b"", &net_bytes),
            known: id
                .filter(|_| s.flow == Flow::Login)
                .map(|i| key(b"known", flow, i, &net_bytes)),
            rate: rate.then(|| key(b"rate", b"", b"", &net_bytes)),
            count_network: counted,
        }
    }

    fn timed(&self, operation: &'static str, started: Instant) {
        self.metrics
            .store_seconds
            .get_or_create(&OperationLabels { operation })
            .observe(started.elapsed());
    }

    fn store_error(&self, operation: &'static str, s: &Submission<'_>, e: &StoreError) {
        self.metrics
            .store_errors
            .get_or_create(&OperationLabels { operation })
            .inc();
        tracing::warn!(
            target: "kratos_gate::audit",
            event = "throttle_store_unavailable",
            operation,
            kind = s.flow.as_str(),
            client_ip = %s.client,
            fail = match self.fail { FailMode::Open => "open", FailMode::Closed => "closed" },
            error = %e,
            "throttling store unavailable"
        );
    }

    /// Whether a submission may be forwarded. One that may is counted as a failure until
    /// [`Throttle::settle`] says otherwise, so attempts in flight at once cannot pass a limit;
    /// it also uses one unit of its network's rate. In `report` mode a refusal is logged and
    /// counted and the submission passes (uncounted).
    pub async fn check(&self, s: &Submission<'_>, request_id: &str) -> Verdict {
        let q = self.query(s, self.limits.rate.is_some());
        if !q.count_network && q.rate.is_none() {
            // Neither counted nor rate-limited: nothing to ask the store.
            return Verdict::Pass(Pending { counted: false });
        }
        let started = Instant::now();
        let hit = self.store.attempt(&q, &self.limits).await;
        self.timed("check", started);
        let (refused, wait) = match hit {
            Ok((Hit::Allowed, counts)) => {
                if counts.pair > 0 || counts.network > 0 {
                    tracing::debug!(
                        target: "kratos_gate::audit",
                        event = "throttle_attempt",
                        kind = s.flow.as_str(),
                        attempts_identifier_network = counts.pair,
                        attempts_identifier = counts.identifier,
                        attempts_network = counts.network,
                        request_id,
                        "attempt counted"
                    );
                }
                return Verdict::Pass(Pending { counted: true });
            }
            Ok((Hit::Refused { scope, wait }, _)) => (Some(scope), wait),
            Err(e) => {
                self.store_error("check", s, &e);
                if self.fail == FailMode::Open {
                    return Verdict::Pass(Pending { counted: false });
                }
                (None, 0)
            }
        };
        let scope = refused.map_or("store_unavailable", Scope::as_str);
        let mode = if self.report { "report" } else { "enforce" };
        self.metrics
            .throttled
            .get_or_create(&ThrottledLabels {
                kind: s.flow.as_str(),
                scope,
                mode,
            })
            .inc();
        let retry_after = Duration::from_secs(wait.div_ceil(1_000_000).max(1));
        tracing::info!(
            target: "kratos_gate::audit",
            event = if self.report { "would_throttle" } else { "throttled" },
            mode,
            kind = s.flow.as_str(),
            scope,
            identifier = s.identifier.map(shown),
            network = %self.network(s.client),
            client_ip = %s.client,
            retry_after_s = retry_after.as_secs(),
            request_id,
            "submission throttled"
        );
        if self.report {
            return Verdict::Pass(Pending { counted: false });
        }
        match refused {
            Some(scope) => Verdict::Throttled { scope, retry_after },
            None => Verdict::Unavailable,
        }
    }

    /// Kratos's answer to a submission that was let through: a failure stays counted, a
    /// successful login resets the identifier's counters, anything else is counted back.
    pub async fn settle(
        &self,
        s: &Submission<'_>,
        pending: Pending,
        outcome: Outcome,
        request_id: &str,
    ) {
        let mut q = self.query(s, false);
        q.count_network &= pending.counted;
        let (operation, result) = match outcome {
            Outcome::Failure => {
                if !(s.tries_secret && s.flow.counted()) {
                    return;
                }
                self.metrics
                    .failures
                    .get_or_create(&KindOnly {
                        kind: s.flow.as_str(),
                    })
                    .inc();
                tracing::info!(
                    target: "kratos_gate::audit",
                    event = "throttle_failure",
                    kind = s.flow.as_str(),
                    identifier = s.identifier.map(shown),
                    network = %self.network(s.client),
                    client_ip = %s.client,
                    counted = pending.counted,
                    request_id,
                    "failed attempt"
                );
                return;
            }
            Outcome::Success if s.flow == Flow::Login && q.identifier.is_some() => {
                let started = Instant::now();
                let result = self.store.success(&q, &self.limits).await;
                self.timed("success", started);
                if result.is_ok() {
                    self.metrics.resets.inc();
                }
                ("success", result)
            }
            Outcome::Success | Outcome::Other => {
                if !pending.counted || !(q.count_network || q.pair.is_some()) {
                    return;
                }
                let started = Instant::now();
                let result = self.store.refund(&q, &self.limits).await;
                self.timed("refund", started);
                ("refund", result)
            }
        };
        if let Err(e) = result {
            self.store_error(operation, s, &e);
        }
    }

    /// A recovery or verification submission without a code names the address its code goes
    /// to: remembered for the flow, so that wrong codes in the same flow count against it.
    pub fn remember_address(&self, flow_id: uuid::Uuid, address: &str) {
        let address = normalise(address);
        if !address.is_empty() && address.len() <= 1024 {
            self.flow_addresses.insert(flow_id, Arc::from(address));
        }
    }

    /// The address remembered for a flow.
    pub fn address_of(&self, flow_id: uuid::Uuid) -> Option<Arc<str>> {
        self.flow_addresses.get(&flow_id)
    }

    /// The in-process store, when that is the one in use (tests and diagnostics).
    pub fn memory_store(&self) -> Option<&MemoryStore> {
        match &self.store {
            AnyStore::Memory(m) => Some(m),
            AnyStore::Redis(_) => None,
        }
    }
}

/// Identifiers are compared trimmed and case-folded (Kratos matches e-mail identifiers
/// case-insensitively), so `Alice@x` and ` alice@X` share their counters.
fn normalise(identifier: &str) -> String {
    identifier.trim().to_lowercase()
}

fn shown(identifier: &str) -> String {
    let n = normalise(identifier);
    match n.char_indices().nth(SHOWN_IDENTIFIER) {
        Some((cut, _)) => format!("{}…", n.get(..cut).unwrap_or_default()),
        None => n,
    }
}

fn key(scope: &[u8], flow: &[u8], identifier: &[u8], network: &[u8]) -> Key {
    let mut h = Sha256::new();
    for part in [scope, flow, identifier, network] {
        h.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    for (o, d) in out.iter_mut().zip(digest.iter()) {
        *o = *d;
    }
    Key(out)
}

/// The throttle shared by the policy, if throttling is on.
pub type SharedThrottle = Option<Arc<Throttle>>;
