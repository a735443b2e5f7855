//! TCP listeners (VirtualService `tcp` rules): a connection takes the first matching rule, a
//! destination by the rule's exact split, an endpoint by the cluster's balancer, and is then
//! relayed byte for byte, with Istio's `istio_tcp_*` metrics.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_config::policy::{HashKey, LbPolicy};
use sluice_config::tcp_route::TcpListener;
use sluice_lb::{FailureKind, PickContext};
use tokio::net::TcpStream;

use crate::handler::ProxyContext;
use crate::upstream::connect::{self, ConnectSettings};

/// Serves one connection accepted on `listener`; closing it is the only answer to a failure,
/// as Envoy's TCP proxy does.
pub async fn serve(
    ctx: Arc<ProxyContext>,
    listener: Arc<TcpListener>,
    mut downstream: TcpStream,
    peer: SocketAddr,
) {
    let local = downstream
        .local_addr()
        .map_or(listener.address.ip(), |a| a.ip());
    let Some(rule) = listener.route(peer.ip(), local) else {
        tracing::debug!(%peer, listener = %listener.name, "no tcp rule matches; connection closed");
        return;
    };
    // A connection has no headers, cookies or query: of the consistent-hash keys only the
    // source IP applies, as in Envoy's TCP proxy. As for HTTP, the DestinationRule of the first
    // destination's host decides, and the key also picks the version (sticky canary).
    let source_ip_hash =
        |c: Option<&Arc<sluice_config::cluster::Cluster>>| match c.map(|c| &c.policy.lb) {
            Some(LbPolicy::ConsistentHash(ch)) if matches!(ch.key, HashKey::SourceIp) => {
                Some(sluice_lb::hash_key(peer.ip().to_string().as_bytes()))
            }
            _ => None,
        };
    let first = rule
        .forward
        .destinations
        .first()
        .and_then(|d| d.cluster.as_ref());
    let dest = match source_ip_hash(first) {
        Some(h) if ctx.options.sticky_canary => rule.forward.pick_by_hash(h),
        _ => rule.forward.pick(),
    };
    let Some(dest) = dest else {
        return;
    };
    let Some(cluster) = dest.cluster.as_ref() else {
        tracing::debug!(%peer, cluster = %dest.cluster_name, "unknown cluster; connection closed");
        return;
    };
    let runtime = ctx.runtimes.get(&cluster.name, &cluster.policy.pool, false);
    let Some(_connection) = runtime.try_connection() else {
        tracing::debug!(%peer, cluster = %cluster.name, "maxConnections reached (UO); connection closed");
        return;
    };
    let balancer = cluster.balancer();
    let pick = PickContext::new(std::time::Instant::now(), sluice_lb::fresh_seed())
        .with_hash(source_ip_hash(Some(cluster)));
    let Some(index) = balancer.pick(&pick) else {
        tracing::debug!(%peer, cluster = %cluster.name, "no healthy endpoint; connection closed");
        return;
    };
    let Some(endpoint) = cluster.endpoints.get(index) else {
        return;
    };
    let _in_flight = balancer.start_request(index);
    let settings = ConnectSettings {
        timeout: cluster.policy.pool.connect_timeout,
        keepalive: cluster.policy.pool.tcp_keepalive,
    };
    let mut upstream = match connect::tcp(&endpoint.authority, &settings).await {
        Ok(s) => s,
        Err(reason) => {
            balancer.record_failure(
                index,
                FailureKind::ConnectFailure,
                std::time::Instant::now(),
            );
            tracing::debug!(%peer, endpoint = %endpoint.authority, %reason, "tcp upstream connect failed; connection closed");
            return;
        }
    };
    let series = ctx.telemetry.tcp_series(cluster, Some(endpoint));
    if let Some(s) = &series {
        s.opened();
    }
    // Half-closes are passed on: a client that finishes sending still gets the rest of the reply.
    let (received, sent) = match tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await
    {
        Ok(counts) => counts,
        Err(e) => {
            tracing::debug!(%peer, endpoint = %endpoint.authority, error = %e, "tcp relay ended with an error");
            (0, 0)
        }
    };
    if let Some(s) = &series {
        s.received(received);
        s.sent(sent);
        s.closed();
    }
}
