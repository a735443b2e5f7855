//! What can go wrong in the webhook server.

/// Errors of the webhook server and its handlers.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The serving certificate or key could not be used.
    #[error("serving certificate: {0}")]
    Certificate(#[from] sluice_proxy::tls::CertError),
    /// The TLS configuration could not be built.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The body is not an `admission.k8s.io/v1` AdmissionReview with a request.
    #[error("not an AdmissionReview request: {0}")]
    BadReview(String),
    /// The namespace of a pod could not be read from the API server.
    #[error("cannot read namespace {namespace}: {source}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The Kubernetes client could not be created.
    #[error("Kubernetes client: {0}")]
    Client(String),
}
