//! 54-FZ receipts (SPEC §7): an income receipt for every captured payment and an
//! income-refund receipt for every refund paid back, built by the domain
//! (`domain::receipt`) from the tenant's fiscal settings (plan-level overrides of
//! VAT and payment object respected) and the customer's e-mail, stored, and
//! registered by the worker ([`super::receipt_registration`]).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt, stored_money};
use crate::db::customers as customers_db;
use crate::db::outbox::{self, EventData, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::receipts::{self as db, ReceiptRow};
use crate::db::refunds::RefundRow;
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::money::MoneyView;
use crate::domain::plan::PlanFiscal;
use crate::domain::receipt::{Basis, FiscalAttributes, ReceiptDocument, document, net_of_cashback, refund_lines};
use crate::domain::states::{LineKind, PaymentKind, ReceiptKind, ReceiptStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::queue::jobs::Job;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReceiptView {
    pub id: Uuid,
    pub payment_id: PaymentId,
    pub refund_id: Option<Uuid>,
    pub kind: ReceiptKind,
    pub status: ReceiptStatus,
    pub total: MoneyView,
    /// The document sent to the fiscal provider: client, company, items
    /// (name, price, quantity, sum, payment_method, payment_object, vat), payments,
    /// total. Amounts are decimal strings here, as everywhere in this API (ATOL gets
    /// them as JSON numbers with two decimals).
    #[schema(value_type = Object)]
    pub receipt: Value,
    /// The current registration attempt; its external_id is `<id>-<attempt>`.
    pub attempt: i32,
    pub external_id: String,
    /// Fiscal attributes once registered: fiscal_document_number,
    /// fiscal_document_attribute (the fiscal sign), fn_number (the storage),
    /// receipt_datetime, shift_number, ecr_registration_number, ofd_receipt_url...
    #[schema(value_type = Option<Object>)]
    pub fiscal: Option<Value>,
    pub failure_reason: Option<String>,
    pub registered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

pub(crate) fn view(r: &ReceiptRow) -> ServiceResult<ReceiptView> {
    Ok(ReceiptView {
        id: r.id,
        payment_id: r.payment_id,
        refund_id: r.refund_id,
        kind: r.kind,
        status: r.status,
        total: stored_money(r.total, &r.currency, "receipt total")?.into(),
        receipt: document_view(&r.document)?,
        attempt: r.attempt,
        external_id: external_id(r),
        fiscal: r.fiscal.as_deref().map(fiscal_view).transpose()?,
        failure_reason: r.failure_reason.clone(),
        registered_at: r.registered_at,
        created_at: r.created_at,
    })
}

fn amount(d: Decimal) -> Value {
    Value::String(format!("{d:.2}"))
}

/// The stored document with its amounts as decimal strings.
fn document_view(text: &str) -> ServiceResult<Value> {
    let r: ReceiptDocument = serde_json::from_str(text).map_err(|e| corrupt("receipt", e))?;
    let items: Vec<Value> = r
        .items
        .iter()
        .map(|i| {
            json!({"name": i.name, "price": amount(i.price), "quantity": i.quantity.normalize().to_string(),
                   "measure": i.measure, "sum": amount(i.sum), "payment_method": i.payment_method,
                   "payment_object": i.payment_object, "vat": {"type": i.vat.kind}})
        })
        .collect();
    let payments: Vec<Value> = r.payments.iter().map(|p| json!({"type": p.kind, "sum": amount(p.sum)})).collect();
    Ok(
        json!({"client": r.client, "company": r.company, "items": items, "payments": payments, "total": amount(r.total)}),
    )
}

/// The stored fiscal attributes, the total as a decimal string.
fn fiscal_view(text: &str) -> ServiceResult<Value> {
    let p: FiscalAttributes = serde_json::from_str(text).map_err(|e| corrupt("fiscal attributes", e))?;
    let total = p.total;
    let mut v = serde_json::to_value(p).map_err(|e| corrupt("fiscal attributes", e))?;
    if let Some(o) = v.as_object_mut() {
        o.insert("total".into(), total.map_or(Value::Null, amount));
    }
    Ok(v)
}

pub(crate) fn external_id(r: &ReceiptRow) -> String {
    format!("{}-{}", r.id, r.attempt)
}

/// The receipt and registration attempt an [`external_id`] names: `(id, attempt)`,
/// `None` unless the text is `<uuid>-<attempt ≥ 1>`.
fn parse_external_id(text: &str) -> Option<(Uuid, i32)> {
    let (id, attempt) = text.rsplit_once('-')?;
    Some((Uuid::parse_str(id).ok()?, attempt.parse().ok().filter(|a: &i32| *a > 0)?))
}

/// Whether `tenant` issues receipts for `payment` at all: it has fiscal settings,
/// and the payment is not an invoice paid by a legal entity's bank transfer (54-FZ
/// art. 2 p. 9: settlements between organisations and entrepreneurs by bank
/// transfer without an electronic means of payment).
pub(super) fn receipted_at_all(tenant: &Tenant, payment: &PaymentRow) -> bool {
    tenant.fiscal.is_some() && payment.gateway != super::payments::INVOICE
}

/// What a receipt of `payment` records, one line `(name, sum)` per charged thing
/// (net of cashback spent, GATEWAYS.md §5 and `domain::receipt::net_of_cashback`),
/// and on what basis: a top-up is an advance, a payment from the prepaid money
/// offsets it, a card payment is cashless.
fn receipted(payment: &PaymentRow) -> ServiceResult<(Vec<(String, Decimal)>, Basis)> {
    let lines = super::payments::lines_of(payment)?;
    let named =
        lines.iter().map(|l| Ok((l.description.clone(), l.money()?.amount()))).collect::<ServiceResult<Vec<_>>>()?;
    let tariff: Vec<bool> = lines.iter().map(|l| matches!(l.kind, LineKind::Tariff | LineKind::Upgrade)).collect();
    let basis = if payment.kind == PaymentKind::TopUp {
        Basis::Advance
    } else if payment.from_prepaid > Decimal::ZERO {
        Basis::PrepaymentOffset
    } else {
        Basis::Cashless
    };
    Ok((net_of_cashback(&named, &tariff, payment.from_cashback), basis))
}

async fn plan_overrides(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> ServiceResult<Option<PlanFiscal>> {
    match payment.plan_id {
        Some(plan) => Ok(super::plans::load_cached(conn, plan).await?.fiscal),
        None => Ok(None),
    }
}

/// What a receipt is of: a payment (or its refund), the lines it records `(name,
/// sum)` and on what basis.
struct Subject<'a> {
    payment: &'a PaymentRow,
    refund: Option<&'a RefundRow>,
    lines: &'a [(String, Decimal)],
    basis: Basis,
}

impl Subject<'_> {
    /// Whether `tenant` issues it at all: it has fiscal settings and something was
    /// paid in money (not all of it cashback).
    fn receipted_by(&self, tenant: &Tenant) -> bool {
        tenant.fiscal.is_some() && !self.lines.iter().all(|(_, sum)| sum.is_zero())
    }
}

/// Creates a receipt (once per payment or refund) and its registration job.
async fn create(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    subject: Subject<'_>,
) -> ServiceResult<()> {
    if !subject.receipted_by(tenant) {
        return Ok(());
    }
    let email = customers_db::email_of(conn, subject.payment.customer_id).await?;
    let Some(row) = row_of(conn, now, tenant, &subject, &email).await? else {
        return Ok(());
    };
    if db::insert(conn, &row).await? {
        let job = registration_job(tenant.id, subject.payment.ordering_key(), row.id);
        outbox::emit(conn, now, job).await?;
    }
    Ok(())
}

/// The receipt of a subject as first stored: `pending`, at attempt 1; `None` when
/// the tenant does not issue it ([`Subject::receipted_by`]).
async fn row_of(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    subject: &Subject<'_>,
    email: &str,
) -> ServiceResult<Option<ReceiptRow>> {
    let Some(fiscal) = tenant.fiscal.as_ref().filter(|_| subject.receipted_by(tenant)) else { return Ok(None) };
    let Subject { payment, refund, lines, basis } = *subject;
    let doc = document(fiscal, plan_overrides(conn, payment).await?, email, lines, basis)
        .map_err(|e| ServiceError::Internal(format!("receipt of payment {}: {e}", payment.id)))?;
    Ok(Some(ReceiptRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        payment_id: payment.id,
        refund_id: refund.map(|r| r.id),
        kind: if refund.is_some() { ReceiptKind::IncomeRefund } else { ReceiptKind::Income },
        status: ReceiptStatus::Pending,
        total: doc.total,
        document: serde_json::to_string(&doc).map_err(|e| corrupt("receipt", e))?,
        currency: payment.currency.clone(),
        attempt: 1,
        provider_uuid: None,
        failure_reason: None,
        fiscal: None,
        registered_at: None,
        created_at: now,
        attempt_failed: false,
    }))
}

/// A receipt's messages are ordered with its payment's: by its subscription, else
/// its customer (`payer`: the payment's subscription and customer).
pub(crate) fn ordering((subscription, customer): (Option<SubscriptionId>, CustomerId)) -> Uuid {
    subscription.map_or(customer.0, Uuid::from)
}

/// The registration job of receipt `id`, ordered by `ordering` (its payment's key);
/// written to the outbox, so it is published exactly when the caller's
/// transaction commits.
pub(crate) fn registration_job(tenant_id: TenantId, ordering: Uuid, id: Uuid) -> NewEvent {
    NewEvent::job(tenant_id, ordering, Job::RegisterReceipt { receipt_id: id })
}

/// The income receipt of a captured payment (nothing when the tenant has no
/// fiscal settings).
pub async fn create_income(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<()> {
    if !receipted_at_all(tenant, payment) {
        return Ok(());
    }
    let (lines, basis) = receipted(payment)?;
    create(conn, now, tenant, Subject { payment, refund: None, lines: &lines, basis }).await
}

/// The income receipts of a wave of captured renewals (the renewal batch,
/// [`super::renewal_batches`]): built as [`create_income`] builds one, the
/// customers' e-mails read and the receipts written in one statement each. Returns
/// one registration job per tenant for the receipts inserted
/// ([`super::receipt_waves`]), for the batch's own outbox statement.
pub async fn create_income_many(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    paid: &[(PaymentRow, &Tenant)],
) -> ServiceResult<Vec<NewEvent>> {
    let issued: Vec<&(PaymentRow, &Tenant)> = paid.iter().filter(|(p, t)| receipted_at_all(t, p)).collect();
    if issued.is_empty() {
        return Ok(Vec::new());
    }
    let customers: Vec<CustomerId> = issued.iter().map(|(p, _)| p.customer_id).collect();
    let emails = customers_db::emails_of(conn, &customers).await?;
    let mut rows = Vec::with_capacity(issued.len());
    for (payment, tenant) in issued {
        let email = emails
            .get(&payment.customer_id)
            .ok_or_else(|| ServiceError::Internal(format!("payment {} has no customer", payment.id)))?;
        let (lines, basis) = receipted(payment)?;
        let subject = Subject { payment, refund: None, lines: &lines, basis };
        rows.extend(row_of(conn, now, tenant, &subject, email).await?);
    }
    let inserted: HashSet<Uuid> = db::insert_many(conn, &rows).await?.into_iter().collect();
    // Round 0 of each wave, delivered at once (super::receipt_waves::process_wave).
    let waves = rows.iter().filter(|r| inserted.contains(&r.id)).map(|r| (r.tenant_id, r.id));
    Ok(NewEvent::waves(waves, usize::MAX, |receipt_ids| Job::RegisterReceipts { receipt_ids, round: 0 }))
}

/// The refund receipt of a refund paid back (`payment.refunded_amount` already
/// includes it).
pub async fn create_refund(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &RefundRow,
) -> ServiceResult<()> {
    if !receipted_at_all(tenant, payment) {
        return Ok(());
    }
    // It mirrors what was receipted: money paid back to the balance is the
    // prepaid part (prepaid first), the cashback part was never receipted.
    let (paid_lines, basis) = receipted(payment)?;
    let earlier = payment.refunded_amount - refund.amount;
    let (earlier, amount) = if (refund.to_prepaid + refund.to_cashback).is_zero() {
        (earlier, refund.amount)
    } else {
        (earlier.min(payment.from_prepaid), refund.to_prepaid)
    };
    if amount.is_zero() {
        return Ok(());
    }
    let lines = refund_lines(&paid_lines, earlier, amount)
        .map_err(|e| ServiceError::Internal(format!("refund receipt of payment {}: {e}", payment.id)))?;
    create(conn, now, tenant, Subject { payment, refund: Some(refund), lines: &lines, basis }).await
}

/// `GET /v1/receipts?payment_id=`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    payment_id: Option<PaymentId>,
    statuses: &[ReceiptStatus],
    page: PageRequest,
) -> ServiceResult<Page<ReceiptView>> {
    let rows = db::list(conn, tenant.id, payment_id, statuses, page.starting_after, page.fetch()).await?;
    let views = rows.iter().map(view).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page::from_rows(views, page, |v| v))
}

