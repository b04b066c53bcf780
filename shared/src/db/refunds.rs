//! Refund requests.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::refunds;
use crate::domain::ids::{CustomerId, PaymentId, TenantId};
use crate::domain::states::RefundStatus;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = refunds, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct RefundRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub reason: String,
    pub status: RefundStatus,
    pub decision_code: String,
    pub amount: Decimal,
    pub requested_amount: Option<Decimal>,
    pub currency: String,
    pub comment: Option<String>,
    pub review_comment: Option<String>,
    pub window_ends_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// A held request is overdue for review from this instant.
    pub review_due_at: Option<DateTime<Utc>>,
    pub overdue_notified_at: Option<DateTime<Utc>>,
    /// Execution tries so far; try N is sent with the key `<id>-<N>`.
    pub attempt: i32,
    /// The refund's own gateway transaction, once the gateway answered.
    pub gateway_transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    /// When the current try was sent to the gateway.
    pub sent_at: Option<DateTime<Utc>>,
    pub succeeded_at: Option<DateTime<Utc>>,
    /// A balance-paid payment's refund goes back onto the balance: this much to
    /// the prepaid money, this much to the cashback (together `amount`).
    pub to_prepaid: Decimal,
    pub to_cashback: Decimal,
    /// Cashback the payment earned, taken back by this refund from the balance...
    pub cashback_reversed: Decimal,
    /// ...and the part already spent, deducted from `amount` instead.
    pub cashback_deducted: Decimal,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &RefundRow) -> QueryResult<()> {
    Cached::new(diesel::insert_into(refunds::table).values(row)).execute(conn).await.map(|_| ())
}

pub async fn save(conn: &mut AsyncPgConnection, row: &RefundRow) -> QueryResult<()> {
    Cached::new(diesel::update(refunds::table.find(row.id)).set((row, refunds::updated_at.eq(diesel::dsl::now))))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find_for_update(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    id: Uuid,
) -> QueryResult<Option<RefundRow>> {
    refunds::table
        .filter(refunds::tenant_id.eq(tenant_id))
        .filter(refunds::id.eq(id))
        .select(RefundRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// What the payment's refunds hold (refunded, being refunded or waiting for review).
pub async fn held_for_payment(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<Decimal> {
    let sum: Option<Decimal> = refunds::table
        .filter(refunds::payment_id.eq(payment_id))
        .filter(refunds::status.eq_any(RefundStatus::HOLDING))
        .select(diesel::dsl::sum(refunds::amount))
        .first(conn)
        .await?;
    Ok(sum.unwrap_or_default())
}

/// What a payment's refunds (those approved or paid back) already hold, part by part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub amount: Decimal,
    pub to_prepaid: Decimal,
    pub to_cashback: Decimal,
    /// Cashback reversed plus cashback deducted.
    pub cashback_taken: Decimal,
}

/// [`Held`] of a payment by its refunds other than `except`, in one statement.
pub async fn held_parts(conn: &mut AsyncPgConnection, payment_id: PaymentId, except: Uuid) -> QueryResult<Held> {
    use diesel::dsl::sum;
    type Sums = (Option<Decimal>, Option<Decimal>, Option<Decimal>, Option<Decimal>, Option<Decimal>);
    let (amount, to_prepaid, to_cashback, reversed, deducted): Sums = refunds::table
        .filter(refunds::payment_id.eq(payment_id))
        .filter(refunds::id.ne(except))
        .filter(refunds::status.eq_any(RefundStatus::HOLDING))
        .select((
            sum(refunds::amount),
            sum(refunds::to_prepaid),
            sum(refunds::to_cashback),
            sum(refunds::cashback_reversed),
            sum(refunds::cashback_deducted),
        ))
        .first(conn)
        .await?;
    Ok(Held {
        amount: amount.unwrap_or_default(),
        to_prepaid: to_prepaid.unwrap_or_default(),
        to_cashback: to_cashback.unwrap_or_default(),
        cashback_taken: reversed.unwrap_or_default() + deducted.unwrap_or_default(),
    })
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    status: Option<RefundStatus>,
    payment_id: Option<PaymentId>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<RefundRow>> {
    let mut q = refunds::table.filter(refunds::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(s) = status {
        q = q.filter(refunds::status.eq(s));
    }
    if let Some(p) = payment_id {
        q = q.filter(refunds::payment_id.eq(p));
    }
    if let Some(after) = starting_after {
        q = q.filter(refunds::id.gt(after));
    }
    q.order(refunds::id.asc()).limit(limit).select(RefundRow::as_select()).load(conn).await
}

/// The tenant a refund belongs to.
pub async fn tenant_of(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<TenantId>> {
    refunds::table.find(id).select(refunds::tenant_id).first(conn).await.optional()
}

/// The payment a refund of the tenant belongs to.
pub async fn payment_of(conn: &mut AsyncPgConnection, tenant_id: TenantId, id: Uuid) -> QueryResult<Option<PaymentId>> {
    refunds::table
        .filter(refunds::tenant_id.eq(tenant_id))
        .filter(refunds::id.eq(id))
        .select(refunds::payment_id)
        .first(conn)
        .await
        .optional()
}

/// Held requests past their review deadline not yet reported, locked (skipping
/// those another replica holds).
pub async fn overdue(conn: &mut AsyncPgConnection, now: DateTime<Utc>, limit: i64) -> QueryResult<Vec<RefundRow>> {
    refunds::table
        .filter(refunds::status.eq(RefundStatus::PendingReview))
        .filter(refunds::overdue_notified_at.is_null())
        .filter(refunds::review_due_at.le(now))
        .order(refunds::review_due_at.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(RefundRow::as_select())
        .load(conn)
        .await
}

/// The payment's requests waiting for review, newest first, locked.
pub async fn pending_review_of(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<Vec<RefundRow>> {
    refunds::table
        .filter(refunds::payment_id.eq(payment_id))
        .filter(refunds::status.eq(RefundStatus::PendingReview))
        .order(refunds::id.desc())
        .for_update()
        .select(RefundRow::as_select())
        .load(conn)
        .await
}

/// A refund of the payment sent to the gateway for `amount` whose answer (its
/// transaction) is not recorded yet, locked.
pub async fn in_flight_without_transaction(
    conn: &mut AsyncPgConnection,
    payment_id: PaymentId,
    amount: Decimal,
) -> QueryResult<Option<RefundRow>> {
    refunds::table
        .filter(refunds::payment_id.eq(payment_id))
        .filter(refunds::status.eq(RefundStatus::Processing))
        .filter(refunds::gateway_transaction_id.is_null())
        .filter(refunds::amount.eq(amount))
        .order(refunds::id.asc())
        .for_update()
        .select(RefundRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The tenant's refund with this gateway transaction, locked.
pub async fn find_by_gateway_transaction(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    transaction_id: &str,
) -> QueryResult<Option<RefundRow>> {
    refunds::table
        .filter(refunds::tenant_id.eq(tenant_id))
        .filter(refunds::gateway_transaction_id.eq(transaction_id))
        .for_update()
        .select(RefundRow::as_select())
        .first(conn)
        .await
        .optional()
}
