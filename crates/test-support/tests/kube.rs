//! Kubernetes mode end to end: a fake API server, `sluice_kube::start`, the runtime, real backends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube-source/tests/fake/mod.rs"]
mod fake;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sluice_test_support::{assert_eventually, backend, free_port, RunOptions, TestClient};

/// The proxy's own allocator, so that the scale figure below is the binary's.
#[global_allocator]
static ALLOC: sluice_alloc::Allocator = sluice_alloc::Allocator;

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

/// A gateway-role proxy (`istio=ingressgateway`, no mesh role) fed by the fake API server.
async fn gateway_proxy(
    api: &fake::FakeApi,
    sync_timeout: Duration,
) -> sluice::runtime::ProxyHandle {
    let kube = sluice_kube::KubeArgs {
        kubernetes: true,
        kube_api: Some(api.url.clone()),
        sync_timeout,
        no_events: true,
        ..Default::default()
    };
    let mut opts = RunOptions::new(Vec::new());
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
    opts.proxy.labels = [("istio".into(), "ingressgateway".into())].into();
    opts.proxy.mesh_role = false;
    opts.source = Some(Arc::new(sluice_kube::start(&kube, None).await.unwrap()));
    sluice::runtime::start(opts).await.unwrap()
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
    let handle = gateway_proxy(&api, Duration::from_secs(10)).await;
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

/// The Gateway, and for each index in `services` a Service with an EndpointSlice (to `port`) and
/// a VirtualService on the gateway.
fn many_services(gw: u16, services: std::ops::Range<usize>, port: u16) -> String {
    let mut text = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {gw}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\n"
    );
    for i in services {
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}}}\nspec:\n  clusterIP: 10.96.{}.{}\n  ports: [{{name: http, port: 80}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: svc-{i}-a, labels: {{kubernetes.io/service-name: svc-{i}}}}}\naddressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints:\n- {{addresses: [127.0.0.1]}}\n---\n\
             apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: svc-{i}}}\nspec:\n  hosts: [svc-{i}.example.com]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: svc-{i}}}}}]\n---\n",
            i / 256 + 1,
            i % 256
        ));
    }
    text
}

/// EndpointSlice updates are applied without compiling the rest again: the clusters and
/// virtual hosts of the services not touched are the previous snapshot's, and each update is
/// in force (requests reach the new endpoint) soon after.
#[tokio::test]
async fn endpoint_slice_updates_recompile_only_their_service() {
    let (a, b) = (backend("svc", "a").await, backend("svc", "b").await);
    let gw = free_port();
    let api = fake::FakeApi::start().await;
    let n = 40;
    api.apply(&many_services(gw, 0..n, a.addr().port()));
    let handle = gateway_proxy(&api, Duration::from_secs(10)).await;
    let addr = format!("127.0.0.1:{gw}").parse().unwrap();
    let client = TestClient::new();
    let r = client.get(addr, "svc-7.example.com", "/", &[]).await;
    assert_eq!((r.status.as_u16(), a.requests()), (200, 1), "{}", r.body);

    let before = handle.snapshot().unwrap();
    let cluster = |s: &sluice_config::Snapshot, i: usize| {
        s.clusters
            .get(&format!("outbound|80||svc-{i}.default.svc.cluster.local"))
            .cloned()
            .unwrap()
    };
    let vhost = |s: &sluice_config::Snapshot, i: usize| {
        s.listeners[0]
            .virtual_host(&format!("svc-{i}.example.com"))
            .cloned()
            .unwrap()
    };
    let mut slowest = Duration::ZERO;
    for step in 0..10u16 {
        let (to, backend) = if step % 2 == 0 {
            (b.addr().port(), &b)
        } else {
            (a.addr().port(), &a)
        };
        let version = handle.snapshot().unwrap().version;
        let start = std::time::Instant::now();
        api.patch("EndpointSlice", "default", "svc-7-a", |o| {
            o["ports"][0]["port"] = json!(to);
        });
        assert_eventually(Duration::from_secs(10), "the update in force", || {
            let handle = &handle;
            async move { handle.snapshot().is_some_and(|s| s.version > version) }
        })
        .await;
        slowest = slowest.max(start.elapsed());
        let seen = backend.requests();
        let r = client.get(addr, "svc-7.example.com", "/", &[]).await;
        assert_eq!(
            (r.status.as_u16(), backend.requests()),
            (200, seen + 1),
            "step {step}: {}",
            r.body
        );
    }
    eprintln!("slowest EndpointSlice update in force after {slowest:?}");
    let after = handle.snapshot().unwrap();
    // Untouched services: the very same compiled parts.
    for i in (0..n).filter(|i| *i != 7) {
        assert!(
            Arc::ptr_eq(&cluster(&before, i), &cluster(&after, i)),
            "cluster of svc-{i} rebuilt"
        );
        assert!(
            Arc::ptr_eq(&vhost(&before, i), &vhost(&after, i)),
            "virtual host of svc-{i} rebuilt"
        );
    }
    assert!(!Arc::ptr_eq(&cluster(&before, 7), &cluster(&after, 7)));
    handle.shutdown().await;
}

