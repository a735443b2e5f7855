//! Chaos under load, bounded in count and time: an endpoint killed mid-load, a mirror target
//! that is dead or slow. The client of the primary must see no failure at all.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_test_support::{
    backend, free_port, hung_backend, proxy, service_yaml, ConfigDir, ProxyHandle, TestClient,
};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A mesh proxy for `app` on a free port with `endpoints` and the extra YAML `extra`.
async fn mesh(endpoints: &[(&str, SocketAddr)], extra: &str) -> (ConfigDir, ProxyHandle, u16) {
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml("app.default.svc.cluster.local", port, endpoints),
    );
    if !extra.is_empty() {
        dir.write("extra.yaml", extra);
    }
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, port)
}

/// `clients` keep-alive clients sending GETs until `stop` (at least `min` each, at most 3,000);
/// returns (answered 200, failures as text).
fn load(
    port: u16,
    clients: usize,
    min: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..clients)
        .map(|_| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = TestClient::new();
                let (mut ok, mut failed) = (0u64, Vec::new());
                for i in 0..3000 {
                    if i >= min && stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match c
                        .try_request("GET", addr(port), "app", "/", &[], bytes::Bytes::new())
                        .await
                    {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{} {}", r.status, r.body)),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect()
}

async fn totals(workers: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>) -> (u64, Vec<String>) {
    let (mut ok, mut failed) = (0, Vec::new());
    for w in workers {
        let (o, f) = w.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    (ok, failed)
}

/// One of three endpoints dies under load: with Istio's default retries (connect failures are
/// retried on another endpoint) and outlier detection, no request fails, and the dead endpoint
/// is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_three_endpoints_killed_under_load_fails_no_request() {
    let a = backend("app", "v1").await;
    let b = backend("app", "v1").await;
    let victim = backend("app", "v1").await;
    let victim_addr = victim.addr();
    let (_dir, p, port) = mesh(
        &[("v1", a.addr()), ("v1", b.addr()), ("v1", victim_addr)],
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app}\nspec:\n  host: app.default.svc.cluster.local\n  trafficPolicy:\n    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}\n",
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(port, 8, 100, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    victim.shutdown().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = totals(workers).await;
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok >= 800, "{ok}");
    let served_after: u64 = a.requests() + b.requests();
    assert!(served_after > 0);
    p.shutdown().await;
}

/// A 100 % mirror to a target that is dead (connection refused) or hangs: every primary
/// request succeeds, and the primary's request count under the same bounded load is of the same
/// order as without a mirror (no per-request connect storm stalls it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_hung_mirror_target_costs_the_primary_nothing() {
    let primary = backend("app", "v1").await;
    let hung = hung_backend("app", "v2").await;
    let dead = {
        // A port nothing listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        a
    };
    for (name, target) in [("dead", dead), ("hung", hung.addr())] {
        let (_dir, p, port) = mesh(
            &[("v1", primary.addr()), ("v2", target)],
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: app}\nspec:\n  host: app.default.svc.cluster.local\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: app}\nspec:\n  hosts: [app]\n  http:\n  - route: [{destination: {host: app, subset: v1}}]\n    mirror: {host: app, subset: v2}\n    mirrorPercentage: {value: 100}\n    timeout: 1s\n",
        )
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(port, 8, 150, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::Relaxed);
        let (ok, failed) = totals(workers).await;
        assert!(
            failed.is_empty(),
            "{name}: {:?}",
            &failed[..failed.len().min(5)]
        );
        assert!(ok >= 1200, "{name}: {ok}");
        p.shutdown().await;
    }
}
