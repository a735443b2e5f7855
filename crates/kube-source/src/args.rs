//! Flags of `sluice run --kubernetes`, flattened into the binary's `run` arguments.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::source::{KubeOptions, KubeSource, SecretFeed};

/// Kubernetes mode of `sluice run`.
#[derive(Debug, Clone, clap::Args)]
pub struct KubeArgs {
    /// Read config from the Kubernetes API (in-cluster config or KUBECONFIG) instead of files.
    #[arg(long)]
    pub kubernetes: bool,
    /// Watch only these namespaces (comma-separated; default: all).
    #[arg(long, value_delimiter = ',', requires = "kubernetes")]
    pub watch_namespaces: Vec<String>,
    /// Kubernetes API URL (e.g. `http://127.0.0.1:8001` behind `kubectl proxy`).
    #[arg(long, requires = "kubernetes")]
    pub kube_api: Option<String>,
    /// Longest wait for the first full sync with the API server.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub sync_timeout: Duration,
    /// Do not publish Kubernetes Events about invalid objects (they are still logged).
    #[arg(long)]
    pub no_events: bool,
    /// Add the pod's labels from this downward-API file to `--labels`.
    #[arg(long)]
    pub labels_file: Option<PathBuf>,
    /// Sidecar: listen on this port (0.0.0.0) for inbound connections redirected by `sluice
    /// iptables` and hand them to the app on 127.0.0.1 at their original port (Istio's 15006).
    #[arg(long)]
    pub inbound_port: Option<u16>,
    /// Sidecar: listen on this port (0.0.0.0) for outbound connections redirected by `sluice
    /// iptables` and route them by original destination (Istio's 15001); replaces the mesh
    /// listeners bound per service port.
    #[arg(long)]
    pub outbound_port: Option<u16>,
    /// This proxy's pod name: the reporting instance of its Events and its identity in the
    /// canary leader Lease.
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// This proxy's namespace, where the canary leader Lease (`sluice-canary-leader`) lives.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub pod_namespace: String,
    /// `leaseDurationSeconds` of the canary leader Lease (renewed every third of it; another
    /// proxy takes over once it has not been renewed for this long).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub canary_lease_duration: Duration,
    /// Never lead the canary analysis (follow the Canary statuses only); for sidecars, whose
    /// share of the traffic is too small to judge on.
    #[arg(long)]
    pub no_canary_lead: bool,
}

impl Default for KubeArgs {
    fn default() -> Self {
        KubeArgs {
            kubernetes: false,
            watch_namespaces: Vec::new(),
            kube_api: None,
            sync_timeout: Duration::from_secs(60),
            no_events: false,
            labels_file: None,
            inbound_port: None,
            outbound_port: None,
            pod_name: None,
            pod_namespace: "default".into(),
            canary_lease_duration: Duration::from_secs(15),
            no_canary_lead: false,
        }
    }
}

impl KubeArgs {
    /// The watch options these flags describe (the Event instance and the Lease holder are
    /// `--pod-name`, `$POD_NAME`, else the host name).
    pub fn options(&self) -> KubeOptions {
        let instance = self
            .pod_name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| std::env::var("POD_NAME").ok().filter(|n| !n.is_empty()))
            .unwrap_or_default();
        let identity = if instance.is_empty() {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| format!("sluice-{}", std::process::id()))
        } else {
            instance.clone()
        };
        KubeOptions {
            namespaces: self.watch_namespaces.clone(),
            events: !self.no_events,
            instance,
            secrets: None,
            lease: (!self.no_canary_lead).then(|| crate::canary::lease::LeaseSettings {
                name: crate::canary::lease::LEASE_NAME.into(),
                namespace: self.pod_namespace.clone(),
                identity,
                duration: self.canary_lease_duration,
            }),
        }
    }

    /// The labels of `--labels-file` (empty without it).
    pub fn file_labels(&self) -> anyhow::Result<BTreeMap<String, String>> {
        match &self.labels_file {
            Some(p) => crate::labels::read_labels_file(p),
            None => Ok(BTreeMap::new()),
        }
    }
}

/// Connects, starts the watchers (with the TLS Secrets of `secrets`, when given) and waits for
/// the first full sync (`--sync-timeout`).
pub async fn start(args: &KubeArgs, secrets: Option<SecretFeed>) -> anyhow::Result<KubeSource> {
    let client = crate::client::connect(args.kube_api.as_deref()).await?;
    let mut options = args.options();
    options.secrets = secrets;
    let mut source = KubeSource::start(client.clone(), options)
        .await
        .context("cannot start watching the Kubernetes API")?;
    if let Some(node) = std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()) {
        source.node_locality = own_node_locality(client, &node).await;
    }
    source.wait_ready(args.sync_timeout).await?;
    let apis: Vec<String> = source
        .istio_apis()
        .iter()
        .map(|a| format!("{} {}", a.resource.api_version, a.kind))
        .collect();
    tracing::info!(istio = %apis.join(", "), "synced with the Kubernetes API");
    Ok(source)
}

/// The locality of the Node this proxy runs on (`$NODE_NAME`, set by the injector from the
/// downward API); a Node that cannot be read leaves it unset, with a warning.
async fn own_node_locality(client: kube::Client, node: &str) -> Option<String> {
    let api = kube::Api::<crate::source::nodes::WatchedNode>::all(client);
    match api.get_opt(node).await {
        Ok(Some(n)) => n.locality().and_then(|(_, l)| l),
        Ok(None) => {
            tracing::warn!(node, "Node not found; this proxy has no locality");
            None
        }
        Err(e) => {
            tracing::warn!(
                node,
                "cannot read the Node ({e}); this proxy has no locality"
            );
            None
        }
    }
}

/// Parses `500ms`, `10s`, `2m` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid duration `{s}`"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "invalid duration unit in `{s}` (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration `{s}`"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[arg(required_unless_present = "kubernetes")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        kube: KubeArgs,
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "run",
            "--kubernetes",
            "--watch-namespaces",
            "a,b",
            "--sync-timeout",
            "500ms",
            "--inbound-port",
            "15006",
        ])
        .unwrap();
        assert!(cli.kube.kubernetes && cli.paths.is_empty());
        assert_eq!(cli.kube.watch_namespaces, ["a", "b"]);
        assert_eq!(cli.kube.sync_timeout, Duration::from_millis(500));
        assert!(cli.kube.options().events);
        assert!(
            Cli::try_parse_from(["run"]).is_err(),
            "paths or --kubernetes"
        );
        assert!(Cli::try_parse_from(["run", "x", "--watch-namespaces", "a"]).is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("1d").is_err());
        let defaults = Cli::try_parse_from(["run", "x"]).unwrap().kube;
        assert_eq!(defaults.sync_timeout, KubeArgs::default().sync_timeout);
    }
}
