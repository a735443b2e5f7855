//! The Kubernetes config source: watches Istio objects, Services, EndpointSlices, Pods and
//! Nodes and keeps a [`ConfigStore`](sluice_sources::ConfigStore) of valid objects for the
//! runtime.

mod discovery;
mod istio;
pub mod nodes;
pub mod pods;
mod report;
pub mod secrets;
pub mod services;
mod slim;
mod state;
mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DynamicObject};
use kube::Client;
use sluice_model::{Diagnostic, Resource};
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use discovery::{discover_istio, IstioApi, ISTIO_KINDS};
pub use istio::{admit, as_warnings, decode_object, Admission};
pub use pods::{PodInfo, WatchedPod};
pub use secrets::{SecretFeed, SecretSink};

use report::Reports;
pub(crate) use state::CanaryObject;
use state::{Outcome, State};
use watch::{Target, Watched};

/// A source of config objects that changes over time (files, Kubernetes).
pub trait ConfigSource: Send + Sync + std::fmt::Debug {
    /// Every object to apply and every diagnostic, as of now.
    fn collect(&self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>);
    /// Where the canary controller keeps its states and who leads it (`None`: no canaries).
    fn canary_backend(&self) -> Option<Arc<dyn sluice_canary::StateBackend>> {
        None
    }
    /// Whether the source has read everything once (gates `/ready`).
    fn is_ready(&self) -> bool;
    /// A counter that moves whenever `collect` would return something new.
    fn subscribe(&self) -> signal::Receiver<u64>;
}

/// Waits for the next change, then lets a burst of changes settle for `debounce`; `false` when
/// the source is gone.
pub async fn next_change(rx: &mut signal::Receiver<u64>, debounce: Duration) -> bool {
    if rx.changed().await.is_err() {
        return false;
    }
    tokio::time::sleep(debounce).await;
    rx.borrow_and_update();
    true
}

/// What to watch and how to report.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Namespaces to watch (empty: all).
    pub namespaces: Vec<String>,
    /// Publish a Kubernetes Event on each invalid object.
    pub events: bool,
    /// Reporting instance named in Events (e.g. the pod name).
    pub instance: String,
    /// TLS Secrets to watch for gateway `credentialName`s.
    pub secrets: Option<secrets::SecretFeed>,
    /// The Lease that elects the proxy leading the canary analysis (`None`: this proxy
    /// never leads, it follows the Canary statuses).
    pub lease: Option<crate::canary::lease::LeaseSettings>,
}

/// State shared by the watchers and the readers.
pub(crate) struct Shared {
    pub(crate) state: Mutex<State>,
    changes: signal::Sender<u64>,
    pending: signal::Sender<BTreeSet<String>>,
    reports: Reports,
}

impl Shared {
    /// Applies a change; notifies readers and reports invalid objects.
    pub(crate) fn update(&self, f: impl FnOnce(&mut State) -> Outcome) {
        let outcome = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut state)
        };
        if outcome.changed {
            self.changes.send_modify(|g| *g += 1);
        }
        for r in outcome.reports {
            self.reports.publish(r);
        }
    }

    /// The Canaries seen, with their uid and status.
    pub(crate) fn canaries(&self) -> BTreeMap<state::NsName, CanaryObject> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .canaries()
            .clone()
    }

    /// Marks a watcher as having completed its first listing.
    pub(crate) fn synced(&self, name: &str) {
        self.pending.send_if_modified(|p| p.remove(name));
    }
}

/// Watches a cluster; cheap to query, stops its watchers when dropped.
pub struct KubeSource {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
    istio: Vec<IstioApi>,
    /// The locality of the Node this proxy runs on, when known.
    pub(crate) node_locality: Option<String>,
    /// The canary controller's states and leader, when the cluster serves Canaries.
    canaries: Option<Arc<crate::canary::KubeCanaries>>,
    /// The client and the Lease this proxy stands for, to release it at shutdown.
    lease: Option<(Client, crate::canary::lease::LeaseSettings)>,
}

