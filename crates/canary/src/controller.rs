//! The controller loop: finds Canaries in the active config, checks each at its interval,
//! persists the states and hands the overlays to the compile step.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sluice_config::canary::{self, CanaryOverlays, CanarySettings, HookType};
use sluice_model::{Resource, Spec};
use sluice_telemetry::canary::{CanaryMetrics, CounterReading, SubsetStats, SubsetTap};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{InMemory, StateBackend, COMMAND_ANNOTATION};
use crate::machine::{self, Observation, Transition, Window};
use crate::state::{CanaryState, Phase};
use crate::store::StateFile;
use crate::webhook;

/// A canary's key: `namespace/name`.
pub type CanaryKey = String;

/// What an operator can ask of a canary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Skip the rest of the analysis and promote.
    Promote,
    /// Roll back now.
    Abort,
    /// Hold the routes as they are; no checks.
    Pause,
    /// Continue after a pause.
    Resume,
}

impl Command {
    /// Parses `promote`, `abort`, `pause` or `resume`.
    pub fn from_name(s: &str) -> Option<Command> {
        Some(match s {
            "promote" => Command::Promote,
            "abort" => Command::Abort,
            "pause" => Command::Pause,
            "resume" => Command::Resume,
            _ => return None,
        })
    }
}

/// What the controller needs from the running proxy.
pub trait ControllerHost: Send + Sync + 'static {
    /// The objects of the active config.
    fn resources(&self) -> Arc<Vec<Arc<Resource>>>;
    /// Compiles and publishes the config with these overlays; resolves once it is active.
    fn apply(&self, overlays: CanaryOverlays) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// Calls one webhook (an HTTP POST; tests answer on their own).
    fn call_hook<'a>(
        &'a self,
        hook: &'a sluice_config::canary::Webhook,
        payload: webhook::Payload<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move { webhook::call(hook, &payload).await })
    }
}

/// One Canary of the config, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// `namespace/name`.
    pub key: CanaryKey,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The spec.
    pub spec: sluice_model::Canary,
    /// Its settings.
    pub settings: CanarySettings,
    /// The route's destination host (FQDN), when the route was found.
    pub host: Option<String>,
    /// What is rolled out; a change starts a new canary.
    pub revision: String,
    /// The operator command asked through the Canary's command annotation, if any.
    pub command: Option<String>,
}

/// The Canaries of a config.
pub fn targets<R: Borrow<Resource>>(resources: &[R]) -> Vec<Target> {
    let mut out = Vec::new();
    let resources: Vec<&Resource> = resources.iter().map(Borrow::borrow).collect();
    for r in resources.iter().copied() {
        let Spec::Canary(c) = &r.spec else {
            continue;
        };
        let ns = &r.metadata.namespace;
        let host = resources.iter().find_map(|o| match &o.spec {
            Spec::VirtualService(vs)
                if o.metadata.namespace == *ns && o.metadata.name == c.virtual_service =>
            {
                let i = canary::overlay::target_route(vs, c.route.as_deref())?;
                let d = vs
                    .http
                    .get(i)?
                    .route
                    .iter()
                    .find_map(|d| d.destination.as_ref())?;
                Some(sluice_config::host::fqdn(&d.host, ns))
            }
            _ => None,
        });
        let (settings, _) = canary::settings::resolve(c);
        out.push(Target {
            key: format!("{ns}/{}", r.metadata.name),
            namespace: ns.clone(),
            name: r.metadata.name.clone(),
            revision: format!(
                "{}/{} {}->{}",
                c.virtual_service,
                c.route.as_deref().unwrap_or(""),
                c.stable_subset,
                c.canary_subset
            ),
            spec: (**c).clone(),
            settings,
            host,
            command: r.metadata.annotations.get(COMMAND_ANNOTATION).cloned(),
        });
    }
    out
}

struct Entry {
    target: Target,
    state: CanaryState,
    next_check: Instant,
    tap: Option<Arc<SubsetTap>>,
    served: CounterReading,
    mirrored: CounterReading,
}

impl Entry {
    fn rebase(&mut self) {
        if let Some(t) = &self.tap {
            self.served = t.served.read();
            self.mirrored = t.mirrored.read();
        }
    }

    fn window(&self, mirror: bool) -> Window {
        let Some(tap) = &self.tap else {
            return Window::default();
        };
        let (now, before) = if mirror {
            (tap.mirrored.read(), &self.mirrored)
        } else {
            (tap.served.read(), &self.served)
        };
        let (requests, errors, p99_ms) = now.since(before);
        Window {
            requests,
            errors,
            p99_ms,
        }
    }
}

