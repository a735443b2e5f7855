//! The running proxy: load config, publish snapshots, bind listeners, watch files, reload, drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::background;
use anyhow::Context as _;
use sluice_admin::AdminState;
use sluice_config::canary::CanaryOverlays;
use sluice_config::{build_snapshot_unless, BuildInputs, ProxyConfig, Rejected, Snapshot, Stopped};
use sluice_dns::{DnsResolver, DnsSettings};
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
    /// Debounce for file events: a burst of writes (an editor's save, a copied tree) makes one
    /// reload, and a reload is cheap enough (unchanged files and objects are kept) to follow
    /// an edit closely.
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
    /// Resolution of DNS ServiceEntry names (`None`: names are resolved by the system at
    /// connect time, one endpoint per name).
    pub dns: Option<DnsSettings>,
    /// Run the canary controller on the `Canary` objects.
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
            // The quiet a burst of file events needs: a tool's writes (or a copy of a
            // tree) come well within it, and a change arriving during a build supersedes it.
            debounce: Duration::from_millis(20),
            options: ProxyOptions::default(),
            telemetry: TelemetryConfig::default(),
            source: None,
            intercepts: Vec::new(),
            tls: TlsRuntime::new(),
            dns: Some(DnsSettings::default()),
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

    /// Stops the canary controller (no more checks, webhooks or status writes); the routes in
    /// force stay. Before giving up the canary leader Lease at shutdown.
    pub fn stop_canaries(&mut self) {
        if let Some(t) = self.canary_task.take() {
            t.abort();
        }
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
    /// objects of the others from the active snapshot (put back as it was when a build ends
    /// without a snapshot, cleared when one is not published).
    files: std::sync::Mutex<sluice_sources::FileCache>,
    /// Generation of the newest change seen; a build started at an older one is outdated.
    wanted: AtomicU64,
    /// The resolver of DNS ServiceEntry names, when there is one.
    dns: Option<DnsResolver>,
    /// The generation of DNS answers the last load compiled in.
    dns_generation: AtomicU64,
    /// The canary controller's overlays, applied at every compile.
    overlays: Arc<std::sync::Mutex<CanaryOverlays>>,
    /// Where loads and publishing run, off the runtime's workers.
    thread: background::ConfigThread,
}

/// Builds abandoned in a row for newer changes before one is carried to its end regardless.
const MAX_SUPERSEDED_IN_A_ROW: u32 = 3;

/// What starts a config build.
enum Event {
    /// `POST /api/reload` or [`ProxyHandle::reload`], answered with the outcome.
    Reload(oneshot::Sender<Result<u64, Rejected>>),
    /// A file or Kubernetes object changed.
    Changed,
    /// The resolver has new answers, of this generation.
    Dns(u64),
}

/// The sources of [`Event`]s.
struct Events {
    reload_rx: mpsc::Receiver<oneshot::Sender<Result<u64, Rejected>>>,
    watch: Option<sluice_sources::ConfigWatch>,
    source_changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// The resolver's answer generations.
    dns_changes: Option<tokio::sync::watch::Receiver<u64>>,
    /// When a Kubernetes change seen will have settled (a burst of changes makes one build).
    /// Kept here, not in the future, so a wait cut short by another event is not forgotten.
    settle: Option<tokio::time::Instant>,
}

/// How long a burst of Kubernetes changes settles before a build.
const SOURCE_DEBOUNCE: Duration = Duration::from_millis(50);

