//! Mesh mutual TLS at a workload's inbound listeners (the Sidecar resource's `ingress`), with
//! Istio's own YAML shapes: PeerAuthentication PERMISSIVE and STRICT (the Mutual TLS Migration
//! task), `x-forwarded-client-cert` as the proof of mTLS, AuthorizationPolicy on the identities
//! the certificates carry, real handshakes with rustls clients and `openssl s_client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use bytes::Bytes;

use sluice_proxy::tls::TlsRuntime;
use sluice_test_support::pki::{s_client, Leaf, TestCa, TlsClient};
use sluice_test_support::{
    assert_eventually, backend, free_port, proxy, ConfigDir, ProxyHandle, TestClient,
};

const SLEEP: &str = "spiffe://cluster.local/ns/foo/sa/sleep";
const HTTPBIN: &str = "spiffe://cluster.local/ns/foo/sa/httpbin";

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The mesh: one root, the server workload's certificate and a client's.
struct Mesh {
    root: TestCa,
    client: Leaf,
}

impl Mesh {
    fn new() -> Self {
        let root = TestCa::new("cluster.local root");
        let client = root.issue(&[SLEEP]);
        Mesh { root, client }
    }

    /// A TLS runtime holding the workload certificate of `identity`.
    fn runtime(&self, identity: &str) -> TlsRuntime {
        let tls = TlsRuntime::new();
        let leaf = self.root.issue(&[identity]);
        tls.store()
            .set_mesh(leaf.chain_der(), leaf.key_der(), vec![self.root.der()])
            .unwrap();
        tls
    }

    /// A mesh client (Istio's ALPN, the SNI a sidecar sends) presenting `leaf`.
    fn client(&self, leaf: Option<&Leaf>) -> TlsClient {
        TlsClient {
            client: leaf.cloned(),
            alpn: vec!["istio-http/1.1", "istio", "http/1.1"],
            verify_name: false,
            ..TlsClient::new(
                self.root.pem(),
                "outbound_.8000_._.httpbin.foo.svc.cluster.local",
            )
        }
    }
}

/// The httpbin workload in namespace foo: a Sidecar with one HTTP ingress port in front of
/// `app`, and `policies` (PeerAuthentication, AuthorizationPolicy...).
async fn httpbin_sidecar(
    dir: &Path,
    mesh: &Mesh,
    port: u16,
    protocol: &str,
    app: SocketAddr,
) -> ProxyHandle {
    httpbin_sidecar_with(dir, mesh, port, protocol, app, |_| {}).await
}

/// [`httpbin_sidecar`] with more options.
async fn httpbin_sidecar_with(
    dir: &Path,
    mesh: &Mesh,
    port: u16,
    protocol: &str,
    app: SocketAddr,
    configure: impl FnOnce(&mut sluice::runtime::RunOptions),
) -> ProxyHandle {
    std::fs::write(
        dir.join("sidecar.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  workloadSelector:\n    labels:\n      app: httpbin\n  ingress:\n  - port:\n      number: {port}\n      protocol: {protocol}\n      name: main\n    defaultEndpoint: {app}\n"
        ),
    )
    .unwrap();
    let tls = mesh.runtime(HTTPBIN);
    proxy(dir, |o| {
        o.proxy.namespace = "foo".into();
        o.proxy.labels.insert("app".into(), "httpbin".into());
        o.tls = tls;
        configure(o);
    })
    .await
}

fn peer_authentication(mode: &str) -> String {
    format!("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: default\n  namespace: foo\nspec:\n  mtls:\n    mode: {mode}\n")
}

