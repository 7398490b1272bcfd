//! Built-in public routes: whoami and the caller's other sessions, with Kratos's credential
//! order.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header;
use http::HeaderMap;

use super::state::{render_session, Inner, Shared, PUBLIC_VIEW};
use super::{RecordedCall, Reply, SESSION_COOKIE};
use crate::support::fixtures::{self, Json};

enum Auth {
    /// No usable credential, or one the registry does not know.
    Missing,
    /// Index into `Inner::sessions`.
    Session(usize),
}

/// Kratos's credential order (`session/manager_http.go`).
fn authenticate(inner: &Inner, headers: &HeaderMap) -> Auth {
    let by_token = |token: &str| {
        inner
            .sessions
            .iter()
            .position(|s| s.spec.token.as_deref() == Some(token))
            .map_or(Auth::Missing, Auth::Session)
    };
    if let Some(token) = headers
        .get("x-session-token")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|t| !t.is_empty())
    {
        return by_token(&token);
    }
    if let Some(value) = session_cookie_value(headers) {
        // A cookie "decodes" if the fake issued it, i.e. it is in the registry.
        if let Some(i) = inner
            .sessions
            .iter()
            .position(|s| s.spec.cookie.as_deref() == Some(value.as_str()))
        {
            return Auth::Session(i);
        }
    }
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        let text = String::from_utf8_lossy(authorization.as_bytes());
        let parts: Vec<&str> = text.split(' ').collect();
        if let [scheme, token] = parts.as_slice() {
            if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
                return by_token(token);
            }
        }
    }
    Auth::Missing
}

/// The first `ory_kratos_session` cookie over all `Cookie` header fields.
fn session_cookie_value(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().find_map(|value| {
        String::from_utf8_lossy(value.as_bytes())
            .split(';')
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == SESSION_COOKIE)
            .map(|(_, value)| value.trim_matches('"').to_owned())
    })
}

fn whoami_401() -> Reply {
    Reply::json(401, fixtures::WHOAMI_401_WIRE)
}

fn aal2_403() -> Reply {
    Reply::json(403, fixtures::whoami_403_aal2_body())
        .default_header("ory-error-id", "session_aal2_required")
}

pub(super) fn whoami(shared: &Shared, call: &RecordedCall) -> Reply {
    let inner = shared.lock();
    let Auth::Session(index) = authenticate(&inner, &call.headers) else {
        return whoami_401();
    };
    let entry = &inner.sessions[index];
    if entry.revoked {
        return whoami_401();
    }
    if entry.spec.aal2_pending {
        return aal2_403();
    }
    let mut session = render_session(&inner, entry, PUBLIC_VIEW);
    if call
        .query_param("tokenize_as")
        .is_some_and(|t| !t.is_empty())
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let jwt = fixtures::fake_jwt(
            entry.spec.identity_id,
            entry.spec.session_id,
            &format!("{}/", shared.public_url),
            now,
        );
        session.set("tokenized", Json::str(jwt));
    }
    Reply::json(200, session).default_header(
        "x-kratos-authenticated-identity-id",
        &entry.spec.identity_id.to_string(),
    )
}

/// Authenticates like `GET /sessions` & co.: the 401 has its own reason.
fn authenticate_for_sessions(inner: &Inner, call: &RecordedCall) -> Result<usize, Box<Reply>> {
    match authenticate(inner, &call.headers) {
        Auth::Session(index) if !inner.sessions[index].revoked => {
            if inner.sessions[index].spec.aal2_pending {
                Err(Box::new(aal2_403()))
            } else {
                Ok(index)
            }
        }
        _ => Err(Box::new(Reply::json(401, fixtures::SESSIONS_401_WIRE))),
    }
}

pub(super) fn list_my_sessions(shared: &Shared, call: &RecordedCall) -> Reply {
    let inner = shared.lock();
    let index = match authenticate_for_sessions(&inner, call) {
        Ok(index) => index,
        Err(reply) => return *reply,
    };
    let current = &inner.sessions[index].spec;
    let others: Vec<Json> = inner
        .sessions
        .iter()
        .filter(|s| {
            s.spec.identity_id == current.identity_id
                && s.spec.session_id != current.session_id
                && !s.revoked
        })
        .map(|s| render_session(&inner, s, PUBLIC_VIEW))
        .collect();
    let count = others.len().to_string();
    Reply::json(200, Json::Array(others)).default_header("x-total-count", &count)
}
