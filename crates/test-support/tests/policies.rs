//! Istio's traffic-management tasks end to end: timeouts, fault injection, circuit breaking,
//! mirroring, retries, rewrites, header operations, CORS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn slow_backend(version: &str, delay: &str) -> BackendHandle {
    let mut args = BackendArgs::ephemeral("app", version);
    args.delay = Some(sluice_tools::parse_duration(delay).unwrap());
    Backend::start(args).await.unwrap()
}

/// Service `app` with the given endpoints, subsets per version, and a VirtualService body.
async fn setup(
    endpoints: &[(&str, SocketAddr)],
    vs_http: &str,
    configure: impl FnOnce(&mut RunOptions),
) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, endpoints));
    let mut versions: Vec<&str> = endpoints.iter().map(|(v, _)| *v).collect();
    versions.dedup();
    dir.write("dr.yaml", &subsets_yaml(HOST, &versions));
    if !vs_http.is_empty() {
        dir.write("vs.yaml", &virtual_service_yaml("app", vs_http));
    }
    let p = proxy(dir.path(), configure).await;
    (dir, p, port)
}

#[tokio::test]
async fn request_timeout_gives_504_ut() {
    let slow = slow_backend("v1", "2s").await;
    let (_d, p, port) = setup(
        &[("v1", slow.addr())],
        "  - timeout: 0.5s\n    route: [{destination: {host: app}}]\n",
        |_| {},
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    assert_eq!(r.body, "upstream request timeout");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn injected_delay_is_not_charged_to_the_same_hop_timeout() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - timeout: 0.3s\n    fault: {delay: {fixedDelay: 0.6s, percentage: {value: 100}}}\n    route: [{destination: {host: app}}]\n",
        |_| {},
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(550));
    p.shutdown().await;
}

#[tokio::test]
async fn fault_abort_for_one_user_only() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - match: [{headers: {end-user: {exact: jason}}}]\n    fault: {abort: {httpStatus: 500, percentage: {value: 100.0}}}\n    route: [{destination: {host: app}}]\n  - fault: {abort: {httpStatus: 500}}\n    route: [{destination: {host: app}}]\n",
        |_| {},
    )
    .await;
    let c = TestClient::new();
    let r = c
        .get(addr(port), "app", "/", &[("end-user", "jason")])
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (500, "fault filter abort")
    );
    // No percentage means no fault at all.
    let r = c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        v1.requests(),
        1,
        "the aborted request never reached the backend"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_overflows_with_503_uo() {
    let slow = slow_backend("v1", "300ms").await;
    let (dir, p, port) = setup(&[("v1", slow.addr())], "", |o| o.watch = false).await;
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}}\n"),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let mut tasks = Vec::new();
    for _ in 0..6 {
        tasks.push(tokio::spawn(async move {
            TestClient::new().get(addr(port), "app", "/", &[]).await
        }));
    }
    let mut ok = 0;
    let mut overflow = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 => {
                assert_eq!(r.header("x-envoy-overloaded"), Some("true"));
                assert!(r.body.ends_with("reset reason: overflow"), "{}", r.body);
                overflow += 1;
            }
            s => panic!("unexpected {s}"),
        }
    }
    assert!(ok >= 2 && overflow >= 1, "ok={ok} overflow={overflow}");
    p.shutdown().await;
}

/// A request queued behind the circuit breaker is still under its route timeout: `504 UT` at
/// its deadline, not whenever a slot frees up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_route_timeout_covers_time_queued_in_the_circuit_breaker() {
    let slow = slow_backend("v1", "1500ms").await;
    let (dir, p, port) = setup(
        &[("v1", slow.addr())],
        "  - match: [{uri: {prefix: /slow}}]\n    timeout: 5s\n    route: [{destination: {host: app}}]\n  - timeout: 0.3s\n    route: [{destination: {host: app}}]\n",
        |o| o.watch = false,
    )
    .await;
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnections: 1}}\n      http: {{http1MaxPendingRequests: 1}}\n"),
    );
    assert!(p.reload().await.unwrap().is_ok());
    // The one slot, held for 1.5 s.
    let holder =
        tokio::spawn(async move { TestClient::new().get(addr(port), "app", "/slow", &[]).await });
    assert_eventually(Duration::from_secs(5), "the slot is taken", || async {
        slow.requests() == 1
    })
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.body, "upstream request timeout");
    assert!(took < Duration::from_millis(900), "answered after {took:?}");
    assert_eq!(holder.await.unwrap().status, 200);
    assert_eq!(slow.requests(), 1, "the timed-out request was sent anyway");
    p.shutdown().await;
}

