//! HTTP/1.1 upstream connections, kept alive per endpoint and reused oldest-idle first.
//!
//! A request checks a connection out and checks it back in as soon as the response head
//! arrives. A connection still streaming its previous response body is not ready and is skipped,
//! so nothing waits for the body's end: no task per request, unlike hyper-util's pool, which also
//! hashes its key twice and boxes several futures per request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

use super::connect::{self, ConnectSettings};
use super::reaper::Reaper;
use crate::body::Body;

/// Idle connections one endpoint keeps at most.
const MAX_IDLE_PER_ENDPOINT: usize = 256;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(String),
    /// The connection failed before or while the response head came back.
    Reset(hyper::Error),
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
}

/// A pool of HTTP/1.1 connections keyed by endpoint authority; cheap to clone.
#[derive(Clone)]
pub(crate) struct Http1Pool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PoolSettings,
    idle: Mutex<HashMap<Box<str>, VecDeque<Conn>, foldhash::fast::RandomState>>,
    reaper: Reaper,
}

/// One connection's request handle.
struct Conn {
    tx: http1::SendRequest<Body>,
    /// Requests sent on it so far.
    served: u32,
    /// When it was last checked in.
    since: Instant,
}

impl Conn {
    /// Idle (ready for a request) for longer than `timeout`.
    fn expired(&self, timeout: Option<Duration>, now: Instant) -> bool {
        timeout.is_some_and(|t| self.tx.is_ready() && now.duration_since(self.since) >= t)
    }
}

impl Http1Pool {
    /// An empty pool.
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Http1Pool {
            inner: Arc::new(Inner {
                settings,
                idle: Mutex::new(HashMap::default()),
                reaper: Reaper::default(),
            }),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `authority` on a pooled or new connection.
    pub(crate) async fn send(
        &self,
        authority: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        while let Some(mut conn) = self.checkout(authority) {
            match conn.tx.try_send_request(req).await {
                Ok(resp) => {
                    self.checkin(authority, conn);
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request was written: another one can
                    // carry it, as hyper-util retries such requests.
                    Some(r) => req = r,
                    None => return Err(SendError::Reset(e.into_error())),
                },
            }
        }
        let mut conn = self.connect(authority).await?;
        let resp = conn.tx.send_request(req).await.map_err(SendError::Reset)?;
        self.checkin(authority, conn);
        Ok(resp)
    }

    fn lock(
        &self,
    ) -> MutexGuard<'_, HashMap<Box<str>, VecDeque<Conn>, foldhash::fast::RandomState>> {
        // The map stays consistent whatever a panicking holder did: each operation is one push
        // or pop.
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The oldest ready connection to `authority`; closed and expired ones are dropped on the way.
    fn checkout(&self, authority: &str) -> Option<Conn> {
        let now = Instant::now();
        let timeout = self.inner.settings.idle_timeout;
        let mut idle = self.lock();
        let queue = idle.get_mut(authority)?;
        for _ in 0..queue.len() {
            let conn = queue.pop_front()?;
            if conn.tx.is_closed() || conn.expired(timeout, now) {
                continue;
            }
            if conn.tx.is_ready() {
                return Some(conn);
            }
            // Still streaming its last response: look again later.
            queue.push_back(conn);
        }
        None
    }

    fn checkin(&self, authority: &str, mut conn: Conn) {
        conn.served = conn.served.saturating_add(1);
        let max = self.inner.settings.max_requests_per_connection;
        if max > 0 && conn.served >= max {
            // Dropping the last handle closes the connection once this response is done.
            return;
        }
        conn.since = Instant::now();
        let mut idle = self.lock();
        if let Some(queue) = idle.get_mut(authority) {
            if queue.len() < MAX_IDLE_PER_ENDPOINT {
                queue.push_back(conn);
            }
            return;
        }
        idle.insert(authority.into(), VecDeque::from([conn]));
    }

    async fn connect(&self, authority: &str) -> Result<Conn, SendError> {
        let stream = connect::tcp(authority, &self.inner.settings.connect)
            .await
            .map_err(SendError::Connect)?;
        // One buffer per write, like the server side (see `server::accept_loop`).
        let (tx, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Reset)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        self.start_reaper();
        Ok(Conn {
            tx,
            served: 0,
            since: Instant::now(),
        })
    }

    /// Closes idle connections past the idle timeout even when no request comes to notice them,
    /// as Envoy does.
    fn start_reaper(&self) {
        let Some(timeout) = self.inner.settings.idle_timeout else {
            return;
        };
        self.inner.reaper.start(&self.inner, timeout, |inner, now| {
            let timeout = inner.settings.idle_timeout;
            let mut idle = inner.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.retain(|_, queue| {
                queue.retain(|c| !c.tx.is_closed() && !c.expired(timeout, now));
                !queue.is_empty()
            });
        });
    }

    /// Idle and busy connections currently held, over all endpoints.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
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
            },
            idle_timeout: idle,
            max_requests_per_connection: max_requests,
        }
    }

    async fn get(pool: &Http1Pool, authority: &str) -> u16 {
        let req = Request::builder()
            .uri("/")
            .header(http::header::HOST, "app")
            .body(Body::empty())
            .unwrap();
        let resp = pool.send(authority, req).await.unwrap();
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
        match pool.send(&addr, req).await {
            Err(SendError::Connect(reason)) => assert!(reason.contains("tcp connect"), "{reason}"),
            other => panic!("expected a connect failure, got {other:?}"),
        }
    }
}
