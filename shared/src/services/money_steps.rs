//! What a captured payment moves beyond its own ledger posting (balance, cashback,
//! partner commission), decided before anything is written
//! ([`super::payment_outcomes::apply_capture`]).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;

use super::payments::money_of;
use super::tenants::Tenant;
use crate::db::outbox::NewEvent;
use crate::db::payments::PaymentRow;
use crate::domain::states::PaymentKind;
use crate::error::ServiceResult;

/// What a capture moves beyond its own posting: a top-up credits the balance, a
/// payment from it debits it; applied to what it paid for, it earns cashback and
/// its customer's partner a commission. Decided before any of it is written, so a
/// capture that moves nothing more (and issues no receipt) sends all its writes at
/// once.
pub(super) struct MoneySteps {
    top_up: bool,
    spent: Decimal,
    cashback: bool,
    commission: bool,
}

impl MoneySteps {
    pub(super) async fn of(
        conn: &mut AsyncPgConnection,
        tenant: &Tenant,
        payment: &PaymentRow,
        applied: bool,
    ) -> ServiceResult<Self> {
        Ok(Self {
            top_up: payment.kind == PaymentKind::TopUp,
            spent: payment.from_prepaid + payment.from_cashback,
            cashback: applied && super::cashback::rate_of(conn, payment).await?.is_some(),
            commission: applied && tenant.policy.partner_commission_rate.is_some_and(|r| !r.is_zero()),
        })
    }

    pub(super) fn none(&self) -> bool {
        !self.top_up && self.spent.is_zero() && !self.cashback && !self.commission
    }

    /// Carries the steps out (credited here; the cashback sets
    /// `payment.cashback_earned` before the payment is saved). Returns their events.
    pub(super) async fn take(
        &self,
        conn: &mut AsyncPgConnection,
        now: DateTime<Utc>,
        tenant: &Tenant,
        payment: &mut PaymentRow,
    ) -> ServiceResult<Vec<NewEvent>> {
        let mut events = Vec::new();
        let money = money_of(payment)?;
        if self.top_up {
            events.push(super::balance::event(conn, tenant, payment, true, "top_up", money).await?);
        }
        if !self.spent.is_zero() {
            let spent = crate::domain::money::Money::round(self.spent, money.currency());
            events.push(super::balance::event(conn, tenant, payment, false, "payment", spent).await?);
        }
        if self.cashback {
            events.extend(super::cashback::credit(conn, now, tenant, payment).await?);
        }
        if self.commission {
            events.extend(super::partners::accrue(conn, now, tenant, payment).await?);
        }
        Ok(events)
    }
}
