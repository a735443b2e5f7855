//! Forwarding an HTTP request unchanged to a fixed address: Istio's `PassthroughCluster` for
//! intercepted outbound requests no service claims, and the inbound hop to the local app.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use sluice_config::cluster::UpstreamEndpoint;
use sluice_config::registry::Endpoint;

use crate::body::Body;
use crate::error::ProxyError;
use crate::handler::{error_reply, ProxyContext};
use crate::headers::strip_hop_by_hop;
use crate::upstream::ClusterPool;

/// An endpoint for `addr` that belongs to no service.
pub(crate) fn endpoint(addr: SocketAddr) -> UpstreamEndpoint {
    let authority = addr.to_string();
    UpstreamEndpoint {
        uri_authority: authority.parse().ok(),
        authority,
        endpoint: Arc::new(Endpoint {
            address: addr.ip().to_string(),
            ports: Default::default(),
            labels: Default::default(),
            weight: 1,
            workload: None,
            service_account: None,
            locality: String::new(),
            hostname: String::new(),
            network: String::new(),
        }),
    }
}

/// Sends `req` to `addr` as it came (same Host, path and protocol) and returns the answer;
/// failures get Envoy's local replies (`503 UF`, `503 UC`).
pub async fn forward(
    ctx: &ProxyContext,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    forward_to(ctx, &endpoint(addr), req).await
}

/// [`forward`] to an endpoint built once (per connection, say) rather than per request.
pub(crate) async fn forward_to(
    ctx: &ProxyContext,
    endpoint: &UpstreamEndpoint,
    req: Request<Incoming>,
) -> Response<Body> {
    forward_in(ctx, endpoint, req, None).await
}

/// [`forward_to`] through `own`, a pool with its own connection settings (else the shared one).
pub(crate) async fn forward_in(
    ctx: &ProxyContext,
    endpoint: &UpstreamEndpoint,
    req: Request<Incoming>,
    own: Option<&ClusterPool>,
) -> Response<Body> {
    let (mut head, body) = req.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let h2 = head.version == http::Version::HTTP_2;
    if !head.headers.contains_key(http::header::HOST) {
        // HTTP/2 callers send :authority; an HTTP/1.1 upstream needs Host.
        if let Some(v) = head
            .uri
            .authority()
            .and_then(|a| http::HeaderValue::from_str(a.as_str()).ok())
        {
            head.headers.insert(http::header::HOST, v);
        }
    }
    let upstream = Request::from_parts(head, Body::from(body));
    match ctx.upstreams.send(upstream, endpoint, h2, own, None).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, body)
        }
        Err(e) => passthrough_error(&e),
    }
}

fn passthrough_error(e: &ProxyError) -> Response<Body> {
    tracing::debug!(error = %e, "passthrough request failed");
    error_reply(e, "")
}
