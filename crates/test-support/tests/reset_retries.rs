//! `retryOn: reset-before-request` retries only failures that happened before any of the request
//! reached the upstream (Envoy: no upstream byte sent); `reset` retries any reset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use sluice_test_support::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An upstream that reads each request head and closes the connection without an answer: the
/// request was received, then the connection reset. Counts the heads it read.
async fn closes_after_request() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let heads = Arc::new(AtomicUsize::new(0));
    let count = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                // Bounded: a head is far smaller than 64 reads.
                for _ in 0..64 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        count.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            });
        }
    });
    (local, heads)
}

fn config(dir: &ConfigDir, port: u16, endpoints: &[(&str, SocketAddr)], retry_on: &str) {
    dir.write("svc.yaml", &service_yaml(HOST, port, endpoints));
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n"),
    );
    dir.write(
        "vs.yaml",
        &virtual_service_yaml(
            "app",
            &format!("  - route: [{{destination: {{host: app}}}}]\n    retries: {{attempts: 3, retryOn: {retry_on}}}\n"),
        ),
    );
}

#[tokio::test]
async fn a_reset_after_the_request_was_received_is_not_retried_by_reset_before_request() {
    let (upstream, heads) = closes_after_request().await;
    let port = free_port();
    let dir = ConfigDir::new();
    config(&dir, port, &[("v1", upstream)], "reset-before-request");
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let c = TestClient::new();
    // Bodiless (sluice's own client) and with a body (hyper's).
    let r = c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("connection termination"), "{}", r.body);
    assert_eq!(heads.load(Ordering::SeqCst), 1, "the GET was sent again");
    let r = c
        .request(
            "POST",
            addr(port),
            "app",
            "/",
            &[],
            Bytes::from_static(b"x"),
        )
        .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(heads.load(Ordering::SeqCst), 2, "the POST was sent again");
    p.shutdown().await;

    // `reset` retries the same failure: three more attempts each.
    let port = free_port();
    config(&dir, port, &[("v1", upstream)], "reset");
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let r = c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(heads.load(Ordering::SeqCst), 2 + 4);
    p.shutdown().await;
}

#[tokio::test]
async fn reset_before_request_retries_a_refused_connection() {
    let live = backend("app", "v1").await;
    let dead = addr(free_port());
    let port = free_port();
    let dir = ConfigDir::new();
    config(
        &dir,
        port,
        &[("v1", dead), ("v1", live.addr())],
        "reset-before-request",
    );
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let c = TestClient::new();
    // Round robin sends every other first attempt to the dead endpoint.
    for i in 0..6 {
        let r = c.get(addr(port), "app", "/", &[]).await;
        assert_eq!(r.status, 200, "request {i}: {r:?}");
    }
    p.shutdown().await;
}
