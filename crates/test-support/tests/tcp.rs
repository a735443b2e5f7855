//! TCP routing: Istio's "TCP Traffic Shifting" task (tcp-echo behind a Gateway TCP server, all to
//! v1, then 80/20), and `tcp` rules on sluice's own mesh listeners.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::{free_port, proxy, tcp_line, ConfigDir, ProxyHandle, TestClient};
use sluice_tools::{Backend, BackendArgs, BackendHandle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Istio's tcp-echo server (`sluice backend --tcp-echo`): every line comes back prefixed
/// (`one` for v1, `two` for v2).
async fn tcp_echo(version: &str, prefix: &str) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("tcp-echo", version);
    args.tcp_echo = Some(prefix.to_string());
    Backend::start(args).await.unwrap()
}

/// The sample's service on a mesh listener, served by a proxy.
struct Mesh {
    proxy: ProxyHandle,
    /// The service's mesh listener.
    addr: SocketAddr,
    dir: ConfigDir,
    _echo: Vec<BackendHandle>,
}

/// Both versions of the echo server (or `v1` instead of the first), the sample's service with
/// `traffic_policy` (YAML under the DestinationRule's `trafficPolicy:`, if any), and a proxy.
async fn mesh(traffic_policy: Option<&str>, v1: Option<SocketAddr>) -> Mesh {
    let mut echo = vec![tcp_echo("v2", "two").await];
    let v1 = match v1 {
        Some(a) => a,
        None => {
            echo.push(tcp_echo("v1", "one").await);
            echo[1].addr()
        }
    };
    let service_port = free_port();
    let dir = ConfigDir::new();
    let mut services = tcp_echo_service(service_port, v1, echo[0].addr());
    if let Some(policy) = traffic_policy {
        services = services.replace(
            "  host: tcp-echo\n  subsets:",
            &format!("  host: tcp-echo\n  trafficPolicy:\n{policy}\n  subsets:"),
        );
    }
    dir.write("tcp-echo-services.yaml", &services);
    let proxy = proxy(dir.path(), |o| o.watch = false).await;
    Mesh {
        proxy,
        addr: format!("127.0.0.1:{service_port}").parse().unwrap(),
        dir,
        _echo: echo,
    }
}

/// The sample's service, its two versions as WorkloadEntries, and the task's DestinationRule.
fn tcp_echo_service(port: u16, v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: tcp-echo}}
spec:
  hosts: [tcp-echo.default.svc.cluster.local]
  ports:
  - {{number: {port}, name: tcp, protocol: TCP}}
  resolution: STATIC
  workloadSelector:
    labels: {{app: tcp-echo}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: tcp-echo-v1}}
spec:
  address: 127.0.0.1
  ports: {{tcp: {p1}}}
  labels: {{app: tcp-echo, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: tcp-echo-v2}}
spec:
  address: 127.0.0.1
  ports: {{tcp: {p2}}}
  labels: {{app: tcp-echo, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo-destination
spec:
  host: tcp-echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"#,
        p1 = v1.port(),
        p2 = v2.port()
    )
}

/// `tcp-echo-all-v1.yaml` and `tcp-echo-20-v2.yaml`, with the gateway port of this test.
fn gateway_routes(gw_port: u16, service_port: u16, v2_weight: u32) -> String {
    let gateway = format!(
        r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: tcp-echo-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: {gw_port}
      name: tcp
      protocol: TCP
    hosts:
    - "*"
---
"#
    );
    let route = if v2_weight == 0 {
        format!(
            r#"    route:
    - destination:
        host: tcp-echo
        port:
          number: {service_port}
        subset: v1
"#
        )
    } else {
        format!(
            r#"    route:
    - destination:
        host: tcp-echo
        port:
          number: {service_port}
        subset: v1
      weight: {w1}
    - destination:
        host: tcp-echo
        port:
          number: {service_port}
        subset: v2
      weight: {v2_weight}
"#,
            w1 = 100 - v2_weight
        )
    };
    format!(
        r#"{gateway}apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: {gw_port}
{route}"#
    )
}

