//! Reading a response body for credentials: only when it may hold them (it starts like JSON,
//! or is encoded), bounded in size and in time; otherwise it keeps streaming untouched.

use std::time::Duration;

use bytes::Bytes;
use http::header;
use http_body_util::BodyExt;

use crate::body::{self, full_body, Body, BoxError, CollectError, Start};
use crate::error::GatewayError;
use crate::inspection::{self, DecodeError, Findings};

/// Reads the body if it may carry a credential; otherwise leaves it streaming. Reading
/// is bounded in time: a Kratos that stalls mid-body gets a 504, not a request (and an
/// upstream connection) held for as long as Kratos keeps it open.
pub(super) async fn read_findings<B>(
    headers: &http::HeaderMap,
    incoming: B,
    limit: usize,
    timeout: Duration,
) -> Result<(Findings, Body), GatewayError>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    tokio::time::timeout(timeout, read_body_findings(headers, incoming, limit))
        .await
        .map_err(|_| GatewayError::UpstreamTimeout(timeout))?
}

async fn read_body_findings<B>(
    headers: &http::HeaderMap,
    incoming: B,
    limit: usize,
) -> Result<(Findings, Body), GatewayError>
where
    B: http_body::Body<Data = Bytes> + Unpin + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    // Every field line counts: codings listed over several lines apply in order, like
    // one comma-separated list (RFC 9110 5.3, 8.4).
    let encoding = headers
        .contains_key(header::CONTENT_ENCODING)
        .then(|| {
            headers
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .map(|v| v.to_str().unwrap_or("\u{fffd}").trim())
                .filter(|e| !e.is_empty())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"));

    if let Some(encoding) = encoding {
        // An encoded body cannot be sniffed; read (bounded), decode (bounded), inspect,
        // and pass the original bytes on.
        let raw = collect(incoming, limit).await?;
        let decoded = inspection::decode(&encoding, &raw, limit).map_err(|e| match e {
            DecodeError::TooLarge => GatewayError::ResponseTooLarge { limit },
            DecodeError::Unsupported(c) => {
                GatewayError::UnreadableResponse(format!("Content-Encoding {c}"))
            }
            DecodeError::Corrupt(m) => {
                GatewayError::UnreadableResponse(format!("Content-Encoding {encoding}: {m}"))
            }
        })?;
        let findings = match inspection::first_significant_byte(&decoded) {
            Some(b) if inspection::may_be_json(b) => inspect(&decoded)?,
            _ => Findings::default(),
        };
        return Ok((findings, full_body(raw)));
    }

    let (start, replay) = body::sniff(incoming, limit)
        .await
        .map_err(|e| GatewayError::UpstreamBroken(e.to_string()))?;
    match start {
        Start::Byte(b) if inspection::may_be_json(b) => {
            let bytes = match replay.into_only_frame() {
                Ok(only) if only.len() <= limit => only,
                Ok(_) => return Err(GatewayError::ResponseTooLarge { limit }),
                Err(replay) => collect(replay, limit).await?,
            };
            let findings = inspect(&bytes)?;
            Ok((findings, full_body(bytes)))
        }
        Start::TooMuchWhitespace => Err(GatewayError::ResponseTooLarge { limit }),
        Start::Byte(_) | Start::Empty => Ok((Findings::default(), replay.boxed())),
    }
}

fn inspect(bytes: &[u8]) -> Result<Findings, GatewayError> {
    inspection::inspect_json(bytes).map_err(|_| {
        GatewayError::UnreadableResponse("malformed JSON that mentions a session token".to_owned())
    })
}

async fn collect<B>(body: B, limit: usize) -> Result<Bytes, GatewayError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    body::collect_limited(body, limit)
        .await
        .map_err(|e| match e {
            CollectError::TooLarge => GatewayError::ResponseTooLarge { limit },
            CollectError::Body(e) => GatewayError::UpstreamBroken(e.to_string()),
        })
}
