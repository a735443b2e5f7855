//! Forwarding with Envoy's router semantics: circuit breaking, per-try and route timeouts, retries
//! on the configured conditions with exponential backoff, a different endpoint per retry.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use rand::Rng;
use sluice_config::cluster::{Cluster, UpstreamEndpoint};
use sluice_config::policy::{RetryOn, RetryPolicy};
use tokio::time::Instant;

use sluice_lb::FailureKind;
use sluice_telemetry::ClusterMetrics;

use crate::body::Body;
use crate::circuit_breaker::ClusterRuntime;
use crate::error::ProxyError;
use crate::headers::X_ENVOY_ATTEMPT_COUNT;
use crate::replay::Recorder;
use crate::upstream::Upstreams;

/// A finished forwarding: the upstream response and whether retries ran out on the way.
pub struct Forwarded {
    /// Upstream response.
    pub response: Response<Body>,
    /// Retries were exhausted (flag URX) and this is the last attempt's response.
    pub retries_exhausted: bool,
    /// The endpoint that answered (`None`: the original destination).
    pub endpoint: Option<usize>,
}

/// An attempt's failure, with whether retries ran out.
#[derive(Debug)]
pub struct Failed {
    /// The last error.
    pub error: ProxyError,
    /// Retries were exhausted (flag URX).
    pub retries_exhausted: bool,
}

/// Envoy's request header naming response headers that make a response retriable (with
/// `retriable-headers`).
const RETRIABLE_HEADER_NAMES: &str = "x-envoy-retriable-header-names";

/// Envoy's response header of a rate-limited request (`envoy-ratelimited`).
const RATELIMITED: &str = "x-envoy-ratelimited";

/// Whether the response carries one of the headers the request's
/// `x-envoy-retriable-header-names` lists (comma-separated, case-insensitive names).
fn has_retriable_header(request: &http::HeaderMap, response: &http::HeaderMap) -> bool {
    request
        .get_all(RETRIABLE_HEADER_NAMES)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .any(|n| {
            // Header names in the map are lower case; compare without allocating.
            response.keys().any(|k| k.as_str().eq_ignore_ascii_case(n))
        })
}

/// Whether a response is retriable under `on` (`request` is the request's headers, which may
/// name retriable response headers).
fn retriable_response(p: &RetryPolicy, request: &http::HeaderMap, resp: &Response<Body>) -> bool {
    let on = &p.retry_on;
    let s = resp.status().as_u16();
    if (on.five_xx && s >= 500)
        || (on.gateway_error && matches!(s, 502..=504))
        || (on.retriable_4xx && s == 409)
        || (on.retriable_status_codes && p.retriable_status_codes.contains(&s))
        || (on.envoy_ratelimited && resp.headers().contains_key(RATELIMITED))
        || (on.retriable_headers && has_retriable_header(request, resp.headers()))
    {
        return true;
    }
    let any_grpc = on.grpc_cancelled
        || on.grpc_deadline_exceeded
        || on.grpc_resource_exhausted
        || on.grpc_internal
        || on.grpc_unavailable;
    if !any_grpc {
        return false;
    }
    match crate::observe::grpc_status(resp.headers()) {
        Some(1) => on.grpc_cancelled,
        Some(4) => on.grpc_deadline_exceeded,
        Some(8) => on.grpc_resource_exhausted,
        Some(13) => on.grpc_internal,
        Some(14) => on.grpc_unavailable,
        _ => false,
    }
}

/// Whether a failure before a response is retriable under `on` (Envoy's
/// `RetryStateImpl::wouldRetryFromReset`).
fn retriable_error(on: &RetryOn, e: &ProxyError) -> bool {
    match e {
        // Nothing of the request was sent: `reset-before-request` covers it too.
        ProxyError::ConnectFailure { .. } => {
            on.connect_failure
                || on.five_xx
                || on.gateway_error
                || on.reset
                || on.reset_before_request
        }
        ProxyError::UpstreamReset {
            reason,
            request_sent,
            ..
        } => {
            let refused = reason.contains("REFUSED_STREAM") || reason.contains("refused stream");
            on.reset
                || (on.reset_before_request && !request_sent)
                || on.five_xx
                || on.gateway_error
                || (refused && on.refused_stream)
        }
        // Envoy retries a per-try timeout only for 5xx and gateway-error.
        ProxyError::Timeout => on.five_xx || on.gateway_error,
        _ => false,
    }
}

