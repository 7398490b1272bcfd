//! `gateway.yaml`: typed configuration with defaults for everything the contract leaves open.
//!
//! Values are validated while they are deserialized so that every error carries the line and
//! column of the offending value. Relative paths resolve against the config file's folder.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::config_tree::{self, Node, Origin, Pos, Provenance, Value};
use crate::diagnostic::Diagnostic;

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: Listen,
    pub upstream: Upstream,
    pub blocklist: BlocklistConfig,
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub forwarding: Forwarding,
    #[serde(default)]
    pub inspection: Inspection,
    #[serde(default)]
    pub enforcement: Enforcement,
    #[serde(default)]
    pub revocation: Revocation,
    #[serde(default)]
    pub hooks: Hooks,
    #[serde(default)]
    pub log: Log,
    /// Brute-force throttling of logins and one-time codes (src/throttle); off by default.
    #[serde(default)]
    pub throttle: crate::throttle::ThrottleConfig,
    /// The file this config was read from (not a YAML key).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    pub public: ListenAddr,
    #[serde(default)]
    pub admin: Option<ListenAddr>,
    #[serde(deserialize_with = "from_str")]
    #[schemars(schema_with = "crate::schema::socket_addr")]
    pub ops: SocketAddr,
    /// The Kratos web hook endpoint (`POST /hooks/kratos`); off unless set.
    #[serde(default, deserialize_with = "opt_from_str")]
    #[schemars(schema_with = "crate::schema::opt_socket_addr")]
    pub hooks: Option<SocketAddr>,
}

/// A proxy listener: an address (`0.0.0.0:4455`), or `{address, tls: {cert, key}}` to serve
/// HTTPS (HTTP/2 via ALPN, and HTTP/1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddr {
    pub address: SocketAddr,
    pub tls: Option<TlsFiles>,
}

