//! Canary webhooks over https: a local TLS server with a certificate of a test CA; the call
//! fails while the CA is not trusted and passes once `SLUICE_WEBHOOK_CA` names it. (Its own
//! test binary: it sets a process-wide environment variable.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sluice_canary::webhook::{self, Payload, WEBHOOK_CA_ENV};
use sluice_config::canary::{HookType, Webhook};
use sluice_test_support::pki::TestCa;

/// An https server answering `status` to every POST; returns its port and the bodies seen.
async fn https_server(ca: &TestCa, status: u16) -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
    let leaf = ca.issue(&["localhost", "127.0.0.1"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain_der(), leaf.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let bodies = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, bodies) = (acceptor.clone(), bodies.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let bodies = bodies.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            bodies
                                .lock()
                                .unwrap()
                                .push(serde_json::from_slice(&body).unwrap_or_default());
                            let mut resp = hyper::Response::new(Full::new(Bytes::from("ok")));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

fn hook(url: String) -> Webhook {
    Webhook {
        name: "load-test".into(),
        hook_type: HookType::Rollout,
        url,
        timeout: Duration::from_secs(5),
        metadata: BTreeMap::from([("cmd".to_string(), "hey".to_string())]),
    }
}

#[tokio::test]
async fn https_webhooks_trust_the_configured_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("webhook test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (port, seen) = https_server(&ca, 200).await;
    let (refusing, _) = https_server(&ca, 503).await;
    let metadata = BTreeMap::from([("cmd".to_string(), "hey".to_string())]);
    let payload = Payload {
        name: "app",
        namespace: "default",
        phase: "Progressing",
        hook_type: "rollout",
        metadata: &metadata,
    };
    let url = format!("https://localhost:{port}/gate");
    // Not trusted yet: the handshake fails and says so.
    std::env::remove_var(WEBHOOK_CA_ENV);
    let err = webhook::call(&hook(url.clone()), &payload)
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake failed"), "{err}");
    assert!(seen.lock().unwrap().is_empty());
    // Trusted through the environment variable: the POST arrives with Flagger's payload.
    std::env::set_var(WEBHOOK_CA_ENV, &ca_file);
    webhook::call(&hook(url), &payload).await.unwrap();
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["name"], "app");
    assert_eq!(bodies[0]["type"], "rollout");
    assert_eq!(bodies[0]["metadata"]["cmd"], "hey");
    // By IP address too (the certificate names 127.0.0.1).
    webhook::call(&hook(format!("https://127.0.0.1:{port}/")), &payload)
        .await
        .unwrap();
    // A non-2xx answer over https fails the gate, with the status.
    let err = webhook::call(&hook(format!("https://localhost:{refusing}/")), &payload)
        .await
        .unwrap_err();
    assert!(err.contains("503"), "{err}");
    // A CA file that holds no certificate is reported.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    std::env::set_var(WEBHOOK_CA_ENV, &empty);
    let err = webhook::call(&hook(format!("https://localhost:{port}/")), &payload)
        .await
        .unwrap_err();
    assert!(err.contains(WEBHOOK_CA_ENV), "{err}");
    std::env::remove_var(WEBHOOK_CA_ENV);
}
