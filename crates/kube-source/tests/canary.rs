//! Canaries from a fake API server: the Canary kind is watched like the Istio kinds (and its
//! absence tolerated), statuses are read back, and the Lease elects exactly one leader.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::time::Duration;

use fake::store::Store;
use fake::{eventually, FakeApi};
use serde_json::json;
use sluice_canary::CanaryState;
use sluice_kube::canary::lease::{LeaseSettings, LEASE_NAME};
use sluice_kube::{ConfigSource, KubeOptions, KubeSource};
use sluice_model::{Kind, Spec};

const SYNC: Duration = Duration::from_secs(10);

const CANARY: &str = "apiVersion: rollouts.sluice.dev/v1alpha1\nkind: Canary\nmetadata: {name: app, namespace: default}\nspec:\n  virtualService: app\n  stableSubset: v1\n  canarySubset: v2\n  analysis: {interval: 1s, stepWeight: 10, maxWeight: 50}\n";
const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: app, namespace: default}\nspec:\n  hosts: [app]\n  http: [{route: [{destination: {host: app, subset: v1}}]}]\n";

async fn start(api: &FakeApi, opts: KubeOptions) -> KubeSource {
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let source = KubeSource::start(client, opts).await.unwrap();
    source.wait_ready(SYNC).await.unwrap();
    source
}

fn lease(identity: &str) -> LeaseSettings {
    LeaseSettings {
        name: LEASE_NAME.into(),
        namespace: "sluice-system".into(),
        identity: identity.into(),
        duration: Duration::from_secs(1),
    }
}

fn holder(api: &FakeApi) -> Option<String> {
    api.store
        .lock()
        .unwrap()
        .get("Lease", "sluice-system", LEASE_NAME)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

#[tokio::test]
async fn canaries_are_watched_and_their_status_read_back() {
    let api = FakeApi::start().await;
    api.apply(VS);
    api.apply(CANARY);
    let source = start(&api, KubeOptions::default()).await;
    assert!(source.istio_apis().iter().any(
        |a| a.kind == Kind::Canary && a.resource.api_version == "rollouts.sluice.dev/v1alpha1"
    ));
    let (all, _) = source.collect();
    let c = all.iter().find(|r| r.kind == Kind::Canary).unwrap();
    assert!(matches!(&c.spec, Spec::Canary(c) if c.canary_subset == "v2"));
    let backend = source
        .canary_backend()
        .expect("the cluster serves Canaries");
    assert!(backend.shared());
    assert!(!backend.is_leader(), "no Lease settings: never leads");
    assert!(backend.load().is_empty());
    // A status written by a leader is read back by every proxy.
    let mut state = CanaryState::new("app/ v1->v2".into(), 5);
    state.weight = 30;
    state.rollback_reason = Some("was".into());
    api.patch("Canary", "default", "app", |o| {
        o["status"] = serde_json::to_value(&state).unwrap();
    });
    eventually(SYNC, "the status read back", || {
        backend.load().get("default/app") == Some(&state)
    })
    .await;
    // An absent field is written as null, so a merge patch removes an old value.
    state.rollback_reason = None;
    let patch = sluice_kube::canary::status_patch(&state).unwrap();
    assert_eq!(patch["status"]["rollbackReason"], json!(null));
    assert_eq!(patch["status"]["weight"], json!(30));
    // Deleting the Canary forgets it.
    api.delete("Canary", "default", "app");
    eventually(SYNC, "the Canary deleted", || {
        source.collect().0.iter().all(|r| r.kind != Kind::Canary) && backend.load().is_empty()
    })
    .await;
}

#[tokio::test]
async fn a_cluster_without_the_canary_crd_still_serves_everything_else() {
    let mut store = Store::new();
    store.rollouts_versions = vec![];
    let api = FakeApi::start_with(store).await;
    api.apply(VS);
    let source = start(&api, KubeOptions::default()).await;
    assert!(source.istio_apis().iter().all(|a| a.kind != Kind::Canary));
    assert!(source.canary_backend().is_none());
    assert!(source
        .collect()
        .0
        .iter()
        .any(|r| r.kind == Kind::VirtualService));
    assert!(!api.requests().iter().any(|r| r.contains("canaries")));
}

#[tokio::test]
async fn the_lease_elects_exactly_one_leader_and_a_survivor_takes_over() {
    let api = FakeApi::start().await;
    api.apply(VS);
    let opts = |id: &str| KubeOptions {
        lease: Some(lease(id)),
        instance: id.into(),
        ..KubeOptions::default()
    };
    let a = start(&api, opts("pod-a")).await;
    let b = start(&api, opts("pod-b")).await;
    eventually(SYNC, "one leader", || {
        (a.leads_canaries() ^ b.leads_canaries())
            && holder(&api).as_deref() == Some(if a.leads_canaries() { "pod-a" } else { "pod-b" })
    })
    .await;
    // Several renewals later, still exactly one (the other's writes, if any, were refused).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(a.leads_canaries() ^ b.leads_canaries());
    let lease_obj = api
        .store
        .lock()
        .unwrap()
        .get("Lease", "sluice-system", LEASE_NAME)
        .unwrap();
    assert_eq!(lease_obj["spec"]["leaseDurationSeconds"], 1);
    assert!(lease_obj["spec"]["renewTime"].is_string());
    let (leader, other) = if a.leads_canaries() { (a, b) } else { (b, a) };
    let taken_over_from = holder(&api).unwrap();
    leader.stop();
    eventually(SYNC, "the other takes over", || {
        other.leads_canaries() && holder(&api).as_deref() != Some(taken_over_from.as_str())
    })
    .await;
    let lease_obj = api
        .store
        .lock()
        .unwrap()
        .get("Lease", "sluice-system", LEASE_NAME)
        .unwrap();
    assert_eq!(lease_obj["spec"]["leaseTransitions"], 1);
    // A write with an old resourceVersion is refused (what keeps two from winning at once).
    let refused = api
        .store
        .lock()
        .unwrap()
        .writes
        .iter()
        .filter(|(m, p, code)| m == "PUT" && p.contains("/leases/") && *code == 409)
        .count();
    eprintln!("lease writes refused with 409: {refused}");
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(client, "sluice-system");
    let mut stale = leases.get(LEASE_NAME).await.unwrap();
    stale.metadata.resource_version = Some("1".into());
    let err = leases
        .replace(LEASE_NAME, &Default::default(), &stale)
        .await
        .unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 409));
}

#[tokio::test]
async fn a_graceful_shutdown_hands_the_lease_over_at_once() {
    let api = FakeApi::start().await;
    api.apply(VS);
    // A 6 s lease, renewed every 2 s: a takeover within 5 s can only come from the release.
    let opts = |id: &str| KubeOptions {
        lease: Some(LeaseSettings {
            duration: Duration::from_secs(6),
            ..lease(id)
        }),
        ..KubeOptions::default()
    };
    let a = start(&api, opts("pod-a")).await;
    eventually(SYNC, "pod-a leads", || a.leads_canaries()).await;
    let b = start(&api, opts("pod-b")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.leads_canaries());
    a.shutdown().await;
    assert_eq!(holder(&api), None, "released");
    eventually(Duration::from_secs(5), "pod-b takes over", || {
        b.leads_canaries() && holder(&api).as_deref() == Some("pod-b")
    })
    .await;
}
