//! Compiled traffic policies: what a route does besides choosing a destination (timeouts, retries,
//! faults, mirrors, rewrites, header operations, CORS) and how a cluster is balanced and protected
//! (load balancer, connection pool, outlier detection). Pure data, built at compile time.

use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde::Serialize;

use crate::matcher::StrMatch;

/// Everything a matched route applies around forwarding. `Default` is "nothing configured".
/// One is kept per rule for the life of the snapshot: the rarely configured parts are boxed.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutePolicy {
    /// Whole-request timeout (covers all retries); `None` = no timeout (Istio's default).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub timeout: Option<Duration>,
    /// Retry policy; `None` = no retries (`attempts: 0`). Istio's default policy when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Fault injection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Box<FaultPolicy>>,
    /// Mirror targets, each with its own sampling percentage.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<MirrorPolicy>,
    /// Path/authority rewrite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Box<Rewrite>>,
    /// Route-level header operations; `None` when there are none (see [`RoutePolicy::headers`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Box<HeaderPolicy>>,
    /// CORS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Box<CorsPolicy>>,
}

/// What a route without header operations applies.
static NO_HEADERS: HeaderPolicy = HeaderPolicy {
    authority: None,
    request: HeaderOps::NONE,
    response: HeaderOps::NONE,
};

impl RoutePolicy {
    /// Route-level header operations (empty when none are configured).
    pub fn headers(&self) -> &HeaderPolicy {
        self.headers.as_deref().unwrap_or(&NO_HEADERS)
    }
}

/// A compiled `HTTPRetry`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Retries allowed (total tries ≤ 1 + attempts).
    pub num_retries: u32,
    /// Timeout of each try (`None`: only the route timeout applies).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub per_try_timeout: Option<Duration>,
    /// Conditions (Envoy names: `5xx`, `gateway-error`, `reset`, `connect-failure`, ...).
    pub retry_on: RetryOn,
    /// HTTP status codes retried with `retriable-status-codes`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u16>,
    /// Prefer a different endpoint for each retry (Envoy `previous_hosts`).
    pub avoid_previous_hosts: bool,
    /// Backoff base interval (Envoy: max = 10 × base).
    #[serde(with = "duration_ms")]
    pub backoff_base: Duration,
    /// Retries go to other localities' priority levels (`retryRemoteLocalities`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub retry_remote_localities: bool,
}

/// Retry conditions as flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryOn {
    /// Any 5xx response, reset, connect failure or per-try timeout.
    pub five_xx: bool,
    /// 502, 503, 504, reset, connect failure or per-try timeout.
    pub gateway_error: bool,
    /// Upstream reset (no response) at any time.
    pub reset: bool,
    /// Upstream reset before any response byte.
    pub reset_before_request: bool,
    /// Connect failure.
    pub connect_failure: bool,
    /// 409.
    pub retriable_4xx: bool,
    /// HTTP/2 REFUSED_STREAM.
    pub refused_stream: bool,
    /// Codes in `retriable_status_codes`.
    pub retriable_status_codes: bool,
    /// gRPC status CANCELLED (1).
    pub grpc_cancelled: bool,
    /// gRPC status DEADLINE_EXCEEDED (4).
    pub grpc_deadline_exceeded: bool,
    /// gRPC status INTERNAL (13).
    pub grpc_internal: bool,
    /// gRPC status RESOURCE_EXHAUSTED (8).
    pub grpc_resource_exhausted: bool,
    /// gRPC status UNAVAILABLE (14).
    pub grpc_unavailable: bool,
    /// A response carrying one of the headers named by the request's
    /// `x-envoy-retriable-header-names`.
    pub retriable_headers: bool,
    /// A response carrying `x-envoy-ratelimited`.
    pub envoy_ratelimited: bool,
    /// A failure after an HTTP/3 connection was made: accepted, never true (no HTTP/3 upstream).
    pub http3_post_connect_failure: bool,
}

/// A compiled `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultPolicy {
    /// Injected delay.
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub delay: Option<Duration>,
    /// Share of requests (0–100) delayed.
    pub delay_percent: f64,
    /// Injected abort.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortKind>,
    /// Share of requests (0–100) aborted.
    pub abort_percent: f64,
}

