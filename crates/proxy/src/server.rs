//! Listeners: bind what the snapshot asks for, serve HTTP/1.1 and h2c, drain on shutdown.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;

use crate::downstream::ConnectionPermit;
use crate::drain::Drain;
use crate::handler::{handle, Entry, ProxyContext};
use crate::intercept::{self, Intercept};

/// Binds and unbinds listeners to follow the active snapshot.
pub struct ListenerManager {
    ctx: Arc<ProxyContext>,
    active: HashMap<SocketAddr, watch::Sender<bool>>,
    /// Unix domain socket listeners by path.
    active_unix: HashMap<Arc<str>, watch::Sender<bool>>,
    drain: Drain,
    shutdown: watch::Sender<bool>,
    own: intercept::tcp::OwnConnections,
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl ListenerManager {
    /// A manager with nothing bound.
    pub fn new(ctx: Arc<ProxyContext>) -> Self {
        let (shutdown, _) = watch::channel(false);
        ListenerManager {
            ctx,
            active: HashMap::new(),
            active_unix: HashMap::new(),
            drain: Drain::new(),
            shutdown,
            own: Default::default(),
        }
    }

    /// Bound addresses.
    pub fn bound(&self) -> Vec<SocketAddr> {
        self.active.keys().copied().collect()
    }

    /// Binds every address of `wanted` not bound yet, closing nothing; returns the addresses
    /// that could not be bound, with the reason (and who holds the port, when known).
    pub fn bind_missing(&mut self, wanted: &[SocketAddr]) -> BTreeMap<SocketAddr, String> {
        let mut errors = BTreeMap::new();
        for addr in wanted {
            if self.active.contains_key(addr) {
                continue;
            }
            match bind(*addr) {
                Ok(l) => {
                    tracing::info!(%addr, "listening");
                    let (stop_tx, stop_rx) = watch::channel(false);
                    self.active.insert(*addr, stop_tx);
                    tokio::spawn(accept_loop(
                        l,
                        *addr,
                        self.ctx.clone(),
                        stop_rx,
                        self.shutdown.subscribe(),
                        self.drain.clone(),
                    ));
                }
                Err(e) => {
                    let holder = crate::port_owner::describe(*addr);
                    tracing::error!(%addr, error = %e, holder = holder.as_deref().unwrap_or("unknown"), "cannot bind listener");
                    let why = match holder {
                        Some(h) => format!("{e} (held by {h})"),
                        None => e.to_string(),
                    };
                    errors.insert(*addr, why);
                }
            }
        }
        errors
    }

    /// Closes the listeners whose address is not in `wanted` (their open connections keep
    /// going).
    pub fn close_unwanted(&mut self, wanted: &[SocketAddr]) {
        self.active.retain(|addr, stop| {
            let keep = wanted.contains(addr);
            if !keep {
                let _ = stop.send(true);
                tracing::info!(%addr, "listener removed");
            }
            keep
        });
    }

    /// Binds every unix domain socket of `wanted` (path, key address of its listener) not
    /// bound yet; returns the paths that could not be bound, with the reason.
    pub async fn bind_unix_missing(
        &mut self,
        wanted: &[(Arc<str>, SocketAddr)],
    ) -> BTreeMap<String, String> {
        let mut errors = BTreeMap::new();
        for (path, key) in wanted {
            if self.active_unix.contains_key(path) {
                continue;
            }
            match crate::unix_listener::bind(path).await {
                Ok(l) => {
                    tracing::info!(%path, "listening on unix socket");
                    let (stop_tx, stop_rx) = watch::channel(false);
                    self.active_unix.insert(path.clone(), stop_tx);
                    tokio::spawn(crate::unix_listener::accept_loop(
                        l,
                        path.clone(),
                        *key,
                        self.ctx.clone(),
                        stop_rx,
                        self.shutdown.subscribe(),
                        self.drain.clone(),
                    ));
                }
                Err(e) => {
                    tracing::error!(%path, error = %e, "cannot bind unix socket listener");
                    errors.insert(format!("unix://{path}"), e.to_string());
                }
            }
        }
        errors
    }

    /// Closes the unix domain socket listeners whose path is not in `wanted`.
    pub fn close_unwanted_unix(&mut self, wanted: &[(Arc<str>, SocketAddr)]) {
        self.active_unix.retain(|path, stop| {
            let keep = wanted.iter().any(|(p, _)| p == path);
            if !keep {
                let _ = stop.send(true);
                tracing::info!(%path, "unix socket listener removed");
            }
            keep
        });
    }

    /// Binds a sidecar interception listener (outbound or inbound) at `addr`; it is not part of
    /// the snapshot's listeners, so reloads leave it alone. Returns the bound address.
    pub fn intercept(&mut self, kind: Intercept, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = bind(addr)?;
        let listen = listener.local_addr()?;
        tracing::info!(%listen, listener = kind.name(), "intercepting");
        let shared = intercept::Shared {
            ctx: self.ctx.clone(),
            drain: self.drain.clone(),
            own: self.own.clone(),
            listen,
            http: HttpServing::new(self.drain.clone(), self.ctx.options.downstream.clone()),
        };
        tokio::spawn(intercept::accept_loop(
            kind,
            listener,
            shared,
            self.shutdown.subscribe(),
        ));
        Ok(listen)
    }

    /// Stops accepting everywhere and waits (up to `drain`) for in-flight requests and relayed
    /// TCP connections.
    pub async fn shutdown(self, drain: Duration) {
        let _ = self.shutdown.send(true);
        drop(self.active);
        drop(self.active_unix);
        let relays = self.ctx.relays.clone();
        let deadline = tokio::time::Instant::now() + drain;
        let connections = self.drain;
        let http = async move {
            if tokio::time::timeout_at(deadline, connections.shutdown())
                .await
                .is_err()
            {
                tracing::warn!("drain timeout reached with requests still in flight");
            }
        };
        let tcp = async move {
            if tokio::time::timeout_at(deadline, relays.drained())
                .await
                .is_err()
            {
                tracing::warn!("drain timeout reached with TCP connections still open");
            }
        };
        tokio::join!(http, tcp);
    }
}

/// What serving HTTP on an accepted connection needs: hyper's builder, the downstream limits
/// and the drain.
#[derive(Clone)]
pub(crate) struct HttpServing {
    builder: auto::Builder<TokioExecutor>,
    limits: crate::downstream::DownstreamOptions,
    drain: Drain,
}

impl HttpServing {
    pub(crate) fn new(drain: Drain, limits: crate::downstream::DownstreamOptions) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Heads and bodies copied into one buffer and written with one `write`: for the small
        // messages most requests carry this is cheaper than queueing them for `writev` (2 % fewer
        // instructions per proxied request), and large bodies still go out in buffer-sized writes.
        builder.http1().writev(false);
        crate::downstream::configure(&mut builder, &limits);
        HttpServing {
            builder,
            limits,
            drain,
        }
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` (plain TCP or terminated TLS) until it closes or the
    /// proxy drains; each request is handled as arriving through `entry`.
    pub(crate) fn serve<I>(
        &self,
        ctx: Arc<ProxyContext>,
        io: I,
        entry: Entry,
        (peer, local): (SocketAddr, SocketAddr),
        source_node: Arc<str>,
        permit: ConnectionPermit,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let connection = ctx.telemetry.proxy().downstream_connection();
        let svc = service_fn(move |req| {
            let ctx = ctx.clone();
            let source_node = source_node.clone();
            let entry = entry.clone();
            // Boxed: the request future is several KB and hyper moves it while dispatching.
            async move {
                Ok::<_, Infallible>(
                    Box::pin(handle(ctx, entry, (peer, local), source_node, req)).await,
                )
            }
        });
        let conn = crate::downstream::serve(&self.builder, &self.limits, &self.drain, io, svc);
        tokio::spawn(async move {
            let _connection = (connection, permit);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with error");
            }
        });
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    ctx: Arc<ProxyContext>,
    mut stop: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    drain: Drain,
) {
    let http = HttpServing::new(drain, ctx.options.downstream.clone());
    let mut acceptor = crate::downstream::Acceptor::new(ctx.connections.clone(), addr.to_string());
    loop {
        let (stream, peer, permit) = tokio::select! {
            c = acceptor.accept(&listener) => c,
            _ = stop.changed() => break,
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        crate::accepted::serve(&ctx, &http, addr, stream, peer, permit);
    }
}
