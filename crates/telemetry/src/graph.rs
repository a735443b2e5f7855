//! The live traffic graph: a sliding window (default 30 s in 1 s buckets) of edges from a
//! traffic source (gateway or mesh entry) to a destination service subset, with request rate,
//! 5xx share, p50/p99 latency and observed vs configured split.
//!
//! Cost of one record: an FxHash of the edge's names, a lock-free map lookup, then one mutex per
//! edge (uncontended unless many cores hit the same edge in the same instant) guarding a
//! counter pair and one latency bin. Latency bins split every power of two of microseconds
//! into 4 (≤ 12.5 % relative error on percentiles).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use serde::Serialize;
use sluice_config::listener::{Listener, ListenerRole};
use sluice_config::route_table::RouteAction;
use sluice_config::Snapshot;
use tokio::sync::watch;

use crate::access_log::rfc3339_millis;
use crate::cache::{CowMap, FxHasher};
use crate::labels::PeerLabels;

/// The default window.
pub const DEFAULT_WINDOW_SECS: u64 = 30;

const BINS: usize = 128;

/// The names identifying an edge; the proxy passes them at record time.
#[derive(Debug, Clone, Copy)]
pub struct EdgeKey<'a> {
    /// The traffic source node ([`listener_source`] of the listener the request came in on).
    pub source: &'a str,
    /// Virtual host name.
    pub virtual_host: &'a str,
    /// Route name.
    pub route: &'a str,
    /// Destination service host.
    pub service: &'a str,
    /// Destination subset.
    pub subset: Option<&'a str>,
    /// A mirror copy (not part of the split).
    pub mirror: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OwnedKey {
    source: String,
    virtual_host: String,
    route: String,
    service: String,
    subset: Option<String>,
    mirror: bool,
}

impl OwnedKey {
    fn of(k: &EdgeKey<'_>) -> OwnedKey {
        OwnedKey {
            source: k.source.to_string(),
            virtual_host: k.virtual_host.to_string(),
            route: k.route.to_string(),
            service: k.service.to_string(),
            subset: k.subset.map(str::to_string),
            mirror: k.mirror,
        }
    }

    fn matches(&self, k: &EdgeKey<'_>) -> bool {
        self.mirror == k.mirror
            && self.service == k.service
            && self.subset.as_deref() == k.subset
            && self.route == k.route
            && self.virtual_host == k.virtual_host
            && self.source == k.source
    }

    fn group(&self) -> (&str, &str, &str) {
        (&self.source, &self.virtual_host, &self.route)
    }
}

fn edge_hash(k: &EdgeKey<'_>) -> u64 {
    use std::hash::Hasher;
    let mut h = FxHasher::default();
    h.write_str_sampled(k.source);
    h.write_str_sampled(k.virtual_host);
    h.write_str_sampled(k.route);
    h.write_str_sampled(k.service);
    h.write_str_sampled(k.subset.unwrap_or("\0"));
    h.write_u8(u8::from(k.mirror));
    h.finish()
}

/// Latency bin of a duration: 4 bins per power of two of microseconds.
fn bin_of(d: Duration) -> usize {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
    let e = 63 - us.leading_zeros() as usize;
    let frac = if e >= 2 {
        (us >> (e - 2)) & 3
    } else {
        (us << (2 - e)) & 3
    } as usize;
    (4 * e + frac).min(BINS - 1)
}

/// Midpoint of a bin, in milliseconds.
fn bin_mid_ms(bin: usize) -> f64 {
    let e = (bin / 4) as i32;
    let frac = (bin % 4) as f64;
    let lower = 2f64.powi(e) * (1.0 + frac / 4.0);
    let upper = 2f64.powi(e) * (1.0 + (frac + 1.0) / 4.0);
    (lower + upper) / 2.0 / 1000.0
}

#[derive(Clone)]
struct Bucket {
    sec: u64,
    requests: u64,
    errors: u64,
    latency: [u32; BINS],
}

impl Bucket {
    fn empty() -> Bucket {
        Bucket {
            sec: 0,
            requests: 0,
            errors: 0,
            latency: [0; BINS],
        }
    }
}

struct EdgeState {
    buckets: Vec<Bucket>,
    first_sec: u64,
    last_peer: u32,
    version: Option<String>,
    workloads: BTreeSet<String>,
}

