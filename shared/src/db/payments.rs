//! Payments, their collection attempts, and saved payment methods.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{payment_attempts, payments};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::money::Money;
use crate::domain::states::{PaymentKind, PaymentStatus};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct PaymentRow {
    pub id: PaymentId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub subscription_id: Option<SubscriptionId>,
    pub kind: PaymentKind,
    pub status: PaymentStatus,
    pub amount: Decimal,
    pub currency: String,
    pub refunded_amount: Decimal,
    pub description: String,
    pub plan_id: Option<Uuid>,
    pub price_id: Option<Uuid>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub gateway: String,
    pub gateway_transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    pub failure_code: Option<String>,
    pub duplicate_of: Option<PaymentId>,
    pub expires_at: Option<DateTime<Utc>>,
    pub captured_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The charged items when more than the plan's tariff (`services::payments::Line`).
    pub lines: Option<serde_json::Value>,
    /// An upgrade's quote (`services::plan_change`).
    pub plan_change: Option<serde_json::Value>,
    /// Taken from the customer's prepaid money (the rest came through the gateway).
    pub from_prepaid: Decimal,
    /// Taken from the customer's cashback.
    pub from_cashback: Decimal,
    /// Cashback the capture credited (`domain::balance::earned`).
    pub cashback_earned: Decimal,
}

/// Who pays, for [`PaymentRow::pending`].
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    pub tenant_id: TenantId,
    pub gateway: &'a str,
    pub customer_id: CustomerId,
    pub subscription_id: Option<SubscriptionId>,
}

impl PaymentRow {
    /// The key its events and jobs are ordered by: its subscription, or its
    /// customer when it pays for none (a top-up).
    pub fn ordering_key(&self) -> Uuid {
        self.subscription_id.map(Uuid::from).unwrap_or(self.customer_id.0)
    }

    /// A new pending payment of `amount` by `payer` (tenant, gateway, customer,
    /// subscription); the caller sets what it pays for.
    pub fn pending(
        payer: Payer<'_>,
        kind: PaymentKind,
        amount: Money,
        description: String,
        now: DateTime<Utc>,
    ) -> Self {
        let Payer { tenant_id, gateway, customer_id, subscription_id } = payer;
        PaymentRow {
            id: PaymentId::new(),
            tenant_id,
            customer_id,
            subscription_id,
            kind,
            status: PaymentStatus::Pending,
            amount: amount.amount(),
            currency: amount.currency().code().into(),
            refunded_amount: Decimal::ZERO,
            description,
            plan_id: None,
            price_id: None,
            period_start: None,
            period_end: None,
            gateway: gateway.to_owned(),
            gateway_transaction_id: None,
            failure_reason: None,
            failure_code: None,
            duplicate_of: None,
            expires_at: None,
            captured_at: None,
            created_at: now,
            lines: None,
            plan_change: None,
            from_prepaid: Decimal::ZERO,
            from_cashback: Decimal::ZERO,
            cashback_earned: Decimal::ZERO,
        }
    }
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &PaymentRow) -> QueryResult<()> {
    Cached::new(diesel::insert_into(payments::table).values(row)).execute(conn).await.map(|_| ())
}

pub async fn save(conn: &AsyncPgConnection, row: &PaymentRow) -> QueryResult<()> {
    Cached::new(diesel::update(payments::table.find(row.id)).set((row, payments::updated_at.eq(diesel::dsl::now))))
        .execute(&mut &*conn)
        .await
        .map(|_| ())
}