/// PEM files: a certificate chain (leaf first) and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, MapAccess, Visitor};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ListenAddr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address such as 0.0.0.0:4455, or {address, tls: {cert, key}}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ListenAddr, E> {
                let address = v.trim().parse().map_err(|e| {
                    E::custom(format!(
                        "`{v}` is not an address ({e}); write e.g. 0.0.0.0:4455"
                    ))
                })?;
                Ok(ListenAddr { address, tls: None })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ListenAddr, A::Error> {
                let mut address: Option<SocketAddr> = None;
                let mut tls = None;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "address" => {
                            let v: String = map.next_value()?;
                            address = Some(v.trim().parse().map_err(|e| {
                                de::Error::custom(format!(
                                    "`{v}` is not an address ({e}); write e.g. 0.0.0.0:4455"
                                ))
                            })?);
                        }
                        "tls" => tls = Some(map.next_value::<TlsFiles>()?),
                        other => return Err(de::Error::unknown_field(other, &["address", "tls"])),
                    }
                }
                let address = address.ok_or_else(|| de::Error::missing_field("address"))?;
                Ok(ListenAddr { address, tls })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    #[serde(deserialize_with = "from_str")]
    pub public: UpstreamUrl,
    #[serde(deserialize_with = "from_str")]
    pub admin: UpstreamUrl,
    /// Time allowed to open a TCP connection to Kratos.
    #[serde(default = "d_connect_timeout", deserialize_with = "from_str")]
    pub connect_timeout: HumanDuration,
    /// Time allowed until Kratos's response headers arrive.
    #[serde(default = "d_response_timeout", deserialize_with = "from_str")]
    pub response_timeout: HumanDuration,
    /// Idle keep-alive connections are closed after this; keep it below Kratos's own idle
    /// timeout (120 s) so the gateway never reuses a connection Kratos is closing.
    #[serde(default = "d_pool_idle_timeout", deserialize_with = "from_str")]
    pub pool_idle_timeout: HumanDuration,
    #[serde(default = "d_pool_max_idle")]
    pub pool_max_idle_per_host: usize,
    /// Timeout of each call the gateway itself makes to Kratos (whoami, admin lookups,
    /// revocations).
    #[serde(default = "d_lookup_timeout", deserialize_with = "from_str")]
    pub lookup_timeout: HumanDuration,
    /// File holding the admin API key (Ory Network: `ory_pat_…`), sent as `Authorization: Bearer`.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Name of an environment variable holding the admin API key.
    #[serde(default)]
    pub admin_token_env: Option<String>,
    /// PEM file of the CA certificates trusted for https upstreams (instead of the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Send the upstream's own host as `Host` instead of the client's (needed when the
    /// upstream is a shared endpoint such as Ory Network that routes by host).
    #[serde(default)]
    pub rewrite_host: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlocklistConfig {
    /// The blocklist file (exactly one of `path` and `url`).
    #[serde(default)]
    #[schemars(schema_with = "crate::schema::opt_path")]
    pub path: PathBuf,
    /// A remote blocklist, polled with conditional requests (exactly one of `path` and `url`):
    /// `https://…`, `http://…`, `s3://bucket/key`, `gs://bucket/object`, `az://container/blob`.
    #[serde(default, deserialize_with = "opt_from_str")]
    #[schemars(schema_with = "crate::schema::source_url")]
    pub url: Option<SourceUrl>,
    /// Start-up without any list (the source unreachable and no usable `cache_path`) fails
    /// (`true`), or starts with an empty list and `/readyz` not ready until one is loaded.
    #[serde(default = "d_true")]
    pub require_on_start: bool,
    /// Local copy of the last good list fetched from `url`, written atomically after every
    /// change and read at start-up when the source is unreachable.
    #[serde(default)]
    pub cache_path: Option<PathBuf>,
    /// Re-read interval: for `path` a backstop for file systems whose change events are lost
    /// (default 10s); for `url` the poll interval (default 1s).
    #[serde(default, rename = "poll_interval", deserialize_with = "opt_from_str")]
    #[schemars(schema_with = "crate::schema::opt_duration")]
    poll_interval_set: Option<HumanDuration>,
    /// The re-read interval in force (`poll_interval`, else the default for the source kind).
    #[serde(skip, default = "d_poll_interval")]
    pub poll_interval: HumanDuration,
    /// Quiet time after a change event before the file is read (editors write in bursts).
    #[serde(default = "d_debounce", deserialize_with = "from_str")]
    pub debounce: HumanDuration,
    /// `report` makes every match a dry run: logged and counted, nothing stripped or revoked.
    #[serde(default)]
    pub mode: GlobalMode,
    /// Identity trait paths holding e-mail addresses, matched against `emails` and
    /// `email_domains` besides the verifiable and recovery addresses.
    #[serde(default = "d_email_traits")]
    pub email_traits: Vec<String>,
    /// How long an identity's addresses fetched from the admin API are reused.
    #[serde(default = "d_address_cache_ttl", deserialize_with = "from_str")]
    pub address_cache_ttl: HumanDuration,
    /// Most identities whose addresses are cached at once.
    #[serde(default = "d_address_cache_size")]
    pub address_cache_size: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum GlobalMode {
    #[default]
    Enforce,
    Report,
}

/// A cookie's `SameSite` attribute, spelled as in Kratos's config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// `log`: logging besides `--log-format` and `RUST_LOG`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// One line per proxied request (target `kratos_gate::access`): request id, method, path,
    /// status, duration, upstream status, listener, client address. Off by default.
    pub access: bool,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Hooks {
    /// Request header that must carry the shared secret (when a secret is configured).
    pub secret_header: String,
    /// File holding the shared secret.
    pub secret_file: Option<PathBuf>,
    /// Name of an environment variable holding the shared secret.
    pub secret_env: Option<String>,
    /// `text` of the message Kratos shows (id 4010011).
    pub message: String,
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks {
            secret_header: "x-kratos-gate-secret".to_owned(),
            secret_file: None,
            secret_env: None,
            message: "This account has been disabled. Please contact support for assistance."
                .to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// A client must finish sending request headers within this time (slow-loris bound).
    #[serde(deserialize_with = "from_str")]
    pub header_read_timeout: HumanDuration,
    /// A request body the gateway must read before forwarding (small JSON and form
    /// submissions, for the identifier they name) must arrive within this time; a slower one
    /// gets 408 and the connection is closed.
    #[serde(deserialize_with = "from_str")]
    pub body_read_timeout: HumanDuration,
    /// HTTP/1 read buffer, which bounds the request head.
    pub max_header_bytes: usize,
    pub http2_max_concurrent_streams: u32,
    /// After SIGTERM, `/readyz` answers 503 for this long before listeners close, so load
    /// balancers stop sending new requests first.
    #[serde(deserialize_with = "from_str")]
    pub shutdown_delay: HumanDuration,
    /// In-flight requests get this long to finish after listeners close.
    #[serde(deserialize_with = "from_str")]
    pub shutdown_grace: HumanDuration,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Forwarding {
    /// Peers whose `X-Forwarded-For` and client-IP headers are believed (your ingress).
    #[serde(deserialize_with = "vec_from_str")]
    #[schemars(schema_with = "crate::schema::cidr_list")]
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Inspection {
    /// Kratos's `session.cookie.name`.
    pub session_cookie: String,
    /// Kratos's `session.cookie.path` (else `cookies.path`): the `Path` of the cookie that
    /// clears a refused browser session.
    pub session_cookie_path: String,
    /// Kratos's `session.cookie.domain` (else `cookies.domain`); unset: host-only.
    pub session_cookie_domain: Option<String>,
    /// Kratos's `session.cookie.secure`: `Secure` on the clearing cookie.
    pub session_cookie_secure: bool,
    /// Kratos's `session.cookie.same_site` (else `cookies.same_site`).
    pub session_cookie_same_site: SameSite,
    /// Largest response body the gateway buffers to look for credentials; a larger one that
    /// may carry a credential is refused (502).
    pub body_limit_bytes: usize,
    /// Request bodies up to this size are copied, so that the login identifier is known if
    /// the owner of a new session has to be looked up by it.
    pub login_body_limit_bytes: usize,
    /// Longest time spent finding whose credentials one response carries, all Kratos calls
    /// included; past it the credential does not leave (503).
    #[serde(deserialize_with = "from_str")]
    pub attribution_timeout: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Enforcement {
    /// `error.message` of the 403 `identity_disabled` answer.
    pub message: String,
    /// Where browser form flows are sent (303) instead of the HTML 403 page.
    #[serde(deserialize_with = "opt_from_str")]
    #[schemars(schema_with = "crate::schema::opt_url")]
    pub browser_redirect: Option<Uri>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Revocation {
    /// Revocations waiting to be sent; beyond this new ones are dropped and counted.
    pub queue_capacity: usize,
    /// Admin calls in flight at once.
    pub concurrency: usize,
    #[serde(deserialize_with = "from_str")]
    pub initial_backoff: HumanDuration,
    #[serde(deserialize_with = "from_str")]
    pub max_backoff: HumanDuration,
    /// Most admin calls started per second (revoke-on-add of a large file is spread out).
    pub rate_per_second: u32,
    /// At start-up, revoke the sessions of every listed identity and e-mail (one admin call
    /// each, plus one lookup per e-mail).
    pub sweep_on_start: bool,
    /// Directory of the journal that keeps pending revocations across a crash or restart
    /// (created at start-up if missing); unset: in memory only.
    pub journal: Option<PathBuf>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            header_read_timeout: HumanDuration(Duration::from_secs(10)),
            body_read_timeout: HumanDuration(Duration::from_secs(10)),
            max_header_bytes: 64 * 1024,
            http2_max_concurrent_streams: 256,
            shutdown_delay: HumanDuration(Duration::ZERO),
            shutdown_grace: HumanDuration(Duration::from_secs(20)),
        }
    }
}

impl Default for Inspection {
    fn default() -> Self {
        Inspection {
            session_cookie: "ory_kratos_session".to_owned(),
            session_cookie_path: "/".to_owned(),
            session_cookie_domain: None,
            session_cookie_secure: true,
            session_cookie_same_site: SameSite::Lax,
            body_limit_bytes: 1024 * 1024,
            login_body_limit_bytes: 16 * 1024,
            attribution_timeout: HumanDuration(Duration::from_secs(5)),
        }
    }
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            message: "This account has been disabled. Please contact support for assistance."
                .to_owned(),
            browser_redirect: None,
        }
    }
}

impl Default for Revocation {
    fn default() -> Self {
        Revocation {
            queue_capacity: 65_536,
            concurrency: 32,
            initial_backoff: HumanDuration(Duration::from_millis(200)),
            max_backoff: HumanDuration(Duration::from_secs(30)),
            rate_per_second: 1000,
            sweep_on_start: false,
            journal: None,
        }
    }
}

fn d_connect_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(2))
}
fn d_response_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(15))
}
fn d_pool_idle_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(90))
}
fn d_pool_max_idle() -> usize {
    128
}
fn d_lookup_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn d_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn d_url_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn d_true() -> bool {
    true
}
fn d_debounce() -> HumanDuration {
    HumanDuration(Duration::from_millis(150))
}
fn d_email_traits() -> Vec<String> {
    vec!["traits.email".to_owned()]
}
fn d_address_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn d_address_cache_size() -> usize {
    10_000
}