/// What an injected abort answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AbortKind {
    /// HTTP status with body `fault filter abort`.
    Http(u16),
    /// HTTP 200 trailers-only with this `grpc-status`.
    Grpc(u32),
}

/// One mirror target.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MirrorPolicy {
    /// Destination resolved like a route destination (its cluster may be missing: copies are dropped).
    pub destination: crate::route_table::RouteDestination,
    /// Share of requests (0–100) mirrored.
    pub percentage: f64,
}

/// A compiled `HTTPRewrite`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    /// Replacement for the matched prefix (or the whole path for exact/regex matches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Regex rewrite of the path (pattern, substitution with `\1` turned into `${1}`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_regex_rewrite"
    )]
    pub uri_regex: Option<(Regex, String)>,
    /// Replacement authority.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

fn ser_regex_rewrite<S: serde::Serializer>(
    v: &Option<(Regex, String)>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some((r, rw)) => s.serialize_str(&format!("{} -> {rw}", r.as_str())),
        None => s.serialize_none(),
    }
}

/// Header operations for one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderOps {
    /// Overwrite or add (lower-case names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<(String, String)>,
    /// Append.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<(String, String)>,
    /// Remove.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl HeaderOps {
    /// Nothing to do.
    pub const NONE: HeaderOps = HeaderOps {
        set: Vec::new(),
        add: Vec::new(),
        remove: Vec::new(),
    };

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }
}

/// Request and response header operations (route level or per destination).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HeaderPolicy {
    /// Authority set through a `host`/`:authority` request header operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Before forwarding.
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub request: HeaderOps,
    /// Before answering.
    #[serde(skip_serializing_if = "HeaderOps::is_empty")]
    pub response: HeaderOps,
}

impl HeaderPolicy {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.authority.is_none() && self.request.is_empty() && self.response.is_empty()
    }
}

/// A compiled `CorsPolicy`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Origins allowed (exact/prefix/regex).
    pub allow_origins: Vec<StrMatch>,
    /// `Access-Control-Allow-Methods` value (joined with `,`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<String>,
    /// `Access-Control-Allow-Headers` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<String>,
    /// `Access-Control-Expose-Headers` value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<String>,
    /// `Access-Control-Max-Age` in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// Forward preflights whose origin does not match (Istio's default) instead of ignoring them.
    pub forward_unmatched_preflights: bool,
}

/// How a cluster picks endpoints.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LbPolicy {
    /// Power of two choices on in-flight requests (Istio's default).
    LeastRequest,
    /// Weighted round robin.
    RoundRobin,
    /// Uniform random (weighted).
    Random,
    /// Forward to the original destination.
    Passthrough,
    /// Consistent hashing.
    ConsistentHash(ConsistentHash),
}

/// Consistent-hash settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHash {
    /// What to hash.
    pub key: HashKey,
    /// Ring hash (minimum ring size) or Maglev (table size).
    pub algorithm: HashAlgorithm,
}

/// The request property a consistent hash uses.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HashKey {
    /// A request header.
    Header(String),
    /// A cookie; generated with `Set-Cookie` when absent and `ttl` is set.
    Cookie {
        /// Name.
        name: String,
        /// Path attribute.
        path: Option<String>,
        /// Lifetime of a generated cookie (`Some(0)`: session cookie; `None`: never generate).
        #[serde(with = "opt_duration_ms")]
        ttl: Option<Duration>,
        /// Further attributes of a generated cookie (`SameSite=Strict`, `Secure`, ...), in order.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        attributes: Vec<(String, Option<String>)>,
    },
    /// The downstream peer IP.
    SourceIp,
    /// A query parameter.
    QueryParameter(String),
}

/// Consistent-hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum HashAlgorithm {
    /// Ketama-style ring with at least this many entries.
    RingHash {
        /// Minimum ring size (default 1024).
        minimum_ring_size: u64,
    },
    /// Maglev lookup table of this (prime) size.
    Maglev {
        /// Table size (default 65537).
        table_size: u64,
    },
}

