//! Telemetry for sluice: Istio's standard Prometheus metrics, sluice's own metrics, the access
//! log and the live traffic graph.
//!
//! One [`Telemetry`] per process, shared by the proxy (which records) and the admin server
//! (which reads). The runtime calls [`Telemetry::on_snapshot`] for every published snapshot so
//! that per-endpoint labels, the config version and the configured weights are computed once
//! per snapshot, never per request.

pub mod access_log;
mod cache;
pub mod canary;
pub mod graph;
pub mod histogram;
pub mod labels;
pub mod metrics;
pub mod proxy_metrics;
pub mod trace;

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::io;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use sluice_config::cluster::{Cluster, UpstreamEndpoint};
use sluice_config::cluster_map::ClusterMap;
use sluice_config::registry::Endpoint;
use sluice_config::{ProxyConfig, Snapshot};

pub use access_log::{
    AccessLog, AccessLogConfig, AccessLogEntry, AccessLogFormat, AccessLogTarget, LogText,
    TextField,
};
pub use graph::{listener_source, EdgeKey, Graph, GraphSnapshot};
pub use labels::{PeerLabels, ServiceLabels, WorkloadInfo, UNKNOWN};
pub use metrics::{
    IstioMetrics, Reporter, RequestProtocol, RequestRecord, SecurityPolicy, TcpRecord, TcpSeries,
};
pub use proxy_metrics::{ClusterMetrics, InFlight, ProxyMetrics};

use crate::cache::FxHasher;

/// Content type of the OpenMetrics exposition (what Prometheus asks for first).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Content type of the classic Prometheus text exposition.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Telemetry settings.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Access log.
    pub access_log: AccessLogConfig,
    /// Graph window in seconds.
    pub graph_window_secs: u64,
    /// This proxy's workload name (`source_workload`); defaults to its `app` label, else `sluice`.
    pub workload_name: Option<String>,
    /// Cluster ID reported for this proxy and its endpoints (`Kubernetes` by default).
    pub cluster_id: Option<String>,
    /// Span export (off when `None`; trace headers then pass through untouched).
    pub tracing: Option<trace::TracingConfig>,
    /// Per-request metrics and the traffic graph (on by default).
    pub request_metrics: bool,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            access_log: AccessLogConfig::default(),
            graph_window_secs: graph::DEFAULT_WINDOW_SECS,
            workload_name: None,
            cluster_id: None,
            tracing: None,
            request_metrics: true,
        }
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// This proxy's labels and those resolved for the endpoints and services of the current and
/// previous snapshots (one `ArcSwap` load per request gets all of them).
struct DestinationTable {
    /// This proxy (`source_*`).
    local: Arc<PeerLabels>,
    /// By `Arc::as_ptr` of the registry endpoint; the `Arc` is kept so the address stays unique.
    endpoints: FxMap<usize, (Arc<Endpoint>, Arc<PeerLabels>)>,
    /// By service host.
    services: FxMap<String, Arc<ServiceLabels>>,
    /// The snapshot cluster map this table was made for.
    clusters: Weak<ClusterMap>,
}

/// A finished request, as the proxy reports it once (metrics, graph and split counter).
#[derive(Debug, Clone, Copy)]
pub struct CompletedRequest<'a> {
    /// Who reports (`Source` for sluice's gateway and outbound roles).
    pub reporter: Reporter,
    /// Graph source node: [`listener_source`] of the listener (cache it per connection).
    pub source_node: &'a str,
    /// The matched virtual host (`None` for `404 NR`).
    pub virtual_host: Option<&'a str>,
    /// The matched route name.
    pub route: Option<&'a str>,
    /// The cluster the request went to (`None` for `NR`, `NC`, redirects, direct responses).
    pub cluster: Option<&'a Cluster>,
    /// The endpoint it went to (`None` for `UH` or when none was picked).
    pub endpoint: Option<&'a UpstreamEndpoint>,
    /// `http` or `grpc`.
    pub protocol: RequestProtocol,
    /// Status sent downstream; 0 when none.
    pub response_code: u16,
    /// gRPC status for gRPC requests.
    pub grpc_status: Option<u32>,
    /// Envoy response flags (empty or `-` when none).
    pub response_flags: &'a str,
    /// Request start to response complete.
    pub duration: Duration,
    /// Bytes received from downstream.
    pub request_bytes: u64,
    /// Bytes sent downstream.
    pub response_bytes: u64,
    /// A mirror copy: only the graph's mirror edge is recorded (Istio's request metrics count
    /// downstream requests; the mirror's own counters are in [`ClusterMetrics`]).
    pub mirror: bool,
    /// Server side over mesh mTLS: the client's labels (its principal) and this proxy's own
    /// with its principal; `connection_security_policy` is then `mutual_tls`.
    pub mtls: Option<&'a MtlsPeers>,
}

