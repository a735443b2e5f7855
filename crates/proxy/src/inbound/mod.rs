//! A workload's inbound listeners (the `Sidecar` resource's `ingress`): mesh mTLS or plaintext
//! by the port's PeerAuthentication mode, request authentication and authorization, then the
//! app at the listener's `defaultEndpoint`.

pub mod chain;
mod forward;
mod pool;
mod serve;
pub mod xfcc;

use std::net::SocketAddr;
use std::sync::Arc;

pub(crate) use forward::forward;
pub(crate) use serve::serve;

/// What a request on an inbound connection carries from its connection.
#[derive(Debug, Clone)]
pub struct InboundConn {
    /// Where the connection arrived.
    pub target: crate::security::InboundTarget,
    /// The mesh client's certificate (mesh mTLS only).
    pub peer_cert: Option<xfcc::ClientCert>,
    /// Both ends' telemetry labels, over mesh mTLS.
    pub mtls: Option<sluice_telemetry::MtlsPeers>,
    /// The connection is plaintext (no TLS at all).
    pub plaintext: bool,
    /// The ClientHello's server name, when the connection was TLS.
    pub sni: Option<Arc<str>>,
    /// The connection's local address (`destination.ip`, `destination.port`).
    pub local: SocketAddr,
    /// The app as resolved when the connection was accepted (reused while it stays the app).
    pub app: Arc<sluice_config::cluster::UpstreamEndpoint>,
    /// Its address.
    pub app_addr: SocketAddr,
}
