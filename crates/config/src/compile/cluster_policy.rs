//! DestinationRule traffic policies → the merged [`ClusterPolicy`] of one (host, port, subset),
//! with Istio's merge rules (port-level replaces top-level; subset objects replace whole objects).

use std::sync::Arc;

use super::auto_mtls::DrTls;
use std::time::Duration;

use sluice_model::destination_rule::RetryBudget as RetryBudgetSpec;
use sluice_model::{
    ClientTlsSettings, ConnectionPoolSettings, ConsistentHashLb, LoadBalancerSettings,
    OutlierDetection, PortTrafficPolicy, ProxyProtocol, Resource, TrafficPolicy, TunnelSettings,
};

use super::destination_rules::DestinationRuleIndex;
use super::gateway_tls::{resolve_path, secret_name};
use crate::duration::{parse_go_duration, parse_istio_duration};
use crate::policy::{
    ClusterPolicy, ConsistentHash, H2KeepAlive, HashAlgorithm, HashKey, LbPolicy, OutlierPolicy,
    PoolLimits, ProxyProtocolVersion, RetryBudget, TcpKeepalive, Tunnel, TunnelMethod,
    WarmupPolicy,
};
use crate::tls::{CaSource, CertificateSource, ClientTls};

/// The policy objects that apply to one cluster, before they are compiled.
#[derive(Default, Clone, Copy)]
struct Objects<'a> {
    lb: Option<&'a LoadBalancerSettings>,
    pool: Option<&'a ConnectionPoolSettings>,
    outlier: Option<&'a OutlierDetection>,
    tls: Option<&'a ClientTlsSettings>,
    /// A whole-policy field: port-level entries have none, so it comes from the policy itself.
    proxy_protocol: Option<&'a ProxyProtocol>,
    /// `tunnel`, a whole-policy field too.
    tunnel: Option<&'a TunnelSettings>,
    /// `retryBudget` (top-level and subset policies only: port-level entries have none).
    retry_budget: Option<&'a RetryBudgetSpec>,
}

impl<'a> Objects<'a> {
    /// A policy's objects on `port`: a matching port-level entry replaces them all (unset ones
    /// fall back to defaults, not to the policy's top-level objects).
    fn of(tp: &'a TrafficPolicy, port: u16) -> Self {
        match port_level(tp, port) {
            Some(pl) => Objects {
                lb: pl.load_balancer.as_ref(),
                pool: pl.connection_pool.as_ref(),
                outlier: pl.outlier_detection.as_ref(),
                tls: pl.tls.as_ref(),
                proxy_protocol: tp.proxy_protocol.as_ref(),
                tunnel: tp.tunnel.as_ref(),
                retry_budget: tp.retry_budget.as_ref(),
            },
            None => Objects {
                lb: tp.load_balancer.as_ref(),
                pool: tp.connection_pool.as_ref(),
                outlier: tp.outlier_detection.as_ref(),
                tls: tp.tls.as_ref(),
                proxy_protocol: tp.proxy_protocol.as_ref(),
                tunnel: tp.tunnel.as_ref(),
                retry_budget: tp.retry_budget.as_ref(),
            },
        }
    }

    /// Applies a subset policy: its own port-level entry replaces everything; otherwise each
    /// object it sets replaces the inherited object whole (no field-level merge).
    fn with_subset(self, sp: &'a TrafficPolicy, port: u16) -> Self {
        // `proxyProtocol` is replaced only by the subset's own, as Istio's MergeTrafficPolicy does.
        let proxy_protocol = sp.proxy_protocol.as_ref().or(self.proxy_protocol);
        let tunnel = sp.tunnel.as_ref().or(self.tunnel);
        if port_level(sp, port).is_some() {
            return Objects {
                proxy_protocol,
                tunnel,
                ..Objects::of(sp, port)
            };
        }
        Objects {
            lb: sp.load_balancer.as_ref().or(self.lb),
            pool: sp.connection_pool.as_ref().or(self.pool),
            outlier: sp.outlier_detection.as_ref().or(self.outlier),
            tls: sp.tls.as_ref().or(self.tls),
            proxy_protocol,
            tunnel,
            retry_budget: sp.retry_budget.as_ref().or(self.retry_budget),
        }
    }
}

/// The first `portLevelSettings` entry for `port` (Istio stops at the first match).
fn port_level(tp: &TrafficPolicy, port: u16) -> Option<&PortTrafficPolicy> {
    tp.port_level_settings
        .iter()
        .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))
}