impl std::fmt::Debug for KubeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSource")
            .field("istio", &self.istio)
            .field("watchers", &self.tasks.len())
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeSource {
    /// Discovers the Istio API versions and starts the watchers (it does not wait for them).
    pub async fn start(client: Client, opts: KubeOptions) -> anyhow::Result<KubeSource> {
        let istio = discover_istio(&client).await?;
        let scopes: Vec<Option<String>> = if opts.namespaces.is_empty() {
            vec![None]
        } else {
            opts.namespaces.iter().cloned().map(Some).collect()
        };
        let mut targets = Vec::new();
        for ns in &scopes {
            let target = |what: &str, istio| Target {
                name: match ns {
                    Some(n) => format!("{what} (namespace {n})"),
                    None => format!("{what} (all namespaces)"),
                },
                namespace: ns.clone(),
                istio,
            };
            for api in &istio {
                let t = target(
                    api.kind.name(),
                    Some((api.kind, api.resource.api_version.clone())),
                );
                targets.push((t, Feed::Istio(api.resource.clone())));
            }
            targets.push((target("Service", None), Feed::Service));
            targets.push((target("EndpointSlice", None), Feed::EndpointSlice));
            targets.push((target("Pod", None), Feed::Pod));
        }
        // The Secret watcher does not gate readiness: a proxy whose role may not read Secrets
        // (a sidecar) still serves, and a missing Secret fails only its own handshakes.
        let names = targets.iter().map(|(t, _)| t.name.clone()).collect();
        let reports = Reports::new(opts.events.then(|| client.clone()), &opts.instance);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changes: signal::channel(0).0,
            pending: signal::channel(names).0,
            reports,
        });
        let mut tasks: Vec<JoinHandle<()>> = targets
            .into_iter()
            .map(|(t, feed)| {
                let c = client.clone();
                let ns = t.namespace.clone();
                let ns = ns.as_deref();
                let s = shared.clone();
                match feed {
                    Feed::Istio(r) => spawn(dynamic_api(c, ns, &r), t, s),
                    Feed::Service => spawn(typed_api::<Service>(c, ns), t, s),
                    Feed::EndpointSlice => spawn(typed_api::<EndpointSlice>(c, ns), t, s),
                    Feed::Pod => spawn(typed_api::<WatchedPod>(c, ns), t, s),
                }
            })
            .collect();
        // Nodes give endpoints their region and subzone; they are cluster-scoped and do not
        // gate readiness, so a role that may not list Nodes still serves (with the slices'
        // zones only), as the watcher's warnings say.
        let nodes = Target {
            name: "Node (cluster)".into(),
            namespace: None,
            istio: None,
        };
        tasks.push(spawn(
            Api::<nodes::WatchedNode>::all(client.clone()),
            nodes,
            shared.clone(),
        ));
        if let Some(feed) = opts.secrets.clone() {
            tasks.push(tokio::spawn(secrets::run(client.clone(), feed)));
        }
        // Canaries: the statuses are read from the watch above; the Lease says who writes them.
        let mut lease = None;
        let canaries = istio
            .iter()
            .find(|a| a.kind == sluice_model::Kind::Canary)
            .map(|api| {
                lease = opts.lease.clone().map(|l| (client.clone(), l));
                let leader = match opts.lease.clone() {
                    Some(settings) => {
                        let (task, rx) = crate::canary::lease::spawn(client.clone(), settings);
                        tasks.push(task);
                        rx
                    }
                    None => signal::channel(false).1,
                };
                Arc::new(crate::canary::KubeCanaries::new(
                    shared.clone(),
                    client.clone(),
                    api.resource.clone(),
                    leader,
                    opts.events,
                    &opts.instance,
                ))
            });
        Ok(KubeSource {
            shared,
            tasks,
            istio,
            node_locality: None,
            canaries,
            lease,
        })
    }

    /// The Istio kinds watched and the apiVersion of each.
    pub fn istio_apis(&self) -> &[IstioApi] {
        &self.istio
    }

    /// The `region/zone/subzone` of the Node this proxy runs on (`$NODE_NAME`), from its
    /// topology labels.
    pub fn node_locality(&self) -> Option<&str> {
        self.node_locality.as_deref()
    }

    /// Stops every watcher and the leader election (as if the process ended: the Lease is not
    /// released, it expires).
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }

    /// Stops the watchers and the leader election, and gives the canary leader Lease up when
    /// this proxy holds it, so another proxy takes over at once (a graceful shutdown).
    pub async fn shutdown(&self) {
        self.stop();
        if let Some((client, settings)) = &self.lease {
            crate::canary::lease::release(client.clone(), settings).await;
        }
    }

    /// Whether this proxy leads the canary analysis now.
    pub fn leads_canaries(&self) -> bool {
        self.canaries
            .as_ref()
            .is_some_and(|c| sluice_canary::StateBackend::is_leader(&**c))
    }

    /// How many Canary status writes this proxy made (as the leader).
    pub fn canary_status_writes(&self) -> u64 {
        self.canaries.as_ref().map_or(0, |c| c.status_writes())
    }

    /// Waits until every watcher has listed once; the error names those that have not.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut rx = self.shared.pending.subscribe();
        let synced = tokio::time::timeout(timeout, rx.wait_for(BTreeSet::is_empty))
            .await
            .is_ok_and(|r| r.is_ok());
        if synced {
            return Ok(());
        }
        let pending: Vec<String> = self.shared.pending.borrow().iter().cloned().collect();
        anyhow::bail!(
            "not synced with the Kubernetes API after {timeout:?}: {}",
            pending.join(", ")
        )
    }
}

impl ConfigSource for KubeSource {
    fn collect(&self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .collect()
    }

    fn is_ready(&self) -> bool {
        self.shared.pending.borrow().is_empty()
    }

    fn canary_backend(&self) -> Option<Arc<dyn sluice_canary::StateBackend>> {
        self.canaries
            .clone()
            .map(|c| c as Arc<dyn sluice_canary::StateBackend>)
    }

    fn subscribe(&self) -> signal::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}

/// The API a watcher reads.
enum Feed {
    Istio(kube::discovery::ApiResource),
    Service,
    EndpointSlice,
    Pod,
}

fn spawn<K: Watched>(api: Api<K>, target: Target, shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(watch::run(api, target, shared))
}

fn dynamic_api(
    client: Client,
    ns: Option<&str>,
    r: &kube::discovery::ApiResource,
) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client, ns, r),
        None => Api::all_with(client, r),
    }
}

fn typed_api<K>(client: Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    }
}
