//! The controller under tokio's paused clock: every phase, the low-traffic wait, rollback by
//! threshold, webhook gates, operator commands and a restart in the middle of a canary.
//! Traffic is fed to the real per-subset taps the proxy records into.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_canary::controller::{Command, ControllerHost};
use sluice_canary::webhook::Payload;
use sluice_canary::{Controller, Phase, StateFile};
use sluice_config::canary::{CanaryOverlays, Webhook};
use sluice_model::{parse_text, Resource};
use sluice_telemetry::canary::{CanaryMetrics, SubsetStats};

const HOST: &str = "app.default.svc.cluster.local";
const KEY: &str = "default/app";

fn config(analysis: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: [app]
  http:
  - name: primary
    route: [{{destination: {{host: app, subset: v1}}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
---
apiVersion: rollouts.sluice.dev/v1alpha1
kind: Canary
metadata: {{name: app}}
spec:
  virtualService: app
  stableSubset: v1
  canarySubset: v2
  analysis:
{analysis}
"#
    )
}

struct FakeHost {
    resources: Mutex<Arc<Vec<Resource>>>,
    applied: Mutex<Vec<CanaryOverlays>>,
    /// Answers by hook type name; absent: 200.
    hooks: Mutex<BTreeMap<String, Result<(), String>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeHost {
    fn new(text: &str) -> Arc<FakeHost> {
        let parsed = parse_text(text, None);
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        Arc::new(FakeHost {
            resources: Mutex::new(Arc::new(parsed.resources)),
            applied: Mutex::new(Vec::new()),
            hooks: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn weights(&self) -> Vec<u32> {
        self.applied
            .lock()
            .unwrap()
            .iter()
            .filter_map(|o| o.get(KEY).map(|o| o.weight))
            .collect()
    }

    fn last(&self) -> Option<sluice_config::canary::CanaryOverlay> {
        self.applied
            .lock()
            .unwrap()
            .last()
            .and_then(|o| o.get(KEY).cloned())
    }
}

impl ControllerHost for FakeHost {
    fn resources(&self) -> Arc<Vec<Arc<Resource>>> {
        let owned = self.resources.lock().unwrap().clone();
        Arc::new(owned.iter().cloned().map(Arc::new).collect())
    }

    fn apply(&self, overlays: CanaryOverlays) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.applied.lock().unwrap().push(overlays);
        Box::pin(async {})
    }

    fn call_hook<'a>(
        &'a self,
        hook: &'a Webhook,
        payload: Payload<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        let t = payload.hook_type.to_string();
        self.calls.lock().unwrap().push(t.clone());
        let answer = self
            .hooks
            .lock()
            .unwrap()
            .get(&t)
            .cloned()
            .unwrap_or(Ok(()));
        let name = hook.name.clone();
        Box::pin(async move { answer.map_err(|e| format!("{name}: {e}")) })
    }
}

struct Rig {
    host: Arc<FakeHost>,
    stats: Arc<SubsetStats>,
    controller: Arc<Controller>,
    task: tokio::task::JoinHandle<()>,
    interval: Duration,
}

impl Rig {
    async fn start(analysis: &str, file: Option<StateFile>) -> Rig {
        Self::start_with(FakeHost::new(&config(analysis)), file).await
    }

    async fn start_with(host: Arc<FakeHost>, file: Option<StateFile>) -> Rig {
        let stats = Arc::new(SubsetStats::default());
        let controller = Controller::new(
            host.clone(),
            stats.clone(),
            Arc::new(CanaryMetrics::default()),
            file,
        );
        controller.start().await;
        let task = tokio::spawn(controller.clone().run());
        Rig {
            host,
            stats,
            controller,
            task,
            interval: Duration::from_secs(10),
        }
    }

    /// Requests to the canary during the next interval, then the check.
    async fn interval_with(&self, ok: u64, failed: u64, mirror: bool) {
        for i in 0..ok + failed {
            let status = if i < failed { 503 } else { 200 };
            self.stats
                .record(HOST, "v2", mirror, status, Duration::from_millis(4));
        }
        tokio::time::sleep(self.interval).await;
        // Let the check (and its publish) finish.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn phase(&self) -> Phase {
        self.controller.phase(KEY).unwrap_or(Phase::Failed)
    }

    fn status(&self) -> serde_json::Value {
        self.controller.status(KEY).unwrap_or_default()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const WEIGHTS: &str = r#"    interval: 10s
    threshold: 2
    stepWeight: 10
    maxWeight: 30
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}
    - {name: request-duration, thresholdRange: {max: 500}}"#;

#[tokio::test(start_paused = true)]
async fn healthy_canary_goes_through_every_step_to_succeeded() {
    let rig = Rig::start(WEIGHTS, None).await;
    assert_eq!(rig.phase(), Phase::Initializing);
    assert_eq!(rig.host.weights(), [0]);
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Progressing);
    assert_eq!(rig.host.last().map(|o| o.weight), Some(10));
    for expected in [20, 30] {
        rig.interval_with(50, 0, false).await;
        assert_eq!(rig.host.last().map(|o| o.weight), Some(expected));
    }
    rig.interval_with(50, 0, false).await;
    assert_eq!(rig.phase(), Phase::Promoting);
    assert_eq!(rig.host.last().map(|o| o.weight), Some(100));
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Succeeded);
    // Succeeded stays at 100 %.
    rig.interval_with(0, 0, false).await;
    // Promoting and Succeeded both publish 100 % (the phase shown changes).
    assert_eq!(rig.host.weights(), [0, 10, 20, 30, 100, 100]);
    assert_eq!(rig.host.last().map(|o| o.phase), Some("Succeeded".into()));
    let s = rig.status();
    assert_eq!(s["lastCheck"]["metrics"][0]["value"], 100.0);
    assert!(s["history"].as_array().is_some_and(|h| h.len() >= 6));
}

#[tokio::test(start_paused = true)]
async fn too_little_traffic_waits_instead_of_passing_or_failing() {
    let rig = Rig::start(WEIGHTS, None).await;
    rig.interval_with(0, 0, false).await;
    // 5 requests, all failing: fewer than minRequests (20), so not a failed check.
    rig.interval_with(0, 5, false).await;
    assert_eq!(rig.phase(), Phase::Waiting);
    let s = rig.status();
    assert!(
        s["message"]
            .as_str()
            .is_some_and(|m| m.contains("too little traffic")),
        "{s}"
    );
    assert_eq!(s["failedChecks"], 0);
    assert_eq!(s["weight"], 10);
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.phase(), Phase::Progressing);
    assert_eq!(rig.host.last().map(|o| o.weight), Some(20));
}

#[tokio::test(start_paused = true)]
async fn failing_canary_is_rolled_back_after_threshold_checks() {
    let rig = Rig::start(WEIGHTS, None).await;
    rig.interval_with(0, 0, false).await;
    rig.interval_with(40, 10, false).await;
    assert_eq!(rig.phase(), Phase::Progressing);
    assert_eq!(rig.status()["failedChecks"], 1);
    // A passing check in between resets the count: failures must come in a row.
    rig.interval_with(50, 0, false).await;
    assert_eq!(rig.status()["failedChecks"], 0);
    assert_eq!(rig.host.last().map(|o| o.weight), Some(20));
    rig.interval_with(40, 10, false).await;
    rig.interval_with(40, 10, false).await;
    assert_eq!(rig.phase(), Phase::Failed);
    let s = rig.status();
    let reason = s["rollbackReason"].as_str().unwrap_or("");
    assert!(
        reason.contains("request-success-rate 80.0 not >= 99"),
        "{reason}"
    );
    let last = rig.host.last().expect("overlay");
    assert_eq!((last.weight, last.mirror, last.matched), (0, None, false));
    // Failed is final: more traffic changes nothing.
    rig.interval_with(50, 0, false).await;
    assert_eq!(rig.phase(), Phase::Failed);
}

#[tokio::test(start_paused = true)]
async fn mirror_stage_is_judged_on_mirrored_requests() {
    let rig = Rig::start(
        r#"    interval: 10s
    threshold: 1
    mirror: true
    mirrorWeight: 100
    iterations: 1
    stepWeights: [10]
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}"#,
        None,
    )
    .await;
    rig.interval_with(0, 0, false).await;
    let o = rig.host.last().expect("overlay");
    assert_eq!((o.weight, o.mirror), (0, Some(100)));
    // Served requests of the subset do not count in the mirror stage.
    rig.interval_with(50, 0, false).await;
    assert_eq!(rig.phase(), Phase::Waiting);
    rig.interval_with(0, 30, true).await;
    assert_eq!(rig.phase(), Phase::Failed);
    assert_eq!(
        rig.host.last().map(|o| (o.weight, o.mirror)),
        Some((0, None))
    );
}

#[tokio::test(start_paused = true)]
async fn ab_stage_then_weights() {
    let rig = Rig::start(
        r#"    interval: 10s
    iterations: 2
    match: [{headers: {canary: {exact: canary-tester}}}]
    stepWeights: [50]
    metrics:
    - {name: request-success-rate, thresholdRange: {min: 99}}"#,
        None,
    )
    .await;
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.host.last().map(|o| o.matched), Some(true));
    rig.interval_with(25, 0, false).await;
    assert_eq!(rig.host.last().map(|o| o.matched), Some(true));
    rig.interval_with(25, 0, false).await;
    let o = rig.host.last().expect("overlay");
    assert_eq!((o.weight, o.matched), (50, false));
}

