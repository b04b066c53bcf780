//! Upkeep of the usage tables' partitions (issue 15, part 5): the days and key
//! generations ingestion is about to write get their own partitions ahead of time,
//! rows that landed in a default partition move to theirs, days past retention are
//! dropped whole (their totals archived for the audit) and key generations past the
//! de-duplication window are dropped. Run by the worker every few minutes, by one
//! replica at a time (a transaction-scoped advisory lock).

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;

use crate::db::in_transaction;
use crate::db::usage_partitions as db;
use crate::domain::usage::KeyGeneration;
use crate::error::ServiceResult;

/// How long the upkeep's DDL may wait for a table lock, in milliseconds: longer
/// and it gives up until the next run rather than hold ingestion up.
const LOCK_WAIT_MS: u32 = 2_000;

/// What one upkeep did: the partitions created and dropped (table names).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Upkeep {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
}

/// Runs the upkeep at business instant `now`, keeping events received on the last
/// `retention_days` UTC days; `None` when another replica holds the upkeep's lock.
/// Two transactions: creation, then expiry (each takes
/// the lock; expiry waits for ingestion in flight, then drops). Errors: database
/// errors, including a lock not obtained within 2 s (the next run tries again).
pub async fn upkeep(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    retention_days: u32,
) -> ServiceResult<Option<Upkeep>> {
    let today = now.date_naive();
    let keep_from = today - TimeDelta::days(i64::from(retention_days) - 1);
    let generation = KeyGeneration::at(now).current;
    let created = in_transaction(conn, async |c| -> ServiceResult<Option<Vec<String>>> {
        Ok(if db::lead(c, LOCK_WAIT_MS).await? {
            Some(db::prepare(c, today, generation, keep_from).await?)
        } else {
            None
        })
    })
    .await?;
    let Some(created) = created else { return Ok(None) };
    let dropped = in_transaction(conn, async |c| -> ServiceResult<Vec<String>> {
        Ok(if db::lead(c, LOCK_WAIT_MS).await? { db::expire(c, generation, keep_from).await? } else { Vec::new() })
    })
    .await?;
    Ok(Some(Upkeep { created, dropped }))
}
