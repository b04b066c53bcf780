//! Dead letters as recorded when the worker gives up on a message.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::schema::dead_letters;

/// A dead letter: what the worker gave up on, why, after how many attempts, and
/// whether it was put back to work.
#[derive(Debug, Clone, Serialize, ToSchema, Queryable, Selectable)]
#[diesel(table_name = dead_letters, check_for_backend(diesel::pg::Pg))]
pub struct DeadLetter {
    pub id: Uuid,
    pub queue: String,
    pub reason: String,
    pub attempts: i32,
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    pub dead_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

/// Records a dead letter (once per id).
pub async fn insert(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    queue: &str,
    reason: &str,
    attempts: i32,
    payload: Option<Value>,
) -> QueryResult<()> {
    diesel::insert_into(dead_letters::table)
        .values((
            dead_letters::id.eq(id),
            dead_letters::queue.eq(queue),
            dead_letters::reason.eq(reason),
            dead_letters::attempts.eq(attempts),
            dead_letters::payload.eq(payload),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// Dead letters of `queue` (all queues when `None`), not yet replayed unless
/// `include_replayed`, oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    queue: Option<&str>,
    include_replayed: bool,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<DeadLetter>> {
    let mut q = dead_letters::table.into_boxed();
    if let Some(queue) = queue {
        q = q.filter(dead_letters::queue.eq(queue.to_owned()));
    }
    if !include_replayed {
        q = q.filter(dead_letters::replayed_at.is_null());
    }
    if let Some(after) = starting_after {
        q = q.filter(dead_letters::id.gt(after));
    }
    q.order(dead_letters::id.asc()).limit(limit).select(DeadLetter::as_select()).load(conn).await
}

pub async fn mark_replayed(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<usize> {
    diesel::update(dead_letters::table.filter(dead_letters::id.eq_any(ids)).filter(dead_letters::replayed_at.is_null()))
        .set(dead_letters::replayed_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
}

/// Marks replayed the not yet replayed dead letters of `queue` whose payload's
/// `data` has `key` = `id` (jsonb containment); returns how many.
pub async fn mark_replayed_for_job(
    conn: &mut AsyncPgConnection,
    queue: &str,
    key: &str,
    id: Uuid,
) -> QueryResult<usize> {
    let names = serde_json::json!({"data": {key: id}});
    diesel::update(
        dead_letters::table
            .filter(dead_letters::queue.eq(queue.to_owned()))
            .filter(dead_letters::replayed_at.is_null())
            .filter(dead_letters::payload.contains(names)),
    )
    .set(dead_letters::replayed_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}
