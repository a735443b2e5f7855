//! DestinationRule `workloadSelector`: a rule with a selector applies only to proxies of its
//! namespace whose labels match, and then wins over the namespace-wide rule for the host, as
//! Istio's `SidecarScope.DestinationRule` chooses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};

use sluice_test_support::{backend, free_port, proxy, service_yaml, ConfigDir, TestClient};

/// The same subset name points at v1 for workloads labelled `app: canary-client` and at v2 for
/// everyone else.
const RULES: &str = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews-all\nspec:\n  host: reviews.default.svc.cluster.local\n  subsets:\n  - {name: pinned, labels: {version: v2}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews-canary-client\nspec:\n  host: reviews.default.svc.cluster.local\n  workloadSelector:\n    matchLabels: {app: canary-client}\n  exportTo: [\".\"]\n  subsets:\n  - {name: pinned, labels: {version: v1}}\n";

#[tokio::test]
async fn workload_selector_rules_apply_to_matching_proxies_of_their_namespace() {
    let v1 = backend("reviews", "v1").await;
    let v2 = backend("reviews", "v2").await;
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "svc.yaml",
        &service_yaml(
            "reviews.default.svc.cluster.local",
            9080,
            &[("v1", v1.addr()), ("v2", v2.addr())],
        ),
    );
    dir.write("dr.yaml", RULES);
    dir.write(
        "gw.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {{host: reviews.default.svc.cluster.local, subset: pinned}}\n"
        ),
    );
    // Three gateway proxies on one port, each on its own loopback address.
    let start = |ip: [u8; 4], app: Option<&'static str>, namespace: &'static str| {
        let dir = dir.path().to_path_buf();
        async move {
            let p = proxy(&dir, move |o| {
                o.proxy.gateway_address = IpAddr::from(ip);
                o.proxy.mesh_role = false;
                o.proxy.namespace = namespace.into();
                o.proxy
                    .labels
                    .insert("istio".into(), "ingressgateway".into());
                if let Some(app) = app {
                    o.proxy.labels.insert("app".into(), app.into());
                }
            })
            .await;
            (p, SocketAddr::from((ip, port)))
        }
    };
    let (_matching, matching) = start([127, 0, 0, 1], Some("canary-client"), "default").await;
    let (_other, other) = start([127, 0, 0, 2], Some("productpage"), "default").await;
    // The selector rule is exported to its own namespace only, and Istio applies selector
    // rules only to proxies of their namespace: a matching proxy elsewhere gets the
    // namespace-wide rule.
    let (_elsewhere, elsewhere) = start([127, 0, 0, 3], Some("canary-client"), "shop").await;
    let client = TestClient::new();
    for _ in 0..5 {
        let r = client.get(matching, "reviews", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.first_line().starts_with("reviews v1"), "{}", r.body);
        let r = client.get(other, "reviews", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.first_line().starts_with("reviews v2"), "{}", r.body);
        let r = client.get(elsewhere, "reviews", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.first_line().starts_with("reviews v2"), "{}", r.body);
    }
}
