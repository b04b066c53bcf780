//! Provider notifications as received: the raw body, stored once per (tenant,
//! provider, kind, dedup key) with what the service made of it.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
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

/// The row a notification is stored as.
#[derive(Insertable)]
#[diesel(table_name = gateway_events)]
struct NewRow<'a> {
    id: Uuid,
    tenant_id: TenantId,
    provider: &'a str,
    kind: &'a str,
    transaction_id: &'a str,
    content_type: Option<&'a str>,
    raw_body: &'a [u8],
    outcome: &'a str,
}

impl<'a> Received<'a> {
    fn row(&self, outcome: &'a str) -> NewRow<'a> {
        NewRow {
            id: Uuid::now_v7(),
            tenant_id: self.tenant_id,
            provider: self.provider,
            kind: self.kind,
            transaction_id: self.key,
            content_type: self.content_type,
            raw_body: self.raw_body,
            outcome,
        }
    }
}

/// Stores the raw notification with `outcome`; false when the same one was stored
/// before (the unique key (tenant, provider, kind, key) is the de-duplication).
pub async fn store(conn: &AsyncPgConnection, n: &Received<'_>, outcome: &str) -> QueryResult<bool> {
    Ok(store_many(conn, std::slice::from_ref(n), outcome).await? == 1)
}

/// Stores raw notifications with one `outcome` in one statement; returns how many
/// were new (each one stored before is left as it was). Pipelinable.
pub async fn store_many(conn: &AsyncPgConnection, ns: &[Received<'_>], outcome: &str) -> QueryResult<usize> {
    let rows: Vec<NewRow<'_>> = ns.iter().map(|n| n.row(outcome)).collect();
    Cached::rows(diesel::insert_into(gateway_events::table).values(rows).on_conflict_do_nothing(), ns.len())
        .execute(&mut &*conn)
        .await
}

/// Stores a Check with `outcome`, or records the new outcome on the Check stored
/// before (a provider asks again; Checks are decided again each time).
pub async fn store_check(conn: &mut AsyncPgConnection, n: &Received<'_>, outcome: &str) -> QueryResult<()> {
    Cached::new(
        diesel::insert_into(gateway_events::table)
            .values(n.row(outcome))
            .on_conflict((
                gateway_events::tenant_id,
                gateway_events::provider,
                gateway_events::kind,
                gateway_events::transaction_id,
            ))
            .do_update()
            .set(gateway_events::outcome.eq(outcome)),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Whether this notification (tenant, provider, kind, key) is stored.
pub async fn exists(conn: &mut AsyncPgConnection, n: &Received<'_>) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        gateway_events::table
            .filter(gateway_events::tenant_id.eq(n.tenant_id))
            .filter(gateway_events::provider.eq(n.provider))
            .filter(gateway_events::kind.eq(n.kind))
            .filter(gateway_events::transaction_id.eq(n.key)),
    ))
    .get_result(conn)
    .await
}
