//! HTTP/2 upstream connections: multiplexed connections per endpoint, shared by all requests.
//!
//! Without `maxConcurrentStreams` an endpoint has one connection carrying every stream; with it,
//! a connection carrying that many streams is passed over and another one opened, as Envoy's
//! pool does. A connection is replaced when it closes, when it has carried
//! `maxRequestsPerConnection` requests, when it outlived `maxConnectionDuration`, or after it
//! stayed unused for the idle timeout; the old one finishes its streams and closes once the last
//! request handle is gone (it gets no new stream meanwhile).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::connect::{self, Target};
use super::http1_pool::{PoolSettings, SendError};
use super::reaper::Reaper;
use crate::body::Body;

/// A pool of HTTP/2 connections keyed by endpoint; cheap to clone.
#[derive(Clone)]
pub(crate) struct Http2Pool {
    inner: Arc<Inner>,
}

/// Live connections per pool key, oldest first (one unless `maxConcurrentStreams` is set).
type Conns = HashMap<Box<str>, Vec<Conn>, foldhash::fast::RandomState>;

struct Inner {
    settings: PoolSettings,
    conns: Mutex<Conns>,
    /// Under `maxConcurrentStreams`, one connection at a time is opened per key, so requests
    /// that found every connection full share the new one instead of each opening its own.
    connecting: Mutex<HashMap<Box<str>, Arc<tokio::sync::Mutex<()>>, foldhash::fast::RandomState>>,
    reaper: Reaper,
}

/// The right to open a connection for a key; the key's entry goes when nobody waits for it.
struct Turn<'a> {
    inner: &'a Inner,
    key: &'a str,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard.take();
        let mut connecting = self
            .inner
            .connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if connecting
            .get(self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            connecting.remove(self.key);
        }
    }
}

struct Conn {
    tx: http2::SendRequest<Body>,
    /// Requests sent on it so far.
    served: u32,
    /// When it was last used.
    since: Instant,
    /// When it was opened.
    born: Instant,
    /// Streams open on it, counted only under `maxConcurrentStreams`.
    streams: Option<Arc<AtomicU32>>,
}

