//! The running proxy: load config, publish snapshots, bind listeners, watch files, reload, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_admin::AdminState;
use sluice_config::canary::CanaryOverlays;
use sluice_config::{build_snapshot_with, ProxyConfig, Rejected, Snapshot};
use sluice_lb::StateStore;
use sluice_model::{Diagnostic, Severity};
use sluice_proxy::tls::TlsRuntime;
use sluice_proxy::{ConfigHandle, Intercept, ListenerManager, ProxyContext, ProxyOptions};
use sluice_telemetry::{Telemetry, TelemetryConfig};
use tokio::sync::{mpsc, oneshot};

/// `/clusters` columns from the balancers' live endpoint state.
struct LiveEndpoints;

impl sluice_admin::ClusterStatus for LiveEndpoints {
    fn endpoint(
        &self,
        cluster: &sluice_config::cluster::Cluster,
        endpoint: &sluice_config::cluster::UpstreamEndpoint,
    ) -> sluice_admin::EndpointStatus {
        let now = std::time::Instant::now();
        let state = cluster
            .endpoints
            .iter()
            .position(|e| e.authority == endpoint.authority)
            .and_then(|i| cluster.balancer().endpoint(i))
            .map(|e| e.state.clone());
        match state {
            Some(s) => {
                let ejected = s.outlier().is_ejected(now);
                sluice_admin::EndpointStatus {
                    healthy: Some(!ejected),
                    outlier: ejected.then(|| "ejected".to_string()),
                    in_flight: Some(s.in_flight()),
                }
            }
            None => sluice_admin::EndpointStatus {
                healthy: None,
                outlier: None,
                in_flight: None,
            },
        }
    }
}

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Config files and directories.
    pub paths: Vec<PathBuf>,
    /// Proxy identity and roles.
    pub proxy: ProxyConfig,
    /// Admin bind address (port 0 allowed).
    pub admin: SocketAddr,
    /// Longest wait for in-flight requests at shutdown.
    pub drain: Duration,
    /// Watch the paths and reload on change.
    pub watch: bool,
    /// Debounce for file events.
    pub debounce: Duration,
    /// Data-plane options (mirror Host suffix, replay buffer).
    pub options: ProxyOptions,
    /// Metrics, access log and traffic graph settings.
    pub telemetry: TelemetryConfig,
    /// Where config comes from instead of `paths` (Kubernetes); it notifies its own changes.
    pub source: Option<Arc<dyn sluice_kube::ConfigSource>>,
    /// Sidecar interception listeners to bind (outbound 15001, inbound 15006 in Istio).
    pub intercepts: Vec<(Intercept, SocketAddr)>,
    /// Certificate material and TLS configs (Kubernetes Secrets are fed into its store).
    pub tls: TlsRuntime,
    /// Run the canary controller on the `Canary` objects (file mode only).
    pub canaries: bool,
}

impl RunOptions {
    /// Defaults for the given paths.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        RunOptions {
            paths,
            proxy: ProxyConfig::default(),
            admin: SocketAddr::from(([127, 0, 0, 1], 15000)),
            drain: Duration::from_secs(10),
            watch: true,
            debounce: Duration::from_millis(200),
            options: ProxyOptions::default(),
            telemetry: TelemetryConfig::default(),
            source: None,
            intercepts: Vec::new(),
            tls: TlsRuntime::new(),
            canaries: true,
        }
    }
}

/// A running proxy.
pub struct ProxyHandle {
    /// Where the admin server listens.
    pub admin_addr: SocketAddr,
    /// The published config.
    pub config: Arc<ConfigHandle>,
    /// The interception listeners bound, with their addresses.
    pub intercepts: Vec<(Intercept, SocketAddr)>,
    /// The canary controller, when it runs.
    pub canaries: Option<Arc<sluice_canary::Controller>>,
    canary_task: Option<tokio::task::JoinHandle<()>>,
    reload_tx: mpsc::Sender<oneshot::Sender<Result<u64, Rejected>>>,
    stop_tx: Option<oneshot::Sender<Duration>>,
    done_rx: Option<oneshot::Receiver<()>>,
    drain: Duration,
}

impl ProxyHandle {
    /// Reloads now (as a file change would) and reports the outcome.
    pub async fn reload(&self) -> anyhow::Result<Result<u64, Rejected>> {
        let (tx, rx) = oneshot::channel();
        self.reload_tx.send(tx).await.context("proxy stopped")?;
        rx.await.context("proxy stopped")
    }

