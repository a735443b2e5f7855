//! Scale: host matching in validation, analysis and compilation grows linearly with the
//! config. Counted (calls to `host::covers`), not timed, so the tests hold on a busy machine.

use std::collections::BTreeMap;

use sluice_lb::StateStore;
use sluice_model::{parse_text, Resource};

use crate::host::probe;
use crate::proxy::ProxyConfig;

/// `n` services as `bench/scale.sh` generates them: a ServiceEntry (2 endpoints), a
/// DestinationRule (2 subsets) and a VirtualService (2 hosts, one Gateway and the mesh, a header
/// rule, a 90/10 split, retries, a timeout), plus the Gateway.
pub(crate) fn generated(n: usize) -> Vec<Resource> {
    let mut text = String::from(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: public, namespace: istio-system}\n\
         spec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\n",
    );
    for i in 0..n {
        let ns = format!("ns-{}", i / 100);
        let host = format!("svc-{i}.{ns}.svc.cluster.local");
        let (a, b) = ((i >> 8) & 255, i & 255);
        text.push_str(&format!(
            "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}]
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  resolution: STATIC
  location: MESH_INTERNAL
  endpoints:
  - {{address: 10.{a}.{b}.1, labels: {{version: v1}}}}
  - {{address: 10.{a}.{b}.2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  host: {host}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{i}, namespace: {ns}}}
spec:
  hosts: [{host}, svc-{i}.example.com]
  gateways: [istio-system/public, mesh]
  http:
  - match:
    - headers: {{x-canary: {{exact: \"true\"}}}}
    route:
    - destination: {{host: {host}, subset: v2}}
  - route:
    - destination: {{host: {host}, subset: v1}}
      weight: 90
    - destination: {{host: {host}, subset: v2}}
      weight: 10
    retries: {{attempts: 3, perTryTimeout: 2s}}
    timeout: 10s
---
"
        ));
    }
    let parsed = parse_text(&text, None);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    parsed.resources
}

fn gateway_and_mesh() -> ProxyConfig {
    ProxyConfig {
        labels: BTreeMap::from([("istio".to_string(), "ingressgateway".to_string())]),
        ..ProxyConfig::default()
    }
}

/// Host matches made to check and compile `n` generated services.
fn host_matches(n: usize) -> u64 {
    let resources = generated(n);
    let (snapshot, calls) = probe::calls_in(|| {
        crate::build_snapshot(
            resources,
            Vec::new(),
            &gateway_and_mesh(),
            &StateStore::new(),
            1,
        )
    });
    let snapshot = snapshot.expect("the generated config is valid");
    assert_eq!(snapshot.registry.services().count(), n);
    assert!(
        snapshot.diagnostics.is_empty(),
        "{:?}",
        snapshot.diagnostics
    );
    calls
}

#[test]
fn checking_and_compiling_services_is_linear_in_host_matches() {
    let small = host_matches(200);
    let large = host_matches(800);
    // Four times the services: four times the matches (pairwise scans would make it sixteen).
    assert!(
        large <= 4 * small + 4 * 200,
        "200 services: {small} host matches, 800 services: {large}"
    );
}

/// One VirtualService with `n` hosts, validated; the `covers` calls it took.
fn vs_host_matches(n: usize) -> u64 {
    let hosts: Vec<String> = (0..n).map(|i| format!("h{i}.example.com")).collect();
    let text = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: many, namespace: default}}\n\
         spec:\n  hosts: [{}]\n  http:\n  - route:\n    - destination: {{host: h0.example.com}}\n",
        hosts.join(", ")
    );
    let parsed = parse_text(&text, None);
    assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
    let (diagnostics, calls) =
        probe::calls_in(|| crate::validate::validate_resource(&parsed.resources[0]));
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    calls
}

#[test]
fn a_virtual_service_with_80000_hosts_validates_in_linear_host_matches() {
    let half = vs_host_matches(40_000);
    let full = vs_host_matches(80_000);
    // Pairwise overlap checks would make 3.2 billion matches here and four times the half's.
    assert!(
        full <= 2 * half + 1_000,
        "40,000 hosts: {half} host matches, 80,000 hosts: {full}"
    );
    assert!(full <= 10 * 80_000, "80,000 hosts: {full} host matches");
}
