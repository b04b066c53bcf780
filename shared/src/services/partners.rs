//! Partner commissions (SPEC §8, SellerGPT 3.2.2 «вознаграждение ... в размере
//! процента от оплаченного Пользователем Доступа»).
//!
//! * Partners are registered by code (`POST /v1/partners`); a customer is
//!   attributed to one by `partner_code` once — at creation, or by PATCH before
//!   its first captured payment. An unknown code is 422 `partner_not_found`.
//! * Every captured payment of an attributed customer for access — a tariff, an
//!   extension, an upgrade, overage; paid by card or from prepaid money, never the
//!   part paid with cashback, never a top-up (its money is counted when it pays for
//!   access) — accrues the tenant's `partner_commission_rate` of it, rounded once,
//!   into the partner's payable account (`partner.commission_accrued`).
//! * Each refund paid back reverses the commission pro rata
//!   (`domain::balance::pro_rata`; `partner.commission_reversed`).
//! * `GET /v1/partners/{code}/statement?month=YYYY-MM` (the month in the tenant's
//!   zone) lists accruals and reversals with totals, and the ledger's movement of
//!   the partner's account over the same month, which they reconcile to.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::payments;
use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::NewEvent;
use crate::db::partners::{self as db, CommissionRow, PartnerRow};
use crate::db::payments::PaymentRow;
use crate::db::refunds::RefundRow;
use crate::domain::balance::pro_rata;
use crate::domain::ids::{CustomerId, PartnerId, PaymentId};
use crate::domain::ledger::{Account, Posting};
use crate::domain::money::{Currency, Money, MoneyView};
use crate::domain::period::resolve_local;
use crate::domain::states::PaymentKind;
use crate::error::{ServiceError, ServiceResult};

/// `POST /v1/partners`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"code": "blogger-1", "name": "Blogger One"})))]
pub struct PartnerSpec {
    /// 1..64 letters, digits, `-` or `_`: what customers are attributed by.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub code: String,
    /// 1..200 characters, not only spaces.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub name: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartnerView {
    pub id: PartnerId,
    pub code: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

impl From<PartnerRow> for PartnerView {
    fn from(r: PartnerRow) -> Self {
        PartnerView { id: r.id, code: r.code, name: r.name, created_at: r.created_at }
    }
}

/// One accrual or reversal of a statement.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StatementLine {
    /// `accrual` or `reversal`.
    pub kind: String,
    pub customer_id: CustomerId,
    pub payment_id: PaymentId,
    pub refund_id: Option<Uuid>,
    /// The money the commission is a share of (paid, or refunded).
    pub base: MoneyView,
    /// The tenant's rate at the time, e.g. `"0.2"`.
    pub rate: String,
    pub amount: MoneyView,
    pub occurred_at: DateTime<Utc>,
}

/// `GET /v1/partners/{code}/statement?month=YYYY-MM`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Statement {
    pub partner: PartnerView,
    /// `YYYY-MM`, in `time_zone` (the tenant's).
    pub month: String,
    pub time_zone: String,
    /// The month's first instant and the next month's.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub lines: Vec<StatementLine>,
    pub accrued: MoneyView,
    pub reversed: MoneyView,
    /// `accrued − reversed`: what the month adds to what the partner is owed.
    pub net: MoneyView,
    /// The partner's payable account's movement in the ledger over the month;
    /// equal to `net`.
    pub ledger_net: MoneyView,
}

const CURRENCY: Currency = Currency::Rub;

