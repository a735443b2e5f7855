//! The idle timeout of a downstream connection: requests in flight are counted, and a connection
//! with none for the idle period is asked to close (gracefully: HTTP/2 gets a GOAWAY).
//!
//! A request is in flight from the service call until hyper drops its response body, that is
//! until the response has been sent. Counting requests rather than bytes keeps a slow upstream
//! or a quiet stream (SSE, gRPC) from being cut, as Envoy's `idle_timeout` does.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;

use crate::drain::Drain;

/// One connection's requests: how many are in flight and when the last one ended.
#[derive(Debug, Clone)]
pub(crate) struct Activity(Arc<State>);

#[derive(Debug)]
struct State {
    /// The drain the connection belongs to.
    drain: Drain,
    /// The connection speaks HTTP/2 (seen on a request).
    h2: AtomicBool,
    opened: Instant,
    in_flight: AtomicUsize,
    /// Requests begun so far; until the first, the header-read timeout bounds the wait.
    begun: AtomicU64,
    /// When the last request ended, in milliseconds since `opened`.
    last_end_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new(drain: Drain) -> Self {
        Activity(Arc::new(State {
            drain,
            h2: AtomicBool::new(false),
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            begun: AtomicU64::new(0),
            last_end_ms: AtomicU64::new(0),
        }))
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub(crate) fn begin(&self) -> InFlight {
        self.0.begun.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.0.clone())
    }

    /// Notes that the connection speaks HTTP/2.
    pub(crate) fn mark_h2(&self) {
        if !self.0.h2.load(Ordering::Relaxed) {
            self.0.h2.store(true, Ordering::Relaxed);
        }
    }

    /// Completes when the draining connection can be asked to close: at once for HTTP/2 (the
    /// GOAWAY that asks it lets in-flight streams finish and tells the client to stop), else
    /// once no request has been in flight for `quiet`. Until then, a client still sending
    /// requests gets its answers, with `Connection: close`; closing while it may be sending
    /// would reset it.
    pub(crate) async fn drained(self, quiet: Duration) {
        if self.0.h2.load(Ordering::Relaxed) {
            return;
        }
        self.closed_after(None, Some(quiet)).await;
    }

    /// When the connection will have been idle too long: `None` while a request is in flight,
    /// `Some(None)` when no timeout applies.
    fn idle_deadline(
        &self,
        first_request: Option<Duration>,
        idle: Option<Duration>,
    ) -> Option<Option<Instant>> {
        let s = &self.0;
        if s.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let deadline = if s.begun.load(Ordering::Relaxed) == 0 {
            // A connection that has not sent a request yet is waiting on its first head: the
            // header-read timeout covers it from the accept, whatever the protocol (hyper
            // starts its own HTTP/1.1 timer only once it has seen the first bytes).
            let limit = match (first_request, idle) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            limit.map(|l| s.opened + l)
        } else {
            let since = Duration::from_millis(s.last_end_ms.load(Ordering::Acquire));
            // Between HTTP/1.1 requests the proxy waits for the next head: the header-read
            // timeout bounds that wait too (as hyper's own timer would, armed per request).
            let limit = match (first_request, idle) {
                (Some(a), Some(b)) if !s.h2.load(Ordering::Relaxed) => Some(a.min(b)),
                (Some(a), None) if !s.h2.load(Ordering::Relaxed) => Some(a),
                (_, b) => b,
            };
            limit.map(|l| s.opened + since + l)
        };
        Some(deadline)
    }

