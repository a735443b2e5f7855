//! Checks the examples under `examples/` further than their READMEs show.
//!
//! The READMEs themselves are run as written by `crates/sluice/tests/example_readmes`; these
//! tests copy an example's YAML into a temporary config directory, replace the fixed ports
//! (backends on 9001/9002/9003, services on 9080, the gateway on 8080; for TCP the service on
//! 9000 and the gateway on 31400) by real ones, start real backends and an in-process proxy,
//! and check cases the READMEs leave out (more Host forms, paths and header values, the
//! snapshot's weights). Every example (and every canary step) must also analyze without errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;
use sluice::analyze::{diagnostics, has_errors, render, Format};
use sluice_config::route_table::RouteAction;
use sluice_test_support::{
    assert_eventually, backend, free_port, proxy, tcp_line, ConfigDir, ProxyHandle, TestClient,
};
use sluice_tools::{run_traffic, Report, TrafficArgs};

/// The README's backend ports, service port and gateway port.
const V1: u16 = 9001;
const V2: u16 = 9002;
const V3: u16 = 9003;
const SERVICE: u16 = 9080;
const GATEWAY: u16 = 8080;
const TCP_SERVICE: u16 = 9000;
const TCP_GATEWAY: u16 = 31400;
const HTTPS_GATEWAY: u16 = 8443;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn read_example(rel: &str) -> String {
    let path = examples_dir().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Replaces the port number `from` by `to` wherever it stands alone (not inside a longer number).
fn replace_port(text: &str, from: u16, to: u16) -> String {
    let from = from.to_string();
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in text.match_indices(&from) {
        let end = i + from.len();
        let before = i > 0 && bytes[i - 1].is_ascii_digit();
        let after = end < bytes.len() && bytes[end].is_ascii_digit();
        if !before && !after {
            out.push_str(&text[last..i]);
            out.push_str(&to.to_string());
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

fn localize(text: &str, ports: &[(u16, u16)]) -> String {
    ports.iter().fold(text.to_string(), |t, &(from, to)| {
        replace_port(&t, from, to)
    })
}

/// The config files of an example directory (not recursive), sorted.
fn example_files(rel: &str) -> Vec<String> {
    let dir = examples_dir().join(rel);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no YAML in {}", dir.display());
    names
}

/// Copies an example's YAML into a new config directory with the README's ports replaced;
/// every README port must occur in the example (so the test cannot drift from it).
fn install(rel: &str, ports: &[(u16, u16)]) -> ConfigDir {
    install_with(rel, ports, |_| {})
}

/// [`install`], with `prepare` run in the new directory before the YAML is checked (e.g. to
/// make the certificates the YAML names).
fn install_with(rel: &str, ports: &[(u16, u16)], prepare: impl FnOnce(&Path)) -> ConfigDir {
    let dir = ConfigDir::new();
    prepare(dir.path());
    let mut all = String::new();
    for name in example_files(rel) {
        let text = read_example(&format!("{rel}/{name}"));
        dir.write(&name, &localize(&text, ports));
        all.push_str(&text);
    }
    for (from, _) in ports {
        assert!(
            all.contains(&from.to_string()),
            "examples/{rel} does not mention port {from}"
        );
    }
    assert_valid(&[dir.path().to_path_buf()]);
    dir
}

/// `sluice analyze` finds no error (warnings are fine).
fn assert_valid(paths: &[PathBuf]) {
    let diags = diagnostics(paths);
    assert!(
        !has_errors(&diags),
        "{paths:?} has errors:\n{}",
        render(&diags, Format::Human, false)
    );
}

/// The proxy's active snapshot carries no error diagnostics.
fn assert_snapshot_clean(p: &ProxyHandle) {
    let snap = p.snapshot().expect("no snapshot");
    assert!(
        !has_errors(&snap.diagnostics),
        "snapshot {} has errors:\n{}",
        snap.version,
        render(&snap.diagnostics, Format::Human, false)
    );
}

/// `sluice traffic http://127.0.0.1:PORT{path} -n N -c 4 -H ...`; every request must get a 200.
async fn traffic(port: u16, path: &str, n: u64, headers: &[&str]) -> Report {
    let mut args = TrafficArgs::new(format!("http://127.0.0.1:{port}{path}"));
    args.requests = n;
    args.concurrency = 4;
    args.timeout = Duration::from_secs(5);
    args.headers = headers.iter().map(|h| h.to_string()).collect();
    let report = run_traffic(&args).await.unwrap();
    assert_eq!(report.total, n, "{}", report.render());
    assert_eq!(report.status_count(200), n, "{}", report.render());
    report
}

/// Asserts a traffic report is exactly `expected` (key → count).
fn assert_split(report: &Report, expected: &[(&str, u64)]) {
    let got: Vec<(&str, u64)> = report
        .distribution
        .iter()
        .map(|k| (k.key.as_str(), k.count))
        .collect();
    let mut want = expected.to_vec();
    want.retain(|(_, n)| *n > 0);
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    assert_eq!(got, want, "\n{}", report.render());
}

/// `(subset, weight)` of the first rule for `host` on the listener at `addr`.
fn active_weights(p: &ProxyHandle, addr: SocketAddr, host: &str) -> Vec<(String, u32)> {
    let Some(snap) = p.snapshot() else {
        return Vec::new();
    };
    let Some(vh) = snap.listener(addr).and_then(|l| l.virtual_host(host)) else {
        return Vec::new();
    };
    match vh.routes.first().map(|r| &r.action) {
        Some(RouteAction::Forward(f)) => f
            .destinations
            .iter()
            .map(|d| {
                (
                    d.subset.as_deref().unwrap_or_default().to_string(),
                    d.weight,
                )
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn weights(w: &[(&str, u32)]) -> Vec<(String, u32)> {
    w.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn every_example_analyzes_without_errors() {
    for rel in [
        "canary/config",
        "header-canary",
        "source-labels",
        "path-canary",
        "subdomain-gateway",
        "tcp-traffic-shifting/config",
    ] {
        assert_valid(&[examples_dir().join(rel)]);
    }
    let tcp = examples_dir().join("tcp-traffic-shifting");
    assert_valid(&[
        tcp.join("config/tcp-echo-services.yaml"),
        tcp.join("config/tcp-echo-gateway.yaml"),
        tcp.join("steps/virtual-service-20-v2.yaml"),
    ]);
    // Each canary step, applied over the base config as the README does (`cp step virtual-service.yaml`).
    for step in example_files("canary/steps") {
        let base = examples_dir().join("canary/config");
        assert_valid(&[
            base.join("app-backend.yaml"),
            base.join("destination-rule.yaml"),
            examples_dir().join("canary/steps").join(step),
        ]);
    }
}

/// One canary step: the file copied over virtual-service.yaml and what it must do.
struct Step {
    file: &'static str,
    weights: &'static [(&'static str, u32)],
    requests: u64,
    split: &'static [(&'static str, u64)],
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_90_10_then_50_50_then_0_100_then_rollback() {
    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    let port = free_port();
    let ports = [
        (V1, v1.addr().port()),
        (V2, v2.addr().port()),
        (SERVICE, port),
    ];
    let dir = install("canary/config", &ports);
    let p = proxy(dir.path(), |o| o.proxy.gateway_role = false).await;
    assert_snapshot_clean(&p);
    let addr = loopback(port);
    let host = "Host: app-backend";

    // Step 1 (the config as shipped): exactly 90/10, the split is a smooth weighted round robin.
    assert_eq!(
        active_weights(&p, addr, "app-backend"),
        weights(&[("v1", 90), ("v2", 10)])
    );
    let r = traffic(port, "/", 1000, &[host]).await;
    assert_split(&r, &[("app-backend v1", 900), ("app-backend v2", 100)]);

    // Each step replaces virtual-service.yaml; the file watcher picks the change up.
    let steps = [
        Step {
            file: "virtual-service-50-50.yaml",
            weights: &[("v1", 50), ("v2", 50)],
            requests: 1000,
            split: &[("app-backend v1", 500), ("app-backend v2", 500)],
        },
        Step {
            file: "virtual-service-0-100.yaml",
            weights: &[("v2", 100)],
            requests: 200,
            split: &[("app-backend v2", 200)],
        },
        Step {
            file: "virtual-service-100-0.yaml",
            weights: &[("v1", 100)],
            requests: 200,
            split: &[("app-backend v1", 200)],
        },
    ];
    for Step {
        file,
        weights: want,
        requests: n,
        split,
    } in steps
    {
        let before = p.snapshot().unwrap().version;
        dir.write(
            "virtual-service.yaml",
            &localize(&read_example(&format!("canary/steps/{file}")), &ports),
        );
        let want = weights(want);
        assert_eventually(
            Duration::from_secs(5),
            &format!("{file} becomes active"),
            || {
                let ok = active_weights(&p, addr, "app-backend") == want;
                async move { ok }
            },
        )
        .await;
        assert!(p.snapshot().unwrap().version > before);
        assert_snapshot_clean(&p);
        let r = traffic(port, "/", n, &[host]).await;
        assert_split(&r, split);
    }

    // Every Host form of the service reaches it.
    let client = TestClient::new();
    for h in [
        "app-backend".to_string(),
        format!("app-backend:{port}"),
        "app-backend.default".to_string(),
        format!("app-backend.default.svc.cluster.local:{port}"),
    ] {
        let reply = client.get(addr, &h, "/", &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "Host {h}");
        assert_eq!(reply.header("x-version"), Some("v1"), "Host {h}");
    }
    p.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_canary_sends_testers_to_v2() {
    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    let port = free_port();
    let dir = install(
        "header-canary",
        &[
            (V1, v1.addr().port()),
            (V2, v2.addr().port()),
            (SERVICE, port),
        ],
    );
    let p = proxy(dir.path(), |o| o.proxy.gateway_role = false).await;
    assert_snapshot_clean(&p);
    let host = "Host: app-backend";

    let r = traffic(port, "/", 100, &[host, "canary: canary-tester"]).await;
    assert_split(&r, &[("app-backend v2", 100)]);
    let r = traffic(port, "/", 100, &[host]).await;
    assert_split(&r, &[("app-backend v1", 100)]);
    let r = traffic(port, "/", 100, &[host, "canary: other"]).await;
    assert_split(&r, &[("app-backend v1", 100)]);

    // `exact` compares the value as is (header names are case-insensitive, values are not).
    let client = TestClient::new();
    let addr = loopback(port);
    let reply = client
        .get(addr, "app-backend", "/", &[("Canary", "canary-tester")])
        .await;
    assert_eq!(reply.header("x-version"), Some("v2"));
    let reply = client
        .get(addr, "app-backend", "/", &[("canary", "Canary-Tester")])
        .await;
    assert_eq!(reply.header("x-version"), Some("v1"));
    let reply = client
        .get(addr, "app-backend", "/", &[("canary", "canary-tester-2")])
        .await;
    assert_eq!(reply.header("x-version"), Some("v1"));
    p.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_labels_route_frontend_v2_to_backend_v2() {
    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    // Two sidecars on one machine: each gets its own copy of the config with its own service port.
    let (port_a, port_b, port_c) = (free_port(), free_port(), free_port());
    let backends = [(V1, v1.addr().port()), (V2, v2.addr().port())];
    let dir_a = install(
        "source-labels",
        &[backends[0], backends[1], (SERVICE, port_a)],
    );
    let dir_b = install(
        "source-labels",
        &[backends[0], backends[1], (SERVICE, port_b)],
    );
    let dir_c = install(
        "source-labels",
        &[backends[0], backends[1], (SERVICE, port_c)],
    );
    let sidecar = |labels: &'static [(&'static str, &'static str)]| {
        move |o: &mut sluice_test_support::RunOptions| {
            o.proxy.gateway_role = false;
            o.proxy.labels = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        }
    };
    // `sourceLabels` must be a subset of the caller's labels: extra labels do not matter.
    let frontend_v2 = proxy(
        dir_a.path(),
        sidecar(&[("app", "frontend"), ("version", "v2"), ("team", "web")]),
    )
    .await;
    let frontend_v1 = proxy(
        dir_b.path(),
        sidecar(&[("app", "frontend"), ("version", "v1")]),
    )
    .await;
    let other_v2 = proxy(
        dir_c.path(),
        sidecar(&[("app", "checkout"), ("version", "v2")]),
    )
    .await;
    for p in [&frontend_v2, &frontend_v1, &other_v2] {
        assert_snapshot_clean(p);
    }
    let host = "Host: app-backend";
    let r = traffic(port_a, "/", 100, &[host]).await;
    assert_split(&r, &[("app-backend v2", 100)]);
    let r = traffic(port_b, "/", 100, &[host]).await;
    assert_split(&r, &[("app-backend v1", 100)]);
    let r = traffic(port_c, "/", 100, &[host]).await;
    assert_split(&r, &[("app-backend v1", 100)]);
    for p in [frontend_v2, frontend_v1, other_v2] {
        p.shutdown().await;
    }
    v1.shutdown().await;
    v2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_canary_sends_experimental_paths_to_v2() {
    let v1 = backend("app-backend", "v1").await;
    let v2 = backend("app-backend", "v2").await;
    let port = free_port();
    let dir = install(
        "path-canary",
        &[
            (V1, v1.addr().port()),
            (V2, v2.addr().port()),
            (SERVICE, port),
        ],
    );
    let p = proxy(dir.path(), |o| o.proxy.gateway_role = false).await;
    assert_snapshot_clean(&p);
    let client = TestClient::new();
    let addr = loopback(port);
    let cases = [
        ("/experimental/x", "v2"),
        ("/experimental", "v2"),
        ("/canary", "v2"),
        ("/canary/new-checkout?id=7", "v2"),
        // A plain string prefix, as in Envoy: not limited to path segments.
        ("/canaryfoo", "v2"),
        ("/", "v1"),
        ("/other", "v1"),
        ("/api/canary", "v1"),
        // Case-sensitive without `ignoreUriCase`.
        ("/Canary", "v1"),
    ];
    for (path, want) in cases {
        let reply = client.get(addr, "app-backend", path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(
            reply.header("x-version"),
            Some(want),
            "{path}: {}",
            reply.body
        );
    }
    let r = traffic(port, "/canary/new-checkout", 50, &["Host: app-backend"]).await;
    assert_split(&r, &[("app-backend v2", 50)]);
    let r = traffic(port, "/checkout", 50, &["Host: app-backend"]).await;
    assert_split(&r, &[("app-backend v1", 50)]);
    p.shutdown().await;
    v1.shutdown().await;
    v2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subdomain_gateway_routes_by_host() {
    let fe1 = backend("frontend", "v1").await;
    let fe2 = backend("frontend", "v2").await;
    let api = backend("api", "v1").await;
    let (gw_port, svc_port) = (free_port(), free_port());
    let ports = [
        (V1, fe1.addr().port()),
        (V2, fe2.addr().port()),
        (V3, api.addr().port()),
        (SERVICE, svc_port),
        (GATEWAY, gw_port),
    ];
    let dir = install("subdomain-gateway", &ports);
    // `sluice run ... --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh`
    let p = proxy(dir.path(), |o| {
        o.proxy.labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        o.proxy.mesh_role = false;
    })
    .await;
    assert_snapshot_clean(&p);
    let client = TestClient::new();
    let gw = loopback(gw_port);
    let cases = [
        ("app.example.com".to_string(), "/", "frontend v1"),
        (format!("app.example.com:{gw_port}"), "/", "frontend v1"),
        ("APP.example.com".to_string(), "/", "frontend v1"),
        (
            "app.example.com".to_string(),
            "/experimental/new-ui",
            "frontend v2",
        ),
        ("api.example.com".to_string(), "/", "api v1"),
        (
            format!("api.example.com:{gw_port}"),
            "/experimental",
            "api v1",
        ),
        ("x.preview.example.com".to_string(), "/", "frontend v2"),
        (
            format!("pr-42.preview.example.com:{gw_port}"),
            "/",
            "frontend v2",
        ),
    ];
    for (host, path, want) in &cases {
        let reply = client.get(gw, host, path, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{host}{path}");
        assert!(
            reply.first_line().starts_with(&format!("{want} - request")),
            "{host}{path}: {}",
            reply.body
        );
    }
    // Hosts the gateway does not serve: 404 with an empty body (Envoy's NR).
    for host in [
        "unknown.example.com",
        "preview.example.com",
        "example.com",
        "localhost",
    ] {
        let reply = client.get(gw, host, "/", &[]).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{host}: {}",
            reply.body
        );
        assert_eq!(reply.body, "", "{host}");
    }
    let r = traffic(gw_port, "/", 100, &["Host: pr-42.preview.example.com"]).await;
    assert_split(&r, &[("frontend v2", 100)]);
    p.shutdown().await;

    // A proxy without the `istio: ingressgateway` label is not selected: nothing is bound.
    let plain = proxy(dir.path(), |o| o.proxy.mesh_role = false).await;
    assert!(plain.snapshot().unwrap().listeners.is_empty());
    plain.shutdown().await;
    for b in [fe1, fe2, api] {
        b.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_traffic_shifting_all_v1_then_20_v2() {
    let tcp_echo = |version: &str, prefix: &str| {
        let mut args = sluice_tools::BackendArgs::ephemeral("tcp-echo", version);
        args.tcp_echo = Some(prefix.to_string());
        sluice_tools::Backend::start(args)
    };
    let v1 = tcp_echo("v1", "one").await.unwrap();
    let v2 = tcp_echo("v2", "two").await.unwrap();
    let (gw_port, svc_port) = (free_port(), free_port());
    let ports = [
        (V1, v1.addr().port()),
        (V2, v2.addr().port()),
        (TCP_SERVICE, svc_port),
        (TCP_GATEWAY, gw_port),
    ];
    let dir = install("tcp-traffic-shifting/config", &ports);
    // `sluice run /tmp/tcp-echo --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh`
    let p = proxy(dir.path(), |o| {
        o.proxy.labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        o.proxy.mesh_role = false;
    })
    .await;
    assert_snapshot_clean(&p);
    let gw = loopback(gw_port);

    // Step 1: every connection to v1.
    for i in 0..5 {
        assert_eq!(
            tcp_line(gw, &format!("line {i}")).await,
            format!("one line {i}")
        );
    }

    // Step 2: `cp steps/virtual-service-20-v2.yaml /tmp/tcp-echo/virtual-service.yaml`.
    let step = read_example("tcp-traffic-shifting/steps/virtual-service-20-v2.yaml");
    dir.write("virtual-service.yaml", &localize(&step, &ports));
    assert_eventually(
        Duration::from_secs(10),
        "the 80/20 step is active",
        || async { p.snapshot().is_some_and(|s| s.version >= 2) },
    )
    .await;
    let mut ones = 0;
    let mut twos = 0;
    for _ in 0..20 {
        match tcp_line(gw, "hello").await.as_str() {
            "one hello" => ones += 1,
            "two hello" => twos += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    assert_eq!((ones, twos), (16, 4));
    p.shutdown().await;
}

/// examples/https-gateway: `make-certs.sh`, then the README's requests.
#[tokio::test]
async fn https_gateway_terminates_by_sni_and_redirects() {
    use sluice_test_support::pki::TlsClient;
    let httpbin = backend("httpbin", "v1").await;
    let helloworld = backend("helloworld", "v1").await;
    let (https_port, http_port) = (free_port(), free_port());
    let ports = [
        (V1, httpbin.addr().port()),
        (V2, helloworld.addr().port()),
        (HTTPS_GATEWAY, https_port),
        (GATEWAY, http_port),
    ];
    let dir = install_with("https-gateway", &ports, |d| {
        // `bash examples/https-gateway/make-certs.sh`, in the copy.
        std::fs::copy(
            examples_dir().join("https-gateway/make-certs.sh"),
            d.join("make-certs.sh"),
        )
        .unwrap();
        let out = std::process::Command::new("bash")
            .arg(d.join("make-certs.sh"))
            .output()
            .expect("bash and openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    // `sluice run ... --labels istio=ingressgateway --gateway-address 127.0.0.1 --no-mesh`
    let p = proxy(dir.path(), |o| {
        o.proxy.labels = [("istio".to_string(), "ingressgateway".to_string())].into();
        o.proxy.mesh_role = false;
    })
    .await;
    assert_snapshot_clean(&p);
    let ca = std::fs::read_to_string(dir.path().join("certs/example.com.crt")).unwrap();
    let gw = loopback(https_port);
    let httpbin_client = TlsClient {
        alpn: vec!["h2", "http/1.1"],
        ..TlsClient::new(&ca, "httpbin.example.com")
    };
    let r = httpbin_client.get(gw, "/status/418").await.unwrap();
    assert_eq!((r.status.as_u16(), r.alpn.as_deref()), (418, Some("h2")));
    let hello = TlsClient::new(&ca, "helloworld.example.com");
    let r = hello.get(gw, "/hello").await.unwrap();
    assert_eq!(r.body.trim_end(), "helloworld v1 - request 1");
    let fronted = TlsClient {
        host: Some("httpbin.example.com".into()),
        ..hello.clone()
    };
    assert_eq!(fronted.get(gw, "/status/200").await.unwrap().status, 404);
    assert!(TlsClient::new(&ca, "other.example.com")
        .get(gw, "/")
        .await
        .is_err());
    let r = TestClient::new()
        .get(
            loopback(http_port),
            "httpbin.example.com",
            "/status/200",
            &[],
        )
        .await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.header("location"),
        Some("https://httpbin.example.com/status/200")
    );
    p.shutdown().await;
}
