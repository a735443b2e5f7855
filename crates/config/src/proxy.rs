//! Who this proxy is: its workload labels, namespace, roles and bind addresses.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::Serialize;

/// The identity and roles of the running proxy; config is compiled for one proxy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyConfig {
    /// Workload labels (matched by Gateway selectors and `sourceLabels`).
    pub labels: BTreeMap<String, String>,
    /// Namespace of the workload.
    pub namespace: String,
    /// Serve Gateways whose selector matches `labels`.
    pub gateway_role: bool,
    /// Serve registry services as a sidecar's outbound side.
    pub mesh_role: bool,
    /// Serve registry services to intercepted outbound connections, by original destination.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub outbound_role: bool,
    /// Address gateway servers bind on.
    pub gateway_address: IpAddr,
    /// Address mesh listeners bind on when the service has no local address.
    pub mesh_address: IpAddr,
    /// Inbound connections arrive through interception (`--inbound-port`): the Sidecar's
    /// ingress ports then apply to intercepted connections and are not bound themselves (the
    /// app holds them).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inbound_intercepted: bool,
    /// MeshConfig `rootNamespace`: its policies apply mesh-wide.
    pub root_namespace: String,
    /// MeshConfig `trustDomain`.
    pub trust_domain: String,
    /// MeshConfig `trustDomainAliases`: other trust domains of the same mesh.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trust_domain_aliases: Vec<String>,
    /// Where the proxy runs, `region/zone/subzone` (empty: unknown, no locality balancing).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// The proxy's L3 network (`--network`, or the Pod's `topology.istio.io/network` label);
    /// empty: unknown, every endpoint counts as on the same network.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// MeshConfig `outboundTrafficPolicy.mode`: what happens to destinations outside the
    /// registry when no Sidecar says.
    #[serde(skip_serializing_if = "crate::scope::OutboundMode::is_allow_any")]
    pub outbound_traffic_policy: crate::scope::OutboundMode,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            labels: BTreeMap::new(),
            namespace: "default".into(),
            gateway_role: true,
            mesh_role: true,
            outbound_role: false,
            gateway_address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            mesh_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            inbound_intercepted: false,
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            locality: String::new(),
            network: String::new(),
            outbound_traffic_policy: crate::scope::OutboundMode::AllowAny,
        }
    }
}
