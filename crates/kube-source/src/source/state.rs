//! What the watchers have seen, and the config store it feeds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sluice_model::{Diagnostic, Kind, Parsed, Resource};
use sluice_sources::ConfigStore;

use super::istio::{admit, as_warnings, decode_object};
use super::pods::PodInfo;
use super::services::{slice_pods, slice_service, synthesize, EXPORT_TO_ANNOTATION};

/// Namespace and name.
pub(crate) type NsName = (String, String);

/// An invalid object to report.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// The object.
    pub reference: ObjectReference,
    /// Why it was not applied.
    pub diagnostics: Vec<Diagnostic>,
}

/// The result of applying one change.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// Whether the collected config changed.
    pub changed: bool,
    /// Invalid objects to report.
    pub reports: Vec<Report>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.changed |= other.changed;
        self.reports.extend(other.reports);
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    resource_version: Option<String>,
}

/// Everything the watchers have seen.
#[derive(Default)]
pub(crate) struct State {
    store: ConfigStore,
    istio: BTreeMap<(Kind, String, String), Seen>,
    services: BTreeMap<NsName, Service>,
    slices: BTreeMap<NsName, EndpointSlice>,
    slices_by_service: BTreeMap<NsName, BTreeSet<String>>,
    pods: HashMap<NsName, PodInfo>,
    /// Node name → locality, for Nodes that have one.
    nodes: HashMap<String, String>,
    synthesized: BTreeMap<NsName, Vec<Resource>>,
    /// Canaries as served: their uid and `status` (the controller's shared state).
    canaries: BTreeMap<NsName, CanaryObject>,
}

/// What the canary controller needs of a Canary beyond its spec.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CanaryObject {
    /// The object's uid (Events regard it).
    pub uid: Option<String>,
    /// Its `status`, as the leading proxy last wrote it.
    pub status: Option<serde_json::Value>,
}

fn istio_key(kind: Kind, ns: &str, name: &str) -> String {
    format!("kube/{kind}/{ns}/{name}")
}

fn rejected_key(kind: &str, ns: &str, name: &str) -> String {
    format!("kube/rejected/{kind}/{ns}/{name}")
}

fn service_key(ns: &str, name: &str) -> String {
    format!("kube/Service/{ns}/{name}")
}

fn in_scope(ns: &str, scope: Option<&str>) -> bool {
    scope.is_none_or(|s| s == ns)
}

impl State {
    /// Every accepted object and every diagnostic.
    pub fn collect(&self) -> (Vec<Arc<Resource>>, Vec<Diagnostic>) {
        self.store.collect()
    }

    /// The Canaries seen, with their uid and status.
    pub fn canaries(&self) -> &BTreeMap<NsName, CanaryObject> {
        &self.canaries
    }

    /// Applies an added or modified Istio object; an invalid one leaves the last valid version.
    pub fn apply_istio(
        &mut self,
        kind: Kind,
        api_version: &str,
        value: serde_json::Value,
    ) -> Outcome {
        let meta = value.get("metadata");
        let s = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let (Some(name), ns) = (
            s("name"),
            s("namespace").unwrap_or_else(|| "default".into()),
        ) else {
            return Outcome::default();
        };
        let seen = Seen {
            resource_version: s("resourceVersion"),
        };
        let key = (kind, ns.clone(), name.clone());
        if seen.resource_version.is_some() && self.istio.get(&key) == Some(&seen) {
            return Outcome::default();
        }
        let uid = s("uid");
        if kind == Kind::Canary {
            self.canaries.insert(
                (ns.clone(), name.clone()),
                CanaryObject {
                    uid: uid.clone(),
                    status: value.get("status").filter(|v| !v.is_null()).cloned(),
                },
            );
        }
        self.istio.insert(key, seen.clone());
        let admission = admit(decode_object(value, api_version, kind));
        if admission.rejected.is_empty() {
            self.store.remove(&rejected_key(kind.name(), &ns, &name));
            self.store
                .set(istio_key(kind, &ns, &name), admission.accepted);
            return Outcome {
                changed: true,
                reports: Vec::new(),
            };
        }
        self.store.set(
            rejected_key(kind.name(), &ns, &name),
            Parsed {
                resources: Vec::new(),
                diagnostics: as_warnings(&admission.rejected),
            },
        );
        Outcome {
            changed: true,
            reports: vec![Report {
                reference: ObjectReference {
                    api_version: Some(api_version.to_string()),
                    kind: Some(kind.name().to_string()),
                    name: Some(name),
                    namespace: Some(ns),
                    uid,
                    resource_version: seen.resource_version,
                    field_path: None,
                },
                diagnostics: admission.rejected,
            }],
        }
    }

