//! Telemetry of one request, recorded when its response body is finished (or dropped): Istio
//! metrics, the traffic graph, per-route split counters and the access log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::HeaderMap;
use sluice_config::cluster::Cluster;
use sluice_config::vhost::VirtualHost;
use sluice_telemetry::access_log::{AccessLogEntry, LogText, TextField};
use sluice_telemetry::trace::{propagation, RequestSpan, SpanEnd};
use sluice_telemetry::{CompletedRequest, MtlsPeers, Reporter, RequestProtocol, Telemetry};

/// What the access log needs beyond the metrics (only kept when the log is on).
#[derive(Debug)]
pub struct LogFields {
    /// Start time (wall clock).
    pub start_time: SystemTime,
    /// Method.
    pub method: http::Method,
    /// `HTTP/1.1` or `HTTP/2`.
    pub protocol: &'static str,
    /// Trace id of the incoming request (used when spans are not exported).
    pub trace_id: Option<u128>,
    /// Authority and path now; `x-request-id`, upstream and route as the request goes on.
    pub text: LogText,
}

/// Typical bytes of the text fields set after the request head: `x-request-id`, upstream host,
/// cluster and route name.
const LATER_FIELDS_BYTES: usize = 160;

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
    /// Server side over mesh mTLS: both ends' identities.
    pub mtls: Option<MtlsPeers>,
    /// The gateway server's `name`, when its listener has one (stats by server).
    pub server_stat: Option<Arc<str>>,
    /// The matched entry's `statPrefix`, when it has one (stats by route).
    pub route_stat: Option<Arc<str>>,
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
            let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            });
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            // Room for the fields set later (request id, upstream host and cluster, route).
            let mut text = LogText::with_capacity(
                authority.map_or(0, str::len) + path.len() + LATER_FIELDS_BYTES,
            );
            text.set(TextField::Authority, authority.unwrap_or(""));
            text.set(TextField::Path, path);
            Box::new(LogFields {
                start_time: SystemTime::now(),
                method: req.method().clone(),
                protocol: if req.version() == http::Version::HTTP_2 {
                    "HTTP/2"
                } else {
                    "HTTP/1.1"
                },
                // With tracing on, the span gives the id (without a second header parse).
                trace_id: if telemetry.tracing().is_some() {
                    None
                } else {
                    propagation::trace_id_of(req.headers())
                },
                text,
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
            mtls: None,
            server_stat: None,
            route_stat: None,
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
            mtls: self.mtls.as_ref(),
        });
        // Only listeners and routes that name a stat prefix pay for these counters.
        if let Some(server) = &self.server_stat {
            self.telemetry
                .proxy()
                .gateway_server_request(server, self.status);
        }
        if let (Some(prefix), Some(vh)) = (&self.route_stat, vh) {
            self.telemetry
                .proxy()
                .route_stat_request(vh, prefix, self.status);
        }
        let trace_id = match self.span.take() {
            Some(span) => {
                let id = span.trace_id();
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
                Some(id)
            }
            None => None,
        };
        if let Some(log) = self.log.take() {
            let LogFields {
                start_time,
                method,
                protocol,
                trace_id: incoming_trace_id,
                mut text,
            } = *log;
            if let Some(e) = endpoint {
                text.set(TextField::UpstreamHost, &e.authority);
            }
            if let Some(c) = self.cluster.as_deref() {
                text.set(TextField::UpstreamCluster, &c.name);
            }
            if let Some(r) = route {
                text.set(TextField::RouteName, r);
            }
            self.telemetry.access_log().log(AccessLogEntry {
                start_time,
                method,
                protocol,
                response_code: self.status,
                // Formatting writes `-` for none.
                response_flags: std::mem::take(&mut self.flags),
                bytes_received: self.request_bytes,
                bytes_sent: self.response_bytes,
                duration,
                trace_id: trace_id.or(incoming_trace_id),
                text,
            });
        }
    }
}
