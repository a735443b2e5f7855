//! JWT claim based routing (Istio's task): `@request.auth.claims.groups` on a gateway route
//! matches the verified token's claims from the request extensions, not a header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::{Extensions, HeaderMap, HeaderValue};
use serde_json::{json, Value};
use sluice_config::authz::VerifiedJwt;
use sluice_config::route_table::RouteAction;
use sluice_config::{build_snapshot, route, ProxyConfig, RequestInfo, Routed, Snapshot};
use sluice_lb::StateStore;

const YAML: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin.foo.svc.cluster.local, reports.foo.svc.cluster.local]
  ports: [{number: 8000, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: httpbin-gateway, namespace: foo}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: ["*"]
  gateways: [httpbin-gateway]
  http:
  - match:
    - uri: {prefix: /headers}
      headers:
        "@request.auth.claims.groups": {exact: group1}
    route: [{destination: {host: httpbin.foo.svc.cluster.local, port: {number: 8000}}}]
  - match:
    - uri: {prefix: /nested}
      headers:
        "@request.auth.claims[account][tier]": {prefix: gold}
    route: [{destination: {host: httpbin.foo.svc.cluster.local, port: {number: 8000}}}]
  - match:
    - uri: {prefix: /reports}
      withoutHeaders:
        "@Request.Auth.Claims.groups": {exact: blocked}
    route: [{destination: {host: reports.foo.svc.cluster.local, port: {number: 8000}}}]
"#;

fn snapshot() -> Snapshot {
    let parsed = sluice_model::parse_text(YAML, Some("t.yaml".into()));
    let proxy = ProxyConfig {
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        namespace: "foo".into(),
        mesh_role: false,
        ..ProxyConfig::default()
    };
    match build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
    ) {
        Ok(s) => s,
        Err(r) => panic!("rejected: {:#?}", r.diagnostics),
    }
}

/// The routed host, or "NR".
fn decide(s: &Snapshot, path: &str, claims: Option<Value>, header: Option<&str>) -> String {
    let mut headers = HeaderMap::new();
    if let Some(v) = header {
        // A header spelled like the claim key must not be mistaken for the claim.
        headers.insert("x-groups", HeaderValue::from_str(v).unwrap());
    }
    let mut extensions = Extensions::new();
    if let Some(claims) = claims {
        extensions.insert(VerifiedJwt {
            principal: None,
            claims,
        });
    }
    let info = RequestInfo {
        method: "GET",
        scheme: "http",
        authority: "httpbin.example.com",
        path_and_query: path,
        headers: &headers,
        extensions: Some(&extensions),
    };
    let l = s.listener("0.0.0.0:8080".parse().unwrap()).unwrap();
    match route(l, &info) {
        Routed::Matched(m) => match &m.route.action {
            RouteAction::Forward(f) => f.destinations[0].host.to_string(),
            other => format!("{other:?}"),
        },
        _ => "NR".into(),
    }
}

#[test]
fn claims_route_as_in_istio_task() {
    let s = snapshot();
    const HTTPBIN: &str = "httpbin.foo.svc.cluster.local";
    const REPORTS: &str = "reports.foo.svc.cluster.local";
    let cases: &[(&str, Option<Value>, &str)] = &[
        ("/headers", None, "NR"),
        (
            "/headers",
            Some(json!({"groups": ["group1", "group2"]})),
            HTTPBIN,
        ),
        ("/headers", Some(json!({"groups": "group1"})), HTTPBIN),
        ("/headers", Some(json!({"groups": ["group2"]})), "NR"),
        ("/headers", Some(json!({"sub": "no-groups"})), "NR"),
        ("/headers", Some(json!({"groups": 1})), "NR"),
        (
            "/nested",
            Some(json!({"account": {"tier": "gold-plus"}})),
            HTTPBIN,
        ),
        (
            "/nested",
            Some(json!({"account": {"tier": "silver"}})),
            "NR",
        ),
        ("/reports", None, REPORTS),
        ("/reports", Some(json!({"groups": ["a"]})), REPORTS),
        ("/reports", Some(json!({"groups": ["a", "blocked"]})), "NR"),
    ];
    for (path, claims, want) in cases {
        assert_eq!(
            decide(&s, path, claims.clone(), None),
            *want,
            "{path} {claims:?}"
        );
    }
}

#[test]
fn claim_routes_without_request_authentication_are_reported() {
    let findings = |yaml: &str| -> Vec<String> {
        let parsed = sluice_model::parse_text(yaml, None);
        sluice_config::analyze::analyze(&parsed.resources)
            .into_iter()
            .filter(|d| d.code == sluice_model::codes::JWT_CLAIM_ROUTING_WITHOUT_REQUEST_AUTHN)
            .filter_map(|d| d.field)
            .collect()
    };
    let without = findings(YAML);
    assert_eq!(without.len(), 3, "{without:?}");
    let ra = "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: istio-system}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  jwtRules: [{issuer: testing@secure.istio.io, jwksUri: \"https://example.org/jwks.json\"}]\n";
    assert_eq!(findings(&format!("{YAML}{ra}")), Vec::<String>::new());
    let elsewhere = ra.replace("istio: ingressgateway", "app: other");
    assert_eq!(findings(&format!("{YAML}{elsewhere}")).len(), 3);
}

#[test]
fn claim_keys_on_sidecars_are_refused() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: foo}
spec:
  hosts: [httpbin]
  gateways: [mesh, httpbin-gateway]
  http:
  - match: [{headers: {"@request.auth.claims.groups": {exact: group1}}}]
    route: [{destination: {host: httpbin}}]
"#;
    let parsed = sluice_model::parse_text(yaml, None);
    let diags = sluice_config::validate::validate_resource(&parsed.resources[0]);
    assert!(diags
        .iter()
        .any(|d| d.severity == sluice_model::Severity::Error
            && d.field.as_deref()
                == Some("spec.http[0].match[0].headers[\"@request.auth.claims.groups\"]")));
}
