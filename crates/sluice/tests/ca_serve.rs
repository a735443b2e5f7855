//! `sluice ca serve` against a fake Kubernetes API server that answers TokenReviews (and serves
//! a `cacerts` Secret), with workloads fetching certificates over real HTTPS.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use serde_json::{json, Value};
use sluice::ca::IdentityArgs;
use sluice::ca_serve::ServeArgs;
use sluice_identity::{Issuer, RemoteIssuer, SpiffeId, LAYOUT, ROOT_CERT};

/// TokenReview bodies received.
type Seen = Arc<Mutex<Vec<Value>>>;

async fn fake_api(secret: Option<Value>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let seen = s.clone();
            let secret = secret.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let seen = seen.clone();
                    let secret = secret.clone();
                    async move { Ok::<_, Infallible>(answer(req, seen, secret).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (url, seen)
}

async fn answer(
    req: Request<Incoming>,
    seen: Seen,
    secret: Option<Value>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let reply = |code: u16, v: Value| {
        let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    };
    if path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let review: Value = serde_json::from_slice(&body).unwrap();
        seen.lock().unwrap().push(review.clone());
        let status = match review["spec"]["token"].as_str() {
            Some("sleep-token") => json!({"authenticated": true, "audiences": ["istio-ca"],
                "user": {"username": "system:serviceaccount:default:sleep"}}),
            Some("api-token") => {
                json!({"authenticated": true, "audiences": ["https://kubernetes.default.svc"],
                "user": {"username": "system:serviceaccount:default:sleep"}})
            }
            Some("admin-token") => json!({"authenticated": true, "audiences": ["istio-ca"],
                "user": {"username": "kubernetes-admin"}}),
            _ => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        let mut out = review;
        out["status"] = status;
        return reply(201, out);
    }
    if path == "/api/v1/namespaces/istio-system/secrets/cacerts" {
        if let Some(s) = secret {
            return reply(200, s);
        }
    }
    if path == "/api/v1/namespaces" {
        let item = |n: &str| json!({"metadata": {"name": n}});
        return reply(
            200,
            json!({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {},
                "items": [item("default"), item("foo")]}),
        );
    }
    if path.ends_with("/configmaps") && req.method() == hyper::Method::POST {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let cm: Value = serde_json::from_slice(&body).unwrap();
        seen.lock()
            .unwrap()
            .push(json!({"created": path, "configmap": cm.clone()}));
        return reply(201, cm);
    }
    reply(
        404,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

fn init_ca(base: &Path) -> std::path::PathBuf {
    let root = base.join("root");
    let inter = base.join("inter");
    let opts = sluice_identity::init::InitOptions {
        trust_domain: "cluster.local".into(),
        validity: None,
        force: false,
    };
    sluice_identity::init::init_root(&root, &opts).unwrap();
    sluice_identity::init::init_intermediate(&inter, &root, &opts).unwrap();
    inter
}

fn serve_args(api: &str) -> ServeArgs {
    ServeArgs {
        ca_dir: None,
        ca_secret: None,
        ca_secret_namespace: "istio-system".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        dns_names: vec!["127.0.0.1".into()],
        trust_domain: "cluster.local".into(),
        kube_api: Some(api.to_string()),
    }
}

async fn start_ca(args: ServeArgs) -> std::net::SocketAddr {
    sluice_kube::install_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { sluice::ca_serve::serve_on(&args, listener).await.unwrap() });
    addr
}

fn token(dir: &Path, value: &str) -> std::path::PathBuf {
    let p = dir.join(format!("{value}.jwt"));
    std::fs::write(&p, value).unwrap();
    p
}

#[tokio::test]
async fn workloads_get_their_service_accounts_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = init_ca(tmp.path());
    let (api, seen) = fake_api(None).await;
    let mut args = serve_args(&api);
    args.ca_dir = Some(ca_dir.clone());
    let addr = start_ca(args).await;

    // The proxy's own flags: the identity comes from the token, not from the flags.
    let identity = IdentityArgs {
        ca_dir: None,
        ca_address: Some(format!("https://{addr}")),
        ca_root: Some(ca_dir.join(ROOT_CERT)),
        token_file: token(tmp.path(), "sleep-token"),
        trust_domain: "cluster.local".into(),
        service_account: "sleep".into(),
    };
    let rx = sluice::ca::spawn_identity(&identity, "default")
        .await
        .unwrap()
        .unwrap();
    let cert = rx.borrow().clone();
    assert_eq!(
        cert.id.to_string(),
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    assert_eq!(cert.chain.len(), 3);
    let reviews: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|v| v.get("spec").is_some())
        .cloned()
        .collect();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0]["spec"]["token"], "sleep-token");
    assert_eq!(reviews[0]["spec"]["audiences"], json!(["istio-ca"]));

    let root = std::fs::read(ca_dir.join(ROOT_CERT)).unwrap();
    let any = SpiffeId::new("cluster.local", "default", "sleep");
    for (tok, why) in [
        ("forged-token", "invalid bearer token"),
        ("admin-token", "not a service account"),
        ("api-token", "not valid for the audience istio-ca"),
    ] {
        let issuer =
            RemoteIssuer::new(&format!("https://{addr}"), &root, token(tmp.path(), tok)).unwrap();
        let e = issuer.issue(&any).await.unwrap_err().to_string();
        assert!(e.contains("401") && e.contains(why), "{tok}: {e}");
    }
}

