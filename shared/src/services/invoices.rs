//! Invoices for bank transfer (SPEC §8; SellerGPT 3.1.2-3.1.3, 4.3; Alfa CRM 5.3).
//!
//! * `pay_with: "invoice"` (a customer with a `legal_entity`, a tenant with
//!   `requisites`) issues a numbered invoice for the payment: numbers run per
//!   tenant and year without gaps or duplicates (`db::invoices::next_number`);
//!   it is due at the end of the tenant's `invoice_due_days`-th day, and a
//!   purchase waiting for it waits until then (`invoice.issued`).
//! * Money arrives by `POST /v1/invoices/{id}/mark-paid {amount, paid_at,
//!   reference}` or a bank statement import (`bank_statements`). Each transfer is
//!   recorded once per reference and becomes the customer's prepaid money
//!   (`balance.credited`, source `bank_transfer`); as soon as that money covers
//!   the invoice, it pays it (`invoice.paid`) and the payment applies like any
//!   other — access within the day the money is recorded (SellerGPT 3.1.3) —
//!   and a closing act is issued for the period it paid for (`acts`).
//! * **Underpaid**: the invoice is `partially_paid` and waits for the rest until
//!   it is due; what arrived stays on the prepaid balance. **Overpaid**: the
//!   invoice is paid, the excess stays on the prepaid balance. **Late** (money
//!   that arrived after the due date, or once the invoice's payment expired or
//!   was replaced): the money stays on the prepaid balance, to be spent with
//!   `pay_with: "balance"`; the outcome says so. A paid invoice takes no more
//!   transfers (409).
//! * No 54-FZ receipt: a legal entity's bank transfer needs none (art. 2 p. 9).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::balance_payments::{self, Take};
use super::tenants::Tenant;
use super::{acts, balance, payments};
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::customers as customers_db;
use crate::db::invoices::{self as db, InvoiceRow, TransferRow};
use crate::db::ledger;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::domain::invoice::{self, Buyer, DocumentLine, Requisites};
use crate::domain::ledger::Posting;
use crate::domain::money::{Money, MoneyInput, MoneyView};
use crate::domain::states::{AttemptChannel, DocumentKind, InvoiceStatus, PaymentStatus, TransferSource};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};

/// An invoice as the product (and its customer) sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct InvoiceView {
    pub id: Uuid,
    /// `YYYY-NNNNN`, per tenant and year; the payment's purpose should name it.
    pub number: String,
    pub status: InvoiceStatus,
    pub customer_id: crate::domain::ids::CustomerId,
    pub payment_id: crate::domain::ids::PaymentId,
    pub subscription_id: Option<crate::domain::ids::SubscriptionId>,
    pub seller: Requisites,
    pub buyer: Buyer,
    pub lines: Vec<DocumentLine>,
    pub total: MoneyView,
    /// «Без НДС», or «В том числе НДС 22%» with `vat_amount`.
    pub vat_label: String,
    pub vat_amount: Option<MoneyView>,
    pub total_in_words: String,
    pub amount_received: MoneyView,
    /// What is still to be paid (zero once paid).
    pub amount_due: MoneyView,
    pub issued_at: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub transfers: Vec<TransferView>,
    /// The closing act of the period it paid for, once paid.
    pub act_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransferView {
    pub amount: MoneyView,
    pub paid_at: DateTime<Utc>,
    pub reference: String,
    pub source: TransferSource,
    pub recorded_at: DateTime<Utc>,
}

/// `POST /v1/invoices/{id}/mark-paid`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"amount": {"value": "1390.00", "currency": "RUB"}, "paid_at": "2026-03-06T10:00:00Z", "reference": "payment order 123"})))]
pub struct TransferSpec {
    /// What arrived (it may be less or more than the invoice).
    pub amount: MoneyInput,
    /// When the money reached the tenant's account (not in the future).
    pub paid_at: DateTime<Utc>,
    /// The bank document or note it is known by: unique per tenant.
    pub reference: String,
}

/// What a transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// The invoice is paid; anything above its total stays on the prepaid balance.
    Paid,
    /// Less than the total so far: the invoice waits for the rest.
    PartiallyPaid,
    /// The invoice's payment expired or was replaced: the money stays on the
    /// customer's prepaid balance.
    Late,
}

/// The answer to `mark-paid`: the invoice and what the transfer did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransferAnswer {
    pub outcome: TransferOutcome,
    pub invoice: InvoiceView,
}

