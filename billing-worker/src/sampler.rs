//! Samples gauges for `/metrics`: messages ready per work, retry and dead-letter
//! queue (the consumer lag an operator watches), and the business figures read
//! from the database by one replica at a time (subscriptions, MRR, the renewal
//! backlog, payments, refunds and receipts by state, the oldest pending receipt).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::business_metrics;
use billing_shared::db::{PgPool, PooledConn};
use billing_shared::queue::topology::{ALL, dead_queue};
use billing_shared::telemetry;
use diesel_async::AsyncPgConnection;
use lapin::Connection;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use rust_decimal::prelude::ToPrimitive;
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

/// The longest pause between two business reads, however slow they are: a gauge
/// series set at every read must outlive the gap between two reads (the pause plus
/// a read, which gives up after `READ_TIMEOUT`).
const BUSINESS_MAX_PAUSE: Duration = Duration::from_secs(telemetry::GAUGE_IDLE_TIMEOUT.as_secs() / 2);
const _: () = assert!(BUSINESS_MAX_PAUSE.as_secs() >= 2 * BUSINESS_EVERY.as_secs());
const _: () = assert!(BUSINESS_MAX_PAUSE.as_secs() + READ_TIMEOUT.as_secs() < telemetry::GAUGE_IDLE_TIMEOUT.as_secs());

/// The pause after a business read that took `took`: `every`, stretched so that the
/// reads take at most a twentieth of the sampling connection's time (a read counts
/// whole tables: 3.2 s at 1.1 M subscriptions under a renewal run, bench/README
/// "Where a fiscal renewal's time goes"), but never beyond [`BUSINESS_MAX_PAUSE`].
fn business_pause(every: Duration, took: Duration) -> Duration {
    every.max(took.saturating_mul(19)).min(BUSINESS_MAX_PAUSE.max(every))
}

/// Samples the business gauges ([`business_metrics::sample`]) every `every` until
/// `stop`: `billing_subscriptions{tenant,status}`, `billing_mrr{tenant,currency}`,
/// `billing_renewals_due{tenant}`, `billing_payments{tenant,status}`,
/// `billing_refunds{tenant,status}`, `billing_receipts{tenant,status}`,
/// `billing_receipts_oldest_pending_seconds{tenant}`. A read longer than `every`/19
/// stretches the pause after it ([`business_pause`]).
///
/// One worker replica samples: the one holding the sampler's advisory lock
/// ([`business_metrics::try_lead`]) on a connection taken out of the pool for as
/// long as it holds it (one connection beyond `BILLING_DB_POOL_SIZE` on that
/// replica; a pooled connection would carry the lock to other work). The others try
/// for the lock at each tick and meanwhile export none of these gauges. The lock
/// passes on when its connection closes: the replica stops, or one of its reads
/// fails (logged; it drops the connection and tries for the lock again next tick).
/// A replica that stops sampling keeps its last values only until the exporter's
/// idle timeout ([`telemetry::GAUGE_IDLE_TIMEOUT`]) drops them, so during a hand-over
/// two replicas may export the same series for up to that long: dashboards and
/// alerts read these gauges with `max by` their labels, never `sum` across replicas.
/// A series that disappears from a read (no rows left in that status) is set to
/// zero once, then expires the same way.
pub async fn business(pool: PgPool, clock: Clock, every: Duration, mut stop: watch::Receiver<bool>) {
    let mut leader: Option<AsyncPgConnection> = None;
    let mut seen: HashSet<(String, Uuid, String)> = HashSet::new();
    loop {
        if leader.is_none() {
            leader = lead(&pool).await;
        }
        let started = std::time::Instant::now();
        if let Some(conn) = leader.as_mut() {
            match read(conn, clock).await {
                Ok(samples) => {
                    let mut now_seen = HashSet::with_capacity(samples.len());
                    for s in samples {
                        set(&s.metric, s.tenant, &s.label, s.value.to_f64().unwrap_or(f64::NAN));
                        now_seen.insert((s.metric, s.tenant, s.label));
                    }
                    for (metric, tenant, label) in seen.difference(&now_seen) {
                        set(metric, *tenant, label, 0.0);
                    }
                    seen = now_seen;
                    // The heartbeat an alert watches: without it no replica samples.
                    metrics::gauge!("billing_business_sampled_timestamp_seconds")
                        .set(billing_shared::clock::real_now().timestamp() as f64);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the business gauges failed; giving up sampling them");
                    leader = None;
                    seen.clear();
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(business_pause(every, started.elapsed())) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            return;
        }
    }
}

/// A connection holding the sampler's lock, taken out of the pool; `None` when
/// another replica holds the lock or it could not be asked (logged).
async fn lead(pool: &PgPool) -> Option<AsyncPgConnection> {
    let mut conn = pool
        .get()
        .await
        .map_err(|e| tracing::warn!(error = %e, "no connection to try for the business sampler's lock"))
        .ok()?;
    match business_metrics::try_lead(&mut conn).await {
        Ok(true) => Some(PooledConn::take(conn)),
        Ok(false) => None,
        Err(e) => {
            tracing::warn!(error = %e, "trying for the business sampler's lock failed");
            // Closed rather than returned to the pool, in case it holds the lock.
            drop(PooledConn::take(conn));
            None
        }
    }
}

/// How long one read may take before the leader gives the lock up (its
/// connection closed): a hung connection must not keep every replica from sampling.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

async fn read(conn: &mut AsyncPgConnection, clock: Clock) -> anyhow::Result<Vec<business_metrics::Sample>> {
    tokio::time::timeout(READ_TIMEOUT, async {
        let now = clock.now(conn).await?;
        Ok(business_metrics::sample(conn, now, None).await?)
    })
    .await
    .map_err(|_| anyhow::anyhow!("the business sample took longer than {READ_TIMEOUT:?}"))?
}

fn set(metric: &str, tenant: Uuid, label: &str, value: f64) {
    let tenant = tenant.to_string();
    let gauge = match metric {
        "mrr" => metrics::gauge!("billing_mrr", "tenant" => tenant, "currency" => label.to_owned()),
        "renewals_due" => metrics::gauge!("billing_renewals_due", "tenant" => tenant),
        "receipts_oldest_pending" => metrics::gauge!("billing_receipts_oldest_pending_seconds", "tenant" => tenant),
        other => metrics::gauge!(format!("billing_{other}"), "tenant" => tenant, "status" => label.to_owned()),
    };
    gauge.set(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_read_stretches_the_pause_up_to_the_cap() {
        let every = Duration::from_secs(30);
        assert_eq!(business_pause(every, Duration::from_millis(40)), every);
        assert_eq!(business_pause(every, Duration::from_secs(2)), Duration::from_secs(38));
        assert_eq!(business_pause(every, Duration::from_secs(10)), BUSINESS_MAX_PAUSE);
        assert_eq!(business_pause(Duration::from_secs(90), Duration::from_secs(10)), Duration::from_secs(90));
    }
}
