//! Where an intercepted request goes when the registry does not decide it: DestinationRule
//! `loadBalancer.simple: PASSTHROUGH` (Istio's ORIGINAL_DST load balancer) sends it to the
//! address the app dialled, not to a balanced endpoint (and, as in Envoy, a request that was not
//! intercepted finds no host: `503 UH`); a Sidecar's
//! `outboundTrafficPolicy.egressProxy` takes what would pass through to an unknown destination.
//! The kernel's redirect is stood in for by serving the connection as the outbound
//! interception listener does, with the original destination given (the netns suite covers
//! the redirect itself).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sluice_config::{build_snapshot, ProxyConfig};
use sluice_lb::StateStore;
use sluice_model::parse_text;
use sluice_proxy::config_handle::ConfigHandle;
use sluice_proxy::handler::{handle, Entry, ProxyContext, ProxyOptions};
use sluice_proxy::tls::TlsRuntime;
use sluice_telemetry::Telemetry;
use sluice_test_support::{backend, free_port, proxy, ConfigDir, TestClient};

/// A sidecar (outbound interception only) compiled from `yaml`.
fn sidecar(yaml: &str) -> Arc<ProxyContext> {
    let parsed = parse_text(yaml, Some("t.yaml".into()));
    let proxy = ProxyConfig {
        gateway_role: false,
        mesh_role: false,
        outbound_role: true,
        ..ProxyConfig::default()
    };
    let snapshot = build_snapshot(parsed.resources, Vec::new(), &proxy, &StateStore::new(), 1)
        .map_err(|r| format!("{:?}", r.diagnostics))
        .unwrap();
    let config = ConfigHandle::new();
    config.publish(Arc::new(snapshot));
    Arc::new(ProxyContext::new(
        config,
        Arc::new(Telemetry::default()),
        ProxyOptions::default(),
        TlsRuntime::new(),
    ))
}

/// A listener whose connections are served as intercepted ones bound for `original`.
async fn intercepted(ctx: Arc<ProxyContext>, original: SocketAddr) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let local = stream.local_addr().unwrap();
                let service = service_fn(move |req| {
                    let ctx = ctx.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            handle(
                                ctx,
                                Entry::Outbound(original),
                                (peer, local),
                                Arc::from("test"),
                                req,
                            )
                            .await,
                        )
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn config(port: u16, endpoint: SocketAddr, simple: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: ext, namespace: default}}\nspec:\n  hosts: [ext.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: {port}, name: http, protocol: HTTP}}]\n  endpoints:\n  - {{address: {}, ports: {{http: {}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: ext, namespace: default}}\nspec:\n  host: ext.example.com\n  trafficPolicy:\n    loadBalancer: {{simple: {simple}}}\n",
        endpoint.ip(),
        endpoint.port()
    )
}

#[tokio::test]
async fn passthrough_load_balancer_sends_intercepted_requests_to_their_original_destination() {
    // The app dials `dialled`; the registry's only endpoint is `registered`.
    let dialled = backend("dialled", "v1").await;
    let registered = backend("registered", "v1").await;
    let client = TestClient::new();
    for (simple, want) in [("PASSTHROUGH", "dialled"), ("ROUND_ROBIN", "registered")] {
        let ctx = sidecar(&config(dialled.addr().port(), registered.addr(), simple));
        let at = intercepted(ctx, dialled.addr()).await;
        for _ in 0..4 {
            let r = client.get(at, "ext.example.com", "/", &[]).await;
            assert_eq!(r.status, 200, "{simple}: {}", r.body);
            assert!(r.first_line().starts_with(want), "{simple}: {}", r.body);
        }
    }
}

/// Istio builds a PASSTHROUGH cluster without its load assignment, and Envoy's ORIGINAL_DST
/// cluster picks a host only from a restored (intercepted) destination: a gateway routing to
/// it has none, so the request answers `503 no healthy upstream`, never a registry endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passthrough_load_balancer_answers_503_uh_on_a_gateway() {
    let registered = backend("registered", "v1").await;
    let port = free_port();
    let dir = ConfigDir::new();
    let gateway = format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: ext, namespace: default}}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {{host: ext.example.com}}\n"
    );
    dir.write("gw.yaml", &gateway);
    let client = TestClient::new();
    for (simple, status, want) in [
        ("ROUND_ROBIN", 200, "registered v1"),
        ("PASSTHROUGH", 503, "no healthy upstream"),
    ] {
        dir.write(
            "ext.yaml",
            &config(registered.addr().port(), registered.addr(), simple),
        );
        let p = proxy(dir.path(), |o| {
            o.proxy.mesh_role = false;
            o.proxy
                .labels
                .insert("istio".into(), "ingressgateway".into());
        })
        .await;
        let at = SocketAddr::from(([127, 0, 0, 1], port));
        for _ in 0..3 {
            let r = client.get(at, "ext.example.com", "/", &[]).await;
            assert_eq!(r.status, status, "{simple}: {}", r.body);
            assert!(r.body.starts_with(want), "{simple}: {}", r.body);
        }
        p.shutdown().await;
    }
}

#[tokio::test]
async fn egress_proxy_takes_requests_for_unknown_destinations() {
    // The app dials `unknown`, which no service claims; `egress` is the egress proxy.
    let unknown = backend("unknown", "v1").await;
    let egress = backend("egress", "v1").await;
    let client = TestClient::new();
    let sidecar_yaml = |policy: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: egress, namespace: istio-egress}}\nspec:\n  hosts: [egress.example.com]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  ports: [{{number: 3128, name: http, protocol: HTTP}}]\n  endpoints:\n  - {{address: {}, ports: {{http: {}}}}}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: default, namespace: default}}\nspec:\n  outboundTrafficPolicy:\n{policy}",
            egress.addr().ip(),
            egress.addr().port()
        )
    };
    let cases = [
        (
            "    mode: ALLOW_ANY\n    egressProxy: {host: egress.example.com, port: {number: 3128}}\n",
            "egress",
        ),
        ("    mode: ALLOW_ANY\n", "unknown"),
    ];
    for (policy, want) in cases {
        let ctx = sidecar(&sidecar_yaml(policy));
        let at = intercepted(ctx, unknown.addr()).await;
        for _ in 0..3 {
            let r = client.get(at, "api.unknown.example", "/x", &[]).await;
            assert_eq!(r.status, 200, "{policy}: {}", r.body);
            assert!(r.first_line().starts_with(want), "{policy}: {}", r.body);
        }
    }
    // The egress proxy saw the request as the app sent it.
    let got = egress.last_received().unwrap();
    assert_eq!(got.host(), Some("api.unknown.example"));
    assert_eq!(got.path, "/x");
}
