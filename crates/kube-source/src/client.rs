//! The Kubernetes client: one TLS crypto provider, and in-cluster config, `KUBECONFIG` or an
//! explicit URL (the tests' fake API server goes through the same path).

use anyhow::Context as _;
use kube::Client;

/// Installs rustls' `ring` provider as the process default (once; later calls do nothing).
///
/// kube's TLS stack panics at the first connection when no provider, or more than one, is
/// available without a default; installing one at start-up avoids that.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A client for `api_url` (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`), else for the
/// in-cluster service account or the `KUBECONFIG` context.
pub async fn connect(api_url: Option<&str>) -> anyhow::Result<Client> {
    install_crypto_provider();
    let config = match api_url {
        Some(url) => kube::Config::new(
            url.parse()
                .with_context(|| format!("invalid Kubernetes API URL `{url}`"))?,
        ),
        None => kube::Config::infer().await.context(
            "no Kubernetes configuration: not running in a pod and no usable KUBECONFIG",
        )?,
    };
    Client::try_from(config).context("cannot create the Kubernetes client")
}
