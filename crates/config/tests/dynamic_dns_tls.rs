//! `resolution: DYNAMIC_DNS` on TLS ports, compiled for a sidecar with outbound interception:
//! the port takes intercepted TLS for the service's hosts by SNI (after any `tls` rules), to
//! the service's dynamic cluster, whose address is the server name resolved per connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;

use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;

const YAML: &str = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wildcard, namespace: default}
spec:
  hosts: [\"*.example.com\"]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: DYNAMIC_DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: pinned, namespace: default}
spec:
  hosts: [pinned.example.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: pinned, namespace: default}
spec:
  hosts: [pinned.example.com]
  tls:
  - match: [{sniHosts: [pinned.example.com]}]
    route: [{destination: {host: pinned.example.com}}]
";

#[test]
fn dynamic_dns_tls_ports_route_intercepted_tls_by_sni() {
    let parsed = sluice_model::parse_text(YAML, Some("t.yaml".into()));
    let proxy = ProxyConfig {
        gateway_role: false,
        mesh_role: false,
        outbound_role: true,
        ..ProxyConfig::default()
    };
    let s = build_snapshot(parsed.resources, Vec::new(), &proxy, &StateStore::new(), 1)
        .map_err(|r| format!("{:?}", r.diagnostics))
        .unwrap();
    // Intercepted TLS ports are served: no "not served yet" warning for them.
    let warned = format!("{:?}", s.diagnostics);
    assert!(!warned.contains("not served"), "{warned}");
    let tls = s.outbound.tls_listener(443).expect("a TLS listener on 443");
    let anywhere: IpAddr = "10.0.0.1".parse().unwrap();
    let cluster_of = |sni: &str| {
        tls.route(anywhere, anywhere, Some(sni)).map(|rule| {
            let d = rule.forward.destinations.first().unwrap();
            (
                d.cluster_name.to_string(),
                d.cluster.as_ref().unwrap().dynamic_dns,
            )
        })
    };
    assert_eq!(
        cluster_of("api.example.com"),
        Some(("outbound|443||*.example.com".to_string(), true))
    );
    // The `tls` rule comes first; other names are not the service's.
    assert_eq!(
        cluster_of("pinned.example.com"),
        Some(("outbound|443||pinned.example.com".to_string(), false))
    );
    assert_eq!(cluster_of("example.org"), None);
}