/// Emits a receipt event (`receipt.registered`, `receipt.failed`), ordered with its payment's events.
pub(crate) async fn emit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    row: &ReceiptRow,
    ty: &'static str,
) -> ServiceResult<()> {
    let payer = payments_db::payer_of(conn, row.payment_id).await?;
    outbox::emit(conn, now, event_of(row, payer, ty)?).await?;
    Ok(())
}

/// `data` of the receipt events: the receipt without its document (GET
/// /v1/receipts has it), with its payment's subscription, `external_id` and the
/// fiscal attributes once registered (API.md, "Events to product backends").
#[derive(Serialize)]
struct ReceiptEvent<'a> {
    id: Uuid,
    payment_id: PaymentId,
    refund_id: Option<Uuid>,
    subscription_id: Option<SubscriptionId>,
    kind: ReceiptKind,
    status: ReceiptStatus,
    total: MoneyView,
    attempt: i32,
    external_id: String,
    fiscal: Option<Value>,
    failure_reason: &'a Option<String>,
    registered_at: Option<DateTime<Utc>>,
}

/// A receipt event of `ty` for `row` of a payment made by `payer` (its subscription,
/// if any, and customer): [`ReceiptEvent`], ordered with the payment's messages (by
/// its subscription, else customer). Errors: `Internal` when the stored total or
/// fiscal attributes do not parse.
pub(crate) fn event_of(
    row: &ReceiptRow,
    (subscription_id, customer_id): (Option<SubscriptionId>, CustomerId),
    ty: &'static str,
) -> ServiceResult<NewEvent> {
    let data = ReceiptEvent {
        id: row.id,
        payment_id: row.payment_id,
        refund_id: row.refund_id,
        subscription_id,
        kind: row.kind,
        status: row.status,
        total: stored_money(row.total, &row.currency, "receipt total")?.into(),
        attempt: row.attempt,
        external_id: external_id(row),
        fiscal: row.fiscal.as_deref().map(fiscal_view).transpose()?,
        failure_reason: &row.failure_reason,
        registered_at: row.registered_at,
    };
    let data = EventData::of(&data).map_err(|e| ServiceError::Internal(format!("receipt {} event: {e}", row.id)))?;
    Ok(NewEvent::event(row.tenant_id, ordering((subscription_id, customer_id)), ty, data))
}

