//! Fault injection. Kratos resets connections mid-body, answers slower than the timeouts,
//! sends truncated JSON where a credential would be, and fails its admin API for a while;
//! the blocklist file is deleted, cut in half, replaced by a directory, made unreadable, or
//! turned into a symlink loop. In every case the gateway keeps serving with the last good
//! list, hands out no credential it could not check, says why in its log, and recovers when
//! the fault ends.
//!
//! The tests run on the current-thread runtime so that `support::logs::capture()` sees the
//! gateway's log events.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};

use support::client::{self, Reply as Answer};
use support::enforcement::{
    assert_identity_disabled, assert_no_credential, assert_revoked, login_json, metric, send,
    setup, setup_with, wait_until, Person, Revocation, Setup, JSON, WAIT,
};
use support::fake_kratos::{FakeKratos, Reply, SessionSpec, Side};
use support::fixtures;
use support::gateway::{blocklist_of, replace_atomically, start_gateway, write_file};
use support::logs::{self, Captured};

const LOGIN: &str = "/self-service/login?flow=2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";
const RELOAD_FAILED: &str = "blocklist reload failed; the last good list stays in force";

fn short_timeouts(c: &mut kratos_gate::config::Config) {
    use kratos_gate::config::HumanDuration;
    c.upstream.response_timeout = HumanDuration(Duration::from_millis(400));
    c.upstream.lookup_timeout = HumanDuration(Duration::from_millis(400));
}

async fn login(s: &Setup, p: &Person) -> Answer {
    send(Method::POST, &s.public(LOGIN), &JSON, &login_json(&p.email)).await
}

fn native_login(p: &Person) -> String {
    fixtures::native_login_body(p.identity, p.session, &p.token)
}

/// Scripts one native login answer for `p` (used once).
fn script_login(s: &Setup, reply: Reply) {
    s.fake
        .on_public(Method::POST, "/self-service/login", reply.times(1));
}

/// The answer is the gateway's own error (`status`, Kratos's error shape) and hands out
/// nothing of `p`.
fn assert_withheld(a: &Answer, status: StatusCode, p: &Person) {
    assert_eq!(a.status, status, "{}", a.text());
    let v = a.json();
    assert_eq!(v["error"]["code"], status.as_u16(), "{v}");
    assert_no_credential(a, p);
}

/// The healthy path works again: the unlisted person gets the token, the listed one is
/// refused and its session revoked.
async fn assert_recovered(s: &Setup) {
    script_login(s, Reply::json(200, native_login(&s.unlisted)));
    let a = login(s, &s.unlisted).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    assert!(a.text().contains(&s.unlisted.token), "{}", a.text());
    script_login(s, Reply::json(200, native_login(&s.listed)));
    let a = login(s, &s.listed).await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
    assert_revoked(&s.fake, &s.listed, Revocation::Session).await;
}

/// Waits for a log event with this message whose fields mention `needle`.
async fn wait_for_log(log: &Captured, message: &str, needle: &str) -> serde_json::Value {
    let mut found = None;
    let ok = wait_until(WAIT, || {
        found = log
            .events()
            .into_iter()
            .find(|e| e["message"] == message && e.to_string().contains(needle));
        found.is_some()
    })
    .await;
    assert!(
        ok,
        "no log event {message:?} mentioning {needle:?}; log:\n{}",
        log.text()
    );
    found.expect("found")
}

fn fail_closed_events(log: &Captured) -> Vec<serde_json::Value> {
    log.audit("fail_closed")
}

