//! Outgoing webhook deliveries, one row per event id.

use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
use super::schema::webhook_deliveries;
use crate::domain::ids::TenantId;
use crate::domain::states::DeliveryStatus;

/// One try at delivering an event: where it went, how it ended, how many tries so
/// far, the endpoint's HTTP status and the error, if any.
pub struct Delivery<'a> {
    pub event_id: Uuid,
    pub tenant_id: TenantId,
    pub url: &'a str,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<&'a str>,
}

/// Records the latest try of an event's delivery (insert or overwrite).
pub async fn record(conn: &mut AsyncPgConnection, d: &Delivery<'_>) -> diesel::QueryResult<()> {
    Cached::new(
        diesel::insert_into(webhook_deliveries::table)
            .values((
                webhook_deliveries::event_id.eq(d.event_id),
                webhook_deliveries::tenant_id.eq(d.tenant_id),
                webhook_deliveries::url.eq(d.url),
                webhook_deliveries::status.eq(d.status),
                webhook_deliveries::attempts.eq(d.attempts),
                webhook_deliveries::last_status.eq(d.last_status),
                webhook_deliveries::last_error.eq(d.last_error),
            ))
            .on_conflict(webhook_deliveries::event_id)
            .do_update()
            .set((
                webhook_deliveries::url.eq(excluded(webhook_deliveries::url)),
                webhook_deliveries::status.eq(excluded(webhook_deliveries::status)),
                webhook_deliveries::attempts.eq(excluded(webhook_deliveries::attempts)),
                webhook_deliveries::last_status.eq(excluded(webhook_deliveries::last_status)),
                webhook_deliveries::last_error.eq(excluded(webhook_deliveries::last_error)),
                webhook_deliveries::updated_at.eq(diesel::dsl::now),
            )),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The delivery status of an event, if it was tried before.
pub async fn status(conn: &mut AsyncPgConnection, event_id: Uuid) -> diesel::QueryResult<Option<DeliveryStatus>> {
    webhook_deliveries::table
        .find(event_id)
        .select(webhook_deliveries::status)
        .first::<DeliveryStatus>(conn)
        .await
        .optional()
}