/// One edge's window; keep the `Arc` to record without the map lookup.
pub struct Edge {
    key: OwnedKey,
    window: u64,
    state: Mutex<EdgeState>,
    /// The route split counter of this edge's destination, resolved once (saves a lookup).
    split: OnceLock<Counter>,
}

impl std::fmt::Debug for Edge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edge").field("key", &self.key).finish()
    }
}

/// At most this many workload names are listed per destination node.
const MAX_WORKLOADS: usize = 16;

impl Edge {
    fn new(key: OwnedKey, window: u64) -> Edge {
        Edge {
            key,
            window,
            split: OnceLock::new(),
            state: Mutex::new(EdgeState {
                buckets: vec![Bucket::empty(); usize::try_from(window).unwrap_or(1)],
                first_sec: u64::MAX,
                last_peer: 0,
                version: None,
                workloads: BTreeSet::new(),
            }),
        }
    }

    /// The split counter attached to this edge, made by `make` on first use.
    pub(crate) fn split_counter(&self, make: impl FnOnce() -> Counter) -> &Counter {
        self.split.get_or_init(make)
    }

    /// Records one request now.
    pub fn record(&self, destination: Option<&PeerLabels>, status: u16, duration: Duration) {
        self.record_at(now_secs(), destination, status, duration);
    }

    /// Records one request at `now_secs` (Unix seconds).
    pub fn record_at(
        &self,
        now_secs: u64,
        destination: Option<&PeerLabels>,
        status: u16,
        duration: Duration,
    ) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let idx = usize::try_from(now_secs % self.window).unwrap_or(0);
        let Some(b) = st.buckets.get_mut(idx) else {
            return;
        };
        if b.sec != now_secs {
            if b.sec > now_secs {
                // The clock went back past this slot's data: too old to count.
                return;
            }
            *b = Bucket::empty();
            b.sec = now_secs;
        }
        b.requests += 1;
        if status >= 500 {
            b.errors += 1;
        }
        if let Some(bin) = b.latency.get_mut(bin_of(duration)) {
            *bin = bin.saturating_add(1);
        }
        st.first_sec = st.first_sec.min(now_secs);
        if let Some(p) = destination {
            // Compare interned ids so the common case (same endpoint as last time) is free.
            if p.id() != st.last_peer {
                st.last_peer = p.id();
                if st.version.as_deref() != Some(p.canonical_revision.as_str()) {
                    st.version = Some(p.canonical_revision.clone());
                }
                if st.workloads.len() < MAX_WORKLOADS && !st.workloads.contains(&p.workload) {
                    st.workloads.insert(p.workload.clone());
                }
            }
        }
    }

    fn stats_at(&self, now_secs: u64) -> EdgeStats {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut s = EdgeStats {
            version: st.version.clone(),
            workloads: st.workloads.iter().cloned().collect(),
            ..Default::default()
        };
        let mut bins = [0u64; BINS];
        for b in st
            .buckets
            .iter()
            .filter(|b| b.sec <= now_secs && b.sec + self.window > now_secs && b.requests > 0)
        {
            s.requests += b.requests;
            s.errors += b.errors;
            for (acc, n) in bins.iter_mut().zip(b.latency.iter()) {
                *acc += u64::from(*n);
            }
        }
        if st.first_sec <= now_secs {
            s.elapsed = (now_secs - st.first_sec + 1).min(self.window);
        }
        s.p50_ms = percentile(&bins, s.requests, 0.50);
        s.p99_ms = percentile(&bins, s.requests, 0.99);
        s
    }
}

fn percentile(bins: &[u64; BINS], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).max(1);
    let mut seen = 0;
    for (i, n) in bins.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bin_mid_ms(i));
        }
    }
    None
}

#[derive(Default)]
struct EdgeStats {
    requests: u64,
    errors: u64,
    /// Seconds of the window the edge has existed for (the rate's denominator).
    elapsed: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    version: Option<String>,
    workloads: Vec<String>,
}

/// A route's configured destinations, for configured-vs-observed split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredRoute {
    /// Source node (see [`listener_source`]).
    pub source: String,
    /// Virtual host name.
    pub virtual_host: String,
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
    pub service: String,
    /// Subset.
    pub subset: Option<String>,
    /// Weight.
    pub weight: u32,
}

/// One mirror target of a route.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfiguredMirror {
    /// Service host.
    pub service: String,
    /// Subset.
    pub subset: Option<String>,
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
}