/// PERMISSIVE (Istio's default): a sidecar's mTLS and a legacy plaintext client both get
/// through; only the mTLS request carries the client's identity in `x-forwarded-client-cert`,
/// and a plaintext client cannot forge one.
#[tokio::test]
async fn permissive_serves_mesh_mtls_and_plaintext_and_only_mtls_carries_xfcc() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    let port = free_port();
    let p = httpbin_sidecar(dir.path(), &mesh, port, "HTTP", httpbin.addr()).await;

    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/headers")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(&format!("By={HTTPBIN};Hash=")) && r.body.contains(&format!("URI={SLEEP}")),
        "{}",
        r.body
    );
    // The server presents the workload certificate: its SPIFFE identity, chained to the root.
    let presented = r.peer.unwrap();
    assert_eq!(
        sluice_proxy::tls::peer::uri_sans(&presented),
        vec![HTTPBIN.to_string()]
    );

    let plain = TestClient::new()
        .get(
            local(port),
            "httpbin.foo:8000",
            "/headers",
            &[(
                "x-forwarded-client-cert",
                "By=forged;URI=spiffe://cluster.local/ns/foo/sa/admin",
            )],
        )
        .await;
    assert_eq!(plain.status, 200);
    assert!(!plain.body.contains("forged"), "{}", plain.body);
    assert!(
        !plain.body.contains("x-forwarded-client-cert"),
        "{}",
        plain.body
    );

    // The server side's metrics tell the two apart, with both identities over mTLS.
    let metrics = TestClient::new()
        .admin(p.admin_addr, "/stats/prometheus")
        .await
        .body;
    let requests: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{") && l.contains("reporter=\"destination\"")
        })
        .collect();
    assert!(
        requests
            .iter()
            .any(|l| l.contains("connection_security_policy=\"mutual_tls\"")
                && l.contains(&format!("source_principal=\"{SLEEP}\""))
                && l.contains("source_workload_namespace=\"foo\"")
                && l.contains(&format!("destination_principal=\"{HTTPBIN}\""))),
        "{requests:#?}"
    );
    assert!(
        requests
            .iter()
            .any(|l| l.contains("connection_security_policy=\"none\"")
                && l.contains("source_principal=\"unknown\"")),
        "{requests:#?}"
    );
    p.shutdown().await;
}

/// STRICT: plaintext is refused (the connection closes, curl's `000`), as are a client without
/// a certificate and one whose certificate comes from another root; mesh mTLS still works.
#[tokio::test]
async fn strict_refuses_plaintext_no_certificate_and_a_foreign_root() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    dir.write("pa.yaml", &peer_authentication("STRICT"));
    let port = free_port();
    let p = httpbin_sidecar(dir.path(), &mesh, port, "HTTP", httpbin.addr()).await;

    let ok = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/status/200")
        .await;
    assert_eq!(ok.unwrap().status, 200);

    let plain = TestClient::new()
        .try_request(
            "GET",
            local(port),
            "httpbin.foo:8000",
            "/",
            &[],
            Bytes::new(),
        )
        .await;
    assert!(plain.is_err(), "plaintext got through STRICT: {plain:?}");

    let anonymous = mesh.client(None).get(local(port), "/status/200").await;
    assert!(
        anonymous.is_err(),
        "no client certificate got through: {anonymous:?}"
    );

    let other = TestCa::new("another mesh");
    let foreign = TlsClient {
        client: Some(other.issue(&[SLEEP])),
        ..mesh.client(None)
    };
    let r = foreign.get(local(port), "/status/200").await;
    assert!(
        r.is_err(),
        "a certificate from another root got through: {r:?}"
    );
    assert_eq!(httpbin.requests(), 1);
    p.shutdown().await;
}

/// Switching PERMISSIVE → STRICT by editing the PeerAuthentication takes effect on the next
/// connection (the Mutual TLS Migration task's `kubectl apply`).
#[tokio::test]
async fn migrating_from_permissive_to_strict_refuses_the_legacy_client() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    dir.write("pa.yaml", &peer_authentication("PERMISSIVE"));
    let port = free_port();
    let p = httpbin_sidecar(dir.path(), &mesh, port, "HTTP", httpbin.addr()).await;
    // A new connection per request, as curl makes; one kept open from before the change is
    // told to go away on its next request.
    let legacy = || async {
        TestClient::new()
            .try_request(
                "GET",
                local(port),
                "httpbin.foo:8000",
                "/status/200",
                &[],
                Bytes::new(),
            )
            .await
    };
    let kept = TestClient::new();
    let before = kept
        .get(local(port), "httpbin.foo:8000", "/status/200", &[])
        .await;
    assert_eq!(before.status, 200);
    assert_eq!(legacy().await.unwrap().status, 200);
    dir.write("pa.yaml", &peer_authentication("STRICT"));
    p.reload().await.unwrap().unwrap();
    assert!(legacy().await.is_err());
    let after = kept
        .get(local(port), "httpbin.foo:8000", "/status/200", &[])
        .await;
    assert_eq!(after.status, 503, "{}", after.body);
    assert_eq!(after.header("connection"), Some("close"));
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/status/200")
        .await;
    assert_eq!(r.unwrap().status, 200);
    p.shutdown().await;
}

