//! The balancer as the proxy uses it: picks honour weights, in-flight counts, ejections, panic
//! mode and retry exclusions, and endpoint state survives a rebuild from the same store.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sluice_lb::{
    hash_key, Balancer, FailureKind, LbAlgorithm, OutlierConfig, PickContext, Rng, StateStore,
};

const CLUSTER: &str = "outbound|9080||reviews.default.svc.cluster.local";

const ALL: [LbAlgorithm; 5] = [
    LbAlgorithm::RoundRobin,
    LbAlgorithm::LeastRequest,
    LbAlgorithm::Random,
    LbAlgorithm::RingHash {
        minimum_ring_size: 1024,
    },
    LbAlgorithm::Maglev { table_size: 4099 },
];

fn addresses(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("10.0.0.{i}:9080")).collect()
}

fn balancer(
    store: &StateStore,
    algorithm: LbAlgorithm,
    weights: &[u32],
    outlier: Option<OutlierConfig>,
) -> Balancer {
    let names = addresses(weights.len());
    let eps = names
        .iter()
        .map(String::as_str)
        .zip(weights.iter().copied());
    Balancer::from_store(algorithm, CLUSTER, eps, outlier, store)
}

/// Pick counts over `n` picks with distinct random values and hash keys.
fn counts(lb: &Balancer, n: u64, now: Instant, exclude: &[usize]) -> Vec<usize> {
    let mut rng = Rng::new(99);
    let mut c = vec![0; lb.len()];
    for k in 0..n {
        let ctx = PickContext::new(now, rng.next_u64())
            .with_hash(Some(hash_key(&k.to_le_bytes())))
            .excluding(exclude);
        c[lb.pick(&ctx).unwrap()] += 1;
    }
    c
}

#[test]
fn every_algorithm_follows_weights() {
    let store = StateStore::new();
    let now = Instant::now();
    for algorithm in ALL {
        let lb = balancer(&store, algorithm, &[1, 3, 0, 4], None);
        let c = counts(&lb, 8000, now, &[]);
        let tolerance = match algorithm {
            LbAlgorithm::RoundRobin => 0,
            _ => 250,
        };
        for (got, want) in c.iter().zip([1000usize, 3000, 0, 4000]) {
            assert!(got.abs_diff(want) <= tolerance, "{algorithm:?}: {c:?}");
        }
    }
}

#[test]
fn least_request_avoids_busy_endpoints() {
    let store = StateStore::new();
    let lb = balancer(&store, LbAlgorithm::LeastRequest, &[1, 1, 1, 1], None);
    let _busy: Vec<_> = (0..50).map(|_| lb.start_request(2).unwrap()).collect();
    assert_eq!(lb.endpoints()[2].state.in_flight(), 50);
    let c = counts(&lb, 4000, Instant::now(), &[]);
    assert_eq!(c[2], 0, "{c:?}");
    drop(_busy);
    assert_eq!(lb.endpoints()[2].state.in_flight(), 0);
    assert!(counts(&lb, 4000, Instant::now(), &[])[2] > 600);
}

#[test]
fn hash_picks_are_sticky_and_random_without_a_hash() {
    let store = StateStore::new();
    let now = Instant::now();
    for algorithm in &ALL[3..] {
        let lb = balancer(&store, *algorithm, &[1; 5], None);
        let h = hash_key(b"session-42");
        let first = lb.pick(&PickContext::new(now, 1).with_hash(Some(h)));
        assert!((2..50).all(|r| lb.pick(&PickContext::new(now, r).with_hash(Some(h))) == first));
        let mut seen = [false; 5];
        for r in 0..200 {
            seen[lb.pick(&PickContext::new(now, r)).unwrap()] = true;
        }
        assert_eq!(seen, [true; 5], "{algorithm:?} without a hash spreads");
    }
}

#[test]
fn consecutive_errors_eject_and_the_ejection_survives_a_rebuild() {
    let store = StateStore::new();
    let cfg = OutlierConfig {
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    };
    let t0 = Instant::now();
    for algorithm in ALL {
        let store = StateStore::new();
        let lb = balancer(&store, algorithm, &[1, 1, 1], Some(cfg));
        for _ in 0..4 {
            assert!(lb.record_status(1, 503, t0).is_none());
        }
        assert!(lb
            .record_failure(1, FailureKind::ConnectFailure, t0)
            .is_some());
        assert_eq!(lb.healthy_count(t0), 2);
        // A reloaded snapshot builds a new balancer over the same (cluster, address) states.
        let reloaded = balancer(&store, algorithm, &[1, 1, 1], Some(cfg));
        for lb in [&lb, &reloaded] {
            let c = counts(lb, 600, t0 + Duration::from_secs(29), &[]);
            assert_eq!(c[1], 0, "{algorithm:?}: {c:?}");
        }
        let c = counts(&reloaded, 600, t0 + Duration::from_secs(30), &[]);
        assert!(c[1] > 100, "{algorithm:?} back after 30 s: {c:?}");
        assert_eq!(reloaded.sweep(t0 + Duration::from_secs(30)), 0);
    }
    drop(store);
}

