//! Path spelling attacks, written as raw request targets because client libraries resolve
//! `..`, collapse `//` and re-encode before anything is sent: Oathkeeper's
//! `/public/../admin` (GHSA-p224-6x5r-fjpm), absolute-form targets, and query strings that
//! look like paths (oauth2-proxy GHSA-7rh7-c77v-6434). On the public listener the decision is
//! made on Kratos's response, so a spelling that reaches whoami or a login is judged like any
//! other; on the admin listener the extend check reads the path as a lax router would, and
//! never the query.

use crate::support;

use std::net::SocketAddr;

use http::Method;

use support::enforcement::{metric, setup, wait_until, Person, Setup, WAIT};
use support::fake_kratos::{Reply, Side};
use support::fixtures;
use support::logs;
use support::raw::{assert_no_credential_bytes, exchange, RawResponse};

/// whoami with `p`'s token; everything received is checked for `p`'s credentials when
/// `p` is the listed identity.
async fn whoami_raw(addr: SocketAddr, target: &str, p: &Person, listed: bool) -> RawResponse {
    let (resp, conn) = exchange(
        addr,
        format!(
            "GET {target} HTTP/1.1\r\nHost: auth.example.com\r\nX-Session-Token: {}\r\n\r\n",
            p.token
        ),
    )
    .await;
    if listed {
        assert_no_credential_bytes(&conn.received, p);
    }
    resp
}

/// Waits until the gateway's revocations are done, so the next round can register the
/// session again without a late revocation deleting it.
async fn settle(s: &Setup) {
    assert!(
        wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()
            && metric(&s.metrics(), "kratos_gate_revocation_queue_depth ")
                == 0.0)
        .await,
        "the refused session was not revoked"
    );
}

/// Dot segments, encoded dots and prefixes that a lax router resolves to whoami.
const WHOAMI_TARGETS: [&str; 9] = [
    "/public/../sessions/whoami",
    "/self-service/login/../../sessions/whoami",
    "/health/alive/../../sessions/whoami",
    "/%2e%2e/sessions/whoami",
    "/sessions/./whoami",
    "/sessions/%2e/whoami",
    "/sessions/whoami/.",
    "/x/%2E%2E/sessions/whoami",
    "http://auth.example.com/sessions/whoami",
];

