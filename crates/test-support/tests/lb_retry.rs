//! DestinationRule and retry fields against real backends: slow start (`warmup`), outlier
//! detection of local-origin failures and chosen error statuses, `retryBudget`, the header
//! retry conditions, cookie `attributes` and `retryRemoteLocalities`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_test_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An upstream that answers its n-th request with `script[n]` (the last entry repeats): a
/// status line and extra header lines, with `Connection: close`. Counts the requests.
async fn scripted(script: &'static [&'static str]) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                for _ in 0..64 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                    if head.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let line = script[n.min(script.len() - 1)];
                let body = format!("answer {n}\n");
                let reply = format!(
                    "HTTP/1.1 {line}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (local, seen)
}

/// Service `app` on `port` with these endpoints, the DestinationRule `policy` (the lines under
/// `trafficPolicy:`, indented six spaces) and a route with `retries` (a flow mapping).
fn write_config(
    dir: &ConfigDir,
    port: u16,
    endpoints: &[(&str, SocketAddr)],
    policy: &str,
    retries: &str,
) {
    dir.write("svc.yaml", &service_yaml(HOST, port, endpoints));
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n{policy}"),
    );
    dir.write(
        "vs.yaml",
        &virtual_service_yaml(
            "app",
            &format!("  - route: [{{destination: {{host: app}}}}]\n    retries: {retries}\n"),
        ),
    );
}

async fn start(
    endpoints: &[(&str, SocketAddr)],
    policy: &str,
    retries: &str,
) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    write_config(&dir, port, endpoints, policy, retries);
    let p = proxy(dir.path(), |o| o.watch = false).await;
    (dir, p, port)
}

/// Answers of `n` requests by backend version (second word of the test backend's first line).
async fn versions(port: u16, n: usize) -> BTreeMap<String, usize> {
    let c = TestClient::new();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = c.get(addr(port), "app", "/", &[]).await;
        let key = if r.status == 200 {
            r.first_line()
                .split_whitespace()
                .nth(1)
                .unwrap_or("")
                .to_string()
        } else {
            r.status.as_u16().to_string()
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// `warmup`: an endpoint added by a reload starts at `minimumPercent` of its weight while the
/// endpoint that was already there keeps its full weight (its start time survived the reload);
/// once the window has passed both share equally.
#[tokio::test]
async fn slow_start_holds_back_a_new_endpoint_until_its_window_has_passed() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    // Aggression 0.05 keeps the curve at its floor (1 %) for almost the whole window.
    let policy = "    loadBalancer:\n      simple: ROUND_ROBIN\n      warmup: {duration: 3s, minimumPercent: {value: 1}, aggression: 0.05}\n";
    let (dir, p, port) = start(&[("v1", v1.addr())], policy, "{attempts: 0}").await;
    assert_eq!(versions(port, 10).await.get("v1"), Some(&10));
    // Let v1 leave its own window, then add v2.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    write_config(
        &dir,
        port,
        &[("v1", v1.addr()), ("v2", v2.addr())],
        policy,
        "{attempts: 0}",
    );
    assert!(p.reload().await.unwrap().is_ok());
    let warming = versions(port, 100).await;
    let to_v2 = warming.get("v2").copied().unwrap_or(0);
    assert!(to_v2 < 15, "{warming:?}");
    // After the window, plain round robin.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let warm = versions(port, 100).await;
    assert_eq!(warm.get("v2"), Some(&50), "{warm:?}");
    p.shutdown().await;
}

/// `splitExternalLocalOriginErrors`: connect failures feed `consecutiveLocalOriginFailures`
/// (which ejects the dead endpoint at once here) and not the 5xx run, which is off.
#[tokio::test]
async fn local_origin_failures_eject_on_their_own_threshold() {
    let live = backend("app", "v1").await;
    let dead = addr(free_port());
    let split = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 0, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 1, maxEjectionPercent: 100, baseEjectionTime: 5m}\n";
    let (_d, p, port) = start(&[("v1", dead), ("v1", live.addr())], split, "{attempts: 0}").await;
    // The first request to the dead endpoint fails and ejects it; the rest all succeed.
    let seen = versions(port, 20).await;
    assert_eq!(seen.get("v1"), Some(&19), "{seen:?}");
    p.shutdown().await;

    // Not split and the 5xx run off: the dead endpoint is never ejected.
    let joined = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 0, maxEjectionPercent: 100}\n";
    let (_d, p, port) = start(
        &[("v1", dead), ("v1", live.addr())],
        joined,
        "{attempts: 0}",
    )
    .await;
    let seen = versions(port, 20).await;
    assert_eq!(seen.get("v1"), Some(&10), "{seen:?}");
    p.shutdown().await;
}

