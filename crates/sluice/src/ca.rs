//! `sluice ca` (CA material in Istio's plug-in layout) and the workload identity of `sluice run`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use sluice_identity::init::{init_intermediate, init_root, InitOptions};
use sluice_identity::{CaDir, Issuer, RemoteIssuer, SpiffeId, WorkloadCert, DEFAULT_TTL};
use tokio::sync::{mpsc, watch};

/// `sluice ca`.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: CaCommand,
}

/// `sluice ca` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Write a new CA in Istio's plug-in layout (ca-cert.pem, ca-key.pem, root-cert.pem,
    /// cert-chain.pem): a self-signed root, or with `--root` an intermediate signed by it.
    Init(InitArgs),
    /// Serve the CA to workloads over HTTPS (`POST /v1/certificate`), authenticating them with
    /// Kubernetes TokenReviews.
    Serve(crate::ca_serve::ServeArgs),
}

/// `sluice ca init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory to write (created when absent).
    pub dir: PathBuf,
    /// Sign an intermediate with the `root-cert.pem` and `root-key.pem` of this directory (a
    /// root written by `sluice ca init`, or by Istio's `tools/certs` Makefile).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Replace files that already exist.
    #[arg(long)]
    pub force: bool,
    /// Trust domain, written as the CA's organization.
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Validity (default: 10 years for a root, 5 for an intermediate, which never outlives
    /// its root).
    #[arg(long, value_parser = sluice_tools::parse_duration)]
    pub validity: Option<std::time::Duration>,
}

/// The workload identity flags of `sluice run`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Issue this proxy's workload certificate from the CA in this directory (Istio's plug-in
    /// layout, re-read when its files change).
    #[arg(long = "ca", conflicts_with = "ca_address")]
    pub ca_dir: Option<PathBuf>,
    /// Get this proxy's workload certificate from a `sluice ca serve` at this URL
    /// (`https://sluice-ca.istio-system.svc:15012`).
    #[arg(long, requires = "ca_root")]
    pub ca_address: Option<String>,
    /// PEM roots that the `--ca-address` server's certificate chains to (its `root-cert.pem`).
    #[arg(long)]
    pub ca_root: Option<PathBuf>,
    /// The projected service account token sent to `--ca-address` (audience `istio-ca`).
    #[arg(long, default_value = sluice_identity::DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
    /// Trust domain of workload identities (MeshConfig `trustDomain`).
    #[arg(long, default_value = "cluster.local")]
    pub trust_domain: String,
    /// Service account of this proxy's workload (`spiffe://<td>/ns/<namespace>/sa/<this>`).
    #[arg(long, default_value = "default")]
    pub service_account: String,
}

/// Runs `sluice ca` and returns what to print.
pub async fn run(args: &CaArgs) -> anyhow::Result<String> {
    match &args.command {
        CaCommand::Init(a) => init(a),
        CaCommand::Serve(a) => {
            crate::ca_serve::serve(a).await?;
            Ok(String::new())
        }
    }
}

fn init(a: &InitArgs) -> anyhow::Result<String> {
    let opts = InitOptions {
        trust_domain: a.trust_domain.clone(),
        validity: a.validity,
        force: a.force,
    };
    let (what, written) = match &a.root {
        Some(root) => ("intermediate CA", init_intermediate(&a.dir, root, &opts)?),
        None => ("root CA", init_root(&a.dir, &opts)?),
    };
    let mut out = format!("wrote a new {what} in {}:\n", a.dir.display());
    for p in written {
        out.push_str(&format!("  {}\n", p.display()));
    }
    Ok(out)
}

/// Who issues this proxy's certificate, if anyone.
fn issuer(args: &IdentityArgs) -> anyhow::Result<Option<Arc<dyn Issuer>>> {
    if let Some(dir) = &args.ca_dir {
        let ca = CaDir::open(dir, DEFAULT_TTL)
            .with_context(|| format!("cannot use the CA in {}", dir.display()))?;
        return Ok(Some(Arc::new(ca)));
    }
    if let Some(address) = &args.ca_address {
        let root_file = args
            .ca_root
            .as_ref()
            .context("--ca-address needs --ca-root")?;
        let root = std::fs::read(root_file)
            .with_context(|| format!("cannot read {}", root_file.display()))?;
        let remote = RemoteIssuer::new(address, &root, args.token_file.clone())?;
        return Ok(Some(Arc::new(remote)));
    }
    Ok(None)
}

