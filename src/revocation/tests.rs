//! The revocation queue's rules against a fake admin API: retries with backoff until Kratos
//! confirms, de-duplication per target, a bounded queue, a clean stop.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use tokio::sync::{watch, Notify};

use super::*;
use crate::testing::{self, reply, Server};

const A: &str = "5ff66179-c240-4703-b0d8-494592cefff5";
const B: &str = "8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b";
const WAIT: Duration = Duration::from_secs(10);

fn id(s: &str) -> Uuid {
    Uuid::parse_str(s).expect("uuid")
}

fn settings(capacity: usize, initial: Duration, max: Duration) -> RevocationSettings {
    RevocationSettings {
        queue_capacity: capacity,
        concurrency: 4,
        rate_per_second: 1000,
        initial_backoff: initial,
        max_backoff: max,
        journal: None,
    }
}

struct Queue {
    revoker: Revoker,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_queue(kratos: &Server, settings: RevocationSettings) -> Queue {
    let config = testing::config(&kratos.url(), &kratos.url(), "");
    let metrics = Arc::new(Metrics::new());
    let (stop, stop_rx) = watch::channel(false);
    let (revoker, task) = start(
        testing::kratos_client(&config, None),
        settings,
        Arc::clone(&metrics),
        stop_rx,
    )
    .expect("start");
    Queue {
        revoker,
        metrics,
        stop,
        task,
    }
}

impl Queue {
    /// Waits until nothing is queued, retrying or under way.
    async fn settled(&self) {
        tokio::time::timeout(WAIT, async {
            while !self.revoker.pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the queue settles");
    }

    fn count(&self, result: &str) -> u64 {
        let text = self.metrics.encode();
        let wanted = format!("result=\"{result}\"}}");
        text.lines()
            .filter(|l| l.starts_with("kratos_gate_revocations_total") && l.contains(&wanted))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

#[test]
fn the_backoff_doubles_up_to_its_bound() {
    let max = Duration::from_secs(30);
    let mut b = Duration::from_millis(200);
    let mut seen = Vec::new();
    for _ in 0..10 {
        seen.push(b.as_millis());
        b = next_backoff(b, max);
    }
    assert_eq!(
        seen,
        [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
    );
    assert_eq!(next_backoff(Duration::MAX, max), max);
}

#[tokio::test]
async fn a_failing_revocation_is_retried_after_growing_waits_until_kratos_confirms() {
    let times: Arc<Mutex<Vec<std::time::Instant>>> = Arc::default();
    let record = Arc::clone(&times);
    let kratos = Server::start(move |_| {
        let mut t = record.lock().expect("lock");
        t.push(std::time::Instant::now());
        if t.len() <= 3 {
            reply(503, "")
        } else {
            reply(204, "")
        }
    })
    .await;
    let q = start_queue(
        &kratos,
        settings(10, Duration::from_millis(20), Duration::from_millis(50)),
    );
    q.revoker.revoke(Target::Session(id(A)));
    q.settled().await;

    let times = times.lock().expect("lock").clone();
    assert_eq!(times.len(), 4, "three failures, then the confirmation");
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, least) in gaps.iter().zip([20u64, 40, 50]) {
        assert!(
            *gap >= Duration::from_millis(least),
            "waited {gap:?}, at least {least} ms expected: {gaps:?}"
        );
    }
    assert_eq!(q.count("retry"), 3);
    assert_eq!(q.count("success"), 1);
    assert!(kratos
        .seen()
        .iter()
        .all(|s| s.target() == format!("/admin/sessions/{A}")));
}

#[tokio::test]
async fn the_same_target_asked_for_twice_before_its_attempt_is_revoked_once() {
    let kratos = Server::start(|_| reply(204, "")).await;
    let q = start_queue(
        &kratos,
        settings(10, Duration::from_millis(10), Duration::from_millis(10)),
    );
    for _ in 0..5 {
        q.revoker.revoke(Target::IdentitySessions(id(A)));
    }
    q.revoker.revoke(Target::Session(id(B)));
    q.settled().await;
    let mut targets: Vec<String> = kratos.seen().iter().map(|s| s.target()).collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            format!("/admin/identities/{A}/sessions"),
            format!("/admin/sessions/{B}")
        ]
    );
}

/// An admin API that holds each request until the test lets it answer (204).
struct HeldKratos {
    server: Server,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
    calls: Arc<AtomicUsize>,
}

impl HeldKratos {
    async fn start() -> HeldKratos {
        let (arrived, release, calls): (Arc<Notify>, Arc<Notify>, Arc<AtomicUsize>) =
            Default::default();
        let (a, r, c) = (
            Arc::clone(&arrived),
            Arc::clone(&release),
            Arc::clone(&calls),
        );
        let server = Server::streaming(move |_req: Request<Incoming>| {
            let (arrived, release, calls) = (Arc::clone(&a), Arc::clone(&r), Arc::clone(&c));
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                arrived.notify_one();
                release.notified().await;
                reply(204, "")
            }
        })
        .await;
        HeldKratos {
            server,
            arrived,
            release,
            calls,
        }
    }

    /// Waits for the next request to arrive.
    async fn arrival(&self, what: &str) {
        tokio::time::timeout(WAIT, self.arrived.notified())
            .await
            .expect(what);
    }

    /// Lets the request being held answer.
    fn answer(&self) {
        self.release.notify_one();
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[tokio::test]
async fn asked_for_again_while_its_attempt_is_under_way_the_target_is_revoked_once_more() {
    let kratos = HeldKratos::start().await;
    let q = start_queue(
        &kratos.server,
        settings(10, Duration::from_millis(10), Duration::from_millis(10)),
    );
    q.revoker.revoke(Target::Session(id(A)));
    kratos.arrival("first attempt").await;
    // A session created meanwhile may have been missed by the attempt under way.
    q.revoker.revoke(Target::Session(id(A)));
    q.revoker.revoke(Target::Session(id(A)));
    kratos.answer();
    kratos.arrival("second attempt").await;
    kratos.answer();
    q.settled().await;
    assert_eq!(kratos.calls(), 2);
    assert_eq!(q.count("success"), 2);
}

#[tokio::test]
async fn a_full_queue_drops_new_targets_but_still_takes_known_ones() {
    let kratos = HeldKratos::start().await;
    let q = start_queue(
        &kratos.server,
        settings(1, Duration::from_millis(10), Duration::from_millis(10)),
    );
    q.revoker.revoke(Target::Session(id(A)));
    kratos.arrival("first attempt").await;
    q.revoker.revoke(Target::Session(id(B)));
    assert_eq!(q.count("dropped"), 1);
    // The known target is not a new entry: it is taken (and tried again).
    q.revoker.revoke(Target::Session(id(A)));
    assert_eq!(q.count("dropped"), 1);
    kratos.answer();
    kratos.arrival("second attempt").await;
    kratos.answer();
    q.settled().await;
    assert_eq!(kratos.calls(), 2);
}

#[tokio::test]
async fn an_address_is_revoked_through_each_identity_that_logs_in_with_it() {
    let kratos = Server::start(|seen| {
        if seen.method == http::Method::GET {
            if seen.target().contains("nobody") {
                reply(200, "[]")
            } else {
                reply(
                    200,
                    "[{\"id\":\"5ff66179-c240-4703-b0d8-494592cefff5\"},{\"id\":\"8e0c6f7a-4f3b-4d8e-9b0a-1c2d3e4f5a6b\"}]",
                )
            }
        } else {
            reply(204, "")
        }
    })
    .await;
    let q = start_queue(
        &kratos,
        settings(10, Duration::from_millis(10), Duration::from_millis(10)),
    );
    q.revoker
        .revoke(Target::IdentifierSessions("listed@example.com".to_owned()));
    q.revoker
        .revoke(Target::IdentifierSessions("nobody@example.com".to_owned()));
    q.settled().await;
    let deletes: Vec<String> = kratos
        .seen()
        .iter()
        .filter(|s| s.method == http::Method::DELETE)
        .map(|s| s.target())
        .collect();
    assert_eq!(
        deletes,
        [
            format!("/admin/identities/{A}/sessions"),
            format!("/admin/identities/{B}/sessions")
        ]
    );
}

#[tokio::test]
async fn stopping_ends_the_retries_of_a_revocation_that_keeps_failing() {
    let kratos = Server::start(|_| reply(500, "")).await;
    let q = start_queue(
        &kratos,
        settings(10, Duration::from_millis(10), Duration::from_millis(10)),
    );
    q.revoker.revoke(Target::Session(id(A)));
    tokio::time::timeout(WAIT, async {
        while kratos.seen().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("retried");
    q.stop.send(true).expect("stop");
    tokio::time::timeout(WAIT, q.task)
        .await
        .expect("the worker stops")
        .expect("task");
    let calls = kratos.seen().len();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(kratos.seen().len(), calls, "no attempt after the stop");
}

#[tokio::test]
async fn while_kratos_fails_only_a_bounded_number_of_revocations_wait_to_retry() {
    let kratos = Server::start(|_| reply(500, "")).await;
    let mut s = settings(1000, Duration::from_secs(3600), Duration::from_secs(3600));
    s.concurrency = 1;
    let q = start_queue(&kratos, s);
    let ids: Vec<Uuid> = (0..200u128).map(Uuid::from_u128).collect();
    for i in &ids {
        q.revoker.revoke(Target::Session(*i));
    }
    let cap = TASKS_PER_PERMIT;
    tokio::time::timeout(WAIT, async {
        while kratos.seen().len() < cap {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first attempts");
    // Each of those now waits an hour to retry; the others stay queued, not started.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(kratos.seen().len(), cap);
    assert_eq!(
        q.revoker.pending.len(),
        ids.len(),
        "every target still pending"
    );
    q.stop.send(true).expect("stop");
    tokio::time::timeout(WAIT, q.task)
        .await
        .expect("the worker stops")
        .expect("task");
}
