//! HTTP/1.1 upstream connections driven by hyper, for requests with a body: kept alive per
//! endpoint and reused oldest-idle first.
//!
//! A request checks a connection out and checks it back in as soon as the response head
//! arrives. A connection still streaming its previous response body is not ready and is skipped,
//! so nothing waits for the body's end: no task per request, unlike hyper-util's pool, which also
//! hashes its key twice and boxes several futures per request.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::connect::{self, ConnectSettings, Target};
use super::idle::{Idle, IdleConns, Verdict};
use super::reaper::Reaper;
use crate::body::{Body, BoxError};

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(String),
    /// The connection failed before or while the response head came back.
    Reset {
        /// The failure.
        error: BoxError,
        /// Some of the request had been written to the connection (Envoy's "upstream request
        /// started"): `reset-before-request` retries only when it had not.
        sent: bool,
    },
}

impl SendError {
    /// A failure before any of the request was written (a handshake, a connection that closed
    /// before it took the request).
    pub(crate) fn before_request(e: impl Into<BoxError>) -> Self {
        SendError::Reset {
            error: e.into(),
            sent: false,
        }
    }

    /// A failure after the request was handed to the connection.
    pub(crate) fn after_request(e: impl Into<BoxError>) -> Self {
        SendError::Reset {
            error: e.into(),
            sent: true,
        }
    }

    /// The failure of hyper's `try_send_request`: the request is handed back when the
    /// connection never took it.
    pub(crate) fn of_try_send<T>(mut e: hyper::client::conn::TrySendError<T>) -> Self {
        let sent = e.take_message().is_none();
        SendError::Reset {
            error: e.into_error().into(),
            sent,
        }
    }
}

/// Settings of one pool (DestinationRule `connectionPool`).
#[derive(Debug, Clone)]
pub(crate) struct PoolSettings {
    /// How connections are opened.
    pub connect: ConnectSettings,
    /// Idle connections are closed after this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Requests a connection carries before it is closed (0: unlimited).
    pub max_requests_per_connection: u32,
    /// Connections opened longer ago than this take no new request (`maxConnectionDuration`).
    pub max_connection_duration: Option<Duration>,
    /// Streams an HTTP/2 connection carries at once before another is opened (0: unlimited).
    pub max_concurrent_streams: u32,
    /// PINGs on HTTP/2 connections (`http2KeepAlive`).
    pub h2_keepalive: Option<sluice_config::policy::H2KeepAlive>,
}

impl PoolSettings {
    /// Whether a connection checked in at `since` has been idle past the idle timeout at `now`.
    pub(super) fn expired(&self, since: Instant, now: Instant) -> bool {
        self.idle_timeout
            .is_some_and(|t| now.duration_since(since) >= t)
    }

    /// Whether a connection opened at `born` has outlived `maxConnectionDuration` at `now`.
    pub(super) fn aged(&self, born: Instant, now: Instant) -> bool {
        self.max_connection_duration
            .is_some_and(|d| now.duration_since(born) >= d)
    }