impl Events {
    /// The next event; pending forever once every source is gone. Cancel-safe: dropping the
    /// future loses no event.
    async fn next(&mut self) -> Event {
        let Events {
            reload_rx,
            watch,
            source_changes,
            dns_changes,
            settle,
        } = self;
        let watch = async {
            match watch.as_mut() {
                Some(w) => w.changes.recv().await,
                None => std::future::pending().await,
            }
        };
        let source = async {
            let Some(rx) = source_changes.as_mut() else {
                return std::future::pending().await;
            };
            let at = match *settle {
                Some(at) => at,
                None => {
                    if rx.changed().await.is_err() {
                        return false;
                    }
                    *settle.insert(tokio::time::Instant::now() + SOURCE_DEBOUNCE)
                }
            };
            tokio::time::sleep_until(at).await;
            *settle = None;
            rx.borrow_and_update();
            true
        };
        let dns = async {
            match dns_changes.as_mut() {
                Some(rx) => rx.changed().await.ok().map(|()| *rx.borrow_and_update()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(tx) = reload_rx.recv() => Event::Reload(tx),
            Some(()) = watch => Event::Changed,
            true = source => Event::Changed,
            Some(generation) = dns => Event::Dns(generation),
            else => std::future::pending().await,
        }
    }
}

/// The longest a load waits for the first answers of names it has not resolved yet (Envoy
/// warms a DNS cluster before using it); a name answered later reloads the config then.
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(5);

/// A loaded snapshot with the DNS names it needs resolved.
type Loaded = (Arc<Snapshot>, std::collections::BTreeSet<String>);

impl Loader {
    /// The loader of a proxy started with `opts`, publishing to `config`.
    fn new(opts: &RunOptions, config: Arc<ConfigHandle>, telemetry: Arc<Telemetry>) -> Loader {
        Loader {
            paths: opts.paths.clone(),
            source: opts.source.clone(),
            proxy: opts.proxy.clone(),
            state: StateStore::new(),
            version: AtomicU64::new(0),
            config,
            telemetry,
            tls: opts.tls.clone(),
            files: Default::default(),
            wanted: AtomicU64::new(0),
            dns: opts.dns.as_ref().and_then(|settings| match DnsResolver::new(settings) {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!("{e}; DNS ServiceEntry names are resolved by the system at connect time instead (pass --dns-server)");
                    None
                }
            }),
            dns_generation: AtomicU64::new(0),
            overlays: Default::default(),
            thread: background::ConfigThread::start(),
        }
    }

    /// Reads and builds the config; gives up between phases once `superseded()` holds.
    fn load(&self, superseded: &dyn Fn() -> bool) -> Result<Loaded, Stopped> {
        // Held for the whole load (loads run one at a time, so it is free): a load that panics
        // poisons it, and the next one then forgets what that one read.
        let mut files = self.files.lock().unwrap_or_else(|poisoned| {
            let mut files = poisoned.into_inner();
            files.clear();
            files
        });
        let started = std::time::Instant::now();
        // A build that ends without a snapshot (a newer change superseded it, or it was
        // rejected) leaves the cache as it was: it still describes the active snapshot's
        // objects, so the next load parses only what changed. Clearing it instead made every
        // superseded reload parse the whole tree again (a second at 10,000 services).
        let before = self.source.is_none().then(|| files.clone());
        // The active snapshot: unchanged files take their objects from it, and the build keeps
        // what depends only on unchanged objects.
        let previous = self.config.load();
        let (resources, mut diagnostics) = match &self.source {
            Some(source) => source.collect(),
            None => {
                let objects = previous
                    .as_deref()
                    .map_or(&[][..], |s| s.resources.as_slice());
                let parsed = files.read_paths(&self.paths, objects);
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
        let dns = self.dns.as_ref().map(DnsResolver::published);
        if let Some(p) = &dns {
            self.dns_generation.store(p.generation, Ordering::SeqCst);
        }
        let overlays = self
            .overlays
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let inputs = BuildInputs {
            dns: dns.as_ref().map(|p| &p.answers),
            overlays: Some(&overlays),
            previous: previous.as_deref(),
        };
        let built = build_snapshot_unless(
            resources,
            diagnostics,
            &self.proxy,
            &self.state,
            version,
            &inputs,
            superseded,
        );
        if built.is_err() {
            match before {
                Some(before) => *files = before,
                None => files.clear(),
            }
        }
        drop(files);
        match built {
            Ok(s) => {
                let t = s.timings;
                let total = started.elapsed();
                tracing::debug!(
                    version = s.version,
                    "config built in {} ms (read {} ms, validate {} ms, compile {} ms with the analysis beside it taking {} ms, {} VirtualServices analyzed again)",
                    total.as_millis(),
                    total.saturating_sub(t.check + t.compile).as_millis(),
                    t.check.as_millis(),
                    t.compile.as_millis(),
                    t.analyze.as_millis(),
                    t.reanalyzed
                );
                let names = match &self.dns {
                    Some(_) => sluice_config::dns::wanted_names(&s.registry),
                    None => Default::default(),
                };
                Ok((Arc::new(s), names))
            }
            Err(Stopped::Rejected(rejected)) => {
                self.reject(version, &rejected);
                Err(Stopped::Rejected(rejected))
            }
            Err(Stopped::Superseded) => Err(Stopped::Superseded),
        }
    }

    /// Records a change (a reload request waits for the build that reads it); `false` when the
    /// event changes nothing the last load did not already read.
    fn note(
        &self,
        event: Event,
        waiting: &mut Vec<(u64, oneshot::Sender<Result<u64, Rejected>>)>,
    ) -> bool {
        // The last load already compiled these answers in (a warm-up's own).
        if let Event::Dns(answers) = event {
            if answers <= self.dns_generation.load(Ordering::SeqCst) {
                return false;
            }
        }
        let generation = self.wanted.fetch_add(1, Ordering::SeqCst) + 1;
        if let Event::Reload(tx) = event {
            waiting.push((generation, tx));
        }
        true
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
        // Only the destination labels are needed before the swap: the graph follows it.
        self.telemetry.prepare(&s);
        self.config.publish(Arc::clone(&s));
        self.telemetry.applied(&s);
    }

    /// Records a rejected version (`/api/reload`, `/config_dump`, the metric).
    fn reject(&self, version: u64, rejected: &Rejected) {
        self.telemetry.on_rejected();
        self.config.reject(version, rejected.diagnostics.clone());
    }
}

/// Loads on a config thread ([`background`]); when the config names DNS names not resolved yet, waits
/// (bounded) for their first answers and loads again, so a new DNS cluster starts with its
/// addresses rather than with none (`503 UH`).
///
/// With `generation`, a load gives up once a change newer than it has arrived.
async fn load_warm(
    loader: &Arc<Loader>,
    generation: Option<u64>,
) -> Result<Result<Arc<Snapshot>, Stopped>, background::Failed> {
    let load = |l: Arc<Loader>| {
        move || {
            let superseded = || generation.is_some_and(|g| l.wanted.load(Ordering::SeqCst) != g);
            l.load(&superseded)
        }
    };
    let first = loader.thread.run(load(loader.clone())).await?;
    let (s, names) = match first {
        Ok(loaded) => loaded,
        Err(stopped) => return Ok(Err(stopped)),
    };
    let Some(dns) = &loader.dns else {
        return Ok(Ok(s));
    };
    if !dns.track(&names, FIRST_ANSWER_WAIT).await {
        return Ok(Ok(s));
    }
    let second = loader.thread.run(load(loader.clone())).await?;
    Ok(second.map(|(s, _)| s))
}

/// Starts the proxy; fails when the initial config is invalid or the admin port cannot be bound.
pub async fn start(opts: RunOptions) -> anyhow::Result<ProxyHandle> {
    let config = ConfigHandle::new();
    let telemetry =
        Arc::new(Telemetry::new(opts.telemetry.clone()).context("cannot start telemetry")?);
    let loader = Arc::new(Loader::new(&opts, config.clone(), telemetry.clone()));
    // Parsing a large config is CPU-bound: on a config thread, like every reload.
    let first = match load_warm(&loader, None)
        .await
        .context("initial configuration load failed")?
    {
        Ok(s) => s,
        Err(Stopped::Superseded) => anyhow::bail!("initial configuration load was abandoned"),
        Err(Stopped::Rejected(rejected)) => {
            log_diagnostics(&rejected.diagnostics);
            anyhow::bail!("initial configuration is invalid: {rejected}");
        }
    };
    log_diagnostics(&first.diagnostics);
    loader.publish(first.clone());
    let mut ctx = ProxyContext::new(
        config.clone(),
        telemetry.clone(),
        opts.options.clone(),
        opts.tls.clone(),
    );
    ctx.dynamic_dns = loader
        .dns
        .clone()
        .map(|d| Arc::new(DynamicDns(d)) as Arc<dyn sluice_proxy::dynamic_dns::HostResolver>);
    let ctx = Arc::new(ctx);
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
    let unbound = manager.bind_unix_missing(&first.unix_listeners()).await;
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
    let (reload_tx, reload_rx) = mpsc::channel::<oneshot::Sender<Result<u64, Rejected>>>(4);
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
    // The canary controller. File mode: states in a file next to the config. Kubernetes: in
    // each Canary's status, written by the proxy holding the Lease and followed by the others
    // (no controller when the cluster does not serve Canaries).
    let backend: Option<Arc<dyn sluice_canary::StateBackend>> =
        match (&opts.source, opts.paths.first()) {
            _ if !opts.canaries => None,
            (Some(source), _) => source.canary_backend(),
            (None, Some(first)) => Some(Arc::new(sluice_canary::StateFile::for_config(first))),
            (None, None) => None,
        };
    let canaries = match backend {
        Some(backend) => {
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
            let controller = sluice_canary::Controller::with_backend(
                host,
                telemetry.subset_stats().clone(),
                telemetry.canary().clone(),
                backend,
            );
            admin_state = admin_state
                .with_canaries(Arc::new(crate::canary::AdminCanaries(controller.clone())));
            Some(controller)
        }
        None => None,
    };
    let loop_canaries = canaries.clone();
    let admin_addr = sluice_admin::serve(opts.admin, admin_state)
        .await
        .with_context(|| format!("cannot bind admin address {}", opts.admin))?;
    tracing::info!(%admin_addr, version = first.version, listeners = first.bind_addresses().len(), max_connections = opts.options.downstream.max_connections, "sluice started");

    let (stop_tx, stop_rx) = oneshot::channel::<Duration>();
    let (done_tx, done_rx) = oneshot::channel();
    let source_changes = opts.source.as_ref().map(|s| s.subscribe());
    // A name's addresses changed: the clusters using it are recompiled (a reload that reads
    // only the files that changed).
    let dns_changes = loader.dns.as_ref().map(DnsResolver::subscribe);
    let watch = if opts.watch && opts.source.is_none() {
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
        let mut events = Events {
            reload_rx,
            watch,
            source_changes,
            dns_changes,
            settle: None,
        };
        // `POST /api/reload` callers, each with the change generation its answer must include.
        let mut waiting: Vec<(u64, oneshot::Sender<Result<u64, Rejected>>)> = Vec::new();
        // A change arrived while the last build ran: build again without waiting for another.
        let mut again = false;
        // Builds abandoned in a row for a newer change; bounded so a steady stream of changes
        // (an EndpointSlice churning every few milliseconds) cannot starve publication.
        let mut streak = 0u32;
        let drain = 'run: loop {
            if !again {
                tokio::select! {
                    d = &mut stop_rx => break 'run d.unwrap_or(Duration::from_secs(10)),
                    e = events.next() => {
                        if !loader.note(e, &mut waiting) {
                            continue;
                        }
                    }
                }
            }
            again = false;
            let generation = loader.wanted.load(Ordering::SeqCst);
            let may_supersede = streak < MAX_SUPERSEDED_IN_A_ROW;
            let l = loader.clone();
            // Shutdown never waits for a compile: SIGTERM during a long reload stops the proxy
            // (the compile, on a config thread, is abandoned). A change made meanwhile stops
            // the build at its next phase boundary and starts a new one that reads the newest
            // files. Everything that grows with the config (parsing, compiling, logging its
            // findings, listing its listeners) runs there, never on a runtime worker: with
            // `--workers 1` that worker also serves the admin API and the traffic.
            let compile = async move {
                let s = match load_warm(&l, may_supersede.then_some(generation)).await? {
                    Ok(s) => s,
                    Err(stopped) => return Ok(Err(stopped)),
                };
                l.thread
                    .run(move || {
                        log_diagnostics(&s.diagnostics);
                        let wanted = s.bind_addresses();
                        Ok((s, wanted))
                    })
                    .await
            };
            tokio::pin!(compile);
            let outcome = loop {
                tokio::select! {
                    d = &mut stop_rx => break 'run d.unwrap_or(Duration::from_secs(10)),
                    e = events.next() => {
                        if loader.note(e, &mut waiting) {
                            again = true;
                        }
                    }
                    outcome = &mut compile => break outcome,
                }
            };
            let outcome = match outcome {
                Ok(Err(Stopped::Superseded)) => {
                    streak += 1;
                    tracing::debug!(generation, "config build superseded by a newer change");
                    continue;
                }
                Ok(Ok(built)) => Ok(built),
                Ok(Err(Stopped::Rejected(r))) => Err(r),
                Err(e) => {
                    loader.forget_files();
                    Err(Rejected {
                        diagnostics: vec![Diagnostic::error(
                            sluice_model::codes::INTERNAL,
                            format!("reload panicked: {e}"),
                        )],
                    })
                }
            };
            streak = 0;
            let result = match outcome {
                Ok((s, wanted)) => {
                    // New listeners are bound before the snapshot is published: a reload that
                    // needs a port held elsewhere is rejected, and the previous config stays.
                    let unix = s.unix_listeners();
                    let mut unbound: Vec<(String, String)> = manager
                        .bind_missing(&wanted)
                        .into_iter()
                        .map(|(a, e)| (a.to_string(), e))
                        .collect();
                    unbound.extend(manager.bind_unix_missing(&unix).await);
                    if unbound.is_empty() {
                        // Telemetry's per-snapshot tables, and freeing the previous snapshot
                        // when no request holds it any more, cost as much as the config is
                        // large: off the runtime workers too.
                        let l = loader.clone();
                        let published = s.clone();
                        let publish = loader.thread.run(move || {
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
                        manager.close_unwanted_unix(&unix);
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
                        // The files were read for a snapshot that is not published.
                        loader.forget_files();
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
            // Callers whose change this build read get its outcome; later ones wait for the next.
            let (answered, later): (Vec<_>, Vec<_>) =
                waiting.drain(..).partition(|(g, _)| *g <= generation);
            waiting = later;
            for (_, tx) in answered {
                let _ = tx.send(result.clone());
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

/// `DYNAMIC_DNS` host names resolved by the DNS resolver, with its TTL cache.
struct DynamicDns(DnsResolver);

impl sluice_proxy::dynamic_dns::HostResolver for DynamicDns {
    fn resolve<'a>(&'a self, host: &'a str) -> sluice_proxy::dynamic_dns::Resolving<'a> {
        Box::pin(self.0.resolve_host(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_entry(i: usize, host: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: se-{i}, namespace: default}}\n\
             spec:\n  hosts: [{host}]\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 127.0.0.1}}]\n"
        )
    }

    /// A build that a newer change superseded after it had read the files, or that was
    /// rejected, leaves the file cache describing the active snapshot: the next build parses
    /// what changed since that snapshot only, not the whole tree again.
    #[tokio::test]
    async fn a_build_without_a_snapshot_leaves_the_file_cache_of_the_active_config() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            std::fs::write(
                dir.path().join(format!("se-{i}.yaml")),
                service_entry(i, &format!("s{i}.example.com")),
            )
            .unwrap();
        }
        let mut opts = RunOptions::new(vec![dir.path().to_path_buf()]);
        opts.dns = None;
        let telemetry = Arc::new(Telemetry::new(opts.telemetry.clone()).unwrap());
        let loader = Loader::new(&opts, ConfigHandle::new(), telemetry);
        let parsed = || loader.files.lock().unwrap().last_read().parsed;
        let Ok((first, _)) = loader.load(&|| false) else {
            panic!("the first load failed");
        };
        loader.publish(first);
        assert_eq!(parsed(), 4);

        std::fs::write(
            dir.path().join("se-2.yaml"),
            service_entry(2, "edited.example.com"),
        )
        .unwrap();
        assert!(matches!(loader.load(&|| true), Err(Stopped::Superseded)));

        let Ok((next, _)) = loader.load(&|| false) else {
            panic!("the load after the superseded one failed");
        };
        assert_eq!(parsed(), 1, "only the edited file is parsed again");
        assert!(next.registry.get("edited.example.com").is_some());
        assert!(next.registry.get("s2.example.com").is_none());
        loader.publish(next);

        // A rejected build leaves it too: the broken file put back as it was is not parsed.
        let se3 = dir.path().join("se-3.yaml");
        let original = std::fs::read_to_string(&se3).unwrap();
        std::fs::write(
            &se3,
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nspec: [\n",
        )
        .unwrap();
        assert!(matches!(loader.load(&|| false), Err(Stopped::Rejected(_))));
        std::fs::write(&se3, original).unwrap();
        assert!(loader.load(&|| false).is_ok());
        assert_eq!(parsed(), 0, "every file is as the active config read it");
    }
}
