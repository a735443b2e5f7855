//! Mirroring: fire-and-forget copies of a request to other clusters.
//!
//! The copy reads the recorded body through its own cursor, so it never slows the primary: if it
//! falls behind by more than the replay cap, the copy fails and is counted as dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use sluice_config::policy::MirrorPolicy;

use crate::body::Body;
use crate::circuit_breaker::ClusterRuntimes;
use crate::replay::Recorder;
use crate::upstream::Upstreams;

/// Counters of mirror copies.
#[derive(Debug, Default)]
pub struct MirrorStats {
    /// Copies sent (a response came back, whatever its status).
    pub sent: AtomicU64,
    /// Copies dropped (no cluster, no endpoint, overflow, body fell behind, upstream failure).
    pub dropped: AtomicU64,
}

/// `reviews:9080` → `reviews-shadow:9080` (Istio ≤ 1.27's mirror Host).
pub fn shadow_host(authority: &str) -> String {
    let host = sluice_config::host::strip_port(authority);
    let port = authority.get(host.len()..).unwrap_or("");
    format!("{host}-shadow{port}")
}

/// Starts a copy of the request toward `mirror` in the background.
pub fn spawn_copy(
    upstreams: &Upstreams,
    runtimes: &Arc<ClusterRuntimes>,
    stats: &Arc<MirrorStats>,
    mirror: &MirrorPolicy,
    head: &http::request::Parts,
    body: &Recorder,
    shadow_suffix: bool,
) {
    let Some(cluster) = mirror.destination.cluster.clone() else {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some(endpoint) = cluster.pick().cloned() else {
        stats.dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut req = Request::new(Body::Replay(body.cursor()));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.headers_mut() = head.headers.clone();
    if shadow_suffix {
        let host = head
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(shadow_host);
        if let Some(v) = host.and_then(|h| HeaderValue::from_str(&h).ok()) {
            req.headers_mut().insert(http::header::HOST, v);
        }
    }
    let upstreams = upstreams.clone();
    let runtime = runtimes.get(
        &cluster.name,
        &cluster.policy.pool,
        cluster.protocol.upstream_h2(),
    );
    let stats = stats.clone();
    tokio::spawn(async move {
        let ok = match runtime.admit().await {
            Ok(_slot) => match upstreams
                .send(req, &endpoint, cluster.protocol.upstream_h2())
                .await
            {
                // The copy's response is read and thrown away so the connection can be reused.
                Ok(resp) => resp.into_body().collect().await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        let counter = if ok { &stats.sent } else { &stats.dropped };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shadow_hosts() {
        assert_eq!(shadow_host("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(
            shadow_host("a.b.svc.cluster.local"),
            "a.b.svc.cluster.local-shadow"
        );
    }
}