/// The merged policy for a cluster; `h2` tells whether the port speaks HTTP/2 (TLS ALPN).
pub(crate) fn cluster_policy(
    index: &DestinationRuleIndex<'_>,
    hostname: &str,
    namespaces: &[&str],
    port: u16,
    h2: bool,
    subset: Option<&str>,
) -> (ClusterPolicy, DrTls) {
    let rules = index.for_service(hostname, namespaces);
    // Same-host rules are merged: the first with a top-level trafficPolicy keeps it.
    let top = rules
        .iter()
        .find_map(|(r, dr)| dr.traffic_policy.as_ref().map(|tp| (*r, tp)));
    let mut owner = top.map(|(r, _)| r);
    let mut objects = top.map(|(_, tp)| Objects::of(tp, port)).unwrap_or_default();
    if let Some(name) = subset {
        // Subsets are concatenated across rules; the first of a name wins (as for its labels).
        let subset_policy = rules
            .iter()
            .flat_map(|(r, dr)| dr.subsets.iter().map(move |s| (*r, s)))
            .find(|(_, s)| s.name == name)
            .and_then(|(r, s)| s.traffic_policy.as_ref().map(|tp| (r, tp)));
        if let Some((r, sp)) = subset_policy {
            if sp.tls.is_some() || port_level(sp, port).is_some() {
                owner = Some(r);
            }
            objects = objects.with_subset(sp, port);
        }
    }
    let tls = match (objects.tls, owner) {
        (Some(t), Some(r)) => client_tls(r, t, hostname, h2),
        _ => None,
    };
    let dr_tls = match objects.tls {
        None => DrTls::Absent,
        Some(t) if t.mode.as_deref() == Some("ISTIO_MUTUAL") => DrTls::IstioMutual {
            sni: t.sni.clone(),
            subject_alt_names: t.subject_alt_names.clone(),
        },
        Some(_) => DrTls::Other,
    };
    let mut pool = pool_limits(objects.pool);
    pool.retry_budget = objects.retry_budget.map(retry_budget);
    let policy = ClusterPolicy {
        lb: lb_policy(objects.lb),
        pool: PoolLimits {
            proxy_protocol: objects.proxy_protocol.and_then(proxy_protocol),
            tunnel: objects.tunnel.and_then(tunnel),
            ..pool
        },
        outlier: objects.outlier.map(outlier_policy),
        tls,
        locality: super::locality_lb::locality_policy(objects.lb),
        warmup: objects.lb.and_then(warmup),
    };
    (policy, dr_tls)
}

/// DestinationRule `tls` with mode `SIMPLE` or `MUTUAL` → the cluster's upstream TLS. `DISABLE`
/// is plain text; `ISTIO_MUTUAL` is mesh mTLS (`auto_mtls`).
fn client_tls(
    r: &Resource,
    t: &ClientTlsSettings,
    hostname: &str,
    h2: bool,
) -> Option<Arc<ClientTls>> {
    let mode = t.mode.as_deref().unwrap_or("DISABLE");
    if mode != "SIMPLE" && mode != "MUTUAL" {
        return None;
    }
    let ns = &r.metadata.namespace;
    let credential = t.credential_name.as_deref().filter(|c| !c.is_empty());
    let certificate = match (mode, credential) {
        ("MUTUAL", Some(name)) => Some(CertificateSource::Secret {
            namespace: ns.clone(),
            name: secret_name(name),
        }),
        ("MUTUAL", None) => match (&t.client_certificate, &t.private_key) {
            (Some(c), Some(k)) => Some(CertificateSource::Files {
                certificate: resolve_path(r, c),
                private_key: resolve_path(r, k),
            }),
            _ => None,
        },
        _ => None,
    };
    let ca = match (
        t.ca_certificates.as_deref().filter(|c| !c.is_empty()),
        credential,
    ) {
        (Some(path), _) => CaSource::File {
            path: resolve_path(r, path),
        },
        (None, Some(name)) => CaSource::Secret {
            namespace: ns.clone(),
            name: secret_name(name),
        },
        (None, None) => CaSource::System,
    };
    Some(Arc::new(ClientTls {
        certificate,
        ca,
        sni: t
            .sni
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| hostname.to_string()),
        subject_alt_names: t.subject_alt_names.clone(),
        insecure_skip_verify: t.insecure_skip_verify == Some(true),
        ca_crl: t
            .ca_crl
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(|c| resolve_path(r, c)),
        h2,
    }))
}

/// `loadBalancer` → [`LbPolicy`] (absent or UNSPECIFIED: LEAST_REQUEST, Istio's default since 1.14).
fn lb_policy(lb: Option<&LoadBalancerSettings>) -> LbPolicy {
    let Some(lb) = lb else {
        return LbPolicy::LeastRequest;
    };
    if let Some(ch) = &lb.consistent_hash {
        return match hash_key(ch) {
            Some(key) => LbPolicy::ConsistentHash(ConsistentHash {
                key,
                algorithm: hash_algorithm(ch),
            }),
            // Envoy hashes nothing without a hash policy and picks a random host.
            None => LbPolicy::Random,
        };
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("RANDOM") => LbPolicy::Random,
        Some("PASSTHROUGH") => LbPolicy::Passthrough,
        _ => LbPolicy::LeastRequest,
    }
}

