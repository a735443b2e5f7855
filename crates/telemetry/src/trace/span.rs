//! One request's span: its ids (always) and the SDK span (only when sampled).

use http::HeaderMap;
use opentelemetry::trace::{Span as _, SpanKind, Status};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::Span;

use super::propagation::{self, Format, Outgoing};

/// Where the span is taken, which sets its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanRole {
    /// Ingress gateway: the request enters the mesh here (`SERVER`).
    Gateway,
    /// Sidecar outbound: the request leaves a workload (`CLIENT`).
    Outbound,
}

impl SpanRole {
    pub(super) fn kind(self) -> SpanKind {
        match self {
            SpanRole::Gateway => SpanKind::Server,
            SpanRole::Outbound => SpanKind::Client,
        }
    }
}

/// How the request ended, for the span's closing attributes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanEnd<'a> {
    /// Status sent downstream (0 when none).
    pub status: u16,
    /// gRPC status, for gRPC requests.
    pub grpc_status: Option<u32>,
    /// Envoy response flags (`-` when none).
    pub response_flags: &'a str,
    /// Cluster the request went to.
    pub upstream_cluster: Option<&'a str>,
    /// Endpoint that answered.
    pub upstream_host: Option<&'a str>,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

/// The proxy's span for one request.
pub struct RequestSpan {
    out: Outgoing,
    span: Option<Span>,
}

impl std::fmt::Debug for RequestSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSpan")
            .field("out", &self.out)
            .field("recording", &self.span.is_some())
            .finish()
    }
}

impl RequestSpan {
    pub(super) fn unsampled(out: Outgoing) -> Self {
        RequestSpan { out, span: None }
    }

    pub(super) fn sampled(
        span: Span,
        parent_span_id: Option<u64>,
        b3: Format,
        replaces_incoming: bool,
    ) -> Self {
        let sc = span.span_context();
        let out = Outgoing {
            trace_id: u128::from_be_bytes(sc.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(sc.span_id().to_bytes()),
            parent_span_id,
            sampled: sc.is_sampled(),
            b3,
            replaces_incoming,
        };
        RequestSpan {
            out,
            span: Some(span),
        }
    }

    /// What goes upstream.
    pub fn outgoing(&self) -> &Outgoing {
        &self.out
    }

    /// The trace id (access log `trace_id`).
    pub fn trace_id(&self) -> u128 {
        self.out.trace_id
    }

    /// True when the span is sampled and will be exported.
    pub fn is_recording(&self) -> bool {
        self.span.is_some()
    }

    /// Writes the trace headers for the upstream request.
    pub fn inject(&self, headers: &mut HeaderMap) {
        propagation::inject(headers, &self.out);
    }

    /// Renames the span (the operation is known once the route matched).
    pub fn set_name(&mut self, name: String) {
        if let Some(s) = self.span.as_mut() {
            s.update_name(name);
        }
    }

    /// Adds a string attribute; a no-op when not sampled.
    pub fn set_str(&mut self, key: &'static str, value: impl Into<String>) {
        if let Some(s) = self.span.as_mut() {
            s.set_attribute(KeyValue::new(key, value.into()));
        }
    }

    /// Closes the span with Envoy's response attributes and hands it to the exporter.
    pub fn end(mut self, end: &SpanEnd<'_>) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        let mut attrs = vec![
            KeyValue::new("http.status_code", end.status.to_string()),
            KeyValue::new("response_flags", end.response_flags.to_string()),
            KeyValue::new("request_size", end.request_bytes.to_string()),
            KeyValue::new("response_size", end.response_bytes.to_string()),
            KeyValue::new(
                "upstream_cluster",
                end.upstream_cluster.unwrap_or("-").to_string(),
            ),
        ];
        if let Some(c) = end.upstream_cluster {
            attrs.push(KeyValue::new("upstream_cluster.name", c.to_string()));
        }
        if let Some(h) = end.upstream_host {
            attrs.push(KeyValue::new("upstream_address", h.to_string()));
        }
        if let Some(g) = end.grpc_status {
            attrs.push(KeyValue::new("grpc.status_code", g.to_string()));
        }
        span.set_attributes(attrs);
        // Envoy marks a span failed on 5xx (and on no response at all).
        if end.status == 0 || end.status >= 500 {
            span.set_attribute(KeyValue::new("error", "true"));
            span.set_status(Status::error(end.response_flags.to_string()));
        }
        span.end();
    }
}
