//! Payments: views and the events that describe them.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::plans::Plan;
use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt, stored_money};
use crate::db::customers as customers_db;
use crate::db::outbox::EventData;
use crate::db::payments::{self as db, Payer, PaymentRow};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId};
use crate::domain::ledger::Funding;
use crate::domain::money::{Currency, Money, MoneyView};
use crate::domain::states::{AttemptChannel, AttemptStatus, LineKind, PaymentKind, PaymentStatus};
use crate::domain::subscription::Subscription;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::gateways::{CheckoutRequest, Confirmation};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentView {
    pub id: PaymentId,
    pub customer_id: CustomerId,
    pub subscription_id: Option<SubscriptionId>,
    pub kind: PaymentKind,
    pub status: PaymentStatus,
    pub amount: MoneyView,
    pub refunded_amount: MoneyView,
    pub description: String,
    pub gateway: String,
    pub gateway_transaction_id: Option<String>,
    pub failure_reason: Option<String>,
    pub failure_code: Option<String>,
    /// Set on a second capture of an already paid invoice.
    pub duplicate_of: Option<PaymentId>,
    /// The period this payment pays for, when it pays for one.
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// A pending payment can no longer be paid after this instant.
    pub expires_at: Option<DateTime<Utc>>,
    pub captured_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// What the payment charges, one line per charged thing (the tariff, an
    /// upgrade's surcharge, overage per metric); the lines add up to `amount`.
    pub lines: Vec<Line>,
    /// An upgrade's quote: the plans, the unused-time credit and the new charge.
    #[schema(value_type = Option<Object>)]
    pub plan_change: Option<Value>,
    /// How the customer pays a pending payment (for CloudPayments, the checkout
    /// widget's parameters), while a card payment is open.
    pub confirmation: Option<Confirmation>,
    /// Taken from the customer's prepaid money (`pay_with: "balance"`).
    pub from_prepaid: MoneyView,
    /// Taken from the customer's cashback (tariffs only).
    pub from_cashback: MoneyView,
    /// Cashback this payment credited to the customer (its plan's `cashback_rate`).
    pub cashback_earned: MoneyView,
    /// The invoice collecting it (`pay_with: "invoice"`): `GET /v1/invoices/{id}`.
    pub invoice_id: Option<uuid::Uuid>,
}

/// One charged thing of a payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    pub kind: LineKind,
    pub description: String,
    /// Overage: the metric and the units above the quota at `unit_price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<i64>,
    /// Overage: the price per unit (up to six decimals, at least two).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<MoneyView>)]
    pub unit_price: Option<crate::domain::money::UnitPrice>,
    pub amount: MoneyView,
}

impl Line {
    pub fn new(kind: LineKind, description: String, amount: Money) -> Line {
        Line { kind, description, metric: None, quantity: None, unit_price: None, amount: amount.into() }
    }

    pub fn money(&self) -> ServiceResult<Money> {
        self.amount.money().map_err(|e| corrupt("line amount", e))
    }
}

/// Who pays, for a new payment of the tenant's gateway.
pub fn payer(tenant: &Tenant, customer_id: CustomerId, subscription_id: Option<SubscriptionId>) -> Payer<'_> {
    Payer { tenant_id: tenant.id, gateway: tenant.gateway.kind(), customer_id, subscription_id }
}

/// The gateway name of payments collected by an invoice (bank transfer).
pub const INVOICE: &str = "invoice";

/// How a product asks to collect a payment (`pay_with`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayWith {
    /// A new card payment through the gateway's checkout widget.
    #[default]
    Card,
    /// The customer's saved card, charged at once.
    SavedCard,
    /// The customer's prepaid balance.
    Balance,
    /// A bank-transfer invoice (legal entities).
    Invoice,
}

/// The receipt and payment description of a plan's tariff.
pub fn describe(tenant: &Tenant, plan: &Plan) -> String {
    format!("{}: тариф {}", tenant.name, plan.name)
}

/// A pending `purchase`, `renewal` or `extension` payment of `plan`'s tariff at
/// `version` (the caller sets what else it pays for: period, expiry).
pub fn tariff_payment(
    tenant: &Tenant,
    sub: &Subscription,
    kind: PaymentKind,
    plan: &Plan,
    version: &crate::domain::plan::PriceVersion,
    now: DateTime<Utc>,
) -> PaymentRow {
    let tariff = describe(tenant, plan);
    let description = if kind == PaymentKind::Purchase { tariff } else { format!("{tariff}, продление") };
    let mut payment =
        PaymentRow::pending(payer(tenant, sub.customer_id, Some(sub.id)), kind, version.price, description, now);
    payment.plan_id = Some(plan.id);
    payment.price_id = Some(version.id);
    payment
}

