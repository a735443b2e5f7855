//! The sidecar's interception listeners (Istio's 15001 and 15006): connections redirected by
//! `sluice iptables` arrive here and are served by their original destination.

pub mod inbound;
pub mod original_dst;
pub mod outbound;
pub mod sniff;
pub mod tcp;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::body::Body;
use crate::downstream::{self, Acceptor};
use crate::drain::Drain;
use crate::handler::ProxyContext;
use tcp::OwnConnections;

/// Which side of the sidecar a listener intercepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intercept {
    /// Connections the pod's app opens (redirected from `OUTPUT`).
    Outbound,
    /// Connections to the pod (redirected from `PREROUTING`).
    Inbound,
}

impl Intercept {
    /// The name used in logs and the traffic graph.
    pub fn name(self) -> &'static str {
        match self {
            Intercept::Outbound => "outbound",
            Intercept::Inbound => "inbound",
        }
    }
}

/// What every intercepted connection shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) ctx: Arc<ProxyContext>,
    pub(crate) drain: Drain,
    pub(crate) own: OwnConnections,
    /// The interception listener's own address: a connection whose original destination is
    /// this address was not redirected, and relaying it would loop.
    pub(crate) listen: SocketAddr,
    /// HTTP serving with the listeners' limits and drain (inbound connections).
    pub(crate) http: crate::server::HttpServing,
}

/// Accepts until shutdown, handing each connection to its side's handler in a task of its own.
pub(crate) async fn accept_loop(
    kind: Intercept,
    listener: TcpListener,
    shared: Shared,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut acceptor = Acceptor::new(shared.ctx.connections.clone(), kind.name());
    loop {
        let (stream, peer, permit) = tokio::select! {
            c = acceptor.accept(&listener) => c,
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            if is_own_connection(&shared.own, peer).await {
                tracing::error!(%peer, listener = kind.name(),
                    "the proxy's own connection was intercepted: run it under the UID or GID the interception rules exempt (1337); connection closed");
                return;
            }
            // Relayed or served, the connection counts against the budget until it ends.
            match kind {
                Intercept::Outbound => permit.hold(outbound::serve(shared, stream, peer)).await,
                Intercept::Inbound => inbound::serve(shared, stream, peer, permit).await,
            }
        });
    }
}

/// Checks twice around a yield: the relay registers its socket right after `connect` returns,
/// which can be just after this side accepted it.
async fn is_own_connection(own: &OwnConnections, peer: SocketAddr) -> bool {
    if own.contains(peer) {
        return true;
    }
    tokio::task::yield_now().await;
    own.contains(peer)
}

/// Serves HTTP/1.1 or h2c on `stream` with `handler`, with the bound listeners' limits and
/// drain.
pub(crate) async fn serve_http<F, Fut>(
    shared: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler(req).await) }
    });
    let options = &shared.ctx.options.downstream;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    downstream::configure(&mut builder, options);
    let conn = downstream::serve(&builder, options, &shared.drain, stream, svc);
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with error");
    }
}