pub async fn find(conn: &mut AsyncPgConnection, tenant_id: TenantId, id: PaymentId) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::tenant_id.eq(tenant_id))
        .filter(payments::id.eq(id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(conn: &mut AsyncPgConnection, id: PaymentId) -> QueryResult<Option<PaymentRow>> {
    payments::table.find(id).select(PaymentRow::as_select()).for_update().first(conn).await.optional()
}

/// A captured payment, as the batch path records it.
pub struct Captured {
    pub payment_id: PaymentId,
    pub attempt_id: Uuid,
    pub transaction_id: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
}

impl Captured {
    /// Marks `payment` captured in memory as [`mark_captured_many`] will store it
    /// (succeeded, the transaction, `captured_at`, no failure, the period paid for)
    /// and returns its row for that statement.
    pub fn mark(
        payment: &mut PaymentRow,
        attempt_id: Uuid,
        transaction_id: &str,
        captured_at: DateTime<Utc>,
        period: (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
    ) -> Captured {
        payment.status = PaymentStatus::Succeeded;
        payment.gateway_transaction_id = Some(transaction_id.to_owned());
        payment.failure_reason = None;
        payment.failure_code = None;
        payment.captured_at = Some(captured_at);
        (payment.period_start, payment.period_end) = period;
        Captured {
            payment_id: payment.id,
            attempt_id,
            transaction_id: transaction_id.to_owned(),
            period_start: period.0,
            period_end: period.1,
        }
    }
}

/// Marks payments and their attempts captured: two statements for all of them,
/// pipelined (one round trip; pipelinable with others, [`super::pipeline`]).
pub async fn mark_captured_many(
    conn: &AsyncPgConnection,
    captured_at: DateTime<Utc>,
    rows: &[Captured],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let payment_ids: Vec<PaymentId> = rows.iter().map(|r| r.payment_id).collect();
    let attempt_ids: Vec<Uuid> = rows.iter().map(|r| r.attempt_id).collect();
    let transactions: Vec<&str> = rows.iter().map(|r| r.transaction_id.as_str()).collect();
    let starts: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.period_end).collect();
    let payments = Cached::new(diesel::sql_query(
        "UPDATE payments p SET status = 'succeeded', gateway_transaction_id = v.tx, captured_at = $1, \
             failure_reason = NULL, failure_code = NULL, period_start = v.ps, period_end = v.pe, updated_at = now() \
         FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS v(id, tx, ps, pe) WHERE p.id = v.id",
    )
    .bind::<Timestamptz, _>(captured_at)
    .bind::<Array<SqlUuid>, _>(&payment_ids)
    .bind::<Array<Text>, _>(&transactions)
    .bind::<Array<Nullable<Timestamptz>>, _>(&starts)
    .bind::<Array<Nullable<Timestamptz>>, _>(&ends))
    .execute(&mut &*conn);
    let attempts = Cached::new(
        diesel::sql_query(
            "UPDATE payment_attempts a SET status = 'succeeded', gateway_transaction_id = v.tx, updated_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS v(id, tx) WHERE a.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&attempt_ids)
        .bind::<Array<Text>, _>(&transactions),
    )
    .execute(&mut &*conn);
    let (payments, attempts) = futures_util::future::join(payments, attempts).await;
    super::pipeline::outcome([payments.map(drop), attempts.map(drop)])
}

/// The tenant's payment with this gateway transaction, locked.
pub async fn lock_by_transaction(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    transaction_id: &str,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::tenant_id.eq(tenant_id))
        .filter(payments::gateway_transaction_id.eq(transaction_id))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// A subscription's captured payments that pay for time not over at `now` (a
/// period, an extension, an upgrade's rest of a period), duplicates left out,
/// locked in id order.
pub async fn lock_paid_periods(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    subscription_id: SubscriptionId,
    now: DateTime<Utc>,
) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::tenant_id.eq(tenant_id))
        .filter(payments::subscription_id.eq(subscription_id))
        .filter(payments::status.eq_any([PaymentStatus::Succeeded, PaymentStatus::PartiallyRefunded]))
        .filter(payments::kind.eq_any([
            PaymentKind::Purchase,
            PaymentKind::Renewal,
            PaymentKind::Extension,
            PaymentKind::Upgrade,
        ]))
        .filter(payments::duplicate_of.is_null())
        .filter(payments::period_end.gt(now))
        .order(payments::id.asc())
        .select(PaymentRow::as_select())
        .for_update()
        .load(conn)
        .await
}

/// Who a payment is ordered by: (subscription, customer).
pub async fn payer_of(
    conn: &mut AsyncPgConnection,
    id: PaymentId,
) -> QueryResult<(Option<SubscriptionId>, CustomerId)> {
    payments::table.find(id).select((payments::subscription_id, payments::customer_id)).first(conn).await
}

/// Who each of these payments is ordered by: (subscription, customer) by payment.
pub async fn payers_of(
    conn: &mut AsyncPgConnection,
    ids: &[PaymentId],
) -> QueryResult<std::collections::HashMap<PaymentId, (Option<SubscriptionId>, CustomerId)>> {
    let rows: Vec<(PaymentId, Option<SubscriptionId>, CustomerId)> = payments::table
        .filter(payments::id.eq_any(ids))
        .select((payments::id, payments::subscription_id, payments::customer_id))
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(|(id, sub, customer)| (id, (sub, customer))).collect())
}

/// Locks the payments these attempts belong to, in id order.
pub async fn lock_of_attempts(conn: &mut AsyncPgConnection, attempt_ids: &[Uuid]) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(
            payments::id.eq_any(
                payment_attempts::table
                    .filter(payment_attempts::id.eq_any(attempt_ids))
                    .select(payment_attempts::payment_id),
            ),
        )
        .order(payments::id)
        .for_update()
        .select(PaymentRow::as_select())
        .load(conn)
        .await
}

