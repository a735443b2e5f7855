//! TLS at the gateway and to upstreams, with Istio's own YAML shapes (the Secure Gateways,
//! Ingress without TLS termination and Egress TLS Origination tasks) in file mode: real
//! handshakes with rustls clients and `openssl s_client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice_test_support::pki::{s_client, TestCa, TlsClient};
use sluice_test_support::{
    assert_eventually, backend, free_port, mesh_reviews, proxy, service_yaml, Backend, BackendArgs,
    ConfigDir, MeshReviews, ProxyHandle, TestClient, REVIEWS_V2_SNI,
};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A gateway proxy (no mesh listeners: the services' fixed ports stay unbound).
async fn gateway_proxy(dir: &Path) -> ProxyHandle {
    proxy(dir, |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
    })
    .await
}

/// The task's httpbin VirtualService, bound to `gateway`, for `host`.
fn httpbin_vs(name: &str, host: &str, gateway: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts:\n  - \"{host}\"\n  gateways:\n  - {gateway}\n  http:\n  - match:\n    - uri:\n        prefix: /status\n    - uri:\n        prefix: /delay\n    - uri:\n        prefix: /headers\n    route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin\n"
    )
}

async fn metric(admin: SocketAddr, prefix: &str) -> Option<f64> {
    let r = TestClient::new()
        .get(admin, "localhost", "/stats/prometheus", &[])
        .await;
    r.body
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Secure Gateways, SIMPLE: HTTPS on the gateway port with the server's certificate, HTTP/1.1
/// and HTTP/2 by ALPN, `X-Forwarded-Proto: https`, and a plain-text client refused.
#[tokio::test]
async fn simple_tls_ingress_serves_https_with_alpn() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin.example.com");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway # use istio default ingress gateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    tls:\n      mode: SIMPLE\n      serverCertificate: {}\n      privateKey: {}\n    hosts:\n    - httpbin.example.com\n",
            cert.display(),
            key.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TlsClient::new(ca.pem(), "httpbin.example.com");
    // The task's check: `curl ... https://httpbin.example.com/status/418` → 418.
    let r = client.get(local(port), "/status/418").await.unwrap();
    assert_eq!(r.status, 418, "{}", r.body);
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
    let got = httpbin.last_received().unwrap();
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    assert_eq!(got.host(), Some("httpbin.example.com"));

    let h2 = TlsClient {
        alpn: vec!["h2", "http/1.1"],
        ..client.clone()
    };
    let r = h2.get(local(port), "/headers").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.alpn.as_deref(), Some("h2"));

    // No route for the path: 404 from the route table, over TLS.
    let r = client.get(local(port), "/other").await.unwrap();
    assert_eq!(r.status, 404);

    // Plain HTTP on the HTTPS port is not a ClientHello: closed, and counted.
    let plain = tokio::time::timeout(
        Duration::from_secs(5),
        sluice_test_support::tcp_line(
            local(port),
            "GET / HTTP/1.1\r\nHost: httpbin.example.com\r\n",
        ),
    )
    .await
    .unwrap();
    assert_eq!(plain, "");
    assert_eventually(
        Duration::from_secs(5),
        "invalid_client_hello counted",
        || async {
            metric(
                p.admin_addr,
                "sluice_tls_handshake_errors_total{reason=\"invalid_client_hello\"}",
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    p.shutdown().await;
}

/// Secure Gateways, two hosts on one port: each SNI gets its own certificate and routes; a Host
/// outside the SNI's server gets 404 (no domain fronting); an unknown SNI is refused.
#[tokio::test]
async fn two_hosts_on_one_port_are_chosen_by_sni() {
    let httpbin = backend("httpbin", "v1").await;
    let helloworld = backend("helloworld", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let httpbin_leaf = ca.issue(&["httpbin.example.com"]);
    let hello_leaf = ca.issue(&["helloworld.example.com"]);
    let (c1, k1) = httpbin_leaf.write(dir.path(), "httpbin");
    let (c2, k2) = hello_leaf.write(dir.path(), "helloworld");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &format!(
            "{}---\n{}",
            service_yaml(
                "httpbin.default.svc.cluster.local",
                8000,
                &[("v1", httpbin.addr())]
            ),
            service_yaml(
                "helloworld.default.svc.cluster.local",
                5000,
                &[("v1", helloworld.addr())]
            )
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: https-httpbin\n      protocol: HTTPS\n    tls:\n      mode: SIMPLE\n      serverCertificate: {c1}\n      privateKey: {k1}\n    hosts:\n    - httpbin.example.com\n  - port:\n      number: {port}\n      name: https-helloworld\n      protocol: HTTPS\n    tls:\n      mode: SIMPLE\n      serverCertificate: {c2}\n      privateKey: {k2}\n    hosts:\n    - helloworld.example.com\n",
            c1 = c1.display(),
            k1 = k1.display(),
            c2 = c2.display(),
            k2 = k2.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: helloworld\nspec:\n  hosts:\n  - helloworld.example.com\n  gateways:\n  - mygateway\n  http:\n  - match:\n    - uri:\n        exact: /hello\n    route:\n    - destination:\n        host: helloworld\n        port:\n          number: 5000\n",
            httpbin_vs("httpbin", "httpbin.example.com", "mygateway")
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let to_httpbin = TlsClient::new(ca.pem(), "httpbin.example.com");
    let r = to_httpbin.get(local(port), "/status/200").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-service"], "httpbin");
    assert_eq!(r.peer.as_ref(), Some(&httpbin_leaf.der));

    let to_hello = TlsClient::new(ca.pem(), "helloworld.example.com");
    let r = to_hello.get(local(port), "/hello").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-service"], "helloworld");
    assert_eq!(r.peer.as_ref(), Some(&hello_leaf.der));

    // Envoy never compares Host with SNI: the SNI's server only has its own hosts, so 404.
    let fronted = TlsClient {
        host: Some("httpbin.example.com".into()),
        ..to_hello.clone()
    };
    let r = fronted.get(local(port), "/status/200").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(httpbin.requests(), 1);

    // An SNI no server names: the handshake is refused.
    let stranger = TlsClient::new(ca.pem(), "other.example.com");
    assert!(stranger.get(local(port), "/").await.is_err());
    assert_eventually(
        Duration::from_secs(5),
        "no_matching_server counted",
        || async {
            metric(
                p.admin_addr,
                "sluice_tls_handshake_errors_total{reason=\"no_matching_server\"}",
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    p.shutdown().await;
}

/// Secure Gateways, MUTUAL: a client certificate from the CA is required; none, or one from
/// another CA, is refused; `subjectAltNames` narrows who may connect.
#[tokio::test]
async fn mutual_tls_ingress_requires_a_client_certificate() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let other = TestCa::new("another root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    let gateway = |sans: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    tls:\n      mode: MUTUAL\n      serverCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n{sans}    hosts:\n    - httpbin.example.com\n",
            cert.display(),
            key.display(),
            ca_file.display()
        )
    };
    dir.write("gateway.yaml", &gateway(""));
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let anonymous = TlsClient::new(ca.pem(), "httpbin.example.com");
    let err = anonymous.get(local(port), "/status/200").await.unwrap_err();
    assert!(!err.is_empty());
    let client = TlsClient {
        client: Some(ca.issue(&["client.example.com"])),
        ..anonymous.clone()
    };
    assert_eq!(
        client.get(local(port), "/status/200").await.unwrap().status,
        200
    );
    let impostor = TlsClient {
        client: Some(other.issue(&["client.example.com"])),
        ..anonymous.clone()
    };
    assert!(impostor.get(local(port), "/status/200").await.is_err());
    assert_eq!(httpbin.requests(), 1);
    assert_eventually(Duration::from_secs(5), "refusals counted", || async {
        metric(
            p.admin_addr,
            "sluice_tls_handshake_errors_total{reason=\"no_client_certificate\"}",
        )
        .await
            == Some(1.0)
            && metric(
                p.admin_addr,
                "sluice_tls_handshake_errors_total{reason=\"bad_client_certificate\"}",
            )
            .await
                == Some(1.0)
    })
    .await;

    // Only the SAN listed is admitted from now on.
    dir.write(
        "gateway.yaml",
        &gateway("      subjectAltNames:\n      - admin.example.com\n"),
    );
    let v = p.reload().await.unwrap().unwrap();
    assert!(v > 1);
    assert!(client.get(local(port), "/status/200").await.is_err());
    let admin = TlsClient {
        client: Some(ca.issue(&["admin.example.com"])),
        ..anonymous.clone()
    };
    assert_eq!(
        admin.get(local(port), "/status/200").await.unwrap().status,
        200
    );
    p.shutdown().await;
}

/// `httpsRedirect` on the HTTP server: every host answers 301 to https, before routing.
#[tokio::test]
async fn https_redirect_answers_301_before_routing() {
    let httpbin = backend("httpbin", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: http\n      protocol: HTTP\n    hosts:\n    - httpbin.example.com\n    - other.example.com\n    tls:\n      httpsRedirect: true # sends 301 redirect for http requests\n"
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let c = TestClient::new();
    let r = c
        .get(local(port), "httpbin.example.com", "/status/200?x=1", &[])
        .await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://httpbin.example.com/status/200?x=1")
    );
    // A server host without a VirtualService redirects too; other hosts stay 404.
    let r = c.get(local(port), "other.example.com:80", "/", &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://other.example.com:80/"));
    assert_eq!(
        c.get(local(port), "third.example.com", "/", &[])
            .await
            .status,
        404
    );
    assert_eq!(httpbin.requests(), 0);
    p.shutdown().await;
}

/// Ingress without TLS termination: PASSTHROUGH by the VirtualService's `tls` rule; the client
/// sees the backend's own certificate; weighted destinations split exactly over connections.
#[tokio::test]
async fn passthrough_routes_by_sni_to_the_backend_certificate() {
    let backend_ca = TestCa::new("nginx root");
    let dir = ConfigDir::new();
    let nginx_leaf = backend_ca.issue(&["nginx.example.com"]);
    let (bc, bk) = nginx_leaf.write(dir.path(), "backend");
    let https_backend = |version: &str| BackendArgs {
        tls_cert: Some(bc.clone()),
        tls_key: Some(bk.clone()),
        ..BackendArgs::ephemeral("my-nginx", version)
    };
    let v1 = Backend::start(https_backend("v1")).await.unwrap();
    let v2 = Backend::start(https_backend("v2")).await.unwrap();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: my-nginx\nspec:\n  host: my-nginx.mesh-external.svc.cluster.local\n  subsets:\n  - name: v1\n    labels: {{version: v1}}\n  - name: v2\n    labels: {{version: v2}}\n",
            service_yaml(
                "my-nginx.mesh-external.svc.cluster.local",
                443,
                &[("v1", v1.addr()), ("v2", v2.addr())]
            )
            .replace("name: http, protocol: HTTP}", "name: https, protocol: HTTPS}")
            .replace("ports: {http:", "ports: {https:")
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway # use istio default ingress gateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    tls:\n      mode: PASSTHROUGH\n    hosts:\n    - nginx.example.com\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: nginx\nspec:\n  hosts:\n  - nginx.example.com\n  gateways:\n  - mygateway\n  tls:\n  - match:\n    - port: {port}\n      sniHosts:\n      - nginx.example.com\n    route:\n    - destination:\n        host: my-nginx.mesh-external.svc.cluster.local\n        subset: v1\n        port:\n          number: 443\n      weight: 75\n    - destination:\n        host: my-nginx.mesh-external.svc.cluster.local\n        subset: v2\n        port:\n          number: 443\n      weight: 25\n"
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TlsClient::new(backend_ca.pem(), "nginx.example.com");
    let mut versions = Vec::new();
    for _ in 0..8 {
        let r = client.get(local(port), "/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.peer.as_ref(),
            Some(&nginx_leaf.der),
            "the backend's own cert"
        );
        versions.push(r.body.split(' ').nth(1).unwrap().to_string());
    }
    assert_eq!(versions.iter().filter(|v| *v == "v1").count(), 6);
    assert_eq!(versions.iter().filter(|v| *v == "v2").count(), 2);
    // The proxy never saw HTTP: the backends got the requests with the client's Host.
    assert_eq!(
        v1.last_received().unwrap().host(),
        Some("nginx.example.com")
    );
    let opened = metric(
        p.admin_addr,
        "istio_tcp_connections_opened_total{reporter=\"source\"",
    )
    .await;
    assert!(opened.is_some_and(|n| n >= 1.0), "{opened:?}");
    // Another SNI has no server on this port.
    let other = TlsClient::new(backend_ca.pem(), "other.example.com");
    assert!(other.get(local(port), "/").await.is_err());
    p.shutdown().await;
}

/// Egress TLS origination: the app speaks HTTP to the proxy, the proxy speaks HTTPS upstream,
/// verifying the server against `caCertificates` and the SNI; a wrong CA fails with 503.
#[tokio::test]
async fn egress_tls_origination_simple() {
    let server_ca = TestCa::new("edition.cnn.com root");
    let dir = ConfigDir::new();
    let (bc, bk) = server_ca
        .issue(&["edition.cnn.com"])
        .write(dir.path(), "cnn");
    let cnn = Backend::start(BackendArgs {
        tls_cert: Some(bc),
        tls_key: Some(bk),
        ..BackendArgs::ephemeral("edition", "v1")
    })
    .await
    .unwrap();
    let ca_file = server_ca.write(dir.path(), "cnn-ca.pem");
    let mesh_port = free_port();
    // The task's ServiceEntry: port 80 (HTTP) sent to the endpoint's 443 (HTTPS), and the
    // DestinationRule originating TLS on 80 (as Istio's egress TLS origination task does).
    dir.write(
        "se.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: edition-cnn-com\nspec:\n  hosts:\n  - edition.cnn.com\n  ports:\n  - number: {mesh_port}\n    name: http-port\n    protocol: HTTP\n    targetPort: {tp}\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints:\n  - address: 127.0.0.1\n",
            tp = cnn.addr().port()
        ),
    );
    let dr = |tls: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: edition-cnn-com\nspec:\n  host: edition.cnn.com\n  trafficPolicy:\n    portLevelSettings:\n    - port:\n        number: {mesh_port}\n      tls:\n{tls}"
        )
    };
    dir.write(
        "dr.yaml",
        &dr(&format!(
            "        mode: SIMPLE # initiates HTTPS when accessing edition.cnn.com\n        caCertificates: {}\n",
            ca_file.display()
        )),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let r = c
        .get(local(mesh_port), "edition.cnn.com", "/politics", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("edition v1"), "{}", r.body);
    assert_eq!(cnn.last_received().unwrap().path, "/politics");
    // POST bodies go over the same TLS connections (hyper's client path).
    let r = c
        .request(
            "POST",
            local(mesh_port),
            "edition.cnn.com",
            "/post",
            &[],
            bytes::Bytes::from_static(b"hello"),
        )
        .await;
    assert_eq!(r.status, 200);

    // A CA that did not sign the server: the upstream handshake fails, 503 UF.
    let wrong = TestCa::new("wrong root");
    let wrong_file = wrong.write(dir.path(), "wrong-ca.pem");
    dir.write(
        "dr.yaml",
        &dr(&format!(
            "        mode: SIMPLE\n        caCertificates: {}\n",
            wrong_file.display()
        )),
    );
    p.reload().await.unwrap().unwrap();
    let before = cnn.requests();
    let r = c
        .get(local(mesh_port), "edition.cnn.com", "/politics", &[])
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(cnn.requests(), before);

    // An SNI the certificate does not name fails too; listing the SAN accepts it again.
    dir.write(
        "dr.yaml",
        &dr(&format!(
            "        mode: SIMPLE\n        caCertificates: {}\n        sni: wrong.example.com\n",
            ca_file.display()
        )),
    );
    p.reload().await.unwrap().unwrap();
    let r = c.get(local(mesh_port), "edition.cnn.com", "/x", &[]).await;
    assert_eq!(r.status, 503);
    dir.write(
        "dr.yaml",
        &dr(&format!(
            "        mode: SIMPLE\n        caCertificates: {}\n        sni: wrong.example.com\n        subjectAltNames:\n        - edition.cnn.com\n",
            ca_file.display()
        )),
    );
    p.reload().await.unwrap().unwrap();
    let r = c.get(local(mesh_port), "edition.cnn.com", "/x", &[]).await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}

/// Certificate rotation in file mode under load: new handshakes get the new certificate within
/// a second or two, and no request fails meanwhile.
#[tokio::test]
async fn rotated_certificate_files_serve_new_handshakes_without_failures() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let first = ca.issue(&["httpbin.example.com"]);
    let (cert, key) = first.write(dir.path(), "httpbin");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    tls:\n      mode: SIMPLE\n      serverCertificate: {}\n      privateKey: {}\n    hosts:\n    - httpbin.example.com\n",
            cert.display(),
            key.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TlsClient::new(ca.pem(), "httpbin.example.com");
    // Load: 4 workers opening a new connection per request, bounded in count and time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = client.clone();
        let stop = stop.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && tokio::time::Instant::now() < deadline
                && ok < 5_000
            {
                match client.get(local(port), "/status/200").await {
                    Ok(r) if r.status == 200 => ok += 1,
                    // A few examples are enough to tell what went wrong.
                    Ok(r) if failed.len() < 5 => failed.push(format!("status {}", r.status)),
                    Err(e) if failed.len() < 5 => failed.push(e),
                    _ => {}
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = ca.issue(&["httpbin.example.com"]);
    second.write(dir.path(), "httpbin");
    assert_eventually(
        Duration::from_secs(3),
        "the new certificate is served",
        || {
            let client = client.clone();
            let second = second.der.clone();
            async move {
                client
                    .get(local(port), "/status/200")
                    .await
                    .is_ok_and(|r| r.peer.as_ref() == Some(&second))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(failed.is_empty(), "failed requests: {failed:?}");
        total += ok;
    }
    assert!(total > 0);
    p.shutdown().await;
}

/// An independent client: OpenSSL sees the SNI's certificate, ALPN h2, the version bounds and
/// the client-certificate requirement.
#[tokio::test]
async fn openssl_sees_sni_alpn_versions_and_client_auth() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (c1, k1) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    let (c2, k2) = ca
        .issue(&["helloworld.example.com"])
        .write(dir.path(), "helloworld");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let client = ca.issue(&["client.example.com"]);
    let (cc, ck) = client.write(dir.path(), "client");
    let (tls13, tls12, mutual) = (free_port(), free_port(), free_port());
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    let server = |port: u16, name: &str, host: &str, tls: String| {
        format!("  - port: {{number: {port}, name: {name}, protocol: HTTPS}}\n    hosts: [{host}]\n    tls:\n{tls}")
    };
    let simple = |c: &Path, k: &Path, extra: &str| {
        format!(
            "      mode: SIMPLE\n      serverCertificate: {}\n      privateKey: {}\n{extra}",
            c.display(),
            k.display()
        )
    };
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: mygateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{}{}{}{}",
            server(tls13, "https-a", "httpbin.example.com", simple(&c1, &k1, "      minProtocolVersion: TLSV1_3\n")),
            server(tls13, "https-b", "helloworld.example.com", simple(&c2, &k2, "      minProtocolVersion: TLSV1_3\n")),
            server(tls12, "https-c", "httpbin.example.com", simple(&c1, &k1, "      maxProtocolVersion: TLSV1_2\n      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]\n")),
            server(
                mutual,
                "https-d",
                "httpbin.example.com",
                format!(
                    "      mode: MUTUAL\n      serverCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n",
                    c1.display(),
                    k1.display(),
                    ca_file.display()
                )
            ),
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let ca_arg = ca_file.display().to_string();
    let connect = |port: u16| format!("127.0.0.1:{port}");

    let out = s_client(&[
        "-connect",
        &connect(tls13),
        "-servername",
        "helloworld.example.com",
        "-alpn",
        "h2,http/1.1",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(
        out.contains("CN=helloworld.example.com") || out.contains("CN = helloworld.example.com"),
        "{out}"
    );
    assert!(out.contains("ALPN protocol: h2"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    let out = s_client(&[
        "-connect",
        &connect(tls13),
        "-servername",
        "httpbin.example.com",
        "-alpn",
        "http/1.1",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(
        out.contains("CN=httpbin.example.com") || out.contains("CN = httpbin.example.com"),
        "{out}"
    );
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    // minProtocolVersion TLSV1_3 refuses a TLS 1.2-only client.
    let out = s_client(&[
        "-connect",
        &connect(tls13),
        "-servername",
        "httpbin.example.com",
        "-tls1_2",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(out.contains("alert protocol version"), "{out}");
    // maxProtocolVersion TLSV1_2 with one suite: TLS 1.2 and that suite.
    let out = s_client(&[
        "-connect",
        &connect(tls12),
        "-servername",
        "httpbin.example.com",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(out.contains("TLSv1.2"), "{out}");
    assert!(out.contains("ECDHE-ECDSA-AES256-GCM-SHA384"), "{out}");
    let out = s_client(&[
        "-connect",
        &connect(tls12),
        "-servername",
        "httpbin.example.com",
        "-tls1_3",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(out.contains("alert protocol version"), "{out}");
    // MUTUAL: no client certificate → TLS 1.3's "certificate required" alert; with one, OK.
    let out = s_client(&[
        "-connect",
        &connect(mutual),
        "-servername",
        "httpbin.example.com",
        "-CAfile",
        &ca_arg,
    ])
    .await;
    assert!(out.contains("certificate required"), "{out}");
    let out = s_client(&[
        "-connect",
        &connect(mutual),
        "-servername",
        "httpbin.example.com",
        "-CAfile",
        &ca_arg,
        "-cert",
        &cc.display().to_string(),
        "-key",
        &ck.display().to_string(),
    ])
    .await;
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(!out.contains("alert"), "{out}");
    p.shutdown().await;
}

/// MUTUAL origination: a mesh service whose endpoint is a MUTUAL gateway server; the proxy
/// presents its client certificate, and without one the upstream refuses it (503).
#[tokio::test]
async fn mutual_origination_presents_the_client_certificate() {
    let app = backend("secure", "v1").await;
    let ca = TestCa::new("mesh-external root");
    let dir = ConfigDir::new();
    let (sc, sk) = ca
        .issue(&["secure.example.com"])
        .write(dir.path(), "server");
    let (cc, ck) = ca
        .issue(&["client.example.com"])
        .write(dir.path(), "client");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (gw_port, mesh_port) = (free_port(), free_port());
    dir.write(
        "app.yaml",
        &service_yaml(
            "app.default.svc.cluster.local",
            free_port(),
            &[("v1", app.addr())],
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: secure}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {gw_port}, name: https, protocol: HTTPS}}\n    hosts: [secure.example.com]\n    tls: {{mode: MUTUAL, serverCertificate: {}, privateKey: {}, caCertificates: {}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: secure}}\nspec:\n  hosts: [secure.example.com]\n  gateways: [secure]\n  http:\n  - route: [{{destination: {{host: app}}}}]\n",
            sc.display(),
            sk.display(),
            ca_file.display()
        ),
    );
    dir.write(
        "egress.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: secure}}\nspec:\n  hosts: [secure.example.com]\n  ports:\n  - {{number: {mesh_port}, name: http, protocol: HTTP, targetPort: {gw_port}}}\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n"
        ),
    );
    let dr = |tls: String| {
        format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: secure}}\nspec:\n  host: secure.example.com\n  trafficPolicy:\n    tls:\n{tls}")
    };
    dir.write(
        "dr.yaml",
        &dr(format!(
            "      mode: MUTUAL\n      clientCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n",
            cc.display(),
            ck.display(),
            ca_file.display()
        )),
    );
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
    })
    .await;
    let c = TestClient::new();
    let r = c
        .get(local(mesh_port), "secure.example.com", "/", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-service"), Some("secure"));
    // SIMPLE to the same MUTUAL server: no client certificate, the handshake is refused.
    dir.write(
        "dr.yaml",
        &dr(format!(
            "      mode: SIMPLE\n      caCertificates: {}\n",
            ca_file.display()
        )),
    );
    p.reload().await.unwrap().unwrap();
    let r = c
        .get(local(mesh_port), "secure.example.com", "/", &[])
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(app.requests(), 1);
    p.shutdown().await;
}

/// A `TLS` server with mode SIMPLE terminates and relays the stream by `tcp` rules (Istio runs
/// `tcp` routes on such servers): tcp-echo behind TLS.
#[tokio::test]
async fn tls_server_terminating_routes_by_tcp_rules() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = Backend::start(BackendArgs {
        tcp_echo: Some("one".into()),
        ..BackendArgs::ephemeral("tcp-echo", "v1")
    })
    .await
    .unwrap();
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (c, k) = ca
        .issue(&["tcp-echo.example.com"])
        .write(dir.path(), "echo");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "tcp-echo.default.svc.cluster.local",
            9000,
            &[("v1", echo.addr())],
        )
        .replace("name: http, protocol: HTTP}", "name: tcp, protocol: TCP}")
        .replace("ports: {http:", "ports: {tcp:"),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: tcp-echo-gateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: tls, protocol: TLS}}\n    hosts: [tcp-echo.example.com]\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: tcp-echo}}\nspec:\n  hosts: ['*']\n  gateways: [tcp-echo-gateway]\n  tcp:\n  - match:\n    - port: {port}\n    route:\n    - destination:\n        host: tcp-echo\n        port:\n          number: 9000\n",
            c.display(),
            k.display()
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TlsClient::new(ca.pem(), "tcp-echo.example.com");
    let mut s = client.connect(local(port)).await.unwrap();
    s.write_all(b"hello\n").await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .ok();
    assert_eq!(out.trim_end(), "one hello");
    p.shutdown().await;
}

/// A certificate file that cannot be used is an error at load and in `sluice analyze`, at the
/// field that names it; the proxy keeps serving its other servers.
#[tokio::test]
async fn unusable_certificate_files_are_reported_at_their_yaml_position() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    std::fs::write(dir.path().join("garbage.key"), "not a key").unwrap();
    let (good, broken) = (free_port(), free_port());
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    let gw = dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: mygateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {good}, name: https, protocol: HTTPS}}\n    hosts: [httpbin.example.com]\n    tls: {{mode: SIMPLE, serverCertificate: {c}, privateKey: {k}}}\n  - port: {{number: {broken}, name: https-broken, protocol: HTTPS}}\n    hosts: [httpbin.example.com]\n    tls:\n      mode: SIMPLE\n      serverCertificate: {c}\n      privateKey: garbage.key\n  - port: {{number: {broken}, name: https-missing, protocol: HTTPS}}\n    hosts: [other.example.com]\n    tls:\n      mode: MUTUAL\n      serverCertificate: {c}\n      privateKey: {k}\n      caCertificates: /nonexistent/ca.pem\n",
            c = cert.display(),
            k = key.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let diags = sluice::analyze::diagnostics(&[dir.path().to_path_buf()]);
    let material: Vec<_> = diags.iter().filter(|d| d.code == "SLC0013").collect();
    assert_eq!(material.len(), 2, "{material:#?}");
    assert_eq!(
        material[0].field.as_deref(),
        Some("spec.servers[1].tls.privateKey")
    );
    assert!(
        material[0].message.contains("garbage.key"),
        "{}",
        material[0].message
    );
    assert_eq!(material[0].file.as_deref(), Some(gw.to_str().unwrap()));
    assert_eq!(material[0].location.map(|l| l.line), Some(15));
    assert_eq!(
        material[1].field.as_deref(),
        Some("spec.servers[2].tls.caCertificates")
    );
    assert!(material[1].message.contains("/nonexistent/ca.pem"));

    let p = gateway_proxy(dir.path()).await;
    let snapshot = p.snapshot().unwrap();
    assert!(snapshot.diagnostics.iter().any(|d| d.code == "SLC0013"));
    let client = TlsClient::new(ca.pem(), "httpbin.example.com");
    assert_eq!(
        client.get(local(good), "/status/200").await.unwrap().status,
        200
    );
    assert!(client.get(local(broken), "/status/200").await.is_err());
    assert_eventually(
        Duration::from_secs(5),
        "certificate_unavailable counted",
        || async {
            metric(
                p.admin_addr,
                "sluice_tls_handshake_errors_total{reason=\"certificate_unavailable\"}",
            )
            .await
                == Some(1.0)
        },
    )
    .await;
    p.shutdown().await;
}

/// AUTO_PASSTHROUGH (an east-west gateway): no VirtualService, the ClientHello's SNI
/// `outbound_.<port>_.<subset>_.<host>` names the cluster, and the connection goes to it
/// untouched; hosts the server does not admit, or unknown clusters, are refused.
#[tokio::test]
async fn auto_passthrough_routes_by_the_cluster_named_in_the_sni() {
    let ca = TestCa::new("mesh root");
    let dir = ConfigDir::new();
    let sni_v2 = REVIEWS_V2_SNI;
    let MeshReviews {
        leaf,
        v1,
        v2,
        config,
    } = mesh_reviews(&ca, dir.path()).await;
    let port = free_port();
    dir.write("svc.yaml", &config);
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: cross-network-gateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: tls\n      protocol: TLS\n    tls:\n      mode: AUTO_PASSTHROUGH\n    hosts:\n    - \"*.local\"\n"
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    for _ in 0..3 {
        let r = TlsClient {
            host: Some("reviews".into()),
            ..TlsClient::new(ca.pem(), sni_v2)
        }
        .get(local(port), "/")
        .await
        .unwrap();
        assert_eq!(r.headers["x-version"], "v2");
        assert_eq!(
            r.peer.as_ref(),
            Some(&leaf.der),
            "the backend's own certificate"
        );
    }
    assert_eq!((v1.requests(), v2.requests()), (0, 3));
    // A subset that does not exist names no cluster: refused.
    let missing = TlsClient::new(
        ca.pem(),
        "outbound_.9080_.v9_.reviews.default.svc.cluster.local",
    );
    assert!(missing.get(local(port), "/").await.is_err());
    p.shutdown().await;
}

/// OPTIONAL_MUTUAL asks for a client certificate and verifies it when sent; with
/// `verifyCertificateHash` (openssl's fingerprint format) only that certificate is admitted.
#[tokio::test]
async fn optional_mutual_and_certificate_pins() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let other = TestCa::new("another root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let pinned = ca.issue(&["pinned.example.com"]);
    let (pinned_cert, _) = pinned.write(dir.path(), "pinned");
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pinned_cert)
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout)
        .trim()
        .rsplit('=')
        .next()
        .unwrap()
        .to_string();
    let (optional, pinning) = (free_port(), free_port());
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    let server = |port: u16, name: &str, mode: &str, extra: &str| {
        format!("  - port: {{number: {port}, name: {name}, protocol: HTTPS}}\n    hosts: [httpbin.example.com]\n    tls:\n      mode: {mode}\n      serverCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n{extra}", cert.display(), key.display(), ca_file.display())
    };
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: mygateway}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{}{}",
            server(optional, "https-optional", "OPTIONAL_MUTUAL", ""),
            server(pinning, "https-pinned", "MUTUAL", &format!("      verifyCertificateHash:\n      - \"{fingerprint}\"\n")),
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let p = gateway_proxy(dir.path()).await;
    let anonymous = TlsClient::new(ca.pem(), "httpbin.example.com");
    let with = |leaf| TlsClient {
        client: Some(leaf),
        ..anonymous.clone()
    };
    // OPTIONAL_MUTUAL: none is fine, a valid one is fine, an untrusted one is refused.
    assert_eq!(
        anonymous
            .get(local(optional), "/status/200")
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        with(ca.issue(&["c.example.com"]))
            .get(local(optional), "/status/200")
            .await
            .unwrap()
            .status,
        200
    );
    assert!(with(other.issue(&["c.example.com"]))
        .get(local(optional), "/status/200")
        .await
        .is_err());
    // The pin admits the pinned certificate only, though the CA signed both.
    assert_eq!(
        with(pinned)
            .get(local(pinning), "/status/200")
            .await
            .unwrap()
            .status,
        200
    );
    assert!(with(ca.issue(&["c.example.com"]))
        .get(local(pinning), "/status/200")
        .await
        .is_err());
    p.shutdown().await;
}

