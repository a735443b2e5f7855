//! A client's broken request body is the client's fault: answered 400 (or closed with `DC`),
//! never retried, and never counted against the upstream by outlier detection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Two v1 endpoints behind round robin, ejected after three consecutive 5xx for 30 s.
async fn two_endpoints_with_outlier_detection() -> (ConfigDir, ProxyHandle, u16, Vec<BackendHandle>)
{
    let backends = vec![backend("app", "v1").await, backend("app", "v1").await];
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(
            HOST,
            port,
            &[("v1", backends[0].addr()), ("v1", backends[1].addr())],
        ),
    );
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer: {{simple: ROUND_ROBIN}}\n    outlierDetection: {{consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}}\n"),
    );
    // Retries on everything: a client error must not be retried either.
    dir.write(
        "vs.yaml",
        &virtual_service_yaml(
            "app",
            "  - route: [{destination: {host: app}}]\n    retries: {attempts: 3, retryOn: 5xx,reset,connect-failure}\n",
        ),
    );
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, port, backends)
}

/// Sends `bytes` on a fresh connection and returns what comes back until the proxy closes it
/// (empty when it closes or resets without an answer).
async fn raw_exchange(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept a broken request open");
    String::from_utf8_lossy(&out).into_owned()
}

/// A POST whose chunk size line is not hexadecimal.
const BROKEN_CHUNK: &[u8] =
    b"POST /upload HTTP/1.1\r\nhost: app\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n";

/// Starts a 100 kB upload, sends a part of it and goes away.
async fn abandoned_upload(port: u16) {
    let mut s = TcpStream::connect(addr(port)).await.unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: app\r\ncontent-length: 100000\r\n\r\n")
        .await
        .unwrap();
    s.write_all(&[b'x'; 1000]).await.unwrap();
    // Long enough for the proxy to have forwarded the head and started the body upstream.
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
}

fn ejected_endpoints(clusters: &str) -> usize {
    clusters.matches("ejected").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_request_bodies_get_400_and_eject_no_endpoint() {
    let (_dir, p, port, backends) = two_endpoints_with_outlier_detection().await;
    for _ in 0..12 {
        let answer = raw_exchange(port, BROKEN_CHUNK).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "a malformed chunked body is the client's error: {answer:?}"
        );
    }
    for _ in 0..6 {
        abandoned_upload(port).await;
    }
    let c = TestClient::new();
    // Outlier state is recorded before the reply is sent; the abandoned uploads may still be
    // on their way, so wait for their requests to finish.
    assert_eventually(Duration::from_secs(5), "no request in flight", || async {
        let clusters = c.admin(p.admin_addr, "/clusters").await.body;
        !clusters.contains("\"in_flight\":1") && !clusters.contains("\"in_flight\":2")
    })
    .await;
    let clusters = c.admin(p.admin_addr, "/clusters").await.body;
    assert_eq!(ejected_endpoints(&clusters), 0, "{clusters}");
    for _ in 0..20 {
        let r = c.get(addr(port), "app", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let served: u64 = backends.iter().map(|b| b.requests()).sum();
    assert!(served >= 20, "both endpoints kept serving: {served}");

    let metrics = c.admin(p.admin_addr, "/stats/prometheus").await.body;
    let flagged = |flag: &str| {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("istio_requests_total")
                    && l.contains(&format!("response_flags=\"{flag}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    assert_eq!(flagged("DPE"), 12.0, "{metrics}");
    assert_eq!(flagged("DC"), 6.0, "{metrics}");
    assert_eq!(
        flagged("UC") + flagged("URX") + flagged("UF"),
        0.0,
        "{metrics}"
    );
    p.shutdown().await;
}