/// The request property a consistent hash uses (validation allows at most one).
fn hash_key(ch: &ConsistentHashLb) -> Option<HashKey> {
    if let Some(h) = ch.http_header_name.as_deref().filter(|h| !h.is_empty()) {
        return Some(HashKey::Header(h.to_ascii_lowercase()));
    }
    if let Some(c) = &ch.http_cookie {
        return Some(HashKey::Cookie {
            name: c.name.clone(),
            path: c.path.clone().filter(|p| !p.is_empty()),
            // `0s` is legal here (session cookie), hence the Go parser rather than Istio's ≥1ms rule.
            ttl: c.ttl.as_deref().and_then(|t| parse_go_duration(t).ok()),
            attributes: c
                .attributes
                .iter()
                .filter(|a| !a.name.is_empty())
                .map(|a| (a.name.clone(), a.value.clone().filter(|v| !v.is_empty())))
                .collect(),
        });
    }
    if ch.use_source_ip == Some(true) {
        return Some(HashKey::SourceIp);
    }
    ch.http_query_parameter_name
        .as_deref()
        .filter(|q| !q.is_empty())
        .map(|q| HashKey::QueryParameter(q.to_string()))
}

/// Maglev (table 65537 by default) or ring hash (minimum 1024, also via the deprecated field).
fn hash_algorithm(ch: &ConsistentHashLb) -> HashAlgorithm {
    if let Some(m) = &ch.maglev {
        return HashAlgorithm::Maglev {
            table_size: m.table_size.filter(|s| *s > 0).unwrap_or(65537),
        };
    }
    let minimum_ring_size = match &ch.ring_hash {
        Some(r) => r.minimum_ring_size,
        None => ch.minimum_ring_size,
    }
    .filter(|s| *s > 0)
    .unwrap_or(1024);
    HashAlgorithm::RingHash { minimum_ring_size }
}

/// `retryBudget` with Istio's defaults (20 %, at least 3 concurrent retries); a zero
/// `budgetInterval` is Envoy's default, the active and pending requests.
fn retry_budget(b: &RetryBudgetSpec) -> RetryBudget {
    RetryBudget {
        percent: b.percent.map_or(20.0, |p| p.value.clamp(0.0, 100.0)),
        min_retry_concurrency: b.min_retry_concurrency.unwrap_or(3),
        interval: b
            .budget_interval
            .as_deref()
            .and_then(|d| parse_istio_duration(d).ok())
            .filter(|d| !d.is_zero()),
    }
}

/// `warmup` (or the deprecated `warmupDurationSecs`) with Istio's defaults (10 %, linear);
/// `None` without a positive window. Only round robin and least request warm up, which the
/// balancer enforces.
fn warmup(lb: &LoadBalancerSettings) -> Option<WarmupPolicy> {
    let (duration, minimum_percent, aggression) = match (&lb.warmup, &lb.warmup_duration_secs) {
        (Some(w), _) => (
            w.duration.as_deref(),
            w.minimum_percent.map(|p| p.value),
            w.aggression,
        ),
        (None, Some(d)) => (Some(d.as_str()), None, None),
        (None, None) => return None,
    };
    let duration = duration
        .and_then(|d| parse_istio_duration(d).ok())
        .filter(|d| !d.is_zero())?;
    Some(WarmupPolicy {
        duration,
        minimum_percent: minimum_percent.unwrap_or(10.0).clamp(0.0, 100.0),
        aggression: aggression.filter(|a| *a > 0.0).unwrap_or(1.0),
    })
}

/// A positive limit; Istio cannot tell 0 from unset, so 0 keeps the default.
fn limit(v: Option<i64>) -> Option<u32> {
    v.filter(|v| *v > 0)
        .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
}