/// The canary controller of one proxy.
pub struct Controller {
    host: Arc<dyn ControllerHost>,
    stats: Arc<SubsetStats>,
    metrics: Arc<CanaryMetrics>,
    backend: Arc<dyn StateBackend>,
    entries: Mutex<BTreeMap<CanaryKey, Entry>>,
    applied: tokio::sync::Mutex<Option<CanaryOverlays>>,
    wake: Notify,
    started: Instant,
    started_ms: u64,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller; `file` persists the states (file mode).
    pub fn new(
        host: Arc<dyn ControllerHost>,
        stats: Arc<SubsetStats>,
        metrics: Arc<CanaryMetrics>,
        file: Option<StateFile>,
    ) -> Arc<Controller> {
        let backend: Arc<dyn StateBackend> = match file {
            Some(f) => Arc::new(f),
            None => Arc::new(InMemory),
        };
        Controller::with_backend(host, stats, metrics, backend)
    }

    /// A controller whose states persist in `backend` (Kubernetes: the Canary statuses, with
    /// a leader).
    pub fn with_backend(
        host: Arc<dyn ControllerHost>,
        stats: Arc<SubsetStats>,
        metrics: Arc<CanaryMetrics>,
        backend: Arc<dyn StateBackend>,
    ) -> Arc<Controller> {
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Arc::new(Controller {
            host,
            stats,
            metrics,
            backend,
            entries: Mutex::new(BTreeMap::new()),
            applied: tokio::sync::Mutex::new(None),
            wake: Notify::new(),
            started: Instant::now(),
            started_ms,
        })
    }

    /// Wall-clock ms, advancing with tokio's clock (so paused-clock tests see time move).
    fn now_ms(&self) -> u64 {
        self.started_ms + self.started.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<CanaryKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The overlays the states want, by canary.
    pub fn overlays(&self) -> CanaryOverlays {
        self.lock()
            .iter()
            .map(|(k, e)| (k.clone(), machine::overlay_of(&e.target.settings, &e.state)))
            .collect()
    }

    /// The config changed: pick up new, changed and deleted Canaries.
    pub fn config_changed(&self) {
        self.wake.notify_one();
    }

    /// Loads the saved states and publishes the first overlays; call once before
    /// [`Controller::run`].
    pub async fn start(self: &Arc<Self>) {
        self.sync(self.backend.load(), true);
        self.publish().await;
        if self.backend.is_leader() {
            self.apply_commands().await;
        }
    }

    /// Whether this proxy takes its states from the shared ones instead of deciding.
    fn follows(&self) -> bool {
        self.backend.shared() && !self.backend.is_leader()
    }

    /// Matches the entries with the config's Canaries; `saved` states continue their canary,
    /// and with `adopt` replace the states of canaries already known (a proxy that follows).
    fn sync(&self, mut saved: BTreeMap<CanaryKey, CanaryState>, adopt: bool) {
        let resources = self.host.resources();
        let found = targets(&resources);
        let now = Instant::now();
        let now_ms = self.now_ms();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|k, _| found.iter().any(|t| &t.key == k));
        if entries.len() != before {
            tracing::info!("canary removed: its overlay is removed with it");
        }
        for t in found {
            let interval = t.settings.interval;
            if let Some(e) = entries.get_mut(&t.key) {
                if e.state.target == t.revision {
                    if adopt {
                        if let Some(s) = saved.remove(&t.key).filter(|s| s.target == t.revision) {
                            if s != e.state {
                                e.state = s;
                                self.metrics.set(
                                    &t.namespace,
                                    &t.name,
                                    e.state.weight,
                                    e.state.phase.code(),
                                );
                            }
                        }
                    }
                    e.target = t;
                    continue;
                }
            }
            let state = match saved.remove(&t.key) {
                Some(s) if s.target == t.revision => {
                    tracing::info!(canary = %t.key, phase = s.phase.name(), weight = s.weight, "canary continues from its saved state");
                    s
                }
                _ => {
                    tracing::info!(canary = %t.key, target = %t.revision, "canary found: Initializing");
                    CanaryState::new(t.revision.clone(), now_ms)
                }
            };
            let tap = t
                .host
                .as_deref()
                .map(|h| self.stats.tap(h, &t.spec.canary_subset));
            let mut e = Entry {
                target: t,
                state,
                next_check: now + interval,
                tap,
                served: CounterReading::default(),
                mirrored: CounterReading::default(),
            };
            e.rebase();
            self.metrics.set(
                &e.target.namespace,
                &e.target.name,
                e.state.weight,
                e.state.phase.code(),
            );
            entries.insert(e.target.key.clone(), e);
        }
    }

    async fn persist(&self) {
        let states: BTreeMap<CanaryKey, CanaryState> = self
            .lock()
            .iter()
            .map(|(k, e)| (k.clone(), e.state.clone()))
            .collect();
        self.backend.save(&states).await;
    }

