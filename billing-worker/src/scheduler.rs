//! The scheduler loop: claims due subscriptions (see
//! `billing_shared::services::scheduler`) until none are due, then waits.
//! Needs only PostgreSQL: the work it creates goes through the outbox.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::{PgPool, in_transaction};
use billing_shared::error::ServiceResult;
use billing_shared::services::{refunds, scheduler};
use tokio::sync::watch;

async fn tick(pool: &PgPool, clock: Clock, batch: i64, waves: bool) -> ServiceResult<usize> {
    let mut conn = pool.get().await?;
    in_transaction(&mut conn, async |c| {
        // Held: a move of the test clock waits for this tick's claims.
        let now = clock.now_held(c).await?;
        let overdue = refunds::report_overdue(c, now, batch).await?;
        Ok(scheduler::tick(c, now, batch, waves).await? + overdue)
    })
    .await
}

/// Ticks every `interval` while idle (at once while a tick fills its `batch`);
/// `waves`: plain renewals go out as wave jobs (`BILLING_CHARGE_WAVES`).
pub async fn run(
    pool: PgPool,
    clock: Clock,
    interval: Duration,
    batch: i64,
    waves: bool,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        let started = std::time::Instant::now();
        let result = tick(&pool, clock, batch, waves).await;
        metrics::histogram!("billing_scheduler_tick_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(?result, "scheduler tick");
        let claimed = match result {
            Ok(n) => {
                metrics::counter!("billing_scheduler_claimed_total").increment(n as u64);
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "scheduler tick failed");
                0
            }
        };
        if i64::try_from(claimed).unwrap_or(i64::MAX) < batch {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
        }
    }
}