    /// Removes a deleted Istio object.
    pub fn delete_istio(&mut self, kind: Kind, ns: &str, name: &str) -> Outcome {
        let existed = self
            .istio
            .remove(&(kind, ns.to_string(), name.to_string()))
            .is_some();
        if kind == Kind::Canary {
            self.canaries.remove(&(ns.to_string(), name.to_string()));
        }
        self.store.remove(&istio_key(kind, ns, name));
        self.store.remove(&rejected_key(kind.name(), ns, name));
        Outcome {
            changed: existed,
            reports: Vec::new(),
        }
    }

    /// Replaces every object of `kind` in `scope` with a fresh listing.
    pub fn replace_istio(
        &mut self,
        kind: Kind,
        api_version: &str,
        scope: Option<&str>,
        values: Vec<serde_json::Value>,
    ) -> Outcome {
        let listed: BTreeSet<NsName> = values.iter().filter_map(ns_name_of).collect();
        let gone: Vec<(Kind, String, String)> = self
            .istio
            .keys()
            .filter(|(k, ns, name)| {
                *k == kind && in_scope(ns, scope) && !listed.contains(&(ns.clone(), name.clone()))
            })
            .cloned()
            .collect();
        let mut out = Outcome::default();
        for (k, ns, name) in gone {
            out.merge(self.delete_istio(k, &ns, &name));
        }
        for v in values {
            out.merge(self.apply_istio(kind, api_version, v));
        }
        out
    }

    /// Applies an added or modified Service.
    pub fn apply_service(&mut self, mut svc: Service) -> Outcome {
        let Some(key) = key_of(&svc.metadata) else {
            return Outcome::default();
        };
        svc.metadata.managed_fields = None;
        // Only the annotation the entry is built from is kept; the rest can be large.
        svc.metadata.annotations = svc
            .metadata
            .annotations
            .take()
            .and_then(|mut a| a.remove_entry(EXPORT_TO_ANNOTATION))
            .map(|(k, v)| BTreeMap::from([(k, v)]));
        self.services.insert(key.clone(), svc);
        self.resynthesize(&key)
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, key: &NsName) -> Outcome {
        self.services.remove(key);
        self.resynthesize(key)
    }

    /// Replaces the Services in `scope`.
    pub fn replace_services(&mut self, scope: Option<&str>, list: Vec<Service>) -> Outcome {
        let listed: BTreeSet<NsName> = list.iter().filter_map(|s| key_of(&s.metadata)).collect();
        let gone: Vec<NsName> = self
            .services
            .keys()
            .filter(|k| in_scope(&k.0, scope) && !listed.contains(*k))
            .cloned()
            .collect();
        let mut out = Outcome::default();
        for k in gone {
            out.merge(self.delete_service(&k));
        }
        for s in list {
            out.merge(self.apply_service(s));
        }
        out
    }

    /// Applies an added or modified EndpointSlice.
    pub fn apply_slice(&mut self, mut slice: EndpointSlice) -> Outcome {
        let Some(key) = key_of(&slice.metadata) else {
            return Outcome::default();
        };
        slice.metadata.managed_fields = None;
        slice.metadata.annotations = None;
        let mut affected: BTreeSet<NsName> = self.unlink_slice(&key).into_iter().collect();
        if let Some(svc) = slice_service(&slice) {
            let svc = (key.0.clone(), svc.to_string());
            self.slices_by_service
                .entry(svc.clone())
                .or_default()
                .insert(key.1.clone());
            self.slices.insert(key, slice);
            affected.insert(svc);
        }
        let mut out = Outcome::default();
        for svc in affected {
            out.merge(self.resynthesize(&svc));
        }
        out
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, key: &NsName) -> Outcome {
        match self.unlink_slice(key) {
            Some(svc) => self.resynthesize(&svc),
            None => Outcome::default(),
        }
    }

