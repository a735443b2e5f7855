//! The Sidecar's `inboundConnectionPool` and ingress `connectionPool`: Envoy's circuit breakers
//! and connection settings on the inbound hop to the app, which Istio puts on the inbound
//! cluster (`inbound|PORT||`). The outbound circuit breaker serves here too: an HTTP request
//! over the limits gets `503` with flag `UO`, a TCP connection over `maxConnections` is closed.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Response;
use sluice_config::policy::PoolLimits;
use sluice_config::Snapshot;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::body::Body;
use crate::circuit_breaker::{ActiveGuard, ClusterRuntime};
use crate::error::ProxyError;
use crate::handler::{error_reply, ProxyContext};
use crate::security::InboundTarget;
use crate::upstream::connect::{self, ConnectSettings};

/// The circuit breaker of the inbound port `target` reached, when its Sidecar sets a pool.
pub(crate) fn runtime(
    ctx: &ProxyContext,
    snapshot: &Snapshot,
    target: InboundTarget,
) -> Option<Arc<ClusterRuntime>> {
    let (port, limits, h2) = crate::security::inbound_pool(snapshot, target)?;
    Some(
        ctx.runtimes
            .get(&format!("inbound|{port}||"), limits, h2, None),
    )
}

/// Admits a request now, after waiting as pending, or answers `503 UO` (overflow).
pub(crate) async fn admit(runtime: &Arc<ClusterRuntime>) -> Result<ActiveGuard, Response<Body>> {
    if let Some(slot) = runtime.try_admit() {
        return Ok(slot);
    }
    runtime
        .admit()
        .await
        .map_err(|_| error_reply(&ProxyError::Overflow, ""))
}

/// Relays a TCP connection to the app with the pool's connect timeout, keepalive, idle
/// timeout and `maxConnectionDuration`; `read` (bytes already taken from it) goes first.
pub(crate) async fn relay<D>(mut downstream: D, app: SocketAddr, limits: &PoolLimits, read: &[u8])
where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let settings = ConnectSettings {
        timeout: limits.connect_timeout,
        keepalive: limits.tcp_keepalive,
        tls: None,
        proxy_protocol: None,
    };
    let mut upstream = match connect::tcp(&app.to_string(), &settings).await {
        Ok(s) => s,
        Err(reason) => {
            tracing::debug!(%app, %reason, "inbound connect failed; connection closed");
            return;
        }
    };
    if !read.is_empty() {
        if let Err(e) = upstream.write_all(read).await {
            tracing::debug!(%app, error = %e, "inbound relay ended");
            return;
        }
    }
    let (_, _, outcome) = crate::tcp_proxy::relay(
        &mut downstream,
        &mut upstream,
        limits.tcp_idle_timeout,
        limits.max_connection_duration,
    )
    .await;
    if let Err(e) = outcome {
        tracing::debug!(%app, error = %e, "inbound relay ended");
    }
}
