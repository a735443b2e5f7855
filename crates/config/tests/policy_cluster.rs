//! DestinationRule policies as tables: YAML in, merged `ClusterPolicy` per cluster out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sluice_config::policy::{
    ClusterPolicy, ConsistentHash, H2KeepAlive, HashAlgorithm, HashKey, LbPolicy, OutlierPolicy,
    PoolLimits, ProxyProtocolVersion, RetryBudget, TcpKeepalive, WarmupPolicy,
};
use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
use sluice_lb::StateStore;

const SERVICES: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: reviews}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports:
  - {number: 9080, name: http, protocol: HTTP}
  - {number: 9090, name: http-admin, protocol: HTTP}
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: 1001, http-admin: 2001}, labels: {version: v1}}
  - {address: 127.0.0.1, ports: {http: 1002, http-admin: 2002}, labels: {version: v2}}
"#;

fn snapshot(yaml: &str) -> Snapshot {
    let parsed = sluice_model::parse_text(&format!("{SERVICES}---\n{yaml}"), Some("t.yaml".into()));
    let proxy = ProxyConfig {
        gateway_role: false,
        ..ProxyConfig::default()
    };
    match build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &proxy,
        &StateStore::new(),
        1,
    ) {
        Ok(s) => s,
        Err(r) => panic!("rejected: {:#?}", r.diagnostics),
    }
}

fn policy(s: &Snapshot, port: u16, subset: &str) -> ClusterPolicy {
    let name = format!("outbound|{port}|{subset}|reviews.default.svc.cluster.local");
    let c = s.clusters.get(&name).unwrap_or_else(|| {
        panic!(
            "no cluster {name}: {:?}",
            s.clusters.keys().collect::<Vec<_>>()
        )
    });
    (*c.policy).clone()
}

fn outlier_defaults() -> OutlierPolicy {
    OutlierPolicy {
        consecutive_5xx: 5,
        consecutive_gateway_errors: 0,
        interval: Duration::from_secs(10),
        base_ejection_time: Duration::from_secs(30),
        max_ejection_percent: 10,
        min_health_percent: 0,
        split_local_origin: false,
        consecutive_local_origin: 5,
        error_codes: Vec::new(),
    }
}

#[test]
fn no_destination_rule_means_defaults() {
    let s = snapshot("");
    assert_eq!(policy(&s, 9080, ""), ClusterPolicy::default());
    assert_eq!(ClusterPolicy::default().lb, LbPolicy::LeastRequest);
}

#[test]
fn merge_precedence() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 10}, http: {http1MaxPendingRequests: 3}}
    outlierDetection: {consecutive5xxErrors: 2}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {http: {http2MaxRequests: 7}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {maxRetries: 4}}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: RANDOM}
      portLevelSettings:
      - port: {number: 9080}
        outlierDetection: {consecutiveGatewayErrors: 3}
"#,
    );
    let top_pool = PoolLimits {
        max_connections: 10,
        max_pending_requests: 3,
        ..PoolLimits::default()
    };
    let top_outlier = OutlierPolicy {
        consecutive_5xx: 2,
        ..outlier_defaults()
    };
    // Top level applies to the service cluster.
    assert_eq!(
        policy(&s, 9080, ""),
        ClusterPolicy {
            lb: LbPolicy::RoundRobin,
            pool: top_pool.clone(),
            outlier: Some(top_outlier.clone()),
            tls: None,
            ..ClusterPolicy::default()
        }
    );
    // The port-level entry replaces the top-level policy wholesale: unset objects are defaults.
    assert_eq!(
        policy(&s, 9090, ""),
        ClusterPolicy {
            lb: LbPolicy::LeastRequest,
            pool: PoolLimits {
                max_requests: 7,
                ..PoolLimits::default()
            },
            outlier: None,
            tls: None,
            ..ClusterPolicy::default()
        }
    );
    // A subset object replaces the inherited object whole (tcp.maxConnections is gone).
    assert_eq!(
        policy(&s, 9080, "v1"),
        ClusterPolicy {
            lb: LbPolicy::RoundRobin,
            pool: PoolLimits {
                max_retries: 4,
                ..PoolLimits::default()
            },
            outlier: Some(top_outlier),
            tls: None,
            ..ClusterPolicy::default()
        }
    );
    // On 9090 the subset inherits the top-level port-level result, then overrides its pool.
    assert_eq!(
        policy(&s, 9090, "v1"),
        ClusterPolicy {
            lb: LbPolicy::LeastRequest,
            pool: PoolLimits {
                max_retries: 4,
                ..PoolLimits::default()
            },
            outlier: None,
            tls: None,
            ..ClusterPolicy::default()
        }
    );
    // The subset's own port-level entry supplies every object (unset: defaults).
    assert_eq!(
        policy(&s, 9080, "v2"),
        ClusterPolicy {
            lb: LbPolicy::LeastRequest,
            pool: PoolLimits::default(),
            outlier: Some(OutlierPolicy {
                consecutive_gateway_errors: 3,
                ..outlier_defaults()
            }),
            tls: None,
            ..ClusterPolicy::default()
        }
    );
    // Without a subset port-level match, only the subset's objects replace inherited ones.
    assert_eq!(
        policy(&s, 9090, "v2"),
        ClusterPolicy {
            lb: LbPolicy::Random,
            pool: PoolLimits {
                max_requests: 7,
                ..PoolLimits::default()
            },
            outlier: None,
            tls: None,
            ..ClusterPolicy::default()
        }
    );
}

