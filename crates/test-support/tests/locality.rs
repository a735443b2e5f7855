//! Istio's locality load-balancing tasks end to end, with the proxy in region1/zone1 and one
//! helloworld backend per locality: "Locality failover" (traffic stays local, then moves to the
//! next locality as backends stop, to the failover region before any other) and "Locality
//! weighted distribution" (70/20/10 between three localities).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use sluice_test_support::*;

const HOST: &str = "helloworld.sample.svc.cluster.local";

/// The helloworld backends of the tasks: (locality, version label).
const LOCALITIES: [(&str, &str); 4] = [
    ("region1/zone1", "region1.zone1"),
    ("region1/zone2", "region1.zone2"),
    ("region2/zone3", "region2.zone3"),
    ("region3/zone4", "region3.zone4"),
];

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A ServiceEntry whose inline endpoints carry their `locality`.
fn service_yaml(port: u16, endpoints: &[(&str, &str, SocketAddr)]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: helloworld, namespace: sample}}\nspec:\n  hosts: [{HOST}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n"
    );
    for (locality, version, a) in endpoints {
        out.push_str(&format!(
            "  - {{address: {}, ports: {{http: {}}}, locality: {locality}, labels: {{app: helloworld, version: {version}}}}}\n",
            a.ip(),
            a.port()
        ));
    }
    out
}

fn destination_rule(load_balancer: &str, outlier: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: helloworld, namespace: sample}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    connectionPool:\n      http: {{maxRequestsPerConnection: 1}}\n    loadBalancer:\n{load_balancer}    outlierDetection:\n{outlier}"
    )
}

const FAILOVER_LB: &str = "      simple: ROUND_ROBIN\n      localityLbSetting:\n        enabled: true\n        failover:\n        - from: region1\n          to: region2\n";

struct Task {
    _dir: ConfigDir,
    proxy: ProxyHandle,
    port: u16,
    backends: Vec<Option<BackendHandle>>,
}

impl Task {
    /// Backends in `localities`, the proxy in region1/zone1 with `dr` applied.
    async fn start(localities: &[(&str, &str)], dr: &str) -> Task {
        Task::start_with(localities, dr, None).await
    }

    /// [`Task::start`], the proxy being an instance of `app=sleep` whose own service (this
    /// ServiceEntry, when given) tells how its instances are spread over the zones.
    async fn start_with(localities: &[(&str, &str)], dr: &str, own: Option<&str>) -> Task {
        let mut backends = Vec::new();
        let mut endpoints = Vec::new();
        for (locality, version) in localities {
            let b = backend("helloworld", version).await;
            endpoints.push((*locality, *version, b.addr()));
            backends.push(b);
        }
        let port = free_port();
        let dir = ConfigDir::new();
        dir.write("svc.yaml", &service_yaml(port, &endpoints));
        dir.write("dr.yaml", dr);
        if let Some(own) = own {
            dir.write("own.yaml", own);
        }
        let proxy = proxy(dir.path(), |o| {
            o.proxy.locality = "region1/zone1".into();
            o.proxy.namespace = "sample".into();
            if own.is_some() {
                o.proxy.labels = BTreeMap::from([("app".to_string(), "sleep".to_string())]);
            }
            o.watch = false;
        })
        .await;
        Task {
            _dir: dir,
            proxy,
            port,
            backends: backends.into_iter().map(Some).collect(),
        }
    }

    /// Answers of `n` requests by version (the backend's first word after its name); failed
    /// requests count under their status.
    async fn versions(&self, n: usize) -> BTreeMap<String, usize> {
        let c = TestClient::new();
        let mut out = BTreeMap::new();
        for _ in 0..n {
            let r = c.get(addr(self.port), HOST, "/hello", &[]).await;
            let key = if r.status == 200 {
                r.first_line()
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string()
            } else {
                r.status.to_string()
            };
            *out.entry(key).or_insert(0) += 1;
        }
        out
    }

    async fn stop(&mut self, i: usize) {
        if let Some(b) = self.backends[i].take() {
            b.shutdown().await;
        }
    }

    async fn finish(self) {
        self.proxy.shutdown().await;
    }
}

fn only(version: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(version.to_string(), n)])
}

