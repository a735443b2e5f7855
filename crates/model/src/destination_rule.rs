//! `DestinationRule` (networking.istio.io v1alpha3 / v1beta1 / v1).

use serde::{Deserialize, Serialize};

use crate::common::{Percent, PortSelector, WorkloadSelector};
use crate::small_map::SmallMap;

/// `DestinationRule.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationRule {
    /// Service the rule applies to.
    #[serde(default)]
    pub host: String,
    /// Default policy (boxed: 1.2 KB inline, and most rules and subsets have none).
    #[serde(default)]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    /// Named endpoint subsets.
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// Visibility.
    #[serde(default)]
    pub export_to: Vec<String>,
    /// Workloads the rule applies to.
    #[serde(default)]
    pub workload_selector: Option<WorkloadSelector>,
}

/// A named subset of a service's endpoints.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subset {
    /// Subset name.
    #[serde(default)]
    pub name: String,
    /// Labels an endpoint must carry.
    #[serde(default)]
    pub labels: SmallMap<String, String>,
    /// Subset policy overriding the top-level one.
    #[serde(default)]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

/// `TrafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of failing endpoints.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides.
    #[serde(default)]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnelling.
    #[serde(default)]
    pub tunnel: Option<TunnelSettings>,
    /// PROXY protocol upstream.
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Retry budget.
    #[serde(default)]
    pub retry_budget: Option<RetryBudget>,
}

/// Per-port policy.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortTrafficPolicy {
    /// Port it applies to.
    #[serde(default)]
    pub port: Option<PortSelector>,
    /// Load balancing.
    #[serde(default)]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection limits.
    #[serde(default)]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection.
    #[serde(default)]
    pub outlier_detection: Option<OutlierDetection>,
    /// Upstream TLS.
    #[serde(default)]
    pub tls: Option<ClientTlsSettings>,
}

/// `LoadBalancerSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSettings {
    /// Simple policy name.
    #[serde(default)]
    pub simple: Option<String>,
    /// Consistent hashing.
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Locality settings.
    #[serde(default)]
    pub locality_lb_setting: Option<serde_json::Value>,
    /// Zone-aware settings.
    #[serde(default)]
    pub zone_aware_lb_setting: Option<serde_json::Value>,
    /// Deprecated slow start.
    #[serde(default)]
    pub warmup_duration_secs: Option<String>,
    /// Slow start.
    #[serde(default)]
    pub warmup: Option<WarmupConfiguration>,
}

/// Slow-start settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WarmupConfiguration {
    /// Warm-up duration.
    #[serde(default)]
    pub duration: Option<String>,
    /// Starting percentage.
    #[serde(default)]
    pub minimum_percent: Option<Percent>,
    /// Curve aggression.
    #[serde(default)]
    pub aggression: Option<f64>,
}

/// `ConsistentHashLB`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsistentHashLb {
    /// Hash on this request header.
    #[serde(default)]
    pub http_header_name: Option<String>,
    /// Hash on this cookie.
    #[serde(default)]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the peer IP.
    #[serde(default)]
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter.
    #[serde(default)]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash.
    #[serde(default)]
    pub ring_hash: Option<RingHash>,
    /// Maglev.
    #[serde(default)]
    pub maglev: Option<Maglev>,
    /// Deprecated ring size.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// Cookie used as hash key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpCookie {
    /// Cookie name.
    #[serde(default)]
    pub name: String,
    /// Cookie path.
    #[serde(default)]
    pub path: Option<String>,
    /// Lifetime of a generated cookie.
    #[serde(default)]
    pub ttl: Option<String>,
    /// Extra attributes.
    #[serde(default)]
    pub attributes: Vec<CookieAttribute>,
}

/// Cookie attribute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct CookieAttribute {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: Option<String>,
}

/// Ring hash settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RingHash {
    /// Minimum ring size.
    #[serde(default)]
    pub minimum_ring_size: Option<u64>,
}

/// Maglev settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Maglev {
    /// Lookup table size (prime).
    #[serde(default)]
    pub table_size: Option<u64>,
}

/// `ConnectionPoolSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ConnectionPoolSettings {
    /// TCP limits.
    #[serde(default)]
    pub tcp: Option<TcpSettings>,
    /// HTTP limits.
    #[serde(default)]
    pub http: Option<HttpSettings>,
}