/// Both ends of an mTLS connection as the server side reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtlsPeers {
    /// The client (`source_*`).
    pub client: Arc<PeerLabels>,
    /// This proxy (`destination_*`).
    pub server: Arc<PeerLabels>,
}

/// Everything telemetry: registry, metric handles, access log, graph.
pub struct Telemetry {
    registry: Registry,
    istio: IstioMetrics,
    proxy: ProxyMetrics,
    access_log: AccessLog,
    graph: Arc<Graph>,
    /// The configured routes of the last snapshot, by virtual host (see [`graph::RouteCache`]).
    route_cache: Mutex<graph::RouteCache>,
    destinations: ArcSwap<DestinationTable>,
    workload_name: Option<String>,
    cluster_id: Option<String>,
    tracing: Option<trace::Tracing>,
    request_metrics: bool,
    subset_stats: Arc<canary::SubsetStats>,
    canary: Arc<canary::CanaryMetrics>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("local", &self.destinations.load().local)
            .finish_non_exhaustive()
    }
}

impl Default for Telemetry {
    /// Metrics and graph on, access log off.
    fn default() -> Self {
        let mut registry = Registry::default();
        let istio = IstioMetrics::register(&mut registry);
        let proxy = ProxyMetrics::register(&mut registry);
        let canary = Arc::new(canary::CanaryMetrics::register(&mut registry));
        let access_log = AccessLog::disabled(proxy.access_log_dropped());
        let t = Telemetry {
            registry,
            istio,
            proxy,
            access_log,
            graph: Arc::new(Graph::default()),
            route_cache: Mutex::default(),
            destinations: ArcSwap::from_pointee(DestinationTable {
                local: PeerLabels::unknown(),
                endpoints: FxMap::default(),
                services: FxMap::default(),
                clusters: Weak::new(),
            }),
            workload_name: None,
            cluster_id: None,
            tracing: None,
            request_metrics: true,
            subset_stats: Arc::default(),
            canary,
        };
        t.set_local(&ProxyConfig::default());
        t
    }
}

impl Telemetry {
    /// Builds telemetry; fails when the access-log file cannot be opened or the span exporter
    /// cannot be built.
    pub fn new(config: TelemetryConfig) -> io::Result<Telemetry> {
        let mut t = Telemetry::default();
        if let Some(tc) = &config.tracing {
            t.tracing = Some(trace::Tracing::start(tc).map_err(io::Error::other)?);
        }
        t.access_log = AccessLog::start(&config.access_log, t.proxy.access_log_dropped())?;
        t.graph = Arc::new(Graph::new(config.graph_window_secs));
        t.workload_name = config.workload_name;
        t.cluster_id = config.cluster_id;
        t.request_metrics = config.request_metrics;
        t.set_local(&ProxyConfig::default());
        Ok(t)
    }

    /// Istio's standard metrics.
    pub fn istio(&self) -> &IstioMetrics {
        &self.istio
    }

    /// sluice's own metrics.
    pub fn proxy(&self) -> &ProxyMetrics {
        &self.proxy
    }

    /// The per-subset counters canaries tap.
    pub fn subset_stats(&self) -> &Arc<canary::SubsetStats> {
        &self.subset_stats
    }

    /// The `sluice_canary_*` metrics.
    pub fn canary(&self) -> &Arc<canary::CanaryMetrics> {
        &self.canary
    }

    /// The access log (check [`AccessLog::enabled`] before building an entry).
    pub fn access_log(&self) -> &AccessLog {
        &self.access_log
    }

    /// The tracer, when spans are exported.
    pub fn tracing(&self) -> Option<&trace::Tracing> {
        self.tracing.as_ref()
    }

    /// Exports buffered spans (at shutdown); blocks, so call it from a blocking task.
    pub fn flush_traces(&self) {
        if let Some(t) = &self.tracing {
            t.flush();
        }
    }

