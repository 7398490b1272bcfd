//! Where throttling state lives: [`MemoryStore`] (one process, bounded) or
//! [`crate::throttle::redis::RedisStore`] (shared by every replica). Both apply the rules of
//! `rules.rs`, each update atomic per key (the in-process cache's per-key compute; one Lua
//! script per call in Redis).

use std::future::Future;
use std::time::Instant;

use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::throttle::rules::{self, Counter, Limit, Rate};

/// What one counter counts: 16 bytes of SHA-256 over its scope, kind, identifier and network
/// (fixed size whatever the client sent; no identifier is stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u8; 16]);

impl Key {
    pub fn hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

/// The counters one submission touches.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// Identifier and network.
    pub pair: Option<Key>,
    /// Identifier from any network.
    pub identifier: Option<Key>,
    /// Failures from the network across identifiers.
    pub network: Key,
    /// Marks the network as one the identifier signed in from.
    pub known: Option<Key>,
    /// The network's rate of submissions.
    pub rate: Option<Key>,
    /// Whether the attempt counts on the network's failure counter (a login or code
    /// submission).
    pub count_network: bool,
}

/// The limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub pair: Limit,
    pub identifier: Limit,
    pub network: Limit,
    pub rate: Option<Rate>,
    /// How long a network stays known after a successful login (0: never).
    pub remember: u64,
}

/// Which limit refused a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    IdentifierAndNetwork,
    Identifier,
    Network,
    RateLimit,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::IdentifierAndNetwork => "identifier_network",
            Scope::Identifier => "identifier",
            Scope::Network => "network",
            Scope::RateLimit => "rate_limit",
        }
    }
}

/// A store's answer to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Allowed,
    /// Refused by `scope` for another `wait` microseconds (the longest of the limits hit).
    Refused {
        scope: Scope,
        wait: u64,
    },
}

/// Each counter after an attempt: attempts counted (failures, and those still in flight).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub pair: u32,
    pub identifier: u32,
    pub network: u32,
}

/// The store could not be asked (Redis unreachable, timed out, or answering errors).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(pub String);

/// Throttling state. An attempt is counted as a failure when it is let through (so that
/// attempts in flight at once, on any replica, cannot exceed a limit), and given back by
/// [`Store::refund`] or [`Store::success`] when Kratos's answer was not a failure.
pub trait Store: Send + Sync {
    /// Whether a submission may go on. When it may, one unit of the network's rate is used
    /// and the attempt is counted on every counter of `q`, all in one atomic step.
    fn attempt(
        &self,
        q: &Query,
        l: &Limits,
    ) -> impl Future<Output = Result<(Hit, Counts), StoreError>> + Send;
    /// The attempt was not a failure (Kratos answered something else): counted back.
    fn refund(&self, q: &Query, l: &Limits) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// A successful login: the identifier's counters go, the network's attempt is counted
    /// back and the network becomes known for the identifier.
    fn success(&self, q: &Query, l: &Limits)
        -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Microseconds since the store was made (never 0).
#[derive(Debug, Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Counter(Counter),
    /// The rate limit's theoretical arrival time.
    Tat(u64),
    /// Known until then.
    Known(u64),
}

/// The in-process store: a bounded cache (TinyLFU admission, so a flood of new keys does
/// not push out the counters being hit). Entries carry their own expiry, checked on every
/// read; an expired one is as good as absent and is dropped when the cache needs the room.
pub struct MemoryStore {
    cache: Cache<Key, Slot>,
    clock: Clock,
    /// One attempt's check and counts (and a refund or reset) happen as one step, as a Redis
    /// script does: two attempts at once cannot both see a counter below its limit.
    step: std::sync::Mutex<()>,
}

impl MemoryStore {
    pub fn new(capacity: u64) -> MemoryStore {
        let clock = Clock(Instant::now());
        MemoryStore {
            cache: Cache::builder().max_capacity(capacity).build(),
            clock,
            step: std::sync::Mutex::new(()),
        }
    }

