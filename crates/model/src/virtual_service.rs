//! `VirtualService` (networking.istio.io v1alpha3 / v1beta1 / v1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::common::{Destination, Headers, Percent, StringMatch};
use crate::small_map::SmallMap;

/// `VirtualService.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VirtualService {
    /// Hosts the rules apply to.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Gateways (and/or `mesh`) the rules apply to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Ordered HTTP rules.
    #[serde(default)]
    pub http: Vec<HttpRoute>,
    /// Ordered TLS (SNI) rules.
    #[serde(default)]
    pub tls: Vec<TlsRoute>,
    /// Ordered TCP rules.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces this VirtualService is visible to.
    #[serde(default)]
    pub export_to: Vec<String>,
}

/// One HTTP rule. Every rule is kept for the life of the snapshot: the rarely set parts are
/// boxed (serde reads and writes a `Box` as its contents).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Debug name.
    #[serde(default)]
    pub name: Option<String>,
    /// Match conditions, OR'ed.
    #[serde(default, rename = "match")]
    pub matches: Vec<HttpMatchRequest>,
    /// Forwarding destinations.
    #[serde(default)]
    pub route: Vec<HttpRouteDestination>,
    /// Redirect instead of forwarding.
    #[serde(default)]
    pub redirect: Option<Box<HttpRedirect>>,
    /// Fixed response instead of forwarding.
    #[serde(default)]
    pub direct_response: Option<Box<HttpDirectResponse>>,
    /// Routes pulled from another VirtualService.
    #[serde(default)]
    pub delegate: Option<Box<Delegate>>,
    /// Rewrite before forwarding.
    #[serde(default)]
    pub rewrite: Option<Box<HttpRewrite>>,
    /// Whole-request timeout.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Retry policy.
    #[serde(default)]
    pub retries: Option<HttpRetry>,
    /// Fault injection.
    #[serde(default)]
    pub fault: Option<Box<HttpFaultInjection>>,
    /// Single mirror target.
    #[serde(default)]
    pub mirror: Option<Box<Destination>>,
    /// Several mirror targets.
    #[serde(default)]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Share of requests mirrored to `mirror`.
    #[serde(default)]
    pub mirror_percentage: Option<Percent>,
    /// Deprecated integer mirror percentage.
    #[serde(default, alias = "mirror_percent")]
    pub mirror_percent: Option<u32>,
    /// CORS policy.
    #[serde(default)]
    pub cors_policy: Option<Box<CorsPolicy>>,
    /// Header operations for the whole route.
    #[serde(default)]
    pub headers: Option<Box<Headers>>,
}

/// One match entry: all fields AND'ed. Kept for the life of the snapshot: the string
/// matches are boxed, most entries setting one or none.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpMatchRequest {
    /// Name appended to the route name.
    #[serde(default)]
    pub name: Option<String>,
    /// Path match.
    #[serde(default)]
    pub uri: Option<Box<StringMatch>>,
    /// `:scheme` match.
    #[serde(default)]
    pub scheme: Option<Box<StringMatch>>,
    /// `:method` match.
    #[serde(default)]
    pub method: Option<Box<StringMatch>>,
    /// `:authority` match.
    #[serde(default)]
    pub authority: Option<Box<StringMatch>>,
    /// Header matches.
    #[serde(default)]
    pub headers: SmallMap<String, StringMatch>,
    /// Port the traffic arrived on.
    #[serde(default)]
    pub port: Option<u32>,
    /// Caller workload labels (config time).
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways this entry applies to.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Query parameter matches.
    #[serde(default)]
    pub query_params: SmallMap<String, StringMatch>,
    /// Case-insensitive URI match.
    #[serde(default)]
    pub ignore_uri_case: bool,
    /// Headers that must not match.
    #[serde(default)]
    pub without_headers: SmallMap<String, StringMatch>,
    /// Caller namespace (config time).
    #[serde(default)]
    pub source_namespace: Option<String>,
    /// Envoy stats prefix.
    #[serde(default)]
    pub stat_prefix: Option<String>,
}

/// A weighted HTTP destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteDestination {
    /// Where to send traffic.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Relative weight.
    #[serde(default)]
    pub weight: Option<i32>,
    /// Per-destination header operations (boxed: rarely set, and every destination is kept).
    #[serde(default)]
    pub headers: Option<Box<Headers>>,
}

/// A weighted TCP/TLS destination.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RouteDestination {
    /// Where to send traffic.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Relative weight.
    #[serde(default)]
    pub weight: Option<i32>,
}

