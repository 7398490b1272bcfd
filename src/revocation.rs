//! Revocation runs off the request path: a bounded queue, de-duplicated per target, with
//! bounded concurrency, a rate limit, and retries with exponential backoff until Kratos
//! confirms or the process stops. Every call is idempotent at Kratos (404 = nothing left), so
//! several replicas revoking the same thing is harmless.
//!
//! De-duplication never swallows a request: a revocation asked for while the same one is
//! queued is covered by the attempt still to come, and one asked for after an attempt has
//! been sent (which may have missed a session created since) gets one more attempt.
//!
//! With `revocation.journal` set, every revocation accepted into the queue and every one
//! Kratos confirmed is written to a journal ([`journal`]), and the pending ones are queued
//! again at start-up: a crash, a `kill -9` or a restart loses none (beyond the last few
//! milliseconds, see [`journal`]). A graceful shutdown leaves the unconfirmed ones in the
//! journal too.

pub mod journal;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use uuid::Uuid;

use crate::kratos::KratosClient;
use crate::metrics::Metrics;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// `DELETE /admin/sessions/{id}`.
    Session(Uuid),
    /// `DELETE /admin/identities/{id}/sessions`.
    IdentitySessions(Uuid),
    /// Every identity whose login identifier is this address
    /// (`GET /admin/identities?credentials_identifier=`), then as `IdentitySessions`.
    IdentifierSessions(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Session(id) => write!(f, "session {id}"),
            Target::IdentitySessions(id) => write!(f, "all sessions of identity {id}"),
            Target::IdentifierSessions(email) => write!(f, "all sessions of {email}"),
        }
    }
}

/// Hands revocations to the background worker. At most `queue_capacity` revocations are
/// queued or retrying at once.
#[derive(Clone)]
pub struct Revoker {
    tx: mpsc::Sender<Target>,
    pending: Arc<Pending>,
    capacity: usize,
    metrics: Arc<Metrics>,
    drops: Arc<Mutex<DropLog>>,
    journal: Option<journal::Appender>,
}

/// Drops beyond the first are logged at most once a second, with their count: a reload that
/// adds a million ids would otherwise write a line per id it could not queue.
struct DropLog {
    last: Option<Instant>,
    unlogged: u64,
}

/// Revocations queued, waiting for a retry or under way, each with whether it was asked for
/// again after its current attempt was sent.
type Pending = DashMap<Target, bool>;

impl Revoker {
    /// Queues a revocation. If the same one is already queued, the attempt still to come
    /// covers this request; if an attempt is already under way, another one follows it.
    pub fn revoke(&self, target: Target) {
        self.enqueue(target, true);
    }

    /// Queues a revocation; `journal`: write it to the journal (not for one replayed from it,
    /// which the journal already holds).
    fn enqueue(&self, target: Target, journal: bool) {
        if let Some(mut again) = self.pending.get_mut(&target) {
            *again = true;
            return;
        }
        if self.pending.len() >= self.capacity {
            self.metrics.revocation("dropped");
            self.log_drop(&target);
            return;
        }
        match self.pending.entry(target.clone()) {
            Entry::Occupied(mut e) => {
                *e.get_mut() = true;
            }
            Entry::Vacant(e) => {
                // The entry's lock is held until the insert: the worker, which takes the same
                // lock to confirm a target and journal its `-`, cannot get between this `+`
                // and the insert, so the journal's order per target is the queue's order.
                match self.tx.try_send(target.clone()) {
                    Ok(()) => {
                        if let (true, Some(j)) = (journal, &self.journal) {
                            j.accepted(&target);
                        }
                        e.insert(false);
                        self.metrics.revocation_queue.inc();
                    }
                    Err(err) => {
                        drop(e);
                        self.metrics.revocation("dropped");
                        tracing::error!(revocation = %target, error = %err, "revocation queue closed or full; revocation dropped");
                    }
                }
            }
        }
    }

    fn log_drop(&self, target: &Target) {
        let mut log = self.drops.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if log
            .last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            log.unlogged += 1;
            return;
        }
        let also = std::mem::take(&mut log.unlogged);
        log.last = Some(now);
        drop(log);
        tracing::error!(revocation = %target, capacity = self.capacity, also_dropped_before = also, "revocation queue full; revocation dropped");
    }
}

