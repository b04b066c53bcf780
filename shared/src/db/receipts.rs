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
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
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

/// Inserts receipts in one statement and returns the ids of those inserted (a
/// payment or refund that already has its receipt keeps it).
pub async fn insert_many(conn: &mut AsyncPgConnection, rows: &[ReceiptRow]) -> QueryResult<Vec<Uuid>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(receipts::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(receipts::id)
        .get_results(conn)
        .await
}

/// The receipt with this id.
pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ReceiptRow>> {
    receipts::table.find(id).select(ReceiptRow::as_select()).first(conn).await.optional()
}

/// The receipts with these ids (a wave of registration jobs); ids not found are
/// absent.
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<ReceiptRow>> {
    receipts::table.filter(receipts::id.eq_any(ids)).select(ReceiptRow::as_select()).load(conn).await
}

/// Records the provider's document ids of accepted attempts `(receipt, attempt,
/// provider uuid)`, each only while its receipt is `pending` at that attempt with
/// no document id yet. Returns the ids of the receipts written.
pub async fn accept_many(conn: &mut AsyncPgConnection, accepted: &[(Uuid, i32, &str)]) -> QueryResult<Vec<Uuid>> {
    use diesel::sql_types::{Array, Int4, Text, Uuid as SqlUuid};
    #[derive(QueryableByName)]
    struct Written {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let ids: Vec<Uuid> = accepted.iter().map(|a| a.0).collect();
    let attempts: Vec<i32> = accepted.iter().map(|a| a.1).collect();
    let uuids: Vec<&str> = accepted.iter().map(|a| a.2).collect();
    let written: Vec<Written> = Cached::new(
        diesel::sql_query(
            "UPDATE receipts r SET provider_uuid = v.uuid, updated_at = now() \
             FROM unnest($1::uuid[], $2::int4[], $3::text[]) AS v(id, attempt, uuid) \
             WHERE r.id = v.id AND r.attempt = v.attempt AND r.status = 'pending' AND r.provider_uuid IS NULL \
             RETURNING r.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Int4>, _>(&attempts)
        .bind::<Array<Text>, _>(&uuids),
    )
    .load(conn)
    .await?;
    Ok(written.into_iter().map(|w| w.id).collect())
}

/// Marks registered the receipts of `(receipt, attempt, fiscal attributes as JSON
/// text)` at `now`, each only while it is `pending` at that attempt. Returns the
/// receipts written, as they are now.
pub async fn register_many(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    registered: &[(Uuid, i32, String)],
) -> QueryResult<Vec<ReceiptRow>> {
    use diesel::sql_types::{Array, Int4, Text, Timestamptz, Uuid as SqlUuid};
    let ids: Vec<Uuid> = registered.iter().map(|a| a.0).collect();
    let attempts: Vec<i32> = registered.iter().map(|a| a.1).collect();
    let fiscal: Vec<&str> = registered.iter().map(|a| a.2.as_str()).collect();
    Cached::new(
        diesel::sql_query(
            "UPDATE receipts r SET status = 'registered', fiscal = v.fiscal, registered_at = $1, updated_at = now() \
             FROM unnest($2::uuid[], $3::int4[], $4::text[]) AS v(id, attempt, fiscal) \
             WHERE r.id = v.id AND r.attempt = v.attempt AND r.status = 'pending' \
             RETURNING r.*",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Int4>, _>(&attempts)
        .bind::<Array<Text>, _>(&fiscal),
    )
    .load(conn)
    .await
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

/// The tenant's receipt `id`, pending at registration attempt `attempt` under the
/// provider's document id `provider_id`: its payment. `None` for any other receipt,
/// attempt or document (by primary key: ATOL's callback names the receipt by the
/// `external_id` we sent).
pub async fn pending_document(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    (id, attempt): (Uuid, i32),
    provider_id: &str,
) -> QueryResult<Option<PaymentId>> {
    receipts::table
        .find(id)
        .filter(receipts::tenant_id.eq(tenant_id))
        .filter(receipts::attempt.eq(attempt))
        .filter(receipts::provider_uuid.eq(provider_id))
        .filter(receipts::status.eq(ReceiptStatus::Pending))
        .select(receipts::payment_id)
        .first(conn)
        .await
        .optional()
}
