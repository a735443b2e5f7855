//! The proxy's own service endpoints (Envoy's "local cluster", Istio's self-discovery
//! `local_cluster`): how this proxy's workload is spread over the zones of its region, which
//! zone-aware routing (`zoneAwareLbSetting`) weighs the zones of every destination by.
//!
//! Istio (with `ISTIO_META_ENABLE_SELF_DISCOVERY`) takes the endpoints of the proxy's service
//! that belong to the same workload (name, `pod-template-hash`) in the proxy's region. sluice
//! knows its workload by labels and namespace: a service of the proxy's namespace is its own
//! when endpoints of it carry the proxy's labels, and those endpoints are the instances of its
//! workload (Pods of one ReplicaSet share every label, `pod-template-hash` included; topology
//! labels, which differ per zone, are not compared). A gateway finds its own Service the same
//! way.

use std::collections::BTreeMap;

use serde::Serialize;
use sluice_lb::Locality;

use crate::proxy::ProxyConfig;
use crate::registry::{Endpoint, Registry};

/// The proxy's own service endpoints in its region, counted per locality.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LocalCluster {
    /// Host names of the proxy's own services (sorted).
    pub services: Vec<String>,
    /// Instances of the proxy's workload per locality (`region/zone/subzone`), its region only.
    pub localities: BTreeMap<String, u64>,
}

impl LocalCluster {
    /// The local cluster of `proxy` in `registry` (empty when the proxy's labels are unknown or
    /// no service of its namespace has an endpoint carrying them).
    pub fn of(registry: &Registry, proxy: &ProxyConfig) -> LocalCluster {
        let identity: Vec<(&String, &String)> = proxy
            .labels
            .iter()
            .filter(|(k, _)| !is_topology_label(k))
            .collect();
        if identity.is_empty() {
            return LocalCluster::default();
        }
        let mine = |e: &Endpoint| identity.iter().all(|(k, v)| e.labels.get(*k) == Some(*v));
        let region = Locality::parse(&proxy.locality).region;
        let mut services = Vec::new();
        // An instance behind several of the proxy's services counts once.
        let mut instances: BTreeMap<&str, &str> = BTreeMap::new();
        for svc in registry.services() {
            if svc.namespace != proxy.namespace {
                continue;
            }
            let own: Vec<&Endpoint> = svc
                .endpoints
                .iter()
                .map(|e| &**e)
                .filter(|e| mine(e))
                .collect();
            if own.is_empty() {
                continue;
            }
            services.push(svc.hostname.clone());
            for e in own {
                instances.insert(&e.address, &e.locality);
            }
        }
        let mut localities = BTreeMap::new();
        for locality in instances.into_values() {
            let parsed = Locality::parse(locality);
            if parsed.is_empty() || parsed.region != region {
                continue;
            }
            *localities.entry(parsed.to_string()).or_insert(0) += 1;
        }
        LocalCluster {
            services,
            localities,
        }
    }

    /// Whether the proxy's own service was found.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// Hosts per locality, as the balancer takes them.
    pub fn shares(&self) -> Vec<(Locality, u64)> {
        self.localities
            .iter()
            .map(|(l, n)| (Locality::parse(l), *n))
            .collect()
    }
}

/// Labels that say where an instance runs rather than what it is (they differ between the
/// replicas of one workload).
pub(crate) fn is_topology_label(key: &str) -> bool {
    key == "istio-locality"
        || key.starts_with("topology.")
        || key.starts_with("failure-domain.beta.kubernetes.io/")
        || key == "kubernetes.io/hostname"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(yaml: &str) -> Registry {
        let parsed = sluice_model::parse_text(yaml, None);
        Registry::build(&parsed.resources)
    }

    const SERVICES: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: sleep, namespace: sample}\nspec:\n  hosts: [sleep.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.1, locality: region1/zone1, labels: {app: sleep, istio-locality: region1.zone1}}\n  - {address: 10.0.0.2, locality: region1/zone2, labels: {app: sleep, istio-locality: region1.zone2}}\n  - {address: 10.0.0.3, locality: region1/zone2, labels: {app: sleep}}\n  - {address: 10.0.0.4, locality: region2/zone3, labels: {app: sleep}}\n  - {address: 10.0.0.5, locality: region1/zone1, labels: {app: other}}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: sleep-alias, namespace: sample}\nspec:\n  hosts: [alias.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.0.0.1, locality: region1/zone1, labels: {app: sleep}}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: sleep, namespace: elsewhere}\nspec:\n  hosts: [sleep.elsewhere.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints:\n  - {address: 10.1.0.1, locality: region1/zone1, labels: {app: sleep}}\n";

    fn proxy(labels: &[(&str, &str)]) -> ProxyConfig {
        ProxyConfig {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            namespace: "sample".into(),
            locality: "region1/zone1".into(),
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn the_proxys_instances_in_its_region_counted_per_zone() {
        let r = registry(SERVICES);
        let local = LocalCluster::of(
            &r,
            &proxy(&[("app", "sleep"), ("istio-locality", "region1.zone1")]),
        );
        assert_eq!(
            local.services,
            [
                "alias.sample.svc.cluster.local",
                "sleep.sample.svc.cluster.local"
            ]
        );
        // 10.0.0.1 once, though two services have it; region2 and other apps left out.
        assert_eq!(
            local.localities,
            BTreeMap::from([("region1/zone1".into(), 1), ("region1/zone2".into(), 2)])
        );
    }

    /// Kubernetes mode: a Service's endpoints carry their Pods' labels, the proxy its own Pod's
    /// (`--labels-file`); Pods of another ReplicaSet (another `pod-template-hash`) are left out,
    /// as Istio's local cluster leaves them out.
    #[test]
    fn pods_of_the_proxys_replica_set_only() {
        let r = registry("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: k8s-sleep, namespace: sample}\nspec:\n  hosts: [sleep.sample.svc.cluster.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  location: MESH_INTERNAL\n  endpoints:\n  - {address: 10.0.0.1, locality: region1/zone1, labels: {app: sleep, pod-template-hash: abc}}\n  - {address: 10.0.0.2, locality: region1/zone2, labels: {app: sleep, pod-template-hash: abc}}\n  - {address: 10.0.0.3, locality: region1/zone2, labels: {app: sleep, pod-template-hash: old}}\n");
        let local = LocalCluster::of(
            &r,
            &proxy(&[("app", "sleep"), ("pod-template-hash", "abc")]),
        );
        assert_eq!(
            local.localities,
            BTreeMap::from([("region1/zone1".into(), 1), ("region1/zone2".into(), 1)])
        );
    }

    #[test]
    fn unknown_labels_or_no_match_find_nothing() {
        let r = registry(SERVICES);
        assert!(LocalCluster::of(&r, &proxy(&[])).is_empty());
        assert!(LocalCluster::of(&r, &proxy(&[("istio-locality", "region1.zone1")])).is_empty());
        assert!(LocalCluster::of(&r, &proxy(&[("app", "ratings")])).is_empty());
    }
}
