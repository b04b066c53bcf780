//! `billing-worker`: the RabbitMQ-driven side of the billing service.
//!
//! It connects to PostgreSQL and RabbitMQ, serves `/metrics` and `/healthz`, and
//! stops cleanly on SIGTERM: in-flight work finishes (or is left unacknowledged for
//! redelivery) before the process exits.

pub mod metrics_server;

use std::future::Future;
use std::time::Duration;

use billing_shared::config::Config;
use billing_shared::db::build_pool;
use billing_shared::queue;

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the worker until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let pool = build_pool(&config.database_url, config.db_pool_size)?;
    let metrics = metrics_server::start(config.worker_metrics_addr, pool.clone())?;
    tokio::pin!(shutdown);
    let amqp = tokio::select! {
        conn = connect_with_backoff(&config) => conn,
        _ = &mut shutdown => {
            metrics.stop(true).await;
            return Ok(());
        }
    };
    tracing::info!("billing-worker connected to PostgreSQL and RabbitMQ");
    shutdown.await;
    let _ = amqp.close(200, "worker stopping".into()).await;
    metrics.stop(true).await;
    tracing::info!("billing-worker stopped");
    Ok(())
}

/// Connects to RabbitMQ, retrying with back-off until it answers.
async fn connect_with_backoff(config: &Config) -> lapin::Connection {
    let mut delay = Duration::from_millis(200);
    loop {
        match queue::connect(&config.amqp_url, "billing-worker").await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "RabbitMQ not reachable");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}
