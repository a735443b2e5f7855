//! Slow start through the balancer, with a fake clock: a new endpoint's share grows over the
//! window, an endpoint back from an ejection warms up again, and hash algorithms ignore it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_lb::{
    Balancer, EndpointState, FailureKind, LbAlgorithm, LbEndpoint, OutlierConfig, PickContext, Rng,
    SlowStart,
};

fn share_of(lb: &Balancer, index: usize, now: Instant) -> f64 {
    let mut rng = Rng::new(11);
    let n = 20_000;
    let hits = (0..n)
        .filter(|_| lb.pick(&PickContext::new(now, rng.next_u64())) == Some(index))
        .count();
    hits as f64 / f64::from(n)
}

fn balancer(
    algorithm: LbAlgorithm,
    states: &[Arc<EndpointState>],
    outlier: Option<OutlierConfig>,
) -> Balancer {
    let endpoints = states
        .iter()
        .map(|s| LbEndpoint::new(1, Arc::clone(s)))
        .collect();
    Balancer::build(
        algorithm,
        endpoints,
        outlier,
        Arc::new(AtomicU64::new(0)),
        None,
        Some(SlowStart::new(Duration::from_secs(100))),
    )
}

#[test]
fn a_new_endpoint_ramps_up_over_the_window() {
    let t0 = Instant::now();
    let states: Vec<_> = ["a:80", "b:80", "c:80"]
        .iter()
        .map(|a| Arc::new(EndpointState::new_at(*a, t0)))
        .collect();
    let new = Arc::new(EndpointState::new_at("d:80", t0 + Duration::from_secs(200)));
    let mut all = states.clone();
    all.push(new);
    for algorithm in [LbAlgorithm::RoundRobin, LbAlgorithm::LeastRequest] {
        let lb = balancer(algorithm, &all, None);
        let at = |s: u64| t0 + Duration::from_secs(200 + s);
        // Weights 1, 1, 1 and the newcomer's factor: 0.1 (floor), 0.5, then full.
        let early = share_of(&lb, 3, at(0));
        assert!((early - 0.1 / 3.1).abs() < 0.01, "{algorithm:?} {early}");
        let half = share_of(&lb, 3, at(50));
        assert!((half - 0.5 / 3.5).abs() < 0.015, "{algorithm:?} {half}");
        let done = share_of(&lb, 3, at(100));
        assert!((done - 0.25).abs() < 0.015, "{algorithm:?} {done}");
    }
}

#[test]
fn an_endpoint_back_from_ejection_warms_up_again_and_hashing_ignores_slow_start() {
    let t0 = Instant::now();
    let states: Vec<_> = ["a:80", "b:80"]
        .iter()
        .map(|a| Arc::new(EndpointState::new_at(*a, t0)))
        .collect();
    let outlier = OutlierConfig {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    };
    let lb = balancer(LbAlgorithm::RoundRobin, &states, Some(outlier));
    let t1 = t0 + Duration::from_secs(500);
    assert!(lb
        .record_failure(1, FailureKind::ConnectFailure, t1)
        .is_some());
    // Ejected for 30 s, then back at 10 %, growing to full weight 100 s later.
    assert_eq!(share_of(&lb, 1, t1 + Duration::from_secs(10)), 0.0);
    let back = t1 + Duration::from_secs(30);
    let early = share_of(&lb, 1, back + Duration::from_millis(500));
    assert!((early - 0.1 / 1.1).abs() < 0.01, "{early}");
    let later = share_of(&lb, 1, back + Duration::from_secs(100));
    assert!((later - 0.5).abs() < 0.015, "{later}");

    let hashed = balancer(
        LbAlgorithm::RingHash {
            minimum_ring_size: 1024,
        },
        &states,
        None,
    );
    assert!(hashed.slow_start().is_none());
}
