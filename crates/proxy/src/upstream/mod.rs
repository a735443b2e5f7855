//! Upstream HTTP clients: pooled keep-alive connections, HTTP/1.1 or HTTP/2 per cluster protocol.
//!
//! The pools live here, outside any snapshot, so config reloads never drop connections.

pub(crate) mod connect;
#[cfg(feature = "fuzzing")]
pub use direct::fuzz as direct_fuzz;
mod direct;
mod http1_pool;
mod http2_pool;
mod idle;
mod post_tunnel;
mod proxy_protocol;
mod reaper;
mod stream;
pub(crate) mod tunnel;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use http::{Request, Response};

use sluice_config::cluster::UpstreamEndpoint;
use sluice_config::policy::PoolLimits;

use crate::body::Body;
use crate::error::ProxyError;
use connect::{ConnectSettings, Target, UpstreamTls};
pub use direct::ResponseBody;
use direct::{DirectPool, Outgoing};
use http1_pool::{Http1Pool, PoolSettings, SendError};
use http2_pool::Http2Pool;
pub use http2_pool::StreamSlot;

/// Istio's default upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Istio's default upstream idle timeout is 1 h; a shorter pool idle time keeps sockets few.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Connection pools sharing one set of settings: HTTP/1.1 (direct for bodiless requests, hyper
/// otherwise) and HTTP/2.
///
/// A cluster whose DestinationRule changes a connection setting (`connectTimeout`,
/// `tcpKeepalive`, `idleTimeout`, `maxRequestsPerConnection`, `maxConnectionDuration`,
/// `maxConcurrentStreams`, `http2KeepAlive`, `proxyProtocol`) has pools of its own; other
/// clusters share [`Upstreams`]' pools.
#[derive(Clone)]
pub struct ClusterPool {
    direct: DirectPool,
    http1: Http1Pool,
    http2: Http2Pool,
    /// Connections speak TLS: the direct client (plain sockets only) is not used.
    tls: bool,
    /// Connections start with a PROXY header: each serves one downstream connection.
    proxy_protocol: bool,
}

impl std::fmt::Debug for ClusterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterPool")
    }
}

impl ClusterPool {
    fn new(settings: PoolSettings) -> Self {
        ClusterPool {
            tls: settings.connect.tls.is_some(),
            proxy_protocol: settings.connect.proxy_protocol.is_some(),
            direct: DirectPool::new(settings.clone()),
            http1: Http1Pool::new(settings.clone()),
            http2: Http2Pool::new(settings),
        }
    }

    /// The cluster's own pools, or `None` when its settings are the defaults (plain text
    /// included: a cluster originating TLS always has pools of its own).
    pub(crate) fn for_limits(limits: &PoolLimits, tls: Option<UpstreamTls>) -> Option<ClusterPool> {
        let defaults = PoolLimits::default();
        if limits.connect_timeout == CONNECT_TIMEOUT
            && limits.idle_timeout == defaults.idle_timeout
            && limits.tcp_keepalive.is_none()
            && limits.max_requests_per_connection == 0
            && limits.max_connection_duration.is_none()
            && limits.max_concurrent_streams == 0
            && limits.h2_keepalive.is_none()
            && limits.proxy_protocol.is_none()
            && tls.is_none()
        {
            return None;
        }
        Some(ClusterPool::new(PoolSettings {
            connect: ConnectSettings {
                timeout: limits.connect_timeout,
                keepalive: limits.tcp_keepalive,
                tls,
                proxy_protocol: limits.proxy_protocol,
            },
            // `idleTimeout: 0s` (None) keeps idle connections open.
            idle_timeout: limits.idle_timeout,
            max_requests_per_connection: limits.max_requests_per_connection,
            max_connection_duration: limits.max_connection_duration,
            max_concurrent_streams: limits.max_concurrent_streams,
            h2_keepalive: limits.h2_keepalive,
        }))
    }

    /// The pool key of `authority` for a request from `downstream`: connections that carry a
    /// PROXY header are not shared between downstream connections (allocates only then).
    fn key<'a>(
        &self,
        authority: &'a str,
        downstream: Option<(SocketAddr, SocketAddr)>,
    ) -> Cow<'a, str> {
        match downstream {
            Some((src, dst)) if self.proxy_protocol => {
                Cow::Owned(format!("{authority} {src} {dst}"))
            }
            _ => Cow::Borrowed(authority),
        }
    }
}