/// The payment's lines: stored when there are several, else one line for the whole
/// amount named by the payment's kind.
pub fn lines_of(p: &PaymentRow) -> ServiceResult<Vec<Line>> {
    match &p.lines {
        Some(v) => Vec::<Line>::deserialize(v).map_err(|e| corrupt("payment lines", e)),
        None => Ok(vec![Line::new(p.kind.line_kind(), p.description.clone(), money_of(p)?)]),
    }
}

/// Sets a payment's lines and its amount to their sum.
pub fn set_lines(p: &mut PaymentRow, lines: &[Line]) -> ServiceResult<()> {
    let mut total = Money::zero(Currency::parse(&p.currency).map_err(|e| corrupt("payment currency", e))?);
    for line in lines {
        total = total.checked_add(line.money()?).ok_or_else(|| corrupt("payment lines", "currencies differ"))?;
    }
    p.amount = total.amount();
    p.lines = Some(serde_json::to_value(lines).map_err(|e| corrupt("payment lines", e))?);
    Ok(())
}

/// What the payment paid for the plan's tariff itself (its overage lines excluded):
/// the `old_price` of a later proration.
pub fn tariff_amount(p: &PaymentRow) -> ServiceResult<rust_decimal::Decimal> {
    if p.lines.is_none() {
        return Ok(p.amount);
    }
    let mut sum = rust_decimal::Decimal::ZERO;
    for line in lines_of(p)?.iter().filter(|l| l.kind == LineKind::Tariff) {
        sum += line.money()?.amount();
    }
    Ok(sum)
}

pub fn money_of(p: &PaymentRow) -> ServiceResult<Money> {
    stored_money(p.amount, &p.currency, "payment amount")
}

/// The part of a payment that pays for tariffs — a period, an extension, an
/// upgrade's surcharge: what cashback may pay for and what earns cashback
/// (`domain::balance`). Overage lines and top-ups are not tariffs.
pub fn tariff_part(p: &PaymentRow) -> ServiceResult<rust_decimal::Decimal> {
    if !matches!(p.kind, PaymentKind::Purchase | PaymentKind::Renewal | PaymentKind::Extension | PaymentKind::Upgrade) {
        return Ok(rust_decimal::Decimal::ZERO);
    }
    if p.lines.is_none() {
        return Ok(p.amount);
    }
    let mut sum = rust_decimal::Decimal::ZERO;
    for line in lines_of(p)?.iter().filter(|l| matches!(l.kind, LineKind::Tariff | LineKind::Upgrade)) {
        sum += line.money()?.amount();
    }
    Ok(sum)
}

/// Where a payment's money came from: `from_prepaid` and `from_cashback` off the
/// customer's balance, the rest through the gateway.
pub fn funding_of(p: &PaymentRow) -> ServiceResult<Funding> {
    let part = |amount, what| stored_money(amount, &p.currency, what);
    Ok(Funding {
        gateway: part(p.amount - p.from_prepaid - p.from_cashback, "payment gateway part")?,
        prepaid: part(p.from_prepaid, "payment prepaid part")?,
        cashback: part(p.from_cashback, "payment cashback part")?,
    })
}

fn refunded_of(p: &PaymentRow) -> ServiceResult<Money> {
    stored_money(p.refunded_amount, &p.currency, "payment refunded amount")
}

/// How the customer pays `p` by card under attempt `attempt_id` (the gateway's
/// checkout: for CloudPayments the widget parameters).
pub async fn confirmation(
    gateways: &Gateways,
    tenant: &Tenant,
    p: &PaymentRow,
    attempt_id: &str,
    email: &str,
) -> ServiceResult<Confirmation> {
    let gateway = gateways.for_config(&tenant.gateway)?;
    let req = CheckoutRequest {
        attempt_id,
        customer_id: &p.customer_id.to_string(),
        amount: money_of(p)?,
        description: &p.description,
        email,
    };
    Ok(gateway.checkout(&req).await?)
}

