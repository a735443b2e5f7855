//! Tracing end to end: W3C and B3 contexts continued through the proxy, the proxy's span
//! exported with OTLP (gRPC and HTTP/protobuf) to an in-process collector that decodes the
//! real protobuf, Istio's sampling rules, and unsampled mirror copies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use sluice_telemetry::trace::{OtlpProtocol, TracingConfig};
use sluice_test_support::*;

const HOST: &str = "app.default.svc.cluster.local";

/// Spans received, with the `service.name` of their resource.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, Span)>>>,
}

impl Collector {
    fn take(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.spans.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.take(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn grpc_collector() -> (Collector, SocketAddr) {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(collector.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (collector, addr)
}

/// OTLP/HTTP: `POST /v1/traces` with an `application/x-protobuf` body.
async fn http_collector() -> (Collector, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let collector = Collector::default();
    let paths = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (c, seen) = (collector.clone(), paths.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (c, seen) = (c.clone(), seen.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (c, seen) = (c.clone(), seen.clone());
                        async move {
                            let ct = req
                                .headers()
                                .get("content-type")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            seen.lock().unwrap().push(format!(
                                "{} {} {ct}",
                                req.method(),
                                req.uri().path()
                            ));
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            c.take(ExportTraceServiceRequest::decode(body).unwrap());
                            let reply = ExportTraceServiceResponse::default().encode_to_vec();
                            let mut resp = http::Response::new(Full::new(Bytes::from(reply)));
                            resp.headers_mut().insert(
                                "content-type",
                                http::HeaderValue::from_static("application/x-protobuf"),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (collector, addr, paths)
}

fn tracing_config(endpoint: String, protocol: OtlpProtocol, percent: f64) -> TracingConfig {
    let mut tc = TracingConfig::new(endpoint, protocol);
    tc.sampling_percent = percent;
    tc.service_name = "frontend.default".into();
    tc.flush_interval = Duration::from_millis(100);
    tc
}

async fn setup(
    backends: &[(&str, SocketAddr)],
    vs_http: &str,
    tracing: TracingConfig,
    configure: impl FnOnce(&mut RunOptions),
) -> (ConfigDir, ProxyHandle, u16) {
    let port = free_port();
    let dir = ConfigDir::new();
    dir.write("svc.yaml", &service_yaml(HOST, port, backends));
    let versions: Vec<&str> = backends.iter().map(|(v, _)| *v).collect();
    dir.write("dr.yaml", &subsets_yaml(HOST, &versions));
    dir.write("vs.yaml", &virtual_service_yaml("app", vs_http));
    let p = proxy(dir.path(), |o| {
        o.telemetry.tracing = Some(tracing);
        configure(o);
    })
    .await;
    (dir, p, port)
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
}

/// `00-<trace>-<span>-<flags>` split into its parts.
fn traceparent(value: &str) -> (String, String, String) {
    let p: Vec<&str> = value.split('-').collect();
    assert_eq!(p.len(), 4, "{value}");
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn grpc_export_continues_a_w3c_trace_and_honours_the_callers_decision() {
    let (collector, otlp) = grpc_collector().await;
    let v1 = backend("app", "v1").await;
    let dir_log = ConfigDir::new();
    let log_path = dir_log.path().join("access.log");
    let log_for_opts = log_path.clone();
    // 0%: only the caller's "sampled" flag makes a span.
    let (_d, p, port) = setup(
        &[("v1", v1.addr())],
        "  - route: [{destination: {host: app}}]\n",
        tracing_config(format!("http://{otlp}"), OtlpProtocol::Grpc, 0.0),
        move |o| {
            o.telemetry.access_log.enabled = true;
            o.telemetry.access_log.target = sluice_telemetry::AccessLogTarget::File(log_for_opts);
        },
    )
    .await;
    let c = TestClient::new();
    let sampled = format!("00-{TRACE}-{PARENT}-01");
    let r = c
        .get(
            addr(port),
            "app",
            "/productpage?u=1",
            &[
                ("traceparent", &sampled),
                ("tracestate", "congo=t61rcWkgMzE"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = v1.last_received().unwrap();
    let (trace, span_id, flags) = traceparent(seen.header("traceparent").unwrap());
    assert_eq!(trace, TRACE);
    assert_ne!(span_id, PARENT, "the upstream's parent is the proxy's span");
    assert_eq!(flags, "01");
    // B3 for apps that only forward x-b3-*; tracestate passes through.
    assert_eq!(seen.header("x-b3-traceid"), Some(TRACE));
    assert_eq!(seen.header("x-b3-spanid"), Some(span_id.as_str()));
    assert_eq!(seen.header("x-b3-parentspanid"), Some(PARENT));
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
    let request_id = seen.header("x-request-id").unwrap().to_string();

    // Not sampled upstream of us: propagated as such, nothing exported.
    let unsampled = format!("00-{TRACE}-{PARENT}-00");
    c.get(addr(port), "app", "/", &[("traceparent", &unsampled)])
        .await;
    let seen = v1.last_received().unwrap();
    assert_eq!(traceparent(seen.header("traceparent").unwrap()).2, "00");
    assert_eq!(seen.header("x-b3-sampled"), Some("0"));
    // No context and 0%: a new trace id, not sampled.
    c.get(addr(port), "app", "/", &[]).await;
    let seen = v1.last_received().unwrap();
    let (fresh, _, flags) = traceparent(seen.header("traceparent").unwrap());
    assert_ne!(fresh, TRACE);
    assert_eq!(flags, "00");

    p.shutdown().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "only the sampled request is exported");
    let (service, span) = &spans[0];
    assert_eq!(service, "frontend.default");
    assert_eq!(hex(&span.trace_id), TRACE);
    assert_eq!(hex(&span.parent_span_id), PARENT);
    assert_eq!(hex(&span.span_id), span_id);
    assert_eq!(span.name, format!("{HOST}:{port}/*"));
    assert_eq!(span.kind, SpanKind::Client as i32);
    assert!(span.end_time_unix_nano >= span.start_time_unix_nano);
    assert_eq!(attr(span, "http.status_code").as_deref(), Some("200"));
    assert_eq!(attr(span, "http.method").as_deref(), Some("GET"));
    assert_eq!(
        attr(span, "http.url").as_deref(),
        Some("http://app/productpage?u=1")
    );
    assert_eq!(
        attr(span, "upstream_cluster").as_deref(),
        Some(format!("outbound|{port}||{HOST}").as_str())
    );
    assert_eq!(attr(span, "guid:x-request-id"), Some(request_id));
    assert_eq!(attr(span, "response_flags").as_deref(), Some("-"));

    // The access log carries the trace id of every request (written in batches).
    assert_eventually(Duration::from_secs(3), "three access log lines", || async {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.lines().count() == 3)
    })
    .await;
    let log = std::fs::read_to_string(&log_path).unwrap();
    let first: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(first["trace_id"], TRACE);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["trace_id"], fresh.as_str());
}

#[tokio::test]
async fn http_export_starts_and_continues_b3_traces() {
    let (collector, otlp, paths) = http_collector().await;
    let v1 = backend("app", "v1").await;
    let failing = failing_backend("app", "v2").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr()), ("v2", failing.addr())],
        "  - match: [{headers: {end-user: {exact: jason}}}]\n    route: [{destination: {host: app, subset: v2}}]\n  - route: [{destination: {host: app, subset: v1}}]\n",
        tracing_config(format!("http://{otlp}"), OtlpProtocol::HttpProtobuf, 100.0),
        |_| {},
    )
    .await;
    let c = TestClient::new();
    // No context at 100%: a new sampled trace in both formats.
    c.get(addr(port), "app", "/", &[]).await;
    let seen = v1.last_received().unwrap();
    let (new_trace, new_span, flags) = traceparent(seen.header("traceparent").unwrap());
    assert_eq!(flags, "01");
    assert_eq!(seen.header("x-b3-traceid"), Some(new_trace.as_str()));
    assert_eq!(seen.header("x-b3-parentspanid"), None);

    // B3 multi with the decision deferred to the proxy (bookinfo's productpage forwards these).
    let b3_trace = "463ac35c9f6413ad48485a3953bb6124";
    c.get(
        addr(port),
        "app",
        "/",
        &[
            ("x-b3-traceid", b3_trace),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ],
    )
    .await;
    let seen = v1.last_received().unwrap();
    assert_eq!(seen.header("x-b3-traceid"), Some(b3_trace));
    assert_eq!(seen.header("x-b3-parentspanid"), Some("a2fb4a1d1a96d312"));
    assert_eq!(seen.header("x-b3-sampled"), Some("1"));

    // B3 single, sampled: answered in B3 single.
    let single = "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1";
    c.get(addr(port), "app", "/", &[("b3", single)]).await;
    let seen = v1.last_received().unwrap();
    let b3 = seen.header("b3").unwrap();
    assert!(b3.starts_with("80f198ee56343ba864fe8b2a57d3eff7-"), "{b3}");
    assert!(b3.ends_with("-1-e457b5a2e4d86bd1"), "{b3}");

    // "Don't sample" with no ids: honoured even at 100%.
    c.get(addr(port), "app", "/", &[("b3", "0")]).await;
    let seen = v1.last_received().unwrap();
    assert_eq!(traceparent(seen.header("traceparent").unwrap()).2, "00");

    // A 5xx is an error span.
    let r = c
        .get(addr(port), "app", "/", &[("end-user", "jason")])
        .await;
    assert_eq!(r.status, 503);

    assert_eventually(Duration::from_secs(5), "four spans exported", || async {
        collector.spans().len() == 4
    })
    .await;
    p.shutdown().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 4);
    let by_trace = |t: &str| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| hex(&s.trace_id) == t)
            .unwrap_or_else(|| panic!("no span for trace {t}"))
            .clone()
    };
    let root = by_trace(&new_trace);
    assert!(root.parent_span_id.is_empty());
    assert_eq!(hex(&root.span_id), new_span);
    assert_eq!(hex(&by_trace(b3_trace).parent_span_id), "a2fb4a1d1a96d312");
    assert_eq!(
        hex(&by_trace("80f198ee56343ba864fe8b2a57d3eff7").parent_span_id),
        "e457b5a2e4d86bd1"
    );
    let failed = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| attr(s, "http.status_code").as_deref() == Some("503"))
        .unwrap();
    assert_eq!(attr(failed, "error").as_deref(), Some("true"));
    assert_eq!(
        failed.status.as_ref().map(|s| s.code),
        Some(opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32)
    );
    let paths = paths.lock().unwrap().clone();
    assert!(
        paths
            .iter()
            .all(|p| p == "POST /v1/traces application/x-protobuf"),
        "{paths:?}"
    );
}

#[tokio::test]
async fn mirror_copies_are_never_sampled() {
    let (collector, otlp) = grpc_collector().await;
    let v1 = backend("app", "v1").await;
    let v2 = backend("app", "v2").await;
    let (_d, p, port) = setup(
        &[("v1", v1.addr()), ("v2", v2.addr())],
        "  - route: [{destination: {host: app, subset: v1}}]\n    mirror: {host: app, subset: v2}\n    mirrorPercentage: {value: 100.0}\n",
        tracing_config(format!("http://{otlp}"), OtlpProtocol::Grpc, 100.0),
        |_| {},
    )
    .await;
    let r = TestClient::new()
        .get(
            addr(port),
            "app",
            "/",
            &[("traceparent", &format!("00-{TRACE}-{PARENT}-01"))],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eventually(
        Duration::from_secs(3),
        "the mirror saw the copy",
        || async { v2.requests() == 1 },
    )
    .await;
    let primary = v1.last_received().unwrap();
    let copy = v2.last_received().unwrap();
    let (pt, ps, pf) = traceparent(primary.header("traceparent").unwrap());
    let (ct, cs, cf) = traceparent(copy.header("traceparent").unwrap());
    assert_eq!((pt.as_str(), pf.as_str()), (TRACE, "01"));
    assert_eq!((ct.as_str(), cf.as_str()), (TRACE, "00"));
    assert_eq!(cs, ps, "the copy keeps the ids of the request it copies");
    assert_eq!(copy.header("x-b3-sampled"), Some("0"));
    p.shutdown().await;
    let spans = collector.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
}
