//! Route policies as tables: VirtualService YAML in, compiled `RoutePolicy` out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_config::matcher::StrMatch;
use sluice_config::policy::{AbortKind, RetryOn, RoutePolicy};
use sluice_config::route_table::{Route, RouteAction};
use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
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

fn snapshot(yaml: &str) -> Snapshot {
    let parsed = sluice_model::parse_text(&format!("{SERVICES}---\n{yaml}"), Some("t.yaml".into()));
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

fn route<'s>(s: &'s Snapshot, name: &str) -> &'s Route {
    s.listeners
        .iter()
        .flat_map(|l| l.virtual_hosts.vhosts.iter())
        .flat_map(|vh| vh.routes.iter())
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route {name}"))
}

fn policy<'s>(s: &'s Snapshot, name: &str) -> &'s RoutePolicy {
    &route(s, name).policy
}

/// A VirtualService for reviews with the given rules (each gets a route to v1 unless it has one).
fn vs(rules: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\nspec:\n  hosts: [reviews]\n  http:\n{rules}"
    )
}

const DEFAULT_ON: RetryOn = RetryOn {
    five_xx: false,
    gateway_error: false,
    reset: false,
    reset_before_request: false,
    connect_failure: true,
    retriable_4xx: false,
    refused_stream: true,
    retriable_status_codes: true,
    grpc_cancelled: true,
    grpc_deadline_exceeded: false,
    grpc_internal: false,
    grpc_resource_exhausted: false,
    grpc_unavailable: true,
    retriable_headers: false,
    envoy_ratelimited: false,
    http3_post_connect_failure: false,
};

