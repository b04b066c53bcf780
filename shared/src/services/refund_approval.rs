//! What approving a refund does before its money moves (SPEC §6, §8), for the
//! payments the balance is involved in:
//!
//! * a **top-up** is refunded only as far as its money is unspent: the request is
//!   capped at the prepaid balance, and on approval that much is set aside
//!   (`held_for_refund`) so it cannot be spent while the gateway pays it back;
//! * a payment **from the balance** is refunded back onto the balance — prepaid
//!   money first, up to what it took from there, then cashback — at once, by the
//!   worker, without the gateway;
//! * the **cashback** a payment earned is taken back in proportion
//!   (`cashback::reverse`); what was already spent is deducted from the refund.
//!
//! A refund whose deduction leaves nothing to pay back is rejected
//! (`cashback_spent`).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;

use super::tenants::Tenant;
use super::{balance, cashback, payments};
use crate::db::ledger::{self, NO_OVERDRAFT};
use crate::db::outbox::NewEvent;
use crate::db::payments::PaymentRow;
use crate::db::refunds::{self as db, RefundRow};
use crate::domain::ledger::Posting;
use crate::domain::money::Money;
use crate::domain::states::{PaymentKind, RefundStatus};
use crate::error::{ServiceError, ServiceResult};

/// The most a refund of `payment` may pay back now: for a top-up, what of the
/// customer's prepaid money is left; otherwise no cap.
pub(crate) async fn cap(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<Option<Decimal>> {
    if payment.kind != PaymentKind::TopUp {
        return Ok(None);
    }
    let money = payments::money_of(payment)?;
    Ok(Some(balance::available(conn, tenant, payment.customer_id, money.currency()).await?.prepaid.amount()))
}

/// Settles an approved `refund` of `payment` (its amount as decided): reverses
/// cashback, routes a balance payment's refund back to the balance, sets a
/// top-up's money aside. Returns the balance events; a refund left with nothing
/// to pay back comes out `rejected` (`cashback_spent`).
pub(crate) async fn settle(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &mut RefundRow,
) -> ServiceResult<Vec<NewEvent>> {
    let held = db::held_parts(conn, payment.id, refund.id).await?;
    let mut events = Vec::new();
    events.extend(cashback::reverse(conn, now, tenant, payment, refund, held).await?);
    if refund.amount <= Decimal::ZERO {
        refund.amount = Decimal::ZERO;
        refund.status = RefundStatus::Rejected;
        refund.decision_code = "cashback_spent".into();
        return Ok(events);
    }
    if !(payment.from_prepaid + payment.from_cashback).is_zero() {
        refund.to_prepaid = refund.amount.min((payment.from_prepaid - held.to_prepaid).max(Decimal::ZERO));
        refund.to_cashback = refund.amount - refund.to_prepaid;
    }
    if payment.kind == PaymentKind::TopUp {
        let money = payments::money_of(payment)?;
        let amount = Money::round(refund.amount, money.currency());
        let posting = Posting::held_for_refund(format!("возврат {}", refund.id), payment.customer_id, amount);
        ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await.map_err(|e| {
            let e = ServiceError::from(e);
            match e.violated_constraint() {
                Some(NO_OVERDRAFT) => ServiceError::conflict("balance_spent", "the top-up's money has been spent"),
                _ => e,
            }
        })?;
        events.push(balance::event(conn, tenant, payment, false, "refund_hold", amount).await?);
    }
    Ok(events)
}
