//! The engine's and the policies' reasons for not passing Kratos's answer on, by the side
//! that failed: the status and metric label of each. The answer each one gets is written in
//! `respond.rs`, with every other answer the gateway writes itself.

use http::StatusCode;

/// Why the gateway could not produce the upstream's answer, by the side that failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The client asked for a protocol switch (h2c upgrade, WebSocket).
    #[error("protocol upgrade refused")]
    UpgradeRefused,
    /// The client sent something the gateway will not forward.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A path that is not served on this listener (the admin API on the public side).
    #[error("not found")]
    NotFound,
    #[error("Kratos is unreachable: {0}")]
    UpstreamUnreachable(String),
    #[error("Kratos did not answer within {0:?}")]
    UpstreamTimeout(std::time::Duration),
    #[error("Kratos's response broke off: {0}")]
    UpstreamBroken(String),
    /// A response that may carry a credential is larger than the inspection limit.
    #[error("response that may carry a credential exceeds {limit} bytes")]
    ResponseTooLarge { limit: usize },
    /// A response that may carry a credential uses a content coding the gateway cannot read.
    #[error("response that may carry a credential uses an unreadable encoding: {0}")]
    UnreadableResponse(String),
    /// The owner of a credential could not be determined because Kratos could not be asked.
    #[error("cannot determine whose session this is: {0}")]
    AttributionUnavailable(String),
    /// A response carries more distinct credentials than Kratos ever issues at once: not
    /// attributed (no Kratos call), not forwarded.
    #[error("response carries {0} or more distinct credentials")]
    TooManyCredentials(usize),
    /// The client did not finish sending a request body the gateway must read in time.
    #[error("request body not received within {0:?}")]
    RequestBodyTimeout(std::time::Duration),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::UpgradeRefused | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::RequestBodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::NotFound => StatusCode::NOT_FOUND,
            GatewayError::UpstreamUnreachable(_)
            | GatewayError::UpstreamBroken(_)
            | GatewayError::ResponseTooLarge { .. }
            | GatewayError::UnreadableResponse(_)
            | GatewayError::TooManyCredentials(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::AttributionUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Metric label for upstream failures and fail-closed answers.
    pub fn label(&self) -> &'static str {
        match self {
            GatewayError::UpgradeRefused => "upgrade_refused",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NotFound => "not_found",
            GatewayError::UpstreamUnreachable(_) => "unreachable",
            GatewayError::UpstreamTimeout(_) => "timeout",
            GatewayError::UpstreamBroken(_) => "broken_response",
            GatewayError::ResponseTooLarge { .. } => "too_large",
            GatewayError::UnreadableResponse(_) => "unreadable_encoding",
            GatewayError::AttributionUnavailable(_) => "attribution_unavailable",
            GatewayError::TooManyCredentials(_) => "too_many_credentials",
            GatewayError::RequestBodyTimeout(_) => "request_body_timeout",
        }
    }
}
