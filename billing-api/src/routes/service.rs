//! Service endpoints: liveness, readiness, metrics.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data};
use actix_web::{HttpResponse, get};
use diesel_async::RunQueryDsl;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub postgres: bool,
    pub rabbitmq: bool,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, body = Health)))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// PostgreSQL and RabbitMQ are reachable (503 otherwise).
#[utoipa::path(get, path = "/readyz", tag = "service", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
#[get("/readyz")]
async fn readyz(state: Data<AppState>) -> HttpResponse {
    let postgres = match state.pool.get().await {
        Ok(mut conn) => diesel::sql_query("SELECT 1").execute(&mut conn).await.is_ok(),
        Err(_) => false,
    };
    let rabbitmq = billing_shared::queue::ping(&state.amqp_url).await;
    let status = if postgres && rabbitmq { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    HttpResponse::build(status).json(Readiness { postgres, rabbitmq })
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "service", responses((status = 200, content_type = "text/plain", body = String)))]
#[get("/metrics")]
async fn metrics() -> HttpResponse {
    let body = billing_shared::telemetry::prometheus().map(|h| h.render()).unwrap_or_default();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