/// Envoy's backoff: full jitter over an exponentially growing window, capped at 10 × base.
fn backoff(base: Duration, retry: u32) -> Duration {
    let cap = base * 10;
    let window = base
        .saturating_mul(1u32.checked_shl(retry.min(16)).unwrap_or(u32::MAX))
        .min(cap);
    let ms = window.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

/// Everything one forwarding needs.
pub struct ForwardRequest<'a> {
    /// Pools.
    pub upstreams: &'a Upstreams,
    /// Target cluster.
    pub cluster: &'a Arc<Cluster>,
    /// Its circuit breaker.
    pub runtime: &'a Arc<ClusterRuntime>,
    /// Request head to send (cloned per attempt).
    pub head: http::request::Parts,
    /// Recorded request body.
    pub body: Recorder,
    /// Retry policy, if any.
    pub retry: Option<&'a RetryPolicy>,
    /// End of the route timeout.
    pub deadline: Option<Instant>,
    /// Picks an endpoint index, avoiding the given ones when possible.
    pub pick: &'a (dyn Fn(&[usize]) -> Option<usize> + Sync),
    /// The cluster's counters (in flight, retries, ejections).
    pub metrics: &'a ClusterMetrics,
    /// The client connection's (source, destination) addresses, for a PROXY header upstream.
    pub downstream: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Where an original-destination cluster (`resolution: NONE` without endpoints) sends an
    /// intercepted request: the caller's destination, instead of a balanced endpoint.
    pub original_dst: Option<&'a UpstreamEndpoint>,
}

/// `x-envoy-attempt-count` without formatting and allocating for the usual first tries.
fn attempt_value(attempt: u32) -> HeaderValue {
    const SMALL: [&str; 6] = ["0", "1", "2", "3", "4", "5"];
    match SMALL.get(attempt as usize) {
        Some(s) => HeaderValue::from_static(s),
        None => HeaderValue::from(attempt),
    }
}

fn attempt_request(head: &http::request::Parts, body: &Recorder, attempt: u32) -> Request<Body> {
    let mut req = Request::new(Body::Replay(body.cursor()));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.version_mut() = head.version;
    *req.headers_mut() = head.headers.clone();
    if attempt > 1 {
        // Replaces the first attempt's value in place: no growth of the cloned map.
        req.headers_mut()
            .insert(X_ENVOY_ATTEMPT_COUNT, attempt_value(attempt));
    }
    req
}

