//! Command-line interface.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Istio-style traffic management in one binary.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log format.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Worker threads (default: TOKIO_WORKER_THREADS, else one per core); 1 runs single-threaded.
    #[arg(long, global = true)]
    pub workers: Option<usize>,
}

/// Subcommands.
// Parsed once at start-up: boxing `run`'s many flags would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy on Istio YAML files (hot-reloaded).
    Run(RunArgs),
    /// Validate and analyze Istio YAML; exits 1 on any error.
    Analyze(AnalyzeArgs),
    /// Show which rule a request hits and why the earlier ones did not.
    Explain(crate::explain::ExplainArgs),
    /// Make a running proxy read its config now and wait for the outcome (exits 1 when the
    /// reload is rejected).
    Reload(crate::reload::ReloadArgs),
    /// Show and steer the canaries a running proxy drives (`status`, `promote`, `abort`,
    /// `pause`, `resume`).
    Canary(crate::canary::CanaryArgs),
    /// Run a test backend service (the tutorials' app).
    Backend(sluice_tools::BackendArgs),
    /// Send requests and print the distribution of responses.
    Traffic(sluice_tools::TrafficArgs),
    /// Run the canary tutorial end to end on this machine.
    Demo(crate::demo::DemoArgs),
    /// Add the sluice sidecar to Kubernetes manifests (like `istioctl kube-inject`).
    Inject(sluice_kube::InjectArgs),
    /// Redirect a pod's TCP traffic to the sidecar (run by the injected init container).
    Iptables(sluice_kube::IptablesArgs),
    /// Certificate authority: write CA material for workload certificates.
    Ca(crate::ca::CaArgs),
    /// Kubernetes admission webhooks over HTTPS: sidecar injection by label (`/inject`) and
    /// Istio config validation (`/validate`).
    Webhook(sluice_webhook::WebhookArgs),
}