    /// Completes once the connection has had no request in flight for `idle` (or no first
    /// request within `first_request`); never when both are `None`.
    pub(crate) async fn closed_after(
        self,
        first_request: Option<Duration>,
        idle: Option<Duration>,
    ) {
        // Polled again after a period when busy: one timer wake-up per idle period at most, and
        // nothing at all on the request path.
        let recheck = match (first_request, idle) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        loop {
            let now = Instant::now();
            let wake = match self.idle_deadline(first_request, idle) {
                Some(Some(deadline)) if deadline <= now => return,
                Some(Some(deadline)) => deadline,
                Some(None) => return std::future::pending().await,
                None => match recheck {
                    Some(r) => now + r,
                    None => return std::future::pending().await,
                },
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Completes once the connection, asked to close when idle, has still no request in
    /// flight `grace` later: a client holding a half-sent head open is then cut (hyper lets a
    /// connection that has read part of a head finish it first).
    pub(crate) async fn still_idle_after(self, grace: Duration) {
        loop {
            tokio::time::sleep(grace).await;
            if self.0.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
        }
    }
}

/// A request in flight on its connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<State>);

impl InFlight {
    /// Whether the proxy is draining its connections.
    pub(crate) fn draining(&self) -> bool {
        self.0.drain.is_draining()
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ended = self.0.opened.elapsed().as_millis();
        self.0
            .last_end_ms
            .fetch_max(u64::try_from(ended).unwrap_or(u64::MAX), Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until hyper drops it.
#[derive(Debug)]
pub(crate) struct Tracked<B> {
    inner: B,
    _request: InFlight,
}

impl<B> Tracked<B> {
    pub(crate) fn new(inner: B, request: InFlight) -> Self {
        Tracked {
            inner,
            _request: request,
        }
    }
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(10);
    const FIRST: Duration = Duration::from_secs(3);

    fn idle_in(a: &Activity, first: Option<Duration>, idle: Option<Duration>) -> Option<Duration> {
        match a.idle_deadline(first, idle) {
            Some(Some(d)) => Some(d.saturating_duration_since(Instant::now())),
            _ => None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_is_awaited_for_the_header_read_timeout() {
        let a = Activity::new(Drain::new());
        assert_eq!(idle_in(&a, Some(FIRST), Some(IDLE)), Some(FIRST));
        assert_eq!(idle_in(&a, None, Some(IDLE)), Some(IDLE));
        assert_eq!(idle_in(&a, None, None), None);
        let started = Instant::now();
        a.clone().closed_after(Some(FIRST), Some(IDLE)).await;
        assert_eq!(started.elapsed(), FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_in_flight_is_never_idle_and_the_period_restarts_at_its_end() {
        let a = Activity::new(Drain::new());
        let request = a.begin();
        assert!(a.idle_deadline(Some(FIRST), Some(IDLE)).is_none());
        let closed = tokio::spawn(a.clone().closed_after(Some(FIRST), Some(IDLE)));
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert!(!closed.is_finished(), "closed with a request in flight");
        drop(request);
        let ended = Instant::now();
        closed.await.unwrap();
        // Rechecked once per period while busy: closed within one period after the end. The
        // period of an HTTP/1.1 connection waiting for its next head is the header-read timeout.
        assert!(ended.elapsed() >= FIRST && ended.elapsed() <= 2 * FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_between_requests_waits_for_the_idle_timeout() {
        let a = Activity::new(Drain::new());
        a.mark_h2();
        drop(a.begin());
        assert_eq!(idle_in(&a, Some(FIRST), Some(IDLE)), Some(IDLE));
        let h1 = Activity::new(Drain::new());
        drop(h1.begin());
        assert_eq!(idle_in(&h1, Some(FIRST), Some(IDLE)), Some(FIRST));
        assert_eq!(idle_in(&h1, Some(FIRST), None), Some(FIRST));
    }

    #[tokio::test(start_paused = true)]
    async fn a_draining_http1_connection_waits_for_a_quiet_spell_and_http2_does_not() {
        const QUIET: Duration = Duration::from_millis(500);
        let a = Activity::new(Drain::new());
        let request = a.begin();
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(request);
        let ended = Instant::now();
        a.clone().drained(QUIET).await;
        assert_eq!(ended.elapsed(), QUIET);
        let h2 = Activity::new(Drain::new());
        h2.mark_h2();
        let _busy = h2.begin();
        let started = Instant::now();
        h2.clone().drained(QUIET).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn a_tracked_body_keeps_its_request_in_flight() {
        let a = Activity::new(Drain::new());
        let body = Tracked::new(http_body_util::Empty::<bytes::Bytes>::new(), a.begin());
        assert!(body.is_end_stream());
        assert_eq!(a.0.in_flight.load(Ordering::Acquire), 1);
        drop(body);
        assert_eq!(a.0.in_flight.load(Ordering::Acquire), 0);
    }
}
