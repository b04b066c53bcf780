//! Logs and metrics for both binaries: JSON (or text) logs through `tracing`, and a
//! process-wide Prometheus recorder rendered by each binary's `/metrics`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber: logs to stderr (`RUST_LOG` filters; default
/// `info`) and, when an OTLP endpoint is configured (`crate::trace::provider`),
/// OpenTelemetry spans at info level whatever `RUST_LOG` says, exported over OTLP;
/// JSON log lines then carry the spans they happen in (`spans`, the root one with
/// its `trace_id`). Without an endpoint tracing is off: no span is recorded (the
/// hot paths carry no span work), no trace ids, no `traceparent` sent. Installs
/// rustls' crypto provider first (the OTLP exporter's client needs it). Keep the
/// returned guard until the process ends: dropping it flushes the spans not yet
/// exported. Calling it again installs nothing more. Errors: the OTLP exporter
/// settings do not parse.
pub fn init(format: LogFormat, service: &'static str) -> Result<Tracing, String> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, LevelFilter, filter_fn};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    install_crypto_provider();
    let provider = crate::trace::provider(service)?;
    let on = provider.is_some();
    let spans = provider.as_ref().map(|p| crate::trace::layer(p).with_filter(LevelFilter::INFO));
    let registry = tracing_subscriber::registry().with(spans);
    // Logs follow RUST_LOG for events. Spans exist for tracing only: with it on,
    // log lines list every span at info they happen in (with the trace id), even
    // when RUST_LOG keeps info events out; with it off, none is recorded.
    let logged = || {
        let events = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        events
            .and(filter_fn(|m| !m.is_span()))
            .or(filter_fn(move |m| on && m.is_span() && *m.level() <= tracing::Level::INFO))
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(false).with_span_list(true).with_filter(logged()))
            .try_init(),
        LogFormat::Text => registry.with(fmt.with_filter(logged())).try_init(),
    };
    Ok(Tracing { provider })
}

/// Flushes and stops span export when dropped (end of `main`); holds nothing when
/// tracing is off.
pub struct Tracing {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        if let Some(Err(e)) = self.provider.as_ref().map(|p| p.shutdown()) {
            tracing::warn!(error = %e, "flushing spans at exit failed");
        }
    }
}

static PROMETHEUS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How long a gauge series stays exported after it was last set: four business
/// sampling periods (the worker's slowest sampler, every 30 s). A series nobody
/// sets any more then drops out of `/metrics` instead of repeating its last value:
/// a tenant's or status's business gauges once its rows are gone, those of a worker
/// replica that stopped sampling them (`billing-worker/src/sampler.rs`), and queue
/// depths and the outbox lag while the worker has no RabbitMQ session. Counters and
/// histograms never expire.
pub const GAUGE_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The process's Prometheus handle, installing the recorder on first use (gauges
/// expire after [`GAUGE_IDLE_TIMEOUT`]).
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    PROMETHEUS
        .get_or_init(|| {
            let recorder =
                PrometheusBuilder::new().idle_timeout(MetricKindMask::GAUGE, Some(GAUGE_IDLE_TIMEOUT)).build_recorder();
            let handle = recorder.handle();
            let installed = metrics::set_global_recorder(recorder).ok().map(|_| handle);
            if installed.is_some() {
                describe();
            }
            installed
        })
        .as_ref()
}

/// Every metric either binary exports, with its unit and `# HELP` text (what
/// `promtool check metrics` and the dashboards in `deploy/` rely on).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("http_requests_total", "API requests answered, by method, route template and status");
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "API request latency, by method and route template"
    );
    describe_counter!(
        "billing_charges_total",
        "Saved-card charge attempts, by outcome: sent to a gateway (captured, declined, unknown, refused) \
         or not_sent (no saved card, or it was revoked: declined without a call)"
    );
    describe_counter!(
        "billing_dead_letters_total",
        "Jobs moved to a dead-letter queue after their last retry, by queue"
    );
    describe_counter!("billing_dunning_retries_total", "Dunning retries of declined renewals started by the scheduler");
    describe_counter!("billing_job_retries_total", "Jobs sent back for a delayed retry, by queue");
    describe_counter!("billing_outbox_published_total", "Outbox events published to RabbitMQ");
    describe_counter!(
        "billing_provider_refusals_total",
        "Calls a provider refused for the merchant's settings, by provider, operation and tenant"
    );
    describe_counter!(
        "billing_receipts_registered_total",
        "54-FZ receipts registered with the fiscal provider, by kind"
    );
    describe_counter!("billing_renewals_started_total", "Renewal payments started by the scheduler");
    describe_counter!(
        "billing_usage_key_lookups_skipped_total",
        "New usage event ids the previous key generation's filter ruled out, so not looked up there"
    );
    describe_counter!("billing_scheduler_claimed_total", "Subscriptions claimed by scheduler ticks");
    describe_counter!(
        "billing_webhook_deliveries_total",
        "Deliveries of events to tenants' webhook endpoints, by outcome"
    );
    describe_gauge!("billing_outbox_lag_seconds", Unit::Seconds, "Age of the oldest unpublished outbox event");
    describe_gauge!("billing_queue_messages_ready", "Messages ready in each work, retry and dead-letter queue");
    describe_histogram!("billing_job_seconds", Unit::Seconds, "Time to handle one job, by queue");
    describe_histogram!("billing_job_batch_seconds", Unit::Seconds, "Time to handle one batch of jobs, by queue");
    describe_histogram!("billing_scheduler_tick_seconds", Unit::Seconds, "Time of one scheduler tick");
    describe_histogram!(
        "billing_charge_batch_phase_seconds",
        Unit::Seconds,
        "Time of each phase of a charge batch, by phase"
    );
    describe_gauge!("billing_subscriptions", "Subscriptions by tenant and status");
    describe_gauge!(
        "billing_mrr",
        "Monthly recurring revenue by tenant and currency, in major units (active and past-due subscriptions)"
    );
    describe_gauge!(
        "billing_renewals_due",
        "Subscriptions whose scheduled renewal, retry or expiry is due and not yet taken, by tenant"
    );
    describe_gauge!("billing_payments", "Payments by tenant and status");
    describe_gauge!("billing_refunds", "Refunds by tenant and status");
    describe_gauge!("billing_receipts", "Fiscal receipts by tenant and status");
    describe_gauge!(
        "billing_business_sampled_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the last business sample, exported by the replica that samples (the others export none)"
    );
    describe_gauge!(
        "billing_receipts_oldest_pending_seconds",
        Unit::Seconds,
        "Age of the tenant's oldest receipt still pending registration, since it was created"
    );
}

/// Installs ring as rustls' crypto provider (reqwest and lapin share rustls; with
/// exactly one provider compiled in, rustls would otherwise refuse to pick).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
