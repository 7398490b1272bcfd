//! An in-process fake Ory Kratos for integration tests.
//!
//! [`FakeKratos::start`] binds two listeners on `127.0.0.1:0`, *public* and
//! *admin*, and serves HTTP/1.1 (keep-alive) and HTTP/2 prior-knowledge with
//! hyper. It behaves like Kratos (see `CONTRACT.md`, sections 3-8) for the
//! session endpoints, backed by an in-memory session registry, records every
//! request, and can be scripted per path. Everything stops when the
//! `FakeKratos` is dropped.
//!
//! Built-in routes (responses are compact JSON + `\n`, like Go):
//!
//! Public listener:
//! - `ANY /sessions/whoami` — credentials in Kratos's order: `X-Session-Token`
//!   (if non-empty it is the only credential looked at), else the first
//!   `ory_kratos_session` cookie across all `Cookie` header fields if its value
//!   is one the registry knows (a known cookie "decodes"; an unknown one does
//!   not, so Kratos falls back to Bearer), else `Authorization: Bearer <token>`
//!   (case-insensitive scheme, exactly two space-separated parts).
//!   200 whoami body + `X-Kratos-Authenticated-Identity-Id`;
//!   403 `session_aal2_required` for [`SessionSpec::aal2_pending`] sessions;
//!   401 [`fixtures::WHOAMI_401_WIRE`] otherwise (also for revoked sessions).
//!   `?tokenize_as=<anything>` adds a fake `tokenized` JWT
//!   ([`fixtures::fake_jwt`], `iss` = public URL + `/`).
//! - `GET /sessions` — the caller's *other* active sessions (Kratos excludes the
//!   current one), `X-Total-Count`; 401 [`fixtures::SESSIONS_401_WIRE`]; 403 AAL.
//! - Admin-looking paths (`/admin/…`, `/identities…`, `/recovery/link|code`)
//!   answer 307 to the admin URL, like Kratos's port redirect.
//!
//! Admin listener (`/admin` is added when missing, so `/sessions/x` works too):
//! - `GET /admin/sessions/{id}[?expand=identity&expand=devices]` — without
//!   `expand=identity` the body has `"identity":null` (and `"devices":null`
//!   without `expand=devices`); 404 fixture body for unknown ids; 400 for a
//!   malformed UUID or expand value. `id=whoami` answers 307 to public whoami.
//! - `DELETE /admin/sessions/{id}` — revokes (204, also when already revoked;
//!   the row stays, whoami then answers 401); 404 unknown.
//! - `PATCH /admin/sessions/{id}/extend` — 200 session (identity expanded,
//!   public view); 404 unknown. Counted in [`SessionStatus::extended`].
//! - `DELETE /admin/identities/{id}/sessions` — hard delete (204 if there were
//!   sessions, else 404 with the 404 body).
//! - `GET /admin/identities/{id}` (admin view, see [`fixtures::identity_json`]),
//!   `GET /admin/identities[?credentials_identifier=x]` (array, `[]` if none).
//!
//! Kratos routes no test needs are not built in: revoking the caller's own sessions
//! (`DELETE /sessions`, `DELETE /sessions/{id}`), listing sessions on the admin API
//! (`GET /admin/sessions`, `GET /admin/identities/{id}/sessions`), bulk session changes
//! (`POST /admin/sessions`) and patching identities (`PATCH /admin/identities/{id}`). They
//! answer 501 with a note (script them with [`FakeKratos::on_public`] or
//! [`FakeKratos::on_admin`] where a test needs them); other methods on their paths get
//! Kratos's 405.
//!
//! Ids in admin and public paths are parsed like Kratos's gofrs/uuid `FromString`
//! ([`parse_uuid_like_kratos`]): canonical, 32 hex digits, braced (`%7B…%7D` in a path),
//! `urn:uuid:`, either case — all name the same session or identity.
//!
//! Self-service flow answers that echo the client's input (`transient_payload`, field
//! values), and sessions created while answering, are in `super::flows`.
//!
//! Both: `GET /health/alive` and `/health/ready` → 200 `{"status":"ok"}`.
//! Every built-in answer to a GET carries
//! `Cache-Control: private, no-cache, no-store, must-revalidate`. Success
//! bodies are `application/json; charset=utf-8`, errors `application/json`
//! (plus `Ory-Error-Id` when the error has an id).
//!
//! Routing follows Go 1.22's `ServeMux`: each path segment is percent-decoded
//! before matching (so `/sessions/%77hoami` is whoami, as with real Kratos), a
//! path with `//`, `.` or `..` segments gets a 301 to the cleaned path, a
//! trailing slash does not match, matching is case-sensitive, unknown paths
//! get 404 `text/plain; charset=utf-8` `404 page not found\n` and a known path
//! with the wrong method gets 405 with `Allow`. With
//! [`FakeKratos::set_loose_routing`] the public side routes like a lax server
//! instead (see there).
//!
//! Files: `types.rs` (recorded calls, sessions, fresh ids), `reply.rs` (scripted replies),
//! `state.rs` (the registry behind one lock), `serve.rs` (answering a request), `bodies.rs`
//! (streamed bodies), `routing.rs` (Go-style routing and the route table), `public.rs` and
//! `admin.rs` (the built-in routes).

