//! Tenants and their API keys.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{api_keys, maintenance_extensions, tenants};
use crate::domain::ids::TenantId;

/// A tenant row. Its secrets (webhook secrets, the gateway's `api_secret`, the fiscal
/// provider's `password`) are sealed (`services::tenant_secrets`); no `Debug` all the same.
#[derive(Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = tenants, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct TenantRow {
    pub id: TenantId,
    pub name: String,
    pub time_zone: String,
    pub gateway: serde_json::Value,
    pub fiscal: Option<serde_json::Value>,
    /// The seller's requisites for invoices and acts (`domain::invoice::Requisites`).
    pub requisites: Option<serde_json::Value>,
    pub policy: serde_json::Value,
    pub webhook_url: Option<String>,
    pub webhook_secret: String,
    pub webhook_secret_prev: Option<String>,
    pub webhook_secret_prev_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub key_hash: Vec<u8>,
    pub key_prefix: String,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &TenantRow) -> QueryResult<()> {
    diesel::insert_into(tenants::table).values(row).execute(conn).await.map(|_| ())
}

pub async fn update(conn: &mut AsyncPgConnection, row: &TenantRow) -> QueryResult<()> {
    diesel::update(tenants::table.find(row.id)).set(row).execute(conn).await.map(|_| ())
}

pub async fn find(conn: &mut AsyncPgConnection, id: TenantId) -> QueryResult<Option<TenantRow>> {
    tenants::table.find(id).select(TenantRow::as_select()).first(conn).await.optional()
}

pub async fn find_for_update(conn: &mut AsyncPgConnection, id: TenantId) -> QueryResult<Option<TenantRow>> {
    tenants::table.find(id).select(TenantRow::as_select()).for_update().first(conn).await.optional()
}

pub async fn insert_api_key(conn: &mut AsyncPgConnection, key: &NewApiKey) -> QueryResult<()> {
    diesel::insert_into(api_keys::table).values(key).execute(conn).await.map(|_| ())
}

/// Expires every key of the tenant that has no expiry yet, at `until`.
pub async fn expire_api_keys(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    until: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(api_keys::table.filter(api_keys::tenant_id.eq(tenant_id)).filter(api_keys::expires_at.is_null()))
        .set(api_keys::expires_at.eq(until))
        .execute(conn)
        .await
}

/// The tenant holding the API key whose SHA-256 is `hash`, with the key's expiry
/// (`None`: never), unless it expired by `real_now`.
pub async fn find_by_key_hash(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
    real_now: DateTime<Utc>,
) -> QueryResult<Option<(TenantRow, Option<DateTime<Utc>>)>> {
    api_keys::table
        .inner_join(tenants::table)
        .filter(api_keys::key_hash.eq(hash))
        .filter(api_keys::expires_at.is_null().or(api_keys::expires_at.gt(real_now)))
        .select((TenantRow::as_select(), api_keys::expires_at))
        .first(conn)
        .await
        .optional()
}

/// Records a maintenance extension of `days` that moved `subscriptions` subscriptions.
pub async fn record_maintenance(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    tenant_id: TenantId,
    days: u32,
    reason: &str,
    applied_at: DateTime<Utc>,
    subscriptions: usize,
) -> QueryResult<()> {
    use maintenance_extensions as mx;
    diesel::insert_into(mx::table)
        .values((
            mx::id.eq(id),
            mx::tenant_id.eq(tenant_id),
            mx::days.eq(i32::try_from(days).unwrap_or(i32::MAX)),
            mx::reason.eq(reason),
            mx::applied_at.eq(applied_at),
            mx::subscriptions.eq(i32::try_from(subscriptions).unwrap_or(i32::MAX)),
            mx::created_at.eq(applied_at),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Every tenant's id.
pub async fn ids(conn: &mut AsyncPgConnection) -> QueryResult<Vec<TenantId>> {
    tenants::table.select(tenants::id).order(tenants::id).load(conn).await
}

/// Every tenant's id with whether it has a webhook URL (the worker binds the
/// webhook queue to exactly those that do).
pub async fn webhook_targets(conn: &mut AsyncPgConnection) -> QueryResult<Vec<(TenantId, bool)>> {
    tenants::table.select((tenants::id, tenants::webhook_url.is_not_null())).load(conn).await
}

/// Every tenant's id and name (only `only`'s when given), by name (the operator
/// console's list and a tenant's page).
pub async fn names(conn: &mut AsyncPgConnection, only: Option<TenantId>) -> QueryResult<Vec<(TenantId, String)>> {
    let mut q = tenants::table.select((tenants::id, tenants::name)).into_boxed();
    if let Some(id) = only {
        q = q.filter(tenants::id.eq(id));
    }
    q.order((tenants::name, tenants::id)).load(conn).await
}
