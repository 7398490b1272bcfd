//! kratos-gate: a reverse proxy in front of Ory Kratos that keeps identities on a blocklist
//! from obtaining, keeping, refreshing or extending a session.
//!
//! [`start`] binds every listener and returns a running [`Gateway`]; tests start one on
//! port 0 and talk to it over TCP like any client.
#![forbid(unsafe_code)]
// Untrusted input must never panic the gateway: no unwrap/expect/indexing/panic outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod balance;
pub mod blocklist;
pub mod body;
pub mod config;
pub mod config_tree;
pub mod decision;
pub mod diagnostic;
pub mod enforce;
pub mod error;
pub mod headers;
pub mod hooks;
pub mod inspection;
pub mod kratos;
pub mod logging;
pub mod metrics;
pub mod networks;
pub mod ops;
pub mod paths;
pub mod proxy;
pub mod refresh;
pub mod reload;
pub mod remote;
pub mod respond;
pub mod revocation;
pub mod schema;
pub mod server;
pub mod status;
pub mod throttle;
pub mod tls;
pub mod upstream;
pub mod util;
pub mod validate;

#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::blocklist::source::Loaded;
use crate::blocklist::store::BlocklistStore;
use crate::config::Config;
use crate::diagnostic::Diagnostic;
use crate::enforce::{AdminPolicy, Enforcer, PublicPolicy};
use crate::kratos::KratosClient;
use crate::metrics::{Listener, Metrics};
use crate::ops::Readiness;
use crate::proxy::{Policy, Proxy};
use crate::revocation::RevocationSettings;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config or blocklist is invalid: exit code 2.
    #[error("{}", diagnostic::render(.0).trim_end())]
    Invalid(Vec<Diagnostic>),
    /// Something outside the config files is missing (admin token, TLS setup).
    #[error("{0}")]
    Setup(String),
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({listener}): {source}")]
    Bind {
        listener: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    pub public_addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    pub ops_addr: SocketAddr,
    pub hooks_addr: Option<SocketAddr>,
    blocklist: Arc<BlocklistStore>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    triggers: refresh::Triggers,
    stop_listeners: watch::Sender<bool>,
    stop_background: watch::Sender<bool>,
    listeners: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
    ops: JoinHandle<()>,
    stop_ops: watch::Sender<bool>,
    shutdown_delay: std::time::Duration,
}

/// Reads and checks the blocklist, binds every listener and starts serving.
pub async fn start(config: Config) -> Result<Gateway, StartError> {
    let loaded = blocklist::source::load(&config.blocklist)
        .await
        .map_err(StartError::Invalid)?;
    start_with(config, loaded).await
}