/// A duration written the human way: `250ms`, `10s`, `1m 30s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| format!("`{s}` is not a duration ({e}); write e.g. 250ms, 10s, 1m"))
    }
}

/// Where a remote blocklist is fetched from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Http,
    Https,
    S3,
    Gcs,
    Azure,
}

/// `blocklist.url`: `http(s)://host/path`, `s3://bucket/key`, `gs://bucket/object`,
/// `az://container/blob`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl {
    pub kind: SourceKind,
    /// The URL as written (trimmed).
    pub raw: String,
    /// Host (http/https), bucket (s3/gs) or container (az).
    pub bucket: String,
    /// Object key without the leading `/` (s3/gs/az); the path and query for http(s).
    pub key: String,
}

impl fmt::Display for SourceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl FromStr for SourceUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        const EXPECTED: &str = "write https://host/path, http://host/path, s3://bucket/key, gs://bucket/object or az://container/blob";
        let s = s.trim();
        let uri: Uri = s
            .parse()
            .map_err(|e| format!("`{s}` is not a URL ({e}); {EXPECTED}"))?;
        let kind = match uri.scheme_str() {
            Some("http") => SourceKind::Http,
            Some("https") => SourceKind::Https,
            Some("s3") => SourceKind::S3,
            Some("gs") => SourceKind::Gcs,
            Some("az") => SourceKind::Azure,
            _ => return Err(format!("`{s}` has no supported scheme; {EXPECTED}")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("`{s}` has no host or bucket; {EXPECTED}"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{s}` carries credentials; object stores take them from the environment, HTTP sources cannot have them in the URL"
            ));
        }
        let (bucket, key) = match kind {
            SourceKind::Http | SourceKind::Https => (
                authority.as_str().to_owned(),
                uri.path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".to_owned()),
            ),
            _ => {
                if authority.port().is_some() {
                    return Err(format!(
                        "`{s}`: a bucket name has no port (set the endpoint with AWS_ENDPOINT_URL)"
                    ));
                }
                if uri.query().is_some() {
                    return Err(format!("`{s}` has a query; an object URL has none"));
                }
                let key = uri.path().trim_start_matches('/');
                if key.is_empty() || key.ends_with('/') {
                    return Err(format!("`{s}` names no object; {EXPECTED}"));
                }
                (authority.host().to_owned(), key.to_owned())
            }
        };
        Ok(SourceUrl {
            kind,
            raw: s.to_owned(),
            bucket,
            key,
        })
    }
}

/// A Kratos base URL: `http://host:port`, no path, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub uri: Uri,
}

impl UpstreamUrl {
    pub fn scheme(&self) -> &str {
        self.uri.scheme_str().unwrap_or("http")
    }

    pub fn authority(&self) -> &http::uri::Authority {
        // from_str guarantees an authority.
        self.uri
            .authority()
            .unwrap_or_else(|| unreachable_authority())
    }

    /// `base` + `path_and_query`, as a string (for the lookup client).
    pub fn join(&self, path_and_query: &str) -> String {
        format!("{}://{}{}", self.scheme(), self.authority(), path_and_query)
    }
}

#[cold]
fn unreachable_authority() -> &'static http::uri::Authority {
    static FALLBACK: std::sync::OnceLock<http::uri::Authority> = std::sync::OnceLock::new();
    FALLBACK.get_or_init(|| http::uri::Authority::from_static("invalid.invalid"))
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme(), self.authority())
    }
}

