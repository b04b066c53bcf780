//! Partition upkeep of `usage_events` (one per UTC day received) and
//! `usage_event_keys` (one per 35-day generation): the PL/pgSQL functions of
//! migration 000020, called by one worker replica at a time, and the hash index of
//! the generation before the one being written (migration 000025's probe).

use chrono::NaiveDate;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Bool, Date, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

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

/// Key of the session-level advisory lock held while a key generation's hash index
/// is built ("billhash"): one replica builds at a time.
const HASH_LOCK_KEY: i64 = 0x6269_6c6c_6861_7368;

/// How long the build waits for older transactions (CREATE INDEX CONCURRENTLY waits
/// for every transaction that began before each of its phases): longer, and it gives
/// up until the next upkeep, leaving an invalid index that run drops and builds again.
const HASH_LOCK_WAIT: &str = "60s";

#[derive(QueryableByName)]
struct HashIndexState {
    #[diesel(sql_type = Bool)]
    partition: bool,
    /// `None`: no such index.
    #[diesel(sql_type = Nullable<Bool>)]
    valid: Option<bool>,
}

/// Builds `usage_event_keys_<generation>_key_hash`, a hash index on the key of
/// generation `generation`'s partition, through which `usage_claim_keys`
/// (migration 000025) probes that generation while the next one is written (about
/// half a B-tree probe's cost: bench/README, "The previous generation probed
/// through a hash index"). Built concurrently, outside any transaction (CREATE
/// INDEX CONCURRENTLY cannot run in one), so ingestion is not held up (27 s for
/// 20 000 000 keys here), under a session-level advisory lock so one replica builds
/// at a time. Returns the index's name when built now; `None` when the partition
/// does not exist, the index is already valid, or another replica holds the lock.
/// An invalid index (a build interrupted) is dropped and built again; the claim
/// uses only a valid one. Errors: database errors, among them waiting longer than
/// [`HASH_LOCK_WAIT`] for an older transaction (the lock and the connection's
/// `lock_timeout` are given back either way).
pub async fn hash_generation(conn: &mut AsyncPgConnection, generation: i32) -> diesel::QueryResult<Option<String>> {
    if !super::try_session_lock(conn, HASH_LOCK_KEY).await? {
        return Ok(None);
    }
    let built = build_hash(conn, generation).await;
    let released = conn.batch_execute(&format!("RESET lock_timeout; SELECT pg_advisory_unlock({HASH_LOCK_KEY})")).await;
    let built = built?;
    released?;
    Ok(built)
}

async fn build_hash(conn: &mut AsyncPgConnection, generation: i32) -> diesel::QueryResult<Option<String>> {
    let partition = format!("usage_event_keys_{generation}");
    let index = format!("{partition}_key_hash");
    let state: HashIndexState = diesel::sql_query(
        "SELECT to_regclass($1) IS NOT NULL AS partition, \
                (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($2)) AS valid",
    )
    .bind::<Text, _>(&partition)
    .bind::<Text, _>(&index)
    .get_result(conn)
    .await?;
    if !state.partition || state.valid == Some(true) {
        return Ok(None);
    }
    conn.batch_execute(&format!("SET lock_timeout = '{HASH_LOCK_WAIT}'")).await?;
    if state.valid == Some(false) {
        conn.batch_execute(&format!("DROP INDEX CONCURRENTLY IF EXISTS {index}")).await?;
    }
    conn.batch_execute(&format!("CREATE INDEX CONCURRENTLY {index} ON {partition} USING hash (key)")).await?;
    Ok(Some(index))
}
