//! `rustls::ClientConfig` for upstream TLS origination (DestinationRule `tls` `SIMPLE` and
//! `MUTUAL`): the CA (or the system roots), the accepted SANs, a client certificate, ALPN.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme,
};
use sluice_config::tls::{CaSource, ClientTls};

use super::certs::CertStore;
use super::peer::PeerChecks;
use super::TlsError;

/// Server certificate verification: the chain against the CA, then either the SNI (no
/// `subjectAltNames`) or one of the accepted SANs; nothing at all with `insecureSkipVerify`.
#[derive(Debug)]
struct ServerVerifier {
    roots: Option<Arc<RootCertStore>>,
    checks: PeerChecks,
    /// Without accepted SANs, check the SNI against the certificate; mesh peers are never
    /// named by their SNI (`outbound_.…`), so for them the chain alone is checked.
    name_check: bool,
    algorithms: WebPkiSupportedAlgorithms,
    /// With `caCrl`: the same chain checked again with the revocation lists.
    revocation: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let parsed = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        if let Some(crls) = &self.revocation {
            // The chain (and now revocation) is checked before the name, so a name mismatch
            // here means the chain passed; names are checked below, our way.
            match crls.verify_server_cert(end_entity, intermediates, server_name, &[], now) {
                Ok(_)
                | Err(Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                )) => {}
                Err(e) => return Err(e),
            }
        }
        if self.checks.is_empty() {
            if self.name_check {
                rustls::client::verify_server_name(&parsed, server_name)?;
            }
        } else {
            self.checks.verify(end_entity)?;
        }
        Ok(ServerCertVerified::assertion())
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

/// Presents one client certificate whenever the server asks.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Builds the client config of `tls` from the store's current material.
pub(crate) fn build(
    tls: &ClientTls,
    store: &CertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<ClientConfig, TlsError> {
    let roots = if tls.insecure_skip_verify {
        None
    } else {
        Some(store.roots(&tls.ca)?)
    };
    let revocation = match (&roots, &tls.ca_crl) {
        (Some(roots), Some(path)) => Some(
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .with_crls(store.crls(path)?)
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?,
        ),
        _ => None,
    };
    let verifier = Arc::new(ServerVerifier {
        roots,
        revocation,
        checks: PeerChecks::new(&tls.subject_alt_names, &[], &[]),
        name_check: tls.ca != CaSource::Mesh,
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.certificate {
        Some(c) => {
            builder.with_client_cert_resolver(Arc::new(ClientCertificate(store.certified_key(c)?)))
        }
        None => builder.with_no_client_auth(),
    };
    let alpn: &[&[u8]] = match (tls.ca == CaSource::Mesh, tls.h2) {
        // Istio's client ALPN on mesh mTLS: the `istio-*` names let a PERMISSIVE server tell
        // mesh traffic from a non-mesh client's TLS.
        (true, true) => &[b"istio-h2", b"istio", b"h2"],
        (true, false) => &[b"istio-http/1.1", b"istio", b"http/1.1"],
        (false, true) => &[b"h2"],
        (false, false) => &[b"http/1.1"],
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