impl FromStr for UpstreamUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim().trim_end_matches('/');
        let uri: Uri = s
            .parse()
            .map_err(|e| format!("`{s}` is not a URL ({e}); write e.g. http://127.0.0.1:4433"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(format!("`{s}` must start with http:// or https://")),
        }
        if uri.authority().is_none() {
            return Err(format!("`{s}` has no host"));
        }
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(format!(
                "`{s}` has a path; give only scheme, host and port (Kratos serves at /)"
            ));
        }
        if uri.query().is_some() {
            return Err(format!(
                "`{s}` has a query; give only scheme, host and port"
            ));
        }
        Ok(UpstreamUrl { uri })
    }
}

fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.trim().parse::<T>().map_err(serde::de::Error::custom)
}

fn opt_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn vec_from_str<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let items = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
    items
        .iter()
        .map(|s| {
            let s = s.trim();
            // A bare address means that one host.
            let parsed = s.parse::<T>().or_else(|e| {
                let with_prefix = if s.contains(':') {
                    format!("{s}/128")
                } else {
                    format!("{s}/32")
                };
                with_prefix.parse::<T>().map_err(|_| e)
            });
            parsed.map_err(|e| serde::de::Error::custom(format!("`{s}`: {e}")))
        })
        .collect()
}

/// A config file read with everything found wrong in it ([`crate::validate`] adds what it
/// names outside itself: files, secrets, the blocklist).
pub struct Parsed {
    /// The file's name, as given.
    pub name: String,
    /// The config, also when there are errors (values in error left out or stood in for, so
    /// that further checks can go on); `None` when the file could not be read as YAML.
    pub config: Option<Config>,
    /// Every error, in file order.
    pub errors: Vec<Diagnostic>,
    /// Values that came from the environment (overrides and `${VAR}`), in key order.
    pub provenance: Vec<Provenance>,
    /// Key paths with an error: further checks of them would only repeat it.
    bad: Vec<String>,
    tree: Option<Node>,
}

impl Parsed {
    fn new(name: String) -> Parsed {
        Parsed {
            name,
            config: None,
            errors: Vec::new(),
            provenance: Vec::new(),
            bad: Vec::new(),
            tree: None,
        }
    }

    /// Whether `key`, a key inside it or a key around it already has an error.
    pub fn is_bad(&self, key: &str) -> bool {
        self.bad.iter().any(|b| {
            b == key
                || b.is_empty()
                || b.strip_prefix(key)
                    .is_some_and(|r| r.starts_with(['.', '[']))
                || key
                    .strip_prefix(b.as_str())
                    .is_some_and(|r| r.starts_with(['.', '[']))
        })
    }

    /// A diagnostic about `key`: at its position in the file (else the file's first line),
    /// `key: message`, and where the value came from when not from the file.
    pub fn at(&self, key: &str, message: impl fmt::Display) -> Diagnostic {
        self.diagnostic(key, None, &message.to_string())
    }

    fn diagnostic(&self, key: &str, at: Option<Pos>, message: &str) -> Diagnostic {
        let node = self.tree.as_ref().and_then(|t| t.get(key));
        let at = at
            .filter(|p| p.line > 0)
            .or_else(|| self.tree.as_ref().and_then(|t| t.position(key)))
            .filter(|p| p.line > 0)
            .unwrap_or(Pos { line: 1, column: 1 });
        let from = match node.map(|n| &n.origin) {
            Some(Origin::Env(var)) => format!(" (from ${var})"),
            Some(Origin::Expanded(written)) => format!(" (from `{written}`)"),
            _ => String::new(),
        };
        // A message that names its key already (`hooks.secret_env names …`) does not again.
        let message = message
            .strip_prefix(key)
            .filter(|rest| !key.is_empty() && rest.starts_with(' '))
            .map_or(message, str::trim_start);
        let message = if key.is_empty() {
            format!("{message}{from}")
        } else {
            format!("{key}: {message}{from}")
        };
        Diagnostic::new(&self.name, at.line, at.column, message)
    }

    fn push(&mut self, key: &str, at: Option<Pos>, message: &str) {
        let d = self.diagnostic(key, at, message);
        self.errors.push(d);
        self.bad.push(key.to_owned());
    }

    /// The config when nothing is wrong with it.
    pub fn into_result(self) -> Result<Config, Vec<Diagnostic>> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok(config),
            _ => Err(self.errors),
        }
    }
}

