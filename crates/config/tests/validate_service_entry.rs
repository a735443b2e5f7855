//! Webhook/CRD validation of ServiceEntry and WorkloadEntry: one small object per rule, plus samples that must pass.

mod common;

use common::{check_yaml as check, *};

fn object(kind: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: {kind}\nmetadata:\n  name: t\n  namespace: default\nspec:{spec}"
    )
}

#[test]
fn service_entry_rules() {
    let cases: &[Case] = &[
        (
            "hosts",
            r#"
  hosts: ["*", bad_host, "*foo.example.com", api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: NONE
"#,
            &[
                (E, "spec.hosts[0]"),
                (E, "spec.hosts[1]"),
                (W, "spec.hosts[2]"),
            ],
        ),
        (
            "no hosts",
            "\n  ports: [{number: 80, name: http, protocol: HTTP}]\n",
            &[(E, "spec.hosts")],
        ),
        (
            "enums",
            r#"
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: dns
  location: EXTERNAL
"#,
            &[(E, "spec.resolution"), (E, "spec.location")],
        ),
        (
            "addresses",
            r#"
  hosts: [api.example.com]
  addresses: [abc, 10.0.0.0/8, 10.1.0.0/33]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
"#,
            &[
                (E, "spec.addresses[0]"),
                (E, "spec.addresses[1]"),
                (E, "spec.addresses[2]"),
            ],
        ),
        (
            "ports",
            r#"
  hosts: [api.example.com]
  addresses: [10.0.0.1]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 80, name: http, protocol: HTTP}
  - {number: 0, name: HTTP_1, protocol: FOO, targetPort: 70000}
  - {number: 443, name: https, protocol: https}
  resolution: STATIC
  endpoints: [{address: 10.0.0.2}]
"#,
            &[
                (E, "spec.ports[1].name"),
                (E, "spec.ports[1].number"),
                (E, "spec.ports[2].name"),
                (E, "spec.ports[2].number"),
                (E, "spec.ports[2].protocol"),
                (E, "spec.ports[2].targetPort"),
            ],
        ),
        (
            "tcp port without addresses",
            r#"
  hosts: [db.example.com]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
"#,
            &[(W, "spec.ports[0]")],
        ),
        (
            "resolution NONE with endpoints and selector",
            r#"
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 10.0.0.1}]
"#,
            &[(E, "spec.endpoints")],
        ),
        (
            "selector with endpoints",
            r#"
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector: {labels: {app: "a*"}}
  endpoints: [{address: 10.0.0.1}]
"#,
            &[
                (E, "spec.workloadSelector"),
                (E, "spec.workloadSelector.labels.app"),
            ],
        ),
        (
            "static endpoints",
            r#"
  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: STATIC
  endpoints:
  - address: api.internal
  - address: 10.0.0.1
    ports: {grpc: 9000, http: 0}
    labels: {"bad key": v1}
  - address: "unix:///var/run/sock"
    ports: {http: 8080}
  - {}
  - network: remote
  - address: 10.0.0.2
    serviceAccount: sa
    weight: 0
"#,
            &[
                (E, "spec.endpoints[0].address"),
                (E, "spec.endpoints[1].ports.grpc"),
                (E, "spec.endpoints[1].ports.http"),
                (E, r#"spec.endpoints[1].labels["bad key"]"#),
                (E, "spec.endpoints[2].ports"),
                (E, "spec.endpoints[2].address"),
                (E, "spec.endpoints[3].address"),
                (W, "spec.endpoints[4].address"),
            ],
        ),
        (
            "dns without endpoints needs fqdn hosts",
            r#"
  hosts: [api.example.com, "*.example.org"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
"#,
            &[(E, "spec.hosts[1]")],
        ),
        (
            "dns round robin",
            r#"
  hosts: [api.example.com]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS_ROUND_ROBIN
  endpoints: [{address: a.example.com}, {address: "b_.example.com"}]
"#,
            &[(E, "spec.endpoints"), (E, "spec.endpoints[1].address")],
        ),
        (
            "dynamic dns",
            r#"
  hosts: [api.example.com, "*.example.org"]
  addresses: [10.0.0.1]
  ports: [{number: 5432, name: tcp, protocol: TCP}, {number: 443, name: tls, protocol: TLS}]
  resolution: DYNAMIC_DNS
"#,
            &[
                (E, "spec.hosts[0]"),
                (E, "spec.addresses"),
                (E, "spec.ports[0].protocol"),
                (E, "spec.hosts"),
            ],
        ),
        (
            "several hosts with a tcp port",
            r#"
  hosts: [a.example.com, b.example.com]
  ports: [{number: 5432, name: pg}]
  resolution: DNS
"#,
            &[(E, "spec.hosts")],
        ),
        (
            "export to nobody",
            r#"
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  exportTo: ["~"]
"#,
            &[],
        ),
        (
            "export to nobody and everyone",
            r#"
  hosts: [api.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  exportTo: ["~", "*"]
"#,
            &[(E, "spec.exportTo")],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &object("ServiceEntry", spec), expected);
    }
}

#[test]
fn workload_entry_rules() {
    let cases: &[Case] = &[
        (
            "missing address",
            "\n  labels: {app: a}\n",
            &[(E, "spec.address")],
        ),
        (
            "network only",
            "\n  network: vm-net\n",
            &[(W, "spec.address")],
        ),
        (
            "ports and labels",
            r#"
  address: 10.0.0.1
  ports: {http: 0, Bad_Name: 80, grpc: 70000, https: 8443}
  labels: {app: "a b"}
  weight: 3
"#,
            &[
                (E, "spec.ports.http"),
                (E, "spec.ports.Bad_Name"),
                (E, "spec.ports.grpc"),
                (E, "spec.labels.app"),
            ],
        ),
        (
            "hostname address is fine standalone",
            "\n  address: vm1.example.com\n  ports: {http: 8080}\n",
            &[],
        ),
        (
            "bad address",
            "\n  address: \"not valid!\"\n",
            &[(E, "spec.address")],
        ),
        (
            "unix socket",
            "\n  address: \"unix://relative/sock\"\n  ports: {http: 80}\n",
            &[(E, "spec.address"), (E, "spec.ports")],
        ),
        (
            "unix directory",
            "\n  address: \"unix:///var/run/\"\n",
            &[(E, "spec.address")],
        ),
    ];
    for (name, spec, expected) in cases {
        check(name, &object("WorkloadEntry", spec), expected);
    }
}

#[test]
fn endpoint_port_message_names_the_service_ports() {
    let yaml = object(
        "ServiceEntry",
        r#"
  hosts: [api.example.com]
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 10.0.0.1
    ports:
      grpc: 9000
"#,
    );
    let diags = schema_diags(&yaml);
    let d = diags
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.endpoints[0].ports.grpc"))
        .expect("endpoint port diagnostic");
    assert!(
        d.message.contains("`grpc`") && d.message.contains("http"),
        "{}",
        d.message
    );
    let line = yaml
        .lines()
        .position(|l| l.contains("grpc: 9000"))
        .map(|i| i as u32 + 1);
    assert_eq!(d.location.map(|l| l.line), line);
}

/// Istio samples must be accepted without errors or warnings.
#[test]
fn istio_samples_are_valid() {
    let samples = [
        // egress task: external HTTP service resolved by DNS
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: httpbin-ext
spec:
  hosts:
  - httpbin.org
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: DNS
  location: MESH_EXTERNAL
"#,
        // ServiceEntry reference: STATIC endpoints behind a VIP
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-mongocluster
spec:
  hosts:
  - mymongodb.somedomain
  addresses:
  - 192.192.192.192/24
  ports:
  - number: 27018
    name: mongodb
    protocol: MONGO
  location: MESH_INTERNAL
  resolution: STATIC
  endpoints:
  - address: 2.2.2.2
  - address: 3.3.3.3
    ports:
      mongodb: 27019
    labels:
      version: v2
"#,
        // ServiceEntry reference: workloadSelector + WorkloadEntry (VM workloads)
        r#"
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: details-svc
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels:
    app: details-legacy
    instance-id: vm1
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: details-svc
spec:
  hosts:
  - details.bookinfo.com
  location: MESH_INTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 8080
  resolution: STATIC
  workloadSelector:
    labels:
      app: details-legacy
"#,
        // ServiceEntry reference: TLS passthrough egress with wildcard host
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-wikipedia
spec:
  hosts:
  - "*.wikipedia.org"
  ports:
  - number: 443
    name: https
    protocol: TLS
  resolution: NONE
"#,
        // DNS endpoints (unix domain socket and hostnames)
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: external-svc-dns
spec:
  hosts:
  - foo.bar.com
  location: MESH_EXTERNAL
  ports:
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
  endpoints:
  - address: us.foo.bar.com
    ports:
      https: 8443
  - address: uk.foo.bar.com
    ports:
      https: 9443
"#,
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: unix-domain-socket-example
spec:
  hosts:
  - "example.unix.local"
  location: MESH_EXTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: unix:///var/run/example/socket
"#,
    ];
    for yaml in samples {
        let diags = schema_diags(yaml);
        assert!(diags.is_empty(), "sample not clean: {diags:#?}\n{yaml}");
    }
}
