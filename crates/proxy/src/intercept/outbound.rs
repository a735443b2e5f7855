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
    if let Some(tls) = snapshot
        .as_ref()
        .and_then(|s| s.outbound.tls_listener(dst.port()))
    {
        let tls = tls.clone();
        drop(snapshot);
        match sniff(&stream, TLS_FIRST_BYTES).await {
            Sniffed::Tls => return route_tls(shared, tls, stream, peer, dst).await,
            Sniffed::Closed => return,
            // Not TLS after all: served as the port would be without `tls` rules.
            _ => {}
        }
        return serve_plain(shared, stream, peer, dst).await;
    }
    drop(snapshot);
    serve_plain(shared, stream, peer, dst).await;
}

/// How long a connection to a port with `tls` rules may stay silent before it is served as
/// the port would be without them.
const TLS_FIRST_BYTES: Duration = Duration::from_secs(10);

/// A ClientHello to a port with sidecar `tls` rules: the first rule whose SNI (and subnets)
/// match picks the destination; with none, the connection goes where it was going.
async fn route_tls(
    shared: Shared,
    tls: Arc<sluice_config::tcp_route::TcpListener>,
    mut stream: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
) {
    let read = tokio::time::timeout(
        crate::tls::accept::CLIENT_HELLO_TIMEOUT,
        crate::tls::accept::read_client_hello(&mut stream),
    )
    .await;
    let Ok(Ok((hello, read))) = read else {
        tracing::debug!(%peer, %dst, "no complete ClientHello; connection closed");
        return;
    };
    let sni = hello
        .client_hello()
        .server_name()
        .map(str::to_ascii_lowercase);
    if tls.route(peer.ip(), dst.ip(), sni.as_deref()).is_some() {
        crate::tcp_proxy::serve_after(
            shared.ctx.clone(),
            tls,
            stream,
            peer,
            dst.ip(),
            sni.as_deref(),
            &read,
            Some(dst),
        )
        .await;
    } else {
        if !black_holed(&shared, peer, dst) {
            relay_unknown(&shared, stream, peer, dst, &read).await;
        }
    }
}

/// An intercepted connection without `tls` rules for its port: a service's TCP rules, HTTP by
/// Host, or passthrough.
async fn serve_plain(shared: Shared, stream: TcpStream, peer: SocketAddr, dst: SocketAddr) {
    let snapshot = shared.ctx.config.load();
    if let Some(tcp) = snapshot.as_ref().and_then(|s| s.outbound.tcp_listener(dst)) {
        // A TCP port of a service: its `tcp` rules choose the destination.
        crate::tcp_proxy::serve_outbound(shared.ctx.clone(), tcp.clone(), stream, peer, dst).await;
        return;
    }
    let mesh = snapshot.and_then(|s| {
        s.outbound_listener(dst)
            .map(|l| sluice_telemetry::listener_source(l))
    });
    let Some(source_node) = mesh else {
        if !black_holed(&shared, peer, dst) {
            relay_unknown(&shared, stream, peer, dst, &[]).await;
        }
        return;
    };
    match sniff(&stream, HTTP_PORT_FIRST_BYTES).await {
        Sniffed::Http | Sniffed::Silent => {}
        Sniffed::Other | Sniffed::Tls => {
            if !black_holed(&shared, peer, dst) {
                relay_unknown(&shared, stream, peer, dst, &[]).await;
            }
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
            (peer, dst),
            source_node.clone(),
            req,
        ))
    })
    .await;
    drop(connection);
}

/// A connection no service claims: relayed to the Sidecar's `egressProxy` cluster when there
/// is one (Istio replaces the `PassthroughCluster` with it), else to where it was going.
async fn relay_unknown(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
    read: &[u8],
) {
    let egress = shared
        .ctx
        .config
        .load()
        .and_then(|s| s.outbound.egress_proxy.clone());
    match egress {
        Some(cluster) => {
            crate::tcp_proxy::relay_to_cluster(&shared.ctx, &cluster, stream, peer, dst, read, None)
                .await
        }
        None => tcp::relay_after(stream, dst, &shared.own, read).await,
    }
}

/// Whether the outbound traffic policy is `REGISTRY_ONLY`, so a connection no service claims
/// is closed (Istio's `BlackHoleCluster`) instead of passing through.
fn black_holed(shared: &Shared, peer: SocketAddr, dst: SocketAddr) -> bool {
    let refused = shared
        .ctx
        .config
        .load()
        .as_ref()
        .is_some_and(|s| s.outbound.black_hole.is_some());
    if refused {
        tracing::debug!(%peer, %dst, "destination outside the registry under REGISTRY_ONLY; connection closed (BlackHoleCluster)");
    }
    refused
}