/// The upstream connection pools.
#[derive(Clone)]
pub struct Upstreams {
    shared: ClusterPool,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstreams {
    /// New, empty pools.
    pub fn new() -> Self {
        Upstreams {
            shared: ClusterPool::new(PoolSettings {
                connect: ConnectSettings {
                    timeout: CONNECT_TIMEOUT,
                    keepalive: None,
                    tls: None,
                    proxy_protocol: None,
                },
                idle_timeout: Some(POOL_IDLE),
                max_requests_per_connection: 0,
                max_connection_duration: None,
                max_concurrent_streams: 0,
                h2_keepalive: None,
            }),
        }
    }

    /// Sends a request to `endpoint` through the cluster's own pool when it has one; `h2`
    /// selects HTTP/2 with prior knowledge. `downstream` (source, destination) is the client
    /// connection the request came on, for clusters that send a PROXY header.
    pub async fn send(
        &self,
        mut req: Request<Body>,
        endpoint: &UpstreamEndpoint,
        h2: bool,
        own: Option<&ClusterPool>,
        downstream: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<Response<Body>, ProxyError> {
        let pools = own.unwrap_or(&self.shared);
        let authority = endpoint.authority.as_str();
        let key = pools.key(authority, downstream);
        let target = Target {
            authority,
            key: &key,
            downstream,
        };
        let sent =
            if h2 {
                // HTTP/2 carries the scheme and authority as pseudo-headers, taken from the URI.
                let mut parts = std::mem::take(req.uri_mut()).into_parts();
                parts.scheme = Some(if pools.tls {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                });
                parts.authority = Some(endpoint.uri_authority.clone().ok_or_else(|| {
                    ProxyError::ConnectFailure {
                        endpoint: authority.to_string(),
                        reason: "invalid endpoint address".into(),
                    }
                })?);
                if parts.path_and_query.is_none() {
                    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
                }
                *req.uri_mut() = http::Uri::from_parts(parts)
                    .map_err(|e| ProxyError::BadRequest(e.to_string()))?;
                *req.version_mut() = http::Version::HTTP_2;
                pools.http2.send(&target, req).await.map(|(resp, slot)| {
                    resp.map(|b| match slot {
                        Some(slot) => Body::Counted(Box::new((b, slot))),
                        None => Body::from(b),
                    })
                })
            } else if !pools.tls && direct::carries(&req) {
                pools
                    .direct
                    .send(&target, &Outgoing::of(&req, authority))
                    .await
            } else {
                *req.version_mut() = http::Version::HTTP_11;
                origin_form(req.uri_mut());
                if !req.headers().contains_key(http::header::HOST) {
                    if let Ok(v) = http::HeaderValue::from_str(authority) {
                        req.headers_mut().insert(http::header::HOST, v);
                    }
                }
                pools.http1.send(&target, req).await.map(into_body)
            };
        sent.map_err(|e| send_error(authority, e))
    }

    /// Whether [`Upstreams::send_head`] can carry a request with this head and no body through
    /// the cluster's pools (`own`, else the shared ones).
    pub fn carries_head(head: &http::request::Parts, h2: bool, own: Option<&ClusterPool>) -> bool {
        !h2 && !own.is_some_and(|p| p.tls) && direct::carries_head(&head.method, &head.headers)
    }

    /// Sends a bodiless HTTP/1.1 request given by its head (see [`Upstreams::carries_head`]),
    /// with `attempt` as its `x-envoy-attempt-count` when set: no copy of the head is made.
    pub async fn send_head(
        &self,
        head: &http::request::Parts,
        attempt: Option<&http::HeaderValue>,
        endpoint: &UpstreamEndpoint,
        own: Option<&ClusterPool>,
        downstream: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<Response<Body>, ProxyError> {
        let pools = own.unwrap_or(&self.shared);
        let authority = endpoint.authority.as_str();
        let key = pools.key(authority, downstream);
        let target = Target {
            authority,
            key: &key,
            downstream,
        };
        let req = Outgoing {
            method: &head.method,
            uri: &head.uri,
            headers: &head.headers,
            attempt,
            host: authority,
        };
        pools
            .direct
            .send(&target, &req)
            .await
            .map_err(|e| send_error(authority, e))
    }
}

fn send_error(authority: &str, e: SendError) -> ProxyError {
    match e {
        SendError::Connect(reason) => ProxyError::ConnectFailure {
            endpoint: authority.to_string(),
            reason,
        },
        SendError::Reset { error, sent } => ProxyError::UpstreamReset {
            endpoint: authority.to_string(),
            reason: error_chain(error.as_ref()),
            request_sent: sent,
        },
    }
}

fn into_body(resp: Response<hyper::body::Incoming>) -> Response<Body> {
    resp.map(Body::from)
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
