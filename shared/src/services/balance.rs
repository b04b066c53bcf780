//! A customer's balance (SPEC §8, WhatsMonster 7.18, 7.25; API.md "Usage,
//! balance, payments"): prepaid money from top-ups and cashback from plans,
//! read from the ledger (`domain::balance` has the spending rules).
//!
//! Top-ups are opened in `top_ups`, payments taken from the balance in
//! `balance_payments`; this module reads the balance and describes its movements.

use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::NewEvent;
use crate::db::payments::PaymentRow;
use crate::domain::balance::Available;
use crate::domain::ids::CustomerId;
use crate::domain::money::{Currency, Money, MoneyView};
use crate::error::ServiceResult;

/// `GET /v1/customers/{id}/balance`: API.md's money object (`value`, `currency`:
/// everything the customer can spend) with its two parts.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BalanceView {
    /// Prepaid money plus cashback, two decimals.
    #[schema(example = "1500.00")]
    pub value: String,
    #[schema(example = "RUB")]
    pub currency: String,
    /// Topped-up money not spent: pays for anything.
    pub prepaid: MoneyView,
    /// Cashback not spent: pays only for tariffs (WhatsMonster 7.25).
    pub cashback: MoneyView,
}

/// The currency balances are kept in (the service's one currency).
pub const CURRENCY: Currency = Currency::Rub;

/// What the customer can spend now.
pub async fn available(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    customer_id: CustomerId,
    currency: Currency,
) -> ServiceResult<Available> {
    let (prepaid, cashback) = ledger::spendable(conn, tenant.id, customer_id, currency).await?;
    let part = |a: Decimal| Money::new(a, currency).map_err(|e| super::corrupt("balance", e));
    Ok(Available { prepaid: part(prepaid)?, cashback: part(cashback)? })
}

pub async fn view(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    customer_id: CustomerId,
) -> ServiceResult<BalanceView> {
    super::customers::load(conn, tenant, customer_id).await?;
    let a = available(conn, tenant, customer_id, CURRENCY).await?;
    let total = Money::round(a.prepaid.amount() + a.cashback.amount(), CURRENCY);
    Ok(BalanceView {
        value: total.value_string(),
        currency: CURRENCY.code().to_owned(),
        prepaid: a.prepaid.into(),
        cashback: a.cashback.into(),
    })
}

/// The gateway name of payments taken from the balance.
pub const BALANCE: &str = "balance";

/// `balance.credited` / `balance.debited`: a movement of the customer's balance
/// (`source`: `top_up`, `cashback`, `payment`, `refund`, `cashback_reversal`,
/// `refund_hold`) with the balance after it.
pub async fn event(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    payment: &PaymentRow,
    credited: bool,
    source: &str,
    amount: Money,
) -> ServiceResult<NewEvent> {
    let after = available(conn, tenant, payment.customer_id, amount.currency()).await?;
    let data = json!({
        "customer_id": payment.customer_id,
        "payment_id": payment.id,
        "source": source,
        "amount": MoneyView::from(amount),
        "prepaid": MoneyView::from(after.prepaid),
        "cashback": MoneyView::from(after.cashback),
    });
    let ty = if credited { "balance.credited" } else { "balance.debited" };
    Ok(NewEvent::event(tenant.id, payment.ordering_key(), ty, data))
}