/// [`start`] with the blocklist already read and parsed (the binary checks it before it
/// builds the runtime): the list is parsed once.
pub async fn start_with(config: Config, loaded: Loaded) -> Result<Gateway, StartError> {
    let metrics = Arc::new(Metrics::with_remote(loaded.source.fetch_metrics()));
    let (store, warnings) = BlocklistStore::new(loaded, Arc::clone(&metrics));
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let blocklist = Arc::new(store);
    let admin_token = config.admin_token().map_err(StartError::Setup)?;
    let hooks_secret = config.hooks_secret().map_err(StartError::Setup)?;
    let hooks_secret_header = http::HeaderName::from_bytes(
        config.hooks.secret_header.trim().as_bytes(),
    )
    .map_err(|_| {
        StartError::Setup(format!(
            "hooks.secret_header `{}` is not a header name",
            config.hooks.secret_header
        ))
    })?;
    let client_tls = tls::client_config(config.upstream.ca_file.as_deref())
        .map_err(|e| StartError::Setup(format!("upstream TLS: {e}")))?;
    let kratos = KratosClient::new(&config, admin_token, client_tls.clone())
        .map_err(|e| StartError::Setup(format!("cannot build the Kratos client: {e}")))?
        .with_metrics(Arc::clone(&metrics));
    // Per core, the gateway's own calls to Kratos run on this (the control) runtime.
    let kratos = match config.server.runtime {
        config::RuntimeLayout::Shared => kratos,
        config::RuntimeLayout::PerCore => kratos.on_runtime(tokio::runtime::Handle::current()),
    };
    // Before anything is bound: a journal that cannot be used is a start error, and the
    // revocations it holds are queued again.
    let (stop_background, background_rx) = watch::channel(false);
    let (revoker, revocation_task) = revocation::start(
        kratos.clone(),
        RevocationSettings {
            queue_capacity: config.revocation.queue_capacity,
            concurrency: config.revocation.concurrency,
            rate_per_second: config.revocation.rate_per_second,
            initial_backoff: config.revocation.initial_backoff.get(),
            max_backoff: config.revocation.max_backoff.get(),
            journal: config.revocation.journal.clone(),
        },
        Arc::clone(&metrics),
        background_rx.clone(),
    )
    .map_err(StartError::Setup)?;
    let quiet = config.blocklist.debounce.get();
    let public_cert = load_cert("public", &config.listen.public, quiet)?;
    let admin_cert = match &config.listen.admin {
        Some(a) => load_cert("admin", a, quiet)?,
        None => None,
    };
    let public_tls = acceptor("public", &public_cert, &config.server)?;
    let admin_tls = acceptor("admin", &admin_cert, &config.server)?;

    // Per core: every worker runtime accepts on its own socket of each proxy listener.
    let workers = match config.server.runtime {
        config::RuntimeLayout::Shared => None,
        config::RuntimeLayout::PerCore => {
            Some(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
    };
    let public = bind_sockets("public", config.listen.public.address, workers).await?;
    let admin = match &config.listen.admin {
        Some(a) => Some(bind_sockets("admin", a.address, workers).await?),
        None => None,
    };
    let ops = bind("ops", config.listen.ops).await?;
    let public_addr = public.addr;
    let admin_addr = admin.as_ref().map(|a| a.addr);
    let ops_addr = local_addr(&ops, "ops", config.listen.ops)?;
    let hooks = match config.listen.hooks {
        Some(a) => Some(bind("hooks", a).await?),
        None => None,
    };
    let hooks_addr = match &hooks {
        Some(l) => Some(local_addr(
            l,
            "hooks",
            config.listen.hooks.unwrap_or(ops_addr),
        )?),
        None => None,
    };
    let report_only = config.blocklist.mode == config::GlobalMode::Report;

    let readiness = Arc::new(Readiness::default());
    let (stop_listeners, stop_rx) = watch::channel(false);
    let (stop_ops, ops_rx) = watch::channel(false);
    let grace = config.server.shutdown_grace.get();
    let builder = server::builder(&config.server);
    let on_change = (!report_only).then(|| revoke_on_add(revoker.clone()));
    if config.revocation.sweep_on_start && !report_only {
        sweep(&blocklist.snapshot(), &revoker);
    }
    let enforcer = Arc::new(Enforcer::new(
        &config,
        Arc::clone(&blocklist),
        kratos,
        revoker,
        Arc::clone(&metrics),
    ));
    let throttle = throttle::Throttle::new(&config.throttle, metrics.throttle.clone())
        .map_err(StartError::Setup)?;
    if let Some(t) = &throttle {
        tracing::info!(
            store = t.store_name(),
            "throttling self-service submissions"
        );
    }
    let public_policy = Arc::new(
        PublicPolicy::new(&config, Arc::clone(&enforcer))
            .with_throttle(throttle.map(|t| throttle::gate::Gate::new(&config, Arc::new(t)))),
    );
    let admin_policy = Arc::new(AdminPolicy::new(enforcer));

    let proxies = Arc::new(ProxySetup {
        config: config.clone(),
        client_tls,
        public_policy,
        admin_policy,
        metrics: Arc::clone(&metrics),
        builder: builder.clone(),
        public_tls,
        admin_tls,
        stop: stop_rx.clone(),
        grace,
    });
    let public = seated("public", public.sockets, &metrics);
    let admin = admin.map(|a| seated("admin", a.sockets, &metrics));
    let mut listeners = match workers {
        None => vec![tokio::spawn(proxies.run(public, admin))],
        Some(_) => spawn_workers(&proxies, public, admin)?,
    };

    let ops_task = {
        let readiness = Arc::clone(&readiness);
        let metrics = Arc::clone(&metrics);
        let status = Arc::new(status::Status::new(Arc::clone(&blocklist), report_only));
        tokio::spawn(server::serve(
            "ops",
            ops,
            builder,
            move |req, _peer, _tls| {
                ops::handle(
                    req,
                    Arc::clone(&readiness),
                    Arc::clone(&metrics),
                    Arc::clone(&status),
                )
            },
            None,
            None,
            ops_rx,
            grace,
        ))
    };

    if let Some(listener) = hooks {
        let endpoint = Arc::new(hooks::HookEndpoint {
            blocklist: Arc::clone(&blocklist),
            metrics: Arc::clone(&metrics),
            email_traits: config.blocklist.email_traits.clone(),
            secret_header: hooks_secret_header,
            secret: hooks_secret,
            message: config.hooks.message.clone(),
            report_only,
        });
        let seconds = metrics.request_duration("hooks");
        listeners.push(tokio::spawn(server::serve(
            "hooks",
            listener,
            server::builder(&config.server),
            move |req, _peer, _tls| {
                let endpoint = Arc::clone(&endpoint);
                let seconds = seconds.clone();
                async move {
                    let started = std::time::Instant::now();
                    let response = endpoint.handle(req).await;
                    seconds.observe(started.elapsed());
                    response
                }
            },
            None,
            None,
            stop_rx.clone(),
            grace,
        )));
    }

    let triggers = refresh::Triggers::default();
    // The watch starts before the reloader is spawned: no change after start-up slips past.
    let schedule = refresh::Schedule::start(
        vec![Arc::clone(blocklist.source())],
        triggers.clone(),
        config.blocklist.poll_interval.get(),
        config.blocklist.debounce.get(),
    );
    let certs: Vec<_> = [public_cert, admin_cert].into_iter().flatten().collect();
    let background = vec![
        tokio::spawn(tls::run_cert_reloader(
            certs,
            config.blocklist.poll_interval.get(),
            config.blocklist.debounce.get(),
            background_rx.clone(),
        )),
        revocation_task,
        tokio::spawn(reload::run_reloader(
            Arc::clone(&blocklist),
            schedule,
            on_change,
            background_rx,
        )),
    ];

    readiness.set_listening();
    {
        let list = blocklist.snapshot();
        // The same SHA-256 as `GET /blocklist` and `kratos_gate_blocklist_info`.
        let sha256 = blocklist.state().sha256;
        let listeners = [
            Some(("public", public_addr)),
            admin_addr.map(|a| ("admin", a)),
            Some(("ops", ops_addr)),
            hooks_addr.map(|a| ("hooks", a)),
        ];
        let listeners: Vec<String> = listeners
            .iter()
            .flatten()
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect();
        tracing::info!(
            version = logging::VERSION,
            commit = logging::COMMIT,
            mode = if report_only { "report" } else { "enforce" },
            listeners = %listeners.join(" "),
            public = %public_addr,
            admin = admin_addr.map(tracing::field::display),
            ops = %ops_addr,
            hooks = hooks_addr.map(tracing::field::display),
            hooks_enabled = hooks_addr.is_some(),
            upstream_public = %config.upstream.public,
            upstream_admin = %config.upstream.admin,
            source = %config.blocklist.path.display(),
            blocklist = %config.blocklist.path.display(),
            checksum = %sha256,
            sha256 = %sha256,
            entries = list.len(),
            "kratos-gate serving"
        );
    }
    Ok(Gateway {
        public_addr,
        admin_addr,
        ops_addr,
        hooks_addr,
        blocklist,
        metrics,
        readiness,
        triggers,
        stop_listeners,
        stop_background,
        listeners,
        background,
        ops: ops_task,
        stop_ops,
        shutdown_delay: config.server.shutdown_delay.get(),
    })
}

/// Revokes the existing sessions of identities a reload adds (or whose block it extends), so
/// that services checking sessions with Kratos directly lose them too.
fn revoke_on_add(revoker: revocation::Revoker) -> reload::ChangeListener {
    Arc::new(move |changes: &blocklist::Changes| {
        let identities = changes.added.len() + changes.extended.len();
        let emails = changes.added_emails.len();
        if identities + emails == 0 {
            return;
        }
        tracing::info!(
            identities,
            emails,
            "revoking the existing sessions of newly listed identities"
        );
        for id in changes.added.iter().chain(&changes.extended) {
            revoker.revoke(revocation::Target::IdentitySessions(*id));
        }
        for email in &changes.added_emails {
            revoker.revoke(revocation::Target::IdentifierSessions(email.clone()));
        }
    })
}

/// `revocation.sweep_on_start`: one revocation per listed identity and e-mail.
fn sweep(list: &blocklist::Blocklist, revoker: &revocation::Revoker) {
    let now = util::unix_now();
    let mut n = 0usize;
    for id in list.identities_in_force(now) {
        revoker.revoke(revocation::Target::IdentitySessions(id));
        n += 1;
    }
    for email in list.emails_in_force(now) {
        revoker.revoke(revocation::Target::IdentifierSessions(email.to_owned()));
        n += 1;
    }
    tracing::info!(
        revocations = n,
        "start-up sweep: revoking the sessions of every listed identity"
    );
}

/// What each runtime needs to serve the public and admin listeners: with the shared layout
/// one runtime runs it, with the per-core layout every worker runtime does, each with its
/// own connections to Kratos.
struct ProxySetup {
    config: Config,
    client_tls: rustls::ClientConfig,
    public_policy: Arc<PublicPolicy>,
    admin_policy: Arc<AdminPolicy>,
    metrics: Arc<Metrics>,
    builder: hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    public_tls: Option<server::Tls>,
    admin_tls: Option<server::Tls>,
    stop: watch::Receiver<bool>,
    grace: std::time::Duration,
}

impl ProxySetup {
    /// Serves one socket of the public listener and, when there is one, of the admin
    /// listener on the current runtime, until the listeners stop and their connections
    /// drained. The pools to Kratos belong to this runtime.
    async fn run(self: Arc<Self>, public: Vec<Socket>, admin: Option<Vec<Socket>>) {
        let config = &self.config;
        let public_pool =
            upstream::Upstream::new(config, self.client_tls.clone(), &config.upstream.public);
        let admin_pool = if public_pool.serves(&config.upstream.admin) {
            Arc::clone(&public_pool)
        } else {
            upstream::Upstream::new(config, self.client_tls.clone(), &config.upstream.admin)
        };
        let mut tasks = Vec::new();
        for (l, seat) in public {
            let Some(listener) = into_tokio("public", l) else {
                continue;
            };
            let proxy = Proxy::new(
                Listener::Public,
                config.upstream.public.clone(),
                Arc::clone(&public_pool),
                config,
                Arc::clone(&self.public_policy),
                Arc::clone(&self.metrics),
            );
            tasks.push(tokio::spawn(self.serve_proxy(
                "public",
                listener,
                proxy,
                self.public_tls.clone(),
                seat,
            )));
        }
        for (l, seat) in admin.into_iter().flatten() {
            let Some(listener) = into_tokio("admin", l) else {
                continue;
            };
            let proxy = Proxy::new(
                Listener::Admin,
                config.upstream.admin.clone(),
                Arc::clone(&admin_pool),
                config,
                Arc::clone(&self.admin_policy),
                Arc::clone(&self.metrics),
            );
            tasks.push(tokio::spawn(self.serve_proxy(
                "admin",
                listener,
                proxy,
                self.admin_tls.clone(),
                seat,
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    fn serve_proxy<P: Policy>(
        &self,
        name: &'static str,
        listener: TcpListener,
        proxy: Proxy<P>,
        tls: Option<server::Tls>,
        seat: balance::Seat,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // One shared proxy: cloning it per request would clone its pool and upstream URL.
        let proxy = Arc::new(proxy);
        let seconds = self.metrics.request_duration(name);
        server::serve(
            name,
            listener,
            self.builder.clone(),
            move |req, addr, tls| {
                let proxy = Arc::clone(&proxy);
                let seconds = seconds.clone();
                async move {
                    let started = std::time::Instant::now();
                    let peer = proxy.peer(addr, tls);
                    let response = proxy.handle(req, peer).await;
                    seconds.observe(started.elapsed());
                    response
                }
            },
            tls,
            Some(seat),
            self.stop.clone(),
            self.grace,
        )
    }
}

/// The per-core layout: one thread per socket of the public listener, each running a
/// single-threaded runtime that serves its sockets of the public and admin listeners. The
/// handles end when a worker has drained and stopped.
fn spawn_workers(
    setup: &Arc<ProxySetup>,
    public: Vec<Socket>,
    admin: Option<Vec<Socket>>,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let mut admin = admin.map(Vec::into_iter);
    let mut handles = Vec::new();
    for (i, public) in public.into_iter().enumerate() {
        let admin = admin.as_mut().and_then(Iterator::next).map(|a| vec![a]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| StartError::Setup(format!("cannot build worker runtime {i}: {e}")))?;
        let setup = Arc::clone(setup);
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        // Events of the worker go where the starting thread's go.
        let dispatch = tracing::dispatcher::get_default(Clone::clone);
        std::thread::Builder::new()
            .name(format!("kg-worker-{i}"))
            .spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    runtime.block_on(setup.run(vec![public], admin));
                });
                // Connections still open after the grace period are closed here.
                drop(runtime);
                let _ = done.send(());
            })
            .map_err(|e| StartError::Setup(format!("cannot start worker thread {i}: {e}")))?;
        handles.push(tokio::spawn(async move {
            let _ = finished.await;
        }));
    }
    Ok(handles)
}

/// One socket of a proxy listener, and its worker's seat in the listener's [`balance`].
type Socket = (std::net::TcpListener, balance::Seat);

/// Each of a listener's sockets with a seat: one worker runtime per socket.
fn seated(
    listener: &'static str,
    sockets: Vec<std::net::TcpListener>,
    metrics: &Metrics,
) -> Vec<Socket> {
    let seats = balance::Balance::seats(metrics.open_connections(listener, sockets.len()));
    sockets.into_iter().zip(seats).collect()
}

/// A proxy listener's sockets: one, or one per worker runtime on the same port.
struct Sockets {
    addr: SocketAddr,
    sockets: Vec<std::net::TcpListener>,
}

/// Binds `addr` once, or (`per_core`) that many times with SO_REUSEPORT, the kernel spreading
/// connections over the sockets; port 0 becomes the port the first socket got.
async fn bind_sockets(
    listener: &'static str,
    addr: SocketAddr,
    per_core: Option<usize>,
) -> Result<Sockets, StartError> {
    let err = |source| StartError::Bind {
        listener,
        addr,
        source,
    };
    let Some(n) = per_core else {
        let l = bind(listener, addr).await?;
        let bound = local_addr(&l, listener, addr)?;
        return Ok(Sockets {
            addr: bound,
            sockets: vec![l.into_std().map_err(err)?],
        });
    };
    let new_socket = || {
        if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
    };
    // A plain bind first (never listening): SO_REUSEPORT alone would let this gateway join
    // the sockets of another process of the same user already listening there (a stale
    // instance with an older list) and split the connections with it, silently.
    if addr.port() != 0 {
        let probe = new_socket().map_err(err)?;
        probe.set_reuseaddr(true).map_err(err)?;
        probe.bind(addr).map_err(err)?;
    }
    let mut at = addr;
    let mut sockets = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        let socket = new_socket().map_err(err)?;
        socket.set_reuseaddr(true).map_err(err)?;
        socket.set_reuseport(true).map_err(err)?;
        socket.bind(at).map_err(err)?;
        let l = socket.listen(1024).map_err(err)?;
        at = l.local_addr().map_err(err)?;
        sockets.push(l.into_std().map_err(err)?);
    }
    Ok(Sockets { addr: at, sockets })
}

/// A socket bound by [`bind_sockets`], registered with the current runtime.
fn into_tokio(name: &'static str, l: std::net::TcpListener) -> Option<TcpListener> {
    match TcpListener::from_std(l) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(listener = name, error = %e, "cannot serve a listener socket");
            None
        }
    }
}