struct Feed {
    tx: watch::Sender<Arc<str>>,
    ticker: tokio::task::JoinHandle<()>,
}

/// The graph aggregator.
pub struct Graph {
    window: u64,
    edges: CowMap<OwnedKey, Arc<Edge>>,
    config: arc_swap::ArcSwap<(Option<u64>, Vec<ConfiguredRoute>)>,
    feed: Mutex<Option<Feed>>,
}

impl std::fmt::Debug for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Graph")
            .field("window", &self.window)
            .finish()
    }
}

impl Default for Graph {
    fn default() -> Self {
        Graph::new(DEFAULT_WINDOW_SECS)
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn node_id_version(service: &str, subset: Option<&str>) -> String {
    format!("version:{service}|{}", subset.unwrap_or(""))
}

impl Graph {
    /// A graph over a window of `window_secs` 1-second buckets (at least 1).
    pub fn new(window_secs: u64) -> Graph {
        Graph {
            window: window_secs.max(1),
            edges: CowMap::default(),
            config: arc_swap::ArcSwap::from_pointee((None, Vec::new())),
            feed: Mutex::new(None),
        }
    }

    /// Window length in seconds.
    pub fn window_secs(&self) -> u64 {
        self.window
    }

    /// The edge for `key`, created on first use; keep it to skip the lookup.
    pub fn edge(&self, key: &EdgeKey<'_>) -> Arc<Edge> {
        let hash = edge_hash(key);
        if let Some(e) = self.edges.with(hash, |k| k.matches(key), Arc::clone) {
            return e;
        }
        self.edges.get_or_insert_with(
            hash,
            |k| k.matches(key),
            || {
                let owned = OwnedKey::of(key);
                (owned.clone(), Arc::new(Edge::new(owned, self.window)))
            },
        )
    }

    /// Records one request now.
    #[inline]
    pub fn record(
        &self,
        key: &EdgeKey<'_>,
        destination: Option<&PeerLabels>,
        status: u16,
        duration: Duration,
    ) {
        self.record_at(now_secs(), key, destination, status, duration);
    }

    /// Records one request at `now_secs` (Unix seconds; tests inject time here).
    pub fn record_at(
        &self,
        now_secs: u64,
        key: &EdgeKey<'_>,
        destination: Option<&PeerLabels>,
        status: u16,
        duration: Duration,
    ) {
        self.with_edge(key, |e| {
            e.record_at(now_secs, destination, status, duration);
        });
    }

    /// Runs `f` on the edge for `key` (created on first use) without cloning its `Arc`.
    #[inline]
    pub(crate) fn with_edge<R>(&self, key: &EdgeKey<'_>, f: impl FnOnce(&Edge) -> R) -> R {
        self.edges.find(
            edge_hash(key),
            |k| k.matches(key),
            |e| match e {
                Some(e) => f(e),
                None => f(&self.edge(key)),
            },
        )
    }

    /// Replaces the configured routes (weights and mirrors) of config `version`.
    pub fn set_config(&self, version: Option<u64>, routes: Vec<ConfiguredRoute>) {
        self.config.store(Arc::new((version, routes)));
    }

    /// The graph now.
    pub fn snapshot(&self) -> GraphSnapshot {
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut s = self.snapshot_at(ms / 1000);
        s.generated_at = rfc3339_millis(now);
        s.generated_at_ms = ms;
        s
    }

    /// The graph at `now_secs` (Unix seconds; tests inject time here).
    pub fn snapshot_at(&self, now_secs: u64) -> GraphSnapshot {
        let config = self.config.load_full();
        let (version, routes) = (&config.0, &config.1);
        let mut edges: BTreeMap<OwnedKey, GraphEdge> = BTreeMap::new();
        let mut versions: BTreeMap<String, (Option<String>, BTreeSet<String>)> = BTreeMap::new();
        for e in self.edges.values() {
            let st = e.stats_at(now_secs);
            let target = node_id_version(&e.key.service, e.key.subset.as_deref());
            let v = versions.entry(target.clone()).or_default();
            if v.0.is_none() {
                v.0.clone_from(&st.version);
            }
            v.1.extend(st.workloads.iter().cloned());
            if st.requests == 0 {
                continue;
            }
            edges.insert(e.key.clone(), self.edge_view(&e.key, &st));
        }
        for r in routes {
            let total: u64 = r.destinations.iter().map(|d| u64::from(d.weight)).sum();
            for d in &r.destinations {
                let key = OwnedKey {
                    source: r.source.clone(),
                    virtual_host: r.virtual_host.clone(),
                    route: r.route.clone(),
                    service: d.service.clone(),
                    subset: d.subset.clone(),
                    mirror: false,
                };
                let view = edges
                    .entry(key.clone())
                    .or_insert_with(|| self.edge_view(&key, &EdgeStats::default()));
                view.configured_weight = Some(d.weight);
                view.configured_share = (total > 0).then(|| f64::from(d.weight) / total as f64);
            }
            for m in &r.mirrors {
                let key = OwnedKey {
                    source: r.source.clone(),
                    virtual_host: r.virtual_host.clone(),
                    route: r.route.clone(),
                    service: m.service.clone(),
                    subset: m.subset.clone(),
                    mirror: true,
                };
                let view = edges
                    .entry(key.clone())
                    .or_insert_with(|| self.edge_view(&key, &EdgeStats::default()));
                view.mirror_percentage = Some(m.percentage);
            }
        }
        // Observed share within each (source, vhost, route), mirrors excluded.
        let mut totals: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for (k, e) in edges.iter().filter(|(k, _)| !k.mirror) {
            let (a, b, c) = k.group();
            *totals
                .entry((a.to_string(), b.to_string(), c.to_string()))
                .or_default() += e.requests;
        }
        for (k, e) in edges.iter_mut().filter(|(k, _)| !k.mirror) {
            let (a, b, c) = k.group();
            let total = totals
                .get(&(a.to_string(), b.to_string(), c.to_string()))
                .copied()
                .unwrap_or(0);
            e.observed_share = (total > 0).then(|| e.requests as f64 / total as f64);
        }
        let edges: Vec<GraphEdge> = edges.into_values().collect();
        let nodes = nodes_of(&edges, &versions);
        GraphSnapshot {
            nodes,
            edges,
            routes: routes.clone(),
            window_secs: self.window,
            generated_at: rfc3339_millis(UNIX_EPOCH + Duration::from_secs(now_secs)),
            generated_at_ms: now_secs.saturating_mul(1000),
            config_version: *version,
        }
    }

    fn edge_view(&self, key: &OwnedKey, st: &EdgeStats) -> GraphEdge {
        let target = node_id_version(&key.service, key.subset.as_deref());
        let source = format!("source:{}", key.source);
        GraphEdge {
            id: format!(
                "{source}->{target}@{}/{}{}",
                key.virtual_host,
                key.route,
                if key.mirror { "#mirror" } else { "" }
            ),
            source,
            target,
            virtual_host: key.virtual_host.clone(),
            route: key.route.clone(),
            service: key.service.clone(),
            subset: key.subset.clone(),
            mirror: key.mirror,
            requests: st.requests,
            rps: if st.elapsed > 0 {
                st.requests as f64 / st.elapsed as f64
            } else {
                0.0
            },
            error_rate: if st.requests > 0 {
                st.errors as f64 / st.requests as f64
            } else {
                0.0
            },
            p50_ms: st.p50_ms,
            p99_ms: st.p99_ms,
            observed_share: None,
            configured_weight: None,
            configured_share: None,
            mirror_percentage: None,
        }
    }

    /// The snapshot as JSON.
    pub fn snapshot_json(&self) -> String {
        serde_json::to_string(&self.snapshot()).unwrap_or_else(|_| "{}".into())
    }

    /// A feed of snapshot JSON, refreshed every second while anyone listens.
    ///
    /// One ticker task serves every subscriber (snapshots are computed once per second, not
    /// per client); it starts on the first subscription (inside a tokio runtime) and ends
    /// when the graph is dropped.
    pub fn subscribe(self: &Arc<Self>) -> watch::Receiver<Arc<str>> {
        let mut feed = self.feed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = feed.as_ref().filter(|f| !f.ticker.is_finished()) {
            return f.tx.subscribe();
        }
        let (tx, rx) = watch::channel::<Arc<str>>(Arc::from(self.snapshot_json()));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(self);
            let ticker_tx = tx.clone();
            let ticker = rt.spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(graph) = weak.upgrade() else { break };
                    if ticker_tx.receiver_count() > 0 {
                        ticker_tx.send_replace(Arc::from(graph.snapshot_json()));
                    }
                }
            });
            *feed = Some(Feed { tx, ticker });
        }
        rx
    }
}

