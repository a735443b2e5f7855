//! Mesh security kinds (security.istio.io and the networking Sidecar) from a fake API server:
//! discovery, list + watch, admission and the snapshot they compile into.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::time::Duration;

use fake::store::Store;
use fake::{eventually, FakeApi};
use serde_json::json;
use sluice_config::authz::{Action, MtlsMode};
use sluice_config::{ProxyConfig, Snapshot};
use sluice_kube::{ConfigSource, KubeOptions, KubeSource};
use sluice_model::{Kind, Resource};

const SECURITY: &str = include_str!("fixtures/kube/security.yaml");
const CLUSTER: &str = include_str!("fixtures/kube/cluster.yaml");
const SYNC: Duration = Duration::from_secs(10);

async fn start(api: &FakeApi, opts: KubeOptions) -> KubeSource {
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let source = KubeSource::start(client, opts).await.unwrap();
    source.wait_ready(SYNC).await.unwrap();
    assert!(source.is_ready());
    source
}

fn find(s: &KubeSource, kind: Kind, ns: &str, name: &str) -> Option<Resource> {
    s.collect()
        .0
        .into_iter()
        .find(|r| r.kind == kind && r.metadata.namespace == ns && r.metadata.name == name)
        .map(std::sync::Arc::unwrap_or_clone)
}

/// The snapshot of a `reviews` sidecar in `default`.
fn reviews_snapshot(s: &KubeSource) -> Snapshot {
    let (all, diags) = s.collect();
    let proxy = ProxyConfig {
        labels: [("app".to_string(), "reviews".to_string())].into(),
        gateway_role: false,
        ..Default::default()
    };
    sluice_config::build_snapshot(all, diags, &proxy, &sluice_lb::StateStore::new(), 1)
        .expect("the collected set is never rejected")
}

fn authz_names(snapshot: &Snapshot) -> Vec<(String, Action)> {
    snapshot
        .security
        .authz
        .iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.action))
        .collect()
}

#[tokio::test]
async fn security_kinds_are_watched_and_reach_the_snapshot() {
    let api = FakeApi::start().await;
    api.apply(SECURITY);
    api.apply(CLUSTER);
    let source = start(&api, KubeOptions::default()).await;
    let watched: Vec<(Kind, String)> = source
        .istio_apis()
        .iter()
        .map(|a| (a.kind, a.resource.api_version.clone()))
        .collect();
    for (kind, av) in [
        (Kind::Sidecar, "networking.istio.io/v1"),
        (Kind::PeerAuthentication, "security.istio.io/v1"),
        (Kind::RequestAuthentication, "security.istio.io/v1"),
        (Kind::AuthorizationPolicy, "security.istio.io/v1"),
    ] {
        assert!(
            watched.contains(&(kind, av.to_string())),
            "{kind} in {av}: {watched:?}"
        );
    }
    let ap = find(
        &source,
        Kind::AuthorizationPolicy,
        "default",
        "reviews-viewer",
    )
    .unwrap();
    assert_eq!(
        ap.api_version, "security.istio.io/v1",
        "the preferred version"
    );
    let ra = find(
        &source,
        Kind::RequestAuthentication,
        "default",
        "reviews-jwt",
    )
    .unwrap();
    assert_eq!(
        ra.api_version, "security.istio.io/v1",
        "written as v1beta1, served in the preferred version"
    );
    assert!(find(&source, Kind::PeerAuthentication, "default", "default").is_some());
    assert!(find(&source, Kind::Sidecar, "default", "reviews").is_some());
    let diagnostics = source.collect().1;
    assert!(
        !diagnostics.iter().any(sluice_config::is_blocking),
        "{diagnostics:#?}"
    );
    let snapshot = reviews_snapshot(&source);
    assert_eq!(
        authz_names(&snapshot),
        [("default/reviews-viewer".to_string(), Action::Allow)]
    );
    assert_eq!(
        snapshot.security.peer_authentication.mtls_mode(9080),
        MtlsMode::Strict
    );
    let issuers: Vec<&str> = snapshot
        .security
        .jwt_rules
        .iter()
        .map(|r| r.issuer.as_str())
        .collect();
    assert_eq!(issuers, ["issuer@example.com"]);
    let ingress: Vec<u16> = snapshot
        .security
        .sidecar_ingress
        .iter()
        .map(|i| i.port)
        .collect();
    assert_eq!(ingress, [9080]);
    for path in [
        "/apis/security.istio.io/v1/authorizationpolicies?",
        "/apis/security.istio.io/v1/peerauthentications?",
        "/apis/security.istio.io/v1/requestauthentications?",
        "/apis/networking.istio.io/v1/sidecars?",
    ] {
        eventually(SYNC, &format!("a watch of {path}"), || {
            api.requests()
                .iter()
                .any(|r| r.starts_with(&format!("GET {path}")) && r.contains("watch=true"))
        })
        .await;
    }
}

