//! What `/api/graph` serves: nodes, edges, configured routes; and the configured weights read
//! from a snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use sluice_config::listener::{Listener, ListenerRole};
use sluice_config::route_table::RouteAction;
use sluice_config::vhost::VirtualHost;
use sluice_config::Snapshot;

/// A route's configured destinations, for configured-vs-observed split, as `/api/graph` lists
/// it: made for the routes a document shows (the graph keeps a [`RouteRef`] to each).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredRoute {
    /// Source node (see [`listener_source`]).
    pub source: Arc<str>,
    /// Virtual host name.
    pub virtual_host: Arc<str>,
    /// Route name.
    pub route: String,
    /// Weighted destinations.
    pub destinations: Vec<ConfiguredDestination>,
    /// Mirror targets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<ConfiguredMirror>,
}

/// One weighted destination of a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfiguredDestination {
    /// Service host.
    pub service: Arc<str>,
    /// Subset.
    pub subset: Option<Arc<str>>,
    /// Weight.
    pub weight: u32,
}

/// One mirror target of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredMirror {
    /// Service host.
    pub service: Arc<str>,
    /// Subset.
    pub subset: Option<Arc<str>>,
    /// Share of requests mirrored (0–100).
    pub percentage: f64,
}

/// A graph node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphNode {
    /// Unique id (`source:<name>`, `service:<host>`, `version:<host>|<subset>`).
    pub id: String,
    /// `source`, `service` or `version`.
    pub kind: &'static str,
    /// Display name.
    pub name: String,
    /// Service host (service and version nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Subset (version nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Observed version label of the endpoints (version nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Workloads seen serving it (version nodes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    /// Requests per second through the node (in for destinations, out for sources).
    pub rps: f64,
    /// 5xx share of those requests.
    pub error_rate: f64,
}

/// A graph edge: requests from a source to a service subset through one route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphEdge {
    /// Unique id.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Target (version) node id.
    pub target: String,
    /// Virtual host.
    pub virtual_host: String,
    /// Route.
    pub route: String,
    /// Destination service host.
    pub service: String,
    /// Destination subset.
    pub subset: Option<String>,
    /// A mirror edge (copies; not part of the split).
    pub mirror: bool,
    /// Requests in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// 5xx share.
    pub error_rate: f64,
    /// Median latency (ms); `None` without traffic.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency (ms).
    pub p99_ms: Option<f64>,
    /// Share of the route's (non-mirror) requests that took this edge.
    pub observed_share: Option<f64>,
    /// Configured weight of this destination.
    pub configured_weight: Option<u32>,
    /// Configured weight over the route's total weight.
    pub configured_share: Option<f64>,
    /// Configured mirror percentage (mirror edges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<f64>,
}

/// The graph over the window, as `/api/graph` serves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphSnapshot {
    /// Nodes, sorted by id.
    pub nodes: Vec<GraphNode>,
    /// Edges, sorted by id.
    pub edges: Vec<GraphEdge>,
    /// The configured routes (for the side panel).
    pub routes: Vec<ConfiguredRoute>,
    /// Window length.
    pub window_secs: u64,
    /// When the snapshot was taken (RFC 3339).
    pub generated_at: String,
    /// The same, in Unix milliseconds.
    pub generated_at_ms: u64,
    /// Config version the configured weights come from.
    pub config_version: Option<u64>,
    /// When a reload last changed a route's split and restarted its window (Unix ms); the
    /// observed shares of those routes count only requests since then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_reset_ms: Option<u64>,
    /// How many configured routes there are, when only the first ones are in `routes` (the
    /// dashboard's feed at scale); edges with traffic are there whatever their route.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes_total: Option<usize>,
}