/// AuthorizationPolicy on the peer identity: `allow-nothing` denies everyone with Envoy's
/// `RBAC: access denied`; an ALLOW for the sleep service account lets only mTLS clients with
/// that identity through (a plaintext client has no principal).
#[tokio::test]
async fn authorization_by_principal_needs_mtls() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    dir.write(
        "allow-nothing.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: allow-nothing\n  namespace: foo\nspec:\n  {}\n",
    );
    let port = free_port();
    let log = dir.path().join("access.log");
    let log_target = log.clone();
    let p = httpbin_sidecar_with(dir.path(), &mesh, port, "HTTP", httpbin.addr(), |o| {
        o.telemetry.access_log.enabled = true;
        o.telemetry.access_log.target = sluice_telemetry::AccessLogTarget::File(log_target);
    })
    .await;
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/status/200")
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), r.body.as_str()),
        (403, "RBAC: access denied")
    );
    // The access log names the client's identity and the decision, as Envoy's fields do.
    let expected = [
        format!("\"downstream_peer_uri_san\":\"{SLEEP}\""),
        "\"response_code_details\":\"rbac_access_denied_matched_policy[none]\"".to_string(),
    ];
    assert_eventually(std::time::Duration::from_secs(5), "access log line", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let ok = expected.iter().all(|e| text.contains(e.as_str()));
        async move { ok }
    })
    .await;

    dir.write(
        "allow-sleep.yaml",
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  selector:\n    matchLabels:\n      app: httpbin\n  action: ALLOW\n  rules:\n  - from:\n    - source:\n        principals: [\"cluster.local/ns/foo/sa/sleep\"]\n    to:\n    - operation:\n        methods: [\"GET\"]\n",
    );
    p.reload().await.unwrap().unwrap();
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/status/200")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let other = mesh.root.issue(&["spiffe://cluster.local/ns/foo/sa/other"]);
    let r = mesh
        .client(Some(&other))
        .get(local(port), "/status/200")
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let plain = TestClient::new()
        .get(local(port), "httpbin.foo:8000", "/status/200", &[])
        .await;
    assert_eq!(plain.status, 403);
    assert_eq!(httpbin.requests(), 1);
    p.shutdown().await;
}

