//! Provider notifications as received: the raw body, stored once per (tenant,
//! provider, kind, dedup key) with what the service made of it.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::gateway_events;
use crate::domain::ids::TenantId;

/// A verified notification to store.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub tenant_id: TenantId,
    pub provider: &'a str,
    pub kind: &'a str,
    /// The key a provider's retries share (CloudPayments: the transaction id).
    pub key: &'a str,
    pub content_type: Option<&'a str>,
    pub raw_body: &'a [u8],
}

/// Stores the raw notification with `outcome`; false when the same one was stored before.
pub async fn store(conn: &mut AsyncPgConnection, n: &Received<'_>, outcome: &str) -> QueryResult<bool> {
    let inserted = diesel::insert_into(gateway_events::table)
        .values((
            gateway_events::id.eq(Uuid::now_v7()),
            gateway_events::tenant_id.eq(n.tenant_id),
            gateway_events::provider.eq(n.provider),
            gateway_events::kind.eq(n.kind),
            gateway_events::transaction_id.eq(n.key),
            gateway_events::content_type.eq(n.content_type),
            gateway_events::raw_body.eq(n.raw_body),
            gateway_events::outcome.eq(outcome),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Records what the service made of a stored notification.
pub async fn set_outcome(conn: &mut AsyncPgConnection, n: &Received<'_>, outcome: &str) -> QueryResult<()> {
    diesel::update(
        gateway_events::table
            .filter(gateway_events::tenant_id.eq(n.tenant_id))
            .filter(gateway_events::provider.eq(n.provider))
            .filter(gateway_events::kind.eq(n.kind))
            .filter(gateway_events::transaction_id.eq(n.key)),
    )
    .set(gateway_events::outcome.eq(outcome))
    .execute(conn)
    .await
    .map(|_| ())
}
