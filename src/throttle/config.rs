//! `throttle:` in `gateway.yaml`: brute-force throttling of logins and one-time codes, and a
//! per-network rate limit on self-service submissions. Off unless `enabled: true`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer};

use crate::config::{GlobalMode, HumanDuration};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Throttling on (`true`) or off (default).
    pub enabled: bool,
    /// `report`: every refusal is logged and counted as `would_throttle`, nothing is refused.
    pub mode: GlobalMode,
    /// Failed logins and wrong one-time codes counted before submissions are refused.
    pub failures: FailureLimits,
    /// How long refused submissions wait: `base` at the threshold, doubled with every further
    /// failure, at most `cap`.
    pub backoff: Backoff,
    /// Prefix lengths that make a client address its network.
    pub networks: NetworkPrefixes,
    /// Self-service submissions (login, registration, recovery, verification, settings) per
    /// client network.
    pub rate_limit: RateLimit,
    /// The in-process store (used without `redis`).
    pub memory: MemoryStore,
    /// A Redis (or Valkey) shared by every replica; without it each replica counts alone.
    pub redis: Option<RedisConfig>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FailureLimits {
    /// Failures for one identifier from one network before that pair is refused.
    pub per_identifier_and_network: u32,
    /// Failures for one identifier from all networks before the identifier is refused
    /// everywhere except networks it signed in from recently (`remember_networks`). At least
    /// `per_identifier_and_network`.
    pub per_identifier: u32,
    /// Failures from one network across all identifiers before the network is refused.
    pub per_network: u32,
    /// A counter is forgotten this long after its last failure.
    #[serde(deserialize_with = "crate::throttle::config::duration")]
    pub window: HumanDuration,
    /// After a successful login, the identifier's own network is exempt from the identifier's
    /// count (not from its pair count) for this long; `0s` turns it off.
    #[serde(deserialize_with = "crate::throttle::config::duration")]
    pub remember_networks: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// The first refusal's length, once a threshold is reached.
    #[serde(deserialize_with = "crate::throttle::config::duration")]
    pub base: HumanDuration,
    /// The longest refusal.
    #[serde(deserialize_with = "crate::throttle::config::duration")]
    pub cap: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkPrefixes {
    /// IPv4 prefix length of a network (32: each address).
    pub ipv4: u8,
    /// IPv6 prefix length of a network (64: one subnet, what one customer usually gets).
    pub ipv6: u8,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Submissions allowed per network per `per` (a burst of this many, then spread evenly);
    /// `0` turns the rate limit off.
    pub submissions: u32,
    #[serde(deserialize_with = "crate::throttle::config::duration")]
    pub per: HumanDuration,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryStore {
    /// Most counters held at once; beyond it the least used are dropped.
    pub capacity: u64,
}

/// What the gateway does when Redis cannot be asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Submissions pass unthrottled (logged and counted).
    #[default]
    Open,
    /// Throttled submissions are refused (503) until Redis answers again.
    Closed,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://…` for TLS (verified against
    /// the system's roots).
    #[serde(deserialize_with = "crate::throttle::config::redis_url")]
    #[schemars(schema_with = "redis_url_schema")]
    pub url: RedisUrl,
    /// A file holding the password (overrides one in the URL), e.g. a mounted Secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificates that verify a `rediss://` server instead of the system's roots (a
    /// private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `open` (default): throttling is skipped while Redis is unreachable; `closed`: the
    /// submissions it would check are refused.
    #[serde(default)]
    pub fail: FailMode,
    /// Longest wait for one Redis call (connecting included) before the fail mode applies.
    #[serde(
        default = "d_redis_timeout",
        deserialize_with = "crate::throttle::config::duration"
    )]
    pub timeout: HumanDuration,
    /// Prefix of every key the gateway writes.
    #[serde(default = "d_key_prefix")]
    pub key_prefix: String,
}

/// A Redis URL; its password is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn is_tls(&self) -> bool {
        self.0.starts_with("rediss://")
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url_redacted(&self.0) {
            Some(r) => write!(f, "RedisUrl({r})"),
            None => write!(f, "RedisUrl(…)"),
        }
    }
}

/// The URL with any password replaced by `***`.
pub fn url_redacted(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    match rest.split_once('@') {
        Some((auth, host)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            Some(format!("{scheme}://{user}:***@{host}"))
        }
        None => Some(s.to_owned()),
    }
}

impl FromStr for RedisUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let shown = url_redacted(s).unwrap_or_else(|| "…".to_owned());
        if !(s.starts_with("redis://") || s.starts_with("rediss://")) {
            return Err(format!(
                "`{shown}` is not a Redis URL; write redis://host:6379 or rediss://host:6380"
            ));
        }
        redis::Client::open(s).map_err(|e| format!("`{shown}`: {e}"))?;
        Ok(RedisUrl(s.to_owned()))
    }
}

