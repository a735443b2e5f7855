//! An incremental build yields exactly the snapshot a full build of the same objects would:
//! random edit sequences over a generated config (weights, subsets, endpoints, routes to other
//! services, claimed hosts, mirrors, services added and removed, the Gateway), each step built
//! both ways and compared through the serialized snapshot (listeners, virtual hosts, routes,
//! clusters, registry, diagnostics).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_lb::StateStore;
use sluice_model::{parse_text, Resource};

use crate::load::{build_snapshot_unless, BuildInputs};
use crate::proxy::ProxyConfig;
use crate::snapshot::Snapshot;

/// A small deterministic generator (xorshift64*): the sequences are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One generated service: a ServiceEntry, a DestinationRule and a VirtualService.
#[derive(Clone)]
struct Service {
    present: bool,
    weight: i32,
    subsets: [bool; 3],
    endpoints: usize,
    /// The service its VirtualService routes to (itself unless edited).
    target: usize,
    /// Whether the VirtualService also claims `shared.example.com` (several then compete).
    shared_host: bool,
    mirror: Option<usize>,
    /// The DestinationRule's load balancer (`None`: none set).
    lb: Option<&'static str>,
    /// Bumped to make an edit that changes nothing but the object (a label).
    generation: u32,
}

const N: usize = 12;

fn host(i: usize) -> String {
    format!("svc-{i}.ns-{}.svc.cluster.local", i % 3)
}

fn text(i: usize, s: &Service) -> String {
    let ns = format!("ns-{}", i % 3);
    let h = host(i);
    let (a, b) = (i / 200, i % 200);
    let endpoints: String = (0..s.endpoints)
        .map(|e| {
            format!(
                "  - {{address: 10.{a}.{b}.{e}, labels: {{version: v{}}}}}\n",
                e % 3 + 1
            )
        })
        .collect();
    let subsets: String = (0..3)
        .filter(|k| s.subsets[*k])
        .map(|k| format!("  - {{name: v{0}, labels: {{version: v{0}}}}}\n", k + 1))
        .collect();
    let subsets = if subsets.is_empty() {
        "  subsets: []\n".to_string()
    } else {
        format!("  subsets:\n{subsets}")
    };
    let target = host(s.target);
    let extra = if s.shared_host {
        ", shared.example.com"
    } else {
        ""
    };
    let mirror = s
        .mirror
        .map(|m| format!("    mirror: {{host: {}}}\n", host(m)))
        .unwrap_or_default();
    format!(
        "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{h}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
{endpoints}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: {h}
{lb}{subsets}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}, labels: {{generation: \"{gen}\"}}}}
spec:
  hosts: [{h}, svc-{i}.example.com{extra}]
  gateways: [istio-system/public, mesh]
  http:
  - match:
    - headers: {{x-canary: {{exact: \"true\"}}}}
    route:
    - destination: {{host: {target}, subset: v2}}
  - route:
    - destination: {{host: {target}, subset: v1}}
      weight: {w1}
    - destination: {{host: {target}, subset: v2}}
      weight: {w2}
{mirror}    retries: {{attempts: 3, perTryTimeout: 2s}}
    timeout: 10s
",
        gen = s.generation,
        lb =
            s.lb.map(|l| format!("  trafficPolicy: {{loadBalancer: {{simple: {l}}}}}\n"))
                .unwrap_or_default(),
        w1 = s.weight,
        w2 = 100 - s.weight,
    )
}

fn gateway(hosts: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: public, namespace: istio-system}}\n\
         spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: 8080, name: http, protocol: HTTP}}\n    hosts: [{hosts}]\n"
    )
}

/// A ServiceEntry selecting WorkloadEntries, and the WorkloadEntries (address, version).
fn workloads_text(entries: &[(u8, u8)]) -> String {
    let mut text = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: wl, namespace: ns-0}\n\
         spec:\n  hosts: [wl.ns-0.svc.cluster.local]\n  ports: [{number: 9080, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: wl}}\n",
    );
    // Subsets that select nothing are findings of the analysis: they follow the workloads.
    text.push_str(
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: wl, namespace: ns-0}\n\
         spec:\n  host: wl.ns-0.svc.cluster.local\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}, {name: v3, labels: {version: v3}}]\n",
    );
    for (i, (address, version)) in entries.iter().enumerate() {
        text.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: wl-{i}, namespace: ns-0}}\n\
             spec:\n  address: 10.9.0.{address}\n  labels: {{app: wl, version: v{version}}}\n"
        ));
    }
    text
}

fn parse(text: &str) -> Vec<Arc<Resource>> {
    let parsed = parse_text(text, Some(Arc::from("generated.yaml")));
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    parsed.resources.into_iter().map(Arc::new).collect()
}

