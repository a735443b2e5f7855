//! VirtualService `tls` rules on a sidecar without outbound interception (the field walk's
//! `tls.not_intercepted`): the per-service mesh listeners of TLS and HTTPS ports read the
//! ClientHello's SNI and relay the connection untouched, as Istio's outbound listener for such a
//! port does: the mesh `tls` rules of the port in order, then the service the SNI names, then
//! the service owning the listener's address. Real HTTPS backends with rcgen certificates, a
//! real rustls client; the proxy never holds the backends' keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use sluice_test_support::pki::{Leaf, TestCa, TlsClient};
use sluice_test_support::{free_port, proxy, ConfigDir, TestClient};
use sluice_tools::{Backend, BackendArgs, BackendHandle};

/// The loopback address of `app.example.com` (its own mesh listener).
const APP_IP: [u8; 4] = [127, 0, 0, 43];

/// An HTTPS backend named `name`/`version` with a certificate for `names`.
async fn https_backend(
    ca: &TestCa,
    dir: &Path,
    name: &str,
    version: &str,
    names: &[&str],
) -> (BackendHandle, Leaf) {
    let leaf = ca.issue(names);
    let (cert, key) = leaf.write(dir, &format!("{name}-{version}"));
    let b = Backend::start(BackendArgs {
        tls_cert: Some(cert),
        tls_key: Some(key),
        ..BackendArgs::ephemeral(name, version)
    })
    .await
    .unwrap();
    (b, leaf)
}

/// `app.example.com` (TLS port `port` at 127.0.0.43, versions v1 and v2 as WorkloadEntries and
/// subsets) and `b.example.com` (HTTPS port `port`, no address: the mesh address).
fn services(port: u16, v1: SocketAddr, v2: SocketAddr, b: SocketAddr) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: app}}
spec:
  hosts: [app.example.com]
  addresses: [127.0.0.43]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: tls, protocol: TLS}}]
  workloadSelector:
    labels: {{app: app}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v1}}
spec:
  address: 127.0.0.1
  ports: {{tls: {p1}}}
  labels: {{app: app, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: app-v2}}
spec:
  address: 127.0.0.1
  ports: {{tls: {p2}}}
  labels: {{app: app, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app.example.com
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: b}}
spec:
  hosts: [b.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: {port}, name: https, protocol: HTTPS}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{https: {pb}}}}}
"#,
        p1 = v1.port(),
        p2 = v2.port(),
        pb = b.port(),
    )
}

/// The `tls` rule: SNI `a.example.com` on `port` goes to `app.example.com`'s `subset`.
fn a_rule(port: u16, subset: &str) -> String {
    format!(
        r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: a}}
spec:
  hosts: [a.example.com]
  tls:
  - match:
    - port: {port}
      sniHosts: [a.example.com]
    route:
    - destination: {{host: app.example.com, subset: {subset}, port: {{number: {port}}}}}
"#
    )
}