    /// The active snapshot.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.config.load()
    }

    /// Stops accepting and drains in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.canary_task.take() {
            t.abort();
        }
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(self.drain);
        }
        if let Some(rx) = self.done_rx.take() {
            let _ = rx.await;
        }
    }
}

/// Logs diagnostics at a level matching their severity.
pub fn log_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
            Severity::Info => tracing::debug!("{d}"),
        }
    }
}

struct Loader {
    paths: Vec<PathBuf>,
    source: Option<Arc<dyn sluice_kube::ConfigSource>>,
    proxy: ProxyConfig,
    state: StateStore,
    version: AtomicU64,
    config: Arc<ConfigHandle>,
    telemetry: Arc<Telemetry>,
    /// Certificate files are checked through the proxy's own store.
    tls: TlsRuntime,
    /// Files read by the last load: a reload parses only the files that changed, and takes the
    /// objects of the others from the active snapshot (cleared when a load is not published).
    files: std::sync::Mutex<sluice_sources::FileCache>,
    /// The canary controller's overlays, applied at every compile.
    overlays: Arc<std::sync::Mutex<CanaryOverlays>>,
}

impl Loader {
    fn load(&self) -> Result<Arc<Snapshot>, Rejected> {
        // Held for the whole load (loads run one at a time, so it is free): a load that panics
        // poisons it, and the next one then forgets what that one read.
        let mut files = self.files.lock().unwrap_or_else(|poisoned| {
            let mut files = poisoned.into_inner();
            files.clear();
            files
        });
        let (resources, mut diagnostics) = match &self.source {
            Some(source) => source.collect(),
            None => {
                let previous = self.config.load();
                let previous = previous
                    .as_deref()
                    .map_or(&[][..], |s| s.resources.as_slice());
                let parsed = files.read_paths(&self.paths, previous);
                (parsed.resources, parsed.diagnostics)
            }
        };
        // Unusable certificate files are reported now, not at the first handshake (they do not
        // block the reload: Istio accepts such config too, and only that server's handshakes fail).
        diagnostics.extend(crate::tls_material::diagnostics(
            &resources,
            self.tls.store(),
            self.source.is_some(),
        ));
        let version = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        let overlays = self
            .overlays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let built = build_snapshot_with(
            resources,
            diagnostics,
            &self.proxy,
            &self.state,
            version,
            &overlays,
        );
        if built.is_err() {
            files.clear();
        }
        drop(files);
        match built {
            Ok(s) => Ok(Arc::new(s)),
            Err(rejected) => {
                self.reject(version, &rejected);
                Err(rejected)
            }
        }
    }

