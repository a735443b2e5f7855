//! The direct HTTP/1.1 client, for requests without a body: the requesting task writes the head
//! and reads the response from the socket itself.
//!
//! hyper's client connection is a task of its own: each request crosses a channel to it, and the
//! response head and body come back through two more, waking both tasks at every step. With no
//! request body to stream out while the response streams in, there is nothing to do concurrently,
//! so the requesting task does the exchange and the response body reads straight from the socket.
//! Requests with a body go through hyper ([`super::http1_pool`]), which writes the body while it
//! reads the response.

mod body;
mod chunked;
mod conn;
#[cfg(feature = "fuzzing")]
pub mod fuzz;
mod head;

use std::sync::Arc;

use http::{Method, Request, Response};
use http_body::Body as _;
use tokio::time::Instant;

use super::connect::{self, Target};
use super::http1_pool::{PoolSettings, SendError};
use super::idle::{Idle, IdleConns, Verdict};
use super::reaper::Reaper;
use crate::body::Body;
pub use body::ResponseBody;
use body::Rest;
use conn::Connection;
pub(crate) use head::Outgoing;
use head::{encode_request, Framing, ResponseHead};

/// Whether the direct client can carry `req`: it has no body, and no header announcing one.
pub(crate) fn carries(req: &Request<Body>) -> bool {
    req.body().is_end_stream() && carries_head(req.method(), req.headers())
}

/// Whether a request with this method and these fields, and no body, can go direct.
pub(crate) fn carries_head(method: &Method, headers: &http::HeaderMap) -> bool {
    method != Method::CONNECT
        && headers
            .get(http::header::CONTENT_LENGTH)
            .is_none_or(|v| v == "0")
}

/// A pool of direct HTTP/1.1 connections keyed by endpoint authority; cheap to clone.
#[derive(Clone)]
pub(crate) struct DirectPool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PoolSettings,
    idle: IdleConns<Connection>,
    reaper: Reaper,
}

/// Whether an idle connection can take a request.
fn judge(settings: &PoolSettings, c: &Idle<Connection>, now: Instant) -> Verdict {
    if settings.expired(c.since, now) || settings.aged(c.born, now) || !c.conn.reusable() {
        Verdict::Drop
    } else {
        Verdict::Use
    }
}

/// Methods a client may repeat (RFC 9110 §9.2.2): a request of one of them that got no answer on
/// a reused connection is sent again on another.
fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl DirectPool {
    /// An empty pool.
    pub(crate) fn new(settings: PoolSettings) -> Self {
        DirectPool {
            inner: Arc::new(Inner {
                settings,
                idle: IdleConns::default(),
                reaper: Reaper::default(),
            }),
        }
    }

    /// Sends the bodiless request `req` to `target` on a pooled or new connection.
    pub(crate) async fn send(
        &self,
        target: &Target<'_>,
        req: &Outgoing<'_>,
    ) -> Result<Response<Body>, SendError> {
        let head_request = *req.method == Method::HEAD;
        let settings = &self.inner.settings;
        let now = Instant::now();
        loop {
            let pooled = self
                .inner
                .idle
                .checkout(target.key, |c| judge(settings, c, now));
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                // Boxed: opening a connection is rare, and its state would otherwise enlarge
                // every request's future.
                None => Box::pin(self.connect(target)).await?,
            };
            encode_request(req, &mut conn.conn.out);
            match conn.conn.exchange(head_request).await {
                Ok(head) => return Ok(self.respond(conn, head)),
                // The peer closed the idle connection as the request went out.
                Err(e) if reused && e.unanswered() && (e.unwritten() || idempotent(req.method)) => {
                    tracing::debug!(error = %e, "reused upstream connection was closed; trying another");
                }
                Err(e) => {
                    let sent = e.request_sent();
                    return Err(SendError::Reset {
                        error: Box::new(e),
                        sent,
                    });
                }
            }
        }
    }

    /// The response to `head`, with a body that reads the rest from `conn`.
    fn respond(&self, mut conn: Idle<Connection>, head: ResponseHead) -> Response<Body> {
        let buf = &mut conn.conn.buf;
        let body = match head.framing {
            Framing::Empty => {
                self.release(conn, head.keep_alive);
                Body::empty()
            }
            // The whole body came with the head (the usual small response): the connection can
            // take the next request at once.
            Framing::Length(n) if buf.len() as u64 >= n => {
                let data = buf.split_to(n as usize).freeze();
                self.release(conn, head.keep_alive);
                Body::full(data)
            }
            Framing::Length(n) => Body::Direct(Box::new(ResponseBody::new(
                conn,
                Rest::Length(n),
                head.keep_alive,
                self.clone(),
            ))),
            Framing::Chunked => Body::Direct(Box::new(ResponseBody::new(
                conn,
                Rest::Chunked(chunked::Chunked::Size),
                head.keep_alive,
                self.clone(),
            ))),
            Framing::UntilClose => Body::Direct(Box::new(ResponseBody::new(
                conn,
                Rest::UntilClose,
                false,
                self.clone(),
            ))),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }

    /// Takes back a connection whose response is complete; it is closed unless it can carry
    /// another request and nothing unasked for follows the response.
    fn release(&self, mut conn: Idle<Connection>, keep_alive: bool) {
        if !keep_alive || !conn.conn.buf.is_empty() {
            return;
        }
        conn.conn.trim();
        let authority = conn.conn.authority.clone();
        self.inner
            .idle
            .checkin(&authority, conn, &self.inner.settings);
    }

    async fn connect(&self, target: &Target<'_>) -> Result<Idle<Connection>, SendError> {
        let connect = &self.inner.settings.connect;
        let mut stream = connect::tcp(target.authority, connect)
            .await
            .map_err(SendError::Connect)?;
        connect::send_proxy_header(&mut stream, connect, target.downstream)
            .await
            .map_err(SendError::Connect)?;
        self.start_reaper();
        Ok(Idle::new(Connection::new(stream, target.key.into())))
    }

    /// Closes idle connections past the idle timeout or `maxConnectionDuration`, and those the
    /// peer closed, even when no request comes to notice them, as Envoy does.
    fn start_reaper(&self) {
        let Some(period) = self.inner.settings.reap_period() else {
            return;
        };
        self.inner.reaper.start(&self.inner, period, |inner, now| {
            inner
                .idle
                .retain(|c| matches!(judge(&inner.settings, c, now), Verdict::Use));
        });
    }

    /// Idle connections held, over all endpoints.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.inner.idle.len()
    }
}

#[cfg(test)]
mod tests;
