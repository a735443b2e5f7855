//! Plain TCP relaying to a fixed address (Istio's `PassthroughCluster` and inbound passthrough),
//! and the guard against relaying our own redirected connections back to ourselves.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpStream;

/// Istio's default upstream connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Local addresses of the proxy's own relayed connections. If the proxy runs under a UID the
/// interception rules do not exempt, its upstream connections are redirected back to it; seeing
/// one of these as a peer tells that loop apart from a client and ends it.
#[derive(Debug, Default, Clone)]
pub struct OwnConnections(Arc<Mutex<HashSet<SocketAddr>>>);

impl OwnConnections {
    fn with<T>(&self, f: impl FnOnce(&mut HashSet<SocketAddr>) -> T) -> T {
        match self.0.lock() {
            Ok(mut set) => f(&mut set),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Whether `peer` is one of the proxy's own relayed connections.
    pub fn contains(&self, peer: SocketAddr) -> bool {
        self.with(|s| s.contains(&peer))
    }
}

/// Removes an address from [`OwnConnections`] when the relay ends.
struct Registered(OwnConnections, Option<SocketAddr>);

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(a) = self.1 {
            self.0.with(|s| s.remove(&a));
        }
    }
}

/// Connects to `dst` and copies bytes both ways until either side closes.
pub async fn relay(downstream: TcpStream, dst: SocketAddr, own: &OwnConnections) {
    relay_after(downstream, dst, own, &[]).await;
}

/// [`relay`] for a connection whose first bytes (`read`) were already taken from it: they go
/// first.
pub async fn relay_after<D>(mut downstream: D, dst: SocketAddr, own: &OwnConnections, read: &[u8])
where
    D: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(dst)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%dst, error = %e, "passthrough connect failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%dst, "passthrough connect timed out");
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let local = upstream.local_addr().ok();
    if let Some(a) = local {
        own.with(|s| s.insert(a));
    }
    let _registered = Registered(own.clone(), local);
    if !read.is_empty() {
        if let Err(e) = tokio::io::AsyncWriteExt::write_all(&mut upstream, read).await {
            tracing::debug!(%dst, error = %e, "passthrough connection ended with error");
            return;
        }
    }
    if let Err(e) = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await {
        tracing::debug!(%dst, error = %e, "passthrough connection ended with error");
    }
}