/// `outlierDetectionHttpErrorCodes`: a 404 counts as an error when listed.
#[tokio::test]
async fn listed_statuses_count_as_errors() {
    let live = backend("app", "v1").await;
    let (missing, _) = scripted(&["404 Not Found"]).await;
    let policy = "    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 1, outlierDetectionHttpErrorCodes: [404], maxEjectionPercent: 100, baseEjectionTime: 5m}\n";
    let (_d, p, port) = start(
        &[("v1", missing), ("v1", live.addr())],
        policy,
        "{attempts: 0}",
    )
    .await;
    let seen = versions(port, 20).await;
    assert_eq!(seen.get("404"), Some(&1), "{seen:?}");
    assert_eq!(seen.get("v1"), Some(&19), "{seen:?}");
    p.shutdown().await;
}

/// `retryBudget`: with at most one concurrent retry, most of a burst of failing requests is
/// answered with its first 503 and counted in `sluice_retry_overflow_total`; without a budget
/// every one is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_limits_concurrent_retries() {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.fail_rate = 1.0;
    args.delay = Some(Duration::from_millis(300));
    let failing = Backend::start(args).await.unwrap();
    let burst = 8;
    let run = |policy: &'static str| {
        let a = failing.addr();
        async move {
            let (_d, p, port) = start(&[("v1", a)], policy, "{attempts: 1, retryOn: 5xx}").await;
            let tasks: Vec<_> = (0..burst)
                .map(|_| {
                    tokio::spawn(async move {
                        TestClient::new()
                            .get(addr(port), "app", "/", &[])
                            .await
                            .status
                    })
                })
                .collect();
            for t in tasks {
                assert_eq!(t.await.unwrap(), 503);
            }
            let metrics = TestClient::new()
                .admin(p.admin_addr, "/stats/prometheus")
                .await
                .body;
            p.shutdown().await;
            metrics
        }
    };
    let before = failing.requests();
    let metrics = run("    retryBudget: {percent: {value: 0}, minRetryConcurrency: 1}\n").await;
    let sent = failing.requests() - before;
    assert!(sent < 2 * burst, "{sent} requests: every one was retried");
    let overflow = metrics
        .lines()
        .find(|l| l.starts_with("sluice_retry_overflow_total{"))
        .unwrap_or_else(|| panic!("no overflow counter in\n{metrics}"));
    assert!(!overflow.ends_with(" 0"), "{overflow}");

    let before = failing.requests();
    run("    loadBalancer: {simple: ROUND_ROBIN}\n").await;
    assert_eq!(failing.requests() - before, 2 * burst);
}

/// `retryBudget.budgetInterval` (Envoy's `budget_interval`): the budget is a share of the
/// requests started within the interval rather than of those in flight. Two bursts of 8
/// requests to a failing backend, each retried once, with 50 % and at least 1 retry: the second
/// burst counts 16 requests in the interval, so all 8 of its retries fit; counting only the 8
/// in flight, about half of them do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_budget_interval_counts_the_requests_of_the_interval() {
    let mut args = BackendArgs::ephemeral("app", "v1");
    args.fail_rate = 1.0;
    args.delay = Some(Duration::from_millis(200));
    let failing = Backend::start(args).await.unwrap();
    let burst = |port: u16| async move {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                tokio::spawn(async move {
                    TestClient::new()
                        .get(addr(port), "app", "/", &[])
                        .await
                        .status
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 503);
        }
    };
    let second_burst = |budget: &'static str| {
        let a = failing.addr();
        let failing = &failing;
        async move {
            let (_d, p, port) = start(&[("v1", a)], budget, "{attempts: 1, retryOn: 5xx}").await;
            burst(port).await;
            let before = failing.requests();
            burst(port).await;
            let sent = failing.requests() - before;
            p.shutdown().await;
            sent
        }
    };
    let windowed = second_burst(
        "    retryBudget: {percent: {value: 50}, minRetryConcurrency: 1, budgetInterval: 60s}\n",
    )
    .await;
    assert_eq!(windowed, 16, "every request of the second burst is retried");
    let in_flight =
        second_burst("    retryBudget: {percent: {value: 50}, minRetryConcurrency: 1}\n").await;
    assert!(
        in_flight < 16,
        "{in_flight}: in-flight requests allow fewer retries"
    );
}

