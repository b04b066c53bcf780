//! Distributed tracing with OpenTelemetry, over `tracing` spans.
//!
//! Every root span (an API request, a worker job or batch, a scheduler claim)
//! carries its `trace_id` as a field, so JSON log lines inside it name the trace
//! (`spans[].trace_id`). Contexts cross process boundaries as W3C Trace Context
//! `traceparent` values (<https://www.w3.org/TR/trace-context/>): read from an API
//! request's header, stored with each outbox message written inside a span
//! (`outbox_events.trace_context`), put by the relay into the AMQP message's
//! headers, continued by the consumer, and sent to tenants' webhook endpoints. A
//! renewal can so be followed from the scheduler's claim through the charge job and
//! the gateway call to the webhook delivery of its events.
//!
//! Spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set — protobuf by default,
//! `OTEL_EXPORTER_OTLP_PROTOCOL=http/json` for JSON; service name from
//! `OTEL_SERVICE_NAME`, else the binary's; batching per `OTEL_BSP_*`; sampling per
//! `OTEL_TRACES_SAMPLER` / `_ARG` (default: every trace, or as its parent says).
//! Without an endpoint tracing is off altogether (no layer on the hot paths: no
//! trace ids in logs, no `traceparent` stored or sent).
//!
//! A renewal wave's trace starts at the scheduler tick that claimed it; a charge
//! batch continues its first message's trace and links the others', so every
//! renewal is reachable from its tick's trace.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The W3C Trace Context header and AMQP header name.
pub const TRACEPARENT: &str = "traceparent";

/// Whether an OTLP endpoint is configured (the standard variables, non-empty).
fn exporting() -> bool {
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// The tracer provider of the process, with a batch OTLP exporter; `None` when no
/// OTLP endpoint is configured (tracing off). Errors: the exporter's settings
/// (endpoint, protocol, headers) do not parse.
pub(crate) fn provider(service: &'static str) -> Result<Option<SdkTracerProvider>, String> {
    if !exporting() {
        return Ok(None);
    }
    let name = std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| service.into());
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("OTLP span exporter: {e}"))?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_resource(Resource::builder().with_service_name(name).build())
            .with_batch_exporter(exporter)
            .build(),
    ))
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer("billing"))
}

/// One `traceparent` value as a carrier.
struct Carrier(Option<String>);

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0.as_deref()).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

impl Injector for Carrier {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The `traceparent` of `span` (`00-<trace id>-<span id>-<flags>`); `None` when
/// it has no valid context (tracing not installed, a disabled span).
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let mut carrier = Carrier(None);
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.0
}

/// [`traceparent_of`] the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
}

/// The span context a `traceparent` value names; `None` for a malformed value.
fn remote(traceparent: &str) -> Option<opentelemetry::Context> {
    let cx = TraceContextPropagator::new().extract(&Carrier(Some(traceparent.to_owned())));
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of the remote span `traceparent` names (a malformed or
/// absent value leaves it a root), then records its `trace_id` field.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(remote) {
        // Fails only once the span has started (it has not: it was just made).
        let _ = span.set_parent(cx);
    }
    record_trace_id(span);
}

/// Links `span` to the remote span `traceparent` names (a batch job's other
/// messages); ignored when malformed or absent.
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(cx) = traceparent.and_then(remote) {
        span.add_link(cx.span().span_context().clone());
    }
}

/// Records `span`'s trace id (32 hex digits) in its `trace_id` field, declared
/// `tracing::field::Empty` where the span is made.
pub fn record_trace_id(span: &tracing::Span) {
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Runs a provider call (`call`) in a span named `name` (`gateway.charge`,
/// `fiscal.register`, ...) with the provider's name; a failure sets the span's
/// status to error with the message.
pub async fn provider_call<T, E: std::fmt::Display>(
    provider: &'static str,
    name: &'static str,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "provider_call",
        otel.name = name,
        provider,
        error = tracing::field::Empty,
        otel.status_code = tracing::field::Empty
    );
    let result = call.instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("error", tracing::field::display(e));
        span.record("otel.status_code", "ERROR");
    }
    result
}
