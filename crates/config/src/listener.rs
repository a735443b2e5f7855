//! Listeners: a bound address and the virtual hosts served on it.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;

use crate::vhost::{VirtualHost, VirtualHostTable};

/// Which role a listener plays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ListenerRole {
    /// Ingress gateway server port (Gateways by `ns/name`).
    Gateway {
        /// The Gateways whose servers share this port.
        gateways: Vec<String>,
    },
    /// Sidecar outbound port for registry services.
    Mesh,
}

/// A listener to bind.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Name (`<ip>_<port>`, as Envoy names them).
    pub name: String,
    /// Bind address.
    pub address: SocketAddr,
    /// Role.
    pub role: ListenerRole,
    /// Virtual hosts.
    pub virtual_hosts: Arc<VirtualHostTable>,
    /// Used when no virtual host matches (the service owning a VIP the listener is bound to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_virtual_host: Option<Arc<VirtualHost>>,
    /// Gateway server `name` of a TLS-terminating HTTPS server: Istio makes it the stat prefix
    /// of the server's connection manager; sluice counts its requests under it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat_prefix: Option<Arc<str>>,
    /// The unix domain socket it listens on (a Gateway server's `bind: unix://PATH`); its
    /// `address` is then only a key, never bound.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix: Option<Arc<str>>,
}

impl Listener {
    /// The virtual host for a Host header.
    pub fn virtual_host(&self, authority: &str) -> Option<&Arc<VirtualHost>> {
        self.virtual_hosts
            .find(authority)
            .or(self.default_virtual_host.as_ref())
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Whether requests on it are edge traffic (gateway) rather than sidecar traffic.
    pub fn is_gateway(&self) -> bool {
        matches!(self.role, ListenerRole::Gateway { .. })
    }
}