/// `connectionPool` → [`PoolLimits`]; unset limits stay unlimited.
pub(crate) fn pool_limits(cp: Option<&ConnectionPoolSettings>) -> PoolLimits {
    let mut p = PoolLimits::default();
    let Some(cp) = cp else { return p };
    let mut idle: Option<&str> = None;
    if let Some(http) = &cp.http {
        if let Some(v) = limit(http.http1_max_pending_requests) {
            p.max_pending_requests = v;
        }
        if let Some(v) = limit(http.http2_max_requests) {
            p.max_requests = v;
        }
        if let Some(v) = limit(http.max_retries) {
            p.max_retries = v;
        }
        if let Some(v) = limit(http.max_requests_per_connection) {
            p.max_requests_per_connection = v;
        }
        p.h2_upgrade = http.h2_upgrade_policy.as_deref() == Some("UPGRADE");
        if let Some(v) = limit(http.max_concurrent_streams) {
            p.max_concurrent_streams = v;
        }
        p.h2_keepalive = http.http2_keep_alive.as_ref().and_then(|ka| {
            let d = |v: Option<&str>| v.and_then(|t| parse_istio_duration(t).ok());
            Some(H2KeepAlive {
                interval: d(ka.interval.as_deref())?,
                timeout: d(ka.timeout.as_deref())?,
            })
        });
        p.use_client_protocol = http.use_client_protocol == Some(true);
        idle = http.idle_timeout.as_deref();
    }
    if let Some(tcp) = &cp.tcp {
        if let Some(v) = limit(tcp.max_connections) {
            p.max_connections = v;
        }
        if let Some(t) = tcp
            .connect_timeout
            .as_deref()
            .and_then(|t| parse_istio_duration(t).ok())
        {
            p.connect_timeout = t;
        }
        p.max_connection_duration = tcp
            .max_connection_duration
            .as_deref()
            .and_then(|t| parse_istio_duration(t).ok());
        if let Some(k) = &tcp.tcp_keepalive {
            p.tcp_keepalive = Some(TcpKeepalive {
                probes: k.probes.filter(|n| *n > 0),
                time: k.time.as_deref().and_then(|t| parse_go_duration(t).ok()),
                interval: k
                    .interval
                    .as_deref()
                    .and_then(|t| parse_go_duration(t).ok()),
            });
        }
        // For pooled HTTP connections the HTTP idle timeout wins over the TCP one when both are
        // set (as in Istio); relayed TCP connections follow the TCP one alone.
        idle = idle.or(tcp.idle_timeout.as_deref());
        if let Some(d) = idle_duration(tcp.idle_timeout.as_deref()) {
            p.tcp_idle_timeout = d;
        }
    }
    if let Some(d) = idle_duration(idle) {
        p.idle_timeout = d;
    }
    p
}

/// `tunnel`: CONNECT (the default) or POST, as Istio sets Envoy's `use_post`.
fn tunnel(t: &TunnelSettings) -> Option<Tunnel> {
    let method = match t.protocol.as_deref() {
        None | Some("" | "CONNECT") => TunnelMethod::Connect,
        Some("POST") => TunnelMethod::Post,
        // Validation rejects any other protocol.
        Some(_) => return None,
    };
    Some(Tunnel {
        method,
        target_host: t.target_host.clone()?,
        target_port: u16::try_from(t.target_port?).ok()?,
    })
}

/// `proxyProtocol.version` (validation allows V1 and V2 only; unset is V1).
fn proxy_protocol(p: &ProxyProtocol) -> Option<ProxyProtocolVersion> {
    match p.version.as_deref() {
        None | Some("V1") => Some(ProxyProtocolVersion::V1),
        Some("V2") => Some(ProxyProtocolVersion::V2),
        _ => None,
    }
}

/// A set idle timeout: `Some(None)` for `0s`, which disables it.
fn idle_duration(value: Option<&str>) -> Option<Option<Duration>> {
    value
        .and_then(|t| parse_go_duration(t).ok())
        .map(|d| (d > Duration::ZERO).then_some(d))
}

/// `outlierDetection` → [`OutlierPolicy`] with Envoy's defaults for unset fields.
fn outlier_policy(o: &OutlierDetection) -> OutlierPolicy {
    let count = |v: Option<i64>| v.map(|v| u32::try_from(v.max(0)).unwrap_or(u32::MAX));
    let duration = |v: Option<&str>, default: u64| {
        v.and_then(|t| parse_istio_duration(t).ok())
            .unwrap_or(Duration::from_secs(default))
    };
    let percent = |v: Option<i64>| v.map(|v| u32::try_from(v.clamp(0, 100)).unwrap_or(0));
    OutlierPolicy {
        consecutive_5xx: count(o.consecutive_5xx_errors)
            .or(count(o.consecutive_errors).filter(|n| *n > 0))
            .unwrap_or(5),
        consecutive_gateway_errors: count(o.consecutive_gateway_errors).unwrap_or(0),
        interval: duration(o.interval.as_deref(), 10),
        base_ejection_time: duration(o.base_ejection_time.as_deref(), 30),
        max_ejection_percent: percent(o.max_ejection_percent)
            .filter(|p| *p > 0)
            .unwrap_or(10),
        min_health_percent: percent(o.min_health_percent).unwrap_or(0),
        split_local_origin: o.split_external_local_origin_errors == Some(true),
        consecutive_local_origin: count(o.consecutive_local_origin_failures).unwrap_or(5),
        error_codes: o
            .outlier_detection_http_error_codes
            .iter()
            .filter_map(|c| u16::try_from(*c).ok())
            .collect(),
    }
}