#[tokio::test]
async fn locality_failover_task() {
    let dr = destination_rule(
        FAILOVER_LB,
        "      consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 1m\n",
    );
    let mut t = Task::start(&LOCALITIES, &dr).await;
    // Traffic stays in region1/zone1.
    assert_eq!(t.versions(20).await, only("region1.zone1", 20));
    // Stop it: the first failure ejects it (the request is retried elsewhere), and the traffic
    // fails over to region1/zone2, the same region.
    t.stop(0).await;
    assert_eq!(t.versions(20).await, only("region1.zone2", 20));
    t.finish().await;
}

#[tokio::test]
async fn locality_failover_goes_to_the_named_region_first() {
    let dr = destination_rule(
        FAILOVER_LB,
        "      consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 1m\n",
    );
    // region1 has a single backend: past it, region2 (the failover target) comes before region3.
    let localities = [LOCALITIES[0], LOCALITIES[3], LOCALITIES[2]];
    let mut t = Task::start(&localities, &dr).await;
    assert_eq!(t.versions(10).await, only("region1.zone1", 10));
    t.stop(0).await;
    assert_eq!(t.versions(20).await, only("region2.zone3", 20));
    t.finish().await;
}

#[tokio::test]
async fn locality_failover_walks_every_level_in_order() {
    // Envoy ejects beyond the first host only within `maxEjectionPercent` (10 % by default, of
    // the whole cluster), so walking all four localities needs it raised.
    let dr = destination_rule(
        FAILOVER_LB,
        "      consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 1m\n      maxEjectionPercent: 100\n",
    );
    let mut t = Task::start(&LOCALITIES, &dr).await;
    assert_eq!(t.versions(10).await, only("region1.zone1", 10));
    for (stopped, next) in [
        (0, "region1.zone2"),
        (1, "region2.zone3"),
        (2, "region3.zone4"),
    ] {
        t.stop(stopped).await;
        assert_eq!(
            t.versions(10).await,
            only(next, 10),
            "after stopping {stopped}"
        );
    }
    t.finish().await;
}

#[tokio::test]
async fn without_outlier_detection_every_locality_is_used() {
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: helloworld, namespace: sample}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer:\n{FAILOVER_LB}"
    );
    let t = Task::start(&LOCALITIES, &dr).await;
    let seen = t.versions(40).await;
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.values().all(|n| *n == 10), "{seen:?}");
    t.finish().await;
}

#[tokio::test]
async fn locality_weighted_distribution_task() {
    let lb = "      localityLbSetting:\n        enabled: true\n        distribute:\n        - from: region1/zone1/*\n          to:\n            \"region1/zone1/*\": 70\n            \"region1/zone2/*\": 20\n            \"region3/zone4/*\": 10\n";
    let dr = destination_rule(
        lb,
        "      consecutive5xxErrors: 100\n      interval: 1s\n      baseEjectionTime: 1m\n",
    );
    let t = Task::start(&LOCALITIES, &dr).await;
    // Every window of 100 requests splits exactly while all localities are available.
    let seen = t.versions(100).await;
    let expected = BTreeMap::from([
        ("region1.zone1".to_string(), 70),
        ("region1.zone2".to_string(), 20),
        ("region3.zone4".to_string(), 10),
    ]);
    assert_eq!(seen, expected);
    t.finish().await;
}

/// `zoneAwareLbSetting` on a proxy without Istio's self discovery (what sluice is): endpoints
/// are tiered by region whether or not outlier detection is set, the proxy's region first,
/// balanced over its zones; with outlier detection the traffic leaves the region only when it
/// has nothing left, to the `failover` region before any other.
#[tokio::test]
async fn zone_aware_lb_setting_tiers_endpoints_by_region() {
    const ZONE_AWARE: &str = "      simple: ROUND_ROBIN\n      zoneAwareLbSetting:\n        enabled: true\n        failover:\n        - from: region1\n          to: region3\n";
    let dr = format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: helloworld, namespace: sample}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer:\n{ZONE_AWARE}"
    );
    let t = Task::start(&LOCALITIES, &dr).await;
    let seen = t.versions(40).await;
    assert_eq!(
        seen,
        BTreeMap::from([
            ("region1.zone1".to_string(), 20),
            ("region1.zone2".to_string(), 20)
        ])
    );
    t.finish().await;

    let dr = destination_rule(
        ZONE_AWARE,
        "      consecutive5xxErrors: 1\n      interval: 1s\n      baseEjectionTime: 1m\n      maxEjectionPercent: 100\n",
    );
    let mut t = Task::start(&LOCALITIES, &dr).await;
    // Half of region1 gone: Envoy's priority spill (overprovisioning 1.4) sends 70 % to what is
    // left of it and the rest to the failover region, never to region2.
    t.stop(0).await;
    let seen = t.versions(20).await;
    assert!(
        seen.keys()
            .all(|v| v == "region1.zone2" || v == "region3.zone4")
            && seen.contains_key("region1.zone2"),
        "{seen:?}"
    );
    t.stop(1).await;
    assert_eq!(t.versions(10).await, only("region3.zone4", 10));
    t.finish().await;
}

