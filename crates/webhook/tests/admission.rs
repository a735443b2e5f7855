//! The webhook end to end: a real HTTPS client posting AdmissionReviews, the fake API server
//! answering the namespace lookups, patches applied and compared with `sluice inject`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube-source/tests/fake/mod.rs"]
mod fake;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{json, Value};
use sluice_kube::inject::{inject_with, InjectOptions};
use sluice_webhook::server::bind;
use sluice_webhook::{cert, serve, FileCert, Injector, NamespaceLabels, Webhook};

/// A self-signed serving certificate for `localhost`, written as PEM files in `dir`.
fn write_cert(dir: &Path) -> (CertificateDer<'static>, PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
    // Written beside and renamed over, as a Secret volume's update is atomic.
    std::fs::write(dir.join("tls.crt.new"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key.new"), key.serialize_pem()).unwrap();
    std::fs::rename(dir.join("tls.key.new"), &k).unwrap();
    std::fs::rename(dir.join("tls.crt.new"), &c).unwrap();
    (cert.der().clone(), c, k)
}

struct Harness {
    api: fake::FakeApi,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    trusted: Vec<CertificateDer<'static>>,
    _server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self._server.abort();
    }
}

async fn start() -> Harness {
    let api = fake::FakeApi::start().await;
    api.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: apps, labels: {istio-injection: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: Namespace
metadata: {name: ours, labels: {sluice-injection: enabled}}
"#,
    );
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let injector = Injector::new(
        NamespaceLabels::new(client),
        Some("sluice-system".into()),
        InjectOptions::default(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (der, c, k) = write_cert(dir.path());
    let file_cert = FileCert::load(&c, &k).unwrap();
    file_cert.spawn_refresh();
    let tls = cert::server_config(file_cert).unwrap();
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener, tls, Arc::new(Webhook::new(injector))));
    Harness {
        api,
        addr,
        dir,
        trusted: vec![der],
        _server: server,
    }
}

impl Harness {
    /// POSTs `body` over a new TLS connection trusting `trusted`; returns the status, the body
    /// and the certificate the server presented.
    async fn post_with(
        &self,
        trusted: &[CertificateDer<'static>],
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value, CertificateDer<'static>), String> {
        let mut roots = rustls::RootCertStore::empty();
        for c in trusted {
            roots.add(c.clone()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::post(format!("https://localhost{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value, presented))
    }

    async fn post(&self, path: &str, body: &Value) -> Value {
        let (status, value, _) = self.post_with(&self.trusted, path, body).await.unwrap();
        assert_eq!(status, 200, "{value}");
        value
    }
}

fn review(uid: &str, namespace: &str, kind: (&str, &str, &str), object: Value) -> Value {
    let (group, version, kind) = kind;
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "namespace": namespace,
            "name": "",
            "operation": "CREATE",
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
        }
    })
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  generateName: reviews-v1-
  labels:
    app: reviews
    version: v1
  annotations:
    traffic.sidecar.istio.io/excludeOutboundPorts: "5432"
spec:
  serviceAccountName: bookinfo-reviews
  containers:
  - name: reviews
    image: docker.io/istio/examples-bookinfo-reviews-v1:1.20.3
    ports:
    - containerPort: 9080
    env:
    - name: LOG_DIR
      value: /tmp/logs
"#;

fn yaml_to_json(text: &str) -> Value {
    sluice_model::yaml::parse_documents(text)
        .unwrap()
        .remove(0)
        .value
}

fn patch_of(reply: &Value) -> Option<json_patch::Patch> {
    let response = &reply["response"];
    let encoded = response["patch"].as_str()?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

fn pod_review(namespace: &str, pod: Value) -> Value {
    review("pod-uid", namespace, ("", "v1", "Pod"), pod)
}

#[tokio::test]
async fn a_pod_in_a_labelled_namespace_gets_what_sluice_inject_adds() {
    let h = start().await;
    let pod = yaml_to_json(POD);
    let reply = h.post("/inject", &pod_review("apps", pod.clone())).await;
    assert_eq!(reply["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reply["kind"], "AdmissionReview");
    assert_eq!(reply["response"]["uid"], "pod-uid");
    assert_eq!(reply["response"]["allowed"], true);
    let patch = patch_of(&reply).expect("a patch");
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let offline = yaml_to_json(&inject_with(POD, &InjectOptions::default()).unwrap());
    assert_eq!(patched, offline);
    // The pod's own annotation reached the init container, as with `sluice inject`.
    assert!(patched["spec"]["initContainers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "5432"));
    assert!(h
        .api
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /api/v1/namespaces/apps?")));

    // sluice's own label works the same.
    let reply = h.post("/inject", &pod_review("ours", pod.clone())).await;
    assert!(patch_of(&reply).is_some());

    // Applied twice (a retried admission, a re-created pod): nothing more.
    let reply = h.post("/inject", &pod_review("apps", patched)).await;
    assert_eq!(reply["response"]["allowed"], true);
    assert!(patch_of(&reply).is_none(), "{reply}");
}

#[tokio::test]
async fn unlabelled_namespaces_and_opted_out_pods_get_no_patch() {
    let h = start().await;
    let pod = yaml_to_json(POD);
    for ns in ["plain", "missing"] {
        let reply = h.post("/inject", &pod_review(ns, pod.clone())).await;
        assert_eq!(reply["response"]["allowed"], true);
        assert!(patch_of(&reply).is_none(), "{ns}: {reply}");
    }
    let mut opted_out = pod.clone();
    opted_out["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("false");
    let reply = h.post("/inject", &pod_review("apps", opted_out)).await;
    assert_eq!(reply["response"]["allowed"], true);
    assert!(patch_of(&reply).is_none(), "{reply}");

    let mut host = pod.clone();
    host["spec"]["hostNetwork"] = json!(true);
    assert!(patch_of(&h.post("/inject", &pod_review("apps", host)).await).is_none());

    // The pod's label alone selects it in an unlabelled namespace (Istio's object selector).
    let mut opted_in = pod.clone();
    opted_in["metadata"]["labels"]["sidecar.istio.io/inject"] = json!("true");
    assert!(patch_of(&h.post("/inject", &pod_review("plain", opted_in)).await).is_some());

    // System namespaces and the webhook's own are never injected, nor even looked up.
    for ns in ["kube-system", "sluice-system"] {
        let reply = h.post("/inject", &pod_review(ns, pod.clone())).await;
        assert!(patch_of(&reply).is_none());
        let looked_up = format!("GET /api/v1/namespaces/{ns}?");
        assert!(!h.api.requests().iter().any(|r| r.starts_with(&looked_up)));
    }
}

#[tokio::test]
async fn an_invalid_virtual_service_is_refused_with_the_field_path() {
    let h = start().await;
    let vs = |weight: i64| {
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "reviews", "namespace": "apps"},
               "spec": {"hosts": ["reviews"], "http": [{"route": [
                   {"destination": {"host": "reviews", "subset": "v1"}, "weight": weight},
                   {"destination": {"host": "reviews", "subset": "v2"}, "weight": 100}]}]}})
    };
    let kind = ("networking.istio.io", "v1", "VirtualService");
    let reply = h
        .post("/validate", &review("vs-uid", "apps", kind, vs(-5)))
        .await;
    let response = &reply["response"];
    assert_eq!(response["uid"], "vs-uid");
    assert_eq!(response["allowed"], false, "{reply}");
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.http[0].route[0].weight") && message.contains("-5"),
        "{message}"
    );

    let reply = h
        .post("/validate", &review("vs-uid", "apps", kind, vs(0)))
        .await;
    assert_eq!(reply["response"]["allowed"], true, "{reply}");

    let pa = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                    "metadata": {"name": "default", "namespace": "apps"},
                    "spec": {"mtls": {"mode": "SOMETIMES"}}});
    let kind = ("security.istio.io", "v1", "PeerAuthentication");
    let reply = h
        .post("/validate", &review("pa-uid", "apps", kind, pa))
        .await;
    assert_eq!(reply["response"]["allowed"], false, "{reply}");
    assert!(reply["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("spec.mtls.mode"));

    // Kinds sluice does not read are not refused.
    let kind = ("networking.istio.io", "v1alpha3", "EnvoyFilter");
    let reply = h
        .post(
            "/validate",
            &review("ef", "apps", kind, json!({"spec": {"x": 1}})),
        )
        .await;
    assert_eq!(reply["response"]["allowed"], true);
}

#[tokio::test]
async fn malformed_reviews_are_bad_requests() {
    let h = start().await;
    let (status, _, _) = h
        .post_with(&h.trusted, "/validate", &json!({"kind": "AdmissionReview"}))
        .await
        .unwrap();
    assert_eq!(status, 400);
}

/// A namespace that cannot be read fails the call (so the configuration's failurePolicy
/// Ignore creates the pod uninjected) rather than refusing the pod.
#[tokio::test]
async fn an_unreadable_namespace_fails_the_call() {
    let h = start().await;
    h.api.store.lock().unwrap().failing.push("namespaces");
    let (status, _, _) = h
        .post_with(
            &h.trusted,
            "/inject",
            &pod_review("apps", yaml_to_json(POD)),
        )
        .await
        .unwrap();
    assert_eq!(status, 500);
}

#[tokio::test]
async fn accepted_objects_carry_their_warnings() {
    let h = start().await;
    let dr = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                    "metadata": {"name": "reviews", "namespace": "apps"},
                    "spec": {"host": "reviews",
                             "trafficPolicy": {"loadBalancer": {"zoneAwareLbSetting": {"enabled": true,
                                 "failover": [{"from": "region1", "to": "region2"}]}}}}});
    let kind = ("networking.istio.io", "v1", "DestinationRule");
    let reply = h.post("/validate", &review("dr", "apps", kind, dr)).await;
    assert_eq!(reply["response"]["allowed"], true, "{reply}");
    let warnings = reply["response"]["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .starts_with("spec.trafficPolicy.loadBalancer.zoneAwareLbSetting: ")),
        "{reply}"
    );
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let h = start().await;
    let body = pod_review("plain", yaml_to_json(POD));
    let (_, _, first) = h.post_with(&h.trusted, "/inject", &body).await.unwrap();
    assert_eq!(first, h.trusted[0]);
    let (renewed, _, _) = write_cert(h.dir.path());
    let both = [h.trusted[0].clone(), renewed.clone()];
    let mut presented = first;
    for _ in 0..500 {
        let (_, reply, cert) = h.post_with(&both, "/inject", &body).await.unwrap();
        assert_eq!(reply["response"]["allowed"], true);
        presented = cert;
        if presented == renewed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        presented, renewed,
        "the new certificate was never presented"
    );
    // Clients that trust only the old certificate now fail the handshake.
    assert!(h.post_with(&h.trusted, "/inject", &body).await.is_err());
}