fn load_cert(
    listener: &'static str,
    listen: &config::ListenAddr,
    quiet: std::time::Duration,
) -> Result<Option<Arc<tls::ReloadingCert>>, StartError> {
    match &listen.tls {
        None => Ok(None),
        Some(files) => tls::ReloadingCert::load(&files.cert, &files.key, quiet)
            .map(|c| Some(Arc::new(c)))
            .map_err(|e| StartError::Setup(format!("listen.{listener}.tls: {e}"))),
    }
}

fn acceptor(
    listener: &'static str,
    cert: &Option<Arc<tls::ReloadingCert>>,
    server: &config::Server,
) -> Result<Option<server::Tls>, StartError> {
    cert.as_ref()
        .map(|c| tls::acceptor(Arc::clone(c)).map(|a| server::Tls::new(a, server)))
        .transpose()
        .map_err(|e| StartError::Setup(format!("listen.{listener}.tls: {e}")))
}

async fn bind(listener: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            listener,
            addr,
            source,
        })
}

fn local_addr(
    l: &TcpListener,
    listener: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    l.local_addr().map_err(|source| StartError::Bind {
        listener,
        addr,
        source,
    })
}

impl Gateway {
    /// Re-reads the blocklist now (what SIGHUP does).
    pub fn reload_blocklist(&self) {
        self.triggers.now.notify_one();
    }

    pub fn blocklist(&self) -> &Arc<BlocklistStore> {
        &self.blocklist
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Graceful shutdown: `/readyz` turns 503, after `server.shutdown_delay` the listeners
    /// close, in-flight requests get `server.shutdown_grace` to finish, then background
    /// tasks stop. Returns when everything has stopped.
    pub async fn shutdown(self) {
        self.readiness.set_draining();
        tracing::info!(
            delay = %humantime::format_duration(self.shutdown_delay),
            "shutting down: readiness is now 503"
        );
        if !self.shutdown_delay.is_zero() {
            tokio::time::sleep(self.shutdown_delay).await;
        }
        let _ = self.stop_listeners.send(true);
        for l in self.listeners {
            let _ = l.await;
        }
        let _ = self.stop_background.send(true);
        for b in self.background {
            let _ = b.await;
        }
        let _ = self.stop_ops.send(true);
        let _ = self.ops.await;
        tracing::info!("shutdown complete");
    }
}