// ---------------------------------------------------------------------------------------
// Kratos faults
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn kratos_resetting_mid_body_of_a_credential_response_fails_closed_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup().await;
    for p in [s.listed.clone(), s.unlisted.clone()] {
        let body = native_login(&p);
        // Cut inside the token, right after it, and late in the body.
        let token_at = body.find(&p.token).expect("token in body");
        for cut in [token_at + 4, token_at + p.token.len() + 2, body.len() - 3] {
            script_login(&s, Reply::json(200, body.clone()).break_after(cut));
            let a = login(&s, &p).await;
            assert_withheld(&a, StatusCode::BAD_GATEWAY, &p);
        }
        // The same, compressed on the way (a mesh between): the gzip stream breaks off.
        script_login(&s, Reply::json(200, body.clone()).gzip().break_after(20));
        let a = login(&s, &p).await;
        assert_withheld(&a, StatusCode::BAD_GATEWAY, &p);
    }
    let events = fail_closed_events(&log);
    assert_eq!(events.len(), 8, "{events:?}");
    for e in &events {
        assert_eq!(e["outcome"], 502, "{e}");
        assert!(
            e["error"].as_str().is_some_and(|m| m.contains("broke off")),
            "the log does not say why: {e}"
        );
    }
    assert_eq!(
        metric(
            &s.metrics(),
            "kratos_gate_fail_closed_total{reason=\"broken_response\"}"
        ),
        8.0
    );
    assert_recovered(&s).await;
}

#[tokio::test]
async fn kratos_resetting_mid_body_of_a_plain_response_breaks_only_that_response() {
    let s = setup().await;
    // A large non-JSON body cannot carry a credential and streams through; when Kratos
    // drops the connection, the client's body breaks off too (it is never completed).
    let page = "<html>".to_owned() + &"x".repeat(256 * 1024) + "</html>";
    s.fake.on_public(
        Method::GET,
        "/self-service/login/browser",
        Reply::text(200, page).break_after(64 * 1024).times(1),
    );
    let req = client::request(Method::GET, &s.public("/self-service/login/browser"))
        .body(Full::new(Bytes::new()))
        .expect("req");
    let resp = tokio::time::timeout(WAIT, client::http1().request(req))
        .await
        .expect("headers in time")
        .expect("headers");
    assert_eq!(resp.status(), StatusCode::OK);
    let body = tokio::time::timeout(WAIT, resp.into_body().collect())
        .await
        .expect("body ends in time");
    assert!(body.is_err(), "a broken body arrived complete");
    assert_recovered(&s).await;
}

#[tokio::test]
async fn kratos_resetting_mid_body_of_an_admin_lookup_fails_closed_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup().await;
    // A login waiting for a second factor names no identity: the gateway asks the admin API,
    // whose answer breaks off.
    let p = s.listed.clone();
    s.fake.add_session(p.spec().aal2_pending());
    let lookup = format!("/admin/sessions/{}", p.session);
    let session = fixtures::session_body(p.identity, p.session);
    s.fake.on_admin(
        Method::GET,
        &lookup,
        Reply::json(200, session).break_after(40).times(1),
    );
    script_login(
        &s,
        Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        ),
    );
    let a = login(&s, &p).await;
    assert_withheld(&a, StatusCode::SERVICE_UNAVAILABLE, &p);
    let e = wait_for_log(
        &log,
        "withheld a response that may carry a credential",
        "admin session lookup",
    )
    .await;
    assert_eq!(e["outcome"], 503);
    // Kratos healthy again: the same login is attributed and refused.
    script_login(
        &s,
        Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        ),
    );
    let a = login(&s, &p).await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &p);
}

#[tokio::test]
async fn kratos_slower_than_the_response_timeout_gets_504_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup_with(short_timeouts).await;
    for p in [s.listed.clone(), s.unlisted.clone()] {
        script_login(
            &s,
            Reply::json(200, native_login(&p)).delay(Duration::from_secs(2)),
        );
        let started = Instant::now();
        let a = login(&s, &p).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "not timed out"
        );
        assert_withheld(&a, StatusCode::GATEWAY_TIMEOUT, &p);
    }
    wait_for_log(&log, "answering with an error", "did not answer within").await;
    assert_recovered(&s).await;
}