/// MUTUAL with `caCrl`: a client certificate the CA revoked is refused, one it did not revoke
/// is admitted; a rewritten CRL file applies to new handshakes.
#[tokio::test]
async fn revoked_client_certificates_are_refused_by_ca_crl() {
    let httpbin = backend("httpbin", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let crl_file = dir.write("ca.crl", &ca.crl(&[1001]));
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "httpbin.default.svc.cluster.local",
            8000,
            &[("v1", httpbin.addr())],
        ),
    );
    dir.write(
        "gateway.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mygateway\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    tls:\n      mode: MUTUAL\n      serverCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n      caCrl: {}\n    hosts:\n    - httpbin.example.com\n",
            cert.display(),
            key.display(),
            ca_file.display(),
            crl_file.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &httpbin_vs("httpbin", "httpbin.example.com", "mygateway"),
    );
    let _p = gateway_proxy(dir.path()).await;
    let anonymous = TlsClient::new(ca.pem(), "httpbin.example.com");
    let revoked = TlsClient {
        client: Some(ca.issue_serial(&["revoked.example.com"], 1001)),
        ..anonymous.clone()
    };
    let good = TlsClient {
        client: Some(ca.issue_serial(&["good.example.com"], 1002)),
        ..anonymous.clone()
    };
    assert!(revoked.get(local(port), "/status/200").await.is_err());
    assert_eq!(
        good.get(local(port), "/status/200").await.unwrap().status,
        200
    );
    // The CA now revokes the other one too (the file is watched, as certificates are).
    dir.write("ca.crl", &ca.crl(&[1001, 1002]));
    assert_eventually(Duration::from_secs(10), "the new CRL applies", || async {
        good.get(local(port), "/status/200").await.is_err()
    })
    .await;
    assert!(revoked.get(local(port), "/status/200").await.is_err());
}

