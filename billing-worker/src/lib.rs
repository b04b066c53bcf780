//! `billing-worker`: the RabbitMQ-driven side of the billing service.
//!
//! * the **scheduler** claims due subscriptions and performs what is due
//!   (renewal charges are created as attempts plus an outbox job);
//! * the **relay** publishes the outbox (events to `billing.events`, jobs to
//!   `billing.work`) with publisher confirms, in order per ordering key;
//! * **consumers** charge attempts (`billing.renewals`), reconcile unknown outcomes
//!   (`billing.gateway-followups`) and deliver signed webhooks (`billing.webhooks`),
//!   acknowledging after commit, retrying through TTL queues, dead-lettering;
//! * `/metrics` and `/healthz` on `BILLING_WORKER_METRICS_ADDR`.
//!
//! A lost broker connection ends the session; the worker reconnects with back-off
//! and declares the topology again. SIGTERM stops consuming, lets in-flight work
//! finish (unfinished deliveries are redelivered), and exits.

pub mod bindings;
pub mod consumer;
pub mod handlers;
pub mod metrics_server;
pub mod partitions;
pub mod relay;
pub mod sampler;
pub mod scheduler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::config::Config;
use billing_shared::db::{PgPool, build_pool};
use billing_shared::ports::Ports;
use billing_shared::queue::{self, topology};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::handlers::Handlers;

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

/// How long in-flight work may take to finish on shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Runs the worker with the built-in adapters until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let ports = Ports::from_config(&config)?;
    run_with(config, ports, shutdown).await
}

/// Runs the worker with the given adapters behind its ports until `shutdown` resolves.
pub async fn run_with(config: Config, ports: Ports, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    billing_shared::sealing::install(config.keyring()?);
    let pool = build_pool(&config.database_url, config.db_pool_size)?;
    // A worker under the wrong key refuses to start rather than fail tenant by tenant.
    billing_shared::services::tenant_secrets::verify_on_start(&pool).await?;
    let clock = Clock::from_test_flag(config.test_clock);
    let metrics = metrics_server::start(config.worker_metrics_addr, pool.clone())?;
    let handlers =
        Arc::new(Handlers::new(pool.clone(), clock, ports, config.webhook_timeout, config.public_url.clone())?);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Several loops claim with SKIP LOCKED, so they share the due work.
    let mut schedulers = JoinSet::new();
    for _ in 0..config.scheduler_concurrency {
        schedulers.spawn(scheduler::run(
            pool.clone(),
            clock,
            config.scheduler_interval,
            config.scheduler_batch,
            config.charge_waves,
            stop_rx.clone(),
        ));
    }

    schedulers.spawn(partitions::run(
        pool.clone(),
        clock,
        config.usage_retention_days,
        partitions::UPKEEP_EVERY,
        stop_rx.clone(),
    ));
    schedulers.spawn(sampler::business(pool.clone(), clock, sampler::BUSINESS_EVERY, stop_rx.clone()));

    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(200);
    loop {
        let conn = tokio::select! {
            conn = queue::connect(&config.amqp_url, "billing-worker") => conn,
            _ = &mut shutdown => break,
        };
        let conn = match conn {
            Ok(c) => Arc::new(c),
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ not reachable");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        match session(&config, &pool, conn, handlers.clone(), &mut shutdown).await {
            Ok(true) => break,
            Ok(false) => tracing::warn!("RabbitMQ connection lost; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, "worker session failed; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN, async { while schedulers.join_next().await.is_some() {} }).await;
    metrics.stop(true).await;
    tracing::info!("billing-worker stopped");
    Ok(())
}

/// One broker connection's worth of work. Returns `Ok(true)` on shutdown,
/// `Ok(false)` when the connection was lost.
async fn session(
    config: &Config,
    pool: &PgPool,
    conn: Arc<lapin::Connection>,
    handlers: Arc<Handlers>,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<bool, lapin::Error> {
    let channel = conn.create_channel().await?;
    topology::declare(&channel, config.retry_delay_divisor).await?;
    let _ = channel.close(200, "topology declared".into()).await;
    tracing::info!("billing-worker connected; topology declared");

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    tasks.spawn(relay::run(conn.clone(), pool.clone(), config.relay_interval, stop_rx.clone()));
    for q in topology::ALL {
        tasks.spawn(consumer::run(conn.clone(), *q, config.worker_prefetch, handlers.clone(), stop_rx.clone()));
    }
    tasks.spawn(sampler::run(conn.clone(), Duration::from_secs(5), stop_rx.clone()));
    tasks.spawn(bindings::run(conn.clone(), pool.clone(), stop_rx.clone()));

    let mut events = conn.events_listener();
    let shutting_down = loop {
        tokio::select! {
            _ = &mut *shutdown => break true,
            event = events.next() => match event {
                Some(lapin::Event::Error(e)) => {
                    tracing::warn!(error = %e, "RabbitMQ connection error");
                    break false;
                }
                Some(_) => {}
                None => break false,
            },
            Some(done) = tasks.join_next() => {
                match done {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "a broker task ended"),
                    Err(e) => tracing::error!(error = %e, "a broker task panicked"),
                }
                if !conn.status().connected() {
                    break false;
                }
            }
        }
    };
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await.is_err() {
        tasks.abort_all();
    }
    let _ = conn.close(200, "worker stopping".into()).await;
    Ok(shutting_down)
}