    /// Applies the overlays when they changed since the last time.
    async fn publish(&self) {
        let overlays = self.overlays();
        let mut applied = self.applied.lock().await;
        // Nothing published yet and nothing to overlay: the config in force is already right.
        if applied
            .as_ref()
            .map_or(overlays.is_empty(), |a| *a == overlays)
        {
            return;
        }
        self.host.apply(overlays.clone()).await;
        *applied = Some(overlays);
        // The windows start with the routes now in force.
        for e in self.lock().values_mut() {
            e.rebase();
        }
    }

    fn report(&self, target: &Target, transitions: &[Transition]) {
        for t in transitions {
            tracing::info!(
                canary = %target.key,
                from = t.from.name(),
                to = t.to.name(),
                weight = t.weight,
                "canary {}: {}",
                t.to.name(),
                t.message
            );
            if t.rollback {
                self.metrics.rollback(&target.namespace, &target.name);
            }
            self.backend.transition(&target.key, t);
        }
    }

    /// Checks every canary that is due; returns when the earliest next check is.
    async fn check_due(&self) -> Option<Instant> {
        // Only the leader judges; the others follow the states it saves.
        if !self.backend.is_leader() {
            return None;
        }
        let now = Instant::now();
        let due: Vec<(Target, CanaryState)> = self
            .lock()
            .values()
            .filter(|e| e.next_check <= now)
            .map(|e| (e.target.clone(), e.state.clone()))
            .collect();
        let mut changed = false;
        for (target, seen) in due {
            let hooks = self.call_hooks(&target, &seen).await;
            let now_ms = self.now_ms();
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(&target.key) else {
                continue;
            };
            e.next_check = Instant::now() + target.settings.interval;
            // An operator's command came in meanwhile: this check was for the old state.
            if e.state != seen {
                continue;
            }
            let mirror = machine::overlay_of(&target.settings, &e.state)
                .mirror
                .is_some();
            let obs = Observation {
                window: e.window(mirror),
                hooks,
            };
            let (result, transitions) = machine::tick(&target.settings, &mut e.state, &obs, now_ms);
            e.rebase();
            if let Some(label) = result.label() {
                self.metrics.check(&target.namespace, &target.name, label);
                tracing::debug!(canary = %target.key, result = label, requests = obs.window.requests, errors = obs.window.errors, "canary check: {}", e.state.message);
            }
            self.metrics.set(
                &target.namespace,
                &target.name,
                e.state.weight,
                e.state.phase.code(),
            );
            changed |= e.state != seen;
            drop(entries);
            self.report(&target, &transitions);
        }
        if changed {
            self.persist().await;
            self.publish().await;
        }
        self.lock().values().map(|e| e.next_check).min()
    }

    async fn call_hooks(
        &self,
        target: &Target,
        state: &CanaryState,
    ) -> BTreeMap<HookType, Result<(), String>> {
        let mut out = BTreeMap::new();
        for t in machine::hooks_due(&target.settings, state) {
            let mut result = Ok(());
            for hook in target.settings.hooks(t) {
                let payload = webhook::Payload {
                    name: &target.name,
                    namespace: &target.namespace,
                    phase: state.phase.name(),
                    hook_type: t.name(),
                    metadata: &hook.metadata,
                };
                if let Err(e) = self.host.call_hook(hook, payload).await {
                    result = Err(e);
                    break;
                }
            }
            out.insert(t, result);
        }
        out
    }

