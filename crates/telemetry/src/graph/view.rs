//! What `/api/graph` serves: nodes, edges, configured routes; and the configured weights read
//! from a snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use sluice_config::listener::{Listener, ListenerRole};
use sluice_config::route_table::RouteAction;
use sluice_config::vhost::VirtualHost;
use sluice_config::Snapshot;

/// A route's configured destinations, for configured-vs-observed split. One per route of every
/// virtual host (60,000 at 10,000 services), kept for the life of the config: the names are
/// shared with the listener, the virtual host and the route's own destinations.
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
    every_route(snapshot)
        .into_iter()
        .map(Arc::unwrap_or_clone)
        .collect()
}

/// The configured routes of each virtual host a reload published, kept for the next: a
/// virtual host the next snapshot still has (the same `Arc`, kept by an incremental build)
/// keeps its routes rather than having them made again (60,000 at 10,000 services), and the
/// ordered list is patched (routes of virtual hosts gone out, new ones put in place) rather
/// than sorted again.
#[derive(Debug, Default)]
pub struct RouteCache {
    /// By the virtual host's address.
    by_vhost: HashMap<usize, Cached>,
    /// The last list given, in (source, virtual host, route) order.
    sorted: Vec<Arc<ConfiguredRoute>>,
    /// Bumped at each use: entries not seen in the last one are gone.
    generation: u64,
}

/// A virtual host (kept alive so its address names it), the source it was seen from, and its
/// configured routes.
#[derive(Debug)]
struct Cached {
    vhost: Arc<VirtualHost>,
    source: Arc<str>,
    routes: Arc<[Arc<ConfiguredRoute>]>,
    seen: u64,
}

/// [`configured_routes`], shared, taking from `cache` what it holds and leaving in it this
/// snapshot's.
pub fn configured_routes_cached(
    snapshot: &Snapshot,
    cache: &mut RouteCache,
) -> Vec<Arc<ConfiguredRoute>> {
    cache.generation += 1;
    let generation = cache.generation;
    let mut fresh = Vec::new();
    let mut gone = HashSet::new();
    for l in &snapshot.listeners {
        let source: Arc<str> = listener_source(l).into();
        let vhosts = l
            .virtual_hosts
            .vhosts
            .iter()
            .chain(l.default_virtual_host.iter());
        for vh in vhosts {
            let key = Arc::as_ptr(vh) as usize;
            match cache.by_vhost.get_mut(&key) {
                // Listed again (one table serves several mesh addresses): counted once.
                Some(c) if c.seen == generation && *c.source == *source => {}
                // One virtual host seen from two sources: not what a cache by virtual host
                // holds; every route is made afresh (and the cache starts over).
                Some(c) if c.seen == generation => {
                    *cache = RouteCache::default();
                    return every_route(snapshot);
                }
                Some(c) if *c.source == *source && Arc::ptr_eq(&c.vhost, vh) => {
                    c.seen = generation;
                }
                found => {
                    if let Some(other) = found {
                        gone.extend(other.routes.iter().map(|r| Arc::as_ptr(r) as usize));
                    }
                    let routes = vhost_routes(&source, vh);
                    fresh.extend(routes.iter().cloned());
                    let cached = Cached {
                        vhost: Arc::clone(vh),
                        source: Arc::clone(&source),
                        routes,
                        seen: generation,
                    };
                    cache.by_vhost.insert(key, cached);
                }
            }
        }
    }
    cache.by_vhost.retain(|_, c| {
        if c.seen != generation {
            gone.extend(c.routes.iter().map(|r| Arc::as_ptr(r) as usize));
        }
        c.seen == generation
    });
    let mut old = std::mem::take(&mut cache.sorted);
    if !gone.is_empty() {
        old.retain(|r| !gone.contains(&(Arc::as_ptr(r) as usize)));
    }
    fresh.sort_by(|a, b| group(a).cmp(&group(b)));
    // Each new route goes where it belongs: a binary search, not a comparison per route kept.
    let mut out = Vec::with_capacity(old.len() + fresh.len());
    let mut from = 0;
    for r in fresh {
        let at = from + old[from..].partition_point(|o| group(o) <= group(&r));
        out.extend_from_slice(&old[from..at]);
        out.push(r);
        from = at;
    }
    out.extend_from_slice(&old[from..]);
    // One route per identity (the earlier kept); the route name differs first.
    out.dedup_by(|later, first| {
        Arc::ptr_eq(later, first)
            || (later.route == first.route
                && later.virtual_host == first.virtual_host
                && later.source == first.source)
    });
    cache.sorted.clone_from(&out);
    out
}

/// Every weighted route of `snapshot`, made afresh, in (source, virtual host, route) order; of
/// routes with one identity the first listed stays.
fn every_route(snapshot: &Snapshot) -> Vec<Arc<ConfiguredRoute>> {
    let mut out: Vec<Arc<ConfiguredRoute>> = Vec::new();
    for l in &snapshot.listeners {
        let source: Arc<str> = listener_source(l).into();
        let vhosts = l
            .virtual_hosts
            .vhosts
            .iter()
            .chain(l.default_virtual_host.iter());
        for vh in vhosts {
            out.extend(vhost_routes(&source, vh).iter().cloned());
        }
    }
    // Stable: the first listed of equal identities stays first, then alone.
    out.sort_by(|a, b| group(a).cmp(&group(b)));
    out.dedup_by(|later, first| group(later) == group(first));
    out
}

/// A route's identity in the graph, borrowed.
pub(super) fn group(r: &ConfiguredRoute) -> (&str, &str, &str) {
    (&r.source, &r.virtual_host, &r.route)
}

/// The weighted routes of one virtual host seen from `source`.
fn vhost_routes(source: &Arc<str>, vh: &VirtualHost) -> Arc<[Arc<ConfiguredRoute>]> {
    let virtual_host: Arc<str> = Arc::from(vh.name.as_str());
    vh.routes
        .iter()
        .filter_map(|r| {
            let RouteAction::Forward(f) = &r.action else {
                return None;
            };
            Some(Arc::new(ConfiguredRoute {
                source: Arc::clone(source),
                virtual_host: Arc::clone(&virtual_host),
                route: r.name.clone(),
                destinations: f
                    .destinations
                    .iter()
                    .map(|d| ConfiguredDestination {
                        service: Arc::clone(&d.host),
                        subset: d.subset.clone(),
                        weight: d.weight,
                    })
                    .collect(),
                mirrors: r
                    .policy
                    .mirrors
                    .iter()
                    .map(|m| ConfiguredMirror {
                        service: Arc::clone(&m.destination.host),
                        subset: m.destination.subset.clone(),
                        percentage: m.percentage,
                    })
                    .collect(),
            }))
        })
        .collect()
}
