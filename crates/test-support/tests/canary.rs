//! Canaries end to end in file mode, with real backends: a healthy version promoted through
//! its steps, a bad one rolled back by itself (user-visible failures counted), and a bad one
//! caught in the mirror stage with no user-visible failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_canary::Phase;
use sluice_test_support::paced_load::PacedLoad;
use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";
const KEY: &str = "default/app";

fn mesh_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn vs() -> String {
    virtual_service_yaml(
        "app",
        "  - name: primary\n    route: [{destination: {host: app, subset: v1}}]\n",
    )
}

fn canary(canary_subset: &str, analysis: &str) -> String {
    format!(
        "apiVersion: rollouts.sluice.dev/v1alpha1\nkind: Canary\nmetadata: {{name: app}}\nspec:\n  virtualService: app\n  route: primary\n  stableSubset: v1\n  canarySubset: {canary_subset}\n  analysis:\n{analysis}"
    )
}

/// Users of the mesh service `app` on `port`, every `pace` (at most `max` requests).
fn load(port: u16, pace: Duration, max: u64) -> PacedLoad {
    PacedLoad::start(mesh_addr(port), "app", pace, max, false)
}

async fn wait_for_phase(p: &ProxyHandle, want: &[Phase], limit: Duration) -> Phase {
    let c = p
        .canaries
        .clone()
        .expect("canary controller runs in file mode");
    let deadline = Instant::now() + limit;
    loop {
        let phase = c.phase(KEY).unwrap_or(Phase::Initializing);
        if want.contains(&phase) {
            return phase;
        }
        assert!(
            Instant::now() < deadline,
            "canary still {phase:?} after {limit:?}: {}",
            c.status(KEY).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn history_weights(p: &ProxyHandle) -> Vec<u64> {
    let s = p.canaries.as_ref().unwrap().status(KEY).unwrap();
    let mut w: Vec<u64> = s["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["weight"].as_u64().unwrap())
        .collect();
    w.dedup();
    w
}

#[tokio::test]
async fn healthy_canary_is_promoted_through_its_steps() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    dir.write("vs.yaml", &vs());
    dir.write(
        "canary.yaml",
        &canary(
            "v2",
            "    interval: 300ms\n    threshold: 2\n    stepWeights: [10, 50]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n    - {name: request-duration, thresholdRange: {max: 500}}\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let load = load(port, Duration::from_millis(2), 20_000);
    wait_for_phase(
        &p,
        &[Phase::Succeeded, Phase::Failed],
        Duration::from_secs(30),
    )
    .await;
    let before = load.seen();
    assert_eq!(
        p.canaries.as_ref().unwrap().phase(KEY),
        Some(Phase::Succeeded)
    );
    assert_eq!(history_weights(&p), [0, 10, 50, 100]);
    // Once promoted, every user request goes to v2.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = load.stop().await;
    assert_eq!(after.failed, 0, "{after:?}");
    let v1_after = after.by_version.get("v1").copied().unwrap_or(0)
        - before.by_version.get("v1").copied().unwrap_or(0);
    assert!(v1_after <= 1, "v1 still served after promotion: {after:?}");
    // The overlay is visible; the user's VirtualService is not rewritten.
    let c = TestClient::new();
    let dump: serde_json::Value =
        serde_json::from_str(&c.admin(p.admin_addr, "/config_dump").await.body).unwrap();
    assert_eq!(dump["canaryOverlays"][0]["weight"], 100);
    assert_eq!(dump["canaryOverlays"][0]["phase"], "Succeeded");
    let text = std::fs::read_to_string(dir.path().join("vs.yaml")).unwrap();
    assert!(!text.contains("v2"));
    // The state survives in a dotfile next to the config.
    assert!(dir.path().join(".sluice-canary-state").exists());
    p.shutdown().await;
}

#[tokio::test]
async fn failing_canary_is_rolled_back_by_itself() {
    let v1 = backend("app", "v1").await;
    let mut args = BackendArgs::ephemeral("app", "v3");
    args.fail_after = Some(0);
    let v3 = Backend::start(args).await.unwrap();
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v3", v3.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v3"]));
    dir.write("vs.yaml", &vs());
    // The issue's figures scaled down tenfold in time: 10 % at 100 req/s, threshold 2, a 1 s
    // interval (10 canary requests a window, so minRequests 5 instead of 20).
    dir.write(
        "canary.yaml",
        &canary(
            "v3",
            "    interval: 1s\n    threshold: 2\n    stepWeight: 10\n    maxWeight: 50\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let load = load(port, Duration::from_millis(10), 3_000);
    wait_for_phase(
        &p,
        &[Phase::Failed, Phase::Succeeded],
        Duration::from_secs(30),
    )
    .await;
    let at_rollback = load.seen();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let end = load.stop().await;
    let s = p.canaries.as_ref().unwrap().status(KEY).unwrap();
    assert_eq!(s["phase"], "Failed", "{s}");
    assert!(s["rollbackReason"]
        .as_str()
        .unwrap()
        .contains("request-success-rate"));
    println!(
        "user-visible failures before rollback: {} of {} requests (10 % canary, 1 s interval, threshold 2, ~100 req/s)",
        at_rollback.failed, at_rollback.total
    );
    // Two failed windows of about 10 canary requests each, plus the reload's moment.
    assert!(at_rollback.failed >= 1, "{at_rollback:?}");
    assert!(at_rollback.failed <= 40, "{at_rollback:?}");
    // After the rollback nobody is sent to v3.
    assert!(end.failed - at_rollback.failed <= 1, "{end:?}");
    assert_eq!(history_weights(&p), [0, 10, 0]);
    p.shutdown().await;
}

#[tokio::test]
async fn bad_version_caught_in_the_mirror_stage_fails_no_user_request() {
    let v1 = backend("app", "v1").await;
    let mut args = BackendArgs::ephemeral("app", "v3");
    args.fail_after = Some(0);
    let v3 = Backend::start(args).await.unwrap();
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v3", v3.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v3"]));
    dir.write("vs.yaml", &vs());
    dir.write(
        "canary.yaml",
        &canary(
            "v3",
            "    interval: 300ms\n    threshold: 2\n    mirror: true\n    iterations: 2\n    stepWeights: [10, 50]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let load = load(port, Duration::from_millis(2), 20_000);
    wait_for_phase(
        &p,
        &[Phase::Failed, Phase::Succeeded],
        Duration::from_secs(30),
    )
    .await;
    let seen = load.stop().await;
    let s = p.canaries.as_ref().unwrap().status(KEY).unwrap();
    assert_eq!(s["phase"], "Failed", "{s}");
    assert_eq!(seen.failed, 0, "{seen:?}");
    assert_eq!(seen.by_version.get("v3"), None);
    assert!(v3.requests() > 0, "the mirror reached v3");
    println!(
        "mirror stage: {} user requests, {} failed, v3 saw {} mirrored requests",
        seen.total,
        seen.failed,
        v3.requests()
    );
    p.shutdown().await;
}

#[tokio::test]
async fn admin_api_pauses_resumes_and_aborts() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    dir.write("vs.yaml", &vs());
    dir.write(
        "canary.yaml",
        &canary(
            "v2",
            "    interval: 200ms\n    stepWeights: [10, 50]\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let admin = p.admin_addr;
    let c = TestClient::new();
    let post = |action: &'static str| {
        let c = c.clone();
        async move {
            c.request(
                "POST",
                admin,
                &admin.to_string(),
                &format!("/api/canaries/app/{action}"),
                &[],
                Bytes::new(),
            )
            .await
        }
    };
    // No traffic: the canary waits at 10 % and says why.
    wait_for_phase(&p, &[Phase::Waiting], Duration::from_secs(10)).await;
    let r = c.admin(admin, "/api/canaries").await;
    let list: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(list[0]["name"], "app");
    assert!(list[0]["message"]
        .as_str()
        .unwrap()
        .contains("too little traffic"));
    // `sluice canary status|pause NAME` speak to the same API.
    let cli = |action: &str| sluice::canary::CanaryArgs {
        action: action.to_string(),
        name: Some("app".to_string()),
        admin,
        kubernetes: false,
        kube_api: None,
        namespace: "default".into(),
        wait: Duration::from_secs(30),
    };
    let out = sluice::canary::run(&cli("status")).await.unwrap();
    assert!(out.starts_with("default/app: Waiting weight 10%"), "{out}");
    assert!(out.contains("too little traffic"), "{out}");
    let out = sluice::canary::run(&cli("pause")).await.unwrap();
    assert!(out.starts_with("default/app: Paused weight 10%"), "{out}");
    assert_eq!(p.canaries.as_ref().unwrap().phase(KEY), Some(Phase::Paused));
    assert_eq!(post("pause").await.status, 409);
    assert_eq!(post("resume").await.status, 200);
    assert_eq!(post("jump").await.status, 404);
    let r = post("abort").await;
    assert_eq!(r.status, 200);
    let s: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(s["phase"], "Failed");
    assert_eq!(s["rollbackReason"], "aborted by the operator");
    // The rollback is in force: v1 answers.
    let r = c.get(mesh_addr(port), "app", "/", &[]).await;
    assert_eq!(r.header("x-version"), Some("v1"));
    let one = c.admin(admin, "/api/canaries/default/app").await;
    assert_eq!(one.status, 200);
    assert_eq!(c.admin(admin, "/api/canaries/nope").await.status, 404);
    // The metrics say the same.
    let metrics = c.admin(admin, "/metrics").await.body;
    assert!(
        metrics.contains("sluice_canary_phase{name=\"app\",namespace=\"default\"} 6"),
        "{metrics}"
    );
    assert!(metrics.contains("sluice_canary_rollbacks_total{name=\"app\",namespace=\"default\"} 1"));
    p.shutdown().await;
}

/// The issue's figures unscaled: 10 % canary, 10 s interval, threshold 2, 100 req/s, a canary
/// failing every request; then the same with a mirror stage first. About a minute; run with
/// `cargo test -p sluice-test-support --test canary -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn measure_failures_before_rollback_at_the_issues_figures() {
    for (label, analysis) in [
        (
            "weighted 10 %",
            "    interval: 10s\n    threshold: 2\n    stepWeight: 10\n    maxWeight: 50\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
        (
            "mirror first",
            "    interval: 10s\n    threshold: 2\n    mirror: true\n    iterations: 1\n    stepWeight: 10\n    maxWeight: 50\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
    ] {
        let v1 = backend("app", "v1").await;
        let mut args = BackendArgs::ephemeral("app", "v3");
        args.fail_after = Some(0);
        let v3 = Backend::start(args).await.unwrap();
        let port = free_port();
        let dir = ConfigDir::new();
        dir.write(
            "svc.yaml",
            &service_yaml(HOST, port, &[("v1", v1.addr()), ("v3", v3.addr())]),
        );
        dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v3"]));
        dir.write("vs.yaml", &vs());
        dir.write("canary.yaml", &canary("v3", analysis));
        let p = proxy(dir.path(), |_| {}).await;
        let started = Instant::now();
        let load = load(port, Duration::from_millis(10), 10_000);
        wait_for_phase(&p, &[Phase::Failed, Phase::Succeeded], Duration::from_secs(90)).await;
        let seen = load.stop().await;
        let rate = seen.total as f64 / started.elapsed().as_secs_f64();
        println!(
            "{label}: {} user-visible failures of {} requests before rollback ({rate:.0} req/s, rolled back after {:.1} s)",
            seen.failed,
            seen.total,
            started.elapsed().as_secs_f64()
        );
        p.shutdown().await;
    }
}

#[tokio::test]
async fn webhooks_are_posted_and_a_refusing_gate_holds_the_promotion() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let rollout_hook = backend("hook", "ok").await;
    let gate = failing_backend("gate", "no").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write("dr.yaml", &subsets_yaml(HOST, &["v1", "v2"]));
    dir.write("vs.yaml", &vs());
    dir.write(
        "canary.yaml",
        &canary(
            "v2",
            &format!(
                "    interval: 200ms\n    stepWeights: [50]\n    minRequests: 5\n    metrics:\n    - {{name: request-success-rate, thresholdRange: {{min: 99}}}}\n    webhooks:\n    - {{name: load, type: rollout, url: \"http://{}/load\"}}\n    - {{name: gate, type: confirm-promotion, url: \"http://{}/gate\", timeout: 2s}}\n",
                rollout_hook.addr(),
                gate.addr()
            ),
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let load = load(port, Duration::from_millis(2), 20_000);
    let c = p.canaries.clone().unwrap();
    assert_eventually(
        Duration::from_secs(20),
        "promotion held by the gate",
        || {
            let s = c.status(KEY).unwrap_or_default();
            async move {
                s["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("held by the confirm-promotion gate"))
            }
        },
    )
    .await;
    load.stop().await;
    assert_eq!(c.phase(KEY), Some(Phase::Waiting));
    assert!(
        rollout_hook.requests() > 0,
        "the rollout webhook was called"
    );
    assert!(gate.requests() > 0, "the gate was called");
    p.shutdown().await;
}

#[tokio::test]
async fn hashed_users_only_move_from_stable_to_canary_through_the_steps() {
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write(
        "svc.yaml",
        &service_yaml(HOST, port, &[("v1", v1.addr()), ("v2", v2.addr())]),
    );
    dir.write(
        "dr.yaml",
        &format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: app}}\nspec:\n  host: {HOST}\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{httpHeaderName: x-user}}\n  subsets:\n  - {{name: v1, labels: {{version: v1}}}}\n  - {{name: v2, labels: {{version: v2}}}}\n"
        ),
    );
    dir.write("vs.yaml", &vs());
    dir.write(
        "canary.yaml",
        &canary(
            "v2",
            "    interval: 300ms\n    stepWeights: [10, 30, 60]\n    minRequests: 5\n    metrics:\n    - {name: request-success-rate, thresholdRange: {min: 99}}\n",
        ),
    );
    let p = proxy(dir.path(), |_| {}).await;
    let c = TestClient::new();
    let controller = p.canaries.clone().unwrap();
    let mut on_canary = vec![false; 50];
    let mut moved_back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Rounds over 50 users until promotion (bounded by count and time).
    for _ in 0..2_000 {
        if controller.phase(KEY).is_some_and(|p| {
            p != Phase::Progressing && p != Phase::Initializing && p != Phase::Waiting
        }) || Instant::now() > deadline
        {
            break;
        }
        for (u, seen_v2) in on_canary.iter_mut().enumerate() {
            let user = format!("user-{u}");
            let r = c
                .get(mesh_addr(port), "app", "/", &[("x-user", user.as_str())])
                .await;
            let v2_now = r.header("x-version") == Some("v2");
            if *seen_v2 && !v2_now {
                moved_back.push(user);
            }
            *seen_v2 |= v2_now;
        }
    }
    assert!(
        moved_back.is_empty(),
        "users moved back to stable: {moved_back:?}"
    );
    assert!(
        on_canary.iter().filter(|v| **v).count() >= 15,
        "the steps moved users to the canary: {on_canary:?}"
    );
    p.shutdown().await;
}
