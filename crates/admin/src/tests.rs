//! The admin server over real sockets: metrics scrape, graph JSON, SSE feed, clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_config::cluster::{Cluster, UpstreamEndpoint};
use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
use sluice_telemetry::{CompletedRequest, Reporter, RequestProtocol, Telemetry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{serve, AdminState, ClusterStatus, EndpointStatus};

/// A snapshot of `text` (YAML) at `version`.
pub(crate) fn snapshot_of(text: &str, version: u64) -> Snapshot {
    let parsed = sluice_model::parse_text(text, None);
    build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &ProxyConfig::default(),
        &sluice_lb::StateStore::new(),
        version,
    )
    .unwrap()
}

/// The telemetry fixture's 90/10 canary of app-backend at `version`.
pub(crate) fn canary_snapshot(version: u64) -> Snapshot {
    snapshot_of(
        include_str!("../../telemetry/tests/fixtures/canary.yaml"),
        version,
    )
}

fn request<'a>(snap: &'a Snapshot, subset: &str) -> CompletedRequest<'a> {
    let cluster = snap
        .clusters
        .values()
        .find(|c| c.subset.as_deref() == Some(subset))
        .unwrap();
    CompletedRequest {
        reporter: Reporter::Source,
        source_node: "mesh",
        virtual_host: Some("app-backend.default.svc.cluster.local:9080"),
        route: Some("app-backend.0"),
        cluster: Some(cluster),
        endpoint: cluster.endpoints.first(),
        protocol: RequestProtocol::Http,
        response_code: 200,
        grpc_status: None,
        response_flags: "",
        duration: Duration::from_millis(3),
        request_bytes: 0,
        response_bytes: 40,
        mirror: false,
        mtls: None,
    }
}

struct AllHealthy;

impl ClusterStatus for AllHealthy {
    fn endpoint(&self, _: &Cluster, _: &UpstreamEndpoint) -> EndpointStatus {
        EndpointStatus {
            healthy: Some(true),
            ..Default::default()
        }
    }
}

async fn start() -> SocketAddr {
    let snap = Arc::new(canary_snapshot(5));
    let config = sluice_proxy::ConfigHandle::new();
    config.publish(snap.clone());
    let telemetry = Arc::new(Telemetry::default());
    telemetry.on_snapshot(&snap);
    for i in 0..10 {
        telemetry.record_request(&request(&snap, if i == 0 { "v2" } else { "v1" }));
    }
    let state = AdminState::new(config, Arc::new(|| Ok(())))
        .with_telemetry(telemetry)
        .with_cluster_status(Arc::new(AllHealthy));
    serve("127.0.0.1:0".parse().unwrap(), state).await.unwrap()
}

/// A one-shot HTTP/1.1 GET; returns (head, body).
async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_string())
}

