//! Workload certificates: their shape, and a real mutual TLS handshake between two workloads.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sluice_identity::{CaBundle, SpiffeId, WorkloadCert, BACKDATE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x509_parser::prelude::*;

use support::root_and_intermediate;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn uri_sans(der: &CertificateDer<'_>) -> Vec<String> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn workload_certificates_have_istios_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let ca = CaBundle::load_dir(&inter).unwrap();
    let id = SpiffeId::new("cluster.local", "default", "sleep");
    let before = SystemTime::now();
    let wc = ca.issue(&id, Duration::from_secs(3600)).unwrap();
    assert_eq!(wc.chain.len(), 3, "leaf, ca-cert, root");
    assert_eq!(&wc.chain[1..], ca.chain());
    assert_eq!(wc.roots, ca.roots());

    let (_, leaf) = X509Certificate::from_der(&wc.chain[0]).unwrap();
    assert_eq!(leaf.subject().as_raw(), &[0x30, 0x00], "empty subject");
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    assert!(san.critical);
    assert_eq!(uri_sans(&wc.chain[0]), vec![id.to_string()]);
    let ku = leaf.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature() && ku.key_encipherment() && !ku.key_cert_sign());
    let eku = leaf.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!leaf.is_ca());
    assert_eq!(
        leaf.public_key().algorithm.algorithm,
        x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    let nb = leaf.validity().not_before.timestamp();
    let na = leaf.validity().not_after.timestamp();
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!(nb <= secs(before) - BACKDATE.as_secs() as i64 + 1);
    assert!(na >= secs(before) + 3599 && na <= secs(SystemTime::now()) + 3600);
    // The leaf verifies against the CA that issued it.
    let (_, signer) = X509Certificate::from_der(&wc.chain[1]).unwrap();
    leaf.verify_signature(Some(signer.public_key())).unwrap();
}

#[test]
fn validity_never_outlives_the_signer() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let ca = CaBundle::load_dir(&inter).unwrap();
    let id = SpiffeId::new("cluster.local", "default", "sleep");
    let wc = ca
        .issue(&id, Duration::from_secs(100 * 365 * 86400))
        .unwrap();
    assert!(wc.not_after <= ca.signer_not_after());
    let (_, leaf) = X509Certificate::from_der(&wc.chain[0]).unwrap();
    let (_, signer) = X509Certificate::from_der(&wc.chain[1]).unwrap();
    assert!(leaf.validity().not_after <= signer.validity().not_after);
}

#[test]
fn a_csr_gets_the_callers_identity_not_the_one_it_asks_for() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let ca = CaBundle::load_dir(&inter).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "spiffe://cluster.local/ns/istio-system/sa/admin"
            .try_into()
            .unwrap(),
    )];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let id = SpiffeId::new("cluster.local", "default", "sleep");
    let chain = ca.sign_csr(&csr, &id, Duration::from_secs(3600)).unwrap();
    assert_eq!(chain.len(), 3);
    assert_eq!(uri_sans(&chain[0]), vec![id.to_string()]);
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(
        leaf.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    // A tampered request does not verify.
    let bad = csr.replace("MI", "MJ");
    assert!(ca.sign_csr(&bad, &id, Duration::from_secs(60)).is_err());
}

/// Checks the chain to the roots like Istio's sidecars do, and the URI SAN after the handshake:
/// workload certificates name no host.
#[derive(Debug)]
struct MeshServerVerifier(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for MeshServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn roots(wc: &WorkloadCert) -> Arc<RootCertStore> {
    let mut store = RootCertStore::empty();
    for r in &wc.roots {
        store.add(r.clone()).unwrap();
    }
    Arc::new(store)
}

/// Runs one mutual TLS exchange on 127.0.0.1 and returns the URI SANs each side saw.
async fn handshake(
    server: &WorkloadCert,
    client: &WorkloadCert,
) -> Result<(String, String), String> {
    let client_verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots(server), provider())
            .build()
            .unwrap();
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(server.chain.clone(), server.key.clone_key())
        .unwrap();
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots(client), provider())
            .build()
            .unwrap();
    let client_cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeshServerVerifier(server_verifier)))
        .with_client_auth_cert(client.chain.clone(), client.key.clone_key())
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
    let server_task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let mut buf = [0u8; 4];
        tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        tls.write_all(b"pong").await.map_err(|e| e.to_string())?;
        tls.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(uri_sans(&peer).join(","))
    });
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("outbound_.9080_._.reviews.default.svc.cluster.local").unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_cfg));
    let result = async {
        let mut tls = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        tls.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        assert_eq!(buf, b"pong");
        Ok::<_, String>(uri_sans(&peer).join(","))
    }
    .await;
    let server_saw = server_task.await.unwrap();
    Ok((result?, server_saw?))
}

#[tokio::test]
async fn two_workloads_complete_a_mutual_tls_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let ca = CaBundle::load_dir(&inter).unwrap();
    let reviews = ca
        .issue(
            &SpiffeId::new("cluster.local", "default", "reviews"),
            Duration::from_secs(3600),
        )
        .unwrap();
    let productpage = ca
        .issue(
            &SpiffeId::new("cluster.local", "default", "productpage"),
            Duration::from_secs(3600),
        )
        .unwrap();
    let (client_saw, server_saw) = handshake(&reviews, &productpage).await.unwrap();
    assert_eq!(client_saw, "spiffe://cluster.local/ns/default/sa/reviews");
    assert_eq!(
        server_saw,
        "spiffe://cluster.local/ns/default/sa/productpage"
    );
}

#[tokio::test]
async fn a_workload_of_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, inter) = root_and_intermediate(tmp.path());
    let other = tmp.path().join("other");
    sluice_identity::init::init_root(&other, &support::opts()).unwrap();
    let ours = CaBundle::load_dir(&inter).unwrap();
    let theirs = CaBundle::load_dir(&other).unwrap();
    let id = SpiffeId::new("cluster.local", "default", "a");
    let server = ours.issue(&id, Duration::from_secs(3600)).unwrap();
    let mut client = theirs.issue(&id, Duration::from_secs(3600)).unwrap();
    // The client trusts the server's roots, but its own certificate is from another CA.
    client.roots = server.roots.clone();
    assert!(handshake(&server, &client).await.is_err());
}