    /// How often the reaper looks for idle or aged connections (`None`: no reaper). An aged
    /// connection is noticed within a quarter of the duration, as Envoy's per-connection timer
    /// would close it.
    pub(super) fn reap_period(&self) -> Option<Duration> {
        let age = self.max_connection_duration.map(|d| d / 4);
        match (self.idle_timeout, age) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A pool of HTTP/1.1 connections keyed by endpoint authority; cheap to clone.
#[derive(Clone)]
pub(crate) struct Http1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PoolSettings,
    idle: IdleConns<http1::SendRequest<Body>>,
    reaper: Reaper,
}

/// Whether a pooled connection can take a request now.
fn judge(settings: &PoolSettings, c: &Idle<http1::SendRequest<Body>>, now: Instant) -> Verdict {
    if c.conn.is_closed() {
        return Verdict::Drop;
    }
    if !c.conn.is_ready() {
        // Still streaming its last response: look again later.
        return Verdict::Skip;
    }
    if settings.expired(c.since, now) || settings.aged(c.born, now) {
        return Verdict::Drop;
    }
    Verdict::Use
}

impl Http1Pool {
    /// An empty pool.
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Http1Pool {
            inner: Arc::new(Inner {
                settings,
                idle: IdleConns::default(),
                reaper: Reaper::default(),
            }),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `target` on a pooled or new connection.
    pub(crate) async fn send(
        &self,
        target: &Target<'_>,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let settings = &self.inner.settings;
        let key = target.key;
        let now = Instant::now();
        while let Some(mut conn) = self.inner.idle.checkout(key, |c| judge(settings, c, now)) {
            match conn.conn.try_send_request(req).await {
                Ok(resp) => {
                    self.inner.idle.checkin(key, conn, settings);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request was written: another one can
                    // carry it, as hyper-util retries such requests.
                    Some(r) => req = r,
                    None => return Err(SendError::after_request(e.into_error())),
                },
            }
        }
        let mut conn = Box::pin(self.connect(target)).await?;
        let resp = conn
            .conn
            .try_send_request(req)
            .await
            .map_err(SendError::of_try_send)?;
        self.inner.idle.checkin(key, conn, settings);
        Ok(resp)
    }

    async fn connect(
        &self,
        target: &Target<'_>,
    ) -> Result<Idle<http1::SendRequest<Body>>, SendError> {
        let stream = connect::open(target, &self.inner.settings.connect)
            .await
            .map_err(SendError::Connect)?;
        // One buffer per write, like the server side (see `server::accept_loop`).
        let (tx, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::before_request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        self.start_reaper();
        Ok(Idle::new(tx))
    }

    /// Closes idle connections past the idle timeout or `maxConnectionDuration` even when no
    /// request comes to notice them, as Envoy does.
    fn start_reaper(&self) {
        let Some(period) = self.inner.settings.reap_period() else {
            return;
        };
        self.inner.reaper.start(&self.inner, period, |inner, now| {
            inner
                .idle
                .retain(|c| matches!(judge(&inner.settings, c, now), Verdict::Use | Verdict::Skip));
        });
    }

    /// Idle and busy connections currently held, over all endpoints.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.idle.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A minimal HTTP/1.1 server answering every request with `ok`, counting connections.
    async fn server() -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buf[..n]);
                        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                            seen.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn settings(idle: Option<Duration>, max_requests: u32) -> PoolSettings {
        PoolSettings {
            connect: ConnectSettings {
                timeout: Duration::from_secs(2),
                keepalive: None,
                tls: None,
                proxy_protocol: None,
            },
            idle_timeout: idle,
            max_requests_per_connection: max_requests,
            max_connection_duration: None,
            max_concurrent_streams: 0,
            h2_keepalive: None,
        }
    }

    async fn get(pool: &Http1Pool, authority: &str) -> u16 {
        let req = Request::builder()
            .uri("/")
            .header(http::header::HOST, "app")
            .body(Body::empty())
            .unwrap();
        let resp = pool.send(&Target::shared(authority), req).await.unwrap();
        let status = resp.status().as_u16();
        http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap();
        status
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (addr, accepted) = server().await;
        let pool = Http1Pool::new(settings(None, 0));
        for _ in 0..5 {
            assert_eq!(get(&pool, &addr).await, 200);
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.held(), 1);
    }

    #[tokio::test]
    async fn max_requests_per_connection_opens_new_connections() {
        let (addr, accepted) = server().await;
        let pool = Http1Pool::new(settings(None, 2));
        for _ in 0..5 {
            assert_eq!(get(&pool, &addr).await, 200);
        }
        // Requests 1-2, 3-4 and 5 each had a connection of their own.
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn idle_connections_are_reaped() {
        let (addr, accepted) = server().await;
        let pool = Http1Pool::new(settings(Some(Duration::from_millis(50)), 0));
        assert_eq!(get(&pool, &addr).await, 200);
        assert_eq!(pool.held(), 1);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pool.held() > 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(pool.held(), 0, "the reaper dropped the idle connection");
        assert_eq!(get(&pool, &addr).await, 200);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_closed_by_the_server_is_replaced() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Answers one request per connection, then closes it without saying so.
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                });
            }
        });
        let pool = Http1Pool::new(settings(None, 0));
        for _ in 0..3 {
            assert_eq!(get(&pool, &addr).await, 200);
            // Let the client side see the close before the next checkout.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn connect_failure_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let pool = Http1Pool::new(settings(None, 0));
        let req = Request::builder()
            .uri("/")
            .header(http::header::HOST, "app")
            .body(Body::empty())
            .unwrap();
        match pool.send(&Target::shared(&addr), req).await {
            Err(SendError::Connect(reason)) => assert!(reason.contains("tcp connect"), "{reason}"),
            other => panic!("expected a connect failure, got {other:?}"),
        }
    }
}
