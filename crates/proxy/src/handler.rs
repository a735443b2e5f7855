//! The request path: route with the current snapshot, then answer locally or forward upstream.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use sluice_config::route_table::RouteAction;
use sluice_config::{route, RequestInfo, Routed, Snapshot};

use crate::body::Body;
use crate::config_handle::ConfigHandle;
use crate::error::ProxyError;
use crate::headers::{add_forwarding, strip_hop_by_hop, X_ENVOY_ATTEMPT_COUNT};
use crate::upstream::Upstreams;

/// Response flags of a finished request, attached as a response extension for telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFlags(pub &'static str);

/// Everything the request path shares.
pub struct ProxyContext {
    /// Published config.
    pub config: Arc<ConfigHandle>,
    /// Upstream pools.
    pub upstreams: Upstreams,
}

/// A fixed body.
pub fn full(body: impl Into<Bytes>) -> Body {
    Body::full(body)
}

fn local_reply(status: StatusCode, flag: &'static str, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    if !body.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    resp.extensions_mut().insert(ResponseFlags(flag));
    resp
}

fn error_reply(e: &ProxyError) -> Response<Body> {
    let (status, flag, body) = e.envoy_reply();
    tracing::debug!(error = %e, flag, "local reply");
    local_reply(status, flag, body)
}

/// Handles one request that arrived on the listener bound at `listener_addr` from `peer`.
pub async fn handle(
    ctx: Arc<ProxyContext>,
    listener_addr: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let Some(snapshot) = ctx.config.load() else {
        return local_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "NR",
            "no configuration loaded",
        );
    };
    match proxy(&ctx, &snapshot, listener_addr, peer, req).await {
        Ok(resp) => resp,
        Err(e) => error_reply(&e),
    }
}

async fn proxy(
    ctx: &ProxyContext,
    snapshot: &Snapshot,
    listener_addr: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let listener = snapshot
        .listener(listener_addr)
        .ok_or(ProxyError::NoRoute)?;
    let forward = {
        // Routing borrows from the request; nothing is copied unless a local reply needs it.
        let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        });
        let info = RequestInfo {
            method: req.method().as_str(),
            scheme: "http",
            authority: authority.unwrap_or(""),
            path_and_query: req.uri().path_and_query().map_or("/", |p| p.as_str()),
            headers: req.headers(),
        };
        let m = match route(listener, &info) {
            Routed::Matched(m) => m,
            Routed::NoVirtualHost | Routed::NoRoute(_) => return Err(ProxyError::NoRoute),
        };
        match &m.route.action {
            RouteAction::Forward(f) => f,
            RouteAction::DirectResponse(d) => {
                let mut resp = Response::new(full(d.body.clone()));
                *resp.status_mut() = StatusCode::from_u16(d.status).unwrap_or(StatusCode::OK);
                if !d.body.is_empty() {
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain"),
                    );
                }
                return Ok(resp);
            }
            RouteAction::Redirect(r) => {
                let location = r.location(&info, m.matched_prefix(), listener.port());
                let mut resp = Response::new(full(Bytes::new()));
                *resp.status_mut() =
                    StatusCode::from_u16(r.code).unwrap_or(StatusCode::MOVED_PERMANENTLY);
                if let Ok(v) = HeaderValue::from_str(&location) {
                    resp.headers_mut().insert(http::header::LOCATION, v);
                }
                return Ok(resp);
            }
        }
    };
    let dest = forward.pick().ok_or(ProxyError::NoRoute)?;
    let cluster = dest
        .cluster
        .as_ref()
        .ok_or_else(|| ProxyError::NoCluster(dest.cluster_name.clone()))?;
    let endpoint = cluster
        .pick()
        .ok_or_else(|| ProxyError::NoHealthyUpstream(cluster.name.clone()))?;

    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    add_forwarding(&mut parts.headers, peer.ip(), listener.is_gateway(), "http");
    // An HTTP/2 client sends :authority instead of Host; an HTTP/1.1 upstream needs Host.
    if !parts.headers.contains_key(http::header::HOST) {
        if let Some(v) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(http::header::HOST, v);
        }
    }
    parts
        .headers
        .insert(X_ENVOY_ATTEMPT_COUNT, HeaderValue::from_static("1"));
    let upstream_req = Request::from_parts(parts, Body::from(body));
    let resp = ctx
        .upstreams
        .send(upstream_req, endpoint, cluster.protocol.upstream_h2())
        .await?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Ok(Response::from_parts(parts, Body::from(body)))
}