/// `sluice run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Config files or directories (`.yaml`, `.yml`, `.json`, recursive).
    #[arg(required_unless_present = "kubernetes")]
    pub paths: Vec<PathBuf>,
    /// Workload labels of this proxy (`k=v,k2=v2`).
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub labels: BTreeMap<String, String>,
    /// Where this proxy runs, `region/zone/subzone` (zone and subzone optional), for locality
    /// load balancing. In Kubernetes mode the Pod's `istio-locality` label is used when absent.
    #[arg(long, value_parser = parse_locality)]
    pub locality: Option<String>,
    /// The L3 network this proxy is on (Istio's `topology.istio.io/network`); endpoints whose
    /// `network` differs are reported, and reached directly as Istio does when no network
    /// gateway is known. In Kubernetes mode the Pod's `topology.istio.io/network` label is used
    /// when absent.
    #[arg(long)]
    pub network: Option<String>,
    /// Namespace of this proxy.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// Address gateway servers bind on.
    #[arg(long, default_value = "0.0.0.0")]
    pub gateway_address: IpAddr,
    /// Address mesh listeners bind on when a service has no local address.
    #[arg(long, default_value = "127.0.0.1")]
    pub mesh_address: IpAddr,
    /// MeshConfig `outboundTrafficPolicy.mode` for destinations outside the registry when no
    /// Sidecar sets it: `ALLOW_ANY` passes them through, `REGISTRY_ONLY` refuses them
    /// (`502 NR`, connections closed).
    #[arg(long, default_value = "ALLOW_ANY", value_parser = ["ALLOW_ANY", "REGISTRY_ONLY"])]
    pub outbound_traffic_policy: String,
    /// Do not serve registry services (sidecar outbound role).
    #[arg(long)]
    pub no_mesh: bool,
    /// Do not serve Gateways.
    #[arg(long)]
    pub no_gateway: bool,
    /// Admin API address (`sluice reload` reads the same `SLUICE_ADMIN`).
    #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:15000")]
    pub admin: SocketAddr,
    /// Longest wait for in-flight requests and relayed TCP connections at shutdown.
    #[arg(long, default_value = "10s", value_parser = sluice_tools::parse_duration)]
    pub drain_timeout: std::time::Duration,
    /// Do not watch the paths for changes.
    #[arg(long)]
    pub no_watch: bool,
    /// DNS server for `resolution: DNS` and `DNS_ROUND_ROBIN` names, `IP[:PORT]` (repeatable;
    /// default: the servers of /etc/resolv.conf).
    #[arg(long = "dns-server", value_name = "IP[:PORT]", value_parser = parse_dns_server)]
    pub dns_servers: Vec<SocketAddr>,
    /// Longest time a DNS answer is used: names are re-resolved on their record's TTL, at
    /// least every second and at most this long apart.
    #[arg(long, default_value = "30s", value_parser = sluice_tools::parse_duration)]
    pub dns_refresh: std::time::Duration,
    /// Add `-shadow` to the Host of mirrored requests (Istio 1.27 and older; off since 1.28).
    #[arg(long)]
    pub mirror_shadow_suffix: bool,
    /// Request body bytes kept for retries and mirror copies (larger bodies are not retried).
    #[arg(long, default_value_t = 1024 * 1024)]
    pub replay_buffer_bytes: usize,
    /// Longest wait for a request head, and for a new connection's first request (`0s`: none).
    #[arg(long, default_value = "60s", value_parser = sluice_tools::parse_duration)]
    pub http_header_read_timeout: std::time::Duration,
    /// Close a client connection with no request in flight for this long (`0s`: never).
    #[arg(long, default_value = "1h", value_parser = sluice_tools::parse_duration)]
    pub http_idle_timeout: std::time::Duration,
    /// Largest request head in KiB: HTTP/1.1 answers 431 beyond it, HTTP/2 refuses the stream.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub max_request_headers_kb: u32,
    /// Client connections open at once over all proxy listeners (not the admin one); further
    /// ones are closed at accept (default: half the open-files limit left after a reserve).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Mirror copies in flight at once; further copies are dropped and counted.
    #[arg(long, default_value_t = sluice_proxy::handler::DEFAULT_MAX_MIRROR_IN_FLIGHT)]
    pub max_mirror_in_flight: usize,
    /// Access log: `stdout` or a file path (off when absent).
    #[arg(long)]
    pub access_log: Option<String>,
    /// Access log line format.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    pub access_log_format: String,
    /// Do not record per-request metrics or the traffic graph (Istio's request metrics, split
    /// counters and the dashboard stay empty; config and pool metrics remain).
    #[arg(long)]
    pub no_request_metrics: bool,
    /// Export spans with OTLP to this collector (e.g. `http://127.0.0.1:4317`); off when absent.
    #[arg(long, env = "SLUICE_TRACING_ENDPOINT")]
    pub tracing_endpoint: Option<String>,
    /// OTLP transport: `grpc` (port 4317) or `http` (protobuf over HTTP, port 4318).
    #[arg(long, default_value = "grpc", value_parser = ["grpc", "http"])]
    pub tracing_protocol: String,
    /// Percentage of new traces sampled (a caller's sampling decision always wins).
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent)]
    pub tracing_sampling: f64,
    /// Strict Envoy behaviour for weighted destinations under consistent hashing: draw the version
    /// per request instead of keeping each hash key on one version.
    #[arg(long)]
    pub no_sticky_canary: bool,
    /// Kubernetes mode (`--kubernetes` and its options).
    #[command(flatten)]
    pub kube: sluice_kube::KubeArgs,
    /// Workload identity (`--ca`, `--trust-domain`, `--service-account`).
    #[command(flatten)]
    pub identity: crate::ca::IdentityArgs,
}

/// `sluice analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Config files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "human")]
    pub output: crate::analyze::Format,
    /// Also show info diagnostics (e.g. skipped kinds).
    #[arg(long, short)]
    pub verbose: bool,
    /// Also check what a proxy with these labels would serve (`k=v,k2=v2`, as `sluice run
    /// --labels`): Gateways that select none of them, listeners, routes.
    #[arg(long, value_parser = parse_labels)]
    pub labels: Option<BTreeMap<String, String>>,
}

/// Parses a percentage in `[0, 100]`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a percentage between 0 and 100")),
    }
}

/// Parses `k=v,k2=v2`.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("label `{p}` must be key=value"))
        })
        .collect()
}

/// Parses a `--dns-server` value (port 53 when absent).
pub fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    sluice_dns::parse_server(s).map_err(|e| e.to_string())
}

/// Checks a `region/zone/subzone` locality: at most three non-empty parts, no wildcard.
pub fn parse_locality(s: &str) -> Result<String, String> {
    let s = s.trim();
    let parts: Vec<&str> = s.split('/').collect();
    if s.is_empty() || parts.len() > 3 || parts.iter().any(|p| p.is_empty() || p.contains('*')) {
        return Err(format!(
            "locality `{s}` must be region[/zone[/subzone]] with non-empty parts"
        ));
    }
    Ok(s.to_string())
}

