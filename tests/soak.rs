//! Soak: concurrent clients log in natively and call whoami for a mix of identities while the
//! blocklist is rewritten many times (adding and removing those identities) and explicit
//! reloads (what SIGHUP does) arrive. Afterwards:
//!
//! - no response carried a credential (a login's token, a whoami's 200) for an identity that
//!   was listed over the whole time the response was in flight;
//! - every request made entirely while its identity was unlisted succeeded with its
//!   credential (a whoami may instead get Kratos's own 401 when Kratos had already ended
//!   that session, through a revocation from an earlier listing that arrived late; the fake
//!   records when it ended each session, and such answers are counted);
//! - every caught session (a refused login, a whoami answered 401) was revoked at Kratos, and
//!   no session of an identity listed at the end is alive there;
//! - the test process's resident memory at the end is within a bound of that at the start.
//!
//! "Listed over an interval" is judged against the list in force at the gateway: each
//! rewrite records the time just before the file is replaced and the time the gateway is
//! seen to have swapped it in. Between those two instants either list may be in force, so an
//! identity counts as listed (or unlisted) there only if both lists agree; a response that
//! straddles a change may go either way and is only counted.
//!
//! Size with `SOAK_SECONDS` (default 5) and `SOAK_CLIENTS` (default 8); the default run is
//! part of `cargo test`. A long run:
//!
//! ```sh
//! SOAK_SECONDS=300 SOAK_CLIENTS=64 cargo test --release --test soak -- --nocapture
//! ```
//!
//! Runs on the shared 2-core development machine (2026-11-27, release build):
//! `SOAK_SECONDS=240 SOAK_CLIENTS=64`: 463,151 requests (308,238 logins, 154,913 whoami),
//! 290,099 credentials out, 173,052 refused; 106,008 responses checked while listed,
//! 210,256 while unlisted, 146,887 straddling one of 1,549 rewrites (plus 4,844 explicit
//! reloads); 199,675 revocations confirmed, none dropped; RSS 32 MiB after warm-up, flat
//! at 56-57 MiB from the 20th second on. An earlier 240 s run at 719,280 requests asked
//! for revocations faster than `revocation.rate_per_second` (1000/s): the queue held about
//! 10,000, a caught session stayed alive at Kratos for 10 s and more, and RSS followed the
//! queue's high-water mark (83 MiB), flat otherwise.

// Public: the parts of the shared support soak does not use are used, and checked, in tests/it.
pub mod support;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use uuid::Uuid;

use support::client::{self, TestClient};
use support::enforcement::{metric, wait_until};
use support::fake_kratos::{
    fresh_token, fresh_uuid, FakeKratos, RecordedCall, Reply, SessionSpec, Side,
};
use support::fixtures;
use support::gateway::{blocklist_of, replace_atomically, start_gateway_with, TestGateway};

/// Time after a response for its revocation to reach Kratos before it is checked.
const SETTLE: Duration = Duration::from_secs(2);
/// A caught session still alive this long after it was caught fails the run at once. Under
/// a big run the revocations outpace `revocation.rate_per_second` (1000/s by default) and
/// queue up, so this is generous; the final check, after the queue has drained, is the
/// strict one.
const CAUGHT_DEADLINE: Duration = Duration::from_secs(60);
/// Longest any single request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Resident memory may grow by at most this much over the run.
const RSS_GROWTH_BOUND_KIB: u64 = 64 * 1024;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// xorshift64*: enough randomness for picking identities and pauses.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        Rng((fresh_uuid().as_u128() as u64) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------
// The list's history
// ---------------------------------------------------------------------------------------

/// One rewrite of the blocklist: replaced at `written`, seen in force at `applied`.
struct Change {
    written: Instant,
    applied: Option<Instant>,
    listed: Arc<HashSet<Uuid>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Listed,
    Unlisted,
    /// A change of this identity's status may have happened within the interval.
    Straddles,
}

#[derive(Default)]
struct History {
    changes: Vec<Change>,
}

