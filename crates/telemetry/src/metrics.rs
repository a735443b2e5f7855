//! Istio's standard metrics (`istio_requests_total`, the three request histograms and the
//! `istio_tcp_*` counters) with Istio's names, types, buckets and labels.
//!
//! Cost of one [`IstioMetrics::record`] on a series seen before: an FxHash of a 28-byte integer
//! key plus the flags string, a lock-free `ArcSwap` load and probe, then one counter add and
//! two atomic adds per histogram (7 relaxed atomics). No label strings are built or compared
//! (peer and service label sets are interned; see [`crate::labels`]) and no lock is taken. A new
//! series (first request with a new status code, flags or peer) takes a writer mutex once.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::cache::{CowMap, FxHasher};
use crate::histogram::IstioHistogram;
use crate::labels::{PeerLabels, ServiceLabels};

/// Which proxy reports (`reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// Client side (outbound sidecar, gateway).
    Source,
    /// Server side (inbound sidecar).
    Destination,
    /// Ambient waypoint.
    Waypoint,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
            Reporter::Waypoint => "waypoint",
        }
    }
}

/// `request_protocol` of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RequestProtocol {
    /// HTTP/1.1 or HTTP/2.
    Http,
    /// gRPC.
    Grpc,
    /// TCP (TCP metrics only).
    Tcp,
}

impl RequestProtocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestProtocol::Http => "http",
            RequestProtocol::Grpc => "grpc",
            RequestProtocol::Tcp => "tcp",
        }
    }
}

/// `connection_security_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityPolicy {
    /// Client side: `unknown`.
    Unknown,
    /// Server side, plaintext: `none`.
    None,
    /// Server side, mTLS: `mutual_tls`.
    MutualTls,
}

impl SecurityPolicy {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityPolicy::Unknown => "unknown",
            SecurityPolicy::None => "none",
            SecurityPolicy::MutualTls => "mutual_tls",
        }
    }
}

/// One finished HTTP/gRPC request, as the proxy reports it at stream end.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord<'a> {
    /// Who reports.
    pub reporter: Reporter,
    /// The caller's labels (the proxy's own workload on the client side).
    pub source: &'a Arc<PeerLabels>,
    /// The callee's labels (the chosen endpoint; [`PeerLabels::unknown`] when none was chosen).
    pub destination: &'a Arc<PeerLabels>,
    /// The destination service ([`ServiceLabels::unknown`] when no route matched).
    pub service: &'a Arc<ServiceLabels>,
    /// `http` or `grpc`.
    pub protocol: RequestProtocol,
    /// HTTP status; 0 when no response was sent (downstream reset).
    pub response_code: u16,
    /// gRPC status for gRPC requests.
    pub grpc_status: Option<u32>,
    /// Envoy response flags (`UH`, `UF,URX`); empty or `-` when none.
    pub response_flags: &'a str,
    /// `connection_security_policy`.
    pub security_policy: SecurityPolicy,
    /// Request start to response complete.
    pub duration: Duration,
    /// Downstream bytes received (headers included).
    pub request_bytes: u64,
    /// Downstream bytes sent (headers included).
    pub response_bytes: u64,
}

/// The integer identity of a series (the flags string is compared separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    source: u32,
    destination: u32,
    service: u32,
    grpc: u32,
    code: u16,
    reporter: u8,
    protocol: u8,
    security: u8,
}

const NO_GRPC: u32 = u32::MAX;

/// The full label set of a series, as the exposition writes it.
#[derive(Debug, Clone)]
pub(crate) struct IstioLabels {
    key: SeriesKey,
    flags: Arc<str>,
    reporter: Reporter,
    protocol: RequestProtocol,
    security: SecurityPolicy,
    source: Arc<PeerLabels>,
    destination: Arc<PeerLabels>,
    service: Arc<ServiceLabels>,
    /// TCP series omit `response_code` and `grpc_response_status`.
    http: bool,
}

impl PartialEq for IstioLabels {
    fn eq(&self, other: &Self) -> bool {
        // Interned ids make the integer key equal exactly when the label strings are.
        self.key == other.key && self.flags == other.flags && self.http == other.http
    }
}

impl Eq for IstioLabels {}

impl Hash for IstioLabels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
        self.flags.hash(state);
    }
}