pub async fn create(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    spec: PartnerSpec,
) -> ServiceResult<PartnerView> {
    let code_ok = (1..=64).contains(&spec.code.len())
        && spec.code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !code_ok {
        return Err(ServiceError::validation("code must be 1..64 letters, digits, '-' or '_'"));
    }
    if !crate::domain::is_filled_within(&spec.name, 200) {
        return Err(ServiceError::validation("name must be 1..200 characters"));
    }
    let row =
        PartnerRow { id: PartnerId::new(), tenant_id: tenant.id, code: spec.code, name: spec.name, created_at: now };
    if !db::insert(conn, &row).await? {
        return Err(ServiceError::conflict("partner_exists", format!("a partner with code {:?} exists", row.code)));
    }
    Ok(row.into())
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    starting_after: Option<&str>,
    limit: i64,
) -> ServiceResult<Vec<PartnerView>> {
    Ok(db::list(conn, tenant.id, starting_after, limit).await?.into_iter().map(Into::into).collect())
}

async fn by_code(conn: &mut AsyncPgConnection, tenant: &Tenant, code: &str) -> ServiceResult<PartnerRow> {
    db::by_code(conn, tenant.id, code)
        .await?
        .ok_or_else(|| ServiceError::not_found("partner_not_found", format!("no partner with code {code:?}")))
}

/// The money of `payment` a commission is a share of: what was paid for access
/// by card or from prepaid money (cashback and top-ups excluded).
fn commission_base(payment: &PaymentRow) -> Decimal {
    match payment.kind {
        PaymentKind::TopUp => Decimal::ZERO,
        _ => (payment.amount - payment.from_cashback).max(Decimal::ZERO),
    }
}

/// Accrues the commission of a captured `payment` to `partner` (its customer's).
/// Idempotent per payment. Returns `partner.commission_accrued`.
pub async fn accrue_for(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    partner: &PartnerRow,
) -> ServiceResult<Option<NewEvent>> {
    let Some(rate) = tenant.policy.partner_commission_rate.filter(|r| *r > Decimal::ZERO) else { return Ok(None) };
    let currency = payments::money_of(payment)?.currency();
    let base = commission_base(payment);
    let amount = Money::round(rate * base, currency);
    if amount.is_zero() {
        return Ok(None);
    }
    let row = CommissionRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        partner_id: partner.id,
        customer_id: payment.customer_id,
        payment_id: payment.id,
        refund_id: None,
        kind: "accrual".into(),
        base,
        rate,
        amount: amount.amount(),
        currency: currency.code().into(),
        occurred_at: now,
    };
    if !db::record(conn, &row).await? {
        return Ok(None);
    }
    let posting = Posting::commission(
        format!("комиссия партнера {} по платежу {}", partner.code, payment.id),
        partner.id,
        amount,
        false,
    );
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    Ok(Some(event(tenant, payment, &row, "partner.commission_accrued")?))
}

/// [`accrue_for`] the customer's partner, if the customer is attributed to one.
pub async fn accrue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<Option<NewEvent>> {
    if tenant.policy.partner_commission_rate.is_none_or(|r| r.is_zero()) {
        return Ok(None);
    }
    match db::of_customers(conn, &[payment.customer_id]).await?.into_iter().next() {
        Some((_, partner)) => accrue_for(conn, now, tenant, payment, &partner).await,
        None => Ok(None),
    }
}

/// Reverses the commission of `payment` pro rata to `refund`, paid back
/// (`payment.refunded_amount` already includes it). Returns
/// `partner.commission_reversed`.
pub async fn reverse(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &RefundRow,
) -> ServiceResult<Option<NewEvent>> {
    let commissions = db::of_payment(conn, payment.id).await?;
    let Some(accrual) = commissions.iter().find(|c| c.kind == "accrual") else { return Ok(None) };
    let taken: Decimal = commissions.iter().filter(|c| c.kind == "reversal").map(|c| c.amount).sum();
    let refunded_before = payment.refunded_amount - refund.amount;
    let due = pro_rata(accrual.amount, payment.amount, refunded_before, taken, refund.amount);
    if due.is_zero() {
        return Ok(None);
    }
    let row = CommissionRow {
        id: Uuid::now_v7(),
        refund_id: Some(refund.id),
        kind: "reversal".into(),
        base: refund.amount,
        amount: due,
        occurred_at: now,
        ..accrual.clone()
    };
    if !db::record(conn, &row).await? {
        return Ok(None);
    }
    let amount = Money::round(due, payments::money_of(payment)?.currency());
    let posting =
        Posting::commission(format!("возврат комиссии по возврату {}", refund.id), row.partner_id, amount, true);
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    Ok(Some(event(tenant, payment, &row, "partner.commission_reversed")?))
}