#[tokio::test]
async fn policy_changes_follow_the_cluster_and_invalid_ones_are_reported() {
    let api = FakeApi::start().await;
    api.apply(SECURITY);
    api.apply(CLUSTER);
    let opts = KubeOptions {
        events: true,
        instance: "sluice-test".into(),
        ..Default::default()
    };
    let source = start(&api, opts).await;
    api.patch("AuthorizationPolicy", "default", "reviews-viewer", |o| {
        o["spec"]["action"] = json!("DENY");
    });
    eventually(Duration::from_secs(2), "the policy turned DENY", || {
        authz_names(&reviews_snapshot(&source))
            == [("default/reviews-viewer".to_string(), Action::Deny)]
    })
    .await;
    // A CUSTOM policy without a provider is refused by Istio's webhook: the last valid
    // version stays in force and the object gets an Event.
    api.patch("AuthorizationPolicy", "default", "reviews-viewer", |o| {
        o["spec"]["action"] = json!("CUSTOM");
    });
    eventually(Duration::from_secs(2), "the rejection", || {
        source
            .collect()
            .1
            .iter()
            .any(|d| d.message.starts_with("not applied") && d.message.contains("provider"))
    })
    .await;
    assert_eq!(
        authz_names(&reviews_snapshot(&source)),
        [("default/reviews-viewer".to_string(), Action::Deny)]
    );
    eventually(Duration::from_secs(2), "a Kubernetes Event", || {
        api.posted_events()
            .iter()
            .any(|e| e["regarding"]["kind"] == "AuthorizationPolicy")
    })
    .await;
    let events = api.posted_events();
    let event = events
        .iter()
        .find(|e| e["regarding"]["kind"] == "AuthorizationPolicy")
        .unwrap();
    assert_eq!(event["regarding"]["apiVersion"], "security.istio.io/v1");
    assert_eq!(event["reason"], "InvalidConfig");
    api.delete("PeerAuthentication", "default", "default");
    eventually(
        Duration::from_secs(2),
        "the PeerAuthentication gone",
        || {
            reviews_snapshot(&source)
                .security
                .peer_authentication
                .mtls_mode(9080)
                == MtlsMode::Permissive
        },
    )
    .await;
}

#[tokio::test]
async fn security_versions_are_discovered_like_networking_ones() {
    let mut store = Store::new();
    store.security_versions = vec!["v1beta1"];
    store.not_served = vec![("v1", "Sidecar")];
    let api = FakeApi::start_with(store).await;
    api.apply(SECURITY);
    let source = start(&api, KubeOptions::default()).await;
    let ap = find(
        &source,
        Kind::AuthorizationPolicy,
        "default",
        "reviews-viewer",
    )
    .unwrap();
    assert_eq!(ap.api_version, "security.istio.io/v1beta1");
    let sidecar = find(&source, Kind::Sidecar, "default", "reviews").unwrap();
    assert_eq!(sidecar.api_version, "networking.istio.io/v1beta1");
}

#[tokio::test]
async fn a_cluster_without_security_crds_still_serves_networking() {
    let mut store = Store::new();
    store.security_versions = vec![];
    let api = FakeApi::start_with(store).await;
    api.apply(CLUSTER);
    api.apply(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: default}\nspec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews}}]}]\n",
    );
    let source = start(&api, KubeOptions::default()).await;
    let kinds: Vec<Kind> = source.istio_apis().iter().map(|a| a.kind).collect();
    assert!(kinds.contains(&Kind::Sidecar));
    assert!(!kinds.contains(&Kind::AuthorizationPolicy), "{kinds:?}");
    assert!(find(&source, Kind::VirtualService, "default", "r").is_some());
}
