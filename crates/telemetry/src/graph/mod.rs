//! The live traffic graph: a sliding window (default 30 s in 1 s buckets) of edges from a
//! traffic source (gateway or mesh entry) to a destination service subset, with request rate,
//! 5xx share, p50/p99 latency and observed vs configured split.
//!
//! Cost of one record: an FxHash of the edge's names, a lock-free map lookup, then one mutex per
//! edge (uncontended unless many cores hit the same edge in the same instant) guarding a
//! counter pair and one latency bin. Latency bins split every power of two of microseconds
//! into 4 (≤ 12.5 % relative error on percentiles).

mod edge;
mod view;
mod window_reset;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::access_log::rfc3339_millis;
use crate::cache::CowMap;
use crate::labels::PeerLabels;

pub use edge::{Edge, EdgeKey};
pub use view::{
    configured_routes, configured_routes_cached, listener_source, ConfiguredDestination,
    ConfiguredMirror, ConfiguredRoute, GraphEdge, GraphNode, GraphSnapshot, RouteCache, RouteRef,
};

use edge::{edge_hash, EdgeStats, OwnedKey};
use view::nodes_of;

/// The default window.
pub const DEFAULT_WINDOW_SECS: u64 = 30;

/// Configured routes the dashboard's feed carries at most (see [`Graph::feed_json`]).
pub const FEED_ROUTES: usize = 200;

struct Feed {
    tx: watch::Sender<Arc<str>>,
    ticker: tokio::task::JoinHandle<()>,
}

/// The graph aggregator.
pub struct Graph {
    window: u64,
    edges: CowMap<OwnedKey, Arc<Edge>>,
    config: arc_swap::ArcSwap<(Option<u64>, Arc<[RouteRef]>)>,
    /// When a reload last reset routes' windows (Unix ms, 0: never).
    reset_ms: std::sync::atomic::AtomicU64,
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
            config: arc_swap::ArcSwap::from_pointee((None, Arc::from([]))),
            reset_ms: std::sync::atomic::AtomicU64::new(0),
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

    /// Replaces the configured routes (weights and mirrors) of config `version`. The windows
    /// of routes whose split changed start over, so their observed share is the new config's.
    pub fn set_config(&self, version: Option<u64>, routes: Vec<ConfiguredRoute>) {
        let mut routes: Vec<RouteRef> = routes
            .into_iter()
            .map(|r| RouteRef::Given(Arc::new(r)))
            .collect();
        routes.sort_by(|a, b| a.group().cmp(&b.group()));
        self.set_config_shared(version, routes.into());
    }