/// Istio's `istio-locality` Pod label: `region.zone.subzone` (label values cannot hold `/`).
pub fn locality_from_label(labels: &BTreeMap<String, String>) -> Option<String> {
    labels
        .get("istio-locality")
        .map(|v| v.trim().replace('.', "/"))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    #[test]
    fn dns_flags_take_servers_and_a_go_duration() {
        let r = run_args(&[]);
        assert!(r.dns_servers.is_empty());
        assert_eq!(r.dns_refresh, Duration::from_secs(30));
        let r = run_args(&[
            "--dns-server",
            "127.0.0.1:5353",
            "--dns-server",
            "10.0.0.10",
            "--dns-refresh",
            "1m30s",
        ]);
        assert_eq!(
            r.dns_servers,
            [
                SocketAddr::from(([127, 0, 0, 1], 5353)),
                SocketAddr::from(([10, 0, 0, 10], 53))
            ]
        );
        assert_eq!(r.dns_refresh, Duration::from_secs(90));
        assert!(parse_dns_server("resolver.example.com").is_err());
    }

    #[test]
    fn locality_flag_takes_one_to_three_parts() {
        assert_eq!(run_args(&[]).locality, None);
        let r = run_args(&["--locality", "region1/zone1"]);
        assert_eq!(r.locality.as_deref(), Some("region1/zone1"));
        let r = run_args(&["--locality", "region1/zone1/rack7"]);
        assert_eq!(r.locality.as_deref(), Some("region1/zone1/rack7"));
        assert_eq!(parse_locality("region1"), Ok("region1".into()));
        for bad in ["", "a//b", "a/b/c/d", "a/*"] {
            assert!(parse_locality(bad).is_err(), "{bad}");
        }
        let labels = BTreeMap::from([("istio-locality".to_string(), "r1.z1".to_string())]);
        assert_eq!(locality_from_label(&labels).as_deref(), Some("r1/z1"));
    }

    fn run_args(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["sluice", "run", "config/"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn injected_sidecar_arguments_parse_with_the_pod_identity() {
        let pod = "kind: Pod\nmetadata:\n  name: p\n  namespace: shop\nspec:\n  serviceAccountName: cart\n  containers:\n  - name: app\n";
        let out = sluice_kube::inject(pod).unwrap();
        let docs = sluice_model::yaml::parse_documents(&out).unwrap();
        let containers = docs[0].value["spec"]["containers"].as_array().unwrap();
        let proxy = containers
            .iter()
            .find(|c| c["name"] == sluice_kube::inject::PROXY_CONTAINER)
            .unwrap();
        // Kubernetes expands `$(VAR)` from the container's downward-API environment.
        let args: Vec<String> = proxy["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                a.as_str()
                    .unwrap()
                    .replace("$(POD_NAMESPACE)", "shop")
                    .replace("$(SERVICE_ACCOUNT)", "cart")
            })
            .collect();
        let argv = std::iter::once("sluice").chain(args.iter().map(String::as_str));
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Run(r) => {
                assert!(r.kube.kubernetes && r.no_gateway && r.kube.no_canary_lead);
                assert_eq!(r.namespace, "shop");
                assert_eq!(r.identity.service_account, "cart");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn downstream_limits_take_go_durations_and_have_defaults() {
        let r = run_args(&[]);
        assert_eq!(r.http_header_read_timeout, Duration::from_secs(60));
        assert_eq!(r.http_idle_timeout, Duration::from_secs(3600));
        assert_eq!(r.max_request_headers_kb, 60);
        assert_eq!(r.max_connections, None);
        let r = run_args(&[
            "--http-header-read-timeout",
            "500ms",
            "--http-idle-timeout",
            "1s",
            "--max-connections",
            "100",
            "--max-request-headers-kb",
            "8",
        ]);
        assert_eq!(r.http_header_read_timeout, Duration::from_millis(500));
        assert_eq!(r.http_idle_timeout, Duration::from_secs(1));
        assert_eq!(r.max_connections, Some(100));
        assert_eq!(r.max_request_headers_kb, 8);
        assert!(Cli::try_parse_from(["sluice", "run", "c/", "--max-connections", "0"]).is_err());
        assert!(
            Cli::try_parse_from(["sluice", "run", "c/", "--http-idle-timeout", "soon"]).is_err()
        );
    }

    #[test]
    fn identity_flags_have_istios_defaults() {
        let r = run_args(&[]);
        assert_eq!(r.identity.ca_dir, None);
        assert_eq!(r.identity.trust_domain, "cluster.local");
        assert_eq!(r.identity.service_account, "default");
        let r = run_args(&[
            "--ca",
            "/etc/cacerts",
            "--trust-domain",
            "td",
            "--service-account",
            "sa",
        ]);
        assert_eq!(r.identity.ca_dir, Some(PathBuf::from("/etc/cacerts")));
        assert_eq!(r.identity.trust_domain, "td");
        assert_eq!(r.identity.service_account, "sa");
    }
}