mod admin;
mod bodies;
mod public;
mod reply;
mod routing;
mod serve;
mod state;
mod types;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

pub use reply::Reply;
pub use routing::parse_uuid_like_kratos;
pub use state::Registry;
pub use types::{
    fresh_cookie_value, fresh_token, fresh_uuid, MethodMatch, RecordedCall, SessionSpec,
    SessionStatus, Side,
};

use state::{add_session, Inner, Script, Shared};

/// Name of Kratos's default session cookie.
pub const SESSION_COOKIE: &str = "ory_kratos_session";
/// Response header of [`Reply::echo`]: number of request body bytes received.
pub const RECEIVED_BYTES_HEADER: &str = "x-fake-received-bytes";
/// Request bodies are recorded in full only up to this many bytes; the rest is counted.
pub const MAX_RECORDED_BODY: usize = 1024 * 1024;
/// Kratos's `Cache-Control` on every GET.
pub const NO_CACHE: &str = "private, no-cache, no-store, must-revalidate";
/// Content type of Kratos success bodies.
pub const JSON_UTF8: &str = "application/json; charset=utf-8";
/// Content type of Kratos (herodot) error bodies.
pub const JSON_ERROR: &str = "application/json";

/// The herodot 500 body used by [`FakeKratos::set_admin_failures`].
pub const INTERNAL_ERROR_WIRE: &str = "{\"error\":{\"code\":500,\"status\":\"Internal Server Error\",\"message\":\"An internal server error occurred, please contact the system administrator\"}}\n";

