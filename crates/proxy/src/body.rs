//! The body type flowing through the proxy: a fixed local body, a streamed peer body, a replayable
//! request body, or a response body with a deadline.
//!
//! An enum instead of a boxed trait object: no allocation and no dynamic dispatch per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::time::Sleep;

use crate::observe::Observation;
use crate::replay::Cursor;

/// Errors carried by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request or response body inside the proxy.
#[derive(Debug)]
pub enum Body {
    /// Produced locally (errors, redirects, direct responses).
    Full(Full<Bytes>),
    /// Streamed from the downstream client or the upstream server (through hyper).
    Streamed(Incoming),
    /// Streamed from an upstream HTTP/2 connection whose streams are counted
    /// (`maxConcurrentStreams`): the slot is freed with the body. Boxed: rare.
    Counted(Box<(Incoming, crate::upstream::StreamSlot)>),
    /// Streamed from an upstream HTTP/1.1 connection of the direct client.
    /// Boxed: the variant is rare (most bodies come whole with their head) and large, and every
    /// body is moved several times on its way.
    Direct(Box<crate::upstream::ResponseBody>),
    /// A recorded request body (retries, mirrors).
    Replay(Cursor),
    /// A body that must finish before a deadline (the route timeout covers the whole response).
    Deadline(Box<Body>, Pin<Box<Sleep>>),
    /// A response body whose end (or drop) records the request's telemetry.
    Observed(Box<Observed>),
}

/// A response body and the observation it completes: one allocation for both, and the body is
/// dropped before the observation records.
#[derive(Debug)]
pub struct Observed {
    /// The body sent downstream.
    pub inner: Body,
    /// The request's telemetry, recorded on drop.
    pub obs: Observation,
}

/// The response body ran past the route timeout.
#[derive(Debug, thiserror::Error)]
#[error("upstream request timeout while streaming the response")]
pub struct BodyTimeout;

impl Body {
    /// A fixed body.
    pub fn full(bytes: impl Into<Bytes>) -> Body {
        Body::Full(Full::new(bytes.into()))
    }

    /// An empty body.
    pub fn empty() -> Body {
        Body::Full(Full::new(Bytes::new()))
    }
}

impl From<Incoming> for Body {
    fn from(b: Incoming) -> Self {
        Body::Streamed(b)
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Full(f) => Pin::new(f).poll_frame(cx).map_err(|never| match never {}),
            Body::Streamed(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Body::Counted(b) => Pin::new(&mut b.0).poll_frame(cx).map_err(Into::into),
            Body::Direct(b) => Pin::new(b.as_mut()).poll_frame(cx),
            Body::Replay(c) => Pin::new(c).poll_frame(cx).map_err(Into::into),
            Body::Deadline(inner, sleep) => {
                if let Poll::Ready(frame) = Pin::new(inner.as_mut()).poll_frame(cx) {
                    return Poll::Ready(frame);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
                    Poll::Pending => Poll::Pending,
                }
            }
            Body::Observed(o) => {
                let Observed { inner, obs } = o.as_mut();
                let frame = Pin::new(inner).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &frame {
                    if let Some(data) = f.data_ref() {
                        obs.response_bytes += data.len() as u64;
                    } else if let Some(trailers) = f.trailers_ref() {
                        if let Some(s) = crate::observe::grpc_status(trailers) {
                            obs.grpc_status = Some(s);
                        }
                    }
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(f) => f.is_end_stream(),
            Body::Streamed(b) => b.is_end_stream(),
            Body::Counted(b) => b.0.is_end_stream(),
            Body::Direct(b) => b.is_end_stream(),
            Body::Replay(c) => c.is_end_stream(),
            Body::Deadline(inner, _) => inner.is_end_stream(),
            Body::Observed(o) => o.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(f) => f.size_hint(),
            Body::Streamed(b) => b.size_hint(),
            Body::Counted(b) => b.0.size_hint(),
            Body::Direct(b) => b.size_hint(),
            Body::Replay(c) => c.size_hint(),
            Body::Deadline(inner, _) => inner.size_hint(),
            Body::Observed(o) => o.inner.size_hint(),
        }
    }
}