#[tokio::test(start_paused = true)]
async fn webhooks_gate_the_stages() {
    let rig = Rig::start(
        r#"    interval: 10s
    threshold: 2
    stepWeights: [50]
    webhooks:
    - {name: smoke, type: pre-rollout, url: "http://hooks/smoke"}
    - {name: load, type: rollout, url: "http://hooks/load"}
    - {name: gate, type: confirm-promotion, url: "http://hooks/gate"}
    - {name: cleanup, type: post-rollout, url: "http://hooks/cleanup"}"#,
        None,
    )
    .await;
    rig.host
        .hooks
        .lock()
        .unwrap()
        .insert("pre-rollout".into(), Err("503".into()));
    rig.interval_with(0, 0, false).await;
    // A refused pre-rollout gate is a failed check; the canary gets no traffic yet.
    assert_eq!(rig.phase(), Phase::Initializing);
    assert_eq!(rig.status()["failedChecks"], 1);
    rig.host.hooks.lock().unwrap().clear();
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Progressing);
    rig.host
        .hooks
        .lock()
        .unwrap()
        .insert("confirm-promotion".into(), Err("500 not yet".into()));
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.phase(), Phase::Waiting);
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.phase(), Phase::Waiting, "held, not failed");
    assert!(rig.status()["message"]
        .as_str()
        .is_some_and(|m| m.contains("confirm-promotion")));
    rig.host.hooks.lock().unwrap().clear();
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Promoting);
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Succeeded);
    let calls = rig.host.calls.lock().unwrap().clone();
    assert_eq!(calls.first().map(String::as_str), Some("pre-rollout"));
    assert!(calls.contains(&"rollout".to_string()));
    assert_eq!(calls.last().map(String::as_str), Some("post-rollout"));
}

