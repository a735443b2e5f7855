//! Clusters: a service port, optionally narrowed to a DestinationRule subset, with its endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use sluice_lb::{
    Balancer, LbAlgorithm, LbEndpoint, Locality, LocalityLayout, Origin, OutlierConfig,
    PickContext, Placement, SlowStart, StateStore, ZoneRouting, DEFAULT_MIN_CLUSTER_SIZE,
};

use crate::local_cluster::LocalCluster;
use crate::policy::{ClusterPolicy, HashAlgorithm, LbPolicy};
use crate::protocol::Protocol;
use crate::proxy::ProxyConfig;
use crate::registry::{Endpoint, Service, ServicePort};

/// The name of Istio's cluster for refused destinations.
pub const BLACK_HOLE: &str = "BlackHoleCluster";

/// An endpoint ready to connect to.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamEndpoint {
    /// `host:port` to connect to.
    pub authority: String,
    /// The same, parsed once for building upstream URIs (`None` if it is not a valid authority).
    #[serde(skip)]
    pub uri_authority: Option<http::uri::Authority>,
    /// The registry endpoint (labels, workload).
    pub endpoint: Arc<Endpoint>,
}

/// Envoy-style cluster: `outbound|<port>|<subset>|<host>`.
#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    /// Envoy-style name.
    pub name: String,
    /// Service host name.
    pub host: String,
    /// Service port.
    pub port: u16,
    /// Subset name, if any.
    pub subset: Option<String>,
    /// Upstream protocol.
    pub protocol: Protocol,
    /// Endpoints selected for this cluster.
    pub endpoints: Vec<UpstreamEndpoint>,
    /// Merged DestinationRule policy (load balancer, limits, outlier detection).
    pub policy: Arc<ClusterPolicy>,
    /// Istio's ORIGINAL_DST cluster (`resolution: NONE` without endpoints): an intercepted
    /// connection goes to its original destination.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub original_dst: bool,
    /// `resolution: DYNAMIC_DNS`: each request goes to the address its own host name resolves
    /// to (Istio's dynamic forward proxy cluster).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dynamic_dns: bool,
    /// `zoneAwareLbSetting` in force: the proxy's own service instances per locality that the
    /// zones of the first tier are weighed by (empty: no zone-aware routing).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub local_zones: BTreeMap<String, u64>,
    #[serde(skip)]
    balancer: Balancer,
}

/// The proxy a cluster is compiled for: who it is, and where its own service runs.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The proxy (locality, labels).
    pub proxy: &'a ProxyConfig,
    /// The proxy's own service instances per locality.
    pub local: &'a LocalCluster,
}

/// The balancing algorithm for a cluster policy.
fn algorithm(policy: &ClusterPolicy) -> LbAlgorithm {
    match &policy.lb {
        LbPolicy::LeastRequest => LbAlgorithm::LeastRequest,
        // PASSTHROUGH has no endpoints to balance: requests go to their original destination.
        LbPolicy::RoundRobin | LbPolicy::Passthrough => LbAlgorithm::RoundRobin,
        LbPolicy::Random => LbAlgorithm::Random,
        LbPolicy::ConsistentHash(ch) => match ch.algorithm {
            HashAlgorithm::RingHash { minimum_ring_size } => {
                LbAlgorithm::RingHash { minimum_ring_size }
            }
            HashAlgorithm::Maglev { table_size } => LbAlgorithm::Maglev { table_size },
        },
    }
}

