use super::*;
use http::HeaderValue;

fn tracing(percent: f64) -> Tracing {
    let mut config = TracingConfig::new("http://127.0.0.1:9", OtlpProtocol::HttpProtobuf);
    config.sampling_percent = percent;
    Tracing::start(&config).unwrap()
}

fn with(name: &'static str, value: &'static str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, HeaderValue::from_static(value));
    h
}

#[tokio::test]
async fn the_callers_decision_wins() {
    let t = tracing(0.0);
    let span = t.begin(
        &with(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        SpanRole::Outbound,
        || "op".into(),
    );
    assert!(span.is_recording());
    let out = span.outgoing();
    assert_eq!(out.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(out.parent_span_id, Some(0x00f067aa0ba902b7));
    assert_ne!(out.span_id, 0x00f067aa0ba902b7);
    assert!(out.sampled);

    let t = tracing(100.0);
    let span = t.begin(
        &with(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        ),
        SpanRole::Outbound,
        || "op".into(),
    );
    assert!(!span.is_recording());
    assert_eq!(span.outgoing().trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert!(!span.outgoing().sampled);
    assert!(!t
        .begin(&with("b3", "0"), SpanRole::Gateway, || "op".into())
        .is_recording());
}

#[tokio::test]
async fn deferred_and_new_traces_follow_the_percentage() {
    let deferred = || {
        let mut h = with("x-b3-traceid", "463ac35c9f6413ad");
        h.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        h
    };
    let on = tracing(100.0);
    let off = tracing(0.0);
    let span = on.begin(&deferred(), SpanRole::Outbound, || "op".into());
    assert!(span.is_recording());
    assert_eq!(span.outgoing().trace_id, 0x463ac35c9f6413ad);
    assert_eq!(span.outgoing().b3, Format::B3Multi);
    assert!(!off
        .begin(&deferred(), SpanRole::Outbound, || "op".into())
        .is_recording());
    assert!(on
        .begin(&HeaderMap::new(), SpanRole::Gateway, || "op".into())
        .is_recording());
    let unsampled = off.begin(&HeaderMap::new(), SpanRole::Gateway, || "op".into());
    assert!(!unsampled.is_recording());
    assert_ne!(unsampled.outgoing().trace_id, 0);
    assert_eq!(unsampled.outgoing().parent_span_id, None);

    // 1% of 20,000 new traces: a binomial with mean 200 and sd ~14.
    let one = tracing(1.0);
    let n = (0..20_000).filter(|_| one.sample_new()).count();
    assert!((130..=270).contains(&n), "{n}");
}

#[tokio::test]
async fn a_b3_single_header_comes_back_single() {
    let t = tracing(100.0);
    let span = t.begin(
        &with("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"),
        SpanRole::Outbound,
        || "op".into(),
    );
    let mut h = HeaderMap::new();
    span.inject(&mut h);
    let b3 = h["b3"].to_str().unwrap();
    assert!(b3.starts_with("80f198ee56343ba864fe8b2a57d3eff7-"), "{b3}");
    assert!(b3.ends_with("-1-e457b5a2e4d86bd1"), "{b3}");
    assert!(h["traceparent"].to_str().unwrap().ends_with("-01"));
}