#[test]
fn ejecting_a_hash_endpoint_moves_only_its_keys() {
    let store = StateStore::new();
    let cfg = OutlierConfig {
        consecutive_5xx: 1,
        ..OutlierConfig::default()
    };
    let t0 = Instant::now();
    for algorithm in &ALL[3..] {
        let lb = balancer(&store, *algorithm, &[1; 10], Some(cfg));
        let pick = |k: u64, now| {
            lb.pick(&PickContext::new(now, k).with_hash(Some(hash_key(&k.to_le_bytes()))))
        };
        let before: Vec<_> = (0..2000).map(|k| pick(k, t0)).collect();
        assert!(lb.record_status(4, 500, t0).is_some());
        for (k, b) in before.iter().enumerate() {
            let after = pick(k as u64, t0);
            assert_ne!(after, Some(4));
            if *b != Some(4) {
                assert_eq!(after, *b, "{algorithm:?} key {k}");
            }
        }
        let back = t0 + Duration::from_secs(30);
        assert!((0..2000).all(|k| pick(k, back) == before[k as usize]));
    }
}

#[test]
fn all_ejected_is_no_healthy_upstream_unless_panic_mode() {
    let t0 = Instant::now();
    let cfg = OutlierConfig {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    };
    let store = StateStore::new();
    let lb = balancer(&store, LbAlgorithm::RoundRobin, &[1, 1], Some(cfg));
    lb.record_status(0, 500, t0);
    lb.record_status(1, 500, t0);
    assert_eq!(lb.pick(&PickContext::new(t0, 1)), None);

    let panicky = OutlierConfig {
        min_health_percent: 50,
        ..cfg
    };
    let lb = balancer(
        &StateStore::new(),
        LbAlgorithm::LeastRequest,
        &[1, 1, 1, 1],
        Some(panicky),
    );
    lb.record_status(0, 500, t0);
    lb.record_status(1, 500, t0);
    assert_eq!(counts(&lb, 100, t0, &[])[..2], [0, 0]); // 2 of 4 healthy: no panic yet
    lb.record_status(2, 500, t0);
    let c = counts(&lb, 400, t0, &[]);
    assert!(
        c.iter().all(|&n| n > 0),
        "panic mode uses every endpoint: {c:?}"
    );

    // The default 10 % still ejects one endpoint of one: 503 UH for 30 s.
    let single = balancer(
        &StateStore::new(),
        LbAlgorithm::LeastRequest,
        &[1],
        Some(OutlierConfig::default()),
    );
    for _ in 0..5 {
        single.record_status(0, 503, t0);
    }
    assert_eq!(single.pick(&PickContext::new(t0, 7)), None);
    assert_eq!(
        single.pick(&PickContext::new(t0 + Duration::from_secs(30), 7)),
        Some(0)
    );
}

#[test]
fn retries_avoid_tried_endpoints_but_fall_back_to_them() {
    let store = StateStore::new();
    let now = Instant::now();
    for algorithm in ALL {
        let lb = balancer(&store, algorithm, &[1, 1, 1], None);
        let c = counts(&lb, 300, now, &[0, 2]);
        assert_eq!(c, [0, 300, 0], "{algorithm:?}");
        let c = counts(&lb, 300, now, &[0, 1, 2]);
        assert_eq!(c.iter().sum::<usize>(), 300, "{algorithm:?}");
        assert!(c.iter().all(|&n| n > 0), "{algorithm:?}: {c:?}");
    }
    let empty = balancer(&store, LbAlgorithm::Random, &[], None);
    assert_eq!(empty.pick(&PickContext::new(now, 3)), None);
    assert!(empty.is_empty());
}

#[test]
fn outlier_reports_are_ignored_without_outlier_detection() {
    let store = StateStore::new();
    let lb = balancer(&store, LbAlgorithm::Random, &[1, 1], None);
    let now = Instant::now();
    for _ in 0..20 {
        assert!(lb.record_status(0, 503, now).is_none());
    }
    lb.record_success(0);
    assert_eq!(lb.healthy_count(now), 2);
    assert!(lb.outlier().is_none());
}

#[test]
fn balancers_and_guards_cross_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Balancer>();
    shareable::<sluice_lb::InFlight>();
    shareable::<StateStore>();
}

#[test]
fn maglev_endpoints_without_a_slot_are_still_reachable() {
    // Table of 3 slots for 5 endpoints: two own no slot, yet each stays pickable (the walk finds
    // nothing allowed and the pick falls back to weighted random over the candidates).
    let store = StateStore::new();
    let lb = balancer(&store, LbAlgorithm::Maglev { table_size: 3 }, &[1; 5], None);
    let now = Instant::now();
    let c = counts(&lb, 200, now, &[0, 1, 2, 3]);
    assert_eq!(c, [0, 0, 0, 0, 200]);
}
