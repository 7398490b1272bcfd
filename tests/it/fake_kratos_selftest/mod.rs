//! Proves the fake Kratos (tests/support/fake_kratos) behaves per CONTRACT.md: one module per
//! part of its behaviour, sharing the setup and client here.

mod admin;
mod fixture_builders;
mod flow_echoes;
mod ids_and_bodies;
mod recording;
mod routing;
mod scripting;
mod whoami;

use crate::support;

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use uuid::Uuid;

use support::client::{self, Reply as Resp, TestClient};
use support::fake_kratos::{
    fresh_cookie_value, fresh_token, fresh_uuid, FakeKratos, MethodMatch, RecordedCall, Reply,
    SessionSpec, Side, MAX_RECORDED_BODY, NO_CACHE, RECEIVED_BYTES_HEADER, SESSION_COOKIE,
};
use support::fixtures::{self, Json};

const TIMEOUT: Duration = Duration::from_secs(5);

/// `ory_kratos_session=<value>`, for a `Cookie` header.
fn session_cookie(value: &str) -> String {
    format!("{SESSION_COOKIE}={value}")
}

/// Requests against one of the fake's listeners, sent with the shared test client.
struct Http {
    client: TestClient,
    base: String,
}

impl Http {
    fn new(base: String) -> Http {
        Http {
            client: client::http1(),
            base,
        }
    }

    fn http2(base: String) -> Http {
        Http {
            client: client::http2(),
            base,
        }
    }

    fn req(&self, method: Method, path: &str) -> http::request::Builder {
        client::request(method, &format!("{}{path}", self.base))
    }

    async fn send(&self, builder: http::request::Builder, body: impl Into<Bytes>) -> Resp {
        let request = builder.body(Full::new(body.into())).expect("valid request");
        tokio::time::timeout(TIMEOUT, client::send(&self.client, request))
            .await
            .expect("response in time")
    }

    async fn get(&self, path: &str) -> Resp {
        self.send(self.req(Method::GET, path), Bytes::new()).await
    }
}

struct Setup {
    fake: FakeKratos,
    public: Http,
    admin: Http,
    identity: Uuid,
    session: Uuid,
    token: String,
    cookie: String,
}

async fn setup() -> Setup {
    let fake = FakeKratos::start().await;
    let identity = fresh_uuid();
    let session = fresh_uuid();
    let token = fresh_token();
    let cookie = fresh_cookie_value();
    fake.add_session(
        SessionSpec::new(identity, session)
            .token(token.clone())
            .cookie(cookie.clone()),
    );
    Setup {
        public: Http::new(fake.public_url()),
        admin: Http::new(fake.admin_url()),
        fake,
        identity,
        session,
        token,
        cookie,
    }
}

fn assert_whoami_ok(s: &Setup, resp: &Resp) {
    assert_eq!(resp.status, StatusCode::OK, "body: {}", resp.text());
    let identity = s.identity.to_string();
    assert_eq!(
        resp.header("x-kratos-authenticated-identity-id"),
        Some(identity.as_str())
    );
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        resp.text(),
        fixtures::whoami_body(s.identity, s.session, None)
    );
}

fn assert_whoami_401(resp: &Resp) {
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert_eq!(resp.text(), fixtures::WHOAMI_401_WIRE);
    assert_eq!(resp.header("content-type"), Some("application/json"));
}