#[tokio::test(start_paused = true)]
async fn refused_rollout_gate_fails_checks_and_a_rollback_gate_rolls_back() {
    let rig = Rig::start(
        r#"    interval: 10s
    threshold: 2
    stepWeights: [10, 50]
    webhooks:
    - {name: load, type: rollout, url: "http://hooks/load"}
    - {name: stop, type: rollback, url: "http://hooks/stop"}"#,
        None,
    )
    .await;
    // Flagger's rollback gate: non-2xx means "do not roll back".
    rig.host
        .hooks
        .lock()
        .unwrap()
        .insert("rollback".into(), Err("404".into()));
    rig.interval_with(0, 0, false).await;
    rig.host
        .hooks
        .lock()
        .unwrap()
        .insert("rollout".into(), Err("500".into()));
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.status()["failedChecks"], 1);
    rig.host.hooks.lock().unwrap().remove("rollout");
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.host.last().map(|o| o.weight), Some(50));
    rig.host.hooks.lock().unwrap().remove("rollback");
    rig.interval_with(30, 0, false).await;
    assert_eq!(rig.phase(), Phase::Failed);
    assert!(rig.status()["rollbackReason"]
        .as_str()
        .is_some_and(|r| r.contains("rollback gate")));
}

#[tokio::test(start_paused = true)]
async fn operator_commands_pause_resume_promote_and_abort() {
    let rig = Rig::start(WEIGHTS, None).await;
    rig.interval_with(0, 0, false).await;
    rig.controller.command(KEY, Command::Pause).await.unwrap();
    assert_eq!(rig.phase(), Phase::Paused);
    // Paused: failing traffic changes nothing, the weight stays.
    rig.interval_with(0, 50, false).await;
    rig.interval_with(0, 50, false).await;
    assert_eq!(rig.phase(), Phase::Paused);
    assert_eq!(rig.host.last().map(|o| o.weight), Some(10));
    assert!(rig.controller.command(KEY, Command::Pause).await.is_err());
    rig.controller.command(KEY, Command::Resume).await.unwrap();
    assert_eq!(rig.phase(), Phase::Progressing);
    rig.controller.command(KEY, Command::Promote).await.unwrap();
    assert_eq!(rig.host.last().map(|o| o.weight), Some(100));
    rig.interval_with(0, 0, false).await;
    assert_eq!(rig.phase(), Phase::Succeeded);
    assert!(rig.controller.command(KEY, Command::Abort).await.is_err());

    let rig = Rig::start(WEIGHTS, None).await;
    rig.interval_with(0, 0, false).await;
    rig.controller.command(KEY, Command::Abort).await.unwrap();
    assert_eq!(rig.phase(), Phase::Failed);
    assert_eq!(rig.status()["rollbackReason"], "aborted by the operator");
    assert_eq!(rig.host.last().map(|o| o.weight), Some(0));
}

