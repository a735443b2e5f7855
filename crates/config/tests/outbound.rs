//! Outbound interception: which mesh listener a redirected connection gets, by original
//! destination (service address first, then the port), and which connections get none.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http::HeaderMap;
use sluice_config::{build_snapshot, route, ProxyConfig, RequestInfo, Routed, Snapshot};
use sluice_lb::StateStore;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews.default.svc.cluster.local]
  addresses: [10.96.0.10]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 5432, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings.default.svc.cluster.local]
  addresses: [10.96.0.11]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.2}]
"#;

fn snapshot(proxy: ProxyConfig) -> Snapshot {
    let parsed = sluice_model::parse_text(YAML, Some("t.yaml".into()));
    build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
    )
    .unwrap()
}

fn sidecar() -> ProxyConfig {
    ProxyConfig {
        gateway_role: false,
        mesh_role: false,
        outbound_role: true,
        ..ProxyConfig::default()
    }
}

/// The virtual host a request with `host` gets on a connection to `dst` (`None`: passthrough
/// TCP; `Some("NR")`: no virtual host, so the request passes through to `dst`).
fn vhost(s: &Snapshot, dst: &str, host: &str) -> Option<String> {
    let l = s.outbound_listener(dst.parse::<SocketAddr>().unwrap())?;
    let headers = HeaderMap::new();
    let info = RequestInfo {
        method: "GET",
        scheme: "http",
        authority: host,
        path_and_query: "/",
        headers: &headers,
        extensions: None,
    };
    Some(match route(l, &info) {
        Routed::Matched(m) => m.virtual_host.name.clone(),
        Routed::NoRoute(vh) | Routed::RequireTls(vh) => vh.name.clone(),
        Routed::NoVirtualHost => "NR".into(),
    })
}

#[test]
fn original_destination_selects_the_listener() {
    let s = snapshot(sidecar());
    assert!(
        s.listeners.is_empty(),
        "a sidecar binds no per-service ports"
    );
    let reviews = Some("reviews.default.svc.cluster.local:80".to_string());
    // The VIP picks its service whatever the Host says; the Host wins when it names a service.
    assert_eq!(vhost(&s, "10.96.0.10:80", "10.96.0.10"), reviews);
    assert_eq!(vhost(&s, "10.96.0.10:80", "example.com"), reviews);
    assert_eq!(
        vhost(&s, "10.96.0.10:80", "ratings"),
        Some("ratings.default.svc.cluster.local:80".into())
    );
    // Another address on a mesh port: by Host, else no virtual host (passthrough to it).
    assert_eq!(vhost(&s, "192.0.2.1:80", "reviews:80"), reviews);
    assert_eq!(vhost(&s, "192.0.2.1:80", "example.com"), Some("NR".into()));
    // Ports with no HTTP service, TCP ports included, are relayed as plain TCP.
    assert_eq!(vhost(&s, "10.96.0.10:5432", "reviews"), None);
    assert_eq!(vhost(&s, "192.0.2.1:8080", "reviews"), None);
}

#[test]
fn without_the_outbound_role_nothing_is_intercepted() {
    let s = snapshot(ProxyConfig::default());
    assert!(s.outbound.is_empty());
    assert_eq!(vhost(&s, "10.96.0.10:80", "reviews"), None);
}
