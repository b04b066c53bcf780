//! The shared test clock's row (`test_clock`, one row when set) and the advisory
//! lock that orders its moves with the transactions that read it
//! ([`crate::clock::Clock::Shared`]).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::test_clock;

/// The advisory lock key ("clok"): held shared by the transactions that claim work
/// by the test clock ([`read_held`]), exclusively by the transaction that moves it.
const CLOCK_LOCK: i64 = 0x636c_6f6b;

/// The stored instant (`None` until first set).
pub async fn read(conn: &AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    test_clock::table.select(test_clock::now).first(&mut &*conn).await.optional()
}

/// The stored instant (`None` until first set), read under the clock lock held
/// shared until the caller's transaction ends: a move of the clock waits for that
/// transaction, so it never acts on rows written after the move at a time the clock
/// has left (a scheduler tick that read the time before a test moved the clock
/// back, then claimed a purchase made after the move and expired it).
pub async fn read_held(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    // The lock first, in a statement of its own: a statement sees the data as of
    // its start, so a read in the same statement as a wait for a move in progress
    // would return the instant the move replaced.
    diesel::sql_query("SELECT pg_advisory_xact_lock_shared($1)").bind::<BigInt, _>(CLOCK_LOCK).execute(conn).await?;
    read(conn).await
}

/// Moves the clock to `at`, in the caller's transaction, once the transactions
/// that read it held ([`read_held`]) have ended (the clock lock taken exclusively,
/// held until the caller's transaction ends).
pub async fn write(conn: &mut AsyncPgConnection, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock($1)").bind::<BigInt, _>(CLOCK_LOCK).execute(conn).await?;
    diesel::insert_into(test_clock::table)
        .values((test_clock::singleton.eq(true), test_clock::now.eq(at)))
        .on_conflict(test_clock::singleton)
        .do_update()
        .set((test_clock::now.eq(at), test_clock::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await?;
    Ok(())
}