#[tokio::test]
async fn kratos_stalling_mid_body_of_a_credential_response_gets_504_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup_with(short_timeouts).await;
    for p in [s.listed.clone(), s.unlisted.clone()] {
        // The headers come at once; the body stops after its first bytes for far longer
        // than any timeout.
        script_login(
            &s,
            Reply::json(200, native_login(&p)).stall_after(10, Duration::from_secs(30)),
        );
        let started = Instant::now();
        let a = login(&s, &p).await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the gateway waited {:?} for a stalled body",
            started.elapsed()
        );
        assert_withheld(&a, StatusCode::GATEWAY_TIMEOUT, &p);
    }
    let events = fail_closed_events(&log);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(events.iter().all(|e| e["outcome"] == 504), "{events:?}");
    assert_recovered(&s).await;
}

#[tokio::test]
async fn kratos_admin_slower_than_the_lookup_timeout_fails_closed_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup_with(short_timeouts).await;
    let p = s.listed.clone();
    s.fake.add_session(p.spec().aal2_pending());
    s.fake.set_admin_delay(Duration::from_secs(2));
    let pending = || {
        Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        )
    };
    script_login(&s, pending());
    let started = Instant::now();
    let a = login(&s, &p).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_withheld(&a, StatusCode::SERVICE_UNAVAILABLE, &p);
    wait_for_log(
        &log,
        "withheld a response that may carry a credential",
        "admin session lookup",
    )
    .await;
    s.fake.set_admin_delay(Duration::ZERO);
    script_login(&s, pending());
    let a = login(&s, &p).await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &p);
}

#[tokio::test]
async fn truncated_json_in_credential_responses_fails_closed_then_recovers() {
    let (log, _guard) = logs::capture();
    let s = setup().await;
    let mut sent = 0;
    for p in [s.listed.clone(), s.unlisted.clone()] {
        // Complete HTTP messages whose JSON is cut short: native login, registration and
        // recovery (`continue_with` token), plain and gzipped.
        let bodies = [
            native_login(&p),
            fixtures::native_registration_body(p.identity, p.session, &p.token),
            fixtures::native_recovery_body(&p.token),
        ];
        for body in bodies {
            let token_at = body.find(&p.token).expect("token in body");
            for cut in [token_at + 3, token_at + p.token.len(), body.len() - 2] {
                let truncated = body[..cut].to_owned();
                script_login(&s, Reply::json(200, truncated.clone()));
                assert_withheld(&login(&s, &p).await, StatusCode::BAD_GATEWAY, &p);
                script_login(&s, Reply::json(200, truncated).gzip());
                assert_withheld(&login(&s, &p).await, StatusCode::BAD_GATEWAY, &p);
                sent += 2;
            }
        }
    }
    let events = fail_closed_events(&log);
    assert_eq!(events.len(), sent, "{events:?}");
    assert!(
        events.iter().all(|e| e["error"]
            .as_str()
            .is_some_and(|m| m.contains("malformed JSON"))),
        "{events:?}"
    );
    assert_recovered(&s).await;
}