/// The Envoy-style cluster name.
pub fn cluster_name(host: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

impl Cluster {
    /// Builds a cluster from a service port and the endpoints a subset selected, for `proxy`
    /// (whose locality orders the endpoints when locality balancing applies, and whose own
    /// service instances weigh the zones under zone-aware balancing).
    pub fn new(
        service: &Service,
        port: &ServicePort,
        subset: Option<&str>,
        endpoints: Vec<Arc<Endpoint>>,
        policy: Arc<ClusterPolicy>,
        state: &StateStore,
        viewer: Viewer<'_>,
    ) -> Cluster {
        let Viewer { proxy, local } = viewer;
        let name = cluster_name(&service.hostname, port.number, subset);
        // Istio drops the load assignment of a PASSTHROUGH (ORIGINAL_DST) cluster: without an
        // original destination there is no host to pick, and the request answers `503 UH`.
        let passthrough = matches!(policy.lb, LbPolicy::Passthrough);
        let endpoints = if passthrough { Vec::new() } else { endpoints };
        let endpoints: Vec<UpstreamEndpoint> = endpoints
            .into_iter()
            .map(|e| {
                let authority = join_host_port(&e.address, e.port_for(port));
                UpstreamEndpoint {
                    uri_authority: authority.parse().ok(),
                    authority,
                    endpoint: e,
                }
            })
            .collect();
        let outlier = policy.outlier.as_ref().map(|o| OutlierConfig {
            consecutive_5xx: o.consecutive_5xx,
            consecutive_gateway_errors: o.consecutive_gateway_errors,
            interval: o.interval,
            base_ejection_time: o.base_ejection_time,
            max_ejection_percent: o.max_ejection_percent,
            min_health_percent: o.min_health_percent,
            split_local_origin: o.split_local_origin,
            consecutive_local_origin: o.consecutive_local_origin,
            error_codes: (!o.error_codes.is_empty())
                .then(|| sluice_lb::StatusSet::of(o.error_codes.iter().copied())),
        });
        let lb_endpoints = endpoints
            .iter()
            .map(|e| {
                let state = state.endpoint(&name, &e.authority);
                LbEndpoint::new(e.endpoint.weight, state)
            })
            .collect();
        let slow_start = policy.warmup.map(|w| SlowStart {
            window: w.duration,
            min_weight: w.minimum_percent / 100.0,
            aggression: w.aggression,
        });
        let layout = locality_layout(&name, &policy, proxy, local, &endpoints, state);
        let local_zones = match layout.as_ref().and_then(LocalityLayout::zones) {
            Some(_) => local.localities.clone(),
            None => BTreeMap::new(),
        };
        let balancer = Balancer::build(
            algorithm(&policy),
            lb_endpoints,
            outlier,
            state.counter(&format!("lb-rr|{name}")),
            layout,
            slow_start,
        );
        Cluster {
            name,
            host: service.hostname.clone(),
            port: port.number,
            subset: subset.map(str::to_string),
            protocol: port.protocol,
            endpoints,
            // `simple: PASSTHROUGH` is Istio's ORIGINAL_DST load balancer too.
            original_dst: (service.resolution == "NONE" && service.endpoints.is_empty())
                || passthrough,
            dynamic_dns: service.resolution == "DYNAMIC_DNS",
            local_zones,
            policy,
            balancer,
        }
    }

    /// Istio's `BlackHoleCluster`: no endpoints; what `REGISTRY_ONLY` sends unknown
    /// destinations to (the name is what `destination_service_name` reports).
    pub fn black_hole(state: &StateStore) -> Cluster {
        let name = BLACK_HOLE.to_string();
        let balancer = Balancer::with_layout(
            LbAlgorithm::RoundRobin,
            Vec::new(),
            None,
            state.counter(&format!("lb-rr|{name}")),
            None,
        );
        Cluster {
            host: name.clone(),
            name,
            port: 0,
            subset: None,
            protocol: Protocol::Http,
            endpoints: Vec::new(),
            original_dst: false,
            dynamic_dns: false,
            local_zones: BTreeMap::new(),
            policy: Arc::new(ClusterPolicy::default()),
            balancer,
        }
    }

    /// Picks an endpoint with the cluster's balancer (no hash key, nothing excluded).
    pub fn pick(&self) -> Option<&UpstreamEndpoint> {
        let ctx = PickContext::at_pick_time(sluice_lb::fresh_seed());
        self.endpoints.get(self.balancer.pick(&ctx)?)
    }

    /// The balancer (endpoint state, outlier detection) of this cluster.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}

/// The priority levels and weighted localities of a cluster, when its locality setting applies
/// to this proxy and these endpoints (`None` otherwise: the balancer stays flat), with
/// zone-aware routing in the first level when the setting asks for it and Envoy would do it.
fn locality_layout(
    name: &str,
    policy: &ClusterPolicy,
    proxy: &ProxyConfig,
    local: &LocalCluster,
    endpoints: &[UpstreamEndpoint],
    state: &StateStore,
) -> Option<LocalityLayout> {
    let setting = policy.locality.as_ref()?;
    if proxy.locality.is_empty() || endpoints.iter().all(|e| e.endpoint.locality.is_empty()) {
        return None;
    }
    let me = Locality::parse(&proxy.locality);
    let localities: Vec<Locality> = endpoints
        .iter()
        .map(|e| Locality::parse(&e.endpoint.locality))
        .collect();
    let places: Vec<Placement<'_>> = endpoints
        .iter()
        .zip(&localities)
        .map(|(e, locality)| Placement {
            locality,
            labels: e.endpoint.labels.as_slice(),
            weight: e.endpoint.weight,
        })
        .collect();
    let origin = Origin {
        locality: &me,
        labels: &proxy.labels,
    };
    let levels = setting.levels(origin, &places, policy.outlier.is_some())?;
    // Envoy routes by zone in its round robin, least request and random balancers; the
    // consistent-hash ones (ring hash, Maglev) pick by hash within the priority level only.
    let hashing = matches!(policy.lb, LbPolicy::ConsistentHash(_));
    let zones = match levels.first() {
        Some(first) if setting.zone_aware && !local.is_empty() && !hashing => {
            let members: Vec<(usize, &Locality)> = first
                .iter()
                .flat_map(|(m, _)| m.iter())
                .filter_map(|&i| Some((i, localities.get(i)?)))
                .collect();
            ZoneRouting::new(
                &me,
                &members,
                &local.shares(),
                setting.min_cluster_size.unwrap_or(DEFAULT_MIN_CLUSTER_SIZE),
            )
        }
        _ => None,
    };
    // Zone-aware balancing keeps a single unweighted tier, which without zone routing is the
    // plain balancer.
    if setting.zone_aware && levels.len() < 2 && zones.is_none() {
        return None;
    }
    Some(
        LocalityLayout::new(levels, state.counter(&format!("lb-locality|{name}")))
            .with_zones(zones),
    )
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
