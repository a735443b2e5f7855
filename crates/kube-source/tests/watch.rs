//! The Kubernetes source against a fake API server speaking real list + watch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fake;

use std::collections::BTreeSet;
use std::time::Duration;

use fake::store::Store;
use fake::{eventually, FakeApi};
use serde_json::json;
use sluice_kube::{ConfigSource, KubeOptions, KubeSource};
use sluice_model::{Kind, Resource, ServiceEntry, Spec};

const ISTIO: &str = include_str!("fixtures/kube/istio.yaml");
const CLUSTER: &str = include_str!("fixtures/kube/cluster.yaml");
const SYNC: Duration = Duration::from_secs(10);

async fn start(api: &FakeApi, opts: KubeOptions) -> KubeSource {
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let source = KubeSource::start(client, opts).await.unwrap();
    source.wait_ready(SYNC).await.unwrap();
    assert!(source.is_ready());
    source
}

async fn cluster() -> (FakeApi, KubeSource) {
    let api = FakeApi::start().await;
    api.apply(ISTIO);
    api.apply(CLUSTER);
    let source = start(&api, KubeOptions::default()).await;
    (api, source)
}

fn resources(s: &KubeSource) -> Vec<Resource> {
    owned(s.collect().0)
}

fn owned(shared: Vec<std::sync::Arc<Resource>>) -> Vec<Resource> {
    shared
        .into_iter()
        .map(std::sync::Arc::unwrap_or_clone)
        .collect()
}

fn find(s: &KubeSource, kind: Kind, ns: &str, name: &str) -> Option<Resource> {
    resources(s)
        .into_iter()
        .find(|r| r.kind == kind && r.metadata.namespace == ns && r.metadata.name == name)
}

fn weights(r: &Resource) -> Vec<i32> {
    let Spec::VirtualService(vs) = &r.spec else {
        panic!("not a VirtualService")
    };
    vs.http[0].route.iter().filter_map(|d| d.weight).collect()
}

fn service_entry(s: &KubeSource, ns: &str, name: &str) -> ServiceEntry {
    match find(s, Kind::ServiceEntry, ns, &format!("svc:{name}")).map(|r| r.spec) {
        Some(Spec::ServiceEntry(se)) => *se,
        other => panic!("no ServiceEntry for Service {ns}/{name}: {other:?}"),
    }
}

#[tokio::test]
async fn collected_objects_match_the_fixtures() {
    let (api, source) = cluster().await;
    let expected = sluice_model::parse_text(ISTIO, None).resources;
    assert_eq!(expected.len(), 5);
    for want in &expected {
        let got = find(
            &source,
            want.kind,
            &want.metadata.namespace,
            &want.metadata.name,
        )
        .unwrap_or_else(|| panic!("{} missing", want.key()));
        assert_eq!(got.spec, want.spec, "{}", want.key());
        assert_eq!(
            got.api_version, "networking.istio.io/v1",
            "served in the preferred version"
        );
        assert!(got.metadata.resource_version.is_some());
    }
    let (all, diagnostics) = source.collect();
    let istio: BTreeSet<String> = all
        .iter()
        .filter(|r| !r.metadata.name.starts_with("svc:"))
        .map(|r| r.key().to_string())
        .collect();
    assert_eq!(istio.len(), 5, "{istio:?}");
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    let lists: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| !r.contains("watch="))
        .collect();
    assert!(
        lists
            .iter()
            .filter(|r| r.contains("/pods?"))
            .all(|r| r.contains("resourceVersion=0")),
        "lists are served from the watch cache, as informers do: {lists:#?}"
    );
}

#[tokio::test]
async fn weight_patch_applies_within_a_second_and_delete_removes() {
    let (api, source) = cluster().await;
    let mut changes = source.subscribe();
    changes.borrow_and_update();
    let vs = find(&source, Kind::VirtualService, "default", "reviews").unwrap();
    assert_eq!(weights(&vs), [90, 10]);
    api.patch("VirtualService", "default", "reviews", |o| {
        o["spec"]["http"][0]["route"][0]["weight"] = json!(50);
        o["spec"]["http"][0]["route"][1]["weight"] = json!(50);
    });
    let took = eventually(Duration::from_secs(1), "50/50 weights", || {
        find(&source, Kind::VirtualService, "default", "reviews")
            .is_some_and(|r| weights(&r) == [50, 50])
    })
    .await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert!(changes.has_changed().unwrap(), "subscribers are notified");
    api.delete("VirtualService", "default", "reviews");
    eventually(Duration::from_secs(1), "deletion", || {
        find(&source, Kind::VirtualService, "default", "reviews").is_none()
    })
    .await;
    assert!(find(&source, Kind::DestinationRule, "default", "reviews").is_some());
}

