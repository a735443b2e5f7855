//! Gateway server fields beyond ports and hosts: `bind` (the server's listener binds that
//! address only, as Istio binds it) and `name` (the stat prefix of a TLS-terminating server),
//! and the per-route `statPrefix` counters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;
use sluice_test_support::pki::{TestCa, TlsClient};
use sluice_test_support::{
    backend, failing_backend, free_port, mesh_reviews, proxy, service_yaml, Backend, BackendArgs,
    ConfigDir, MeshReviews, ProxyHandle, TestClient, REVIEWS_V2_SNI,
};

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

/// A gateway proxy (no mesh listeners).
async fn gateway_proxy(dir: &Path) -> ProxyHandle {
    proxy(dir, |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
    })
    .await
}

fn gateway(name: &str, port: u16, extra: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n{extra}"
    )
}

fn route_vs(name: &str, gateway: &str, host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {name}\nspec:\n  hosts: [\"{host}\"]\n  gateways: [{gateway}]\n  http:\n{http}"
    )
}

/// The metric lines of the Prometheus exposition that start with `name` and contain every
/// label of `labels`.
async fn metric_lines(admin: SocketAddr, name: &str, labels: &[&str]) -> Vec<String> {
    let r = TestClient::new()
        .get(admin, "localhost", "/stats/prometheus", &[])
        .await;
    r.body
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .map(str::to_string)
        .collect()
}

