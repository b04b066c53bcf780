//! Payment attempts (each collection try of a payment, known to the gateway by
//! its id) and saved payment methods.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, Nullable, Numeric, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{payment_attempts, payment_methods};
use crate::domain::ids::{CustomerId, PaymentId, TenantId};
use crate::domain::states::{AttemptChannel, AttemptStatus, PAYMENT_EXPIRED, PAYMENT_SUPERSEDED, PaymentStatus};

/// One try at collecting a payment (`payment_attempts`): the widget session of a
/// purchase, or one token charge of a renewal or retry, known to the gateway by
/// `invoice_id`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = payment_attempts, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct AttemptRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub payment_id: PaymentId,
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
        tenant_id: TenantId,
        payment_id: PaymentId,
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

/// A saved card (the gateway's token) a customer's later payments are charged to;
/// revoked after a hard decline.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = payment_methods, check_for_backend(diesel::pg::Pg))]
pub struct PaymentMethodRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
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

/// Records a new attempt.
pub async fn insert_attempt(conn: &mut AsyncPgConnection, row: &AttemptRow) -> QueryResult<()> {
    Cached::new(diesel::insert_into(payment_attempts::table).values(row)).execute(conn).await.map(|_| ())
}

/// Records new attempts in one statement per 1000.
pub async fn insert_attempts(conn: &mut AsyncPgConnection, rows: &[AttemptRow]) -> QueryResult<()> {
    for chunk in rows.chunks(2000) {
        diesel::insert_into(payment_attempts::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}

/// Calls off a payment's attempts the provider refused for the merchant's own
/// request (never charged): the customer is paying by hand instead. A replay of
/// their dead-lettered jobs then finds them failed and does nothing.
pub async fn call_off_refused(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<usize> {
    diesel::update(
        payment_attempts::table
            .filter(payment_attempts::payment_id.eq(payment_id))
            .filter(payment_attempts::status.eq(AttemptStatus::Refused)),
    )
    .set((
        payment_attempts::status.eq(AttemptStatus::Failed),
        payment_attempts::failure_reason.eq("called off: the customer paid by hand"),
        payment_attempts::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await
}

/// The next attempt number of a payment.
pub async fn next_attempt_no(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<i32> {
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
    customer_ids: &[CustomerId],
) -> QueryResult<Vec<(CustomerId, Uuid)>> {
    payment_methods::table
        .filter(payment_methods::customer_id.eq_any(customer_ids))
        .filter(payment_methods::revoked_at.is_null())
        .distinct_on(payment_methods::customer_id)
        .order((payment_methods::customer_id, payment_methods::created_at.desc()))
        .select((payment_methods::customer_id, payment_methods::id))
        .load(conn)
        .await
}

/// Stores an attempt's new state.
pub async fn save_attempt(conn: &AsyncPgConnection, row: &AttemptRow) -> QueryResult<()> {
    Cached::new(
        diesel::update(payment_attempts::table.find(row.id))
            .set((row, payment_attempts::updated_at.eq(diesel::dsl::now))),
    )
    .execute(&mut &*conn)
    .await
    .map(|_| ())
}

/// The attempt a gateway knows by `invoice_id` (CloudPayments InvoiceId).
pub async fn find_attempt_by_invoice(
    conn: &AsyncPgConnection,
    tenant_id: TenantId,
    invoice_id: &str,
) -> QueryResult<Option<AttemptRow>> {
    payment_attempts::table
        .filter(payment_attempts::tenant_id.eq(tenant_id))
        .filter(payment_attempts::invoice_id.eq(invoice_id))
        .select(AttemptRow::as_select())
        .first(&mut &*conn)
        .await
        .optional()
}

/// The attempts carrying these (tenant, invoice id) pairs, in one statement
/// (kept prepared). Pipelinable.
pub async fn find_by_invoices(conn: &AsyncPgConnection, invoices: &[(TenantId, &str)]) -> QueryResult<Vec<AttemptRow>> {
    Cached::new(of_invoices(invoices).select(AttemptRow::as_select())).load(&mut &*conn).await
}

/// The attempts carrying these (tenant, invoice id) pairs exactly: `WHERE
/// (tenant_id, invoice_id) IN (SELECT * FROM unnest($1, $2))`. Its SQL is the
/// same for any number of pairs (wrap a statement using it in [`Cached`]).
pub fn of_invoices<'a>(invoices: &[(TenantId, &'a str)]) -> payment_attempts::BoxedQuery<'a, diesel::pg::Pg> {
    let tenants: Vec<TenantId> = invoices.iter().map(|(t, _)| *t).collect();
    let ids: Vec<&'a str> = invoices.iter().map(|(_, i)| *i).collect();
    payment_attempts::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "(payment_attempts.tenant_id, payment_attempts.invoice_id) IN (SELECT * FROM unnest(",
            )
            .bind::<Array<SqlUuid>, _>(tenants)
            .sql(", ")
            .bind::<Array<Text>, _>(ids)
            .sql("))"),
        )
        .into_boxed()
}