    /// The next load parses every file: what the last one read is not the active config.
    fn forget_files(&self) {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// Makes a loaded snapshot the active config.
    fn publish(&self, s: Arc<Snapshot>) {
        self.telemetry.on_snapshot(&s);
        self.config.publish(s);
    }

    /// Records a rejected version (`/api/reload`, `/config_dump`, the metric).
    fn reject(&self, version: u64, rejected: &Rejected) {
        self.forget_files();
        self.telemetry.on_rejected();
        self.config.reject(version, rejected.diagnostics.clone());
    }
}

/// Starts the proxy; fails when the initial config is invalid or the admin port cannot be bound.
pub async fn start(opts: RunOptions) -> anyhow::Result<ProxyHandle> {
    let config = ConfigHandle::new();
    let telemetry =
        Arc::new(Telemetry::new(opts.telemetry.clone()).context("cannot start telemetry")?);
    let loader = Arc::new(Loader {
        paths: opts.paths.clone(),
        source: opts.source.clone(),
        proxy: opts.proxy.clone(),
        state: StateStore::new(),
        version: AtomicU64::new(0),
        config: config.clone(),
        telemetry: telemetry.clone(),
        tls: opts.tls.clone(),
        files: Default::default(),
        overlays: Default::default(),
    });
    // Parsing a large config is CPU-bound: on a blocking thread, like every reload.
    let l = loader.clone();
    let first = match tokio::task::spawn_blocking(move || l.load())
        .await
        .context("initial configuration load panicked")?
    {
        Ok(s) => s,
        Err(rejected) => {
            log_diagnostics(&rejected.diagnostics);
            anyhow::bail!("initial configuration is invalid: {rejected}");
        }
    };
    log_diagnostics(&first.diagnostics);
    loader.publish(first.clone());
    let ctx = Arc::new(ProxyContext::new(
        config.clone(),
        telemetry.clone(),
        opts.options.clone(),
        opts.tls.clone(),
    ));
    // Certificate files are re-read when they change (rotation without a restart).
    ctx.tls.spawn_refresh();
    // Remote JWKS start loading now, not at the first request that needs them.
    ctx.authn.prepare(&first);
    let authn_ctx = ctx.clone();
    let mut manager = ListenerManager::new(ctx);
    // A listener that cannot be bound at start is fatal: its traffic would silently go to
    // whoever holds the port (another proxy, an old instance).
    let unbound = manager.bind_missing(&first.bind_addresses());
    if !unbound.is_empty() {
        let list: Vec<String> = unbound.iter().map(|(a, e)| format!("{a}: {e}")).collect();
        anyhow::bail!("cannot bind listener {}", list.join("; "));
    }
    let mut intercepts = Vec::new();
    for (kind, addr) in &opts.intercepts {
        let bound = manager
            .intercept(*kind, *addr)
            .with_context(|| format!("cannot bind the {} listener {addr}", kind.name()))?;
        intercepts.push((*kind, bound));
    }
    let readiness_config = config.clone();
    let readiness_source = opts.source.clone();
    let readiness: sluice_admin::Readiness = Arc::new(move || {
        if readiness_config.load().is_none() {
            return Err("no configuration loaded".into());
        }
        if readiness_source.as_ref().is_some_and(|s| !s.is_ready()) {
            return Err("not synced with the Kubernetes API".into());
        }
        Ok(())
    });
    let (reload_tx, mut reload_rx) = mpsc::channel::<oneshot::Sender<Result<u64, Rejected>>>(4);
    // `POST /api/reload` (`sluice reload`): the same queue as `ProxyHandle::reload`.
    let admin_reload = reload_tx.clone();
    let reload_now: sluice_admin::ReloadNow = Arc::new(move || {
        let tx = admin_reload.clone();
        Box::pin(async move {
            let (reply, outcome) = oneshot::channel();
            let stopped = || {
                vec![Diagnostic::error(
                    sluice_model::codes::INTERNAL,
                    "the proxy is stopping",
                )]
            };
            if tx.send(reply).await.is_err() {
                return Err(stopped());
            }
            match outcome.await {
                Ok(Ok(version)) => Ok(version),
                Ok(Err(rejected)) => Err(rejected.diagnostics),
                Err(_) => Err(stopped()),
            }
        })
    });
    let mut admin_state = AdminState::new(config.clone(), readiness)
        .with_telemetry(telemetry.clone())
        .with_cluster_status(Arc::new(LiveEndpoints))
        .with_reload(reload_now);
    // The canary controller: file mode only (in Kubernetes the Canary status would be shared
    // by several proxies, which needs a leader).
    let canaries = match (opts.canaries && opts.source.is_none(), opts.paths.first()) {
        (true, Some(first)) => {
            let tx = reload_tx.clone();
            let republish: crate::canary::Republish = Arc::new(move || {
                let tx = tx.clone();
                Box::pin(async move {
                    let (reply, outcome) = oneshot::channel();
                    if tx.send(reply).await.is_ok() {
                        let _ = outcome.await;
                    }
                })
            });
            let host = Arc::new(crate::canary::RuntimeHost {
                config: config.clone(),
                overlays: loader.overlays.clone(),
                republish,
            });
            let controller = sluice_canary::Controller::new(
                host,
                telemetry.subset_stats().clone(),
                telemetry.canary().clone(),
                Some(sluice_canary::StateFile::for_config(first)),
            );
            admin_state = admin_state
                .with_canaries(Arc::new(crate::canary::AdminCanaries(controller.clone())));
            Some(controller)
        }
        _ => None,
    };
    let loop_canaries = canaries.clone();
    let admin_addr = sluice_admin::serve(opts.admin, admin_state)
        .await
        .with_context(|| format!("cannot bind admin address {}", opts.admin))?;
    tracing::info!(%admin_addr, version = first.version, listeners = first.bind_addresses().len(), max_connections = opts.options.downstream.max_connections, "sluice started");

    let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
    let (done_tx, done_rx) = oneshot::channel();
    let mut source_changes = opts.source.as_ref().map(|s| s.subscribe());
    let mut watch = if opts.watch && opts.source.is_none() {
        Some(
            sluice_sources::watch(&opts.paths, opts.debounce)
                .context("cannot watch config paths")?,
        )
    } else {
        None
    };
    let flush_telemetry = telemetry.clone();
    tokio::spawn(async move {
        let mut stop_rx = stop_rx;
        let drain = loop {
            let reply = tokio::select! {
                d = &mut stop_rx => break d.unwrap_or(Duration::from_secs(10)),
                r = reload_rx.recv() => match r { Some(tx) => Some(tx), None => continue },
                Some(()) = async { match watch.as_mut() { Some(w) => w.changes.recv().await, None => std::future::pending().await } } => None,
                true = async { match source_changes.as_mut() { Some(rx) => sluice_kube::next_change(rx, Duration::from_millis(50)).await, None => std::future::pending().await } } => None,
            };
            let l = loader.clone();
            // Shutdown never waits for a compile: SIGTERM during a long reload stops the proxy
            // (the compile, on a blocking thread, is abandoned). Changes made meanwhile are
            // queued as one more reload that reads the newest files. Everything that grows with
            // the config (parsing, compiling, logging its findings, listing its listeners) runs
            // there, never on a runtime worker: with `--workers 1` that worker also serves the
            // admin API and the traffic.
            let compile = tokio::task::spawn_blocking(move || {
                l.load().map(|s| {
                    log_diagnostics(&s.diagnostics);
                    let wanted = s.bind_addresses();
                    (s, wanted)
                })
            });
            let outcome = tokio::select! {
                d = &mut stop_rx => break d.unwrap_or(Duration::from_secs(10)),
                outcome = compile => outcome,
            };
            let outcome = outcome.unwrap_or_else(|e| {
                loader.forget_files();
                Err(Rejected {
                    diagnostics: vec![Diagnostic::error(
                        sluice_model::codes::INTERNAL,
                        format!("reload panicked: {e}"),
                    )],
                })
            });
            let result = match outcome {
                Ok((s, wanted)) => {
                    // New listeners are bound before the snapshot is published: a reload that
                    // needs a port held elsewhere is rejected, and the previous config stays.
                    let unbound = manager.bind_missing(&wanted);
                    if unbound.is_empty() {
                        // Telemetry's per-snapshot tables, and freeing the previous snapshot
                        // when no request holds it any more, cost as much as the config is
                        // large: off the runtime workers too.
                        let l = loader.clone();
                        let published = s.clone();
                        let publish = tokio::task::spawn_blocking(move || {
                            let previous = l.config.load();
                            l.publish(published);
                            drop(previous);
                        });
                        if let Err(e) = publish.await {
                            loader.forget_files();
                            tracing::error!("publishing the new config failed: {e}");
                        }
                        authn_ctx.authn.prepare(&s);
                        manager.close_unwanted(&wanted);
                        if let Some(c) = &loop_canaries {
                            c.config_changed();
                        }
                        tracing::info!(version = s.version, "config reloaded");
                        Ok(s.version)
                    } else {
                        let rejected = Rejected {
                            diagnostics: unbound
                                .iter()
                                .map(|(a, e)| {
                                    Diagnostic::error(
                                        sluice_model::codes::LISTENER_UNBOUND,
                                        format!("listener {a} cannot be bound: {e}"),
                                    )
                                })
                                .collect(),
                        };
                        tracing::error!("config reload rejected: a listener cannot be bound; the previous config stays active");
                        log_diagnostics(&rejected.diagnostics);
                        loader.reject(s.version, &rejected);
                        Err(rejected)
                    }
                }
                Err(rejected) => {
                    tracing::error!("config reload rejected; the previous config stays active");
                    log_diagnostics(&rejected.diagnostics);
                    Err(rejected)
                }
            };
            if let Some(tx) = reply {
                let _ = tx.send(result);
            }
        };
        manager.shutdown(drain).await;
        let _ = tokio::task::spawn_blocking(move || flush_telemetry.flush_traces()).await;
        let _ = done_tx.send(());
    });
    // Started once the reload loop runs: its first act publishes the saved canaries' routes.
    let canary_task = canaries.clone().map(|c| {
        tokio::spawn(async move {
            c.start().await;
            c.run().await;
        })
    });
    Ok(ProxyHandle {
        admin_addr,
        config,
        intercepts,
        canaries,
        canary_task,
        reload_tx,
        stop_tx: Some(stop_tx),
        done_rx: Some(done_rx),
        drain: opts.drain,
    })
}
