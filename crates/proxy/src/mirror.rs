//! Mirroring: fire-and-forget copies of a request to other clusters.
//!
//! The copy reads the recorded body through a follower cursor, so it never slows the primary
//! nor reads ahead of it: if it falls behind by more than the replay cap, the copy fails and is
//! counted as dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

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

/// How long a copy may take when its route has no timeout (Istio's default): Envoy's own
/// default route timeout. Without a bound, a mirror that never answers would hold every
/// in-flight slot for good and no later copy would be sent.
const UNTIMED_COPY_LIMIT: Duration = Duration::from_secs(15);

/// After a copy could not connect to an endpoint, copies to it are dropped for this long
/// instead of each trying again: a dead mirror must cost the primary next to nothing.
const CONNECT_FAILURE_HOLD: Duration = Duration::from_secs(1);

/// The primary request's context a copy needs.
#[derive(Debug, Clone, Copy)]
pub struct Copy<'a> {
    /// The traffic-graph node the request came from.
    pub source_node: &'a str,
    /// The virtual host and rule index that matched (the copy's edge in the graph).
    pub route: Option<&'a (Arc<VirtualHost>, usize)>,
    /// The route's timeout, which Envoy applies to shadow requests too.
    pub timeout: Option<Duration>,
}

/// Endpoints that recently refused a copy's connection, until when copies to them are dropped.
fn refused() -> &'static Mutex<HashMap<String, Instant>> {
    static REFUSED: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    REFUSED.get_or_init(Mutex::default)
}

fn lock_refused() -> std::sync::MutexGuard<'static, HashMap<String, Instant>> {
    match refused().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Whether copies to `authority` are on hold after a failed connect.
fn on_hold(authority: &str, now: Instant) -> bool {
    let mut held = lock_refused();
    match held.get(authority) {
        Some(&until) if until > now => true,
        Some(_) => {
            held.remove(authority);
            false
        }
        None => false,
    }
}

/// Copies dropped for want of an in-flight slot since the last warning, and when it was.
fn warn_slots_exhausted(max: usize) {
    static DROPPED: AtomicU64 = AtomicU64::new(0);
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let dropped = DROPPED.fetch_add(1, Ordering::Relaxed) + 1;
    let mut last = match LAST.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let now = Instant::now();
    if last.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10)) {
        *last = Some(now);
        DROPPED.store(0, Ordering::Relaxed);
        tracing::warn!(
            dropped,
            max_in_flight = max,
            "mirror copies dropped: every in-flight slot is taken (a slow mirror; see --max-mirror-in-flight and sluice_mirror_requests_dropped_total)"
        );
    }
}

/// Starts a copy of the request toward `mirror` in the background.
pub fn spawn_copy(
    ctx: &ProxyContext,
    mirror: &MirrorPolicy,
    head: &http::request::Parts,
    body: &Recorder,
    copy: Copy<'_>,
) {
    let Copy {
        source_node,
        route,
        timeout,
    } = copy;
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
    if on_hold(&endpoint.authority, Instant::now()) {
        metrics.mirror_dropped.inc();
        return;
    }
    let Some(slot) = MirrorSlot::take(&ctx.mirrors_in_flight, ctx.options.max_mirror_in_flight)
    else {
        metrics.mirror_dropped.inc();
        warn_slots_exhausted(ctx.options.max_mirror_in_flight);
        return;
    };
    let limit = timeout.unwrap_or(UNTIMED_COPY_LIMIT);
    let mut req = Request::new(Body::Replay(body.follower()));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.headers_mut() = head.headers.clone();
    let version = head.version;
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
        let exchange = async {
            let _admitted = runtime.admit().await.ok()?;
            match upstreams
                .send(
                    req,
                    &endpoint,
                    runtime.upstream_h2_for(version),
                    runtime.pool(),
                    None,
                )
                .await
            {
                // The copy's response is read and thrown away so the connection can be reused.
                Ok(resp) => {
                    status = resp.status().as_u16();
                    resp.into_body().collect().await.ok().map(|_| ())
                }
                Err(crate::error::ProxyError::ConnectFailure { .. }) => {
                    lock_refused().insert(
                        endpoint.authority.clone(),
                        Instant::now() + CONNECT_FAILURE_HOLD,
                    );
                    None
                }
                Err(_) => None,
            }
        };
        // Envoy applies the route timeout to shadows; the slot is freed when it expires.
        let ok = matches!(tokio::time::timeout(limit, exchange).await, Ok(Some(())));
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
            mtls: None,
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
