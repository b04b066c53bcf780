//! Provider termination (Alfa 10.2-10.3, `POST /v1/subscriptions/{id}/terminate`):
//! the provider ends a subscription now; without the customer's fault what was
//! paid and not used is refunded, outside the refund rules.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::payments;
use super::refunds::{Approved, RefundView, check_comment, money, record_approved};
use super::tenants::Tenant;
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::refunds as db;
use crate::domain::ids::SubscriptionId;
use crate::domain::money::Money;
use crate::domain::refund::prorata;
use crate::domain::states::PaymentKind;
use crate::domain::subscription::{Cause, SubscriptionStatus};
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};

/// `POST /v1/subscriptions/{id}/terminate` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"customer_fault": false, "reason": "Service discontinued"})))]
pub struct TerminateRequest {
    /// The customer broke the terms (Alfa 10.3): nothing is refunded.
    pub customer_fault: bool,
    #[schema(
        max_length = 1000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Terminated {
    pub subscription: super::subscriptions::SubscriptionView,
    /// The pro-rata refund of the current period's unused days, without the
    /// customer's fault.
    pub refund: Option<RefundView>,
    /// Without the customer's fault, also: paid extensions not yet started (in
    /// full) and upgrade surcharges of the current period (pro rata).
    pub additional_refunds: Vec<RefundView>,
}

/// The unused part of a paid period at `now`: all of a period not yet started,
/// pro rata of one under way (an upgrade's from the upgrade on).
fn unused_part(tenant: &Tenant, payment: &PaymentRow, now: DateTime<Utc>) -> ServiceResult<Option<Money>> {
    let (Some(start), Some(end)) = (payment.period_start, payment.period_end) else { return Ok(None) };
    let tariff = money(payments::tariff_amount(payment)?, &payment.currency)?;
    if start >= now {
        return Ok(Some(tariff));
    }
    let start =
        if payment.kind == PaymentKind::Upgrade { start.max(payment.captured_at.unwrap_or(start)) } else { start };
    Ok(Some(prorata(tariff, (start, end), now, tenant.tz)))
}

/// The provider ends a subscription now (Alfa 10.2-10.3). Without the customer's
/// fault what was paid and not used is refunded (approved at once, outside the
/// refund rules): the unused local days of the current period pro rata, upgrade
/// surcharges of the period likewise, paid extensions not yet started in full;
/// with it, nothing is.
pub async fn terminate(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: SubscriptionId,
    req: TerminateRequest,
) -> ServiceResult<Terminated> {
    let reason = req.reason.trim().to_owned();
    check_comment(Some(&reason))?;
    if reason.is_empty() {
        return Err(ServiceError::validation("reason must not be empty"));
    }
    // Payments are locked before the subscription, the order of every capture, and
    // read again once the subscription is held: a writer that held it before us may
    // have captured one meanwhile (an extension paid from the balance is inserted
    // and captured under the subscription's lock), and it is refunded too. Such a
    // payment is locked after the subscription, out of that order: a transaction
    // that locked it in the instant between and then waits for the subscription
    // deadlocks with this one, and PostgreSQL rolls one of them back whole (a request
    // answers 503 `concurrent_update`, a job is retried).
    payments_db::lock_paid_periods(conn, tenant.id, id, now).await?;
    let (mut sub, plan) = super::subscriptions::lock(conn, tenant, id).await?;
    let paid = payments_db::lock_paid_periods(conn, tenant.id, id, now).await?;
    let status = sub.status;
    if !status.is_live() || status == SubscriptionStatus::PendingPayment {
        return Err(ServiceError::conflict(
            "subscription_ended",
            format!("only a running subscription can be terminated (it is {})", sub.status),
        ));
    }
    let mut refund = None;
    let mut additional_refunds = Vec::new();
    if !req.customer_fault {
        for payment in &paid {
            let Some(unused) = unused_part(tenant, payment, now)? else { continue };
            let held = db::held_for_payment(conn, payment.id).await?;
            let amount = (unused.amount() - held).max(rust_decimal::Decimal::ZERO);
            if amount.is_zero() {
                continue;
            }
            let decided = Approved {
                reason: RefundReason::ProviderTermination,
                code: "provider_termination",
                amount,
                comment: Some(reason.clone()),
            };
            let view = record_approved(conn, now, tenant, payment, decided).await?;
            let current = payment.kind != PaymentKind::Upgrade
                && payment.period_start == sub.current_period_start
                && payment.period_end == sub.current_period_end;
            if current && refund.is_none() {
                refund = Some(view);
            } else {
                additional_refunds.push(view);
            }
        }
    }
    let extra = serde_json::json!({
        "customer_fault": req.customer_fault,
        "reason": reason,
        "refund_id": refund.as_ref().map(|r| r.id),
        "additional_refund_ids": additional_refunds.iter().map(|r| r.id).collect::<Vec<_>>(),
    });
    let cause = if req.customer_fault { Cause::TerminatedCustomerFault } else { Cause::TerminatedByProvider };
    super::subscriptions::end(conn, now, tenant, &mut sub, &plan.code, SubscriptionStatus::Terminated, cause, extra)
        .await?;
    super::subscriptions::store(conn, now, tenant, &mut sub).await?;
    Ok(Terminated { subscription: super::subscriptions::view(conn, &sub).await?, refund, additional_refunds })
}