fn redis_url_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": r"^\s*rediss?://\S+$",
        "description": "redis://[user[:password]@]host[:port][/db], or rediss://… for TLS."
    })
}

pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<HumanDuration, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(serde::de::Error::custom)
}

pub(crate) fn redis_url<'de, D: Deserializer<'de>>(d: D) -> Result<RedisUrl, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn d_redis_timeout() -> HumanDuration {
    HumanDuration(Duration::from_millis(250))
}
fn d_key_prefix() -> String {
    "kratos-gate".to_owned()
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: false,
            mode: GlobalMode::Enforce,
            failures: FailureLimits::default(),
            backoff: Backoff::default(),
            networks: NetworkPrefixes::default(),
            rate_limit: RateLimit::default(),
            memory: MemoryStore::default(),
            redis: None,
        }
    }
}

impl Default for FailureLimits {
    fn default() -> Self {
        FailureLimits {
            per_identifier_and_network: 5,
            per_identifier: 20,
            per_network: 100,
            window: HumanDuration(Duration::from_secs(15 * 60)),
            remember_networks: HumanDuration(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: HumanDuration(Duration::from_secs(30)),
            cap: HumanDuration(Duration::from_secs(15 * 60)),
        }
    }
}

impl Default for NetworkPrefixes {
    fn default() -> Self {
        NetworkPrefixes { ipv4: 32, ipv6: 64 }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            submissions: 60,
            per: HumanDuration(Duration::from_secs(60)),
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore { capacity: 100_000 }
    }
}

impl ThrottleConfig {
    /// Every rule the types cannot express, as messages naming the key.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        let f = &self.failures;
        check(
            f.per_identifier_and_network >= 1 && f.per_identifier >= 1 && f.per_network >= 1,
            "throttle.failures thresholds must be at least 1",
        );
        check(
            f.per_identifier >= f.per_identifier_and_network,
            "throttle.failures.per_identifier must be at least per_identifier_and_network (the pair limit comes first, so that one network cannot lock an account out everywhere)",
        );
        check(
            !f.window.get().is_zero(),
            "throttle.failures.window must be more than 0s",
        );
        check(
            !self.backoff.base.get().is_zero() && self.backoff.base.get() <= self.backoff.cap.get(),
            "throttle.backoff.base must be more than 0s and at most throttle.backoff.cap",
        );
        check(
            self.backoff.cap.get() <= Duration::from_secs(7 * 24 * 3600),
            "throttle.backoff.cap must be at most 7d",
        );
        check(
            (1..=32).contains(&self.networks.ipv4),
            "throttle.networks.ipv4 must be a prefix length from 1 to 32",
        );
        check(
            (1..=128).contains(&self.networks.ipv6),
            "throttle.networks.ipv6 must be a prefix length from 1 to 128",
        );
        check(
            self.rate_limit.submissions == 0 || !self.rate_limit.per.get().is_zero(),
            "throttle.rate_limit.per must be more than 0s",
        );
        check(
            self.memory.capacity >= 1000,
            "throttle.memory.capacity must be at least 1000",
        );
        if let Some(r) = &self.redis {
            check(
                !r.timeout.get().is_zero() && r.timeout.get() <= Duration::from_secs(10),
                "throttle.redis.timeout must be more than 0s and at most 10s",
            );
            check(
                r.ca_file.is_none() || r.url.is_tls(),
                "throttle.redis.ca_file needs a rediss:// URL (TLS)",
            );
            check(
                !r.key_prefix.is_empty()
                    && r.key_prefix.len() <= 64
                    && !r.key_prefix.contains(char::is_whitespace),
                "throttle.redis.key_prefix must be 1 to 64 characters without spaces",
            );
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_off() {
        let c = ThrottleConfig::default();
        assert!(!c.enabled);
        assert!(c.validate().is_empty(), "{:?}", c.validate());
        assert_eq!((c.networks.ipv4, c.networks.ipv6), (32, 64));
    }

    #[test]
    fn pair_limit_must_not_exceed_identifier_limit() {
        let mut c = ThrottleConfig::default();
        c.failures.per_identifier = 3;
        assert!(c.validate()[0].contains("per_identifier"));
    }

    #[test]
    fn redis_urls_take_auth_and_tls_and_never_print_the_password() {
        let u: RedisUrl = "rediss://app:s3cret@redis.example:6380/2"
            .parse()
            .expect("url");
        assert!(u.is_tls());
        let shown = format!("{u:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("app:***@redis.example"), "{shown}");
        let u: RedisUrl = "redis://:pw@127.0.0.1:6379".parse().expect("url");
        assert!(!u.is_tls());
        let err = "http://:pw@127.0.0.1"
            .parse::<RedisUrl>()
            .expect_err("scheme");
        assert!(!err.contains("pw@"), "{err}");
    }
}