    /// The traffic graph.
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// This proxy's own labels (the `source_*` labels of what it reports).
    pub fn local_peer(&self) -> Arc<PeerLabels> {
        self.destinations.load().local.clone()
    }

    /// The labels of an mTLS connection's two ends, for the server side's reports.
    pub fn mtls_peers(&self, client: &str, own: &str) -> MtlsPeers {
        MtlsPeers {
            client: PeerLabels::mesh_client(client),
            server: self.destinations.load().local.with_principal(own),
        }
    }

    fn local_labels(&self, proxy: &ProxyConfig) -> Arc<PeerLabels> {
        let name = self
            .workload_name
            .clone()
            .or_else(|| proxy.labels.get("app").cloned())
            .unwrap_or_else(|| "sluice".to_string());
        WorkloadInfo {
            name: Some(name),
            namespace: Some(proxy.namespace.clone()),
            principal: None,
            cluster: self.cluster_id.clone(),
            labels: proxy.labels.clone(),
        }
        .peer_labels()
    }

    fn set_local(&self, proxy: &ProxyConfig) {
        let current = self.destinations.load_full();
        self.destinations.store(Arc::new(DestinationTable {
            local: self.local_labels(proxy),
            endpoints: current.endpoints.clone(),
            services: current.services.clone(),
            clusters: current.clusters.clone(),
        }));
    }

    /// Applies a published snapshot: config version and accepted count, this proxy's labels,
    /// endpoint and service labels (kept for this and the previous snapshot, so requests still
    /// running on the old one resolve too), and the graph's configured weights. Call it for
    /// every snapshot published, before or after the publish.
    pub fn on_snapshot(&self, snapshot: &Snapshot) {
        self.prepare(snapshot);
        self.applied(snapshot);
    }

    /// What must be ready before `snapshot` serves requests: the labels of its destinations.
    pub fn prepare(&self, snapshot: &Snapshot) {
        let previous = self.destinations.load_full();
        let clusters = Arc::downgrade(&snapshot.clusters);
        // The same cluster map (a build that kept every cluster): the same endpoints and
        // services, and the same proxy (a changed one compiles every cluster afresh).
        if !Weak::ptr_eq(&previous.clusters, &clusters) {
            self.update_destinations(snapshot, &previous, clusters);
        }
    }

    /// What follows once `snapshot` serves requests: the graph's configured routes, then the
    /// version reported as applied (so whoever sees it sees the graph of that version too).
    pub fn applied(&self, snapshot: &Snapshot) {
        let routes = {
            let mut cache = self
                .route_cache
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            graph::configured_routes_cached(snapshot, &mut cache)
        };
        self.graph.set_config_shared(Some(snapshot.version), routes);
        self.proxy.config_applied(snapshot.version);
    }

    /// The destination table for `snapshot`'s clusters, taking what is unchanged from
    /// `previous`.
    fn update_destinations(
        &self,
        snapshot: &Snapshot,
        previous: &DestinationTable,
        clusters: Weak<ClusterMap>,
    ) {
        let mut next = DestinationTable {
            local: self.local_labels(&snapshot.proxy),
            endpoints: FxMap::default(),
            services: FxMap::default(),
            clusters,
        };
        // A cluster kept from the previous build keeps its endpoints (the same `Arc`s) and
        // service: their labels are taken from the previous table, not made again.
        for cluster in snapshot.clusters.values() {
            // Looked up only when labels are made (a kept cluster's are not).
            let namespace = || {
                snapshot
                    .registry
                    .get(&cluster.host)
                    .map(|s| s.namespace.as_str())
            };
            if !next.services.contains_key(&cluster.host) {
                let labels = match previous.services.get(&cluster.host) {
                    Some(known) if known.is_for(&cluster.host, namespace) => Arc::clone(known),
                    _ => ServiceLabels::from_host(&cluster.host, namespace()),
                };
                next.services.insert(cluster.host.clone(), labels);
            }
            for ue in &cluster.endpoints {
                let ptr = Arc::as_ptr(&ue.endpoint) as usize;
                if next.endpoints.contains_key(&ptr) {
                    continue;
                }
                let entry = match previous.endpoints.get(&ptr) {
                    Some(known) if Arc::ptr_eq(&known.0, &ue.endpoint) => known.clone(),
                    _ => (
                        ue.endpoint.clone(),
                        self.endpoint_labels(&ue.endpoint, namespace()),
                    ),
                };
                next.endpoints.insert(ptr, entry);
            }
        }
        // Previous generation: requests that loaded the old snapshot finish against it. An
        // endpoint only this table still holds belongs to no snapshot any more: dropped, or
        // every reload (each DNS answer that changes is one) would add its endpoints for good.
        for (ptr, v) in &previous.endpoints {
            if Arc::strong_count(&v.0) > 1 {
                next.endpoints.entry(*ptr).or_insert_with(|| v.clone());
            }
        }
        for (host, v) in &previous.services {
            if !next.services.contains_key(host) {
                next.services.insert(host.clone(), v.clone());
            }
        }
        self.destinations.store(Arc::new(next));
    }

