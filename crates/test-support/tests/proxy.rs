//! The proxy end to end with real backends on loopback: failures, headers, HTTP/2, splits,
//! reloads, admin, draining.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_test_support::*;

fn mesh_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const HOST: &str = "app.default.svc.cluster.local";

fn split_vs(w1: u32, w2: u32) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app}}\nspec:\n  hosts: [app]\n  http:\n  - route:\n    - destination: {{host: app, subset: v1}}\n      weight: {w1}\n    - destination: {{host: app, subset: v2}}\n      weight: {w2}\n"
    )
}

async fn canary_setup(w1: u32, w2: u32) -> (ConfigDir, BackendHandle, BackendHandle, u16) {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    dir.write("vs.yaml", &split_vs(w1, w2));
    (dir, v1, v2, port)
}

#[tokio::test]
async fn split_is_exact_over_1000_requests_and_every_window_of_100() {
    let (dir, _v1, _v2, port) = canary_setup(90, 10).await;
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let mut order = Vec::with_capacity(1000);
    for _ in 0..1000 {
        let r = c.get(mesh_addr(port), "app", "/", &[]).await;
        assert_eq!(r.status, 200);
        order.push(r.header("x-version").unwrap() == "v2");
    }
    assert_eq!(order.iter().filter(|v2| **v2).count(), 100);
    for start in 0..=900 {
        let n = order[start..start + 100].iter().filter(|v2| **v2).count();
        assert!((9..=11).contains(&n), "window at {start} has {n} v2");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn envoy_failures_nc_uh_uf_and_nr() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dead = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(
            HOST,
            port,
            &[
                ("v1", v1.addr()),
                ("dead", SocketAddr::from(([127, 0, 0, 1], dead))),
            ],
        ),
    );
    dir.write(
        "dr.yaml",
        &subsets_yaml(HOST, &["v1", "dead", "empty"])
            .replace("{version: empty}", "{version: nothing-has-this}"),
    );
    dir.write(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: app}\nspec:\n  hosts: [app]\n  http:\n  - match: [{uri: {prefix: /nc}}]\n    route: [{destination: {host: app, subset: v9}}]\n  - match: [{uri: {prefix: /uh}}]\n    route: [{destination: {host: app, subset: empty}}]\n  - match: [{uri: {prefix: /uf}}]\n    route: [{destination: {host: app, subset: dead}}]\n  - match: [{uri: {prefix: /ok}}]\n    route: [{destination: {host: app, subset: v1}}]\n",
    );
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let a = mesh_addr(port);
    let r = c.get(a, "app", "/nc", &[]).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (503, ""));
    let r = c.get(a, "app", "/uh", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (503, "no healthy upstream")
    );
    let r = c.get(a, "app", "/uf", &[]).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.body, "upstream connect error or disconnect/reset before headers. reset reason: connection failure");
    let r = c.get(a, "app", "/other", &[]).await;
    assert_eq!((r.status.as_u16(), r.body.as_str()), (404, ""));
    let r = c.get(a, "unknown.host", "/ok", &[]).await;
    assert_eq!(r.status, 404);
    let r = c.get(a, "app", "/ok", &[]).await;
    assert_eq!(r.status, 200);
    p.shutdown().await;
}

#[tokio::test]
async fn virtual_host_names_and_default_route_without_virtual_service() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let mut seen = std::collections::BTreeMap::new();
    for host in [
        "app",
        "app.default",
        "app.default.svc",
        HOST,
        &format!("{HOST}:{port}"),
        &format!("app:{port}"),
        "APP",
    ] {
        let r = c.get(mesh_addr(port), host, "/", &[]).await;
        assert_eq!(r.status, 200, "host {host}");
        *seen
            .entry(r.header("x-version").unwrap().to_string())
            .or_insert(0) += 1;
    }
    // No VirtualService: all endpoints of the service (Istio's default LEAST_REQUEST picks
    // between idle endpoints at random, so enough requests that both show up).
    for _ in 0..40 {
        let r = c.get(mesh_addr(port), "app", "/", &[]).await;
        *seen
            .entry(r.header("x-version").unwrap().to_string())
            .or_insert(0) += 1;
    }
    assert!(seen.len() == 2, "{seen:?}");
    p.shutdown().await;
}