/// The `x-service`/`x-version` of the backend a TLS request with `sni` at `addr` reached
/// (`None`: the connection was closed), checking the backend's own certificate was seen.
async fn reached(ca: &TestCa, sni: &str, addr: SocketAddr) -> Option<String> {
    let mut client = TlsClient::new(ca.pem(), sni);
    // An IP address as the server name: rustls sends no SNI. The chain is checked, not the
    // name: an SNI naming no backend still reaches one when it falls back to a service.
    client.verify_name = false;
    let r = client.get(addr, "/").await.ok()?;
    assert!(r.peer.is_some(), "the backend's certificate");
    let header = |n: &str| {
        r.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    Some(format!("{}/{}", header("x-service"), header("x-version")))
}

#[tokio::test]
async fn tls_rules_route_by_sni_on_mesh_listeners_without_interception() {
    let ca = TestCa::new("external root");
    let dir = ConfigDir::new();
    let names = ["app.example.com", "a.example.com"];
    let (v1, _) = https_backend(&ca, dir.path(), "app", "v1", &names).await;
    let (v2, v2_leaf) = https_backend(&ca, dir.path(), "app", "v2", &names).await;
    let (b, _) = https_backend(&ca, dir.path(), "b", "v1", &["b.example.com"]).await;
    let port = free_port();
    dir.write(
        "services.yaml",
        &services(port, v1.addr(), v2.addr(), b.addr()),
    );
    dir.write("a.yaml", &a_rule(port, "v2"));
    let p = proxy(dir.path(), |o| o.watch = false).await;
    let warned = format!("{:?}", p.snapshot().unwrap().diagnostics);
    assert!(!warned.contains("spec.tls"), "{warned}");
    assert!(!warned.contains("not served yet"), "{warned}");
    let app = SocketAddr::from((APP_IP, port));
    let mesh = SocketAddr::from(([127, 0, 0, 1], port));

    // (a) The `tls` rule: SNI a.example.com goes to v2 only, on either listener of the port,
    // and the client sees v2's own certificate (passed through, never terminated).
    for _ in 0..4 {
        assert_eq!(
            reached(&ca, "a.example.com", app).await.as_deref(),
            Some("app/v2")
        );
    }
    assert_eq!(
        reached(&ca, "a.example.com", mesh).await.as_deref(),
        Some("app/v2")
    );
    let client = TlsClient::new(ca.pem(), "a.example.com");
    let r = client.get(app, "/").await.unwrap();
    assert_eq!(r.peer.as_ref(), Some(&v2_leaf.der));
    assert_eq!(v2.requests(), 6);
    assert_eq!(v1.requests(), 0);

    // (b) No rule matches: the service the SNI names, wherever the connection arrived.
    assert_eq!(
        reached(&ca, "b.example.com", app).await.as_deref(),
        Some("b/v1")
    );
    assert_eq!(
        reached(&ca, "b.example.com", mesh).await.as_deref(),
        Some("b/v1")
    );
    let mut apps = Vec::new();
    for _ in 0..4 {
        apps.push(reached(&ca, "app.example.com", mesh).await.unwrap());
    }
    assert!(apps.iter().all(|a| a.starts_with("app/")), "{apps:?}");
    assert_eq!(b.requests(), 2);

    // (c) No SNI: the service owning the listener's address; the mesh address is shared by
    // no one service, and an SNI naming nothing there is closed too.
    let before = v1.requests() + v2.requests();
    assert!(reached(&ca, "127.0.0.43", app)
        .await
        .is_some_and(|s| s.starts_with("app/")));
    assert_eq!(v1.requests() + v2.requests(), before + 1);
    assert_eq!(reached(&ca, "127.0.0.1", mesh).await, None);
    assert_eq!(reached(&ca, "other.example.com", mesh).await, None);
    // Another SNI at the service's own address is the service's.
    assert!(reached(&ca, "other.example.com", app)
        .await
        .is_some_and(|s| s.starts_with("app/")));

    // (d) Istio's TCP metrics, as for other TLS passthrough.
    let metrics = TestClient::new()
        .admin(p.admin_addr, "/stats/prometheus")
        .await
        .body;
    let opened_v2 = metrics.lines().any(|l| {
        l.starts_with("istio_tcp_connections_opened_total{")
            && l.contains("destination_version=\"v2\"")
            && l.contains("app.example.com")
    });
    assert!(opened_v2, "no v2 series:\n{metrics}");
    assert!(metrics.contains("istio_tcp_sent_bytes_total{"), "{metrics}");

    // Every match field: `sourceLabels` this proxy lacks never apply, `destinationSubnets` hold
    // the address the connection reached, `gateways: [mesh]` applies on sidecars.
    dir.write(
        "c.yaml",
        &format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: c}}
spec:
  hosts: [c.example.com]
  tls:
  - match: [{{port: {port}, sniHosts: [c.example.com], sourceLabels: {{app: nobody}}}}]
    route: [{{destination: {{host: b.example.com}}}}]
  - match: [{{port: {port}, sniHosts: [c.example.com], destinationSubnets: [127.0.0.43/32]}}]
    route: [{{destination: {{host: app.example.com, subset: v1}}}}]
  - match: [{{port: {port}, sniHosts: [c.example.com], gateways: [mesh]}}]
    route: [{{destination: {{host: b.example.com}}}}]
"#
        ),
    );
    assert!(p.reload().await.unwrap().is_ok());
    assert_eq!(
        reached(&ca, "c.example.com", app).await.as_deref(),
        Some("app/v1")
    );
    assert_eq!(
        reached(&ca, "c.example.com", mesh).await.as_deref(),
        Some("b/v1")
    );

    // The rule edited: the listeners are rebuilt with it.
    dir.write("a.yaml", &a_rule(port, "v1"));
    assert!(p.reload().await.unwrap().is_ok());
    for _ in 0..2 {
        assert_eq!(
            reached(&ca, "a.example.com", app).await.as_deref(),
            Some("app/v1")
        );
    }

    // A `tls` rule of app.example.com's own: as in Istio, the service's default filter chain
    // is no longer built, so a ClientHello its rules do not match is closed.
    dir.write(
        "app-vs.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: app}}\nspec:\n  hosts: [app.example.com]\n  tls:\n  - match: [{{port: {port}, sniHosts: [app.example.com]}}]\n    route: [{{destination: {{host: app.example.com, subset: v2}}}}]\n"),
    );
    assert!(p.reload().await.unwrap().is_ok());
    assert_eq!(
        reached(&ca, "app.example.com", app).await.as_deref(),
        Some("app/v2")
    );
    assert_eq!(reached(&ca, "127.0.0.43", app).await, None);
    assert_eq!(
        reached(&ca, "b.example.com", app).await.as_deref(),
        Some("b/v1")
    );
    p.shutdown().await;
}
