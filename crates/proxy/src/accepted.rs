//! A connection a listener accepted, on TCP or on a unix domain socket, served by what its
//! listener in the snapshot is: a TCP proxy, a TLS listener (termination, or passthrough by
//! SNI), or HTTP. One pipeline for both stream types, monomorphised for each (no dynamic
//! dispatch per connection or request).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use sluice_config::snapshot::Snapshot;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::downstream::ConnectionPermit;
use crate::handler::{Entry, ProxyContext};
use crate::server::HttpServing;

/// A downstream stream type a listener accepts.
pub(crate) trait Downstream:
    AsyncRead + AsyncWrite + Unpin + Send + Sized + 'static
{
    /// The local IP the client reached, if the socket has one (a unix domain socket has none).
    fn local_ip(&self) -> Option<IpAddr>;

    /// Serves the connection if `addr` is a Sidecar ingress listener; gives it back otherwise.
    fn serve_inbound(
        self,
        ctx: &Arc<ProxyContext>,
        snapshot: &Snapshot,
        addr: SocketAddr,
        peer: SocketAddr,
        http: &HttpServing,
        permit: ConnectionPermit,
    ) -> Option<(Self, ConnectionPermit)>;
}

impl Downstream for TcpStream {
    fn local_ip(&self) -> Option<IpAddr> {
        self.local_addr().ok().map(|a| a.ip())
    }

    fn serve_inbound(
        self,
        ctx: &Arc<ProxyContext>,
        snapshot: &Snapshot,
        addr: SocketAddr,
        peer: SocketAddr,
        http: &HttpServing,
        permit: ConnectionPermit,
    ) -> Option<(Self, ConnectionPermit)> {
        if snapshot.inbound_listener(addr).is_none() {
            return Some((self, permit));
        }
        tokio::spawn(crate::inbound::serve(
            ctx.clone(),
            crate::security::InboundTarget::Listener(addr),
            self,
            peer,
            http.clone(),
            permit,
        ));
        None
    }
}

impl Downstream for UnixStream {
    fn local_ip(&self) -> Option<IpAddr> {
        None
    }

    /// Sidecar ingress listeners are TCP only.
    fn serve_inbound(
        self,
        _: &Arc<ProxyContext>,
        _: &Snapshot,
        _: SocketAddr,
        _: SocketAddr,
        _: &HttpServing,
        permit: ConnectionPermit,
    ) -> Option<(Self, ConnectionPermit)> {
        Some((self, permit))
    }
}

/// Serves `stream` from `peer`, accepted on the listener keyed `addr` in the snapshot (its bound
/// address, or the key address of a unix domain socket listener).
pub(crate) fn serve<S: Downstream>(
    ctx: &Arc<ProxyContext>,
    http: &HttpServing,
    addr: SocketAddr,
    stream: S,
    peer: SocketAddr,
    permit: ConnectionPermit,
) {
    let snapshot = ctx.config.load();
    if let Some(tcp) = snapshot.as_ref().and_then(|s| s.tcp_listener(addr)) {
        tokio::spawn(permit.hold(crate::tcp_proxy::serve(
            ctx.clone(),
            tcp.clone(),
            stream,
            peer,
        )));
        return;
    }
    let (stream, permit) = match &snapshot {
        Some(s) => match stream.serve_inbound(ctx, s, addr, peer, http, permit) {
            Some(back) => back,
            None => return,
        },
        None => (stream, permit),
    };
    if snapshot
        .as_ref()
        .is_some_and(|s| s.tls_listener(addr).is_some())
    {
        tokio::spawn(crate::tls::accept::serve(
            ctx.clone(),
            addr,
            stream,
            peer,
            http.clone(),
            permit,
        ));
        return;
    }
    // The listener's graph name is the same for the whole connection.
    let source_node: Arc<str> = snapshot
        .and_then(|s| {
            s.listener(addr)
                .map(|l| sluice_telemetry::listener_source(l))
        })
        .map_or_else(|| Arc::from("unknown"), Arc::from);
    // A wildcard listener address does not say which address the client reached.
    let local = if addr.ip().is_unspecified() {
        stream
            .local_ip()
            .map_or(addr, |ip| SocketAddr::new(ip, addr.port()))
    } else {
        addr
    };
    http.serve(
        ctx.clone(),
        stream,
        Entry::Bound(addr),
        (peer, local),
        source_node,
        permit,
    );
}