impl EncodeLabelSet for IstioLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let (s, d, svc) = (&self.source, &self.destination, &self.service);
        let code = self.key.code.to_string();
        let grpc = if self.key.grpc == NO_GRPC {
            String::new()
        } else {
            self.key.grpc.to_string()
        };
        let mut pairs: Vec<(&str, &str)> = vec![
            ("reporter", self.reporter.as_str()),
            ("source_workload", &s.workload),
            ("source_workload_namespace", &s.namespace),
            ("source_principal", &s.principal),
            ("source_app", &s.app),
            ("source_version", &s.version),
            ("source_canonical_service", &s.canonical_service),
            ("source_canonical_revision", &s.canonical_revision),
            ("source_cluster", &s.cluster),
            ("destination_workload", &d.workload),
            ("destination_workload_namespace", &d.namespace),
            ("destination_principal", &d.principal),
            ("destination_app", &d.app),
            ("destination_version", &d.version),
            ("destination_service", &svc.service),
            ("destination_service_name", &svc.name),
            ("destination_service_namespace", &svc.namespace),
            ("destination_canonical_service", &d.canonical_service),
            ("destination_canonical_revision", &d.canonical_revision),
            ("destination_cluster", &d.cluster),
            ("request_protocol", self.protocol.as_str()),
        ];
        if self.http {
            pairs.push(("response_code", &code));
            pairs.push(("grpc_response_status", &grpc));
        }
        pairs.push(("response_flags", &self.flags));
        pairs.push(("connection_security_policy", self.security.as_str()));
        pairs.as_slice().encode(encoder)
    }
}

/// The handles of one HTTP series, shared with the registry's families.
#[derive(Debug)]
struct HttpSeries {
    requests: Counter,
    duration: IstioHistogram,
    request_bytes: IstioHistogram,
    response_bytes: IstioHistogram,
}

/// Per-connection TCP handles for one label set; cheap to clone and keep for the connection.
#[derive(Debug, Clone)]
pub struct TcpSeries {
    opened: Counter,
    closed: Counter,
    sent: Counter,
    received: Counter,
}

impl TcpSeries {
    /// A connection was opened (`istio_tcp_connections_opened_total`).
    pub fn opened(&self) {
        self.opened.inc();
    }

    /// A connection was closed (`istio_tcp_connections_closed_total`).
    pub fn closed(&self) {
        self.closed.inc();
    }

    /// Bytes sent downstream (`istio_tcp_sent_bytes_total`).
    pub fn sent(&self, bytes: u64) {
        self.sent.inc_by(bytes);
    }

    /// Bytes received from downstream (`istio_tcp_received_bytes_total`).
    pub fn received(&self, bytes: u64) {
        self.received.inc_by(bytes);
    }
}

/// The labels of one TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct TcpRecord<'a> {
    /// Who reports.
    pub reporter: Reporter,
    /// The caller's labels.
    pub source: &'a Arc<PeerLabels>,
    /// The callee's labels.
    pub destination: &'a Arc<PeerLabels>,
    /// The destination service.
    pub service: &'a Arc<ServiceLabels>,
    /// Envoy connection flags; empty or `-` when none.
    pub response_flags: &'a str,
    /// `connection_security_policy`.
    pub security_policy: SecurityPolicy,
}

type CachedKey = (SeriesKey, Arc<str>);

/// Istio's standard metric families and the per-series handle cache.
#[derive(Debug)]
pub struct IstioMetrics {
    requests: Family<IstioLabels, Counter>,
    duration: Family<IstioLabels, IstioHistogram>,
    request_bytes: Family<IstioLabels, IstioHistogram>,
    response_bytes: Family<IstioLabels, IstioHistogram>,
    tcp_opened: Family<IstioLabels, Counter>,
    tcp_closed: Family<IstioLabels, Counter>,
    tcp_sent: Family<IstioLabels, Counter>,
    tcp_received: Family<IstioLabels, Counter>,
    http_cache: CowMap<CachedKey, Arc<HttpSeries>>,
    tcp_cache: CowMap<CachedKey, TcpSeries>,
}

fn flags_label(flags: &str) -> &str {
    if flags.is_empty() {
        "-"
    } else {
        flags
    }
}