fn nodes_of(
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

/// Every weighted route of a snapshot, for [`Graph::set_config`].
pub fn configured_routes(snapshot: &Snapshot) -> Vec<ConfiguredRoute> {
    let mut out: BTreeMap<(String, String, String), ConfiguredRoute> = BTreeMap::new();
    for l in &snapshot.listeners {
        let source = listener_source(l);
        let vhosts = l
            .virtual_hosts
            .vhosts
            .iter()
            .chain(l.default_virtual_host.iter());
        for vh in vhosts {
            for r in &vh.routes {
                let RouteAction::Forward(f) = &r.action else {
                    continue;
                };
                let key = (source.clone(), vh.name.clone(), r.name.clone());
                out.entry(key).or_insert_with(|| ConfiguredRoute {
                    source: source.clone(),
                    virtual_host: vh.name.clone(),
                    route: r.name.clone(),
                    destinations: f
                        .destinations
                        .iter()
                        .map(|d| ConfiguredDestination {
                            service: d.host.clone(),
                            subset: d.subset.clone(),
                            weight: d.weight,
                        })
                        .collect(),
                    mirrors: r
                        .policy
                        .mirrors
                        .iter()
                        .map(|m| ConfiguredMirror {
                            service: m.destination.host.clone(),
                            subset: m.destination.subset.clone(),
                            percentage: m.percentage,
                        })
                        .collect(),
                });
            }
        }
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::labels::WorkloadInfo;

    fn key<'a>(subset: &'a str, mirror: bool) -> EdgeKey<'a> {
        EdgeKey {
            source: "mesh",
            virtual_host: "app-backend.default.svc.cluster.local:9080",
            route: "app-backend.0",
            service: "app-backend.default.svc.cluster.local",
            subset: Some(subset),
            mirror,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn bins_are_monotonic_and_bounded() {
        let mut last = 0;
        for us in [1u64, 2, 3, 5, 8, 100, 1000, 1500, 60_000_000, u64::MAX] {
            let b = bin_of(Duration::from_micros(us));
            assert!(b >= last, "{us}µs");
            last = b;
        }
        assert_eq!(bin_of(Duration::from_secs(1_000_000)), BINS - 1);
        // A bin's midpoint is within 12.5 % of any value in it.
        for us in [7u64, 1000, 1234, 99_999, 3_000_000] {
            let mid = bin_mid_ms(bin_of(Duration::from_micros(us))) * 1000.0;
            assert!((mid / us as f64 - 1.0).abs() <= 0.125, "{us}: {mid}");
        }
    }

    #[test]
    fn window_rates_errors_and_percentiles() {
        let g = Graph::new(30);
        let t0 = 1_000_000;
        let v1 = WorkloadInfo {
            name: Some("app-backend-v1".into()),
            labels: [("version".to_string(), "v1".to_string())].into(),
            ..Default::default()
        }
        .peer_labels();
        // 10 s of traffic: 9 req/s to v1 (1 of them a 503 each second), 1 req/s to v2.
        for s in 0..10 {
            for i in 0..9 {
                let status = if i == 0 { 503 } else { 200 };
                g.record_at(t0 + s, &key("v1", false), Some(&v1), status, ms(10));
            }
            g.record_at(t0 + s, &key("v2", false), None, 200, ms(100));
        }
        let snap = g.snapshot_at(t0 + 9);
        let e1 = snap
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v1"))
            .unwrap();
        let e2 = snap
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v2"))
            .unwrap();
        assert_eq!(e1.requests, 90);
        assert!((e1.rps - 9.0).abs() < 1e-9, "{}", e1.rps);
        assert!((e1.error_rate - 1.0 / 9.0).abs() < 1e-9);
        assert!((e1.observed_share.unwrap() - 0.9).abs() < 1e-9);
        assert!((e2.observed_share.unwrap() - 0.1).abs() < 1e-9);
        let p50 = e1.p50_ms.unwrap();
        assert!((p50 / 10.0 - 1.0).abs() <= 0.125, "p50 {p50}");
        let p99 = e2.p99_ms.unwrap();
        assert!((p99 / 100.0 - 1.0).abs() <= 0.125, "p99 {p99}");
        let node = snap.nodes.iter().find(|n| n.id == e1.target).unwrap();
        assert_eq!(node.version.as_deref(), Some("v1"));
        assert_eq!(node.workloads, vec!["app-backend-v1".to_string()]);
        assert_eq!(snap.window_secs, 30);

        // 25 s later the first 5 s have left the window; rate is over the full 30 s.
        let later = g.snapshot_at(t0 + 34);
        let e1 = later
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v1"))
            .unwrap();
        assert_eq!(e1.requests, 45);
        assert!((e1.rps - 45.0 / 30.0).abs() < 1e-9);
        // Once everything is older than the window, the edge disappears.
        assert!(g.snapshot_at(t0 + 60).edges.is_empty());
    }

    #[test]
    fn slot_reuse_resets_old_bucket() {
        let g = Graph::new(3);
        g.record_at(100, &key("v1", false), None, 200, ms(1));
        // Same slot (100 % 3 == 103 % 3), three seconds later: the old count must not survive.
        g.record_at(103, &key("v1", false), None, 200, ms(1));
        let snap = g.snapshot_at(103);
        assert_eq!(snap.edges[0].requests, 1);
        // A record older than the slot's data is ignored.
        g.record_at(100, &key("v1", false), None, 200, ms(1));
        assert_eq!(g.snapshot_at(103).edges[0].requests, 1);
    }

    #[test]
    fn configured_weights_and_mirrors() {
        let g = Graph::new(30);
        let route = |subset: &str, weight| ConfiguredDestination {
            service: "app-backend.default.svc.cluster.local".into(),
            subset: Some(subset.into()),
            weight,
        };
        g.set_config(
            Some(7),
            vec![ConfiguredRoute {
                source: "mesh".into(),
                virtual_host: "app-backend.default.svc.cluster.local:9080".into(),
                route: "app-backend.0".into(),
                destinations: vec![route("v1", 90), route("v2", 10)],
                mirrors: vec![ConfiguredMirror {
                    service: "app-backend.default.svc.cluster.local".into(),
                    subset: Some("v3".into()),
                    percentage: 50.0,
                }],
            }],
        );
        // No traffic yet: configured edges are there with zero rates.
        let snap = g.snapshot_at(500);
        assert_eq!(snap.config_version, Some(7));
        assert_eq!(snap.edges.len(), 3);
        let v1 = snap
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v1"))
            .unwrap();
        assert_eq!(v1.configured_weight, Some(90));
        assert!((v1.configured_share.unwrap() - 0.9).abs() < 1e-9);
        assert_eq!(v1.observed_share, None);
        assert_eq!(v1.rps, 0.0);
        let mirror = snap.edges.iter().find(|e| e.mirror).unwrap();
        assert_eq!(mirror.mirror_percentage, Some(50.0));
        assert_eq!(mirror.observed_share, None);
        // Mirror traffic does not count in the split.
        g.record_at(500, &key("v1", false), None, 200, ms(1));
        g.record_at(500, &key("v3", true), None, 200, ms(1));
        let snap = g.snapshot_at(500);
        let v1 = snap
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v1"))
            .unwrap();
        assert_eq!(v1.observed_share, Some(1.0));
        let kinds: BTreeSet<&str> = snap.nodes.iter().map(|n| n.kind).collect();
        assert_eq!(kinds, ["service", "source", "version"].into());
        let json = serde_json::to_value(&snap).unwrap();
        assert!(json["nodes"].is_array() && json["edges"].is_array());
        assert_eq!(json["window_secs"], 30);
        assert!(json["generated_at"].is_string());
    }

    #[test]
    fn configured_routes_from_snapshot() {
        let text = include_str!("../tests/fixtures/canary.yaml");
        let parsed = sluice_model::parse_text(text, None);
        let snap = sluice_config::build_snapshot(
            parsed.resources,
            parsed.diagnostics,
            &sluice_config::ProxyConfig::default(),
            &sluice_lb::StateStore::new(),
            3,
        )
        .unwrap();
        let routes = configured_routes(&snap);
        let r = routes
            .iter()
            .find(|r| r.destinations.len() == 2)
            .expect("the 90/10 route");
        assert_eq!(r.source, "mesh");
        let weights: Vec<(Option<&str>, u32)> = r
            .destinations
            .iter()
            .map(|d| (d.subset.as_deref(), d.weight))
            .collect();
        assert_eq!(weights, vec![(Some("v1"), 90), (Some("v2"), 10)]);
    }
}
