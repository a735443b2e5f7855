//! DestinationRule connection settings of upstream connections, end to end against real
//! backends: `maxConnectionDuration`, `maxConcurrentStreams`, `http2KeepAlive`,
//! `useClientProtocol` and `proxyProtocol`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_test_support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Service `app` with one endpoint and a DestinationRule `trafficPolicy` (YAML, indented 4).
async fn with_traffic_policy(endpoint: SocketAddr, policy: &str) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", endpoint)]));
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: app\n  trafficPolicy:\n{policy}"),
    );
    let p = proxy(dir.path(), |_| {}).await;
    (dir, p, port)
}

async fn slow_backend(delay: Duration) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.delay = Some(delay);
    Backend::start(args).await.unwrap()
}

/// The peer (upstream connection) of the last request the backend received.
fn last_peer(b: &BackendHandle) -> SocketAddr {
    b.last_received().unwrap().peer
}

/// Requests per upstream connection, as the backend saw them.
fn requests_per_connection(b: &BackendHandle) -> Vec<usize> {
    let mut by_peer: BTreeMap<SocketAddr, usize> = BTreeMap::new();
    for r in b.received() {
        *by_peer.entry(r.peer).or_default() += 1;
    }
    by_peer.into_values().collect()
}

async fn max_connection_duration_retires_connections(upgrade: bool) {
    let http = if upgrade {
        "      http: {h2UpgradePolicy: UPGRADE}\n"
    } else {
        ""
    };
    let v1 = slow_backend(Duration::from_millis(600)).await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        &format!("    connectionPool:\n      tcp: {{maxConnectionDuration: 200ms}}\n{http}"),
    )
    .await;
    let c = TestClient::new();
    // The exchange outlives the connection's duration: it is not cut.
    let r = c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let first = last_peer(&v1);
    let version = v1.last_received().unwrap().version;
    assert_eq!(version, if upgrade { "HTTP/2.0" } else { "HTTP/1.1" });
    // The aged connection takes no new request.
    assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    assert_ne!(
        last_peer(&v1),
        first,
        "a new connection after maxConnectionDuration"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn max_connection_duration_retires_http1_connections() {
    max_connection_duration_retires_connections(false).await;
}

#[tokio::test]
async fn max_connection_duration_drains_http2_connections() {
    max_connection_duration_retires_connections(true).await;
}

#[tokio::test]
async fn connections_younger_than_max_connection_duration_are_reused() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      tcp: {maxConnectionDuration: 1h}\n",
    )
    .await;
    let c = TestClient::new();
    for _ in 0..3 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eq!(requests_per_connection(&v1), [3]);
    p.shutdown().await;
}

/// `n` concurrent requests through the proxy, each on a client connection of its own.
async fn concurrent_gets(port: u16, n: usize) {
    let sends = (0..n).map(|_| async move {
        TestClient::new()
            .get(addr(port), "app", "/", &[])
            .await
            .status
    });
    let statuses = futures_util::future::join_all(sends).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

#[tokio::test]
async fn max_concurrent_streams_spreads_streams_over_http2_connections() {
    let v1 = slow_backend(Duration::from_millis(400)).await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 2}\n",
    )
    .await;
    concurrent_gets(port, 6).await;
    assert!(v1.received().iter().all(|r| r.version == "HTTP/2.0"));
    assert_eq!(requests_per_connection(&v1), [2, 2, 2]);
    p.shutdown().await;
}

#[tokio::test]
async fn without_max_concurrent_streams_one_http2_connection_carries_all() {
    let v1 = slow_backend(Duration::from_millis(200)).await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {h2UpgradePolicy: UPGRADE}\n",
    )
    .await;
    // The first request opens the connection; the concurrent ones share it.
    concurrent_gets(port, 1).await;
    concurrent_gets(port, 5).await;
    assert_eq!(requests_per_connection(&v1), [6]);
    p.shutdown().await;
}

#[tokio::test]
async fn answered_http2_keepalive_pings_keep_the_connection() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http:\n        h2UpgradePolicy: UPGRADE\n        http2KeepAlive: {interval: 50ms, timeout: 1s}\n",
    )
    .await;
    let c = TestClient::new();
    for _ in 0..3 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(requests_per_connection(&v1), [3]);
    p.shutdown().await;
}

