//! Sidecar `inboundConnectionPool` and ingress `connectionPool`: the limits and connection
//! settings Istio puts on the inbound cluster, enforced on the hop from a Sidecar ingress
//! listener to the app (real apps on loopback): over the limits an HTTP request gets `503 UO`,
//! a TCP connection is closed; a port's own `connectionPool` replaces `inboundConnectionPool`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use sluice_test_support::{
    assert_eventually, free_port, proxy, tcp_line, Backend, BackendArgs, BackendHandle, ConfigDir,
    ProxyHandle, TestClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The workload's proxy: a Sidecar with `ingress` entries (YAML list items, indented 2) and
/// the rest of its spec.
async fn sidecar(dir: &Path, ingress: &str, rest: &str) -> ProxyHandle {
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: app\n  namespace: foo\nspec:\n  ingress:\n{ingress}{rest}"),
    )
    .unwrap();
    proxy(dir, |o| {
        o.proxy.namespace = "foo".into();
        o.watch = false;
    })
    .await
}

fn http_port(port: u16, app: SocketAddr, pool: &str) -> String {
    format!("  - port: {{number: {port}, protocol: HTTP, name: http-{port}}}\n    defaultEndpoint: {app}\n{pool}")
}

fn tcp_port(port: u16, app: SocketAddr, pool: &str) -> String {
    format!("  - port: {{number: {port}, protocol: TCP, name: tcp-{port}}}\n    defaultEndpoint: {app}\n{pool}")
}

async fn slow_app(delay: Duration) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.delay = Some(delay);
    Backend::start(args).await.unwrap()
}

/// Six concurrent requests to `port`: (answered 200, answered 503 UO).
async fn burst(port: u16) -> (usize, usize) {
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            tokio::spawn(async move { TestClient::new().get(local(port), "app", "/", &[]).await })
        })
        .collect();
    let (mut ok, mut overflow) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.header("x-envoy-overloaded"), Some("true"), "{r:?}");
                assert!(r.body.ends_with("reset reason: overflow"), "{}", r.body);
                overflow += 1;
            }
            s => panic!("unexpected {s}: {r:?}"),
        }
    }
    (ok, overflow)
}

/// `inboundConnectionPool` {maxConnections 1, http1MaxPendingRequests 1} in front of a slow
/// app: one request at the app, one waiting, the rest `503 UO`; a port whose ingress entry
/// has its own `connectionPool` follows that one instead (here: generous limits, no overflow).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_connection_pool_overflows_with_503_uo() {
    let app = slow_app(Duration::from_millis(300)).await;
    let dir = ConfigDir::new();
    let (limited, own) = (free_port(), free_port());
    let ingress = http_port(limited, app.addr(), "")
        + &http_port(
            own,
            app.addr(),
            "    connectionPool: {tcp: {maxConnections: 100}, http: {http1MaxPendingRequests: 100}}\n",
        );
    let p = sidecar(
        dir.path(),
        &ingress,
        "  inboundConnectionPool:\n    tcp: {maxConnections: 1}\n    http: {http1MaxPendingRequests: 1}\n",
    )
    .await;
    let (ok, overflow) = burst(limited).await;
    assert!(ok >= 2 && overflow >= 1, "ok={ok} overflow={overflow}");
    assert_eq!(
        burst(own).await,
        (6, 0),
        "the port's own connectionPool applies"
    );
    p.shutdown().await;
}

/// The requests per connection the app saw.
fn requests_per_connection(b: &BackendHandle) -> Vec<usize> {
    let mut by_peer: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for r in b.received() {
        *by_peer.entry(r.peer).or_default() += 1;
    }
    by_peer.into_values().collect()
}

/// An ingress `connectionPool` with `maxRequestsPerConnection: 1`: every request reaches the
/// app on a connection of its own, even from one keep-alive client connection.
#[tokio::test]
async fn ingress_connection_pool_sets_the_app_connections() {
    let app = slow_app(Duration::from_millis(1)).await;
    let dir = ConfigDir::new();
    let port = free_port();
    let p = sidecar(
        dir.path(),
        &http_port(
            port,
            app.addr(),
            "    connectionPool: {http: {maxRequestsPerConnection: 1}, tcp: {connectTimeout: 2s}}\n",
        ),
        "",
    )
    .await;
    let client = TestClient::new();
    for _ in 0..3 {
        assert_eq!(client.get(local(port), "app", "/", &[]).await.status, 200);
    }
    assert_eq!(requests_per_connection(&app), vec![1, 1, 1]);
    p.shutdown().await;
}

/// A TCP ingress port with `connectionPool.tcp` {maxConnections 1, idleTimeout}: a second
/// connection while the first is open is closed unanswered; the first is closed once idle for
/// the timeout, after which a new one is served.
#[tokio::test]
async fn ingress_connection_pool_limits_tcp_connections() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let dir = ConfigDir::new();
    let port = free_port();
    let p = sidecar(
        dir.path(),
        &tcp_port(
            port,
            echo.addr(),
            "    connectionPool: {tcp: {maxConnections: 1, idleTimeout: 500ms}}\n",
        ),
        "",
    )
    .await;
    let mut first = TcpStream::connect(local(port)).await.unwrap();
    first.write_all(b"hello\n").await.unwrap();
    let mut answer = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(5), first.read_exact(&mut answer))
        .await
        .expect("answer timed out")
        .unwrap();
    assert_eq!(&answer, b"one hello\n");
    assert_eq!(
        tcp_line(local(port), "second").await,
        "",
        "a second connection got through maxConnections: 1"
    );
    // Idle past `idleTimeout`: the proxy closes the first connection.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), first.read_to_end(&mut rest))
        .await
        .expect("the idle connection was not closed")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    assert_eventually(
        Duration::from_secs(5),
        "a new connection is served",
        || async { tcp_line(local(port), "third").await == "one third" },
    )
    .await;
    p.shutdown().await;
}
