//! Data-plane failures and how Envoy reports them: status, response flag and body.

use http::StatusCode;

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No virtual host or rule matched.
    #[error("no route")]
    NoRoute,
    /// The route's cluster does not exist (unknown host, port or subset).
    #[error("no cluster {0}")]
    NoCluster(String),
    /// The cluster has no endpoint.
    #[error("no healthy upstream in {0}")]
    NoHealthyUpstream(String),
    /// Connecting to the endpoint failed.
    #[error("upstream connect failure to {endpoint}: {reason}")]
    ConnectFailure {
        /// Endpoint address.
        endpoint: String,
        /// Cause.
        reason: String,
    },
    /// The upstream closed or reset the stream before a response.
    #[error("upstream reset from {endpoint}: {reason}")]
    UpstreamReset {
        /// Endpoint address.
        endpoint: String,
        /// Cause.
        reason: String,
    },
    /// The request could not be turned into an upstream request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A circuit breaker (connection pool limit) is full.
    #[error("circuit breaker overflow")]
    Overflow,
    /// The route or per-try timeout expired.
    #[error("upstream request timeout")]
    Timeout,
}

impl ProxyError {
    /// Envoy's status, response flag and local-reply body for this failure.
    pub fn envoy_reply(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "NR", ""),
            ProxyError::NoCluster(_) => (StatusCode::SERVICE_UNAVAILABLE, "NC", ""),
            ProxyError::NoHealthyUpstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "UH", "no healthy upstream"),
            ProxyError::ConnectFailure { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UF",
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            ),
            ProxyError::UpstreamReset { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UC",
                "upstream connect error or disconnect/reset before headers. reset reason: connection termination",
            ),
            ProxyError::BadRequest(_) => (StatusCode::BAD_REQUEST, "DPE", "bad request"),
            ProxyError::Overflow => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UO",
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            ProxyError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "UT", "upstream request timeout"),
        }
    }
}