#[tokio::test]
async fn dot_segments_and_absolute_targets_still_reach_a_judged_whoami() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    s.fake.set_loose_routing(true);
    for (n, target) in WHOAMI_TARGETS.iter().enumerate() {
        s.fake.add_session(s.listed.spec());
        // The lax router really serves whoami for this spelling (the raw target, straight).
        let direct = whoami_raw(s.fake.public_addr, target, &s.unlisted, false).await;
        assert_eq!(direct.status, 200, "{target}: the fake did not route it");
        let resp = whoami_raw(s.gw.public, target, &s.listed, true).await;
        assert_eq!(resp.status, 401, "{target}: {}", resp.text());
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE, "{target}");
        assert_eq!(logs.audit("blocked").len(), n + 1, "{target}");
        settle(&s).await;
    }
    // Every audit event names the path as the client spelled it.
    let paths: Vec<String> = logs
        .audit("blocked")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert!(
        paths.contains(&"/public/../sessions/whoami".to_owned()),
        "{paths:?}"
    );
    // The unlisted identity still gets Kratos's answer.
    let ok = whoami_raw(
        s.gw.public,
        "/public/../sessions/whoami",
        &s.unlisted,
        false,
    )
    .await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn public_prefix_dot_dot_admin_cannot_extend_a_listed_session() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let id = s.listed.session;
    let targets = [
        format!("/public/../admin/sessions/{id}/extend"),
        format!("/public/%2e%2e/admin/sessions/{id}/extend"),
        format!("/admin/sessions/{id}/extend/../extend"),
        format!("/admin/sessions/x/../{id}/extend"),
        format!("/admin/sessions/{id}/./extend"),
        format!("/./admin/sessions/{id}/extend"),
        format!("http://kratos-admin:4434/admin/sessions/{id}/extend"),
        format!("/admin/sessions/{id}/%2e/extend"),
    ];
    for target in &targets {
        let (resp, conn) = exchange(
            s.gw.admin,
            format!("PATCH {target} HTTP/1.1\r\nHost: kratos-admin\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 403, "{target}: {}", resp.text());
        assert_eq!(resp.json()["error"]["id"], "identity_disabled", "{target}");
        assert_no_credential_bytes(&conn.received, &s.listed);
    }
    let extends: Vec<_> = logs
        .audit("blocked")
        .into_iter()
        .filter(|e| e["kind"] == "extend")
        .collect();
    assert_eq!(extends.len(), targets.len(), "{}", logs.text());
    assert!(s
        .fake
        .calls_matching(Side::Admin, Method::PATCH, "/")
        .is_empty());

    // Through the public listener the same spellings reach Kratos's public port, which
    // redirects admin paths to the admin port (307) and extends nothing.
    for target in &targets[..3] {
        let (resp, _) = exchange(
            s.gw.public,
            format!(
                "PATCH {target} HTTP/1.1\r\nHost: auth.example.com\r\nContent-Length: 0\r\n\r\n"
            ),
        )
        .await;
        assert!(
            resp.status == 301 || resp.status == 307 || resp.status == 404,
            "{target}: {} {}",
            resp.status,
            resp.text()
        );
    }
    let status = s.fake.session_status(id);
    assert!(
        status.as_ref().is_none_or(|st| st.extended == 0),
        "{status:?}"
    );
    assert!(s
        .fake
        .calls_matching(Side::Admin, Method::PATCH, "/")
        .is_empty());
    // Both listeners still serve.
    for addr in [s.gw.admin, s.gw.public] {
        let (resp, _) = exchange(addr, "GET /health/alive HTTP/1.1\r\nHost: k\r\n\r\n").await;
        assert_eq!(resp.status, 200);
    }
}

#[tokio::test]
async fn query_string_that_looks_like_a_path_is_never_matched_as_one() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let id = s.listed.session;

    // An extend with a harmless-looking query is still an extend.
    for target in [
        format!("/admin/sessions/{id}/extend?/health/alive"),
        format!("/admin/sessions/{id}/extend?next=/admin/health/alive&x=..%2F.."),
        format!("/admin/sessions/{id}/extend?"),
    ] {
        let (resp, _) = exchange(
            s.gw.admin,
            format!("PATCH {target} HTTP/1.1\r\nHost: k\r\nContent-Length: 0\r\n\r\n"),
        )
        .await;
        assert_eq!(resp.status, 403, "{target}: {}", resp.text());
    }
    // A harmless path with an extend-looking query is not an extend: it is forwarded, and
    // Kratos (which routes on the path) extends nothing.
    s.fake.on_admin(
        "ANY",
        "/admin/health/alive",
        Reply::json(200, "{\"status\":\"ok\"}"),
    );
    let (resp, _) = exchange(
        s.gw.admin,
        format!(
            "PATCH /admin/health/alive?/admin/sessions/{id}/extend HTTP/1.1\r\nHost: k\r\nContent-Length: 0\r\n\r\n"
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        s.fake.session_status(id).expect("session").extended,
        0,
        "extended at Kratos"
    );

    // On the public listener the query decides nothing either: whoami with a query naming
    // another path is still whoami, and is refused for the listed identity. (First let the
    // refused extends' revocation land, so that it cannot hit the session registered below.)
    assert!(
        wait_until(WAIT, || s
            .fake
            .session_status(id)
            .is_some_and(|st| st.revoked)
            && metric(&s.metrics(), "kratos_gate_revocation_queue_depth ")
                == 0.0)
        .await,
        "the refused extends' session was not revoked"
    );
    for target in [
        "/sessions/whoami?/health/alive",
        "/sessions/whoami?redirect=/health/alive%3F",
        "/sessions/whoami?x=/../../self-service/login",
    ] {
        s.fake.add_session(s.listed.spec());
        let resp = whoami_raw(s.gw.public, target, &s.listed, true).await;
        assert_eq!(resp.status, 401, "{target}");
        assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
        settle(&s).await;
    }
    // And a harmless path with a whoami-looking query is what Kratos says it is.
    let resp = whoami_raw(
        s.gw.public,
        "/health/alive?/sessions/whoami",
        &s.listed,
        true,
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let blocked = logs.audit("blocked");
    assert_eq!(
        blocked.iter().filter(|e| e["kind"] == "extend").count(),
        3,
        "{}",
        logs.text()
    );
    assert_eq!(
        blocked.iter().filter(|e| e["kind"] == "whoami").count(),
        3,
        "{}",
        logs.text()
    );
}
