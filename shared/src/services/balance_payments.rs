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
use super::payments::{self, INVOICE};
use super::tenants::Tenant;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::ledger::NO_OVERDRAFT;
use crate::db::payments::PaymentRow;
use crate::domain::balance::{Insufficient, split};
use crate::domain::money::Money;
use crate::domain::states::{AttemptChannel, PaymentKind};
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::CardDetails;

/// How a payment is taken from the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// `pay_with: "balance"`: cashback first for tariffs, then prepaid money.
    Balance,
    /// An invoice whose bank transfer arrived: its money is prepaid money, and
    /// the payment is recorded as the invoice's (cashback is left alone).
    Invoice,
}

/// Pays the pending `payment` (locked by the caller) from the customer's balance,
/// in full, and applies it like any capture. 422 `insufficient_balance` when the
/// balance cannot cover it — the caller's transaction then writes nothing.
pub async fn pay(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    take: Take,
) -> ServiceResult<()> {
    if payment.kind == PaymentKind::TopUp {
        return Err(ServiceError::validation("a top-up cannot be paid from the balance"));
    }
    let amount = payments::money_of(payment)?;
    let tariff = match take {
        Take::Balance => Money::round(payments::tariff_part(payment)?, amount.currency()),
        Take::Invoice => Money::zero(amount.currency()),
    };
    let available = balance::available(conn, tenant, payment.customer_id, amount.currency()).await?;
    let taken = split(amount, tariff, available).map_err(insufficient)?;
    payment.from_cashback = taken.cashback.amount();
    payment.from_prepaid = taken.prepaid.amount();
    let (gateway, channel) = match take {
        Take::Balance => (BALANCE, AttemptChannel::Balance),
        Take::Invoice => (INVOICE, AttemptChannel::Invoice),
    };
    payment.gateway = gateway.to_owned();
    let attempt_no = attempts_db::next_attempt_no(conn, payment.id).await?;
    let mut attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, channel, None, now);
    attempts_db::insert_attempt(conn, &attempt).await?;
    let transaction = format!("{gateway}:{}", payment.id);
    payment_outcomes::apply_capture(
        conn,
        now,
        tenant,
        payment,
        &mut attempt,
        &transaction,
        &CardDetails::default(),
        None,
    )
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
