//! Istio metrics, the traffic graph and /clusters from a running proxy carrying a 90/10 split.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";

fn metric_value(text: &str, name: &str, must_contain: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn istio_metrics_graph_and_clusters_follow_the_split() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    dir.write(
        "vs.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: app}\nspec:\n  hosts: [app]\n  http:\n  - route:\n    - {destination: {host: app, subset: v1}, weight: 90}\n    - {destination: {host: app, subset: v2}, weight: 10}\n",
    );
    let p = proxy(dir.path(), |o| {
        o.proxy.labels.insert("app".into(), "frontend".into());
        o.proxy.labels.insert("version".into(), "v1".into());
    })
    .await;
    let c = TestClient::new();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        assert_eq!(c.get(target, "app", "/", &[]).await.status, 200);
    }
    assert_eq!(c.get(target, "nope", "/", &[]).await.status, 404);

    let text = c.admin(p.admin_addr, "/stats/prometheus").await.body;
    let v1_count = metric_value(
        &text,
        "istio_requests_total",
        &[
            "reporter=\"source\"",
            "destination_version=\"v1\"",
            "response_code=\"200\"",
        ],
    );
    let v2_count = metric_value(
        &text,
        "istio_requests_total",
        &["destination_version=\"v2\""],
    );
    assert_eq!((v1_count, v2_count), (90.0, 10.0), "{text}");
    assert!(text.contains("source_app=\"frontend\""), "{text}");
    assert!(text.contains("destination_service=\"app.default.svc.cluster.local\""));
    assert!(
        text.contains("response_flags=\"NR\""),
        "the 404 is counted with flag NR"
    );
    assert!(text.contains("istio_request_duration_milliseconds_bucket"));

    let graph: serde_json::Value =
        serde_json::from_str(&c.admin(p.admin_addr, "/api/graph").await.body).unwrap();
    assert!(
        graph["edges"].as_array().is_some_and(|e| !e.is_empty()),
        "{graph}"
    );

    let clusters = c.admin(p.admin_addr, "/clusters").await.body;
    assert!(
        clusters.contains("outbound|") && clusters.contains("\"in_flight\""),
        "{clusters}"
    );
    p.shutdown().await;
}

/// The graph's observed split after a reload that changes the weights counts only requests sent
/// under the new weights (the window of the changed route restarts).
#[tokio::test]
async fn graph_observed_share_restarts_when_a_reload_changes_the_split() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    let split = |w1: u32, w2: u32| {
        format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app}}\nspec:\n  hosts: [app]\n  http:\n  - route:\n    - {{destination: {{host: app, subset: v1}}, weight: {w1}}}\n    - {{destination: {{host: app, subset: v2}}, weight: {w2}}}\n")
    };
    dir.write("vs.yaml", &split(90, 10));
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let target = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..100 {
        assert_eq!(c.get(target, "app", "/", &[]).await.status, 200);
    }
    let before = p.snapshot().unwrap().version;
    dir.write("vs.yaml", &split(50, 50));
    assert_eventually(std::time::Duration::from_secs(10), "50/50 active", || {
        let ok = p.snapshot().is_some_and(|s| s.version > before);
        async move { ok }
    })
    .await;
    for _ in 0..10 {
        assert_eq!(c.get(target, "app", "/", &[]).await.status, 200);
    }
    let graph: serde_json::Value =
        serde_json::from_str(&c.admin(p.admin_addr, "/api/graph").await.body).unwrap();
    assert!(graph["window_reset_ms"].is_u64(), "{graph}");
    let edges = graph["edges"].as_array().unwrap();
    for subset in ["v1", "v2"] {
        let e = edges
            .iter()
            .find(|e| e["subset"] == subset && e["mirror"] == false)
            .unwrap_or_else(|| panic!("no {subset} edge: {graph}"));
        assert_eq!(e["requests"], 5, "{graph}");
        assert_eq!(e["observed_share"], 0.5, "{graph}");
        assert_eq!(e["configured_weight"], 50, "{graph}");
    }
    p.shutdown().await;
}
