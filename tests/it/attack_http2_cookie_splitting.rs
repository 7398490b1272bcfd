//! HTTP/2 cookie splitting: HTTP/2 clients may send each cookie in its own `cookie` field
//! (RFC 9113 8.2.3). A proxy that reads only the first field, or forwards several `Cookie`
//! lines to an HTTP/1.1 server that reads only one, judges a different session than the one
//! the server uses. The gateway joins the fields into one before Kratos (as RFC 9113 requires)
//! and judges Kratos's answer, so whichever cookie Kratos uses is the one judged. The client
//! is hyper's HTTP/2 connection, which (like h2 underneath) sends every value of a field as a
//! field of its own; malformed HTTP/2 fields are sent as hand-built frames.

use crate::support;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

use support::enforcement::{setup, wait_until, Setup, CSRF_SET_COOKIE, JSON, WAIT};
use support::fake_kratos::{Reply, Side};
use support::fixtures;
use support::logs;
use support::raw::{assert_no_credential_bytes, assert_still_serving};
use support::raw_h2;

async fn h2(s: &Setup) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(s.gw.public)
        .await
        .expect("connect");
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c prior knowledge");
    tokio::spawn(conn);
    sender
}

struct Answer {
    status: StatusCode,
    /// Head, body and trailers as text (`name: value` lines), for the credential check.
    text: String,
    set_cookies: Vec<String>,
    body: Bytes,
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    s: &Setup,
    method: Method,
    path: &str,
    fields: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", s.gw.public));
    for (k, v) in fields {
        b = b.header(*k, *v);
    }
    let req = b
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let resp = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("in time")
        .expect("answer");
    let (parts, body) = resp.into_parts();
    let collected = body.collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    let mut text = String::new();
    for (k, v) in parts.headers.iter().chain(trailers.iter()) {
        text.push_str(&format!(
            "{k}: {}\r\n",
            String::from_utf8_lossy(v.as_bytes())
        ));
    }
    text.push_str(&String::from_utf8_lossy(&body));
    Answer {
        status: parts.status,
        set_cookies: parts
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect(),
        text,
        body,
    }
}

async fn renew(s: &Setup) {
    assert!(
        wait_until(WAIT, || s.fake.sessions_of(s.listed.identity).is_empty()).await,
        "the refused session was not revoked"
    );
    s.fake.add_session(s.listed.spec());
}

#[tokio::test]
async fn listed_session_cookie_in_any_of_several_cookie_fields_is_refused() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut sender = h2(&s).await;
    let listed = s.listed.cookie_header();
    let splits: Vec<Vec<&str>> = vec![
        vec!["csrf_token_806=q1w2e3", listed.as_str(), "theme=dark"],
        vec![listed.as_str(), "theme=dark"],
        vec!["a=1", "b=2; c=3", "", listed.as_str()],
        vec!["a=1; ", listed.as_str()],
    ];
    for (n, split) in splits.iter().enumerate() {
        let fields: Vec<(&str, &str)> = split.iter().map(|c| ("cookie", *c)).collect();
        let answer = send(
            &mut sender,
            &s,
            Method::GET,
            "/sessions/whoami",
            &fields,
            "",
        )
        .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{split:?}");
        assert_eq!(&answer.body[..], fixtures::WHOAMI_401_WIRE.as_bytes());
        assert_no_credential_bytes(answer.text.as_bytes(), &s.listed);
        // Kratos got the cookies in one field, in order.
        let call = s
            .fake
            .calls_matching(Side::Public, "ANY", "/sessions/whoami")
            .pop()
            .expect("forwarded");
        assert_eq!(call.header_all("cookie").len(), 1, "{split:?}");
        assert!(
            call.header_all("cookie")[0].contains(listed.as_str()),
            "{split:?}: {:?}",
            call.headers
        );
        assert_eq!(logs.audit("blocked").len(), n + 1, "{split:?}");
        renew(&s).await;
    }
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn two_session_cookies_in_split_fields_are_judged_by_the_one_kratos_uses() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut sender = h2(&s).await;
    let listed = s.listed.cookie_header();
    let unlisted = s.unlisted.cookie_header();

    // Kratos reads the first session cookie: the listed one, refused.
    let answer = send(
        &mut sender,
        &s,
        Method::GET,
        "/sessions/whoami",
        &[("cookie", listed.as_str()), ("cookie", unlisted.as_str())],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_no_credential_bytes(answer.text.as_bytes(), &s.listed);
    assert_eq!(logs.audit("blocked").len(), 1);

    // The unlisted one first: Kratos vouches for the unlisted identity only; the listed
    // cookie, riding along, was not used and grants nothing in this answer.
    let answer = send(
        &mut sender,
        &s,
        Method::GET,
        "/sessions/whoami",
        &[("cookie", unlisted.as_str()), ("cookie", listed.as_str())],
        "",
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.text.contains(&s.unlisted.id()));
    assert!(!answer.text.contains(&s.listed.id()));
    assert!(answer.set_cookies.is_empty());
    assert_eq!(logs.audit("blocked").len(), 1);
}