/// A required value in error is replaced by one of these, so that checking goes on.
const STAND_IN: &str = "listen: {public: 127.0.0.1:0, ops: 127.0.0.1:0}\nupstream: {public: http://127.0.0.1:1, admin: http://127.0.0.1:1}\n";

fn stand_in(path: &str) -> Option<Value> {
    let scalar = |s: &str| Some(Value::Scalar(s.to_owned()));
    match path {
        "listen" | "upstream" => config_tree::parse(STAND_IN)
            .ok()?
            .get(path)
            .map(|n| n.value.clone()),
        "blocklist" => Some(Value::Map(Vec::new())),
        "listen.public" | "listen.ops" => scalar("127.0.0.1:0"),
        "upstream.public" | "upstream.admin" => scalar("http://127.0.0.1:1"),
        _ if path.ends_with(".address") => scalar("127.0.0.1:0"),
        _ if path.ends_with(".tls.cert") || path.ends_with(".tls.key") => scalar("stand-in"),
        _ => None,
    }
}

impl Config {
    /// Reads and validates a config file, with the process's environment.
    pub fn load(path: &Path) -> Result<Config, Vec<Diagnostic>> {
        Config::parse_file(path, &config_tree::process_env).into_result()
    }

    /// Parses config text as if it had been read from `path` (relative paths resolve against
    /// its folder), with the process's environment.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Config, Vec<Diagnostic>> {
        Config::parse_text(text, path, &config_tree::process_env).into_result()
    }

    /// Reads a config file with every error in it; `env` gives environment variables.
    pub fn parse_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Parsed {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse_text(&text, path, env),
            Err(e) => {
                let mut parsed = Parsed::new(name.clone());
                parsed.errors.push(Diagnostic::whole_file(
                    &name,
                    format!("cannot read config: {e}"),
                ));
                parsed
            }
        }
    }

    /// Parses config text with every error in it: environment overrides
    /// (`KRATOS_GATE_<KEY PATH>`) and `${VAR}` references first, then every key's value, then
    /// the rules between keys.
    pub fn parse_text(text: &str, path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Parsed {
        let mut parsed = Parsed::new(path.display().to_string());
        let mut tree = match config_tree::parse(text) {
            Ok(tree) => tree,
            Err(e) => {
                parsed.errors.push(Diagnostic::from_yaml(&parsed.name, &e));
                return parsed;
            }
        };
        let mut problems = config_tree::apply_overrides(&mut tree, env);
        problems.extend(config_tree::expand_all(&mut tree, env));
        parsed.provenance = config_tree::provenance(&tree);
        parsed.tree = Some(tree);
        for p in problems {
            parsed.push(&p.path, Some(p.at), &p.message);
        }
        let Some(tree) = parsed.tree.as_ref() else {
            return parsed;
        };
        let (config, key_errors) = config_tree::deserialize_all::<Config>(tree, &stand_in);
        for e in key_errors {
            if !parsed.is_bad(&e.path) {
                parsed.push(&e.path, Some(e.at), &e.message);
            }
        }
        if let Some(mut config) = config {
            config.finish(path);
            for (key, message) in config.problems() {
                if !parsed.is_bad(&key) {
                    let value = parsed
                        .tree
                        .as_ref()
                        .and_then(|t| t.get(&key))
                        .filter(|n| matches!(n.value, Value::Scalar(_)))
                        .filter(|_| message.starts_with("must ") || message.starts_with("is "))
                        .map(|n| format!("`{}` ", n.display()))
                        .unwrap_or_default();
                    parsed.push(&key, None, &format!("{value}{message}"));
                }
            }
            parsed.config = Some(config);
        }
        parsed.errors.sort_by_key(|d| (d.line, d.column));
        parsed
    }

    /// Resolves relative paths against the config file's folder and fills values that depend
    /// on others.
    fn finish(&mut self, path: &Path) {
        let config = self;
        config.source = path.to_path_buf();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if !config.blocklist.path.as_os_str().is_empty() {
            config.blocklist.path = resolve(base, &config.blocklist.path);
        }
        if let Some(p) = &config.blocklist.cache_path {
            config.blocklist.cache_path = Some(resolve(base, p));
        }
        config.blocklist.poll_interval =
            config
                .blocklist
                .poll_interval_set
                .unwrap_or(if config.blocklist.url.is_some() {
                    d_url_poll_interval()
                } else {
                    d_poll_interval()
                });
        if let Some(p) = &config.upstream.admin_token_file {
            config.upstream.admin_token_file = Some(resolve(base, p));
        }
        if let Some(p) = &config.hooks.secret_file {
            config.hooks.secret_file = Some(resolve(base, p));
        }
        if let Some(p) = &config.upstream.ca_file {
            config.upstream.ca_file = Some(resolve(base, p));
        }
        if let Some(redis) = &mut config.throttle.redis {
            for p in [&mut redis.password_file, &mut redis.ca_file]
                .into_iter()
                .flatten()
            {
                *p = resolve(base, p);
            }
        }
        // An empty path stays empty, for validate to refuse.
        if let Some(p) = config
            .revocation
            .journal
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            config.revocation.journal = Some(resolve(base, p));
        }
        for listen in [
            Some(&mut config.listen.public),
            config.listen.admin.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            if let Some(tls) = &mut listen.tls {
                tls.cert = resolve(base, &tls.cert);
                tls.key = resolve(base, &tls.key);
            }
        }
    }

    /// The rules between keys and beyond a value's type: (key path, message) for each broken
    /// one.
    fn problems(&self) -> Vec<(String, String)> {
        let mut errors: Vec<(String, String)> = Vec::new();
        let mut check = |key: &str, ok: bool, msg: &str| {
            if !ok {
                errors.push((key.to_owned(), msg.to_owned()));
            }
        };
        check(
            "inspection.session_cookie",
            !self.inspection.session_cookie.trim().is_empty()
                && http::HeaderValue::from_str(&self.inspection.session_cookie).is_ok()
                && !self.inspection.session_cookie.contains(['=', ';', ' ']),
            "must be a cookie name",
        );
        let attribute = |v: &str| {
            !v.contains(';') && !v.contains(char::is_whitespace) && !v.contains(char::is_control)
        };
        check(
            "inspection.session_cookie_path",
            self.inspection.session_cookie_path.starts_with('/')
                && attribute(&self.inspection.session_cookie_path),
            "must be a path starting with /",
        );
        check(
            "inspection.session_cookie_domain",
            self.inspection
                .session_cookie_domain
                .as_deref()
                .is_none_or(|d| !d.is_empty() && attribute(d) && !d.contains(['/', ':', ','])),
            "must be a domain such as example.com",
        );
        check(
            "inspection.body_limit_bytes",
            self.inspection.body_limit_bytes >= 1024,
            "must be at least 1024",
        );
        check(
            "revocation.concurrency",
            self.revocation.concurrency >= 1 && self.revocation.concurrency <= 64,
            "must be between 1 and 64",
        );
        check(
            "revocation.queue_capacity",
            self.revocation.queue_capacity >= 1,
            "must be at least 1",
        );
        check(
            "revocation.rate_per_second",
            self.revocation.rate_per_second >= 1,
            "must be at least 1",
        );
        if let Some(journal) = &self.revocation.journal {
            check(
                "revocation.journal",
                !journal.as_os_str().is_empty(),
                "must be a directory path",
            );
            // The blocklist's folder is watched: journal writes there would keep waking the
            // reloader and delay reloads.
            check(
                "revocation.journal",
                journal.as_os_str().is_empty()
                    || self.blocklist.path.parent().map(normalise) != Some(normalise(journal)),
                "must not be the blocklist's folder (use a directory of its own, e.g. revocations)",
            );
        }
        check(
            "blocklist.email_traits",
            self.blocklist
                .email_traits
                .iter()
                .all(|p| !p.trim().is_empty() && p.split('.').all(|s| !s.is_empty())),
            "entries are dot-separated paths such as traits.email",
        );
        check(
            "server.max_header_bytes",
            self.server.max_header_bytes >= 8192,
            "must be at least 8192",
        );
        check(
            if self.blocklist.url.is_some() {
                "blocklist.url"
            } else {
                "blocklist"
            },
            self.blocklist.path.as_os_str().is_empty() != self.blocklist.url.is_none(),
            "set exactly one of blocklist.path (a local file) and blocklist.url (a remote source)",
        );
        check(
            "blocklist.cache_path",
            self.blocklist.cache_path.is_none() || self.blocklist.url.is_some(),
            "is only used with blocklist.url",
        );
        check(
            "blocklist.cache_path",
            self.blocklist
                .cache_path
                .as_ref()
                .is_none_or(|p| p.file_name().is_some()),
            "must be a file path",
        );
        check(
            "blocklist.poll_interval",
            !self.blocklist.poll_interval.get().is_zero(),
            "must be more than 0s",
        );
        check(
            "hooks.secret_header",
            http::HeaderName::from_bytes(self.hooks.secret_header.trim().as_bytes()).is_ok(),
            "is not a header name",
        );
        // The throttle's rules name their key first: `throttle.backoff.cap must be …`.
        for message in self.throttle.validate() {
            let (key, rest) = message.split_once(' ').unwrap_or(("throttle", &message));
            errors.push((key.to_owned(), rest.to_owned()));
        }
        // Every listener needs an address of its own (port 0: the system picks one each).
        let listeners = [
            ("listen.public", Some(self.listen.public.address)),
            (
                "listen.admin",
                self.listen.admin.as_ref().map(|a| a.address),
            ),
            ("listen.ops", Some(self.listen.ops)),
            ("listen.hooks", self.listen.hooks),
        ];
        let bound: Vec<(&str, SocketAddr)> = listeners
            .iter()
            .filter_map(|(k, a)| a.map(|a| (*k, a)))
            .collect();
        for (i, (key, addr)) in bound.iter().enumerate() {
            let earlier = bound
                .iter()
                .take(i)
                .find(|(_, other)| overlaps(*addr, *other));
            if let Some((other_key, other)) = earlier {
                errors.push((
                    (*key).to_owned(),
                    format!(
                        "`{addr}` is the address of {other_key} too (`{other}`); every listener needs an address of its own"
                    ),
                ));
            }
        }
        errors
    }

    /// The admin API key, if one is configured (file first, then environment).
    pub fn admin_token(&self) -> Result<Option<String>, String> {
        secret(
            self.upstream.admin_token_file.as_deref(),
            self.upstream.admin_token_env.as_deref(),
            "upstream.admin_token",
        )
    }

    /// The web hook's shared secret, if one is configured (file first, then environment).
    pub fn hooks_secret(&self) -> Result<Option<String>, String> {
        secret(
            self.hooks.secret_file.as_deref(),
            self.hooks.secret_env.as_deref(),
            "hooks.secret",
        )
    }
}