impl IstioMetrics {
    /// Creates the families and registers them under the `istio` prefix of `registry`.
    pub fn register(registry: &mut Registry) -> IstioMetrics {
        let m = IstioMetrics {
            requests: Family::default(),
            duration: Family::default(),
            request_bytes: Family::default(),
            response_bytes: Family::default(),
            tcp_opened: Family::default(),
            tcp_closed: Family::default(),
            tcp_sent: Family::default(),
            tcp_received: Family::default(),
            http_cache: CowMap::default(),
            tcp_cache: CowMap::default(),
        };
        // prometheus-client appends `_total` to counters: `requests` becomes `istio_requests_total`.
        let r = registry.sub_registry_with_prefix("istio");
        r.register(
            "requests",
            "Requests proxied, by source, destination and response",
            m.requests.clone(),
        );
        r.register(
            "request_duration_milliseconds",
            "Request duration from start to response complete, in milliseconds",
            m.duration.clone(),
        );
        r.register(
            "request_bytes",
            "Request size received from downstream, in bytes",
            m.request_bytes.clone(),
        );
        r.register(
            "response_bytes",
            "Response size sent downstream, in bytes",
            m.response_bytes.clone(),
        );
        r.register(
            "tcp_connections_opened",
            "TCP connections opened",
            m.tcp_opened.clone(),
        );
        r.register(
            "tcp_connections_closed",
            "TCP connections closed",
            m.tcp_closed.clone(),
        );
        r.register(
            "tcp_sent_bytes",
            "Bytes sent downstream on TCP connections",
            m.tcp_sent.clone(),
        );
        r.register(
            "tcp_received_bytes",
            "Bytes received from downstream on TCP connections",
            m.tcp_received.clone(),
        );
        m
    }

    /// Records one finished request: `istio_requests_total` and the three histograms.
    #[inline]
    pub fn record(&self, r: &RequestRecord<'_>) {
        let flags = flags_label(r.response_flags);
        let key = SeriesKey {
            source: r.source.id(),
            destination: r.destination.id(),
            service: r.service.id(),
            grpc: r.grpc_status.unwrap_or(NO_GRPC),
            code: r.response_code,
            reporter: r.reporter as u8,
            protocol: r.protocol as u8,
            security: r.security_policy as u8,
        };
        let hash = series_hash(&key, flags);
        let eq = |(k, f): &CachedKey| *k == key && &**f == flags;
        let observe = |s: &Arc<HttpSeries>| {
            s.requests.inc();
            s.duration.observe(r.duration.as_secs_f64() * 1000.0);
            s.request_bytes.observe(r.request_bytes as f64);
            s.response_bytes.observe(r.response_bytes as f64);
        };
        if self.http_cache.with(hash, eq, observe).is_some() {
            return;
        }
        let series = self.http_cache.get_or_insert_with(hash, eq, || {
            let labels = IstioLabels {
                key,
                flags: Arc::from(flags),
                reporter: r.reporter,
                protocol: r.protocol,
                security: r.security_policy,
                source: r.source.clone(),
                destination: r.destination.clone(),
                service: r.service.clone(),
                http: true,
            };
            let series = Arc::new(HttpSeries {
                requests: self.requests.get_or_create_owned(&labels),
                duration: self.duration.get_or_create_owned(&labels),
                request_bytes: self.request_bytes.get_or_create_owned(&labels),
                response_bytes: self.response_bytes.get_or_create_owned(&labels),
            });
            ((key, labels.flags), series)
        });
        observe(&series);
    }

    /// The TCP handles for a connection's labels; keep them for the connection's lifetime.
    pub fn tcp(&self, r: &TcpRecord<'_>) -> TcpSeries {
        let flags = flags_label(r.response_flags);
        let key = SeriesKey {
            source: r.source.id(),
            destination: r.destination.id(),
            service: r.service.id(),
            grpc: NO_GRPC,
            code: 0,
            reporter: r.reporter as u8,
            protocol: RequestProtocol::Tcp as u8,
            security: r.security_policy as u8,
        };
        let hash = series_hash(&key, flags);
        let eq = |(k, f): &CachedKey| *k == key && &**f == flags;
        if let Some(s) = self.tcp_cache.with(hash, eq, TcpSeries::clone) {
            return s;
        }
        self.tcp_cache.get_or_insert_with(hash, eq, || {
            let labels = IstioLabels {
                key,
                flags: Arc::from(flags),
                reporter: r.reporter,
                protocol: RequestProtocol::Tcp,
                security: r.security_policy,
                source: r.source.clone(),
                destination: r.destination.clone(),
                service: r.service.clone(),
                http: false,
            };
            let series = TcpSeries {
                opened: self.tcp_opened.get_or_create_owned(&labels),
                closed: self.tcp_closed.get_or_create_owned(&labels),
                sent: self.tcp_sent.get_or_create_owned(&labels),
                received: self.tcp_received.get_or_create_owned(&labels),
            };
            ((key, labels.flags), series)
        })
    }
}

fn series_hash(key: &SeriesKey, flags: &str) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    h.write(flags.as_bytes());
    h.finish()
}
