//! S3, Google Cloud Storage and Azure Blob sources through `object_store`: its client built
//! on ours, no retries inside a fetch, conditional gets on the object's ETag.

use object_store::client::{ClientConfigKey, ClientOptions, HttpClient, HttpConnector};
use object_store::{GetOptions, ObjectStore};

use super::http::{client, FETCH_TIMEOUT};
use super::{error_chain, too_large, Fetch, FetchError, Validators};
use crate::blocklist::source::MAX_BLOCKLIST_BYTES;

/// Hands `object_store` our client (rustls on ring) instead of the one it would build.
#[derive(Debug)]
pub(super) struct Connector {
    pub(super) tls: rustls::ClientConfig,
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
pub(super) fn no_retries() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 0,
        retry_timeout: FETCH_TIMEOUT,
        ..Default::default()
    }
}

pub(super) async fn fetch_object(
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
