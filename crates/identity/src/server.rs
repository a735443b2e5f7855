//! The CA server: signs workload CSRs over HTTPS for callers authenticated by their service
//! account token, issuing only the caller's own identity (as istiod does).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::api::{
    CertificateRequest, CertificateResponse, ErrorResponse, ServiceAccount, CERTIFICATE_PATH,
};
use crate::serving::ServingCert;
use crate::{pem_certs, CaSource, SpiffeId, DEFAULT_TTL};

/// Longest certificate lifetime a caller may ask for (Istio's `MAX_WORKLOAD_CERT_TTL`, 90 days).
pub const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Shortest lifetime granted.
const MIN_TTL: Duration = Duration::from_secs(60);
/// Largest request body accepted (a CSR is about 500 bytes).
const MAX_BODY: usize = 64 * 1024;

/// What checking a bearer token returns.
pub type AuthFuture<'a> = Pin<Box<dyn Future<Output = Result<ServiceAccount, String>> + Send + 'a>>;

/// Authenticates a caller's bearer token (a Kubernetes TokenReview in a cluster).
pub trait Authenticator: Send + Sync {
    /// The service account the token belongs to, or why it was refused.
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// The CA service.
pub struct CaServer {
    /// The CA that signs.
    pub ca: Arc<dyn CaSource>,
    /// Who checks tokens.
    pub auth: Arc<dyn Authenticator>,
    /// Trust domain of the identities issued.
    pub trust_domain: String,
}

type Body = Full<Bytes>;

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(
        status,
        &ErrorResponse {
            error: message.into(),
        },
    )
}

impl CaServer {
    /// Answers one HTTP request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if req.uri().path() != CERTIFICATE_PATH {
            return error(StatusCode::NOT_FOUND, "not found");
        }
        if req.method() != Method::POST {
            return error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        }
        let token = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        let Some(token) = token else {
            return error(StatusCode::UNAUTHORIZED, "no bearer token");
        };
        let sa = match self.auth.authenticate(&token).await {
            Ok(sa) => sa,
            Err(why) => {
                tracing::info!(reason = %why, "certificate request refused: token not authenticated");
                return error(
                    StatusCode::UNAUTHORIZED,
                    format!("token not authenticated: {why}"),
                );
            }
        };
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the body: {e}"),
                )
            }
        };
        let request: CertificateRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
        };
        let ttl = request.validity_duration.map_or(DEFAULT_TTL, |s| {
            Duration::from_secs(s).clamp(MIN_TTL, MAX_TTL)
        });
        let id = SpiffeId::new(&self.trust_domain, &sa.namespace, &sa.name);
        let ca = self.ca.bundle();
        match ca.sign_csr(&request.csr, &id, ttl) {
            Ok(chain) => {
                tracing::info!(identity = %id, ttl_s = ttl.as_secs(), "workload certificate issued");
                json(
                    StatusCode::OK,
                    &CertificateResponse {
                        cert_chain: chain
                            .iter()
                            .map(|c| pem_certs(std::slice::from_ref(c)))
                            .collect(),
                        root_certs: ca
                            .roots()
                            .iter()
                            .map(|c| pem_certs(std::slice::from_ref(c)))
                            .collect(),
                    },
                )
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }

    /// Serves HTTPS on `listener` with a certificate for `dns_names` issued from the CA, until
    /// the task is dropped; a CA directory is re-read when its files change.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        dns_names: Vec<String>,
    ) -> Result<(), crate::IdentityError> {
        let serving = Arc::new(ServingCert::new(self.ca.clone(), dns_names)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| crate::IdentityError::sign("configure TLS", e))?
            .with_no_client_auth()
            .with_cert_resolver(serving);
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let ca = self.ca.clone();
        let poll = tokio::spawn(async move {
            loop {
                tokio::time::sleep(crate::rotate::CA_POLL).await;
                ca.refresh();
            }
        });
        let _stop_poll = AbortOnDrop(poll);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let server = self.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    }
}

/// Stops a background task when the server's future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
