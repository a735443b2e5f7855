//! Per-request behaviour of the test backend: fault injection and routes.
//!
//! The routes mimic the tutorials' app-backend (`NAME VERSION - request N`)
//! and the handful of httpbin endpoints the Istio task docs rely on.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{request, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::record::{ReceivedLog, ReceivedRequest};
use super::BackendArgs;

/// Longest `/delay/SECONDS` honoured; anything above is almost surely a typo.
const MAX_DELAY_SECS: f64 = 3600.0;

/// Shared state of one backend instance, used by every connection.
#[derive(Debug)]
pub(crate) struct State {
    name: String,
    version: String,
    name_header: HeaderValue,
    version_header: HeaderValue,
    hang_after: Option<u64>,
    fail_after: Option<u64>,
    fail_rate: f64,
    delay: Option<Duration>,
    seq: AtomicU64,
    pub(crate) log: ReceivedLog,
}

impl State {
    /// Validates the arguments that end up in response headers.
    pub(crate) fn new(args: &BackendArgs) -> anyhow::Result<Self> {
        if !(0.0..=1.0).contains(&args.fail_rate) {
            anyhow::bail!("--fail-rate must be within 0..=1, got {}", args.fail_rate);
        }
        Ok(Self {
            name_header: HeaderValue::from_str(&args.name).map_err(|_| {
                anyhow::anyhow!("--name {:?} is not a valid header value", args.name)
            })?,
            version_header: HeaderValue::from_str(&args.version).map_err(|_| {
                anyhow::anyhow!("--version {:?} is not a valid header value", args.version)
            })?,
            name: args.name.clone(),
            version: args.version.clone(),
            hang_after: args.hang_after,
            fail_after: args.fail_after,
            fail_rate: args.fail_rate,
            delay: args.delay,
            seq: AtomicU64::new(0),
            log: ReceivedLog::default(),
        })
    }

    /// Number of requests received so far, including ones left hanging.
    pub(crate) fn requests(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    /// Answers one request; never fails so hyper keeps the connection usable.
    pub(crate) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = req.into_parts();
        // Draining the body first keeps HTTP/1.1 keep-alive working and lets
        // /anything echo it back.
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => {
                let msg = format!("failed to read request body: {err}\n");
                return Ok(self.text(StatusCode::BAD_REQUEST, msg));
            }
        };
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        self.log.push(received(&parts, body.len(), peer));

        if self.hang_after.is_some_and(|limit| seq > limit) {
            // The tutorial's buggy v1: stop answering but keep the socket open
            // so that only a client or proxy timeout can end the request.
            std::future::pending::<()>().await;
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        if should_fail(self.fail_rate, seq) || self.fail_after.is_some_and(|n| seq > n) {
            let msg = format!("{} {} - unavailable\n", self.name, self.version);
            return Ok(self.text(StatusCode::SERVICE_UNAVAILABLE, msg));
        }
        Ok(self.route(&parts, &body, seq).await)
    }

    async fn route(&self, parts: &request::Parts, body: &Bytes, seq: u64) -> Response<Full<Bytes>> {
        let path = parts.uri.path();
        if path == "/headers" {
            let mut doc = request_json(parts);
            doc.insert("headers".into(), Value::Object(headers_json(parts)));
            return self.json(StatusCode::OK, Value::Object(doc));
        }
        if path == "/anything" || path.starts_with("/anything/") {
            let mut doc = request_json(parts);
            doc.insert("query".into(), json!(parts.uri.query().unwrap_or("")));
            doc.insert("headers".into(), Value::Object(headers_json(parts)));
            doc.insert("body".into(), json!(String::from_utf8_lossy(body)));
            doc.insert("body_len".into(), json!(body.len()));
            return self.json(StatusCode::OK, Value::Object(doc));
        }
        if let Some(code) = path.strip_prefix("/status/") {
            return match code.parse::<u16>().ok().and_then(final_status) {
                Some(status) => self.text(status, String::new()),
                None => self.text(
                    StatusCode::BAD_REQUEST,
                    format!("bad status code {code:?}\n"),
                ),
            };
        }
        if let Some(secs) = path.strip_prefix("/delay/") {
            let wait = secs
                .parse::<f64>()
                .ok()
                .filter(|s| (0.0..=MAX_DELAY_SECS).contains(s))
                .and_then(|s| Duration::try_from_secs_f64(s).ok());
            let Some(wait) = wait else {
                return self.text(StatusCode::BAD_REQUEST, format!("bad delay {secs:?}\n"));
            };
            tokio::time::sleep(wait).await;
        }
        let msg = format!("{} {} - request {seq}\n", self.name, self.version);
        self.text(StatusCode::OK, msg)
    }

    fn text(&self, status: StatusCode, body: String) -> Response<Full<Bytes>> {
        self.respond(status, "text/plain", Bytes::from(body))
    }

    fn json(&self, status: StatusCode, doc: Value) -> Response<Full<Bytes>> {
        let mut body = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        body.push(b'\n');
        self.respond(status, "application/json", Bytes::from(body))
    }

    fn respond(
        &self,
        status: StatusCode,
        content_type: &'static str,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        let headers = resp.headers_mut();
        headers.insert("x-service", self.name_header.clone());
        headers.insert("x-version", self.version_header.clone());
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        resp
    }
}

/// Spreads failures evenly: request `seq` fails when it crosses the next
/// multiple of `1/rate`, so rate 0.1 fails exactly every 10th request and
/// test assertions need no tolerance.
fn should_fail(rate: f64, seq: u64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    (seq as f64 * rate).floor() > ((seq - 1) as f64 * rate).floor()
}

/// Only final statuses are sendable as a whole response; 1xx would confuse clients.
fn final_status(code: u16) -> Option<StatusCode> {
    StatusCode::from_u16(code)
        .ok()
        .filter(|s| s.as_u16() >= 200)
}

fn received(parts: &request::Parts, body_len: usize, peer: SocketAddr) -> ReceivedRequest {
    ReceivedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        ),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        version: format!("{:?}", parts.version),
        authority: parts.uri.authority().map(|a| a.as_str().to_string()),
        body_len,
        peer,
    }
}

fn request_json(parts: &request::Parts) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert("method".into(), json!(parts.method.as_str()));
    doc.insert("path".into(), json!(parts.uri.path()));
    doc.insert("version".into(), json!(format!("{:?}", parts.version)));
    doc
}

/// httpbin-style header echo; repeated headers are comma-joined and HTTP/2's
/// `:authority` is reported as `host` so both protocols look the same.
fn headers_json(parts: &request::Parts) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    if !out.contains_key("host") {
        if let Some(authority) = parts.uri.authority() {
            out.insert("host".into(), json!(authority.as_str()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_rate_is_evenly_spaced() {
        let failed: Vec<u64> = (1..=20).filter(|&s| should_fail(0.25, s)).collect();
        assert_eq!(failed, vec![4, 8, 12, 16, 20]);
        assert_eq!((1..=1000).filter(|&s| should_fail(0.1, s)).count(), 100);
        assert!((1..=50).all(|s| should_fail(1.0, s)));
        assert!((1..=50).all(|s| !should_fail(0.0, s)));
    }

    #[test]
    fn only_final_statuses_are_accepted() {
        assert_eq!(final_status(418), Some(StatusCode::IM_A_TEAPOT));
        assert_eq!(final_status(204), Some(StatusCode::NO_CONTENT));
        assert_eq!(final_status(101), None);
        assert_eq!(final_status(1000), None);
    }
}