pub(super) fn nodes_of(
    edges: &[GraphEdge],
    versions: &BTreeMap<String, (Option<String>, BTreeSet<String>)>,
) -> Vec<GraphNode> {
    // (requests, errors, rps) accumulated per node.
    let mut nodes: BTreeMap<String, (GraphNode, u64, u64)> = BTreeMap::new();
    for e in edges {
        let errors = (e.error_rate * e.requests as f64).round() as u64;
        let source_name = e.source.trim_start_matches("source:").to_string();
        let service_id = format!("service:{}", e.service);
        let entries = [
            (
                e.source.clone(),
                GraphNode {
                    id: e.source.clone(),
                    kind: "source",
                    name: source_name,
                    service: None,
                    subset: None,
                    version: None,
                    workloads: Vec::new(),
                    rps: 0.0,
                    error_rate: 0.0,
                },
            ),
            (
                service_id.clone(),
                GraphNode {
                    id: service_id,
                    kind: "service",
                    name: e.service.clone(),
                    service: Some(e.service.clone()),
                    subset: None,
                    version: None,
                    workloads: Vec::new(),
                    rps: 0.0,
                    error_rate: 0.0,
                },
            ),
            (e.target.clone(), {
                let (version, workloads) = versions.get(&e.target).cloned().unwrap_or_default();
                GraphNode {
                    id: e.target.clone(),
                    kind: "version",
                    name: e
                        .subset
                        .clone()
                        .or_else(|| version.clone())
                        .unwrap_or_else(|| e.service.clone()),
                    service: Some(e.service.clone()),
                    subset: e.subset.clone(),
                    version,
                    workloads: workloads.into_iter().collect(),
                    rps: 0.0,
                    error_rate: 0.0,
                }
            }),
        ];
        for (id, node) in entries {
            let slot = nodes.entry(id).or_insert((node, 0, 0));
            slot.0.rps += e.rps;
            slot.1 += e.requests;
            slot.2 += errors;
        }
    }
    nodes
        .into_values()
        .map(|(mut n, requests, errors)| {
            n.error_rate = if requests > 0 {
                errors as f64 / requests as f64
            } else {
                0.0
            };
            n
        })
        .collect()
}

/// The source node name of requests arriving on a listener: `gateway:<ns/name,...>` or `mesh`.
pub fn listener_source(listener: &Listener) -> String {
    match &listener.role {
        ListenerRole::Gateway { gateways } => format!("gateway:{}", gateways.join(",")),
        ListenerRole::Mesh => "mesh".to_string(),
    }
}

/// Every weighted route of a snapshot, for [`Graph::set_config`], in (source, virtual host,
/// route) order; a route named twice under one source and virtual host counts once.
pub fn configured_routes(snapshot: &Snapshot) -> Vec<ConfiguredRoute> {
    every_route(snapshot).iter().map(RouteRef::view).collect()
}

/// A configured route as the graph keeps it: where to read it, not a copy. There is one per
/// route of every virtual host (60,000 at 10,000 services); copies of them were a tenth of
/// the proxy's memory, and only a page of them is ever looked at.
#[derive(Debug, Clone)]
pub enum RouteRef {
    /// Route `index` of a compiled virtual host, seen from `source`.
    Compiled {
        /// Source node (see [`listener_source`]).
        source: Arc<str>,
        /// The virtual host, kept alive while the graph shows it.
        vhost: Arc<VirtualHost>,
        /// The route's position in `vhost.routes`.
        index: u32,
    },
    /// A route given whole ([`Graph::set_config`](super::Graph::set_config)).
    Given(Arc<ConfiguredRoute>),
}

impl RouteRef {
    /// The route's identity in the graph: (source, virtual host, route name).
    pub fn group(&self) -> (&str, &str, &str) {
        match self {
            RouteRef::Compiled {
                source,
                vhost,
                index,
            } => (
                source,
                &vhost.name,
                vhost
                    .routes
                    .get(*index as usize)
                    .map_or("", |r| r.name.as_str()),
            ),
            RouteRef::Given(r) => (&r.source, &r.virtual_host, &r.route),
        }
    }

