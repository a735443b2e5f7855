//! Golden fixture: the compiled listeners, virtual hosts and routes for the bookinfo reviews set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;

fn compiled(dir: &str, proxy: ProxyConfig) -> serde_json::Value {
    let parsed = sluice_sources::read_paths(&[PathBuf::from(dir)]);
    let snap = build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
    )
    .unwrap();
    serde_json::json!({ "listeners": snap.listeners, "clusters": snap.clusters.keys().collect::<Vec<_>>() })
}

#[test]
fn bookinfo_reviews_mesh_routes() {
    insta::assert_json_snapshot!(
        "bookinfo_mesh",
        compiled("tests/fixtures/analyze/clean", ProxyConfig::default())
    );
}

#[test]
fn gateway_routes_merge_virtual_services() {
    let mut p = ProxyConfig::default();
    p.labels.insert("istio".into(), "ingressgateway".into());
    p.mesh_role = false;
    insta::assert_json_snapshot!(
        "gateway_merge",
        compiled("tests/fixtures/routes/gateway", p)
    );
}
