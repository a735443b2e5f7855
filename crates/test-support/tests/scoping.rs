//! Scoping end to end: a sidecar proxy in namespace `a` whose Sidecar imports only `./*` serves
//! its own namespace's service and not namespace `b`'s, which `REGISTRY_ONLY` then refuses with
//! `502 NR`, counted against `BlackHoleCluster`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use sluice_test_support::*;

fn service(ns: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  hosts: [app.{ns}.svc.cluster.local]\n  ports: [{{number: {port}, name: http, protocol: HTTP, targetPort: {}}}]\n  resolution: STATIC\n  endpoints: [{{address: {}}}]\n",
        backend.port(),
        backend.ip()
    )
}

fn sidecar(mode: &str) -> String {
    format!("apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: a}}\nspec:\n  egress: [{{hosts: [\"./*\"]}}]\n  outboundTrafficPolicy: {{mode: {mode}}}\n")
}

fn metric_value(text: &str, name: &str, must_contain: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && must_contain.iter().all(|m| l.contains(m)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_sidecar_limited_to_its_namespace_reaches_its_own_service_only() {
    let a = backend("app-a", "v1").await;
    let b = backend("app-b", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("a.yaml", &service("a", port, a.addr()));
    dir.write("b.yaml", &service("b", port, b.addr()));
    let p = proxy(dir.path(), |o| {
        o.proxy.namespace = "a".into();
        o.proxy.gateway_role = false;
        o.watch = false;
    })
    .await;
    let c = TestClient::new();
    let mesh = SocketAddr::from(([127, 0, 0, 1], port));
    let own = "app.a.svc.cluster.local";
    let other = "app.b.svc.cluster.local";

    // No Sidecar: both namespaces' services are reachable.
    assert_eq!(
        c.get(mesh, own, "/", &[])
            .await
            .first_line()
            .split(' ')
            .next(),
        Some("app-a")
    );
    assert_eq!(
        c.get(mesh, other, "/", &[])
            .await
            .first_line()
            .split(' ')
            .next(),
        Some("app-b")
    );

    // `./*` under ALLOW_ANY: b's service is not compiled; a bound mesh listener has no original
    // destination to pass it through to, so it is an unknown Host (`404 NR`).
    dir.write("sidecar.yaml", &sidecar("ALLOW_ANY"));
    p.reload().await.unwrap().unwrap();
    assert_eq!(c.get(mesh, own, "/", &[]).await.status, 200);
    let r = c.get(mesh, other, "/", &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(p.snapshot().unwrap().registry.get(other).is_none());

    // REGISTRY_ONLY: the unknown Host is refused as Istio's BlackHoleCluster does.
    dir.write("sidecar.yaml", &sidecar("REGISTRY_ONLY"));
    p.reload().await.unwrap().unwrap();
    assert_eq!(c.get(mesh, own, "/", &[]).await.status, 200);
    for _ in 0..3 {
        let r = c.get(mesh, other, "/", &[]).await;
        assert_eq!(r.status, 502, "{r:?}");
    }
    let text = c.admin(p.admin_addr, "/stats/prometheus").await.body;
    let refused = metric_value(
        &text,
        "istio_requests_total",
        &[
            "destination_service_name=\"BlackHoleCluster\"",
            "response_code=\"502\"",
            "response_flags=\"NR\"",
        ],
    );
    assert_eq!(refused, 3.0, "{text}");
}
