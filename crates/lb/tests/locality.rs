//! Balancing by priority level and locality: the local level keeps the traffic while enough of
//! it is healthy, spills to the next one by Envoy's 1.4 overprovisioning factor as endpoints are
//! ejected, and `distribute` weights split traffic between localities exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use sluice_lb::outlier::EjectionReason;
use sluice_lb::{
    Balancer, Distribute, EndpointState, LbAlgorithm, LbEndpoint, Locality, LocalityLayout,
    LocalityPolicy, Origin, OutlierConfig, PickContext, Placement, Rng, ZoneRouting,
};

const ALGORITHMS: [LbAlgorithm; 4] = [
    LbAlgorithm::RoundRobin,
    LbAlgorithm::LeastRequest,
    LbAlgorithm::Random,
    LbAlgorithm::RingHash {
        minimum_ring_size: 1024,
    },
];

fn outlier() -> OutlierConfig {
    OutlierConfig {
        consecutive_5xx: 1,
        max_ejection_percent: 100,
        ..OutlierConfig::default()
    }
}

/// A balancer over endpoints in `localities`, laid out by `policy` for a proxy in `proxy`.
fn balancer(
    algorithm: LbAlgorithm,
    localities: &[&str],
    proxy: &str,
    policy: &LocalityPolicy,
    outlier: Option<OutlierConfig>,
) -> Balancer {
    let locs: Vec<Locality> = localities.iter().map(|l| Locality::parse(l)).collect();
    let none = BTreeMap::new();
    let places: Vec<Placement<'_>> = locs
        .iter()
        .map(|l| Placement {
            locality: l,
            labels: &[],
            weight: 1,
        })
        .collect();
    let me = Locality::parse(proxy);
    let origin = Origin {
        locality: &me,
        labels: &none,
    };
    // The locality schedule has a position of its own, apart from round robin's.
    let layout = policy
        .levels(origin, &places, outlier.is_some())
        .map(|levels| LocalityLayout::new(levels, Arc::new(AtomicU64::new(0))));
    let counter = Arc::new(AtomicU64::new(0));
    let endpoints = (0..localities.len())
        .map(|i| LbEndpoint::new(1, Arc::new(EndpointState::new(format!("10.0.0.{i}:80")))))
        .collect();
    Balancer::with_layout(algorithm, endpoints, outlier, counter, layout)
}

fn counts(lb: &Balancer, n: u64, now: Instant) -> Vec<usize> {
    let mut rng = Rng::new(7);
    let mut c = vec![0; lb.len()];
    for _ in 0..n {
        let ctx = PickContext::new(now, rng.next_u64());
        if let Some(i) = lb.pick(&ctx) {
            c[i] += 1;
        }
    }
    c
}

fn eject(lb: &Balancer, i: usize, now: Instant) {
    lb.endpoint(i)
        .unwrap()
        .state
        .outlier()
        .eject(now, &outlier(), EjectionReason::Consecutive5xx);
}

const HELLOWORLD: [&str; 4] = [
    "region1/zone1",
    "region1/zone2",
    "region2/zone3",
    "region3/zone4",
];

fn failover_to_region2() -> LocalityPolicy {
    LocalityPolicy {
        failover: vec![("region1".into(), "region2".into())],
        ..Default::default()
    }
}

#[test]
fn traffic_stays_local_then_fails_over_in_priority_order() {
    let now = Instant::now();
    for algorithm in ALGORITHMS {
        let lb = balancer(
            algorithm,
            &HELLOWORLD,
            "region1/zone1",
            &failover_to_region2(),
            Some(outlier()),
        );
        assert_eq!(counts(&lb, 200, now), vec![200, 0, 0, 0], "{algorithm:?}");
        eject(&lb, 0, now);
        assert_eq!(counts(&lb, 200, now), vec![0, 200, 0, 0], "{algorithm:?}");
        eject(&lb, 1, now);
        // region2 is the failover target: it goes before region3.
        assert_eq!(counts(&lb, 200, now), vec![0, 0, 200, 0], "{algorithm:?}");
        eject(&lb, 2, now);
        assert_eq!(counts(&lb, 200, now), vec![0, 0, 0, 200], "{algorithm:?}");
        eject(&lb, 3, now);
        assert_eq!(counts(&lb, 200, now), vec![0, 0, 0, 0], "{algorithm:?}");
    }
}

