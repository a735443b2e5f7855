//! Peer (workload) and destination-service label sets of Istio's standard metrics.
//!
//! Label sets are interned: the same content always yields the same `Arc` with the same small
//! id, so a metric series is keyed by a few integers instead of 25 strings, and a request never
//! hashes or compares label strings. Interning happens when a snapshot is compiled or an
//! endpoint is first seen, never per request. The intern tables only grow with the number of
//! distinct workloads and services ever seen, which is bounded by the config.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher as _;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::Serialize;

/// The value Istio uses for any label it cannot determine.
pub const UNKNOWN: &str = "unknown";

/// The cluster ID Istio reports by default.
pub const DEFAULT_CLUSTER_ID: &str = "Kubernetes";

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The workload labels of one side of a request (`source_*` or `destination_*`).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PeerLabels {
    #[serde(skip)]
    id: u32,
    /// `*_workload`: Deployment / WorkloadEntry name.
    pub workload: String,
    /// `*_workload_namespace`.
    pub namespace: String,
    /// `*_principal`: SPIFFE ID.
    pub principal: String,
    /// `*_app`: label `app`.
    pub app: String,
    /// `*_version`: label `version`.
    pub version: String,
    /// `*_canonical_service`.
    pub canonical_service: String,
    /// `*_canonical_revision`.
    pub canonical_revision: String,
    /// `*_cluster`.
    pub cluster: String,
}

/// Content of a [`PeerLabels`] (its intern key).
type PeerKey = [String; 8];

impl PeerLabels {
    /// The same labels with `principal` as the SPIFFE identity (the proxy's own side of an
    /// mTLS connection).
    pub fn with_principal(&self, principal: &str) -> Arc<PeerLabels> {
        intern_peer([
            self.workload.clone(),
            self.namespace.clone(),
            principal.to_string(),
            self.app.clone(),
            self.version.clone(),
            self.canonical_service.clone(),
            self.canonical_revision.clone(),
            self.cluster.clone(),
        ])
    }

    /// A mesh client known only by its certificate's SPIFFE identity: the principal, and the
    /// namespace its `/ns/<ns>/` names.
    pub fn mesh_client(principal: &str) -> Arc<PeerLabels> {
        let namespace = principal
            .split_once("/ns/")
            .and_then(|(_, rest)| rest.split('/').next())
            .filter(|n| !n.is_empty());
        WorkloadInfo {
            name: None,
            namespace: namespace.map(str::to_string),
            principal: Some(principal.to_string()),
            cluster: None,
            labels: BTreeMap::new(),
        }
        .peer_labels()
    }

    /// The interned id; equal ids mean equal labels.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The peer Istio reports when it knows nothing about it: every label `unknown`.
    pub fn unknown() -> Arc<PeerLabels> {
        static UNKNOWN_PEER: OnceLock<Arc<PeerLabels>> = OnceLock::new();
        UNKNOWN_PEER
            .get_or_init(|| intern_peer(std::array::from_fn(|_| UNKNOWN.to_string())))
            .clone()
    }
}

fn intern_peer(key: PeerKey) -> Arc<PeerLabels> {
    static TABLE: OnceLock<Mutex<HashMap<PeerKey, Arc<PeerLabels>>>> = OnceLock::new();
    let mut table = TABLE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(p) = table.get(&key) {
        return p.clone();
    }
    let [workload, namespace, principal, app, version, canonical_service, canonical_revision, cluster] =
        key.clone();
    let peer = Arc::new(PeerLabels {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        workload,
        namespace,
        principal,
        app,
        version,
        canonical_service,
        canonical_revision,
        cluster,
    });
    table.insert(key, peer.clone());
    peer
}

/// What is known about a workload; turned into interned [`PeerLabels`] with Istio's fallbacks.
#[derive(Debug, Clone, Default)]
pub struct WorkloadInfo {
    /// Workload name (Deployment, WorkloadEntry).
    pub name: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// SPIFFE ID, when mTLS identifies the peer.
    pub principal: Option<String>,
    /// Cluster ID (`Kubernetes` when absent, as Istio reports by default).
    pub cluster: Option<String>,
    /// Pod / WorkloadEntry labels.
    pub labels: BTreeMap<String, String>,
}

impl WorkloadInfo {
    /// The interned label set, with `unknown` for whatever is missing.
    pub fn peer_labels(&self) -> Arc<PeerLabels> {
        let get = |k: &str| {
            self.labels
                .get(k)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| UNKNOWN.to_string())
        };
        let or_unknown = |v: &Option<String>| {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(UNKNOWN)
                .to_string()
        };
        intern_peer([
            or_unknown(&self.name),
            or_unknown(&self.namespace),
            or_unknown(&self.principal),
            get("app"),
            get("version"),
            canonical_service(&self.labels, self.name.as_deref()).to_string(),
            canonical_revision(&self.labels).to_string(),
            self.cluster
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_CLUSTER_ID)
                .to_string(),
        ])
    }
}