/// A payment's attempts, oldest first.
pub async fn attempts_of(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<Vec<AttemptRow>> {
    payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment_id))
        .order(payment_attempts::attempt_no.asc())
        .select(AttemptRow::as_select())
        .load(conn)
        .await
}

/// Saves a card token; the same token arriving again is a no-op.
pub async fn save_payment_method(conn: &AsyncPgConnection, row: &PaymentMethodRow) -> QueryResult<()> {
    save_payment_methods(conn, std::slice::from_ref(row)).await
}

/// Saves card tokens in one statement; a token saved before is left as it is.
/// Pipelinable.
pub async fn save_payment_methods(conn: &AsyncPgConnection, rows: &[PaymentMethodRow]) -> QueryResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    Cached::rows(
        diesel::insert_into(payment_methods::table)
            .values(rows)
            .on_conflict((payment_methods::customer_id, payment_methods::gateway, payment_methods::token))
            .do_nothing(),
        rows.len(),
    )
    .execute(&mut &*conn)
    .await
    .map(|_| ())
}

/// The customer's newest usable saved card.
pub async fn default_payment_method(
    conn: &mut AsyncPgConnection,
    customer_id: CustomerId,
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

/// The attempts with these ids.
pub async fn find_attempts(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<AttemptRow>> {
    payment_attempts::table.filter(payment_attempts::id.eq_any(ids)).select(AttemptRow::as_select()).load(conn).await
}

/// The attempt with this id (`NotFound` when there is none).
pub async fn find_attempt(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<AttemptRow> {
    payment_attempts::table.find(id).select(AttemptRow::as_select()).first(conn).await
}

/// The token of a saved method that is still usable.
pub async fn usable_token(conn: &mut AsyncPgConnection, method_id: Uuid) -> QueryResult<Option<String>> {
    payment_methods::table
        .find(method_id)
        .filter(payment_methods::revoked_at.is_null())
        .select(payment_methods::token)
        .first(conn)
        .await
        .optional()
}

/// Revokes a saved method after a hard decline (`code` is kept as the reason).
pub async fn revoke_method(
    conn: &mut AsyncPgConnection,
    method_id: Uuid,
    at: DateTime<Utc>,
    code: Option<&str>,
) -> QueryResult<()> {
    diesel::update(payment_methods::table.find(method_id).filter(payment_methods::revoked_at.is_null()))
        .set((payment_methods::revoked_at.eq(at), payment_methods::revoked_reason.eq(code)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// How many scheduled attempts of a renewal payment were declined.
pub async fn failed_scheduled_attempts(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<i64> {
    payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment_id))
        .filter(payment_attempts::channel.eq(AttemptChannel::Scheduled))
        .filter(payment_attempts::status.eq(AttemptStatus::Failed))
        .count()
        .get_result(conn)
        .await
}

/// Attempt statuses without an outcome yet: pending, in flight, or waiting to be re-sent.
pub const OPEN: [AttemptStatus; 4] =
    [AttemptStatus::Pending, AttemptStatus::Sent, AttemptStatus::Unknown, AttemptStatus::Refused];

/// True when the payment has an attempt without an outcome.
pub async fn has_open_attempt(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payment_attempts::table
            .filter(payment_attempts::payment_id.eq(payment_id))
            .filter(payment_attempts::status.eq_any(OPEN)),
    ))
    .get_result(conn)
    .await
}

/// True when a charge of the payment is in flight or queued (a widget attempt
/// waiting for the customer does not count): paying by hand must wait for it.
pub async fn has_charge_in_progress(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        payment_attempts::table.filter(payment_attempts::payment_id.eq(payment_id)).filter(
            payment_attempts::status.eq_any([AttemptStatus::Sent, AttemptStatus::Unknown]).or(
                payment_attempts::channel
                    .ne(AttemptChannel::Widget)
                    .and(payment_attempts::status.eq(AttemptStatus::Pending)),
            ),
        ),
    ))
    .get_result(conn)
    .await
}

/// What a claimed attempt's charge needs, read with the claim.
#[derive(QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    pub attempt_id: Uuid,
    #[diesel(sql_type = Text)]
    pub invoice_id: String,
    #[diesel(sql_type = SqlUuid)]
    pub tenant_id: TenantId,
    #[diesel(sql_type = SqlUuid)]
    pub customer_id: CustomerId,
    #[diesel(sql_type = Numeric)]
    pub amount: Decimal,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = Text)]
    pub description: String,
    /// The saved card's token, unless it was revoked meanwhile.
    #[diesel(sql_type = Nullable<Text>)]
    pub token: Option<String>,
    /// Whether the attempt was made with a saved card at all.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub had_method: bool,
    #[diesel(sql_type = Nullable<Text>)]
    pub email: Option<String>,
}

