//! `sluice webhook`: its flags and the function that runs it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use sluice_kube::inject::{InjectOptions, DEFAULT_IMAGE};

use crate::cert::{server_config, FileCert};
use crate::error::WebhookError;
use crate::inject::{Injector, NamespaceLabels};
use crate::server::{bind, serve, Webhook};

/// `sluice webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebhookArgs {
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:15017")]
    pub listen: SocketAddr,
    /// Serving certificate chain (PEM), re-read when the file changes.
    #[arg(long)]
    pub cert: PathBuf,
    /// Serving private key (PEM), re-read when the file changes.
    #[arg(long)]
    pub key: PathBuf,
    /// The webhook's own namespace, never injected into.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Kubernetes API URL (default: in-cluster config or `KUBECONFIG`).
    #[arg(long)]
    pub kube_api: Option<String>,
    /// Sidecar and init container image.
    #[arg(long, env = "SLUICE_PROXY_IMAGE", default_value = DEFAULT_IMAGE)]
    pub image: String,
    /// Image pull policy of the injected containers.
    #[arg(long, default_value = "IfNotPresent")]
    pub image_pull_policy: String,
    /// The cluster CA (`sluice ca serve`) injected sidecars get their certificates from (as
    /// `sluice inject --ca-address`).
    #[arg(long)]
    pub ca_address: Option<String>,
}

impl WebhookArgs {
    /// The injection options these flags describe (the rest as `sluice inject`'s defaults).
    pub fn inject_options(&self) -> InjectOptions {
        InjectOptions {
            image: self.image.clone(),
            image_pull_policy: self.image_pull_policy.clone(),
            ca_address: self.ca_address.clone(),
            ..InjectOptions::default()
        }
    }
}

/// Runs the webhook server until the process ends.
pub async fn run(args: WebhookArgs) -> Result<(), WebhookError> {
    let client = sluice_kube::connect(args.kube_api.as_deref())
        .await
        .map_err(|e| WebhookError::Client(format!("{e:#}")))?;
    let cert = FileCert::load(&args.cert, &args.key)?;
    cert.spawn_refresh();
    let tls = server_config(cert)?;
    let injector = Injector::new(
        NamespaceLabels::new(client),
        args.namespace.clone(),
        args.inject_options(),
    );
    let listener = bind(args.listen).await?;
    tracing::info!(listen = %args.listen, "serving admission webhooks (/inject, /validate)");
    serve(listener, tls, Arc::new(Webhook::new(injector))).await;
    Ok(())
}