fn value(line: &str) -> f64 {
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Two Gateways on one port, each `bind`ing its own loopback address: each address serves its
/// own Gateway's routes, and the port is not open on any other address.
#[tokio::test]
async fn server_bind_listens_on_that_address_only() {
    let a = backend("a", "v1").await;
    let b = backend("b", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("a.default.svc.cluster.local", 80, &[("v1", a.addr())]),
            service_yaml("b.default.svc.cluster.local", 80, &[("v1", b.addr())])
        ),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "{}    bind: 127.0.0.2\n---\n{}    bind: 127.0.0.3\n",
            gateway("gw-a", port, ""),
            gateway("gw-b", port, "")
        ),
    );
    let http = |dest: &str| format!("  - route:\n    - destination: {{host: {dest}}}\n");
    dir.write(
        "vs.yaml",
        &format!(
            "{}---\n{}",
            route_vs("to-a", "gw-a", "*", &http("a")),
            route_vs("to-b", "gw-b", "*", &http("b"))
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TestClient::new();
    for _ in 0..3 {
        let r = client
            .get(at([127, 0, 0, 2], port), "x.example.com", "/", &[])
            .await;
        assert_eq!(r.status, 200);
        assert!(r.first_line().starts_with("a v1"), "{}", r.body);
        let r = client
            .get(at([127, 0, 0, 3], port), "x.example.com", "/", &[])
            .await;
        assert_eq!(r.status, 200);
        assert!(r.first_line().starts_with("b v1"), "{}", r.body);
    }
    // The gateway address (127.0.0.1 here) does not serve the bound servers' port.
    let refused = client
        .try_request(
            "GET",
            at([127, 0, 0, 1], port),
            "x.example.com",
            "/",
            &[],
            Bytes::new(),
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    // The listeners are named by their bind address, as Envoy's are.
    let listeners = client.admin(p.admin_addr, "/routes").await.body;
    assert!(
        listeners.contains(&format!("127.0.0.2_{port}"))
            && listeners.contains(&format!("127.0.0.3_{port}")),
        "{listeners}"
    );
}

/// A named TLS-terminating server counts its requests under its name (Istio makes the name its
/// connection manager's stat prefix); a plain-text server's name is not a stat prefix in Istio
/// and adds no series.
#[tokio::test]
async fn named_https_server_counts_requests_under_its_name() {
    let web = backend("web", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let (cert, key) = ca
        .issue(&["web.example.com"])
        .write(dir.path(), "web.example.com");
    let tls_port = free_port();
    let http_port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml("web.default.svc.cluster.local", 80, &[("v1", web.addr())]),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port: {{number: {tls_port}, name: https, protocol: HTTPS}}\n    name: web-https\n    tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}\n    hosts: [web.example.com]\n  - port: {{number: {http_port}, name: http, protocol: HTTP}}\n    name: web-plain\n    hosts: [web.example.com]\n",
            cert.display(),
            key.display()
        ),
    );
    dir.write(
        "vs.yaml",
        &route_vs(
            "web",
            "gw",
            "web.example.com",
            "  - match: [{uri: {prefix: /app}}]\n    route:\n    - destination: {host: web}\n",
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let tls = TlsClient::new(ca.pem(), "web.example.com");
    for _ in 0..3 {
        assert_eq!(
            tls.get(at([127, 0, 0, 1], tls_port), "/app")
                .await
                .unwrap()
                .status,
            200
        );
    }
    assert_eq!(
        tls.get(at([127, 0, 0, 1], tls_port), "/other")
            .await
            .unwrap()
            .status,
        404
    );
    let plain = TestClient::new()
        .get(
            at([127, 0, 0, 1], http_port),
            "web.example.com",
            "/app",
            &[],
        )
        .await;
    assert_eq!(plain.status, 200);

    let name = "sluice_gateway_server_requests_total";
    let ok = metric_lines(
        p.admin_addr,
        name,
        &["server=\"web-https\"", "response_code_class=\"2xx\""],
    )
    .await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(value(&ok[0]), 3.0);
    let not_found = metric_lines(
        p.admin_addr,
        name,
        &["server=\"web-https\"", "response_code_class=\"4xx\""],
    )
    .await;
    assert_eq!(not_found.len(), 1, "{not_found:?}");
    assert_eq!(value(&not_found[0]), 1.0);
    let plain_series = metric_lines(p.admin_addr, name, &["server=\"web-plain\""]).await;
    assert!(plain_series.is_empty(), "{plain_series:?}");
}

/// `statPrefix` on a match entry: the requests forwarded by that entry are counted by response
/// code class under the prefix and the virtual host (Envoy's
/// `vhost.<vhost>.route.<prefix>.upstream_rq_<class>`); entries without one add no series.
#[tokio::test]
async fn stat_prefix_counts_the_requests_of_its_match() {
    let good = backend("good", "v1").await;
    let bad = failing_backend("bad", "v1").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("good.default.svc.cluster.local", 80, &[("v1", good.addr())]),
            service_yaml("bad.default.svc.cluster.local", 80, &[("v1", bad.addr())])
        ),
    );
    dir.write("gw.yaml", &gateway("gw", port, ""));
    dir.write(
        "vs.yaml",
        &route_vs(
            "api",
            "gw",
            "api.example.com",
            "  - match:\n    - uri: {prefix: /good}\n      statPrefix: good-api\n    - uri: {prefix: /also-good}\n    route:\n    - destination: {host: good}\n  - match:\n    - uri: {prefix: /bad}\n      statPrefix: bad-api\n    route:\n    - destination: {host: bad}\n",
        ),
    );
    let p = gateway_proxy(dir.path()).await;
    let client = TestClient::new();
    let addr = at([127, 0, 0, 1], port);
    for _ in 0..4 {
        assert_eq!(
            client
                .get(addr, "api.example.com", "/good", &[])
                .await
                .status,
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(
            client
                .get(addr, "api.example.com", "/also-good", &[])
                .await
                .status,
            200
        );
        assert_eq!(
            client
                .get(addr, "api.example.com", "/bad", &[])
                .await
                .status,
            503
        );
    }
    let name = "sluice_route_requests_total";
    let vhost = format!("virtual_host=\"api.example.com:{port}\"");
    let good_lines = metric_lines(
        p.admin_addr,
        name,
        &[
            &vhost,
            "stat_prefix=\"good-api\"",
            "response_code_class=\"2xx\"",
        ],
    )
    .await;
    assert_eq!(good_lines.len(), 1, "{good_lines:?}");
    // Only the entry that carries the prefix counts (the rule's other entry does not).
    assert_eq!(value(&good_lines[0]), 4.0);
    let bad_lines = metric_lines(
        p.admin_addr,
        name,
        &[
            &vhost,
            "stat_prefix=\"bad-api\"",
            "response_code_class=\"5xx\"",
        ],
    )
    .await;
    assert_eq!(bad_lines.len(), 1, "{bad_lines:?}");
    assert_eq!(value(&bad_lines[0]), 2.0);
    let all = metric_lines(p.admin_addr, name, &[]).await;
    assert_eq!(all.len(), 2, "{all:?}");
}

/// A server `bind: unix:///PATH` (port 0): its listener is that unix domain socket, serving the
/// Gateway's routes to real clients over it; removing the server closes the socket and removes
/// its file.
#[tokio::test]
async fn server_bind_to_a_unix_socket_serves_http_there() {
    let a = backend("a", "v1").await;
    let dir = ConfigDir::new();
    let socket = dir.path().join("gw.sock");
    dir.write(
        "svc.yaml",
        &service_yaml("a.default.svc.cluster.local", 80, &[("v1", a.addr())]),
    );
    let unix_gateway = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-unix\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port: {{number: 0, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n    bind: unix://{}\n",
        socket.display()
    );
    dir.write("gw.yaml", &unix_gateway);
    dir.write(
        "vs.yaml",
        &route_vs(
            "to-a",
            "gw-unix",
            "*",
            "  - route:\n    - destination: {host: a}\n",
        ),
    );
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
        o.watch = false;
    })
    .await;
    for _ in 0..3 {
        let (status, body) = sluice_test_support::unix::http_get(&socket, "x.example.com")
            .await
            .unwrap();
        assert_eq!(status, 200);
        assert!(body.starts_with("a v1"), "{body}");
    }
    assert_eq!(a.requests(), 3);
    // The server removed: the socket closes and its file goes.
    dir.write("gw.yaml", &gateway("gw-unix", free_port(), ""));
    assert!(p.reload().await.unwrap().is_ok());
    sluice_test_support::assert_eventually(
        std::time::Duration::from_secs(5),
        "the socket file is removed",
        || async { !socket.exists() },
    )
    .await;
    assert!(
        sluice_test_support::unix::http_get(&socket, "x.example.com")
            .await
            .is_err()
    );
    p.shutdown().await;
}

