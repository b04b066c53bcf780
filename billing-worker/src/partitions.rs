//! The usage tables' upkeep loop: partitions (`billing_shared::services::usage_partitions`)
//! and the frozen key generation's filter (`billing_shared::services::usage_key_filter`),
//! at start, then every [`UPKEEP_EVERY`]. Needs only PostgreSQL.

use std::time::Duration;

use billing_shared::clock::Clock;
use billing_shared::db::PgPool;
use billing_shared::error::ServiceResult;
use billing_shared::services::{usage_key_filter, usage_partitions};
use tokio::sync::watch;

/// Pause between two upkeeps: partitions are made three days ahead, so a missed
/// run or several cost nothing.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(600);

/// One upkeep, logged when it created or dropped partitions or built a key
/// filter. Also the command `billing-worker upkeep`. Errors: no connection, the
/// business clock unreadable, or the upkeep's own.
pub async fn once(pool: &PgPool, clock: Clock, retention_days: u32) -> ServiceResult<()> {
    let mut conn = pool.get().await?;
    let now = clock.now(&conn).await?;
    if let Some(done) = usage_partitions::upkeep(&mut conn, now, retention_days).await?
        && (!done.created.is_empty() || !done.dropped.is_empty())
    {
        tracing::info!(created = ?done.created, dropped = ?done.dropped, "usage partitions kept up");
    }
    if let Some(built) = usage_key_filter::build_due(&mut conn, now).await? {
        tracing::info!(generation = built.generation, keys = built.keys, bytes = built.bytes, "usage key filter built");
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
