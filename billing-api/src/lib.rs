//! `billing-api`: the HTTP API of the billing service (actix-web).
//!
//! [`Application::build`] binds the listener and returns the port, so tests run the
//! real server on port 0.

pub mod captures;
pub mod console;
pub mod error;
pub mod extract;
pub mod fallback;
pub mod openapi;
pub mod rate_limit;
pub mod read_lane;
pub mod routes;
pub mod state;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Data};
use actix_web::{App, HttpServer};
use billing_shared::clock::Clock;
use billing_shared::config::Config;
use billing_shared::db::build_pool;
use billing_shared::ports::Ports;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ApiError;
use crate::state::AppState;

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Builds the server from configuration with the built-in adapters
    /// (migrations are the caller's job), after checking that the secrets key
    /// opens every tenant's secrets.
    ///
    /// Errors: bad settings, the address taken, the database unreachable, or a
    /// tenant secret that does not open (`tenant_secrets::verify_on_start`).
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let app = Self::build_with(config, Ports::from_config(config)?)?;
        // On a connection of its own: one opened here would stay in a worker's pool
        // with its driver on this thread.
        let pool = build_pool(&config.database_url, 1)?;
        billing_shared::services::tenant_secrets::verify_on_start(&pool).await?;
        Ok(app)
    }

    /// Builds the server with the given adapters behind its ports.
    pub fn build_with(config: &Config, ports: Ports) -> anyhow::Result<Self> {
        billing_shared::sealing::install(config.keyring()?);
        // One pool per HTTP worker, `BILLING_DB_POOL_SIZE` split between them (no
        // more workers than connections): a connection's driver task runs on the
        // worker thread that opened it, so with one shared pool most statements
        // waited for another worker's thread to be woken to pass them on
        // (bench/README, "Entitlement reads"). A worker actix restarts after a panic
        // shares a live worker's pool.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = config.http_workers.unwrap_or(cores).min(config.db_pool_size).max(1);
        let per_worker = (config.db_pool_size / workers).max(1);
        let pools =
            (0..workers).map(|_| build_pool(&config.database_url, per_worker)).collect::<Result<Vec<_>, _>>()?;
        let next_pool = Arc::new(AtomicUsize::new(0));
        let capture_linger = config.capture_linger;
        let database_url = config.database_url.clone();
        let listener = TcpListener::bind(config.api_addr)?;
        let port = listener.local_addr()?.port();
        let clock = Clock::from_test_flag(config.test_clock);
        let admin_token = config.admin_token.clone();
        let amqp_url = config.amqp_url.clone();
        let key_filters = Arc::new(billing_shared::services::usage_key_filter::KeyFilters::default());
        let usage_turns = Arc::new(tokio::sync::Semaphore::new(
            config.usage_concurrency.unwrap_or(cores) * billing_shared::services::usage::MAX_EVENTS,
        ));
        let _ = billing_shared::telemetry::prometheus();
        let openapi = openapi::ApiDoc::openapi();
        let routes = Data::new(fallback::RouteTable::from_openapi(&openapi));
        let limits = Data::new(rate_limit::Limits::new(config.rate_limit_per_second, config.rate_limit_burst));
        let server = HttpServer::new(move || {
            // Called once per worker (again if a worker is restarted).
            let pool = pools[next_pool.fetch_add(1, Ordering::Relaxed) % pools.len()].clone();
            let state = AppState {
                pool: pool.clone(),
                reads: Arc::new(read_lane::ReadLane::new(database_url.clone())),
                ports: ports.clone(),
                clock,
                admin_token: admin_token.clone(),
                amqp_url: amqp_url.clone(),
                key_filters: key_filters.clone(),
                usage_turns: usage_turns.clone(),
            };
            App::new()
                .app_data(Data::new(captures::CaptureQueue::new(pool, clock, capture_linger)))
                .app_data(Data::new(state))
                .app_data(routes.clone())
                .app_data(limits.clone())
                .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|e, _| ApiError::validation(format!("query: {e}")).into()),
                )
                .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::not_found(e.to_string()).into()))
                .wrap(from_fn(rate_limit::limit))
                .wrap(from_fn(extract::refuse_nul))
                .wrap(from_fn(observe))
                .app_data(
                    web::FormConfig::default().error_handler(|e, _| ApiError::validation(format!("form: {e}")).into()),
                )
                .configure(routes::configure)
                .configure(console::configure)
                .service(web::redirect("/docs", "/docs/"))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/openapi.json", openapi.clone()))
                .default_service(web::to(fallback::fallback))
        })
        .workers(workers)
        .shutdown_timeout(30)
        .listen(listener)?
        .run();
        Ok(Application { port, server })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; actix stops gracefully on SIGTERM/SIGINT, finishing
    /// in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// A request answered after this long is logged at `warn` ("slow request"), not
/// `info`: visible at the default `RUST_LOG=warn`.
const SLOW_REQUEST: std::time::Duration = std::time::Duration::from_millis(100);

/// Logs every request and counts it by route pattern and status, inside its
/// `http.request` span: a child of the caller's trace when the request carries a
/// W3C `traceparent` header (`billing_shared::trace`; not on provider callbacks),
/// else a new trace. Probes and scrapes (`/healthz`, `/readyz`, `/metrics`) are not
/// traced. A 5xx is logged at `error`, a request slower than [`SLOW_REQUEST`] at
/// `warn`.
async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    use tracing::Instrument;
    let started = Instant::now();
    let method = req.method().to_string();
    let path = req.path().to_owned();
    let probe = matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics");
    let span = if probe {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "http.request",
            http.method = %method,
            http.route = tracing::field::Empty,
            http.status_code = tracing::field::Empty,
            trace_id = tracing::field::Empty
        )
    };
    // Provider callbacks are not authenticated by a header: whoever sends one does
    // not choose our trace (nor turn its sampling off).
    let trusted = !path.starts_with("/v1/webhooks/");
    let parent = req.headers().get(billing_shared::trace::TRACEPARENT).and_then(|v| v.to_str().ok());
    billing_shared::trace::continue_from(&span, parent.filter(|_| trusted));
    let res = next.call(req).instrument(span.clone()).await?;
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let status = res.status();
    let elapsed = started.elapsed();
    span.record("http.route", route.as_str());
    span.record("http.status_code", status.as_u16());
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status.as_u16().to_string()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method.clone(), "route" => route)
        .record(elapsed.as_secs_f64());
    let _entered = span.enter();
    if status.is_server_error() {
        tracing::error!(%method, %path, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    } else if elapsed >= SLOW_REQUEST {
        tracing::warn!(%method, %path, status = status.as_u16(), ms = elapsed.as_millis() as u64, "slow request");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    }
    Ok(res)
}
