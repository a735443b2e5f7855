//! Security config compiled for one proxy: PeerAuthentication precedence, merged JWT rules,
//! the Sidecar that applies and its ingress listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use sluice_config::authz::{DefaultEndpoint, MtlsMode, Security};
use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
use sluice_lb::StateStore;
use sluice_model::codes;

fn proxy() -> ProxyConfig {
    ProxyConfig {
        labels: [("app".to_string(), "payments".to_string())].into(),
        namespace: "shop".into(),
        gateway_role: false,
        ..ProxyConfig::default()
    }
}

fn snapshot(yaml: &str, proxy: &ProxyConfig) -> Snapshot {
    let parsed = sluice_model::parse_text(yaml, Some("t.yaml".into()));
    match build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        proxy,
        &StateStore::new(),
        1,
    ) {
        Ok(s) => s,
        Err(r) => panic!("rejected: {:#?}", r.diagnostics),
    }
}

fn security(yaml: &str) -> Arc<Security> {
    snapshot(yaml, &proxy()).security.clone()
}

/// A PeerAuthentication; `selector` and `ports` are YAML flow fragments or empty.
fn pa(ns: &str, name: &str, mode: &str, selector: &str, ports: &str, created: &str) -> String {
    let mut s = format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n"
    );
    if !mode.is_empty() {
        s.push_str(&format!("  mtls: {{mode: {mode}}}\n"));
    }
    if !selector.is_empty() {
        s.push_str(&format!("  selector: {{matchLabels: {selector}}}\n"));
    }
    if !ports.is_empty() {
        s.push_str(&format!("  portLevelMtls: {ports}\n"));
    }
    s.push_str("---\n");
    s
}

const T1: &str = "2024-01-01T00:00:00Z";
const T2: &str = "2024-02-01T00:00:00Z";

#[test]
fn peer_authentication_precedence() {
    use MtlsMode::*;
    let app = "{app: payments}";
    // (policies, mode of port 8080, mode of port 9102)
    let cases: Vec<(String, MtlsMode, MtlsMode)> = vec![
        (String::new(), Permissive, Permissive),
        (
            pa("istio-system", "default", "STRICT", "", "", T1),
            Strict,
            Strict,
        ),
        (
            pa("istio-system", "default", "STRICT", "", "", T1)
                + &pa("shop", "default", "DISABLE", "", "", T1),
            Disable,
            Disable,
        ),
        // UNSET inherits.
        (
            pa("istio-system", "default", "STRICT", "", "", T1)
                + &pa("shop", "default", "UNSET", "", "", T1),
            Strict,
            Strict,
        ),
        (
            pa("shop", "default", "STRICT", "", "", T1)
                + &pa("shop", "payments", "", app, "{9102: {mode: DISABLE}}", T1),
            Strict,
            Disable,
        ),
        (
            pa(
                "shop",
                "payments",
                "PERMISSIVE",
                app,
                "{9102: {mode: UNSET}}",
                T1,
            ) + &pa("istio-system", "default", "STRICT", "", "", T1),
            Permissive,
            Permissive,
        ),
        // Root-namespace selectors are ignored.
        (
            pa("istio-system", "sel", "STRICT", app, "", T1),
            Permissive,
            Permissive,
        ),
        // The oldest namespace-wide policy wins, whatever the file order.
        (
            pa("shop", "newer", "DISABLE", "", "", T2) + &pa("shop", "older", "STRICT", "", "", T1),
            Strict,
            Strict,
        ),
        // Other namespaces and other workloads do not count.
        (
            pa("bank", "default", "STRICT", "", "", T1)
                + &pa("shop", "other", "STRICT", "{app: cart}", "", T1),
            Permissive,
            Permissive,
        ),
    ];
    for (yaml, want_8080, want_9102) in cases {
        let s = security(&yaml);
        let got = (
            s.peer_authentication.mtls_mode(8080),
            s.peer_authentication.mtls_mode(9102),
        );
        assert_eq!(got, (want_8080, want_9102), "{yaml}");
    }
}