/// DestinationRule `tls.caCrl`: an upstream whose certificate the CA revoked is refused
/// (503), one it did not revoke is reached; `subjectAltNames` still decide the name.
#[tokio::test]
async fn origination_refuses_a_revoked_server_certificate_by_ca_crl() {
    let server_ca = TestCa::new("api root");
    let dir = ConfigDir::new();
    let start = |serial: u64, name: &'static str| {
        let (c, k) = server_ca
            .issue_serial(&["api.example.com"], serial)
            .write(dir.path(), name);
        async move {
            Backend::start(BackendArgs {
                tls_cert: Some(c),
                tls_key: Some(k),
                ..BackendArgs::ephemeral(name, "v1")
            })
            .await
            .unwrap()
        }
    };
    let revoked = start(2001, "revoked").await;
    let good = start(2002, "good").await;
    let ca_file = server_ca.write(dir.path(), "api-ca.pem");
    let crl_file = dir.write("api.crl", &server_ca.crl(&[2001]));
    let (revoked_port, good_port) = (free_port(), free_port());
    for (name, port, backend) in [
        ("revoked", revoked_port, &revoked),
        ("good", good_port, &good),
    ] {
        dir.write(
            &format!("{name}.yaml"),
            &format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: {name}\nspec:\n  hosts: [{name}.example.com]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP, targetPort: {tp}}}\n  resolution: STATIC\n  location: MESH_EXTERNAL\n  endpoints:\n  - address: 127.0.0.1\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\nspec:\n  host: {name}.example.com\n  trafficPolicy:\n    tls:\n      mode: SIMPLE\n      caCertificates: {ca}\n      caCrl: {crl}\n      subjectAltNames: [api.example.com]\n",
                tp = backend.addr().port(),
                ca = ca_file.display(),
                crl = crl_file.display()
            ),
        );
    }
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let r = c.get(local(good_port), "good.example.com", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = c
        .get(local(revoked_port), "revoked.example.com", "/", &[])
        .await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(revoked.requests(), 0);
    p.shutdown().await;
}
