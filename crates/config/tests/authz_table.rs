//! AuthorizationPolicy evaluation as tables: policy YAML in, request → allowed or denied.
//! Every `from`/`to`/`when` field with a positive and a negative case, TCP versus HTTP as in
//! Istio's TCP traffic task, and the shapes of Istio's samples (bookinfo `allow-nothing`,
//! `deny-method-get`, explicit deny, dry run, AUDIT, CUSTOM). No sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use sluice_config::authz::{
    evaluate, Decision, HttpAttributes, RequestAttributes, Security, VerifiedJwt,
};
use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;

fn proxy() -> ProxyConfig {
    ProxyConfig {
        labels: [("app".to_string(), "httpbin".to_string())].into(),
        namespace: "foo".into(),
        gateway_role: false,
        ..ProxyConfig::default()
    }
}

fn security_for(yaml: &str, proxy: &ProxyConfig) -> Arc<Security> {
    let parsed = sluice_model::parse_text(yaml, Some("t.yaml".into()));
    match build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        proxy,
        &StateStore::new(),
        1,
    ) {
        Ok(s) => s.security.clone(),
        Err(r) => panic!("rejected: {:#?}", r.diagnostics),
    }
}

/// A policy in namespace `foo` with one rule written as a YAML flow mapping.
fn one_rule(action: &str, rule: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: p, namespace: foo}}\nspec:\n  action: {action}\n  rules:\n  - {rule}\n"
    )
}

#[derive(Clone)]
struct Req {
    peer: Option<&'static str>,
    src: &'static str,
    remote: &'static str,
    dst: &'static str,
    port: u16,
    sni: Option<&'static str>,
    http: Option<HttpReq>,
}

#[derive(Clone)]
struct HttpReq {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    jwt: Option<VerifiedJwt>,
}

fn get() -> Req {
    Req {
        peer: None,
        src: "10.0.0.1",
        remote: "10.0.0.1",
        dst: "10.0.0.9",
        port: 9080,
        sni: None,
        http: Some(HttpReq {
            host: "httpbin.foo:8000",
            method: "GET",
            path: "/",
            headers: Vec::new(),
            jwt: None,
        }),
    }
}

fn tcp(port: u16) -> Req {
    Req {
        http: None,
        port,
        ..get()
    }
}

impl Req {
    fn peer(mut self, p: &'static str) -> Self {
        self.peer = Some(p);
        self
    }
    fn src(mut self, ip: &'static str) -> Self {
        self.src = ip;
        self.remote = ip;
        self
    }
    fn remote(mut self, ip: &'static str) -> Self {
        self.remote = ip;
        self
    }
    fn port(mut self, p: u16) -> Self {
        self.port = p;
        self
    }
    fn sni(mut self, s: &'static str) -> Self {
        self.sni = Some(s);
        self
    }
    fn h(mut self, f: impl FnOnce(&mut HttpReq)) -> Self {
        f(self.http.as_mut().expect("an HTTP request"));
        self
    }
    fn host(self, host: &'static str) -> Self {
        self.h(|h| h.host = host)
    }
    fn method(self, m: &'static str) -> Self {
        self.h(|h| h.method = m)
    }
    fn path(self, p: &'static str) -> Self {
        self.h(|h| h.path = p)
    }
    fn header(self, n: &'static str, v: &'static str) -> Self {
        self.h(|h| h.headers.push((n, v)))
    }
    fn jwt(self, claims: Value) -> Self {
        let principal = match (claims.get("iss"), claims.get("sub")) {
            (Some(Value::String(i)), Some(Value::String(s))) => Some(format!("{i}/{s}")),
            _ => None,
        };
        self.h(|h| h.jwt = Some(VerifiedJwt { principal, claims }))
    }
}

const SLEEP: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
const OTHER: &str = "spiffe://cluster.local/ns/bar/sa/curl";