#[tokio::test]
async fn the_ca_can_come_from_the_cacerts_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = init_ca(tmp.path());
    let data: BTreeMap<String, ByteString> = LAYOUT
        .iter()
        .map(|n| {
            (
                n.to_string(),
                ByteString(std::fs::read(ca_dir.join(n)).unwrap()),
            )
        })
        .collect();
    let secret = Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("cacerts".into()),
            namespace: Some("istio-system".into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    let mut secret = serde_json::to_value(&secret).unwrap();
    secret["apiVersion"] = json!("v1");
    secret["kind"] = json!("Secret");
    let (api, _) = fake_api(Some(secret)).await;
    let mut args = serve_args(&api);
    args.ca_secret = Some("cacerts".into());
    let addr = start_ca(args).await;

    let root = std::fs::read(ca_dir.join(ROOT_CERT)).unwrap();
    let issuer = RemoteIssuer::new(
        &format!("https://{addr}"),
        &root,
        token(tmp.path(), "sleep-token"),
    )
    .unwrap();
    let cert = issuer
        .issue(&SpiffeId::new("cluster.local", "default", "sleep"))
        .await
        .unwrap();
    let ca = sluice_identity::CaBundle::load_dir(&ca_dir).unwrap();
    assert_eq!(&cert.chain[1..], ca.chain());
}

/// The CA keeps the mesh root in every namespace's `istio-ca-root-cert` ConfigMap
/// (`root-cert.pem`), which injected sidecars mount to check the CA and their peers.
#[tokio::test]
async fn the_root_is_published_in_every_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = init_ca(tmp.path());
    let (api, seen) = fake_api(None).await;
    let mut args = serve_args(&api);
    args.ca_dir = Some(ca_dir.clone());
    let _addr = start_ca(args).await;
    let root = std::fs::read_to_string(ca_dir.join(ROOT_CERT)).unwrap();
    let mut created = Vec::new();
    for _ in 0..200 {
        created = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|v| {
                v["created"]
                    .as_str()
                    .map(|p| (p.to_string(), v["configmap"].clone()))
            })
            .collect::<Vec<_>>();
        if created.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let paths: Vec<&str> = created.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/default/configmaps",
            "/api/v1/namespaces/foo/configmaps"
        ]
    );
    for (_, cm) in &created {
        assert_eq!(cm["metadata"]["name"], "istio-ca-root-cert");
        assert_eq!(cm["data"]["root-cert.pem"].as_str(), Some(root.as_str()));
    }
}
