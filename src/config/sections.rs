//! The sections of `gateway.yaml` (`listen`, `upstream`, `blocklist`, `server`, …) with their
//! defaults. Doc comments here are the descriptions in `schemas/gateway.schema.json`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use super::values::{from_str, opt_from_str, vec_from_str, HumanDuration, SourceUrl, UpstreamUrl};

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
    pub(super) poll_interval_set: Option<HumanDuration>,
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
    /// How the public and admin listeners run: `per_core`, one single-threaded runtime per
    /// CPU core, each accepting on its own socket of the listener's port (SO_REUSEPORT) with
    /// its own connections to Kratos, so that a request never changes threads (a connection
    /// goes to the worker with the fewest open, whichever accepted it), plus a small
    /// runtime for reloads, revocations, the ops and hooks listeners and the gateway's own
    /// calls to Kratos; `shared`, one multi-threaded runtime for everything.
    pub runtime: RuntimeLayout,
}

/// `server.runtime`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeLayout {
    #[default]
    PerCore,
    Shared,
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
            runtime: RuntimeLayout::default(),
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
pub(super) fn d_poll_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
pub(super) fn d_url_poll_interval() -> HumanDuration {
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
