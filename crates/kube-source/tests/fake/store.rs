//! The fake API server's objects: collections, a global resourceVersion, per-collection event
//! history (compactable, for 410 Gone), and a broadcast of live events to open watches.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};

/// Where a kind lives in the API.
#[derive(Debug, Clone, Copy)]
pub struct Collection {
    pub group: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

/// Kinds the fake serves.
pub const COLLECTIONS: [Collection; 17] = [
    Collection {
        group: "networking.istio.io",
        kind: "VirtualService",
        plural: "virtualservices",
    },
    Collection {
        group: "networking.istio.io",
        kind: "DestinationRule",
        plural: "destinationrules",
    },
    Collection {
        group: "networking.istio.io",
        kind: "Gateway",
        plural: "gateways",
    },
    Collection {
        group: "networking.istio.io",
        kind: "ServiceEntry",
        plural: "serviceentries",
    },
    Collection {
        group: "networking.istio.io",
        kind: "WorkloadEntry",
        plural: "workloadentries",
    },
    Collection {
        group: "networking.istio.io",
        kind: "Sidecar",
        plural: "sidecars",
    },
    Collection {
        group: "security.istio.io",
        kind: "AuthorizationPolicy",
        plural: "authorizationpolicies",
    },
    Collection {
        group: "security.istio.io",
        kind: "PeerAuthentication",
        plural: "peerauthentications",
    },
    Collection {
        group: "security.istio.io",
        kind: "RequestAuthentication",
        plural: "requestauthentications",
    },
    Collection {
        group: "",
        kind: "Service",
        plural: "services",
    },
    Collection {
        group: "discovery.k8s.io",
        kind: "EndpointSlice",
        plural: "endpointslices",
    },
    Collection {
        group: "",
        kind: "Pod",
        plural: "pods",
    },
    Collection {
        group: "",
        kind: "Secret",
        plural: "secrets",
    },
    Collection {
        group: "",
        kind: "Namespace",
        plural: "namespaces",
    },
    Collection {
        group: "",
        kind: "Node",
        plural: "nodes",
    },
    Collection {
        group: "rollouts.sluice.dev",
        kind: "Canary",
        plural: "canaries",
    },
    Collection {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
    },
];

/// The collection of a kind.
pub fn by_kind(kind: &str) -> &'static Collection {
    COLLECTIONS
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("the fake API server does not serve {kind}"))
}

/// A change broadcast to open watches.
#[derive(Debug, Clone)]
pub enum Msg {
    /// An object event.
    Event {
        plural: &'static str,
        ns: String,
        rv: u64,
        kind: &'static str,
        object: Value,
    },
    /// A bookmark at this resourceVersion, for every watch.
    Bookmark(u64),
}

/// One recorded event.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub rv: u64,
    pub ns: String,
    pub kind: &'static str,
    pub object: Value,
}

/// Everything the fake knows.
pub struct Store {
    pub rv: u64,
    pub objects: BTreeMap<&'static str, BTreeMap<(String, String), Value>>,
    pub history: BTreeMap<&'static str, Vec<Recorded>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub compacted: u64,
    pub lists: BTreeMap<&'static str, usize>,
    pub requests: Vec<String>,
    pub posted_events: Vec<Value>,
    pub events: broadcast::Sender<Msg>,
    pub kill: watch::Sender<u64>,
    /// Versions served by networking.istio.io, preferred first.
    pub istio_versions: Vec<&'static str>,
    /// Versions served by security.istio.io, preferred first (empty: the group is not served).
    pub security_versions: Vec<&'static str>,
    /// Versions served by rollouts.sluice.dev (empty: the Canary CRD is not installed).
    pub rollouts_versions: Vec<&'static str>,
    /// Kinds left out of a version's resource list.
    pub not_served: Vec<(&'static str, &'static str)>,
    /// Collections whose lists fail with 500.
    pub failing: Vec<&'static str>,
    /// Watch streams currently open.
    pub open_watches: usize,
    /// Writes seen (`PATCH`, `PUT`, `POST` of objects): method, path and the status answered.
    pub writes: Vec<(String, String, u16)>,
}

/// A shared handle to the store.
pub type Shared = Arc<Mutex<Store>>;

impl Store {
    pub fn new() -> Store {
        Store {
            rv: 100,
            objects: BTreeMap::new(),
            history: BTreeMap::new(),
            compacted: 0,
            lists: BTreeMap::new(),
            requests: Vec::new(),
            posted_events: Vec::new(),
            events: broadcast::channel(4096).0,
            kill: watch::channel(0).0,
            istio_versions: vec!["v1", "v1beta1", "v1alpha3"],
            security_versions: vec!["v1", "v1beta1"],
            rollouts_versions: vec!["v1alpha1"],
            not_served: Vec::new(),
            failing: Vec::new(),
            open_watches: 0,
            writes: Vec::new(),
        }
    }

    /// Records a change and tells open watches.
    pub fn record(&mut self, c: &'static Collection, kind: &'static str, mut object: Value) -> u64 {
        self.rv += 1;
        let rv = self.rv;
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.insert("resourceVersion".into(), json!(rv.to_string()));
        let ns = meta["namespace"].as_str().unwrap_or("default").to_string();
        let name = meta["name"].as_str().expect("name").to_string();
        let objects = self.objects.entry(c.plural).or_default();
        if kind == "DELETED" {
            objects.remove(&(ns.clone(), name));
        } else {
            objects.insert((ns.clone(), name), object.clone());
        }
        self.history.entry(c.plural).or_default().push(Recorded {
            rv,
            ns: ns.clone(),
            kind,
            object: object.clone(),
        });
        let _ = self.events.send(Msg::Event {
            plural: c.plural,
            ns,
            rv,
            kind,
            object,
        });
        rv
    }

    /// Adds or replaces an object (fills in namespace, uid and creationTimestamp).
    pub fn put(&mut self, mut object: Value) -> u64 {
        let kind = object["kind"].as_str().expect("kind").to_string();
        let c = by_kind(&kind);
        let meta = object["metadata"].as_object_mut().expect("metadata");
        meta.entry("namespace").or_insert(json!("default"));
        let ns = meta["namespace"].as_str().unwrap_or_default().to_string();
        let name = meta["name"].as_str().expect("name").to_string();
        let existing = self
            .objects
            .get(c.plural)
            .and_then(|o| o.get(&(ns.clone(), name.clone())))
            .cloned();
        let meta = object["metadata"].as_object_mut().expect("metadata");
        match &existing {
            Some(old) => {
                meta.insert("uid".into(), old["metadata"]["uid"].clone());
                meta.insert(
                    "creationTimestamp".into(),
                    old["metadata"]["creationTimestamp"].clone(),
                );
            }
            None => {
                meta.entry("uid")
                    .or_insert(json!(format!("uid-{kind}-{ns}-{name}")));
                meta.entry("creationTimestamp")
                    .or_insert(json!(format!("2024-01-01T00:00:{:02}Z", self.rv % 60)));
            }
        }
        let event = if existing.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        self.record(c, event, object)
    }

    /// The live object.
    pub fn get(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        self.objects
            .get(by_kind(kind).plural)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}
