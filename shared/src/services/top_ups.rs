//! Top-ups of a customer's prepaid money (SPEC §8, WhatsMonster 7.18 «пополнение
//! лицевого счета»; API.md `POST /v1/customers/{id}/top-ups`): a `top_up` payment
//! collected by card (the checkout) or the saved card. Its capture credits the
//! prepaid money (`payment_outcomes`, `balance.credited`).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde::Deserialize;
use utoipa::ToSchema;

use super::payment_sources;
use super::payments::{self, PayWith, PaymentView};
use super::tenants::Tenant;
use crate::db::customers as customers_db;
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::domain::ids::CustomerId;
use crate::domain::money::MoneyInput;
use crate::domain::states::PaymentKind;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// `POST /v1/customers/{id}/top-ups`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"amount": {"value": "1500.00", "currency": "RUB"}, "pay_with": "card"})))]
pub struct TopUpSpec {
    /// At least 1.00.
    pub amount: MoneyInput,
    /// `card` (the checkout, default) or `saved_card`.
    #[serde(default)]
    pub pay_with: PayWith,
}

/// Opens a top-up of the customer's prepaid money and collects it.
pub async fn top_up(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    customer_id: CustomerId,
    spec: TopUpSpec,
) -> ServiceResult<PaymentView> {
    let amount = spec.amount.money().map_err(|e| ServiceError::invalid(e.code(), e.to_string()))?;
    if amount.amount() < Decimal::ONE {
        return Err(ServiceError::invalid("invalid_money", "a top-up is at least 1.00"));
    }
    if !matches!(spec.pay_with, PayWith::Card | PayWith::SavedCard) {
        return Err(ServiceError::validation("a top-up is paid with \"card\" or \"saved_card\""));
    }
    let customer = customers_db::find_for_update(conn, tenant.id, customer_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer_not_found", "no such customer"))?;
    let description = format!("{}: пополнение лицевого счета", tenant.name);
    let mut payment =
        PaymentRow::pending(payments::payer(tenant, customer.id, None), PaymentKind::TopUp, amount, description, now);
    payment.expires_at = Some(now + crate::domain::subscription::schedule::PENDING_PAYMENT_TTL);
    payments_db::insert(conn, &payment).await?;
    payment_sources::collect(conn, now, gateways, tenant, &mut payment, spec.pay_with).await
}