/// DestinationRule `retryBudget`: concurrent retries are allowed while they stay within
/// `max(min_retry_concurrency, percent × requests)`, the requests being the active and pending
/// ones, or with `budget_interval` those started within that interval (Envoy's
/// `RetryBudget.budget_interval`, a sliding window).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Share (0–100) of the requests that may be retries (default 20).
    pub percent: f64,
    /// Retries always allowed, whatever the traffic (default 3).
    pub min_retry_concurrency: u32,
    /// The window whose requests count (`budgetInterval`; unset or 0: the active and pending
    /// requests).
    #[serde(skip_serializing_if = "Option::is_none", with = "opt_duration_ms")]
    pub interval: Option<Duration>,
}

impl RetryBudget {
    /// The most concurrent retries allowed with `requests` requests counted.
    pub fn max_retries(&self, requests: u32) -> u32 {
        let share = (self.percent.clamp(0.0, 100.0) / 100.0 * f64::from(requests)) as u32;
        share.max(self.min_retry_concurrency)
    }
}

/// Slow start (`warmup` / `warmupDurationSecs`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmupPolicy {
    /// The window.
    #[serde(with = "duration_ms")]
    pub duration: Duration,
    /// The floor, in percent of the weight (default 10).
    pub minimum_percent: f64,
    /// The curve (default 1.0: linear).
    pub aggression: f64,
}

/// Connection-pool limits (Envoy circuit breakers). `u32::MAX`-like values mean unlimited.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolLimits {
    /// Max connections to the cluster.
    pub max_connections: u32,
    /// Max requests waiting for a connection.
    pub max_pending_requests: u32,
    /// Max concurrent requests.
    pub max_requests: u32,
    /// Max concurrent retries.
    pub max_retries: u32,
    /// `retryBudget`: replaces `max_retries` with a share of the active requests, as Envoy's
    /// retry budget does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
    /// Requests per connection (0 = unlimited).
    pub max_requests_per_connection: u32,
    /// Connect timeout (default 10 s).
    #[serde(with = "duration_ms")]
    pub connect_timeout: Duration,
    /// Idle timeout of pooled HTTP upstream connections (default 1 h): `http.idleTimeout`, else
    /// `tcp.idleTimeout`, as Istio sets the cluster's.
    #[serde(with = "opt_duration_ms")]
    pub idle_timeout: Option<Duration>,
    /// Idle timeout of relayed TCP connections (default 1 h): `tcp.idleTimeout` only, which
    /// Istio sets on the TCP proxy.
    #[serde(with = "opt_duration_ms")]
    pub tcp_idle_timeout: Option<Duration>,
    /// TCP keepalive: (probes, idle time, interval).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Upgrade HTTP/1.1 upstream connections to HTTP/2.
    pub h2_upgrade: bool,
    /// Upstream connections older than this take no new request and close once idle
    /// (`tcp.maxConnectionDuration`, Envoy's `max_connection_duration`).
    #[serde(with = "opt_duration_ms")]
    pub max_connection_duration: Option<Duration>,
    /// Streams one upstream HTTP/2 connection carries at once before another is opened
    /// (0 = unlimited).
    pub max_concurrent_streams: u32,
    /// PINGs on upstream HTTP/2 connections (`http.http2KeepAlive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub h2_keepalive: Option<H2KeepAlive>,
    /// The upstream protocol follows the downstream request's (`http.useClientProtocol`).
    pub use_client_protocol: bool,
    /// A PROXY protocol header starts each upstream connection (`trafficPolicy.proxyProtocol`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// TCP to the cluster is carried in an HTTP/1.1 tunnel (CONNECT or POST) through the
    /// endpoint (`trafficPolicy.tunnel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
}

/// `trafficPolicy.tunnel`: the endpoint is a forward proxy asked to carry the connection to
/// `target_host:target_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tunnel {
    /// How the stream is carried (`protocol`, CONNECT unless set).
    pub method: TunnelMethod,
    /// Host of the tunnel's authority.
    pub target_host: String,
    /// Port of the tunnel's authority.
    pub target_port: u16,
}