    /// Counts a rejected reload (`sluice_config_reloads_rejected_total`).
    pub fn on_rejected(&self) {
        self.proxy.config_rejected();
    }

    fn endpoint_labels(&self, e: &Endpoint, namespace: Option<&str>) -> Arc<PeerLabels> {
        WorkloadInfo {
            name: e.workload.clone(),
            namespace: namespace.map(str::to_string),
            principal: None,
            cluster: self.cluster_id.clone(),
            labels: e.labels.clone().into(),
        }
        .peer_labels()
    }

    /// The `destination_service*` and `destination_*` labels for a cluster and endpoint.
    pub fn destination(
        &self,
        cluster: Option<&Cluster>,
        endpoint: Option<&UpstreamEndpoint>,
    ) -> (Arc<ServiceLabels>, Arc<PeerLabels>) {
        let table = self.destinations.load();
        let (service, peer) = self.resolve(&table, cluster, endpoint);
        (service.into_owned(), peer.into_owned())
    }

    /// Borrows from the table when it can: no refcount traffic on the request path.
    fn resolve<'t>(
        &self,
        table: &'t DestinationTable,
        cluster: Option<&Cluster>,
        endpoint: Option<&UpstreamEndpoint>,
    ) -> (Cow<'t, Arc<ServiceLabels>>, Cow<'t, Arc<PeerLabels>>) {
        // Without a cluster the Host header would be Istio's fallback, but it is client-chosen:
        // `unknown` keeps the series count bounded.
        let service = match cluster {
            Some(c) => match table.services.get(&c.host) {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(ServiceLabels::from_host(&c.host, None)),
            },
            None => Cow::Owned(ServiceLabels::unknown()),
        };
        let peer = match endpoint {
            Some(ue) => match table.endpoints.get(&(Arc::as_ptr(&ue.endpoint) as usize)) {
                Some((_, p)) => Cow::Borrowed(p),
                // Not seen in a snapshot yet: interned on the spot (a mutex, rare).
                None => Cow::Owned(self.endpoint_labels(&ue.endpoint, Some(&service.namespace))),
            },
            None => Cow::Owned(PeerLabels::unknown()),
        };
        (service, peer)
    }

    /// Records a finished request: Istio metrics, the graph edge and the split counter.
    pub fn record_request(&self, c: &CompletedRequest<'_>) {
        // Canaries are judged even when request metrics are off.
        if let Some(cluster) = c.cluster {
            if let Some(subset) = cluster.subset.as_deref() {
                self.subset_stats.record(
                    &cluster.host,
                    subset,
                    c.mirror,
                    c.response_code,
                    c.duration,
                );
            }
        }
        if !self.request_metrics {
            return;
        }
        let table = self.destinations.load();
        let (service, peer) = self.resolve(&table, c.cluster, c.endpoint);
        if let (Some(vh), Some(route), Some(cluster)) = (c.virtual_host, c.route, c.cluster) {
            let key = EdgeKey {
                source: c.source_node,
                virtual_host: vh,
                route,
                service: &cluster.host,
                subset: cluster.subset.as_deref(),
                mirror: c.mirror,
            };
            let now = graph::now_secs();
            self.graph.with_edge(&key, |edge| {
                edge.record_at(now, Some(&peer), c.response_code, c.duration);
                if !c.mirror {
                    // The edge keeps its split counter: no second lookup per request.
                    edge.split_counter(|| {
                        self.proxy.split_counter(
                            vh,
                            route,
                            &cluster.host,
                            cluster.subset.as_deref(),
                        )
                    })
                    .inc();
                }
            });
        }
        if c.mirror {
            return;
        }
        // The server side reports itself as the destination; without mTLS peer metadata the
        // caller is unknown, and the connection is plaintext (`none`, not `unknown`).
        let unknown_peer;
        let (source, destination, security_policy) = match (c.reporter, c.mtls) {
            (Reporter::Destination, Some(m)) => (&m.client, &m.server, SecurityPolicy::MutualTls),
            (Reporter::Destination, None) => {
                unknown_peer = PeerLabels::unknown();
                (&unknown_peer, &table.local, SecurityPolicy::None)
            }
            (Reporter::Source | Reporter::Waypoint, _) => {
                (&table.local, &*peer, SecurityPolicy::Unknown)
            }
        };
        self.istio.record(&RequestRecord {
            reporter: c.reporter,
            source,
            destination,
            service: &service,
            protocol: c.protocol,
            response_code: c.response_code,
            grpc_status: c.grpc_status,
            response_flags: c.response_flags,
            security_policy,
            duration: c.duration,
            request_bytes: c.request_bytes,
            response_bytes: c.response_bytes,
        });
    }

    /// The `istio_tcp_*` handles of a connection this proxy relays to `endpoint` of `cluster`
    /// (reported as the source side, as Istio's gateways and sidecars do); `None` when request
    /// metrics are off.
    pub fn tcp_series(
        &self,
        cluster: &Cluster,
        endpoint: Option<&UpstreamEndpoint>,
    ) -> Option<TcpSeries> {
        if !self.request_metrics {
            return None;
        }
        let table = self.destinations.load();
        let (service, peer) = self.resolve(&table, Some(cluster), endpoint);
        Some(self.istio.tcp(&TcpRecord {
            reporter: Reporter::Source,
            source: &table.local,
            destination: &peer,
            service: &service,
            response_flags: "-",
            security_policy: SecurityPolicy::Unknown,
        }))
    }

    /// The registry in OpenMetrics text (ends with `# EOF`).
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The registry in the classic Prometheus text format 0.0.4 (`# TYPE` names counters with
    /// their `_total` suffix, no `# EOF`).
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode_openmetrics())
    }

    /// A scrape reply for an `Accept` header: OpenMetrics when the client asks for it (as
    /// Prometheus does), the classic text format otherwise. Returns (content type, body).
    pub fn scrape(&self, accept: Option<&str>) -> (&'static str, String) {
        if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
            (OPENMETRICS_CONTENT_TYPE, self.encode_openmetrics())
        } else {
            (PROMETHEUS_CONTENT_TYPE, self.encode_prometheus())
        }
    }
}

