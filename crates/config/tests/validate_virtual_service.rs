//! Webhook/CRD validation of VirtualService: one small object per rule, plus Istio samples that must pass.

mod common;

use common::*;

fn object(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: t\n  namespace: default\nspec:{spec}"
    )
}

/// Every expected (severity, field) appears for this spec, and no unexpected error.
fn check(name: &str, spec: &str, expected: &[(Severity, &str)]) {
    check_yaml(name, &object(spec), expected);
}

#[test]
fn rules() {
    let cases: &[Case] = &[
        ("no routes", "\n  hosts: [reviews]\n", &[(E, "spec")]),
        (
            "delegate with gateways and tcp",
            r#"
  gateways: [gw]
  tcp:
  - route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.gateways"), (E, "spec.tcp")],
        ),
        (
            "star host on mesh",
            r#"
  hosts: ["*"]
  http:
  - route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.hosts[0]")],
        ),
        (
            "star host on gateway is fine",
            r#"
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
  - route:
    - destination: {host: reviews}
"#,
            &[],
        ),
        (
            "invalid and duplicate hosts",
            r#"
  hosts: [bad_host]
  http:
  - route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.hosts[0]")],
        ),
        (
            "overlapping hosts",
            r#"
  hosts: ["*.foo.com", a.foo.com]
  http:
  - route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.hosts[1]")],
        ),
        (
            "gateway names",
            r#"
  hosts: [a.example.com]
  gateways: [ns/Bad_Name, gw.ns.svc.cluster.local, mesh]
  http:
  - route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.gateways[0]"), (W, "spec.gateways[1]")],
        ),
        (
            "negative weight",
            r#"
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -1
    - destination: {host: reviews, subset: v2}
      weight: 10
"#,
            &[(E, "spec.http[0].route[0].weight")],
        ),
        (
            "all weights zero",
            r#"
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
    - destination: {host: reviews, subset: v2}
      weight: 0
"#,
            &[(E, "spec.http[0].route")],
        ),
        (
            "single destination with weight 0 and weights not summing to 100",
            r#"
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /a}}]
    route:
    - destination: {host: reviews}
      weight: 0
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 80
    - destination: {host: reviews, subset: v2}
      weight: 40
"#,
            &[],
        ),
        (
            "route and redirect",
            r#"
  hosts: [reviews]
  http:
  - redirect: {uri: /x}
    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}
    route:
    - destination: {host: reviews}