/// Kubernetes mode at scale (a figure, not a check; run with `--ignored`, in release):
/// `SLUICE_KUBE_SERVICES` (default 10,000) Services with an EndpointSlice and a VirtualService
/// each, from the fake API server to a ready proxy, then one VirtualService patch applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a scale figure; run in release with --ignored"]
async fn kubernetes_mode_at_scale() {
    // As `main` does (the purge delay can only be set before threads start).
    sluice_alloc::small_pages();
    let n: usize = std::env::var("SLUICE_KUBE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let a = backend("svc", "a").await;
    let gw = free_port();
    let api = fake::FakeApi::start().await;
    // In parts: one text holds at most 10,000 documents.
    for from in (0..n).step_by(1000) {
        api.apply(&many_services(
            gw,
            from..n.min(from + 1000),
            a.addr().port(),
        ));
    }
    let start = std::time::Instant::now();
    let handle = gateway_proxy(&api, Duration::from_secs(300)).await;
    let synced = start.elapsed();
    let addr = format!("127.0.0.1:{gw}").parse().unwrap();
    let r = TestClient::new()
        .get(addr, "svc-7.example.com", "/", &[])
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    let version = handle.snapshot().unwrap().version;
    let patched = std::time::Instant::now();
    api.patch("VirtualService", "default", "svc-7", |o| {
        o["spec"]["http"][0]["timeout"] = json!("5s");
    });
    assert_eventually(Duration::from_secs(60), "the patch in force", || {
        let handle = &handle;
        async move { handle.snapshot().is_some_and(|s| s.version > version) }
    })
    .await;
    eprintln!(
        "{n} services: synced and ready in {synced:?}; one VirtualService patch applied in {:?}",
        patched.elapsed()
    );
    endpoint_slice_stream(&api, &handle, n).await;
    handle.shutdown().await;
}

/// The cluster of generated service `i` (port 80, no subset).
fn cluster_of(
    s: &sluice_config::Snapshot,
    i: usize,
) -> Option<Arc<sluice_config::cluster::Cluster>> {
    s.clusters
        .get(&format!("outbound|80||svc-{i}.default.svc.cluster.local"))
        .cloned()
}

/// Whether generated service `i`'s endpoint moved to 127.0.0.2.
fn moved(s: &sluice_config::Snapshot, i: usize) -> bool {
    cluster_of(s, i).is_some_and(|c| {
        c.endpoints
            .iter()
            .any(|e| e.endpoint.address == "127.0.0.2")
    })
}

/// Streams EndpointSlice updates, 100 a second for 5 s (each moves one service's endpoint to
/// 127.0.0.2), and prints how long each took to be in force, and whether the services not
/// updated kept their clusters (no full recompile).
async fn endpoint_slice_stream(
    api: &fake::FakeApi,
    handle: &sluice::runtime::ProxyHandle,
    n: usize,
) {
    let updates = n.min(500);
    // Spread over the services; the last one is never updated.
    let services: Vec<usize> = (0..updates).map(|k| k * (n - 1) / updates).collect();
    let before = handle.snapshot().unwrap();
    let pending: Arc<std::sync::Mutex<Vec<(usize, std::time::Instant)>>> = Arc::default();
    let latencies: Arc<std::sync::Mutex<Vec<Duration>>> = Arc::default();
    let watcher = {
        let (pending, latencies, config) =
            (pending.clone(), latencies.clone(), handle.config.clone());
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            let mut seen = 0;
            while seen < updates && std::time::Instant::now() < deadline {
                if let Some(s) = config.load() {
                    let mut p = pending.lock().unwrap();
                    let now = std::time::Instant::now();
                    p.retain(|(i, at)| {
                        let done = moved(&s, *i);
                        if done {
                            latencies.lock().unwrap().push(now - *at);
                            seen += 1;
                        }
                        !done
                    });
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let started = tokio::time::Instant::now();
    for (k, &i) in services.iter().enumerate() {
        tokio::time::sleep_until(started + Duration::from_millis(10 * k as u64)).await;
        api.patch("EndpointSlice", "default", &format!("svc-{i}-a"), |o| {
            o["endpoints"][0]["addresses"][0] = json!("127.0.0.2");
        });
        pending.lock().unwrap().push((i, std::time::Instant::now()));
    }
    watcher.await.unwrap();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let at = |q: f64| {
        l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1)))
            .copied()
    };
    let after = handle.snapshot().unwrap();
    let kept = Arc::ptr_eq(
        &cluster_of(&before, n - 1).unwrap(),
        &cluster_of(&after, n - 1).unwrap(),
    );
    eprintln!(
        "{updates} EndpointSlice updates at 100/s: {} in force; latency p50 {:?}, p99 {:?}, max {:?}; an untouched service kept its cluster: {kept}; snapshots {} -> {}",
        l.len(),
        at(0.5),
        at(0.99),
        l.last(),
        before.version,
        after.version
    );
    assert_eq!(l.len(), updates, "every update in force within 60 s");
    assert!(kept, "an untouched service's cluster was compiled again");
}

/// A `kubernetes.io/tls` Secret as `kubectl create secret tls` writes it.
fn tls_secret(name: &str, leaf: &sluice_test_support::pki::Leaf) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: istio-system}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(&leaf.cert_pem),
        b64(&leaf.key_pem)
    )
}