/// An HTTP/2 peer that completes the handshake and then never answers anything, PINGs
/// included: counts the PINGs it got and the connections the client closed.
async fn silent_h2_peer() -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let pings = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (p, c) = (pings.clone(), closed.clone());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (p, c) = (p.clone(), c.clone());
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return;
                }
                // Empty SETTINGS, then the acknowledgement of the client's.
                let _ = s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await;
                let _ = s.write_all(&[0, 0, 0, 4, 1, 0, 0, 0, 0]).await;
                loop {
                    let mut head = [0u8; 9];
                    if s.read_exact(&mut head).await.is_err() {
                        c.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let len = usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]);
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).await.is_err() {
                        c.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if head[3] == 6 && head[4] & 1 == 0 {
                        p.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (addr, pings, closed)
}

#[tokio::test]
async fn an_unanswered_http2_keepalive_ping_closes_the_upstream_connection() {
    let (peer, pings, closed) = silent_h2_peer().await;
    let (_d, p, port) = with_traffic_policy(
        peer,
        "    connectionPool:\n      http:\n        h2UpgradePolicy: UPGRADE\n        http2KeepAlive: {interval: 100ms, timeout: 100ms}\n",
    )
    .await;
    // Without the keepalive this request would wait forever; the closed connection resets it.
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(pings.load(Ordering::SeqCst) >= 1);
    assert_eventually(
        Duration::from_secs(5),
        "the upstream connection closed",
        || {
            let closed = closed.clone();
            async move { closed.load(Ordering::SeqCst) >= 1 }
        },
    )
    .await;
    p.shutdown().await;
}

/// `GET http://app{path}` over HTTP/2 with prior knowledge (`:authority: app`).
async fn h2_get(port: u16, path: &str) -> u16 {
    use http_body_util::BodyExt;
    let tcp = TcpStream::connect(addr(port)).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(format!("http://app{path}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), tx.send_request(req))
        .await
        .expect("answered")
        .unwrap();
    let status = resp.status().as_u16();
    resp.into_body().collect().await.unwrap();
    status
}

#[tokio::test]
async fn use_client_protocol_keeps_the_downstream_http_version() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {useClientProtocol: true}\n",
    )
    .await;
    let r = TestClient::new().get(addr(port), "app", "/h1", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(v1.last_received().unwrap().version, "HTTP/1.1");
    assert_eq!(h2_get(port, "/h2").await, 200);
    let last = v1.last_received().unwrap();
    assert_eq!(
        (last.path.as_str(), last.version.as_str()),
        ("/h2", "HTTP/2.0")
    );
    p.shutdown().await;
}

#[tokio::test]
async fn without_use_client_protocol_http2_clients_reach_an_http_port_over_http1() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {maxRetries: 3}\n",
    )
    .await;
    assert_eq!(h2_get(port, "/").await, 200);
    assert_eq!(v1.last_received().unwrap().version, "HTTP/1.1");
    p.shutdown().await;
}

/// Parses a PROXY protocol header (v1 or v2) into `FAMILY SRC DST SRCPORT DSTPORT`.
async fn read_proxy_header(s: &mut BufReader<TcpStream>) -> String {
    let first = s.fill_buf().await.unwrap().first().copied();
    if first == Some(b'P') {
        let mut line = String::new();
        s.read_line(&mut line).await.unwrap();
        let line = line.strip_suffix("\r\n").expect("v1 header ends with CRLF");
        return line.strip_prefix("PROXY ").unwrap().to_string();
    }
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.unwrap();
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n", "v2 signature");
    assert_eq!(head[12], 0x21, "version 2, PROXY command");
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.unwrap();
    assert_eq!(head[13], 0x11, "TCP over IPv4");
    let ip = |b: &[u8]| std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    format!(
        "V2 {} {} {} {}",
        ip(&body[0..4]),
        ip(&body[4..8]),
        port(&body[8..10]),
        port(&body[10..12])
    )
}

/// An HTTP/1.1 backend behind a PROXY header: every response body is the connection's header.
/// Returns the headers of the connections it accepted.
async fn proxy_protocol_backend() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let header = read_proxy_header(&mut s).await;
                record.lock().unwrap().push(header.clone());
                loop {
                    // One request head (no body: GETs only), then the answer.
                    let mut line = String::new();
                    loop {
                        line.clear();
                        match s.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{header}",
                        header.len()
                    );
                    if s.get_mut().write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// Two GETs on one raw client connection; returns the client's address and both bodies.
async fn two_gets(port: u16) -> (SocketAddr, Vec<String>) {
    let s = TcpStream::connect(addr(port)).await.unwrap();
    let local = s.local_addr().unwrap();
    let mut s = BufReader::new(s);
    let mut bodies = Vec::new();
    for _ in 0..2 {
        s.get_mut()
            .write_all(b"GET / HTTP/1.1\r\nhost: app\r\n\r\n")
            .await
            .unwrap();
        let mut length = 0;
        let mut status = String::new();
        s.read_line(&mut status).await.unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await.unwrap();
        bodies.push(String::from_utf8(body).unwrap());
    }
    (local, bodies)
}

async fn proxy_protocol_carries_the_client_addresses(version: &str, prefix: &str) {
    let (backend, seen) = proxy_protocol_backend().await;
    let (_d, p, port) = with_traffic_policy(
        backend,
        &format!("    proxyProtocol: {{version: {version}}}\n"),
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..2 {
        let (client, bodies) = tokio::time::timeout(Duration::from_secs(10), two_gets(port))
            .await
            .expect("answered");
        let want = format!("{prefix} 127.0.0.1 127.0.0.1 {} {port}", client.port());
        assert_eq!(bodies, [want.clone(), want], "{version}");
        clients.push(client);
    }
    // One upstream connection per client connection, each with its own header.
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (header, client) in seen.iter().zip(&clients) {
        assert!(header.contains(&format!(" {} ", client.port())), "{seen:?}");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn proxy_protocol_v1_carries_the_client_addresses() {
    proxy_protocol_carries_the_client_addresses("V1", "TCP4").await;
}

#[tokio::test]
async fn proxy_protocol_v2_carries_the_client_addresses() {
    proxy_protocol_carries_the_client_addresses("V2", "V2").await;
}

/// A TCP service `tcp-echo` on a mesh port with one endpoint and a DestinationRule
/// `trafficPolicy` (YAML, indented 4); returns the mesh listener's address.
async fn tcp_service(endpoint: SocketAddr, policy: &str) -> (ConfigDir, ProxyHandle, SocketAddr) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: tcp-echo}}\nspec:\n  hosts: [tcp-echo.default.svc.cluster.local]\n  ports:\n  - {{number: {port}, name: tcp, protocol: TCP}}\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{tcp: {}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: tcp-echo}}\nspec:\n  host: tcp-echo\n  trafficPolicy:\n{policy}",
            endpoint.port()
        ),
    );
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, addr(port))
}

