//! The usage partitions' upkeep loop (`billing_shared::services::usage_partitions`,
//! and the previous key generation's hash index): at start, then every
//! [`UPKEEP_EVERY`]. Needs only PostgreSQL.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::ServiceResult;
use billing_shared::services::usage_partitions;
use tokio::sync::watch;

/// Pause between two upkeeps: partitions are made three days ahead, so a missed
/// run or several cost nothing.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(600);

/// One upkeep, then the previous key generation's hash index, each logged with its
/// own outcome (a failed index build does not hide what the upkeep did). Errors:
/// no connection, or the business clock unreadable.
async fn once(pool: &PgPool, clock: Clock, retention_days: u32) -> ServiceResult<()> {
    let mut conn = pool.get().await?;
    let now = clock.now(&mut conn).await?;
    match usage_partitions::upkeep(&mut conn, now, retention_days).await {
        Ok(Some(done)) if !done.created.is_empty() || !done.dropped.is_empty() => {
            tracing::info!(created = ?done.created, dropped = ?done.dropped, "usage partitions kept up");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "usage partition upkeep failed; retrying at the next run"),
    }
    match usage_partitions::hash_previous_generation(&mut conn, now).await {
        Ok(Some(index)) => tracing::info!(%index, "previous usage key generation indexed for its probe"),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the previous usage key generation's hash index failed; retrying at the next run")
        }
    }
    Ok(())
}

/// Runs the upkeep until `stop`, keeping `retention_days` days of usage events.
/// A failed run is logged and retried at the next one.
pub async fn run(pool: PgPool, clock: Clock, retention_days: u32, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        if let Err(e) = once(&pool, clock, retention_days).await {
            tracing::warn!(error = %e, "usage partition upkeep failed; retrying at the next run");
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
