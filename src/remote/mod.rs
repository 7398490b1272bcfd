//! Remote blocklist sources (`blocklist.url`): an HTTP(S) URL fetched with conditional GETs
//! (`If-None-Match` / `If-Modified-Since`), or an S3, Google Cloud Storage or Azure Blob
//! object fetched through `object_store` with conditional gets. An unchanged list costs one
//! request answered 304: no body, no parse.
//!
//! Credentials come from each cloud's standard chain (`AWS_*` environment, web identity /
//! IRSA, container and instance credentials; `GOOGLE_*`; `AZURE_*`), the S3 endpoint from
//! `AWS_ENDPOINT_URL` for S3-compatible stores. TLS is rustls on ring with the system roots
//! (`SSL_CERT_FILE` / `SSL_CERT_DIR` as rustls-native-certs reads them).
//!
//! A [`RemoteSource`] is a [`Source`] like the blocklist file: the store polls it, parses what
//! it returns, keeps the last good list when a fetch or a parse fails, audits and revokes on
//! additions. Its requests run on a thread and runtime of its own, so that a fetch can be
//! waited for from any thread (the reload thread, or start-up inside the caller's runtime).

mod cache;
mod http;
mod object;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::{Arc, Mutex};

use object_store::{ObjectMeta, ObjectStore};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::blocklist::source::{parse_bytes, Loaded, MAX_BLOCKLIST_BYTES};
use crate::blocklist::{Blocklist, Parsed};
use crate::config::{BlocklistConfig, SourceKind, SourceUrl};
use crate::diagnostic::Diagnostic;
use crate::refresh::{Fetching, Source};
use crate::util::sha256_hex;

pub use cache::Cache;
use http::{client, fetch_http};
use object::{fetch_object, no_retries, Connector};

/// What one poll of the source found.
#[derive(Debug)]
pub enum Fetch {
    /// The source answered 304 (or the object's ETag still matches): nothing downloaded.
    NotModified,
    /// A new version of the list, as bytes (not yet parsed).
    Body(Vec<u8>),
}

/// Why a fetch failed. The last good list stays in force.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FetchError(String);

/// What a conditional request sends back: the validators of the version last fetched.
#[derive(Debug, Default, Clone)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
    /// Object stores: the object's metadata (ETag and modification time).
    meta: Option<ObjectMeta>,
    /// Checksum of the bytes this version came with.
    body: Option<u64>,
    /// The next request asks without validators (see [`Fetcher::fetch`]).
    verify: bool,
}

enum Backend {
    Http {
        client: reqwest::Client,
        url: String,
        /// The URL as logs show it ([`shown`]).
        shown: String,
    },
    Store {
        store: Arc<dyn ObjectStore>,
        location: object_store::path::Path,
    },
}

/// The async half of a remote source: its client and the validators of the version it last
/// delivered.
struct Fetcher {
    backend: Backend,
    validators: Mutex<Validators>,
}

