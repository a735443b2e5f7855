//! Downstream connections: what a client may cost before and between its requests.
//!
//! Every proxy listener (gateway, mesh, interception) serves HTTP with the same limits: the
//! request head must arrive within the header-read timeout and fit in the header-size cap, a
//! connection with no request in flight closes after the idle timeout, and all listeners share
//! one connection budget. The admin listener is outside that budget, so `/ready` answers while
//! the proxy refuses clients.

mod accept;
mod control_frames;
mod idle;
mod limit;

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONNECTION;
use http::{HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;

use crate::body::BoxError;
use crate::drain::Drain;
pub(crate) use accept::Acceptor;
use control_frames::ControlFrameLimit;
use idle::{Activity, Tracked};
pub use limit::{default_max_connections, ConnectionLimit, ConnectionPermit};

/// Default of [`DownstreamOptions::header_read_timeout`]: nginx's `client_header_timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`DownstreamOptions::idle_timeout`]: Envoy's HTTP connection manager default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default of [`DownstreamOptions::max_request_header_bytes`]: Envoy's `max_request_headers_kb`.
pub const DEFAULT_MAX_REQUEST_HEADER_BYTES: usize = 60 * 1024;

/// How long a draining HTTP/1.1 connection must have had no request in flight before it is
/// closed. A client in a request loop is never that quiet: it gets its next answer with
/// `Connection: close` instead of a reset; an idle keep-alive connection closes soon after.
pub const DRAIN_QUIET: Duration = Duration::from_millis(500);

/// How long a connection asked to close for idleness (or a late head) may linger before it
/// is cut: enough for hyper to close it itself, unless a half-sent head keeps it reading.
const IDLE_GRACE: Duration = Duration::from_secs(1);

/// hyper refuses a read buffer smaller than this (8 KiB).
const MIN_HTTP1_BUFFER: usize = 8192;

/// Limits and timeouts of downstream HTTP connections.
#[derive(Debug, Clone)]
pub struct DownstreamOptions {
    /// Longest wait for a request head (HTTP/1.1), and for the first request of a connection
    /// (any protocol); `None` waits forever.
    pub header_read_timeout: Option<Duration>,
    /// A connection with no request in flight for this long is closed; `None` keeps it.
    pub idle_timeout: Option<Duration>,
    /// Largest request head: HTTP/1.1 answers `431` beyond it, HTTP/2 advertises it as
    /// `SETTINGS_MAX_HEADER_LIST_SIZE`.
    pub max_request_header_bytes: usize,
    /// Connections open at once over all proxy listeners; further ones are closed at accept.
    pub max_connections: usize,
}

impl Default for DownstreamOptions {
    fn default() -> Self {
        DownstreamOptions {
            header_read_timeout: Some(DEFAULT_HEADER_READ_TIMEOUT),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            max_request_header_bytes: DEFAULT_MAX_REQUEST_HEADER_BYTES,
            max_connections: default_max_connections(),
        }
    }
}

/// Applies the header-read timeout and the header-size cap to a server builder.
pub(crate) fn configure(builder: &mut auto::Builder<TokioExecutor>, o: &DownstreamOptions) {
    // hyper's HTTP/1.1 head must fit in its read buffer: a buffer full of an unfinished head
    // is answered 431, so the buffer's size is the cap (and what a slow head can hold).
    //
    // The header-read timeout is the connection's idle tracking's job (see `idle`): hyper's
    // own arms and drops a timer for every request (about 4 % of the proxy's instructions
    // per request under callgrind).
    builder
        .http1()
        .header_read_timeout(None)
        .max_buf_size(o.max_request_header_bytes.max(MIN_HTTP1_BUFFER));
    builder
        .http2()
        .max_header_list_size(u32::try_from(o.max_request_header_bytes).unwrap_or(u32::MAX));
}

/// Serves one connection with `svc` under the drain and the idle timeout; the future ends with
/// the connection.
pub(crate) fn serve<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    o: &DownstreamOptions,
    drain: &Drain,
    stream: I,
    svc: S,
) -> impl Future<Output = Result<(), BoxError>> + Send + 'static
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let activity = Activity::new(drain.clone());
    let tracking = activity.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        // HTTP/2 is told to stop by GOAWAY; HTTP/1 only by `Connection: close` on a response.
        let http1 = req.version() != Version::HTTP_2;
        if !http1 {
            tracking.mark_h2();
        }
        let request = tracking.begin();
        let response = svc.call(req);
        async move {
            let mut resp = response.await?;
            // hyper closes the connection once this response is written.
            if http1 && request.draining() {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked::new(body, request)))
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(ControlFrameLimit::new(stream)), svc)
        .into_owned();
    let idle = activity
        .clone()
        .closed_after(o.header_read_timeout, o.idle_timeout);
    let lingering = activity.clone();
    drain.watch_until(
        conn,
        idle,
        move || lingering.still_idle_after(IDLE_GRACE),
        move || activity.drained(DRAIN_QUIET),
    )
}