#[test]
fn first_rule_with_a_top_level_policy_wins() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: a, creationTimestamp: "2020-01-01T00:00:00Z"}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: b, creationTimestamp: "2020-01-02T00:00:00Z"}
spec:
  host: reviews.default.svc.cluster.local
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: c, creationTimestamp: "2020-01-03T00:00:00Z"}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
"#,
    );
    assert_eq!(policy(&s, 9080, "").lb, LbPolicy::Random);
    assert_eq!(policy(&s, 9080, "v1").lb, LbPolicy::Random);
}

#[test]
fn load_balancer_variants() {
    let table: &[(&str, LbPolicy)] = &[
        ("{simple: LEAST_REQUEST}", LbPolicy::LeastRequest),
        ("{simple: LEAST_CONN}", LbPolicy::LeastRequest),
        ("{simple: UNSPECIFIED}", LbPolicy::LeastRequest),
        ("{simple: ROUND_ROBIN}", LbPolicy::RoundRobin),
        ("{simple: RANDOM}", LbPolicy::Random),
        ("{simple: PASSTHROUGH}", LbPolicy::Passthrough),
        (
            "{consistentHash: {httpHeaderName: X-User}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::Header("x-user".into()),
                algorithm: HashAlgorithm::RingHash {
                    minimum_ring_size: 1024,
                },
            }),
        ),
        (
            "{consistentHash: {httpCookie: {name: user, path: /, ttl: 0s}, ringHash: {minimumRingSize: 2048}}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::Cookie {
                    name: "user".into(),
                    path: Some("/".into()),
                    ttl: Some(Duration::ZERO),
                    attributes: Vec::new(),
                },
                algorithm: HashAlgorithm::RingHash {
                    minimum_ring_size: 2048,
                },
            }),
        ),
        (
            "{consistentHash: {httpCookie: {name: user}, maglev: {tableSize: 251}}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::Cookie {
                    name: "user".into(),
                    path: None,
                    ttl: None,
                    attributes: Vec::new(),
                },
                algorithm: HashAlgorithm::Maglev { table_size: 251 },
            }),
        ),
        (
            "{consistentHash: {useSourceIp: true, minimumRingSize: 4096}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::SourceIp,
                algorithm: HashAlgorithm::RingHash {
                    minimum_ring_size: 4096,
                },
            }),
        ),
        (
            "{consistentHash: {httpQueryParameterName: user, maglev: {tableSize: 65537}}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::QueryParameter("user".into()),
                algorithm: HashAlgorithm::Maglev { table_size: 65537 },
            }),
        ),
        (
            "{consistentHash: {httpCookie: {name: s, ttl: 10s}}}",
            LbPolicy::ConsistentHash(ConsistentHash {
                key: HashKey::Cookie {
                    name: "s".into(),
                    path: None,
                    ttl: Some(Duration::from_secs(10)),
                    attributes: Vec::new(),
                },
                algorithm: HashAlgorithm::RingHash {
                    minimum_ring_size: 1024,
                },
            }),
        ),
    ];
    for (lb, want) in table {
        let s = snapshot(&format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy: {{loadBalancer: {lb}}}\n"
        ));
        assert_eq!(&policy(&s, 9080, "").lb, want, "{lb}");
    }
}

