//! 54-FZ receipts and their registration state.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::receipts;
use crate::domain::ids::{PaymentId, TenantId};
use crate::domain::states::{ReceiptKind, ReceiptStatus};

/// A 54-FZ receipt (`receipts`): its document as sent, the registration
/// attempt it is at, and the provider's uuid and fiscal attributes once known.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = receipts, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct ReceiptRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub payment_id: PaymentId,
    pub refund_id: Option<Uuid>,
    pub kind: ReceiptKind,
    pub status: ReceiptStatus,
    /// The receipt document (`domain::receipt::ReceiptDocument`), built when the
    /// receipt was created: JSON text, so amounts stay exact.
    pub document: String,
    pub total: Decimal,
    pub currency: String,
    pub attempt: i32,
    pub provider_uuid: Option<String>,
    pub failure_reason: Option<String>,
    /// The report's fiscal attributes (JSON text).
    pub fiscal: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The provider reported the current attempt failed (a `fail` report, or the
    /// document refused at registration), so a new attempt cannot register the
    /// receipt twice. False while it may be alive there.
    pub attempt_failed: bool,
}

/// Inserts a receipt; false when the payment (or refund) already has one.
pub async fn insert(conn: &mut AsyncPgConnection, row: &ReceiptRow) -> QueryResult<bool> {
    let inserted =
        Cached::new(diesel::insert_into(receipts::table).values(row).on_conflict_do_nothing()).execute(conn).await?;
    Ok(inserted == 1)
}

/// The receipt with this id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ReceiptRow>> {
    receipts::table.find(id).select(ReceiptRow::as_select()).first(conn).await.optional()
}

/// The receipt with this id, locked.
pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ReceiptRow>> {
    receipts::table.find(id).select(ReceiptRow::as_select()).for_update().first(conn).await.optional()
}

/// Stores a receipt's new state.
pub async fn save(conn: &mut AsyncPgConnection, row: &ReceiptRow) -> QueryResult<()> {
    Cached::new(diesel::update(receipts::table.find(row.id)).set((row, receipts::updated_at.eq(diesel::dsl::now))))
        .execute(conn)
        .await
        .map(|_| ())
}

/// A tenant's receipts, optionally of one payment and in some states (empty:
/// any), oldest first.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    payment_id: Option<PaymentId>,
    statuses: &[ReceiptStatus],
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ReceiptRow>> {
    let mut q = receipts::table.filter(receipts::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(p) = payment_id {
        q = q.filter(receipts::payment_id.eq(p));
    }
    if !statuses.is_empty() {
        q = q.filter(receipts::status.eq_any(statuses.to_vec()));
    }
    if let Some(after) = starting_after {
        q = q.filter(receipts::id.gt(after));
    }
    q.order(receipts::id.asc()).limit(limit).select(ReceiptRow::as_select()).load(conn).await
}

/// The tenant's pending receipt the provider knows as `provider_id`: (receipt, payment).
pub async fn pending_by_provider_id(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    provider_id: &str,
) -> QueryResult<Option<(Uuid, PaymentId)>> {
    receipts::table
        .filter(receipts::tenant_id.eq(tenant_id))
        .filter(receipts::provider_uuid.eq(provider_id))
        .filter(receipts::status.eq(ReceiptStatus::Pending))
        .select((receipts::id, receipts::payment_id))
        .first(conn)
        .await
        .optional()
}