    /// Forgets a slice; returns the Service it belonged to.
    fn unlink_slice(&mut self, key: &NsName) -> Option<NsName> {
        let old = self.slices.remove(key)?;
        let svc = (key.0.clone(), slice_service(&old)?.to_string());
        if let Some(set) = self.slices_by_service.get_mut(&svc) {
            set.remove(&key.1);
            if set.is_empty() {
                self.slices_by_service.remove(&svc);
            }
        }
        Some(svc)
    }

    /// Replaces the EndpointSlices in `scope`.
    pub fn replace_slices(&mut self, scope: Option<&str>, list: Vec<EndpointSlice>) -> Outcome {
        let listed: BTreeSet<NsName> = list.iter().filter_map(|s| key_of(&s.metadata)).collect();
        let gone: Vec<NsName> = self
            .slices
            .keys()
            .filter(|k| in_scope(&k.0, scope) && !listed.contains(*k))
            .cloned()
            .collect();
        let mut out = Outcome::default();
        for k in gone {
            out.merge(self.delete_slice(&k));
        }
        for s in list {
            out.merge(self.apply_slice(s));
        }
        out
    }

    /// Records a Pod's labels and service account (`None`: deleted); Services selecting it are
    /// rebuilt if they changed.
    pub fn set_pod(&mut self, key: NsName, info: Option<PodInfo>) -> Outcome {
        let old = match &info {
            Some(i) => self.pods.insert(key.clone(), i.clone()),
            None => self.pods.remove(&key),
        };
        if old == info {
            return Outcome::default();
        }
        let services: BTreeSet<String> = self
            .slices
            .range((key.0.clone(), String::new())..)
            .take_while(|((ns, _), _)| *ns == key.0)
            .filter(|(_, s)| slice_pods(s).any(|p| p == key.1))
            .filter_map(|(_, s)| slice_service(s).map(str::to_string))
            .collect();
        let mut out = Outcome::default();
        for svc in services {
            out.merge(self.resynthesize(&(key.0.clone(), svc)));
        }
        out
    }

    /// Replaces the Pods in `scope`.
    pub fn replace_pods(&mut self, scope: Option<&str>, list: Vec<(NsName, PodInfo)>) -> Outcome {
        let listed: BTreeSet<&NsName> = list.iter().map(|(k, _)| k).collect();
        let gone: Vec<NsName> = self
            .pods
            .keys()
            .filter(|k| in_scope(&k.0, scope) && !listed.contains(k))
            .cloned()
            .collect();
        let mut out = Outcome::default();
        for k in gone {
            out.merge(self.set_pod(k, None));
        }
        for (k, info) in list {
            out.merge(self.set_pod(k, Some(info)));
        }
        out
    }

    /// Records a Node's locality (`None`: deleted or unlabelled); Services with endpoints on it
    /// are rebuilt if it changed.
    pub fn set_node(&mut self, name: String, locality: Option<String>) -> Outcome {
        let old = match &locality {
            Some(l) => self.nodes.insert(name.clone(), l.clone()),
            None => self.nodes.remove(&name),
        };
        if old == locality {
            return Outcome::default();
        }
        let services: BTreeSet<NsName> = self
            .slices
            .iter()
            .filter(|(_, s)| {
                s.endpoints
                    .iter()
                    .any(|e| e.node_name.as_deref() == Some(name.as_str()))
            })
            .filter_map(|((ns, _), s)| Some((ns.clone(), slice_service(s)?.to_string())))
            .collect();
        let mut out = Outcome::default();
        for svc in services {
            out.merge(self.resynthesize(&svc));
        }
        out
    }