"#,
            &[(E, "spec.http[0].route"), (E, "spec.http[0].fault")],
        ),
        (
            "no action",
            r#"
  hosts: [reviews]
  http:
  - match: [{uri: {prefix: /}}]
"#,
            &[(E, "spec.http[0]")],
        ),
        (
            "string matches",
            r#"
  hosts: [reviews]
  http:
  - match:
    - uri: {regex: "(unclosed"}
      headers:
        x-empty: {prefix: ""}
        "bad header": {exact: a}
        x-presence: {}
      method: {exact: GET, prefix: G}
      queryParams:
        q: {regex: "a)"}
    - uri: {prefix: ""}
      withoutHeaders:
        x-absent: {regex: "*"}
    route:
    - destination: {host: reviews}
"#,
            &[
                (E, "spec.http[0].match[0].uri.regex"),
                (E, "spec.http[0].match[0].headers.x-empty.prefix"),
                (E, r#"spec.http[0].match[0].headers["bad header"]"#),
                (E, "spec.http[0].match[0].method"),
                (E, "spec.http[0].match[0].queryParams.q.regex"),
            ],
        ),
        (
            "regex too long",
            &format!(
                "\n  hosts: [reviews]\n  http:\n  - match: [{{uri: {{regex: \"{}\"}}}}]\n    route:\n    - destination: {{host: reviews}}\n",
                "a".repeat(1025)
            ),
            &[(E, "spec.http[0].match[0].uri.regex")],
        ),
        (
            "jwt claims on mesh",
            r#"
  hosts: [reviews]
  http:
  - match:
    - headers:
        "@request.auth.claims.group": {exact: admin}
    route:
    - destination: {host: reviews}
"#,
            &[(E, r#"spec.http[0].match[0].headers["@request.auth.claims.group"]"#)],
        ),
        (
            "jwt claims on gateway",
            r#"
  hosts: [a.example.com]
  gateways: [gw]
  http:
  - match:
    - headers:
        "@request.auth.claims[groups][0]": {exact: admin}
    route:
    - destination: {host: reviews}
"#,
            &[],
        ),
        (
            "match config-time selectors",
            r#"
  hosts: [reviews]
  http:
  - match:
    - sourceLabels: {"bad key": v}
      sourceNamespace: Bad_NS
      port: 70000
      gateways: ["/x"]
    route:
    - destination: {host: reviews}
"#,
            &[
                (E, r#"spec.http[0].match[0].sourceLabels["bad key"]"#),
                (E, "spec.http[0].match[0].sourceNamespace"),
                (E, "spec.http[0].match[0].port"),
                (E, "spec.http[0].match[0].gateways[0]"),
            ],
        ),
        (
            "timeouts",
            r#"
  hosts: [reviews]
  http:
  - timeout: 0s
    route: [{destination: {host: reviews}}]
  - timeout: 1.0005s
    route: [{destination: {host: reviews}}]
  - timeout: "10"
    route: [{destination: {host: reviews}}]
  - timeout: 1.5s
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].timeout"),
                (E, "spec.http[1].timeout"),
                (E, "spec.http[2].timeout"),
            ],
        ),
        (
            "retries",
            r#"
  hosts: [reviews]
  http:
  - retries: {perTryTimeout: 2s}
    route: [{destination: {host: reviews}}]
  - retries: {attempts: 3, retryOn: "5xx,foo, reset", backoff: 0s}
    route: [{destination: {host: reviews}}]
  - retries: {attempts: -1}
    route: [{destination: {host: reviews}}]
  - retries: {attempts: 3, retryOn: "gateway-error,connect-failure,503,retriable-4xx", perTryTimeout: 500ms}
    route: [{destination: {host: reviews}}]
  - retries: {attempts: 0}
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].retries.attempts"),
                (E, "spec.http[1].retries.retryOn"),
                (E, "spec.http[1].retries.backoff"),
                (E, "spec.http[2].retries.attempts"),
            ],
        ),
        (
            "faults",
            r#"
  hosts: [reviews]
  http:
  - fault: {}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {httpStatus: 700, percentage: {value: 0.00001}}
      delay: {exponentialDelay: 1s, percentage: {value: 10}}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {grpcStatus: unavailable, percentage: {value: 10}}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {httpStatus: 503}
      delay: {fixedDelay: 7s, percent: 50}
    route: [{destination: {host: reviews}}]
  - fault:
      abort: {http2Error: x, percentage: {value: 1}}
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].fault"),
                (E, "spec.http[1].fault.abort.httpStatus"),
                (E, "spec.http[1].fault.abort.percentage.value"),
                (E, "spec.http[1].fault.delay.exponentialDelay"),
                (E, "spec.http[2].fault.abort.grpcStatus"),
                (W, "spec.http[3].fault.abort"),
                (I, "spec.http[3].fault.delay.percent"),
                (E, "spec.http[4].fault.abort.http2Error"),
            ],
        ),
        (
            "mirrors",
            r#"
  hosts: [reviews]
  http:
  - mirror: {host: reviews, subset: v2}
    mirrors: [{destination: {host: reviews}}]
    route: [{destination: {host: reviews}}]
  - mirror: {host: reviews, subset: v2}
    mirrorPercent: 150
    route: [{destination: {host: reviews}}]
  - mirror: {host: reviews, subset: v2}
    mirrorPercentage: {value: 101}
    route: [{destination: {host: reviews}}]
  - mirrors:
    - percentage: {value: 5}
    - destination: {host: reviews}
      percentage: {value: -1}
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].mirrors"),
                (E, "spec.http[1].mirrorPercent"),
                (I, "spec.http[1].mirrorPercent"),
                (E, "spec.http[2].mirrorPercentage.value"),
                (E, "spec.http[3].mirrors[0]"),
                (E, "spec.http[3].mirrors[1].percentage.value"),
            ],
        ),
        (
            "redirects",
            r#"
  hosts: [reviews]
  http:
  - redirect: {}
  - redirect: {uri: /x, redirectCode: 200, scheme: ftp}
  - redirect: {authority: a.com, port: 8080, derivePort: FROM_REQUEST_PORT}
  - redirect: {authority: a.com, derivePort: FROM_SOMEWHERE}
  - match: [{uri: {exact: /a}}]
    redirect: {prefixRewrite: /b}
  - redirect: {uri: /x, prefixRewrite: /y, redirectCode: 305}
  - match: [{uri: {prefix: /a}}]
    redirect: {prefixRewrite: /b, scheme: https, redirectCode: 308}
"#,
            &[
                (E, "spec.http[0].redirect"),
                (E, "spec.http[1].redirect.redirectCode"),
                (E, "spec.http[1].redirect.scheme"),
                (E, "spec.http[2].redirect.derivePort"),
                (E, "spec.http[3].redirect.derivePort"),
                (E, "spec.http[4].redirect.prefixRewrite"),
                (E, "spec.http[5].redirect.prefixRewrite"),
                (W, "spec.http[5].redirect.redirectCode"),
            ],
        ),
        (
            "direct responses",
            r#"
  hosts: [reviews]
  http:
  - directResponse: {status: 100}
  - directResponse: {status: 200, body: {bytes: "not base64!"}}
  - directResponse: {status: 503, body: {string: unavailable, bytes: dW5hdmFpbGFibGU=}}
  - directResponse: {body: {string: x}}
  - directResponse: {status: 200, body: {bytes: dW5hdmFpbGFibGU=}}
"#,
            &[
                (E, "spec.http[0].directResponse.status"),
                (E, "spec.http[1].directResponse.body.bytes"),
                (E, "spec.http[2].directResponse.body"),
                (E, "spec.http[3].directResponse.status"),
            ],
        ),
        (
            "large direct response body",
            &format!(
                "\n  hosts: [reviews]\n  http:\n  - directResponse: {{status: 200, body: {{string: \"{}\"}}}}\n",
                "x".repeat(101 * 1024)
            ),
            &[(W, "spec.http[0].directResponse.body")],
        ),
        (
            "rewrites",
            r#"
  hosts: [reviews]
  http:
  - rewrite: {}
    route: [{destination: {host: reviews}}]
  - rewrite: {uri: /v2, uriRegexRewrite: {match: "^/a", rewrite: /b}}
    route: [{destination: {host: reviews}}]
  - rewrite: {uriRegexRewrite: {match: "^/a"}}
    route: [{destination: {host: reviews}}]
  - rewrite: {uriRegexRewrite: {match: "(", rewrite: /b}}
    route: [{destination: {host: reviews}}]
  - rewrite: {authority: b.com}
    headers: {request: {set: {host: c.com}}}
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].rewrite"),
                (E, "spec.http[1].rewrite.uriRegexRewrite"),
                (E, "spec.http[2].rewrite.uriRegexRewrite"),
                (E, "spec.http[3].rewrite.uriRegexRewrite.match"),
                (E, "spec.http[4].headers.request.set.host"),
            ],
        ),
        (
            "header operations",
            r#"
  hosts: [reviews]
  http:
  - headers:
      request:
        set: {":path": /x, x-ok: "%DOWNSTREAM_REMOTE_ADDRESS%", x-pct: "100%%"}
        add: {x-bad: "100%"}
        remove: [host]
      response:
        set: {host: a}
        add: {x-unterminated: "%REQ(x-foo"}
    route:
    - destination: {host: reviews}
      headers:
        response: {remove: [":status"]}
"#,
            &[
                (E, r#"spec.http[0].headers.request.set[":path"]"#),
                (E, "spec.http[0].headers.request.add.x-bad"),
                (E, "spec.http[0].headers.request.remove[0]"),
                (E, "spec.http[0].headers.response.set.host"),
                (E, "spec.http[0].headers.response.add.x-unterminated"),
                (E, "spec.http[0].route[0].headers.response.remove[0]"),
            ],
        ),
        (
            "cors",
            r#"
  hosts: [reviews]
  http:
  - corsPolicy:
      allowOrigins: [{exact: ""}, {regex: ".*\\.example\\.com"}]
      allowOrigin: [a.com]
      allowMethods: [GET, FETCH]
      allowHeaders: ["bad header", "*"]
      exposeHeaders: [x-ok]
      maxAge: 1.5s
      unmatchedPreflights: DROP
    route: [{destination: {host: reviews}}]
"#,
            &[
                (E, "spec.http[0].corsPolicy.allowOrigins[0]"),
                (I, "spec.http[0].corsPolicy.allowOrigin"),
                (E, "spec.http[0].corsPolicy.allowMethods[1]"),
                (E, "spec.http[0].corsPolicy.allowHeaders[0]"),
                (E, "spec.http[0].corsPolicy.maxAge"),
                (E, "spec.http[0].corsPolicy.unmatchedPreflights"),
            ],
        ),
        (
            "delegation",
            r#"
  hosts: [reviews]
  http:
  - delegate: {name: reviews-delegate}
    redirect: {uri: /x}
    route: [{destination: {host: reviews}}]
  - delegate: {name: other, namespace: ns2}
"#,
            &[(E, "spec.http[0].redirect"), (E, "spec.http[0].route")],
        ),
        (
            "nested delegate",
            r#"
  http:
  - delegate: {name: again}
"#,
            &[(E, "spec.http[0].delegate")],
        ),
        (
            "destinations",
            r#"
  hosts: [reviews]
  http:
  - route:
    - destination: {host: "*", subset: v_1, port: {number: 70000}}
    - weight: 10
    - destination: {subset: v1}
"#,
            &[
                (E, "spec.http[0].route[0].destination.host"),
                (E, "spec.http[0].route[0].destination.subset"),
                (E, "spec.http[0].route[0].destination.port.number"),
                (E, "spec.http[0].route[1].destination"),
                (E, "spec.http[0].route[2].destination.host"),
            ],
        ),
        (
            "tls routes",
            r#"
  hosts: [a.example.com]
  tls:
  - route: [{destination: {host: a.example.com}}]
  - match:
    - sniHosts: [b.example.com, 10.0.0.1]
      destinationSubnets: [10.0.0.0/33, 10.1.0.0/16]
    - {}
  - match:
    - sniHosts: [a.example.com]
      port: 443
    route: [{destination: {host: a.example.com}}]
"#,
            &[
                (E, "spec.tls[0].match"),
                (E, "spec.tls[1].match[0].sniHosts[0]"),
                (W, "spec.tls[1].match[0].sniHosts[1]"),
                (E, "spec.tls[1].match[0].destinationSubnets[0]"),
                (E, "spec.tls[1].match[1].sniHosts"),
                (E, "spec.tls[1].route"),
            ],
        ),
        (
            "tls route with auto-generated sni on a gateway",
            r#"
  hosts: ["*.local"]
  gateways: [istio-system/eastwest]
  tls:
  - match:
    - sniHosts: ["outbound_.9080_._.reviews.default.svc.cluster.local"]
    route: [{destination: {host: reviews.default.svc.cluster.local}}]
"#,
            &[],
        ),
        (
            "tcp routes",
            r#"
  hosts: [mongo]
  tcp:
  - match: [{port: 70000, destinationSubnets: [bad], sourceSubnet: 10.0.0.0/40}]
  - match: [{port: 27017, sourceSubnet: 10.1.0.0/16}]
    route:
    - destination: {host: mongo, subset: v1}
      weight: 0
    - destination: {host: mongo, subset: v2}
"#,
            &[
                (E, "spec.tcp[0].match[0].port"),
                (E, "spec.tcp[0].match[0].destinationSubnets[0]"),
                (E, "spec.tcp[0].match[0].sourceSubnet"),
                (E, "spec.tcp[0].route"),
                (E, "spec.tcp[1].route"),
            ],
        ),
        (
            "exportTo duplicates",
            r#"
  hosts: [reviews]
  exportTo: [".", default, "~"]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
            &[(E, "spec.exportTo[1]"), (E, "spec.exportTo[2]")],
        ),
        (
            "exportTo star mixed",
            r#"
  hosts: [reviews]
  exportTo: ["*", Bad_NS]
  http: [{route: [{destination: {host: reviews}}]}]
"#,
            &[(E, "spec.exportTo[1]"), (E, "spec.exportTo")],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, spec, expected);
    }
}

