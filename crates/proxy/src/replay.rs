//! A request body recorded as it streams, so that retries can replay it and mirrors can copy it.
//!
//! The primary attempt forwards frames as they arrive (nothing waits for the whole body: gRPC
//! client streams keep working). Frames are kept up to a cap; a retry gets a cursor that replays
//! the kept frames and then continues with the live source. Only the primary's cursors (the
//! attempt, its retries) read from the client: a mirror's cursor follows, reading what the
//! primary has read and waiting at the live edge, so a fast mirror never pulls the body ahead
//! and a slow primary is never overtaken. Past the cap the frames the primary has consumed are
//! released: no more retries, and a mirror that still needed them fails, which drops that copy
//! instead of slowing the primary.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

use crate::error::DownstreamFailure;

/// Default cap of the replay buffer (Envoy's per-request buffer limit is 1 MiB by default).
pub const DEFAULT_REPLAY_CAP: usize = 1024 * 1024;

#[derive(Debug)]
enum Item {
    Data(Bytes),
    Trailers(HeaderMap),
}

#[derive(Debug)]
struct Shared {
    source: Option<Incoming>,
    /// Frames read so far, from index `released` on (earlier ones were released at overflow).
    frames: Vec<Item>,
    released: usize,
    kept_bytes: usize,
    cap: usize,
    overflowed: bool,
    ended: bool,
    /// The client's body failed: how, and the message.
    error: Option<(DownstreamFailure, String)>,
    waiters: Vec<Waker>,
}

/// A body source shared by the primary attempt, its retries and mirror copies.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// `None` for a body that had ended before it was recorded (most requests): nothing to
    /// share, so nothing is allocated or locked.
    shared: Option<Arc<Mutex<Shared>>>,
}

/// Errors a cursor can report.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The source failed.
    #[error("request body: {0}")]
    Source(String),
    /// Frames this cursor needed were released after the buffer cap was reached.
    #[error("request body exceeded the replay buffer")]
    Overflow,
}

impl Recorder {
    /// Records `source`, keeping at most `cap` bytes for replay.
    pub fn new(source: Incoming, cap: usize) -> Self {
        if source.is_end_stream() {
            return Recorder { shared: None };
        }
        Recorder {
            shared: Some(Arc::new(Mutex::new(Shared {
                source: Some(source),
                frames: Vec::new(),
                released: 0,
                kept_bytes: 0,
                cap,
                overflowed: false,
                ended: false,
                error: None,
                waiters: Vec::new(),
            }))),
        }
    }

    /// The shared state; `None` for an empty body.
    fn lock(&self) -> Option<std::sync::MutexGuard<'_, Shared>> {
        self.shared.as_ref().map(|m| match m.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        })
    }

    /// A cursor reading the body from the start for the primary attempt or a retry: it reads
    /// from the client when it reaches the live edge.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            recorder: self.clone(),
            position: 0,
            leads: true,
        }
    }

    /// A cursor for a mirror copy: it reads only what the primary has read, and waits for it
    /// at the live edge.
    pub fn follower(&self) -> Cursor {
        Cursor {
            recorder: self.clone(),
            position: 0,
            leads: false,
        }
    }

    /// Whether a new cursor could still replay the whole body.
    pub fn replayable(&self) -> bool {
        self.lock()
            .is_none_or(|s| !s.overflowed && s.error.is_none())
    }

    /// Whether the body is known to be empty: it ended without a frame.
    pub fn is_empty(&self) -> bool {
        self.lock()
            .is_none_or(|s| s.ended && s.error.is_none() && s.released == 0 && s.frames.is_empty())
    }

    /// Whether the whole body has been read from the client.
    pub fn complete(&self) -> bool {
        self.lock().is_none_or(|s| s.ended)
    }

    /// How reading the client's body failed, if it did: an upstream exchange that failed after
    /// this is the client's doing, not the upstream's.
    pub fn downstream_failure(&self) -> Option<(DownstreamFailure, String)> {
        self.lock().and_then(|s| s.error.clone())
    }
}

/// One reader of a recorded body.
#[derive(Debug)]
pub struct Cursor {
    recorder: Recorder,
    position: usize,
    /// Whether this cursor may read from the client (the primary's), or follows.
    leads: bool,
}

