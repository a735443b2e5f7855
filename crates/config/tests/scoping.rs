//! Scoping as Istio does it, as tables: `exportTo` and the Sidecar's `egress` decide which
//! services, VirtualServices and DestinationRules a proxy compiles; `outboundTrafficPolicy`
//! decides what happens to the rest. No sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use sluice_config::scope::OutboundMode;
use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
use sluice_lb::StateStore;

fn service(name: &str, ns: &str, export_to: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}.{ns}.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports: [{{number: 80, name: http, protocol: HTTP}}, {{number: 9090, name: http-admin, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1, labels: {{version: v1}}}}]\n{export_to}\n---\n"
    )
}

/// Services of namespaces a, b and c; some of b's are exported narrowly.
fn services() -> String {
    [
        service("r", "a", ""),
        service("r", "b", ""),
        service("private", "b", "  exportTo: [\".\"]"),
        service("for-a", "b", "  exportTo: [a]"),
        service("hidden", "b", "  exportTo: [\"~\"]"),
        service("r", "c", "  exportTo: [\"*\"]"),
        service("m", "istio-system", ""),
    ]
    .concat()
}

fn snapshot(extra: &str, proxy: &ProxyConfig) -> Snapshot {
    let yaml = format!("{}{extra}", services());
    let parsed = sluice_model::parse_text(&yaml, Some("t.yaml".into()));
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

fn sidecar_in(ns: &str) -> ProxyConfig {
    ProxyConfig {
        namespace: ns.into(),
        gateway_role: false,
        ..ProxyConfig::default()
    }
}

/// The registry's hosts, short: `r.a` for `r.a.svc.cluster.local`.
fn hosts(s: &Snapshot) -> BTreeSet<String> {
    s.registry
        .services()
        .map(|svc| {
            svc.hostname
                .trim_end_matches(".svc.cluster.local")
                .to_string()
        })
        .collect()
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Every domain of every listener's virtual hosts.
fn domains(s: &Snapshot) -> BTreeSet<String> {
    s.listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .flat_map(|vh| vh.domains.iter().cloned())
        .collect()
}

const EVERYONE: &[&str] = &["r.a", "r.b", "r.c", "m.istio-system"];

#[test]
fn service_entries_are_seen_where_they_are_exported() {
    let with = |extra: &[&str]| {
        let mut v: Vec<&str> = EVERYONE.to_vec();
        v.extend_from_slice(extra);
        set(&v)
    };
    // (proxy namespace, services it sees)
    let table: &[(&str, BTreeSet<String>)] = &[
        ("a", with(&["for-a.b"])),
        ("b", with(&["private.b"])),
        ("c", with(&[])),
    ];
    for (ns, want) in table {
        assert_eq!(
            &hosts(&snapshot("", &sidecar_in(ns))),
            want,
            "proxy in {ns}"
        );
    }
}

const VS_AND_DR: &str = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r-b, namespace: b}
spec:
  hosts: [r.b.svc.cluster.local]
  exportTo: ["."]
  http: [{route: [{destination: {host: r.b.svc.cluster.local, subset: v1}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: r-c, namespace: c}
spec:
  hosts: [r.c.svc.cluster.local]
  exportTo: [a, c]
  http: [{route: [{destination: {host: r.c.svc.cluster.local}}], timeout: 3s}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: r-b, namespace: b}
spec:
  host: r.b.svc.cluster.local
  exportTo: ["."]
  subsets: [{name: v1, labels: {version: v1}}]
---
"#;

#[test]
fn virtual_services_and_destination_rules_are_seen_where_they_are_exported() {
    // (proxy namespace, the VirtualService r-c applies, r.b's subset v1 exists)
    let table: &[(&str, bool, bool)] =
        &[("a", true, false), ("b", false, true), ("c", true, false)];
    for (ns, sees_r_c, sees_dr_b) in table {
        let s = snapshot(VS_AND_DR, &sidecar_in(ns));
        let timeout = s
            .listeners
            .iter()
            .flat_map(|l| l.virtual_hosts.vhosts.iter())
            .filter(|vh| vh.domains.iter().any(|d| d == "r.c.svc.cluster.local"))
            .flat_map(|vh| vh.routes.iter())
            .any(|r| r.policy.timeout.is_some());
        assert_eq!(timeout, *sees_r_c, "VirtualService r-c from {ns}");
        assert_eq!(
            s.clusters
                .contains_key("outbound|80|v1|r.b.svc.cluster.local"),
            *sees_dr_b,
            "DestinationRule r-b from {ns}"
        );
    }
}

fn sidecar(ns: &str, body: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: s-{ns}, namespace: {ns}}}\nspec:\n{body}\n---\n")
}

#[test]
fn egress_hosts_narrow_the_services_a_sidecar_compiles() {
    // (egress hosts of a Sidecar in namespace a, services the proxy in a compiles)
    let table: &[(&str, &[&str])] = &[
        (r#"["./*"]"#, &["r.a"]),
        (
            r#"["*/*"]"#,
            &["r.a", "r.b", "r.c", "m.istio-system", "for-a.b"],
        ),
        (r#"["b/*"]"#, &["r.b", "for-a.b"]),
        (r#"["./*", "istio-system/*"]"#, &["r.a", "m.istio-system"]),
        (r#"["*/r.c.svc.cluster.local"]"#, &["r.c"]),
        (r#"["b/r.c.svc.cluster.local"]"#, &[]),
        (r#"["*/*.b.svc.cluster.local"]"#, &["r.b", "for-a.b"]),
        // Exported elsewhere stays invisible, whatever the Sidecar asks for.
        (
            r#"["b/private.b.svc.cluster.local", "b/hidden.b.svc.cluster.local"]"#,
            &[],
        ),
        (r#"["~/*"]"#, &[]),
    ];
    for (egress, want) in table {
        let body = format!("  egress: [{{hosts: {egress}}}]");
        let s = snapshot(&sidecar("a", &body), &sidecar_in("a"));
        assert_eq!(hosts(&s), set(want), "egress hosts {egress}");
    }
}

#[test]
fn an_egress_port_keeps_only_that_port_of_its_hosts() {
    let body = "  egress:\n  - port: {number: 9090, name: http-admin, protocol: HTTP}\n    hosts: [\"b/*\"]\n  - hosts: [\"./*\"]";
    let s = snapshot(&sidecar("a", body), &sidecar_in("a"));
    assert!(s
        .clusters
        .contains_key("outbound|9090||r.b.svc.cluster.local"));
    assert!(!s
        .clusters
        .contains_key("outbound|80||r.b.svc.cluster.local"));
    assert!(s
        .clusters
        .contains_key("outbound|80||r.a.svc.cluster.local"));
    assert!(s
        .clusters
        .contains_key("outbound|9090||r.a.svc.cluster.local"));
}

#[test]
fn virtual_services_are_imported_by_their_namespace_and_bring_their_destinations() {
    // A VirtualService of namespace a for r.a sends to r.b: Istio infers r.b as reachable.
    let vs = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shift, namespace: a}
spec:
  hosts: [r.a.svc.cluster.local]
  http: [{route: [{destination: {host: r.b.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: c}
spec:
  hosts: [r.c.svc.cluster.local]
  http: [{route: [{destination: {host: r.b.svc.cluster.local}}]}]
---
"#;
    let body = "  egress: [{hosts: [\"./*\"]}]";
    let s = snapshot(&format!("{vs}{}", sidecar("a", body)), &sidecar_in("a"));
    assert_eq!(hosts(&s), set(&["r.a", "r.b"]));
    assert!(domains(&s).contains("r.a.svc.cluster.local"));
    assert!(!domains(&s).contains("r.c.svc.cluster.local"));
}

#[test]
fn the_sidecar_that_applies_is_istios() {
    let ns_default = sidecar("a", "  egress: [{hosts: [\"./*\"]}]");
    let selected = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: picky, namespace: a}\nspec:\n  workloadSelector: {labels: {app: picky}}\n  egress: [{hosts: [\"b/*\"]}]\n---\n";
    let root = sidecar("istio-system", "  egress: [{hosts: [\"istio-system/*\"]}]");
    let all = format!("{ns_default}{selected}{root}");
    let picky = ProxyConfig {
        labels: [("app".to_string(), "picky".to_string())].into(),
        ..sidecar_in("a")
    };
    // A matching selector wins, then the namespace's selector-less Sidecar, then the root's.
    assert_eq!(hosts(&snapshot(&all, &picky)), set(&["r.b", "for-a.b"]));
    assert_eq!(hosts(&snapshot(&all, &sidecar_in("a"))), set(&["r.a"]));
    assert_eq!(
        hosts(&snapshot(&all, &sidecar_in("c"))),
        set(&["m.istio-system"])
    );
}

#[test]
fn gateways_ignore_sidecars_but_not_export_to() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: a}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 18080, name: http, protocol: HTTP}, hosts: [\"*/*\"]}]\n---\n";
    let config = format!("{gw}{}", sidecar("a", "  egress: [{hosts: [\"./*\"]}]"));
    let gateway = ProxyConfig {
        namespace: "a".into(),
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        ..ProxyConfig::default()
    };
    let mut want: Vec<&str> = EVERYONE.to_vec();
    want.push("for-a.b");
    assert_eq!(hosts(&snapshot(&config, &gateway)), set(&want));
}

#[test]
fn a_gateway_route_must_be_exported_to_the_gateway_namespace() {
    let gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: gw}\nspec:\n  servers: [{port: {number: 18080, name: http, protocol: HTTP}, hosts: [\"*/*\"]}]\n---\n";
    let vs = |name: &str, export: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: b}}\nspec:\n  hosts: [{name}.example.com]\n  gateways: [gw/gw]\n  exportTo: [{export}]\n  http: [{{route: [{{destination: {{host: r.b.svc.cluster.local}}}}]}}]\n---\n")
    };
    let config = format!("{gw}{}{}", vs("seen", "gw"), vs("unseen", "\".\""));
    let gateway = ProxyConfig {
        namespace: "gw".into(),
        mesh_role: false,
        ..ProxyConfig::default()
    };
    let d = domains(&snapshot(&config, &gateway));
    assert!(d.contains("seen.example.com"), "{d:?}");
    assert!(!d.contains("unseen.example.com"), "{d:?}");
}

#[test]
fn outbound_traffic_policy_comes_from_the_sidecar_else_the_mesh() {
    let registry_only = ProxyConfig {
        outbound_traffic_policy: OutboundMode::RegistryOnly,
        ..sidecar_in("a")
    };
    let mode = |sc: &str| format!("  outboundTrafficPolicy: {{mode: {sc}}}");
    // (Sidecar, mesh default REGISTRY_ONLY, black-holed)
    let table: &[(Option<&str>, bool, bool)] = &[
        (None, false, false),
        (None, true, true),
        (Some("REGISTRY_ONLY"), false, true),
        (Some("ALLOW_ANY"), true, false),
    ];
    for (sc, mesh_registry_only, want) in table {
        let extra = sc.map(|m| sidecar("a", &mode(m))).unwrap_or_default();
        let proxy = if *mesh_registry_only {
            registry_only.clone()
        } else {
            sidecar_in("a")
        };
        let s = snapshot(&extra, &proxy);
        assert_eq!(
            s.outbound.black_hole.as_ref().map(|c| c.name.as_str()),
            want.then_some("BlackHoleCluster"),
            "Sidecar {sc:?}, mesh REGISTRY_ONLY {mesh_registry_only}"
        );
    }
}

#[test]
fn analyze_reports_a_route_to_a_service_its_audience_cannot_see() {
    let vs = |name: &str, ns: &str, export: &str, dest: &str| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  hosts: [{name}.example.com]\n  exportTo: [{export}]\n  http: [{{route: [{{destination: {{host: {dest}}}}}]}}]\n---\n")
    };
    let config = [
        services(),
        // private.b is exported to b only: a route of namespace a cannot reach it.
        vs("blind", "a", "\".\"", "private.b.svc.cluster.local"),
        // for-a.b is exported to a: fine from a.
        vs("fine", "a", "\".\"", "for-a.b.svc.cluster.local"),
        // Exported to b, where private.b is visible: fine.
        vs("via-b", "a", "b", "private.b.svc.cluster.local"),
    ]
    .concat();
    let parsed = sluice_model::parse_text(&config, Some("t.yaml".into()));
    let found: Vec<String> = sluice_config::analyze::analyze(&parsed.resources)
        .into_iter()
        .filter(|d| d.code == sluice_model::codes::REFERENCED_RESOURCE_NOT_FOUND)
        .map(|d| {
            format!(
                "{} {}",
                d.resource.map(|r| r.name).unwrap_or_default(),
                d.message
            )
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("blind "), "{found:#?}");
    assert!(found[0].contains("ServiceEntry b/private"), "{found:#?}");
}

#[test]
fn a_delegate_follows_its_root_through_the_egress_scope() {
    let vs = r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: a}
spec:
  hosts: [r.a.svc.cluster.local]
  http: [{match: [{uri: {prefix: /b}}], delegate: {name: leaf, namespace: b}}, {route: [{destination: {host: r.a.svc.cluster.local}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: leaf, namespace: b}
spec:
  http: [{route: [{destination: {host: r.b.svc.cluster.local}}], timeout: 7s}]
---
"#;
    let body = "  egress: [{hosts: [\"./*\", \"b/*\"]}]";
    let s = snapshot(&format!("{vs}{}", sidecar("a", body)), &sidecar_in("a"));
    let delegated = s
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .filter(|vh| vh.domains.iter().any(|d| d == "r.a.svc.cluster.local"))
        .flat_map(|vh| vh.routes.iter())
        .any(|r| r.policy.timeout == Some(std::time::Duration::from_secs(7)));
    let routes: Vec<String> = s
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .filter(|vh| vh.domains.iter().any(|d| d == "r.a.svc.cluster.local"))
        .flat_map(|vh| vh.routes.iter())
        .map(|r| format!("{:?}", r.policy.timeout))
        .collect();
    assert!(
        delegated,
        "the delegate's route is compiled under the root: {routes:?} {:#?}",
        s.diagnostics
    );
}

/// A DestinationRule for `r.b` in `ns` with one subset named `subset`.
fn dr_for_r_b(ns: &str, subset: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r-b-{subset}, namespace: {ns}}}\nspec:\n  host: r.b.svc.cluster.local\n  subsets: [{{name: {subset}, labels: {{version: v1}}}}]\n---\n"
    )
}

/// The subsets the proxy built clusters for on `r.b` port 80.
fn r_b_subsets(s: &Snapshot) -> BTreeSet<String> {
    s.clusters
        .keys()
        .filter_map(|k| k.strip_prefix("outbound|80|"))
        .filter_map(|k| k.strip_suffix("|r.b.svc.cluster.local"))
        .filter(|subset| !subset.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn destination_rules_are_looked_up_in_the_proxy_then_the_service_then_the_root_namespace() {
    let all = [
        dr_for_r_b("a", "client"),
        dr_for_r_b("b", "service"),
        dr_for_r_b("istio-system", "root"),
        dr_for_r_b("c", "other"),
    ]
    .concat();
    let no_service_rule = [dr_for_r_b("istio-system", "root"), dr_for_r_b("c", "other")].concat();
    let third_only = dr_for_r_b("c", "other");
    // (rules, proxy namespace, the subset it applies; `None`: no rule applies)
    let table: &[(&str, &str, Option<&str>)] = &[
        (&all, "a", Some("client")),
        (&all, "b", Some("service")),
        (&all, "c", Some("other")),
        (&all, "d", Some("service")),
        (&no_service_rule, "d", Some("root")),
        (&no_service_rule, "b", Some("root")),
        (&third_only, "d", None),
        (&third_only, "c", Some("other")),
    ];
    for (rules, ns, expected) in table {
        let s = snapshot(rules, &sidecar_in(ns));
        assert_eq!(
            r_b_subsets(&s),
            set(expected.as_slice()),
            "proxy in {ns} with {rules}"
        );
    }
}