#[test]
fn without_outlier_detection_all_localities_share_the_traffic() {
    let lb = balancer(
        LbAlgorithm::RoundRobin,
        &HELLOWORLD,
        "region1/zone1",
        &failover_to_region2(),
        None,
    );
    assert!(lb.layout().is_none());
    assert_eq!(counts(&lb, 400, Instant::now()), vec![100; 4]);
}

#[test]
fn a_half_healthy_level_keeps_seventy_percent() {
    // Level 0: two endpoints in region1/zone1; level 1: two in region1/zone2.
    let locs = ["r1/z1", "r1/z1", "r1/z2", "r1/z2"];
    let lb = balancer(
        LbAlgorithm::Random,
        &locs,
        "r1/z1",
        &LocalityPolicy::default(),
        Some(outlier()),
    );
    let now = Instant::now();
    eject(&lb, 0, now);
    let c = counts(&lb, 10_000, now);
    let local = c[1] as f64 / 10_000.0;
    assert!((local - 0.70).abs() < 0.03, "{c:?}");
    assert_eq!(c[0], 0);
}

#[test]
fn retries_avoid_tried_hosts_within_the_level() {
    let locs = ["r1/z1", "r1/z1", "r2/z1"];
    let lb = balancer(
        LbAlgorithm::RoundRobin,
        &locs,
        "r1/z1",
        &LocalityPolicy::default(),
        Some(outlier()),
    );
    let now = Instant::now();
    for k in 0..20 {
        let ctx = PickContext::new(now, k).excluding(&[0]);
        assert_eq!(lb.pick(&ctx), Some(1));
    }
    // Both local hosts tried: the level has nothing else, so they are used again.
    let ctx = PickContext::new(now, 1).excluding(&[0, 1]);
    assert!(matches!(lb.pick(&ctx), Some(0 | 1)));
}

fn weighted_distribution() -> LocalityPolicy {
    LocalityPolicy {
        distribute: vec![Distribute {
            from: "region1/zone1/*".into(),
            to: vec![
                ("region1/zone1/*".into(), 70),
                ("region1/zone2/*".into(), 20),
                ("region3/zone4/*".into(), 10),
            ],
        }],
        ..Default::default()
    }
}

#[test]
fn distribute_splits_exactly_while_every_locality_is_available() {
    let now = Instant::now();
    for algorithm in ALGORITHMS {
        let lb = balancer(
            algorithm,
            &HELLOWORLD,
            "region1/zone1",
            &weighted_distribution(),
            Some(outlier()),
        );
        assert_eq!(
            counts(&lb, 1000, now),
            vec![700, 200, 0, 100],
            "{algorithm:?}"
        );
    }
    // Distribution does not need outlier detection.
    let lb = balancer(
        LbAlgorithm::LeastRequest,
        &HELLOWORLD,
        "region1/zone1",
        &weighted_distribution(),
        None,
    );
    assert_eq!(counts(&lb, 100, now), vec![70, 20, 0, 10]);
}

#[test]
fn distribute_moves_an_unavailable_localitys_share() {
    let lb = balancer(
        LbAlgorithm::RoundRobin,
        &HELLOWORLD,
        "region1/zone1",
        &weighted_distribution(),
        Some(outlier()),
    );
    let now = Instant::now();
    eject(&lb, 0, now);
    let c = counts(&lb, 3000, now);
    assert_eq!(c[0], 0);
    assert_eq!(c[2], 0);
    // 20 : 10 between the two that are left.
    let zone2 = c[1] as f64 / 3000.0;
    assert!((zone2 - 2.0 / 3.0).abs() < 0.04, "{c:?}");
}

#[test]
fn a_proxy_the_rule_does_not_match_balances_over_everything() {
    let lb = balancer(
        LbAlgorithm::RoundRobin,
        &HELLOWORLD,
        "region2/zone3",
        &weighted_distribution(),
        Some(outlier()),
    );
    assert!(lb.layout().is_none());
    assert_eq!(counts(&lb, 400, Instant::now()), vec![100; 4]);
}