/// Sends a raw request on a fresh connection; returns the status line.
async fn status_line(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    text.lines().next().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_admin_refuses_other_host_names_and_writes() {
    let addr = start().await;
    let port = addr.port();
    let cases = [
        // A DNS-rebinding page's requests carry its own name.
        (
            "GET /config_dump",
            "evil.example".to_string(),
            "HTTP/1.1 403",
        ),
        (
            "GET /config_dump",
            format!("evil.example:{port}"),
            "HTTP/1.1 403",
        ),
        (
            "GET /config_dump",
            format!("localhost:{port}"),
            "HTTP/1.1 200",
        ),
        (
            "GET /config_dump",
            format!("127.0.0.1:{port}"),
            "HTTP/1.1 200",
        ),
        ("GET /config_dump", format!("[::1]:{port}"), "HTTP/1.1 200"),
        ("HEAD /ready", "localhost".to_string(), "HTTP/1.1 200"),
        // The one write: a reload, answered 501 here as this server has no reload hook.
        ("POST /api/reload", "localhost".to_string(), "HTTP/1.1 501"),
        (
            "POST /api/reload",
            "rebind.example".to_string(),
            "HTTP/1.1 403",
        ),
        ("POST /config_dump", "localhost".to_string(), "HTTP/1.1 405"),
        (
            "DELETE /config_dump",
            "127.0.0.1".to_string(),
            "HTTP/1.1 405",
        ),
    ];
    for (line, host, want) in cases {
        let got = status_line(
            addr,
            &format!(
                "{line} HTTP/1.1\r\nHost: {host}\r\ncontent-length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(got.starts_with(want), "{line} Host: {host} got {got}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_bound_to_every_address_answers_any_host() {
    let config = sluice_proxy::ConfigHandle::new();
    config.publish(Arc::new(canary_snapshot(1)));
    let state = AdminState::new(config, Arc::new(|| Ok(())));
    let bound = serve("0.0.0.0:0".parse().unwrap(), state).await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], bound.port()));
    let got = status_line(
        addr,
        "GET /ready HTTP/1.1\r\nHost: sluice-admin.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    let got = status_line(
        addr,
        "PUT /ready HTTP/1.1\r\nHost: sluice-admin.example\r\ncontent-length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 405"), "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrape_both_formats() {
    let addr = start().await;
    let (head, body) = get(addr, "/stats/prometheus", None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let v1 = body
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{") && l.contains("destination_version=\"v1\"")
        })
        .unwrap_or_else(|| panic!("no v1 series:\n{body}"));
    assert!(v1.contains("reporter=\"source\""), "{v1}");
    assert!(v1.ends_with("} 9"), "{v1}");
    assert!(body.contains("# TYPE istio_requests_total counter"));
    assert!(body.contains("istio_request_duration_milliseconds_bucket{le=\"0.5\","));

    let (head, body) = get(
        addr,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(
        head.contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.contains("# TYPE istio_requests counter"));
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_json_and_clusters() {
    let addr = start().await;
    let (head, body) = get(addr, "/api/graph", None).await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let g: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(g["window_secs"], 30);
    assert_eq!(g["config_version"], 5);
    let edges = g["edges"].as_array().unwrap();
    let v1 = edges.iter().find(|e| e["subset"] == "v1").unwrap();
    assert_eq!(v1["requests"], 9);
    assert_eq!(v1["configured_weight"], 90);
    assert!((v1["observed_share"].as_f64().unwrap() - 0.9).abs() < 1e-9);
    assert!(g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["kind"] == "version" && n["version"] == "v2"));

    let (_, body) = get(addr, "/clusters", None).await;
    let c: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["version"], 5);
    let clusters = c["clusters"].as_array().unwrap();
    let v1 = clusters
        .iter()
        .find(|c| c["name"] == "outbound|9080|v1|app-backend.default.svc.cluster.local")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(v1["subset"], "v1");
    assert_eq!(v1["in_flight"], serde_json::Value::Null);
    let ep = &v1["endpoints"][0];
    assert_eq!(ep["address"], "127.0.0.1:9001");
    assert_eq!(ep["workload"], "app-backend-v1");
    assert_eq!(ep["labels"]["version"], "v1");
    assert_eq!(ep["healthy"], true);
    assert!(ep["outlier"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_stream_sends_an_event_every_second() {
    let addr = start().await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /api/graph/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_millis(2500);
    let mut raw = String::new();
    let mut buf = [0u8; 16 * 1024];
    while raw.matches("data: ").count() < 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("fewer than two events in 2.5 s:\n{raw}"))
            .unwrap();
        assert!(n > 0, "stream closed:\n{raw}");
        raw.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let head = raw.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    // Each event is one chunk: `data: <json>\n\n`.
    let events: Vec<serde_json::Value> = raw
        .split("data: ")
        .skip(1)
        .map(|e| serde_json::from_str(e.split("\n\n").next().unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert!(e["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["subset"] == "v1" && x["requests"] == 9));
    }
    assert!(started.elapsed() < Duration::from_millis(2500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_path_lists_endpoints() {
    let addr = start().await;
    let (head, body) = get(addr, "/nope", None).await;
    assert!(head.starts_with("http/1.1 404"));
    assert!(body.contains("/stats/prometheus") && body.contains("/api/graph/stream"));
    assert!(body.contains("/api/virtualservices") && body.contains("/api/reload"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn side_panel_endpoints() {
    let addr = start().await;
    let (head, body) = get(addr, "/api/virtualservices", None).await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], 5);
    let weights: Vec<u64> = v["virtual_services"][0]["rules"][0]["destinations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["weight"].as_u64().unwrap())
        .collect();
    assert_eq!(weights, vec![90, 10]);

    let (_, body) = get(addr, "/api/reload", None).await;
    let r: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["status"], "accepted");
    assert_eq!(r["active"]["version"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_page_and_assets() {
    let addr = start().await;
    let (head, body) = get(addr, "/", None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(
        head.contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(body.contains("<svg id=\"graph\""), "{body}");
    let (head, body) = get(addr, "/dashboard/app.js", None).await;
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        body.contains("new EventSource('/api/graph/stream')"),
        "{body}"
    );
    let (head, _) = get(addr, "/dashboard/style.css", None).await;
    assert!(head.contains("content-type: text/css"), "{head}");
    let (head, _) = get(addr, "/dashboard/nope.js", None).await;
    assert!(head.starts_with("http/1.1 404"), "{head}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_uses_the_live_snapshot() {
    let addr = start().await;
    let (head, body) = get(
        addr,
        "/api/explain?method=GET&url=http%3A%2F%2Fapp-backend%3A9080%2F&format=text",
        None,
    )
    .await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(body.contains("outcome       forward by rule"), "{body}");
    assert!(
        body.contains("90.0%  outbound|9080|v1|app-backend.default.svc.cluster.local"),
        "{body}"
    );
    let (head, body) = get(
        addr,
        "/api/explain?url=http%3A%2F%2Fapp-backend%3A9080%2F&header=end-user%3A%20jason",
        None,
    )
    .await;
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v["outcome"].as_str().unwrap().starts_with("forward"), "{v}");
    assert_eq!(v["destinations"].as_array().unwrap().len(), 2);

    let (head, body) = get(addr, "/api/explain?url=http%3A%2F%2Fx%3A1%2F", None).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert!(body.contains("no mesh listener on port 1"), "{body}");
    let (head, _) = get(addr, "/api/explain", None).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let (head, body) = get(addr, "/api/explain?url=http%3A%2F%2Fx%2F&bogus=1", None).await;
    assert!(
        head.starts_with("http/1.1 400") && body.contains("bogus"),
        "{body}"
    );
}

#[tokio::test]
async fn large_documents_filter_by_host_and_paginate() {
    let addr = start().await;
    let host = "app-backend.default.svc.cluster.local";

    let (head, body) = get(addr, &format!("/config_dump?host={host}"), None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let dump: serde_json::Value = serde_json::from_str(&body).unwrap();
    let resources = dump["resources"].as_array().unwrap();
    assert!(!resources.is_empty());
    assert_eq!(
        dump["query"]["totalResources"].as_u64(),
        Some(resources.len() as u64)
    );
    let services = dump["registry"]["services"].as_object().unwrap();
    assert_eq!(services.keys().collect::<Vec<_>>(), [host]);
    let (_, body) = get(addr, "/config_dump?host=nothing.example.com", None).await;
    let none: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(none["resources"].as_array().unwrap().len(), 0);
    // One object per page.
    let (_, body) = get(
        addr,
        &format!("/config_dump?host={host}&limit=1&offset=1"),
        None,
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["resources"].as_array().unwrap(), &resources[1..2]);

    let (head, body) = get(addr, &format!("/routes?host={host}"), None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let routes: serde_json::Value = serde_json::from_str(&body).unwrap();
    let clusters = routes["clusters"].as_object().unwrap();
    assert!(!clusters.is_empty());
    assert!(clusters.values().all(|c| c["host"] == host), "{clusters:?}");
    for l in routes["listeners"].as_array().unwrap() {
        for vh in l["virtual_hosts"]["vhosts"].as_array().unwrap() {
            assert!(
                vh["domains"].as_array().unwrap().iter().any(|d| d == host),
                "{vh}"
            );
        }
    }
    let (_, body) = get(addr, "/routes?limit=1", None).await;
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["clusters"].as_object().unwrap().len(), 1);
    assert!(page["query"]["totalClusters"].as_u64().unwrap() > 1);

    let (head, body) = get(addr, &format!("/api/graph?host={host}&limit=1"), None).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let graph: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(graph["routes"].as_array().unwrap().len() <= 1);
    assert!(!graph["edges"].as_array().unwrap().is_empty());
    let (_, body) = get(addr, "/api/graph?host=nothing.example.com", None).await;
    let none: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(none["edges"].as_array().unwrap().is_empty());
    assert!(none["nodes"].as_array().unwrap().is_empty());

    let (head, _) = get(addr, "/routes?limit=many", None).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
}

/// 1,001 services (one ServiceEntry each, on one port): every per-service list of the large
/// documents is one item longer than the page a request without a query gets.
fn many_services() -> Snapshot {
    let n = crate::query::DEFAULT_PAGE + 1;
    let text: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: s{i}, namespace: default}}\nspec:\n  hosts: [s{i}.example.com]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 10.0.{}.{}}}]\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    snapshot_of(&text.join("---\n"), 1)
}

#[tokio::test]
async fn documents_longer_than_a_page_come_a_page_at_a_time_without_a_query() {
    let snap = Arc::new(many_services());
    let config = sluice_proxy::ConfigHandle::new();
    config.publish(snap.clone());
    let telemetry = Arc::new(Telemetry::default());
    telemetry.on_snapshot(&snap);
    let state = AdminState::new(config, Arc::new(|| Ok(()))).with_telemetry(telemetry);
    let addr = serve("127.0.0.1:0".parse().unwrap(), state).await.unwrap();
    let page = crate::query::DEFAULT_PAGE;
    let json = |body: &str| serde_json::from_str::<serde_json::Value>(body).unwrap();

    let dump = json(&get(addr, "/config_dump", None).await.1);
    assert_eq!(dump["query"]["limit"].as_u64(), Some(page as u64));
    assert_eq!(
        dump["query"]["totalResources"].as_u64(),
        Some(page as u64 + 1)
    );
    assert_eq!(dump["resources"].as_array().unwrap().len(), page);
    assert_eq!(
        dump["query"]["totalServices"].as_u64(),
        Some(page as u64 + 1)
    );
    assert_eq!(
        dump["registry"]["services"].as_object().unwrap().len(),
        page
    );
    // The rest on the next page; everything when asked for.
    let next = json(
        &get(addr, &format!("/config_dump?offset={page}"), None)
            .await
            .1,
    );
    assert_eq!(next["resources"].as_array().unwrap().len(), 1);
    let all = json(&get(addr, "/config_dump?limit=5000", None).await.1);
    assert_eq!(all["resources"].as_array().unwrap().len(), page + 1);

    let clusters = json(&get(addr, "/clusters", None).await.1);
    assert_eq!(clusters["clusters"].as_array().unwrap().len(), page);
    assert_eq!(
        clusters["query"]["totalClusters"].as_u64(),
        Some(page as u64 + 1)
    );
    let one = json(&get(addr, "/clusters?host=s7.example.com", None).await.1);
    let one = one["clusters"].as_array().unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["host"], "s7.example.com");

    let routes = json(&get(addr, "/routes", None).await.1);
    assert_eq!(routes["query"]["limit"].as_u64(), Some(page as u64));
    let listeners = routes["listeners"].as_array().unwrap();
    assert!(!listeners.is_empty());
    for l in listeners {
        assert!(l["virtual_hosts"]["vhosts"].as_array().unwrap().len() <= page);
    }
    assert_eq!(routes["clusters"].as_object().unwrap().len(), page);

    let graph = json(&get(addr, "/api/graph", None).await.1);
    let total = graph["query"]["totalRoutes"].as_u64().unwrap();
    assert!(total > page as u64, "{total}");
    let shown = graph["routes"].as_array().unwrap();
    assert_eq!(shown.len(), page);
    // The edges of the routes shown, not of every route.
    let edges = graph["edges"].as_array().unwrap();
    assert!(
        !edges.is_empty() && edges.len() < total as usize,
        "{}",
        edges.len()
    );
    for e in edges {
        assert!(
            shown
                .iter()
                .any(|r| r["virtual_host"] == e["virtual_host"] && r["route"] == e["route"]),
            "{e}"
        );
    }
}
