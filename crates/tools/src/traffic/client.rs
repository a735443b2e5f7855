//! Traffic workers: one keep-alive connection each, requests back to back.
//!
//! hyper's low-level `client::conn` API is used instead of a pooled client so
//! that `-c N` means exactly N connections, which is what load-balancing
//! demos need to be reproducible.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2, TrySendError};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use super::report::{normalize_key, Stats};
use super::{KeyBy, TrafficArgs};

/// What every request looks like, parsed once up front.
#[derive(Debug)]
pub(super) struct Target {
    connect_to: String,
    authority: Authority,
    path: PathAndQuery,
    method: Method,
    headers: HeaderMap,
    http2: bool,
}

impl Target {
    /// Validates the URL, method and `-H` headers.
    pub(super) fn parse(args: &TrafficArgs) -> anyhow::Result<Self> {
        let uri =
            Uri::from_str(&args.url).with_context(|| format!("invalid URL {:?}", args.url))?;
        if uri.scheme() != Some(&Scheme::HTTP) {
            anyhow::bail!("only http:// URLs are supported, got {:?}", args.url);
        }
        let url_authority = uri
            .authority()
            .with_context(|| format!("URL {:?} has no host", args.url))?
            .clone();
        let port = url_authority.port_u16().unwrap_or(80);
        let connect_to = format!("{}:{port}", url_authority.host());
        let method = Method::from_str(&args.method)
            .with_context(|| format!("invalid method {:?}", args.method))?;

        let mut headers = HeaderMap::new();
        for raw in &args.headers {
            let (name, value) = raw
                .split_once(':')
                .with_context(|| format!("header {raw:?} is not in 'Name: value' form"))?;
            let name = HeaderName::from_str(name.trim())
                .with_context(|| format!("invalid header name in {raw:?}"))?;
            let value = HeaderValue::from_str(value.trim())
                .with_context(|| format!("invalid header value in {raw:?}"))?;
            headers.append(name, value);
        }
        // `-H 'Host: reviews'` is how the tutorials pick a virtual host; for
        // HTTP/2 that has to become :authority rather than a Host field.
        let authority = match headers.get(HOST) {
            Some(host) => Authority::from_str(host.to_str().unwrap_or_default())
                .with_context(|| format!("invalid Host header {host:?}"))?,
            None => url_authority,
        };
        if args.http2 {
            headers.remove(HOST);
        } else if !headers.contains_key(HOST) {
            headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        }
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        Ok(Self {
            connect_to,
            authority,
            path,
            method,
            headers,
            http2: args.http2,
        })
    }

    fn request(&self) -> anyhow::Result<Request<Empty<Bytes>>> {
        // HTTP/1.1 wants origin-form plus Host; HTTP/2 needs the absolute URI
        // so hyper can fill in :scheme and :authority.
        let uri = if self.http2 {
            Uri::builder()
                .scheme(Scheme::HTTP)
                .authority(self.authority.clone())
                .path_and_query(self.path.clone())
                .build()?
        } else {
            Uri::from(self.path.clone())
        };
        let mut req = Request::new(Empty::new());
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

/// State shared by all workers of one run.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) target: Target,
    pub(super) total: u64,
    pub(super) next: AtomicU64,
    pub(super) done: Arc<AtomicU64>,
    pub(super) deadline: Option<Instant>,
    pub(super) timeout: Duration,
    pub(super) key_by: KeyBy,
}

/// Why a request produced no response.
enum Failure {
    Connect,
    Request,
    Body,
    Invalid,
}

impl Failure {
    fn label(&self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Request => "request",
            Self::Body => "body",
            Self::Invalid => "invalid-request",
        }
    }
}