#[test]
fn retries_default_disabled_and_overridden() {
    let s = snapshot(&vs(r#"
  - name: unset
    match: [{uri: {prefix: /unset}}]
    route: [{destination: {host: reviews, subset: v1}}]
  - name: zero
    match: [{uri: {prefix: /zero}}]
    retries: {attempts: 0}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: empty
    match: [{uri: {prefix: /empty}}]
    retries: {retryIgnorePreviousHosts: false}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: attempts-only
    match: [{uri: {prefix: /only}}]
    retries: {attempts: 5}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: full
    match: [{uri: {prefix: /full}}]
    timeout: 3s
    retries:
      attempts: 3
      perTryTimeout: 500ms
      retryOn: "5xx,503,reset,retriable-4xx,unavailable,deadline-exceeded,envoy-ratelimited"
      retryIgnorePreviousHosts: false
      backoff: 100ms
    route: [{destination: {host: reviews, subset: v1}}]
  - name: codes-only
    match: [{uri: {prefix: /codes}}]
    retries: {attempts: 1, retryOn: "502,504"}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: headers
    match: [{uri: {prefix: /headers}}]
    retries: {attempts: 1, retryOn: "retriable-headers,http3-post-connect-failure", retryRemoteLocalities: true}
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    // Absent: Istio's default policy, which does not retry 503.
    let d = policy(&s, "unset").retry.clone().unwrap();
    assert_eq!(d.num_retries, 2);
    assert_eq!(d.retry_on, DEFAULT_ON);
    assert!(d.retriable_status_codes.is_empty());
    assert!(d.avoid_previous_hosts);
    assert_eq!(d.backoff_base, Duration::from_millis(25));
    assert_eq!(d.per_try_timeout, None);
    assert_eq!(policy(&s, "unset").timeout, None);

    assert!(policy(&s, "zero").retry.is_none());
    // `attempts` is a plain int in Istio: unset reads as 0 and disables retries too.
    assert!(policy(&s, "empty").retry.is_none());

    // Only attempts set: the rest stays the default.
    let a = policy(&s, "attempts-only").retry.clone().unwrap();
    assert_eq!(a.num_retries, 5);
    assert_eq!(a.retry_on, DEFAULT_ON);
    assert!(a.avoid_previous_hosts);

    let f = policy(&s, "full");
    assert_eq!(f.timeout, Some(Duration::from_secs(3)));
    let r = f.retry.clone().unwrap();
    assert_eq!(r.num_retries, 3);
    assert_eq!(r.per_try_timeout, Some(Duration::from_millis(500)));
    assert_eq!(r.backoff_base, Duration::from_millis(100));
    assert!(!r.avoid_previous_hosts);
    assert_eq!(r.retriable_status_codes, vec![503]);
    assert_eq!(
        r.retry_on,
        RetryOn {
            five_xx: true,
            reset: true,
            retriable_4xx: true,
            retriable_status_codes: true,
            grpc_unavailable: true,
            grpc_deadline_exceeded: true,
            envoy_ratelimited: true,
            ..RetryOn::default()
        }
    );
    assert!(!r.retry_remote_localities);

    let h = policy(&s, "headers").retry.clone().unwrap();
    assert!(h.retry_remote_localities);
    assert_eq!(
        h.retry_on,
        RetryOn {
            retriable_headers: true,
            http3_post_connect_failure: true,
            ..RetryOn::default()
        }
    );

    let c = policy(&s, "codes-only").retry.clone().unwrap();
    assert_eq!(c.retriable_status_codes, vec![502, 504]);
    assert_eq!(
        c.retry_on,
        RetryOn {
            retriable_status_codes: true,
            ..RetryOn::default()
        }
    );
}

#[test]
fn default_route_gets_the_default_retry_policy() {
    let s = snapshot("");
    let r = route(&s, "default");
    let retry = r.policy.retry.clone().unwrap();
    assert_eq!(retry.num_retries, 2);
    assert_eq!(retry.retry_on, DEFAULT_ON);
    assert!(r.policy.fault.is_none() && r.policy.mirrors.is_empty());
}

#[test]
fn fault_percentages_and_grpc_codes() {
    let s = snapshot(&vs(r#"
  - name: delay-no-pct
    match: [{uri: {prefix: /a}}]
    fault: {delay: {fixedDelay: 2s}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: delay-percent
    match: [{uri: {prefix: /b}}]
    fault: {delay: {fixedDelay: 7s, percent: 30}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: both
    match: [{uri: {prefix: /c}}]
    fault:
      delay: {fixedDelay: 1500ms, percentage: {value: 12.5}, percent: 90}
      abort: {httpStatus: 418, percentage: {value: 50}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: abort-no-pct
    match: [{uri: {prefix: /d}}]
    fault: {abort: {httpStatus: 500}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: grpc-unavailable
    match: [{uri: {prefix: /e}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: grpc-unauthenticated
    match: [{uri: {prefix: /f}}]
    fault: {abort: {grpcStatus: UNAUTHENTICATED, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: grpc-ok
    match: [{uri: {prefix: /g}}]
    fault: {abort: {grpcStatus: OK, percentage: {value: 100}}}
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    #[allow(clippy::type_complexity)]
    let table: &[(&str, Option<u64>, f64, Option<AbortKind>, f64)] = &[
        ("delay-no-pct", Some(2000), 0.0, None, 0.0),
        ("delay-percent", Some(7000), 30.0, None, 0.0),
        ("both", Some(1500), 12.5, Some(AbortKind::Http(418)), 50.0),
        ("abort-no-pct", None, 0.0, Some(AbortKind::Http(500)), 0.0),
        (
            "grpc-unavailable",
            None,
            0.0,
            Some(AbortKind::Grpc(14)),
            100.0,
        ),
        (
            "grpc-unauthenticated",
            None,
            0.0,
            Some(AbortKind::Grpc(16)),
            100.0,
        ),
        ("grpc-ok", None, 0.0, Some(AbortKind::Grpc(0)), 100.0),
    ];
    for (name, delay, delay_pct, abort, abort_pct) in table {
        let f = policy(&s, name).fault.clone().unwrap();
        assert_eq!(f.delay, delay.map(Duration::from_millis), "{name}");
        assert_eq!(f.delay_percent, *delay_pct, "{name}");
        assert_eq!(f.abort, *abort, "{name}");
        assert_eq!(f.abort_percent, *abort_pct, "{name}");
    }
}

#[test]
fn mirror_percentages() {
    let s = snapshot(&vs(r#"
  - name: absent
    match: [{uri: {prefix: /a}}]
    mirror: {host: reviews, subset: v2}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: explicit-zero
    match: [{uri: {prefix: /b}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 0}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: percentage
    match: [{uri: {prefix: /c}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 12.5}
    mirrorPercent: 80
    route: [{destination: {host: reviews, subset: v1}}]
  - name: deprecated
    match: [{uri: {prefix: /d}}]
    mirror: {host: reviews, subset: v2}
    mirrorPercent: 40
    route: [{destination: {host: reviews, subset: v1}}]
  - name: several
    match: [{uri: {prefix: /e}}]
    mirrors:
    - destination: {host: reviews, subset: v2}
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      percentage: {value: 5}
    - destination: {host: reviews.default.svc.cluster.local, subset: v3}
      percentage: {value: 0}
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    let table: &[(&str, &[(&str, f64)])] = &[
        (
            "absent",
            &[("outbound|9080|v2|reviews.default.svc.cluster.local", 100.0)],
        ),
        ("explicit-zero", &[]),
        (
            "percentage",
            &[("outbound|9080|v2|reviews.default.svc.cluster.local", 12.5)],
        ),
        (
            "deprecated",
            &[("outbound|9080|v2|reviews.default.svc.cluster.local", 40.0)],
        ),
        (
            "several",
            &[
                ("outbound|9080|v2|reviews.default.svc.cluster.local", 100.0),
                ("outbound|9080|v1|reviews.default.svc.cluster.local", 5.0),
            ],
        ),
    ];
    for (name, want) in table {
        let got: Vec<(&str, f64)> = policy(&s, name)
            .mirrors
            .iter()
            .map(|m| (&*m.destination.cluster_name, m.percentage))
            .collect();
        assert_eq!(&got, want, "{name}");
    }
    // The mirror's cluster is resolved like a route destination.
    assert!(policy(&s, "absent").mirrors[0]
        .destination
        .cluster
        .is_some());
}

#[test]
fn rewrites_and_authority_from_host_headers() {
    let s = snapshot(&vs(r#"
  - name: prefix
    match: [{uri: {prefix: /old}}]
    rewrite: {uri: /new, authority: svc.example.com}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: regex
    match: [{uri: {prefix: /service}}]
    rewrite: {uriRegexRewrite: {match: '^/service/([^/]+)(/.*)$', rewrite: '\2/instance/\1'}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: host-set
    match: [{uri: {prefix: /h1}}]
    headers: {request: {set: {Host: set.example.com, X-A: "1"}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: authority-add
    match: [{uri: {prefix: /h2}}]
    headers: {request: {add: {":authority": add.example.com}}}
    route: [{destination: {host: reviews, subset: v1}}]
  - name: none
    match: [{uri: {prefix: /n}}]
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    let p = policy(&s, "prefix").rewrite.clone().unwrap();
    assert_eq!(p.uri.as_deref(), Some("/new"));
    assert_eq!(p.authority.as_deref(), Some("svc.example.com"));
    assert!(p.uri_regex.is_none());

    let r = policy(&s, "regex").rewrite.clone().unwrap();
    let (re, sub) = r.uri_regex.unwrap();
    assert_eq!(sub, "${2}/instance/${1}");
    assert_eq!(
        re.replace_all("/service/foo/v1/api", sub.as_str()),
        "/v1/api/instance/foo"
    );
    assert!(r.uri.is_none() && r.authority.is_none());

    let h = policy(&s, "host-set");
    assert_eq!(
        h.rewrite.as_ref().unwrap().authority.as_deref(),
        Some("set.example.com")
    );
    // Host is not a header operation; other names are lower-cased.
    assert_eq!(
        h.headers().request.set,
        vec![("x-a".to_string(), "1".to_string())]
    );
    let a = policy(&s, "authority-add");
    assert_eq!(
        a.rewrite.as_ref().unwrap().authority.as_deref(),
        Some("add.example.com")
    );
    assert!(a.headers().is_empty());
    assert!(policy(&s, "none").rewrite.is_none());
}

#[test]
fn regex_rewrite_substitutes_every_match_and_keeps_dollars() {
    let s = snapshot(&vs(r#"
  - name: all
    rewrite: {uriRegexRewrite: {match: 'a(b)', rewrite: 'x\1$'}}
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    let (re, sub) = policy(&s, "all")
        .rewrite
        .clone()
        .unwrap()
        .uri_regex
        .unwrap();
    assert_eq!(re.replace_all("/ab/cab", sub.as_str()), "/xb$/cxb$");
}

#[test]
fn header_operations_route_and_destination() {
    let s = snapshot(&vs(r#"
  - name: headers
    headers:
      request: {set: {X-Set: a}, add: {X-Add: b}, remove: [X-Gone]}
      response: {set: {Cache-Control: no-store}, remove: [Server]}
    route:
    - destination: {host: reviews, subset: v1}
      headers: {request: {set: {X-Dest: v1}}, response: {add: {X-From: v1}}}
"#));
    let r = route(&s, "headers");
    let h = r.policy.headers();
    let pairs = |v: &[(&str, &str)]| {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(h.request.set, pairs(&[("x-set", "a")]));
    assert_eq!(h.request.add, pairs(&[("x-add", "b")]));
    assert_eq!(h.request.remove, vec!["x-gone".to_string()]);
    assert_eq!(h.response.set, pairs(&[("cache-control", "no-store")]));
    assert_eq!(h.response.remove, vec!["server".to_string()]);
    let RouteAction::Forward(f) = &r.action else {
        panic!("not a forward")
    };
    let d = &f.destinations[0].headers;
    assert_eq!(d.request.set, pairs(&[("x-dest", "v1")]));
    assert_eq!(d.response.add, pairs(&[("x-from", "v1")]));
}

#[test]
fn cors_policy() {
    let s = snapshot(&vs(r#"
  - name: cors
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}, {regex: "https://.*\\.c\\.example"}]
      allowOrigin: ["https://legacy.example"]
      allowMethods: [GET, POST]
      allowHeaders: [x-a, x-b]
      exposeHeaders: [x-c]
      maxAge: 24h
      allowCredentials: true
      unmatchedPreflights: IGNORE
    route: [{destination: {host: reviews, subset: v1}}]
  - name: any
    corsPolicy:
      allowOrigins: [{exact: "*"}]
    route: [{destination: {host: reviews, subset: v1}}]
"#));
    let c = policy(&s, "cors").cors.clone().unwrap();
    let origins = |o: &str| c.allow_origins.iter().any(|m| m.matches(o, false));
    assert!(origins("https://a.example"));
    assert!(origins("https://b.anything"));
    assert!(origins("https://x.c.example"));
    assert!(origins("https://legacy.example"));
    assert!(!origins("https://evil.example"));
    assert_eq!(c.allow_methods.as_deref(), Some("GET,POST"));
    assert_eq!(c.allow_headers.as_deref(), Some("x-a,x-b"));
    assert_eq!(c.expose_headers.as_deref(), Some("x-c"));
    assert_eq!(c.max_age_secs, Some(86400));
    assert!(c.allow_credentials);
    assert!(!c.forward_unmatched_preflights);

    let any = policy(&s, "any").cors.clone().unwrap();
    assert!(matches!(any.allow_origins.as_slice(), [StrMatch::Present]));
    assert!(any.allow_methods.is_none() && any.max_age_secs.is_none());
    assert!(!any.allow_credentials);
    assert!(any.forward_unmatched_preflights);
}
