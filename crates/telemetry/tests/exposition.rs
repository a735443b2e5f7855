//! The scraped text: Istio's metric names, types, labels and buckets, sluice's own metrics, and
//! the one-call `record_request` path driven by a compiled snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_config::{build_snapshot, ProxyConfig, Snapshot};
use sluice_telemetry::{
    CompletedRequest, PeerLabels, Reporter, RequestProtocol, RequestRecord, SecurityPolicy,
    ServiceLabels, TcpRecord, Telemetry, WorkloadInfo, OPENMETRICS_CONTENT_TYPE,
    PROMETHEUS_CONTENT_TYPE,
};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn workload(name: &str, app: &str, version: &str) -> Arc<PeerLabels> {
    WorkloadInfo {
        name: Some(name.into()),
        namespace: Some("default".into()),
        labels: labels(&[("app", app), ("version", version)]),
        ..Default::default()
    }
    .peer_labels()
}

fn record<'a>(
    source: &'a Arc<PeerLabels>,
    destination: &'a Arc<PeerLabels>,
    service: &'a Arc<ServiceLabels>,
    code: u16,
    ms: u64,
) -> RequestRecord<'a> {
    RequestRecord {
        reporter: Reporter::Source,
        source,
        destination,
        service,
        protocol: RequestProtocol::Http,
        response_code: code,
        grpc_status: None,
        response_flags: "",
        security_policy: SecurityPolicy::Unknown,
        duration: Duration::from_millis(ms),
        request_bytes: 0,
        response_bytes: 120,
    }
}

/// Every label of an HTTP series, in the order the exposition writes them.
const PRODUCTPAGE_TO_REVIEWS_V1: &str = concat!(
    "reporter=\"source\",",
    "source_workload=\"productpage-v1\",source_workload_namespace=\"default\",",
    "source_principal=\"unknown\",source_app=\"productpage\",source_version=\"v1\",",
    "source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",",
    "source_cluster=\"Kubernetes\",",
    "destination_workload=\"reviews-v1\",destination_workload_namespace=\"default\",",
    "destination_principal=\"unknown\",destination_app=\"reviews\",destination_version=\"v1\",",
    "destination_service=\"reviews.default.svc.cluster.local\",",
    "destination_service_name=\"reviews\",destination_service_namespace=\"default\",",
    "destination_canonical_service=\"reviews\",destination_canonical_revision=\"v1\",",
    "destination_cluster=\"Kubernetes\",",
    "request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\",",
    "response_flags=\"-\",connection_security_policy=\"unknown\"",
);

