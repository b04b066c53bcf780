//! Partners, customers' attribution to them, and their commissions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{customers, partner_commissions, partners};
use crate::domain::ids::{CustomerId, PartnerId, PaymentId, TenantId};

/// A tenant's partner.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partners, check_for_backend(diesel::pg::Pg))]
pub struct PartnerRow {
    pub id: PartnerId,
    pub tenant_id: TenantId,
    /// The code customers are attributed by (unique per tenant).
    pub code: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

/// A commission accrued on a payment, or reversed by one of its refunds.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = partner_commissions, check_for_backend(diesel::pg::Pg))]
pub struct CommissionRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub partner_id: PartnerId,
    pub customer_id: CustomerId,
    pub payment_id: PaymentId,
    pub refund_id: Option<Uuid>,
    /// `accrual` or `reversal`.
    pub kind: String,
    /// What the commission is a share of (the money paid, or refunded).
    pub base: Decimal,
    pub rate: Decimal,
    pub amount: Decimal,
    pub currency: String,
    pub occurred_at: DateTime<Utc>,
}

/// Records a partner; `false` when the tenant has one with this code.
pub async fn insert(conn: &mut AsyncPgConnection, row: &PartnerRow) -> QueryResult<bool> {
    let n = diesel::insert_into(partners::table).values(row).on_conflict_do_nothing().execute(conn).await?;
    Ok(n == 1)
}

/// The tenant's partners, by code, after `starting_after` (a code).
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    starting_after: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<PartnerRow>> {
    let mut q = partners::table.filter(partners::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(code) = starting_after {
        q = q.filter(partners::code.gt(code.to_owned()));
    }
    q.order(partners::code).limit(limit).select(PartnerRow::as_select()).load(conn).await
}

pub async fn by_code(conn: &mut AsyncPgConnection, tenant_id: TenantId, code: &str) -> QueryResult<Option<PartnerRow>> {
    partners::table
        .filter(partners::tenant_id.eq(tenant_id))
        .filter(partners::code.eq(code))
        .select(PartnerRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The partners of those of `customers` who are attributed to one.
pub async fn of_customers(
    conn: &mut AsyncPgConnection,
    customer_ids: &[CustomerId],
) -> QueryResult<Vec<(CustomerId, PartnerRow)>> {
    customers::table
        .inner_join(partners::table.on(
            partners::tenant_id.eq(customers::tenant_id).and(customers::partner_code.eq(partners::code.nullable())),
        ))
        .filter(customers::id.eq_any(customer_ids))
        .select((customers::id, PartnerRow::as_select()))
        .load(conn)
        .await
}

/// Records a commission; `false` when the payment's accrual (or the refund's
/// reversal) is already recorded.
pub async fn record(conn: &mut AsyncPgConnection, row: &CommissionRow) -> QueryResult<bool> {
    let n = diesel::insert_into(partner_commissions::table).values(row).on_conflict_do_nothing().execute(conn).await?;
    Ok(n == 1)
}

/// A payment's commissions: its accrual and the reversals so far.
pub async fn of_payment(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<Vec<CommissionRow>> {
    partner_commissions::table
        .filter(partner_commissions::payment_id.eq(payment_id))
        .order(partner_commissions::occurred_at)
        .select(CommissionRow::as_select())
        .load(conn)
        .await
}

/// A partner's commissions in `[from, to)`, in order.
pub async fn in_window(
    conn: &mut AsyncPgConnection,
    partner_id: PartnerId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> QueryResult<Vec<CommissionRow>> {
    partner_commissions::table
        .filter(partner_commissions::partner_id.eq(partner_id))
        .filter(partner_commissions::occurred_at.ge(from))
        .filter(partner_commissions::occurred_at.lt(to))
        .order((partner_commissions::occurred_at, partner_commissions::id))
        .select(CommissionRow::as_select())
        .load(conn)
        .await
}
