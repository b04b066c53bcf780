//! Samples gauges for `/metrics`: messages ready per work, retry and dead-letter
//! queue (the consumer lag an operator watches), and the business figures read
//! from the database (subscriptions, MRR, the renewal backlog, payments, refunds
//! and receipts by state).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::db::business_metrics;

use billing_shared::queue::topology::{ALL, dead_queue};
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use tokio::sync::watch;
use uuid::Uuid;

/// Samples every queue's depth every `every` until `stop`; a failed passive
/// declare ends it (the session reconnects).
pub async fn run(conn: Arc<Connection>, every: Duration, mut stop: watch::Receiver<bool>) -> Result<(), lapin::Error> {
    let channel = conn.create_channel().await?;
    let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    loop {
        for q in ALL {
            for name in [q.name.to_owned(), dead_queue(q.name)] {
                match channel.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
                    Ok(queue) => metrics::gauge!("billing_queue_messages_ready", "queue" => name.clone())
                        .set(f64::from(queue.message_count())),
                    Err(e) => return Err(e),
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
    }
    let _ = channel.close(200, "sampler stopping".into()).await;
    Ok(())
}

/// How often the business gauges are read (each read counts whole tables).
pub const BUSINESS_EVERY: Duration = Duration::from_secs(30);

/// Samples the business gauges ([`business_metrics::sample`]) every `every`
/// until `stop`: `billing_subscriptions{tenant,status}`, `billing_mrr{tenant,currency}`,
/// `billing_renewals_due{tenant}`, `billing_payments{tenant,status}`,
/// `billing_refunds{tenant,status}`, `billing_receipts{tenant,status}`. A series
/// that disappears (no rows left in that status) is set to zero, not left stale.
/// A failed read is logged and tried again at the next tick.
pub async fn business(pool: PgPool, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut seen: HashSet<(String, Uuid, String)> = HashSet::new();
    loop {
        match read(&pool, clock).await {
            Ok(samples) => {
                let mut now_seen = HashSet::with_capacity(samples.len());
                for s in samples {
                    set(&s.metric, s.tenant, &s.label, s.value);
                    now_seen.insert((s.metric, s.tenant, s.label));
                }
                for (metric, tenant, label) in seen.difference(&now_seen) {
                    set(metric, *tenant, label, 0.0);
                }
                seen = now_seen;
            }
            Err(e) => tracing::warn!(error = %e, "reading the business gauges failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

async fn read(pool: &PgPool, clock: Clock) -> anyhow::Result<Vec<business_metrics::Sample>> {
    let mut conn = pool.get().await?;
    let now = clock.now(&mut conn).await?;
    Ok(business_metrics::sample(&mut conn, now).await?)
}

fn set(metric: &str, tenant: Uuid, label: &str, value: f64) {
    let tenant = tenant.to_string();
    let gauge = match metric {
        "mrr" => metrics::gauge!("billing_mrr", "tenant" => tenant, "currency" => label.to_owned()),
        "renewals_due" => metrics::gauge!("billing_renewals_due", "tenant" => tenant),
        other => metrics::gauge!(format!("billing_{other}"), "tenant" => tenant, "status" => label.to_owned()),
    };
    gauge.set(value);
}
