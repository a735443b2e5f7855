//! Outbound interception (Istio's 15001): a connection the app opened is served as the mesh
//! listener of its original destination port would serve it (HTTP by Host, a service's TCP
//! port by its `tcp` rules), or passes through unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use super::original_dst::original_dst;
use super::sniff::{sniff, Sniffed};
use super::{serve_http, tcp, Shared};
use crate::handler::{handle, Entry};

/// How long a connection to an HTTP service port may stay silent before it is served as HTTP
/// anyway (the port is declared HTTP; the client may just be slow to send).
const HTTP_PORT_FIRST_BYTES: Duration = Duration::from_secs(60);

/// Serves one intercepted outbound connection.
pub(crate) async fn serve(shared: Shared, stream: TcpStream, peer: SocketAddr) {
    let dst = match original_dst(&stream) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "outbound connection without an original destination; closed");
            return;
        }
    };
    if dst == shared.listen || stream.local_addr().is_ok_and(|l| l == dst) {
        // Connected to the outbound port directly: relaying to the "original" destination would
        // come straight back here.
        tracing::debug!(%peer, %dst, "connection to the outbound listener itself; closed");
        return;
    }
    let snapshot = shared.ctx.config.load();
    if let Some(tcp) = snapshot.as_ref().and_then(|s| s.outbound.tcp_listener(dst)) {
        // A TCP port of a service: its `tcp` rules choose the destination.
        crate::tcp_proxy::serve(shared.ctx.clone(), tcp.clone(), stream, peer).await;
        return;
    }
    let mesh = snapshot.and_then(|s| {
        s.outbound_listener(dst)
            .map(|l| sluice_telemetry::listener_source(l))
    });
    let Some(source_node) = mesh else {
        tcp::relay(stream, dst, &shared.own).await;
        return;
    };
    match sniff(&stream, HTTP_PORT_FIRST_BYTES).await {
        Sniffed::Http | Sniffed::Silent => {}
        Sniffed::Other => {
            tcp::relay(stream, dst, &shared.own).await;
            return;
        }
        Sniffed::Closed => return,
    }
    let source_node: Arc<str> = Arc::from(source_node);
    let ctx = shared.ctx.clone();
    let connection = ctx.telemetry.proxy().downstream_connection();
    serve_http(&shared, stream, peer, move |req| {
        // Boxed like the bound listeners' requests: hyper moves the (large) future around.
        Box::pin(handle(
            ctx.clone(),
            Entry::Outbound(dst),
            peer,
            source_node.clone(),
            req,
        ))
    })
    .await;
    drop(connection);
}