fn money(amount: Decimal, currency: &str) -> ServiceResult<Money> {
    super::stored_money(amount, currency, "invoice amount")
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ServiceError {
    super::corrupt(what, e)
}

/// Issues the invoice collecting `payment` (pending, of a customer with a legal
/// entity), and records that the payment is collected by it.
pub(crate) async fn issue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
) -> ServiceResult<()> {
    let Some(seller) = tenant.requisites.clone() else {
        return Err(ServiceError::invalid("requisites_missing", "set the tenant's requisites to issue invoices"));
    };
    let customer = customers_db::find(conn, tenant.id, payment.customer_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer_not_found", "no such customer"))?;
    let Some(legal) = customer.legal_entity else {
        return Err(ServiceError::invalid(
            "legal_entity_required",
            "invoices are issued to customers with a legal_entity (name, INN): pay with \"card\" instead",
        ));
    };
    let buyer: Buyer = serde_json::from_value(legal).map_err(|e| corrupt("customer legal entity", e))?;
    let year = invoice::numbering_year(now, tenant.tz);
    let seq = db::next_number(conn, tenant.id, DocumentKind::Invoice, year).await?;
    let due_at = invoice::due_at(now, seller.invoice_due_days, tenant.tz);
    let lines: Vec<DocumentLine> = payments::lines_of(payment)?
        .iter()
        .map(|l| Ok(DocumentLine { name: l.description.clone(), amount: l.money()?.amount() }))
        .collect::<ServiceResult<_>>()?;
    let row = InvoiceRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        customer_id: payment.customer_id,
        payment_id: payment.id,
        subscription_id: payment.subscription_id,
        number: invoice::number(year, seq),
        status: InvoiceStatus::Issued,
        total: payment.amount,
        amount_received: Decimal::ZERO,
        currency: payment.currency.clone(),
        seller: serde_json::to_value(&seller).map_err(|e| corrupt("requisites", e))?,
        buyer: serde_json::to_value(&buyer).map_err(|e| corrupt("buyer", e))?,
        lines: serde_json::to_value(&lines).map_err(|e| corrupt("invoice lines", e))?,
        issued_at: now,
        due_at,
        paid_at: None,
    };
    db::insert(conn, &row).await?;
    payment.gateway = payments::INVOICE.to_owned();
    payment.expires_at = Some(due_at);
    payments_db::save(conn, payment).await?;
    let attempt_no = attempts_db::next_attempt_no(conn, payment.id).await?;
    let mut attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, AttemptChannel::Invoice, None, now);
    attempt.invoice_id = row.number.clone();
    attempts_db::insert_attempt(conn, &attempt).await?;
    // A purchase waits for its invoice until the invoice is due.
    if let Some(sub_id) = payment.subscription_id {
        let mut sub = super::subscriptions::lock_by_id(conn, sub_id).await?;
        if sub.status == SubscriptionStatus::PendingPayment {
            sub.pending_until = Some(due_at);
            super::subscriptions::store(conn, now, tenant, &mut sub).await?;
        }
    }
    outbox::emit(conn, now, event(payment, &row, "invoice.issued")?).await?;
    Ok(())
}

fn event(payment: &PaymentRow, row: &InvoiceRow, ty: &'static str) -> ServiceResult<NewEvent> {
    let data = json!({
        "invoice_id": row.id,
        "number": row.number,
        "status": row.status,
        "customer_id": row.customer_id,
        "payment_id": row.payment_id,
        "subscription_id": row.subscription_id,
        "total": MoneyView::from(money(row.total, &row.currency)?),
        "amount_received": MoneyView::from(money(row.amount_received, &row.currency)?),
        "due_at": row.due_at,
        "paid_at": row.paid_at,
    });
    Ok(NewEvent::event(row.tenant_id, payment.ordering_key(), ty, data))
}

/// Money received by bank transfer, as recorded.
pub(crate) struct Received<'a> {
    pub amount: Money,
    /// When it reached the tenant's account.
    pub paid_at: DateTime<Utc>,
    /// Unique per tenant: the same reference is never recorded twice.
    pub reference: &'a str,
    pub source: TransferSource,
}

/// Records money received for `invoice` (locked by the caller), credits it to
/// the customer's prepaid money, and pays the invoice once that covers it. 409
/// `invoice_already_paid`, `duplicate_payment_reference`.
pub(crate) async fn receive(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    invoice: &mut InvoiceRow,
    received: Received<'_>,
) -> ServiceResult<TransferOutcome> {
    let Received { amount, paid_at, reference, source } = received;
    let duplicate = || {
        ServiceError::conflict(
            "duplicate_payment_reference",
            format!("a transfer with reference {reference:?} is already recorded"),
        )
    };
    if db::transfer_exists(conn, tenant.id, reference).await? {
        return Err(duplicate());
    }
    if invoice.status == InvoiceStatus::Paid {
        return Err(ServiceError::conflict("invoice_already_paid", format!("invoice {} is paid", invoice.number)));
    }
    if amount.currency().code() != invoice.currency || amount.is_zero() {
        return Err(ServiceError::invalid(
            "invalid_money",
            format!("amount must be a positive {} amount", invoice.currency),
        ));
    }
    let transfer = TransferRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        invoice_id: invoice.id,
        amount: amount.amount(),
        currency: invoice.currency.clone(),
        paid_at,
        reference: reference.to_owned(),
        source,
        recorded_at: now,
    };
    if !db::record_transfer(conn, &transfer).await? {
        return Err(duplicate());
    }
    let mut payment = payments_db::find_for_update(conn, invoice.payment_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("payment of invoice {} vanished", invoice.number)))?;
    let posting = Posting::bank_transfer(format!("оплата по счету {}", invoice.number), payment.customer_id, amount);
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    let credited = balance::event(conn, tenant, &payment, true, "bank_transfer", amount).await?;
    outbox::emit(conn, now, credited).await?;
    invoice.amount_received += amount.amount();
    let outcome = if payment.status != PaymentStatus::Pending || paid_at > invoice.due_at {
        TransferOutcome::Late
    } else if invoice.amount_received < invoice.total {
        invoice.status = InvoiceStatus::PartiallyPaid;
        TransferOutcome::PartiallyPaid
    } else {
        balance_payments::pay(conn, now, tenant, &mut payment, Take::Invoice).await?;
        invoice.status = InvoiceStatus::Paid;
        invoice.paid_at = Some(now);
        TransferOutcome::Paid
    };
    db::save(conn, invoice).await?;
    if outcome == TransferOutcome::Paid {
        outbox::emit(conn, now, event(&payment, invoice, "invoice.paid")?).await?;
        let payment = payments_db::find(conn, tenant.id, payment.id).await?.unwrap_or(payment);
        acts::issue(conn, now, tenant, invoice, &payment).await?;
    }
    Ok(outcome)
}

