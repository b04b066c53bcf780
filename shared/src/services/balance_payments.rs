//! Paying from the balance (`pay_with: "balance"`, SPEC §8): a pending payment is
//! paid at once — cashback first for its tariff part, prepaid money for the rest
//! (`domain::balance::split`) — or not at all: a shortfall is 422
//! `insufficient_balance` and the caller's transaction writes nothing. The
//! database keeps each spendable account's balance and refuses to let it go
//! below zero, so two concurrent spends of one balance never overdraw it. The
//! payment is then applied like any capture (`payment_outcomes::apply_capture`).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::balance::{self, BALANCE};
use super::payment_outcomes;
use super::payments;
use super::tenants::Tenant;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::ledger::NO_OVERDRAFT;
use crate::db::payments::PaymentRow;
use crate::domain::balance::{Insufficient, split};
use crate::domain::money::Money;
use crate::domain::states::{AttemptChannel, PaymentKind};
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::CardDetails;

/// Pays the pending `payment` (locked by the caller) from the customer's balance,
/// in full, and applies it like any capture. 422 `insufficient_balance` when the
/// balance cannot cover it — the caller's transaction then writes nothing.
pub async fn pay(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
) -> ServiceResult<()> {
    if payment.kind == PaymentKind::TopUp {
        return Err(ServiceError::validation("a top-up cannot be paid from the balance"));
    }
    let amount = payments::money_of(payment)?;
    let tariff = Money::round(payments::tariff_part(payment)?, amount.currency());
    let available = balance::available(conn, tenant, payment.customer_id, amount.currency()).await?;
    let taken = split(amount, tariff, available).map_err(insufficient)?;
    payment.from_cashback = taken.cashback.amount();
    payment.from_prepaid = taken.prepaid.amount();
    payment.gateway = BALANCE.to_owned();
    let attempt_no = attempts_db::next_attempt_no(conn, payment.id).await?;
    let mut attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, AttemptChannel::Balance, None, now);
    attempts_db::insert_attempt(conn, &attempt).await?;
    let transaction = format!("{BALANCE}:{}", payment.id);
    payment_outcomes::apply_capture(conn, now, tenant, payment, &mut attempt, &transaction, &CardDetails::default())
        .await
        .map_err(|e| match e.violated_constraint() {
            // Another spend got there first.
            Some(NO_OVERDRAFT) => ServiceError::invalid("insufficient_balance", "the balance no longer covers it"),
            _ => e,
        })?;
    Ok(())
}

fn insufficient(e: Insufficient) -> ServiceError {
    ServiceError::invalid(
        "insufficient_balance",
        format!(
            "the balance covers {} of {} (cashback pays only for tariffs): top up or pay with \"card\"",
            e.spendable, e.needed
        ),
    )
}
