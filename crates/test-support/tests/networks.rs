//! Endpoint `network` (WorkloadEntry and ServiceEntry endpoints) against the proxy's own
//! (`--network`), by Istio's split-horizon rule: an endpoint on another network goes through
//! that network's gateway when one is known, and directly when none is (sluice knows none); an
//! endpoint with only a network and no address is left out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;

use sluice_test_support::{backend, free_port, proxy, ConfigDir, TestClient};

#[tokio::test]
async fn endpoints_on_other_networks_are_reached_directly_without_a_gateway() {
    let a = backend("web", "net1").await;
    let b = backend("web", "net2").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: web\nspec:\n  hosts: [web.default.svc.cluster.local]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}}}, network: net1}}\n  - {{address: 127.0.0.1, ports: {{http: {}}}, network: net2}}\n  - {{network: net3}}\n",
            a.addr().port(),
            b.addr().port()
        ),
    );
    dir.write(
        "gw.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: web\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {{host: web.default.svc.cluster.local}}\n"
        ),
    );
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
        o.proxy.network = "net1".into();
    })
    .await;
    let client = TestClient::new();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let r = client.get(addr, "web.example.com", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen.insert(r.first_line().split(" - ").next().unwrap().to_string());
    }
    // The net2 endpoint is reached directly (no gateway serves net2); the address-less net3
    // endpoint is not an endpoint at all.
    assert_eq!(
        seen,
        BTreeSet::from(["web net1".to_string(), "web net2".to_string()])
    );
    let clusters = client.admin(p.admin_addr, "/clusters").await.body;
    assert!(clusters.contains("net2"), "{clusters}");
    assert!(!clusters.contains("net3"), "{clusters}");
    // Said at load: which service has endpoints on another network, and why they are kept.
    let dump = client.admin(p.admin_addr, "/config_dump").await.body;
    assert!(
        dump.contains("SLC0019") && dump.contains("network `net2` while this proxy is on `net1`"),
        "{dump}"
    );
    assert!(!dump.contains("network `net3` while"), "{dump}");
}
