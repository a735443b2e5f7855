//! Delegation as tables: root and delegate VirtualServices in, merged routes and findings out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::HeaderMap;
use sluice_config::matcher::StrMatch;
use sluice_config::route_table::{Route, RouteAction};
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
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

const CONFIG: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root}
spec:
  hosts: [reviews]
  http:
  - name: a
    match: [{uri: {prefix: /a}, headers: {x-root: {exact: "1"}}, port: 9080}, {uri: {prefix: /b}}]
    delegate: {name: sub-a}
    timeout: 5s
    retries: {attempts: 4}
    mirror: {host: reviews, subset: v2}
    headers: {response: {set: {x-from: root}}}
  - name: exact
    match: [{uri: {exact: /e}}]
    delegate: {name: sub-e}
  - name: missing
    match: [{uri: {prefix: /m}}]
    delegate: {name: nowhere}
  - name: other-ns
    match: [{uri: {prefix: /o}}]
    delegate: {name: sub-o, namespace: other}
  - name: fallback
    route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sub-a}
spec:
  http:
  - name: deeper
    match: [{uri: {prefix: /a/b}, headers: {x-sub: {exact: "2"}}}]
    timeout: 1s
    route: [{destination: {host: reviews, subset: v2}}]
  - name: outside
    match: [{uri: {prefix: /z}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: port-conflict
    match: [{uri: {prefix: /a/p}, port: 9090}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: case-conflict
    match: [{uri: {prefix: /a/c}, ignoreUriCase: true}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: regex-conflict
    match: [{uri: {regex: "/a/[0-9]+"}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
    timeout: 2s
    headers: {response: {set: {x-from: sub}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sub-e}
spec:
  http:
  - name: prefix-under-exact
    match: [{uri: {prefix: /e}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - name: same-exact
    match: [{uri: {exact: /e}, method: {exact: POST}}]
    route: [{destination: {host: reviews, subset: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sub-o, namespace: other}
spec:
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
"#;

/// Request headers of a table row.
type Headers<'a> = &'a [(&'static str, &'a str)];

fn snapshot() -> Snapshot {
    let parsed =
        sluice_model::parse_text(&format!("{SERVICES}---\n{CONFIG}"), Some("t.yaml".into()));
    let proxy = ProxyConfig {
        gateway_role: false,
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

fn routes(s: &Snapshot) -> &[Route] {
    let vh = s
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .find(|vh| vh.name == "reviews.default.svc.cluster.local:9080")
        .unwrap();
    &vh.routes
}

fn find<'s>(s: &'s Snapshot, name: &str) -> &'s Route {
    routes(s)
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn uri(r: &Route, entry: usize) -> String {
    match &r.matches[entry].uri {
        Some(StrMatch::Prefix(p)) => format!("prefix:{p}"),
        Some(StrMatch::Exact(e)) => format!("exact:{e}"),
        Some(StrMatch::Regex(re)) => format!("regex:{}", re.as_str()),
        Some(StrMatch::Present) => "present".into(),
        None => "-".into(),
    }
}

fn cluster(r: &Route) -> String {
    match &r.action {
        RouteAction::Forward(f) => f.destinations[0].cluster_name.to_string(),
        _ => "not a forward".into(),
    }
}

#[test]
fn delegated_rules_replace_the_root_rule_in_order() {
    let s = snapshot();
    let names: Vec<&str> = routes(&s).iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["a-deeper", "a", "exact-same-exact", "other-ns", "fallback"]
    );
}

#[test]
fn match_entries_are_combined_with_every_compatible_root_entry() {
    let s = snapshot();
    let deeper = find(&s, "a-deeper");
    // `/a/b` is under the root's `/a` entry only (not `/b`); headers are unioned.
    assert_eq!(deeper.matches.len(), 1);
    assert_eq!(uri(deeper, 0), "prefix:/a/b");
    let headers: Vec<&str> = deeper.matches[0]
        .headers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(headers, ["x-root", "x-sub"]);
    // A delegate rule without matches takes the root's entries.
    let all = find(&s, "a");
    assert_eq!(all.matches.len(), 2);
    assert_eq!(
        (uri(all, 0), uri(all, 1)),
        ("prefix:/a".into(), "prefix:/b".into())
    );
    // Exact under exact keeps the delegate's extra condition.
    let e = find(&s, "exact-same-exact");
    assert_eq!(uri(e, 0), "exact:/e");
    assert!(e.matches[0].method.is_some());
}

#[test]
fn unset_delegate_fields_inherit_from_the_root() {
    let s = snapshot();
    let deeper = find(&s, "a-deeper");
    assert_eq!(deeper.policy.timeout, Some(Duration::from_secs(1)));
    assert_eq!(deeper.policy.retry.as_ref().unwrap().num_retries, 4);
    assert_eq!(
        &*deeper.policy.mirrors[0].destination.cluster_name,
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    assert_eq!(
        deeper.policy.headers().response.set,
        vec![("x-from".to_string(), "root".to_string())]
    );
    assert_eq!(
        cluster(deeper),
        "outbound|9080|v2|reviews.default.svc.cluster.local"
    );
    // The delegate's own values win.
    let all = find(&s, "a");
    assert_eq!(all.policy.timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        all.policy.headers().response.set,
        vec![("x-from".to_string(), "sub".to_string())]
    );
    // The route's source is the delegate rule.
    let src = deeper.source.virtual_service.as_ref().unwrap();
    assert_eq!((src.name.as_str(), deeper.source.rule), ("sub-a", 0));
}

#[test]
fn short_names_resolve_in_the_namespace_that_wrote_them() {
    let s = snapshot();
    // sub-o lives in `other`: its `reviews` is reviews.other..., not the default service.
    assert_eq!(
        cluster(find(&s, "other-ns")),
        "outbound|9080|v1|reviews.other.svc.cluster.local"
    );
}

#[test]
fn conflicts_and_missing_delegates_are_reported() {
    let s = snapshot();
    let has = |code: &str, name: &str, field: &str| {
        s.diagnostics.iter().any(|d| {
            d.code == code
                && d.resource.as_ref().is_some_and(|r| r.name == name)
                && d.field.as_deref() == Some(field)
        })
    };
    for k in 1..=4 {
        assert!(
            has("IST0131", "sub-a", &format!("spec.http[{k}].match")),
            "sub-a rule {k}: {:#?}",
            s.diagnostics
        );
    }
    assert!(has("IST0131", "sub-e", "spec.http[0].match"));
    assert!(!has("IST0131", "sub-a", "spec.http[0].match"));
    assert!(has("IST0101", "root", "spec.http[2].delegate"));
}

#[test]
fn requests_follow_the_merged_rules() {
    let s = snapshot();
    let l = s.listener("127.0.0.1:9080".parse().unwrap()).unwrap();
    let decide = |path: &str, hs: &[(&'static str, &str)]| {
        let mut headers = HeaderMap::new();
        for (k, v) in hs {
            headers.insert(*k, v.parse().unwrap());
        }
        let info = RequestInfo {
            method: "GET",
            scheme: "http",
            authority: "reviews",
            path_and_query: path,
            headers: &headers,
            extensions: None,
        };
        match route(l, &info) {
            Routed::Matched(m) => m.route.name.clone(),
            _ => "NR".into(),
        }
    };
    let table: &[(&str, Headers<'_>, &str)] = &[
        ("/a/b", &[("x-root", "1"), ("x-sub", "2")], "a-deeper"),
        ("/a/b", &[("x-root", "1")], "a"),
        ("/a/x", &[], "fallback"),
        ("/b/x", &[], "a"),
        ("/z", &[], "fallback"),
        ("/m", &[], "fallback"),
        ("/e", &[], "fallback"),
        ("/o/1", &[], "other-ns"),
    ];
    for (path, hs, want) in table {
        assert_eq!(decide(path, hs), *want, "{path} {hs:?}");
    }
}

#[test]
fn delegates_have_no_virtual_host() {
    let s = snapshot();
    let vhosts: Vec<&str> = s
        .listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .map(|vh| vh.name.as_str())
        .collect();
    assert_eq!(vhosts, ["reviews.default.svc.cluster.local:9080"]);
}
