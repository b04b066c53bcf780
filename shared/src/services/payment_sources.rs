//! How a payment is collected, by the source the product chose (`pay_with`,
//! API.md): a new card payment through the gateway's checkout, the saved card
//! (a charge queued for the worker), or the customer's balance (settled at once,
//! `balance_payments`), or a numbered invoice for bank transfer (`invoices`).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::balance_payments::Take;
use super::collection::{open_widget_attempt, start_attempt};
use super::payments::{self, PayWith, PaymentView};
use super::tenants::Tenant;
use crate::db::attempts as attempts_db;
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::domain::states::AttemptChannel;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// Collects `payment` by the saved card (a queued charge), a new widget payment
/// or the balance (at once), and answers the payment with how to collect it.
pub async fn collect(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    pay_with: PayWith,
) -> ServiceResult<PaymentView> {
    match pay_with {
        PayWith::SavedCard => {
            if attempts_db::default_payment_method(conn, payment.customer_id).await?.is_none() {
                return Err(ServiceError::invalid(
                    "no_saved_card",
                    "the customer has no usable saved card: pay with \"card\"",
                ));
            }
            start_attempt(conn, now, tenant, payment, AttemptChannel::Manual).await?;
        }
        PayWith::Card => {
            open_widget_attempt(conn, now, tenant, payment).await?;
        }
        PayWith::Balance => super::balance_payments::pay(conn, now, tenant, payment, Take::Balance).await?,
        PayWith::Invoice => super::invoices::issue(conn, now, tenant, payment).await?,
    }
    let fresh = payments_db::find_for_update(conn, payment.id).await?.unwrap_or_else(|| payment.clone());
    payments::view_of(conn, gateways, tenant, &fresh).await
}

/// `POST /v1/payments/{id}/pay {pay_with}`: pays an overage payment (usage above a
/// quota billed at a period's end, SPEC §5) that is pending or was declined — the
/// usage was consumed, so the debt stays payable — another way: from the balance,
/// by card or the saved card, while no charge of it is in flight. Payments of
/// subscriptions are paid through the subscription's own endpoints.
pub async fn pay_pending(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    id: crate::domain::ids::PaymentId,
    pay_with: PayWith,
) -> ServiceResult<PaymentView> {
    let mut payment = payments_db::find_for_update(conn, id)
        .await?
        .filter(|p| p.tenant_id == tenant.id)
        .ok_or_else(|| ServiceError::not_found("payment_not_found", "no such payment"))?;
    if payment.kind != crate::domain::states::PaymentKind::Overage {
        return Err(ServiceError::conflict(
            "payment_not_payable_here",
            format!("a {} payment is paid through its subscription's endpoints", payment.kind),
        ));
    }
    use crate::domain::states::PaymentStatus;
    match payment.status {
        PaymentStatus::Pending => {}
        PaymentStatus::Failed => {
            payment.status = PaymentStatus::Pending;
            payment.failure_reason = None;
            payment.failure_code = None;
            payments_db::save(conn, &payment).await?;
        }
        other => return Err(ServiceError::conflict("payment_not_payable", format!("the payment is {other}"))),
    }
    attempts_db::call_off_refused(conn, payment.id).await?;
    if attempts_db::has_charge_in_progress(conn, payment.id).await? {
        return Err(ServiceError::conflict(
            "payment_in_progress",
            "a charge of this payment is in progress; wait for its outcome",
        ));
    }
    collect(conn, now, gateways, tenant, &mut payment, pay_with).await
}
