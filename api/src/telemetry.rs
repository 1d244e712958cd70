//! Traces over OTLP, and process-wide operational metrics that belong to no one request path.
//!
//! **Traces** (`--otlp-endpoint`, else `OTEL_EXPORTER_OTLP_ENDPOINT`; off without): spans are
//! `tracing` spans of the target [`TARGET`], turned into OpenTelemetry spans by
//! `tracing-opentelemetry` and exported in batches over OTLP/HTTP (protobuf) to
//! `<endpoint>/v1/traces` by the SDK's batch processor on its own thread. The spans: one per
//! HTTP request ([`request_span`]: route template, method, status; a `traceparent` header the
//! client sent makes it a child of the client's span) and, under it, one per CAS or routed call
//! (`starling_gossip`: run here or forwarded to the key's owner). When tracing is off no layer
//! wants [`TARGET`] (the log layer filters it out), so a span's call site is disabled once and
//! costs a relaxed load per request after that (bench/tracing.md).
//!
//! **Bounded**: at most [`QUEUE`] spans wait for export. A gate in front of the SDK's processor
//! counts the spans handed to it and not yet through the exporter, and drops a span past the
//! bound itself, so every dropped span is counted (`starling_otlp_spans_dropped_total`); the
//! SDK's own queue, of the same size, never fills. Exported and failed spans are counted too.
//!
//! **Metrics** ([`ProcessCollector`], in every node's registry): the TLS certificate's reloads
//! ([`crate::tls`]) and the span exporter's counters.

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `tracing` target of the spans exported as traces (and of nothing else).
pub const TARGET: &str = "starling_trace";
/// Spans waiting for export at most; past it new spans are dropped and counted.
pub const QUEUE: usize = 2048;
/// Spans per export request at most.
const BATCH: usize = 512;
/// Time between exports when the batch is not full.
const DELAY: Duration = Duration::from_secs(1);
/// An export request that takes longer fails (its spans counted as failed).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("--otlp-endpoint {0:?}: expected a URL such as http://127.0.0.1:4318")]
    Endpoint(String),
    /// The exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Spans in the gate (handed to the SDK, not yet through the exporter), and the exporter's
/// counts: exported, failed, dropped at the gate. Process-wide, as the tracer provider is.
static IN_FLIGHT: AtomicU64 = AtomicU64::new(0);
static EXPORTED: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Whether traces are exported (the metrics say so).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Checks an endpoint and gives the traces URL under it.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let e = endpoint.trim().trim_end_matches('/');
    let rest = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
        .ok_or_else(|| TelemetryError::Endpoint(endpoint.to_string()))?;
    if rest.is_empty() || rest.contains(char::is_whitespace) {
        return Err(TelemetryError::Endpoint(endpoint.to_string()));
    }
    Ok(format!("{e}/v1/traces"))
}

/// The running exporter; [`Tracing::shutdown`] flushes what is queued.
#[derive(Debug)]
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// The exporter to `endpoint` (see [`traces_url`]) for a node of `region` named `node`.
    /// Must be called outside an async runtime (the HTTP client is a blocking one, on the
    /// processor's thread).
    pub fn otlp(endpoint: &str, region: &str, node: &str) -> Result<Self, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces_url(endpoint)?)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let t = Self::with_exporter(exporter, region, node);
        ENABLED.store(true, Ordering::Relaxed);
        Ok(t)
    }

    /// The same pipeline (gate, batch processor, counts) over any exporter: the benchmark's.
    pub fn with_exporter<E: SpanExporter + 'static>(exporter: E, region: &str, node: &str) -> Self {
        let batch = BatchSpanProcessor::builder(Counted(exporter))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_max_queue_size(QUEUE)
                    .with_max_export_batch_size(BATCH)
                    .with_scheduled_delay(DELAY)
                    .build(),
            )
            .build();
        let resource = Resource::builder()
            .with_service_name("starling")
            .with_attributes([
                KeyValue::new("service.instance.id", node.to_string()),
                KeyValue::new("starling.region", region.to_string()),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Gate(batch))
            .with_resource(resource)
            .build();
        Tracing { provider }
    }

    /// The `tracing` layer that turns [`TARGET`]'s spans into exported spans (filter it to
    /// [`TARGET`]).
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S> + use<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("starling"))
    }

    /// Exports what is queued and stops (outside an async runtime, like [`Tracing::otlp`]).
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OTLP exporter shutdown");
        }
    }
}