#[tokio::test]
async fn mirror_copies_every_request_and_the_client_sees_only_the_primary() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        "  - route: [{destination: {host: app, subset: v1}, weight: 100}]\n    mirror: {host: app, subset: v2}\n    mirrorPercentage: {value: 100.0}\n",
        |_| {},
    )
    .await;
    let c = TestClient::new();
    for _ in 0..20 {
        let r = c.get(addr(port), "app", "/", &[]).await;
        assert_eq!(r.header("x-version"), Some("v1"));
    }
    assert_eventually(Duration::from_secs(3), "v2 saw every copy", || async {
        v2.requests() == 20
    })
    .await;
    // Istio 1.28+: no -shadow suffix by default.
    assert_eq!(v2.last_received().unwrap().host(), Some("app"));
    // The copies are a mirror edge of the traffic graph, under the route that made them.
    let admin = p.admin_addr;
    assert_eventually(
        Duration::from_secs(3),
        "the graph counts the copies",
        || {
            let c = c.clone();
            async move {
                let body = c.admin(admin, "/api/graph").await.body;
                let g: serde_json::Value = serde_json::from_str(&body).unwrap();
                g["edges"].as_array().unwrap().iter().any(|e| {
                    e["mirror"] == true
                        && e["subset"] == "v2"
                        && e["route"] == "app.0"
                        && e["requests"] == 20
                })
            }
        },
    )
    .await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_hung_mirror_never_slows_the_primary_and_shadow_suffix_is_optional() {
    let v1 = backend("app", "v1").await;
    let v2 = hung_backend("app", "v2").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        "  - route: [{destination: {host: app, subset: v1}}]\n    mirror: {host: app, subset: v2}\n",
        |o| o.options.mirror_shadow_suffix = true,
    )
    .await;
    let c = TestClient::new();
    let started = Instant::now();
    for _ in 0..10 {
        let r = c
            .request(
                "POST",
                addr(port),
                &format!("app:{port}"),
                "/",
                &[],
                bytes::Bytes::from_static(b"payload"),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eventually(Duration::from_secs(3), "copies reached v2", || async {
        v2.requests() >= 1
    })
    .await;
    assert_eq!(
        v2.received()[0].host().map(str::to_string),
        Some(format!("app-shadow:{port}"))
    );
    p.shutdown().await;
}

#[tokio::test]
async fn retries_move_to_a_healthy_endpoint() {
    let bad = failing_backend("app", "v1").await;
    let good = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", bad.addr()), ("v1", good.addr())],
        "  - retries: {attempts: 3, retryOn: 5xx}\n    route: [{destination: {host: app}}]\n",
        |_| {},
    )
    .await;
    let c = TestClient::new();
    for _ in 0..10 {
        let r = c.get(addr(port), "app", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Every request that first reached the failing endpoint was retried on the healthy one.
    let retried = good
        .received()
        .iter()
        .filter(|r| r.header("x-envoy-attempt-count") == Some("2"))
        .count();
    assert_eq!(retried as u64, bad.requests());
    p.shutdown().await;
}

#[tokio::test]
async fn default_retry_policy_does_not_retry_503_but_retries_connect_failures() {
    let bad = failing_backend("app", "v1").await;
    let (_d, p, port) = setup(&[("v1", bad.addr())], "", |_| {}).await;
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        bad.requests(),
        1,
        "Istio ≥1.24 does not retry 503 by default"
    );
    p.shutdown().await;

    // A dead endpoint beside a live one: connect failures are retried on the other endpoint.
    let live = backend("app", "v1").await;
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (_d, p, port) = setup(&[("v1", dead), ("v1", live.addr())], "", |_| {}).await;
    let c = TestClient::new();
    for _ in 0..6 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    p.shutdown().await;
}

#[tokio::test]
async fn rewrite_and_header_operations() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - match: [{uri: {prefix: /v1/}}]\n    rewrite: {uri: /api/v1/, authority: app.internal}\n    headers:\n      request: {set: {x-route: a}, add: {x-added: '1'}, remove: [x-drop]}\n      response: {set: {x-served-by: sluice}, remove: [x-service]}\n    route:\n    - destination: {host: app}\n      headers: {request: {set: {x-dest: d1}}}\n",
        |_| {},
    )
    .await;
    let r = TestClient::new()
        .get(addr(port), "app", "/v1/items?q=1", &[("x-drop", "1")])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-served-by"), Some("sluice"));
    assert_eq!(r.header("x-service"), None);
    let got = v1.last_received().unwrap();
    assert_eq!(got.path, "/api/v1/items?q=1");
    assert_eq!(got.header("x-envoy-original-path"), Some("/v1/items?q=1"));
    assert_eq!(got.host(), Some("app.internal"));
    assert_eq!(got.header("x-route"), Some("a"));
    assert_eq!(got.header("x-added"), Some("1"));
    assert_eq!(got.header("x-dest"), Some("d1"));
    assert_eq!(got.header("x-drop"), None);
    p.shutdown().await;
}