/// Sends the request, retrying as the policy allows.
pub async fn forward(mut f: ForwardRequest<'_>) -> Result<Forwarded, Failed> {
    // Set once on the original: a clone has no spare room, so inserting into each attempt's copy
    // would reallocate its entries.
    f.head
        .headers
        .insert(X_ENVOY_ATTEMPT_COUNT, attempt_value(1));
    let fail = |error| Failed {
        error,
        retries_exhausted: false,
    };
    // The route timeout covers the time queued for a slot too (Envoy's router timer runs from
    // the request, wherever it waits): a request still queued at its deadline gets `504 UT`.
    let _active = match f.runtime.try_admit() {
        Some(slot) => slot,
        None => {
            let queued = f.runtime.admit();
            let admitted = match f.deadline {
                Some(d) => tokio::time::timeout_at(d, queued)
                    .await
                    .map_err(|_| fail(ProxyError::Timeout))?,
                None => queued.await,
            };
            admitted.map_err(|_| fail(ProxyError::Overflow))?
        }
    };
    let h2 = f.runtime.upstream_h2_for(f.head.version);
    let direct = Upstreams::carries_head(&f.head, h2, f.runtime.pool()) && f.body.is_empty();
    let max_retries = f.retry.map_or(0, |r| r.num_retries);
    let mut tried: Vec<usize> = Vec::new();
    let mut attempt: u32 = 1;
    let mut _retry_slot = None;
    loop {
        // Leaving the tried localities (`retryRemoteLocalities`) needs to know the tried hosts.
        let avoid: &[usize] = if f
            .retry
            .is_some_and(|r| r.avoid_previous_hosts || r.retry_remote_localities)
        {
            &tried
        } else {
            &[]
        };
        let picked = match f.original_dst {
            Some(e) => Some((None, e)),
            None => (f.pick)(avoid).and_then(|i| f.cluster.endpoints.get(i).map(|e| (Some(i), e))),
        };
        let Some((index, endpoint)) = picked else {
            return Err(fail(ProxyError::NoHealthyUpstream(f.cluster.name.clone())));
        };
        let balancer = f.cluster.balancer();
        let _in_flight = index.and_then(|i| balancer.start_request(i));
        let _counted = f.metrics.start_request();
        let per_try = f.retry.and_then(|r| r.per_try_timeout);
        let try_deadline = match (per_try.map(|d| Instant::now() + d), f.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let outcome = {
            // Pinned in place, so the timeout below wraps a reference instead of a second copy
            // of the exchange's state.
            let mut send = std::pin::pin!(async {
                if direct {
                    // The head goes out from the original: no per-attempt copy.
                    let count = (attempt > 1).then(|| attempt_value(attempt));
                    f.upstreams
                        .send_head(
                            &f.head,
                            count.as_ref(),
                            endpoint,
                            f.runtime.pool(),
                            f.downstream,
                        )
                        .await
                } else {
                    // Boxed: hyper's exchange state is large, and inline it would enlarge the
                    // future of every request, bodiless ones included.
                    let req = attempt_request(&f.head, &f.body, attempt);
                    Box::pin(
                        f.upstreams
                            .send(req, endpoint, h2, f.runtime.pool(), f.downstream),
                    )
                    .await
                }
            });
            match try_deadline {
                Some(d) => match tokio::time::timeout_at(d, send.as_mut()).await {
                    Ok(r) => r,
                    Err(_) => Err(ProxyError::Timeout),
                },
                None => send.as_mut().await,
            }
        };
        // An exchange that failed because the client's body did is the client's failure: no
        // outlier or retry accounting, and the client is told, not the upstream blamed.
        if outcome.is_err() {
            if let Some((failure, reason)) = f.body.downstream_failure() {
                return Err(fail(ProxyError::Downstream { failure, reason }));
            }
        }
        // Results feed outlier detection (and least-request counters through the guard above);
        // without a detector there is nothing to record, nor a clock to read.
        let ejected = match (&outcome, balancer.outlier(), index) {
            (_, None, _) | (_, _, None) => None,
            (Ok(resp), Some(_), Some(index)) => {
                balancer.record_status(index, resp.status().as_u16(), std::time::Instant::now())
            }
            (Err(e), Some(_), Some(index)) => {
                let kind = match e {
                    ProxyError::ConnectFailure { .. } => Some(FailureKind::ConnectFailure),
                    ProxyError::UpstreamReset { .. } => Some(FailureKind::Reset),
                    ProxyError::Timeout => Some(FailureKind::Timeout),
                    _ => None,
                };
                kind.and_then(|k| balancer.record_failure(index, k, std::time::Instant::now()))
            }
        };
        if ejected.is_some() {
            f.metrics.outlier_ejections.inc();
        }
        let route_expired = f.deadline.is_some_and(|d| Instant::now() >= d);
        let can_retry = |retriable: bool| {
            retriable && attempt <= max_retries && !route_expired && f.body.replayable()
        };
        let retriable = match (&outcome, f.retry) {
            (Ok(resp), Some(p)) => retriable_response(p, &f.head.headers, resp),
            (Err(e), Some(p)) => retriable_error(&p.retry_on, e),
            _ => false,
        };
        if !can_retry(retriable) {
            let exhausted = retriable && attempt > max_retries;
            return match outcome {
                Ok(response) => Ok(Forwarded {
                    response,
                    retries_exhausted: exhausted,
                    endpoint: index,
                }),
                Err(error) => Err(Failed {
                    error,
                    retries_exhausted: exhausted,
                }),
            };
        }
        // The previous retry of this request has finished: its slot is free again, as Envoy
        // counts each retry against `maxRetries` only while it is in flight.
        _retry_slot = None;
        let Some(slot) = f.runtime.try_retry() else {
            // maxRetries (or the retry budget) reached: Envoy returns what it has.
            f.metrics.retry_overflow.inc();
            return match outcome {
                Ok(response) => Ok(Forwarded {
                    response,
                    retries_exhausted: false,
                    endpoint: index,
                }),
                Err(error) => Err(fail(error)),
            };
        };
        _retry_slot = Some(slot);
        // Recorded only now that there is a retry: a request answered at once allocates nothing.
        tried.extend(index);
        f.metrics.retries.inc();
        drop(outcome);
        let pause = backoff(
            f.retry
                .map_or(Duration::from_millis(25), |r| r.backoff_base),
            attempt - 1,
        );
        match f.deadline {
            Some(d) if Instant::now() + pause >= d => return Err(fail(ProxyError::Timeout)),
            _ => tokio::time::sleep(pause).await,
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_window() {
        let base = Duration::from_millis(25);
        for retry in 0..10 {
            let b = backoff(base, retry);
            assert!(b <= base * 10, "{b:?}");
        }
    }

    #[test]
    fn error_conditions() {
        let on = RetryOn {
            connect_failure: true,
            ..RetryOn::default()
        };
        let cf = ProxyError::ConnectFailure {
            endpoint: "x".into(),
            reason: "refused".into(),
        };
        assert!(retriable_error(&on, &cf));
        assert!(!retriable_error(&on, &ProxyError::Timeout));
        let five = RetryOn {
            five_xx: true,
            ..RetryOn::default()
        };
        assert!(retriable_error(&five, &ProxyError::Timeout));
        assert!(!retriable_error(&five, &ProxyError::Overflow));
    }

    #[test]
    fn reset_before_request_only_when_nothing_was_sent() {
        let on = RetryOn {
            reset_before_request: true,
            ..RetryOn::default()
        };
        let reset = |request_sent| ProxyError::UpstreamReset {
            endpoint: "x".into(),
            reason: "connection closed".into(),
            request_sent,
        };
        assert!(retriable_error(&on, &reset(false)));
        assert!(!retriable_error(&on, &reset(true)));
        let refused = ProxyError::ConnectFailure {
            endpoint: "x".into(),
            reason: "refused".into(),
        };
        assert!(retriable_error(&on, &refused));
        let any = RetryOn {
            reset: true,
            ..RetryOn::default()
        };
        assert!(retriable_error(&any, &reset(true)));
    }

    #[test]
    fn header_conditions() {
        let policy = |on: RetryOn| RetryPolicy {
            num_retries: 1,
            per_try_timeout: None,
            retry_on: on,
            retriable_status_codes: Vec::new(),
            avoid_previous_hosts: true,
            backoff_base: Duration::from_millis(25),
            retry_remote_localities: false,
        };
        let response = |header: Option<&'static str>| {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
            if let Some(h) = header {
                r.headers_mut().insert(h, HeaderValue::from_static("true"));
            }
            r
        };
        let mut request = http::HeaderMap::new();
        let limited = policy(RetryOn {
            envoy_ratelimited: true,
            ..RetryOn::default()
        });
        assert!(retriable_response(
            &limited,
            &request,
            &response(Some(RATELIMITED))
        ));
        assert!(!retriable_response(&limited, &request, &response(None)));
        let headers = policy(RetryOn {
            retriable_headers: true,
            ..RetryOn::default()
        });
        let retry_me = response(Some("x-retry-me"));
        assert!(!retriable_response(&headers, &request, &retry_me));
        request.insert(
            RETRIABLE_HEADER_NAMES,
            HeaderValue::from_static("x-other, X-Retry-Me"),
        );
        assert!(retriable_response(&headers, &request, &retry_me));
        assert!(!retriable_response(&headers, &request, &response(None)));
        // Without the condition the request header means nothing.
        assert!(!retriable_response(&limited, &request, &retry_me));
        // HTTP/3 is never used upstream, so its condition never holds.
        let h3 = policy(RetryOn {
            http3_post_connect_failure: true,
            ..RetryOn::default()
        });
        assert!(!retriable_response(&h3, &request, &response(None)));
        assert!(!retriable_error(&h3.retry_on, &ProxyError::Timeout));
    }
}