#[tokio::test]
async fn proxy_protocol_starts_relayed_tcp_connections() {
    // Answers each connection with its PROXY header, then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut s = BufReader::new(s);
                let header = read_proxy_header(&mut s).await;
                let _ = s.get_mut().write_all(header.as_bytes()).await;
            });
        }
    });
    let (_d, p, mesh) = tcp_service(backend, "    proxyProtocol: {version: V2}\n").await;
    let mut s = TcpStream::connect(mesh).await.unwrap();
    let client = s.local_addr().unwrap();
    s.write_all(b"hello\n").await.unwrap();
    let mut header = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut header))
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(
        header,
        format!("V2 127.0.0.1 127.0.0.1 {} {}", client.port(), mesh.port())
    );
    p.shutdown().await;
}

#[tokio::test]
async fn max_connection_duration_closes_a_busy_relayed_tcp_connection() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let (_d, p, mesh) = tcp_service(
        echo.addr(),
        "    connectionPool:\n      tcp: {maxConnectionDuration: 300ms}\n",
    )
    .await;
    let s = TcpStream::connect(mesh).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut lines = BufReader::new(r).lines();
    // Talking does not keep it open: its age closes it. Bounded: 100 exchanges at most.
    let mut answered = 0;
    for i in 0..100 {
        if w.write_all(format!("ping {i}\n").as_bytes()).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("an answer or the end")
        {
            Ok(Some(line)) => {
                assert_eq!(line, format!("one ping {i}"));
                answered += 1;
            }
            Ok(None) | Err(_) => break,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answered >= 1, "the relay worked before it closed");
    assert!(
        answered < 100,
        "the connection was closed at its maxConnectionDuration"
    );
    p.shutdown().await;
}

/// Statuses of `n` concurrent GETs, each on a client connection of its own.
async fn concurrent_statuses(port: u16, n: usize) -> Vec<u16> {
    let sends = (0..n).map(|_| async move {
        TestClient::new()
            .get(addr(port), "app", "/", &[])
            .await
            .status
            .as_u16()
    });
    futures_util::future::join_all(sends).await
}

#[tokio::test]
async fn http2_max_requests_bounds_concurrent_http2_requests() {
    let v1 = slow_backend(Duration::from_millis(300)).await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {h2UpgradePolicy: UPGRADE, http2MaxRequests: 1, http1MaxPendingRequests: 1}\n",
    )
    .await;
    let statuses = concurrent_statuses(port, 4).await;
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let overflow = statuses.iter().filter(|s| **s == 503).count();
    // One active, one pending, the rest overflow (HTTP/2 multiplexes: only http2MaxRequests
    // bounds it, not maxConnections).
    assert!(ok >= 2 && overflow >= 1, "{statuses:?}");
    assert_eq!(ok + overflow, 4, "{statuses:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn max_retries_bounds_concurrent_retries() {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.fail_rate = 1.0;
    args.delay = Some(Duration::from_millis(300));
    let failing = Backend::start(args).await.unwrap();
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", failing.addr())]),
    );
    dir.write(
        "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app}\nspec:\n  host: app\n  trafficPolicy:\n    connectionPool:\n      http: {maxRetries: 1}\n",
    );
    dir.write(
        "vs.yaml",
        &virtual_service_yaml(
            "app",
            "  - retries: {attempts: 2, retryOn: 5xx}\n    route: [{destination: {host: app}}]\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let statuses = concurrent_statuses(port, 2).await;
    assert_eq!(statuses, [503, 503]);
    // Both first tries fail together; only one of them may retry (twice): 2 + 2 tries, where
    // an unbounded cluster would have made 2 × 3.
    assert_eq!(failing.requests(), 4);
    p.shutdown().await;
}
