//! `sluice ca serve`: the cluster's CA. Signs workload CSRs over HTTPS for callers whose
//! projected service account token a Kubernetes TokenReview accepts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Secret;
use sluice_identity::api::{ServiceAccount, TOKEN_AUDIENCE};
use sluice_identity::{
    AuthFuture, Authenticator, CaBundle, CaDir, CaServer, CaSource, DEFAULT_TTL,
};
use sluice_kube::token_review::{review_token, TokenReviewOutcome};

/// How often a `cacerts` Secret is read again.
const SECRET_POLL: Duration = Duration::from_secs(30);

/// `sluice ca serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["ca_dir", "ca_secret"])))]
pub struct ServeArgs {
    /// Sign with the CA in this directory (Istio's plug-in layout, re-read when it changes).
    #[arg(long = "ca")]
    pub ca_dir: Option<PathBuf>,
    /// Sign with the CA in this Secret (Istio's `cacerts` layout), read through the API.
    #[arg(long)]
    pub ca_secret: Option<String>,
    /// Namespace of `--ca-secret`.
    #[arg(long, env = "POD_NAMESPACE", default_value = "istio-system")]
    pub ca_secret_namespace: String,
    /// Address to serve HTTPS on.
    #[arg(long, default_value = "0.0.0.0:15012")]
    pub listen: SocketAddr,
    /// Names clients reach the CA by, in its serving certificate (DNS names or IPs; repeatable).
    #[arg(long = "dns-name", default_value = "sluice-ca.istio-system.svc")]
    pub dns_names: Vec<String>,
    /// Trust domain of the identities issued.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Kubernetes API URL (default: in-cluster config or KUBECONFIG).
    #[arg(long)]
    pub kube_api: Option<String>,
}

/// Authenticates tokens with a TokenReview for the `istio-ca` audience.
struct TokenReviewer(kube::Client);

impl Authenticator for TokenReviewer {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            match review_token(&self.0, token, TOKEN_AUDIENCE).await {
                Ok(TokenReviewOutcome::Authenticated(user)) => ServiceAccount::from_username(&user)
                    .ok_or_else(|| format!("{user} is not a service account")),
                Ok(TokenReviewOutcome::Refused(why)) => Err(why),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), "TokenReview failed");
                    Err(format!("{e:#}"))
                }
            }
        })
    }
}

/// A CA read from a Secret, replaced when a later read finds new, valid data.
struct SecretCa(Mutex<Arc<CaBundle>>);

impl CaSource for SecretCa {
    fn bundle(&self) -> Arc<CaBundle> {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

async fn read_secret(
    api: &kube::Api<Secret>,
    name: &str,
    origin: &str,
) -> anyhow::Result<(CaBundle, BTreeMap<String, Vec<u8>>)> {
    let secret = api
        .get(name)
        .await
        .with_context(|| format!("cannot read {origin}"))?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let bundle = CaBundle::from_files(&data, origin)?;
    Ok((bundle, data))
}

/// Stops the Secret's polling when the server stops.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

async fn ca_source(
    args: &ServeArgs,
    client: &kube::Client,
) -> anyhow::Result<(Arc<dyn CaSource>, AbortOnDrop)> {
    if let Some(dir) = &args.ca_dir {
        let ca = CaDir::open(dir, DEFAULT_TTL)
            .with_context(|| format!("cannot use the CA in {}", dir.display()))?;
        return Ok((Arc::new(ca), AbortOnDrop(None)));
    }
    let name = args
        .ca_secret
        .clone()
        .context("--ca or --ca-secret is required")?;
    let origin = format!("secret {}/{name}", args.ca_secret_namespace);
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), &args.ca_secret_namespace);
    let (bundle, mut data) = read_secret(&api, &name, &origin).await?;
    let source = Arc::new(SecretCa(Mutex::new(Arc::new(bundle))));
    let s = source.clone();
    let poll = tokio::spawn(async move {
        loop {
            tokio::time::sleep(SECRET_POLL).await;
            let Ok(secret) = api.get(&name).await else {
                continue;
            };
            let next: BTreeMap<String, Vec<u8>> = secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            if next == data {
                continue;
            }
            match CaBundle::from_files(&next, &origin) {
                Ok(b) => {
                    tracing::info!(%origin, "CA Secret changed; signing with the new CA");
                    if let Ok(mut g) = s.0.lock() {
                        *g = Arc::new(b);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CA Secret changed but is unusable; keeping the previous CA")
                }
            }
            data = next;
        }
    });
    Ok((source, AbortOnDrop(Some(poll))))
}

/// How often the root ConfigMaps are checked (new namespaces, a rotated root).
const ROOT_PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves the CA on `listener` until the returned future is dropped.
pub async fn serve_on(args: &ServeArgs, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let client = sluice_kube::connect(args.kube_api.as_deref()).await?;
    let (ca, _poll) = ca_source(args, &client).await?;
    // Injected sidecars verify the CA (and their peers) with the root mounted from this
    // ConfigMap; it is kept in every namespace, as istiod does.
    let roots = ca.clone();
    let _publisher = AbortOnDrop(Some(sluice_kube::root_cert::spawn_publisher(
        client.clone(),
        move || sluice_identity::pem_certs(roots.bundle().roots()),
        ROOT_PUBLISH_EVERY,
    )));
    let server = Arc::new(CaServer {
        ca,
        auth: Arc::new(TokenReviewer(client)),
        trust_domain: args.trust_domain.clone(),
    });
    tracing::info!(addr = %listener.local_addr()?, names = ?args.dns_names, "CA serving");
    server.serve(listener, args.dns_names.clone()).await?;
    Ok(())
}

/// Binds `--listen` and serves the CA.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    serve_on(args, listener).await
}
