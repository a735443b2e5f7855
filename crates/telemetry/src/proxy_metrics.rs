//! sluice's own metrics (`sluice_*`): config reloads, connections, per-cluster upstream state,
//! per-route split counters, dropped access-log lines.
//!
//! Per-cluster and per-split handles are cached behind the same lock-free map as the Istio
//! series: a lookup by name costs an FxHash of the name and an `ArcSwap` load. Callers on the
//! request path may also keep the returned handles (they are cheap clones of atomics).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cache::{names_hash, CowMap};

type ClusterLabel = [(&'static str, String); 1];
type SplitLabels = [(&'static str, String); 4];
type ReasonLabel = [(&'static str, &'static str); 1];
type ServerLabels = [(&'static str, String); 2];
type RouteStatLabels = [(&'static str, String); 3];

/// Envoy's response code class of a status (`2xx`); `0` when no response was sent.
pub fn response_code_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "0",
    }
}

/// The per-cluster handles (`cluster` label = Envoy-style cluster name).
#[derive(Debug, Clone)]
pub struct ClusterMetrics {
    /// `sluice_upstream_requests_in_flight`.
    pub in_flight: Gauge,
    /// `sluice_outlier_ejections_total`.
    pub outlier_ejections: Counter,
    /// `sluice_mirror_requests_sent_total`.
    pub mirror_sent: Counter,
    /// `sluice_mirror_requests_dropped_total`.
    pub mirror_dropped: Counter,
    /// `sluice_retries_total`.
    pub retries: Counter,
    /// `sluice_retry_overflow_total` (Envoy's `upstream_rq_retry_overflow`): retries refused by
    /// `maxRetries` or the retry budget.
    pub retry_overflow: Counter,
}

impl ClusterMetrics {
    /// Counts an upstream request in flight until the guard is dropped.
    pub fn start_request(&self) -> InFlight {
        self.in_flight.inc();
        InFlight {
            gauge: self.in_flight.clone(),
        }
    }
}

/// Decrements a gauge when dropped (in-flight requests, open connections).
#[derive(Debug)]
pub struct InFlight {
    gauge: Gauge,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// sluice's own metric families.
#[derive(Debug)]
pub struct ProxyMetrics {
    config_version: Gauge,
    reloads_accepted: Counter,
    reloads_rejected: Counter,
    downstream_active: Gauge,
    downstream_refused: Counter,
    access_log_dropped: Counter,
    in_flight: Family<ClusterLabel, Gauge>,
    ejections: Family<ClusterLabel, Counter>,
    mirror_sent: Family<ClusterLabel, Counter>,
    mirror_dropped: Family<ClusterLabel, Counter>,
    retries: Family<ClusterLabel, Counter>,
    retry_overflow: Family<ClusterLabel, Counter>,
    splits: Family<SplitLabels, Counter>,
    tls_handshake_errors: Family<ReasonLabel, Counter>,
    gateway_server_requests: Family<ServerLabels, Counter>,
    route_stat_requests: Family<RouteStatLabels, Counter>,
    cluster_cache: CowMap<Arc<str>, Arc<ClusterMetrics>>,
    split_cache: CowMap<[Arc<str>; 4], Counter>,
}

impl ProxyMetrics {
    /// Creates the families and registers them under the `sluice` prefix of `registry`.
    pub fn register(registry: &mut Registry) -> ProxyMetrics {
        let m = ProxyMetrics {
            config_version: Gauge::default(),
            reloads_accepted: Counter::default(),
            reloads_rejected: Counter::default(),
            downstream_active: Gauge::default(),
            downstream_refused: Counter::default(),
            access_log_dropped: Counter::default(),
            in_flight: Family::default(),
            ejections: Family::default(),
            mirror_sent: Family::default(),
            mirror_dropped: Family::default(),
            retries: Family::default(),
            retry_overflow: Family::default(),
            splits: Family::default(),
            tls_handshake_errors: Family::default(),
            gateway_server_requests: Family::default(),
            route_stat_requests: Family::default(),
            cluster_cache: CowMap::default(),
            split_cache: CowMap::default(),
        };
        let r = registry.sub_registry_with_prefix("sluice");
        r.register(
            "config_version",
            "Version of the active config snapshot",
            m.config_version.clone(),
        );
        r.register(
            "config_reloads_accepted",
            "Config snapshots published (the initial load included)",
            m.reloads_accepted.clone(),
        );
        r.register(
            "config_reloads_rejected",
            "Config reloads rejected; the previous config stayed active",
            m.reloads_rejected.clone(),
        );
        r.register(
            "downstream_connections_active",
            "Open downstream connections",
            m.downstream_active.clone(),
        );
        r.register(
            "downstream_connections_refused",
            "Downstream connections closed at accept because --max-connections were open",
            m.downstream_refused.clone(),
        );
        r.register(
            "access_log_dropped",
            "Access log lines dropped because the writer could not keep up",
            m.access_log_dropped.clone(),
        );
        r.register(
            "upstream_requests_in_flight",
            "Upstream requests in flight, by cluster",
            m.in_flight.clone(),
        );
        r.register(
            "outlier_ejections",
            "Endpoints ejected by outlier detection, by cluster",
            m.ejections.clone(),
        );
        r.register(
            "mirror_requests_sent",
            "Mirror copies sent, by mirror cluster",
            m.mirror_sent.clone(),
        );
        r.register(
            "mirror_requests_dropped",
            "Mirror copies dropped (queue full, body too large, no cluster), by mirror cluster",
            m.mirror_dropped.clone(),
        );
        r.register(
            "retries",
            "Upstream request retries, by cluster",
            m.retries.clone(),
        );
        r.register(
            "retry_overflow",
            "Retries not attempted because maxRetries or the retry budget was reached, by cluster",
            m.retry_overflow.clone(),
        );
        r.register(
            "route_split_requests",
            "Requests sent to each destination of a weighted route",
            m.splits.clone(),
        );
        r.register(
            "tls_handshake_errors",
            "Downstream TLS handshakes that failed, by reason",
            m.tls_handshake_errors.clone(),
        );
        r.register(
            "gateway_server_requests",
            "Requests served by a named TLS-terminating gateway server, by response code class (Envoy's http.<server name>.downstream_rq_<class>)",
            m.gateway_server_requests.clone(),
        );
        r.register(
            "route_requests",
            "Requests forwarded by a route match with a statPrefix, by response code class (Envoy's vhost.<vhost>.route.<prefix>.upstream_rq_<class>)",
            m.route_stat_requests.clone(),
        );
        m
    }

    /// Counts a request of a named gateway server (`sluice_gateway_server_requests_total`).
    pub fn gateway_server_request(&self, server: &str, status: u16) {
        self.gateway_server_requests
            .get_or_create(&[
                ("server", server.to_string()),
                (
                    "response_code_class",
                    response_code_class(status).to_string(),
                ),
            ])
            .inc();
    }

    /// Counts a request of a route match with a `statPrefix` (`sluice_route_requests_total`).
    pub fn route_stat_request(&self, virtual_host: &str, stat_prefix: &str, status: u16) {
        self.route_stat_requests
            .get_or_create(&[
                ("virtual_host", virtual_host.to_string()),
                ("stat_prefix", stat_prefix.to_string()),
                (
                    "response_code_class",
                    response_code_class(status).to_string(),
                ),
            ])
            .inc();
    }

    /// Counts a failed downstream TLS handshake (`sluice_tls_handshake_errors_total{reason}`).
    pub fn tls_handshake_error(&self, reason: &'static str) {
        self.tls_handshake_errors
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// Sets `sluice_config_version` and counts an accepted snapshot.
    pub fn config_applied(&self, version: u64) {
        self.config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.reloads_accepted.inc();
    }

    /// Counts a rejected reload.
    pub fn config_rejected(&self) {
        self.reloads_rejected.inc();
    }

    /// Counts an open downstream connection until the guard is dropped.
    pub fn downstream_connection(&self) -> InFlight {
        self.downstream_active.inc();
        InFlight {
            gauge: self.downstream_active.clone(),
        }
    }

    /// Counts a connection refused over the connection limit.
    pub fn downstream_connection_refused(&self) {
        self.downstream_refused.inc();
    }

    /// Open downstream connections now.
    pub fn downstream_connections(&self) -> i64 {
        self.downstream_active.get()
    }

    /// The access-log drop counter (shared with the access log).
    pub(crate) fn access_log_dropped(&self) -> Counter<u64, AtomicU64> {
        self.access_log_dropped.clone()
    }

    /// The handles of a cluster (by its Envoy-style name).
    pub fn cluster(&self, cluster: &str) -> Arc<ClusterMetrics> {
        let hash = names_hash(&[cluster]);
        let eq = |k: &Arc<str>| &**k == cluster;
        if let Some(m) = self.cluster_cache.with(hash, eq, Arc::clone) {
            return m;
        }
        self.cluster_cache.get_or_insert_with(hash, eq, || {
            let label = [("cluster", cluster.to_string())];
            let m = ClusterMetrics {
                in_flight: self.in_flight.get_or_create_owned(&label),
                outlier_ejections: self.ejections.get_or_create_owned(&label),
                mirror_sent: self.mirror_sent.get_or_create_owned(&label),
                mirror_dropped: self.mirror_dropped.get_or_create_owned(&label),
                retries: self.retries.get_or_create_owned(&label),
                retry_overflow: self.retry_overflow.get_or_create_owned(&label),
            };
            (Arc::from(cluster), Arc::new(m))
        })
    }

    /// Upstream requests in flight for a cluster, if the cluster was ever seen.
    pub fn in_flight(&self, cluster: &str) -> Option<i64> {
        self.cluster_cache.with(
            names_hash(&[cluster]),
            |k| &**k == cluster,
            |m| m.in_flight.get(),
        )
    }

    /// Counts one request a weighted route sent to `destination` (host) / `subset`.
    #[inline]
    pub fn record_split(
        &self,
        virtual_host: &str,
        route: &str,
        destination: &str,
        subset: Option<&str>,
    ) {
        let parts = [virtual_host, route, destination, subset.unwrap_or("")];
        let hash = names_hash(&parts);
        let eq = |k: &[Arc<str>; 4]| k.iter().zip(parts).all(|(a, b)| &**a == b);
        if self.split_cache.with(hash, eq, Counter::inc).is_none() {
            self.split_counter(virtual_host, route, destination, subset)
                .inc();
        }
    }

    /// The split counter of a route destination (keep it to skip the lookup).
    pub fn split_counter(
        &self,
        virtual_host: &str,
        route: &str,
        destination: &str,
        subset: Option<&str>,
    ) -> Counter {
        let subset = subset.unwrap_or("");
        let parts = [virtual_host, route, destination, subset];
        let hash = names_hash(&parts);
        let eq = |k: &[Arc<str>; 4]| k.iter().zip(parts).all(|(a, b)| &**a == b);
        self.split_cache.get_or_insert_with(hash, eq, || {
            let labels = [
                ("virtual_host", virtual_host.to_string()),
                ("route", route.to_string()),
                ("destination", destination.to_string()),
                ("subset", subset.to_string()),
            ];
            (
                parts.map(Arc::from),
                self.splits.get_or_create_owned(&labels),
            )
        })
    }
}
