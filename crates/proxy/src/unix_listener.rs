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
/// replaced; one that is in use is an error, as a TCP port held elsewhere is. A path starting
/// with `@` is a name in Linux's abstract namespace (as Envoy and Istio read `unix://@name`):
/// no file, gone with the listener.
pub(crate) async fn bind(path: &str) -> std::io::Result<UnixListener> {
    if let Some(name) = path.strip_prefix('@') {
        return bind_abstract(name);
    }
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

#[cfg(target_os = "linux")]
fn bind_abstract(name: &str) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

#[cfg(not(target_os = "linux"))]
fn bind_abstract(_: &str) -> std::io::Result<UnixListener> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract unix domain sockets (`unix://@name`) exist on Linux only",
    ))
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
    if path.starts_with('@') {
        return;
    }
    if let Err(e) = std::fs::remove_file(Path::new(&*path)) {
        tracing::debug!(%path, error = %e, "unix socket file not removed");
    }
}