fn first_label<'a>(labels: &'a BTreeMap<String, String>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .filter_map(|k| labels.get(*k))
        .map(String::as_str)
        .find(|v| !v.is_empty())
}

/// Istio's canonical service: `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`,
/// then the workload name, else `unknown`.
pub fn canonical_service<'a>(
    labels: &'a BTreeMap<String, String>,
    workload: Option<&'a str>,
) -> &'a str {
    first_label(
        labels,
        &[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ],
    )
    .or(workload.filter(|w| !w.is_empty()))
    .unwrap_or(UNKNOWN)
}

/// Istio's canonical revision: `service.istio.io/canonical-revision`, `app.kubernetes.io/version`,
/// `version`, else `latest`.
pub fn canonical_revision(labels: &BTreeMap<String, String>) -> &str {
    first_label(
        labels,
        &[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ],
    )
    .unwrap_or("latest")
}

/// The `destination_service*` labels of a request.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ServiceLabels {
    #[serde(skip)]
    id: u32,
    /// `destination_service`: the FQDN.
    pub service: String,
    /// `destination_service_name`.
    pub name: String,
    /// `destination_service_namespace`.
    pub namespace: String,
}

impl ServiceLabels {
    /// The interned id; equal ids mean equal labels.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Interns a destination service from explicit values (`unknown` for empty ones).
    pub fn new(service: &str, name: &str, namespace: &str) -> Arc<ServiceLabels> {
        // By a hash of the values: a map keyed by the values themselves kept each a second
        // time (1.3 MB at 10,000 services). Labels whose hashes collide share a slot.
        type Table = HashMap<u64, Vec<Arc<ServiceLabels>>, foldhash::fast::RandomState>;
        static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
        let v = |s: &str| if s.is_empty() { UNKNOWN } else { s }.to_string();
        let (service, name, namespace) = (v(service), v(name), v(namespace));
        let mut table = TABLE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let hash = table.hasher().hash_one((&service, &name, &namespace));
        let slot = table.entry(hash).or_insert_with(|| Vec::with_capacity(1));
        if let Some(s) = slot
            .iter()
            .find(|s| s.service == service && s.name == name && s.namespace == namespace)
        {
            return Arc::clone(s);
        }
        let labels = Arc::new(ServiceLabels {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            service,
            name,
            namespace,
        });
        slot.push(Arc::clone(&labels));
        labels
    }

    /// Labels for a service host, as Istio derives them from the cluster: for
    /// `name.ns.svc.<domain>` the name and namespace come from the host; otherwise the name is
    /// the host and the namespace the one of the ServiceEntry (`namespace`), if known.
    pub fn from_host(host: &str, namespace: Option<&str>) -> Arc<ServiceLabels> {
        let mut parts = host.splitn(4, '.');
        if let (Some(name), Some(ns), Some("svc")) = (parts.next(), parts.next(), parts.next()) {
            return ServiceLabels::new(host, name, ns);
        }
        ServiceLabels::new(host, host, namespace.unwrap_or(UNKNOWN))
    }