#[test]
fn enum_message_lists_allowed_values() {
    let diags = schema_diags(&object(
        r#"
  hosts: [reviews]
  http:
  - redirect: {authority: a.com, derivePort: FROM_SOMEWHERE}
"#,
    ));
    let d = diags
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.http[0].redirect.derivePort"))
        .expect("derivePort diagnostic");
    assert!(d.message.contains("`FROM_SOMEWHERE`"), "{}", d.message);
    assert!(
        d.message
            .contains("FROM_PROTOCOL_DEFAULT, FROM_REQUEST_PORT"),
        "{}",
        d.message
    );
}

#[test]
fn diagnostics_point_at_the_yaml_line() {
    let yaml = object(
        r#"
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: -5
    - destination:
        host: reviews
        subset: v2
  - timeout: 0s
    route: [{destination: {host: reviews}}]
"#,
    );
    let diags = schema_diags(&yaml);
    let line_of = |needle: &str| {
        yaml.lines()
            .position(|l| l.contains(needle))
            .map(|i| i as u32 + 1)
    };
    let at = |field: &str| {
        diags
            .iter()
            .find(|d| d.field.as_deref() == Some(field))
            .and_then(|d| d.location)
            .map(|l| l.line)
    };
    assert_eq!(at("spec.http[0].route[0].weight"), line_of("weight: -5"));
    assert_eq!(at("spec.http[1].timeout"), line_of("timeout: 0s"));
    let d = diags
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.http[1].timeout"))
        .expect("timeout");
    assert_eq!(d.file.as_deref(), Some("t.yaml"));
    assert!(d.message.contains("0s"), "{}", d.message);
}