/// The config as a file tree read with a cache would give it: an object not edited is the
/// same `Arc` as in the previous step.
struct Config {
    gateway: Vec<Arc<Resource>>,
    workloads: Vec<(u8, u8)>,
    /// The ServiceEntry and DestinationRule of the workloads, then one object per WorkloadEntry.
    workload_objects: Vec<Arc<Resource>>,
    services: Vec<Service>,
    objects: Vec<Vec<Arc<Resource>>>,
}

impl Config {
    fn new() -> Config {
        let services: Vec<Service> = (0..N)
            .map(|i| Service {
                present: i < N - 2,
                weight: 90,
                subsets: [true, true, false],
                endpoints: 2,
                target: i,
                shared_host: false,
                mirror: None,
                lb: None,
                generation: 0,
            })
            .collect();
        let objects = services
            .iter()
            .enumerate()
            .map(|(i, s)| parse(&text(i, s)))
            .collect();
        let workloads = vec![(1, 1), (2, 2)];
        Config {
            workload_objects: parse(&workloads_text(&workloads)),
            workloads,
            gateway: parse(&gateway("\"*\"")),
            services,
            objects,
        }
    }

    fn all(&self) -> Vec<Arc<Resource>> {
        let mut out = self.gateway.clone();
        out.extend(self.workload_objects.iter().cloned());
        for (s, objects) in self.services.iter().zip(&self.objects) {
            if s.present {
                out.extend(objects.iter().cloned());
            }
        }
        out
    }

    /// One random edit; returns what it was, for failure messages.
    fn edit(&mut self, rng: &mut Rng) -> String {
        let i = rng.below(N);
        let s = &mut self.services[i];
        let what = match rng.below(12) {
            0 => {
                s.weight = [0, 10, 50, 80, 90, 100][rng.below(6)];
                format!("svc-{i}: weight {}", s.weight)
            }
            1 => {
                let k = rng.below(3);
                s.subsets[k] = !s.subsets[k];
                format!("svc-{i}: subset v{} toggled", k + 1)
            }
            2 => {
                s.endpoints = rng.below(4);
                format!("svc-{i}: {} endpoints", s.endpoints)
            }
            3 => {
                s.target = rng.below(N);
                format!("svc-{i}: routes to svc-{}", s.target)
            }
            4 => {
                s.shared_host = !s.shared_host;
                format!("svc-{i}: shared host {}", s.shared_host)
            }
            5 => {
                s.mirror = match s.mirror {
                    Some(_) => None,
                    None => Some(rng.below(N)),
                };
                format!("svc-{i}: mirror {:?}", s.mirror)
            }
            6 => {
                s.present = !s.present;
                format!("svc-{i}: present {}", s.present)
            }
            11 => {
                // One WorkloadEntry moved, relabelled, added or removed: the ServiceEntry
                // selecting them is the same object, its endpoints are not.
                let w = &mut self.workloads;
                match rng.below(3) {
                    0 if !w.is_empty() => {
                        let k = rng.below(w.len());
                        w[k].0 = w[k].0.wrapping_add(1);
                    }
                    1 if !w.is_empty() => {
                        let k = rng.below(w.len());
                        w[k].1 = w[k].1 % 3 + 1;
                    }
                    2 if w.len() < 4 => w.push((rng.below(200) as u8, 1)),
                    _ => {
                        w.pop();
                    }
                }
                let parsed = parse(&workloads_text(w));
                // The ServiceEntry and DestinationRule keep their objects; the WorkloadEntries
                // are parsed again.
                let kept: Vec<Arc<Resource>> =
                    self.workload_objects.iter().take(2).cloned().collect();
                self.workload_objects =
                    kept.into_iter().chain(parsed.into_iter().skip(2)).collect();
                return format!("workloads {:?}", self.workloads);
            }
            10 => {
                s.lb = [None, Some("ROUND_ROBIN"), Some("RANDOM")][rng.below(3)];
                format!("svc-{i}: load balancer {:?}", s.lb)
            }
            7 => {
                s.generation += 1;
                format!("svc-{i}: relabelled")
            }
            8 => {
                let hosts = ["\"*\"", "\"*.example.com\"", "\"*\", \"other.test\""][rng.below(3)];
                self.gateway = parse(&gateway(hosts));
                return format!("gateway hosts [{hosts}]");
            }
            _ => {
                // Objects parsed again without a change: equal, but not the same `Arc`s.
                let objects = parse(&text(i, s));
                self.objects[i] = objects;
                return format!("svc-{i}: parsed again unchanged");
            }
        };
        let s = self.services[i].clone();
        self.objects[i] = parse(&text(i, &s));
        what
    }
}

fn proxy() -> ProxyConfig {
    ProxyConfig {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..ProxyConfig::default()
    }
}