#[tokio::test]
async fn admin_api_failing_for_a_while_loses_no_revocation() {
    let (log, _guard) = logs::capture();
    let fake = FakeKratos::start().await;
    // Listed from the start: 10 people whose logins will be refused (one session each).
    let caught: Vec<Person> = (0..10)
        .map(|i| Person::new(&format!("caught{i}")))
        .collect();
    // Added to the list while the admin API is failing: 6 people with a live session each.
    let added: Vec<Person> = (0..6).map(|i| Person::new(&format!("added{i}"))).collect();
    for p in caught.iter().chain(&added) {
        fake.add_session(p.spec());
    }
    let ids = |ps: &[Person]| ps.iter().map(Person::id).collect::<Vec<_>>();
    let caught_ids = ids(&caught);
    let refs: Vec<&str> = caught_ids.iter().map(String::as_str).collect();
    let gw = start_gateway(&fake.public_url(), &fake.admin_url(), &blocklist_of(&refs)).await;

    fake.set_admin_failures(usize::MAX);
    for p in &caught {
        fake.on_public(
            Method::POST,
            "/self-service/login",
            Reply::json(200, native_login(p)).times(1),
        );
        let a = send(
            Method::POST,
            &gw.public_url(LOGIN),
            &JSON,
            &login_json(&p.email),
        )
        .await;
        assert_identity_disabled(&a);
        assert_no_credential(&a, p);
    }
    let all_ids: Vec<String> = caught_ids.iter().cloned().chain(ids(&added)).collect();
    let refs: Vec<&str> = all_ids.iter().map(String::as_str).collect();
    replace_atomically(&gw.blocklist_path(), &blocklist_of(&refs));
    assert!(gw.wait_for_listed(&added[5].id(), true, WAIT).await);

    // A while of 500s: every revocation is tried, fails and is retried; none succeeds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let m = gw.gateway().metrics().encode();
    let retries = metric(&m, "kratos_gate_revocations_total{result=\"retry\"}");
    assert!(retries >= 16.0, "{m}");
    assert_eq!(
        metric(&m, "kratos_gate_revocations_total{result=\"success\"}"),
        0.0
    );
    assert_eq!(
        metric(&m, "kratos_gate_revocation_queue_depth "),
        16.0,
        "{m}"
    );
    assert!(caught
        .iter()
        .chain(&added)
        .all(|p| fake.session_status(p.session).is_some_and(|s| !s.revoked)));
    wait_for_log(&log, "revocation failed; will retry", "500").await;

    // Kratos recovers: every revocation arrives, once each.
    fake.set_admin_failures(0);
    let all_done = wait_until(WAIT, || {
        caught
            .iter()
            .chain(&added)
            .all(|p| fake.session_status(p.session).is_none_or(|s| s.revoked))
    })
    .await;
    assert!(all_done, "a revocation was lost");
    let m = gw.gateway().metrics().encode();
    assert!(
        wait_until(WAIT, || metric(
            &gw.gateway().metrics().encode(),
            "kratos_gate_revocation_queue_depth "
        ) == 0.0)
        .await
    );
    let m2 = gw.gateway().metrics().encode();
    assert_eq!(
        metric(&m2, "kratos_gate_revocations_total{result=\"success\"}"),
        16.0,
        "{m}\n{m2}"
    );
    assert_eq!(
        metric(&m2, "kratos_gate_revocations_total{result=\"dropped\"}"),
        0.0
    );
    let revoked = log.audit("revoked");
    assert_eq!(revoked.len(), 16, "{revoked:?}");
    for p in &caught {
        let path = format!("/admin/sessions/{}", p.session);
        assert!(
            revoked
                .iter()
                .any(|e| e["revocation"] == format!("session {}", p.session)),
            "no confirmed revocation of {path}: {revoked:?}"
        );
        assert!(!fake
            .calls_matching(Side::Admin, Method::DELETE, &path)
            .is_empty());
    }
    for p in &added {
        assert!(
            revoked
                .iter()
                .any(|e| e["revocation"] == format!("all sessions of identity {}", p.identity)),
            "no confirmed revocation of {}",
            p.identity
        );
    }
    let deletes = fake
        .calls_matching(Side::Admin, Method::DELETE, "/admin/")
        .len();
    eprintln!(
        "admin API failing then recovering: {deletes} DELETE calls for 16 revocations \
         ({retries} retries counted during the outage), 16 confirmed, 0 dropped"
    );
    gw.shutdown().await;
}