/// `envoy-ratelimited` retries a response carrying `x-envoy-ratelimited`; `5xx` does not.
#[tokio::test]
async fn envoy_ratelimited_retries_rate_limited_answers() {
    let (up, seen) = scripted(&[
        "429 Too Many Requests\r\nx-envoy-ratelimited: true",
        "200 OK",
    ])
    .await;
    let policy = "    loadBalancer: {simple: ROUND_ROBIN}\n";
    let (_d, p, port) = start(
        &[("v1", up)],
        policy,
        "{attempts: 2, retryOn: envoy-ratelimited}",
    )
    .await;
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    p.shutdown().await;

    let (up, seen) = scripted(&[
        "429 Too Many Requests\r\nx-envoy-ratelimited: true",
        "200 OK",
    ])
    .await;
    let (_d, p, port) = start(&[("v1", up)], policy, "{attempts: 2, retryOn: 5xx}").await;
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 429);
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    p.shutdown().await;
}

/// `retriable-headers`: a response carrying a header the request named in
/// `x-envoy-retriable-header-names` is retried; without the request header it is not.
#[tokio::test]
async fn retriable_headers_follow_the_request_header() {
    let (up, seen) = scripted(&["200 OK\r\nx-upstream-busy: yes", "200 OK"]).await;
    let policy = "    loadBalancer: {simple: ROUND_ROBIN}\n";
    let (_d, p, port) = start(
        &[("v1", up)],
        policy,
        "{attempts: 2, retryOn: retriable-headers}",
    )
    .await;
    let c = TestClient::new();
    let r = c
        .get(
            addr(port),
            "app",
            "/",
            &[("x-envoy-retriable-header-names", "x-other,X-Upstream-Busy")],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-upstream-busy"), None, "{r:?}");
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    p.shutdown().await;

    let (up, seen) = scripted(&["200 OK\r\nx-upstream-busy: yes", "200 OK"]).await;
    let (_d, p, port) = start(
        &[("v1", up)],
        policy,
        "{attempts: 2, retryOn: retriable-headers}",
    )
    .await;
    let r = c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.header("x-upstream-busy"), Some("yes"));
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    p.shutdown().await;
}

/// Cookie `attributes` are written on the generated cookie, in order, before `HttpOnly`.
#[tokio::test]
async fn generated_cookie_carries_the_attributes() {
    let v1 = backend("app", "v1").await;
    let policy = "    loadBalancer:\n      consistentHash:\n        httpCookie:\n          name: user\n          path: /\n          ttl: 60s\n          attributes: [{name: SameSite, value: Strict}, {name: Secure}]\n";
    let (_d, p, port) = start(&[("v1", v1.addr())], policy, "{attempts: 0}").await;
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.starts_with("user=\""), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; Max-Age=60; SameSite=Strict; Secure; HttpOnly"),
        "{cookie}"
    );
    p.shutdown().await;
}

/// `retryRemoteLocalities`: with the local endpoint failing, a retry goes to another locality
/// only when the rule says so (Envoy's `previous_priorities`); otherwise it stays local.
#[tokio::test]
async fn remote_locality_retries() {
    let local = failing_backend("app", "local").await;
    let remote = backend("app", "remote").await;
    let port = free_port();
    let dir = ConfigDir::new();
    let se = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app}}\nspec:\n  hosts: [{HOST}]\n  ports:\n  - {{number: {port}, name: http, protocol: HTTP}}\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, locality: region1/zone1}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}, locality: region2/zone3}}\n",
        local.addr().port(),
        remote.addr().port()
    );
    dir.write("svc.yaml", &se);
    // Outlier detection makes the localities priority levels; its threshold never ejects here.
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 1000}}\n"),
    );
    let rules = |remote: bool| {
        virtual_service_yaml(
            "app",
            &format!("  - route: [{{destination: {{host: app}}}}]\n    retries: {{attempts: 1, retryOn: 5xx, retryRemoteLocalities: {remote}}}\n"),
        )
    };
    dir.write("vs.yaml", &rules(false));
    let p = proxy(dir.path(), |o| {
        o.proxy.locality = "region1/zone1".into();
        o.watch = false;
    })
    .await;
    let c = TestClient::new();
    for _ in 0..5 {
        let r = c.get(addr(port), HOST, "/", &[]).await;
        assert_eq!(r.status, 503, "the retry stayed in region1/zone1");
    }
    dir.write("vs.yaml", &rules(true));
    assert!(p.reload().await.unwrap().is_ok());
    for _ in 0..5 {
        let r = c.get(addr(port), HOST, "/", &[]).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.first_line().contains("remote"), "{}", r.body);
    }
    p.shutdown().await;
}
