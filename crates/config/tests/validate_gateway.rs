//! Webhook/CRD validation of Gateway: one small object per rule, plus Istio samples that must pass.

mod common;

use common::{check_yaml as check, *};

fn named(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: default\nspec:{spec}"
    )
}

#[test]
fn rules() {
    let cases: &[Case] = &[
        (
            "gateway name with a dot",
            "\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
            &[(E, "metadata.name")],
        ),
        (
            "no servers",
            "\n  selector: {istio: ingressgateway}\n",
            &[(E, "spec.servers")],
        ),
        (
            "ports",
            r#"
  servers:
  - port: {number: 80, name: http, protocol: FOO}
    hosts: ["*"]
  - port: {number: 8080, name: http, protocol: http}
    hosts: ["*"]
  - port: {number: 0, name: zero, protocol: HTTP, targetPort: 8080}
    hosts: ["*"]
  - port: {number: 81, protocol: HTTP}
    hosts: ["*"]
  - hosts: ["*"]
  - port: {number: 53, name: dns, protocol: UDP}
    hosts: ["*"]
"#,
            &[
                (E, "spec.servers[0].port.protocol"),
                (E, "spec.servers[1].port.name"),
                (E, "spec.servers[2].port.number"),
                (E, "spec.servers[2].port.targetPort"),
                (E, "spec.servers[3].port.name"),
                (E, "spec.servers[4].port"),
                (W, "spec.servers[5].port.protocol"),
            ],
        ),
        (
            "hosts",
            r#"
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [reviews, "ns1/*.example.com", "./a.example.com", "Bad_NS/a.example.com", "a*.example.com",
            "*", "1.2.3.4", "ns/", "*/bad_host.example.com"]
  - port: {number: 81, name: http2, protocol: HTTP}
    hosts: []
"#,
            &[
                (E, "spec.servers[0].hosts[0]"),
                (E, "spec.servers[0].hosts[3]"),
                (E, "spec.servers[0].hosts[4]"),
                (E, "spec.servers[0].hosts[7]"),
                (E, "spec.servers[0].hosts[8]"),
                (E, "spec.servers[1].hosts"),
            ],
        ),
        (
            "bind",
            r#"
  servers:
  - port: {number: 8080, name: a, protocol: HTTP}
    bind: "unix:///var/run/gw.sock"
    hosts: ["*"]
  - port: {number: 0, name: b, protocol: HTTP}
    bind: "unix://relative"
    hosts: ["*"]
  - port: {number: 80, name: c, protocol: HTTP}
    bind: not-an-ip
    hosts: ["*"]
  - port: {number: 0, name: d, protocol: HTTP}
    bind: "unix://@abstract"
    hosts: ["*"]
  - port: {number: 80, name: e, protocol: HTTP}
    bind: 10.0.0.1
    hosts: ["*"]
"#,
            &[
                (E, "spec.servers[0].port.number"),
                (E, "spec.servers[1].bind"),
                (E, "spec.servers[2].bind"),
            ],
        ),
        (
            "tls presence per protocol",
            r#"
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 31400, name: tcp, protocol: TCP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
  - port: {number: 8080, name: http-redirect, protocol: HTTP}
    hosts: ["*"]
    tls: {httpsRedirect: true}
  - port: {number: 8443, name: https-redirect, protocol: HTTPS}
    hosts: ["*"]
    tls: {httpsRedirect: true, mode: SIMPLE, credentialName: cert}
"#,
            &[
                (E, "spec.servers[0].tls"),
                (E, "spec.servers[1].tls"),
                // istiod warns (and ignores the settings) for TLS on a non-HTTP, non-TLS port.
                (W, "spec.servers[2].tls"),
                (W, "spec.servers[4].tls.httpsRedirect"),
            ],
        ),
        (
            "tls certificate sources",
            r#"
  servers:
  - port: {number: 443, name: a, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE}
  - port: {number: 444, name: b, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}
  - port: {number: 445, name: c, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: ISTIO_MUTUAL, credentialName: cert}
  - port: {number: 446, name: d, protocol: HTTPS}
    hosts: ["*"]
    tls: {credentialName: cert}
  - port: {number: 447, name: e, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert, serverCertificate: /c.pem, privateKey: /k.pem}
  - port: {number: 448, name: f, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, caCrl: /crl.pem}
  - port: {number: 449, name: g, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, credentialName: cert, caCrl: /crl.pem}
  - port: {number: 450, name: h, protocol: HTTPS}
    hosts: ["*"]
    tls:
      mode: SIMPLE
      tlsCertificates: [{serverCertificate: /rsa.pem}, {serverCertificate: /ec.pem, privateKey: /ec.key}, {}]
  - port: {number: 451, name: i, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialNames: [rsa, ecdsa]}
"#,
            &[
                (E, "spec.servers[0].tls.serverCertificate"),
                (E, "spec.servers[0].tls.privateKey"),
                (E, "spec.servers[1].tls.caCertificates"),
                (E, "spec.servers[2].tls.credentialName"),
                (W, "spec.servers[3].tls.mode"),
                (E, "spec.servers[4].tls"),
                (E, "spec.servers[5].tls.caCrl"),
                (E, "spec.servers[6].tls.caCrl"),
                (E, "spec.servers[7].tls.tlsCertificates"),
                (E, "spec.servers[7].tls.tlsCertificates[0].privateKey"),
                (
                    E,
                    "spec.servers[7].tls.tlsCertificates[2].serverCertificate",
                ),
                (E, "spec.servers[7].tls.tlsCertificates[2].privateKey"),
            ],
        ),
        (
            "tls enums and ciphers",
            r#"
  servers:
  - port: {number: 443, name: a, protocol: TLS}
    hosts: ["*"]
    tls: {mode: TERMINATE}
  - port: {number: 444, name: b, protocol: HTTPS}
    hosts: ["*"]
    tls:
      mode: SIMPLE
      credentialName: cert
      minProtocolVersion: TLSV1_0
      maxProtocolVersion: TLS13
  - port: {number: 445, name: c, protocol: HTTPS}
    hosts: ["*"]
    tls:
      mode: SIMPLE
      credentialName: cert
      minProtocolVersion: TLSV1_2
      cipherSuites: [ECDHE-RSA-AES128-GCM-SHA256, NOT-A-CIPHER, ECDHE-RSA-AES128-GCM-SHA256, "-AES128-SHA"]
"#,
            &[
                (E, "spec.servers[0].tls.mode"),
                (W, "spec.servers[1].tls.minProtocolVersion"),
                (E, "spec.servers[1].tls.maxProtocolVersion"),
                (W, "spec.servers[2].tls.cipherSuites[1]"),
                (W, "spec.servers[2].tls.cipherSuites[2]"),
            ],
        ),
    ];
    for (name, spec, expected) in cases {
        let gw = if *name == "gateway name with a dot" {
            "my.gw"
        } else {
            "gw"
        };
        check(name, &named(gw, spec), expected);
    }
}

