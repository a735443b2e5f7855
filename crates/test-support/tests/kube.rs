//! Kubernetes mode end to end: a fake API server, `sluice_kube::start`, the runtime, real backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube-source/tests/fake/mod.rs"]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_test_support::{assert_eventually, backend, free_port, RunOptions, TestClient};

fn config(gw: u16, p1: u16, p2: u16) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: helloworld}}
spec:
  host: helloworld
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: helloworld}}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route:
    - {{destination: {{host: helloworld, subset: v1}}, weight: 90}}
    - {{destination: {{host: helloworld, subset: v2}}, weight: 10}}
---
apiVersion: v1
kind: Service
metadata: {{name: helloworld}}
spec:
  clusterIP: 10.96.0.5
  ports: [{{name: http, port: 5000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: helloworld-a, labels: {{kubernetes.io/service-name: helloworld}}}}
addressType: IPv4
ports: [{{name: http, port: {p1}}}]
endpoints:
- {{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: hw-v1}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: helloworld-b, labels: {{kubernetes.io/service-name: helloworld}}}}
addressType: IPv4
ports: [{{name: http, port: {p2}}}]
endpoints:
- {{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: hw-v2}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hw-v1, labels: {{app: helloworld, version: v1}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: hw-v2, labels: {{app: helloworld, version: v2}}}}
"#
    )
}

#[tokio::test]
async fn gateway_follows_the_cluster() {
    let (v1, v2) = (
        backend("helloworld", "v1").await,
        backend("helloworld", "v2").await,
    );
    let gw = free_port();
    let api = fake::FakeApi::start().await;
    api.apply(&config(gw, v1.addr().port(), v2.addr().port()));
    let kube = sluice_kube::KubeArgs {
        kubernetes: true,
        kube_api: Some(api.url.clone()),
        sync_timeout: Duration::from_secs(10),
        no_events: true,
        ..Default::default()
    };
    let mut opts = RunOptions::new(Vec::new());
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
    opts.proxy.labels = [("istio".into(), "ingressgateway".into())].into();
    opts.proxy.mesh_role = false;
    opts.source = Some(Arc::new(sluice_kube::start(&kube).await.unwrap()));
    let handle = sluice::runtime::start(opts).await.unwrap();
    let addr = format!("127.0.0.1:{gw}").parse().unwrap();
    let client = TestClient::new();
    for _ in 0..100 {
        let r = client.get(addr, "example.com", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!((v1.requests(), v2.requests()), (90, 10));
    api.patch("VirtualService", "default", "helloworld", |o| {
        o["spec"]["http"][0]["route"][0]["weight"] = json!(50);
        o["spec"]["http"][0]["route"][1]["weight"] = json!(50);
    });
    let start = std::time::Instant::now();
    assert_eventually(Duration::from_secs(1), "50/50 in force", || {
        let handle = &handle;
        async move { handle.snapshot().is_some_and(|s| s.version > 1) }
    })
    .await;
    eprintln!("patch in force after {:?}", start.elapsed());
    let (b1, b2) = (v1.requests(), v2.requests());
    for _ in 0..100 {
        client.get(addr, "example.com", "/", &[]).await;
    }
    assert_eq!((v1.requests() - b1, v2.requests() - b2), (50, 50));
    handle.shutdown().await;
}