/// The client side: a sidecar reaching httpbin, whose WorkloadEntry says it runs in the mesh
/// (`security.istio.io/tlsMode: istio`, service account httpbin), speaks mesh mTLS on its own
/// (auto mTLS) and checks the server's identity; `tls.mode: DISABLE` turns it off, and a
/// STRICT server then refuses the plaintext connection (503).
#[tokio::test]
async fn auto_mtls_between_two_sidecars_and_a_destination_rule_turning_it_off() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let server_dir = ConfigDir::new();
    server_dir.write("pa.yaml", &peer_authentication("STRICT"));
    let inbound = free_port();
    let server = httpbin_sidecar(server_dir.path(), &mesh, inbound, "HTTP", httpbin.addr()).await;

    let client_dir = ConfigDir::new();
    let service_port = free_port();
    let entry = |sa: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts: [httpbin.foo.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports:\n  - number: {service_port}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  workloadSelector:\n    labels:\n      app: httpbin\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: httpbin-1\n  namespace: foo\nspec:\n  address: 127.0.0.1\n  ports:\n    http: {inbound}\n  serviceAccount: {sa}\n  labels:\n    app: httpbin\n    security.istio.io/tlsMode: istio\n"
        )
    };
    client_dir.write("httpbin.yaml", &entry("httpbin"));
    let tls = mesh.runtime(SLEEP);
    let client = proxy(client_dir.path(), |o| {
        o.proxy.namespace = "foo".into();
        o.proxy.labels.insert("app".into(), "sleep".into());
        o.proxy.gateway_role = false;
        o.tls = tls;
    })
    .await;
    let via_sidecar = || async {
        TestClient::new()
            .get(local(service_port), "httpbin.foo:8000", "/headers", &[])
            .await
    };
    let r = via_sidecar().await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(&format!("URI={SLEEP}")), "{}", r.body);

    // The server is not who the endpoint says it runs as: the handshake fails (503).
    client_dir.write("httpbin.yaml", &entry("not-httpbin"));
    client.reload().await.unwrap().unwrap();
    assert_eq!(via_sidecar().await.status, 503);

    client_dir.write("httpbin.yaml", &entry("httpbin"));
    client_dir.write(
        "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  host: httpbin.foo.svc.cluster.local\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n",
    );
    client.reload().await.unwrap().unwrap();
    assert_eq!(via_sidecar().await.status, 503);
    assert_eq!(httpbin.requests(), 1);
    client.shutdown().await;
    server.shutdown().await;
}

/// `openssl s_client` against the inbound port under STRICT: without a client certificate
/// the server asks for one and refuses the connection; with the sleep certificate the
/// handshake succeeds, the server's certificate carries its SPIFFE identity as a URI SAN, and
/// `openssl verify` accepts it against the mesh root.
#[tokio::test]
async fn openssl_sees_the_spiffe_identity_and_strict_requires_a_client_certificate() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    dir.write("pa.yaml", &peer_authentication("STRICT"));
    let port = free_port();
    let p = httpbin_sidecar(dir.path(), &mesh, port, "HTTP", httpbin.addr()).await;
    let certs = tempfile::tempdir().unwrap();
    let root = mesh.root.write(certs.path(), "root-cert.pem");
    let (cert, key) = mesh.client.write(certs.path(), "sleep");
    let connect = format!("127.0.0.1:{port}");

    let anonymous = s_client(&[
        "-connect",
        &connect,
        "-alpn",
        "istio",
        "-CAfile",
        &root.display().to_string(),
    ])
    .await;
    assert!(anonymous.contains("certificate required"), "{anonymous}");

    let out = s_client(&[
        "-connect",
        &connect,
        "-alpn",
        "istio",
        "-CAfile",
        &root.display().to_string(),
        "-cert",
        &cert.display().to_string(),
        "-key",
        &key.display().to_string(),
        "-showcerts",
    ])
    .await;
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    let pem_start = out
        .find("-----BEGIN CERTIFICATE-----")
        .expect("server certificate printed");
    let pem_end =
        out.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----".len();
    let leaf = certs.path().join("server.pem");
    std::fs::write(&leaf, &out[pem_start..pem_end]).unwrap();
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&leaf)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("URI:{HTTPBIN}")), "{text}");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    p.shutdown().await;
}