fn decide(sec: &Security, r: &Req) -> Decision {
    let mut headers = HeaderMap::new();
    if let Some(h) = &r.http {
        for (n, v) in &h.headers {
            headers.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
    }
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let attrs = RequestAttributes {
        peer_principal: r.peer,
        source_ip: ip(r.src),
        remote_ip: ip(r.remote),
        destination_ip: ip(r.dst),
        destination_port: r.port,
        sni: r.sni,
        http: r.http.as_ref().map(|h| HttpAttributes {
            host: h.host,
            method: h.method,
            path: h.path,
            headers: &headers,
            request_auth: h.jwt.as_ref(),
        }),
    };
    evaluate(&sec.authz, &attrs)
}

fn check_table(action: &str, cases: &[(&str, Req, bool)]) {
    for (rule, req, want) in cases {
        let sec = security_for(&one_rule(action, rule), &proxy());
        let d = decide(&sec, req);
        assert_eq!(d.allowed, *want, "{action} {rule}: {d:?}");
    }
}

fn idp() -> Value {
    json!({"iss": "https://idp.example.org", "sub": "alice", "aud": ["shop", "admin-ui"], "azp": "web",
           "groups": ["dev", "ops"], "account": {"tier": "gold", "level": 3}, "email_verified": true})
}

#[test]
fn source_fields() {
    check_table(
        "ALLOW",
        &[
            (
                "{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}",
                get().peer(OTHER),
                false,
            ),
            (
                "{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}",
                get(),
                false,
            ),
            (
                "{from: [{source: {principals: [\"*\"]}}]}",
                get().peer(OTHER),
                true,
            ),
            ("{from: [{source: {principals: [\"*\"]}}]}", get(), false),
            (
                "{from: [{source: {principals: [\"cluster.local/ns/foo/*\"]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {principals: [\"*/sa/curl\"]}}]}",
                get().peer(OTHER),
                true,
            ),
            (
                "{from: [{source: {principals: [\"*/sa/curl\"]}}]}",
                get().peer(SLEEP),
                false,
            ),
            (
                "{from: [{source: {notPrincipals: [cluster.local/ns/foo/sa/sleep]}}]}",
                get(),
                true,
            ),
            (
                "{from: [{source: {notPrincipals: [cluster.local/ns/foo/sa/sleep]}}]}",
                get().peer(SLEEP),
                false,
            ),
            ("{from: [{source: {notPrincipals: [\"*\"]}}]}", get(), true),
            (
                "{from: [{source: {namespaces: [foo]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {namespaces: [foo]}}]}",
                get().peer(OTHER),
                false,
            ),
            ("{from: [{source: {namespaces: [foo]}}]}", get(), false),
            (
                "{from: [{source: {namespaces: [\"b*\"]}}]}",
                get().peer(OTHER),
                true,
            ),
            (
                "{from: [{source: {notNamespaces: [foo]}}]}",
                get().peer(OTHER),
                true,
            ),
            (
                "{from: [{source: {notNamespaces: [foo]}}]}",
                get().peer(SLEEP),
                false,
            ),
            (
                "{from: [{source: {serviceAccounts: [sleep]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {serviceAccounts: [bar/sleep]}}]}",
                get().peer(SLEEP),
                false,
            ),
            (
                "{from: [{source: {serviceAccounts: [bar/curl]}}]}",
                get().peer(OTHER),
                true,
            ),
            (
                "{from: [{source: {notServiceAccounts: [bar/curl]}}]}",
                get().peer(OTHER),
                false,
            ),
            (
                "{from: [{source: {trustDomains: [cluster.local]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {trustDomains: [\"*.example\"]}}]}",
                get().peer(SLEEP),
                false,
            ),
            (
                "{from: [{source: {trustDomains: [\"cluster.*\"]}}]}",
                get().peer(SLEEP),
                true,
            ),
            (
                "{from: [{source: {notTrustDomains: [cluster.local]}}]}",
                get().peer(SLEEP),
                false,
            ),
            ("{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}", get(), true),
            (
                "{from: [{source: {ipBlocks: [10.0.0.0/24]}}]}",
                get().src("192.168.1.1"),
                false,
            ),
            ("{from: [{source: {ipBlocks: [10.0.0.1]}}]}", get(), true),
            (
                "{from: [{source: {notIpBlocks: [10.0.0.0/24]}}]}",
                get(),
                false,
            ),
            (
                "{from: [{source: {remoteIpBlocks: [1.2.3.0/24]}}]}",
                get().remote("1.2.3.4"),
                true,
            ),
            (
                "{from: [{source: {remoteIpBlocks: [1.2.3.0/24]}}]}",
                get().src("1.2.3.4").remote("5.6.7.8"),
                false,
            ),
            (
                "{from: [{source: {notRemoteIpBlocks: [1.2.3.0/24]}}]}",
                get().remote("1.2.3.4"),
                false,
            ),
            (
                "{from: [{source: {requestPrincipals: [\"*\"]}}]}",
                get().jwt(idp()),
                true,
            ),
            (
                "{from: [{source: {requestPrincipals: [\"*\"]}}]}",
                get(),
                false,
            ),
            (
                "{from: [{source: {requestPrincipals: [\"*\"]}}]}",
                get().jwt(json!({"iss": "https://idp.example.org"})),
                false,
            ),
            (
                "{from: [{source: {requestPrincipals: [https://idp.example.org/alice]}}]}",
                get().jwt(idp()),
                true,
            ),
            (
                "{from: [{source: {requestPrincipals: [https://idp.example.org/bob]}}]}",
                get().jwt(idp()),
                false,
            ),
            (
                "{from: [{source: {requestPrincipals: [\"https://idp.example.org/*\"]}}]}",
                get().jwt(idp()),
                true,
            ),
            (
                "{from: [{source: {notRequestPrincipals: [\"*\"]}}]}",
                get(),
                true,
            ),
            (
                "{from: [{source: {notRequestPrincipals: [\"*\"]}}]}",
                get().jwt(idp()),
                false,
            ),
            // Any `from` entry; inside one, every field.
            (
                "{from: [{source: {namespaces: [x]}}, {source: {namespaces: [bar]}}]}",
                get().peer(OTHER),
                true,
            ),
            (
                "{from: [{source: {namespaces: [bar], ipBlocks: [9.9.9.9]}}]}",
                get().peer(OTHER),
                false,
            ),
        ],
    );
}

#[test]
fn operation_fields() {
    check_table(
        "ALLOW",
        &[
            (
                "{to: [{operation: {hosts: [Httpbin.Foo:8000]}}]}",
                get(),
                true,
            ),
            ("{to: [{operation: {hosts: [httpbin.foo]}}]}", get(), false),
            (
                "{to: [{operation: {hosts: [httpbin.foo, \"httpbin.foo:*\"]}}]}",
                get(),
                true,
            ),
            (
                "{to: [{operation: {hosts: [\"*.foo:8000\"]}}]}",
                get(),
                true,
            ),
            (
                "{to: [{operation: {notHosts: [\"httpbin.foo:8000\"]}}]}",
                get().host("HTTPBIN.foo:8000"),
                false,
            ),
            ("{to: [{operation: {ports: [\"9080\"]}}]}", get(), true),
            ("{to: [{operation: {ports: [\"9090\"]}}]}", get(), false),
            ("{to: [{operation: {notPorts: [\"9080\"]}}]}", get(), false),
            ("{to: [{operation: {methods: [GET, HEAD]}}]}", get(), true),
            ("{to: [{operation: {methods: [get]}}]}", get(), false),
            (
                "{to: [{operation: {notMethods: [GET]}}]}",
                get().method("POST"),
                true,
            ),
            (
                "{to: [{operation: {paths: [/api/*]}}]}",
                get().path("/api/items"),
                true,
            ),
            (
                "{to: [{operation: {paths: [/api/*]}}]}",
                get().path("/other"),
                false,
            ),
            (
                "{to: [{operation: {paths: [\"*/status\"]}}]}",
                get().path("/a/status"),
                true,
            ),
            (
                "{to: [{operation: {paths: [/headers]}}]}",
                get().path("/headers"),
                true,
            ),
            (
                "{to: [{operation: {paths: [/headers]}}]}",
                get().path("/Headers"),
                false,
            ),
            (
                "{to: [{operation: {paths: [\"/users/{*}\"]}}]}",
                get().path("/users/7"),
                true,
            ),
            (
                "{to: [{operation: {paths: [\"/users/{*}\"]}}]}",
                get().path("/users/7/orders"),
                false,
            ),
            (
                "{to: [{operation: {paths: [\"/api/{*}/items/{**}\"]}}]}",
                get().path("/api/v1/items/a/b"),
                true,
            ),
            (
                "{to: [{operation: {paths: [\"/api/{*}/items/{**}\"]}}]}",
                get().path("/api/v1/other/a"),
                false,
            ),
            (
                "{to: [{operation: {notPaths: [/admin*]}}]}",
                get().path("/admin/x"),
                false,
            ),
            (
                "{to: [{operation: {methods: [GET]}}, {operation: {methods: [POST]}}]}",
                get().method("POST"),
                true,
            ),
        ],
    );
}

#[test]
fn conditions() {
    check_table(
        "ALLOW",
        &[
            ("{when: [{key: \"request.headers[x-token]\", values: [admin]}]}", get().header("x-token", "admin"), true),
            ("{when: [{key: \"request.headers[X-Token]\", values: [admin]}]}", get().header("x-token", "admin"), true),
            ("{when: [{key: \"request.headers[x-token]\", values: [admin]}]}", get().header("x-token", "guest"), false),
            ("{when: [{key: \"request.headers[x-token]\", values: [admin]}]}", get(), false),
            ("{when: [{key: \"request.headers[x-token]\", values: [\"a,b\"]}]}", get().header("x-token", "a").header("x-token", "b"), true),
            ("{when: [{key: \"request.headers[x-token]\", notValues: [admin]}]}", get(), true),
            ("{when: [{key: \"request.headers[x-token]\", values: [\"*\"], notValues: [guest]}]}", get().header("x-token", "guest"), false),
            ("{when: [{key: source.ip, values: [10.0.0.0/8]}]}", get(), true),
            ("{when: [{key: source.ip, notValues: [10.0.0.0/8]}]}", get(), false),
            ("{when: [{key: remote.ip, values: [1.2.3.4]}]}", get().remote("1.2.3.4"), true),
            ("{when: [{key: remote.ip, values: [1.2.3.4]}]}", get(), false),
            ("{when: [{key: source.namespace, values: [bar]}]}", get().peer(OTHER), true),
            ("{when: [{key: source.namespace, values: [bar]}]}", get().peer(SLEEP), false),
            ("{when: [{key: source.principal, values: [cluster.local/ns/foo/sa/sleep]}]}", get().peer(SLEEP), true),
            ("{when: [{key: source.principal, values: [cluster.local/ns/foo/sa/sleep]}]}", get(), false),
            ("{when: [{key: source.serviceAccount, values: [sleep]}]}", get().peer(SLEEP), true),
            ("{when: [{key: source.serviceAccount, values: [sleep]}]}", get().peer(OTHER), false),
            ("{when: [{key: source.trustDomain, values: [cluster.local]}]}", get().peer(SLEEP), true),
            ("{when: [{key: source.trustDomain, values: [other.td]}]}", get().peer(SLEEP), false),
            ("{when: [{key: request.auth.principal, values: [https://idp.example.org/alice]}]}", get().jwt(idp()), true),
            ("{when: [{key: request.auth.principal, values: [https://idp.example.org/alice]}]}", get(), false),
            ("{when: [{key: request.auth.audiences, values: [shop]}]}", get().jwt(idp()), true),
            ("{when: [{key: request.auth.audiences, values: [other]}]}", get().jwt(idp()), false),
            ("{when: [{key: request.auth.presenter, values: [web]}]}", get().jwt(idp()), true),
            ("{when: [{key: request.auth.presenter, values: [cli]}]}", get().jwt(idp()), false),
            ("{when: [{key: \"request.auth.claims[groups]\", values: [ops]}]}", get().jwt(idp()), true),
            ("{when: [{key: \"request.auth.claims[groups]\", values: [qa]}]}", get().jwt(idp()), false),
            ("{when: [{key: \"request.auth.claims[account][tier]\", values: [gold]}]}", get().jwt(idp()), true),
            ("{when: [{key: \"request.auth.claims[account][level]\", values: [\"3\"]}]}", get().jwt(idp()), false),
            ("{when: [{key: \"request.auth.claims[email_verified]\", values: [\"true\"]}]}", get().jwt(idp()), false),
            ("{when: [{key: \"request.auth.claims[groups]\", values: [ops]}]}", get(), false),
            ("{when: [{key: destination.ip, values: [10.0.0.9]}]}", get(), true),
            ("{when: [{key: destination.ip, values: [10.0.0.8]}]}", get(), false),
            ("{when: [{key: destination.port, values: [\"9080\"]}]}", get(), true),
            ("{when: [{key: destination.port, values: [\"9080\"]}]}", get().port(9090), false),
            ("{when: [{key: connection.sni, values: [\"outbound_.8000_._.httpbin.foo.svc.cluster.local\"]}]}", get().sni("outbound_.8000_._.httpbin.foo.svc.cluster.local"), true),
            ("{when: [{key: connection.sni, values: [\"*.example.com\"]}]}", get(), false),
            ("{when: [{key: \"experimental.envoy.filters.network.mysql_proxy[db.table]\", values: [\"[update]\"]}]}", get(), false),
            // Every condition must hold.
            ("{when: [{key: source.ip, values: [10.0.0.1]}, {key: destination.port, values: [\"1\"]}]}", get(), false),
        ],
    );
}

#[test]
fn trust_domain_aliases_stand_for_the_local_mesh() {
    let mut p = proxy();
    p.trust_domain = "new.td".into();
    p.trust_domain_aliases = vec!["old.td".into()];
    let yaml = one_rule(
        "ALLOW",
        "{from: [{source: {principals: [cluster.local/ns/foo/sa/sleep]}}]}",
    );
    let sec = security_for(&yaml, &p);
    for (peer, want) in [
        ("spiffe://new.td/ns/foo/sa/sleep", true),
        ("spiffe://old.td/ns/foo/sa/sleep", true),
        ("spiffe://cluster.local/ns/foo/sa/sleep", false),
        ("spiffe://evil.td/ns/foo/sa/sleep", false),
    ] {
        assert_eq!(decide(&sec, &get().peer(peer)).allowed, want, "{peer}");
    }
}

/// Istio's "Authorization for TCP traffic" task: tcp-echo on 9000, 9001 and 9002.
#[test]
fn tcp_traffic_task() {
    let cases: &[(&str, &str, [bool; 3])] = &[
        (
            "ALLOW",
            "{to: [{operation: {ports: [\"9000\", \"9001\"]}}]}",
            [true, true, false],
        ),
        (
            "ALLOW",
            "{to: [{operation: {methods: [GET], ports: [\"9000\"]}}]}",
            [false, false, false],
        ),
        (
            "DENY",
            "{to: [{operation: {methods: [GET]}}]}",
            [false, false, false],
        ),
        (
            "DENY",
            "{to: [{operation: {methods: [GET], ports: [\"9000\"]}}]}",
            [false, true, true],
        ),
        // requestPrincipals are HTTP-only too.
        (
            "DENY",
            "{from: [{source: {requestPrincipals: [\"*\"]}}]}",
            [false, false, false],
        ),
        (
            "ALLOW",
            "{from: [{source: {requestPrincipals: [\"*\"]}}]}",
            [false, false, false],
        ),
        (
            "ALLOW",
            "{when: [{key: \"request.headers[x]\", values: [y]}]}",
            [false, false, false],
        ),
    ];
    for (action, rule, want) in cases {
        let sec = security_for(&one_rule(action, rule), &proxy());
        for (port, want) in [9000, 9001, 9002].into_iter().zip(want) {
            let d = decide(&sec, &tcp(port));
            assert_eq!(d.allowed, *want, "{action} {rule} on TCP port {port}");
        }
    }
    // The same DENY on HTTP requests keeps its method.
    let sec = security_for(
        &one_rule(
            "DENY",
            "{to: [{operation: {methods: [GET], ports: [\"9000\"]}}]}",
        ),
        &proxy(),
    );
    assert!(!decide(&sec, &get().port(9000)).allowed);
    assert!(decide(&sec, &get().port(9000).method("POST")).allowed);
    assert!(decide(&sec, &get().port(9001)).allowed);
}

#[test]
fn bookinfo_allow_nothing_denies_everything() {
    let sec = security_for(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\nspec: {}\n",
        &proxy(),
    );
    for r in [get(), get().peer(SLEEP).method("POST"), tcp(9000)] {
        let d = decide(&sec, &r);
        assert!(!d.allowed);
        assert_eq!(
            d.details().as_deref(),
            Some("rbac_access_denied_matched_policy[none]")
        );
    }
}

#[test]
fn deny_method_get_names_the_rule_and_overrides_allow() {
    let yaml = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: foo}
spec:
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-method-get, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {methods: [POST]}}]
  - to: [{operation: {methods: [GET]}}]
