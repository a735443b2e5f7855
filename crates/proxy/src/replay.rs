//! A request body recorded as it streams, so that retries can replay it and mirrors can copy it.
//!
//! The primary attempt forwards frames as they arrive (nothing waits for the whole body: gRPC
//! client streams keep working). Frames are kept up to a cap; a retry or a mirror gets a cursor that
//! replays the kept frames and then continues with the live source. Past the cap the kept frames
//! are released: no more retries, and a cursor that still needed them (a slow mirror) fails, which
//! drops that copy instead of slowing the primary.

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

    /// A cursor reading the body from the start.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            recorder: self.clone(),
            position: 0,
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
                        // Keep only what this (the most advanced) cursor has not read yet.
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