#[tokio::test]
async fn tcp_traffic_shifting_through_a_gateway() {
    let v1 = tcp_echo("v1", "one").await;
    let v2 = tcp_echo("v2", "two").await;
    let service_port = free_port();
    let gw_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "tcp-echo-services.yaml",
        &tcp_echo_service(service_port, v1.addr(), v2.addr()),
    );
    dir.write("tcp-echo.yaml", &gateway_routes(gw_port, service_port, 0));
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.watch = false;
    })
    .await;
    let gateway: SocketAddr = format!("127.0.0.1:{gw_port}").parse().unwrap();

    // All traffic to v1.
    for i in 0..10 {
        assert_eq!(
            tcp_line(gateway, &format!("hello {i}")).await,
            format!("one hello {i}")
        );
    }

    // 20 % to v2: exactly 4 of every 20 connections, interleaved.
    dir.write("tcp-echo.yaml", &gateway_routes(gw_port, service_port, 20));
    p.reload()
        .await
        .unwrap()
        .expect("the new config is accepted");
    let mut replies = Vec::new();
    for _ in 0..20 {
        replies.push(tcp_line(gateway, "hello").await);
    }
    let twos = replies.iter().filter(|r| *r == "two hello").count();
    let ones = replies.iter().filter(|r| *r == "one hello").count();
    assert_eq!((ones, twos), (16, 4), "{replies:?}");

    // Istio's TCP metrics name the version each connection went to.
    let metrics = TestClient::new()
        .admin(p.admin_addr, "/stats/prometheus")
        .await
        .body;
    let opened_v2 = metrics.lines().any(|l| {
        l.starts_with("istio_tcp_connections_opened_total{")
            && l.contains("destination_version=\"v2\"")
            && l.ends_with(" 4")
    });
    assert!(opened_v2, "no v2 series with 4 connections:\n{metrics}");
    assert!(metrics.contains("istio_tcp_sent_bytes_total{"), "{metrics}");
    assert!(
        metrics.contains("istio_tcp_received_bytes_total{"),
        "{metrics}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn tcp_rules_on_mesh_listeners_and_the_service_default() {
    let Mesh {
        proxy: p,
        addr: mesh,
        dir,
        _echo,
    } = mesh(None, None).await;

    // No VirtualService: the whole service, both versions (Istio's default LEAST_REQUEST picks
    // between idle endpoints at random: enough connections that both show up).
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(tcp_line(mesh, "hi").await);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["one hi", "two hi"]);

    // A mesh VirtualService sends every connection to v2.
    dir.write(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp-echo}\nspec:\n  hosts: [tcp-echo]\n  tcp:\n  - route:\n    - destination: {host: tcp-echo, subset: v2}\n",
    );
    p.reload()
        .await
        .unwrap()
        .expect("the new config is accepted");
    for _ in 0..5 {
        assert_eq!(tcp_line(mesh, "hi").await, "two hi");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn max_connections_closes_overflowing_tcp_connections() {
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(
        Some("    connectionPool:\n      tcp: {maxConnections: 1}"),
        None,
    )
    .await;

    // The first connection stays open, holding the only slot.
    let held = TcpStream::connect(mesh).await.unwrap();
    let (r, mut w) = held.into_split();
    w.write_all(b"first\n").await.unwrap();
    let mut lines = BufReader::new(r).lines();
    let first = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert!(first.is_some_and(|l| l.ends_with(" first")));

    // A second one is closed without an answer.
    assert_eq!(tcp_line(mesh, "second").await, "");

    // Once the first closes, the slot is free again.
    drop(w);
    drop(lines);
    let mut answered = String::new();
    for _ in 0..50 {
        answered = tcp_line(mesh, "third").await;
        if !answered.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(answered.ends_with(" third"), "{answered:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn consistent_hash_on_source_ip_keeps_a_client_on_one_endpoint() {
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(
        Some("    loadBalancer:\n      consistentHash: {useSourceIp: true}"),
        None,
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(tcp_line(mesh, "hi").await);
    }
    assert_eq!(seen.len(), 1, "one client address, one endpoint: {seen:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn idle_timeout_closes_a_quiet_tcp_connection() {
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(
        Some("    connectionPool:\n      tcp: {idleTimeout: 300ms}"),
        None,
    )
    .await;
    let s = TcpStream::connect(mesh).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    // Talking keeps it open past the timeout.
    for i in 0..4 {
        let line = ask(&mut w, &mut lines, &format!("ping {i}")).await;
        assert!(line.ends_with(&format!(" ping {i}")), "{line}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    // Silence closes it.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("the idle connection was not closed within 5 s");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
    assert!(started.elapsed() >= Duration::from_millis(100));
    p.shutdown().await;
}

#[tokio::test]
async fn the_http_idle_timeout_leaves_relayed_tcp_connections_alone() {
    // Istio sets `http.idleTimeout` on the cluster's connection pool and only `tcp.idleTimeout`
    // on the TCP proxy.
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(
        Some("    connectionPool:\n      http: {idleTimeout: 200ms}"),
        None,
    )
    .await;
    let s = TcpStream::connect(mesh).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    for i in 0..2 {
        let line = ask(&mut w, &mut lines, &format!("ping {i}")).await;
        assert!(line.ends_with(&format!(" ping {i}")), "{line}");
        // Quiet for three times the HTTP idle timeout.
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    p.shutdown().await;
}

#[tokio::test]
async fn a_gateway_tcp_port_without_rules_is_reported_and_closes_connections() {
    let v1 = tcp_echo("v1", "one").await;
    let v2 = tcp_echo("v2", "two").await;
    let (service_port, gw_port) = (free_port(), free_port());
    let dir = ConfigDir::new();
    dir.write(
        "tcp-echo-services.yaml",
        &tcp_echo_service(service_port, v1.addr(), v2.addr()),
    );
    // The task's Gateway alone: no VirtualService binds a `tcp` rule to it.
    let gateway_only = gateway_routes(gw_port, service_port, 0);
    let gateway_only = &gateway_only[..gateway_only
        .find("apiVersion: networking.istio.io/v1\nkind: VirtualService")
        .unwrap()];
    dir.write(
        "gateway.yaml",
        gateway_only.trim_end().trim_end_matches("---"),
    );
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.watch = false;
    })
    .await;
    let snapshot = p.snapshot().unwrap();
    assert!(
        snapshot
            .diagnostics
            .iter()
            .any(|d| d.code == "SLC0011" && d.message.contains(&gw_port.to_string())),
        "{:?}",
        snapshot.diagnostics
    );
    let gateway: SocketAddr = format!("127.0.0.1:{gw_port}").parse().unwrap();
    assert_eq!(tcp_line(gateway, "hello").await, "");
    p.shutdown().await;
}

#[tokio::test]
async fn outlier_detection_ejects_an_endpoint_that_refuses_connections() {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(
        Some("    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1m, maxEjectionPercent: 100}"),
        Some(dead),
    )
    .await;
    // At most one connection meets the dead endpoint; then it is ejected.
    let mut replies = Vec::new();
    for _ in 0..8 {
        replies.push(tcp_line(mesh, "hi").await);
    }
    let failed = replies.iter().filter(|r| r.is_empty()).count();
    assert!(failed <= 1, "{replies:?}");
    assert!(replies[2..].iter().all(|r| r == "two hi"), "{replies:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn shutdown_drains_open_tcp_connections() {
    // The harness drains for at most 5 s.
    let Mesh {
        proxy: p,
        addr: mesh,
        dir: _dir,
        _echo,
    } = mesh(None, None).await;
    let s = TcpStream::connect(mesh).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    assert!(ask(&mut w, &mut lines, "before").await.ends_with(" before"));

    let shutdown = tokio::spawn(p.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the open connection"
    );
    // Still relayed while the proxy drains.
    assert!(ask(&mut w, &mut lines, "during").await.ends_with(" during"));
    drop(w);
    drop(lines);
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(4), shutdown)
        .await
        .expect("shutdown did not finish once the connection closed")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// One line out on a held connection, its echo back.
async fn ask(
    w: &mut tokio::net::tcp::OwnedWriteHalf,
    lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    line: &str,
) -> String {
    w.write_all(format!("{line}\n").as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("the connection closed")
}