#[test]
fn shadowed_peer_authentications_are_reported() {
    let yaml = pa("shop", "newer", "DISABLE", "", "", T2)
        + &pa("shop", "older", "STRICT", "", "", T1)
        + &pa("shop", "w2", "DISABLE", "{app: payments}", "", T2)
        + &pa("shop", "w1", "STRICT", "{app: payments}", "", T1);
    let snap = snapshot(&yaml, &proxy());
    let mut shadowed: Vec<&str> = snap
        .diagnostics
        .iter()
        .filter(|d| d.code == codes::PEER_AUTHENTICATION_SHADOWED)
        .filter_map(|d| d.resource.as_ref().map(|r| r.name.as_str()))
        .collect();
    shadowed.sort_unstable();
    assert_eq!(shadowed, ["newer", "w2"]);
    assert_eq!(
        snap.security.peer_authentication.mtls_mode(1),
        MtlsMode::Strict
    );
}

#[test]
fn namespace_mode_uses_namespace_and_mesh_policies_only() {
    let yaml = pa("istio-system", "default", "STRICT", "", "", T1)
        + &pa("legacy", "default", "DISABLE", "", "", T1)
        + &pa("bank", "workload", "DISABLE", "{app: vault}", "", T1)
        + &pa("shop", "default", "UNSET", "", "", T1);
    let s = security(&yaml);
    let pa = &s.peer_authentication;
    assert_eq!(pa.namespace_mode("legacy"), MtlsMode::Disable);
    assert_eq!(pa.namespace_mode("bank"), MtlsMode::Strict);
    assert_eq!(pa.namespace_mode("shop"), MtlsMode::Strict);
    assert_eq!(pa.namespace_mode("anything"), MtlsMode::Strict);
    assert_eq!(
        security("").peer_authentication.namespace_mode("x"),
        MtlsMode::Permissive
    );
}

