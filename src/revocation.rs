//! Revocation runs off the request path: a bounded queue, de-duplicated per target, with
//! bounded concurrency and retries with exponential backoff until Kratos confirms or the
//! process stops.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashSet;
use tokio::sync::{mpsc, watch, Semaphore};
use uuid::Uuid;

use crate::kratos::KratosClient;
use crate::metrics::Metrics;

/// What to revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// `DELETE /admin/sessions/{id}`.
    Session(Uuid),
    /// `DELETE /admin/identities/{id}/sessions`.
    IdentitySessions(Uuid),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Session(id) => write!(f, "session {id}"),
            Target::IdentitySessions(id) => write!(f, "all sessions of identity {id}"),
        }
    }
}

/// Hands revocations to the background worker. At most `queue_capacity` revocations are
/// queued or retrying at once.
#[derive(Clone)]
pub struct Revoker {
    tx: mpsc::Sender<Target>,
    pending: Arc<DashSet<Target>>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl Revoker {
    /// Queues a revocation unless the same one is already queued or running.
    pub fn revoke(&self, target: Target) {
        if self.pending.contains(&target) {
            return;
        }
        if self.pending.len() >= self.capacity {
            self.metrics.revocation("dropped");
            tracing::error!(%target, capacity = self.capacity, "revocation queue full; revocation dropped");
            return;
        }
        if !self.pending.insert(target) {
            return;
        }
        match self.tx.try_send(target) {
            Ok(()) => {
                self.metrics.revocation_queue.inc();
            }
            Err(e) => {
                self.pending.remove(&target);
                self.metrics.revocation("dropped");
                tracing::error!(%target, error = %e, "revocation queue full or closed; revocation dropped");
            }
        }
    }
}

pub struct RevocationSettings {
    pub queue_capacity: usize,
    pub concurrency: usize,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// Starts the worker; it runs until `stop` turns true.
pub fn start(
    client: KratosClient,
    settings: RevocationSettings,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> (Revoker, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.queue_capacity.max(1));
    let pending = Arc::new(DashSet::new());
    let revoker = Revoker {
        tx,
        pending: Arc::clone(&pending),
        capacity: settings.queue_capacity.max(1),
        metrics: Arc::clone(&metrics),
    };
    let task = tokio::spawn(run(rx, client, settings, pending, metrics, stop));
    (revoker, task)
}

async fn run(
    mut rx: mpsc::Receiver<Target>,
    client: KratosClient,
    settings: RevocationSettings,
    pending: Arc<DashSet<Target>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let settings = Arc::new(settings);
    let mut workers = tokio::task::JoinSet::new();
    loop {
        let target = tokio::select! {
            t = rx.recv() => match t { Some(t) => t, None => break },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() { break } else { continue }
            }
        };
        let client = client.clone();
        let permits = Arc::clone(&permits);
        let pending = Arc::clone(&pending);
        let metrics = Arc::clone(&metrics);
        let settings = Arc::clone(&settings);
        let stop = stop.clone();
        workers.spawn(async move {
            revoke_until_done(&client, target, &permits, &settings, &metrics, stop).await;
            pending.remove(&target);
            metrics.revocation_queue.dec();
        });
        // Reap finished workers so the set does not grow.
        while workers.try_join_next().is_some() {}
    }
    workers.abort_all();
    while workers.join_next().await.is_some() {}
}

async fn revoke_until_done(
    client: &KratosClient,
    target: Target,
    permits: &Semaphore,
    settings: &RevocationSettings,
    metrics: &Metrics,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = settings.initial_backoff;
    let mut attempt: u32 = 1;
    loop {
        let result = {
            let Ok(_permit) = permits.acquire().await else {
                return;
            };
            match target {
                Target::Session(id) => client.revoke_session(id).await,
                Target::IdentitySessions(id) => client.revoke_identity_sessions(id).await,
            }
        };
        match result {
            Ok(()) => {
                metrics.revocation("success");
                tracing::info!(target: "kratos_gate::audit", event = "revoked", %target, attempt, "revoked at Kratos");
                return;
            }
            Err(e) => {
                metrics.revocation("retry");
                tracing::warn!(%target, attempt, error = %e, retry_in = ?backoff, "revocation failed; will retry");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => {
                if *stop.borrow() {
                    tracing::error!(%target, "shutting down with a revocation still failing");
                    return;
                }
            }
        }
        backoff = (backoff * 2).min(settings.max_backoff);
        attempt = attempt.saturating_add(1);
    }
}