/// The fake Kratos. See the module documentation for the routes.
pub struct FakeKratos {
    /// Address of the public listener.
    pub public_addr: SocketAddr,
    /// Address of the admin listener.
    pub admin_addr: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeKratos {
    fn drop(&mut self) {
        // Aborting an accept loop drops its JoinSet, which aborts its connections.
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeKratos {
    /// Binds public and admin listeners on `127.0.0.1:0` and starts serving.
    /// Must be called inside a Tokio runtime.
    pub async fn start() -> FakeKratos {
        let public = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake kratos: bind public listener on 127.0.0.1:0");
        let admin = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake kratos: bind admin listener on 127.0.0.1:0");
        let public_addr = public.local_addr().expect("fake kratos: public local_addr");
        let admin_addr = admin.local_addr().expect("fake kratos: admin local_addr");
        let shared = Arc::new(Shared {
            public_url: format!("http://{public_addr}"),
            admin_url: format!("http://{admin_addr}"),
            inner: Mutex::new(Inner::default()),
            call_recorded: Notify::new(),
            public_connections: AtomicUsize::new(0),
            admin_connections: AtomicUsize::new(0),
        });
        let tasks = vec![
            tokio::spawn(accept_loop(public, Side::Public, shared.clone())),
            tokio::spawn(accept_loop(admin, Side::Admin, shared.clone())),
        ];
        FakeKratos {
            public_addr,
            admin_addr,
            shared,
            tasks,
        }
    }

    /// `http://127.0.0.1:PORT` of the public listener (no trailing slash).
    pub fn public_url(&self) -> String {
        self.shared.public_url.clone()
    }

    /// `http://127.0.0.1:PORT` of the admin listener (no trailing slash, no `/admin`).
    pub fn admin_url(&self) -> String {
        self.shared.admin_url.clone()
    }

    /// Number of TCP connections accepted so far on one listener.
    pub fn connections_accepted(&self, side: Side) -> usize {
        match side {
            Side::Public => self.shared.public_connections.load(Ordering::SeqCst),
            Side::Admin => self.shared.admin_connections.load(Ordering::SeqCst),
        }
    }

    // --- registry ---------------------------------------------------------

    /// Registers (or replaces, by session id) a session; its identity is
    /// registered too (active), and gets `spec.email` if given.
    pub fn add_session(&self, spec: SessionSpec) {
        add_session(&self.shared, spec);
    }

    /// A handle for registering sessions later, from inside a reply (see [`Registry`]).
    pub fn registry(&self) -> Registry {
        Registry {
            shared: Arc::downgrade(&self.shared),
        }
    }

    /// Removes a session entirely (its token and cookie become unknown).
    /// Returns whether it existed.
    pub fn remove_session(&self, session_id: Uuid) -> bool {
        let mut inner = self.shared.lock();
        let before = inner.sessions.len();
        inner.sessions.retain(|s| s.spec.session_id != session_id);
        inner.sessions.len() != before
    }

    /// The state of a session, `None` if it is not (or no longer) registered.
    pub fn session_status(&self, session_id: Uuid) -> Option<SessionStatus> {
        let inner = self.shared.lock();
        inner.session(session_id).map(|entry| SessionStatus {
            identity_id: entry.spec.identity_id,
            revoked: entry.revoked,
            extended: entry.extended,
        })
    }

    /// Ids of the registered sessions (revoked included) of an identity.
    pub fn sessions_of(&self, identity_id: Uuid) -> Vec<Uuid> {
        let inner = self.shared.lock();
        inner
            .sessions
            .iter()
            .filter(|s| s.spec.identity_id == identity_id)
            .map(|s| s.spec.session_id)
            .collect()
    }

    /// Registers an identity without sessions (for `GET /admin/identities…`).
    pub fn add_identity(&self, identity_id: Uuid, email: Option<&str>) {
        self.shared.lock().ensure_identity(identity_id, email);
    }

    // --- scripting ----------------------------------------------------------

    /// Scripts a reply on the public listener for `method` (or `"ANY"`) and
    /// the exact `path` (query ignored). Scripts take precedence over the
    /// built-in routes; the newest matching script wins. The path is compared
    /// with the raw request path and with its decoded routing form (with loose
    /// routing: normalised and case-insensitively).
    pub fn on_public(&self, method: impl Into<MethodMatch>, path: &str, reply: Reply) {
        self.script(Side::Public, method.into(), path, reply);
    }

    /// Like [`FakeKratos::on_public`] on the admin listener; `/admin` is added
    /// to `path` and to request paths when missing, so `/sessions/x` and
    /// `/admin/sessions/x` are the same.
    pub fn on_admin(&self, method: impl Into<MethodMatch>, path: &str, reply: Reply) {
        self.script(Side::Admin, method.into(), path, reply);
    }

    fn script(&self, side: Side, method: MethodMatch, path: &str, reply: Reply) {
        let remaining = reply.times;
        if remaining == Some(0) {
            return;
        }
        self.shared.lock().scripts.push(Script {
            side,
            method,
            path: path.to_owned(),
            reply,
            remaining,
        });
    }

    // --- failure modes -----------------------------------------------------

    /// The next `n` admin calls answer 500 with a herodot body
    /// ([`INTERNAL_ERROR_WIRE`]), before scripts and built-ins.
    pub fn set_admin_failures(&self, n: usize) {
        self.shared.lock().admin_failures = n;
    }

    /// Delays every admin response by `delay` (before headers); `Duration::ZERO` turns it off.
    pub fn set_admin_delay(&self, delay: Duration) {
        self.shared.lock().admin_delay = (!delay.is_zero()).then_some(delay);
    }

    /// Loose routing on the public listener, like a lax server: the path is
    /// percent-decoded as a whole, `//` collapsed, `.`/`..` resolved, a
    /// trailing slash dropped and matching is case-insensitive (so
    /// `//sessions/%77hoami/` and `/Sessions/WhoAmI` are whoami). No 301s.
    pub fn set_loose_routing(&self, loose: bool) {
        self.shared.lock().loose_routing = loose;
    }

    // --- recording ----------------------------------------------------------

    /// All calls so far, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.shared.lock().calls.clone()
    }

    /// Calls on `side` with a matching method whose raw path starts with `path_prefix`.
    pub fn calls_matching(
        &self,
        side: Side,
        method: impl Into<MethodMatch>,
        path_prefix: &str,
    ) -> Vec<RecordedCall> {
        let method = method.into();
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| {
                c.side == side && method.matches(&c.method) && c.path().starts_with(path_prefix)
            })
            .cloned()
            .collect()
    }

    /// Waits until a call on `side` with a matching method and exactly this raw
    /// path (query ignored) has been recorded, and returns the oldest such
    /// call; `None` after `timeout`.
    pub async fn wait_for_call(
        &self,
        side: Side,
        method: impl Into<MethodMatch>,
        path: &str,
        timeout: Duration,
    ) -> Option<RecordedCall> {
        let method = method.into();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.call_recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let found = self
                .shared
                .lock()
                .calls
                .iter()
                .find(|c| c.side == side && method.matches(&c.method) && c.path() == path)
                .cloned();
            if found.is_some() {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Forgets all recorded calls.
    pub fn clear_calls(&self) {
        self.shared.lock().calls.clear();
    }

    /// Takes all calls recorded so far, oldest first, and forgets them (long runs keep the
    /// fake's memory bounded this way).
    pub fn drain_calls(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut self.shared.lock().calls)
    }

    /// Takes the sessions ended by the admin API's `DELETE /admin/sessions/{id}` and
    /// `DELETE /admin/identities/{id}/sessions` so far, each with the instant it happened
    /// (taken while the registry was changed, so a request answered after it saw the
    /// session gone).
    pub fn drain_ended_sessions(&self) -> Vec<(Uuid, std::time::Instant)> {
        std::mem::take(&mut self.shared.lock().ended)
    }
}

async fn accept_loop(listener: TcpListener, side: Side, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("fake kratos ({side:?}): accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match side {
            Side::Public => shared.public_connections.fetch_add(1, Ordering::SeqCst),
            Side::Admin => shared.admin_connections.fetch_add(1, Ordering::SeqCst),
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| serve::handle(shared.clone(), side, req));
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new());
            builder.http2().timer(TokioTimer::new());
            // Errors here are client-side disconnects and the like.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