/// `tunnel.protocol`: how the relayed TCP stream rides in HTTP/1.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TunnelMethod {
    /// `CONNECT host:port`; after a 2xx answer the connection carries raw bytes both ways.
    Connect,
    /// `POST /` with `Host: host:port` (Envoy's `use_post`, `post_path` "/"): the stream is the
    /// chunked request body one way and the response body the other.
    Post,
}

impl Tunnel {
    /// The CONNECT request's authority (`[v6]:port` for an IPv6 host).
    pub fn authority(&self) -> String {
        if self.target_host.contains(':') {
            format!("[{}]:{}", self.target_host, self.target_port)
        } else {
            format!("{}:{}", self.target_host, self.target_port)
        }
    }
}

impl Default for PoolLimits {
    fn default() -> Self {
        PoolLimits {
            max_connections: u32::MAX,
            max_pending_requests: u32::MAX,
            max_requests: u32::MAX,
            max_retries: u32::MAX,
            retry_budget: None,
            max_requests_per_connection: 0,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Some(Duration::from_secs(3600)),
            tcp_idle_timeout: Some(Duration::from_secs(3600)),
            tcp_keepalive: None,
            h2_upgrade: false,
            max_connection_duration: None,
            max_concurrent_streams: 0,
            h2_keepalive: None,
            use_client_protocol: false,
            proxy_protocol: None,
            tunnel: None,
        }
    }
}

/// HTTP/2 keepalive: a PING every `interval`; no answer within `timeout` closes the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct H2KeepAlive {
    /// Time between PINGs.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// Time a PING may go unanswered.
    #[serde(with = "duration_ms")]
    pub timeout: Duration,
}

/// The PROXY protocol version written upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProxyProtocolVersion {
    /// The text header (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary header.
    V2,
}

/// SO_KEEPALIVE settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpKeepalive {
    /// Probes before the connection is dropped.
    pub probes: Option<u32>,
    /// Idle time before the first probe.
    #[serde(with = "opt_duration_ms")]
    pub time: Option<Duration>,
    /// Interval between probes.
    #[serde(with = "opt_duration_ms")]
    pub interval: Option<Duration>,
}

/// Outlier detection (consecutive-error ejection).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierPolicy {
    /// Consecutive 5xx (and local-origin failures) before ejection; 0 disables.
    pub consecutive_5xx: u32,
    /// Consecutive 502/503/504 (and connect failures) before ejection; 0 disables.
    pub consecutive_gateway_errors: u32,
    /// Sweep interval.
    #[serde(with = "duration_ms")]
    pub interval: Duration,
    /// Base ejection time (× number of ejections, capped at 300 s).
    #[serde(with = "duration_ms")]
    pub base_ejection_time: Duration,
    /// Max share of endpoints ejected at once (at least one is always ejectable).
    pub max_ejection_percent: u32,
    /// Below this share of healthy endpoints, ignore ejections (panic mode); 0 = never.
    pub min_health_percent: u32,
    /// Local-origin failures are counted apart from upstream errors
    /// (`splitExternalLocalOriginErrors`).
    pub split_local_origin: bool,
    /// Consecutive local-origin failures before ejection, when split (default 5).
    pub consecutive_local_origin: u32,
    /// Statuses that count as errors (`outlierDetectionHttpErrorCodes`; empty: every 5xx).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u16>,
}

/// The merged DestinationRule policy for one cluster (port and subset).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicy {
    /// Endpoint selection.
    pub lb: LbPolicy,
    /// Limits.
    pub pool: PoolLimits,
    /// Ejection of failing endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier: Option<OutlierPolicy>,
    /// Upstream TLS origination (`SIMPLE`/`MUTUAL`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Arc<crate::tls::ClientTls>>,
    /// `localityLbSetting` in force (`None`: disabled); Istio enables it by default.
    #[serde(skip)]
    pub locality: Option<sluice_lb::LocalityPolicy>,
    /// Slow start (round robin and least request only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupPolicy>,
}

impl Default for ClusterPolicy {
    fn default() -> Self {
        ClusterPolicy {
            lb: LbPolicy::LeastRequest,
            pool: PoolLimits::default(),
            outlier: None,
            tls: None,
            locality: Some(sluice_lb::LocalityPolicy::default()),
            warmup: None,
        }
    }
}

mod duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }
}
