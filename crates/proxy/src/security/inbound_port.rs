//! A Sidecar ingress listener as the inbound path needs it: the app's address, what the port
//! speaks, its own TLS and the mTLS mode the PeerAuthentications give it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use sluice_config::authz::{DefaultEndpoint, MtlsMode, SidecarIngress};
use sluice_config::tls::{ServerTls, TlsVersion};
use sluice_config::Snapshot;

use crate::inbound::chain::PortKind;
use crate::tls::MeshServer;

/// One inbound listener, resolved for a connection.
pub(crate) struct InboundPort {
    /// Where the app listens.
    pub(crate) default_endpoint: SocketAddr,
    /// HTTP, or bytes relayed as they are.
    pub(crate) kind: PortKind,
    /// Whether the port's protocol is not declared (told by the first bytes).
    pub(crate) sniffed: bool,
    /// The mode of the port (workload, namespace and mesh PeerAuthentications).
    pub(crate) mode: MtlsMode,
    /// TLS for clients outside the mesh (`ingress[].tls`).
    pub(crate) tls: Option<Arc<ServerTls>>,
    /// What mesh clients are checked against.
    pub(crate) mesh: Arc<MeshServer>,
}

/// What a port of this Istio protocol speaks; `None` when it is to be sniffed.
fn kind(protocol: &str) -> Option<PortKind> {
    match protocol.to_ascii_uppercase().as_str() {
        "HTTP" | "HTTP2" | "GRPC" | "GRPC-WEB" | "HTTP_PROXY" => Some(PortKind::Http),
        "" => None,
        _ => Some(PortKind::Tcp),
    }
}

/// Where an inbound connection arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InboundTarget {
    /// A Sidecar ingress listener bound at this address.
    Listener(SocketAddr),
    /// An intercepted connection (`sluice iptables`) to this original destination.
    Intercepted(SocketAddr),
}

/// Where the app listens for `port`: loopback of the family of `like`.
fn loopback(like: SocketAddr, port: u16) -> SocketAddr {
    match like.ip() {
        IpAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        IpAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
    }
}

/// The Sidecar ingress entry serving `target` (none for an intercepted port it does not
/// name), with the address the connection arrived at.
fn ingress_of(
    snapshot: &Snapshot,
    target: InboundTarget,
) -> Option<(Option<&SidecarIngress>, SocketAddr)> {
    match target {
        InboundTarget::Listener(a) => Some((Some(snapshot.inbound_listener(a)?), a)),
        InboundTarget::Intercepted(dst) => Some((
            snapshot
                .security
                .sidecar_ingress
                .iter()
                .find(|i| i.port == dst.port()),
            dst,
        )),
    }
}

/// Where an ingress entry sends traffic; `None` when its `defaultEndpoint` is unusable.
fn endpoint_of(ingress: &SidecarIngress, addr: SocketAddr) -> Option<SocketAddr> {
    Some(match ingress.default_endpoint? {
        DefaultEndpoint::Address(a) => a,
        // The workload's own address: the app shares the host (or pod) with the proxy.
        DefaultEndpoint::InstanceIp { port } => loopback(addr, port),
    })
}

/// The inbound pool of the port a connection reached (the Sidecar's `inboundConnectionPool` or
/// the port's ingress `connectionPool`), with the port and whether it declares HTTP/2.
pub(crate) fn inbound_pool(
    snapshot: &Snapshot,
    target: InboundTarget,
) -> Option<(u16, &sluice_config::policy::PoolLimits, bool)> {
    let (ingress, addr) = ingress_of(snapshot, target)?;
    let port = ingress.map_or(addr.port(), |i| i.port);
    let limits = snapshot.security.inbound_pool_for(port)?;
    let h2 = ingress.is_some_and(|i| {
        matches!(
            i.protocol.to_ascii_uppercase().as_str(),
            "HTTP2" | "GRPC" | "GRPC-WEB"
        )
    });
    Some((port, limits, h2))
}

/// What a request on an inbound connection needs: where the app is, and the port's mode
/// (cheap: nothing is allocated).
pub(crate) fn app_and_mode(
    snapshot: &Snapshot,
    target: InboundTarget,
) -> Option<(SocketAddr, MtlsMode)> {
    let (ingress, addr) = ingress_of(snapshot, target)?;
    let (port, app) = match ingress {
        Some(i) => (i.port, endpoint_of(i, addr)?),
        None => (addr.port(), loopback(addr, addr.port())),
    };
    Some((app, snapshot.security.peer_authentication.mtls_mode(port)))
}

/// The inbound port a connection reached, resolved in `snapshot`: a Sidecar ingress listener
/// (bound, or covering an intercepted connection's port), else, for an intercepted
/// connection, the app at the same port on loopback with the protocol told by the first bytes.
pub(crate) fn inbound_port(snapshot: &Snapshot, target: InboundTarget) -> Option<InboundPort> {
    let (ingress, addr) = ingress_of(snapshot, target)?;
    let (port, default_endpoint, declared, tls) = match ingress {
        Some(i) => {
            // An HTTPS port whose TLS the proxy terminates (`tls`) carries HTTP inside; without
            // `tls` it is the app's own TLS, relayed as bytes.
            let declared = match (kind(&i.protocol), &i.tls) {
                (Some(PortKind::Tcp), Some(_)) if i.protocol.eq_ignore_ascii_case("HTTPS") => {
                    Some(PortKind::Http)
                }
                (k, _) => k,
            };
            (
                i.port,
                endpoint_of(i, addr)?,
                declared,
                i.tls.clone().map(Arc::new),
            )
        }
        None => (addr.port(), loopback(addr, addr.port()), None, None),
    };
    let proxy = &snapshot.proxy;
    Some(InboundPort {
        default_endpoint,
        kind: declared.unwrap_or(PortKind::Tcp),
        sniffed: declared.is_none(),
        mode: snapshot.security.peer_authentication.mtls_mode(port),
        tls,
        mesh: Arc::new(MeshServer {
            trust_domains: std::iter::once(proxy.trust_domain.clone())
                .chain(proxy.trust_domain_aliases.iter().cloned())
                .collect(),
            min_version: TlsVersion::V1_2,
        }),
    })
}