    /// Entries held (after pending evictions are applied).
    pub fn len(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wait(&self, key: &Key, now: u64) -> u64 {
        match self.cache.get(key) {
            Some(Slot::Counter(c)) => c.retry_after(now).unwrap_or(0),
            _ => 0,
        }
    }

    fn known(&self, key: &Key, now: u64) -> bool {
        matches!(self.cache.get(key), Some(Slot::Known(until)) if until > now)
    }

    fn one_step(&self) -> std::sync::MutexGuard<'_, ()> {
        self.step.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn attempt_now(&self, q: &Query, l: &Limits) -> (Hit, Counts) {
        let _step = self.one_step();
        let now = self.clock.now();
        let mut hit = (0, Scope::Network);
        let mut consider = |wait: u64, scope| {
            if wait > hit.0 {
                hit = (wait, scope);
            }
        };
        if let Some(k) = &q.pair {
            consider(self.wait(k, now), Scope::IdentifierAndNetwork);
        }
        if let Some(k) = &q.identifier {
            if !q.known.is_some_and(|known| self.known(&known, now)) {
                consider(self.wait(k, now), Scope::Identifier);
            }
        }
        if q.count_network {
            consider(self.wait(&q.network, now), Scope::Network);
        }
        if hit.0 > 0 {
            let refused = Hit::Refused {
                scope: hit.1,
                wait: hit.0,
            };
            return (refused, Counts::default());
        }
        if let (Some(key), Some(rate)) = (q.rate, l.rate) {
            let mut refused = None;
            self.cache.entry(key).and_compute_with(|entry| {
                let tat = match entry.map(|e| e.into_value()) {
                    Some(Slot::Tat(t)) => Some(t),
                    _ => None,
                };
                match rules::gcra(tat, now, &rate) {
                    Ok(t) => Op::Put(Slot::Tat(t)),
                    Err(wait) => {
                        refused = Some(wait);
                        Op::Nop
                    }
                }
            });
            if let Some(wait) = refused {
                let refused = Hit::Refused {
                    scope: Scope::RateLimit,
                    wait,
                };
                return (refused, Counts::default());
            }
        }
        let network = q.count_network.then_some(q.network);
        let counts = Counts {
            pair: self.count(q.pair, &l.pair, now),
            identifier: self.count(q.identifier, &l.identifier, now),
            network: self.count(network, &l.network, now),
        };
        (Hit::Allowed, counts)
    }

    fn count(&self, key: Option<Key>, limit: &Limit, now: u64) -> u32 {
        let Some(key) = key else {
            return 0;
        };
        let mut after = Counter::default();
        self.cache.entry(key).and_compute_with(|entry| {
            let prev = match entry.map(|e| e.into_value()) {
                Some(Slot::Counter(c)) => Some(c),
                _ => None,
            };
            after = rules::record_failure(prev, now, limit);
            Op::Put(Slot::Counter(after))
        });
        after.failures
    }

    fn give_back(&self, key: Option<Key>, limit: &Limit, now: u64) {
        let Some(key) = key else {
            return;
        };
        self.cache.entry(key).and_compute_with(|entry| {
            let prev = match entry.map(|e| e.into_value()) {
                Some(Slot::Counter(c)) => Some(c),
                _ => return Op::Nop,
            };
            match rules::refund(prev, now, limit) {
                Some(c) => Op::Put(Slot::Counter(c)),
                None => Op::Remove,
            }
        });
    }

    fn refund_now(&self, q: &Query, l: &Limits) {
        let _step = self.one_step();
        let now = self.clock.now();
        self.give_back(q.pair, &l.pair, now);
        self.give_back(q.identifier, &l.identifier, now);
        self.give_back(q.count_network.then_some(q.network), &l.network, now);
    }

    fn success_now(&self, q: &Query, l: &Limits) {
        let _step = self.one_step();
        for key in [q.pair, q.identifier].into_iter().flatten() {
            self.cache.invalidate(&key);
        }
        let now = self.clock.now();
        self.give_back(q.count_network.then_some(q.network), &l.network, now);
        if let Some(known) = q.known.filter(|_| l.remember > 0) {
            self.cache
                .insert(known, Slot::Known(now.saturating_add(l.remember)));
        }
    }
}

impl Store for MemoryStore {
    async fn attempt(&self, q: &Query, l: &Limits) -> Result<(Hit, Counts), StoreError> {
        Ok(self.attempt_now(q, l))
    }
    async fn refund(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        self.refund_now(q, l);
        Ok(())
    }
    async fn success(&self, q: &Query, l: &Limits) -> Result<(), StoreError> {
        self.success_now(q, l);
        Ok(())
    }
}
