//! The CA server and its client over real HTTPS on 127.0.0.1, with a fake token checker.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use sluice_identity::api::ServiceAccount;
use sluice_identity::{
    AuthFuture, Authenticator, CaBundle, CaServer, CaSource, IdentityError, Issuer, RemoteIssuer,
    SpiffeId, ROOT_CERT,
};
use x509_parser::prelude::*;

/// Tokens and the service accounts they belong to.
struct Tokens(HashMap<String, ServiceAccount>);

impl Authenticator for Tokens {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        let r = self
            .0
            .get(token)
            .cloned()
            .ok_or_else(|| "unknown token".to_string());
        Box::pin(std::future::ready(r))
    }
}

struct Running {
    addr: std::net::SocketAddr,
    root_pem: Vec<u8>,
    ca: Arc<CaBundle>,
    _task: tokio::task::JoinHandle<()>,
    tmp: tempfile::TempDir,
}

async fn start() -> Running {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = support::root_and_intermediate(tmp.path());
    let ca = Arc::new(CaBundle::load_dir(&inter).unwrap());
    let tokens = Tokens(HashMap::from([(
        "sleep-token".to_string(),
        ServiceAccount {
            namespace: "default".into(),
            name: "sleep".into(),
        },
    )]));
    let server = Arc::new(CaServer {
        ca: Arc::new(ca.clone()) as Arc<dyn CaSource>,
        auth: Arc::new(tokens),
        trust_domain: "cluster.local".into(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        server
            .serve(
                listener,
                vec!["127.0.0.1".into(), "sluice-ca.istio-system.svc".into()],
            )
            .await
            .unwrap();
    });
    Running {
        addr,
        root_pem: support::read(&inter, ROOT_CERT),
        ca,
        _task: task,
        tmp,
    }
}

fn client(r: &Running, token: &str) -> RemoteIssuer {
    let token_file = r.tmp.path().join(format!("{token}.jwt"));
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    RemoteIssuer::new(&format!("https://{}", r.addr), &r.root_pem, token_file).unwrap()
}

#[tokio::test]
async fn a_workload_gets_the_identity_of_its_token() {
    let r = start().await;
    let issuer = client(&r, "sleep-token");
    // Asking for another identity gets the token's one.
    let asked = SpiffeId::new("cluster.local", "istio-system", "admin");
    let wc = issuer.issue(&asked).await.unwrap();
    assert_eq!(wc.chain.len(), 3);
    assert_eq!(&wc.chain[1..], r.ca.chain());
    assert_eq!(wc.roots, r.ca.roots());
    let (_, leaf) = X509Certificate::from_der(&wc.chain[0]).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let uris: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, vec!["spiffe://cluster.local/ns/default/sa/sleep"]);
    assert_eq!(
        wc.id.to_string(),
        "spiffe://cluster.local/ns/default/sa/sleep"
    );
    let lifetime = wc.lifetime().as_secs();
    assert!(
        (24 * 3600..=24 * 3600 + 180).contains(&lifetime),
        "{lifetime}"
    );
}

#[tokio::test]
async fn an_unknown_token_is_refused() {
    let r = start().await;
    let issuer = client(&r, "stolen");
    let id = SpiffeId::new("cluster.local", "default", "sleep");
    let e = issuer.issue(&id).await.unwrap_err();
    match e {
        IdentityError::Remote { reason, .. } => {
            assert!(
                reason.contains("401") && reason.contains("unknown token"),
                "{reason}"
            )
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_does_not_connect() {
    let r = start().await;
    let other = r.tmp.path().join("other");
    sluice_identity::init::init_root(&other, &support::opts()).unwrap();
    let token_file = r.tmp.path().join("t");
    std::fs::write(&token_file, "sleep-token").unwrap();
    let issuer = RemoteIssuer::new(
        &format!("https://{}", r.addr),
        &support::read(&other, ROOT_CERT),
        token_file,
    )
    .unwrap();
    let e = issuer
        .issue(&SpiffeId::new("cluster.local", "default", "sleep"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test]
async fn plain_http_addresses_are_refused() {
    let e = RemoteIssuer::new("http://127.0.0.1:1", b"", "t".into()).unwrap_err();
    assert!(e.to_string().contains("https"), "{e}");
}
