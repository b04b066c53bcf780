//! Partition upkeep of `usage_events` (one per UTC day received) and
//! `usage_event_keys` (one per 35-day generation): the PL/pgSQL functions of
//! migration 000020 (a generation's partition created with the hash index that keeps
//! its keys unique, migration 000026), called by one worker replica at a time.

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Date, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Key of the transaction-scoped advisory lock of the upkeep ("billpart").
const UPKEEP_LOCK_KEY: i64 = 0x6269_6c6c_7061_7274;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

/// Takes the upkeep's advisory lock for the current transaction and, when it got
/// it, bounds how long the transaction's DDL waits for a table lock
/// (`SET LOCAL lock_timeout = lock_wait_ms`), so ingestion never queues behind the
/// upkeep for longer. False when another replica holds the lock (that one does
/// the upkeep).
pub async fn lead(conn: &mut AsyncPgConnection, lock_wait_ms: u32) -> diesel::QueryResult<bool> {
    let locked: bool = diesel::select(
        diesel::dsl::sql::<Bool>("pg_try_advisory_xact_lock(").bind::<BigInt, _>(UPKEEP_LOCK_KEY).sql(")"),
    )
    .get_result(conn)
    .await?;
    if locked {
        diesel::sql_query(format!("SET LOCAL lock_timeout = {lock_wait_ms}")).execute(conn).await?;
    }
    Ok(locked)
}

/// Creates the partitions of the days from `today - 1` to `today + 3`, of
/// generations `generation` and `generation + 1`, and of any day (not before
/// `keep_from`) or generation (not before `generation - 1`) waiting in a default
/// partition, moving those rows; returns the partitions created. Locks both
/// default partitions for the rest of the transaction (ingestion that would land
/// there waits); waits at most `lock_timeout`.
pub async fn prepare(
    conn: &mut AsyncPgConnection,
    today: NaiveDate,
    generation: i32,
    keep_from: NaiveDate,
) -> diesel::QueryResult<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query("SELECT usage_partitions_prepare($1, $2, $3) AS name")
        .bind::<Date, _>(today)
        .bind::<Integer, _>(generation)
        .bind::<Date, _>(keep_from)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// Drops the event partitions of days before `keep_from` (their per subscription
/// and metric totals added to `usage_archived` first) and the key partitions of
/// generations before `generation - 1`, and deletes such rows from the default
/// partitions; returns the partitions dropped.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    generation: i32,
    keep_from: NaiveDate,
) -> diesel::QueryResult<Vec<String>> {
    let rows: Vec<Name> = diesel::sql_query("SELECT usage_partitions_expire($1, $2) AS name")
        .bind::<Integer, _>(generation)
        .bind::<Date, _>(keep_from)
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}