#[test]
fn pool_limits() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
        connectTimeout: 250ms
        tcpKeepalive: {probes: 3, time: 60s, interval: 5s}
        idleTimeout: 30s
        maxConnectionDuration: 90s
      http:
        http1MaxPendingRequests: 1
        http2MaxRequests: 2
        maxRequestsPerConnection: 1
        maxRetries: 6
        idleTimeout: 20s
        h2UpgradePolicy: UPGRADE
        maxConcurrentStreams: 8
        http2KeepAlive: {interval: 10s, timeout: 2s}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool:
        tcp: {idleTimeout: 0s, maxConnections: 0}
        http: {h2UpgradePolicy: DO_NOT_UPGRADE}
"#,
    );
    assert_eq!(
        policy(&s, 9080, "").pool,
        PoolLimits {
            max_connections: 1,
            max_pending_requests: 1,
            max_requests: 2,
            max_retries: 6,
            retry_budget: None,
            max_requests_per_connection: 1,
            connect_timeout: Duration::from_millis(250),
            // For pooled HTTP connections the HTTP idle timeout wins over the TCP one; the TCP
            // proxy keeps the TCP one.
            idle_timeout: Some(Duration::from_secs(20)),
            tcp_idle_timeout: Some(Duration::from_secs(30)),
            tcp_keepalive: Some(TcpKeepalive {
                probes: Some(3),
                time: Some(Duration::from_secs(60)),
                interval: Some(Duration::from_secs(5)),
            }),
            h2_upgrade: true,
            max_connection_duration: Some(Duration::from_secs(90)),
            max_concurrent_streams: 8,
            h2_keepalive: Some(H2KeepAlive {
                interval: Duration::from_secs(10),
                timeout: Duration::from_secs(2),
            }),
            use_client_protocol: false,
            proxy_protocol: None,
            tunnel: None,
        }
    );
    // `0s` disables the idle timeout; a zero limit keeps the default (Istio cannot tell it from unset).
    assert_eq!(
        policy(&s, 9090, "").pool,
        PoolLimits {
            idle_timeout: None,
            tcp_idle_timeout: None,
            ..PoolLimits::default()
        }
    );
}

#[test]
fn outlier_detection() {
    let table: &[(&str, Option<OutlierPolicy>)] = &[
        ("{}", None),
        ("{outlierDetection: {}}", Some(outlier_defaults())),
        (
            "{outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 2}}",
            Some(OutlierPolicy {
                consecutive_5xx: 0,
                consecutive_gateway_errors: 2,
                ..outlier_defaults()
            }),
        ),
        (
            "{outlierDetection: {consecutiveErrors: 7}}",
            Some(OutlierPolicy {
                consecutive_5xx: 7,
                ..outlier_defaults()
            }),
        ),
        (
            "{outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100, minHealthPercent: 50}}",
            Some(OutlierPolicy {
                consecutive_5xx: 1,
                consecutive_gateway_errors: 0,
                interval: Duration::from_secs(1),
                base_ejection_time: Duration::from_secs(180),
                max_ejection_percent: 100,
                min_health_percent: 50,
                ..outlier_defaults()
            }),
        ),
        (
            "{outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 2, outlierDetectionHttpErrorCodes: [404, 503]}}",
            Some(OutlierPolicy {
                split_local_origin: true,
                consecutive_local_origin: 2,
                error_codes: vec![404, 503],
                ..outlier_defaults()
            }),
        ),
    ];
    for (tp, want) in table {
        // `trafficPolicy: {}` is invalid; use a port-level entry for the "absent" row.
        let tp = if *tp == "{}" {
            "{portLevelSettings: [{port: {number: 9090}, loadBalancer: {simple: RANDOM}}]}"
        } else {
            tp
        };
        let s = snapshot(&format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: reviews}}\nspec:\n  host: reviews\n  trafficPolicy: {tp}\n"
        ));
        assert_eq!(&policy(&s, 9080, "").outlier, want, "{tp}");
    }
}

#[test]
fn not_enforced_warnings_name_only_unenforced_fields() {
    let parsed = sluice_model::parse_text(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 1, maxConnectionDuration: 1h}}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9090}
      outlierDetection: {consecutive5xxErrors: 1}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: RANDOM, localityLbSetting: {enabled: false}}}
"#,
        None,
    );
    let d = sluice_config::validate::validate_resource(&parsed.resources[0]);
    let mut fields: Vec<&str> = d
        .iter()
        .filter(|d| d.code == "SLC0100")
        .filter_map(|d| d.field.as_deref())
        .collect();
    fields.sort_unstable();
    // Load balancing (locality included), the connection-pool limits (`maxConnectionDuration`
    // included), outlier detection and TLS (ISTIO_MUTUAL included) are all enforced.
    assert_eq!(fields, Vec::<&str>::new());
}

