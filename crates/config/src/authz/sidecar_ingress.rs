//! The Sidecar that applies to this proxy and its ingress listeners.

use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use sluice_model::{Resource, Sidecar, Spec};

use crate::labels::selector_matches;
use crate::proxy::ProxyConfig;
use crate::tls::ServerTls;

/// Where an ingress listener forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DefaultEndpoint {
    /// A fixed address (`127.0.0.1:PORT`, `[::1]:PORT`).
    Address(SocketAddr),
    /// `0.0.0.0:PORT`: the workload's own address, at `port`.
    InstanceIp {
        /// Port on the workload's address.
        port: u16,
    },
}

impl DefaultEndpoint {
    /// Reads a `defaultEndpoint`; the error says why it cannot be used.
    pub fn parse(v: &str) -> Result<DefaultEndpoint, String> {
        if v.starts_with("unix://") {
            return Err(format!(
                "defaultEndpoint `{v}`: unix domain sockets are not supported by sluice"
            ));
        }
        let addr: SocketAddr = v.parse().map_err(|_| {
            format!("defaultEndpoint `{v}` must be `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT` or `unix://`")
        })?;
        if addr.port() == 0 {
            return Err(format!("defaultEndpoint `{v}` needs a port"));
        }
        match addr.ip() {
            ip if ip.is_unspecified() => Ok(DefaultEndpoint::InstanceIp { port: addr.port() }),
            ip if ip.is_loopback() => Ok(DefaultEndpoint::Address(addr)),
            _ => Err(format!(
                "defaultEndpoint `{v}` must be a loopback address or 0.0.0.0 (the workload's own address)"
            )),
        }
    }
}

/// One compiled `ingress` listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SidecarIngress {
    /// Port the listener serves.
    pub port: u16,
    /// Protocol, as Istio names it (`HTTP`, `TCP`, ...).
    pub protocol: String,
    /// Port name.
    pub name: String,
    /// Bind address.
    pub bind: Option<IpAddr>,
    /// Where traffic goes; `None` when absent or unusable (reported).
    pub default_endpoint: Option<DefaultEndpoint>,
    /// TLS terminated for clients outside the mesh.
    pub tls: Option<ServerTls>,
    /// Its own `connectionPool` (replacing the Sidecar's `inboundConnectionPool` as a whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<crate::policy::PoolLimits>,
}

/// The Sidecar that applies to `proxy`: the oldest one in its namespace whose
/// `workloadSelector` matches, else the oldest selector-less one in its namespace, else the
/// oldest selector-less one in the root namespace.
pub fn select_sidecar<'r>(
    ordered: &[&'r Resource],
    proxy: &ProxyConfig,
) -> Option<(&'r Resource, &'r Sidecar)> {
    let sidecars: Vec<(&Resource, &Sidecar)> = ordered
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Sidecar(s) => Some((*r, &**s)),
            _ => None,
        })
        .collect();
    let in_ns = |ns: &str, selected: &dyn Fn(&Sidecar) -> bool| {
        sidecars
            .iter()
            .find(|(r, s)| r.metadata.namespace == ns && selected(s))
            .copied()
    };
    let matching = |s: &Sidecar| {
        s.workload_selector
            .as_ref()
            .is_some_and(|w| selector_matches(&w.labels, &proxy.labels))
    };
    let selector_less = |s: &Sidecar| s.workload_selector.is_none();
    in_ns(&proxy.namespace, &matching)
        .or_else(|| in_ns(&proxy.namespace, &selector_less))
        .or_else(|| in_ns(&proxy.root_namespace, &selector_less))
}