/// Admits a span to the batch processor while fewer than [`QUEUE`] are in flight.
#[derive(Debug)]
struct Gate<P>(P);

impl<P: SpanProcessor> SpanProcessor for Gate<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if IN_FLIGHT.fetch_add(1, Ordering::Relaxed) >= QUEUE as u64 {
            IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Counts what the exporter took, and lets the gate admit as many more.
#[derive(Debug)]
struct Counted<E>(E);

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        // Released however the export ends, even if its future is dropped (a timeout): the
        // gate must not stay closed for spans that are gone.
        let mut spans = Release {
            n: batch.len() as u64,
            to: &FAILED,
        };
        let out = self.0.export(batch).await;
        if out.is_ok() {
            spans.to = &EXPORTED;
        }
        out
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

/// Spans leaving the gate, counted in `to` when dropped.
struct Release {
    n: u64,
    to: &'static AtomicU64,
}

impl Drop for Release {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.n, Ordering::Relaxed);
        self.to.fetch_add(self.n, Ordering::Relaxed);
    }
}

/// The span of one HTTP request (disabled, and nearly free, when traces are off): named
/// `METHOD /route/{template}`; [`finish_request_span`] records the status. A W3C `traceparent`
/// header makes it a child of the caller's span.
pub fn request_span(
    method: &axum::http::Method,
    route: &str,
    headers: &axum::http::HeaderMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if !span.is_disabled() && headers.contains_key("traceparent") {
        let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&Headers(headers));
        let _ = span.set_parent(cx);
    }
    span
}

/// Records a request's status on its span (5xx marks it an error).
pub fn finish_request_span(span: &tracing::Span, status: axum::http::StatusCode) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// Reads W3C trace context from request headers.
struct Headers<'a>(&'a axum::http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

/// Encodes the process-wide counters.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

/// The collector of the process-wide counters, for a registry of one's own (the benchmark's).
pub fn process_collector() -> impl Collector {
    ProcessCollector
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: &AtomicU64) -> std::fmt::Result {
    let c = ConstCounter::new(v.load(Ordering::Relaxed));
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let mut family = enc.encode_descriptor(
            "starling_tls_reloads",
            "Reloads of the TLS certificate (SIGHUP or a change of its files), by result; a failed one keeps the certificate served",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("applied", &crate::tls::RELOADS[0]),
            ("failed", &crate::tls::RELOADS[1]),
        ] {
            let c = ConstCounter::new(n.load(Ordering::Relaxed));
            c.encode(family.encode_family(&[("result", result)])?)?;
        }
        if !ENABLED.load(Ordering::Relaxed) {
            return Ok(());
        }
        let e = &mut enc;
        counter(
            e,
            "starling_otlp_spans_exported",
            "Spans the OTLP exporter delivered",
            &EXPORTED,
        )?;
        counter(
            e,
            "starling_otlp_spans_failed",
            "Spans in OTLP export requests that failed",
            &FAILED,
        )?;
        counter(
            e,
            "starling_otlp_spans_dropped",
            "Spans dropped because the export queue was full",
            &DROPPED,
        )?;
        let q =
            ConstGauge::new(i64::try_from(IN_FLIGHT.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        q.encode(e.encode_descriptor(
            "starling_otlp_queue_spans",
            "Spans waiting for OTLP export (at most 2048)",
            None,
            q.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_urls_and_traces_go_under_them() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://otel.example/base/").unwrap(),
            "https://otel.example/base/v1/traces"
        );
        for bad in ["127.0.0.1:4318", "http://", "ftp://x", ""] {
            assert!(traces_url(bad).is_err(), "{bad}");
        }
    }
}
