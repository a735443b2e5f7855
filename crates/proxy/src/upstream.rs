//! Upstream HTTP clients: pooled keep-alive connections, HTTP/1.1 or HTTP/2 per cluster protocol.
//!
//! The pools live here, outside any snapshot, so config reloads never drop connections.

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use sluice_config::cluster::UpstreamEndpoint;

use crate::body::Body;
use crate::error::ProxyError;

/// Istio's default upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; a shorter pool idle time keeps sockets few.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The upstream connection pools.
#[derive(Clone)]
pub struct Upstreams {
    http1: Client<HttpConnector, Body>,
    http2: Client<HttpConnector, Body>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// New, empty pools.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_max_idle_per_host(256)
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .http2_only(true)
            .build(connector);
        Upstreams { http1, http2 }
    }

    /// Sends a request to `endpoint`; `h2` selects HTTP/2 with prior knowledge.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        endpoint: &UpstreamEndpoint,
        h2: bool,
    ) -> Result<Response<Incoming>, ProxyError> {
        let authority =
            endpoint
                .uri_authority
                .clone()
                .ok_or_else(|| ProxyError::ConnectFailure {
                    endpoint: endpoint.authority.clone(),
                    reason: "invalid endpoint address".into(),
                })?;
        // Reuse the parsed path instead of formatting and re-parsing a URI string.
        let mut parts = std::mem::take(req.uri_mut()).into_parts();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        }
        *req.uri_mut() =
            http::Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
        let endpoint = endpoint.authority.as_str();
        let client = if h2 {
            *req.version_mut() = http::Version::HTTP_2;
            &self.http2
        } else {
            *req.version_mut() = http::Version::HTTP_11;
            &self.http1
        };
        client.request(req).await.map_err(|e| {
            let reason = error_chain(&e);
            if e.is_connect() {
                ProxyError::ConnectFailure {
                    endpoint: endpoint.to_string(),
                    reason,
                }
            } else {
                ProxyError::UpstreamReset {
                    endpoint: endpoint.to_string(),
                    reason,
                }
            }
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