/// Secure Gateways in Kubernetes: `credentialName` names a TLS Secret of the gateway's
/// namespace; a rotated Secret is served to new handshakes within a second, and a Secret of
/// another namespace is never used.
#[tokio::test]
async fn credential_name_secrets_are_served_and_rotated() {
    use sluice_test_support::pki::{TestCa, TlsClient};
    let httpbin = backend("httpbin", "v1").await;
    let gw = free_port();
    let ca = TestCa::new("example.com root");
    let first = ca.issue(&["httpbin.example.com"]);
    let api = fake::FakeApi::start().await;
    api.apply(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: mygateway, namespace: istio-system}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {gw}, name: https, protocol: HTTPS}}
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential # must be the same as secret
    hosts: [httpbin.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin, namespace: istio-system}}
spec:
  hosts: [httpbin.example.com]
  gateways: [mygateway]
  http:
  - route: [{{destination: {{host: httpbin.default.svc.cluster.local, port: {{number: 8000}}}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: default}}
spec:
  clusterIP: 10.96.0.9
  ports: [{{name: http, port: 8000}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: httpbin-a, namespace: default, labels: {{kubernetes.io/service-name: httpbin}}}}
addressType: IPv4
ports: [{{name: http, port: {p}}}]
endpoints:
- {{addresses: [127.0.0.1]}}
---
{secret}"#,
        p = httpbin.addr().port(),
        secret = tls_secret("httpbin-credential", &first)
    ));
    // The same name in another namespace must not be picked up.
    let stranger = ca.issue(&["httpbin.example.com"]);
    api.apply(&tls_secret("httpbin-credential", &stranger).replace("istio-system", "default"));
    let kube = sluice_kube::KubeArgs {
        kubernetes: true,
        kube_api: Some(api.url.clone()),
        sync_timeout: Duration::from_secs(10),
        no_events: true,
        ..Default::default()
    };
    let tls = sluice_proxy::tls::TlsRuntime::new();
    let feed = sluice_kube::SecretFeed {
        namespace: "istio-system".into(),
        sink: Arc::new(sluice::secrets::StoreSink(tls.store().clone())),
    };
    let mut opts = RunOptions::new(Vec::new());
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
    opts.proxy.labels = [("istio".into(), "ingressgateway".into())].into();
    opts.proxy.namespace = "istio-system".into();
    opts.proxy.mesh_role = false;
    opts.tls = tls;
    opts.source = Some(Arc::new(
        sluice_kube::start(&kube, Some(feed)).await.unwrap(),
    ));
    let handle = sluice::runtime::start(opts).await.unwrap();
    let addr = format!("127.0.0.1:{gw}").parse().unwrap();
    let client = TlsClient::new(ca.pem(), "httpbin.example.com");
    // Secrets are listed beside the config (they do not gate readiness).
    assert_eventually(Duration::from_secs(2), "the Secret is served", || {
        let client = client.clone();
        let want = first.der.clone();
        async move {
            client
                .get(addr, "/status/200")
                .await
                .is_ok_and(|r| r.status == 200 && r.peer.as_ref() == Some(&want))
        }
    })
    .await;

    // Load during the rotation: new connections (new handshakes) by 4 workers, bounded.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                while !stop.load(std::sync::atomic::Ordering::Relaxed)
                    && tokio::time::Instant::now() < deadline
                    && ok < 5_000
                {
                    match client.get(addr, "/status/200").await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) if failed.len() < 5 => failed.push(format!("status {}", r.status)),
                        Err(e) if failed.len() < 5 => failed.push(e),
                        _ => {}
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = ca.issue(&["httpbin.example.com"]);
    api.apply(&tls_secret("httpbin-credential", &second));
    let rotated = std::time::Instant::now();
    assert_eventually(
        Duration::from_secs(1),
        "the rotated Secret is served",
        || {
            let client = client.clone();
            let want = second.der.clone();
            async move {
                client
                    .get(addr, "/status/200")
                    .await
                    .is_ok_and(|r| r.peer.as_ref() == Some(&want))
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for w in workers {
        let (ok, failed) = w.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during the rotation: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0);
    eprintln!("rotated Secret served after {:?}", rotated.elapsed());
    handle.shutdown().await;
}

/// A sidecar runtime in namespace foo fed from the API server, holding the workload
/// certificate of `identity`.
async fn mesh_sidecar(
    api: &fake::FakeApi,
    root: &sluice_test_support::pki::TestCa,
    identity: &str,
    app: &str,
    serve_services: bool,
) -> sluice::runtime::ProxyHandle {
    let kube = sluice_kube::KubeArgs {
        kubernetes: true,
        kube_api: Some(api.url.clone()),
        sync_timeout: Duration::from_secs(10),
        no_events: true,
        ..Default::default()
    };
    let tls = sluice_proxy::tls::TlsRuntime::new();
    let leaf = root.issue(&[identity]);
    tls.store()
        .set_mesh(leaf.chain_der(), leaf.key_der(), vec![root.der()])
        .unwrap();
    let mut opts = RunOptions::new(Vec::new());
    opts.admin = "127.0.0.1:0".parse().unwrap();
    opts.proxy.labels = [("app".into(), app.into())].into();
    opts.proxy.namespace = "foo".into();
    opts.proxy.gateway_role = false;
    opts.proxy.mesh_role = serve_services;
    opts.tls = tls;
    opts.source = Some(Arc::new(sluice_kube::start(&kube, None).await.unwrap()));
    sluice::runtime::start(opts).await.unwrap()
}

/// Mesh mTLS in Kubernetes mode: the server's Sidecar and STRICT PeerAuthentication come from
/// the API server, and the client reaches it with automatic mTLS because the Service's endpoint
/// is an injected Pod (`security.istio.io/tlsMode: istio`) whose service account names the
/// identity to expect; a Pod running as another account fails the handshake (503).
#[tokio::test]
async fn auto_mtls_follows_pod_labels_and_service_accounts() {
    use sluice_test_support::pki::TestCa;
    let httpbin = backend("httpbin", "v1").await;
    let (inbound, service_port) = (free_port(), free_port());
    let api = fake::FakeApi::start().await;
    api.apply(&format!(
        r#"
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {{name: default, namespace: foo}}
spec:
  mtls: {{mode: STRICT}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: httpbin, namespace: foo}}
spec:
  workloadSelector:
    labels: {{app: httpbin}}
  ingress:
  - port: {{number: {inbound}, protocol: HTTP, name: http}}
    defaultEndpoint: {app}
---
apiVersion: v1
kind: Service
metadata: {{name: httpbin, namespace: foo}}
spec:
  clusterIP: None
  ports: [{{name: http, port: {service_port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: httpbin-a, namespace: foo, labels: {{kubernetes.io/service-name: httpbin}}}}
addressType: IPv4
ports: [{{name: http, port: {inbound}}}]
endpoints:
- {{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: httpbin-1, namespace: foo}}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: httpbin-1
  namespace: foo
  labels: {{app: httpbin, security.istio.io/tlsMode: istio}}
spec:
  serviceAccountName: httpbin
  containers: [{{name: httpbin, image: httpbin}}]
"#,
        app = httpbin.addr()
    ));
    let root = TestCa::new("cluster.local root");
    let sleep = "spiffe://cluster.local/ns/foo/sa/sleep";
    let server = mesh_sidecar(
        &api,
        &root,
        "spiffe://cluster.local/ns/foo/sa/httpbin",
        "httpbin",
        false,
    )
    .await;
    let client = mesh_sidecar(&api, &root, sleep, "sleep", true).await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{service_port}").parse().unwrap();
    let via_sidecar = || async {
        TestClient::new()
            .get(addr, "httpbin.foo:8000", "/headers", &[])
            .await
    };
    let r = via_sidecar().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("URI={sleep}")),
        "the server saw the client's identity: {}",
        r.body
    );
    // The Pod now runs as another service account: the client expects that identity, which
    // the server's certificate does not carry.
    api.patch("Pod", "foo", "httpbin-1", |o| {
        o["spec"]["serviceAccountName"] = json!("not-httpbin");
    });
    assert_eventually(Duration::from_secs(2), "the handshake refused", || async {
        via_sidecar().await.status == 503
    })
    .await;
    let served = httpbin.requests();
    assert_eq!(via_sidecar().await.status, 503);
    assert_eq!(
        httpbin.requests(),
        served,
        "refused before reaching the app"
    );
    client.shutdown().await;
    server.shutdown().await;
}
