//! Cashback (SPEC §8, WhatsMonster 7.25): a plan's `cashback_rate` credits part
//! of each captured tariff payment to the customer's cashback, which pays only
//! for tariffs later; a refund of the payment takes it back (`domain::balance`
//! has the amounts).
//!
//! Reversal rule: the cashback a refunded share of the payment earned is taken
//! back from the customer's cashback when the refund is approved (so it cannot be
//! spent while the refund is paid out); whatever of it the customer has already
//! spent is deducted from the money refunded instead — the balance never goes
//! negative and nothing is silently lost. A failed refund keeps its reversal:
//! it is retried, not abandoned.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;

use super::balance;
use super::payments;
use super::plans;
use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::NewEvent;
use crate::db::payments::PaymentRow;
use crate::db::refunds::{Held, RefundRow};
use crate::domain::balance::{earned, reversal};
use crate::domain::ledger::Posting;
use crate::domain::money::Money;
use crate::error::ServiceResult;

/// The cashback rate of the plan `payment` paid for (a fraction, e.g. 0.05), when
/// it earns any (the plan from the plan cache).
pub async fn rate_of(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> ServiceResult<Option<Decimal>> {
    let Some(plan_id) = payment.plan_id else { return Ok(None) };
    Ok(plans::load_cached(conn, plan_id).await?.cashback_rate.filter(|r| *r > Decimal::ZERO))
}

/// Credits the cashback `payment` (captured, not yet saved by the caller) earns
/// on its plan: `rate × tariff money` (what was paid for tariffs by card or from
/// prepaid money; cashback spent earns none). Returns `balance.credited`.
pub async fn credit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<NewEvent>> {
    let Some(rate) = rate_of(conn, payment).await? else { return Ok(None) };
    let money = payments::money_of(payment)?;
    let base = (payments::tariff_part(payment)? - payment.from_cashback).max(Decimal::ZERO);
    let amount = earned(rate, base, money.currency());
    if amount.is_zero() {
        return Ok(None);
    }
    payment.cashback_earned = amount.amount();
    let description = format!("кешбэк {} по платежу {}", rate.normalize(), payment.id);
    ledger::post(
        conn,
        tenant.id,
        Some(payment.id),
        now,
        &Posting::cashback(description, payment.customer_id, amount, false),
    )
    .await?;
    Ok(Some(balance::event(conn, tenant, payment, true, "cashback", amount).await?))
}

/// Takes back the cashback a refund's share of `payment` earned, when `refund`
/// (with its amount as decided) is approved: what the customer still has is
/// reversed; what was spent is deducted from `refund.amount`. `held` is what the
/// payment's earlier refunds hold. Returns `balance.debited` when anything was
/// reversed.
pub async fn reverse(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &mut RefundRow,
    held: Held,
) -> ServiceResult<Option<NewEvent>> {
    if payment.cashback_earned.is_zero() {
        return Ok(None);
    }
    let money = payments::money_of(payment)?;
    let available = balance::available(conn, tenant, payment.customer_id, money.currency()).await?;
    let r = reversal(
        payment.cashback_earned,
        payment.amount,
        held.amount,
        held.cashback_taken,
        refund.amount,
        available.cashback.amount(),
    );
    refund.cashback_reversed = r.reversed;
    refund.cashback_deducted = r.deducted;
    refund.amount -= r.deducted;
    if r.reversed.is_zero() {
        return Ok(None);
    }
    let amount = Money::round(r.reversed, money.currency());
    let description = format!("возврат кешбэка по возврату {}", refund.id);
    let posting = Posting::cashback(description, payment.customer_id, amount, true);
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    Ok(Some(balance::event(conn, tenant, payment, false, "cashback_reversal", amount).await?))
}