fn build(objects: Vec<Arc<Resource>>, previous: Option<&Snapshot>, state: &StateStore) -> Snapshot {
    build_for(&proxy(), objects, previous, state)
}

fn build_for(
    proxy: &ProxyConfig,
    objects: Vec<Arc<Resource>>,
    previous: Option<&Snapshot>,
    state: &StateStore,
) -> Snapshot {
    let inputs = BuildInputs {
        previous,
        ..BuildInputs::default()
    };
    match build_snapshot_unless(objects, Vec::new(), proxy, state, 1, &inputs, &|| false) {
        Ok(s) => s,
        Err(e) => panic!("build failed: {e:?}"),
    }
}

fn serialized(s: &Snapshot) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// The first place two values differ, with both sides there.
fn difference(a: &serde_json::Value, b: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => {
                        if let Some(d) = difference(v, w, &format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("{at}.{k}: only incremental has it: {v}")),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}.{k}: only full has it: {}", y[k]))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                if let Some(d) = difference(v, w, &format!("{at}[{i}]")) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{at}: {} vs {} items", x.len(), y.len()))
        }
        _ => (a != b).then(|| format!("{at}: {a} vs {b}")),
    }
}

/// How many virtual hosts of `now` are the very ones of `before` (kept, not compiled again).
fn kept_vhosts(before: &Snapshot, now: &Snapshot) -> usize {
    let old: Vec<_> = before
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .collect();
    now.listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .filter(|vh| old.iter().any(|o| Arc::ptr_eq(o, vh)))
        .count()
}

#[test]
fn incremental_builds_equal_full_builds_over_random_edits() {
    let mut kept = 0;
    for seed in 1..=10u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut config = Config::new();
        let state = StateStore::new();
        let mut active = build(config.all(), None, &state);
        let mut history = Vec::new();
        for _ in 0..50 {
            history.push(config.edit(&mut rng));
            let objects = config.all();
            let incremental = build(objects.clone(), Some(&active), &state);
            let full = build(objects, None, &state);
            let diff = difference(&serialized(&incremental), &serialized(&full), "");
            assert!(
                diff.is_none(),
                "seed {seed}, after: {history:#?}\nincremental and full differ at {diff:?}"
            );
            kept += kept_vhosts(&active, &incremental);
            active = incremental;
        }
    }
    // The edits touch one service at a time: most virtual hosts are kept.
    assert!(kept > 1000, "only {kept} virtual hosts were kept");
}

#[test]
fn an_unchanged_reload_keeps_every_unit_and_every_finding() {
    let config = Config::new();
    let state = StateStore::new();
    let first = build(config.all(), None, &state);
    let second = build(config.all(), Some(&first), &state);
    assert_eq!(serialized(&first), serialized(&second));
    let vhosts: usize = second
        .listeners
        .iter()
        .map(|l| l.virtual_hosts.vhosts.len())
        .sum();
    assert_eq!(kept_vhosts(&first, &second), vhosts);
    // The host tables too: the same virtual hosts in the same order.
    assert!(first
        .listeners
        .iter()
        .zip(&second.listeners)
        .all(|(a, b)| Arc::ptr_eq(&a.virtual_hosts, &b.virtual_hosts)));
    assert!(first
        .clusters
        .iter()
        .all(|(name, c)| second.clusters.get(name).is_some_and(|k| Arc::ptr_eq(c, k))));
}

/// The proxy's own service (a ServiceEntry selecting WorkloadEntries in these zones), a
/// zone-aware destination and a plain one.
fn zone_objects(own_zones: &[&str]) -> (Vec<Arc<Resource>>, Vec<Arc<Resource>>) {
    let mut own = String::from(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: sleep, namespace: sample}\n\
         spec:\n  hosts: [sleep.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  workloadSelector: {labels: {app: sleep}}\n",
    );
    for (i, zone) in own_zones.iter().enumerate() {
        own.push_str(&format!(
            "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {{name: sleep-{i}, namespace: sample}}\n\
             spec:\n  address: 10.8.0.{i}\n  locality: region1/{zone}\n  labels: {{app: sleep}}\n"
        ));
    }
    let others = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw, namespace: sample}\n\
         spec:\n  hosts: [hw.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n\
         \x20 - {address: 10.7.0.1, locality: region1/zone1}\n  - {address: 10.7.0.2, locality: region1/zone2}\n  - {address: 10.7.0.3, locality: region1/zone2}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hw, namespace: sample}\n\
         spec:\n  host: hw.sample.svc.cluster.local\n  trafficPolicy: {loadBalancer: {zoneAwareLbSetting: {enabled: true, minClusterSize: 1}}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: plain, namespace: sample}\n\
         spec:\n  hosts: [plain.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.6.0.1, locality: region1/zone1}\n";
    (parse(&own), parse(others))
}