#[tokio::test]
async fn cors_preflight_and_actual_request() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - corsPolicy:\n      allowOrigins: [{exact: 'https://example.com'}, {regex: 'https://.*\\.trusted\\.io'}]\n      allowMethods: [GET, POST]\n      allowHeaders: [x-custom]\n      exposeHeaders: [x-version]\n      maxAge: 24h\n      allowCredentials: true\n    route: [{destination: {host: app}}]\n",
        |_| {},
    )
    .await;
    let c = TestClient::new();
    let pre = c
        .request(
            "OPTIONS",
            addr(port),
            "app",
            "/",
            &[
                ("origin", "https://a.trusted.io"),
                ("access-control-request-method", "POST"),
            ],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(pre.status, 200);
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://a.trusted.io")
    );
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(pre.header("access-control-max-age"), Some("86400"));
    assert_eq!(v1.requests(), 0, "matching preflights are answered locally");
    let actual = c
        .get(addr(port), "app", "/", &[("origin", "https://example.com")])
        .await;
    assert_eq!(
        actual.header("access-control-allow-origin"),
        Some("https://example.com")
    );
    assert_eq!(
        actual.header("access-control-expose-headers"),
        Some("x-version")
    );
    assert_eq!(
        actual.header("access-control-allow-credentials"),
        Some("true")
    );
    let other = c
        .get(addr(port), "app", "/", &[("origin", "https://evil.com")])
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    p.shutdown().await;
}

fn dr_yaml(traffic_policy: &str, versions: &[&str]) -> String {
    let mut out = format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n{traffic_policy}");
    if !versions.is_empty() {
        out.push_str("  subsets:\n");
        for v in versions {
            out.push_str(&format!("  - name: {v}\n    labels: {{version: {v}}}\n"));
        }
    }
    out
}

async fn four_backends() -> Vec<BackendHandle> {
    let mut out = Vec::new();
    for i in 0..4 {
        out.push(backend("app", &format!("e{i}")).await);
    }
    out
}

