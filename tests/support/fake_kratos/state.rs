//! The fake's state: the session and identity registry, scripts, failure knobs and recorded
//! calls behind one lock, and how sessions and identities are rendered.

use std::sync::atomic::AtomicUsize;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use uuid::Uuid;

use super::{MethodMatch, RecordedCall, Reply, SessionSpec, Side};
use crate::support::fixtures::{self, Json};

pub(super) struct Script {
    pub(super) side: Side,
    pub(super) method: MethodMatch,
    pub(super) path: String,
    pub(super) reply: Reply,
    pub(super) remaining: Option<usize>,
}

pub(super) struct SessionEntry {
    pub(super) spec: SessionSpec,
    pub(super) revoked: bool,
    pub(super) extended: u32,
}

pub(super) struct IdentityEntry {
    pub(super) id: Uuid,
    pub(super) email: Option<String>,
}

impl IdentityEntry {
    pub(super) fn effective_email(&self) -> &str {
        self.email.as_deref().unwrap_or(fixtures::FIXTURE_EMAIL)
    }
}

#[derive(Default)]
pub(super) struct Inner {
    pub(super) sessions: Vec<SessionEntry>,
    pub(super) identities: Vec<IdentityEntry>,
    pub(super) calls: Vec<RecordedCall>,
    pub(super) scripts: Vec<Script>,
    pub(super) admin_failures: usize,
    pub(super) admin_delay: Option<Duration>,
    pub(super) loose_routing: bool,
    /// Sessions ended through `DELETE /admin/sessions/{id}` and
    /// `DELETE /admin/identities/{id}/sessions`, with when it happened.
    pub(super) ended: Vec<(Uuid, std::time::Instant)>,
}

impl Inner {
    pub(super) fn identity(&self, id: Uuid) -> Option<&IdentityEntry> {
        self.identities.iter().find(|i| i.id == id)
    }

    pub(super) fn identity_mut(&mut self, id: Uuid) -> Option<&mut IdentityEntry> {
        self.identities.iter_mut().find(|i| i.id == id)
    }

    pub(super) fn ensure_identity(&mut self, id: Uuid, email: Option<&str>) {
        match self.identity_mut(id) {
            Some(identity) => {
                if let Some(email) = email {
                    identity.email = Some(email.to_owned());
                }
            }
            None => self.identities.push(IdentityEntry {
                id,
                email: email.map(str::to_owned),
            }),
        }
    }

    pub(super) fn session(&self, id: Uuid) -> Option<&SessionEntry> {
        self.sessions.iter().find(|s| s.spec.session_id == id)
    }

    pub(super) fn session_mut(&mut self, id: Uuid) -> Option<&mut SessionEntry> {
        self.sessions.iter_mut().find(|s| s.spec.session_id == id)
    }
}

pub(super) struct Shared {
    pub(super) public_url: String,
    pub(super) admin_url: String,
    pub(super) inner: Mutex<Inner>,
    pub(super) call_recorded: Notify,
    pub(super) public_connections: AtomicUsize,
    pub(super) admin_connections: AtomicUsize,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handle on the fake's session registry that a [`Reply::from_fn`] closure can keep, for
/// sessions Kratos creates while it answers (see `super::flows`). It does not keep the fake
/// alive: once the [`FakeKratos`] is dropped, adding does nothing.
#[derive(Clone)]
pub struct Registry {
    pub(super) shared: std::sync::Weak<Shared>,
}

impl Registry {
    /// Like [`FakeKratos::add_session`].
    pub fn add_session(&self, spec: SessionSpec) {
        if let Some(shared) = self.shared.upgrade() {
            add_session(&shared, spec);
        }
    }
}

pub(super) fn add_session(shared: &Shared, spec: SessionSpec) {
    let mut inner = shared.lock();
    inner.ensure_identity(spec.identity_id, spec.email.as_deref());
    inner
        .sessions
        .retain(|s| s.spec.session_id != spec.session_id);
    inner.sessions.push(SessionEntry {
        spec,
        revoked: false,
        extended: 0,
    });
}

/// Which parts of a session to render.
#[derive(Clone, Copy)]
pub(super) struct View {
    pub(super) identity: bool,
    pub(super) devices: bool,
    pub(super) admin: bool,
}

pub(super) const PUBLIC_VIEW: View = View {
    identity: true,
    devices: true,
    admin: false,
};

pub(super) fn render_session(inner: &Inner, entry: &SessionEntry, view: View) -> Json {
    let identity = inner.identity(entry.spec.identity_id);
    let email = identity.and_then(|i| i.email.as_deref());
    let mut session = fixtures::session_json(entry.spec.identity_id, entry.spec.session_id, email);
    session.set("active", Json::Bool(!entry.revoked));
    if view.identity {
        if view.admin {
            fixtures::make_admin_session_view(&mut session);
        }
    } else {
        session.set("identity", Json::Null);
    }
    if !view.devices {
        session.set("devices", Json::Null);
    }
    session
}

pub(super) fn render_identity(identity: &IdentityEntry) -> Json {
    fixtures::identity_json(identity.id, Some(identity.effective_email()))
}
