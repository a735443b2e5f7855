//! Matching precedence as tables: YAML in, request → which rule and destination. No sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use sluice_config::route_table::RouteAction;
use sluice_config::{build_snapshot, route, ProxyConfig, RequestInfo, Routed, Snapshot};
use sluice_lb::StateStore;

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 1001}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 1002}, labels: {version: v2}}
  - {address: 127.0.0.1, ports: {http: 1003}, labels: {version: v3}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"#;

fn snapshot(yaml: &str, proxy: ProxyConfig) -> Snapshot {
    let parsed = sluice_model::parse_text(&format!("{SERVICES}---\n{yaml}"), Some("t.yaml".into()));
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

fn mesh() -> ProxyConfig {
    ProxyConfig {
        gateway_role: false,
        ..ProxyConfig::default()
    }
}

/// The proxy an ingress Gateway with `selector: {istio: ingressgateway}` binds to.
fn ingress_gateway() -> ProxyConfig {
    let mut p = ProxyConfig::default();
    p.labels.insert("istio".into(), "ingressgateway".into());
    p
}

/// (method, authority, path, headers)
type Req<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);

/// The decision for a request: "subset" | "NR" | "status:<n>" | "redirect:<location>".
fn decide(s: &Snapshot, listener: SocketAddr, req: Req<'_>) -> String {
    let (method, authority, path, hs) = req;
    let mut headers = HeaderMap::new();
    for (k, v) in hs {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let info = RequestInfo {
        method,
        scheme: "http",
        authority,
        path_and_query: path,
        headers: &headers,
        extensions: None,
    };
    let l = s.listener(listener).unwrap_or_else(|| {
        panic!(
            "no listener {listener}: {:?}",
            s.listeners.iter().map(|l| l.address).collect::<Vec<_>>()
        )
    });
    match route(l, &info) {
        Routed::NoVirtualHost | Routed::NoRoute(_) => "NR".into(),
        Routed::RequireTls(_) => "https-redirect".into(),
        Routed::Matched(m) => match &m.route.action {
            RouteAction::Forward(f) => f
                .destinations
                .iter()
                .map(|d| d.subset.clone().unwrap_or_else(|| "-".into()))
                .collect::<Vec<_>>()
                .join("+"),
            RouteAction::DirectResponse(d) => format!("status:{}", d.status),
            RouteAction::Redirect(r) => format!(
                "redirect:{}",
                r.location(&info, m.matched_prefix(), l.port())
            ),
        },
    }
}

const MESH_9080: &str = "127.0.0.1:9080";

#[test]
fn first_match_wins_with_every_match_field() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: api-or-canary
    match: [{uri: {prefix: /api}}, {uri: {prefix: /canary}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: exact-shadowed
    match: [{uri: {exact: /api/v1}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - name: regex
    match: [{uri: {regex: '/items/[0-9]+'}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: icase
    match: [{uri: {exact: /Admin}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: post-with-query
    match: [{method: {exact: POST}, queryParams: {debug: {exact: "1"}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: without-cookie
    match: [{uri: {prefix: /nocookie}, withoutHeaders: {cookie: {}}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - name: authority
    match: [{authority: {prefix: reviews.default}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: default
    route: [{destination: {host: reviews, subset: v1}}]
"#,
        mesh(),
    );
    let l: SocketAddr = MESH_9080.parse().unwrap();
    let table: &[(Req<'_>, &str)] = &[
        (("GET", "reviews", "/", &[("end-user", "jason")]), "v2"),
        (
            ("GET", "reviews", "/api/v1", &[("end-user", "jason")]),
            "v2",
        ),
        (("GET", "reviews", "/", &[("end-user", "Jason")]), "v1"),
        (("GET", "reviews", "/api/v1", &[]), "v3"),
        (("GET", "reviews", "/canaryfoo", &[]), "v3"),
        (("GET", "reviews", "/items/42", &[]), "v2"),
        (("GET", "reviews", "/items/42?x=1", &[]), "v2"),
        (("GET", "reviews", "/items/42/x", &[]), "v1"),
        (("GET", "reviews", "/ADMIN", &[]), "v3"),
        (("POST", "reviews", "/x?debug=1", &[]), "v2"),
        (("GET", "reviews", "/x?debug=1", &[]), "v1"),
        (("POST", "reviews", "/x?debug=2", &[]), "v1"),
        (("GET", "reviews", "/nocookie", &[]), "v3"),
        (("GET", "reviews", "/nocookie", &[("cookie", "a=b")]), "v1"),
        (("GET", "reviews.default:9080", "/", &[]), "v2"),
        (("GET", "reviews:9080", "/", &[]), "v1"),
        (("GET", "reviews.default.svc.cluster.local", "/", &[]), "v2"),
        (("GET", "ratings", "/", &[]), "NR"),
    ];
    for (req, want) in table {
        assert_eq!(decide(&s, l, *req), *want, "{req:?}");
    }
}

#[test]
fn no_default_rule_means_404_and_weights_are_kept() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {canary: {exact: canary-tester}}}]
    route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 40}
    - {destination: {host: reviews, subset: v3}, weight: 0}
"#,
        mesh(),
    );
    let l = MESH_9080.parse().unwrap();
    assert_eq!(decide(&s, l, ("GET", "reviews", "/", &[])), "NR");
    // The zero-weight destination is dropped; 80/40 stays 2:1.
    assert_eq!(
        decide(
            &s,
            l,
            ("GET", "reviews", "/", &[("canary", "canary-tester")])
        ),
        "v1+v2"
    );
}

#[test]
fn source_labels_and_port_are_config_time_filters() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: frontend, version: v2}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{port: 9999}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let l = MESH_9080.parse().unwrap();
    let mut v2 = mesh();
    v2.labels = [("app", "frontend"), ("version", "v2"), ("extra", "x")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        decide(&snapshot(vs, v2), l, ("GET", "reviews", "/", &[])),
        "v2"
    );
    let mut v1 = mesh();
    v1.labels = [("app", "frontend"), ("version", "v1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        decide(&snapshot(vs, v1), l, ("GET", "reviews", "/", &[])),
        "v1"
    );
    assert_eq!(
        decide(&snapshot(vs, mesh()), l, ("GET", "reviews", "/", &[])),
        "v1"
    );
}

#[test]
fn gateway_merges_virtual_services_oldest_first_with_catch_alls_last() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.example.com", "default/only-default.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [x.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /shared}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: b, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [x.example.com, only-default.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /shared}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {prefix: /b-only}}]
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other-ns, namespace: team}
spec:
  hosts: [only-default.com]
  gateways: [istio-system/gw]
  http:
  - route: [{destination: {host: reviews.default.svc.cluster.local, subset: v3}}]
"#;
    let s = snapshot(yaml, ingress_gateway());
    let l = "0.0.0.0:8080".parse().unwrap();
    let table: &[(Req<'_>, &str)] = &[
        (("GET", "x.example.com", "/shared", &[]), "v1"),
        (("GET", "x.example.com", "/b-only", &[]), "v3"),
        (("GET", "x.example.com:8080", "/", &[]), "v1"),
        (("GET", "y.example.com", "/", &[]), "NR"),
        (("GET", "example.com", "/", &[]), "NR"),
        (("GET", "only-default.com", "/", &[]), "v2"),
    ];
    for (req, want) in table {
        assert_eq!(decide(&s, l, *req), *want, "{req:?}");
    }
}

/// The hosts a VirtualService binds through one server compile to the same rules: they share
/// one route list, so a rule's exact split counts the requests of all of them. A host another
/// VirtualService also binds has rules of its own.
#[test]
fn gateway_hosts_bound_alike_share_their_rules_and_split() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: split, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [a.example.com, b.example.com, d.example.com, c.example.com]
  gateways: [istio-system/gw]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 75}
    - {destination: {host: reviews, subset: v2}, weight: 25}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: c-only, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [c.example.com]
  gateways: [istio-system/gw]
  http:
  - match: [{uri: {prefix: /c}}]
    route: [{destination: {host: reviews, subset: v3}}]
"#;
    let s = snapshot(yaml, ingress_gateway());
    let l = s.listener("0.0.0.0:8080".parse().unwrap()).unwrap();
    let vhost = |host: &str| {
        l.virtual_hosts
            .vhosts
            .iter()
            .find(|vh| vh.domains.iter().any(|d| d == host))
            .unwrap_or_else(|| panic!("no virtual host {host}"))
    };
    let (a, b, c) = (
        vhost("a.example.com"),
        vhost("b.example.com"),
        vhost("c.example.com"),
    );
    assert!(std::sync::Arc::ptr_eq(&a.routes, &b.routes));
    assert!(std::sync::Arc::ptr_eq(
        &a.routes,
        &vhost("d.example.com").routes
    ));
    assert!(!std::sync::Arc::ptr_eq(&a.routes, &c.routes));
    assert_eq!(
        (a.name.as_str(), b.name.as_str()),
        ("a.example.com:8080", "b.example.com:8080")
    );
    assert_eq!(c.routes.len(), 2);
    // Four requests alternating between a and b: the 75/25 split is exact over both.
    let mut picked = Vec::new();
    for host in [
        "a.example.com",
        "b.example.com",
        "a.example.com",
        "b.example.com",
    ] {
        let RouteAction::Forward(f) = &vhost(host).routes[0].action else {
            panic!("not a forward");
        };
        picked.push(
            f.pick()
                .and_then(|d| d.subset.as_deref())
                .unwrap()
                .to_string(),
        );
    }
    picked.sort();
    assert_eq!(picked, ["v1", "v1", "v1", "v2"]);
}

/// Config istiod accepts with warnings must load and work: the legacy `name.namespace` gateway
/// reference binds like `namespace/name`, and `tls.httpsRedirect` on a TCP server is ignored.
#[test]
fn config_istio_only_warns_about_loads_and_routes() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: HTTP}
    hosts: ["*.example.com"]
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: short-legacy}
spec:
  hosts: [a.example.com]
  gateways: [gw.istio-system]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: fqdn-legacy}
spec:
  hosts: [b.example.com]
  gateways: [gw.istio-system.svc.cluster.local]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tcp}
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp: [{match: [{port: 31400}], route: [{destination: {host: reviews, subset: v3}}]}]
"#;
    let s = snapshot(yaml, ingress_gateway());
    let errors: Vec<_> = s
        .diagnostics
        .iter()
        .filter(|d| d.severity == sluice_model::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let l = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(decide(&s, l, ("GET", "a.example.com", "/", &[])), "v1");
    assert_eq!(decide(&s, l, ("GET", "b.example.com", "/", &[])), "v2");
    let tcp = s.tcp_listener("0.0.0.0:31400".parse().unwrap());
    assert!(
        tcp.is_some_and(|t| !t.rules.is_empty()),
        "{:?}",
        s.tcp_listeners
    );
}

#[test]
fn mesh_ignores_the_second_virtual_service_for_a_host() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: first}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: second}
spec:
  hosts: [reviews.default.svc.cluster.local]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
