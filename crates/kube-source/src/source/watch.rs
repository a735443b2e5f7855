//! One watcher per kind (and namespace): list + watch through `kube::runtime::watcher`, which
//! handles resourceVersions, bookmarks and re-lists after 410 Gone; listings are buffered and
//! applied at once, so a re-list never drops config in between.

use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt as _;
use serde::de::DeserializeOwned;
use sluice_model::Kind;

use super::nodes::WatchedNode;
use super::pods::WatchedPod;
use super::state::{key_of, Outcome, State};
use super::Shared;

/// A change seen by one watcher.
pub(crate) enum Change<K> {
    /// Added or modified.
    Apply(K),
    /// Deleted.
    Delete(K),
    /// A complete listing of the watcher's scope.
    Replace(Vec<K>),
}

/// What one watcher covers.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Human name, e.g. `VirtualService (all namespaces)`; also the readiness key.
    pub name: String,
    /// The namespace watched (`None`: all).
    pub namespace: Option<String>,
    /// For Istio kinds: the kind and the apiVersion watched.
    pub istio: Option<(Kind, String)>,
}

/// A resource type a watcher can feed into the state.
pub(crate) trait Watched:
    kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Applies one change.
    fn handle(state: &mut State, target: &Target, change: Change<Self>) -> Outcome;
}

impl Watched for DynamicObject {
    fn handle(state: &mut State, target: &Target, change: Change<Self>) -> Outcome {
        let Some((kind, api_version)) = &target.istio else {
            return Outcome::default();
        };
        let value = |o: &DynamicObject| serde_json::to_value(o).ok();
        match change {
            Change::Apply(o) => match value(&o) {
                Some(v) => state.apply_istio(*kind, api_version, v),
                None => Outcome::default(),
            },
            Change::Delete(o) => match key_of(&o.metadata) {
                Some((ns, name)) => state.delete_istio(*kind, &ns, &name),
                None => Outcome::default(),
            },
            Change::Replace(list) => state.replace_istio(
                *kind,
                api_version,
                target.namespace.as_deref(),
                list.iter().filter_map(value).collect(),
            ),
        }
    }
}

impl Watched for Service {
    fn handle(state: &mut State, target: &Target, change: Change<Self>) -> Outcome {
        match change {
            Change::Apply(s) => state.apply_service(s),
            Change::Delete(s) => match key_of(&s.metadata) {
                Some(k) => state.delete_service(&k),
                None => Outcome::default(),
            },
            Change::Replace(list) => state.replace_services(target.namespace.as_deref(), list),
        }
    }
}

impl Watched for EndpointSlice {
    fn handle(state: &mut State, target: &Target, change: Change<Self>) -> Outcome {
        match change {
            Change::Apply(s) => state.apply_slice(s),
            Change::Delete(s) => match key_of(&s.metadata) {
                Some(k) => state.delete_slice(&k),
                None => Outcome::default(),
            },
            Change::Replace(list) => state.replace_slices(target.namespace.as_deref(), list),
        }
    }
}

impl Watched for WatchedPod {
    fn handle(state: &mut State, target: &Target, change: Change<Self>) -> Outcome {
        match change {
            Change::Apply(p) => match key_of(&p.metadata) {
                Some(k) => state.set_pod(k, Some(p.info())),
                None => Outcome::default(),
            },
            Change::Delete(p) => match key_of(&p.metadata) {
                Some(k) => state.set_pod(k, None),
                None => Outcome::default(),
            },
            Change::Replace(list) => state.replace_pods(
                target.namespace.as_deref(),
                list.iter()
                    .filter_map(|p| Some((key_of(&p.metadata)?, p.info())))
                    .collect(),
            ),
        }
    }
}

impl Watched for WatchedNode {
    fn handle(state: &mut State, _: &Target, change: Change<Self>) -> Outcome {
        match change {
            Change::Apply(n) => match n.locality() {
                Some((name, locality)) => state.set_node(name, locality),
                None => Outcome::default(),
            },
            Change::Delete(n) => match n.locality() {
                Some((name, _)) => state.set_node(name, None),
                None => Outcome::default(),
            },
            Change::Replace(list) => {
                state.replace_nodes(list.iter().filter_map(WatchedNode::locality).collect())
            }
        }
    }
}

/// Runs one watcher until the task is aborted.
pub(crate) async fn run<K: Watched>(api: Api<K>, target: Target, shared: Arc<Shared>) {
    // Lists are served from the API server's watch cache (`resourceVersion=0`, which is not
    // paged), as client-go informers do, instead of quorum reads from etcd.
    let mut config = watcher::Config::default().any_semantic();
    config.page_size = None;
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing: Vec<K> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(o)) => listing.push(o),
            Ok(Event::InitDone) => {
                let list = std::mem::take(&mut listing);
                tracing::debug!(watch = %target.name, objects = list.len(), "listed");
                shared.update(|s| K::handle(s, &target, Change::Replace(list)));
                shared.synced(&target.name);
            }
            Ok(Event::Apply(o)) => shared.update(|s| K::handle(s, &target, Change::Apply(o))),
            Ok(Event::Delete(o)) => shared.update(|s| K::handle(s, &target, Change::Delete(o))),
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                tracing::info!(watch = %target.name, "watch expired (410 Gone); re-listing, the current config stays in force");
            }
            Err(e) => tracing::warn!(watch = %target.name, "{e}; retrying"),
        }
    }
}
