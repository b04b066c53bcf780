//! Invoices, the money received for them, closing acts and their gapless numbers.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::upsert::excluded;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{acts, invoice_counters, invoice_payments, invoices};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::states::{DocumentKind, InvoiceStatus, TransferSource};

/// An invoice for bank transfer (`seller`, `buyer` and `lines` as issued).
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = invoices, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct InvoiceRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    /// The payment it collects (pending until the invoice is paid).
    pub payment_id: PaymentId,
    pub subscription_id: Option<SubscriptionId>,
    pub number: String,
    pub status: InvoiceStatus,
    pub total: Decimal,
    /// Transfers received for it so far.
    pub amount_received: Decimal,
    pub currency: String,
    pub seller: serde_json::Value,
    pub buyer: serde_json::Value,
    pub lines: serde_json::Value,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
}

/// Money received for an invoice under a reference (an operator's note, a
/// bank document).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = invoice_payments, check_for_backend(diesel::pg::Pg))]
pub struct TransferRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub invoice_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub paid_at: DateTime<Utc>,
    pub reference: String,
    pub source: TransferSource,
    pub recorded_at: DateTime<Utc>,
}

/// A closing act for the period a paid invoice paid for.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = acts, check_for_backend(diesel::pg::Pg))]
pub struct ActRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub invoice_id: Uuid,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub number: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub total: Decimal,
    pub currency: String,
    pub seller: serde_json::Value,
    pub buyer: serde_json::Value,
    pub lines: serde_json::Value,
    pub issued_at: DateTime<Utc>,
}

/// The next number of `kind` for the tenant's `year`: the counter row is
/// created or incremented, and so locked until the caller's transaction ends —
/// concurrent documents queue, and a rolled-back one gives its number back.
pub async fn next_number(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    kind: DocumentKind,
    year: i32,
) -> QueryResult<i32> {
    diesel::insert_into(invoice_counters::table)
        .values((
            invoice_counters::tenant_id.eq(tenant_id),
            invoice_counters::kind.eq(kind),
            invoice_counters::year.eq(year),
            invoice_counters::last.eq(1),
        ))
        .on_conflict((invoice_counters::tenant_id, invoice_counters::kind, invoice_counters::year))
        .do_update()
        .set(invoice_counters::last.eq(invoice_counters::last + excluded(invoice_counters::last)))
        .returning(invoice_counters::last)
        .get_result(conn)
        .await
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &InvoiceRow) -> QueryResult<()> {
    Cached::new(diesel::insert_into(invoices::table).values(row)).execute(conn).await.map(|_| ())
}

pub async fn save(conn: &mut AsyncPgConnection, row: &InvoiceRow) -> QueryResult<()> {
    Cached::new(diesel::update(invoices::table.find(row.id)).set(row)).execute(conn).await.map(|_| ())
}

/// The tenant's invoice, optionally locked.
pub async fn find(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    id: Uuid,
    lock: bool,
) -> QueryResult<Option<InvoiceRow>> {
    let q = invoices::table.filter(invoices::tenant_id.eq(tenant_id)).filter(invoices::id.eq(id));
    if lock {
        q.select(InvoiceRow::as_select()).for_update().first(conn).await.optional()
    } else {
        q.select(InvoiceRow::as_select()).first(conn).await.optional()
    }
}

/// The tenant's invoice with this number, locked.
pub async fn lock_by_number(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    number: &str,
) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::tenant_id.eq(tenant_id))
        .filter(invoices::number.eq(number))
        .select(InvoiceRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// The invoice collecting a payment.
pub async fn of_payment(conn: &mut AsyncPgConnection, payment_id: PaymentId) -> QueryResult<Option<InvoiceRow>> {
    invoices::table
        .filter(invoices::payment_id.eq(payment_id))
        .select(InvoiceRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The tenant's invoices (of one customer), oldest first, after `starting_after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    customer_id: Option<CustomerId>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<InvoiceRow>> {
    let mut q = invoices::table.filter(invoices::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(c) = customer_id {
        q = q.filter(invoices::customer_id.eq(c));
    }
    if let Some(after) = starting_after {
        q = q.filter(invoices::id.gt(after));
    }
    q.order(invoices::id).limit(limit).select(InvoiceRow::as_select()).load(conn).await
}

/// Records a transfer; `false` when the tenant already has one with its reference.
pub async fn record_transfer(conn: &mut AsyncPgConnection, row: &TransferRow) -> QueryResult<bool> {
    let n = diesel::insert_into(invoice_payments::table).values(row).on_conflict_do_nothing().execute(conn).await?;
    Ok(n == 1)
}

/// True when the tenant recorded a transfer under `reference`.
pub async fn transfer_exists(conn: &mut AsyncPgConnection, tenant_id: TenantId, reference: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        invoice_payments::table
            .filter(invoice_payments::tenant_id.eq(tenant_id))
            .filter(invoice_payments::reference.eq(reference)),
    ))
    .get_result(conn)
    .await
}

/// An invoice's transfers, in order.
pub async fn transfers(conn: &mut AsyncPgConnection, invoice_id: Uuid) -> QueryResult<Vec<TransferRow>> {
    invoice_payments::table
        .filter(invoice_payments::invoice_id.eq(invoice_id))
        .order((invoice_payments::recorded_at, invoice_payments::id))
        .select(TransferRow::as_select())
        .load(conn)
        .await
}

/// Records an act; `false` when the invoice already has one.
pub async fn insert_act(conn: &mut AsyncPgConnection, row: &ActRow) -> QueryResult<bool> {
    let n = diesel::insert_into(acts::table).values(row).on_conflict_do_nothing().execute(conn).await?;
    Ok(n == 1)
}

pub async fn act_of_invoice(conn: &mut AsyncPgConnection, invoice_id: Uuid) -> QueryResult<Option<ActRow>> {
    acts::table.filter(acts::invoice_id.eq(invoice_id)).select(ActRow::as_select()).first(conn).await.optional()
}

pub async fn find_act(conn: &mut AsyncPgConnection, tenant_id: TenantId, id: Uuid) -> QueryResult<Option<ActRow>> {
    acts::table
        .filter(acts::tenant_id.eq(tenant_id))
        .filter(acts::id.eq(id))
        .select(ActRow::as_select())
        .first(conn)
        .await
        .optional()
}