/// One open stream of a connection whose streams are counted; frees its place on drop (with
/// the response body, or with the request when it failed).
#[derive(Debug)]
pub struct StreamSlot(Arc<AtomicU32>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StreamSlot {
    fn take(streams: &Arc<AtomicU32>) -> Self {
        streams.fetch_add(1, Ordering::AcqRel);
        StreamSlot(streams.clone())
    }
}

impl Conn {
    /// Whether it can take no new stream, ever.
    fn retired(&self, settings: &PoolSettings, now: Instant) -> bool {
        self.tx.is_closed() || settings.aged(self.born, now)
    }

    /// Whether it has room for another stream now.
    fn has_room(&self, max_streams: u32) -> bool {
        self.streams
            .as_ref()
            .is_none_or(|s| s.load(Ordering::Acquire) < max_streams)
    }
}

impl Http2Pool {
    /// An empty pool.
    pub(crate) fn new(settings: PoolSettings) -> Self {
        Http2Pool {
            inner: Arc::new(Inner {
                settings,
                conns: Mutex::new(HashMap::default()),
                connecting: Mutex::new(HashMap::default()),
                reaper: Reaper::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Conns> {
        // Every operation on the map leaves it consistent: pushes, removals and counters.
        self.inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `req` to `target` on a connection of the endpoint with room for a stream, opening
    /// one if needed; the slot (when streams are counted) must live as long as the response.
    pub(crate) async fn send(
        &self,
        target: &Target<'_>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Option<StreamSlot>), SendError> {
        let mut turn = None;
        // Bounded: a connection found closed is dropped from the pool at the next checkout.
        for _ in 0..4 {
            if let Some((mut tx, slot)) = self.checkout(target.key) {
                // Others waiting to open a connection may look again at once.
                drop(turn.take());
                match tx.try_send_request(req).await {
                    Ok(resp) => return Ok((resp, slot)),
                    Err(mut e) => match e.take_message() {
                        // The connection went away before the stream opened: another carries it.
                        Some(r) => req = r,
                        None => return Err(SendError::after_request(e.into_error())),
                    },
                }
            }
            if self.inner.settings.max_concurrent_streams == 0 || turn.is_some() {
                break;
            }
            // Wait for a connection being opened, then look again before opening one.
            turn = Some(self.turn(target.key).await);
        }
        let (mut tx, slot) = Box::pin(self.connect(target)).await?;
        drop(turn);
        let resp = tx
            .try_send_request(req)
            .await
            .map_err(SendError::of_try_send)?;
        Ok((resp, slot))
    }

    /// Waits for the right to open a connection for `key`.
    async fn turn<'a>(&'a self, key: &'a str) -> Turn<'a> {
        let lock = self
            .inner
            .connecting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.into())
            .or_default()
            .clone();
        Turn {
            inner: &self.inner,
            key,
            guard: Some(lock.lock_owned().await),
        }
    }

    /// A handle on a live connection of the endpoint with room for a stream, counting the
    /// request against its limits.
    fn checkout(&self, key: &str) -> Option<(http2::SendRequest<Body>, Option<StreamSlot>)> {
        let settings = &self.inner.settings;
        let now = Instant::now();
        let mut conns = self.lock();
        let list = conns.get_mut(key)?;
        list.retain(|c| !c.retired(settings, now));
        let Some(i) = list
            .iter()
            .position(|c| c.has_room(settings.max_concurrent_streams))
        else {
            if list.is_empty() {
                conns.remove(key);
            }
            return None;
        };
        let conn = &mut list[i];
        conn.served = conn.served.saturating_add(1);
        conn.since = now;
        let tx = conn.tx.clone();
        let slot = conn.streams.as_ref().map(StreamSlot::take);
        let max = settings.max_requests_per_connection;
        if max > 0 && conn.served >= max {
            // Its last request: later ones get another connection.
            list.remove(i);
            if list.is_empty() {
                conns.remove(key);
            }
        }
        Some((tx, slot))
    }

    async fn connect(
        &self,
        target: &Target<'_>,
    ) -> Result<(http2::SendRequest<Body>, Option<StreamSlot>), SendError> {
        let settings = &self.inner.settings;
        let stream = connect::open(target, &settings.connect)
            .await
            .map_err(SendError::Connect)?;
        let mut builder = http2::Builder::new(TokioExecutor::new());
        if let Some(ka) = settings.h2_keepalive {
            // Envoy's `connection_keepalive`: PINGs whether or not streams are open, and the
            // connection closed when one goes unanswered for the timeout.
            builder
                .timer(TokioTimer::new())
                .keep_alive_interval(ka.interval)
                .keep_alive_timeout(ka.timeout)
                .keep_alive_while_idle(true);
        }
        let (tx, conn) = builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::before_request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        let streams = (settings.max_concurrent_streams > 0).then(|| Arc::new(AtomicU32::new(0)));
        let slot = streams.as_ref().map(StreamSlot::take);
        if settings.max_requests_per_connection != 1 {
            let now = Instant::now();
            let conn = Conn {
                tx: tx.clone(),
                served: 1,
                since: now,
                born: now,
                streams,
            };
            let mut conns = self.lock();
            let list = conns.entry(target.key.into()).or_default();
            if settings.max_concurrent_streams == 0 {
                // Concurrent first requests may each open one; the last to finish is kept, the
                // others close when their streams are done.
                list.clear();
            }
            list.push(conn);
        }
        self.start_reaper();
        Ok((tx, slot))
    }

    /// Drops connections unused for the idle timeout or past `maxConnectionDuration`, so they
    /// close once their streams end.
    fn start_reaper(&self) {
        let Some(period) = self.inner.settings.reap_period() else {
            return;
        };
        self.inner.reaper.start(&self.inner, period, |inner, now| {
            let settings = &inner.settings;
            inner
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, list| {
                    list.retain(|c| !c.retired(settings, now) && !settings.expired(c.since, now));
                    !list.is_empty()
                });
        });
    }

    /// Connections held, over all endpoints.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests;