/// Enqueues another registration job for receipt `id` of `payment_id`, ordered
/// with its payment's messages (the provider's callback below, an operator's
/// resend: [`super::receipt_registration::resend`]).
pub(crate) async fn enqueue_again(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant_id: TenantId,
    payment_id: PaymentId,
    id: Uuid,
) -> ServiceResult<()> {
    let payer = payments_db::payer_of(conn, payment_id).await?;
    outbox::emit(conn, now, registration_job(tenant_id, ordering(payer), id)).await?;
    Ok(())
}

/// The fiscal provider's callback (ATOL's): only a hint that a report is ready. The
/// receipt it names — by the `external_id` we sent (`<receipt id>-<attempt>`), at the
/// document `uuid` we recorded for that attempt — is polled by the worker; nothing
/// else is taken from the body, and a callback naming no such pending receipt does
/// nothing. Errors: `invalid_callback` (422) without both fields.
pub async fn hint(conn: &mut AsyncPgConnection, now: DateTime<Utc>, tenant: &Tenant, body: &[u8]) -> ServiceResult<()> {
    let body = serde_json::from_slice::<Value>(body).ok();
    let field = |name: &str| body.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str);
    let (Some(uuid), Some(document)) = (field("uuid"), field("external_id").and_then(parse_external_id)) else {
        return Err(ServiceError::invalid(
            "invalid_callback",
            "an ATOL callback needs the document's uuid and the external_id it was registered with",
        ));
    };
    if let Some(payment_id) = db::pending_document(conn, tenant.id, document, uuid).await? {
        enqueue_again(conn, now, tenant.id, payment_id, document.0).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_external_id;
    use uuid::Uuid;

    #[test]
    fn an_external_id_names_its_receipt_and_attempt() {
        let id = Uuid::parse_str("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(parse_external_id(&format!("{id}-1")), Some((id, 1)));
        assert_eq!(parse_external_id(&format!("{id}-12")), Some((id, 12)));
        for bad in [format!("{id}"), format!("{id}-0"), format!("{id}-x"), "rcpt-inv-1-sell".into(), String::new()] {
            assert_eq!(parse_external_id(&bad), None, "{bad}");
        }
    }
}
