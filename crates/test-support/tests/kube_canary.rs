//! Canaries in Kubernetes mode, end to end: two gateways (two `KubeSource`s and runtimes, each
//! with its own pod name) against one fake API server, real backends behind the routes. One
//! proxy holds the Lease and writes the Canary status; the other follows it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube-source/tests/fake/mod.rs"]
mod fake;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice_kube::KubeSource;
use sluice_test_support::paced_load::PacedLoad;
use sluice_test_support::{backend, free_port, Backend, BackendArgs, RunOptions};

const KEY: &str = "default/app";

fn cluster(gw_a: u16, gw_b: u16, stable: u16, canary: u16, canary_version: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-a}}
spec:
  selector: {{istio: gw-a}}
  servers:
  - port: {{number: {gw_a}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: gw-b}}
spec:
  selector: {{istio: gw-b}}
  servers:
  - port: {{number: {gw_b}, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: app}}
spec:
  host: app
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: {canary_version}, labels: {{version: {canary_version}}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: app}}
spec:
  hosts: ["*"]
  gateways: [gw-a, gw-b]
  http:
  - name: primary
    route:
    - destination: {{host: app, subset: v1}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  clusterIP: 10.96.0.7
  ports: [{{name: http, port: 8080}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app-stable, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: {stable}}}]
endpoints:
- {{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: app-v1}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app-canary, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{name: http, port: {canary}}}]
endpoints:
- {{addresses: [127.0.0.1], targetRef: {{kind: Pod, name: app-{canary_version}}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: app-v1, labels: {{app: app, version: v1}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: app-{canary_version}, labels: {{app: app, version: {canary_version}}}}}
"#
    )
}

fn canary(canary_version: &str, analysis: &str) -> String {
    format!(
        "apiVersion: rollouts.sluice.dev/v1alpha1\nkind: Canary\nmetadata: {{name: app}}\nspec:\n  virtualService: app\n  route: primary\n  stableSubset: v1\n  canarySubset: {canary_version}\n  analysis:\n{analysis}"
    )
}

/// One gateway: its runtime, its source, the port it serves.
struct Gateway {
    name: &'static str,
    source: Arc<KubeSource>,
    handle: Option<sluice::runtime::ProxyHandle>,
    port: u16,
}

impl Gateway {
    async fn start(api: &fake::FakeApi, name: &'static str, port: u16) -> Gateway {
        let kube = sluice_kube::KubeArgs {
            kubernetes: true,
            kube_api: Some(api.url.clone()),
            sync_timeout: Duration::from_secs(10),
            pod_name: Some(name.to_string()),
            pod_namespace: "istio-system".into(),
            canary_lease_duration: Duration::from_secs(2),
            ..Default::default()
        };
        let source = Arc::new(sluice_kube::start(&kube, None).await.unwrap());
        let mut opts = RunOptions::new(Vec::new());
        opts.admin = "127.0.0.1:0".parse().unwrap();
        opts.proxy.gateway_address = "127.0.0.1".parse().unwrap();
        opts.proxy.labels = [("istio".into(), name.into())].into();
        opts.proxy.mesh_role = false;
        opts.dns = None;
        opts.source = Some(source.clone());
        let handle = sluice::runtime::start(opts).await.unwrap();
        Gateway {
            name,
            source,
            handle: Some(handle),
            port,
        }
    }

    fn leads(&self) -> bool {
        self.handle.is_some() && self.source.leads_canaries()
    }

    fn phase(&self) -> Option<sluice_canary::Phase> {
        self.handle.as_ref()?.canaries.as_ref()?.phase(KEY)
    }

    /// Stops the proxy and its watchers without releasing the Lease (a crash).
    async fn kill(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        self.source.stop();
    }
}

/// Users of `example.com` through the gateway on `port`, every `pace` (at most `max`); with
/// `tester`, one in five carries the tester's header.
fn load(port: u16, pace: Duration, max: u64, tester: bool) -> PacedLoad {
    PacedLoad::start(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "example.com",
        pace,
        max,
        tester,
    )
}

fn status(api: &fake::FakeApi) -> Value {
    api.store
        .lock()
        .unwrap()
        .get("Canary", "default", "app")
        .map(|c| c["status"].clone())
        .unwrap_or(Value::Null)
}

