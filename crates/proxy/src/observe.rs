//! Telemetry of one request, recorded when its response body is finished (or dropped): Istio
//! metrics, the traffic graph, per-route split counters and the access log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use sluice_config::cluster::Cluster;
use sluice_config::vhost::VirtualHost;
use sluice_telemetry::access_log::AccessLogEntry;
use sluice_telemetry::trace::{propagation, RequestSpan, SpanEnd};
use sluice_telemetry::{CompletedRequest, Reporter, RequestProtocol, Telemetry};

/// What the access log needs beyond the metrics (only kept when the log is on).
#[derive(Debug)]
pub struct LogFields {
    /// Start time (wall clock).
    pub start_time: SystemTime,
    /// Method.
    pub method: String,
    /// Host / :authority.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// Trace id of the incoming request (used when spans are not exported).
    pub trace_id: Option<String>,
}

/// One request's telemetry, filled in along the request path and recorded on drop.
pub struct Observation {
    telemetry: Arc<Telemetry>,
    /// Who reports: the client side (outbound, gateway) or the server side (inbound).
    pub reporter: Reporter,
    /// Graph source node of the listener.
    pub source_node: Arc<str>,
    started: Instant,
    /// The virtual host and rule index that matched.
    pub route: Option<(Arc<VirtualHost>, usize)>,
    /// The cluster forwarded to.
    pub cluster: Option<Arc<Cluster>>,
    /// The endpoint that answered (index into the cluster's endpoints).
    pub endpoint: Option<usize>,
    /// Status sent downstream.
    pub status: u16,
    /// gRPC request (content-type `application/grpc`).
    pub grpc: bool,
    /// gRPC status from headers or trailers.
    pub grpc_status: Option<u32>,
    /// Envoy response flags.
    pub flags: String,
    /// Request body bytes (from `content-length` when known).
    pub request_bytes: u64,
    /// Response body bytes sent.
    pub response_bytes: u64,
    /// Access-log fields, when logging.
    pub log: Option<Box<LogFields>>,
    /// The proxy's span, when tracing is on.
    pub span: Option<RequestSpan>,
}

impl std::fmt::Debug for Observation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observation")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// `grpc-status`, pre-parsed: a lookup by `&str` parses and hashes the name each time.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// Reads a `grpc-status` value.
pub fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get(&GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

impl Observation {
    /// Starts observing a request.
    pub fn start(
        telemetry: Arc<Telemetry>,
        source_node: Arc<str>,
        req: &http::Request<hyper::body::Incoming>,
    ) -> Self {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/grpc"));
        let request_bytes = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let log = telemetry.access_log().enabled().then(|| {
            Box::new(LogFields {
                start_time: SystemTime::now(),
                method: req.method().to_string(),
                authority: req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .or_else(|| {
                        req.headers()
                            .get(http::header::HOST)
                            .and_then(|h| h.to_str().ok())
                            .map(str::to_string)
                    })
                    .unwrap_or_default(),
                path: req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_string(),
                protocol: if req.version() == http::Version::HTTP_2 {
                    "HTTP/2"
                } else {
                    "HTTP/1.1"
                },
                request_id: None,
                // With tracing on, the span gives the id (without a second header parse).
                trace_id: if telemetry.tracing().is_some() {
                    None
                } else {
                    propagation::trace_id_hex(req.headers())
                },
            })
        });
        Observation {
            telemetry,
            reporter: Reporter::Source,
            source_node,
            started: Instant::now(),
            route: None,
            cluster: None,
            endpoint: None,
            status: 0,
            grpc,
            grpc_status: None,
            flags: String::new(),
            request_bytes,
            response_bytes: 0,
            log,
            span: None,
        }
    }

    fn duration(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Observation {
    fn drop(&mut self) {
        let duration = self.duration();
        let (vh, route) = match &self.route {
            Some((vh, i)) => (
                Some(vh.name.as_str()),
                vh.routes.get(*i).map(|r| r.name.as_str()),
            ),
            None => (None, None),
        };
        let endpoint = self
            .cluster
            .as_ref()
            .zip(self.endpoint)
            .and_then(|(c, i)| c.endpoints.get(i));
        self.telemetry.record_request(&CompletedRequest {
            reporter: self.reporter,
            source_node: &self.source_node,
            virtual_host: vh,
            route,
            cluster: self.cluster.as_deref(),
            endpoint,
            protocol: if self.grpc {
                RequestProtocol::Grpc
            } else {
                RequestProtocol::Http
            },
            response_code: self.status,
            grpc_status: self.grpc_status,
            response_flags: &self.flags,
            duration,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            mirror: false,
        });
        let trace_id = match self.span.take() {
            Some(span) => {
                let id = self.log.is_some().then(|| span.trace_id_hex());
                span.end(&SpanEnd {
                    status: self.status,
                    grpc_status: self.grpc_status,
                    response_flags: if self.flags.is_empty() {
                        "-"
                    } else {
                        &self.flags
                    },
                    upstream_cluster: self.cluster.as_deref().map(|c| c.name.as_str()),
                    upstream_host: endpoint.map(|e| e.authority.as_str()),
                    request_bytes: self.request_bytes,
                    response_bytes: self.response_bytes,
                });
                id
            }
            None => None,
        };
        if let Some(log) = self.log.take() {
            let log = *log;
            self.telemetry.access_log().log(AccessLogEntry {
                start_time: log.start_time,
                method: log.method,
                authority: log.authority,
                path: log.path,
                protocol: log.protocol,
                response_code: self.status,
                // Formatting writes `-` for none.
                response_flags: std::mem::take(&mut self.flags),
                bytes_received: self.request_bytes,
                bytes_sent: self.response_bytes,
                duration,
                upstream_host: endpoint.map(|e| e.authority.clone()),
                upstream_cluster: self.cluster.as_ref().map(|c| c.name.clone()),
                route_name: route.map(str::to_string),
                x_request_id: log.request_id,
                trace_id: trace_id.or(log.trace_id),
            });
        }
    }
}
