//! Test certificates (a CA and leaves it signs, written as PEM files) and a TLS client that
//! reports what the handshake negotiated.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;

/// A certificate authority for tests.
pub struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

/// A leaf certificate and its key, in PEM.
#[derive(Clone)]
pub struct Leaf {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PEM, PKCS#8).
    pub key_pem: String,
    /// Certificate (DER), to compare with what a handshake presented.
    pub der: CertificateDer<'static>,
}

impl TestCa {
    /// A new self-signed CA (ECDSA P-256) named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A leaf for `names` (DNS names, IPs or `spiffe://` URIs), usable by servers and clients.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        self.issue_with(names, &rcgen::PKCS_ECDSA_P256_SHA256)
    }

    /// A leaf for `names` with this serial number (to revoke it in a [`TestCa::crl`]).
    pub fn issue_serial(&self, names: &[&str], serial: u64) -> Leaf {
        self.issue_inner(names, &rcgen::PKCS_ECDSA_P256_SHA256, Some(serial))
    }

    /// A CRL (PEM) of this CA revoking the leaves with these serial numbers.
    pub fn crl(&self, revoked: &[u64]) -> String {
        let params = CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|n| RevokedCertParams {
                    serial_number: SerialNumber::from(*n),
                    revocation_time: date_time_ymd(2024, 1, 1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(&issuer).unwrap().pem().unwrap()
    }

    /// A leaf signed with a key of the given algorithm (e.g. `rcgen::PKCS_RSA_SHA256`).
    pub fn issue_with(&self, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> Leaf {
        self.issue_inner(names, alg, None)
    }

    fn issue_inner(
        &self,
        names: &[&str],
        alg: &'static rcgen::SignatureAlgorithm,
        serial: Option<u64>,
    ) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.serial_number = serial.map(SerialNumber::from);
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                if let Ok(ip) = n.parse() {
                    SanType::IpAddress(ip)
                } else if n.contains("://") {
                    SanType::URI(n.to_string().try_into().unwrap())
                } else {
                    SanType::DnsName(n.to_string().try_into().unwrap())
                }
            })
            .collect();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = if alg == &rcgen::PKCS_RSA_SHA256 {
            rsa_key()
        } else {
            KeyPair::generate_for(alg).unwrap()
        };
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// The CA certificate (DER).
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap()
    }

    /// Writes the CA certificate as `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, &self.pem).unwrap();
        p
    }
}

/// An RSA 2048 key (rcgen cannot generate RSA keys with ring; openssl can).
fn rsa_key() -> KeyPair {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl (Debian's openssl package) generates RSA keys");
    KeyPair::from_pem(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

impl Leaf {
    /// The certificate chain (the leaf alone), DER.
    pub fn chain_der(&self) -> Vec<CertificateDer<'static>> {
        vec![self.der.clone()]
    }

    /// The private key, DER.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }

    /// Writes `dir/<name>.crt` and `dir/<name>.key` (atomically, as a rotation would).
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        for (path, text) in [(&key, &self.key_pem), (&cert, &self.cert_pem)] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (cert, key)
    }
}

/// How a TLS client connects.
#[derive(Clone)]
pub struct TlsClient {
    /// Trusted CA (PEM).
    pub ca_pem: String,
    /// SNI (and, unless `host` is set, the Host header).
    pub sni: String,
    /// Host header when it differs from the SNI.
    pub host: Option<String>,
    /// Client certificate.
    pub client: Option<Leaf>,
    /// ALPN offered.
    pub alpn: Vec<&'static str>,
    /// Check the server certificate against the SNI (mesh peers are named by their SPIFFE
    /// identity instead, and the SNI is `outbound_.…`): when false only the chain is checked.
    pub verify_name: bool,
}

/// What a request over TLS got.
#[derive(Debug)]
pub struct TlsReply {
    /// Status.
    pub status: StatusCode,
    /// Body as text.
    pub body: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// ALPN negotiated.
    pub alpn: Option<String>,
    /// The server's leaf certificate.
    pub peer: Option<CertificateDer<'static>>,
}

impl TlsClient {
    /// A client trusting `ca` and naming `sni`, offering `http/1.1`.
    pub fn new(ca: &str, sni: &str) -> Self {
        TlsClient {
            ca_pem: ca.to_string(),
            sni: sni.to_string(),
            host: None,
            client: None,
            alpn: vec!["http/1.1"],
            verify_name: true,
        }
    }

    fn config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let b = if self.verify_name {
            b.with_root_certificates(roots)
        } else {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    inner: rustls::client::WebPkiServerVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider,
                    )
                    .build()
                    .unwrap(),
                }))
        };
        let mut c = match &self.client {
            Some(l) => b
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(l.cert_pem.as_bytes())
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_slice(l.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        c.alpn_protocols = self.alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
        c
    }

    /// Connects and completes the handshake.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        self.handshake(tcp).await
    }

    /// Connects to the unix domain socket `path` and completes the handshake.
    pub async fn connect_unix(
        &self,
        path: &Path,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::UnixStream>> {
        let stream = crate::unix::connect(path).await?;
        self.handshake(stream).await
    }

    /// The client side of a TLS handshake over `io`.
    async fn handshake<S>(&self, io: S) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(self.sni.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        tokio::time::timeout(
            Duration::from_secs(10),
            tokio_rustls::TlsConnector::from(Arc::new(self.config())).connect(name, io),
        )
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
    }

    /// One `GET path` over a new connection (HTTP/2 when `h2` was negotiated). Errors are
    /// handshake or request failures (a server refusing a client certificate after a TLS 1.3
    /// handshake shows up on the first read).
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<TlsReply, String> {
        let tls = self.connect(addr).await.map_err(|e| e.to_string())?;
        self.request(tls, path).await
    }

    /// One `GET path` over a new connection to the unix domain socket `socket`.
    pub async fn get_unix(&self, socket: &Path, path: &str) -> Result<TlsReply, String> {
        let tls = self.connect_unix(socket).await.map_err(|e| e.to_string())?;
        self.request(tls, path).await
    }

    /// One `GET path` on an established TLS connection.
    async fn request<S>(
        &self,
        tls: tokio_rustls::client::TlsStream<S>,
        path: &str,
    ) -> Result<TlsReply, String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let alpn = tls
            .get_ref()
            .1
            .alpn_protocol()
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.clone().into_owned());
        let host = self.host.clone().unwrap_or_else(|| self.sni.clone());
        let io = TokioIo::new(tls);
        let resp = if alpn.as_deref() == Some("h2") {
            let (mut tx, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = Request::get(format!("https://{host}{path}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            tx.send_request(req).await.map_err(|e| e.to_string())?
        } else {
            let (mut tx, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let req = Request::get(path)
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .unwrap();
            tx.send_request(req).await.map_err(|e| e.to_string())?
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(TlsReply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            headers,
            alpn,
            peer,
        })
    }
}

/// Verifies the server's chain but not its name (a mesh peer's SNI is not in its certificate).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `openssl s_client ARGS`, stdin held open for a moment so that TLS 1.3 alerts sent after the
/// handshake are printed; returns stdout and stderr together.
pub async fn s_client(args: &[&str]) -> String {
    let mut child = tokio::process::Command::new("openssl")
        .arg("s_client")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl (Debian's openssl package; .ci/run installs it)");
    let stdin = child.stdin.take();
    tokio::time::sleep(Duration::from_millis(700)).await;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("openssl s_client did not exit")
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