";
    let sec = security_for(yaml, &proxy());
    let d = decide(&sec, &get());
    assert!(!d.allowed);
    assert_eq!(
        d.details().as_deref(),
        Some("rbac_access_denied_matched_policy[ns[foo]-policy[deny-method-get]-rule[1]]")
    );
    let d = decide(&sec, &get().method("PUT"));
    assert!(d.allowed);
    assert_eq!(d.details(), None);
}

/// Istio's explicit-deny sample: DENY unless `x-token: admin`.
#[test]
fn explicit_deny_with_not_values() {
    let sec = security_for(
        &one_rule(
            "DENY",
            "{when: [{key: \"request.headers[x-token]\", notValues: [admin]}]}",
        ),
        &proxy(),
    );
    assert!(!decide(&sec, &get()).allowed);
    assert!(!decide(&sec, &get().header("x-token", "guest")).allowed);
    assert!(decide(&sec, &get().header("x-token", "admin")).allowed);
}

#[test]
fn audit_never_changes_the_outcome() {
    let sec = security_for(
        &one_rule("AUDIT", "{to: [{operation: {paths: [/headers]}}]}"),
        &proxy(),
    );
    let d = decide(&sec, &get().path("/headers"));
    assert!(d.allowed);
    assert_eq!(d.audit_policy.as_deref(), Some("ns[foo]-policy[p]-rule[0]"));
    let d = decide(&sec, &get().path("/ip"));
    assert!(d.allowed);
    assert_eq!(d.audit_policy, None);
}