/// The proxy's own service (`sleep`, this proxy being one of its instances): one instance in
/// each of `zones` of region1, plus one in region2 (other regions never count).
fn own_service(zones: &[&str]) -> String {
    let mut out = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: sleep, namespace: sample}}\nspec:\n  hosts: [sleep.sample.svc.cluster.local]\n  ports:\n  - {{number: {}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n  - {{address: 10.255.1.1, locality: region2/zone3, labels: {{app: sleep}}}}\n",
        free_port()
    );
    for (i, zone) in zones.iter().enumerate() {
        out.push_str(&format!(
            "  - {{address: 10.255.0.{i}, locality: region1/{zone}, labels: {{app: sleep}}}}\n"
        ));
    }
    out
}

fn zone_aware_rule(extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: helloworld, namespace: sample}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer:\n      simple: ROUND_ROBIN\n      zoneAwareLbSetting:\n        enabled: true\n{extra}"
    )
}

/// `zoneAwareLbSetting` with the proxy's own service known (Istio's self-discovery local
/// cluster): zones are weighed as Envoy's zone-aware routing does. The proxy's service runs half
/// in zone1 (the proxy's), half in zone2. With as many upstream hosts in zone1 as in zone2, every
/// request stays in zone1 (LocalityDirect); with 1 host in zone1 and 3 in zone2, zone1 can take
/// only 25 % of the traffic for 50 % of the callers, so half of the requests stay and the rest
/// go to zone2 (LocalityResidual), where plain balancing would give zone1 a quarter.
#[tokio::test]
async fn zone_aware_routing_weighs_zones_by_the_proxys_own_service() {
    let own = own_service(&["zone1", "zone2"]);
    let direct = [
        ("region1/zone1", "region1.zone1"),
        ("region1/zone1", "region1.zone1"),
        ("region1/zone1", "region1.zone1"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
        ("region2/zone3", "region2.zone3"),
    ];
    let t = Task::start_with(&direct, &zone_aware_rule(""), Some(&own)).await;
    assert_eq!(t.versions(40).await, only("region1.zone1", 40));
    t.finish().await;

    let residual = [
        ("region1/zone1", "region1.zone1"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
    ];
    let t = Task::start_with(
        &residual,
        &zone_aware_rule("        minClusterSize: 4\n"),
        Some(&own),
    )
    .await;
    let seen = t.versions(200).await;
    let local = seen.get("region1.zone1").copied().unwrap_or(0);
    // 100 expected; plain round robin would give exactly 50.
    assert!((70..=130).contains(&local), "{seen:?}");
    assert_eq!(
        local + seen.get("region1.zone2").copied().unwrap_or(0),
        200,
        "{seen:?}"
    );
    t.finish().await;
}

/// Fewer healthy upstream hosts than `minClusterSize` (Envoy's default 6): no zone preference,
/// the region's endpoints are balanced as one set (round robin: zone1 gets exactly its quarter).
#[tokio::test]
async fn zone_aware_routing_is_off_below_min_cluster_size() {
    let own = own_service(&["zone1", "zone2"]);
    let upstream = [
        ("region1/zone1", "region1.zone1"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
        ("region1/zone2", "region1.zone2"),
    ];
    let t = Task::start_with(&upstream, &zone_aware_rule(""), Some(&own)).await;
    assert_eq!(
        t.versions(40).await,
        BTreeMap::from([
            ("region1.zone1".to_string(), 10),
            ("region1.zone2".to_string(), 30)
        ])
    );
    t.finish().await;
}
