//! The canary controller in Kubernetes mode: its states live in each Canary's `status`
//! subresource (merge-patched by the leader, read back from the watch by every proxy), the
//! leader is the holder of a Lease, and each transition is a Kubernetes Event on the Canary.

pub mod command;
pub mod lease;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use serde_json::{json, Value};
use sluice_canary::{event_reason, BoxFuture, CanaryState, StateBackend, Transition};
use tokio::sync::watch;

use crate::source::Shared;

/// Status fields that may be absent: a merge patch sets them to null so an old value goes.
const OPTIONAL_FIELDS: [&str; 4] = ["pausedFrom", "rollbackReason", "lastCheck", "lastCommand"];

/// The Canaries' statuses as the controller's shared state, and the Lease as its leader.
pub struct KubeCanaries {
    pub(crate) shared: Arc<Shared>,
    pub(crate) client: Client,
    pub(crate) resource: ApiResource,
    pub(crate) leader: watch::Receiver<bool>,
    /// What this proxy wrote last, by canary (to write only what changed).
    pub(crate) written: Mutex<BTreeMap<String, CanaryState>>,
    pub(crate) recorder: Option<Recorder>,
    /// Status writes that succeeded.
    pub(crate) writes: AtomicU64,
}

impl std::fmt::Debug for KubeCanaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCanaries")
            .field("leader", &*self.leader.borrow())
            .finish_non_exhaustive()
    }
}

/// The `status` a state is written as (its JSON, absent optional fields as null).
pub fn status_patch(state: &CanaryState) -> serde_json::Result<Value> {
    let mut status = serde_json::to_value(state)?;
    if let Some(o) = status.as_object_mut() {
        for f in OPTIONAL_FIELDS {
            o.entry(f).or_insert(Value::Null);
        }
    }
    Ok(json!({ "status": status }))
}

impl KubeCanaries {
    /// A backend writing through `client` as `instance` (Events when `events`).
    pub(crate) fn new(
        shared: Arc<Shared>,
        client: Client,
        resource: ApiResource,
        leader: watch::Receiver<bool>,
        events: bool,
        instance: &str,
    ) -> KubeCanaries {
        let recorder = events.then(|| {
            Recorder::new(
                client.clone(),
                Reporter {
                    controller: "sluice-canary".into(),
                    instance: Some(instance.to_string()).filter(|i| !i.is_empty()),
                },
            )
        });
        KubeCanaries {
            shared,
            client,
            resource,
            leader,
            written: Mutex::new(BTreeMap::new()),
            recorder,
            writes: AtomicU64::new(0),
        }
    }

    /// How many status writes this proxy made.
    pub fn status_writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn split(key: &str) -> Option<(&str, &str)> {
        key.split_once('/')
    }
}

impl StateBackend for KubeCanaries {
    fn load(&self) -> BTreeMap<String, CanaryState> {
        self.shared
            .canaries()
            .into_iter()
            .filter_map(|((ns, name), o)| {
                let status = o.status?;
                match serde_json::from_value::<CanaryState>(status) {
                    Ok(s) => Some((format!("{ns}/{name}"), s)),
                    Err(e) => {
                        tracing::debug!(canary = %format!("{ns}/{name}"), "status not readable as a canary state ({e}); starting over");
                        None
                    }
                }
            })
            .collect()
    }

    fn save<'a>(&'a self, states: &'a BTreeMap<String, CanaryState>) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if !self.is_leader() {
                return;
            }
            let changed: Vec<(&String, &CanaryState)> = {
                let written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
                states
                    .iter()
                    .filter(|(k, s)| written.get(*k) != Some(*s))
                    .collect()
            };
            for (key, state) in changed {
                let Some((ns, name)) = Self::split(key) else {
                    continue;
                };
                let patch = match status_patch(state) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(canary = %key, "cannot encode the canary state: {e}");
                        continue;
                    }
                };
                let api: Api<DynamicObject> =
                    Api::namespaced_with(self.client.clone(), ns, &self.resource);
                match api
                    .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => {
                        self.writes.fetch_add(1, Ordering::Relaxed);
                        self.written
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(key.clone(), state.clone());
                    }
                    Err(e) => {
                        tracing::error!(canary = %key, "cannot write the Canary status (check the canaries/status RBAC rule): {e}")
                    }
                }
            }
        })
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    fn leadership(&self) -> Option<watch::Receiver<bool>> {
        Some(self.leader.clone())
    }

    fn shared(&self) -> bool {
        true
    }

    fn transition(&self, key: &str, t: &Transition) {
        let Some(recorder) = self.recorder.clone() else {
            return;
        };
        let Some((ns, name)) = Self::split(key) else {
            return;
        };
        let uid = self
            .shared
            .canaries()
            .remove(&(ns.to_string(), name.to_string()))
            .and_then(|o| o.uid);
        let reference = ObjectReference {
            api_version: Some(self.resource.api_version.clone()),
            kind: Some(self.resource.kind.clone()),
            name: Some(name.to_string()),
            namespace: Some(ns.to_string()),
            uid,
            ..ObjectReference::default()
        };
        let reason = event_reason(t);
        let event = Event {
            type_: if t.rollback {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(format!(
                "{} (weight {} %): {}",
                t.to.name(),
                t.weight,
                truncate(&t.message)
            )),
            action: "Analyze".into(),
            secondary: None,
        };
        let key = key.to_string();
        tokio::spawn(async move {
            if let Err(e) = recorder.publish(&event, &reference).await {
                tracing::debug!(canary = %key, "cannot publish the {reason} Event: {e}");
            }
        });
    }
}

/// Event notes are limited to 1 kB.
fn truncate(s: &str) -> String {
    let mut end = s.len().min(900);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
