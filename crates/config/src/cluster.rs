//! Clusters: a service port, optionally narrowed to a DestinationRule subset, with its endpoints.

use std::sync::Arc;

use serde::Serialize;
use sluice_lb::{StateStore, WeightedSchedule};

use crate::policy::ClusterPolicy;
use crate::protocol::Protocol;
use crate::registry::{Endpoint, Service, ServicePort};

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
    #[serde(skip)]
    schedule: WeightedSchedule,
}

/// The Envoy-style cluster name.
pub fn cluster_name(host: &str, port: u16, subset: Option<&str>) -> String {
    format!("outbound|{port}|{}|{host}", subset.unwrap_or(""))
}

impl Cluster {
    /// Builds a cluster from a service port and the endpoints a subset selected.
    pub fn new(
        service: &Service,
        port: &ServicePort,
        subset: Option<&str>,
        endpoints: Vec<Arc<Endpoint>>,
        policy: Arc<ClusterPolicy>,
        state: &StateStore,
    ) -> Cluster {
        let name = cluster_name(&service.hostname, port.number, subset);
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
        let weights: Vec<u32> = endpoints.iter().map(|e| e.endpoint.weight).collect();
        let schedule = WeightedSchedule::new(&weights, state.counter(&format!("rr|{name}")));
        Cluster {
            name,
            host: service.hostname.clone(),
            port: port.number,
            subset: subset.map(str::to_string),
            protocol: port.protocol,
            endpoints,
            policy,
            schedule,
        }
    }

    /// The next endpoint by weighted round robin; `None` when there is none (503 UH).
    pub fn pick(&self) -> Option<&UpstreamEndpoint> {
        self.endpoints.get(self.schedule.next()?)
    }

    /// The index of the next endpoint, skipping `avoid` (tried hosts) while others remain, the way
    /// Envoy's `previous_hosts` predicate retries host selection.
    pub fn pick_avoiding(&self, avoid: &[usize]) -> Option<usize> {
        let first = self.schedule.next()?;
        if !avoid.contains(&first) || avoid.len() >= self.endpoints.len() {
            return Some(first);
        }
        for _ in 0..self.schedule.len() {
            let i = self.schedule.next()?;
            if !avoid.contains(&i) {
                return Some(i);
            }
        }
        Some(first)
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
