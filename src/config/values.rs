//! Values of `gateway.yaml` written as text: durations (`250ms`, `10s`), the Kratos base URLs,
//! the remote blocklist's URL; and the serde helpers that read a value through its `FromStr`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;
use serde::{Deserialize, Deserializer};

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

pub(super) fn from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    s.trim().parse::<T>().map_err(serde::de::Error::custom)
}

pub(super) fn opt_from_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
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

pub(super) fn vec_from_str<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
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