#[test]
fn protocol_message_and_location() {
    let yaml = named(
        "gw",
        r#"
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTPX
    hosts:
    - "*"
"#,
    );
    let diags = schema_diags(&yaml);
    let d = diags
        .iter()
        .find(|d| d.field.as_deref() == Some("spec.servers[0].port.protocol"))
        .expect("protocol diagnostic");
    assert!(d.message.contains("`HTTPX`"), "{}", d.message);
    assert!(d.message.contains("HTTP, HTTPS, GRPC"), "{}", d.message);
    let line = yaml
        .lines()
        .position(|l| l.contains("protocol: HTTPX"))
        .map(|i| i as u32 + 1);
    assert_eq!(d.location.map(|l| l.line), line);
}

/// Istio samples must be accepted without errors or warnings.
#[test]
fn istio_samples_are_valid() {
    let samples = [
        // httpbin ingress task
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "httpbin.example.com"
"#,
        // samples/bookinfo/networking/bookinfo-gateway.yaml
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
"#,
        // secure ingress task, with redirect and passthrough servers
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mygateway
  namespace: istio-system
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential
    hosts:
    - httpbin.example.com
  - port:
      number: 80
      name: http
      protocol: HTTP
    tls:
      httpsRedirect: true
    hosts:
    - "ns1/*.example.com"
  - port:
      number: 8443
      name: https-mutual
      protocol: HTTPS
    tls:
      mode: MUTUAL
      credentialName: httpbin-credential
    hosts:
    - "./helloworld.example.com"
  - port:
      number: 9443
      name: tls-passthrough
      protocol: TLS
    tls:
      mode: PASSTHROUGH
    hosts:
    - nginx.example.com
  - port:
      number: 15443
      name: tls-istio
      protocol: TLS
    tls:
      mode: ISTIO_MUTUAL
    hosts:
    - "*.local"
  - port:
      number: 9444
      name: https-files
      protocol: https
    tls:
      mode: MUTUAL
      serverCertificate: /etc/certs/servercert.pem
      privateKey: /etc/certs/privatekey.pem
      caCertificates: /etc/certs/caCertificates.pem
    hosts:
    - "*.example.org"
"#,
    ];
    for yaml in samples {
        let diags = schema_diags(yaml);
        assert!(diags.is_empty(), "sample not clean: {diags:#?}\n{yaml}");
    }
}

/// Servers are merged per (port, `bind`); a `bind` on a port that servers without one take on
/// every address cannot be bound next to them: reported and left out, not fatal at start.
#[test]
fn binds_get_listeners_of_their_own_unless_the_port_is_bound_everywhere() {
    use sluice_config::{build_snapshot, ProxyConfig};
    let yaml = named(
        "gw",
        "\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n  - port: {number: 80, name: http2, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: 127.0.0.2\n  - port: {number: 81, name: http3, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: 127.0.0.3\n  - port: {number: 81, name: http4, protocol: HTTP}\n    hosts: [\"*\"]\n    bind: 127.0.0.4\n",
    );
    let parsed = sluice_model::parse_text(&yaml, None);
    let snap = build_snapshot(
        parsed.resources,
        Vec::new(),
        &ProxyConfig::default(),
        &sluice_lb::StateStore::new(),
        1,
    )
    .unwrap();
    let mut names: Vec<&str> = snap.listeners.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["0.0.0.0_80", "127.0.0.3_81", "127.0.0.4_81"]);
    assert!(
        snap.diagnostics
            .iter()
            .any(|d| d.code == sluice_model::codes::GATEWAY_PORT_CONFLICT
                && d.field.as_deref() == Some("spec.servers[1].bind")),
        "{:#?}",
        snap.diagnostics
    );
}
