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

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::client::{ClientConfigKey, ClientOptions, HttpClient, HttpConnector};
use object_store::{GetOptions, ObjectMeta, ObjectStore};
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

/// Longest wait for a connection to the source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while a response is read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one fetch may take in all (a million-id list is about 40 MB).
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed by an HTTP(S) source (never from https to http).
const MAX_REDIRECTS: usize = 5;

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

/// Builds the reqwest client every source uses: rustls on ring, bounded waits, no cookies.
fn client(tls: rustls::ClientConfig, https_only: bool) -> Result<reqwest::Client, String> {
    let redirects = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt
            .previous()
            .last()
            .is_some_and(|prev| prev.scheme() == "https")
            && attempt.url().scheme() != "https";
        if downgrade {
            attempt.error("redirect from https to http refused")
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(redirects)
        .https_only(https_only)
        .user_agent(concat!("kratos-gate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Hands `object_store` our client (rustls on ring) instead of the one it would build.
#[derive(Debug)]
struct Connector {
    tls: rustls::ClientConfig,
}

impl HttpConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let client =
            client(self.tls.clone(), !allow_http).map_err(|e| object_store::Error::Generic {
                store: "blocklist source",
                source: e.into(),
            })?;
        Ok(HttpClient::new(client))
    }
}

/// No retries inside a fetch: the next poll is the retry, and a failed poll must not hold
/// the poller for minutes of backoff.
fn no_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        retry_timeout: FETCH_TIMEOUT,
        ..Default::default()
    }
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

async fn fetch_http(
    client: &reqwest::Client,
    url: &str,
    shown: &str,
    known: Validators,
) -> Result<(Fetch, Option<Validators>), FetchError> {
    let mut request = client.get(url);
    if let Some(etag) = &known.etag {
        request = request.header(http::header::IF_NONE_MATCH, etag);
    }
    if let Some(date) = &known.last_modified {
        request = request.header(http::header::IF_MODIFIED_SINCE, date);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| FetchError(format!("GET {shown}: {}", error_chain(&e.without_url()))))?;
    let status = response.status();
    if status == http::StatusCode::NOT_MODIFIED {
        return Ok((Fetch::NotModified, None));
    }
    if !status.is_success() {
        return Err(FetchError(format!("GET {shown}: answered {status}")));
    }
    let header = |name: http::header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let validators = Validators {
        etag: header(http::header::ETAG),
        last_modified: header(http::header::LAST_MODIFIED),
        ..Validators::default()
    };
    if response
        .content_length()
        .is_some_and(|len| len > MAX_BLOCKLIST_BYTES)
    {
        return Err(too_large());
    }
    let capacity = response.content_length().unwrap_or(0) as usize;
    let mut body = Vec::with_capacity(capacity);
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError(format!("GET {shown}: {}", error_chain(&e.without_url()))))?
    {
        if (body.len() + chunk.len()) as u64 > MAX_BLOCKLIST_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Fetch::Body(body), Some(validators)))
}

async fn fetch_object(
    store: &dyn ObjectStore,
    location: &object_store::path::Path,
    known: Validators,
) -> Result<(Fetch, Option<Validators>), FetchError> {
    let mut options = GetOptions::default();
    if let Some(meta) = &known.meta {
        match &meta.e_tag {
            Some(etag) => options.if_none_match = Some(etag.clone()),
            None => options.if_modified_since = Some(meta.last_modified),
        }
    }
    let result = match store.get_opts(location, options).await {
        Ok(result) => result,
        Err(object_store::Error::NotModified { .. }) => return Ok((Fetch::NotModified, None)),
        Err(e) => return Err(FetchError(error_chain(&e))),
    };
    if result.meta.size > MAX_BLOCKLIST_BYTES {
        return Err(too_large());
    }
    let meta = result.meta.clone();
    // An ETag equal to the one we sent means a store that ignored If-None-Match: the body is
    // dropped unread.
    if known.meta.as_ref().is_some_and(|k| {
        k.e_tag.is_some() && k.e_tag == meta.e_tag && k.last_modified == meta.last_modified
    }) {
        return Ok((Fetch::NotModified, None));
    }
    let mut body = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
    let mut stream = result.into_stream();
    use futures_util::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| FetchError(error_chain(&e)))?;
        if (body.len() + chunk.len()) as u64 > MAX_BLOCKLIST_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let validators = Validators {
        meta: Some(meta),
        ..Validators::default()
    };
    Ok((Fetch::Body(body), Some(validators)))
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

/// The local copy of the last good list (`blocklist.cache_path`).
#[derive(Debug, Clone)]
pub struct Cache {
    path: PathBuf,
}

