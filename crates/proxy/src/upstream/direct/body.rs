//! A response body read straight from its connection, which goes back to the pool at the body's
//! end.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::chunked::{Chunked, Decoded};
use super::conn::Connection;
use super::DirectPool;
use crate::body::BoxError;
use crate::upstream::idle::Idle;

/// How the rest of the body is delimited.
#[derive(Debug, Clone, Copy)]
pub(super) enum Rest {
    /// This many bytes.
    Length(u64),
    /// Chunked, at this point.
    Chunked(Chunked),
    /// Until the peer closes.
    UntilClose,
}

/// The body ended early or was malformed.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body: {0}")]
struct BodyError(String);

/// A response body streamed from an upstream connection.
pub struct ResponseBody {
    /// `None` once the body has ended.
    conn: Option<Idle<Connection>>,
    rest: Rest,
    keep_alive: bool,
    pool: DirectPool,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("rest", &self.rest)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// The body of the response whose head `conn` just read.
    pub(super) fn new(
        conn: Idle<Connection>,
        rest: Rest,
        keep_alive: bool,
        pool: DirectPool,
    ) -> Self {
        ResponseBody {
            conn: Some(conn),
            rest,
            keep_alive,
            pool,
        }
    }

    /// The body is complete: the connection goes back to the pool when it can carry more.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.release(conn, self.keep_alive);
        }
    }

    fn fail(&mut self, why: impl Into<String>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(Box::new(BodyError(why.into())))))
    }
}

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.conn.buf;
            match &mut this.rest {
                Rest::Length(left) => {
                    if *left == 0 {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    if !buf.is_empty() {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                        let data = buf.split_to(n).freeze();
                        *left -= n as u64;
                        if *left == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Rest::Chunked(state) => match state.decode(buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {}
                    Err(e) => return this.fail(e.to_string()),
                },
                Rest::UntilClose => {
                    if !buf.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(buf.split().freeze()))));
                    }
                }
            }
            let read: io::Result<usize> = ready!(conn.conn.poll_fill(cx));
            match read {
                Ok(0) if matches!(this.rest, Rest::UntilClose) => {
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail("connection closed before the body ended"),
                Ok(_) => {}
                Err(e) => return this.fail(e.to_string()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.conn.is_none() || matches!(self.rest, Rest::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.conn, self.rest) {
            (None, _) => SizeHint::with_exact(0),
            (Some(_), Rest::Length(n)) => SizeHint::with_exact(n),
            (Some(_), _) => SizeHint::default(),
        }
    }
}