"#,
        mesh(),
    );
    assert_eq!(
        decide(&s, MESH_9080.parse().unwrap(), ("GET", "reviews", "/", &[])),
        "v1"
    );
    assert!(s.diagnostics.iter().any(|d| d.code == "IST0109"));
}

#[test]
fn redirect_and_direct_response() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /old}}]
    redirect: {prefixRewrite: /new, authority: new.example.com}
  - match: [{uri: {exact: /gone}}]
    directResponse: {status: 410, body: {string: gone}}
  - route: [{destination: {host: reviews, subset: v1}}]
"#,
        mesh(),
    );
    let l = MESH_9080.parse().unwrap();
    assert_eq!(
        decide(&s, l, ("GET", "reviews:9080", "/old/x?q=1", &[])),
        "redirect:http://new.example.com/new/x?q=1"
    );
    assert_eq!(
        decide(&s, l, ("GET", "reviews", "/gone", &[])),
        "status:410"
    );
}

/// `sourceNamespace` keeps a rule only in proxies of that namespace (config time, like
/// `sourceLabels`).
#[test]
fn source_namespace_is_a_config_time_filter() {
    // A proxy of another namespace reaches the service by its full name.
    const FQDN: &str = "reviews.default.svc.cluster.local";
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceNamespace: frontend}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"#;
    let l = MESH_9080.parse().unwrap();
    let mut frontend = mesh();
    frontend.namespace = "frontend".into();
    assert_eq!(
        decide(&snapshot(vs, frontend), l, ("GET", FQDN, "/", &[])),
        "v2"
    );
    assert_eq!(
        decide(&snapshot(vs, mesh()), l, ("GET", FQDN, "/", &[])),
        "v1"
    );
}

/// `redirectCode` and `derivePort: FROM_REQUEST_PORT` shape the redirect.
#[test]
fn redirect_code_and_derive_port() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - redirect: {uri: /moved, authority: new.example.com, redirectCode: 308, derivePort: FROM_REQUEST_PORT}
"#,
        mesh(),
    );
    let l = MESH_9080.parse().unwrap();
    assert_eq!(
        decide(&s, l, ("GET", "reviews", "/x", &[])),
        "redirect:http://new.example.com:9080/moved"
    );
    let info_headers = HeaderMap::new();
    let info = RequestInfo {
        method: "GET",
        scheme: "http",
        authority: "reviews",
        path_and_query: "/x",
        headers: &info_headers,
        extensions: None,
    };
    let Routed::Matched(m) = route(s.listener(l).unwrap(), &info) else {
        panic!("no route")
    };
    let RouteAction::Redirect(r) = &m.route.action else {
        panic!("not a redirect")
    };
    assert_eq!(r.code, 308);
}
