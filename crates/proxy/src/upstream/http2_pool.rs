//! HTTP/2 upstream connections: one multiplexed connection per endpoint, shared by all requests.
//!
//! A connection is replaced when it closes, when it has carried `maxRequestsPerConnection`
//! requests, or after it stayed unused for the idle timeout; the old one finishes its streams and
//! closes once the last request handle is gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use super::connect;
use super::http1_pool::{PoolSettings, SendError};
use super::reaper::Reaper;
use crate::body::Body;

/// A pool of HTTP/2 connections keyed by endpoint authority; cheap to clone.
#[derive(Clone)]
pub(crate) struct Http2Pool {
    inner: Arc<Inner>,
}

type Conns = HashMap<Box<str>, Conn, foldhash::fast::RandomState>;

struct Inner {
    settings: PoolSettings,
    conns: Mutex<Conns>,
    reaper: Reaper,
}

struct Conn {
    tx: http2::SendRequest<Body>,
    /// Requests sent on it so far.
    served: u32,
    /// When it was last used.
    since: Instant,
}

impl Http2Pool {
    /// An empty pool.
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Http2Pool {
            inner: Arc::new(Inner {
                settings,
                conns: Mutex::new(HashMap::default()),
                reaper: Reaper::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Conns> {
        // Every operation on the map is a single insert, lookup or removal.
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` to `authority` on the endpoint's shared connection, opening one if needed.
    pub(crate) async fn send(
        &self,
        authority: &str,
        mut req: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        if let Some(mut tx) = self.checkout(authority) {
            match tx.try_send_request(req).await {
                Ok(resp) => return Ok(resp),
                Err(mut e) => match e.take_message() {
                    // The connection went away before the stream opened: a new one carries it.
                    Some(r) => req = r,
                    None => return Err(SendError::after_request(e.into_error())),
                },
            }
        }
        let mut tx = Box::pin(self.connect(authority)).await?;
        tx.try_send_request(req)
            .await
            .map_err(SendError::of_try_send)
    }

    /// A handle on the endpoint's live connection, counting the request against its limit.
    fn checkout(&self, authority: &str) -> Option<http2::SendRequest<Body>> {
        let max = self.inner.settings.max_requests_per_connection;
        let mut conns = self.lock();
        let conn = conns.get_mut(authority)?;
        if conn.tx.is_closed() {
            conns.remove(authority);
            return None;
        }
        conn.served = conn.served.saturating_add(1);
        conn.since = Instant::now();
        let tx = conn.tx.clone();
        if max > 0 && conn.served >= max {
            // Its last request: later ones get a new connection.
            conns.remove(authority);
        }
        Some(tx)
    }

    async fn connect(&self, authority: &str) -> Result<http2::SendRequest<Body>, SendError> {
        let stream = connect::open(authority, &self.inner.settings.connect)
            .await
            .map_err(SendError::Connect)?;
        let (tx, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::before_request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        let max = self.inner.settings.max_requests_per_connection;
        if max != 1 {
            // Concurrent first requests may each open one; the last to finish is kept, the
            // others close when their streams are done.
            self.lock().insert(
                authority.into(),
                Conn {
                    tx: tx.clone(),
                    served: 1,
                    since: Instant::now(),
                },
            );
        }
        self.start_reaper();
        Ok(tx)
    }

    /// Drops connections unused for the idle timeout, so they close once their streams end.
    fn start_reaper(&self) {
        let Some(timeout) = self.inner.settings.idle_timeout else {
            return;
        };
        self.inner.reaper.start(&self.inner, timeout, |inner, now| {
            let Some(timeout) = inner.settings.idle_timeout else {
                return;
            };
            inner
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, c| !c.tx.is_closed() && now.duration_since(c.since) < timeout);
        });
    }
}
