//! `rustls::ServerConfig` for a terminating gateway server: its certificates, client
//! verification (`MUTUAL`, `OPTIONAL_MUTUAL`), protocol versions, cipher suites and ALPN.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, Error, ServerConfig, SignatureScheme,
    SupportedProtocolVersion,
};
use sluice_config::tls::{CaSource, CertificateSource, ClientAuth, ServerTls, TlsVersion};

use super::certs::CertStore;
use super::peer::PeerChecks;
use super::TlsError;

/// The protocol versions from `min` to `max`.
pub(crate) fn versions(min: TlsVersion, max: TlsVersion) -> Vec<&'static SupportedProtocolVersion> {
    let mut v = Vec::new();
    if min <= TlsVersion::V1_3 && max >= TlsVersion::V1_3 {
        v.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::V1_2 && max >= TlsVersion::V1_2 {
        v.push(&rustls::version::TLS12);
    }
    v
}

/// The rustls suite of an OpenSSL/Envoy TLS 1.2 suite name.
fn suite(name: &str) -> Option<CipherSuite> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => {
            CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "ECDHE-RSA-AES128-GCM-SHA256" => CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

/// The provider restricted to the configured TLS 1.2 suites (TLS 1.3 suites stay, as in Envoy).
fn with_suites(base: &CryptoProvider, names: &[String]) -> CryptoProvider {
    if names.is_empty() {
        return base.clone();
    }
    let wanted: Vec<CipherSuite> = names.iter().filter_map(|n| suite(n)).collect();
    let mut p = base.clone();
    p.cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || wanted.contains(&s.suite()));
    p
}

/// Serves one certificate per handshake: the first the client's signature schemes allow (an
/// RSA and an ECDSA certificate may be configured together).
#[derive(Debug)]
struct Certificates(Vec<Arc<CertifiedKey>>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let schemes = hello.signature_schemes();
        self.0
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or_else(|| self.0.first())
            .cloned()
    }
}

/// Client certificate verification: the CA (unless `insecureSkipVerify`), then the pins.
#[derive(Debug)]
struct ClientVerifier {
    chain: Option<Arc<dyn ClientCertVerifier>>,
    checks: PeerChecks,
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.chain.as_ref().map_or(&[], |c| c.root_hint_subjects())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        if let Some(chain) = &self.chain {
            chain.verify_client_cert(end_entity, intermediates, now)?;
        }
        self.checks.verify(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Builds the server config of `tls` from the store's current material.
pub(crate) fn build(
    tls: &ServerTls,
    store: &CertStore,
    base: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(with_suites(base, &tls.cipher_suites));
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(tls.min_version, tls.max_version))
        .map_err(TlsError::Config)?;
    let builder = match tls.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let chain = if tls.insecure_skip_verify {
                None
            } else {
                let ca = tls.client_ca.as_ref().ok_or(TlsError::NoClientCa)?;
                let roots = store.roots(ca)?;
                let mut b = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
                if auth == ClientAuth::Optional {
                    b = b.allow_unauthenticated();
                }
                // `caCrl`: as Envoy, every CA of the chain then needs a CRL (rustls' default
                // treats an unknown revocation status as a failure).
                if let Some(path) = &tls.ca_crl {
                    b = b.with_crls(store.crls(path)?);
                }
                Some(b.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
            };
            builder.with_client_cert_verifier(Arc::new(ClientVerifier {
                chain,
                checks: PeerChecks::new(
                    &tls.subject_alt_names,
                    &tls.verify_certificate_hash,
                    &tls.verify_certificate_spki,
                ),
                mandatory: auth == ClientAuth::Required,
                algorithms: provider.signature_verification_algorithms,
            }))
        }
    };
    let keys = tls
        .certificates
        .iter()
        .map(|c| store.certified_key(c))
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let mut config = builder.with_cert_resolver(Arc::new(Certificates(keys)));
    config.alpn_protocols = if tls.client_ca == Some(CaSource::Mesh) {
        // ISTIO_MUTUAL: mesh clients offer Istio's ALPN names.
        MESH_ALPN.iter().map(|p| p.to_vec()).collect()
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// ALPN of a mesh inbound chain: HTTP first; `istio-peer-exchange` and `istio` so that a TCP
/// client offering only those (Istio's TCP ALPN) is not refused.
const MESH_ALPN: [&[u8]; 4] = [b"h2", b"http/1.1", b"istio-peer-exchange", b"istio"];

/// Builds the server config terminating mesh mTLS on an inbound listener: the workload
/// certificate, a client certificate required and verified against the mesh roots, whose URI
/// SAN names one of `trust_domains`; TLS 1.2 (or `min`) to 1.3.
pub(crate) fn build_mesh(
    trust_domains: &[String],
    min: TlsVersion,
    store: &CertStore,
    base: &Arc<CryptoProvider>,
) -> Result<ServerConfig, TlsError> {
    let roots = store.roots(&CaSource::Mesh)?;
    let key = store.certified_key(&CertificateSource::Mesh)?;
    let chain = WebPkiClientVerifier::builder_with_provider(roots, base.clone())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(base.clone())
        .with_protocol_versions(&versions(min, TlsVersion::V1_3))
        .map_err(TlsError::Config)?
        .with_client_cert_verifier(Arc::new(ClientVerifier {
            chain: Some(chain),
            checks: PeerChecks::mesh(trust_domains),
            mandatory: true,
            algorithms: base.signature_verification_algorithms,
        }))
        .with_cert_resolver(Arc::new(Certificates(vec![key])));
    config.alpn_protocols = MESH_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
