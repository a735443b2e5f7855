//! DestinationRule `trafficPolicy.tunnel`: TCP to the destination is carried in an HTTP/1.1
//! CONNECT tunnel through the endpoint, a forward proxy (Istio's "egress through a proxy"
//! setup): a small CONNECT proxy in the test records what it is asked and relays to a real
//! tcp-echo server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sluice_test_support::{free_port, proxy, tcp_line, Backend, BackendArgs, ConfigDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A forward proxy answering `CONNECT host:port` with 200 (or `refuse` with 403) and relaying
/// to the target; records every request line.
async fn connect_proxy(refuse: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                // Byte by byte so nothing after the head is consumed (bounded: 8 KiB).
                while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let line = text.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(text.clone());
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if refuse || !line.starts_with("CONNECT ") {
                    let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(&target).await else {
                    let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

fn config(service_port: u16, proxy: SocketAddr, echo_port: u16, protocol: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: echo}}\nspec:\n  hosts: [echo.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {service_port}, name: tcp, protocol: TCP}}]\n  endpoints:\n  - {{address: {}, ports: {{tcp: {}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: echo}}\nspec:\n  host: echo.example.com\n  trafficPolicy:\n    tunnel: {{protocol: {protocol}, targetHost: 127.0.0.1, targetPort: {echo_port}}}\n",
        proxy.ip(),
        proxy.port()
    )
}

#[tokio::test]
async fn tcp_is_carried_in_a_connect_tunnel_through_the_endpoint() {
    let mut args = BackendArgs::ephemeral("tcp-echo", "v1");
    args.tcp_echo = Some("one".into());
    let echo = Backend::start(args).await.unwrap();
    let (forward_proxy, seen) = connect_proxy(false).await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, echo.addr().port(), "CONNECT"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    for i in 0..3 {
        assert_eq!(
            tcp_line(mesh, &format!("hello {i}")).await,
            format!("one hello {i}")
        );
    }
    let heads = seen.lock().unwrap().clone();
    assert_eq!(heads.len(), 3, "{heads:?}");
    let want = format!("127.0.0.1:{}", echo.addr().port());
    for h in &heads {
        assert!(
            h.starts_with(&format!("CONNECT {want} HTTP/1.1\r\n")),
            "{h}"
        );
        assert!(h.contains(&format!("Host: {want}\r\n")), "{h}");
    }
}

#[tokio::test]
async fn a_refused_connect_closes_the_connection() {
    let (forward_proxy, seen) = connect_proxy(true).await;
    let service_port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "echo.yaml",
        &config(service_port, forward_proxy, 9, "CONNECT"),
    );
    let _p = proxy(dir.path(), |o| {
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let mesh = SocketAddr::from(([127, 0, 0, 1], service_port));
    // Nothing of the proxy's refusal reaches the client: the connection just closes.
    assert_eq!(tcp_line(mesh, "hello").await, "");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