#[test]
fn jwt_rules_merge_sorted_by_issuer() {
    let yaml = "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: zeta, namespace: shop}
spec:
  selector: {matchLabels: {app: payments}}
  jwtRules:
  - issuer: https://z.example.org
    jwksUri: https://z.example.org/keys
    fromHeaders: [{name: x-jwt, prefix: \"Bearer \"}]
    outputClaimToHeaders: [{header: x-tier, claim: account.tier}]
    timeout: 2s
    forwardOriginalToken: true
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: mesh, namespace: istio-system}
spec:
  jwtRules:
  - issuer: https://a.example.org
    audiences: [shop]
    fromParams: [token]
    fromCookies: [session]
    spaceDelimitedClaims: [roles]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: elsewhere, namespace: bank}
spec:
  jwtRules: [{issuer: https://bank.example.org}]
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: cart-only, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  jwtRules: [{issuer: https://cart.example.org}]
";
    let s = security(yaml);
    let issuers: Vec<&str> = s.jwt_rules.iter().map(|r| r.issuer.as_str()).collect();
    assert_eq!(issuers, ["https://a.example.org", "https://z.example.org"]);
    let a = &s.jwt_rules[0];
    assert_eq!(a.audiences, ["shop"]);
    assert_eq!(a.from_params, ["token"]);
    assert_eq!(a.from_cookies, ["session"]);
    assert_eq!(a.space_delimited_claims, ["roles"]);
    assert_eq!(a.timeout, Duration::from_secs(5));
    assert!(!a.forward_original_token);
    let z = &s.jwt_rules[1];
    assert_eq!(z.jwks_uri.as_deref(), Some("https://z.example.org/keys"));
    assert_eq!(z.from_headers[0].name, "x-jwt");
    assert_eq!(z.from_headers[0].prefix.as_deref(), Some("Bearer "));
    assert_eq!(z.output_claim_to_headers[0].claim, "account.tier");
    assert_eq!(z.timeout, Duration::from_secs(2));
    assert!(z.forward_original_token);
}

fn sidecar(ns: &str, name: &str, selector: &str, port: u16, created: &str) -> String {
    let sel = if selector.is_empty() {
        String::new()
    } else {
        format!("  workloadSelector: {{labels: {selector}}}\n")
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec:\n{sel}  ingress:\n  - port: {{number: {port}, protocol: HTTP, name: http}}\n    defaultEndpoint: 127.0.0.1:8080\n---\n"
    )
}

#[test]
fn the_sidecar_that_applies() {
    let ports = |yaml: &str| -> Vec<u16> {
        security(yaml)
            .sidecar_ingress
            .iter()
            .map(|l| l.port)
            .collect()
    };
    assert_eq!(ports(""), Vec::<u16>::new());
    assert_eq!(ports(&sidecar("istio-system", "default", "", 1, T1)), [1]);
    assert_eq!(
        ports(&(sidecar("istio-system", "default", "", 1, T1) + &sidecar("shop", "ns", "", 2, T1))),
        [2]
    );
    assert_eq!(
        ports(
            &(sidecar("shop", "ns", "", 2, T1)
                + &sidecar("shop", "app", "{app: payments}", 3, T1)
                + &sidecar("shop", "cart", "{app: cart}", 4, T1))
        ),
        [3]
    );
    // Root-namespace selectors do not reach other namespaces; the oldest wins.
    assert_eq!(
        ports(
            &(sidecar("istio-system", "sel", "{app: payments}", 5, T1)
                + &sidecar("shop", "newer", "", 6, T2)
                + &sidecar("shop", "older", "", 7, T1))
        ),
        [7]
    );
}

#[test]
fn workload_selector_uses_labels_not_match_labels() {
    // Sidecar's workloadSelector is `labels`, unlike the security kinds' `matchLabels`.
    let yaml = "apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: app, namespace: shop}
spec:
  workloadSelector: {labels: {app: payments}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 0.0.0.0:8080
    bind: 10.0.0.5
  - port: {number: 9443, protocol: HTTPS, name: https}
    defaultEndpoint: unix:///var/run/app.sock
";
    let snap = snapshot(yaml, &proxy());
    let l = &snap.security.sidecar_ingress;
    assert_eq!(l.len(), 1);
    assert_eq!(
        l[0].default_endpoint,
        Some(DefaultEndpoint::InstanceIp { port: 8080 })
    );
    assert_eq!(l[0].bind, Some("10.0.0.5".parse().unwrap()));
    assert!(snap
        .diagnostics
        .iter()
        .any(|d| d.code == codes::SIDECAR_ENDPOINT_UNSUPPORTED
            && d.field.as_deref() == Some("spec.ingress[1].defaultEndpoint")));
}

#[test]
fn registry_endpoints_carry_their_service_account() {
    let yaml = "apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ratings, namespace: shop}
spec:
  hosts: [ratings.shop.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, serviceAccount: ratings}
  - {address: 10.0.0.2}
";
    let snap = snapshot(yaml, &proxy());
    let svc = snap
        .registry
        .services()
        .find(|s| s.hostname == "ratings.shop.svc.cluster.local")
        .expect("the service");
    let sas: Vec<Option<&str>> = svc
        .endpoints
        .iter()
        .map(|e| e.service_account.as_deref())
        .collect();
    assert_eq!(sas, [Some("ratings"), None]);
}

/// With inbound interception the ingress ports are the app's: they apply to intercepted
/// connections and are not bound by the proxy (binding them would take the app's port).
#[test]
fn ingress_ports_are_bound_only_without_inbound_interception() {
    let yaml = sidecar("shop", "a", "", 9080, "");
    let plain = snapshot(&yaml, &proxy());
    let addr = plain.inbound_address(&plain.security.sidecar_ingress[0]);
    assert!(plain.bind_addresses().contains(&addr));
    assert!(plain.inbound_listener(addr).is_some());
    let intercepted = ProxyConfig {
        inbound_intercepted: true,
        ..proxy()
    };
    let snap = snapshot(&yaml, &intercepted);
    assert_eq!(snap.security.sidecar_ingress.len(), 1);
    assert!(!snap.bind_addresses().contains(&addr));
    assert!(snap.inbound_listener(addr).is_none());
}

/// Istio's inbound cluster pool: a port's ingress `connectionPool` replaces the Sidecar's
/// `inboundConnectionPool` as a whole; other ports, intercepted ones included, get the latter.
#[test]
fn an_ingress_connection_pool_replaces_the_inbound_connection_pool() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a, namespace: shop}\nspec:\n  inboundConnectionPool:\n    tcp: {maxConnections: 5, connectTimeout: 2s}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n    connectionPool: {http: {http1MaxPendingRequests: 7}}\n  - port: {number: 9090, protocol: HTTP, name: http2}\n    defaultEndpoint: 127.0.0.1:8090\n";
    let s = security(yaml);
    let own = s.inbound_pool_for(9080).unwrap();
    assert_eq!(own.max_pending_requests, 7);
    assert_eq!(
        own.max_connections,
        u32::MAX,
        "not merged with inboundConnectionPool"
    );
    assert_eq!(own.connect_timeout, Duration::from_secs(10));
    for port in [9090, 15000] {
        let shared = s.inbound_pool_for(port).unwrap();
        assert_eq!(shared.max_connections, 5);
        assert_eq!(shared.connect_timeout, Duration::from_secs(2));
    }
    let none = security("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: a, namespace: shop}\nspec:\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n");
    assert!(none.inbound_pool_for(9080).is_none());
}
