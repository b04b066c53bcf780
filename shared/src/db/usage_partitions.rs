//! Partition upkeep of `usage_events` (one per UTC day received) and
//! `usage_event_keys` (one per 35-day generation): the PL/pgSQL functions of
//! migration 000020, called by one worker replica at a time.

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{Bool, Date, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Key of the transaction-scoped advisory lock of the upkeep ("billpart").
const UPKEEP_LOCK_KEY: i64 = 0x6269_6c6c_7061_7274;

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the upkeep's lock for the current transaction: false when another
/// replica holds it (that one does the upkeep).
pub async fn try_lock(conn: &mut AsyncPgConnection) -> diesel::QueryResult<bool> {
    let row: Locked = diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
        .bind::<diesel::sql_types::BigInt, _>(UPKEEP_LOCK_KEY)
        .get_result(conn)
        .await?;
    Ok(row.locked)
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

/// Bounds how long the upkeep's DDL waits for a table lock in this transaction
/// (`SET LOCAL lock_timeout`), so ingestion never queues behind it for longer.
pub async fn limit_lock_wait(conn: &mut AsyncPgConnection, millis: u32) -> diesel::QueryResult<()> {
    diesel::sql_query(format!("SET LOCAL lock_timeout = {millis}")).execute(conn).await.map(|_| ())
}