#[test]
fn istio_requests_total_has_every_label() {
    let t = Telemetry::default();
    let src = workload("productpage-v1", "productpage", "v1");
    let v1 = workload("reviews-v1", "reviews", "v1");
    let svc = ServiceLabels::from_host("reviews.default.svc.cluster.local", None);
    for _ in 0..3 {
        t.istio().record(&record(&src, &v1, &svc, 200, 3));
    }
    t.istio().record(&RequestRecord {
        response_flags: "UH",
        ..record(&src, &v1, &svc, 503, 0)
    });
    let text = t.encode_openmetrics();

    assert!(text.contains("# TYPE istio_requests counter\n"), "{text}");
    assert!(
        text.contains(&format!(
            "istio_requests_total{{{PRODUCTPAGE_TO_REVIEWS_V1}}} 3\n"
        )),
        "{text}"
    );
    let uh = PRODUCTPAGE_TO_REVIEWS_V1
        .replace("response_code=\"200\"", "response_code=\"503\"")
        .replace("response_flags=\"-\"", "response_flags=\"UH\"");
    assert!(text.contains(&format!("istio_requests_total{{{uh}}} 1\n")));

    for h in [
        "istio_request_duration_milliseconds",
        "istio_request_bytes",
        "istio_response_bytes",
    ] {
        assert!(text.contains(&format!("# TYPE {h} histogram\n")), "{h}");
        // prometheus-client writes `le` first.
        let prefix = format!("{h}_bucket{{le=\"");
        let suffix = format!(",{PRODUCTPAGE_TO_REVIEWS_V1}}}");
        let les: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .filter_map(|rest| rest.split_once('"'))
            .filter(|(_, rest)| rest.starts_with(suffix.as_str()))
            .map(|(le, _)| le)
            .collect();
        assert_eq!(
            les,
            [
                "0.5",
                "1.0",
                "5.0",
                "10.0",
                "25.0",
                "50.0",
                "100.0",
                "250.0",
                "500.0",
                "1000.0",
                "2500.0",
                "5000.0",
                "10000.0",
                "30000.0",
                "60000.0",
                "300000.0",
                "600000.0",
                "1800000.0",
                "3600000.0",
                "+Inf"
            ],
            "{h}:\n{text}"
        );
        assert!(text.contains(&format!("{h}_count{{{PRODUCTPAGE_TO_REVIEWS_V1}}} 3\n")));
    }
    // 3 ms lands in le=5 (cumulative), not in le=0.5 / le=1.
    let bucket = |le: &str| {
        format!(
            "istio_request_duration_milliseconds_bucket{{le=\"{le}\",{PRODUCTPAGE_TO_REVIEWS_V1}}}"
        )
    };
    assert!(text.contains(&format!("{} 0\n", bucket("0.5"))));
    assert!(text.contains(&format!("{} 0\n", bucket("1.0"))));
    assert!(text.contains(&format!("{} 3\n", bucket("5.0"))));
    assert!(text.contains(&format!("{} 3\n", bucket("+Inf"))));
    assert!(text.contains(&format!(
        "istio_request_duration_milliseconds_sum{{{PRODUCTPAGE_TO_REVIEWS_V1}}} 9.0\n"
    )));
    assert!(text.contains(&format!(
        "istio_response_bytes_sum{{{PRODUCTPAGE_TO_REVIEWS_V1}}} 360.0\n"
    )));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn grpc_and_tcp_series() {
    let t = Telemetry::default();
    let src = workload("productpage-v1", "productpage", "v1");
    let dst = workload("ratings-v1", "ratings", "v1");
    let svc = ServiceLabels::from_host("ratings.default.svc.cluster.local", None);
    t.istio().record(&RequestRecord {
        protocol: RequestProtocol::Grpc,
        grpc_status: Some(14),
        ..record(&src, &dst, &svc, 200, 1)
    });
    let tcp = t.istio().tcp(&TcpRecord {
        reporter: Reporter::Source,
        source: &src,
        destination: &dst,
        service: &svc,
        response_flags: "",
        security_policy: SecurityPolicy::Unknown,
    });
    tcp.opened();
    tcp.received(10);
    tcp.sent(20);
    tcp.closed();
    let text = t.encode_openmetrics();
    assert!(text
        .contains("request_protocol=\"grpc\",response_code=\"200\",grpc_response_status=\"14\""));
    for (name, value) in [
        ("istio_tcp_connections_opened_total", 1),
        ("istio_tcp_connections_closed_total", 1),
        ("istio_tcp_received_bytes_total", 10),
        ("istio_tcp_sent_bytes_total", 20),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(line.ends_with(&format!("}} {value}")), "{line}");
        // TCP series carry no response_code / grpc_response_status.
        assert!(!line.contains("response_code="), "{line}");
        assert!(
            line.contains("request_protocol=\"tcp\",response_flags=\"-\""),
            "{line}"
        );
    }
}

#[test]
fn prometheus_text_names_counter_families_with_total() {
    let t = Telemetry::default();
    let src = workload("a", "a", "v1");
    let svc = ServiceLabels::unknown();
    t.istio()
        .record(&record(&src, &PeerLabels::unknown(), &svc, 404, 0));
    let (ct, om) = t.scrape(Some(
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    ));
    assert_eq!(ct, OPENMETRICS_CONTENT_TYPE);
    assert!(om.contains("# TYPE istio_requests counter"));
    let (ct, text) = t.scrape(None);
    assert_eq!(ct, PROMETHEUS_CONTENT_TYPE);
    assert!(text.contains("# HELP istio_requests_total Requests proxied"));
    assert!(text.contains("# TYPE istio_requests_total counter\n"));
    assert!(text.contains("# TYPE istio_request_duration_milliseconds histogram\n"));
    assert!(text.contains("# TYPE sluice_config_version gauge\n"));
    assert!(text.contains("# TYPE sluice_config_reloads_rejected_total counter\n"));
    assert!(!text.contains("# EOF"));
    // The unknown peer reports `unknown` everywhere.
    assert!(text.contains("destination_workload=\"unknown\""));
    assert!(text.contains("destination_service=\"unknown\""));
}

fn canary_snapshot(version: u64) -> Snapshot {
    let parsed = sluice_model::parse_text(include_str!("fixtures/canary.yaml"), None);
    build_snapshot(
        parsed.resources,
        parsed.diagnostics,
        &ProxyConfig::default(),
        &sluice_lb::StateStore::new(),
        version,
    )
    .unwrap()
}

fn completed<'a>(
    snap: &'a Snapshot,
    subset: &str,
    code: u16,
) -> (CompletedRequest<'a>, &'a sluice_config::cluster::Cluster) {
    let cluster = snap
        .clusters
        .values()
        .find(|c| c.subset.as_deref() == Some(subset))
        .unwrap();
    let req = CompletedRequest {
        reporter: Reporter::Source,
        source_node: "mesh",
        virtual_host: Some("app-backend.default.svc.cluster.local:9080"),
        route: Some("app-backend.0"),
        cluster: Some(cluster),
        endpoint: cluster.endpoints.first(),
        protocol: RequestProtocol::Http,
        response_code: code,
        grpc_status: None,
        response_flags: "",
        duration: Duration::from_millis(2),
        request_bytes: 0,
        response_bytes: 30,
        mirror: false,
        mtls: None,
    };
    (req, cluster)
}