/// Certificate rotation under load: both sidecars get new workload certificates (same root)
/// five times while four clients send requests through them; not one request fails, and new
/// connections present the new certificate.
#[tokio::test]
async fn rotation_under_load_fails_no_request() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let server_dir = ConfigDir::new();
    server_dir.write("pa.yaml", &peer_authentication("STRICT"));
    let inbound = free_port();
    let server_tls = mesh.runtime(HTTPBIN);
    std::fs::write(
        server_dir.path().join("sidecar.yaml"),
        format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  ingress:\n  - port:\n      number: {inbound}\n      protocol: HTTP\n      name: main\n    defaultEndpoint: {}\n",
            httpbin.addr()
        ),
    )
    .unwrap();
    let st = server_tls.clone();
    let server = proxy(server_dir.path(), |o| {
        o.proxy.namespace = "foo".into();
        o.tls = st;
    })
    .await;
    let client_dir = ConfigDir::new();
    let service_port = free_port();
    client_dir.write(
        "httpbin.yaml",
        &format!("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts: [httpbin.foo.svc.cluster.local]\n  location: MESH_INTERNAL\n  ports:\n  - number: {service_port}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports:\n      http: {inbound}\n    serviceAccount: httpbin\n    labels:\n      security.istio.io/tlsMode: istio\n"),
    );
    // One request per upstream connection: every request is a new mTLS handshake, so the
    // rotations land between handshakes, not only between requests.
    client_dir.write(
        "dr.yaml",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  host: httpbin.foo.svc.cluster.local\n  trafficPolicy:\n    connectionPool:\n      http:\n        maxRequestsPerConnection: 1\n",
    );
    let client_tls = mesh.runtime(SLEEP);
    let ct = client_tls.clone();
    let client = proxy(client_dir.path(), |o| {
        o.proxy.namespace = "foo".into();
        o.proxy.gateway_role = false;
        o.tls = ct;
    })
    .await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let stop = stop.clone();
        load.push(tokio::spawn(async move {
            let http = TestClient::new();
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Bounded in count and time.
            for _ in 0..2000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = http
                    .try_request(
                        "GET",
                        local(service_port),
                        "httpbin.foo:8000",
                        "/status/200",
                        &[],
                        Bytes::new(),
                    )
                    .await;
                match r {
                    Ok(r) if r.status == 200 => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed)
        }));
    }
    let mut presented = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        for (tls, id) in [(&server_tls, HTTPBIN), (&client_tls, SLEEP)] {
            let leaf = mesh.root.issue(&[id]);
            tls.store()
                .set_mesh(leaf.chain_der(), leaf.key_der(), vec![mesh.root.der()])
                .unwrap();
            if id == HTTPBIN {
                presented.push(leaf.der.clone());
            }
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for l in load {
        let (o, f) = l.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "only {ok} requests made");
    let handshakes = TestClient::new()
        .admin(server.admin_addr, "/stats/prometheus")
        .await
        .body;
    let mtls_requests: f64 = handshakes
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{") && l.contains("mutual_tls"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        mtls_requests >= f64::from(ok),
        "{mtls_requests} mTLS requests for {ok}"
    );
    // A new mesh connection is served with the latest certificate.
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(inbound), "/status/200")
        .await
        .unwrap();
    assert_eq!(r.peer.as_ref(), presented.last());
    client.shutdown().await;
    server.shutdown().await;
}

/// A Gateway server with `tls.mode: ISTIO_MUTUAL` terminates with the gateway's workload
/// certificate and requires a mesh client certificate (no `credentialName`).
#[tokio::test]
async fn gateway_istio_mutual_requires_a_mesh_certificate() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let dir = ConfigDir::new();
    let port = free_port();
    dir.write(
        "gw.yaml",
        &format!(
            "{}---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata:\n  name: mesh-gateway\n  namespace: foo\nspec:\n  selector:\n    istio: ingressgateway\n  servers:\n  - port:\n      number: {port}\n      name: https\n      protocol: HTTPS\n    hosts:\n    - \"*\"\n    tls:\n      mode: ISTIO_MUTUAL\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts:\n  - \"*\"\n  gateways:\n  - mesh-gateway\n  http:\n  - route:\n    - destination:\n        port:\n          number: 8000\n        host: httpbin.foo.svc.cluster.local\n",
            sluice_test_support::service_yaml("httpbin.foo.svc.cluster.local", 8000, &[("v1", httpbin.addr())])
        ),
    );
    let tls = mesh
        .runtime("spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account");
    let p = proxy(dir.path(), |o| {
        o.proxy
            .labels
            .insert("istio".into(), "ingressgateway".into());
        o.proxy.mesh_role = false;
        o.tls = tls;
    })
    .await;
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/status/200")
        .await;
    assert_eq!(r.unwrap().status, 200);
    let anonymous = mesh.client(None).get(local(port), "/status/200").await;
    assert!(anonymous.is_err(), "{anonymous:?}");
    p.shutdown().await;
}