impl Fetcher {
    /// Builds the client and reads the cloud's credential settings from the environment
    /// (within the source's runtime).
    fn new(url: &SourceUrl, tls: rustls::ClientConfig) -> Result<Self, String> {
        let store_error = |e: object_store::Error| format!("{}: {e}", url.raw);
        let backend = match url.kind {
            SourceKind::Http | SourceKind::Https => Backend::Http {
                client: client(tls, url.kind == SourceKind::Https)?,
                url: url.raw.clone(),
                shown: shown(url),
            },
            SourceKind::S3 | SourceKind::Gcs | SourceKind::Azure => {
                let connector = Connector { tls };
                let store: Arc<dyn ObjectStore> = match url.kind {
                    SourceKind::S3 => Arc::new(
                        object_store::aws::AmazonS3Builder::from_env()
                            .with_bucket_name(&url.bucket)
                            .with_http_connector(connector)
                            .with_retry(no_retries())
                            .build()
                            .map_err(store_error)?,
                    ),
                    SourceKind::Gcs => Arc::new(
                        object_store::gcp::GoogleCloudStorageBuilder::from_env()
                            .with_bucket_name(&url.bucket)
                            .with_http_connector(connector)
                            .with_retry(no_retries())
                            .build()
                            .map_err(store_error)?,
                    ),
                    _ => Arc::new(
                        object_store::azure::MicrosoftAzureBuilder::from_env()
                            .with_container_name(&url.bucket)
                            .with_http_connector(connector)
                            .with_retry(no_retries())
                            .build()
                            .map_err(store_error)?,
                    ),
                };
                let location = object_store::path::Path::from_url_path(&url.key)
                    .map_err(|e| format!("{}: {e}", url.raw))?;
                Backend::Store { store, location }
            }
        };
        Ok(Fetcher {
            backend,
            validators: Mutex::new(Validators::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Validators> {
        self.validators.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One conditional request. A body is returned only when the source has a version other
    /// than the one last delivered (whether that one parsed or not: a broken list is parsed
    /// once, not every poll).
    ///
    /// A source that answers a conditional request with a new version's validators but the
    /// bytes of the version we have (a store whose reads race its writes: the headers of one
    /// object, the body of the other) would leave the new version unseen behind 304s until
    /// the next change. Such an answer is taken as it is, and the next request is sent
    /// without validators: one more download, after which the validators are trusted again.
    async fn fetch(&self) -> Result<Fetch, FetchError> {
        let known = self.lock().clone();
        let ask = if known.verify {
            Validators::default()
        } else {
            known.clone()
        };
        let (fetch, validators) = match &self.backend {
            Backend::Http { client, url, shown } => fetch_http(client, url, shown, ask).await?,
            Backend::Store { store, location } => {
                fetch_object(store.as_ref(), location, ask).await?
            }
        };
        if let (Some(mut v), Fetch::Body(bytes)) = (validators, &fetch) {
            let sum = crate::util::checksum(bytes);
            v.verify = !known.verify && known.body == Some(sum);
            v.body = Some(sum);
            *self.lock() = v;
        }
        Ok(fetch)
    }
}

fn too_large() -> FetchError {
    FetchError(format!(
        "the list is larger than {} MiB, the most a blocklist may be",
        MAX_BLOCKLIST_BYTES / (1024 * 1024)
    ))
}

/// An error and its causes on one line (reqwest and object_store put the useful part, such
/// as "connection refused", in the source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// `result` of a fetch: `downloaded` (a new version, parsed next), `not_modified` (304:
/// nothing downloaded, nothing parsed), `error` (the last good list stays).
pub const FETCH_RESULTS: [&str; 3] = ["downloaded", "not_modified", "error"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub result: &'static str,
}

/// The remote source's series, registered by `crate::metrics::Metrics` under the
/// `kratos_gate_` prefix; every label value exists at zero from the start.
#[derive(Clone, Debug, Default)]
pub struct RemoteMetrics {
    pub fetches: Family<FetchLabels, Counter>,
    pub fetched_bytes: Counter,
    pub cache_write_failures: Counter,
}

impl RemoteMetrics {
    pub fn register(registry: &mut Registry) -> RemoteMetrics {
        RemoteMetrics::default().registered(registry)
    }

    /// Registers these counters (clones share their values).
    pub fn registered(self, registry: &mut Registry) -> RemoteMetrics {
        let m = self;
        registry.register(
            "blocklist_fetches",
            "Polls of a remote blocklist source (blocklist.url), by result: downloaded, not_modified (nothing downloaded or parsed), error (the last good list stays)",
            m.fetches.clone(),
        );
        registry.register(
            "blocklist_fetched_bytes",
            "Bytes of remote blocklists downloaded",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "blocklist_cache_write_failures",
            "Failed writes of the local copy of the last good remote list (blocklist.cache_path)",
            m.cache_write_failures.clone(),
        );
        for result in FETCH_RESULTS {
            let _ = m.fetches.get_or_create(&FetchLabels { result });
        }
        m
    }

    fn count(&self, result: &'static str) {
        self.fetches.get_or_create(&FetchLabels { result }).inc();
    }
}

/// A fetch handed to the source's own thread, and where its answer goes.
type Job = tokio::sync::oneshot::Sender<Result<Fetch, FetchError>>;

/// A remote list as a [`Source`]. Its requests run on a thread and runtime of its own: the
/// clients and their connection pools do not depend on the runtime of whoever awaits a
/// fetch (start-up, `check`, the reloader).
pub struct RemoteSource {
    url: String,
    jobs: Mutex<tokio::sync::mpsc::UnboundedSender<Job>>,
    cache: Option<Cache>,
    metrics: RemoteMetrics,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RemoteSource {
    /// Prepares the source and starts its thread. Nothing is fetched yet; a setting the
    /// cloud's client refuses (such as a missing Azure account name) is an error now.
    pub fn new(
        url: &SourceUrl,
        cache: Option<&Path>,
        tls: rustls::ClientConfig,
        metrics: RemoteMetrics,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("{}: cannot start the fetch runtime: {e}", shown(url)))?;
        let fetcher = {
            let _entered = runtime.enter();
            Fetcher::new(url, tls)?
        };
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("blocklist-fetch".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(reply) = queue.recv().await {
                        let _ = reply.send(fetcher.fetch().await);
                    }
                });
            })
            .map_err(|e| format!("{}: cannot start the fetch thread: {e}", shown(url)))?;
        Ok(RemoteSource {
            url: shown(url),
            jobs: Mutex::new(jobs),
            cache: cache.map(Cache::new),
            metrics,
        })
    }

    /// One conditional request, run on the source's thread.
    pub async fn fetch_now(&self) -> Result<Fetch, FetchError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let sent = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(reply);
        if sent.is_err() {
            return Err(FetchError("the fetch thread has stopped".to_owned()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(FetchError("the fetch thread has stopped".to_owned())))
    }

    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The content last fetched is in force: it becomes the local copy (`cache_path`).
    pub fn in_force(&self, content: &[u8]) {
        let Some(cache) = &self.cache else { return };
        if let Err(e) = cache.store(content) {
            self.metrics.cache_write_failures.inc();
            tracing::warn!(
                cache = %cache.path().display(),
                error = %e,
                "cannot write the local copy of the blocklist; the list in force is unaffected"
            );
        }
    }
}

impl Source for RemoteSource {
    fn name(&self) -> String {
        self.url.clone()
    }

    fn in_force(&self, content: &[u8]) {
        RemoteSource::in_force(self, content);
    }

    fn fetch_metrics(&self) -> Option<RemoteMetrics> {
        Some(self.metrics.clone())
    }

    fn fetch(&self) -> Fetching<'_> {
        Box::pin(async move {
            let started = std::time::Instant::now();
            match self.fetch_now().await {
                Ok(Fetch::NotModified) => {
                    self.metrics.count("not_modified");
                    Ok(None)
                }
                Ok(Fetch::Body(bytes)) => {
                    self.metrics.count("downloaded");
                    self.metrics.fetched_bytes.inc_by(bytes.len() as u64);
                    tracing::info!(
                        source = %self.url,
                        bytes = bytes.len(),
                        fetch_ms = (started.elapsed().as_secs_f64() * 10_000.0).round() / 10.0,
                        "blocklist downloaded"
                    );
                    Ok(Some(bytes))
                }
                Err(e) => {
                    self.metrics.count("error");
                    Err(e.to_string())
                }
            }
        })
    }
}

/// The URL as logs, diagnostics and `GET /blocklist` show it: without its query, which may
/// carry a token (a presigned URL's signature, `?token=…`).
pub fn shown(url: &SourceUrl) -> String {
    match url.raw.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.raw.clone(),
    }
}

/// The source `blocklist.url` names: its client and the cloud's settings from the
/// environment; nothing is fetched.
pub fn source(config: &BlocklistConfig, url: &SourceUrl) -> Result<RemoteSource, String> {
    let tls = crate::tls::client_config(None)?;
    RemoteSource::new(
        url,
        config.cache_path.as_deref(),
        tls,
        RemoteMetrics::default(),
    )
}

/// The first list of `blocklist.url` at start-up ([`load_at_start`]). A start without a list
/// (`require_on_start: false`) is logged with the reasons.
pub async fn load(config: &BlocklistConfig, url: &SourceUrl) -> Result<Loaded, Vec<Diagnostic>> {
    let source = source(config, url).map_err(|m| vec![Diagnostic::whole_file(&shown(url), m)])?;
    match load_at_start(Arc::new(source), config.require_on_start).await? {
        Start::Loaded(loaded) => Ok(loaded),
        Start::Empty(loaded, why) => {
            tracing::warn!(
                source = %shown(url),
                errors = %crate::diagnostic::render(&why).trim_end(),
                "no blocklist could be loaded; starting with an empty list, not ready until one is loaded (blocklist.require_on_start: false)"
            );
            Ok(loaded)
        }
    }
}

/// How the gateway starts with a remote source: the list it fetched, else the cached copy,
/// else (with `require_on_start: false`) no list.
pub enum Start {
    Loaded(Loaded),
    /// Nothing could be loaded; the gateway starts with an empty list and is not ready
    /// until a first list is loaded. Why, for the log.
    Empty(Loaded, Vec<Diagnostic>),
}

/// The first list of a remote source: fetched, else the cache (`blocklist.cache_path`) when
/// the source is unreachable or its list is broken, else an error unless
/// `blocklist.require_on_start` is false.
pub async fn load_at_start(
    source: Arc<RemoteSource>,
    require_on_start: bool,
) -> Result<Start, Vec<Diagnostic>> {
    let name = source.name();
    let mut errors = match source.fetch().await {
        Ok(Some(bytes)) => match parse_bytes(&bytes, &name) {
            Ok(parsed) => {
                source.in_force(&bytes);
                return Ok(Start::Loaded(loaded(source, parsed, &bytes)));
            }
            Err(errors) => errors,
        },
        Ok(None) => vec![Diagnostic::whole_file(
            &name,
            "the source sent no content".to_owned(),
        )],
        Err(m) => vec![Diagnostic::whole_file(&name, m)],
    };
    if let Some(cache) = source.cache() {
        let cached_name = cache.path().display().to_string();
        match cache.load() {
            Ok(bytes) => match parse_bytes(&bytes, &cached_name) {
                Ok(parsed) => {
                    tracing::warn!(
                        source = %name,
                        cache = %cached_name,
                        errors = %crate::diagnostic::render(&errors).trim_end(),
                        "blocklist source unusable at start-up; starting from the cached copy of the last good list"
                    );
                    return Ok(Start::Loaded(loaded(source, parsed, &bytes)));
                }
                Err(mut cache_errors) => errors.append(&mut cache_errors),
            },
            Err(m) => errors.push(Diagnostic::whole_file(&cached_name, m)),
        }
    }
    if require_on_start {
        errors.push(Diagnostic::whole_file(
            &name,
            "no blocklist could be loaded at start-up (set blocklist.cache_path to start from the last good list during an outage, or blocklist.require_on_start: false to start not ready with an empty list)".to_owned(),
        ));
        return Err(errors);
    }
    let empty = Parsed {
        blocklist: Blocklist::default(),
        warnings: Vec::new(),
    };
    Ok(Start::Empty(
        Loaded {
            source,
            parsed: empty,
            sha256: String::new(),
            tracker: Default::default(),
        },
        errors,
    ))
}

fn loaded(source: Arc<RemoteSource>, parsed: Parsed, bytes: &[u8]) -> Loaded {
    Loaded {
        source,
        parsed,
        sha256: sha256_hex(bytes),
        tracker: Default::default(),
    }
}