pub struct RevocationSettings {
    pub queue_capacity: usize,
    pub concurrency: usize,
    pub rate_per_second: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// `revocation.journal`: the directory of the journal that makes pending revocations
    /// survive a crash; `None`: in memory only.
    pub journal: Option<std::path::PathBuf>,
}

/// Spaces admin calls at least `interval` apart, across all workers.
struct Pacer {
    interval: Duration,
    next: Mutex<Instant>,
}

impl Pacer {
    async fn wait_turn(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

struct Worker {
    client: KratosClient,
    settings: RevocationSettings,
    permits: Semaphore,
    pacer: Pacer,
    metrics: Arc<Metrics>,
    pending: Arc<Pending>,
    confirmed: AtomicU64,
    journal: Option<journal::Appender>,
}

/// Starts the worker; it runs until `stop` turns true. With `settings.journal`, first opens
/// the journal (creating its directory) and queues the revocations it holds again; an error
/// means the journal cannot be used, and the gateway must not start.
///
/// Reading and rewriting the journal is blocking file I/O, done once here at start-up.
pub fn start(
    client: KratosClient,
    settings: RevocationSettings,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(Revoker, tokio::task::JoinHandle<()>), String> {
    let capacity = settings.queue_capacity.max(1);
    let opened = match &settings.journal {
        Some(dir) => Some(journal::open(dir, capacity)?),
        None => None,
    };
    let (tx, rx) = mpsc::channel(capacity);
    let pending = Arc::new(Pending::new());
    let appender = opened.as_ref().map(|o| o.appender.clone());
    let revoker = Revoker {
        tx,
        pending: Arc::clone(&pending),
        capacity,
        metrics: Arc::clone(&metrics),
        drops: Arc::new(Mutex::new(DropLog {
            last: None,
            unlogged: 0,
        })),
        journal: appender.clone(),
    };
    if let (Some(o), Some(dir)) = (opened, &settings.journal) {
        requeue(&revoker, o, dir);
    }
    let worker = Arc::new(Worker {
        client,
        permits: Semaphore::new(settings.concurrency.max(1)),
        pacer: Pacer {
            interval: Duration::from_secs(1) / settings.rate_per_second.max(1),
            next: Mutex::new(Instant::now()),
        },
        settings,
        metrics,
        pending,
        confirmed: AtomicU64::new(0),
        journal: appender,
    });
    let task = tokio::spawn(run(rx, worker, stop));
    Ok((revoker, task))
}

/// Queues the journal's pending revocations again (they are in the journal already).
fn requeue(revoker: &Revoker, opened: journal::Opened, dir: &std::path::Path) {
    if opened.torn {
        tracing::warn!(dir = %dir.display(), "revocation journal: ignored a last line cut short by a crash");
    }
    if opened.malformed > 0 {
        tracing::warn!(dir = %dir.display(), lines = opened.malformed, "revocation journal: ignored lines that are not revocations");
    }
    let n = opened.requeue.len();
    for target in opened.requeue {
        revoker.enqueue(target, false);
    }
    if !opened.dropped.is_empty() {
        revoker
            .metrics
            .revocations
            .get_or_create(&crate::metrics::ResultLabels { result: "dropped" })
            .inc_by(opened.dropped.len() as u64);
        tracing::error!(dir = %dir.display(), dropped = opened.dropped.len(), capacity = revoker.capacity, first = %opened.dropped.first().map(|t| t.to_string()).unwrap_or_default(), "revocation journal holds more pending revocations than revocation.queue_capacity; revocations dropped");
    }
    tracing::info!(dir = %dir.display(), requeued = n, "revocation journal: pending revocations from before the restart queued again");
}

/// The wait after a failed attempt that waited `backoff`: doubled, at most `max`.
fn next_backoff(backoff: Duration, max: Duration) -> Duration {
    backoff.saturating_mul(2).min(max)
}

/// Revocations under way (a call, or the wait before a retry) per permit of
/// `revocation.concurrency`; the rest wait in the queue as targets of a few bytes. A task
/// that retries holds about 2 KB: 65,536 of them (a million-id import while Kratos's admin API
/// is down) would hold over 120 MB.
const TASKS_PER_PERMIT: usize = 32;

async fn run(mut rx: mpsc::Receiver<Target>, worker: Arc<Worker>, mut stop: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    let max_tasks = worker.settings.concurrency.max(1) * TASKS_PER_PERMIT;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = 0u64;
    loop {
        let target = tokio::select! {
            t = rx.recv(), if tasks.len() < max_tasks => match t { Some(t) => t, None => break },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = progress.tick() => {
                let confirmed = worker.confirmed.load(Ordering::Relaxed);
                let pending = worker.pending.len();
                if confirmed != reported || pending > 0 {
                    tracing::info!(confirmed_since_last = confirmed - reported, confirmed_total = confirmed, pending, "revocation progress");
                    reported = confirmed;
                }
                continue;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() { break } else { continue }
            }
        };
        let w = Arc::clone(&worker);
        let stop = stop.clone();
        tasks.spawn(async move {
            w.revoke_until_done(&target, stop).await;
            w.metrics.revocation_queue.dec();
        });
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    let left = worker.pending.len();
    if left > 0 {
        tracing::warn!(
            pending = left,
            "stopping with revocations not yet confirmed"
        );
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    // Every `+` and `-` so far on disk before the process exits (bounded: a hung disk must
    // not hang the shutdown).
    if let Some(j) = &worker.journal {
        if tokio::time::timeout(Duration::from_secs(5), j.sync())
            .await
            .is_err()
        {
            tracing::error!("revocation journal not written within 5 s of the shutdown");
        }
    }
}

impl Worker {
    async fn call(&self, target: &Target) -> Result<usize, crate::kratos::LookupError> {
        // Take a turn first, then a permit: permits are held only while a call is in flight.
        self.pacer.wait_turn().await;
        let _permit = self.permits.acquire().await;
        // This attempt covers every request for the target made until now.
        if let Some(mut again) = self.pending.get_mut(target) {
            *again = false;
        }
        let started = std::time::Instant::now();
        let result = self.attempt(target).await;
        self.metrics.observe_revocation(started.elapsed());
        result
    }

    /// The admin API calls of one revocation attempt.
    /// Returns how many revocations Kratos was asked for (none for an address no identity
    /// logs in with).
    async fn attempt(&self, target: &Target) -> Result<usize, crate::kratos::LookupError> {
        match target {
            Target::Session(id) => self.client.revoke_session(*id).await.map(|()| 1),
            Target::IdentitySessions(id) => {
                self.client.revoke_identity_sessions(*id).await.map(|()| 1)
            }
            Target::IdentifierSessions(email) => {
                let ids = self.client.identities_by_identifier(email).await?;
                for owner in &ids {
                    self.pacer.wait_turn().await;
                    self.client.revoke_identity_sessions(owner.id).await?;
                }
                Ok(ids.len())
            }
        }
    }

    /// Calls until Kratos confirms an attempt sent after the last request for `target`, then
    /// forgets the target (also when stopping).
    async fn revoke_until_done(&self, target: &Target, mut stop: watch::Receiver<bool>) {
        let mut backoff = self.settings.initial_backoff;
        let mut attempt: u32 = 1;
        loop {
            match self.call(target).await {
                Ok(asked) => {
                    self.metrics.revocation("success");
                    self.confirmed.fetch_add(1, Ordering::Relaxed);
                    if asked > 0 {
                        tracing::info!(target: "kratos_gate::audit", event = "revoked", revocation = %target, attempt, "revoked at Kratos");
                    } else {
                        tracing::info!(revocation = %target, "no identity logs in with this address; nothing to revoke");
                    }
                    // Asked for again while this attempt was under way: it may have missed
                    // a session created meanwhile, so go once more.
                    // The `-` is journaled under the entry's lock, before a new request for the
                    // target can enter the queue and journal its `+`.
                    let done = self.pending.remove_if(target, |_, again| {
                        if !*again {
                            if let Some(j) = &self.journal {
                                j.confirmed(target);
                            }
                        }
                        !*again
                    });
                    if done.is_some() {
                        return;
                    }
                    attempt = attempt.saturating_add(1);
                    continue;
                }
                Err(e) => {
                    self.metrics.revocation("retry");
                    tracing::warn!(revocation = %target, attempt, error = %e, retry_in = ?backoff, "revocation failed; will retry");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => {
                    if *stop.borrow() {
                        // Not confirmed: it stays pending in the journal, for the next start.
                        tracing::error!(revocation = %target, journaled = self.journal.is_some(), "shutting down with a revocation still failing");
                        self.pending.remove(target);
                        return;
                    }
                }
            }
            backoff = next_backoff(backoff, self.settings.max_backoff);
            attempt = attempt.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests;
