//! Dead letters, as operators see them: what the worker gave up on, why, after how
//! many attempts, and whether it was put back to work.

use diesel_async::AsyncPgConnection;
use serde_json::Value;
use uuid::Uuid;

use super::{Page, PageRequest};
use crate::db::dead_letters as db;
pub use crate::db::dead_letters::DeadLetter;
use crate::error::ServiceResult;

/// Records a dead letter and counts it (`billing_dead_letters_total{queue}`).
pub async fn record(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    queue: &str,
    reason: &str,
    attempts: i32,
    payload: Option<Value>,
) -> ServiceResult<()> {
    db::insert(conn, id, queue, reason, attempts, payload).await?;
    metrics::counter!("billing_dead_letters_total", "queue" => queue.to_owned()).increment(1);
    Ok(())
}

/// Dead letters not yet replayed (all of them with `include_replayed`), oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    queue: Option<&str>,
    include_replayed: bool,
    page: PageRequest,
) -> ServiceResult<Page<DeadLetter>> {
    let rows = db::list(conn, queue, include_replayed, page.starting_after, page.fetch()).await?;
    Ok(Page::from_rows(rows, page, |r| r))
}

pub async fn mark_replayed(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> ServiceResult<usize> {
    Ok(db::mark_replayed(conn, ids).await?)
}

/// Marks replayed the dead letters of `queue` whose job names `key` = `id` (its
/// envelope's `data`), when a new job replaces them (an operator's receipt
/// resend). Returns how many there were.
pub async fn settle_job(conn: &mut AsyncPgConnection, queue: &str, key: &str, id: Uuid) -> ServiceResult<usize> {
    Ok(db::mark_replayed_for_job(conn, queue, key, id).await?)
}
