//! Upstream HTTP clients: pooled keep-alive connections, HTTP/1.1 or HTTP/2 per cluster protocol.
//!
//! The pools live here, outside any snapshot, so config reloads never drop connections.

mod connect;
mod http1_pool;

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
use connect::ConnectSettings;
use http1_pool::{Http1Pool, PoolSettings, SendError};

/// Istio's default upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; a shorter pool idle time keeps sockets few.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// A pool of its own for a cluster whose DestinationRule changes a connection setting
/// (`connectTimeout`, `tcpKeepalive`, `idleTimeout`, `maxRequestsPerConnection`); other clusters
/// share [`Upstreams`]' pools.
#[derive(Clone)]
pub struct ClusterPool(PoolKind);

#[derive(Clone)]
enum PoolKind {
    Http1(Http1Pool),
    Http2(Client<HttpConnector, Body>),
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterPool")
    }
}

impl ClusterPool {
    /// The cluster's own pool, or `None` when its settings are the defaults.
    pub fn for_limits(limits: &PoolLimits, h2: bool) -> Option<ClusterPool> {
        let default_idle = limits.idle_timeout == PoolLimits::default().idle_timeout;
        let default_connect = limits.connect_timeout == CONNECT_TIMEOUT
            && default_idle
            && limits.tcp_keepalive.is_none();
        if !h2 {
            // `maxRequestsPerConnection: 1` is also carried by `Connection: close`, but the pool
            // must not keep the connection either.
            if default_connect && limits.max_requests_per_connection == 0 {
                return None;
            }
            return Some(ClusterPool(PoolKind::Http1(Http1Pool::new(PoolSettings {
                connect: ConnectSettings {
                    timeout: limits.connect_timeout,
                    keepalive: limits.tcp_keepalive,
                },
                idle_timeout: limits.idle_timeout,
                max_requests_per_connection: limits.max_requests_per_connection,
            }))));
        }
        if default_connect {
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
            .pool_max_idle_per_host(256)
            .http2_only(true);
        Some(ClusterPool(PoolKind::Http2(builder.build(connector))))
    }
}

/// The upstream connection pools.
#[derive(Clone)]
pub struct Upstreams {
    http1: Http1Pool,
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
        let http1 = Http1Pool::new(PoolSettings {
            connect: ConnectSettings {
                timeout: CONNECT_TIMEOUT,
                keepalive: None,
            },
            idle_timeout: Some(POOL_IDLE),
            max_requests_per_connection: 0,
        });
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
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
        let http1 = match (own, h2) {
            (Some(ClusterPool(PoolKind::Http1(pool))), false) => Some(pool),
            (None, false) => Some(&self.http1),
            _ => None,
        };
        if let Some(pool) = http1 {
            *req.version_mut() = http::Version::HTTP_11;
            origin_form(req.uri_mut());
            if !req.headers().contains_key(http::header::HOST) {
                if let Ok(v) = http::HeaderValue::from_str(&endpoint.authority) {
                    req.headers_mut().insert(http::header::HOST, v);
                }
            }
            return pool
                .send(&endpoint.authority, req)
                .await
                .map_err(|e| match e {
                    SendError::Connect(reason) => ProxyError::ConnectFailure {
                        endpoint: endpoint.authority.clone(),
                        reason,
                    },
                    SendError::Reset(e) => ProxyError::UpstreamReset {
                        endpoint: endpoint.authority.clone(),
                        reason: error_chain(&e),
                    },
                });
        }
        let client = match own {
            Some(ClusterPool(PoolKind::Http2(client))) => client,
            _ => &self.http2,
        };
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
        *req.version_mut() = http::Version::HTTP_2;
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

/// Turns the URI into origin-form (`/path?query`), what an HTTP/1.1 request line carries.
fn origin_form(uri: &mut http::Uri) {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.path_and_query = Some(path);
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
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