#[tokio::test]
async fn forwarding_headers_on_mesh_and_gateway() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let gw_port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    dir.write(
        "gw.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {gw_port}, name: http, protocol: HTTP}}\n    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app}}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: app}}}}]\n"),
    );
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
    })
    .await;
    let c = TestClient::new();
    // Mesh: XFF untouched, request id generated, hop-by-hop stripped.
    let r = c
        .get(
            mesh_addr(port),
            "app",
            "/",
            &[
                ("x-forwarded-for", "10.1.1.1"),
                ("connection", "x-secret"),
                ("x-secret", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let got = v1.last_received().unwrap();
    assert_eq!(got.header("x-forwarded-for"), Some("10.1.1.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(got.header("x-request-id").map(str::len), Some(36));
    assert_eq!(got.header("x-envoy-attempt-count"), Some("1"));
    assert_eq!(got.header("x-secret"), None);
    assert_eq!(got.host(), Some("app"));
    // An existing request id is kept.
    c.get(mesh_addr(port), "app", "/", &[("x-request-id", "abc")])
        .await;
    assert_eq!(
        v1.last_received().unwrap().header("x-request-id"),
        Some("abc")
    );
    // Gateway: the peer address is appended.
    let r = c
        .get(
            mesh_addr(gw_port),
            "www.example.com",
            "/",
            &[("x-forwarded-for", "10.1.1.1")],
        )
        .await;
    assert_eq!(r.status, 200);
    let got = v1.last_received().unwrap();
    assert_eq!(got.header("x-forwarded-for"), Some("10.1.1.1, 127.0.0.1"));
    assert_eq!(got.host(), Some("www.example.com"));

    // What a client claims about itself: trusted by sidecars (internal requests), not by the
    // gateway (the edge), as Envoy with `use_remote_address` and no internal networks.
    let claims = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-decorator-operation", "spoofed"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "chosen-by-client"),
    ];
    c.get(mesh_addr(gw_port), "www.example.com", "/", &claims)
        .await;
    let got = v1.last_received().unwrap();
    for (name, _) in &claims[..3] {
        assert_eq!(got.header(name), None, "{name} reached the upstream");
    }
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    let id = got.header("x-request-id").unwrap();
    assert!(id != "chosen-by-client" && id.len() == 36, "{id}");
    assert_eq!(got.header("x-envoy-attempt-count"), Some("1"));
    c.get(mesh_addr(port), "app", "/", &claims).await;
    let got = v1.last_received().unwrap();
    for (name, value) in claims {
        assert_eq!(got.header(name), Some(value), "{name} at the sidecar");
    }
    p.shutdown().await;
}

#[tokio::test]
async fn http2_downstream_and_upstream() {
    let v1 = backend("grpcish", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    let host = "grpcish.default.svc.cluster.local";
    dir.write(
        "svc.yaml",
        &service_yaml(host, port, &[("v1", v1.addr())])
            .replace("protocol: HTTP}", "protocol: HTTP2}"),
    );
    let p = proxy(dir.path(), |_| {}).await;
    // h2c with prior knowledge from the client, and HTTP/2 to the upstream because the port says so.
    let mut args = sluice_tools::TrafficArgs::new(format!("http://127.0.0.1:{port}/"));
    args.requests = 3;
    args.http2 = true;
    args.headers = vec!["Host: grpcish".into()];
    let report = sluice_tools::run_traffic(&args).await.unwrap();
    assert_eq!(report.status_count(200), 3, "{}", report.render());
    assert_eq!(v1.last_received().unwrap().version, "HTTP/2.0");
    // HTTP/1.1 downstream still goes upstream as HTTP/2.
    let r = TestClient::new()
        .get(mesh_addr(port), "grpcish", "/", &[])
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(v1.last_received().unwrap().version, "HTTP/2.0");
    p.shutdown().await;
}

#[tokio::test]
async fn rejected_reload_keeps_the_last_good_config() {
    let (dir, _v1, _v2, port) = canary_setup(100, 0).await;
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let c = TestClient::new();
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v1")
    );
    dir.write(
        "vs.yaml",
        &split_vs(0, 100).replace("weight: 0", "weight: -5"),
    );
    let outcome = p.reload().await.unwrap();
    let rejected = outcome.unwrap_err();
    assert!(rejected
        .diagnostics
        .iter()
        .any(|d| d.field.as_deref() == Some("spec.http[0].route[0].weight")));
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v1")
    );
    let dump = c.admin(p.admin_addr, "/config_dump").await.body;
    assert!(dump.contains("\"lastRejected\""), "{dump}");
    assert!(dump.contains("weight"), "{dump}");
    // A YAML syntax error is rejected too.
    dir.write("vs.yaml", "apiVersion: [unclosed\n");
    assert!(p.reload().await.unwrap().is_err());
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v1")
    );
    // Then a good edit applies.
    dir.write("vs.yaml", &split_vs(0, 100));
    assert!(p.reload().await.unwrap().is_ok());
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v2")
    );
    p.shutdown().await;
}