/// `POST /v1/invoices/{id}/mark-paid`.
pub async fn mark_paid(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
    spec: TransferSpec,
) -> ServiceResult<TransferAnswer> {
    let amount = spec.amount.money().map_err(|e| ServiceError::invalid(e.code(), e.to_string()))?;
    let reference = spec.reference.trim();
    if reference.is_empty() || reference.chars().count() > 300 {
        return Err(ServiceError::validation("reference must be 1..300 characters"));
    }
    if spec.paid_at > now {
        return Err(ServiceError::validation("paid_at must not be in the future"));
    }
    let mut invoice = db::find(conn, tenant.id, id, true).await?.ok_or_else(not_found)?;
    let reference = format!("manual:{reference}");
    let received = Received { amount, paid_at: spec.paid_at, reference: &reference, source: TransferSource::Manual };
    let outcome = receive(conn, now, tenant, &mut invoice, received).await?;
    Ok(TransferAnswer { outcome, invoice: view(conn, &invoice).await? })
}

pub(crate) fn not_found() -> ServiceError {
    ServiceError::not_found("invoice_not_found", "no such invoice")
}

pub async fn get(conn: &mut AsyncPgConnection, tenant: &Tenant, id: Uuid) -> ServiceResult<InvoiceView> {
    let row = db::find(conn, tenant.id, id, false).await?.ok_or_else(not_found)?;
    view(conn, &row).await
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    customer_id: Option<crate::domain::ids::CustomerId>,
    page: super::PageRequest,
) -> ServiceResult<super::Page<InvoiceView>> {
    let rows = db::list(conn, tenant.id, customer_id, page.starting_after, page.fetch()).await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in &rows {
        views.push(view(conn, r).await?);
    }
    Ok(super::Page::from_rows(views, page, |v| v))
}

pub(crate) async fn view(conn: &mut AsyncPgConnection, r: &InvoiceRow) -> ServiceResult<InvoiceView> {
    let seller: Requisites = serde_json::from_value(r.seller.clone()).map_err(|e| corrupt("invoice seller", e))?;
    let (vat_label, vat_amount) = invoice::vat_line(r.total, seller.vat);
    let transfers = db::transfers(conn, r.id).await?;
    let act = db::act_of_invoice(conn, r.id).await?;
    let due =
        if r.status == InvoiceStatus::Paid { Decimal::ZERO } else { (r.total - r.amount_received).max(Decimal::ZERO) };
    Ok(InvoiceView {
        id: r.id,
        number: r.number.clone(),
        status: r.status,
        customer_id: r.customer_id,
        payment_id: r.payment_id,
        subscription_id: r.subscription_id,
        buyer: serde_json::from_value(r.buyer.clone()).map_err(|e| corrupt("invoice buyer", e))?,
        lines: serde_json::from_value(r.lines.clone()).map_err(|e| corrupt("invoice lines", e))?,
        total: money(r.total, &r.currency)?.into(),
        vat_label,
        vat_amount: vat_amount.map(|v| money(v, &r.currency)).transpose()?.map(Into::into),
        total_in_words: invoice::amount_in_words(r.total),
        amount_received: money(r.amount_received, &r.currency)?.into(),
        amount_due: money(due, &r.currency)?.into(),
        issued_at: r.issued_at,
        due_at: r.due_at,
        paid_at: r.paid_at,
        transfers: transfers
            .into_iter()
            .map(|t| {
                Ok(TransferView {
                    amount: money(t.amount, &t.currency)?.into(),
                    paid_at: t.paid_at,
                    reference: t.reference,
                    source: t.source,
                    recorded_at: t.recorded_at,
                })
            })
            .collect::<ServiceResult<_>>()?,
        act_id: act.map(|a| a.id),
        seller,
    })
}

/// The invoice collecting a payment, if one does.
pub async fn of_payment(
    conn: &mut AsyncPgConnection,
    payment_id: crate::domain::ids::PaymentId,
) -> ServiceResult<Option<InvoiceView>> {
    match db::of_payment(conn, payment_id).await? {
        Some(r) => Ok(Some(view(conn, &r).await?)),
        None => Ok(None),
    }
}
