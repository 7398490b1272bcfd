//! Ready-made credential-bearing exchanges (CONTRACT.md section 4): for a [`Person`], the
//! client's request and Kratos's answer carrying that person's credential, scripted on the
//! fake with [`Case::script`] and sent through the gateway or straight to the fake.

use http::Method;

use super::client::Reply as Answer;
use super::enforcement::{
    login_form, login_json, send, Person, Revocation, Setup, CSRF_SET_COOKIE, FORM, JSON,
};
use super::fake_kratos::Reply;
use super::fixtures::{self, Json};

/// The flow id the cases use.
pub const FLOW: &str = "2f5b5ed1-0a4c-4a57-9c4d-5b8a0e2f6c11";
/// Where a browser login lands.
pub const DASHBOARD: &str = "https://app.example.com/dashboard";

/// How the gateway must answer a listed identity.
#[derive(Clone, Copy, Debug)]
pub enum Blocked {
    /// 403 `identity_disabled` JSON.
    Json,
    /// The browser answer (403 HTML page, or 303 to `enforcement.browser_redirect`).
    Browser,
}

/// One credential-bearing exchange: the client's request and Kratos's answer for a person.
pub struct Case {
    pub method: Method,
    /// Path (with query) the client asks for.
    pub path: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub reply: Reply,
    pub blocked: Blocked,
    pub revocation: Revocation,
    /// `kratos_gate_blocked_total{kind=…}`.
    pub kind: &'static str,
}

impl Case {
    pub fn script(&self, s: &Setup) {
        let route = self.path.split('?').next().unwrap_or_default();
        s.fake
            .on_public(self.method.clone(), route, self.reply.clone());
    }

    pub fn headers(&self) -> Vec<(&str, &str)> {
        self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    pub async fn via_gateway(&self, s: &Setup) -> Answer {
        send(
            self.method.clone(),
            &s.public(&self.path),
            &self.headers(),
            &self.body,
        )
        .await
    }

    pub async fn direct(&self, s: &Setup) -> Answer {
        send(
            self.method.clone(),
            &s.direct(&self.path),
            &self.headers(),
            &self.body,
        )
        .await
    }
}

pub fn owned(headers: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    headers.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

pub fn with_cookies(reply: Reply, p: &Person) -> Reply {
    reply
        .header("set-cookie", CSRF_SET_COOKIE)
        .header("set-cookie", &p.set_cookie())
}

pub fn native_login(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/login?flow={FLOW}"),
        headers: owned(&JSON),
        body: login_json(&p.email),
        reply: Reply::json(
            200,
            fixtures::native_login_body(p.identity, p.session, &p.token),
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "login",
    }
}

/// `refresh=true` keeps the session id and token (CONTRACT.md 4.1): the app re-authenticates
/// with its existing token.
pub fn native_login_refresh(p: &Person) -> Case {
    let mut case = native_login(p);
    case.path = format!("/self-service/login?flow={FLOW}&refresh=true");
    case.headers.push(("x-session-token", p.token.clone()));
    case
}

pub fn native_login_aal2_pending(p: &Person) -> Case {
    Case {
        reply: Reply::json(
            200,
            fixtures::native_login_aal2_pending_body(p.session, &p.token),
        ),
        ..native_login(p)
    }
}

pub fn spa_login(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(200, fixtures::spa_login_body(p.identity, p.session)),
            p,
        ),
        ..native_login(p)
    }
}

pub fn spa_login_422(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(422, fixtures::spa_login_422_body())
                .header("ory-error-id", "browser_location_change_required"),
            p,
        ),
        revocation: Revocation::IdentitySessions,
        ..native_login(p)
    }
}

pub fn browser_form_login(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/login?flow={FLOW}"),
        headers: owned(&FORM),
        body: login_form(&p.email),
        reply: with_cookies(Reply::empty(303).header("location", DASHBOARD), p),
        blocked: Blocked::Browser,
        revocation: Revocation::IdentitySessions,
        kind: "login",
    }
}