#[test]
fn zone_aware_clusters_follow_the_proxys_own_service() {
    let proxy = ProxyConfig {
        labels: BTreeMap::from([("app".to_string(), "sleep".to_string())]),
        namespace: "sample".into(),
        locality: "region1/zone1".into(),
        ..ProxyConfig::default()
    };
    let state = StateStore::new();
    let (own, others) = zone_objects(&["zone1", "zone2"]);
    let all = |own: &[Arc<Resource>]| -> Vec<Arc<Resource>> {
        others.iter().chain(own).cloned().collect()
    };
    let mut active = build_for(&proxy, all(&own), None, &state);
    let hw = "outbound|80||hw.sample.svc.cluster.local";
    let plain = "outbound|80||plain.sample.svc.cluster.local";
    let zones = |s: &Snapshot| -> BTreeMap<String, u64> {
        s.clusters
            .get(hw)
            .map(|c| c.local_zones.clone())
            .unwrap_or_default()
    };
    assert_eq!(
        zones(&active),
        BTreeMap::from([("region1/zone1".into(), 1), ("region1/zone2".into(), 1)])
    );
    let steps: [&[&str]; 5] = [
        &["zone1", "zone2", "zone2"],
        &["zone1", "zone1"],
        &[],
        &["zone2", "zone1"],
        &["zone1", "zone2", "zone3"],
    ];
    for step in steps {
        let (own, _) = zone_objects(step);
        let incremental = build_for(&proxy, all(&own), Some(&active), &state);
        let full = build_for(&proxy, all(&own), None, &state);
        let diff = difference(&serialized(&incremental), &serialized(&full), "");
        assert!(
            diff.is_none(),
            "own service in {step:?}: differ at {diff:?}"
        );
        // Zone routing needs two local zones, the proxy's among them.
        let mut expected: BTreeMap<String, u64> = BTreeMap::new();
        for z in step {
            *expected.entry(format!("region1/{z}")).or_default() += 1;
        }
        if expected.len() < 2 {
            expected.clear();
        }
        assert_eq!(zones(&incremental), expected, "own service in {step:?}");
        // A cluster that does not balance by zone is kept.
        assert!(Arc::ptr_eq(
            &active.clusters[plain],
            &incremental.clusters[plain]
        ));
        active = incremental;
    }
}

/// The mesh TLS listeners (TLS ports without interception) follow edits of their services and
/// `tls` rules: each step built incrementally equals a full build, and the listener's rules
/// are the ones of the step.
#[test]
fn tls_mesh_listeners_follow_their_services_and_tls_rules() {
    let service = |name: &str, extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: ns-0}}\n\
             spec:\n  hosts: [{name}.example.com]\n  resolution: STATIC\n  ports: [{{number: 8443, name: tls, protocol: TLS}}]\n\
             {extra}  endpoints: [{{address: 10.9.0.1}}]\n"
        )
    };
    let rule = |subset_host: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: a, namespace: ns-0}}\n\
             spec:\n  hosts: [a.example.com]\n  tls:\n  - match: [{{port: 8443, sniHosts: [a.example.com]}}]\n    route: [{{destination: {{host: {subset_host}.example.com}}}}]\n"
        )
    };
    let steps = [
        vec![service("api", "")],
        vec![service("api", ""), rule("api")],
        vec![service("api", ""), service("web", ""), rule("web")],
        vec![
            service("api", "  addresses: [127.0.0.44]\n"),
            service("web", ""),
            rule("web"),
        ],
        vec![service("api", "  addresses: [127.0.0.44]\n"), rule("api")],
        vec![service("api", "")],
    ];
    let state = StateStore::new();
    let mut active: Option<Snapshot> = None;
    for (i, step) in steps.iter().enumerate() {
        let objects: Vec<Arc<Resource>> = step.iter().flat_map(|t| parse(t)).collect();
        let incremental = build_for(
            &ProxyConfig::default(),
            objects.clone(),
            active.as_ref(),
            &state,
        );
        let full = build_for(&ProxyConfig::default(), objects, None, &state);
        let diff = difference(&serialized(&incremental), &serialized(&full), "");
        assert!(
            diff.is_none(),
            "step {i}: incremental and full differ at {diff:?}"
        );
        let rules: Vec<String> = incremental
            .tcp_listeners
            .iter()
            .filter(|l| l.address.port() == 8443)
            .flat_map(|l| l.rules.iter().map(|r| format!("{}:{}", l.name, r.name)))
            .collect();
        let has_rule = step.iter().any(|t| t.contains("kind: VirtualService"));
        assert_eq!(
            rules.iter().any(|r| r.ends_with(":a.0")),
            has_rule,
            "step {i}: {rules:?}"
        );
        assert!(!rules.is_empty(), "step {i}");
        active = Some(incremental);
    }
}
