//! Data-plane failures and how Envoy reports them: status, response flag and body.

use http::StatusCode;

use crate::authority::AuthorityError;

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
    /// A `DYNAMIC_DNS` request's host name did not resolve.
    #[error("DNS resolution of {0} failed")]
    DnsResolution(String),
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
        /// Some of the request had been written upstream.
        request_sent: bool,
    },
    /// The request could not be turned into an upstream request.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request names no authority, two, or asks for `CONNECT`.
    #[error("{0}")]
    Authority(#[from] crate::authority::AuthorityError),
    /// A circuit breaker (connection pool limit) is full.
    #[error("circuit breaker overflow")]
    Overflow,
    /// The route or per-try timeout expired.
    #[error("upstream request timeout")]
    Timeout,
    /// Reading the client's request body failed: the client's fault, never the upstream's.
    #[error("downstream request body: {reason}")]
    Downstream {
        /// Malformed or cut off.
        failure: DownstreamFailure,
        /// Cause.
        reason: String,
    },
}

/// How a client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownstreamFailure {
    /// The body breaks the protocol (a chunk size that is not hexadecimal, an HTTP/2 flow
    /// control violation): Envoy answers `400` with flag `DPE`.
    Malformed,
    /// The client closed or reset the connection (or the stream) before the body ended:
    /// Envoy's flag `DC`, with no response to send.
    Disconnected,
}

impl DownstreamFailure {
    /// Classifies an error of the downstream request body.
    pub fn of(e: &hyper::Error) -> Self {
        if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
            return DownstreamFailure::Disconnected;
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            if let Some(io) = c.downcast_ref::<std::io::Error>() {
                return Self::of_io(io);
            }
            if let Some(h2) = c.downcast_ref::<h2::Error>() {
                if let Some(io) = h2.get_io() {
                    return Self::of_io(io);
                }
                // A reset or GOAWAY the client sent is the client leaving; one the codec sent
                // answers a protocol violation.
                return if h2.is_remote() {
                    DownstreamFailure::Disconnected
                } else {
                    DownstreamFailure::Malformed
                };
            }
            cause = c.source();
        }
        DownstreamFailure::Malformed
    }

    fn of_io(e: &std::io::Error) -> Self {
        use std::io::ErrorKind::*;
        match e.kind() {
            // hyper reports an end of stream before the declared length (or before the last
            // chunk) as `UnexpectedEof`.
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected => {
                DownstreamFailure::Disconnected
            }
            _ => DownstreamFailure::Malformed,
        }
    }
}

impl ProxyError {
    /// Envoy's status, response flag and local-reply body for this failure.
    pub fn envoy_reply(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ProxyError::NoRoute => (StatusCode::NOT_FOUND, "NR", ""),
            ProxyError::NoCluster(_) => (StatusCode::SERVICE_UNAVAILABLE, "NC", ""),
            ProxyError::NoHealthyUpstream(_) => (StatusCode::SERVICE_UNAVAILABLE, "UH", "no healthy upstream"),
            // Envoy's dynamic forward proxy when the name does not resolve.
            ProxyError::DnsResolution(_) => (StatusCode::SERVICE_UNAVAILABLE, "DF", "DNS resolution failure"),
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
            // Envoy's empty local replies: `missing_host_header` / a codec error for the Host,
            // `upgrade_failed` for a CONNECT no route enables.
            ProxyError::Authority(AuthorityError::Connect) => (StatusCode::FORBIDDEN, "", ""),
            ProxyError::Authority(_) => (StatusCode::BAD_REQUEST, "DPE", ""),
            ProxyError::Overflow => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UO",
                "upstream connect error or disconnect/reset before headers. reset reason: overflow",
            ),
            ProxyError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "UT", "upstream request timeout"),
            ProxyError::Downstream { failure: DownstreamFailure::Malformed, .. } => {
                (StatusCode::BAD_REQUEST, "DPE", "bad request")
            }
            // Written to a client that is gone, if at all; telemetry records status 0, as
            // Envoy does for `DC`.
            ProxyError::Downstream { failure: DownstreamFailure::Disconnected, .. } => {
                (StatusCode::BAD_REQUEST, "DC", "downstream disconnected")
            }
        }
    }
}