/// Rewrites OpenMetrics text into Prometheus 0.0.4 text: the families of counters are named
/// with `_total` (as their samples are), and `# EOF` / `# UNIT` lines are dropped.
pub fn openmetrics_to_prometheus(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_help: Option<&str> = None;
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(h) = pending_help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.splitn(2, ' ');
            let name = parts.next().unwrap_or_default();
            let kind = parts.next().unwrap_or_default();
            let counter = kind == "counter";
            if let Some(h) = pending_help.take() {
                match (
                    counter,
                    h.strip_prefix("# HELP ").and_then(|r| r.split_once(' ')),
                ) {
                    (true, Some((n, help))) => {
                        out.push_str(&format!("# HELP {n}_total {help}\n"));
                    }
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            if counter {
                out.push_str(&format!("# TYPE {name}_total counter\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if let Some(h) = pending_help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = pending_help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(version: u64) -> Snapshot {
        let parsed = sluice_model::parse_text(include_str!("../tests/fixtures/canary.yaml"), None);
        sluice_config::build_snapshot(
            parsed.resources,
            parsed.diagnostics,
            &sluice_config::ProxyConfig::default(),
            &sluice_lb::StateStore::new(),
            version,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Endpoint labels are kept for the current and the previous snapshot only, however many
    /// reloads there were.
    #[test]
    fn endpoint_labels_do_not_accumulate_over_reloads() {
        let t = Telemetry::default();
        let mut previous = canary(1);
        t.on_snapshot(&previous);
        let per_snapshot = t.destinations.load().endpoints.len();
        assert!(per_snapshot > 0);
        for version in 2..12 {
            let next = canary(version);
            t.on_snapshot(&next);
            previous = next;
        }
        assert!(previous.version == 11);
        assert!(t.destinations.load().endpoints.len() <= 2 * per_snapshot);
    }
}