/// One worker and its connection.
pub(super) struct Worker {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    stats: Stats,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            conn: None,
            stats: Stats::default(),
        }
    }

    /// Claims and sends requests until the count or the deadline runs out.
    pub(super) async fn run(mut self) -> Stats {
        let shared = Arc::clone(&self.shared);
        loop {
            let remaining = shared
                .deadline
                .map(|d| d.saturating_duration_since(Instant::now()));
            if remaining.is_some_and(|r| r.is_zero()) {
                break;
            }
            if shared.next.fetch_add(1, Ordering::SeqCst) >= shared.total {
                break;
            }
            let cut_by_deadline = remaining.is_some_and(|r| r < shared.timeout);
            let limit = remaining.map_or(shared.timeout, |r| r.min(shared.timeout));
            let started = Instant::now();
            match tokio::time::timeout(limit, self.attempt()).await {
                Ok(Ok((status, key))) => self.stats.record_response(status, key, started.elapsed()),
                Ok(Err(failure)) => {
                    self.conn = None;
                    self.stats.record_error(failure.label());
                }
                Err(_) if cut_by_deadline => break,
                Err(_) => {
                    // The connection may still owe us the old response.
                    self.conn = None;
                    self.stats.record_error("timeout");
                }
            }
            shared.done.fetch_add(1, Ordering::Relaxed);
        }
        self.stats
    }

    async fn attempt(&mut self) -> Result<(u16, String), Failure> {
        let target = &self.shared.target;
        let mut req = target.request().map_err(|_| Failure::Invalid)?;
        if let Some(mut conn) = self.conn.take() {
            if conn.ready().await {
                match conn.send(req).await {
                    Ok(resp) => {
                        self.conn = Some(conn);
                        return self.read(resp).await;
                    }
                    // hyper hands the request back only if none of it was
                    // written, i.e. the server closed the idle connection
                    // first; resending on a fresh one is then always safe.
                    Err(mut err) => match err.take_message() {
                        Some(unsent) => req = unsent,
                        None => return Err(Failure::Request),
                    },
                }
            }
        }
        let mut conn = Conn::connect(target).await?;
        if !conn.ready().await {
            return Err(Failure::Connect);
        }
        let resp = conn.send(req).await.map_err(|_| Failure::Request)?;
        self.conn = Some(conn);
        self.read(resp).await
    }

    /// Drains the response and derives its distribution key.
    async fn read(&self, resp: Response<Incoming>) -> Result<(u16, String), Failure> {
        let status = resp.status().as_u16();
        let header_key = match &self.shared.key_by {
            KeyBy::Header(name) => Some(
                resp.headers()
                    .get(name.as_str())
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                    .unwrap_or_default(),
            ),
            KeyBy::Body => None,
        };
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|_| Failure::Body)?
            .to_bytes();
        let raw = header_key.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Ok((status, normalize_key(&raw)))
    }
}

/// A failed send, possibly carrying back the unsent request.
type SendError = TrySendError<Request<Empty<Bytes>>>;

enum Sender {
    H1(http1::SendRequest<Empty<Bytes>>),
    H2(http2::SendRequest<Empty<Bytes>>),
}

/// A client connection whose driver task dies with it.
struct Conn {
    sender: Sender,
    driver: JoinHandle<()>,
}

impl Conn {
    async fn connect(target: &Target) -> Result<Self, Failure> {
        let stream = TcpStream::connect(&target.connect_to)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(stream);
        if target.http2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|_| Failure::Connect)?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Self {
                sender: Sender::H2(sender),
                driver,
            })
        } else {
            let (sender, conn) = http1::handshake(io).await.map_err(|_| Failure::Connect)?;
            let driver = tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Self {
                sender: Sender::H1(sender),
                driver,
            })
        }
    }

    /// Waits until the connection can take a request; false if it is closed.
    async fn ready(&mut self) -> bool {
        match &mut self.sender {
            Sender::H1(s) => !s.is_closed() && s.ready().await.is_ok(),
            Sender::H2(s) => !s.is_closed() && s.ready().await.is_ok(),
        }
    }

    async fn send(&mut self, req: Request<Empty<Bytes>>) -> Result<Response<Incoming>, SendError> {
        match &mut self.sender {
            Sender::H1(s) => s.try_send_request(req).await,
            Sender::H2(s) => s.try_send_request(req).await,
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Without this a connection to a hung server would outlive the run.
        self.driver.abort();
    }
}
