//! Webhook/CRD validation of DestinationRule: one small object per rule, plus Istio samples that must pass.

mod common;

use common::*;

fn object(spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: t\n  namespace: default\nspec:{spec}"
    )
}

/// Every expected (severity, field) appears for this spec, and no unexpected error.
fn check(name: &str, spec: &str, expected: &[(Severity, &str)]) {
    check_yaml(name, &object(spec), expected);
}

#[test]
fn rules() {
    let cases: &[Case] = &[
        ("missing host", "\n  subsets: [{name: v1}]\n", &[(E, "spec.host")]),
        ("partial wildcard host", "\n  host: a.*.com\n", &[(E, "spec.host")]),
        ("wildcard host", "\n  host: \"*.local\"\n", &[]),
        (
            "empty traffic policy",
            "\n  host: reviews\n  trafficPolicy: {}\n  subsets: [{name: v1, trafficPolicy: {}}]\n",
            &[(E, "spec.trafficPolicy"), (E, "spec.subsets[0].trafficPolicy")],
        ),
        (
            "subsets",
            r#"
  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
  - name: v_2
    labels: {"bad key": x, version: "bad value"}
  - labels: {version: v3}
"#,
            &[
                (E, "spec.subsets[1].name"),
                (E, "spec.subsets[2].name"),
                (E, r#"spec.subsets[2].labels["bad key"]"#),
                (E, "spec.subsets[2].labels.version"),
                (E, "spec.subsets[3].name"),
            ],
        ),
        (
            "simple enum",
            "\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUNDROBIN}\n",
            &[(E, "spec.trafficPolicy.loadBalancer.simple")],
        ),
        (
            "simple and consistentHash",
            r#"
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      consistentHash: {useSourceIp: true}
"#,
            &[(E, "spec.trafficPolicy.loadBalancer.consistentHash")],
        ),
        (
            "consistent hash",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
          useSourceIp: true
          maglev: {tableSize: 65536}
  - name: b
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: {ttl: 0s, attributes: [{name: SameSite, value: Strict}, {name: SameSite}, {name: ""}]}
          ringHash: {minimumRingSize: 1024}
          maglev: {tableSize: 5000011}
  - name: c
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpQueryParameterName: u
          minimumRingSize: 1024
  - name: d
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
          minimumRingSize: 1024
          maglev: {}
  - name: e
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie: {name: user, ttl: "10", path: /}
          maglev: {tableSize: 65537}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.consistentHash"),
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.httpCookie.name"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[1].name"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[2].name"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.maglev"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"),
                (I, "spec.subsets[2].trafficPolicy.loadBalancer.consistentHash.minimumRingSize"),
                (E, "spec.subsets[3].trafficPolicy.loadBalancer.consistentHash.minimumRingSize"),
                (E, "spec.subsets[3].trafficPolicy.loadBalancer.consistentHash.maglev.tableSize"),
                (E, "spec.subsets[4].trafficPolicy.loadBalancer.consistentHash.httpCookie.ttl"),
            ],
        ),
        (
            "locality distribute and failover",
            r#"
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      localityLbSetting:
        enabled: true
        distribute:
        - from: us-west/zone1/*
          to: {"us-west/zone1/*": 80, "us-west/zone2/*": 20}
        failover:
        - from: us-east
          to: us-west
"#,
            &[(E, "spec.trafficPolicy.loadBalancer.localityLbSetting")],
        ),
        (
            "locality distribute weights",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute:
          - from: us-west/zone1/*
            to: {"us-west/zone1/*": 80, "us-west/zone2/*": 30}
  - name: b
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute:
          - from: us-west/zone1/*
            to: {"us-west/zone1/*": 0, "us-west/zone2/*": 100}
  - name: c
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute:
          - from: us-west/*/z
            to: {"us-west": 50, "us-west/zone2": 50}
  - name: d
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute:
          - from: us-west/zone1/*
            to: {"us-west/zone1/*": 50, "us-east/*": 50}
          - from: us-west/zone1/*
            to: {"us-west/zone1/*": 100}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to"),
                (
                    E,
                    r#"spec.subsets[1].trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to["us-west/zone1/*"]"#,
                ),
                (E, "spec.subsets[2].trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to"),
                (E, "spec.subsets[2].trafficPolicy.loadBalancer.localityLbSetting.distribute"),
                (E, "spec.subsets[3].trafficPolicy.loadBalancer.localityLbSetting.distribute"),
            ],
        ),
        (
            "locality failover",
            r#"
  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        failover:
        - {from: us-east, to: us-east}
        - {from: us-east/zone1, to: us-west}
        - {from: "*", to: us-west}
        failoverPriority: [topology.istio.io/network]
"#,
            &[
                (W, "spec.trafficPolicy.loadBalancer.localityLbSetting"),
                (E, "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]"),
                (E, "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[1]"),
                (E, "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[2]"),
            ],
        ),
        (
            "locality failover priority with topology label",
            r#"
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      localityLbSetting:
        failover: [{from: us-east, to: us-west}]
        failoverPriority: [topology.kubernetes.io/zone]
        bogus: 1
"#,
            &[(E, "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority[0]")],
        ),
        (
            "locality and zone aware",
            r#"
  host: reviews
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 5}
    loadBalancer:
      localityLbSetting: {enabled: true}
      zoneAwareLbSetting:
        failoverPriority: [topology.kubernetes.io/region]
        minClusterSize: 0
"#,
            &[
                (E, "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting"),
                (E, "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.failoverPriority[0]"),
                (E, "spec.trafficPolicy.loadBalancer.zoneAwareLbSetting.minClusterSize"),
            ],
        ),
        (
            "warmup",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
        warmup: {minimumPercent: {value: 120}, aggression: 0}
  - name: b
    trafficPolicy:
      loadBalancer:
        simple: LEAST_REQUEST
        warmupDurationSecs: 0s
  - name: c
    trafficPolicy:
      loadBalancer:
        warmup: {duration: 60s, aggression: 1.5}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.warmup"),
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.warmup.minimumPercent.value"),
                (E, "spec.subsets[0].trafficPolicy.loadBalancer.warmup.aggression"),
                (E, "spec.subsets[1].trafficPolicy.loadBalancer.warmupDurationSecs"),
                (I, "spec.subsets[1].trafficPolicy.loadBalancer.warmupDurationSecs"),
            ],
        ),
        (
            "connection pool",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      connectionPool: {}
  - name: b
    trafficPolicy:
      connectionPool:
        tcp: {maxConnections: -1, connectTimeout: 0s, idleTimeout: 0s, maxConnectionDuration: 1h,
              tcpKeepalive: {time: 7200s, interval: 0.5ms}}
        http: {http1MaxPendingRequests: -1, http2MaxRequests: 3000000000, idleTimeout: 0s,
               h2UpgradePolicy: UPGRADE, useClientProtocol: true, maxConcurrentStreams: -3}
  - name: c
    trafficPolicy:
      connectionPool:
        http: {h2UpgradePolicy: upgrade}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.connectionPool"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.tcp.maxConnections"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.tcp.connectTimeout"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.tcp.tcpKeepalive.interval"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.http.http1MaxPendingRequests"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.http.http2MaxRequests"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.http.idleTimeout"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.http.useClientProtocol"),
                (E, "spec.subsets[1].trafficPolicy.connectionPool.http.maxConcurrentStreams"),
                (E, "spec.subsets[2].trafficPolicy.connectionPool.http.h2UpgradePolicy"),
            ],
        ),
        (
            "outlier detection",
            r#"
  host: reviews
  trafficPolicy:
    outlierDetection:
      consecutiveErrors: 5
      consecutiveLocalOriginFailures: 3
      consecutiveGatewayErrors: -1
      interval: "1"
      baseEjectionTime: 3m
      maxEjectionPercent: 150
      minHealthPercent: -1
"#,
            &[
                (I, "spec.trafficPolicy.outlierDetection.consecutiveErrors"),
                (E, "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures"),
                (E, "spec.trafficPolicy.outlierDetection.consecutiveGatewayErrors"),
                (E, "spec.trafficPolicy.outlierDetection.interval"),
                (E, "spec.trafficPolicy.outlierDetection.maxEjectionPercent"),
                (E, "spec.trafficPolicy.outlierDetection.minHealthPercent"),
            ],
        ),
        (
            "client tls",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      tls: {mode: MUTUAL}
  - name: b
    trafficPolicy:
      tls: {mode: mutual}
  - name: c
    trafficPolicy:
      tls: {mode: SIMPLE, credentialName: cred, caCertificates: /etc/ca.pem}
  - name: d
    trafficPolicy:
      tls: {mode: SIMPLE, insecureSkipVerify: true, subjectAltNames: [a.com]}
  - name: e
    trafficPolicy:
      tls: {mode: MUTUAL, credentialName: "configmap://other/ca"}
  - name: f
    trafficPolicy:
      tls: {mode: SIMPLE, credentialName: "configmap://default/ca"}
  - name: g
    trafficPolicy:
      tls: {mode: ISTIO_MUTUAL, sni: reviews.default.svc.cluster.local}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.tls.clientCertificate"),
                (E, "spec.subsets[0].trafficPolicy.tls.privateKey"),
                (E, "spec.subsets[1].trafficPolicy.tls.mode"),
                (E, "spec.subsets[2].trafficPolicy.tls.credentialName"),
                (E, "spec.subsets[3].trafficPolicy.tls.insecureSkipVerify"),
                (E, "spec.subsets[4].trafficPolicy.tls.credentialName"),
            ],
        ),
        (
            "port level settings",
            r#"
  host: reviews
  trafficPolicy:
    portLevelSettings:
    - loadBalancer: {simple: RANDOM}
    - port: {number: 9080}
    - port: {number: 0}
      tls: {mode: SIMPLE}
    - port: {number: 9443}
      connectionPool: {tcp: {maxConnections: 10}}
"#,
            &[
                (E, "spec.trafficPolicy.portLevelSettings[0].port"),
                (E, "spec.trafficPolicy.portLevelSettings[1]"),
                (E, "spec.trafficPolicy.portLevelSettings[2].port.number"),
            ],
        ),
        (
            "tunnel and proxy protocol",
            r#"
  host: reviews
  subsets:
  - name: a
    trafficPolicy:
      tunnel: {targetHost: 10.0.0.1, targetPort: 8080}
      proxyProtocol: {version: V2}
  - name: b
    trafficPolicy:
      tunnel: {protocol: PUT, targetHost: "bad host", targetPort: 0}
  - name: c
    trafficPolicy:
      tunnel: {}
  - name: d
    trafficPolicy:
      proxyProtocol: {version: V3}
  - name: e
    trafficPolicy:
      tunnel: {protocol: POST, targetHost: egress.example.com, targetPort: 443}
"#,
            &[
                (E, "spec.subsets[0].trafficPolicy.proxyProtocol"),
                (E, "spec.subsets[1].trafficPolicy.tunnel.protocol"),
                (E, "spec.subsets[1].trafficPolicy.tunnel.targetHost"),
                (E, "spec.subsets[1].trafficPolicy.tunnel.targetPort"),
                (E, "spec.subsets[2].trafficPolicy.tunnel.targetHost"),
                (E, "spec.subsets[2].trafficPolicy.tunnel.targetPort"),
                (E, "spec.subsets[3].trafficPolicy.proxyProtocol.version"),
            ],
        ),
        (
            "retry budget",
            r#"
  host: reviews
  trafficPolicy:
    retryBudget: {percent: {value: 150}, minRetryConcurrency: 3, budgetInterval: 0s}
"#,
            &[(E, "spec.trafficPolicy.retryBudget.percent.value")],
        ),
        (
            "workload selector",
            r#"
  host: reviews
  workloadSelector:
    matchLabels: {app: "rev*"}
  exportTo: ["*"]
"#,
            &[(E, "spec.workloadSelector.matchLabels.app"), (E, "spec.exportTo")],
        ),
        (
            "empty workload selector exported to own namespace",
            "\n  host: reviews\n  workloadSelector: {}\n  exportTo: [default]\n",
            &[(W, "spec.workloadSelector")],
        ),
        (
            "workload selector with two exportTo entries",
            "\n  host: reviews\n  workloadSelector: {matchLabels: {app: a}}\n  exportTo: [., other]\n",
            &[(E, "spec.exportTo")],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, spec, expected);
    }
}

#[test]
fn enum_message_lists_allowed_values() {
    let diags = schema_diags(&object(
        "\n  host: reviews\n  trafficPolicy:\n    loadBalancer: {simple: ROUNDROBIN}\n",
    ));
    let d = diags
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.trafficPolicy.loadBalancer.simple"))
        .expect("simple diagnostic");
    assert_eq!(
        d.message,
        "invalid loadBalancer.simple `ROUNDROBIN`: must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST"
    );
}

#[test]
fn diagnostics_point_at_the_yaml_line() {
    let yaml = object(
        r#"
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 100
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 0.5ms
  subsets:
  - name: v1
  - name: v1
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
    assert_eq!(
        at("spec.trafficPolicy.outlierDetection.interval"),
        line_of("interval: 0.5ms")
    );
    assert_eq!(
        at("spec.subsets[1].name"),
        line_of("name: v1").map(|l| l + 1)
    );
}

/// Istio samples must be accepted without errors or warnings.
#[test]
fn istio_samples_are_valid() {
    let samples = [
        // samples/helloworld/helloworld-dr.yaml (as used by the canary tasks)
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: helloworld
spec:
  host: helloworld
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#,
        // samples/bookinfo/networking/destination-rule-all.yaml (reviews)
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
"#,
        // circuit-breaking task
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
"#,
        // destination-rule-all-mtls.yaml style, session affinity and locality failover
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings.prod.svc.cluster.local
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
    loadBalancer:
      consistentHash:
        useSourceIp: true
      localityLbSetting:
        enabled: true
        failover:
        - from: us-east
          to: us-west
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        simple: LEAST_REQUEST
  subsets:
  - name: testversion
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        simple: ROUND_ROBIN
"#,
        // egress TLS origination
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: originate-tls-for-edition-cnn-com
spec:
  host: edition.cnn.com
  trafficPolicy:
    portLevelSettings:
    - port:
        number: 80
      tls:
        mode: SIMPLE
"#,
    ];
    for yaml in samples {
        let diags = schema_diags(yaml);
        assert!(diags.is_empty(), "sample not clean: {diags:#?}\n{yaml}");
    }
}
