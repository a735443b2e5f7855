//! The OTLP pipeline: exporter (gRPC or HTTP/protobuf) and its batch task, on a thread with a
//! single-threaded Tokio runtime of its own.

use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;

use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::{OtlpProtocol, TracingConfig};

/// Why tracing could not start.
#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    /// The endpoint is not a URL the exporter accepts.
    #[error("tracing endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// The configured endpoint.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    /// The export thread or its runtime could not start.
    #[error("tracing export thread: {0}")]
    Thread(String),
}

/// The thread that runs the exporter; stopped after the provider has flushed.
pub(super) struct ExportThread {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl ExportThread {
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Starts the export thread and builds the provider inside its runtime (the gRPC channel and
/// the batch task are bound to the runtime they are created in).
pub(super) fn spawn(
    config: &TracingConfig,
) -> Result<(SdkTracerProvider, ExportThread), TracingError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TracingError::Thread(e.to_string()))?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stop_rx) = oneshot::channel::<()>();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("sluice-trace-export".into())
        .spawn(move || {
            runtime.block_on(async move {
                let built = provider(&config);
                let ok = built.is_ok();
                let _ = ready_tx.send(built);
                if ok {
                    let _ = stop_rx.await;
                }
            });
        })
        .map_err(|e| TracingError::Thread(e.to_string()))?;
    let provider = ready_rx
        .recv()
        .map_err(|e| TracingError::Thread(e.to_string()))??;
    Ok((provider, ExportThread { stop, thread }))
}

/// Longest wait for one export (a dead collector must not hold up shutdown for long).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP endpoint with OTLP's signal path added when the URL has none.
fn http_endpoint(endpoint: &str) -> Result<String, TracingError> {
    let uri: http::Uri = endpoint.parse().map_err(|e| TracingError::Endpoint {
        endpoint: endpoint.to_string(),
        reason: format!("{e}"),
    })?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(TracingError::Endpoint {
            endpoint: endpoint.to_string(),
            reason: "expected http://host:port".into(),
        });
    }
    Ok(match uri.path() {
        "" | "/" => format!("{}/v1/traces", endpoint.trim_end_matches('/')),
        _ => endpoint.to_string(),
    })
}

fn provider(config: &TracingConfig) -> Result<SdkTracerProvider, TracingError> {
    let exporter = match config.protocol {
        OtlpProtocol::Grpc => {
            http_endpoint(&config.endpoint)?;
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(config.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()?
        }
        OtlpProtocol::HttpProtobuf => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(http_endpoint(&config.endpoint)?)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?,
    };
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(config.flush_interval)
        .with_max_queue_size(8192)
        .build();
    let processor = BatchSpanProcessor::builder(exporter, Tokio)
        .with_batch_config(batch)
        .build();
    // Sampling is decided before a span is built (see `Tracing::begin`); what reaches the SDK
    // is always recorded.
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_signal_path() {
        assert_eq!(
            http_endpoint("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            http_endpoint("http://c:4318/custom/traces").unwrap(),
            "http://c:4318/custom/traces"
        );
        assert!(http_endpoint("c:4318").is_err());
        assert!(http_endpoint("not a url").is_err());
    }
}
