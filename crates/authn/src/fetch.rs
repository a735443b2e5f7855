//! Reading a key set from its origin: an HTTP(S) GET (after OpenID discovery when the rule
//! names no keys) or a file, all within the rule's timeout.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::key_set::{JwksError, KeySet};
use crate::slot::Origin;

/// Largest key set or discovery document accepted.
const MAX_BODY: usize = 1 << 20;

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL is not an absolute `http(s)` URL with a host.
    #[error("invalid URL {0:?}")]
    InvalidUrl(String),
    /// The whole fetch took longer than the rule's timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting, the TLS handshake or reading the file failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with a status other than 200.
    #[error("status {0}")]
    Status(StatusCode),
    /// The body could not be read or was larger than 1 MiB.
    #[error("body: {0}")]
    Body(String),
    /// The discovery document has no string `jwks_uri`.
    #[error("discovery document without jwks_uri")]
    NoJwksUri,
    /// The key set gave no usable key.
    #[error("{0}")]
    Jwks(#[from] JwksError),
    /// No TLS trust anchors could be loaded.
    #[error("tls: {0}")]
    Tls(String),
}

/// Performs fetches; holds the TLS client configuration, built on first HTTPS use.
pub(crate) struct Fetcher {
    tls: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl Fetcher {
    /// A fetcher trusting the platform's root certificates.
    pub fn native() -> Self {
        Self {
            tls: OnceLock::new(),
        }
    }

    /// A fetcher trusting what `config` trusts.
    pub fn with_tls(config: Arc<ClientConfig>) -> Self {
        let tls = OnceLock::new();
        let _ = tls.set(Ok(config));
        Self { tls }
    }

    /// Reads and parses the key set of `origin`; inline sets are not fetched.
    pub async fn fetch(&self, origin: &Origin, timeout: Duration) -> Result<KeySet, FetchError> {
        match origin {
            Origin::Inline(json) => Ok(KeySet::parse(json)?),
            Origin::File(path) => {
                let text = tokio::fs::read_to_string(path).await?;
                Ok(KeySet::parse(&text)?)
            }
            Origin::Http(url) => {
                let body = self.get(url, timeout).await?;
                Ok(KeySet::parse(&String::from_utf8_lossy(&body))?)
            }
            Origin::Discovery(issuer) => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.trim_end_matches('/')
                );
                let body = self.get(&url, timeout).await?;
                let doc: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|_| FetchError::NoJwksUri)?;
                let jwks_uri = doc
                    .get("jwks_uri")
                    .and_then(|v| v.as_str())
                    .ok_or(FetchError::NoJwksUri)?;
                let body = self.get(jwks_uri, timeout).await?;
                Ok(KeySet::parse(&String::from_utf8_lossy(&body))?)
            }
        }
    }

    /// GETs `url`, requiring a 200, within `timeout`.
    async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, FetchError> {
        tokio::time::timeout(timeout, self.get_unbounded(url))
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    async fn get_unbounded(&self, url: &str) -> Result<Bytes, FetchError> {
        let invalid = || FetchError::InvalidUrl(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| invalid())?;
        let authority = uri.authority().ok_or_else(invalid)?.clone();
        let tls = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err(invalid()),
        };
        let host = authority.host();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare_host, port)).await?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = Request::get(path)
            .header(header::HOST, authority.as_str())
            .header(header::ACCEPT, "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|_| invalid())?;
        if !tls {
            return exchange(tcp, request).await;
        }
        let config = self.tls_config()?;
        let name = ServerName::try_from(bare_host.to_owned()).map_err(|_| invalid())?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        exchange(stream, request).await
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>, FetchError> {
        self.tls
            .get_or_init(native_tls_config)
            .clone()
            .map_err(FetchError::Tls)
    }
}

/// One HTTP/1.1 request on a fresh connection; key sets are fetched too rarely to pool.
async fn exchange<S>(stream: S, request: Request<Empty<Bytes>>) -> Result<Bytes, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let driver = tokio::spawn(connection);
    let result = async {
        let response = sender.send_request(request).await?;
        if response.status() != StatusCode::OK {
            return Err(FetchError::Status(response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Body(e.to_string()))?;
        Ok(body.to_bytes())
    }
    .await;
    driver.abort();
    result
}

fn native_tls_config() -> Result<Arc<ClientConfig>, String> {
    let loaded = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        return Err("no trusted root certificates found".to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
