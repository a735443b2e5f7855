//! Traffic to destinations outside the registry, with a Sidecar `egressProxy`: Istio sends it
//! to the egress proxy's cluster instead of passing it through to where the app was going.

use std::net::SocketAddr;

use http::Request;
use hyper::body::Incoming;
use sluice_config::Snapshot;
use sluice_lb::PickContext;

use crate::body::Body;
use crate::error::ProxyError;
use crate::handler::{error_reply, ProxyContext};
use crate::passthrough;

/// An intercepted request no service claims: to the egress proxy when the Sidecar names one,
/// else on to its original destination `dst`.
pub(crate) async fn forward_unknown(
    ctx: &ProxyContext,
    snapshot: &Snapshot,
    dst: SocketAddr,
    req: Request<Incoming>,
) -> http::Response<Body> {
    let Some(cluster) = &snapshot.outbound.egress_proxy else {
        return passthrough::forward(ctx, dst, req).await;
    };
    let pick = PickContext::at_pick_time(sluice_lb::fresh_seed());
    let Some(endpoint) = cluster
        .balancer()
        .pick(&pick)
        .and_then(|i| cluster.endpoints.get(i))
    else {
        return error_reply(&ProxyError::NoHealthyUpstream(cluster.name.clone()), "");
    };
    passthrough::forward_to(ctx, endpoint, req).await
}