#[tokio::test]
async fn file_edit_is_picked_up_by_the_watcher() {
    let (dir, _v1, _v2, port) = canary_setup(100, 0).await;
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v1")
    );
    dir.write("vs.yaml", &split_vs(0, 100));
    assert_eventually(Duration::from_secs(5), "weights 0/100 applied", || {
        let c = c.clone();
        async move {
            c.get(mesh_addr(port), "app", "/", &[])
                .await
                .header("x-version")
                == Some("v2")
        }
    })
    .await;
    p.shutdown().await;
}

/// A reload whose new listener cannot be bound (the port is held elsewhere) is rejected with
/// SLC0014, and the previous config stays in force.
#[tokio::test]
async fn a_reload_needing_a_taken_port_is_rejected() {
    let (dir, _v1, _v2, port) = canary_setup(100, 0).await;
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    dir.write(
        "other.yaml",
        &service_yaml(
            "other.default.svc.cluster.local",
            taken,
            &[("v1", mesh_addr(1))],
        ),
    );
    dir.write("vs.yaml", &split_vs(0, 100));
    let rejected = p.reload().await.unwrap().unwrap_err();
    assert!(
        rejected
            .diagnostics
            .iter()
            .any(|d| d.code == "SLC0014" && d.message.contains(&format!("127.0.0.1:{taken}"))),
        "{rejected:?}"
    );
    let c = TestClient::new();
    // The weight change came with it, so it is not in force either.
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v1")
    );
    let reload = c
        .get(p.admin_addr, "localhost", "/api/reload", &[])
        .await
        .body;
    assert!(reload.contains("SLC0014"), "{reload}");
    // Once the port is free the same config applies.
    drop(held);
    assert!(p.reload().await.unwrap().is_ok());
    assert_eq!(
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version"),
        Some("v2")
    );
    p.shutdown().await;
}