/// A slow admin API: Kratos has already deleted the identity's sessions, but its answer is
/// still on the way when another session of that identity is caught. That session must be
/// revoked too; the revocation under way was sent before it existed.
#[tokio::test]
async fn admin_api_slow_to_answer_still_revokes_a_session_caught_meanwhile() {
    let s = setup().await;
    let p = s.listed.clone();
    s.fake.set_admin_delay(Duration::from_millis(800));
    let whoami = |token: String| {
        let url = s.public("/sessions/whoami");
        async move {
            send(
                Method::GET,
                &url,
                &[("x-session-token", token.as_str())],
                "",
            )
            .await
        }
    };
    assert_eq!(
        whoami(p.token.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Kratos has acted on the DELETE (its answer is delayed, not its work).
    assert!(wait_until(WAIT, || s.fake.session_status(p.session).is_none()).await);
    // A new session of the same identity appears (a login that did not pass the gateway)
    // and is used through the gateway while the first revocation is still under way.
    let (second, token) = (
        support::fake_kratos::fresh_uuid(),
        support::fake_kratos::fresh_token(),
    );
    s.fake
        .add_session(SessionSpec::new(p.identity, second).token(token.clone()));
    assert_eq!(whoami(token).await.status, StatusCode::UNAUTHORIZED);
    assert!(
        wait_until(WAIT, || s.fake.session_status(second).is_none()).await,
        "the session caught while a revocation of its identity was under way is still alive"
    );
    let deletes = s.fake.calls_matching(
        Side::Admin,
        Method::DELETE,
        &format!("/admin/identities/{}/sessions", p.identity),
    );
    assert_eq!(deletes.len(), 2, "one revocation per caught session");
}

// ---------------------------------------------------------------------------------------
// Blocklist faults
// ---------------------------------------------------------------------------------------

/// Common course of a blocklist fault: the listed person is refused and the unlisted one
/// served; `inflict` breaks the file and returns what the log must say; the failure is
/// logged, counted, and the last good list stays in force (also through an explicit
/// reload, what SIGHUP does); then `heal` ends the fault and a good file that lists the
/// other person too is written, which is applied.
async fn blocklist_fault(inflict: impl FnOnce(&Path) -> String, heal: impl FnOnce(&Path)) {
    let (log, _guard) = logs::capture();
    let s = setup().await;
    let path = s.gw.blocklist_path();
    script_login(&s, Reply::json(200, native_login(&s.unlisted)));
    assert_eq!(login(&s, &s.unlisted).await.status, StatusCode::OK);
    let failures = "kratos_gate_blocklist_reloads_total{result=\"failure\"}";
    let before = metric(&s.metrics(), failures);

    let why = inflict(&path);
    s.gw.gateway().reload_blocklist();
    let event = wait_for_log(&log, RELOAD_FAILED, &why).await;
    assert!(
        event["errors"]
            .as_str()
            .is_some_and(|e| e.contains(&path.display().to_string())),
        "the log does not name the file: {event}"
    );
    assert!(metric(&s.metrics(), failures) > before);
    s.gw.gateway().reload_blocklist();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Still serving, with the last good list.
    let listed_now = |id: &str| {
        s.gw.gateway()
            .blocklist()
            .snapshot()
            .lookup_str(id)
            .is_some()
    };
    assert!(listed_now(&s.listed.id()), "the last good list was dropped");
    assert!(!listed_now(&s.unlisted.id()));
    script_login(&s, Reply::json(200, native_login(&s.listed)));
    let a = login(&s, &s.listed).await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.listed);
    script_login(&s, Reply::json(200, native_login(&s.unlisted)));
    let a = login(&s, &s.unlisted).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());

    // The fault ends: a good file is applied.
    heal(&path);
    replace_atomically(&path, &blocklist_of(&[&s.listed.id(), &s.unlisted.id()]));
    assert!(
        s.gw.wait_for_listed(&s.unlisted.id(), true, WAIT).await,
        "the good file was not applied; log:\n{}",
        log.text()
    );
    assert!(listed_now(&s.listed.id()));
    wait_for_log(&log, "blocklist reloaded", "\"added\":1").await;
    script_login(&s, Reply::json(200, native_login(&s.unlisted)));
    let a = login(&s, &s.unlisted).await;
    assert_identity_disabled(&a);
    assert_no_credential(&a, &s.unlisted);
}

