//! The worker's small HTTP server: `/metrics` (Prometheus) and `/healthz`.

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::web::Data;
use actix_web::{App, HttpResponse, HttpServer, web};
use billing_shared::db::PgPool;

pub fn start(addr: SocketAddr, pool: PgPool) -> std::io::Result<ServerHandle> {
    let _ = billing_shared::telemetry::prometheus();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(Data::new(pool.clone()))
            .route("/metrics", web::get().to(metrics))
            .route("/healthz", web::get().to(|| async { HttpResponse::Ok().json(serde_json::json!({"status": "ok"})) }))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok(handle)
}

async fn metrics() -> HttpResponse {
    let body = billing_shared::telemetry::prometheus().map(|h| h.render()).unwrap_or_default();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