/// A secret from a file or an environment variable; empty counts as missing.
fn secret(file: Option<&Path>, env: Option<&str>, key: &str) -> Result<Option<String>, String> {
    if let Some(path) = file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read {key}: {e}", path.display()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err(format!("{}: {key} file is empty", path.display()));
        }
        return Ok(Some(t));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Some(t.trim().to_owned())),
            _ => Err(format!("{key}_env names `{var}`, which is not set")),
        };
    }
    Ok(None)
}

/// Whether two listeners would take the same port: the same address, or one of them on every
/// address (`0.0.0.0`, `[::]`). Port 0 never collides.
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// `p` without `.` components and trailing slashes (lexically; no file system access).
fn normalise(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "listen:\n  public: 0.0.0.0:4455\n  admin: 127.0.0.1:4456\n  ops: 0.0.0.0:9091\nupstream:\n  public: http://127.0.0.1:4433\n  admin: http://127.0.0.1:4434\nblocklist:\n  path: blocklist.yaml\n";

    fn parse(text: &str) -> Result<Config, Vec<Diagnostic>> {
        Config::from_yaml(text, Path::new("/etc/kratos-gate/gateway.yaml"))
    }

    #[test]
    fn contract_keys_with_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(
            c.listen.public.address,
            "0.0.0.0:4455".parse().expect("addr")
        );
        assert!(c.listen.public.tls.is_none());
        assert_eq!(c.upstream.public.to_string(), "http://127.0.0.1:4433");
        assert_eq!(
            c.blocklist.path,
            PathBuf::from("/etc/kratos-gate/blocklist.yaml")
        );
        assert_eq!(c.inspection.session_cookie, "ory_kratos_session");
        assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(10));
        assert!(c.forwarding.trusted_proxies.is_empty());
    }

    #[test]
    fn admin_listener_is_optional_and_absolute_paths_stay() {
        let text = MINIMAL
            .replace("  admin: 127.0.0.1:4456\n", "")
            .replace("path: blocklist.yaml", "path: /data/list.yaml");
        let c = parse(&text).expect("valid");
        assert!(c.listen.admin.is_none());
        assert_eq!(c.blocklist.path, PathBuf::from("/data/list.yaml"));
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let text = format!("{MINIMAL}inspection:\n  body_limit: 10\n");
        let errs = parse(&text).expect_err("unknown key");
        assert_eq!(errs[0].line, 11, "{errs:?}");
        assert!(errs[0].message.contains("body_limit"), "{errs:?}");
        assert!(errs[0]
            .to_string()
            .starts_with("/etc/kratos-gate/gateway.yaml:11:"));
    }

    #[test]
    fn bad_values_point_at_the_value() {
        let errs = parse(&MINIMAL.replace("0.0.0.0:4455", "0.0.0.0:notaport")).expect_err("x");
        assert_eq!(errs[0].line, 2, "{errs:?}");
        let errs = parse(&MINIMAL.replace("http://127.0.0.1:4434", "ftp://127.0.0.1:4434"))
            .expect_err("x");
        assert_eq!(errs[0].line, 7, "{errs:?}");
        assert!(errs[0].message.contains("http://"), "{errs:?}");
        let errs = parse(&format!("{MINIMAL}server:\n  shutdown_grace: soon\n")).expect_err("x");
        assert_eq!(errs[0].line, 11, "{errs:?}");
        assert!(errs[0].message.contains("duration"), "{errs:?}");
    }

    #[test]
    fn missing_required_key_is_an_error() {
        let errs = parse(&MINIMAL.replace("  ops: 0.0.0.0:9091\n", "")).expect_err("x");
        assert!(errs[0].message.contains("ops"), "{errs:?}");
    }

    #[test]
    fn trusted_proxies_accept_cidrs_and_bare_addresses() {
        let text = format!(
            "{MINIMAL}forwarding:\n  trusted_proxies: [10.0.0.0/8, 192.168.1.7, \"::1\"]\n"
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.forwarding.trusted_proxies.len(), 3);
        assert!(c.forwarding.trusted_proxies[1]
            .contains(&"192.168.1.7".parse::<std::net::IpAddr>().expect("ip")));
        let bad = format!("{MINIMAL}forwarding:\n  trusted_proxies: [10.0.0.0/99]\n");
        assert_eq!(parse(&bad).expect_err("x")[0].line, 11);
    }

    #[test]
    fn listeners_take_tls_files_relative_to_the_config() {
        let text = MINIMAL.replace(
            "  public: 0.0.0.0:4455\n",
            "  public:\n    address: 0.0.0.0:4455\n    tls:\n      cert: tls/tls.crt\n      key: /keys/tls.key\n",
        );
        let c = parse(&text).expect("valid");
        let tls = c.listen.public.tls.expect("tls");
        assert_eq!(tls.cert, PathBuf::from("/etc/kratos-gate/tls/tls.crt"));
        assert_eq!(tls.key, PathBuf::from("/keys/tls.key"));
        let bad = MINIMAL.replace(
            "  public: 0.0.0.0:4455\n",
            "  public:\n    address: 0.0.0.0:4455\n    tsl: {}\n",
        );
        let errs = parse(&bad).expect_err("unknown key");
        assert_eq!(errs[0].line, 4, "{errs:?}");
    }

    #[test]
    fn https_upstreams_are_accepted() {
        let c = parse(&MINIMAL.replace("http://127.0.0.1:4434", "https://project.oryapis.com"))
            .expect("valid");
        assert_eq!(c.upstream.admin.scheme(), "https");
    }

    #[test]
    fn revocation_journal_is_optional_and_resolves_against_the_config() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.revocation.journal, None);
        let c = parse(&format!(
            "{MINIMAL}revocation:\n  journal: state/revocations\n"
        ))
        .expect("valid");
        assert_eq!(
            c.revocation.journal,
            Some(PathBuf::from("/etc/kratos-gate/state/revocations"))
        );
        let c = parse(&format!(
            "{MINIMAL}revocation:\n  journal: /var/lib/kratos-gate\n"
        ))
        .expect("valid");
        assert_eq!(
            c.revocation.journal,
            Some(PathBuf::from("/var/lib/kratos-gate"))
        );
        for bad in ["\"\"", ".", "./", "/etc/kratos-gate/"] {
            let errs = parse(&format!("{MINIMAL}revocation:\n  journal: {bad}\n")).expect_err(bad);
            assert!(
                errs[0].message.starts_with("revocation.journal: ")
                    && errs[0].message.contains(" must "),
                "{bad}: {errs:?}"
            );
        }
    }

    #[test]
    fn upstream_url_with_path_is_rejected() {
        let errs = parse(&MINIMAL.replace("http://127.0.0.1:4433", "http://127.0.0.1:4433/kratos"))
            .expect_err("x");
        assert!(errs[0].message.contains("path"), "{errs:?}");
    }

    #[test]
    fn remote_source_keys_and_defaults() {
        let remote = MINIMAL.replace(
            "path: blocklist.yaml",
            "url: s3://ops-lists/kratos/blocklist.yaml\n  cache_path: cache/list.yaml",
        );
        let c = parse(&remote).expect("valid");
        let url = c.blocklist.url.as_ref().expect("url");
        assert_eq!(url.kind, SourceKind::S3);
        assert_eq!(url.bucket, "ops-lists");
        assert_eq!(url.key, "kratos/blocklist.yaml");
        assert!(c.blocklist.path.as_os_str().is_empty());
        assert!(c.blocklist.require_on_start);
        assert_eq!(
            c.blocklist.cache_path,
            Some(PathBuf::from("/etc/kratos-gate/cache/list.yaml"))
        );
        // A remote source is polled every second unless told otherwise; a file every 10s.
        assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(1));
        let c = parse(&format!(
            "{remote}\n  poll_interval: 3s\n  require_on_start: false\n"
        ))
        .expect("valid");
        assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(3));
        assert!(!c.blocklist.require_on_start);
        let c = parse(&format!("{MINIMAL}  poll_interval: 2s\n")).expect("valid");
        assert_eq!(c.blocklist.poll_interval.get(), Duration::from_secs(2));

        let http = parse(&MINIMAL.replace(
            "path: blocklist.yaml",
            "url: https://lists.example.com:8443/kratos/list.yaml?v=1",
        ))
        .expect("valid");
        let url = http.blocklist.url.expect("url");
        assert_eq!(url.kind, SourceKind::Https);
        assert_eq!(url.bucket, "lists.example.com:8443");
        assert_eq!(url.key, "/kratos/list.yaml?v=1");
        for (text, kind) in [
            ("gs://b/o.yaml", SourceKind::Gcs),
            ("az://c/dir/b.yaml", SourceKind::Azure),
            ("http://127.0.0.1:8080/l", SourceKind::Http),
        ] {
            assert_eq!(text.parse::<SourceUrl>().expect(text).kind, kind);
        }
    }

    #[test]
    fn exactly_one_blocklist_source() {
        let both = MINIMAL.replace(
            "path: blocklist.yaml",
            "path: blocklist.yaml\n  url: s3://b/k",
        );
        let errs = parse(&both).expect_err("both");
        assert!(errs[0].message.contains("exactly one"), "{errs:?}");
        let neither = MINIMAL.replace("path: blocklist.yaml", "mode: enforce");
        let errs = parse(&neither).expect_err("neither");
        assert!(errs[0].message.contains("exactly one"), "{errs:?}");
        let errs = parse(&format!("{MINIMAL}  cache_path: c.yaml\n")).expect_err("cache");
        assert!(errs[0].message.contains("cache_path"), "{errs:?}");
    }

    #[test]
    fn bad_source_urls_point_at_the_value() {
        for (bad, says) in [
            ("ftp://host/list", "scheme"),
            ("s3://bucket", "names no object"),
            ("s3://bucket/dir/", "names no object"),
            ("s3://bucket:9000/key", "AWS_ENDPOINT_URL"),
            ("https://user:pw@host/list", "credentials"),
            ("blocklist.yaml", "scheme"),
        ] {
            let errs = parse(&MINIMAL.replace("path: blocklist.yaml", &format!("url: {bad}")))
                .expect_err(bad);
            assert_eq!(errs[0].line, 9, "{bad}: {errs:?}");
            assert!(errs[0].message.contains(says), "{bad}: {errs:?}");
        }
    }
}
