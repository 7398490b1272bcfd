//! HTTP(S) sources: the reqwest client every source uses (object stores too), and the
//! conditional GET (`If-None-Match` / `If-Modified-Since`).

use std::time::Duration;

use super::{error_chain, too_large, Fetch, FetchError, Validators};
use crate::blocklist::source::MAX_BLOCKLIST_BYTES;

/// Longest wait for a connection to the source.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest silence while a response is read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one fetch may take in all (a million-id list is about 40 MB).
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed by an HTTP(S) source (never from https to http).
const MAX_REDIRECTS: usize = 5;

/// Builds the reqwest client every source uses: rustls on ring, bounded waits, no cookies.
pub(super) fn client(
    tls: rustls::ClientConfig,
    https_only: bool,
) -> Result<reqwest::Client, String> {
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

pub(super) async fn fetch_http(
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