pub fn view(p: &PaymentRow, confirmation: Option<Confirmation>) -> ServiceResult<PaymentView> {
    Ok(PaymentView {
        id: p.id,
        customer_id: p.customer_id,
        subscription_id: p.subscription_id,
        kind: p.kind,
        status: p.status,
        amount: money_of(p)?.into(),
        refunded_amount: refunded_of(p)?.into(),
        description: p.description.clone(),
        gateway: p.gateway.clone(),
        gateway_transaction_id: p.gateway_transaction_id.clone(),
        failure_reason: p.failure_reason.clone(),
        failure_code: p.failure_code.clone(),
        duplicate_of: p.duplicate_of,
        period_start: p.period_start,
        period_end: p.period_end,
        expires_at: p.expires_at,
        captured_at: p.captured_at,
        created_at: p.created_at,
        lines: lines_of(p)?,
        plan_change: p.plan_change.clone(),
        confirmation,
        from_prepaid: stored_money(p.from_prepaid, &p.currency, "payment prepaid part")?.into(),
        from_cashback: stored_money(p.from_cashback, &p.currency, "payment cashback part")?.into(),
        cashback_earned: stored_money(p.cashback_earned, &p.currency, "payment cashback earned")?.into(),
        invoice_id: None,
    })
}

/// A payment with, while a widget attempt is open, how to collect it.
pub async fn view_of(
    conn: &mut AsyncPgConnection,
    gateways: &Gateways,
    tenant: &Tenant,
    p: &PaymentRow,
) -> ServiceResult<PaymentView> {
    let attempts = crate::db::attempts::attempts_of(conn, p.id).await?;
    let open_widget = attempts
        .last()
        .filter(|a| a.channel == AttemptChannel::Widget && a.status == AttemptStatus::Pending && p.status.is_open());
    let confirmation = match open_widget {
        Some(a) => match customers_db::find(conn, tenant.id, p.customer_id).await? {
            Some(c) => Some(confirmation(gateways, tenant, p, &a.invoice_id, &c.email).await?),
            None => None,
        },
        None => None,
    };
    let mut v = view(p, confirmation)?;
    if p.gateway == INVOICE {
        v.invoice_id = crate::db::invoices::of_payment(conn, p.id).await?.map(|i| i.id);
    }
    Ok(v)
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    gateways: &Gateways,
    tenant: &Tenant,
    id: PaymentId,
) -> ServiceResult<PaymentView> {
    let p = db::find(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("payment_not_found", "no such payment"))?;
    view_of(conn, gateways, tenant, &p).await
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    filter: db::PaymentFilter,
    page: PageRequest,
) -> ServiceResult<Page<PaymentView>> {
    let rows = db::list(conn, tenant.id, filter, page.starting_after, page.fetch()).await?;
    let views = rows.iter().map(|p| view(p, None)).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page::from_rows(views, page, |v| v))
}

/// `data` of the payment events (`payment.succeeded`, `.failed`, `.refunded`):
/// the payment's ids, kind and status, `amount` with its `from_prepaid` and
/// `from_cashback` parts, the gateway's transaction id, why it failed, what it
/// duplicates, the period it pays for and its `lines` (API.md, "Events to product
/// backends").
#[derive(Serialize)]
struct PaymentEvent<'a> {
    payment_id: PaymentId,
    customer_id: CustomerId,
    subscription_id: Option<SubscriptionId>,
    kind: PaymentKind,
    status: PaymentStatus,
    amount: MoneyView,
    from_prepaid: MoneyView,
    from_cashback: MoneyView,
    gateway_transaction_id: &'a Option<String>,
    failure_reason: &'a Option<String>,
    failure_code: &'a Option<String>,
    duplicate_of: Option<PaymentId>,
    period_start: Option<DateTime<Utc>>,
    period_end: Option<DateTime<Utc>>,
    lines: Vec<Line>,
}

/// `data` of `payment.succeeded` / `payment.failed` / `payment.refunded`, serialized
/// from [`PaymentEvent`]. Errors: `Internal` when the stored amounts or lines do not
/// parse (or, never in practice, the payload does not serialize).
pub fn event_data(p: &PaymentRow) -> ServiceResult<EventData> {
    let data = PaymentEvent {
        payment_id: p.id,
        customer_id: p.customer_id,
        subscription_id: p.subscription_id,
        kind: p.kind,
        status: p.status,
        amount: money_of(p)?.into(),
        from_prepaid: stored_money(p.from_prepaid, &p.currency, "payment prepaid part")?.into(),
        from_cashback: stored_money(p.from_cashback, &p.currency, "payment cashback part")?.into(),
        gateway_transaction_id: &p.gateway_transaction_id,
        failure_reason: &p.failure_reason,
        failure_code: &p.failure_code,
        duplicate_of: p.duplicate_of,
        period_start: p.period_start,
        period_end: p.period_end,
        lines: lines_of(p)?,
    };
    EventData::of(&data).map_err(|e| ServiceError::Internal(format!("payment {} event: {e}", p.id)))
}