/// A Gateway `gw-unix` whose one server listens on the unix domain socket `socket` (port 0),
/// with `protocol`, `hosts` and the YAML of its `tls:` block (six spaces in), if any.
fn unix_gateway(socket: &Path, protocol: &str, hosts: &str, tls: &str) -> String {
    let tls = if tls.is_empty() {
        String::new()
    } else {
        format!("    tls:\n{tls}")
    };
    format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw-unix\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port: {{number: 0, name: uds, protocol: {protocol}}}\n    hosts: [{hosts}]\n    bind: unix://{}\n{tls}",
        socket.display()
    )
}

/// A gateway proxy reading `dir` once.
async fn unix_gateway_proxy(dir: &Path) -> ProxyHandle {
    proxy(dir, |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
        o.watch = false;
    })
    .await
}

/// Whether the snapshot says nothing about the Gateway's unix domain socket server.
fn unix_bind_is_quiet(p: &ProxyHandle) -> bool {
    let said = format!("{:?}", p.snapshot().unwrap().diagnostics);
    !said.contains("spec.servers[0].bind") && !said.contains("unix domain socket")
}

/// An HTTPS server (`tls.mode: SIMPLE`) on a unix domain socket terminates TLS with its
/// certificate over the socket and routes the requests inside by its VirtualService, as on a
/// TCP port; the client has no IP, so no `x-forwarded-for` is added for it (as Envoy for a pipe
/// address).
#[tokio::test]
async fn https_server_on_a_unix_socket_terminates_tls_and_routes() {
    let a = backend("a", "v1").await;
    let b = backend("b", "v1").await;
    let ca = TestCa::new("example.com root");
    let dir = ConfigDir::new();
    let socket = dir.path().join("https.sock");
    let (cert, key) = ca
        .issue(&["a.example.com"])
        .write(dir.path(), "a.example.com");
    dir.write(
        "svc.yaml",
        &format!(
            "{}---\n{}",
            service_yaml("a.default.svc.cluster.local", 80, &[("v1", a.addr())]),
            service_yaml("b.default.svc.cluster.local", 80, &[("v1", b.addr())])
        ),
    );
    dir.write(
        "gw.yaml",
        &unix_gateway(
            &socket,
            "HTTPS",
            "\"a.example.com\"",
            &format!(
                "      mode: SIMPLE\n      serverCertificate: {}\n      privateKey: {}\n",
                cert.display(),
                key.display()
            ),
        ),
    );
    dir.write(
        "vs.yaml",
        &route_vs(
            "to-a",
            "gw-unix",
            "a.example.com",
            "  - match:\n    - uri: {prefix: /b}\n    route:\n    - destination: {host: b}\n  - route:\n    - destination: {host: a}\n",
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    assert!(unix_bind_is_quiet(&p));
    let client = TlsClient::new(ca.pem(), "a.example.com");
    for _ in 0..2 {
        let r = client.get_unix(&socket, "/").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.starts_with("a v1"), "{}", r.body);
    }
    let r = client.get_unix(&socket, "/b/x").await.unwrap();
    assert!(r.body.starts_with("b v1"), "{}", r.body);
    let got = a.last_received().unwrap();
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    assert_eq!(
        got.header("x-forwarded-for"),
        None,
        "a pipe client has no IP"
    );
    assert_eq!((a.requests(), b.requests()), (2, 1));
    // Another name has no server there: the handshake fails.
    let other = TlsClient::new(ca.pem(), "other.example.com");
    assert!(other.get_unix(&socket, "/").await.is_err());
    p.shutdown().await;
}

/// An HTTPS server with `mode: MUTUAL` on a unix domain socket asks for a client certificate as
/// on a TCP port: none, or one from another CA, is refused; one from the CA is served.
#[tokio::test]
async fn mutual_tls_server_on_a_unix_socket_requires_a_client_certificate() {
    let a = backend("a", "v1").await;
    let ca = TestCa::new("example.com root");
    let other = TestCa::new("another root");
    let dir = ConfigDir::new();
    let socket = dir.path().join("mutual.sock");
    let (cert, key) = ca
        .issue(&["a.example.com"])
        .write(dir.path(), "a.example.com");
    let ca_file = ca.write(dir.path(), "ca.crt");
    dir.write(
        "svc.yaml",
        &service_yaml("a.default.svc.cluster.local", 80, &[("v1", a.addr())]),
    );
    dir.write(
        "gw.yaml",
        &unix_gateway(
            &socket,
            "HTTPS",
            "\"a.example.com\"",
            &format!(
                "      mode: MUTUAL\n      serverCertificate: {}\n      privateKey: {}\n      caCertificates: {}\n",
                cert.display(),
                key.display(),
                ca_file.display()
            ),
        ),
    );
    dir.write(
        "vs.yaml",
        &route_vs(
            "to-a",
            "gw-unix",
            "a.example.com",
            "  - route:\n    - destination: {host: a}\n",
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    assert!(unix_bind_is_quiet(&p));
    let anonymous = TlsClient::new(ca.pem(), "a.example.com");
    assert!(anonymous.get_unix(&socket, "/").await.is_err());
    let impostor = TlsClient {
        client: Some(other.issue(&["client.example.com"])),
        ..anonymous.clone()
    };
    assert!(impostor.get_unix(&socket, "/").await.is_err());
    let client = TlsClient {
        client: Some(ca.issue(&["client.example.com"])),
        ..anonymous.clone()
    };
    let r = client.get_unix(&socket, "/").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("a v1"), "{}", r.body);
    assert_eq!(a.requests(), 1);
    p.shutdown().await;
}

/// An AUTO_PASSTHROUGH server on a unix domain socket routes by the cluster its SNI names
/// (`outbound_.<port>_.<subset>_.<host>`), untouched, as on a TCP port; an unknown subset is
/// refused.
#[tokio::test]
async fn auto_passthrough_server_on_a_unix_socket_routes_by_the_cluster_in_the_sni() {
    let ca = TestCa::new("mesh root");
    let dir = ConfigDir::new();
    let socket = dir.path().join("east-west.sock");
    let sni_v2 = REVIEWS_V2_SNI;
    let MeshReviews {
        leaf,
        v1,
        v2,
        config,
    } = mesh_reviews(&ca, dir.path()).await;
    dir.write("svc.yaml", &config);
    dir.write(
        "gw.yaml",
        &unix_gateway(
            &socket,
            "TLS",
            "\"*.local\"",
            "      mode: AUTO_PASSTHROUGH\n",
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    assert!(unix_bind_is_quiet(&p));
    for _ in 0..2 {
        let r = TlsClient {
            host: Some("reviews".into()),
            ..TlsClient::new(ca.pem(), sni_v2)
        }
        .get_unix(&socket, "/")
        .await
        .unwrap();
        assert_eq!(r.headers["x-version"], "v2");
        assert_eq!(
            r.peer.as_ref(),
            Some(&leaf.der),
            "the backend's own certificate"
        );
    }
    assert_eq!((v1.requests(), v2.requests()), (0, 2));
    let missing = TlsClient::new(
        ca.pem(),
        "outbound_.9080_.v9_.reviews.default.svc.cluster.local",
    );
    assert!(missing.get_unix(&socket, "/").await.is_err());
    p.shutdown().await;
}

/// A TLS server with `mode: PASSTHROUGH` on a unix domain socket relays the connection
/// untouched to the destination its VirtualService's `tls` rule picks by SNI: the client sees
/// the backend's own certificate; an SNI without a server is closed.
#[tokio::test]
async fn tls_passthrough_server_on_a_unix_socket_routes_by_sni() {
    let backend_ca = TestCa::new("nginx root");
    let dir = ConfigDir::new();
    let socket = dir.path().join("passthrough.sock");
    let leaf = backend_ca.issue(&["nginx.example.com"]);
    let (bc, bk) = leaf.write(dir.path(), "backend");
    let nginx = Backend::start(BackendArgs {
        tls_cert: Some(bc),
        tls_key: Some(bk),
        ..BackendArgs::ephemeral("my-nginx", "v1")
    })
    .await
    .unwrap();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "my-nginx.default.svc.cluster.local",
            443,
            &[("v1", nginx.addr())],
        )
        .replace(
            "name: http, protocol: HTTP}",
            "name: https, protocol: HTTPS}",
        )
        .replace("ports: {http:", "ports: {https:"),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: nginx\nspec:\n  hosts: [nginx.example.com]\n  gateways: [gw-unix]\n  tls:\n  - match:\n    - sniHosts: [nginx.example.com]\n    route:\n    - destination:\n        host: my-nginx.default.svc.cluster.local\n        port: {{number: 443}}\n",
            unix_gateway(
                &socket,
                "TLS",
                "\"nginx.example.com\"",
                "      mode: PASSTHROUGH\n"
            )
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    assert!(unix_bind_is_quiet(&p));
    let client = TlsClient::new(backend_ca.pem(), "nginx.example.com");
    for _ in 0..3 {
        let r = client.get_unix(&socket, "/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.peer.as_ref(), Some(&leaf.der), "the backend's own cert");
        assert!(r.body.starts_with("my-nginx v1"), "{}", r.body);
    }
    assert_eq!(nginx.requests(), 3);
    let other = TlsClient::new(backend_ca.pem(), "other.example.com");
    assert!(other.get_unix(&socket, "/").await.is_err());
    p.shutdown().await;
}

/// A TCP server on a unix domain socket relays each connection to the destination of its
/// VirtualService's `tcp` rule (a tcp-echo server), byte for byte.
#[tokio::test]
async fn tcp_server_on_a_unix_socket_relays_to_tcp_echo() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let dir = ConfigDir::new();
    let socket = dir.path().join("tcp.sock");
    dir.write(
        "echo.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: tcp-echo}}\nspec:\n  hosts: [tcp-echo.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {}}}}}\n", echo.addr().port()),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: tcp-echo\nspec:\n  hosts: [\"*\"]\n  gateways: [gw-unix]\n  tcp:\n  - route:\n    - destination:\n        host: tcp-echo\n        port: {{number: 9000}}\n",
            unix_gateway(&socket, "TCP", "\"*\"", "")
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    assert!(unix_bind_is_quiet(&p));
    for i in 0..3 {
        let reply = sluice_test_support::unix::line(&socket, &format!("hello {i}"))
            .await
            .unwrap();
        assert_eq!(reply, format!("one hello {i}"));
    }
    p.shutdown().await;
    sluice_test_support::assert_eventually(
        std::time::Duration::from_secs(5),
        "the socket file is removed at shutdown",
        || async { !socket.exists() },
    )
    .await;
}

/// A client of a unix domain socket has no IP: an AuthorizationPolicy `ipBlocks` never
/// matches it (even `0.0.0.0/0` and `::/0`), while the same policy lets a TCP client in.
#[tokio::test]
async fn unix_socket_clients_match_no_ip_blocks() {
    let a = backend("a", "v1").await;
    let dir = ConfigDir::new();
    let socket = dir.path().join("gw.sock");
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml("a.default.svc.cluster.local", 80, &[("v1", a.addr())]),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "{}---\n{}",
            unix_gateway(&socket, "HTTP", "\"*\"", ""),
            gateway("gw-tcp", port, "")
        ),
    );
    dir.write(
        "vs.yaml",
        &route_vs(
            "to-a",
            "gw-unix, gw-tcp",
            "*",
            "  - route:\n    - destination: {host: a}\n",
        ),
    );
    dir.write(
        "policy.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: by-ip\nspec:\n  selector:\n    matchLabels:\n      istio: ingressgateway\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"0.0.0.0/0\", \"::/0\"]\n",
    );
    let p = unix_gateway_proxy(dir.path()).await;
    let r = TestClient::new()
        .get(at([127, 0, 0, 1], port), "x.example.com", "/", &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (status, body) = sluice_test_support::unix::http_get(&socket, "x.example.com")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (403, "RBAC: access denied"));
    assert_eq!(a.requests(), 1);
    p.shutdown().await;
}

/// `bind: unix://@NAME` is a socket in Linux's abstract namespace, as Envoy and Istio read it:
/// served there (a TCP server here), and no file is made for it.
#[tokio::test]
async fn server_bind_to_an_abstract_unix_socket_is_served_without_a_file() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let dir = ConfigDir::new();
    let name = format!("@sluice-test-{}-{}", std::process::id(), free_port());
    let socket = Path::new(&name);
    dir.write(
        "echo.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: tcp-echo}}\nspec:\n  hosts: [tcp-echo.default.svc.cluster.local]\n  resolution: STATIC\n  ports: [{{number: 9000, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {}}}}}\n", echo.addr().port()),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: tcp-echo\nspec:\n  hosts: [\"*\"]\n  gateways: [gw-unix]\n  tcp:\n  - route:\n    - destination:\n        host: tcp-echo\n        port: {{number: 9000}}\n",
            unix_gateway(socket, "TCP", "\"*\"", "")
        ),
    );
    let p = unix_gateway_proxy(dir.path()).await;
    let reply = sluice_test_support::unix::line(socket, "hello")
        .await
        .unwrap();
    assert_eq!(reply, "one hello");
    assert!(
        !socket.exists() && !dir.path().join(&name).exists(),
        "no file"
    );
    p.shutdown().await;
}
