//! Distributed tracing: continue or start a trace per request (W3C and B3 headers), decide
//! sampling the way Envoy does (the caller's decision wins, else a percentage), propagate the
//! proxy's span upstream, and export sampled spans with OTLP.
//!
//! Unsampled requests never touch the OpenTelemetry SDK: they only get fresh ids written
//! upstream, so tracing at 1% costs almost nothing on the other 99%.

mod export;
pub mod propagation;
mod span;

use std::time::Duration;

use http::HeaderMap;
use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState, Tracer as _};
use opentelemetry::Context;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use rand::Rng as _;

pub use export::TracingError;
pub use propagation::{Extracted, Format, Incoming, Outgoing};
pub use span::{RequestSpan, SpanEnd, SpanRole};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (Jaeger, Tempo and collectors on port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

/// Tracing settings.
#[derive(Debug, Clone)]
pub struct TracingConfig {
    /// Collector URL, e.g. `http://127.0.0.1:4317` (gRPC) or `http://127.0.0.1:4318` (HTTP;
    /// `/v1/traces` is added when the URL has no path).
    pub endpoint: String,
    /// Transport.
    pub protocol: OtlpProtocol,
    /// Percentage of new traces sampled (Istio's `sampling`, default 1.0).
    pub sampling_percent: f64,
    /// `service.name` of the exported spans (Istio uses `<app>.<namespace>`).
    pub service_name: String,
    /// Longest time a finished span waits before it is exported.
    pub flush_interval: Duration,
}

impl TracingConfig {
    /// Settings with Istio's defaults (1% sampling) for an endpoint.
    pub fn new(endpoint: impl Into<String>, protocol: OtlpProtocol) -> Self {
        TracingConfig {
            endpoint: endpoint.into(),
            protocol,
            sampling_percent: 1.0,
            service_name: "sluice".into(),
            flush_interval: Duration::from_secs(1),
        }
    }
}

/// The process's tracer: sampling decision, ids and the OTLP pipeline.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    /// Sampling probability in `[0, 1]`.
    probability: f64,
    exporter: Option<export::ExportThread>,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing")
            .field("probability", &self.probability)
            .finish_non_exhaustive()
    }
}

impl Tracing {
    /// Builds the exporter and starts its batch task on a thread of its own, so that flushing
    /// at shutdown never waits on the runtime that serves requests (with one worker it would
    /// wait on itself).
    pub fn start(config: &TracingConfig) -> Result<Tracing, TracingError> {
        let (provider, exporter) = export::spawn(config)?;
        let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, "sluice");
        Ok(Tracing {
            provider,
            tracer,
            probability: (config.sampling_percent / 100.0).clamp(0.0, 1.0),
            exporter: Some(exporter),
        })
    }

    fn sample_new(&self) -> bool {
        self.probability >= 1.0
            || (self.probability > 0.0 && rand::rng().random::<f64>() < self.probability)
    }

    /// Starts the proxy's span for a request; `name` gives the initial operation name (only
    /// called when the request is sampled).
    pub fn begin(
        &self,
        headers: &HeaderMap,
        role: SpanRole,
        name: impl FnOnce() -> String,
    ) -> RequestSpan {
        // Malformed trace headers are replaced too, so this is not "a context was extracted".
        let replaces_incoming = propagation::carries_trace_headers(headers);
        let extracted = if replaces_incoming {
            propagation::extract(headers)
        } else {
            Extracted::None
        };
        let (parent, sampled, b3) = match extracted {
            Extracted::Context(c) => {
                let b3 = match c.format {
                    Format::B3Single => Format::B3Single,
                    _ => Format::B3Multi,
                };
                (Some(c), c.sampled.unwrap_or_else(|| self.sample_new()), b3)
            }
            Extracted::DecisionOnly(s, Format::B3Single) => (None, s, Format::B3Single),
            Extracted::DecisionOnly(s, _) => (None, s, Format::B3Multi),
            Extracted::None => (None, self.sample_new(), Format::B3Multi),
        };
        if !sampled {
            let mut rng = rand::rng();
            let trace_id = parent.map_or_else(|| rng.random::<u128>() | 1, |p| p.trace_id);
            return RequestSpan::unsampled(Outgoing {
                trace_id,
                span_id: rng.random::<u64>() | 1,
                parent_span_id: parent.map(|p| p.span_id),
                sampled: false,
                b3,
                replaces_incoming,
            });
        }
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(SpanContext::new(
                p.trace_id.into(),
                p.span_id.into(),
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(name())
            .with_kind(role.kind())
            .start_with_context(&self.tracer, &cx);
        RequestSpan::sampled(span, parent.map(|p| p.span_id), b3, replaces_incoming)
    }

    /// Exports what is buffered now (blocks until the collector answered or timed out).
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }

    /// Exports what is buffered and stops the pipeline (blocks until the export thread is done).
    pub fn shutdown(&mut self) {
        let _ = self.provider.force_flush();
        let _ = self.provider.shutdown();
        if let Some(t) = self.exporter.take() {
            t.stop();
        }
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests;