#[tokio::test(start_paused = true)]
async fn restart_in_the_middle_continues_from_the_state_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = || Some(StateFile::for_config(dir.path()));
    let rig = Rig::start(WEIGHTS, file()).await;
    rig.interval_with(0, 0, false).await;
    rig.interval_with(50, 0, false).await;
    rig.interval_with(40, 10, false).await;
    assert_eq!(rig.host.last().map(|o| o.weight), Some(20));
    assert_eq!(rig.status()["failedChecks"], 1);
    drop(rig);

    let rig = Rig::start(WEIGHTS, file()).await;
    // The first routes published are the saved stage's, not a fresh start.
    assert_eq!(rig.host.weights(), [20]);
    assert_eq!(rig.phase(), Phase::Progressing);
    assert_eq!(rig.status()["failedChecks"], 1);
    // One more failure reaches the threshold of 2.
    rig.interval_with(40, 10, false).await;
    assert_eq!(rig.phase(), Phase::Failed);
}

#[tokio::test(start_paused = true)]
async fn a_new_canary_subset_starts_a_new_canary_and_deleting_removes_the_overlay() {
    let host = FakeHost::new(&config(WEIGHTS));
    let rig = Rig::start_with(host.clone(), None).await;
    rig.interval_with(0, 0, false).await;
    for _ in 0..4 {
        rig.interval_with(50, 0, false).await;
    }
    assert_eq!(rig.phase(), Phase::Succeeded);
    // The user moves the VirtualService to v2 and rolls out v3 the same way.
    let next = config(WEIGHTS)
        .replace("subset: v1}", "subset: v2}")
        .replace("stableSubset: v1", "stableSubset: v2")
        .replace("canarySubset: v2", "canarySubset: v3");
    *host.resources.lock().unwrap() = Arc::new(parse_text(&next, None).resources);
    rig.controller.config_changed();
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert_eq!(rig.phase(), Phase::Initializing);
    assert_eq!(host.last().map(|o| o.weight), Some(0));
    // Deleting the Canary removes its overlay.
    let without: String = next.split("---").take(2).collect::<Vec<_>>().join("---");
    *host.resources.lock().unwrap() = Arc::new(parse_text(&without, None).resources);
    rig.controller.config_changed();
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    assert!(host
        .applied
        .lock()
        .unwrap()
        .last()
        .is_some_and(|o| o.is_empty()));
}