/// `retryRemoteLocalities`: a retry leaves the levels already tried (Envoy's
/// `previous_priorities`); without it, a retry stays in the local level.
#[test]
fn remote_retries_leave_the_tried_levels() {
    let now = Instant::now();
    let localities = ["region1/zone1", "region1/zone1", "region2/zone3"];
    for algorithm in [LbAlgorithm::RoundRobin, LbAlgorithm::LeastRequest] {
        let lb = balancer(
            algorithm,
            &localities,
            "region1/zone1",
            &LocalityPolicy::default(),
            Some(outlier()),
        );
        let mut rng = Rng::new(3);
        for _ in 0..50 {
            let tried = [0usize];
            let local = PickContext::new(now, rng.next_u64()).excluding(&tried);
            assert_eq!(lb.pick(&local), Some(1), "{algorithm:?}");
            let remote = local.other_levels(true);
            assert_eq!(lb.pick(&remote), Some(2), "{algorithm:?}");
            // Every level tried: the levels count again rather than leaving nothing.
            let all = [0usize, 1, 2];
            let ctx = PickContext::new(now, rng.next_u64())
                .excluding(&all)
                .other_levels(true);
            assert!(lb.pick(&ctx).is_some());
        }
    }
}

/// Zone-aware routing inside the first tier, through the balancer: the proxy's service is half
/// in zone1, half in zone2; upstream has 3 endpoints in each, so every pick stays in zone1
/// (LocalityDirect) until ejections leave zone1 a smaller share than its callers' (then part
/// of the picks go to zone2), and region2 is only a failover tier.
#[test]
fn zone_aware_routing_follows_health_changes() {
    let localities = [
        "region1/zone1",
        "region1/zone1",
        "region1/zone1",
        "region1/zone2",
        "region1/zone2",
        "region1/zone2",
        "region2/zone3",
    ];
    let locs: Vec<Locality> = localities.iter().map(|l| Locality::parse(l)).collect();
    let none = BTreeMap::new();
    let places: Vec<Placement<'_>> = locs
        .iter()
        .map(|l| Placement {
            locality: l,
            labels: &[],
            weight: 1,
        })
        .collect();
    let me = Locality::parse("region1/zone1");
    let origin = Origin {
        locality: &me,
        labels: &none,
    };
    let policy = LocalityPolicy {
        zone_aware: true,
        min_cluster_size: Some(3),
        ..Default::default()
    };
    let levels = policy.levels(origin, &places, true).unwrap();
    let first: Vec<(usize, &Locality)> = levels[0]
        .iter()
        .flat_map(|(m, _)| m.iter().map(|&i| (i, &locs[i])))
        .collect();
    let local = [
        (Locality::parse("region1/zone1"), 2),
        (Locality::parse("region1/zone2"), 2),
    ];
    let zones = ZoneRouting::new(&me, &first, &local, 3);
    assert!(zones.is_some());
    let layout = LocalityLayout::new(levels, Arc::new(AtomicU64::new(0))).with_zones(zones);
    let endpoints = (0..localities.len())
        .map(|i| LbEndpoint::new(1, Arc::new(EndpointState::new(format!("10.0.0.{i}:80")))))
        .collect();
    let lb = Balancer::with_layout(
        LbAlgorithm::RoundRobin,
        endpoints,
        Some(outlier()),
        Arc::new(AtomicU64::new(0)),
        Some(layout),
    );
    let now = Instant::now();
    let c = counts(&lb, 300, now);
    assert_eq!(c[..3].iter().sum::<usize>(), 300, "{c:?}");
    // Two of zone1's three ejected: 1 of 4 healthy upstream (25 %) for 50 % of the callers, so
    // half of region1's picks stay in zone1; region1 is 4/6 healthy (× 1.4 = 93 %), so 7 % of
    // the picks spill to region2.
    eject(&lb, 0, now);
    eject(&lb, 1, now);
    let c = counts(&lb, 4000, now);
    let (zone1, zone2, region2) = (c[2], c[3] + c[4] + c[5], c[6]);
    assert!((1650..=2050).contains(&zone1), "{c:?}");
    assert!((1650..=2050).contains(&zone2), "{c:?}");
    assert!((180..=400).contains(&region2), "{c:?}");
}
