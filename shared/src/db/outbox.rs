//! The transactional outbox: events are inserted in the same database transaction
//! as the state change that causes them and published later by the worker's relay.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use uuid::Uuid;

use super::schema::outbox_events;

/// An event to append. `ordering_key` (the subscription, or the customer when there
/// is none) keeps the events of one aggregate in order through the relay.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub tenant_id: Uuid,
    pub ordering_key: Uuid,
    pub event_type: &'static str,
    pub data: Value,
}

/// Rows per INSERT statement when appending many events.
const CHUNK: usize = 1000;

/// Appends events `{id, type, created_at, tenant_id, data}`; returns their ids.
pub async fn emit_many(
    conn: &mut AsyncPgConnection,
    created_at: DateTime<Utc>,
    events: Vec<NewEvent>,
) -> QueryResult<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(events.len());
    for chunk in events.chunks(CHUNK) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|e| {
                let id = Uuid::now_v7();
                ids.push(id);
                let payload = json!({
                    "id": id,
                    "type": e.event_type,
                    "created_at": created_at,
                    "tenant_id": e.tenant_id,
                    "data": e.data,
                });
                (
                    outbox_events::id.eq(id),
                    outbox_events::tenant_id.eq(e.tenant_id),
                    outbox_events::event_type.eq(e.event_type),
                    outbox_events::ordering_key.eq(e.ordering_key),
                    outbox_events::payload.eq(payload),
                    outbox_events::created_at.eq(created_at),
                )
            })
            .collect();
        diesel::insert_into(outbox_events::table).values(&rows).execute(conn).await?;
    }
    Ok(ids)
}

/// Appends one event; returns its id.
pub async fn emit(conn: &mut AsyncPgConnection, created_at: DateTime<Utc>, event: NewEvent) -> QueryResult<Uuid> {
    let ids = emit_many(conn, created_at, vec![event]).await?;
    ids.into_iter().next().ok_or(diesel::result::Error::NotFound)
}
