//! The client of a remote CA (`sluice ca serve`): a new key and CSR per certificate, the
//! workload's projected service account token as proof of identity.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

use crate::api::{CertificateRequest, CertificateResponse, ErrorResponse, CERTIFICATE_PATH};
use crate::bundle::{parse_certs, parse_x509, to_system_time};
use crate::rotate::IssueFuture;
use crate::{IdentityError, Issuer, SpiffeId, WorkloadCert, DEFAULT_TTL};

/// Where a projected service account token is mounted in Istio's sidecars.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/tokens/istio-token";
/// Longest wait for one certificate request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest reply accepted.
const MAX_REPLY: usize = 1024 * 1024;

/// Issues workload certificates through a remote CA.
pub struct RemoteIssuer {
    address: String,
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    token_file: PathBuf,
    ttl: Duration,
}

impl std::fmt::Debug for RemoteIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIssuer")
            .field("address", &self.address)
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl RemoteIssuer {
    /// A client of the CA at `address` (`https://host:port`), trusting the PEM roots `ca_root`
    /// for its serving certificate and sending the token read from `token_file` (re-read for
    /// every request: projected tokens are rotated by the kubelet).
    pub fn new(address: &str, ca_root: &[u8], token_file: PathBuf) -> Result<Self, IdentityError> {
        let bad = |reason: String| IdentityError::Remote {
            address: address.to_string(),
            reason,
        };
        let uri: Uri = address
            .parse()
            .map_err(|e| bad(format!("not a URL: {e}")))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the CA address must be an https:// URL".into()));
        }
        let host = uri
            .host()
            .ok_or_else(|| bad("no host in the URL".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(443);
        let mut roots = rustls::RootCertStore::empty();
        for cert in parse_certs(ca_root).map_err(|p| bad(format!("CA root: {p}")))? {
            roots.add(cert).map_err(|e| bad(format!("CA root: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(RemoteIssuer {
            address: address.to_string(),
            host,
            port,
            tls: Arc::new(tls),
            token_file,
            ttl: DEFAULT_TTL,
        })
    }

    fn err(&self, reason: impl Into<String>) -> IdentityError {
        IdentityError::Remote {
            address: self.address.clone(),
            reason: reason.into(),
        }
    }

    async fn request(&self, id: &SpiffeId) -> Result<WorkloadCert, IdentityError> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|e| {
            self.err(format!(
                "cannot read the token {}: {e}",
                self.token_file.display()
            ))
        })?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| IdentityError::sign("generate a workload key", e))?;
        let csr = csr_for(id, &key)?;
        let body = serde_json::to_vec(&CertificateRequest {
            csr,
            validity_duration: Some(self.ttl.as_secs()),
        })
        .map_err(|e| self.err(e.to_string()))?;
        let reply = tokio::time::timeout(REQUEST_TIMEOUT, self.post(token.trim(), body))
            .await
            .map_err(|_| self.err("no reply in time"))??;
        let chain = reply
            .cert_chain
            .iter()
            .map(|p| parse_certs(p.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| self.err(format!("certChain: {p}")))?
            .concat();
        let roots = reply
            .root_certs
            .iter()
            .map(|p| parse_certs(p.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|p| self.err(format!("rootCerts: {p}")))?
            .concat();
        self.workload_cert(id, chain, roots, key)
    }

    fn workload_cert(
        &self,
        id: &SpiffeId,
        chain: Vec<CertificateDer<'static>>,
        roots: Vec<CertificateDer<'static>>,
        key: KeyPair,
    ) -> Result<WorkloadCert, IdentityError> {
        let leaf = chain.first().ok_or_else(|| self.err("empty certChain"))?;
        let parsed = parse_x509(leaf).map_err(|p| self.err(format!("leaf: {p}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(self.err("the certificate is not for the key that was sent"));
        }
        // The CA issues the token's identity, which is the one to report.
        let issued = leaf_id(&parsed).ok_or_else(|| self.err("no SPIFFE id in the certificate"))?;
        if &issued != id {
            tracing::warn!(asked = %id, issued = %issued, "the CA issued another identity than the one configured");
        }
        let not_before = to_system_time(parsed.validity().not_before.timestamp());
        let not_after = to_system_time(parsed.validity().not_after.timestamp());
        if roots.is_empty() {
            return Err(self.err("no rootCerts"));
        }
        Ok(WorkloadCert {
            id: issued,
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            roots,
            not_before,
            not_after,
        })
    }

    async fn post(&self, token: &str, body: Vec<u8>) -> Result<CertificateResponse, IdentityError> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| self.err(format!("cannot connect: {e}")))?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| self.err(format!("invalid server name: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| self.err(format!("TLS: {e}")))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| self.err(e.to_string()))?;
        let conn = tokio::spawn(conn);
        let req = Request::builder()
            .method(Method::POST)
            .uri(CERTIFICATE_PATH)
            .header(header::HOST, format!("{}:{}", self.host, self.port))
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| self.err(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| self.err(e.to_string()))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_REPLY)
            .collect()
            .await
            .map_err(|e| self.err(format!("reading the reply: {e}")))?
            .to_bytes();
        conn.abort();
        if status != StatusCode::OK {
            let why = serde_json::from_slice::<ErrorResponse>(&bytes)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            return Err(self.err(format!("{status}: {why}")));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.err(format!("invalid reply: {e}")))
    }
}

/// The SPIFFE id in a certificate's URI SAN.
fn leaf_id(cert: &x509_parser::certificate::X509Certificate<'_>) -> Option<SpiffeId> {
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::URI(u) => u.parse().ok(),
        _ => None,
    })
}

/// A CSR naming `id` (the CA uses the token's identity, but a CSR names what it asks for).
fn csr_for(id: &SpiffeId, key: &KeyPair) -> Result<String, IdentityError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    let uri = rcgen::string::Ia5String::try_from(id.to_string())
        .map_err(|e| IdentityError::sign("encode the SPIFFE id", e))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params
        .serialize_request(key)
        .and_then(|csr| csr.pem())
        .map_err(|e| IdentityError::sign("make a CSR", e))
}

impl Issuer for RemoteIssuer {
    fn issue<'a>(&'a self, id: &'a SpiffeId) -> IssueFuture<'a> {
        Box::pin(self.request(id))
    }
}
