//! Listeners on unix domain sockets (a Gateway server's or a Sidecar egress listener's
//! `bind: unix://PATH`): each connection is served as on a TCP listener (HTTP, TLS termination
//! or passthrough by SNI, TCP proxy), through the listener's key address in the snapshot. The
//! client has no IP: it is given `sluice_config::pipe::UNIX_PEER`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use sluice_config::pipe::UNIX_PEER;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::drain::Drain;
use crate::handler::ProxyContext;
use crate::server::HttpServing;

/// Binds `path`. A socket file left by a proxy that is gone (nothing accepts on it) is
/// replaced; one that is in use is an error, as a TCP port held elsewhere is.
pub(crate) async fn bind(path: &str) -> std::io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(e);
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        other => other,
    }
}

/// Accepts on `listener` until told to stop, then removes the socket file.
pub(crate) async fn accept_loop(
    listener: UnixListener,
    path: Arc<str>,
    key: SocketAddr,
    ctx: Arc<ProxyContext>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) {
    let http = HttpServing::new(drain, ctx.options.downstream.clone());
    loop {
        let accepted = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => break,
            _ = shutdown.changed() => break,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::debug!(%path, error = %e, "unix socket accept failed");
                continue;
            }
        };
        // The proxy's connection budget covers these connections too.
        let Some(permit) = ctx.connections.try_acquire() else {
            tracing::debug!(%path, "connection limit reached; unix socket connection closed");
            continue;
        };
        crate::accepted::serve(&ctx, &http, key, stream, UNIX_PEER, permit);
    }
    drop(listener);
    if let Err(e) = std::fs::remove_file(Path::new(&*path)) {
        tracing::debug!(%path, error = %e, "unix socket file not removed");
    }
}