impl Cursor {
    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        let Some(mut s) = self.recorder.lock() else {
            return Poll::Ready(None);
        };
        loop {
            if self.position < s.released {
                return Poll::Ready(Some(Err(ReplayError::Overflow)));
            }
            let index = self.position - s.released;
            if let Some(item) = s.frames.get(index) {
                self.position += 1;
                let frame = match item {
                    Item::Data(b) => Frame::data(b.clone()),
                    Item::Trailers(t) => Frame::trailers(t.clone()),
                };
                return Poll::Ready(Some(Ok(frame)));
            }
            if let Some((_, e)) = &s.error {
                return Poll::Ready(Some(Err(ReplayError::Source(e.clone()))));
            }
            if s.ended {
                return Poll::Ready(None);
            }
            if !self.leads {
                // A follower at the live edge waits for the primary to read on.
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            // This cursor is at the live edge: read the next frame from the client.
            let Some(source) = s.source.as_mut() else {
                return Poll::Ready(None);
            };
            match Pin::new(source).poll_frame(cx) {
                Poll::Pending => {
                    if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        s.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(next) => {
                    match next {
                        None => {
                            s.ended = true;
                            s.source = None;
                        }
                        Some(Err(e)) => {
                            s.error = Some((DownstreamFailure::of(&e), e.to_string()));
                        }
                        Some(Ok(frame)) => {
                            let item = match frame.into_data() {
                                Ok(data) => {
                                    s.kept_bytes += data.len();
                                    Item::Data(data)
                                }
                                Err(frame) => match frame.into_trailers() {
                                    Ok(t) => Item::Trailers(t),
                                    Err(_) => continue,
                                },
                            };
                            s.frames.push(item);
                            if s.kept_bytes > s.cap && !s.overflowed {
                                s.overflowed = true;
                            }
                        }
                    }
                    // Other cursors parked on the source registered their wakers with us; the
                    // source itself only remembers the last one.
                    for w in s.waiters.drain(..) {
                        if !w.will_wake(cx.waker()) {
                            w.wake();
                        }
                    }
                    if s.overflowed {
                        // Keep only what this cursor (the primary's, the only one that reads
                        // from the client, so the most advanced) has not read yet.
                        let keep_from = index;
                        if keep_from > 0 {
                            s.frames.drain(..keep_from);
                            s.released += keep_from;
                        }
                        s.kept_bytes = 0;
                    }
                }
            }
        }
    }
}

impl HttpBody for Cursor {
    type Data = Bytes;
    type Error = ReplayError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ReplayError>>> {
        self.get_mut().poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.recorder.lock().is_none_or(|s| {
            s.ended && s.error.is_none() && self.position >= s.released + s.frames.len()
        })
    }