pub fn native_registration(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/registration?flow={FLOW}"),
        headers: owned(&JSON),
        body: serde_json::json!({"method": "password", "password": "correct horse",
            "traits": {"email": p.email}})
        .to_string(),
        reply: Reply::json(
            200,
            fixtures::native_registration_body(p.identity, p.session, &p.token),
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "registration",
    }
}

pub fn spa_registration(p: &Person) -> Case {
    Case {
        reply: with_cookies(
            Reply::json(200, fixtures::spa_registration_body(p.identity, p.session)),
            p,
        ),
        ..native_registration(p)
    }
}

pub fn token_exchange(p: &Person) -> Case {
    Case {
        method: Method::GET,
        path: "/sessions/token-exchange?init_code=a1b2c3&return_to_code=d4e5f6".to_owned(),
        headers: owned(&[("accept", "application/json")]),
        body: String::new(),
        reply: Reply::json(
            200,
            fixtures::token_exchange_body(p.identity, p.session, &p.token),
        )
        .header(
            "cache-control",
            "private, no-cache, no-store, must-revalidate",
        ),
        blocked: Blocked::Json,
        revocation: Revocation::Session,
        kind: "token_exchange",
    }
}

pub fn native_recovery(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/recovery?flow={FLOW}"),
        headers: owned(&JSON),
        body: r#"{"method":"code","code":"482910"}"#.to_owned(),
        reply: Reply::json(200, fixtures::native_recovery_body(&p.token)),
        blocked: Blocked::Json,
        revocation: Revocation::IdentitySessions,
        kind: "recovery",
    }
}

pub fn oidc_callback(p: &Person) -> Case {
    Case {
        method: Method::GET,
        path: "/self-service/methods/oidc/callback/google?code=4%2F0AbCd&state=xyz".to_owned(),
        headers: owned(&[("accept", "text/html")]),
        body: String::new(),
        reply: with_cookies(
            Reply::raw(303, format!("<a href=\"{DASHBOARD}\">See Other</a>.\n\n"))
                .header("content-type", "text/html; charset=utf-8")
                .header("location", DASHBOARD),
            p,
        ),
        blocked: Blocked::Browser,
        revocation: Revocation::IdentitySessions,
        kind: "login",
    }
}

/// A browser settings flow answered as JSON (SPA) after a successful submit: the flow object
/// (which carries the `identity`) and a re-issued session cookie (CONTRACT.md 4.5).
fn settings_flow_body(p: &Person) -> String {
    let session = fixtures::session_json(p.identity, p.session, Some(&p.email));
    let identity = session.get("identity").cloned().expect("identity");
    Json::Object(vec![
        ("id".into(), Json::str(FLOW)),
        ("type".into(), Json::str("browser")),
        ("expires_at".into(), Json::str("2026-08-01T11:00:00Z")),
        ("issued_at".into(), Json::str("2026-08-01T10:00:00Z")),
        (
            "request_url".into(),
            Json::str("https://auth.example.com/self-service/settings/browser"),
        ),
        ("active".into(), Json::str("password")),
        (
            "ui".into(),
            Json::Object(vec![
                (
                    "action".into(),
                    Json::str(format!(
                        "https://auth.example.com/self-service/settings?flow={FLOW}"
                    )),
                ),
                ("method".into(), Json::str("POST")),
                ("nodes".into(), Json::Array(vec![])),
            ]),
        ),
        ("identity".into(), identity),
        ("state".into(), Json::str("success")),
        ("continue_with".into(), Json::Null),
    ])
    .to_wire()
}

pub fn settings_reissue(p: &Person) -> Case {
    Case {
        method: Method::POST,
        path: format!("/self-service/settings?flow={FLOW}"),
        headers: owned(&JSON),
        body: r#"{"method":"password","password":"a new correct horse"}"#.to_owned(),
        reply: Reply::json(200, settings_flow_body(p)).header("set-cookie", &p.set_cookie()),
        blocked: Blocked::Json,
        revocation: Revocation::IdentitySessions,
        kind: "settings",
    }
}
