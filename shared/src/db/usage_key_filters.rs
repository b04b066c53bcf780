//! `usage_key_filters` (migration 000030): one Bloom filter per frozen key
//! generation of `usage_event_keys`, built by the worker's upkeep and read by the
//! API's claims ([`crate::domain::usage_filter`]).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Binary, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::TryStreamExt;
use uuid::Uuid;

use super::cached::Cached;

/// One slice of a stored filter: its description and the bytes of its bit vector
/// from byte `at` (1-based).
#[derive(QueryableByName)]
pub struct FilterSlice {
    #[diesel(sql_type = Integer)]
    pub at: i32,
    #[diesel(sql_type = Integer)]
    pub hashes: i32,
    #[diesel(sql_type = BigInt)]
    pub keys: i64,
    /// The whole vector's length in bytes.
    #[diesel(sql_type = BigInt)]
    pub length: i64,
    #[diesel(sql_type = Binary)]
    pub bits: Vec<u8>,
}

#[derive(QueryableByName)]
struct Stored {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    stored: bool,
}

#[derive(QueryableByName)]
struct Blocks {
    #[diesel(sql_type = Nullable<BigInt>)]
    blocks: Option<i64>,
}

#[derive(QueryableByName)]
struct Key {
    #[diesel(sql_type = SqlUuid)]
    key: Uuid,
}

/// Passes `generation`'s filter of `format`, if one is stored, to `each` in slices
/// of `slice` bytes, in no set order (each slice says where it starts). One
/// statement, so one snapshot: slices of two builds never mix. The column is
/// stored out of line uncompressed and nothing is sorted, so each slice reads only
/// its own pages and rows stream as they come: the caller never holds the whole
/// vector twice.
pub async fn stream_filter(
    conn: &mut AsyncPgConnection,
    generation: i32,
    format: &str,
    slice: i32,
    mut each: impl FnMut(FilterSlice),
) -> diesel::QueryResult<()> {
    let mut rows = diesel::sql_query(
        "SELECT s AS at, f.hashes, f.keys, length(f.bits)::bigint AS length, substring(f.bits FROM s FOR $3) AS bits \
           FROM usage_key_filters f, generate_series(1, length(f.bits), $3) AS s \
          WHERE f.generation = $1 AND f.format = $2",
    )
    .bind::<Integer, _>(generation)
    .bind::<Text, _>(format)
    .bind::<Integer, _>(slice)
    .load_stream::<FilterSlice>(conn)
    .await?;
    while let Some(row) = rows.try_next().await? {
        each(row);
    }
    Ok(())
}

/// Whether `generation`'s filter of `format` is stored (its bits not read).
pub async fn is_stored(conn: &mut AsyncPgConnection, generation: i32, format: &str) -> diesel::QueryResult<bool> {
    let row: Stored = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM usage_key_filters WHERE generation = $1 AND format = $2) AS stored",
    )
    .bind::<Integer, _>(generation)
    .bind::<Text, _>(format)
    .get_result(conn)
    .await?;
    Ok(row.stored)
}

/// Pages (8 KiB blocks) of `generation`'s own partition of `usage_event_keys`;
/// `None` when it has none (its keys, if any, wait in the default partition).
pub async fn partition_blocks(conn: &mut AsyncPgConnection, generation: i32) -> diesel::QueryResult<Option<i64>> {
    let rows: Vec<Blocks> = diesel::sql_query(
        "SELECT pg_relation_size(to_regclass('usage_event_keys_' || $1)) \
                / current_setting('block_size')::bigint AS blocks",
    )
    .bind::<Integer, _>(generation)
    .load(conn)
    .await?;
    Ok(rows.into_iter().next().and_then(|r| r.blocks))
}

/// The keys on pages `from..to` of `generation`'s partition (a TID range scan: the
/// partition is read once, a slice at a time, without a sort).
pub async fn keys_on_pages(
    conn: &mut AsyncPgConnection,
    generation: i32,
    from: i64,
    to: i64,
) -> diesel::QueryResult<Vec<Uuid>> {
    let rows: Vec<Key> = Cached::new(
        diesel::sql_query(
            "SELECT key FROM usage_event_keys WHERE generation = $1 \
               AND ctid >= format('(%s,0)', $2)::tid AND ctid < format('(%s,0)', $3)::tid",
        )
        .bind::<Integer, _>(generation)
        .bind::<BigInt, _>(from)
        .bind::<BigInt, _>(to),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| r.key).collect())
}

/// Stores `generation`'s filter of `format` (filters of other formats, another
/// release's, stay beside it), replacing one of the same format.
pub async fn store(
    conn: &mut AsyncPgConnection,
    generation: i32,
    format: &str,
    hashes: i32,
    keys: i64,
    bits: &[u8],
    built_at: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO usage_key_filters (generation, format, hashes, keys, bits, built_at) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (generation, format) DO UPDATE SET hashes = excluded.hashes, \
             keys = excluded.keys, bits = excluded.bits, built_at = excluded.built_at",
    )
    .bind::<Integer, _>(generation)
    .bind::<Text, _>(format)
    .bind::<Integer, _>(hashes)
    .bind::<BigInt, _>(keys)
    .bind::<Binary, _>(bits)
    .bind::<Timestamptz, _>(built_at)
    .execute(conn)
    .await
    .map(|_| ())
}

/// Deletes the filters of generations before `oldest` (past the window).
pub async fn forget_before(conn: &mut AsyncPgConnection, oldest: i32) -> diesel::QueryResult<usize> {
    diesel::sql_query("DELETE FROM usage_key_filters WHERE generation < $1")
        .bind::<Integer, _>(oldest)
        .execute(conn)
        .await
}
