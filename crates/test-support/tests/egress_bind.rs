//! Sidecar egress `bind` and `captureMode`, as Istio binds egress listeners: on a proxy without
//! interception every egress listener is a real one, at its `bind` (its port's mesh listener
//! moves there); on a proxy that intercepts, only a `captureMode: NONE` listener is, at its
//! `bind` else 127.0.0.1. Real backends and clients on loopback addresses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use bytes::Bytes;
use sluice_test_support::pki::TestCa;
use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn sidecar(egress: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  egress:\n{egress}")
}

/// Whether an HTTP request for `app` at `addr` is answered 200 (a refused connection is not).
async fn answers(addr: SocketAddr) -> bool {
    TestClient::new()
        .try_request("GET", addr, "app", "/", &[], Bytes::new())
        .await
        .is_ok_and(|r| r.status == 200)
}

/// No interception: the HTTP port's egress listener binds 127.0.0.2 instead of the default
/// address, and the catch-all listener's `bind` takes the TCP service's port to 127.0.0.3.
#[tokio::test]
async fn egress_bind_moves_the_listener_of_its_port() {
    let app = backend("app", "v1").await;
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let (http_port, tcp_port) = (free_port(), free_port());
    let dir = ConfigDir::new();
    dir.write(
        "app.yaml",
        &service_yaml(HOST, http_port, &[("v1", app.addr())]),
    );
    dir.write(
        "echo.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {tcp_port}, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {}}}}}\n", echo.addr().port()),
    );
    dir.write(
        "sidecar.yaml",
        &sidecar(&format!("  - port: {{number: {http_port}, protocol: HTTP, name: http}}\n    bind: 127.0.0.2\n    hosts: [\"*/*\"]\n  - bind: 127.0.0.3\n    hosts: [\"*/*\"]\n")),
    );
    let p = proxy(dir.path(), |o| o.watch = false).await;
    assert!(answers(at([127, 0, 0, 2], http_port)).await);
    assert!(
        !answers(at([127, 0, 0, 1], http_port)).await,
        "the default listener moved to the bind address"
    );
    assert_eq!(
        tcp_line(at([127, 0, 0, 3], tcp_port), "hello").await,
        "one hello"
    );
    assert!(
        tokio::net::TcpStream::connect(at([127, 0, 0, 1], tcp_port))
            .await
            .is_err(),
        "the TCP listener moved too"
    );
    p.shutdown().await;
}

/// A sidecar that intercepts (`--outbound-port`) has no per-service listeners: an egress
/// listener with `captureMode: NONE` is bound anyway (127.0.0.1 without a `bind`, else the
/// bind); without it, nothing is, and a `bind` alone is reported.
#[tokio::test]
async fn capture_mode_none_binds_the_egress_listener_of_an_intercepting_sidecar() {
    let app = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("app.yaml", &service_yaml(HOST, port, &[("v1", app.addr())]));
    let listener = |extra: &str| {
        sidecar(&format!(
            "  - port: {{number: {port}, protocol: HTTP, name: http}}\n    hosts: [\"./*\"]\n{extra}"
        ))
    };
    dir.write("sidecar.yaml", &listener("    captureMode: NONE\n"));
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.proxy.mesh_role = false;
        o.proxy.outbound_role = true;
    })
    .await;
    assert!(answers(at([127, 0, 0, 1], port)).await);

    dir.write(
        "sidecar.yaml",
        &listener("    captureMode: NONE\n    bind: 127.0.0.4\n"),
    );
    assert!(p.reload().await.unwrap().is_ok());
    assert!(answers(at([127, 0, 0, 4], port)).await);
    assert!(!answers(at([127, 0, 0, 1], port)).await);

    dir.write("sidecar.yaml", &listener("    bind: 127.0.0.4\n"));
    assert!(p.reload().await.unwrap().is_ok());
    assert!(!answers(at([127, 0, 0, 4], port)).await, "nothing is bound");
    let warned = format!("{:?}", p.snapshot().unwrap().diagnostics);
    assert!(
        warned.contains("spec.egress[0].bind") && warned.contains("captureMode: NONE"),
        "{warned}"
    );
    p.shutdown().await;
}

/// An HTTP egress listener on a unix domain socket (`port: 0`, `bind: unix://PATH`) is bound
/// whatever the capture mode, and routes by Host to the services it imports, on their own
/// ports; a host it does not import is not found there.
#[tokio::test]
async fn egress_bind_to_a_unix_socket_serves_its_hosts_there() {
    let app = backend("app", "v1").await;
    let other = backend("other", "v1").await;
    let dir = ConfigDir::new();
    let socket = dir.path().join("egress.sock");
    dir.write(
        "app.yaml",
        &format!(
            "{}---\n{}",
            service_yaml(HOST, free_port(), &[("v1", app.addr())]),
            service_yaml("other.example.com", free_port(), &[("v1", other.addr())])
        ),
    );
    dir.write(
        "sidecar.yaml",
        &sidecar(&format!(
            "  - port: {{number: 0, protocol: HTTP, name: uds}}\n    bind: unix://{}\n    hosts: [\"./app.default.svc.cluster.local\"]\n  - hosts: [\"*/*\"]\n",
            socket.display()
        )),
    );
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.proxy.mesh_role = false;
        o.proxy.outbound_role = true;
    })
    .await;
    for _ in 0..2 {
        let (status, body) = sluice_test_support::unix::http_get(&socket, "app")
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("app v1"), "{body}");
    }
    let (status, _) = sluice_test_support::unix::http_get(&socket, "other.example.com")
        .await
        .unwrap();
    assert_eq!(status, 404, "not imported by the socket's listener");
    assert_eq!(other.requests(), 0);
    p.shutdown().await;
}