/// Starts issuing and rotating this proxy's workload certificate (identity
/// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`) when a CA is configured;
/// returns once the first certificate is issued, with a channel that always holds the newest.
/// A remote CA that cannot be reached is retried (with backoff) until it answers, like Istio's
/// agent waits for istiod. A remote CA issues the identity of the token's service account,
/// whatever `--namespace`/`--service-account` say.
pub async fn spawn_identity(
    args: &IdentityArgs,
    namespace: &str,
) -> anyhow::Result<Option<watch::Receiver<Arc<WorkloadCert>>>> {
    let Some(issuer) = issuer(args)? else {
        return Ok(None);
    };
    let id = SpiffeId::new(&args.trust_domain, namespace, &args.service_account);
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(sluice_identity::rotate(issuer, id.clone(), move |cert| {
        let _ = tx.send(Arc::new(cert));
    }));
    let first = rx
        .recv()
        .await
        .with_context(|| format!("no workload certificate for {id}"))?;
    let (latest_tx, latest_rx) = watch::channel(first);
    tokio::spawn(async move {
        while let Some(cert) = rx.recv().await {
            latest_tx.send_replace(cert);
        }
    });
    Ok(Some(latest_rx))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parses(argv: &[&str]) -> bool {
        Cli::try_parse_from(argv).is_ok()
    }

    #[test]
    fn ca_flags_go_together() {
        assert!(parses(&["sluice", "ca", "init", "d"]));
        assert!(parses(&[
            "sluice",
            "ca",
            "init",
            "d",
            "--root",
            "r",
            "--force",
            "--validity",
            "720h"
        ]));
        assert!(
            !parses(&["sluice", "ca", "serve"]),
            "a CA source is required"
        );
        assert!(!parses(&[
            "sluice",
            "ca",
            "serve",
            "--ca",
            "d",
            "--ca-secret",
            "cacerts"
        ]));
        assert!(
            !parses(&["sluice", "run", "c/", "--ca-address", "https://ca:15012"]),
            "needs --ca-root"
        );
        assert!(!parses(&[
            "sluice",
            "run",
            "c/",
            "--ca",
            "d",
            "--ca-address",
            "https://ca:15012",
            "--ca-root",
            "r"
        ]));
        let Command::Ca(CaArgs {
            command: CaCommand::Serve(s),
        }) = Cli::try_parse_from([
            "sluice",
            "ca",
            "serve",
            "--ca-secret",
            "cacerts",
            "--dns-name",
            "a",
            "--dns-name",
            "b",
        ])
        .unwrap()
        .command
        else {
            panic!("not ca serve");
        };
        assert_eq!(s.dns_names, vec!["a", "b"]);
        assert_eq!(s.listen.port(), 15012);
        assert_eq!(s.trust_domain, "cluster.local");
    }

    #[tokio::test]
    async fn a_ca_directory_gives_the_workload_its_identity() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let a = InitArgs {
            dir: dir.clone(),
            root: None,
            force: false,
            trust_domain: "cluster.local".into(),
            validity: None,
        };
        let out = init(&a).unwrap();
        assert!(out.contains("root CA"), "{out}");
        let args = IdentityArgs {
            ca_dir: Some(dir),
            ca_address: None,
            ca_root: None,
            token_file: PathBuf::from(sluice_identity::DEFAULT_TOKEN_FILE),
            trust_domain: "example.org".into(),
            service_account: "reviews".into(),
        };
        let rx = spawn_identity(&args, "bookinfo").await.unwrap().unwrap();
        assert_eq!(
            rx.borrow().id.to_string(),
            "spiffe://example.org/ns/bookinfo/sa/reviews"
        );
        let none = IdentityArgs {
            ca_dir: None,
            ..args
        };
        assert!(spawn_identity(&none, "bookinfo").await.unwrap().is_none());
    }
}
