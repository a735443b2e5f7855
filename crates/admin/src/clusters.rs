//! `/clusters`: every cluster (service port, optionally a subset) with its endpoints, and the
//! live state the proxy reports through [`ClusterStatus`]; `?host=` keeps a host's clusters,
//! `limit`/`offset` page them.

use serde::Serialize;
use sluice_config::cluster::{Cluster, UpstreamEndpoint};
use sluice_config::host::covers;

use crate::query::Query;
use crate::AdminState;

/// Live state of one endpoint, as the data plane sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EndpointStatus {
    /// Health (`None` = not tracked).
    pub healthy: Option<bool>,
    /// Outlier-detection state (e.g. `ejected until …`); `None` = not ejected or not tracked.
    pub outlier: Option<String>,
    /// Requests in flight to this endpoint.
    pub in_flight: Option<u64>,
}

/// The extension point for live endpoint state: the proxy implements it over its upstream
/// pools and outlier detector and hands it to [`AdminState::with_cluster_status`].
pub trait ClusterStatus: Send + Sync {
    /// The state of one endpoint of a cluster.
    fn endpoint(&self, cluster: &Cluster, endpoint: &UpstreamEndpoint) -> EndpointStatus;
}

#[derive(Serialize)]
struct EndpointView<'a> {
    address: &'a str,
    /// The DNS name the address was resolved from (Envoy's `hostname`).
    #[serde(skip_serializing_if = "str::is_empty")]
    hostname: &'a str,
    /// The endpoint's network (empty: the proxy's own).
    #[serde(skip_serializing_if = "str::is_empty")]
    network: &'a str,
    weight: u32,
    workload: Option<&'a str>,
    labels: &'a sluice_model::SmallMap<String, String>,
    #[serde(flatten)]
    status: EndpointStatus,
}

#[derive(Serialize)]
struct ClusterView<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    subset: Option<&'a str>,
    protocol: &'a sluice_config::protocol::Protocol,
    /// Upstream requests in flight for the whole cluster (`sluice_upstream_requests_in_flight`).
    in_flight: Option<i64>,
    policy: &'a sluice_config::policy::ClusterPolicy,
    endpoints: Vec<EndpointView<'a>>,
}

/// The `/clusters` document.
pub(crate) fn clusters(state: &AdminState, query: &Query) -> serde_json::Value {
    let snap = state.config.load();
    let Some(snap) = snap else {
        return serde_json::json!({ "version": null, "clusters": [] });
    };
    let query = &query.or_first_page(snap.clusters.len());
    let matching: Vec<_> = snap
        .clusters
        .values()
        .filter(|c| query.host.as_deref().is_none_or(|h| covers(h, &c.host)))
        .collect();
    let total = matching.len();
    let views: Vec<ClusterView<'_>> = query
        .page(matching)
        .into_iter()
        .map(|c| ClusterView {
            name: &c.name,
            host: &c.host,
            port: c.port,
            subset: c.subset.as_deref(),
            protocol: &c.protocol,
            in_flight: state.telemetry.proxy().in_flight(&c.name),
            policy: &c.policy,
            endpoints: c
                .endpoints
                .iter()
                .map(|ue| EndpointView {
                    address: &ue.authority,
                    hostname: &ue.endpoint.hostname,
                    network: &ue.endpoint.network,
                    weight: ue.endpoint.weight,
                    workload: ue.endpoint.workload.as_deref(),
                    labels: &ue.endpoint.labels,
                    status: state
                        .cluster_status
                        .as_ref()
                        .map(|s| s.endpoint(c, ue))
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    if !query.is_set() {
        return serde_json::json!({ "version": snap.version, "clusters": views });
    }
    serde_json::json!({
        "version": snap.version,
        "query": {
            "host": query.host,
            "limit": query.limit,
            "offset": query.offset,
            "totalClusters": total,
        },
        "clusters": views,
    })
}