/// Deleting the config directory keeps the last config; recreating it is noticed and loaded.
#[tokio::test]
async fn a_config_directory_deleted_and_recreated_is_watched_again() {
    let (dir, _v1, _v2, port) = canary_setup(100, 0).await;
    let cfg = dir.path().join("cfg");
    std::fs::create_dir(&cfg).unwrap();
    let names: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    for f in &names {
        std::fs::rename(f, cfg.join(f.file_name().unwrap())).unwrap();
    }
    let p = proxy(&cfg, |_| {}).await;
    let c = TestClient::new();
    let version = || async {
        c.get(mesh_addr(port), "app", "/", &[])
            .await
            .header("x-version")
            .map(str::to_string)
    };
    assert_eq!(version().await.as_deref(), Some("v1"));
    let saved: Vec<(std::ffi::OsString, String)> = std::fs::read_dir(&cfg)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    std::fs::remove_dir_all(&cfg).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Gone: the last config stays in force.
    assert_eq!(version().await.as_deref(), Some("v1"));
    std::fs::create_dir(&cfg).unwrap();
    for (name, text) in &saved {
        let text = if name == "vs.yaml" {
            split_vs(0, 100)
        } else {
            text.clone()
        };
        std::fs::write(cfg.join(name), text).unwrap();
    }
    assert_eventually(
        Duration::from_secs(5),
        "the recreated directory is loaded",
        || async { version().await.as_deref() == Some("v2") },
    )
    .await;
    // And it is watched again: a later edit applies too.
    std::fs::write(cfg.join("vs.yaml"), split_vs(100, 0)).unwrap();
    assert_eventually(Duration::from_secs(5), "a later edit applies", || async {
        version().await.as_deref() == Some("v1")
    })
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    let (dir, _v1, _v2, port) = canary_setup(90, 10).await;
    let p = Arc::new(proxy(dir.path(), |o| o.watch = false).await);
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let reloading = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut workers = Vec::new();
    for _ in 0..16 {
        let (failures, done, reloading) = (failures.clone(), done.clone(), reloading.clone());
        workers.push(tokio::spawn(async move {
            let c = TestClient::new();
            // At least 130 requests each, and keep going while reloads happen (bounded at 2,000).
            for i in 0..2000 {
                if i >= 130 && !reloading.load(Ordering::Relaxed) {
                    break;
                }
                let r = c.get(mesh_addr(port), "app", "/", &[]).await;
                if r.status != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for reload in 0..100 {
        let (a, b) = if reload % 2 == 0 { (50, 50) } else { (90, 10) };
        dir.write("vs.yaml", &split_vs(a, b));
        assert!(p.reload().await.unwrap().is_ok());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    reloading.store(false, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert!(done.load(Ordering::Relaxed) >= 2080);
    assert_eq!(failures.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn admin_ready_routes_and_config_dump() {
    let (dir, _v1, _v2, _port) = canary_setup(90, 10).await;
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let r = c.admin(p.admin_addr, "/ready").await;
    assert_eq!(r.status, 200);
    let routes = c.admin(p.admin_addr, "/routes").await.body;
    // The routing tables lead; the long clusters block comes last.
    let (lst, clu) = (
        routes.find("\"listeners\"").unwrap(),
        routes.find("\"clusters\"").unwrap(),
    );
    assert!(lst < clu, "{routes}");
    let v: serde_json::Value = serde_json::from_str(&routes).unwrap();
    assert_eq!(v["version"], 1);
    assert!(
        routes.contains("outbound|") && routes.contains("\"weight\": 90"),
        "{routes}"
    );
    let dump: serde_json::Value =
        serde_json::from_str(&c.admin(p.admin_addr, "/config_dump").await.body).unwrap();
    assert_eq!(dump["resources"].as_array().unwrap().len(), 5);
    p.shutdown().await;
}

/// A listener that cannot be bound at start is fatal (its traffic would go to whoever holds
/// the port), and the error names the address and the holder.
#[tokio::test]
async fn start_fails_when_a_listener_cannot_bind() {
    let v1 = backend("app", "v1").await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    let mut opts = RunOptions::new(vec![dir.path().to_path_buf()]);
    opts.admin = "127.0.0.1:0".parse().unwrap();
    let err = sluice::runtime::start(opts)
        .await
        .err()
        .expect("start must fail");
    let msg = format!("{err:#}");
    assert!(
        msg.contains(&format!("cannot bind listener 127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("held by pid {}", std::process::id())),
        "{msg}"
    );
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let v1 = backend("app", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, &[("v1", v1.addr())]));
    let p = proxy(dir.path(), |_| {}).await;
    let slow = tokio::spawn(async move {
        TestClient::new()
            .get(mesh_addr(port), "app", "/delay/0.4", &[])
            .await
    });
    assert_eventually(
        Duration::from_secs(2),
        "request reached the backend",
        || async { v1.requests() == 1 },
    )
    .await;
    p.shutdown().await;
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    // New connections are refused after shutdown.
    assert!(std::net::TcpStream::connect(mesh_addr(port)).is_err());
}

#[tokio::test]
async fn endpoint_weights_are_honoured_by_round_robin() {
    let heavy = backend("app", "heavy").await;
    let light = backend("app", "light").await;
    let port = free_port();
    let dir = ConfigDir::new();
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app}}\nspec:\n  hosts: [{HOST}]\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, weight: 3}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}}}\n",
        heavy.addr().port(),
        light.addr().port()
    );
    dir.write("svc.yaml", &yaml);
    // Istio's default LEAST_REQUEST draws candidates by weight: about 3:1.
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let c = TestClient::new();
    for _ in 0..400 {
        assert_eq!(c.get(mesh_addr(port), "app", "/", &[]).await.status, 200);
    }
    let share = heavy.requests() as f64 / 400.0;
    assert!((0.65..0.85).contains(&share), "heavy got {share}");
    // ROUND_ROBIN is exact.
    dir.write(
        "dr.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}\n"),
    );
    assert!(p.reload().await.unwrap().is_ok());
    let (h0, l0) = (heavy.requests(), light.requests());
    for _ in 0..400 {
        assert_eq!(c.get(mesh_addr(port), "app", "/", &[]).await.status, 200);
    }
    assert_eq!((heavy.requests() - h0, light.requests() - l0), (300, 100));
    p.shutdown().await;
}