/// The paid extension whose period starts at `start` (it takes over then).
pub async fn extension_starting_at(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    start: DateTime<Utc>,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::subscription_id.eq(subscription_id))
        .filter(payments::kind.eq(PaymentKind::Extension))
        .filter(payments::status.eq(PaymentStatus::Succeeded))
        .filter(payments::period_start.eq(start))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Paid extensions queued from `from` on.
pub async fn queued_extensions(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    from: DateTime<Utc>,
) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::subscription_id.eq(subscription_id))
        .filter(payments::kind.eq(PaymentKind::Extension))
        .filter(payments::status.eq(PaymentStatus::Succeeded))
        .filter(payments::period_start.ge(from))
        .select(PaymentRow::as_select())
        .load(conn)
        .await
}

/// Locks the payment an attempt belongs to (one statement).
pub async fn lock_by_attempt(conn: &mut AsyncPgConnection, attempt_id: Uuid) -> QueryResult<Option<PaymentRow>> {
    lock_through_attempt(conn, payment_attempts::table.filter(payment_attempts::id.eq(attempt_id)).into_boxed()).await
}

/// Locks the payment whose attempt carries `invoice_id` (the id a provider's
/// notification names) in one statement; `None` when no attempt has it.
pub async fn lock_by_invoice(
    conn: &AsyncPgConnection,
    tenant_id: TenantId,
    invoice_id: &str,
) -> QueryResult<Option<PaymentRow>> {
    let attempt = payment_attempts::table
        .filter(payment_attempts::tenant_id.eq(tenant_id))
        .filter(payment_attempts::invoice_id.eq(invoice_id))
        .into_boxed();
    lock_through_attempt(conn, attempt).await
}

/// Locks the payments whose attempts carry these invoice ids (a batch of
/// provider notifications; `invoices` pairs each id with its tenant), in id
/// order, in one statement (kept prepared).
pub async fn lock_by_invoices(conn: &AsyncPgConnection, invoices: &[(TenantId, &str)]) -> QueryResult<Vec<PaymentRow>> {
    Cached::new(
        payments::table
            .filter(payments::id.eq_any(super::attempts::of_invoices(invoices).select(payment_attempts::payment_id)))
            .order(payments::id)
            .for_update()
            .select(PaymentRow::as_select()),
    )
    .load(&mut &*conn)
    .await
}

/// `SELECT … FROM payments WHERE id = (SELECT payment_id FROM payment_attempts
/// WHERE … LIMIT 1) FOR UPDATE`: the payment of the attempt `attempt` selects (at
/// most one matches), locked, in one statement; `None` when no attempt matches.
async fn lock_through_attempt(
    conn: &AsyncPgConnection,
    attempt: payment_attempts::BoxedQuery<'_, Pg>,
) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::id.nullable().eq(attempt.select(payment_attempts::payment_id).single_value()))
        .select(PaymentRow::as_select())
        .for_update()
        .first(&mut &*conn)
        .await
        .optional()
}

/// What a list of payments is narrowed to; `None` restricts nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct PaymentFilter {
    pub customer_id: Option<CustomerId>,
    pub subscription_id: Option<SubscriptionId>,
    pub status: Option<PaymentStatus>,
    /// Newest first (`starting_after` then pages backwards); else oldest first.
    pub newest_first: bool,
}

/// A tenant's payments matching `filter`, in id order (ids are UUIDv7: creation order).
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    filter: PaymentFilter,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<PaymentRow>> {
    let mut q = payments::table.filter(payments::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(c) = filter.customer_id {
        q = q.filter(payments::customer_id.eq(c));
    }
    if let Some(s) = filter.subscription_id {
        q = q.filter(payments::subscription_id.eq(s));
    }
    if let Some(s) = filter.status {
        q = q.filter(payments::status.eq(s));
    }
    q = match (filter.newest_first, starting_after) {
        (false, Some(after)) => q.filter(payments::id.gt(after)).order(payments::id.asc()),
        (false, None) => q.order(payments::id.asc()),
        (true, Some(after)) => q.filter(payments::id.lt(after)).order(payments::id.desc()),
        (true, None) => q.order(payments::id.desc()),
    };
    q.limit(limit).select(PaymentRow::as_select()).load(conn).await
}

/// Pending payments of a subscription (a superseded purchase is failed with them).
pub async fn pending_of_subscription(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::subscription_id.eq(subscription_id))
        .filter(payments::status.eq("pending"))
        .select(PaymentRow::as_select())
        .for_update()
        .load(conn)
        .await
}

/// Inserts many payments in one statement per chunk.
pub async fn insert_many(conn: &mut AsyncPgConnection, rows: &[PaymentRow]) -> QueryResult<()> {
    for chunk in rows.chunks(1000) {
        diesel::insert_into(payments::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}
