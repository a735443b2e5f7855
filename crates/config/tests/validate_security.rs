//! Webhook/CRD validation of the security kinds and Sidecar: one small object per rule, plus
//! Istio samples that must pass.

mod common;

use common::{check_yaml as check, *};

fn obj(kind: &str, spec: &str) -> String {
    let api = if kind == "Sidecar" {
        "networking.istio.io/v1"
    } else {
        "security.istio.io/v1"
    };
    format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: p\n  namespace: foo\nspec:{spec}")
}

#[test]
fn authorization_policy_rules() {
    let cases: &[Case] = &[
        ("deny without rules", "\n  action: DENY\n", &[(E, "spec.rules")]),
        (
            "custom needs a provider and rules",
            "\n  action: CUSTOM\n",
            &[(E, "spec.provider"), (E, "spec.rules")],
        ),
        (
            "provider without custom",
            "\n  provider: {name: x}\n  rules: [{}]\n",
            &[(E, "spec.provider")],
        ),
        ("bad action", "\n  action: REJECT\n", &[(E, "spec.action")]),
        (
            "selector and targetRefs",
            "\n  selector: {matchLabels: {app: a}}\n  targetRefs: [{kind: Service, group: \"\", name: a}]\n",
            &[(E, "spec")],
        ),
        (
            "targetRef kinds and namespace",
            "\n  targetRef: {kind: Deployment, group: apps, name: a, namespace: bar}\n",
            &[(E, "spec.targetRef.kind"), (E, "spec.targetRef.namespace")],
        ),
        (
            "selector wildcard and empty selector",
            "\n  selector: {matchLabels: {app: \"a*\"}}\n",
            &[(E, "spec.selector.matchLabels.app")],
        ),
        ("selector without labels", "\n  selector: {}\n", &[(W, "spec.selector")]),
        (
            "empty from, to, source and operation",
            "\n  rules:\n  - from: []\n    to: []\n  - from: [{source: {}}]\n    to: [{operation: {}}]\n",
            &[
                (E, "spec.rules[0].from"),
                (E, "spec.rules[0].to"),
                (E, "spec.rules[1].from[0].source"),
                (E, "spec.rules[1].to[0].operation"),
            ],
        ),
        ("null rule", "\n  rules: [null]\n", &[(E, "spec.rules[0]")]),
        (
            "ports",
            "\n  rules: [{to: [{operation: {ports: [\"80\", \"65536\", \"8*\", \"1-2\"]}}]}]\n",
            &[
                (E, "spec.rules[0].to[0].operation.ports[1]"),
                (E, "spec.rules[0].to[0].operation.ports[2]"),
                (E, "spec.rules[0].to[0].operation.ports[3]"),
            ],
        ),
        (
            "ip blocks and empty values",
            "\n  rules: [{from: [{source: {ipBlocks: [10.0.0.0/8, 10.0.0.300], remoteIpBlocks: [\"\"]}}]}]\n",
            &[
                (E, "spec.rules[0].from[0].source.ipBlocks[1]"),
                (E, "spec.rules[0].from[0].source.remoteIpBlocks[0]"),
            ],
        ),
        (
            "service accounts",
            "\n  rules:\n  - from: [{source: {serviceAccounts: [a/b, \"a*\", a/b/c, /b]}}]\n  - from: [{source: {serviceAccounts: [a], principals: [x]}}]\n",
            &[
                (E, "spec.rules[0].from[0].source.serviceAccounts[1]"),
                (E, "spec.rules[0].from[0].source.serviceAccounts[2]"),
                (E, "spec.rules[0].from[0].source.serviceAccounts[3]"),
                (E, "spec.rules[1].from[0].source"),
            ],
        ),
        (
            "trust domains",
            "\n  rules: [{from: [{source: {trustDomains: [\"*.td\", \"a*b\", \"a/b\", \"*a*\"]}}]}]\n",
            &[
                (E, "spec.rules[0].from[0].source.trustDomains[1]"),
                (E, "spec.rules[0].from[0].source.trustDomains[2]"),
                (E, "spec.rules[0].from[0].source.trustDomains[3]"),
            ],
        ),
        (
            "path templates",
            "\n  rules: [{to: [{operation: {paths: [\"/a/{*}/b/{**}\", \"/a/{**}/b/{*}\", \"/a/x{*}\", \"/a/*/{*}\"]}}]}]\n",
            &[
                (E, "spec.rules[0].to[0].operation.paths[1]"),
                (E, "spec.rules[0].to[0].operation.paths[2]"),
                (E, "spec.rules[0].to[0].operation.paths[3]"),
            ],
        ),
        (
            "conditions",
            r#"
  rules:
  - when:
    - {key: "request.headers[x]", values: [a]}
    - {key: destination.namespace, values: [a]}
    - {key: source.ip, values: [bad]}
    - {key: destination.port, values: ["99999"]}
    - {key: source.principal}
    - {key: "request.auth.claims[]", values: [a]}
    - {key: "", values: [a]}
    - {key: remote.ip, notValues: [""]}
"#,
            &[
                (E, "spec.rules[0].when[1].key"),
                (E, "spec.rules[0].when[2].values[0]"),
                (E, "spec.rules[0].when[3].values[0]"),
                (E, "spec.rules[0].when[4]"),
                (E, "spec.rules[0].when[5].key"),
                (E, "spec.rules[0].when[6].key"),
                (E, "spec.rules[0].when[7].notValues[0]"),
            ],
        ),
        (
            "custom forbids identity fields",
            "\n  action: CUSTOM\n  provider: {name: ext}\n  rules:\n  - from: [{source: {principals: [a], ipBlocks: [1.2.3.4]}}]\n    when: [{key: request.auth.principal, values: [a]}]\n",
            &[
                (E, "spec.rules[0].from[0].source.principals"),
                (E, "spec.rules[0].when[0].key"),
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &obj("AuthorizationPolicy", spec), expected);
    }
}

#[test]
fn istio_authorization_samples_pass() {
    for spec in [
        " {}\n",
        "\n  action: DENY\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n",
        "\n  selector: {matchLabels: {app: httpbin}}\n  action: ALLOW\n  rules:\n  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]\n    to: [{operation: {methods: [GET], paths: [/info*]}}]\n    when: [{key: \"request.auth.claims[iss]\", values: [\"https://accounts.google.com\"]}]\n",
        "\n  action: CUSTOM\n  provider: {name: sample-ext-authz-grpc}\n  rules: [{to: [{operation: {paths: [/headers]}}]}]\n",
        "\n  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]\n",
        "\n  rules: [{to: [{operation: {ports: [\"9000\", \"9001\"]}}]}]\n",
    ] {
        check(spec, &obj("AuthorizationPolicy", spec), &[]);
    }
}

#[test]
fn peer_authentication_rules() {
    let cases: &[Case] = &[
        ("bad mode", "\n  mtls: {mode: MUTUAL}\n", &[(E, "spec.mtls.mode")]),
        (
            "port level without selector",
            "\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
            &[(E, "spec.portLevelMtls")],
        ),
        (
            "port level keys and modes",
            "\n  selector: {matchLabels: {app: a}}\n  portLevelMtls: {0: {mode: DISABLE}, 70000: {mode: STRICT}, 80: {mode: OFF}}\n",
            &[
                (E, "spec.portLevelMtls.0"),
                (E, "spec.portLevelMtls.70000"),
                (E, "spec.portLevelMtls.80.mode"),
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &obj("PeerAuthentication", spec), expected);
    }
    check(
        "sample",
        &obj(
            "PeerAuthentication",
            "\n  selector: {matchLabels: {app: payments}}\n  mtls: {mode: STRICT}\n  portLevelMtls: {9102: {mode: DISABLE}}\n",
        ),
        &[],
    );
}

#[test]
fn request_authentication_rules() {
    let cases: &[Case] = &[
        ("neither issuer nor jwksUri", "\n  jwtRules: [{audiences: [a]}]\n", &[(E, "spec.jwtRules[0].issuer")]),
        (
            "jwks and jwksUri",
            "\n  jwtRules: [{issuer: a, jwksUri: \"https://a/keys\", jwks: \"{\\\"keys\\\": []}\"}]\n",
            &[(E, "spec.jwtRules[0].jwks")],
        ),
        (
            "bad jwksUri and jwks",
            "\n  jwtRules: [{issuer: a, jwksUri: \"ftp://a/keys\"}, {issuer: b, jwks: \"not json\"}]\n",
            &[(E, "spec.jwtRules[0].jwksUri"), (E, "spec.jwtRules[1].jwks")],
        ),
        (
            "private key",
            "\n  jwtRules: [{issuer: a, jwks: \"{\\\"keys\\\": [{\\\"kty\\\": \\\"RSA\\\", \\\"d\\\": \\\"x\\\"}]}\"}]\n",
            &[(W, "spec.jwtRules[0].jwks")],
        ),
        (
            "headers, params, claims, timeout",
            r#"
  jwtRules:
  - issuer: a
    audiences: [""]
    fromHeaders: [{name: "bad header"}, {prefix: "Bearer "}]
    fromParams: [""]
    outputClaimToHeaders: [{header: "x:y", claim: c}, {header: x-ok}]
    timeout: 0s
"#,
            &[
                (E, "spec.jwtRules[0].audiences[0]"),
                (E, "spec.jwtRules[0].fromHeaders[0].name"),
                (E, "spec.jwtRules[0].fromHeaders[1].name"),
                (E, "spec.jwtRules[0].fromParams[0]"),
                (E, "spec.jwtRules[0].outputClaimToHeaders[0].header"),
                (E, "spec.jwtRules[0].outputClaimToHeaders[1].claim"),
                (E, "spec.jwtRules[0].timeout"),
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &obj("RequestAuthentication", spec), expected);
    }
    check(
        "sample",
        &obj(
            "RequestAuthentication",
            "\n  selector: {matchLabels: {istio: ingressgateway}}\n  jwtRules:\n  - issuer: https://idp.example.org\n    jwksUri: https://idp.example.org/keys.json\n    audiences: [shop-web]\n    fromHeaders: [{name: x-id-token, prefix: \"Token \"}]\n    outputClaimToHeaders: [{header: x-user-tier, claim: account.tier}]\n",
        ),
        &[],
    );
}

#[test]
fn sidecar_rules() {
    let cases: &[Case] = &[
        ("empty", " {}\n", &[(E, "spec")]),
        (
            "ingress listeners",
            r#"
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 10.1.1.1:8080
  - port: {number: 9080, protocol: FOO, name: http2}
    bind: not-an-ip
  - defaultEndpoint: "127.0.0.1:0"
  - port: {number: 9443, protocol: HTTPS, name: https}
    tls: {mode: ISTIO_MUTUAL}
"#,
            &[
                (E, "spec.ingress[0].defaultEndpoint"),
                (E, "spec.ingress[1].port.number"),
                (E, "spec.ingress[1].port.protocol"),
                (E, "spec.ingress[1].bind"),
                (E, "spec.ingress[2].port"),
                (E, "spec.ingress[2].defaultEndpoint"),
                (E, "spec.ingress[3].tls.mode"),
                (E, "spec.ingress[3].tls"),
            ],
        ),
        (
            "egress hosts",
            "\n  egress: [{hosts: [foo.com]}, {}]\n",
            &[
                (E, "spec.egress[0].hosts[0]"),
                (E, "spec.egress[1].hosts"),
                // Two listeners without a port: only one, the last, may have none.
                (E, "spec.egress[0]"),
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &obj("Sidecar", spec), expected);
    }
    check(
        "sample",
        &obj(
            "Sidecar",
            "\n  workloadSelector: {labels: {app: productpage}}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: somename}\n    defaultEndpoint: unix:///var/run/someuds.sock\n  - port: {number: 9443, protocol: HTTPS, name: https}\n    defaultEndpoint: 127.0.0.1:8443\n    tls: {mode: SIMPLE, credentialName: app-cert}\n  egress:\n  - hosts: [\"istio-system/*\", \"./*\"]\n",
        ),
        &[],
    );
}

#[test]
fn parsed_but_not_enforced_fields_are_named() {
    let diags = |yaml: &str| -> Vec<Diagnostic> {
        parse_text(yaml, None)
            .resources
            .iter()
            .flat_map(validate_resource)
            .collect()
    };
    let d = diags(&obj(
        "Sidecar",
        "\n  egress: [{hosts: [\"./*\"], bind: 127.0.0.2, captureMode: NONE}]\n  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: e.example.com, port: {number: 3128}}}\n",
    ));
    // Egress hosts, the mode, the egress proxy, an IP bind and the capture mode are enforced.
    assert!(!d.iter().any(|d| d.code == codes::NOT_ENFORCED), "{d:#?}");
    // So is a unix domain socket bind, for a TCP port too.
    let d = diags(&obj(
        "Sidecar",
        "\n  egress: [{port: {number: 0, protocol: TCP, name: uds}, hosts: [\"./*\"], bind: \"unix:///tmp/e.sock\"}]\n",
    ));
    assert!(!d.iter().any(|d| d.code == codes::NOT_ENFORCED), "{d:#?}");
    // As Istio's webhook: an egress proxy only with ALLOW_ANY (unset means REGISTRY_ONLY).
    let d = diags(&obj(
        "Sidecar",
        "\n  outboundTrafficPolicy: {egressProxy: {host: e.example.com, port: {number: 3128}}}\n",
    ));
    assert!(
        d.iter().any(|d| d.severity == Severity::Error
            && d.field.as_deref() == Some("spec.outboundTrafficPolicy.egressProxy")),
        "{d:#?}"
    );
    let d = diags(&obj(
        "AuthorizationPolicy",
        "\n  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n",
    ));
    assert!(d
        .iter()
        .any(|d| d.code == codes::NOT_ENFORCED && d.severity == W));
    let d = diags(&obj(
        "RequestAuthentication",
        "\n  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n  jwtRules: [{issuer: a, jwksUri: \"https://a/k\"}]\n",
    ));
    assert!(d
        .iter()
        .any(|d| d.code == codes::TARGET_REF_IGNORED && d.severity == Severity::Info));
    // jwksUri is fetched by the proxy: nothing to warn about.
    assert!(!d.iter().any(|d| d.code == codes::NOT_ENFORCED));
}
