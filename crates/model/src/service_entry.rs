//! `ServiceEntry` and `WorkloadEntry` (networking.istio.io v1alpha3 / v1beta1 / v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::small_map::SmallMap;

/// `ServiceEntry.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEntry {
    /// Host names added to the registry.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDRs.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Service ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// MESH_EXTERNAL or MESH_INTERNAL.
    #[serde(default)]
    pub location: Option<String>,
    /// NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS.
    #[serde(default)]
    pub resolution: Option<String>,
    /// Inline endpoints.
    #[serde(default)]
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects WorkloadEntry objects by label.
    #[serde(default)]
    pub workload_selector: Option<EntryWorkloadSelector>,
    /// Visibility.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Accepted SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
}

/// `WorkloadSelector` of a ServiceEntry (`labels`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EntryWorkloadSelector {
    /// Labels a workload must carry.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A service port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port number.
    #[serde(default)]
    pub number: u32,
    /// Protocol (HTTP, HTTP2, GRPC, TCP, ...); empty means sniffed.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Port name.
    #[serde(default)]
    pub name: String,
    /// Endpoint port (default: `number`).
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// `WorkloadEntry.spec`, also the element of `ServiceEntry.endpoints`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadEntry {
    /// IP, host name or unix socket.
    #[serde(default)]
    pub address: String,
    /// Port per service port name.
    #[serde(default)]
    pub ports: BTreeMap<String, u32>,
    /// Endpoint labels.
    #[serde(default)]
    pub labels: SmallMap<String, String>,
    /// Network id.
    #[serde(default)]
    pub network: Option<String>,
    /// `region/zone/subzone`.
    #[serde(default)]
    pub locality: Option<String>,
    /// Load-balancing weight.
    #[serde(default)]
    pub weight: Option<u32>,
    /// Identity.
    #[serde(default)]
    pub service_account: Option<String>,
}