impl Cache {
    pub fn new(path: &Path) -> Self {
        Cache {
            path: path.to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the list atomically: a reader (or a restart) sees the old copy or the new one,
    /// never a part. The folder is created if missing.
    pub fn store(&self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        std::fs::create_dir_all(dir)?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            // The rename itself reaches the disk with the folder.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written
    }

    /// The cached list, if there is one (bounded like a blocklist file).
    pub fn load(&self) -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let file = std::fs::File::open(&self.path)
            .map_err(|e| format!("{}: cannot read the cached list: {e}", self.path.display()))?;
        let mut bytes = Vec::new();
        file.take(MAX_BLOCKLIST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: cannot read the cached list: {e}", self.path.display()))?;
        if bytes.len() as u64 > MAX_BLOCKLIST_BYTES {
            return Err(format!("{}: {}", self.path.display(), too_large()));
        }
        Ok(bytes)
    }
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
        },
        errors,
    ))
}

fn loaded(source: Arc<RemoteSource>, parsed: Parsed, bytes: &[u8]) -> Loaded {
    Loaded {
        source,
        parsed,
        sha256: sha256_hex(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn tls() -> rustls::ClientConfig {
        crate::tls::client_config(None).expect("tls")
    }

    type Respond = Arc<dyn Fn(&str) -> String + Send + Sync>;

    /// A tiny HTTP/1.1 server answering from `respond` (request head → full response), one
    /// request per connection, on a thread and runtime of its own; counts requests.
    fn server(
        respond: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let respond: Respond = Arc::new(respond);
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                while let Ok((mut conn, _)) = listener.accept().await {
                    let respond = Arc::clone(&respond);
                    let seen = Arc::clone(&seen);
                    tokio::spawn(async move {
                        let mut head = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        seen.fetch_add(1, Ordering::SeqCst);
                        let reply = respond(&String::from_utf8_lossy(&head));
                        let _ = conn.write_all(reply.as_bytes()).await;
                        let _ = conn.shutdown().await;
                    });
                }
            });
        });
        let addr = addr_rx.recv().expect("address");
        (format!("http://{addr}/list.yaml"), count)
    }

    fn ok(etag: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nETag: {etag}\r\nLast-Modified: Fri, 04 Dec 2026 10:00:00 GMT\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    fn not_modified() -> String {
        "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_owned()
    }

    fn has_header(head: &str, name: &str, value: &str) -> bool {
        head.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
        })
    }

    /// Answers 304 to a request carrying `"v1"`'s validators, else the list.
    fn conditional(head: &str) -> String {
        if has_header(head, "if-none-match", "\"v1\"")
            && has_header(head, "if-modified-since", "Fri, 04 Dec 2026 10:00:00 GMT")
        {
            not_modified()
        } else {
            ok("\"v1\"", "identities: []\n")
        }
    }

    fn source(url: &str, cache: Option<&Path>) -> (RemoteSource, RemoteMetrics) {
        let metrics = RemoteMetrics::register(&mut Registry::default());
        let source = RemoteSource::new(&url.parse().expect("url"), cache, tls(), metrics.clone())
            .expect("source");
        (source, metrics)
    }

    fn fetches(metrics: &RemoteMetrics, result: &'static str) -> u64 {
        metrics.fetches.get_or_create(&FetchLabels { result }).get()
    }

    fn unreachable_url() -> String {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        format!("http://{addr}/list.yaml")
    }

    #[tokio::test]
    async fn http_source_sends_its_validators_and_a_304_has_no_body() {
        let (url, count) = server(conditional);
        let (source, metrics) = source(&url, None);
        assert_eq!(
            source.fetch().await.expect("first"),
            Some(b"identities: []\n".to_vec())
        );
        assert_eq!(source.fetch().await.expect("second"), None);
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert_eq!(fetches(&metrics, "downloaded"), 1);
        assert_eq!(fetches(&metrics, "not_modified"), 1);
        assert_eq!(metrics.fetched_bytes.get(), 15);
    }

    #[tokio::test]
    async fn new_validators_with_the_old_bytes_are_checked_once_without_validators() {
        // A read racing a write: the new object's ETag with the old object's body.
        static SEEN_V2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let (url, count) = server(|head| {
            let unconditional = !head.to_ascii_lowercase().contains("if-none-match");
            if has_header(head, "if-none-match", "\"v2\"") {
                not_modified()
            } else if has_header(head, "if-none-match", "\"v1\"") {
                ok("\"v2\"", "identities: []\n")
            } else if unconditional && SEEN_V2.swap(true, Ordering::SeqCst) {
                ok("\"v2\"", "identities: [x]\n")
            } else {
                ok("\"v1\"", "identities: []\n")
            }
        });
        let (source, _) = source(&url, None);
        let body = |f: Option<Vec<u8>>| String::from_utf8(f.expect("a body")).expect("utf-8");
        assert_eq!(body(source.fetch().await.expect("v1")), "identities: []\n");
        // The racing answer is delivered as it is (the store finds it unchanged)...
        assert_eq!(
            body(source.fetch().await.expect("race")),
            "identities: []\n"
        );
        // ...and the next request asks without validators, and gets the new list.
        assert_eq!(body(source.fetch().await.expect("v2")), "identities: [x]\n");
        assert_eq!(source.fetch().await.expect("304"), None);
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn http_errors_and_refused_connections_are_fetch_errors() {
        let (url, _) = server(|_| {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_owned()
        });
        let (source, metrics) = source(&url, None);
        let e = source.fetch().await.expect_err("503");
        assert!(e.contains("503"), "{e}");
        let url = unreachable_url();
        let (refused, _) = self::source(&url, None);
        let e = refused.fetch().await.expect_err("refused");
        assert!(e.contains(url.trim_end_matches("/list.yaml")), "{e}");
        assert_eq!(fetches(&metrics, "error"), 1);
    }

    #[tokio::test]
    async fn a_token_in_the_query_is_not_shown_in_names_or_errors() {
        let url = format!("{}?token=s3cr3t", unreachable_url());
        let (source, _) = source(&url, None);
        assert!(!source.name().contains("s3cr3t"), "{}", source.name());
        assert!(source.name().ends_with("/list.yaml?…"), "{}", source.name());
        let e = source.fetch().await.expect_err("refused");
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("/list.yaml?…"), "{e}");
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused_before_its_body_is_read() {
        let (url, _) = server(|_| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                MAX_BLOCKLIST_BYTES + 1
            )
        });
        let (source, _) = source(&url, None);
        let e = source.fetch().await.expect_err("too large");
        assert!(e.contains("larger than"), "{e}");
    }

    #[tokio::test]
    async fn an_https_only_client_does_not_fetch_over_http() {
        let (url, count) = server(|_| ok("\"x\"", "identities: []\n"));
        let client = client(tls(), true).expect("client");
        let e = fetch_http(&client, &url, &url, Validators::default())
            .await
            .expect_err("http on an https-only client");
        assert!(e.to_string().contains("GET"), "{e}");
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn start_up_takes_the_source_then_the_cache_then_refuses_or_starts_empty() {
        let dir = tempfile::tempdir().expect("dir");
        let cache_path = dir.path().join("cache/list.yaml");
        // Fetched: in force, and copied to the cache.
        let (url, _) = server(conditional);
        let (up, _) = source(&url, Some(&cache_path));
        let start = load_at_start(Arc::new(up), true).await.expect("loaded");
        assert!(matches!(start, Start::Loaded(_)));
        assert_eq!(
            std::fs::read(&cache_path).expect("cache"),
            b"identities: []\n"
        );

        // The source down: the cache.
        std::fs::write(
            &cache_path,
            "identities:\n  - 11111111-2222-4333-8444-555555555555\n",
        )
        .expect("write");
        let down = unreachable_url();
        let (cached, _) = source(&down, Some(&cache_path));
        match load_at_start(Arc::new(cached), true).await {
            Ok(Start::Loaded(l)) => assert_eq!(l.parsed.blocklist.len(), 1),
            _ => panic!("expected the cached list"),
        }

        // Down, no cache: refused with the reason, or started empty.
        let (nothing, _) = source(&down, None);
        let errors = match load_at_start(Arc::new(nothing), true).await {
            Err(errors) => errors,
            Ok(_) => panic!("expected an error"),
        };
        let text = crate::diagnostic::render(&errors);
        assert!(text.contains("require_on_start"), "{text}");
        assert!(text.contains(down.trim_end_matches("/list.yaml")), "{text}");
        let (nothing, _) = source(&down, None);
        match load_at_start(Arc::new(nothing), false).await {
            Ok(Start::Empty(l, why)) => {
                assert!(l.parsed.blocklist.is_empty());
                assert!(!why.is_empty());
            }
            _ => panic!("expected an empty start"),
        }
    }

    #[tokio::test]
    async fn a_broken_list_at_start_falls_back_to_the_cache_with_its_position_logged() {
        let dir = tempfile::tempdir().expect("dir");
        let cache_path = dir.path().join("list.yaml");
        std::fs::write(&cache_path, "identities: []\n").expect("write");
        let (url, _) = server(|_| ok("\"b\"", "identities:\n  - not-a-uuid\n"));
        let (broken, _) = source(&url, Some(&cache_path));
        assert!(matches!(
            load_at_start(Arc::new(broken), true).await,
            Ok(Start::Loaded(_))
        ));
        let (broken, _) = source(&url, None);
        let errors = match load_at_start(Arc::new(broken), true).await {
            Err(errors) => errors,
            Ok(_) => panic!("expected an error"),
        };
        assert_eq!(errors[0].line, 2, "{errors:?}");
    }

    #[test]
    fn the_cache_is_replaced_whole_and_read_back() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = Cache::new(&dir.path().join("state/list.yaml"));
        assert!(cache.load().is_err());
        cache.store(b"identities: [a]\n").expect("store");
        cache.store(b"identities: []\n").expect("store again");
        assert_eq!(cache.load().expect("load"), b"identities: []\n");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("list.yaml")]);
    }

    #[test]
    fn object_store_sources_are_built_from_the_url() {
        // Building reads settings only; nothing is fetched.
        for url in ["s3://bucket/dir/list.yaml", "gs://bucket/list.yaml"] {
            let built = RemoteSource::new(
                &url.parse().expect("url"),
                None,
                tls(),
                RemoteMetrics::default(),
            );
            assert!(built.is_ok(), "{url}: {:?}", built.err());
        }
    }
}