#[test]
fn record_request_from_snapshot_labels_and_graph() {
    let t = Telemetry::default();
    let snap = canary_snapshot(3);
    t.on_snapshot(&snap);
    for i in 0..10 {
        let subset = if i == 9 { "v2" } else { "v1" };
        t.record_request(&completed(&snap, subset, 200).0);
    }
    let text = t.encode_openmetrics();
    let count = |version: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with("istio_requests_total{"))
            .filter(|l| l.contains(&format!("destination_version=\"{version}\"")))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum()
    };
    assert_eq!((count("v1"), count("v2")), (9, 1), "{text}");
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("istio_requests_total{") && l.contains("destination_version=\"v1\"")
        })
        .unwrap();
    for expected in [
        "source_workload=\"sluice\"",
        "source_canonical_service=\"sluice\"",
        "source_canonical_revision=\"latest\"",
        "destination_workload=\"app-backend-v1\"",
        "destination_app=\"app-backend\"",
        "destination_canonical_service=\"app-backend\"",
        "destination_canonical_revision=\"v1\"",
        "destination_service=\"app-backend.default.svc.cluster.local\"",
        "destination_service_name=\"app-backend\"",
        "destination_service_namespace=\"default\"",
    ] {
        assert!(line.contains(expected), "{expected} not in {line}");
    }
    assert!(text.contains("sluice_config_version 3\n"), "{text}");
    assert!(text.contains("sluice_config_reloads_accepted_total 1\n"));
    assert!(text.contains(
        "sluice_route_split_requests_total{virtual_host=\"app-backend.default.svc.cluster.local:9080\",route=\"app-backend.0\",destination=\"app-backend.default.svc.cluster.local\",subset=\"v1\"} 9\n"
    ), "{text}");

    let graph = t.graph().snapshot();
    assert_eq!(graph.config_version, Some(3));
    let edge = |subset: &str| {
        graph
            .edges
            .iter()
            .find(|e| e.subset.as_deref() == Some(subset) && !e.mirror)
            .unwrap()
            .clone()
    };
    let (v1, v2) = (edge("v1"), edge("v2"));
    assert_eq!((v1.requests, v2.requests), (9, 1));
    assert_eq!(v1.configured_weight, Some(90));
    assert_eq!(v2.configured_weight, Some(10));
    assert!((v1.observed_share.unwrap() - 0.9).abs() < 1e-9);
    let node = graph.nodes.iter().find(|n| n.id == v1.target).unwrap();
    assert_eq!(node.version.as_deref(), Some("v1"));
    assert_eq!(node.workloads, vec!["app-backend-v1".to_string()]);

    // A reload keeps resolving the old snapshot's endpoints (requests still running on it).
    let next = canary_snapshot(4);
    t.on_snapshot(&next);
    t.record_request(&completed(&snap, "v1", 200).0);
    t.record_request(&completed(&next, "v1", 200).0);
    let text = t.encode_openmetrics();
    let v1_series: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("istio_requests_total{") && l.contains("destination_version=\"v1\"")
        })
        .collect();
    // Same labels from either snapshot: still one series, now at 11.
    assert_eq!(v1_series.len(), 1, "{text}");
    assert!(v1_series[0].ends_with("} 11"), "{}", v1_series[0]);
    assert!(text.contains("sluice_config_version 4\n"));
}