    fn size_hint(&self) -> SizeHint {
        let Some(s) = self.recorder.lock() else {
            return SizeHint::with_exact(0);
        };
        match &s.source {
            Some(src) if self.position == 0 && s.frames.is_empty() => src.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::future::poll_fn;
    use std::time::Duration;

    use http_body_util::StreamBody;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    /// A real request body as the proxy gets it: an HTTP/1.1 exchange over an in-memory pipe.
    /// Returns the server side's `Incoming`, the client's chunk sender (drop it to end the
    /// body) and a guard that keeps the exchange open.
    async fn incoming() -> (Incoming, mpsc::Sender<Bytes>, oneshot::Sender<()>) {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let (body_tx, body_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let done_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(done_rx)));
        let body_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(body_tx)));
        tokio::spawn(async move {
            let svc = service_fn(move |req: http::Request<Incoming>| {
                let body_tx = body_tx.clone();
                let done_rx = done_rx.clone();
                async move {
                    if let Some(tx) = body_tx.lock().unwrap().take() {
                        let _ = tx.send(req.into_body());
                    }
                    if let Some(rx) = done_rx.lock().await.take() {
                        let _ = rx.await;
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server_io), svc)
                .await;
        });
        let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(64);
        let stream = futures_util::stream::unfold(chunk_rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
        });
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client_io))
            .await
            .unwrap();
        tokio::spawn(conn);
        tokio::spawn(async move {
            let req = http::Request::post("/")
                .header("transfer-encoding", "chunked")
                .body(StreamBody::new(stream))
                .unwrap();
            let _ = sender.send_request(req).await;
        });
        (body_rx.await.unwrap(), chunk_tx, done_tx)
    }

    async fn next(c: &mut Cursor) -> Option<Result<Bytes, String>> {
        let frame = tokio::time::timeout(Duration::from_secs(5), poll_fn(|cx| c.poll_next(cx)))
            .await
            .expect("cursor stalled")?;
        Some(
            frame
                .map(|f| f.into_data().unwrap_or_default())
                .map_err(|e| e.to_string()),
        )
    }

    /// Whether the cursor would wait (nothing ready for it now).
    fn waits(c: &mut Cursor) -> bool {
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        c.poll_next(&mut cx).is_pending()
    }

    fn chunk(i: u8) -> Bytes {
        Bytes::from(vec![i; 8])
    }

    #[tokio::test]
    async fn a_follower_waits_for_the_primary_and_never_reads_ahead() {
        let (body, tx, _done) = incoming().await;
        let r = Recorder::new(body, 1024);
        let mut primary = r.cursor();
        let mut mirror = r.follower();
        tx.send(chunk(1)).await.unwrap();
        tx.send(chunk(2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The client sent two chunks, but the primary has read none: the mirror waits.
        assert!(waits(&mut mirror));
        assert_eq!(next(&mut primary).await.unwrap().unwrap(), chunk(1));
        assert_eq!(next(&mut mirror).await.unwrap().unwrap(), chunk(1));
        assert!(waits(&mut mirror));
        assert_eq!(next(&mut primary).await.unwrap().unwrap(), chunk(2));
        assert_eq!(next(&mut mirror).await.unwrap().unwrap(), chunk(2));
        drop(tx);
        assert!(next(&mut primary).await.is_none());
        assert!(next(&mut mirror).await.is_none());
    }

    /// A mirror reading fast and a primary reading slowly, past the cap: the primary gets the
    /// whole body (it used to fail once the mirror had pulled past the cap).
    #[tokio::test]
    async fn a_slow_primary_is_never_overtaken_past_the_cap() {
        let (body, tx, _done) = incoming().await;
        let r = Recorder::new(body, 16);
        let mut primary = r.cursor();
        let mut mirror = r.follower();
        for i in 0..6 {
            tx.send(chunk(i)).await.unwrap();
        }
        drop(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut got = Vec::new();
        for _ in 0..6 {
            // The mirror tries first each time, and waits.
            assert!(waits(&mut mirror));
            got.push(next(&mut primary).await.unwrap().unwrap());
            assert!(next(&mut mirror).await.unwrap().is_ok());
        }
        assert_eq!(got, (0..6).map(chunk).collect::<Vec<_>>());
        assert!(next(&mut primary).await.is_none());
        assert!(next(&mut mirror).await.is_none());
    }

    /// A mirror that falls behind by more than the cap fails (its copy is dropped) while the
    /// primary goes on; after the cap, no retry can replay the body.
    #[tokio::test]
    async fn a_follower_behind_the_cap_fails_and_retries_stop() {
        let (body, tx, _done) = incoming().await;
        let r = Recorder::new(body, 16);
        let mut primary = r.cursor();
        let mut mirror = r.follower();
        for i in 0..5 {
            tx.send(chunk(i)).await.unwrap();
        }
        drop(tx);
        for i in 0..5 {
            assert_eq!(next(&mut primary).await.unwrap().unwrap(), chunk(i));
        }
        assert!(next(&mut primary).await.is_none());
        assert!(!r.replayable());
        let err = next(&mut mirror).await.unwrap().unwrap_err();
        assert!(err.contains("replay buffer"), "{err}");
    }

    /// Under the cap a retry replays what was read, then continues with the live body.
    #[tokio::test]
    async fn a_retry_replays_then_continues_live() {
        let (body, tx, _done) = incoming().await;
        let r = Recorder::new(body, 1024);
        let mut first = r.cursor();
        tx.send(chunk(1)).await.unwrap();
        assert_eq!(next(&mut first).await.unwrap().unwrap(), chunk(1));
        drop(first);
        assert!(r.replayable());
        let mut retry = r.cursor();
        let mut mirror = r.follower();
        assert_eq!(next(&mut retry).await.unwrap().unwrap(), chunk(1));
        tx.send(chunk(2)).await.unwrap();
        assert_eq!(next(&mut retry).await.unwrap().unwrap(), chunk(2));
        assert_eq!(next(&mut mirror).await.unwrap().unwrap(), chunk(1));
        assert_eq!(next(&mut mirror).await.unwrap().unwrap(), chunk(2));
        drop(tx);
        assert!(next(&mut retry).await.is_none());
        assert!(r.complete());
        assert!(next(&mut mirror).await.is_none());
    }
}
