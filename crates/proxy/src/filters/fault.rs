//! Fault injection (client side, before the router): delays and aborts with independent draws.

use std::time::Duration;

use http::{HeaderValue, Response, StatusCode};
use rand::Rng;
use sluice_config::policy::{AbortKind, FaultPolicy};

use crate::body::Body;

/// What the fault filter decided for one request.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct FaultDecision {
    /// Delay to inject before forwarding.
    pub delay: Option<Duration>,
    /// Abort to answer with instead of forwarding.
    pub abort: Option<AbortKind>,
}

/// Whether an event with probability `percent` (0–100, 0.0001 granularity) happens.
fn draw(percent: f64) -> bool {
    if percent <= 0.0 {
        return false;
    }
    if percent >= 100.0 {
        return true;
    }
    // Envoy's resolution: per million.
    let per_million = (percent * 10_000.0).round() as u32;
    rand::rng().random_range(0..1_000_000) < per_million
}

/// Draws delay and abort independently, as Envoy does.
pub fn decide(f: &FaultPolicy) -> FaultDecision {
    FaultDecision {
        delay: f.delay.filter(|_| draw(f.delay_percent)),
        abort: f.abort.filter(|_| draw(f.abort_percent)),
    }
}

/// The local reply of an injected abort: HTTP status with `fault filter abort`, or a gRPC
/// trailers-only response (HTTP 200 with `grpc-status`).
pub fn abort_response(kind: AbortKind) -> Response<Body> {
    match kind {
        AbortKind::Http(code) => {
            let mut r = Response::new(Body::full("fault filter abort"));
            *r.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain"),
            );
            r
        }
        AbortKind::Grpc(status) => {
            let mut r = Response::new(Body::empty());
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            r.headers_mut()
                .insert("grpc-status", HeaderValue::from(status));
            r.headers_mut().insert(
                "grpc-message",
                HeaderValue::from_static("fault filter abort"),
            );
            r
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        let none = FaultPolicy {
            delay: Some(Duration::from_millis(5)),
            delay_percent: 0.0,
            abort: Some(AbortKind::Http(500)),
            abort_percent: 0.0,
        };
        assert_eq!(decide(&none), FaultDecision::default());
        let all = FaultPolicy {
            delay_percent: 100.0,
            abort_percent: 100.0,
            ..none.clone()
        };
        let d = decide(&all);
        assert_eq!(d.delay, Some(Duration::from_millis(5)));
        assert_eq!(d.abort, Some(AbortKind::Http(500)));
        let half = FaultPolicy {
            abort_percent: 50.0,
            ..none
        };
        let n = (0..10_000)
            .filter(|_| decide(&half).abort.is_some())
            .count();
        assert!((4_500..5_500).contains(&n), "{n}");
    }

    #[test]
    fn grpc_abort_is_trailers_only() {
        let r = abort_response(AbortKind::Grpc(14));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "14");
    }
}
