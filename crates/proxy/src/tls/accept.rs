//! A connection on a TLS listener: read the ClientHello, choose the filter chain by SNI with the
//! config in force, then terminate TLS (HTTP inside, routed with that server's virtual hosts) or
//! relay the bytes untouched (passthrough, by the VirtualServices' `tls` rules).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::{Accepted, Acceptor};
use sluice_config::tls::{auto_passthrough_cluster, sni_matches, ChainAction, TlsListener};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_rustls::StartHandshake;

use super::errors::{io_reason, reason};
use crate::downstream::ConnectionPermit;
use crate::handler::{Entry, ProxyContext};
use crate::server::HttpServing;

/// How long a client may take to send its ClientHello (Envoy's TLS inspector waits 15 s).
pub(crate) const CLIENT_HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the rest of the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A ClientHello larger than this is refused (they are a few hundred bytes; post-quantum key
/// shares make them a few KB).
const CLIENT_HELLO_MAX: usize = 64 * 1024;

/// Reads until rustls has a whole ClientHello; returns it with the bytes read.
pub(crate) async fn read_client_hello<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(Accepted, Vec<u8>), &'static str> {
    let mut acceptor = Acceptor::default();
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|e| io_reason(&e))?;
        let Some(got) = chunk.get(..n).filter(|g| !g.is_empty()) else {
            return Err("closed_by_client");
        };
        bytes.extend_from_slice(got);
        if bytes.len() > CLIENT_HELLO_MAX {
            return Err("client_hello_too_large");
        }
        let mut rest = got;
        while !rest.is_empty() {
            match acceptor.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(_) => return Err("invalid_client_hello"),
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => return Ok((accepted, bytes)),
            Ok(None) => {}
            // Not TLS at all (plain HTTP to an HTTPS port, a scanner) or a malformed hello.
            Err((e, _alert)) => {
                return Err(match e {
                    rustls::Error::InvalidMessage(_) => "invalid_client_hello",
                    other => reason(&other),
                })
            }
        }
    }
}

/// Serves one connection accepted on the TLS listener bound at `address`; `permit` is its
/// place in the connection budget, held until it closes.
pub(crate) async fn serve<S: crate::accepted::Downstream>(
    ctx: Arc<ProxyContext>,
    address: SocketAddr,
    mut stream: S,
    peer: SocketAddr,
    http: HttpServing,
    permit: ConnectionPermit,
) {
    let fail = |ctx: &ProxyContext, why: &'static str, detail: &str| {
        ctx.tls.failures().record(
            &ctx.telemetry,
            &address.to_string(),
            why,
            &format!("{detail} (client {})", sluice_config::pipe::show_peer(peer)),
        );
    };
    let (accepted, read) =
        match tokio::time::timeout(CLIENT_HELLO_TIMEOUT, read_client_hello(&mut stream)).await {
            Ok(Ok(x)) => x,
            Ok(Err("closed_by_client")) => return,
            Ok(Err(why)) => return fail(&ctx, why, "reading the ClientHello"),
            Err(_) => return fail(&ctx, "timeout", "no ClientHello in time"),
        };
    let sni: Option<Arc<str>> = accepted
        .client_hello()
        .server_name()
        .map(|s| Arc::from(s.to_ascii_lowercase()));
    let Some(snapshot) = ctx.config.load() else {
        return;
    };
    let Some(listener): Option<&Arc<TlsListener>> = snapshot.tls_listener(address) else {
        return;
    };
    let Some(chain) = listener.chain(sni.as_deref()) else {
        let named = sni.as_deref().unwrap_or("(none)");
        return fail(
            &ctx,
            "no_matching_server",
            &format!("no server for SNI {named}"),
        );
    };
    let local = stream.local_ip().unwrap_or(address.ip());
    match &chain.action {
        ChainAction::Passthrough(tcp) => {
            let tcp = tcp.clone();
            drop(snapshot);
            let relay = crate::tcp_proxy::serve_after(
                ctx,
                tcp,
                stream,
                peer,
                local,
                sni.as_deref(),
                &read,
                None,
            );
            permit.hold(relay).await;
        }
        ChainAction::AutoPassthrough { hosts } => {
            // The SNI names the cluster; the server's hosts say which services may be reached.
            let named = sni.as_deref().and_then(auto_passthrough_cluster);
            let cluster = named.as_ref().and_then(|(name, host)| {
                hosts
                    .iter()
                    .any(|h| sni_matches(h, host))
                    .then(|| snapshot.clusters.get(name).cloned())
                    .flatten()
            });
            drop(snapshot);
            let Some(cluster) = cluster else {
                let named = sni.as_deref().unwrap_or("(none)");
                return fail(
                    &ctx,
                    "no_matching_server",
                    &format!("AUTO_PASSTHROUGH: no cluster for SNI {named}"),
                );
            };
            let local = SocketAddr::new(local, address.port());
            let relay = crate::tcp_proxy::relay_to_cluster(
                &ctx, &cluster, stream, peer, local, &read, None,
            );
            permit.hold(relay).await;
        }
        ChainAction::TerminateTcp { tls, tcp } => {
            let config = match ctx.tls.server_config(tls) {
                Ok(c) => c,
                Err(e) => return fail(&ctx, "certificate_unavailable", &e.to_string()),
            };
            let tcp = tcp.clone();
            drop(snapshot);
            let handshake = StartHandshake::from_parts(accepted, stream).into_stream(config);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(s)) => {
                    let relay = crate::tcp_proxy::serve_after(
                        ctx,
                        tcp,
                        s,
                        peer,
                        local,
                        sni.as_deref(),
                        &[],
                        None,
                    );
                    permit.hold(relay).await
                }
                Ok(Err(e)) => fail(&ctx, io_reason(&e), &e.to_string()),
                Err(_) => fail(&ctx, "timeout", "handshake not finished in time"),
            }
        }
        ChainAction::Terminate { tls, http: routes } => {
            let config = match ctx.tls.server_config(tls) {
                Ok(c) => c,
                Err(e) => return fail(&ctx, "certificate_unavailable", &e.to_string()),
            };
            let source_node: Arc<str> = Arc::from(sluice_telemetry::listener_source(routes));
            drop(snapshot);
            let handshake = StartHandshake::from_parts(accepted, stream).into_stream(config);
            let tls_stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return fail(&ctx, io_reason(&e), &e.to_string()),
                Err(_) => return fail(&ctx, "timeout", "handshake not finished in time"),
            };
            let entry = Entry::Terminated { address, sni };
            let local = SocketAddr::new(local, address.port());
            http.serve(ctx, tls_stream, entry, (peer, local), source_node, permit);
        }
    }
}