    /// Whether both read the same route of the same object, and so are equal without a look.
    pub fn same(&self, other: &RouteRef) -> bool {
        match (self, other) {
            (
                RouteRef::Compiled {
                    source: s1,
                    vhost: v1,
                    index: i1,
                },
                RouteRef::Compiled {
                    source: s2,
                    vhost: v2,
                    index: i2,
                },
            ) => Arc::ptr_eq(v1, v2) && i1 == i2 && s1 == s2,
            (RouteRef::Given(a), RouteRef::Given(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Whether `f` holds for a service the route sends to or mirrors to.
    pub fn any_service(&self, f: impl Fn(&str) -> bool) -> bool {
        match self {
            RouteRef::Compiled { vhost, index, .. } => {
                vhost.routes.get(*index as usize).is_some_and(|r| {
                    let sends = match &r.action {
                        RouteAction::Forward(fw) => fw.destinations.iter().any(|d| f(&d.host)),
                        _ => false,
                    };
                    sends || r.policy.mirrors.iter().any(|m| f(&m.destination.host))
                })
            }
            RouteRef::Given(r) => {
                r.destinations.iter().any(|d| f(&d.service))
                    || r.mirrors.iter().any(|m| f(&m.service))
            }
        }
    }

    /// The route as `/api/graph` lists it.
    pub fn view(&self) -> ConfiguredRoute {
        match self {
            RouteRef::Compiled {
                source,
                vhost,
                index,
            } => {
                let route = vhost.routes.get(*index as usize);
                let destinations = match route.map(|r| &r.action) {
                    Some(RouteAction::Forward(f)) => f
                        .destinations
                        .iter()
                        .map(|d| ConfiguredDestination {
                            service: Arc::clone(&d.host),
                            subset: d.subset.clone(),
                            weight: d.weight,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let mirrors = route.map_or_else(Vec::new, |r| {
                    r.policy
                        .mirrors
                        .iter()
                        .map(|m| ConfiguredMirror {
                            service: Arc::clone(&m.destination.host),
                            subset: m.destination.subset.clone(),
                            percentage: m.percentage,
                        })
                        .collect()
                });
                ConfiguredRoute {
                    source: Arc::clone(source),
                    virtual_host: Arc::from(vhost.name.as_str()),
                    route: route.map(|r| r.name.clone()).unwrap_or_default(),
                    destinations,
                    mirrors,
                }
            }
            RouteRef::Given(r) => (**r).clone(),
        }
    }

    /// The virtual host this reads from, when it reads from one.
    fn vhost_key(&self) -> Option<usize> {
        match self {
            RouteRef::Compiled { vhost, .. } => Some(Arc::as_ptr(vhost) as usize),
            RouteRef::Given(_) => None,
        }
    }
}

/// The configured routes of each virtual host a reload published, kept for the next: the
/// ordered list is patched (routes of virtual hosts gone out, new ones put in place) rather
/// than sorted again, which at 60,000 routes would cost more than the edit it follows.
#[derive(Debug, Default)]
pub struct RouteCache {
    /// The last list given, in (source, virtual host, route) order. Its routes keep their
    /// virtual hosts alive, so an address read from it names the same virtual host until
    /// the list is replaced. (A map of every virtual host kept beside it held 2.6 MB at
    /// 10,000 services.)
    sorted: Arc<[RouteRef]>,
}

/// [`configured_routes`] as the graph keeps them, taking from `cache` what it holds and
/// leaving in it this snapshot's.
pub fn configured_routes_cached(snapshot: &Snapshot, cache: &mut RouteCache) -> Arc<[RouteRef]> {
    type Fast = foldhash::fast::RandomState;
    // The virtual hosts listed before, by address, with the source they were seen from.
    let mut before: HashMap<usize, &Arc<str>, Fast> = HashMap::default();
    for r in cache.sorted.iter() {
        if let RouteRef::Compiled { source, vhost, .. } = r {
            before.insert(Arc::as_ptr(vhost) as usize, source);
        }
    }
    let mut fresh = Vec::new();
    let mut now: HashMap<usize, Arc<str>, Fast> = HashMap::default();
    now.reserve(before.len());
    for l in &snapshot.listeners {
        let source: Arc<str> = listener_source(l).into();
        let vhosts = l
            .virtual_hosts
            .vhosts
            .iter()
            .chain(l.default_virtual_host.iter());
        for vh in vhosts {
            let key = Arc::as_ptr(vh) as usize;
            match now.get(&key) {
                // Listed again (one table serves several mesh addresses): counted once.
                Some(seen) if **seen == *source => continue,
                // One virtual host seen from two sources: not what a cache by virtual host
                // holds; every route is listed afresh (and the cache starts over).
                Some(_) => {
                    drop(before);
                    cache.sorted = Arc::new([]);
                    return every_route(snapshot).into();
                }
                None => {}
            }
            now.insert(key, Arc::clone(&source));
            // Listed before from the same source: its routes are in the list already. (A
            // virtual host with no weighted route is never there, and is listed afresh, with
            // nothing to list.)
            if before.get(&key).is_none_or(|s| ***s != *source) {
                push_vhost_routes(&mut fresh, &source, vh);
            }
        }
    }
    let gone: HashSet<usize, Fast> = before
        .iter()
        .filter(|(key, source)| now.get(*key).is_none_or(|s| **s != ****source))
        .map(|(key, _)| *key)
        .collect();
    drop(now);
    drop(before);
    if fresh.is_empty() && gone.is_empty() {
        return Arc::clone(&cache.sorted);
    }
    let old: Vec<&RouteRef> = cache
        .sorted
        .iter()
        .filter(|r| r.vhost_key().is_none_or(|k| !gone.contains(&k)))
        .collect();
    fresh.sort_by(|a, b| a.group().cmp(&b.group()));
    // Each new route goes where it belongs: a binary search, not a comparison per route kept.
    let mut out: Vec<RouteRef> = Vec::with_capacity(old.len() + fresh.len());
    let mut from = 0;
    for r in fresh {
        let at = from + old[from..].partition_point(|o| o.group() <= r.group());
        out.extend(old[from..at].iter().map(|o| (*o).clone()));
        out.push(r);
        from = at;
    }
    out.extend(old[from..].iter().map(|o| (*o).clone()));
    // One route per identity (the earlier kept).
    out.dedup_by(|later, first| later.same(first) || later.group() == first.group());
    cache.sorted = out.into();
    Arc::clone(&cache.sorted)
}

/// Every weighted route of `snapshot`, in (source, virtual host, route) order; of routes with
/// one identity the first listed stays.
fn every_route(snapshot: &Snapshot) -> Vec<RouteRef> {
    let mut out = Vec::new();
    for l in &snapshot.listeners {
        let source: Arc<str> = listener_source(l).into();
        let vhosts = l
            .virtual_hosts
            .vhosts
            .iter()
            .chain(l.default_virtual_host.iter());
        for vh in vhosts {
            push_vhost_routes(&mut out, &source, vh);
        }
    }
    // Stable: the first listed of equal identities stays first, then alone.
    out.sort_by(|a, b| a.group().cmp(&b.group()));
    out.dedup_by(|later, first| later.group() == first.group());
    out
}

/// The weighted routes of one virtual host seen from `source`.
fn push_vhost_routes(out: &mut Vec<RouteRef>, source: &Arc<str>, vh: &Arc<VirtualHost>) {
    for (i, r) in vh.routes.iter().enumerate() {
        let (RouteAction::Forward(_), Ok(index)) = (&r.action, u32::try_from(i)) else {
            continue;
        };
        out.push(RouteRef::Compiled {
            source: Arc::clone(source),
            vhost: Arc::clone(vh),
            index,
        });
    }
}
