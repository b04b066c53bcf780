//! Payments, their collection attempts, and saved payment methods.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{payment_attempts, payment_methods, payments};
use crate::domain::money::Money;
use crate::domain::states::{AttemptChannel, AttemptStatus, PaymentKind, PaymentStatus};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = payments, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct PaymentRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
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
    pub duplicate_of: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
    pub captured_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The charged items when more than the plan's tariff (`services::payments::Line`).
    pub lines: Option<serde_json::Value>,
    /// An upgrade's quote (`services::plan_change`).
    pub plan_change: Option<serde_json::Value>,
}

/// Who pays, for [`PaymentRow::pending`].
#[derive(Debug, Clone, Copy)]
pub struct Payer<'a> {
    pub tenant_id: Uuid,
    pub gateway: &'a str,
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
}

impl PaymentRow {
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
            id: Uuid::now_v7(),
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
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = payment_attempts, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct AttemptRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub payment_id: Uuid,
    pub attempt_no: i32,
    pub invoice_id: String,
    pub channel: AttemptChannel,
    pub status: AttemptStatus,
    pub gateway_transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    pub failure_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub payment_method_id: Option<Uuid>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl AttemptRow {
    /// A new pending attempt. Its id doubles as the gateway's InvoiceId (and
    /// X-Request-ID), so one attempt is never known to the provider by two ids.
    pub fn new(
        tenant_id: Uuid,
        payment_id: Uuid,
        attempt_no: i32,
        channel: AttemptChannel,
        payment_method_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Self {
        let id = Uuid::now_v7();
        AttemptRow {
            id,
            tenant_id,
            payment_id,
            attempt_no,
            invoice_id: id.to_string(),
            channel,
            status: AttemptStatus::Pending,
            gateway_transaction_id: None,
            failure_reason: None,
            failure_code: None,
            created_at: now,
            payment_method_id,
            sent_at: None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_methods, check_for_backend(diesel::pg::Pg))]
pub struct PaymentMethodRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub gateway: String,
    pub token: String,
    pub card_first_six: Option<String>,
    pub card_last_four: Option<String>,
    pub card_type: Option<String>,
    pub card_exp: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &PaymentRow) -> QueryResult<()> {
    diesel::insert_into(payments::table).values(row).execute(conn).await.map(|_| ())
}

pub async fn save(conn: &mut AsyncPgConnection, row: &PaymentRow) -> QueryResult<()> {
    diesel::update(payments::table.find(row.id))
        .set((row, payments::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find(conn: &mut AsyncPgConnection, tenant_id: Uuid, id: Uuid) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(payments::tenant_id.eq(tenant_id))
        .filter(payments::id.eq(id))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<PaymentRow>> {
    payments::table.find(id).select(PaymentRow::as_select()).for_update().first(conn).await.optional()
}

/// A captured payment, as the batch path records it.
pub struct Captured {
    pub payment_id: Uuid,
    pub attempt_id: Uuid,
    pub transaction_id: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
}

/// Marks payments and their attempts captured, two statements for all of them.
pub async fn mark_captured_many(
    conn: &mut AsyncPgConnection,
    captured_at: DateTime<Utc>,
    rows: &[Captured],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    let payment_ids: Vec<Uuid> = rows.iter().map(|r| r.payment_id).collect();
    let attempt_ids: Vec<Uuid> = rows.iter().map(|r| r.attempt_id).collect();
    let transactions: Vec<&str> = rows.iter().map(|r| r.transaction_id.as_str()).collect();
    let starts: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.period_end).collect();
    diesel::sql_query(
        "UPDATE payments p SET status = 'succeeded', gateway_transaction_id = v.tx, captured_at = $1, \
             failure_reason = NULL, failure_code = NULL, period_start = v.ps, period_end = v.pe, updated_at = now() \
         FROM unnest($2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[]) AS v(id, tx, ps, pe) WHERE p.id = v.id",
    )
    .bind::<Timestamptz, _>(captured_at)
    .bind::<Array<SqlUuid>, _>(&payment_ids)
    .bind::<Array<Text>, _>(&transactions)
    .bind::<Array<Nullable<Timestamptz>>, _>(&starts)
    .bind::<Array<Nullable<Timestamptz>>, _>(&ends)
    .execute(conn)
    .await?;
    diesel::sql_query(
        "UPDATE payment_attempts a SET status = 'succeeded', gateway_transaction_id = v.tx, updated_at = now() \
         FROM unnest($1::uuid[], $2::text[]) AS v(id, tx) WHERE a.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(&attempt_ids)
    .bind::<Array<Text>, _>(&transactions)
    .execute(conn)
    .await?;
    Ok(())
}

/// The tenant's payment with this gateway transaction, locked.
pub async fn lock_by_transaction(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
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
    tenant_id: Uuid,
    subscription_id: Uuid,
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
pub async fn payer_of(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<(Option<Uuid>, Uuid)> {
    payments::table.find(id).select((payments::subscription_id, payments::customer_id)).first(conn).await
}

/// Locks the payment an attempt belongs to (one statement).
pub async fn lock_by_attempt(conn: &mut AsyncPgConnection, attempt_id: Uuid) -> QueryResult<Option<PaymentRow>> {
    payments::table
        .filter(
            payments::id.nullable().eq(payment_attempts::table
                .filter(payment_attempts::id.eq(attempt_id))
                .select(payment_attempts::payment_id)
                .single_value()),
        )
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    customer_id: Option<Uuid>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<PaymentRow>> {
    let mut q = payments::table.filter(payments::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(c) = customer_id {
        q = q.filter(payments::customer_id.eq(c));
    }
    if let Some(after) = starting_after {
        q = q.filter(payments::id.gt(after));
    }
    q.order(payments::id.asc()).limit(limit).select(PaymentRow::as_select()).load(conn).await
}

/// Pending payments of a subscription (a superseded purchase is failed with them).
pub async fn pending_of_subscription(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
) -> QueryResult<Vec<PaymentRow>> {
    payments::table
        .filter(payments::subscription_id.eq(subscription_id))
        .filter(payments::status.eq("pending"))
        .select(PaymentRow::as_select())
        .for_update()
        .load(conn)
        .await
}

pub async fn insert_attempt(conn: &mut AsyncPgConnection, row: &AttemptRow) -> QueryResult<()> {
    diesel::insert_into(payment_attempts::table).values(row).execute(conn).await.map(|_| ())
}

/// Inserts many payments in one statement per chunk.
pub async fn insert_many(conn: &mut AsyncPgConnection, rows: &[PaymentRow]) -> QueryResult<()> {
    for chunk in rows.chunks(1000) {
        diesel::insert_into(payments::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}

pub async fn insert_attempts(conn: &mut AsyncPgConnection, rows: &[AttemptRow]) -> QueryResult<()> {
    for chunk in rows.chunks(2000) {
        diesel::insert_into(payment_attempts::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}

/// Calls off a payment's attempts the provider refused for the merchant's own
/// request (never charged): the customer is paying by hand instead. A replay of
/// their dead-lettered jobs then finds them failed and does nothing.
pub async fn call_off_refused(conn: &mut AsyncPgConnection, payment_id: Uuid) -> QueryResult<usize> {
    diesel::update(
        payment_attempts::table
            .filter(payment_attempts::payment_id.eq(payment_id))
            .filter(payment_attempts::status.eq("refused")),
    )
    .set((
        payment_attempts::status.eq("failed"),
        payment_attempts::failure_reason.eq("called off: the customer paid by hand"),
        payment_attempts::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// The next attempt number of a payment.
pub async fn next_attempt_no(conn: &mut AsyncPgConnection, payment_id: Uuid) -> QueryResult<i32> {
    let max: Option<i32> = payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment_id))
        .select(diesel::dsl::max(payment_attempts::attempt_no))
        .first(conn)
        .await?;
    Ok(max.unwrap_or(0) + 1)
}

/// The newest usable saved card of each customer.
pub async fn default_payment_methods(
    conn: &mut AsyncPgConnection,
    customer_ids: &[Uuid],
) -> QueryResult<Vec<(Uuid, Uuid)>> {
    payment_methods::table
        .filter(payment_methods::customer_id.eq_any(customer_ids))
        .filter(payment_methods::revoked_at.is_null())
        .distinct_on(payment_methods::customer_id)
        .order((payment_methods::customer_id, payment_methods::created_at.desc()))
        .select((payment_methods::customer_id, payment_methods::id))
        .load(conn)
        .await
}

pub async fn save_attempt(conn: &mut AsyncPgConnection, row: &AttemptRow) -> QueryResult<()> {
    diesel::update(payment_attempts::table.find(row.id))
        .set((row, payment_attempts::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// The attempt a gateway knows by `invoice_id` (CloudPayments InvoiceId).
pub async fn find_attempt_by_invoice(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    invoice_id: &str,
) -> QueryResult<Option<AttemptRow>> {
    payment_attempts::table
        .filter(payment_attempts::tenant_id.eq(tenant_id))
        .filter(payment_attempts::invoice_id.eq(invoice_id))
        .select(AttemptRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn attempts_of(conn: &mut AsyncPgConnection, payment_id: Uuid) -> QueryResult<Vec<AttemptRow>> {
    payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment_id))
        .order(payment_attempts::attempt_no.asc())
        .select(AttemptRow::as_select())
        .load(conn)
        .await
}

/// Saves a card token; the same token arriving again is a no-op.
pub async fn save_payment_method(conn: &mut AsyncPgConnection, row: &PaymentMethodRow) -> QueryResult<()> {
    diesel::insert_into(payment_methods::table)
        .values(row)
        .on_conflict((payment_methods::customer_id, payment_methods::gateway, payment_methods::token))
        .do_nothing()
        .execute(conn)
        .await
        .map(|_| ())
}

/// The customer's newest usable saved card.
pub async fn default_payment_method(
    conn: &mut AsyncPgConnection,
    customer_id: Uuid,
) -> QueryResult<Option<PaymentMethodRow>> {
    payment_methods::table
        .filter(payment_methods::customer_id.eq(customer_id))
        .filter(payment_methods::revoked_at.is_null())
        .order(payment_methods::created_at.desc())
        .select(PaymentMethodRow::as_select())
        .first(conn)
        .await
        .optional()
}