/// Istio samples (bookinfo, httpbin) must be accepted without errors.
#[test]
fn istio_samples_are_valid() {
    let samples = [
        // samples/bookinfo/networking/virtual-service-all-v1.yaml
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: productpage
spec:
  hosts:
  - productpage
  http:
  - route:
    - destination:
        host: productpage
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - route:
    - destination:
        host: ratings
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: details
spec:
  hosts:
  - details
  http:
  - route:
    - destination:
        host: details
        subset: v1
"#,
        // samples/bookinfo/networking/virtual-service-reviews-v2-v3.yaml
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
      weight: 50
    - destination:
        host: reviews
        subset: v3
      weight: 50
"#,
        // samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
    - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
"#,
        // samples/bookinfo/networking/virtual-service-ratings-test-delay.yaml
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    fault:
      delay:
        percentage:
          value: 100.0
        fixedDelay: 7s
    route:
    - destination:
        host: ratings
        subset: v1
  - route:
    - destination:
        host: ratings
        subset: v1
"#,
        // samples/bookinfo/networking/bookinfo-gateway.yaml (VirtualService part)
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"#,
        // httpbin ingress task
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "httpbin.example.com"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
    timeout: 0.5s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,refused-stream
"#,
        // mirroring task
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
    - httpbin
  http:
  - route:
    - destination:
        host: httpbin
        subset: v1
      weight: 100
    mirror:
      host: httpbin
      subset: v2
    mirrorPercentage:
      value: 100.0
"#,
    ];
    for yaml in samples {
        let errors: Vec<_> = schema_diags(yaml)
            .into_iter()
            .filter(|d| d.severity == E)
            .collect();
        assert!(errors.is_empty(), "sample rejected: {errors:#?}\n{yaml}");
        let warnings: Vec<_> = schema_diags(yaml)
            .into_iter()
            .filter(|d| d.severity == W)
            .collect();
        assert!(warnings.is_empty(), "sample warned: {warnings:#?}\n{yaml}");
    }
}

/// Three copies of one object: both later copies name the first definition and its line.
#[test]
fn duplicates_name_the_first_definition() {
    let doc = |n: u8| {
        sluice_model::parse_text(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: dup}\nspec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n",
            Some(std::sync::Arc::from(format!("/cfg/{n}.yaml").as_str())),
        )
        .resources
    };
    let resources: Vec<_> = (1..=3).flat_map(doc).collect();
    let diags = sluice_config::load::check(&resources, Vec::new());
    let dups: Vec<&String> = diags
        .iter()
        .filter(|d| d.code == "SLC0005")
        .map(|d| &d.message)
        .collect();
    assert_eq!(dups.len(), 2, "{dups:?}");
    for m in dups {
        assert!(m.contains("(first defined in /cfg/1.yaml:3)"), "{m}");
    }
}
