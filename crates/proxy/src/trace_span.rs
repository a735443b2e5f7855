//! The proxy's span for a request: started once the listener is known (so `404 NR` replies are
//! traced too), named after the destination and propagated upstream once the route picked it.

use std::net::SocketAddr;

use http::{HeaderMap, Request};
use sluice_config::cluster::Cluster;
use sluice_config::listener::Listener;
use sluice_telemetry::trace::{RequestSpan, SpanRole, Tracing};

use crate::headers::X_REQUEST_ID;

/// Starts the span (recording Envoy's request attributes when sampled).
pub fn begin<B>(
    tracer: &Tracing,
    listener: &Listener,
    req: &Request<B>,
    peer: SocketAddr,
) -> RequestSpan {
    let role = if listener.is_gateway() {
        SpanRole::Gateway
    } else {
        SpanRole::Outbound
    };
    let authority = || {
        req.uri()
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("-")
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let mut span = tracer.begin(req.headers(), role, || {
        format!("{}{}", authority(), req.uri().path())
    });
    if span.is_recording() {
        span.set_str("http.method", req.method().as_str());
        span.set_str("http.url", format!("http://{}{path}", authority()));
        span.set_str(
            "http.protocol",
            if req.version() == http::Version::HTTP_2 {
                "HTTP/2"
            } else {
                "HTTP/1.1"
            },
        );
        span.set_str(
            "user_agent",
            req.headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
        );
        if let Some(ip) = sluice_config::pipe::peer_ip(peer) {
            span.set_str("peer.address", ip.to_string());
        }
        span.set_str("downstream_cluster", "-");
        span.set_str("component", "proxy");
    }
    span
}

/// Names the span Istio's way (`<host>:<port>/*`) and writes it upstream as the parent.
pub fn routed(span: &mut RequestSpan, cluster: &Cluster, headers: &mut HeaderMap) {
    if span.is_recording() {
        span.set_name(format!("{}:{}/*", cluster.host, cluster.port));
        if let Some(id) = headers.get(X_REQUEST_ID).and_then(|v| v.to_str().ok()) {
            span.set_str("guid:x-request-id", id);
        }
    }
    span.inject(headers);
}