#[tokio::test]
async fn session_affinity_by_header_cookie_and_source_ip() {
    let b = four_backends().await;
    let eps: Vec<(&str, SocketAddr)> = b.iter().map(|x| ("v1", x.addr())).collect();
    let (dir, p, port) = setup(&eps, "", |o| o.watch = false).await;
    let c = TestClient::new();
    for (policy, label) in [
        (
            "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
            "header",
        ),
        (
            "    loadBalancer: {consistentHash: {useSourceIp: true, maglev: {tableSize: 65537}}}\n",
            "source ip",
        ),
    ] {
        dir.write("dr.yaml", &dr_yaml(policy, &["v1"]));
        assert!(p.reload().await.unwrap().is_ok());
        for user in ["alice", "bob", "carol"] {
            let first = c
                .get(addr(port), "app", "/", &[("x-user", user)])
                .await
                .header("x-version")
                .unwrap()
                .to_string();
            for _ in 0..10 {
                let r = c.get(addr(port), "app", "/", &[("x-user", user)]).await;
                assert_eq!(
                    r.header("x-version"),
                    Some(first.as_str()),
                    "{label}: {user} moved"
                );
            }
        }
    }
    // Cookie: generated on the first response, then sticky.
    dir.write(
        "dr.yaml",
        &dr_yaml(
            "    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s, path: /}}}\n",
            &["v1"],
        ),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let first = c.get(addr(port), "app", "/", &[]).await;
    let set = first
        .header("set-cookie")
        .expect("cookie generated")
        .to_string();
    assert!(set.starts_with("user=") && set.contains("Path=/"), "{set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let version = first.header("x-version").unwrap().to_string();
    for _ in 0..10 {
        let r = c.get(addr(port), "app", "/", &[("cookie", &cookie)]).await;
        assert_eq!(r.header("x-version"), Some(version.as_str()));
        assert!(r.header("set-cookie").is_none());
    }
    p.shutdown().await;
}

#[tokio::test]
async fn a_user_sticks_to_one_version_across_a_weighted_canary() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let (dir, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        "  - route:\n    - {destination: {host: app, subset: v1}, weight: 50}\n    - {destination: {host: app, subset: v2}, weight: 50}\n",
        |o| o.watch = false,
    )
    .await;
    dir.write(
        "dr.yaml",
        &dr_yaml(
            "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
            &["v1", "v2"],
        ),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let c = TestClient::new();
    let mut versions = std::collections::BTreeMap::new();
    for u in 0..60 {
        let user = format!("user-{u}");
        let first = c
            .get(addr(port), "app", "/", &[("x-user", &user)])
            .await
            .header("x-version")
            .unwrap()
            .to_string();
        for _ in 0..5 {
            let r = c.get(addr(port), "app", "/", &[("x-user", &user)]).await;
            assert_eq!(
                r.header("x-version"),
                Some(first.as_str()),
                "{user} flipped versions"
            );
        }
        *versions.entry(first).or_insert(0) += 1;
    }
    // Over many users the split still follows the weights.
    assert!(
        versions.get("v1").copied().unwrap_or(0) >= 15
            && versions.get("v2").copied().unwrap_or(0) >= 15,
        "{versions:?}"
    );
    p.shutdown().await;
}

/// A version-sticky canary over Istio's weight steps: 90/10 → 80/20 → 50/50 → 0/100 and back.
/// Each step only moves users from stable to canary while the canary grows (and back while it
/// shrinks); nobody flips back and forth.
#[tokio::test]
async fn canary_weight_steps_move_users_one_way_only() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let route = |w1: u32, w2: u32| {
        format!("  - route:\n    - {{destination: {{host: app, subset: v1}}, weight: {w1}}}\n    - {{destination: {{host: app, subset: v2}}, weight: {w2}}}\n")
    };
    let (dir, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        &route(90, 10),
        |o| o.watch = false,
    )
    .await;
    dir.write(
        "dr.yaml",
        &dr_yaml(
            "    loadBalancer: {consistentHash: {httpHeaderName: x-user}}\n",
            &["v1", "v2"],
        ),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let c = TestClient::new();
    let users = 300;
    let versions = || async {
        let mut out = Vec::with_capacity(users);
        for u in 0..users {
            let r = c
                .get(addr(port), "app", "/", &[("x-user", &format!("user-{u}"))])
                .await;
            out.push(r.header("x-version").unwrap_or("").to_string());
        }
        out
    };
    let mut before = versions().await;
    let start = before.clone();
    let mut prev_w2 = 10;
    for (w1, w2) in [(80, 20), (50, 50), (0, 100), (50, 50), (80, 20), (90, 10)] {
        dir.write("vs.yaml", &virtual_service_yaml("app", &route(w1, w2)));
        assert!(p.reload().await.unwrap().is_ok());
        let after = versions().await;
        let moved: Vec<(&String, &String)> =
            before.iter().zip(&after).filter(|(b, a)| b != a).collect();
        let toward = if w2 > prev_w2 { "v2" } else { "v1" };
        prev_w2 = w2;
        assert!(
            moved.iter().all(|(_, a)| a.as_str() == toward),
            "{w1}/{w2}: users moved both ways: {moved:?}"
        );
        let on_v2 = after.iter().filter(|v| *v == "v2").count() as f64 / users as f64;
        assert!(
            (on_v2 - f64::from(w2) / 100.0).abs() < 0.07,
            "{w1}/{w2}: {on_v2} of users on v2"
        );
        before = after;
    }
    assert_eq!(
        before, start,
        "back at 90/10 everyone has their first version"
    );
    p.shutdown().await;
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint() {
    let bad = failing_backend("app", "bad").await;
    let good = backend("app", "good").await;
    let (dir, p, port) = setup(&[("v1", bad.addr()), ("v1", good.addr())], "", |o| {
        o.watch = false
    })
    .await;
    dir.write(
        "dr.yaml",
        &dr_yaml("    loadBalancer: {simple: ROUND_ROBIN}\n    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}\n", &[]),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let c = TestClient::new();
    let mut failures = 0;
    for _ in 0..20 {
        if c.get(addr(port), "app", "/", &[]).await.status != 200 {
            failures += 1;
        }
    }
    assert!(
        failures <= 1,
        "the failing endpoint should be ejected after one 5xx; {failures} failures"
    );
    assert!(bad.requests() <= 1);
    // Ejections survive a config reload.
    assert!(p.reload().await.unwrap().is_ok());
    for _ in 0..5 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    p.shutdown().await;
}

#[tokio::test]
async fn mirror_copies_in_flight_are_capped_and_drops_counted() {
    let v1 = backend("app", "v1").await;
    let v2 = hung_backend("app", "v2").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        "  - route: [{destination: {host: app, subset: v1}}]\n    mirror: {host: app, subset: v2}\n",
        |o| o.options.max_mirror_in_flight = 2,
    )
    .await;
    let c = TestClient::new();
    for _ in 0..10 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eventually(
        Duration::from_secs(3),
        "two copies reached the hung mirror",
        || async { v2.requests() == 2 },
    )
    .await;
    let metrics = c.admin(p.admin_addr, "/stats/prometheus").await.body;
    let dropped: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("sluice_mirror_requests_dropped_total") && l.contains("|v2|"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(dropped, 8.0, "{metrics}");
    p.shutdown().await;
}

/// Copies obey the route timeout (Envoy applies it to shadows): copies held by a mirror that
/// never answers free their slots when it expires, so a new mirror gets the next copies.
#[tokio::test]
async fn mirror_copies_time_out_with_the_route_and_free_their_slots() {
    let v1 = backend("app", "v1").await;
    let hung = hung_backend("app", "v2").await;
    let v3 = backend("app", "v3").await;
    let (dir, p, port) = setup(
        &[("v1", v1.addr()), ("v2", hung.addr()), ("v3", v3.addr())],
        "  - route: [{destination: {host: app, subset: v1}}]\n    timeout: 1s\n    mirror: {host: app, subset: v2}\n",
        |o| {
            o.options.max_mirror_in_flight = 4;
            o.watch = false;
        },
    )
    .await;
    let c = TestClient::new();
    for _ in 0..10 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eventually(
        Duration::from_secs(3),
        "4 copies held by the hung mirror",
        || async { hung.requests() == 4 },
    )
    .await;
    // The route timeout (1 s) ends the held copies; then the mirror moves to v3.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    dir.write(
        "vs.yaml",
        &virtual_service_yaml(
            "app",
            "  - route: [{destination: {host: app, subset: v1}}]\n    timeout: 1s\n    mirror: {host: app, subset: v3}\n",
        ),
    );
    assert!(p.reload().await.unwrap().is_ok());
    for _ in 0..5 {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eventually(
        Duration::from_secs(3),
        "the new mirror got every copy",
        || async { v3.requests() == 5 },
    )
    .await;
    p.shutdown().await;
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

#[tokio::test]
async fn connect_timeout_of_the_destination_rule_applies() {
    // A listener whose accept queue is full drops new SYNs: connecting hangs, as to a dead host.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let full = socket.listen(0).unwrap();
    let target = full.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(target),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let (_d, p, port) = with_traffic_policy(
        target,
        "    connectionPool:\n      tcp: {connectTimeout: 200ms}\n",
    )
    .await;
    let started = Instant::now();
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("connection"), "{}", r.body);
    // Istio's default policy retries a connect failure twice: three tries of 200 ms, not 10 s.
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(3),
        "{took:?}: {}",
        r.body
    );
    drop(fillers);
    p.shutdown().await;
}

#[tokio::test]
async fn h2_upgrade_policy_sends_http2_upstream() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {h2UpgradePolicy: UPGRADE}\n",
    )
    .await;
    let r = TestClient::new().get(addr(port), "app", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert_eq!(v1.last_received().unwrap().version, "HTTP/2.0");
    p.shutdown().await;
}

/// Peers of the upstream connections that carried `n` sequential requests through the proxy.
async fn peers_of_sequential_requests(policy: &str, n: usize) -> (Vec<String>, Vec<String>) {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(v1.addr(), policy).await;
    let c = TestClient::new();
    for _ in 0..n {
        assert_eq!(c.get(addr(port), "app", "/", &[]).await.status, 200);
    }
    let received = v1.received();
    p.shutdown().await;
    (
        received.iter().map(|r| r.peer.to_string()).collect(),
        received.iter().map(|r| r.version.clone()).collect(),
    )
}

#[tokio::test]
async fn max_requests_per_connection_bounds_http1_connections() {
    let (peers, _) = peers_of_sequential_requests(
        "    connectionPool:\n      http: {maxRequestsPerConnection: 2}\n",
        5,
    )
    .await;
    assert_eq!(peers.len(), 5);
    assert_eq!(peers[0], peers[1], "{peers:?}");
    assert_ne!(peers[1], peers[2], "{peers:?}");
    assert_eq!(peers[2], peers[3], "{peers:?}");
    assert_ne!(peers[3], peers[4], "{peers:?}");
}

#[tokio::test]
async fn max_requests_per_connection_bounds_http2_connections() {
    let (peers, versions) = peers_of_sequential_requests(
        "    connectionPool:\n      http: {h2UpgradePolicy: UPGRADE, maxRequestsPerConnection: 2}\n",
        4,
    )
    .await;
    assert!(versions.iter().all(|v| v == "HTTP/2.0"), "{versions:?}");
    assert_eq!(peers[0], peers[1], "{peers:?}");
    assert_ne!(peers[1], peers[2], "{peers:?}");
    assert_eq!(peers[2], peers[3], "{peers:?}");
}

#[tokio::test]
async fn idle_timeout_closes_pooled_upstream_connections() {
    let v1 = backend("app", "v1").await;
    let (_d, p, port) = with_traffic_policy(
        v1.addr(),
        "    connectionPool:\n      http: {idleTimeout: 100ms}\n      tcp: {tcpKeepalive: {time: 30s, interval: 5s, probes: 3}}\n",
    )
    .await;
    let c = TestClient::new();
    c.get(addr(port), "app", "/", &[]).await;
    let first = v1.last_received().unwrap().peer;
    c.get(addr(port), "app", "/", &[]).await;
    assert_eq!(
        v1.last_received().unwrap().peer,
        first,
        "reused while fresh"
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    c.get(addr(port), "app", "/", &[]).await;
    assert_ne!(
        v1.last_received().unwrap().peer,
        first,
        "the idle connection was closed"
    );
    p.shutdown().await;
}
