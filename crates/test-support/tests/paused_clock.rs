//! Timing logic under tokio's paused clock: delays, route and per-try timeouts are measured in
//! virtual time, exactly, while the sockets stay real (every peer lives in this runtime, so a
//! byte written is ready before the clock may jump).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sluice_test_support::*;
use tokio::time::Instant;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn setup(endpoints: &[(&str, SocketAddr)], vs_http: &str) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, endpoints));
    dir.write("vs.yaml", &virtual_service_yaml("app", vs_http));
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, port)
}

#[tokio::test(start_paused = true)]
async fn a_delay_fault_waits_exactly_its_duration() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - fault: {delay: {fixedDelay: 7s, percentage: {value: 100}}}\n    route: [{destination: {host: app}}]\n",
    )
    .await;
    let wall = std::time::Instant::now();
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        took >= Duration::from_secs(7) && took < Duration::from_millis(7100),
        "{took:?}"
    );
    assert!(
        wall.elapsed() < Duration::from_secs(5),
        "the clock was not paused"
    );
    p.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn the_route_timeout_fires_at_its_deadline() {
    let hung = hung_backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", hung.addr())],
        "  - timeout: 3s\n    route: [{destination: {host: app}}]\n",
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_millis(3050),
        "{took:?}"
    );
    p.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn per_try_timeouts_and_backoff_fit_in_the_route_timeout() {
    let hung = hung_backend("app", "v1").await;
    // Three tries of 1 s, with Envoy's jittered backoff (25 ms base) between them, all inside
    // the 10 s route timeout.
    let (_d, p, port) = setup(
        &[("v1", hung.addr())],
        "  - timeout: 10s\n    retries: {attempts: 2, perTryTimeout: 1s, retryOn: 5xx}\n    route: [{destination: {host: app}}]\n",
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_millis(3100),
        "{took:?}"
    );
    assert_eq!(hung.requests(), 3);

    // A route timeout shorter than the tries cuts the last one.
    drop(p);
    let (_d2, p, port) = setup(
        &[("v1", hung.addr())],
        "  - timeout: 1500ms\n    retries: {attempts: 5, perTryTimeout: 1s, retryOn: 5xx}\n    route: [{destination: {host: app}}]\n",
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_millis(1550),
        "{took:?}"
    );
    p.shutdown().await;
}