    /// [`Graph::set_config`] with routes in (source, virtual host, route) order, as
    /// [`configured_routes_cached`] gives them.
    pub fn set_config_shared(&self, version: Option<u64>, routes: Arc<[RouteRef]>) {
        let current = Arc::new((version, routes));
        let previous = self.config.swap(Arc::clone(&current));
        // Windows belong to edges. Without any (a proxy just started, a config no request has
        // gone through) there is none to restart, and listing every route as changed took 30 ms
        // of a 10,000-service start-up.
        let edges = self.edges.values();
        if edges.is_empty() {
            return;
        }
        let changed = window_reset::changed_groups(&previous.1, &current.1);
        if changed.is_empty() {
            return;
        }
        let mut any = false;
        for e in edges {
            let (a, b, c) = e.key.group();
            if changed.contains(&(a.to_string(), b.to_string(), c.to_string())) {
                e.reset();
                any = true;
            }
        }
        if any {
            let ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            self.reset_ms
                .store(ms, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// The graph now.
    pub fn snapshot(&self) -> GraphSnapshot {
        self.snapshot_selecting(<[_]>::to_vec)
    }

    /// The graph now with only the configured routes `select` picks (a page, a host's): the
    /// edges configured for the others are not made at all, which at 10,000 services is most
    /// of the work and memory of a snapshot. Edges with traffic are all there.
    pub fn snapshot_selecting(
        &self,
        select: impl FnOnce(&[RouteRef]) -> Vec<RouteRef>,
    ) -> GraphSnapshot {
        let now = SystemTime::now();
        let ms = now
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let mut s = self.snapshot_of(ms / 1000, select);
        s.generated_at = rfc3339_millis(now);
        s.generated_at_ms = ms;
        s
    }

    /// The graph at `now_secs` (Unix seconds; tests inject time here).
    pub fn snapshot_at(&self, now_secs: u64) -> GraphSnapshot {
        self.snapshot_of(now_secs, <[_]>::to_vec)
    }

    fn snapshot_of(
        &self,
        now_secs: u64,
        select: impl FnOnce(&[RouteRef]) -> Vec<RouteRef>,
    ) -> GraphSnapshot {
        let config = self.config.load_full();
        let version = &config.0;
        let routes: Vec<ConfiguredRoute> = select(&config.1).iter().map(RouteRef::view).collect();
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
        for r in &routes {
            let total: u64 = r.destinations.iter().map(|d| u64::from(d.weight)).sum();
            for d in &r.destinations {
                let key = OwnedKey {
                    source: r.source.to_string(),
                    virtual_host: r.virtual_host.to_string(),
                    route: r.route.clone(),
                    service: d.service.to_string(),
                    subset: d.subset.as_deref().map(str::to_string),
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
                    source: r.source.to_string(),
                    virtual_host: r.virtual_host.to_string(),
                    route: r.route.clone(),
                    service: m.service.to_string(),
                    subset: m.subset.as_deref().map(str::to_string),
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
            routes,
            window_secs: self.window,
            generated_at: rfc3339_millis(UNIX_EPOCH + Duration::from_secs(now_secs)),
            generated_at_ms: now_secs.saturating_mul(1000),
            config_version: *version,
            window_reset_ms: match self.reset_ms.load(std::sync::atomic::Ordering::Relaxed) {
                0 => None,
                ms => Some(ms),
            },
            routes_total: None,
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

    /// The snapshot the dashboard's feed sends every second: with at most [`FEED_ROUTES`]
    /// configured routes (and their idle edges), every edge with traffic, and the number of
    /// routes left out. At 10,000 services the whole graph is 64 MB of JSON a second.
    pub fn feed_json(&self) -> String {
        let mut total = 0;
        let mut s = self.snapshot_selecting(|routes| {
            total = routes.len();
            routes.iter().take(FEED_ROUTES).cloned().collect()
        });
        if total > FEED_ROUTES {
            s.routes_total = Some(total);
        }
        serde_json::to_string(&s).unwrap_or_else(|_| "{}".into())
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
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return watch::channel::<Arc<str>>(Arc::from(self.feed_json())).1;
        };
        // Empty until the first snapshot: at 10,000 services one takes a good part of a
        // second, so it is made on a blocking thread, never on a runtime worker carrying traffic.
        let (tx, rx) = watch::channel::<Arc<str>>(Arc::from(""));
        let weak = Arc::downgrade(self);
        let ticker_tx = tx.clone();
        let ticker = rt.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(graph) = weak.upgrade() else { break };
                if ticker_tx.receiver_count() > 0 {
                    match tokio::task::spawn_blocking(move || graph.feed_json()).await {
                        Ok(json) => {
                            ticker_tx.send_replace(Arc::from(json));
                        }
                        Err(_) => break,
                    }
                }
            }
        });
        *feed = Some(Feed { tx, ticker });
        rx
    }
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

    /// The dashboard's feed at scale: the first routes with their idle edges, every edge with
    /// traffic, and how many routes were left out; a small graph is sent whole.
    #[test]
    fn the_feed_carries_the_first_routes_and_every_edge_with_traffic() {
        let g = Graph::new(30);
        let route = |i: usize| ConfiguredRoute {
            source: "mesh".into(),
            virtual_host: format!("s{i:04}.example.com:80").into(),
            route: "default".into(),
            destinations: vec![ConfiguredDestination {
                service: format!("s{i:04}.example.com").into(),
                subset: None,
                weight: 100,
            }],
            mirrors: Vec::new(),
        };
        let n = FEED_ROUTES + 50;
        g.set_config(Some(1), (0..n).map(route).collect());
        // Traffic on the last route, beyond the first page.
        let last = format!("s{:04}.example.com", n - 1);
        let vhost = format!("{last}:80");
        let key = EdgeKey {
            source: "mesh",
            virtual_host: &vhost,
            route: "default",
            service: &last,
            subset: None,
            mirror: false,
        };
        g.record(&key, None, 200, ms(3));
        let feed: serde_json::Value = serde_json::from_str(&g.feed_json()).unwrap();
        assert_eq!(feed["routes"].as_array().unwrap().len(), FEED_ROUTES);
        assert_eq!(feed["routes_total"].as_u64(), Some(n as u64));
        let edges = feed["edges"].as_array().unwrap();
        assert_eq!(edges.len(), FEED_ROUTES + 1);
        assert!(edges.iter().any(|e| e["service"] == last.as_str()));
        // The whole snapshot is unchanged, and a small graph's feed is the whole graph.
        assert_eq!(g.snapshot().edges.len(), n);
        g.set_config(Some(2), (0..3).map(route).collect());
        let small: serde_json::Value = serde_json::from_str(&g.feed_json()).unwrap();
        assert_eq!(small["routes"].as_array().unwrap().len(), 3);
        assert!(small.get("routes_total").is_none());
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
    fn a_reload_that_changes_the_split_restarts_the_observed_share() {
        let g = Graph::new(30);
        let route = |weights: &[(&str, u32)]| ConfiguredRoute {
            source: "mesh".into(),
            virtual_host: "app-backend.default.svc.cluster.local:9080".into(),
            route: "app-backend.0".into(),
            destinations: weights
                .iter()
                .map(|(s, w)| ConfiguredDestination {
                    service: "app-backend.default.svc.cluster.local".into(),
                    subset: Some((*s).into()),
                    weight: *w,
                })
                .collect(),
            mirrors: Vec::new(),
        };
        g.set_config(Some(1), vec![route(&[("v1", 90), ("v2", 10)])]);
        let t0 = now_secs();
        for i in 0..100 {
            let subset = if i % 10 == 0 { "v2" } else { "v1" };
            g.record_at(t0, &key(subset, false), None, 200, ms(1));
        }
        // A reload with the same split keeps the window.
        g.set_config(Some(2), vec![route(&[("v1", 90), ("v2", 10)])]);
        assert_eq!(g.snapshot_at(t0).window_reset_ms, None);
        let share = |snap: &GraphSnapshot, subset: &str| {
            snap.edges
                .iter()
                .find(|e| e.subset.as_deref() == Some(subset))
                .and_then(|e| e.observed_share)
        };
        assert_eq!(share(&g.snapshot_at(t0), "v2"), Some(0.1));
        // 50/50: only requests sent under the new weights count, within the same second too.
        g.set_config(Some(3), vec![route(&[("v1", 50), ("v2", 50)])]);
        let snap = g.snapshot_at(t0);
        assert!(snap.window_reset_ms.is_some());
        assert_eq!(share(&snap, "v1"), None);
        for i in 0..10 {
            let subset = if i % 2 == 0 { "v2" } else { "v1" };
            g.record_at(t0, &key(subset, false), None, 200, ms(1));
        }
        let snap = g.snapshot_at(t0);
        assert_eq!(share(&snap, "v1"), Some(0.5));
        assert_eq!(share(&snap, "v2"), Some(0.5));
        let v1 = snap
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some("v1"))
            .unwrap();
        assert_eq!(v1.requests, 5);
        let json = serde_json::to_value(&snap).unwrap();
        assert!(json["window_reset_ms"].is_u64());
    }

    #[test]
    fn configured_routes_from_snapshot() {
        let text = include_str!("../../tests/fixtures/canary.yaml");
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
        assert_eq!(&*r.source, "mesh");
        let weights: Vec<(Option<&str>, u32)> = r
            .destinations
            .iter()
            .map(|d| (d.subset.as_deref(), d.weight))
            .collect();
        assert_eq!(weights, vec![(Some("v1"), 90), (Some("v2"), 10)]);
    }

    fn two_services(weight: u32) -> String {
        let mut text = String::new();
        for name in ["a", "b"] {
            let w = if name == "a" { weight } else { 90 };
            text.push_str(&format!(
                "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  ports: [{{number: 9080, name: http, protocol: HTTP}}]\n  resolution: STATIC\n  endpoints: [{{address: 10.0.0.1, labels: {{version: v1}}}}, {{address: 10.0.0.2, labels: {{version: v2}}}}]\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\nspec:\n  host: {name}.default.svc.cluster.local\n  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]\n---\n\
                 apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\nspec:\n  hosts: [{name}.default.svc.cluster.local]\n  http:\n  - route:\n    - {{destination: {{host: {name}.default.svc.cluster.local, subset: v1}}, weight: {w}}}\n    - {{destination: {{host: {name}.default.svc.cluster.local, subset: v2}}, weight: {}}}\n---\n",
                100 - w
            ));
        }
        text
    }

    /// A virtual host an incremental build kept keeps its configured routes (read from it);
    /// the routes of the edited one are made again, and the whole equals a fresh reading.
    #[test]
    fn configured_routes_of_kept_virtual_hosts_are_kept() {
        use sluice_config::{build_snapshot_unless, BuildInputs, ProxyConfig};
        let objects = |weight| -> Vec<Arc<sluice_model::Resource>> {
            let parsed = sluice_model::parse_text(&two_services(weight), None);
            parsed.resources.into_iter().map(Arc::new).collect()
        };
        let state = sluice_lb::StateStore::new();
        let proxy = ProxyConfig::default();
        let first = build_snapshot_unless(
            objects(90),
            Vec::new(),
            &proxy,
            &state,
            1,
            &BuildInputs::default(),
            &|| false,
        )
        .unwrap_or_else(|_| panic!("first build"));
        let mut cache = RouteCache::default();
        let before = configured_routes_cached(&first, &mut cache);
        // `b` keeps its objects; `a` is edited.
        let mut edited = objects(50);
        let kept: Vec<Arc<sluice_model::Resource>> = first.resources.iter().cloned().collect();
        for (slot, old) in edited.iter_mut().zip(&kept) {
            if old.metadata.name == "b" {
                *slot = Arc::clone(old);
            }
        }
        let next = |objects, previous: &sluice_config::Snapshot| {
            let inputs = BuildInputs {
                previous: Some(previous),
                ..BuildInputs::default()
            };
            let version = previous.version + 1;
            build_snapshot_unless(
                objects,
                Vec::new(),
                &proxy,
                &state,
                version,
                &inputs,
                &|| false,
            )
            .unwrap_or_else(|_| panic!("build {version}"))
        };
        let second = next(edited, &first);
        let after = configured_routes_cached(&second, &mut cache);
        let fresh = configured_routes(&second);
        assert_eq!(after.iter().map(RouteRef::view).collect::<Vec<_>>(), fresh);
        let same = |vh: &str| {
            let find =
                |list: &[RouteRef]| list.iter().find(|r| r.group().1.starts_with(vh)).cloned();
            match (find(&before), find(&after)) {
                (Some(x), Some(y)) => x.same(&y),
                _ => panic!("no route for {vh}"),
            }
        };
        assert!(
            same("b.default"),
            "b's virtual host was kept: so are its routes"
        );
        assert!(!same("a.default"), "a was edited");
        let weights: Vec<u32> = after
            .iter()
            .map(RouteRef::view)
            .find(|r| r.virtual_host.starts_with("a.default"))
            .map(|r| r.destinations.iter().map(|d| d.weight).collect())
            .unwrap_or_default();
        assert_eq!(weights, [50, 50]);
        // `b` deleted: its routes leave the list, `a`'s stay as they were.
        let without_b: Vec<Arc<sluice_model::Resource>> = second
            .resources
            .iter()
            .filter(|r| r.metadata.name != "b")
            .cloned()
            .collect();
        let third = next(without_b, &second);
        let last = configured_routes_cached(&third, &mut cache);
        assert_eq!(
            last.iter().map(RouteRef::view).collect::<Vec<_>>(),
            configured_routes(&third)
        );
        assert!(last.iter().all(|r| !r.group().1.starts_with("b.default")));
        let a = |list: &[RouteRef]| {
            list.iter()
                .find(|r| r.group().1.starts_with("a.default"))
                .cloned()
        };
        assert!(matches!((a(&after), a(&last)), (Some(x), Some(y)) if x.same(&y)));
    }
}
