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
use sluice_config::policy::PoolLimits;

use crate::body::Body;
use crate::error::ProxyError;

/// Istio's default upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; a shorter pool idle time keeps sockets few.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A pool of its own for a cluster whose DestinationRule changes a connection setting
/// (`connectTimeout`, `tcpKeepalive`, `idleTimeout`); other clusters share [`Upstreams`]' pools.
#[derive(Clone)]
pub struct ClusterPool(Client<HttpConnector, Body>);

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterPool")
    }
}

impl ClusterPool {
    /// The cluster's own pool, or `None` when its settings are the defaults.
    pub fn for_limits(limits: &PoolLimits, h2: bool) -> Option<ClusterPool> {
        let default_idle = limits.idle_timeout == PoolLimits::default().idle_timeout;
        if limits.connect_timeout == CONNECT_TIMEOUT
            && default_idle
            && limits.tcp_keepalive.is_none()
        {
            return None;
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        if let Some(k) = &limits.tcp_keepalive {
            // Linux defaults (7200 s idle, 75 s interval, 9 probes) apply to what is unset,
            // as in Envoy.
            connector.set_keepalive(Some(k.time.unwrap_or(Duration::from_secs(7200))));
            connector.set_keepalive_interval(k.interval);
            connector.set_keepalive_retries(k.probes);
        }
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            // `idleTimeout: 0s` (None) keeps idle connections open.
            .pool_idle_timeout(limits.idle_timeout)
            .pool_max_idle_per_host(256);
        if h2 {
            builder.http2_only(true);
        }
        Some(ClusterPool(builder.build(connector)))
    }
}

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

    /// Sends a request to `endpoint` through the cluster's own pool when it has one; `h2`
    /// selects HTTP/2 with prior knowledge.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        endpoint: &UpstreamEndpoint,
        h2: bool,
        own: Option<&ClusterPool>,
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
        *req.version_mut() = if h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        };
        let client = match (own, h2) {
            (Some(pool), _) => &pool.0,
            (None, true) => &self.http2,
            (None, false) => &self.http1,
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