#[test]
fn use_client_protocol_is_compiled() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    connectionPool: {http: {useClientProtocol: true}}
"#,
    );
    assert!(policy(&s, 9080, "").pool.use_client_protocol);
}

/// `proxyProtocol` is a whole-policy field: port-level entries keep the policy's, and a subset
/// replaces it only with its own (Istio's MergeTrafficPolicy).
#[test]
fn proxy_protocol_merges_as_a_whole_policy_field() {
    let s = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    proxyProtocol: {version: V1}
    portLevelSettings:
    - port: {number: 9090}
      connectionPool: {tcp: {maxConnections: 3}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      proxyProtocol: {version: V2}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      connectionPool: {http: {maxRetries: 2}}
      portLevelSettings:
      - port: {number: 9080}
        connectionPool: {tcp: {maxConnections: 1}}
"#,
    );
    let pp = |port, subset| policy(&s, port, subset).pool.proxy_protocol;
    assert_eq!(pp(9080, ""), Some(ProxyProtocolVersion::V1));
    assert_eq!(pp(9090, ""), Some(ProxyProtocolVersion::V1));
    assert_eq!(policy(&s, 9090, "").pool.max_connections, 3);
    assert_eq!(pp(9080, "v1"), Some(ProxyProtocolVersion::V2));
    assert_eq!(pp(9090, "v1"), Some(ProxyProtocolVersion::V2));
    assert_eq!(pp(9080, "v2"), Some(ProxyProtocolVersion::V1));
    assert_eq!(policy(&s, 9080, "v2").pool.max_connections, 1);
}

/// `warmup`, the deprecated `warmupDurationSecs`, `retryBudget` (top level, replaced by a
/// subset's) and cookie `attributes` reach the cluster policy with Istio's defaults.
#[test]
fn warmup_retry_budget_and_cookie_attributes() {
    let s = snapshot(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      warmup: {duration: 60s, minimumPercent: {value: 25}, aggression: 2}
    retryBudget: {percent: {value: 50}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      loadBalancer: {warmupDurationSecs: 30s}
      retryBudget: {minRetryConcurrency: 7, budgetInterval: 10s}
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpCookie:
            name: user
            ttl: 60s
            attributes: [{name: SameSite, value: Lax}, {name: Secure}]
"#,
    );
    let top = policy(&s, 9080, "");
    assert_eq!(
        top.warmup,
        Some(WarmupPolicy {
            duration: Duration::from_secs(60),
            minimum_percent: 25.0,
            aggression: 2.0,
        })
    );
    assert_eq!(
        top.pool.retry_budget,
        Some(RetryBudget {
            percent: 50.0,
            min_retry_concurrency: 3,
            interval: None,
        })
    );
    let v1 = policy(&s, 9080, "v1");
    assert_eq!(
        v1.warmup,
        Some(WarmupPolicy {
            duration: Duration::from_secs(30),
            minimum_percent: 10.0,
            aggression: 1.0,
        })
    );
    assert_eq!(
        v1.pool.retry_budget,
        Some(RetryBudget {
            percent: 20.0,
            min_retry_concurrency: 7,
            interval: Some(Duration::from_secs(10)),
        })
    );
    let v2 = policy(&s, 9080, "v2");
    assert_eq!(v2.warmup, None);
    let LbPolicy::ConsistentHash(ch) = v2.lb else {
        panic!("{:?}", v2.lb)
    };
    let HashKey::Cookie { attributes, .. } = ch.key else {
        panic!("{:?}", ch.key)
    };
    assert_eq!(
        attributes,
        vec![
            ("SameSite".to_string(), Some("Lax".to_string())),
            ("Secure".to_string(), None)
        ]
    );
}

/// `tls` with `SIMPLE`: SNI, SANs and `insecureSkipVerify` reach the cluster's upstream TLS.
#[test]
fn client_tls_settings_reach_the_cluster() {
    let s = snapshot(
        r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    tls: {mode: SIMPLE, sni: api.example.com, insecureSkipVerify: true}
"#,
    );
    let tls = policy(&s, 9080, "").tls.unwrap();
    assert!(tls.insecure_skip_verify);
    assert_eq!(tls.sni, "api.example.com");
}