/// `HTTPRedirect`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRedirect {
    /// Replacement path.
    #[serde(default)]
    pub uri: Option<String>,
    /// Replacement host.
    #[serde(default)]
    pub authority: Option<String>,
    /// Replacement port.
    #[serde(default)]
    pub port: Option<u32>,
    /// How to derive the port: FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT.
    #[serde(default)]
    pub derive_port: Option<String>,
    /// Replacement scheme.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Status code (default 301).
    #[serde(default)]
    pub redirect_code: Option<u32>,
    /// Replacement for the matched prefix.
    #[serde(default)]
    pub prefix_rewrite: Option<String>,
}

/// `HTTPDirectResponse`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpDirectResponse {
    /// Status code.
    #[serde(default)]
    pub status: Option<u32>,
    /// Body.
    #[serde(default)]
    pub body: Option<HttpBody>,
}

/// Body of a direct response: a string or base64 bytes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpBody {
    /// Text body.
    #[serde(default)]
    pub string: Option<String>,
    /// Base64-encoded body.
    #[serde(default)]
    pub bytes: Option<String>,
}

/// `Delegate`: another VirtualService's routes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct Delegate {
    /// Delegate VirtualService name.
    #[serde(default)]
    pub name: String,
    /// Its namespace (default: the root's).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `HTTPRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRewrite {
    /// Replacement for the matched path part.
    #[serde(default)]
    pub uri: Option<String>,
    /// Replacement authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// Regex path rewrite.
    #[serde(default)]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct RegexRewrite {
    /// RE2 pattern.
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    /// Substitution with `\1` references.
    #[serde(default)]
    pub rewrite: Option<String>,
}

/// `HTTPRetry`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Number of retries.
    #[serde(default)]
    pub attempts: Option<i32>,
    /// Timeout of each try.
    #[serde(default)]
    pub per_try_timeout: Option<String>,
    /// Retry conditions, comma-separated.
    #[serde(default)]
    pub retry_on: Option<String>,
    /// Allow retries in other localities.
    #[serde(default)]
    pub retry_remote_localities: Option<bool>,
    /// Avoid previously tried hosts.
    #[serde(default)]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Backoff base interval.
    #[serde(default)]
    pub backoff: Option<String>,
}

/// `HTTPFaultInjection`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpFaultInjection {
    /// Delay fault.
    #[serde(default)]
    pub delay: Option<FaultDelay>,
    /// Abort fault.
    #[serde(default)]
    pub abort: Option<FaultAbort>,
}

/// Delay fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// Fixed delay.
    #[serde(default)]
    pub fixed_delay: Option<String>,
    /// Exponential delay (rejected by Istio).
    #[serde(default)]
    pub exponential_delay: Option<String>,
    /// Share of requests delayed.
    #[serde(default)]
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage.
    #[serde(default)]
    pub percent: Option<i32>,
}

/// Abort fault.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// HTTP status to return.
    #[serde(default)]
    pub http_status: Option<i32>,
    /// gRPC status name to return.
    #[serde(default)]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (rejected by Istio).
    #[serde(default)]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// One of several mirror targets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct HttpMirrorPolicy {
    /// Mirror destination.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Share mirrored.
    #[serde(default)]
    pub percentage: Option<Percent>,
}

/// `CorsPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorsPolicy {
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<StringMatch>,
    /// Deprecated exact origins.
    #[serde(default)]
    pub allow_origin: Vec<String>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Exposed response headers.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache duration.
    #[serde(default)]
    pub max_age: Option<String>,
    /// Allow credentials.
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// What to do with preflights that match no origin.
    #[serde(default)]
    pub unmatched_preflights: Option<String>,
}

/// `TLSRoute`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TlsRoute {
    /// SNI match conditions.
    #[serde(default, rename = "match")]
    pub matches: Vec<TlsMatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `TLSMatchAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsMatchAttributes {
    /// SNI names.
    #[serde(default)]
    pub sni_hosts: Vec<String>,
    /// Destination CIDRs.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Caller labels.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Caller namespace.
    #[serde(default)]
    pub source_namespace: Option<String>,
}

/// `TCPRoute`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TcpRoute {
    /// L4 match conditions.
    #[serde(default, rename = "match")]
    pub matches: Vec<L4MatchAttributes>,
    /// Destinations.
    #[serde(default)]
    pub route: Vec<RouteDestination>,
}

/// `L4MatchAttributes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4MatchAttributes {
    /// Destination CIDRs.
    #[serde(default)]
    pub destination_subnets: Vec<String>,
    /// Port.
    #[serde(default)]
    pub port: Option<u32>,
    /// Source CIDR.
    #[serde(default)]
    pub source_subnet: Option<String>,
    /// Caller labels.
    #[serde(default)]
    pub source_labels: BTreeMap<String, String>,
    /// Gateways.
    #[serde(default)]
    pub gateways: Vec<String>,
    /// Caller namespace.
    #[serde(default)]
    pub source_namespace: Option<String>,
}
