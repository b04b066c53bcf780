//! Idempotency keys: the first request under a key claims it; its answer is
//! stored with it (in the same transaction as the effect) for replays.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use super::cached::Cached;
use super::schema::idempotency_keys;

/// Claims `(scope, key)` for a request fingerprinted `hash`; false when it was
/// claimed before.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    method: &str,
    path: &str,
    hash: &[u8],
) -> QueryResult<bool> {
    let inserted = Cached::new(
        diesel::insert_into(idempotency_keys::table)
            .values((
                idempotency_keys::scope.eq(scope),
                idempotency_keys::key.eq(key),
                idempotency_keys::method.eq(method),
                idempotency_keys::path.eq(path),
                idempotency_keys::request_hash.eq(hash),
                idempotency_keys::response_status.eq(0),
            ))
            .on_conflict_do_nothing(),
    )
    .execute(conn)
    .await?;
    Ok(inserted == 1)
}

/// What the key holds: the request fingerprint, the answer's status and body
/// (none for answers that carried secrets).
pub async fn stored(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
) -> QueryResult<(Vec<u8>, i32, Option<Value>)> {
    idempotency_keys::table
        .find((scope, key))
        .select((idempotency_keys::request_hash, idempotency_keys::response_status, idempotency_keys::response_body))
        .first(conn)
        .await
}

/// Stores the answer given under the key.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    scope: &str,
    key: &str,
    status: i32,
    body: Option<&Value>,
) -> QueryResult<()> {
    Cached::new(
        diesel::update(idempotency_keys::table.find((scope, key)))
            .set((idempotency_keys::response_status.eq(status), idempotency_keys::response_body.eq(body))),
    )
    .execute(conn)
    .await
    .map(|_| ())
}