fn lease_holder(api: &fake::FakeApi) -> Option<String> {
    api.store
        .lock()
        .unwrap()
        .get("Lease", "istio-system", "sluice-canary-leader")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Waits until the status's phase is one of `want`; returns it.
async fn wait_for_phase(api: &fake::FakeApi, want: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(api);
        if let Some(p) = s["phase"].as_str().filter(|p| want.contains(p)) {
            return p.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "canary status not {want:?} after {limit:?}: {s}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The weights of the status history, consecutive repeats folded.
fn history_weights(s: &Value) -> Vec<u64> {
    let mut w: Vec<u64> = s["history"]
        .as_array()
        .map(|h| h.iter().filter_map(|e| e["weight"].as_u64()).collect())
        .unwrap_or_default();
    w.dedup();
    w
}

/// The reasons of the Events posted about the Canary.
fn event_reasons(api: &fake::FakeApi) -> Vec<String> {
    api.posted_events()
        .iter()
        .filter(|e| e["regarding"]["kind"] == "Canary" && e["regarding"]["name"] == "app")
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

/// Exactly one of the gateways leads; returns its index.
async fn one_leader(api: &fake::FakeApi, gws: &[&Gateway]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let leading: Vec<usize> = (0..gws.len()).filter(|i| gws[*i].leads()).collect();
        if leading.len() == 1 && lease_holder(api).as_deref() == Some(gws[leading[0]].name) {
            return leading[0];
        }
        assert!(
            Instant::now() < deadline,
            "not exactly one leader: {leading:?}, Lease held by {:?}",
            lease_holder(api)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn two_gateways(api: &fake::FakeApi) -> (Gateway, Gateway) {
    let (pa, pb) = (free_port(), free_port());
    let a = Gateway::start(api, "gw-a", pa).await;
    let b = Gateway::start(api, "gw-b", pb).await;
    (a, b)
}

/// The demo's first story: v2 mirrored, tested by header, then promoted 10 → 50 → 100.
#[tokio::test]
async fn one_leader_promotes_and_the_follower_routes_by_the_status() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let api = fake::FakeApi::start().await;
    let (pa, pb) = (free_port(), free_port());
    api.apply(&cluster(pa, pb, v1.addr().port(), v2.addr().port(), "v2"));
    api.apply(&canary(
        "v2",
        "    interval: 300ms\n    threshold: 2\n    mirror: true\n    mirrorWeight: 100\n    iterations: 1\n    match: [{headers: {canary: {exact: canary-tester}}}]\n    stepWeights: [10, 50]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
    ));
    let a = Gateway::start(&api, "gw-a", pa).await;
    let b = Gateway::start(&api, "gw-b", pb).await;
    let leader = one_leader(&api, &[&a, &b]).await;
    let (lead, follow) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let load_lead = load(lead.port, Duration::from_millis(2), 20_000, true);
    let load_follow = load(follow.port, Duration::from_millis(5), 8_000, true);
    let phase = wait_for_phase(&api, &["Succeeded", "Failed"], Duration::from_secs(30)).await;
    let s = status(&api);
    assert_eq!(phase, "Succeeded", "{s}");
    let messages: Vec<&str> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["message"].as_str())
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("A/B stage")),
        "{messages:?}"
    );
    assert!(history_weights(&s).ends_with(&[10, 50, 100]), "{s}");
    // The follower applies the status: its controller knows the phase, its routes send
    // everything to v2.
    let deadline = Instant::now() + Duration::from_secs(5);
    while follow.phase() != Some(sluice_canary::Phase::Succeeded) {
        assert!(Instant::now() < deadline, "follower: {:?}", follow.phase());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = load_follow.seen();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = load_follow.stop().await;
    let lead_seen = load_lead.stop().await;
    let v1_after = after.by_version.get("v1").copied().unwrap_or(0)
        - before.by_version.get("v1").copied().unwrap_or(0);
    let v2_after = after.by_version.get("v2").copied().unwrap_or(0)
        - before.by_version.get("v2").copied().unwrap_or(0);
    assert_eq!(v1_after, 0, "follower still sends to v1: {after:?}");
    assert!(v2_after > 0, "{after:?}");
    assert_eq!(
        after.failed + lead_seen.failed,
        0,
        "{after:?} {lead_seen:?}"
    );
    // Only the leader wrote the status; the Lease names it; the admin API says who leads.
    let lead_status = lead
        .handle
        .as_ref()
        .unwrap()
        .canaries
        .as_ref()
        .unwrap()
        .status(KEY)
        .unwrap();
    let follow_status = follow
        .handle
        .as_ref()
        .unwrap()
        .canaries
        .as_ref()
        .unwrap()
        .status(KEY)
        .unwrap();
    assert_eq!(
        (
            lead_status["leader"].as_bool(),
            follow_status["leader"].as_bool()
        ),
        (Some(true), Some(false))
    );
    assert!(lead.source.canary_status_writes() > 0);
    assert_eq!(follow.source.canary_status_writes(), 0);
    assert_eq!(lease_holder(&api).as_deref(), Some(lead.name));
    // Events on the Canary for each transition.
    let reasons = event_reasons(&api);
    for r in ["Progressing", "WeightStep", "Promoting", "Promoted"] {
        assert!(reasons.iter().any(|x| x == r), "{r} not in {reasons:?}");
    }
    let (mut a, mut b) = (a, b);
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn failing_canary_is_rolled_back_on_every_gateway() {
    let v1 = backend("app", "v1").await;
    let mut args = BackendArgs::ephemeral("app", "v3");
    args.fail_after = Some(0);
    let v3 = Backend::start(args).await.unwrap();
    let api = fake::FakeApi::start().await;
    let (pa, pb) = (free_port(), free_port());
    api.apply(&cluster(pa, pb, v1.addr().port(), v3.addr().port(), "v3"));
    api.apply(&canary(
        "v3",
        "    interval: 300ms\n    threshold: 2\n    stepWeight: 20\n    maxWeight: 60\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
    ));
    let a = Gateway::start(&api, "gw-a", pa).await;
    let b = Gateway::start(&api, "gw-b", pb).await;
    let leader = one_leader(&api, &[&a, &b]).await;
    let (lead, follow) = if leader == 0 { (&a, &b) } else { (&b, &a) };
    let load_lead = load(lead.port, Duration::from_millis(2), 20_000, false);
    let load_follow = load(follow.port, Duration::from_millis(5), 8_000, false);
    let phase = wait_for_phase(&api, &["Succeeded", "Failed"], Duration::from_secs(30)).await;
    let (lead_at, follow_at) = (load_lead.seen(), load_follow.seen());
    eprintln!(
        "user-visible failures before rollback: leader's gateway {} of {}, follower's {} of {} (20 % canary, 300 ms interval, threshold 2)",
        lead_at.failed, lead_at.total, follow_at.failed, follow_at.total
    );
    assert_eq!(phase, "Failed");
    let s = status(&api);
    assert!(
        s["rollbackReason"]
            .as_str()
            .unwrap_or_default()
            .contains("request-success-rate"),
        "{s}"
    );
    assert_eq!(history_weights(&s), [0, 20, 0]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while follow.phase() != Some(sluice_canary::Phase::Failed) {
        assert!(Instant::now() < deadline, "follower: {:?}", follow.phase());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = (load_lead.seen(), load_follow.seen());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let after = (load_lead.stop().await, load_follow.stop().await);
    // After the rollback, nobody is sent to v3 by either gateway.
    assert_eq!(after.0.failed, before.0.failed, "{after:?}");
    assert_eq!(after.1.failed, before.1.failed, "{after:?}");
    assert!(after.1.total > before.1.total);
    assert_eq!(follow.source.canary_status_writes(), 0);
    let reasons = event_reasons(&api);
    assert!(reasons.iter().any(|r| r == "RolledBack"), "{reasons:?}");
    let rolled_back = api
        .posted_events()
        .into_iter()
        .find(|e| e["reason"] == "RolledBack")
        .unwrap();
    assert_eq!(rolled_back["type"], "Warning");
    assert!(rolled_back["note"]
        .as_str()
        .unwrap()
        .contains("request-success-rate"));
    let (mut a, mut b) = (a, b);
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn killing_the_leader_lets_the_other_continue_from_the_status() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let api = fake::FakeApi::start().await;
    let (mut a, mut b) = two_gateways(&api).await;
    api.apply(&cluster(
        a.port,
        b.port,
        v1.addr().port(),
        v2.addr().port(),
        "v2",
    ));
    api.apply(&canary(
        "v2",
        "    interval: 300ms\n    threshold: 2\n    stepWeights: [10, 20, 30, 40, 50]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
    ));
    let leader = one_leader(&api, &[&a, &b]).await;
    let loads = [
        load(a.port, Duration::from_millis(2), 30_000, false),
        load(b.port, Duration::from_millis(2), 30_000, false),
    ];
    // Kill the leader in the middle of the canary.
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&api)["weight"].as_u64().unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "{}", status(&api));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (dead, survivor) = if leader == 0 {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    let dead_name = dead.name;
    dead.kill().await;
    let at_kill = status(&api);
    let killed_at = Instant::now();
    // The survivor takes over once the Lease expires (2 s) and continues from the status.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !survivor.leads() {
        assert!(Instant::now() < deadline, "no takeover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "took over {:?} after the leader died (lease 2 s)",
        killed_at.elapsed()
    );
    assert_eq!(lease_holder(&api).as_deref(), Some(survivor.name));
    assert_ne!(survivor.name, dead_name);
    let phase = wait_for_phase(&api, &["Succeeded", "Failed"], Duration::from_secs(30)).await;
    assert_eq!(phase, "Succeeded", "{}", status(&api));
    let s = status(&api);
    let found = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["message"] == "canary found")
        .count();
    assert_eq!(found, 1, "the canary started over: {s}");
    let weights = history_weights(&s);
    assert_eq!(weights, [0, 10, 20, 30, 40, 50, 100], "{s}");
    assert!(at_kill["history"].as_array().unwrap().len() < s["history"].as_array().unwrap().len());
    assert!(survivor.source.canary_status_writes() > 0);
    for l in loads {
        l.stop().await;
    }
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn a_restarted_proxy_continues_from_the_status_and_obeys_commands() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let api = fake::FakeApi::start().await;
    let port = free_port();
    api.apply(&cluster(
        port,
        free_port(),
        v1.addr().port(),
        v2.addr().port(),
        "v2",
    ));
    api.apply(&canary(
        "v2",
        "    interval: 300ms\n    threshold: 2\n    stepWeights: [10, 20, 30, 40]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
    ));
    let mut gw = Gateway::start(&api, "gw-a", port).await;
    one_leader(&api, &[&gw]).await;
    let load = load(port, Duration::from_millis(2), 30_000, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while status(&api)["weight"].as_u64().unwrap_or(0) < 20 {
        assert!(Instant::now() < deadline, "{}", status(&api));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Paused through the CLI's path: the annotation, acted on by the leader.
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let paused = sluice_kube::canary::command::run(
        client.clone(),
        "default",
        "pause",
        Some("app"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(paused["phase"], "Paused", "{paused}");
    let weight = paused["weight"].as_u64().unwrap();
    assert!(weight >= 20);
    gw.kill().await;
    // A restart (same pod name): the Lease is still its own, the canary continues paused.
    let mut gw = Gateway::start(&api, "gw-a", port).await;
    one_leader(&api, &[&gw]).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let s = status(&api);
    assert_eq!(s["phase"], "Paused", "{s}");
    assert_eq!(s["weight"].as_u64(), Some(weight));
    assert_eq!(gw.phase(), Some(sluice_canary::Phase::Paused));
    let resumed = sluice_kube::canary::command::run(
        client.clone(),
        "default",
        "resume",
        Some("app"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_ne!(resumed["phase"], "Paused", "{resumed}");
    let phase = wait_for_phase(&api, &["Succeeded", "Failed"], Duration::from_secs(30)).await;
    assert_eq!(phase, "Succeeded", "{}", status(&api));
    let s = status(&api);
    // One canary from start to end: found once, weights only going up, through the restart.
    let weights = history_weights(&s);
    assert_eq!(weights, [0, 10, 20, 30, 40, 100], "{s}");
    let found = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["message"] == "canary found")
        .count();
    assert_eq!(found, 1, "the canary started over: {s}");
    assert_eq!(
        s["lastCommand"].as_str().map(|c| c.starts_with("resume@")),
        Some(true)
    );
    // Pause and resume are Events too, regarding the Canary object itself.
    let reasons = event_reasons(&api);
    assert!(reasons.iter().any(|r| r == "Paused"), "{reasons:?}");
    let uid = api
        .store
        .lock()
        .unwrap()
        .get("Canary", "default", "app")
        .unwrap()["metadata"]["uid"]
        .clone();
    let paused = api
        .posted_events()
        .into_iter()
        .find(|e| e["reason"] == "Paused")
        .unwrap();
    assert_eq!(paused["regarding"]["uid"], uid);
    assert_eq!(
        paused["regarding"]["apiVersion"],
        "rollouts.sluice.dev/v1alpha1"
    );
    assert_eq!(paused["reportingInstance"], "gw-a");
    // `sluice canary status NAME --kubernetes` reads the same status.
    let out = sluice::canary::run(&sluice::canary::CanaryArgs {
        action: "status".into(),
        name: Some("default/app".into()),
        admin: "127.0.0.1:1".parse().unwrap(),
        kubernetes: true,
        kube_api: Some(api.url.clone()),
        namespace: "default".into(),
        wait: Duration::from_secs(5),
    })
    .await
    .unwrap();
    assert!(
        out.starts_with("default/app: Succeeded weight 100%"),
        "{out}"
    );
    load.stop().await;
    gw.kill().await;
}