#[tokio::test]
async fn session_set_cookie_of_a_listed_login_never_reaches_an_http2_client() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let mut sender = h2(&s).await;
    s.fake.on_public(
        Method::POST,
        "/self-service/login",
        Reply::json(
            200,
            fixtures::spa_login_body(s.listed.identity, s.listed.session),
        )
        .header("set-cookie", CSRF_SET_COOKIE)
        .header("set-cookie", &s.listed.set_cookie())
        .header(
            "set-cookie",
            &format!("ORY_KRATOS_SESSION={}; Path=/", s.listed.cookie),
        ),
    );
    let body = support::enforcement::login_json(&s.listed.email);
    let answer = send(
        &mut sender,
        &s,
        Method::POST,
        "/self-service/login?flow=1",
        &[
            JSON[0],
            JSON[1],
            ("cookie", "csrf_token_806=q1w2e3"),
            ("cookie", "theme=dark"),
        ],
        &body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_no_credential_bytes(answer.text.as_bytes(), &s.listed);
    assert_eq!(answer.set_cookies, vec![CSRF_SET_COOKIE.to_owned()]);
    assert_eq!(logs.audit("blocked").len(), 1);
    assert_still_serving(s.gw.public).await;
}

#[tokio::test]
async fn malformed_http2_cookie_fields_are_refused_before_kratos() {
    let (logs, _guard) = logs::capture();
    let s = setup().await;
    let authority = s.gw.public.to_string();
    let listed = s.listed.cookie_header();
    let base = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/sessions/whoami"),
        (":authority", authority.as_str()),
    ];
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        // HTTP/2 field names must be lower-case (RFC 9113 8.2.1).
        ("upper-case Cookie", vec![("Cookie", listed.as_str())]),
        (
            "connection nominating cookie",
            vec![("cookie", listed.as_str()), ("connection", "cookie")],
        ),
        (
            "a field after the pseudo-fields' end, then a pseudo-field",
            vec![("cookie", listed.as_str()), (":path", "/health/alive")],
        ),
    ];
    for (what, extra) in attempts {
        let mut fields = base.to_vec();
        fields.extend(extra);
        let outcome = raw_h2::request(
            s.gw.public,
            &fields,
            None,
            std::time::Duration::from_secs(2),
        )
        .await;
        // h2 refuses the malformed message itself (PROTOCOL_ERROR: the stream is reset, or
        // for a field block it cannot accept the connection goes away), before hyper hands the
        // gateway a request: nothing is forwarded, and there is no audit event for it.
        assert!(
            outcome.reset == Some(1) || outcome.goaway == Some(1),
            "{what}: {outcome:?}"
        );
        assert_eq!(outcome.status, None, "{what}: answered: {outcome:?}");
        assert_no_credential_bytes(&outcome.raw, &s.listed);
    }
    assert!(s.fake.calls().is_empty(), "{:?}", s.fake.calls());
    // The same cookie in a well-formed request is judged.
    let mut fields = base.to_vec();
    fields.push(("cookie", listed.as_str()));
    let outcome = raw_h2::request(
        s.gw.public,
        &fields,
        None,
        std::time::Duration::from_secs(2),
    )
    .await;
    assert_eq!(outcome.status, Some(401), "{outcome:?}");
    assert_eq!(outcome.data, fixtures::WHOAMI_401_WIRE.as_bytes());
    assert_eq!(logs.audit("blocked").len(), 1, "{}", logs.text());
}
