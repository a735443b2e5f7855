//! The sidecar's outbound interception: which mesh listener serves a redirected connection,
//! chosen by its original destination instead of by a bound address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::listener::Listener;
use crate::tcp_route::TcpListener;

/// Mesh listeners by original destination: a service address first, else the port alone.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundTable {
    /// `<service address>:<port>`: the port's virtual hosts with the owning service as fallback.
    #[serde(serialize_with = "sorted_addresses")]
    pub by_address: HashMap<SocketAddr, Arc<Listener>>,
    /// `<port>`: the port's virtual hosts, chosen by Host alone.
    #[serde(serialize_with = "sorted_ports")]
    pub by_port: HashMap<u16, Arc<Listener>>,
    /// `<service address>:<port>` of TCP service ports: the service's `tcp` rules.
    #[serde(
        serialize_with = "sorted_tcp",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub tcp_by_address: HashMap<SocketAddr, Arc<TcpListener>>,
    /// `<port>`: the mesh `tls` rules, chosen by the ClientHello's SNI.
    #[serde(
        serialize_with = "sorted_tls",
        skip_serializing_if = "HashMap::is_empty"
    )]
    pub tls_by_port: HashMap<u16, Arc<TcpListener>>,
    /// Istio's `BlackHoleCluster` when the outbound traffic policy is `REGISTRY_ONLY`: requests
    /// for hosts outside the registry get `502 NR` and other connections are closed, instead of
    /// passing through (`None`: `ALLOW_ANY`).
    #[serde(
        serialize_with = "black_hole_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub black_hole: Option<Arc<Cluster>>,
    /// A Sidecar's `egressProxy` cluster (with `ALLOW_ANY`): what would pass through goes to
    /// it instead.
    #[serde(
        serialize_with = "black_hole_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub egress_proxy: Option<Arc<Cluster>>,
}

impl OutboundTable {
    /// The listener for a connection whose original destination is `dst` (`None`: not an HTTP
    /// mesh port, so the connection passes through as plain TCP).
    pub fn listener(&self, dst: SocketAddr) -> Option<&Arc<Listener>> {
        self.by_address
            .get(&dst)
            .or_else(|| self.by_port.get(&dst.port()))
    }

    /// The TCP rules for a connection whose original destination is `dst`, when it is an
    /// address and TCP port of a service.
    pub fn tcp_listener(&self, dst: SocketAddr) -> Option<&Arc<TcpListener>> {
        self.tcp_by_address.get(&dst)
    }

    /// The `tls` rules for a connection to `port` that starts with a ClientHello.
    pub fn tls_listener(&self, port: u16) -> Option<&Arc<TcpListener>> {
        self.tls_by_port.get(&port)
    }

    /// Whether nothing is served (no HTTP or addressed TCP service port in the registry) and
    /// unknown destinations pass through.
    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
            && self.tcp_by_address.is_empty()
            && self.tls_by_port.is_empty()
            && self.black_hole.is_none()
    }
}

fn sorted_addresses<S: serde::Serializer>(
    m: &HashMap<SocketAddr, Arc<Listener>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<String, &str> = m
        .iter()
        .map(|(a, l)| (a.to_string(), l.name.as_str()))
        .collect();
    sorted.serialize(s)
}

fn sorted_ports<S: serde::Serializer>(
    m: &HashMap<u16, Arc<Listener>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<u16, &str> =
        m.iter().map(|(p, l)| (*p, l.name.as_str())).collect();
    sorted.serialize(s)
}

fn sorted_tcp<S: serde::Serializer>(
    m: &HashMap<SocketAddr, Arc<TcpListener>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<String, &[crate::tcp_route::TcpRule]> = m
        .iter()
        .map(|(a, l)| (a.to_string(), l.rules.as_slice()))
        .collect();
    sorted.serialize(s)
}

fn sorted_tls<S: serde::Serializer>(
    m: &HashMap<u16, Arc<TcpListener>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let sorted: std::collections::BTreeMap<u16, &[crate::tcp_route::TcpRule]> =
        m.iter().map(|(p, l)| (*p, l.rules.as_slice())).collect();
    sorted.serialize(s)
}

fn black_hole_name<S: serde::Serializer>(
    c: &Option<Arc<Cluster>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    c.as_ref().map(|c| c.name.as_str()).serialize(s)
}