/// A ServiceEntry `host` with one TCP port `port`, served by the echo server at `echo`.
fn tcp_service(name: &str, host: &str, port: u16, echo: SocketAddr) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{host}]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {port}, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {}}}}}\n", echo.port())
}

/// A TCP egress listener on a unix domain socket (`port: 0`, `protocol: TCP`) relays each
/// connection to the service it imports, byte for byte; with a second TCP service imported the
/// first one keeps the socket and the other is said (a stream has no Host to choose by), as
/// Istio's conflicting TCP listeners.
#[tokio::test]
async fn egress_bind_to_a_unix_socket_relays_a_tcp_port() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let mut args = BackendArgs::ephemeral("tcp-echo", "v2");
    args.tcp_echo = Some("two".into());
    let other = Backend::start(args).await.unwrap();
    let dir = ConfigDir::new();
    let socket = dir.path().join("egress-tcp.sock");
    dir.write(
        "echo.yaml",
        &format!(
            "{}---\n{}",
            tcp_service("echo", "echo.example.com", free_port(), echo.addr()),
            tcp_service("zecho", "zecho.example.com", free_port(), other.addr())
        ),
    );
    let egress = |hosts: &str| {
        sidecar(&format!(
            "  - port: {{number: 0, protocol: TCP, name: uds}}\n    bind: unix://{}\n    hosts: [{hosts}]\n  - hosts: [\"*/*\"]\n",
            socket.display()
        ))
    };
    dir.write("sidecar.yaml", &egress("\"./echo.example.com\""));
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.proxy.mesh_role = false;
        o.proxy.outbound_role = true;
    })
    .await;
    let warned = format!("{:?}", p.snapshot().unwrap().diagnostics);
    assert!(!warned.contains("spec.egress[0].bind"), "{warned}");
    for i in 0..3 {
        let reply = unix::line(&socket, &format!("hello {i}")).await.unwrap();
        assert_eq!(reply, format!("one hello {i}"));
    }
    // Both services imported: the first keeps the socket, the other is said.
    dir.write(
        "sidecar.yaml",
        &egress("\"./echo.example.com\", \"./zecho.example.com\""),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let warned = format!("{:?}", p.snapshot().unwrap().diagnostics);
    assert!(
        warned.contains("SLC0021") && warned.contains("zecho.example.com is not served"),
        "{warned}"
    );
    assert_eq!(unix::line(&socket, "again").await.unwrap(), "one again");
    p.shutdown().await;
    assert_eventually(
        std::time::Duration::from_secs(5),
        "the socket file is removed at shutdown",
        || async { !socket.exists() },
    )
    .await;
}

/// A TLS egress listener on a unix domain socket (`port: 0`, `protocol: TLS`) reads the
/// ClientHello and relays the connection untouched to the imported service its SNI names: the
/// client sees the service's own certificate; an SNI naming nothing imported is closed.
#[tokio::test]
async fn egress_bind_to_a_unix_socket_passes_tls_through_by_sni() {
    let ca = TestCa::new("external root");
    let dir = ConfigDir::new();
    let socket = dir.path().join("egress-tls.sock");
    let leaf = ca.issue(&["api.example.com"]);
    let (cert, key) = leaf.write(dir.path(), "api");
    let api = Backend::start(BackendArgs {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..BackendArgs::ephemeral("api", "v1")
    })
    .await
    .unwrap();
    dir.write(
        "api.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: api}}\nspec:\n  hosts: [api.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {}, name: tls, protocol: TLS}}]\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tls: {}}}}}\n", free_port(), api.addr().port()),
    );
    dir.write(
        "sidecar.yaml",
        &sidecar(&format!(
            "  - port: {{number: 0, protocol: TLS, name: uds}}\n    bind: unix://{}\n    hosts: [\"./api.example.com\"]\n  - hosts: [\"*/*\"]\n",
            socket.display()
        )),
    );
    let p = proxy(dir.path(), |o| {
        o.watch = false;
        o.proxy.mesh_role = false;
        o.proxy.outbound_role = true;
    })
    .await;
    let client = pki::TlsClient::new(ca.pem(), "api.example.com");
    for _ in 0..2 {
        let r = client.get_unix(&socket, "/").await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.peer.as_ref(), Some(&leaf.der), "the service's own cert");
    }
    assert_eq!(api.requests(), 2);
    let other = pki::TlsClient::new(ca.pem(), "other.example.com");
    assert!(other.get_unix(&socket, "/").await.is_err());
    p.shutdown().await;
}