#[test]
fn custom_without_a_provider_denies_what_it_matches() {
    let yaml = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: sample-ext-authz-grpc}
  rules: [{to: [{operation: {paths: [/headers]}}]}]
";
    let sec = security_for(yaml, &proxy());
    let d = decide(&sec, &get().path("/headers"));
    assert!(!d.allowed);
    assert!(d
        .details()
        .unwrap()
        .contains("ns[foo]-policy[ext-authz]-rule[0]-deny-due-to-bad-CUSTOM-action"));
    assert!(decide(&sec, &get().path("/ip")).allowed);
}

/// Istio's dry-run task: a dry-run DENY on `/headers` lets requests through and reports the
/// shadow denial.
#[test]
fn dry_run_only_feeds_the_shadow_result() {
    let yaml = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-path-headers
  namespace: foo
  annotations: {istio.io/dry-run: \"true\"}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/headers]}}]}]
";
    let sec = security_for(yaml, &proxy());
    let d = decide(&sec, &get().path("/headers"));
    assert!(d.allowed);
    let shadow = d.shadow_deny.expect("a shadow result");
    assert!(!shadow.allowed);
    assert_eq!(
        shadow.effective_policy_id.as_deref(),
        Some("ns[foo]-policy[deny-path-headers]-rule[0]")
    );
    assert!(d.shadow_allow.is_none());
    let d = decide(&sec, &get().path("/ip"));
    assert!(d.allowed && d.shadow_deny.unwrap().allowed);

    // A dry-run ALLOW: the shadow says what enforcing it would do.
    let yaml = yaml.replace("action: DENY", "action: ALLOW");
    let sec = security_for(&yaml, &proxy());
    let d = decide(&sec, &get().path("/ip"));
    assert!(d.allowed);
    assert!(!d.shadow_allow.unwrap().allowed);
}

#[test]
fn attachment_follows_istio() {
    let yaml = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: bar}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-app, namespace: foo}
spec: {selector: {matchLabels: {app: productpage}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-target-ref, namespace: foo}
spec:
  targetRefs: [{kind: Service, group: \"\", name: httpbin}]
";
    let sec = security_for(yaml, &proxy());
    assert!(sec.authz.is_empty());
    assert!(decide(&sec, &get()).allowed);

    // Root-namespace selectors match workloads of every namespace.
    let root = "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-deny, namespace: istio-system}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules: [{to: [{operation: {paths: [/admin]}}]}]
";
    let sec = security_for(root, &proxy());
    assert!(!sec.authz.is_empty());
    assert!(!decide(&sec, &get().path("/admin")).allowed);
    assert!(decide(&sec, &get()).allowed);
}
