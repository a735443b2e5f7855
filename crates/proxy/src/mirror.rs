//! Mirroring: fire-and-forget copies of a request to other clusters.
//!
//! The copy reads the recorded body through its own cursor, so it never slows the primary: if it
//! falls behind by more than the replay cap, the copy fails and is counted as dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use http::{HeaderValue, Request};
use http_body_util::BodyExt;
use sluice_config::policy::MirrorPolicy;
use sluice_config::vhost::VirtualHost;

use sluice_telemetry::trace::propagation;
use sluice_telemetry::{CompletedRequest, Reporter, RequestProtocol};

use crate::body::Body;
use crate::handler::ProxyContext;
use crate::replay::Recorder;

/// `reviews:9080` → `reviews-shadow:9080` (Istio ≤ 1.27's mirror Host).
pub fn shadow_host(authority: &str) -> String {
    let host = sluice_config::host::strip_port(authority);
    let port = authority.get(host.len()..).unwrap_or("");
    format!("{host}-shadow{port}")
}

/// One of the bounded number of mirror copies in flight; released on drop.
struct MirrorSlot(Arc<AtomicUsize>);

impl MirrorSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<MirrorSlot> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| MirrorSlot(counter.clone()))
    }
}

impl Drop for MirrorSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Starts a copy of the request toward `mirror` in the background; `route` (the virtual host
/// and rule index that matched) names the copy's edge in the traffic graph.
pub fn spawn_copy(
    ctx: &ProxyContext,
    mirror: &MirrorPolicy,
    head: &http::request::Parts,
    body: &Recorder,
    source_node: &str,
    route: Option<&(Arc<VirtualHost>, usize)>,
) {
    let (upstreams, runtimes, telemetry) = (&ctx.upstreams, &ctx.runtimes, &ctx.telemetry);
    let shadow_suffix = ctx.options.mirror_shadow_suffix;
    // Copies are counted as sent (a response came back, whatever its status) or dropped (no
    // cluster, no endpoint, overflow, body fell behind, upstream failure).
    let metrics = telemetry.proxy().cluster(&mirror.destination.cluster_name);
    let Some(cluster) = mirror.destination.cluster.clone() else {
        metrics.mirror_dropped.inc();
        return;
    };
    let Some(endpoint) = cluster.pick().cloned() else {
        metrics.mirror_dropped.inc();
        return;
    };
    let Some(slot) = MirrorSlot::take(&ctx.mirrors_in_flight, ctx.options.max_mirror_in_flight)
    else {
        metrics.mirror_dropped.inc();
        return;
    };
    let mut req = Request::new(Body::Replay(body.cursor()));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.headers_mut() = head.headers.clone();
    // Copies keep the trace ids (to correlate with the original) but are never sampled.
    propagation::mark_unsampled(req.headers_mut());
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
        cluster.policy.tls.as_ref(),
    );
    let telemetry = telemetry.clone();
    let source_node: Arc<str> = Arc::from(source_node);
    let route = route.cloned();
    tokio::spawn(async move {
        let _slot = slot;
        let started = std::time::Instant::now();
        let mut status = 0;
        let ok = match runtime.admit().await {
            Ok(_slot) => match upstreams
                .send(req, &endpoint, runtime.upstream_h2(), runtime.pool())
                .await
            {
                // The copy's response is read and thrown away so the connection can be reused.
                Ok(resp) => {
                    status = resp.status().as_u16();
                    resp.into_body().collect().await.is_ok()
                }
                Err(_) => false,
            },
            Err(_) => false,
        };
        if ok {
            metrics.mirror_sent.inc();
        } else {
            metrics.mirror_dropped.inc();
        }
        let (vh, rule) = match &route {
            Some((vh, i)) => (
                Some(vh.name.as_str()),
                vh.routes.get(*i).map(|r| r.name.as_str()),
            ),
            None => (None, None),
        };
        telemetry.record_request(&CompletedRequest {
            reporter: Reporter::Source,
            source_node: &source_node,
            virtual_host: vh,
            route: rule,
            cluster: Some(&cluster),
            endpoint: Some(&endpoint),
            protocol: RequestProtocol::Http,
            response_code: status,
            grpc_status: None,
            response_flags: "-",
            duration: started.elapsed(),
            request_bytes: 0,
            response_bytes: 0,
            mirror: true,
        });
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