impl History {
    /// Whether `id` was listed over all of `[from, to]`, unlisted over all of it, or either.
    fn status(&self, id: Uuid, from: Instant, to: Instant) -> Status {
        let (mut listed_all, mut unlisted_all) = (true, true);
        let mut visit = |sets: &[&HashSet<Uuid>]| {
            for set in sets {
                if set.contains(&id) {
                    unlisted_all = false;
                } else {
                    listed_all = false;
                }
            }
        };
        for (i, c) in self.changes.iter().enumerate() {
            let prev = match i.checked_sub(1) {
                Some(p) => &self.changes[p].listed,
                None => &c.listed,
            };
            // Transition [written, applied]: either list may be in force (open-ended while
            // the change has not been seen in force yet).
            let t_end = c.applied.unwrap_or_else(far_future);
            if c.written <= to && from <= t_end {
                visit(&[prev, &c.listed]);
            }
            // Stable [applied, next written]: this list is in force.
            if let Some(applied) = c.applied {
                let s_end = self
                    .changes
                    .get(i + 1)
                    .map_or_else(far_future, |n| n.written);
                if applied <= to && from <= s_end {
                    visit(&[&c.listed]);
                }
            }
        }
        match (listed_all, unlisted_all) {
            (true, false) => Status::Listed,
            (false, true) => Status::Unlisted,
            _ => Status::Straddles,
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

// ---------------------------------------------------------------------------------------
// What the clients saw
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Login: 200 with the session token. Whoami: 200 naming the identity.
    Credential,
    /// Login: 403 `identity_disabled`. Whoami: Kratos's exact 401.
    Refused,
    Other(u16, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Login,
    Whoami,
}

#[derive(Debug, Clone)]
struct Record {
    kind: Kind,
    identity: Uuid,
    session: Uuid,
    /// When the session was registered at the fake Kratos.
    created: Instant,
    start: Instant,
    end: Instant,
    outcome: Outcome,
}

#[derive(Default)]
struct Stats {
    requests: AtomicU64,
    logins: AtomicU64,
    whoamis: AtomicU64,
    credentials_out: AtomicU64,
    refused: AtomicU64,
    straddling: AtomicU64,
    checked_listed: AtomicU64,
    checked_unlisted: AtomicU64,
    whoami_401_after_revocation: AtomicU64,
    list_changes: AtomicU64,
    explicit_reloads: AtomicU64,
}

/// Everything the verifier keeps between passes.
#[derive(Default)]
struct Verifier {
    /// Records waiting for `SETTLE` to pass.
    records: VecDeque<Record>,
    /// Caught sessions not yet seen dead at the fake.
    caught: Vec<Record>,
    /// Sessions checked, still registered at the fake: removed once dead.
    live: Vec<(Uuid, Uuid)>,
    /// When the fake's admin API ended each session (revoked or deleted it).
    ended: HashMap<Uuid, Instant>,
    /// Identity-wide DELETE calls seen at the fake (for failure reports).
    identity_deletes: HashMap<Uuid, Vec<Instant>>,
    failures: Vec<String>,
}

impl Verifier {
    fn absorb(&mut self, fake: &FakeKratos) {
        for (session, at) in fake.drain_ended_sessions() {
            self.ended.entry(session).or_insert(at);
        }
        for c in fake.drain_calls() {
            if c.side != Side::Admin || c.method != Method::DELETE {
                continue;
            }
            if let Some(id) = c
                .path()
                .strip_prefix("/admin/identities/")
                .and_then(|s| s.strip_suffix("/sessions"))
                .and_then(|s| s.parse().ok())
            {
                self.identity_deletes.entry(id).or_default().push(c.at);
            }
        }
    }

    /// Kratos had ended this session (through its admin API) before `before`.
    fn ended_before(&self, r: &Record, before: Instant) -> bool {
        self.ended.get(&r.session).is_some_and(|t| *t <= before)
    }

    fn check(&mut self, r: Record, history: &History, stats: &Stats) {
        let status = history.status(r.identity, r.start, r.end);
        let what = format!(
            "{:?} of {} (session {}) answered {:?} after {:?}",
            r.kind,
            r.identity,
            r.session,
            r.outcome,
            r.end - r.start
        );
        if let Outcome::Other(..) = r.outcome {
            self.failures.push(format!("unexpected answer: {what}"));
        }
        match status {
            Status::Straddles => {
                stats.straddling.fetch_add(1, Ordering::Relaxed);
            }
            Status::Listed => {
                stats.checked_listed.fetch_add(1, Ordering::Relaxed);
                if r.outcome == Outcome::Credential {
                    self.failures
                        .push(format!("CREDENTIAL FOR A LISTED IDENTITY: {what}"));
                }
            }
            Status::Unlisted => {
                stats.checked_unlisted.fetch_add(1, Ordering::Relaxed);
                if r.outcome != Outcome::Credential {
                    if r.kind == Kind::Whoami
                        && r.outcome == Outcome::Refused
                        && self.ended_before(&r, r.end)
                    {
                        stats
                            .whoami_401_after_revocation
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.failures
                            .push(format!("an allowed request did not succeed: {what}"));
                    }
                }
            }
        }
        if r.outcome == Outcome::Refused {
            self.caught.push(r.clone());
        }
        if r.kind == Kind::Whoami || r.outcome != Outcome::Credential {
            // Nothing more will use this session: watch it until it is dead.
            self.live.push((r.session, r.identity));
        }
    }

    /// One pass: checks settled records, then caught sessions, then forgets dead ones.
    fn pass(&mut self, fake: &FakeKratos, history: &Mutex<History>, stats: &Stats, all: bool) {
        self.absorb(fake);
        let horizon = Instant::now().checked_sub(SETTLE);
        let guard = history.lock().expect("history");
        while let Some(r) = self.records.front() {
            if !all && horizon.is_none_or(|h| r.end > h) {
                break;
            }
            let r = self.records.pop_front().expect("front");
            self.check(r, &guard, stats);
        }
        drop(guard);
        let dead = |s: &Uuid| fake.session_status(*s).is_none_or(|st| st.revoked);
        let mut still = Vec::new();
        for r in std::mem::take(&mut self.caught) {
            if dead(&r.session) {
                continue;
            }
            if all || r.end.elapsed() > CAUGHT_DEADLINE {
                let ms = |t: &Instant| {
                    if *t >= r.created {
                        format!("+{}", (*t - r.created).as_millis())
                    } else {
                        format!("-{}", (r.created - *t).as_millis())
                    }
                };
                let deletes = self
                    .identity_deletes
                    .get(&r.identity)
                    .map(|ts| ts.iter().map(ms).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                let changes = {
                    let h = history.lock().expect("history");
                    h.changes
                        .iter()
                        .filter(|c| {
                            c.written + Duration::from_secs(2) >= r.created
                                && c.written <= r.end + Duration::from_secs(1)
                        })
                        .map(|c| {
                            format!(
                                "{}{}..{}",
                                if c.listed.contains(&r.identity) {
                                    "L"
                                } else {
                                    "U"
                                },
                                ms(&c.written),
                                c.applied.as_ref().map(ms).unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                self.failures.push(format!(
                    "caught session {} of {} is still alive at Kratos: {:?} {}..{} ms \
                     after creation; DELETE calls for the identity's sessions (ms from \
                     creation) [{}]; list changes (listed or not, written..applied) [{}]",
                    r.session,
                    r.identity,
                    r.kind,
                    ms(&r.start),
                    ms(&r.end),
                    deletes,
                    changes,
                ));
            } else {
                still.push(r);
            }
        }
        self.caught = still;
        self.live.retain(|(s, _)| {
            if dead(s) {
                fake.remove_session(*s);
                false
            } else {
                true
            }
        });
        // Ends and deletes matter only for sessions created before them: forget those older
        // than any session still to be checked (records are queued in answer order; no
        // request takes longer than REQUEST_TIMEOUT).
        let keep_after = self
            .records
            .front()
            .map_or_else(Instant::now, |r| r.created)
            .checked_sub(REQUEST_TIMEOUT * 2);
        if let Some(cutoff) = keep_after {
            for ts in self.identity_deletes.values_mut() {
                ts.retain(|t| *t >= cutoff);
            }
            self.ended.retain(|_, t| *t >= cutoff);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------

struct Shared {
    fake: FakeKratos,
    gw: TestGateway,
    identities: Vec<Uuid>,
    history: Mutex<History>,
    verifier: Mutex<Verifier>,
    stats: Stats,
    stop: AtomicBool,
}

async fn call(
    http: &TestClient,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, http::HeaderMap, Bytes), String> {
    let fut = async {
        let resp = http.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts.status, parts.headers, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| "timed out".to_owned())?
}

async fn client_loop(sh: Arc<Shared>) {
    let http = client::http1();
    let mut rng = Rng::new();
    let login_url = sh
        .gw
        .public_url("/self-service/login?flow=2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11");
    let whoami_url = sh.gw.public_url("/sessions/whoami");
    while !sh.stop.load(Ordering::Relaxed) {
        let identity = sh.identities[rng.below(sh.identities.len() as u64) as usize];
        let (session, token) = (fresh_uuid(), fresh_token());
        sh.fake
            .add_session(SessionSpec::new(identity, session).token(token.clone()));
        let created = Instant::now();
        let body = serde_json::json!({"method": "password", "identifier": format!("{identity}@soak.example"),
            "password": "x", "soak_identity": identity, "soak_session": session, "soak_token": token})
        .to_string();
        let req = client::request(Method::POST, &login_url)
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("req");
        let start = Instant::now();
        let answer = call(&http, req).await;
        let end = Instant::now();
        let outcome = match &answer {
            Ok((StatusCode::OK, _, b)) if contains(b, token.as_bytes()) => Outcome::Credential,
            Ok((StatusCode::FORBIDDEN, h, b))
                if contains(b, b"identity_disabled")
                    && !contains(b, token.as_bytes())
                    && h.get("set-cookie").is_none() =>
            {
                Outcome::Refused
            }
            Ok((s, _, b)) => Outcome::Other(s.as_u16(), String::from_utf8_lossy(b).into_owned()),
            Err(e) => Outcome::Other(0, e.clone()),
        };
        let got_token = outcome == Outcome::Credential;
        sh.stats.requests.fetch_add(1, Ordering::Relaxed);
        sh.stats.logins.fetch_add(1, Ordering::Relaxed);
        record(
            &sh,
            Kind::Login,
            identity,
            session,
            created,
            start,
            end,
            outcome,
        );
        if !got_token {
            continue;
        }
        let req = client::request(Method::GET, &whoami_url)
            .header("x-session-token", token.as_str())
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
            .expect("req");
        let start = Instant::now();
        let answer = call(&http, req).await;
        let end = Instant::now();
        let id_text = identity.to_string();
        let outcome = match &answer {
            Ok((StatusCode::OK, h, _))
                if h.get("x-kratos-authenticated-identity-id")
                    .is_some_and(|v| v == id_text.as_str()) =>
            {
                Outcome::Credential
            }
            Ok((StatusCode::UNAUTHORIZED, h, b))
                if (b.as_ref() == fixtures::WHOAMI_401.as_bytes()
                    || b.as_ref() == fixtures::WHOAMI_401_WIRE.as_bytes())
                    && h.get("x-kratos-authenticated-identity-id").is_none() =>
            {
                Outcome::Refused
            }
            Ok((s, _, b)) => Outcome::Other(s.as_u16(), String::from_utf8_lossy(b).into_owned()),
            Err(e) => Outcome::Other(0, e.clone()),
        };
        sh.stats.requests.fetch_add(1, Ordering::Relaxed);
        sh.stats.whoamis.fetch_add(1, Ordering::Relaxed);
        record(
            &sh,
            Kind::Whoami,
            identity,
            session,
            created,
            start,
            end,
            outcome,
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[allow(clippy::too_many_arguments)]
fn record(
    sh: &Shared,
    kind: Kind,
    identity: Uuid,
    session: Uuid,
    created: Instant,
    start: Instant,
    end: Instant,
    outcome: Outcome,
) {
    match outcome {
        Outcome::Credential => sh.stats.credentials_out.fetch_add(1, Ordering::Relaxed),
        Outcome::Refused => sh.stats.refused.fetch_add(1, Ordering::Relaxed),
        Outcome::Other(..) => 0,
    };
    sh.verifier
        .lock()
        .expect("verifier")
        .records
        .push_back(Record {
            kind,
            identity,
            session,
            created,
            start,
            end,
            outcome,
        });
}

/// Rewrites the list every few tens of milliseconds with a random half of the identities,
/// and waits each time until the gateway has it in force.
async fn writer_loop(sh: Arc<Shared>) {
    let mut rng = Rng::new();
    let path = sh.gw.blocklist_path();
    while !sh.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20 + rng.below(100))).await;
        let listed: HashSet<Uuid> = sh
            .identities
            .iter()
            .copied()
            .filter(|_| rng.below(2) == 0)
            .collect();
        let text = {
            let ids: Vec<String> = listed.iter().map(Uuid::to_string).collect();
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            blocklist_of(&refs)
        };
        let listed = Arc::new(listed);
        let index = {
            let mut h = sh.history.lock().expect("history");
            h.changes.push(Change {
                written: Instant::now(),
                applied: None,
                listed: Arc::clone(&listed),
            });
            h.changes.len() - 1
        };
        replace_atomically(&path, &text);
        if rng.below(3) == 0 {
            // Now and then SIGHUP's path right behind the write.
            sh.gw.gateway().reload_blocklist();
            sh.stats.explicit_reloads.fetch_add(1, Ordering::Relaxed);
        }
        let in_force = || {
            let snap = sh.gw.gateway().blocklist().snapshot();
            sh.identities
                .iter()
                .all(|id| snap.lookup(id).is_some() == listed.contains(id))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if in_force() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a rewrite was not applied within 5 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        sh.history.lock().expect("history").changes[index].applied = Some(Instant::now());
        sh.stats.list_changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Explicit reloads (what SIGHUP does) at random moments, independent of the writes.
async fn reload_loop(sh: Arc<Shared>) {
    let mut rng = Rng::new();
    while !sh.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(60))).await;
        sh.gw.gateway().reload_blocklist();
        sh.stats.explicit_reloads.fetch_add(1, Ordering::Relaxed);
    }
}

async fn verifier_loop(sh: Arc<Shared>) -> Vec<String> {
    let mut samples = Vec::new();
    let started = Instant::now();
    let mut next_sample = Duration::ZERO;
    while !sh.stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let mut v = sh.verifier.lock().expect("verifier");
        v.pass(&sh.fake, &sh.history, &sh.stats, false);
        if started.elapsed() >= next_sample {
            let depth = metric(
                &sh.gw.gateway().metrics().encode(),
                "kratos_gate_revocation_queue_depth ",
            );
            samples.push(format!(
                "{}s: {} KiB, {} requests, {} revocations queued, {} sessions watched",
                started.elapsed().as_secs(),
                rss_kib(),
                sh.stats.requests.load(Ordering::Relaxed),
                depth,
                v.live.len()
            ));
            next_sample += Duration::from_secs(10);
        }
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_logins_and_whoami_while_the_list_churns() {
    let seconds = env_or("SOAK_SECONDS", 5);
    let clients = env_or("SOAK_CLIENTS", 8) as usize;
    let fake = FakeKratos::start().await;
    let identities: Vec<Uuid> = (0..(clients * 2).max(8)).map(|_| fresh_uuid()).collect();
    for id in &identities {
        fake.add_identity(*id, Some(&format!("{id}@soak.example")));
    }
    // The login answer names the session the client registered (the fake cannot create
    // sessions itself); rendered once from the fixture, then substituted.
    let (ti, ts, tt) = (fresh_uuid(), fresh_uuid(), fresh_token());
    let template = fixtures::native_login_body(ti, ts, &tt);
    fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::from_fn(move |c: &RecordedCall| {
            let b: serde_json::Value = serde_json::from_slice(&c.body).unwrap_or_default();
            let field = |k: &str| b[k].as_str().unwrap_or_default().to_owned();
            let body = template
                .replace(&ti.to_string(), &field("soak_identity"))
                .replace(&ts.to_string(), &field("soak_session"))
                .replace(&tt, &field("soak_token"));
            Reply::json(200, body)
        }),
    );
    let gw = start_gateway_with(&fake.public_url(), &fake.admin_url(), "", |_| {}).await;
    let t0 = Instant::now();
    let sh = Arc::new(Shared {
        fake,
        gw,
        identities,
        history: Mutex::new(History {
            changes: vec![Change {
                written: t0,
                applied: Some(t0),
                listed: Arc::new(HashSet::new()),
            }],
        }),
        verifier: Mutex::new(Verifier::default()),
        stats: Stats::default(),
        stop: AtomicBool::new(false),
    });

    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(client_loop(Arc::clone(&sh))));
    }
    // Warm-up: connections and pools exist before memory is first measured.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_start = rss_kib();
    tasks.push(tokio::spawn(writer_loop(Arc::clone(&sh))));
    tasks.push(tokio::spawn(reload_loop(Arc::clone(&sh))));
    let verifier = tokio::spawn(verifier_loop(Arc::clone(&sh)));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    sh.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("a soak task panicked");
    }
    let samples = verifier.await.expect("the verifier panicked");

    // Let the revocations finish, then check everything that is left.
    let queue_empty = wait_until(Duration::from_secs(30), || {
        metric(
            &sh.gw.gateway().metrics().encode(),
            "kratos_gate_revocation_queue_depth ",
        ) == 0.0
    })
    .await;
    assert!(queue_empty, "revocations still queued after 30 s");
    tokio::time::sleep(SETTLE).await;
    let final_list = Arc::clone(
        &sh.history
            .lock()
            .expect("h")
            .changes
            .last()
            .expect("one")
            .listed,
    );
    let (failures, alive_listed) = {
        let mut v = sh.verifier.lock().expect("verifier");
        v.pass(&sh.fake, &sh.history, &sh.stats, true);
        let alive: Vec<String> = final_list
            .iter()
            .flat_map(|id| sh.fake.sessions_of(*id))
            .filter(|s| sh.fake.session_status(*s).is_some_and(|st| !st.revoked))
            .map(|s| s.to_string())
            .collect();
        (std::mem::take(&mut v.failures), alive)
    };
    let rss_end = rss_kib();

    let m = sh.gw.gateway().metrics().encode();
    let st = &sh.stats;
    eprintln!("soak: memory over the run:\n  {}", samples.join("\n  "));
    let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "soak: {seconds} s, {clients} clients, {} identities\n\
         requests {} (logins {}, whoami {}), credentials out {}, refused {}\n\
         checked: {} while listed, {} while unlisted, {} straddling a change\n\
         whoami 401 because Kratos had already ended the session: {}\n\
         list rewrites {}, explicit reloads {}\n\
         blocked (gateway) {}, revocations confirmed {}, retried {}, dropped {}\n\
         RSS start {} KiB, end {} KiB ({:+} KiB)",
        sh.identities.len(),
        n(&st.requests),
        n(&st.logins),
        n(&st.whoamis),
        n(&st.credentials_out),
        n(&st.refused),
        n(&st.checked_listed),
        n(&st.checked_unlisted),
        n(&st.straddling),
        n(&st.whoami_401_after_revocation),
        n(&st.list_changes),
        n(&st.explicit_reloads),
        m.lines()
            .filter(|l| l.starts_with("kratos_gate_blocked_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>(),
        metric(&m, "kratos_gate_revocations_total{result=\"success\"}"),
        metric(&m, "kratos_gate_revocations_total{result=\"retry\"}"),
        metric(&m, "kratos_gate_revocations_total{result=\"dropped\"}"),
        rss_start,
        rss_end,
        rss_end as i64 - rss_start as i64,
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        alive_listed.is_empty(),
        "sessions of identities listed at the end are alive at Kratos: {alive_listed:?}"
    );
    assert!(
        n(&st.checked_listed) > 0 && n(&st.checked_unlisted) > 0,
        "nothing was checked"
    );
    assert!(n(&st.list_changes) >= seconds, "too few rewrites");
    assert_eq!(
        metric(&m, "kratos_gate_revocations_total{result=\"dropped\"}"),
        0.0
    );
    assert!(
        rss_end <= rss_start + RSS_GROWTH_BOUND_KIB,
        "resident memory grew from {rss_start} KiB to {rss_end} KiB"
    );
}
