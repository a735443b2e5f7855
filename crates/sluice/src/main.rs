//! `sluice`: Istio-style traffic management in one binary.

use clap::Parser;
use sluice::cli::{Cli, Command};
use sluice::runtime::RunOptions;
use sluice_proxy::Intercept;
use tracing_subscriber::EnvFilter;

/// A proxy allocates a few small, short-lived buffers per request: mimalloc's thread-local free
/// lists serve them in a fraction of glibc malloc's instructions.
#[global_allocator]
static GLOBAL: sluice_alloc::Allocator = sluice_alloc::Allocator;

fn init_logging(format: &str) {
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only on a terminal: in a file or a pipe they break `grep` (and NO_COLOR,
    // https://no-color.org, turns them off everywhere).
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Builds the runtime: one worker means a current-thread scheduler, which skips the work-stealing
/// bookkeeping a multi-thread runtime pays on every wake-up.
fn runtime(workers: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = workers.or_else(|| {
        std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n.max(1))
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts: the option setter is not thread safe.
    sluice_alloc::tune();
    let cli = Cli::parse();
    // One crypto provider for every TLS user (gateway, upstreams, the Kubernetes client).
    sluice_kube::install_crypto_provider();
    runtime(cli.workers)?.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Analyze(a) => {
            let diags = match &a.labels {
                Some(labels) => sluice::analyze::diagnostics_for(&a.paths, labels),
                None => sluice::analyze::diagnostics(&a.paths),
            };
            print!("{}", sluice::analyze::render(&diags, a.output, a.verbose));
            if sluice::analyze::has_errors(&diags) {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Reload(a) => {
            print!("{}", sluice::reload::run(&a).await?);
            Ok(())
        }
        Command::Canary(a) => {
            print!("{}", sluice::canary::run(&a).await?);
            Ok(())
        }
        Command::Explain(e) => {
            print!("{}", sluice::explain::run_any(&e).await?);
            Ok(())
        }
        Command::Run(r) => {
            init_logging(&cli.log_format);
            let mut opts = RunOptions::new(r.paths);
            opts.proxy.labels = r.labels;
            let mut node_locality = None;
            let mut kube_source = None;
            if r.kube.kubernetes {
                opts.proxy.labels.extend(r.kube.file_labels()?);
                // Gateway `credentialName`s are Secrets of the gateway's own namespace.
                let secrets = sluice_kube::SecretFeed {
                    namespace: r.namespace.clone(),
                    sink: std::sync::Arc::new(sluice::secrets::StoreSink(opts.tls.store().clone())),
                };
                let source = std::sync::Arc::new(sluice_kube::start(&r.kube, Some(secrets)).await?);
                node_locality = source.node_locality().map(str::to_string);
                kube_source = Some(source.clone());
                opts.source = Some(source);
            }
            let any = std::net::IpAddr::from([0, 0, 0, 0]);
            if let Some(port) = r.kube.outbound_port {
                // Sidecar: outbound traffic arrives through interception, not per-service ports.
                opts.proxy.mesh_role = false;
                opts.proxy.outbound_role = true;
                opts.intercepts
                    .push((Intercept::Outbound, std::net::SocketAddr::new(any, port)));
            }
            if let Some(port) = r.kube.inbound_port {
                opts.proxy.inbound_intercepted = true;
                opts.intercepts
                    .push((Intercept::Inbound, std::net::SocketAddr::new(any, port)));
            }
            opts.proxy.locality = r
                .locality
                .or_else(|| sluice::cli::locality_from_label(&opts.proxy.labels))
                .or(node_locality)
                .unwrap_or_default();
            opts.proxy.network = r
                .network
                .or_else(|| opts.proxy.labels.get("topology.istio.io/network").cloned())
                .unwrap_or_default();
            opts.proxy.namespace = r.namespace;
            opts.proxy.outbound_traffic_policy =
                sluice_config::scope::OutboundMode::parse(&r.outbound_traffic_policy)
                    .unwrap_or_default();
            opts.proxy.gateway_address = r.gateway_address;
            opts.proxy.mesh_address = r.mesh_address;
            opts.proxy.mesh_role &= !r.no_mesh;
            opts.proxy.gateway_role = !r.no_gateway;
            opts.admin = r.admin;
            opts.drain = r.drain_timeout;
            opts.watch = !r.no_watch;
            opts.dns = Some(sluice_dns::DnsSettings {
                servers: r.dns_servers,
                refresh: r.dns_refresh,
            });
            opts.options.mirror_shadow_suffix = r.mirror_shadow_suffix;
            opts.options.replay_cap = r.replay_buffer_bytes;
            opts.options.sticky_canary = !r.no_sticky_canary;
            opts.options.max_mirror_in_flight = r.max_mirror_in_flight;
            let unless_zero = |d: std::time::Duration| (!d.is_zero()).then_some(d);
            opts.options.downstream = sluice_proxy::DownstreamOptions {
                header_read_timeout: unless_zero(r.http_header_read_timeout),
                idle_timeout: unless_zero(r.http_idle_timeout),
                max_request_header_bytes: r.max_request_headers_kb as usize * 1024,
                max_connections: r
                    .max_connections
                    .map_or_else(sluice_proxy::downstream::default_max_connections, |n| {
                        usize::try_from(n).unwrap_or(usize::MAX)
                    }),
            };
            if let Some(target) = &r.access_log {
                use sluice_telemetry::{AccessLogFormat, AccessLogTarget};
                opts.telemetry.access_log.enabled = true;
                opts.telemetry.access_log.target = if target == "stdout" {
                    AccessLogTarget::Stdout
                } else {
                    AccessLogTarget::File(target.into())
                };
                opts.telemetry.access_log.format = if r.access_log_format == "text" {
                    AccessLogFormat::Text
                } else {
                    AccessLogFormat::Json
                };
            }
            opts.telemetry.request_metrics = !r.no_request_metrics;
            if let Some(endpoint) = &r.tracing_endpoint {
                use sluice_telemetry::trace::{OtlpProtocol, TracingConfig};
                let protocol = if r.tracing_protocol == "http" {
                    OtlpProtocol::HttpProtobuf
                } else {
                    OtlpProtocol::Grpc
                };
                let mut tc = TracingConfig::new(endpoint.clone(), protocol);
                tc.sampling_percent = r.tracing_sampling;
                // Istio names a workload's spans `<app>.<namespace>`.
                let app = opts
                    .proxy
                    .labels
                    .get("app")
                    .map_or("sluice", String::as_str);
                tc.service_name = format!("{app}.{}", opts.proxy.namespace);
                opts.telemetry.tracing = Some(tc);
            }
            // Policies name identities in this trust domain; mesh peers must belong to it.
            opts.proxy.trust_domain = r.identity.trust_domain.clone();
            if let Some(certs) =
                sluice::ca::spawn_identity(&r.identity, &opts.proxy.namespace).await?
            {
                sluice::mesh_identity::follow(certs, opts.tls.store().clone());
            }
            let drain = opts.drain;
            let mut handle = sluice::runtime::start(opts).await?;
            shutdown_signal().await;
            tracing::info!(?drain, "shutting down: draining in-flight requests");
            if let Some(source) = kube_source {
                // Another gateway takes the canary analysis over now, not a Lease later.
                handle.stop_canaries();
                source.shutdown().await;
            }
            handle.shutdown().await;
            Ok(())
        }
        Command::Inject(a) => sluice_kube::inject::run(a).await,
        Command::Iptables(a) => {
            init_logging(&cli.log_format);
            sluice_kube::iptables::run(a).await
        }
        Command::Ca(a) => {
            init_logging(&cli.log_format);
            print!("{}", sluice::ca::run(&a).await?);
            Ok(())
        }
        Command::Webhook(a) => {
            init_logging(&cli.log_format);
            Ok(sluice_webhook::run(a).await?)
        }
        Command::Backend(b) => sluice_tools::backend::run(b).await,
        Command::Traffic(t) => sluice_tools::traffic::run(t).await,
        Command::Demo(d) => {
            init_logging(&cli.log_format);
            sluice::demo::run(d, shutdown_signal()).await
        }
    }
}