    /// Whether these are the labels [`ServiceLabels::from_host`] gives `host` (without
    /// making them: a reload of 10,000 services asks for every one).
    /// `namespace` is asked only for a host that does not name its own.
    pub fn is_for<'n>(&self, host: &str, namespace: impl FnOnce() -> Option<&'n str>) -> bool {
        let mut parts = host.splitn(4, '.');
        let (name, ns) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), Some(ns), Some("svc")) => (name, ns),
            _ => (host, namespace().unwrap_or(UNKNOWN)),
        };
        fn or_unknown(s: &str) -> &str {
            if s.is_empty() {
                UNKNOWN
            } else {
                s
            }
        }
        self.service == or_unknown(host)
            && self.name == or_unknown(name)
            && self.namespace == or_unknown(ns)
    }

    /// A destination nobody knows (no route, unknown host): every label `unknown`.
    pub fn unknown() -> Arc<ServiceLabels> {
        static UNKNOWN_SERVICE: OnceLock<Arc<ServiceLabels>> = OnceLock::new();
        UNKNOWN_SERVICE
            .get_or_init(|| ServiceLabels::new(UNKNOWN, UNKNOWN, UNKNOWN))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_for_agrees_with_from_host() {
        let hosts = [
            "reviews.default.svc.cluster.local",
            "api.example.com",
            "",
            "a.b.svc",
        ];
        for host in hosts {
            for ns in [None, Some("prod"), Some("")] {
                let labels = ServiceLabels::from_host(host, ns);
                assert!(labels.is_for(host, || ns), "{host} {ns:?}");
                assert!(!labels.is_for("other.example.com", || ns));
            }
        }
        let prod = ServiceLabels::from_host("api.example.com", Some("prod"));
        assert!(!prod.is_for("api.example.com", || Some("dev")));
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn canonical_service_fallbacks() {
        let all = labels(&[
            ("service.istio.io/canonical-name", "canon"),
            ("app.kubernetes.io/name", "k8s-name"),
            ("app", "app"),
        ]);
        assert_eq!(canonical_service(&all, Some("wl")), "canon");
        let k8s = labels(&[("app.kubernetes.io/name", "k8s-name"), ("app", "app")]);
        assert_eq!(canonical_service(&k8s, Some("wl")), "k8s-name");
        assert_eq!(
            canonical_service(&labels(&[("app", "app")]), Some("wl")),
            "app"
        );
        assert_eq!(
            canonical_service(&labels(&[]), Some("reviews-v1")),
            "reviews-v1"
        );
        assert_eq!(canonical_service(&labels(&[]), None), UNKNOWN);
        // An empty label value does not count.
        assert_eq!(canonical_service(&labels(&[("app", "")]), Some("wl")), "wl");
    }

    #[test]
    fn canonical_revision_fallbacks() {
        let all = labels(&[
            ("service.istio.io/canonical-revision", "r1"),
            ("app.kubernetes.io/version", "k8s"),
            ("version", "v1"),
        ]);
        assert_eq!(canonical_revision(&all), "r1");
        let k8s = labels(&[("app.kubernetes.io/version", "k8s"), ("version", "v1")]);
        assert_eq!(canonical_revision(&k8s), "k8s");
        assert_eq!(canonical_revision(&labels(&[("version", "v2")])), "v2");
        assert_eq!(canonical_revision(&labels(&[])), "latest");
    }

    #[test]
    fn peers_are_interned_with_unknowns() {
        let info = WorkloadInfo {
            name: Some("reviews-v1".into()),
            namespace: Some("default".into()),
            labels: labels(&[("app", "reviews"), ("version", "v1")]),
            ..Default::default()
        };
        let a = info.peer_labels();
        let b = info.clone().peer_labels();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.principal, UNKNOWN);
        assert_eq!(a.canonical_service, "reviews");
        assert_eq!(a.canonical_revision, "v1");
        assert_eq!(a.cluster, DEFAULT_CLUSTER_ID);
        let other = WorkloadInfo {
            name: Some("reviews-v2".into()),
            ..info
        }
        .peer_labels();
        assert_ne!(a.id(), other.id());
        assert_eq!(PeerLabels::unknown().workload, UNKNOWN);
    }

    #[test]
    fn service_labels_from_host() {
        let s = ServiceLabels::from_host("reviews.default.svc.cluster.local", Some("other"));
        assert_eq!(
            (s.name.as_str(), s.namespace.as_str()),
            ("reviews", "default")
        );
        let e = ServiceLabels::from_host("httpbin.org", Some("egress"));
        assert_eq!(
            (e.name.as_str(), e.namespace.as_str()),
            ("httpbin.org", "egress")
        );
        assert!(Arc::ptr_eq(
            &e,
            &ServiceLabels::from_host("httpbin.org", Some("egress"))
        ));
    }

    /// Equal values give the one interned set, with one id; any value differing, another;
    /// an empty value is `unknown`.
    #[test]
    fn service_labels_are_interned_by_their_values() {
        let a = ServiceLabels::new("a.example.com", "a", "ns-intern");
        assert!(Arc::ptr_eq(
            &a,
            &ServiceLabels::new("a.example.com", "a", "ns-intern")
        ));
        let others = [
            ServiceLabels::new("a.example.com", "a", "ns-intern-2"),
            ServiceLabels::new("a.example.com", "b", "ns-intern"),
            ServiceLabels::new("b.example.com", "a", "ns-intern"),
        ];
        for o in &others {
            assert_ne!(o.id(), a.id());
        }
        let unknown = ServiceLabels::new("", "a", "ns-intern");
        assert_eq!(unknown.service, UNKNOWN);
        assert!(Arc::ptr_eq(
            &unknown,
            &ServiceLabels::new(UNKNOWN, "a", "ns-intern")
        ));
    }
}