/// Best-of-batches nanoseconds per call (the minimum filters out other processes' noise).
fn ns_per_call(mut f: impl FnMut()) -> u128 {
    const BATCH: u32 = 10_000;
    (0..20)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..BATCH {
                f();
            }
            start.elapsed().as_nanos() / u128::from(BATCH)
        })
        .min()
        .unwrap_or(0)
}

/// Measures the per-request cost of the hot paths; run with `--release --nocapture` for figures.
#[test]
fn recording_cost() {
    let t = Telemetry::default();
    let snap = canary_snapshot(1);
    t.on_snapshot(&snap);
    let (req, _) = completed(&snap, "v1", 200);
    let src = t.local_peer();
    let (svc, dst) = t.destination(req.cluster, req.endpoint);
    // Warm the caches (the first record creates the series).
    t.record_request(&req);

    let istio_ns = ns_per_call(|| t.istio().record(&record(&src, &dst, &svc, 200, 2)));
    let key = sluice_telemetry::EdgeKey {
        source: "mesh",
        virtual_host: "app-backend.default.svc.cluster.local:9080",
        route: "app-backend.0",
        service: "app-backend.default.svc.cluster.local",
        subset: Some("v1"),
        mirror: false,
    };
    let graph_ns = ns_per_call(|| {
        t.graph()
            .record(&key, Some(&dst), 200, Duration::from_millis(2))
    });
    let edge = t.graph().edge(&key);
    let edge_ns = ns_per_call(|| edge.record(Some(&dst), 200, Duration::from_millis(2)));
    let split_ns = ns_per_call(|| {
        t.proxy().record_split(
            "app-backend.default.svc.cluster.local:9080",
            "app-backend.0",
            "app-backend.default.svc.cluster.local",
            Some("v1"),
        )
    });
    let full_ns = ns_per_call(|| t.record_request(&req));
    println!(
        "per request: istio metrics {istio_ns} ns, graph edge by key {graph_ns} ns \
         (held edge {edge_ns} ns), split counter {split_ns} ns, \
         record_request (all of them) {full_ns} ns"
    );
    // Loose bound so debug builds on a busy machine pass; the figures are what matter.
    assert!(full_ns < 50_000, "{full_ns} ns per request");
}

#[test]
fn request_metrics_can_be_turned_off() {
    let t = Telemetry::new(sluice_telemetry::TelemetryConfig {
        request_metrics: false,
        ..Default::default()
    })
    .unwrap();
    let snap = canary_snapshot(3);
    t.on_snapshot(&snap);
    t.record_request(&completed(&snap, "v1", 200).0);
    let text = t.encode_openmetrics();
    assert!(
        !text.lines().any(|l| l.starts_with("istio_requests_total{")),
        "{text}"
    );
    assert!(t.graph().snapshot().edges.iter().all(|e| e.requests == 0));
    // Config metrics stay.
    assert!(text.contains("sluice_config_version"), "{text}");
}
