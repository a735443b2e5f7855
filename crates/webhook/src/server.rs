//! The HTTPS server: TLS handshakes with the file certificate, HTTP/1.1 or HTTP/2, and the
//! routes `/inject`, `/validate` and `/healthz`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::error::WebhookError;
use crate::inject::Injector;
use crate::review;

/// Largest review accepted (the API server's own request limit is 3 MiB of object).
const MAX_BODY: usize = 8 << 20;

/// What the server answers with.
#[derive(Debug, Clone)]
pub struct Webhook {
    injector: Injector,
}

impl Webhook {
    /// Serves injection with `injector` and validation.
    pub fn new(injector: Injector) -> Self {
        Webhook { injector }
    }

    /// Answers one HTTP request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/healthz" | "/ready") => text(StatusCode::OK, "ok"),
            (Method::POST, "/inject" | "/validate") => {
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) => return text(StatusCode::BAD_REQUEST, &format!("body: {e}")),
                };
                self.review(&path, &body).await
            }
            (_, "/inject" | "/validate") => text(StatusCode::METHOD_NOT_ALLOWED, "POST only"),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    async fn review(&self, path: &str, body: &[u8]) -> Response<Full<Bytes>> {
        let req = match review::parse(body) {
            Ok(r) => r,
            Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let answer = if path == "/inject" {
            self.injector.review(&req).await
        } else {
            Ok(crate::validate::validate(&req))
        };
        match answer {
            Ok(response) => {
                let mut r = Response::new(Full::new(Bytes::from(review::encode(response))));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                r
            }
            Err(e) => {
                tracing::warn!(error = %e, "admission review failed");
                text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string())
            }
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r
}

/// Binds `addr`.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, WebhookError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| WebhookError::Bind { addr, source })
}

/// Accepts connections on `listener` until the task is dropped; each connection runs on its own
/// task, and a failed handshake only ends that connection.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, webhook: Arc<Webhook>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let webhook = webhook.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, std::convert::Infallible>(webhook.handle(req).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