    /// Replaces every Node's locality with a fresh listing.
    pub fn replace_nodes(&mut self, list: Vec<(String, Option<String>)>) -> Outcome {
        let listed: BTreeSet<&String> = list.iter().map(|(n, _)| n).collect();
        let gone: Vec<String> = self
            .nodes
            .keys()
            .filter(|n| !listed.contains(n))
            .cloned()
            .collect();
        let mut out = Outcome::default();
        for n in gone {
            out.merge(self.set_node(n, None));
        }
        for (n, locality) in list {
            out.merge(self.set_node(n, locality));
        }
        out
    }

    /// Rebuilds the ServiceEntry of one Service; a change only when the result differs.
    fn resynthesize(&mut self, key: &NsName) -> Outcome {
        let value = self.services.get(key).and_then(|svc| {
            let slices: Vec<&EndpointSlice> = self
                .slices_by_service
                .get(key)
                .into_iter()
                .flatten()
                .filter_map(|name| self.slices.get(&(key.0.clone(), name.clone())))
                .collect();
            let pods = &self.pods;
            let pod = |name: &str| pods.get(&(key.0.clone(), name.to_string()));
            let nodes = &self.nodes;
            let node = |name: &str| nodes.get(name).map(String::as_str);
            synthesize(svc, &slices, &pod, &node)
        });
        let store_key = service_key(&key.0, &key.1);
        let Some(value) = value else {
            self.store.remove(&store_key);
            return Outcome {
                changed: self.synthesized.remove(key).is_some(),
                reports: Vec::new(),
            };
        };
        let admission = admit(decode_object(
            value,
            "networking.istio.io/v1",
            Kind::ServiceEntry,
        ));
        if !admission.rejected.is_empty() {
            for d in &admission.rejected {
                tracing::warn!("Service {}/{} cannot be served: {d}", key.0, key.1);
            }
            self.store.remove(&store_key);
            return Outcome {
                changed: self.synthesized.remove(key).is_some(),
                reports: Vec::new(),
            };
        }
        if self.synthesized.get(key) == Some(&admission.accepted.resources) {
            return Outcome::default();
        }
        self.synthesized
            .insert(key.clone(), admission.accepted.resources.clone());
        self.store.set(store_key, admission.accepted);
        Outcome {
            changed: true,
            reports: Vec::new(),
        }
    }
}

/// Namespace (default `default`) and name of an object's metadata.
pub(crate) fn key_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<NsName> {
    Some((
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone()?,
    ))
}

fn ns_name_of(v: &serde_json::Value) -> Option<NsName> {
    let meta = v.get("metadata")?;
    Some((
        meta.get("namespace")
            .and_then(|n| n.as_str())
            .unwrap_or("default")
            .to_string(),
        meta.get("name")?.as_str()?.to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn locality_of(state: &State) -> Option<String> {
        let (resources, _) = state.collect();
        resources.iter().find_map(|r| match &r.spec {
            sluice_model::Spec::ServiceEntry(se) => se.endpoints.first()?.locality.clone(),
            _ => None,
        })
    }

    #[test]
    fn node_labels_relabel_the_endpoints_on_them() {
        let mut state = State::default();
        let svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "reviews", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.5", "ports": [{"name": "http", "port": 9080}]},
        }))
        .unwrap();
        let slice: EndpointSlice = serde_json::from_value(json!({
            "metadata": {"name": "reviews-1", "namespace": "default",
                "labels": {"kubernetes.io/service-name": "reviews"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 9080}],
            "endpoints": [{"addresses": ["10.0.0.1"], "zone": "z1", "nodeName": "node-1"}],
        }))
        .unwrap();
        state.apply_service(svc);
        state.apply_slice(slice);
        assert_eq!(locality_of(&state).as_deref(), Some("/z1"));
        let out = state.set_node("node-1".into(), Some("r1/z1/rack7".into()));
        assert!(out.changed);
        assert_eq!(locality_of(&state).as_deref(), Some("r1/z1/rack7"));
        assert!(!state.set_node("node-2".into(), Some("r2".into())).changed);
        let out = state.replace_nodes(vec![("node-2".into(), Some("r2".into()))]);
        assert!(out.changed);
        assert_eq!(locality_of(&state).as_deref(), Some("/z1"));
    }
}