/// TCP pool settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TcpSettings {
    /// Max connections.
    #[serde(default)]
    pub max_connections: Option<i64>,
    /// Connect timeout.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// Keepalive.
    #[serde(default)]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Max connection age.
    #[serde(default)]
    pub max_connection_duration: Option<String>,
    /// Idle timeout.
    #[serde(default)]
    pub idle_timeout: Option<String>,
}

/// TCP keepalive.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TcpKeepalive {
    /// Probes.
    #[serde(default)]
    pub probes: Option<u32>,
    /// Idle time before probes.
    #[serde(default)]
    pub time: Option<String>,
    /// Probe interval.
    #[serde(default)]
    pub interval: Option<String>,
}

/// HTTP pool settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpSettings {
    /// Max pending requests.
    #[serde(default)]
    pub http1_max_pending_requests: Option<i64>,
    /// Max concurrent requests.
    #[serde(default)]
    pub http2_max_requests: Option<i64>,
    /// Requests per connection.
    #[serde(default)]
    pub max_requests_per_connection: Option<i64>,
    /// Max concurrent retries.
    #[serde(default)]
    pub max_retries: Option<i64>,
    /// Idle timeout.
    #[serde(default)]
    pub idle_timeout: Option<String>,
    /// h2 upgrade policy.
    #[serde(default)]
    pub h2_upgrade_policy: Option<String>,
    /// Keep the client's protocol upstream.
    #[serde(default)]
    pub use_client_protocol: Option<bool>,
    /// Max concurrent streams per connection.
    #[serde(default)]
    pub max_concurrent_streams: Option<i64>,
    /// HTTP/2 keepalive pings.
    #[serde(default)]
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

/// HTTP/2 keepalive settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Http2KeepAlive {
    /// Ping interval.
    #[serde(default)]
    pub interval: Option<String>,
    /// Ping timeout.
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `OutlierDetection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutlierDetection {
    /// Deprecated consecutive errors.
    #[serde(default)]
    pub consecutive_errors: Option<i64>,
    /// Separate local-origin failures.
    #[serde(default)]
    pub split_external_local_origin_errors: Option<bool>,
    /// Consecutive local-origin failures.
    #[serde(default)]
    pub consecutive_local_origin_failures: Option<i64>,
    /// Consecutive gateway errors.
    #[serde(default)]
    pub consecutive_gateway_errors: Option<i64>,
    /// Consecutive 5xx errors.
    #[serde(default, rename = "consecutive5xxErrors")]
    pub consecutive_5xx_errors: Option<i64>,
    /// Sweep interval.
    #[serde(default)]
    pub interval: Option<String>,
    /// Base ejection time.
    #[serde(default)]
    pub base_ejection_time: Option<String>,
    /// Max ejected percentage.
    #[serde(default)]
    pub max_ejection_percent: Option<i64>,
    /// Min healthy percentage.
    #[serde(default)]
    pub min_health_percent: Option<i64>,
    /// Status codes that count as errors.
    #[serde(default)]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// `ClientTLSSettings`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientTlsSettings {
    /// Mode.
    #[serde(default)]
    pub mode: Option<String>,
    /// Client certificate file.
    #[serde(default)]
    pub client_certificate: Option<String>,
    /// Private key file.
    #[serde(default)]
    pub private_key: Option<String>,
    /// CA file.
    #[serde(default)]
    pub ca_certificates: Option<String>,
    /// Secret name.
    #[serde(default)]
    pub credential_name: Option<String>,
    /// Accepted SANs.
    #[serde(default)]
    pub subject_alt_names: Vec<String>,
    /// SNI to send.
    #[serde(default)]
    pub sni: Option<String>,
    /// Skip verification.
    #[serde(default)]
    pub insecure_skip_verify: Option<bool>,
    /// CRL file.
    #[serde(default)]
    pub ca_crl: Option<String>,
}

/// Tunnel settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSettings {
    /// CONNECT or POST.
    #[serde(default)]
    pub protocol: Option<String>,
    /// Tunnel target host.
    #[serde(default)]
    pub target_host: Option<String>,
    /// Tunnel target port.
    #[serde(default)]
    pub target_port: Option<u32>,
}

/// PROXY protocol settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProxyProtocol {
    /// V1 or V2.
    #[serde(default)]
    pub version: Option<String>,
}

/// Retry budget.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    /// Share of active requests that may be retries.
    #[serde(default)]
    pub percent: Option<Percent>,
    /// Minimum concurrent retries.
    #[serde(default)]
    pub min_retry_concurrency: Option<u32>,
    /// Budget interval.
    #[serde(default)]
    pub budget_interval: Option<String>,
}
