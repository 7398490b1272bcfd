//! Built-in admin routes: session lookup, revocation and extension, identity lookup, and
//! deleting an identity's sessions.

use uuid::Uuid;

use super::routing::{error_404, parse_uuid};
use super::state::{render_identity, render_session, Shared, View, PUBLIC_VIEW};
use super::{RecordedCall, Reply};
use crate::support::fixtures::{self, Json};

/// Parses `expand=` values (case-insensitive); `Err` for unknown values.
fn parse_expand(call: &RecordedCall) -> Result<(bool, bool), Box<Reply>> {
    let mut identity = false;
    let mut devices = false;
    for value in call.query_params("expand") {
        match value.to_ascii_lowercase().as_str() {
            "identity" => identity = true,
            "devices" => devices = true,
            _ => {
                return Err(Box::new(Reply::kratos_error(
                    400,
                    None,
                    Some(&format!("Could not parse expand option: {value}")),
                    "The request was malformed or contained invalid parameters",
                )))
            }
        }
    }
    Ok((identity, devices))
}

pub(super) fn admin_get_session(shared: &Shared, call: &RecordedCall, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let (identity, devices) = match parse_expand(call) {
        Ok(expand) => expand,
        Err(reply) => return *reply,
    };
    let inner = shared.lock();
    match inner.session(id) {
        Some(entry) => Reply::json(
            200,
            render_session(
                &inner,
                entry,
                View {
                    identity,
                    devices,
                    admin: true,
                },
            ),
        ),
        None => error_404(),
    }
}

pub(super) fn admin_revoke_session(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let Some(entry) = inner.session_mut(id) else {
        return error_404();
    };
    entry.revoked = true;
    inner.ended.push((id, std::time::Instant::now()));
    Reply::empty(204)
}

pub(super) fn admin_extend_session(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let Some(entry) = inner.session_mut(id) else {
        return error_404();
    };
    entry.extended += 1;
    let inner = &*inner;
    let entry = inner.session(id).expect("session found just above");
    Reply::json(200, render_session(inner, entry, PUBLIC_VIEW))
}

pub(super) fn admin_delete_identity_sessions(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    let mut inner = shared.lock();
    let before = inner.sessions.len();
    let now = std::time::Instant::now();
    let gone: Vec<(Uuid, std::time::Instant)> = inner
        .sessions
        .iter()
        .filter(|s| s.spec.identity_id == id)
        .map(|s| (s.spec.session_id, now))
        .collect();
    inner.ended.extend(gone);
    inner.sessions.retain(|s| s.spec.identity_id != id);
    if inner.sessions.len() == before {
        Reply::json(
            404,
            fixtures::fixture_wire(
                "synthesized/admin-identity-sessions-delete-404-no-sessions.json",
            ),
        )
    } else {
        Reply::empty(204)
    }
}

pub(super) fn admin_list_identities(shared: &Shared, call: &RecordedCall) -> Reply {
    let identifier = call.query_param("credentials_identifier");
    let inner = shared.lock();
    let identities: Vec<Json> = inner
        .identities
        .iter()
        .filter(|i| {
            identifier
                .as_deref()
                .is_none_or(|x| i.effective_email().eq_ignore_ascii_case(x))
        })
        .map(render_identity)
        .collect();
    Reply::json(200, Json::Array(identities))
}

pub(super) fn admin_get_identity(shared: &Shared, id: &str) -> Reply {
    let id = match parse_uuid(id) {
        Ok(id) => id,
        Err(reply) => return *reply,
    };
    match shared.lock().identity(id) {
        Some(identity) => Reply::json(200, render_identity(identity)),
        None => error_404(),
    }
}