#[tokio::test]
async fn gone_410_relists_without_dropping_config() {
    let (api, source) = cluster().await;
    // The Node watcher does not gate readiness: count lists once every watch is open (nine
    // Istio kinds, Canary, Service, EndpointSlice, Pod, Node).
    eventually(SYNC, "every watch stream open", || api.open_watches() == 14).await;
    let lists = api.total_lists();
    let before = resources(&source).len();
    // While the watches are down the object disappears; only a re-list can notice.
    api.expire();
    api.delete_silently("DestinationRule", "default", "reviews");
    let start = std::time::Instant::now();
    while api.lists("destinationrules") < 2 {
        assert!(start.elapsed() < SYNC, "no re-list after 410 Gone");
        assert!(
            find(&source, Kind::VirtualService, "default", "reviews").is_some(),
            "config dropped during the re-list"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eventually(SYNC, "the re-list to remove the deleted object", || {
        find(&source, Kind::DestinationRule, "default", "reviews").is_none()
    })
    .await;
    eventually(SYNC, "every watcher to re-list", || {
        api.total_lists() >= lists + 14
    })
    .await;
    assert_eq!(resources(&source).len(), before - 1);
    assert!(api
        .requests()
        .iter()
        .any(|r| r.contains("watch=true") && r.contains("resourceVersion=")));
}

#[tokio::test]
async fn restarts_resume_from_bookmarks_without_relisting() {
    let (api, source) = cluster().await;
    // The Node watcher does not gate readiness: count lists once every watch is open (nine
    // Istio kinds, Canary, Service, EndpointSlice, Pod, Node).
    eventually(SYNC, "every watch stream open", || api.open_watches() == 14).await;
    let lists = api.total_lists();
    // Unrelated writes move the resourceVersion past what the watchers have seen...
    api.bump(50);
    let rv = api.bookmark();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...then history before the bookmark is compacted and every watch is cut.
    api.compact_to(rv);
    api.drop_watches();
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.patch("VirtualService", "default", "reviews", |o| {
        o["spec"]["http"][0]["route"][0]["weight"] = json!(100);
        o["spec"]["http"][0]["route"][1]["weight"] = json!(0);
    });
    eventually(
        Duration::from_secs(2),
        "the change after the restart",
        || {
            find(&source, Kind::VirtualService, "default", "reviews")
                .is_some_and(|r| weights(&r) == [100, 0])
        },
    )
    .await;
    assert_eq!(api.total_lists(), lists, "bookmarks avoid a re-list");
    let from_bookmark = format!("resourceVersion={rv}");
    assert!(api.requests().iter().any(|r| r.contains(&from_bookmark)));
}

#[tokio::test]
async fn services_become_service_entries() {
    let (_api, source) = cluster().await;
    let reviews = service_entry(&source, "default", "reviews");
    assert_eq!(reviews.hosts, ["reviews.default.svc.cluster.local"]);
    assert_eq!(reviews.addresses, ["10.96.0.20"]);
    assert_eq!(reviews.resolution.as_deref(), Some("STATIC"));
    let ports: Vec<(u32, &str, Option<&str>, Option<u32>)> = reviews
        .ports
        .iter()
        .map(|p| {
            (
                p.number,
                p.name.as_str(),
                p.protocol.as_deref(),
                p.target_port,
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            (9080, "http", Some("HTTP"), Some(9080)),
            (9090, "metrics", Some("HTTP"), None)
        ],
        "UDP ports are left out; appProtocol sets the protocol"
    );
    let eps: Vec<(&str, Option<&String>, Option<&u32>)> = reviews
        .endpoints
        .iter()
        .map(|e| {
            (
                e.address.as_str(),
                e.labels.get("version"),
                e.ports.get("metrics"),
            )
        })
        .collect();
    let (v1, v2) = ("v1".to_string(), "v2".to_string());
    assert_eq!(
        eps,
        [
            ("10.244.0.11", Some(&v1), Some(&19090)),
            ("10.244.0.12", Some(&v2), Some(&19090))
        ],
        "only ready endpoints, with their pod's labels and named target ports"
    );
    let ratings = service_entry(&source, "prod", "ratings");
    let protos: Vec<Option<&str>> = ratings
        .ports
        .iter()
        .map(|p| p.protocol.as_deref())
        .collect();
    assert_eq!(protos, [Some("GRPC"), Some("HTTP2")]);
    assert_eq!(
        ratings.endpoints[0].address, "10.244.1.5",
        "no conditions means ready"
    );
    let db = service_entry(&source, "prod", "db");
    assert!(db.addresses.is_empty(), "headless");
    assert_eq!(db.ports[0].name, "port-5432");
    assert_eq!(db.ports[0].protocol, None, "undeclared: sniffed");
    assert_eq!(db.endpoints[0].ports.get("port-5432"), Some(&5432));
    let search = service_entry(&source, "prod", "search");
    assert_eq!(search.resolution.as_deref(), Some("DNS"));
    assert_eq!(search.endpoints[0].address, "search.example.com");
    assert!(find(&source, Kind::ServiceEntry, "kube-system", "svc:coredns").is_none());
}

#[tokio::test]
async fn endpoint_readiness_and_pod_labels_follow_the_cluster() {
    let (api, source) = cluster().await;
    api.patch("EndpointSlice", "default", "reviews-xyz89", |o| {
        o["endpoints"][0]["conditions"] = json!({"ready": true});
    });
    api.patch("Pod", "default", "reviews-v3-1b2c", |o| {
        o["metadata"]["labels"]["version"] = json!("v3-canary");
    });
    eventually(Duration::from_secs(1), "v3 ready with new labels", || {
        service_entry(&source, "default", "reviews")
            .endpoints
            .iter()
            .any(|e| {
                e.address == "10.244.0.13"
                    && e.labels.get("version").map(String::as_str) == Some("v3-canary")
            })
    })
    .await;
    api.delete("EndpointSlice", "default", "reviews-abc12");
    eventually(
        Duration::from_secs(1),
        "endpoints of the deleted slice gone",
        || service_entry(&source, "default", "reviews").endpoints.len() == 1,
    )
    .await;
    api.delete("Service", "default", "reviews");
    eventually(
        Duration::from_secs(1),
        "ServiceEntry of the deleted Service gone",
        || find(&source, Kind::ServiceEntry, "default", "svc:reviews").is_none(),
    )
    .await;
}

#[tokio::test]
async fn endpoints_take_the_locality_of_their_node() {
    let (api, source) = cluster().await;
    let locality = |source: &KubeSource| -> Option<String> {
        service_entry(source, "default", "reviews")
            .endpoints
            .iter()
            .find(|e| e.address == "10.244.0.11")
            .and_then(|e| e.locality.clone())
    };
    api.patch("EndpointSlice", "default", "reviews-abc12", |o| {
        o["endpoints"][0]["nodeName"] = json!("node-a");
        o["endpoints"][0]["zone"] = json!("us-east1-b");
    });
    eventually(Duration::from_secs(1), "the slice's zone", || {
        locality(&source).as_deref() == Some("/us-east1-b")
    })
    .await;
    api.apply(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n  labels:\n    \
         topology.kubernetes.io/region: us-east1\n    topology.kubernetes.io/zone: us-east1-b\n    \
         topology.istio.io/subzone: rack7\n",
    );
    eventually(Duration::from_secs(1), "the Node's locality", || {
        locality(&source).as_deref() == Some("us-east1/us-east1-b/rack7")
    })
    .await;
    api.delete("Node", "default", "node-a");
    eventually(Duration::from_secs(1), "back to the slice's zone", || {
        locality(&source).as_deref() == Some("/us-east1-b")
    })
    .await;
}

#[tokio::test]
async fn endpoints_carry_tls_mode_and_service_account_of_their_pod() {
    let (api, source) = cluster().await;
    let identity = |se: &ServiceEntry| -> Vec<(String, Option<String>, Option<String>)> {
        se.endpoints
            .iter()
            .map(|e| {
                (
                    e.address.clone(),
                    e.labels.get("security.istio.io/tlsMode").cloned(),
                    e.service_account.clone(),
                )
            })
            .collect()
    };
    let (istio, reviews, default) = (
        Some("istio".to_string()),
        Some("bookinfo-reviews".to_string()),
        Some("default".to_string()),
    );
    assert_eq!(
        identity(&service_entry(&source, "default", "reviews")),
        [
            ("10.244.0.11".to_string(), istio.clone(), reviews.clone()),
            ("10.244.0.12".to_string(), None, default.clone()),
        ],
        "the pod's tlsMode label and serviceAccountName (default `default`)"
    );
    assert_eq!(
        service_entry(&source, "prod", "ratings").endpoints[0].service_account,
        None,
        "no pod behind the endpoint, no identity"
    );
    // An injected pod gets the label; a pod recreated with another account changes identity.
    api.patch("Pod", "default", "reviews-v2-8c9a", |o| {
        o["metadata"]["labels"]["security.istio.io/tlsMode"] = json!("istio");
        o["spec"]["serviceAccountName"] = json!("reviews-v2");
    });
    eventually(Duration::from_secs(2), "v2's new identity", || {
        identity(&service_entry(&source, "default", "reviews"))[1]
            == (
                "10.244.0.12".to_string(),
                istio.clone(),
                Some("reviews-v2".to_string()),
            )
    })
    .await;
    let (all, diags) = source.collect();
    let snapshot = sluice_config::build_snapshot(
        owned(all),
        diags,
        &sluice_config::ProxyConfig::default(),
        &sluice_lb::StateStore::new(),
        1,
    )
    .unwrap();
    let registry = snapshot
        .registry
        .get("reviews.default.svc.cluster.local")
        .unwrap();
    let accounts: Vec<Option<&str>> = registry
        .endpoints
        .iter()
        .map(|e| e.service_account.as_deref())
        .collect();
    assert_eq!(accounts, [Some("bookinfo-reviews"), Some("reviews-v2")]);
}

#[tokio::test]
async fn invalid_objects_are_reported_and_never_applied() {
    let api = FakeApi::start().await;
    api.apply(ISTIO);
    api.apply(CLUSTER);
    let opts = KubeOptions {
        events: true,
        instance: "sluice-test".into(),
        ..Default::default()
    };
    let source = start(&api, opts).await;
    // An invalid change keeps the last valid version in force...
    api.patch("VirtualService", "default", "reviews", |o| {
        o["spec"]["http"][0]["route"][0]["weight"] = json!(-5);
    });
    // ...an invalid new object is left out, and nothing else is affected.
    api.apply(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: broken, namespace: default}\nspec:\n  host: ratings\n  subsets: [{name: v1}, {name: v1}]\n",
    );
    eventually(Duration::from_secs(2), "both rejections", || {
        source
            .collect()
            .1
            .iter()
            .filter(|d| d.message.starts_with("not applied"))
            .count()
            >= 2
    })
    .await;
    let vs = find(&source, Kind::VirtualService, "default", "reviews").unwrap();
    assert_eq!(weights(&vs), [90, 10], "the last valid version stays");
    assert!(find(&source, Kind::DestinationRule, "default", "broken").is_none());
    let (all, diags) = source.collect();
    assert!(!diags.iter().any(sluice_config::is_blocking), "{diags:#?}");
    let proxy = sluice_config::ProxyConfig {
        labels: [("istio".to_string(), "ingressgateway".to_string())].into(),
        ..Default::default()
    };
    let snapshot =
        sluice_config::build_snapshot(owned(all), diags, &proxy, &sluice_lb::StateStore::new(), 1)
            .expect("the collected set is never rejected");
    let reviews = snapshot
        .registry
        .get("reviews.default.svc.cluster.local")
        .unwrap();
    assert_eq!(reviews.endpoints.len(), 2);
    eventually(Duration::from_secs(2), "Kubernetes Events", || {
        api.posted_events().len() >= 2
    })
    .await;
    let events = api.posted_events();
    let vs_event = events
        .iter()
        .find(|e| e["regarding"]["kind"] == "VirtualService")
        .expect("an Event on the VirtualService");
    assert_eq!(vs_event["reason"], "InvalidConfig");
    assert_eq!(vs_event["type"], "Warning");
    assert_eq!(vs_event["reportingInstance"], "sluice-test");
    assert!(
        vs_event["note"].as_str().unwrap().contains("weight"),
        "{vs_event}"
    );
    // Fixing the object applies it.
    api.patch("VirtualService", "default", "reviews", |o| {
        o["spec"]["http"][0]["route"][0]["weight"] = json!(80);
        o["spec"]["http"][0]["route"][1]["weight"] = json!(20);
    });
    eventually(Duration::from_secs(1), "the fixed version", || {
        find(&source, Kind::VirtualService, "default", "reviews")
            .is_some_and(|r| weights(&r) == [80, 20])
    })
    .await;
    assert_eq!(
        source
            .collect()
            .1
            .iter()
            .filter(|d| d.message.starts_with("not applied"))
            .count(),
        1,
        "only the broken DestinationRule is still reported"
    );
}

#[tokio::test]
async fn discovery_picks_the_preferred_served_version_per_kind() {
    let mut store = Store::new();
    store.istio_versions = vec!["v1beta1", "v1alpha3"];
    store.not_served = vec![("v1beta1", "WorkloadEntry")];
    let api = FakeApi::start_with(store).await;
    api.apply(ISTIO);
    let source = start(&api, KubeOptions::default()).await;
    let versions: Vec<(Kind, String)> = source
        .istio_apis()
        .iter()
        .map(|a| (a.kind, a.resource.version.clone()))
        .collect();
    assert!(versions.contains(&(Kind::VirtualService, "v1beta1".into())));
    assert!(versions.contains(&(Kind::WorkloadEntry, "v1alpha3".into())));
    let vs = find(&source, Kind::VirtualService, "default", "reviews").unwrap();
    assert_eq!(vs.api_version, "networking.istio.io/v1beta1");
    assert!(find(&source, Kind::WorkloadEntry, "prod", "details-vm").is_some());
    assert!(api
        .requests()
        .iter()
        .any(|r| r.starts_with("GET /apis/networking.istio.io/v1alpha3/workloadentries")));
}

#[tokio::test]
async fn namespaces_limit_what_is_watched() {
    let api = FakeApi::start().await;
    api.apply(ISTIO);
    api.apply(CLUSTER);
    let opts = KubeOptions {
        namespaces: vec!["prod".into()],
        ..Default::default()
    };
    let source = start(&api, opts).await;
    let namespaces: BTreeSet<String> = resources(&source)
        .iter()
        .map(|r| r.metadata.namespace.clone())
        .collect();
    assert_eq!(namespaces, BTreeSet::from(["prod".to_string()]));
    assert!(find(&source, Kind::WorkloadEntry, "prod", "details-vm").is_some());
    let requests = api.requests();
    assert!(requests
        .iter()
        .all(|r| !r.contains("/v1/pods?") || r.contains("/namespaces/prod/")));
    let pods = requests.iter().find(|r| r.contains("/pods?")).unwrap();
    assert!(
        !pods.contains("as=PartialObjectMetadata"),
        "the service account is in the pod's spec: {pods}"
    );
}

#[tokio::test]
async fn missing_istio_crds_is_a_clear_error() {
    let mut store = Store::new();
    store.istio_versions = vec![];
    let api = FakeApi::start_with(store).await;
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let err = KubeSource::start(client, KubeOptions::default())
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("install Istio's CRDs"),
        "{err:#}"
    );
}

#[tokio::test]
async fn readiness_waits_for_every_watcher() {
    let mut store = Store::new();
    store.failing = vec!["pods"];
    let api = FakeApi::start_with(store).await;
    api.apply(ISTIO);
    let client = sluice_kube::connect(Some(&api.url)).await.unwrap();
    let source = KubeSource::start(client, KubeOptions::default())
        .await
        .unwrap();
    let err = source
        .wait_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Pod (all namespaces)"), "{err}");
    assert!(!source.is_ready());
    api.store.lock().unwrap().failing.clear();
    source.wait_ready(SYNC).await.unwrap();
    assert!(find(&source, Kind::Gateway, "default", "bookinfo-gateway").is_some());
}