    /// Runs the checks until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut leadership = self.backend.leadership();
        loop {
            let next = self.check_due().await;
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let lead = async {
                match leadership.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep => {}
                () = self.wake.notified() => {
                    let follows = self.follows();
                    let saved = if follows { self.backend.load() } else { BTreeMap::new() };
                    self.sync(saved, follows);
                    self.publish().await;
                    self.apply_commands().await;
                }
                changed = lead => {
                    if !changed {
                        leadership = None;
                        continue;
                    }
                    self.leadership_changed().await;
                }
            }
        }
    }

    /// This proxy gained or lost the lead: a new leader continues from the saved states, with
    /// fresh windows of its own traffic.
    async fn leadership_changed(&self) {
        if !self.backend.is_leader() {
            tracing::info!("no longer leading the canary analysis; following the saved states");
            return;
        }
        tracing::info!("leading the canary analysis; continuing from the saved states");
        self.sync(self.backend.load(), true);
        let now = Instant::now();
        for e in self.lock().values_mut() {
            e.next_check = now + e.target.settings.interval;
            e.rebase();
        }
        self.publish().await;
        self.apply_commands().await;
    }

    /// Acts on the command annotations not handled yet (leader only).
    async fn apply_commands(&self) {
        if !self.backend.is_leader() {
            return;
        }
        let pending: Vec<(CanaryKey, String)> = self
            .lock()
            .iter()
            .filter_map(|(k, e)| {
                let c = e.target.command.as_ref()?;
                (e.state.last_command.as_ref() != Some(c)).then(|| (k.clone(), c.clone()))
            })
            .collect();
        if pending.is_empty() {
            return;
        }
        for (key, value) in pending {
            let action = value.split('@').next().unwrap_or_default().trim();
            let outcome = match Command::from_name(action) {
                Some(cmd) => self.command_inner(&key, cmd).map(|_| ()),
                None => Err(format!(
                    "unknown command `{action}`: use promote, abort, pause or resume"
                )),
            };
            if let Err(e) = outcome {
                tracing::warn!(canary = %key, command = %value, "canary command not applied: {e}");
            }
            if let Some(e) = self.lock().get_mut(&key) {
                e.state.last_command = Some(value);
            }
        }
        self.persist().await;
        self.publish().await;
    }

    /// Applies an operator's command to the canary `key` and publishes the routes it wants.
    pub async fn command(&self, key: &str, cmd: Command) -> Result<Value, String> {
        if self.follows() {
            return Err(format!(
                "this proxy does not lead the canary analysis: ask the leader, or annotate the Canary ({COMMAND_ANNOTATION}, `sluice canary ... --kubernetes`)"
            ));
        }
        self.command_inner(key, cmd)?;
        self.persist().await;
        self.publish().await;
        self.wake.notify_one();
        self.status(key).ok_or_else(|| format!("no canary {key}"))
    }

    /// Applies a command to the state, without saving or publishing.
    fn command_inner(&self, key: &str, cmd: Command) -> Result<(), String> {
        let now_ms = self.now_ms();
        {
            let mut entries = self.lock();
            let Some(e) = entries.get_mut(key) else {
                return Err(format!("no canary {key}"));
            };
            let transitions = machine::command(&e.target.settings, &mut e.state, cmd, now_ms)?;
            e.next_check = Instant::now() + e.target.settings.interval;
            self.metrics.set(
                &e.target.namespace,
                &e.target.name,
                e.state.weight,
                e.state.phase.code(),
            );
            let target = e.target.clone();
            drop(entries);
            self.report(&target, &transitions);
        }
        Ok(())
    }

    /// One canary's status, as the admin API shows it.
    pub fn status(&self, key: &str) -> Option<Value> {
        let entries = self.lock();
        entries.get(key).map(|e| self.status_of(e))
    }

    /// Every canary's status.
    pub fn list(&self) -> Value {
        let entries = self.lock();
        Value::Array(entries.values().map(|e| self.status_of(e)).collect())
    }

    /// The key of the canary called `name` (with its namespace given or not).
    pub fn resolve(&self, namespace: Option<&str>, name: &str) -> Option<CanaryKey> {
        let entries = self.lock();
        entries
            .values()
            .find(|e| e.target.name == name && namespace.is_none_or(|ns| ns == e.target.namespace))
            .map(|e| e.target.key.clone())
    }

    fn status_of(&self, e: &Entry) -> Value {
        let s = &e.state;
        let t = &e.target;
        let overlay = machine::overlay_of(&t.settings, s);
        json!({
            "name": t.name,
            "namespace": t.namespace,
            "virtualService": t.spec.virtual_service,
            "route": t.spec.route,
            "host": t.host,
            "stableSubset": t.spec.stable_subset,
            "canarySubset": t.spec.canary_subset,
            "phase": s.phase.name(),
            "weight": s.weight,
            "mirror": overlay.mirror,
            "matched": overlay.matched,
            "stage": s.stage,
            "stages": t.settings.stages,
            "passedChecks": s.passed,
            "failedChecks": s.failed_checks,
            "threshold": t.settings.threshold,
            "intervalMs": t.settings.interval.as_millis() as u64,
            "minRequests": t.settings.min_requests,
            "timeInStageMs": self.now_ms().saturating_sub(s.stage_since_ms),
            "message": s.message,
            "rollbackReason": s.rollback_reason,
            "lastCheck": s.last_check,
            "history": s.history,
            "leader": self.backend.is_leader(),
        })
    }

    /// Whether any canary is still being analysed (used by tests and the demo).
    pub fn phase(&self, key: &str) -> Option<Phase> {
        self.lock().get(key).map(|e| e.state.phase)
    }
}

/// The overlays saved in `file` for the Canaries of `resources` (what a proxy running on this
/// config applies; `sluice explain` on files shows the same routes).
pub fn saved_overlays<R: Borrow<Resource>>(resources: &[R], file: &StateFile) -> CanaryOverlays {
    let saved = file.load().unwrap_or_default();
    targets(resources)
        .into_iter()
        .filter_map(|t| {
            let state = saved.get(&t.key).filter(|s| s.target == t.revision)?;
            Some((t.key.clone(), machine::overlay_of(&t.settings, state)))
        })
        .collect()
}