/// A Sidecar ingress port with its own `tls` (SIMPLE) terminates TLS for clients outside the
/// mesh with that certificate (ALPN h2/http/1.1), while mesh clients (Istio ALPN) still get
/// mesh mTLS on the same port.
#[tokio::test]
async fn sidecar_ingress_tls_serves_non_mesh_tls_clients_next_to_mesh_mtls() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let public = TestCa::new("public root");
    let dir = ConfigDir::new();
    let (cert, key) = public
        .issue(&["httpbin.example.com"])
        .write(dir.path(), "httpbin");
    let port = free_port();
    dir.write(
        "sidecar.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  ingress:\n  - port:\n      number: {port}\n      protocol: HTTPS\n      name: https\n    defaultEndpoint: {}\n    tls:\n      mode: SIMPLE\n      serverCertificate: {}\n      privateKey: {}\n",
            httpbin.addr(),
            cert.display(),
            key.display()
        ),
    );
    let tls = mesh.runtime(HTTPBIN);
    let p = proxy(dir.path(), |o| {
        o.proxy.namespace = "foo".into();
        o.tls = tls;
    })
    .await;
    let outside = TlsClient::new(public.pem(), "httpbin.example.com");
    let r = outside.get(local(port), "/headers").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!r.body.contains("x-forwarded-client-cert"), "{}", r.body);
    let r = mesh
        .client(Some(&mesh.client))
        .get(local(port), "/headers")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains(&format!("URI={SLEEP}")), "{}", r.body);
    p.shutdown().await;
}

/// ServiceEntry `subjectAltNames`: identities the service's servers may present, next to its
/// endpoints' service accounts (Istio adds both to the service's accounts for ISTIO_MUTUAL).
#[tokio::test]
async fn service_entry_subject_alt_names_are_accepted_server_identities() {
    let httpbin = backend("httpbin", "v1").await;
    let mesh = Mesh::new();
    let server_dir = ConfigDir::new();
    server_dir.write("pa.yaml", &peer_authentication("STRICT"));
    let inbound = free_port();
    let server = httpbin_sidecar(server_dir.path(), &mesh, inbound, "HTTP", httpbin.addr()).await;
    let client_dir = ConfigDir::new();
    let service_port = free_port();
    // The endpoint claims another service account; only `subjectAltNames` can vouch for the
    // identity the server really has.
    let entry = |sans: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: httpbin\n  namespace: foo\nspec:\n  hosts: [httpbin.foo.svc.cluster.local]\n  location: MESH_INTERNAL\n{sans}  ports:\n  - number: {service_port}\n    name: http\n    protocol: HTTP\n  resolution: STATIC\n  endpoints:\n  - address: 127.0.0.1\n    ports:\n      http: {inbound}\n    serviceAccount: not-httpbin\n    labels:\n      security.istio.io/tlsMode: istio\n"
        )
    };
    client_dir.write("httpbin.yaml", &entry(""));
    let tls = mesh.runtime(SLEEP);
    let client = proxy(client_dir.path(), |o| {
        o.proxy.namespace = "foo".into();
        o.proxy.labels.insert("app".into(), "sleep".into());
        o.proxy.gateway_role = false;
        o.tls = tls;
    })
    .await;
    let via_sidecar = || async {
        TestClient::new()
            .get(local(service_port), "httpbin.foo:8000", "/headers", &[])
            .await
    };
    assert_eq!(via_sidecar().await.status, 503);
    client_dir.write(
        "httpbin.yaml",
        &entry(&format!("  subjectAltNames: [\"{HTTPBIN}\"]\n")),
    );
    client.reload().await.unwrap().unwrap();
    let r = via_sidecar().await;
    assert_eq!(r.status, 200, "{}", r.body);
    // A name the server does not carry vouches for nothing.
    client_dir.write(
        "httpbin.yaml",
        &entry("  subjectAltNames: [\"spiffe://cluster.local/ns/foo/sa/other\"]\n"),
    );
    client.reload().await.unwrap().unwrap();
    assert_eq!(via_sidecar().await.status, 503);
    assert_eq!(httpbin.requests(), 1);
    client.shutdown().await;
    server.shutdown().await;
}
