//! TCP listeners (VirtualService `tcp` rules): a connection takes the first matching rule, a
//! destination by the rule's exact split, an endpoint by the cluster's balancer, and is then
//! relayed byte for byte, with Istio's `istio_tcp_*` metrics.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use sluice_config::listener::ListenerRole;
use sluice_config::policy::{HashKey, LbPolicy};
use sluice_config::tcp_route::TcpListener;
use sluice_lb::{FailureKind, PickContext};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::handler::ProxyContext;
use crate::upstream::connect::{self, ConnectSettings};
use crate::upstream::tunnel;

/// TCP connections being relayed, so that shutdown can wait for them (up to the drain time).
#[derive(Debug, Clone, Default)]
pub struct Relays(Arc<RelayCount>);

#[derive(Debug, Default)]
struct RelayCount {
    active: AtomicUsize,
    idle: Notify,
}

/// One relay in flight; counts down on drop.
struct Relaying(Arc<RelayCount>);

impl Drop for Relaying {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Relays {
    fn track(&self) -> Relaying {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        Relaying(self.0.clone())
    }

    /// Relays in flight.
    pub fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    /// Resolves once no connection is being relayed.
    pub async fn drained(&self) {
        loop {
            let idle = self.0.idle.notified();
            if self.active() == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Serves one connection accepted on `listener`; closing it is the only answer to a failure,
/// as Envoy's TCP proxy does.
pub(crate) async fn serve<D: crate::accepted::Downstream>(
    ctx: Arc<ProxyContext>,
    listener: Arc<TcpListener>,
    mut downstream: D,
    peer: SocketAddr,
) {
    let local = downstream.local_ip().unwrap_or(listener.address.ip());
    // A TLS port's listener (a service's TLS or HTTPS port on the mesh listeners, a Sidecar
    // egress TLS port on a unix domain socket) chooses by SNI; TLS is passed through untouched.
    if listener.by_sni() {
        let hello = tokio::time::timeout(
            crate::tls::accept::CLIENT_HELLO_TIMEOUT,
            crate::tls::accept::read_client_hello(&mut downstream),
        )
        .await;
        let Ok(Ok((accepted, read))) = hello else {
            tracing::debug!(%peer, listener = %listener.name, "no TLS ClientHello; connection closed");
            return;
        };
        let sni = accepted
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        serve_after(
            ctx,
            listener,
            downstream,
            peer,
            local,
            sni.as_deref(),
            &read,
            None,
        )
        .await;
        return;
    }
    serve_after(ctx, listener, downstream, peer, local, None, &[], None).await;
}

/// Serves an intercepted outbound connection to `dst` on a service's TCP port: as [`serve`],
/// and an original-destination cluster (`resolution: NONE` without endpoints) relays to `dst`.
pub async fn serve_outbound(
    ctx: Arc<ProxyContext>,
    listener: Arc<TcpListener>,
    downstream: TcpStream,
    peer: SocketAddr,
    dst: SocketAddr,
) {
    serve_after(
        ctx,
        listener,
        downstream,
        peer,
        dst.ip(),
        None,
        &[],
        Some(dst),
    )
    .await;
}

/// Serves a connection that reached the proxy at `local`: plain TCP, or the decrypted stream of
/// a terminating TLS server. Bytes already read from it (`read`, a TLS ClientHello naming
/// `sni`, on passthrough) are sent upstream first, untouched. `original_dst` is where an
/// intercepted connection was going.
#[allow(clippy::too_many_arguments)]
pub async fn serve_after<D>(
    ctx: Arc<ProxyContext>,
    listener: Arc<TcpListener>,
    downstream: D,
    peer: SocketAddr,
    local: std::net::IpAddr,
    sni: Option<&str>,
    read: &[u8],
    original_dst: Option<SocketAddr>,
) where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let _relaying = ctx.relays.track();
    if matches!(listener.role, ListenerRole::Gateway { .. }) {
        // AuthorizationPolicy applies to what a gateway receives, never to a sidecar's
        // outbound side; a TCP connection has only its connection attributes.
        if let Some(snapshot) = ctx.config.load() {
            let facts = crate::security::ConnFacts {
                peer,
                local: SocketAddr::new(local, listener.address.port()),
                principal: None,
                sni,
            };
            if let Err(details) = crate::security::authorize_tcp(&snapshot, &facts) {
                tracing::debug!(%peer, listener = %listener.name, %details, "connection denied");
                return;
            }
        }
    }
    let Some(rule) = listener.route(peer.ip(), local, sni) else {
        tracing::debug!(%peer, listener = %listener.name, sni, "no tcp/tls rule matches; connection closed");
        return;
    };
    // As for HTTP, the DestinationRule of the first destination's host decides the hash key,
    // and the key also picks the version (sticky canary).
    let first = rule
        .forward
        .destinations
        .first()
        .and_then(|d| d.cluster.as_ref());
    let dest = match source_ip_hash(first, peer) {
        Some(h) if ctx.options.sticky_canary => rule.forward.pick_by_hash(h),
        _ => rule.forward.pick(),
    };
    let Some(dest) = dest else {
        return;
    };
    let Some(cluster) = dest.cluster.as_ref() else {
        tracing::debug!(%peer, cluster = %dest.cluster_name, "unknown cluster; connection closed");
        return;
    };
    let local = SocketAddr::new(local, listener.address.port());
    // A DYNAMIC_DNS cluster (a TLS port) goes where the ClientHello's server name resolves.
    let target = if cluster.dynamic_dns {
        match crate::dynamic_dns::sni_address(ctx.dynamic_dns.as_ref(), sni, cluster).await {
            Some(a) => Some(a),
            None => {
                tracing::debug!(%peer, cluster = %cluster.name, sni, "DYNAMIC_DNS: the server name does not resolve; connection closed");
                return;
            }
        }
    } else {
        original_dst
    };
    relay_to_cluster(&ctx, cluster, downstream, peer, local, read, target).await;
}

/// A connection has no headers, cookies or query: of the consistent-hash keys only the source
/// IP applies, as in Envoy's TCP proxy.
fn source_ip_hash(
    cluster: Option<&Arc<sluice_config::cluster::Cluster>>,
    peer: SocketAddr,
) -> Option<u64> {
    match cluster.map(|c| &c.policy.lb) {
        Some(LbPolicy::ConsistentHash(ch)) if matches!(ch.key, HashKey::SourceIp) => {
            // A unix domain socket client has no IP: no hash (a random pick, as in Envoy).
            sluice_config::pipe::peer_ip(peer)
                .map(|ip| sluice_lb::hash_key(ip.to_string().as_bytes()))
        }
        _ => None,
    }
}

/// Relays a connection from `peer` to `local` to an endpoint of `cluster` (its balancer,
/// `maxConnections`, `maxConnectionDuration`, PROXY header, outlier detection and `istio_tcp_*`
/// metrics), `read` first; an original-destination cluster relays to `original_dst` instead, and
/// so does a DYNAMIC_DNS cluster, to the address its caller resolved.
pub(crate) async fn relay_to_cluster<D>(
    ctx: &ProxyContext,
    cluster: &Arc<sluice_config::cluster::Cluster>,
    mut downstream: D,
    peer: SocketAddr,
    local: SocketAddr,
    read: &[u8],
    original_dst: Option<SocketAddr>,
) where
    D: AsyncRead + AsyncWrite + Unpin,
{
    let runtime = ctx.runtimes.get(
        &cluster.name,
        &cluster.policy.pool,
        false,
        cluster.policy.tls.as_ref(),
    );
    let Some(_connection) = runtime.try_connection() else {
        tracing::debug!(%peer, cluster = %cluster.name, "maxConnections reached (UO); connection closed");
        return;
    };
    let balancer = cluster.balancer();
    let original = original_dst
        .filter(|_| cluster.original_dst || cluster.dynamic_dns)
        .map(crate::passthrough::endpoint);
    let (index, endpoint) = match &original {
        Some(e) => (None, e),
        None => {
            let pick = PickContext::at_pick_time(sluice_lb::fresh_seed())
                .with_hash(source_ip_hash(Some(cluster), peer));
            let Some(index) = balancer.pick(&pick) else {
                tracing::debug!(%peer, cluster = %cluster.name, "no healthy endpoint; connection closed");
                return;
            };
            let Some(endpoint) = cluster.endpoints.get(index) else {
                return;
            };
            (Some(index), endpoint)
        }
    };
    let _in_flight = index.and_then(|i| balancer.start_request(i));
    let settings = ConnectSettings {
        timeout: cluster.policy.pool.connect_timeout,
        keepalive: cluster.policy.pool.tcp_keepalive,
        tls: None,
        proxy_protocol: cluster.policy.pool.proxy_protocol,
    };
    let connected = match connect::tcp(&endpoint.authority, &settings).await {
        Ok(mut s) => match connect::send_proxy_header(&mut s, &settings, Some((peer, local))).await
        {
            // `tunnel`: the endpoint is a forward proxy, asked to carry the stream first.
            Ok(()) => match &cluster.policy.pool.tunnel {
                Some(t) => tunnel::open(s, t).await,
                None => Ok((tokio_util::either::Either::Left(s), Vec::new())),
            },
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let (mut upstream, early) = match connected {
        Ok(s) => s,
        Err(reason) => {
            let ejected = index.and_then(|i| {
                balancer.record_failure(i, FailureKind::ConnectFailure, std::time::Instant::now())
            });
            if ejected.is_some() {
                ctx.telemetry
                    .proxy()
                    .cluster(&cluster.name)
                    .outlier_ejections
                    .inc();
            }
            tracing::debug!(%peer, endpoint = %endpoint.authority, %reason, "tcp upstream connect failed; connection closed");
            return;
        }
    };
    // A connection made ends the endpoint's run of consecutive failures (outlier detection).
    if let Some(i) = index {
        balancer.record_status(i, 200, std::time::Instant::now());
    }
    let series = ctx.telemetry.tcp_series(cluster, Some(endpoint));
    if let Some(s) = &series {
        s.opened();
    }
    // Bytes the tunnel proxy sent right after its answer belong to the tunnelled stream.
    if !early.is_empty() {
        if let Err(e) = downstream.write_all(&early).await {
            tracing::debug!(%peer, error = %e, "tcp relay ended");
            if let Some(s) = &series {
                s.closed();
            }
            return;
        }
    }
    if !read.is_empty() {
        if let Err(e) = upstream.write_all(read).await {
            tracing::debug!(%peer, endpoint = %endpoint.authority, error = %e, "tcp relay ended");
            if let Some(s) = &series {
                s.closed();
            }
            return;
        }
    }
    let (received, sent, outcome) = relay(
        &mut downstream,
        &mut upstream,
        cluster.policy.pool.tcp_idle_timeout,
        cluster.policy.pool.max_connection_duration,
    )
    .await;
    if let Err(e) = outcome {
        tracing::debug!(%peer, endpoint = %endpoint.authority, error = %e, "tcp relay ended");
    }
    if let Some(s) = &series {
        s.received(received.saturating_add(read.len() as u64));
        s.sent(sent.saturating_add(early.len() as u64));
        s.closed();
    }
}

/// Copies both ways until both sides are done (half-closes are passed on: a client that
/// finishes sending still gets the reply), or until nothing moved for `idle` (the cluster's
/// idle timeout; Istio's default closes a TCP connection idle for an hour). Returns the bytes
/// received from downstream and sent to it, whatever ended the relay.
pub(crate) async fn relay<D: AsyncRead + AsyncWrite + Unpin, U: AsyncRead + AsyncWrite + Unpin>(
    downstream: &mut D,
    upstream: &mut U,
    idle: Option<Duration>,
    max_duration: Option<Duration>,
) -> (u64, u64, std::io::Result<()>) {
    let started = Instant::now();
    let end = max_duration.map(|d| started + d);
    let last = AtomicU64::new(0);
    let mut down = Active::new(downstream, &last, started);
    let mut up = Active::new(upstream, &last, started);
    let outcome = {
        let copy = tokio::io::copy_bidirectional(&mut down, &mut up);
        tokio::pin!(copy);
        loop {
            let moved = Duration::from_millis(last.load(Ordering::Relaxed));
            let deadline = idle.map(|i| started + moved + i);
            tokio::select! {
                done = &mut copy => break done.map(|_| ()),
                () = sleep_until_some(end) => {
                    break Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "maxConnectionDuration reached",
                    ));
                }
                () = sleep_until_some(deadline) => {
                    let moved = Duration::from_millis(last.load(Ordering::Relaxed));
                    if let Some(i) = idle.filter(|i| started + moved + *i <= Instant::now()) {
                        break Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("idle for {i:?}"),
                        ));
                    }
                }
            }
        }
    };
    (down.read, up.read, outcome)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// A stream that notes when bytes last moved through it.
struct Active<'s, S> {
    inner: &'s mut S,
    last: &'s AtomicU64,
    started: Instant,
    /// Bytes read from it.
    read: u64,
}

impl<'s, S> Active<'s, S> {
    fn new(inner: &'s mut S, last: &'s AtomicU64, started: Instant) -> Self {
        Active {
            inner,
            last,
            started,
            read: 0,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Active<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        if n > 0 {
            this.read = this.read.saturating_add(n as u64);
            this.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Active<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}