/// The listed id in the file in force (written by `setup` as `- id: …`).
fn listed_id_in(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("blocklist readable before the fault")
        .lines()
        .find_map(|l| l.trim().strip_prefix("- id: "))
        .expect("listed id")
        .trim()
        .to_owned()
}

#[tokio::test]
async fn blocklist_deleted() {
    blocklist_fault(
        |path| {
            std::fs::remove_file(path).expect("rm");
            "No such file or directory".to_owned()
        },
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn blocklist_truncated_to_half() {
    blocklist_fault(
        |path| {
            // A longer list, then cut in half in place (a writer that died mid-write):
            // the cut falls inside an id.
            let listed = listed_id_in(path);
            let others: Vec<String> = (0..6)
                .map(|_| support::fake_kratos::fresh_uuid().to_string())
                .collect();
            let mut ids: Vec<&str> = vec![&listed];
            ids.extend(others.iter().map(String::as_str));
            let full = blocklist_of(&ids);
            let half = &full[..full.len() / 2];
            let last = half.lines().last().expect("a line");
            assert!(
                last.trim().len() > 2 && last.trim().len() < 38,
                "the cut must fall inside an id: {last:?}"
            );
            let f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)
                .expect("open");
            use std::io::Write;
            (&f).write_all(half.as_bytes()).expect("write half");
            drop(f);
            "is not an identity id".to_owned()
        },
        |_| {},
    )
    .await;
}

#[tokio::test]
async fn blocklist_replaced_by_a_directory() {
    blocklist_fault(
        |path| {
            std::fs::remove_file(path).expect("rm");
            std::fs::create_dir(path).expect("mkdir");
            write_file(&path.join("blocklist.yaml"), "identities: []\n");
            "not a regular file".to_owned()
        },
        |path| std::fs::remove_dir_all(path).expect("rm dir"),
    )
    .await;
}

/// True when a mode-000 file still opens for reading here: root (CAP_DAC_OVERRIDE).
fn chmod_000_is_ignored(dir: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let probe = dir.join("probe-000");
    write_file(&probe, "x");
    std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o000)).expect("chmod");
    let readable = std::fs::read(&probe).is_ok();
    std::fs::remove_file(&probe).expect("rm probe");
    readable
}

#[tokio::test]
async fn blocklist_made_unreadable() {
    use std::os::unix::fs::PermissionsExt;
    blocklist_fault(
        |path| {
            let dir = path.parent().expect("dir");
            if chmod_000_is_ignored(dir) {
                // Root reads mode-000 files, so chmod cannot make the file unreadable here.
                // The equivalent fault: a path that exists and is a regular file, but every
                // read fails (EIO) — /proc/self/mem read at offset 0.
                eprintln!(
                    "blocklist_made_unreadable: running with CAP_DAC_OVERRIDE (root), where \
                     chmod 000 does not stop reads; testing the equivalent read error (EIO) \
                     through a symlink to /proc/self/mem instead"
                );
                std::fs::remove_file(path).expect("rm");
                std::os::unix::fs::symlink("/proc/self/mem", path).expect("symlink");
                "Input/output error".to_owned()
            } else {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000))
                    .expect("chmod 000");
                "Permission denied".to_owned()
            }
        },
        |path| {
            if path.is_symlink() {
                std::fs::remove_file(path).expect("rm symlink");
            } else {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                    .expect("chmod 644");
            }
        },
    )
    .await;
}

#[tokio::test]
async fn blocklist_symlink_loop() {
    blocklist_fault(
        |path| {
            let other = path.with_file_name("other.yaml");
            std::fs::remove_file(path).expect("rm");
            std::os::unix::fs::symlink(&other, path).expect("link a");
            std::os::unix::fs::symlink(path, &other).expect("link b");
            "Too many levels of symbolic links".to_owned()
        },
        |path| {
            std::fs::remove_file(path.with_file_name("other.yaml")).expect("rm b");
            std::fs::remove_file(path).expect("rm a");
        },
    )
    .await;
}