/// The common case in one statement: attempts that are pending (or refused, to be
/// re-sent) are marked `sent` — committed before the gateway is called — and
/// everything their charges need is read with them. Attempts of payments already
/// paid or closed, and attempts not pending (a redelivery, a follow-up, done), are
/// left out.
pub async fn claim_pending(conn: &mut AsyncPgConnection, ids: &[Uuid]) -> QueryResult<Vec<Claimed>> {
    Cached::new(
        diesel::sql_query(
            "WITH claimed AS (UPDATE payment_attempts SET status = $2, sent_at = now(), updated_at = now(), \
                                 failure_reason = NULL \
                          WHERE id = ANY($1) AND status = ANY($3) \
                            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = payment_id \
                                            AND (p.status = $4 OR p.failure_reason = ANY($5))) \
                          RETURNING id, invoice_id, payment_id, payment_method_id) \
         SELECT c.id AS attempt_id, c.invoice_id, p.tenant_id, p.customer_id, p.amount, p.currency, p.description, \
                pm.token, c.payment_method_id IS NOT NULL AS had_method, cu.email \
         FROM claimed c JOIN payments p ON p.id = c.payment_id JOIN customers cu ON cu.id = p.customer_id \
         LEFT JOIN payment_methods pm ON pm.id = c.payment_method_id AND pm.revoked_at IS NULL",
        )
        .bind::<Array<SqlUuid>, _>(ids)
        .bind::<Text, _>(AttemptStatus::Sent.as_str())
        .bind::<Array<Text>, _>(&[AttemptStatus::Pending.as_str(), AttemptStatus::Refused.as_str()][..])
        .bind::<Text, _>(PaymentStatus::Succeeded.as_str())
        .bind::<Array<Text>, _>(&[PAYMENT_SUPERSEDED, PAYMENT_EXPIRED][..]),
    )
    .load(conn)
    .await
}