/// States shared by several controllers, as the Canary statuses are in Kubernetes; one
/// leadership flag per controller.
#[derive(Default)]
struct SharedStates {
    states: Mutex<BTreeMap<String, sluice_canary::CanaryState>>,
    /// Event reasons of the transitions reported, with who reported them.
    events: Mutex<Vec<(String, &'static str)>>,
}

struct SharedBackend {
    name: String,
    shared: Arc<SharedStates>,
    leader: tokio::sync::watch::Sender<bool>,
}

impl sluice_canary::StateBackend for SharedBackend {
    fn load(&self) -> BTreeMap<String, sluice_canary::CanaryState> {
        self.shared.states.lock().unwrap().clone()
    }

    fn save<'a>(
        &'a self,
        states: &'a BTreeMap<String, sluice_canary::CanaryState>,
    ) -> sluice_canary::BoxFuture<'a, ()> {
        assert!(*self.leader.borrow(), "{} saved without leading", self.name);
        self.shared.states.lock().unwrap().extend(states.clone());
        Box::pin(async {})
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.leader.subscribe())
    }

    fn shared(&self) -> bool {
        true
    }

    fn transition(&self, _key: &str, t: &sluice_canary::Transition) {
        self.shared
            .events
            .lock()
            .unwrap()
            .push((self.name.clone(), sluice_canary::event_reason(t)));
    }
}

async fn shared_rig(
    name: &str,
    shared: &Arc<SharedStates>,
    leads: bool,
) -> (Rig, Arc<SharedBackend>) {
    let backend = Arc::new(SharedBackend {
        name: name.into(),
        shared: shared.clone(),
        leader: tokio::sync::watch::channel(leads).0,
    });
    let host = FakeHost::new(&config(WEIGHTS));
    let stats = Arc::new(SubsetStats::default());
    let controller = Controller::with_backend(
        host.clone(),
        stats.clone(),
        Arc::new(CanaryMetrics::default()),
        backend.clone(),
    );
    controller.start().await;
    let task = tokio::spawn(controller.clone().run());
    let rig = Rig {
        host,
        stats,
        controller,
        task,
        interval: Duration::from_secs(10),
    };
    (rig, backend)
}

#[tokio::test(start_paused = true)]
async fn only_the_leader_decides_followers_adopt_and_a_new_leader_continues() {
    let shared = Arc::new(SharedStates::default());
    let (a, lead_a) = shared_rig("a", &shared, true).await;
    let (b, lead_b) = shared_rig("b", &shared, false).await;
    // A leads: initializing → 10 %; the follower does not check, whatever its traffic.
    b.interval_with(50, 50, false).await;
    assert_eq!(a.phase(), Phase::Progressing);
    assert_eq!(a.host.last().map(|o| o.weight), Some(10));
    assert_eq!(b.phase(), Phase::Initializing);
    // A config change (the status written came back through the watch): B adopts it.
    b.controller.config_changed();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.phase(), Phase::Progressing);
    assert_eq!(b.host.last().map(|o| o.weight), Some(10));
    assert!(b.controller.command(KEY, Command::Pause).await.is_err());
    // A judges on its own traffic: 20 %.
    a.interval_with(50, 0, false).await;
    assert_eq!(a.host.last().map(|o| o.weight), Some(20));
    // A loses the Lease, B takes it over and continues from the saved state: 30 %.
    lead_a.leader.send_replace(false);
    lead_b.leader.send_replace(true);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(b.host.last().map(|o| o.weight), Some(20));
    b.interval_with(50, 0, false).await;
    assert_eq!(b.host.last().map(|o| o.weight), Some(30));
    assert_eq!(
        shared.states.lock().unwrap().get(KEY).map(|s| s.weight),
        Some(30)
    );
    // A no longer checks; it follows.
    a.interval_with(0, 50, false).await;
    a.controller.config_changed();
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(a.host.last().map(|o| o.weight), Some(30));
    let states = shared.states.lock().unwrap().clone();
    let history = &states[KEY].history;
    assert_eq!(
        history
            .iter()
            .filter(|h| h.message == "canary found")
            .count(),
        1
    );
    let events = shared.events.lock().unwrap().clone();
    assert!(events.contains(&("a".into(), "Progressing")), "{events:?}");
    assert!(events.contains(&("a".into(), "WeightStep")), "{events:?}");
    assert!(events.contains(&("b".into(), "WeightStep")), "{events:?}");
}