/// `partner.commission_accrued` / `partner.commission_reversed`.
fn event(tenant: &Tenant, payment: &PaymentRow, row: &CommissionRow, ty: &'static str) -> ServiceResult<NewEvent> {
    let money = |a| super::stored_money(a, &row.currency, "commission");
    let data = json!({
        "partner_id": row.partner_id,
        "customer_id": row.customer_id,
        "payment_id": row.payment_id,
        "refund_id": row.refund_id,
        "base": MoneyView::from(money(row.base)?),
        "rate": row.rate.normalize().to_string(),
        "amount": MoneyView::from(money(row.amount)?),
    });
    Ok(NewEvent::event(tenant.id, payment.ordering_key(), ty, data))
}

/// The month `YYYY-MM` (digits only, 1970-01 to 9999-12, as the query
/// parameter's pattern says) as `[from, to)` in `tz`.
fn month_window(month: &str, tz: chrono_tz::Tz) -> ServiceResult<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || ServiceError::validation("month must be YYYY-MM, from 1970-01 to 9999-12");
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(y, 4) || !digits(m, 2) {
        return Err(bad());
    }
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if y < 1970 {
        return Err(bad());
    }
    let first = NaiveDate::from_ymd_opt(y, m, 1).ok_or_else(bad)?;
    let next = if m == 12 { NaiveDate::from_ymd_opt(y + 1, 1, 1) } else { NaiveDate::from_ymd_opt(y, m + 1, 1) };
    let next = next.ok_or_else(bad)?;
    Ok((
        resolve_local(tz, first.and_time(chrono::NaiveTime::MIN)),
        resolve_local(tz, next.and_time(chrono::NaiveTime::MIN)),
    ))
}

pub async fn statement(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    code: &str,
    month: &str,
) -> ServiceResult<Statement> {
    let (from, to) = month_window(month, tenant.tz)?;
    let partner = by_code(conn, tenant, code).await?;
    let rows = db::in_window(conn, partner.id, from, to).await?;
    let money = |a| super::stored_money(a, CURRENCY.code(), "commission");
    let (mut accrued, mut reversed) = (Decimal::ZERO, Decimal::ZERO);
    let mut lines = Vec::with_capacity(rows.len());
    for r in rows {
        if r.kind == "accrual" {
            accrued += r.amount
        } else {
            reversed += r.amount
        }
        lines.push(StatementLine {
            kind: r.kind.clone(),
            customer_id: r.customer_id,
            payment_id: r.payment_id,
            refund_id: r.refund_id,
            base: money(r.base)?.into(),
            rate: r.rate.normalize().to_string(),
            amount: super::stored_money(r.amount, &r.currency, "commission")?.into(),
            occurred_at: r.occurred_at,
        });
    }
    let ledger_net =
        ledger::change_in_window(conn, tenant.id, Account::PartnerPayable(partner.id), CURRENCY, from, to).await?;
    Ok(Statement {
        month: format!("{:04}-{:02}", from.with_timezone(&tenant.tz).year(), from.with_timezone(&tenant.tz).month()),
        time_zone: tenant.time_zone.clone(),
        partner: partner.into(),
        from,
        to,
        lines,
        accrued: money(accrued)?.into(),
        reversed: money(reversed)?.into(),
        net: Money::round(accrued - reversed, CURRENCY).into(),
        ledger_net: Money::round(ledger_net, CURRENCY).into(),
    })
}
