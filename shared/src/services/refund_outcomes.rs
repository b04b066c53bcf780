//! What becomes of a refund at the gateway (SPEC §6), whichever path reported
//! it — the worker's call, a lookup, or the provider's notification: paid back
//! (`succeeded`: the payment's `refunded_amount` grows, the ledger reverses the
//! payment, a refund receipt is created, and a full refund of the current
//! period's payment ends access) or refused (`failed`). Refunds made in the
//! provider's dashboard arrive as notifications and are recorded here too.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use serde_json::json;
use tracing::warn;
use uuid::Uuid;

use super::refunds::{emit, money, new_row, over_capture};
use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::refunds::{self as db, RefundRow};
use crate::domain::ids::{PaymentId, TenantId};
use crate::domain::ledger::{Funding, Posting};
use crate::domain::states::{PaymentKind, PaymentStatus, RefundStatus};
use crate::domain::subscription::{Cause, SubscriptionStatus};
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::RefundReport;

/// The gateway refused the refund: `failed`, `refund.failed`.
pub(crate) async fn fail(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    refund: &mut RefundRow,
    reason: &str,
) -> ServiceResult<()> {
    warn!(refund = %refund.id, reason, "refund failed");
    refund.status = RefundStatus::Failed;
    refund.failure_reason = Some(reason.chars().take(500).collect());
    db::save(conn, refund).await?;
    emit(conn, now, tenant, payment, refund, "refund.failed").await
}

/// True when the payment's money was booked to the customer's balance rather
/// than to revenue (a duplicate capture, or a capture whose purchase was gone).
async fn booked_to_balance(conn: &mut AsyncPgConnection, payment: &PaymentRow) -> ServiceResult<bool> {
    // A top-up was never revenue: its refund leaves from where its hold put it.
    if payment.duplicate_of.is_some() || payment.kind == PaymentKind::TopUp {
        return Ok(true);
    }
    Ok(ledger::captured_to_balance(conn, payment.id).await?)
}

/// Where a refund's money goes: back onto the balance for a balance-paid
/// payment (`to_prepaid`, `to_cashback`), else through the gateway.
fn destination(refund: &RefundRow) -> ServiceResult<Funding> {
    let part = |a| money(a, &refund.currency);
    if refund.to_prepaid.is_zero() && refund.to_cashback.is_zero() {
        return Ok(Funding::gateway(part(refund.amount)?));
    }
    Ok(Funding::balance(part(refund.to_prepaid)?, part(refund.to_cashback)?))
}

/// The refund has been paid back: the payment, the ledger, the receipt, the
/// events, and access when the current period's payment is refunded in full.
pub(crate) async fn succeed(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    refund: &mut RefundRow,
    refund_tx: &str,
) -> ServiceResult<()> {
    refund.status = RefundStatus::Succeeded;
    refund.gateway_transaction_id = Some(refund_tx.to_owned());
    refund.succeeded_at = Some(now);
    refund.failure_reason = None;
    db::save(conn, refund).await.map_err(over_capture)?;
    payment.refunded_amount += refund.amount;
    payment.status = if payment.refunded_amount >= payment.amount {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    };
    payments_db::save(conn, payment).await?;
    let posting = Posting::refunded(
        format!("refund {} of payment {}", refund.id, payment.id),
        payment.customer_id,
        destination(refund)?,
        !booked_to_balance(conn, payment).await?,
    );
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    let to_balance = refund.to_prepaid + refund.to_cashback;
    if !to_balance.is_zero() {
        let amount = money(to_balance, &refund.currency)?;
        let event = super::balance::event(conn, tenant, payment, true, "refund", amount).await?;
        outbox::emit(conn, now, event).await?;
    }
    if let Some(event) = super::partners::reverse(conn, now, tenant, payment, refund).await? {
        outbox::emit(conn, now, event).await?;
    }
    super::receipts::create_refund(conn, now, tenant, payment, refund).await?;
    emit(conn, now, tenant, payment, refund, "refund.succeeded").await?;
    let data = super::payments::event_data(payment)?;
    let ordering = payment.ordering_key();
    outbox::emit(conn, now, NewEvent::event(tenant.id, ordering, "payment.refunded", data)).await?;
    if payment.status == PaymentStatus::Refunded {
        end_refunded_period(conn, now, tenant, payment).await?;
    }
    Ok(())
}

/// A full refund of the payment that paid for the current period ends access now.
async fn end_refunded_period(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<()> {
    let (Some(sub_id), Some(start), Some(end)) = (payment.subscription_id, payment.period_start, payment.period_end)
    else {
        return Ok(());
    };
    if payment.duplicate_of.is_some() || !payment.kind.pays_tariff() {
        return Ok(());
    }
    let (mut sub, plan) = super::subscriptions::lock(conn, tenant, sub_id).await?;
    let live = sub.status.is_live();
    if !live || sub.current_period_start != Some(start) || sub.current_period_end != Some(end) || end <= now {
        return Ok(());
    }
    let extra = json!({"cause": "refunded", "payment_id": payment.id});
    super::subscriptions::end(
        conn,
        now,
        tenant,
        &mut sub,
        &plan.code,
        SubscriptionStatus::Expired,
        Cause::Refunded,
        extra,
    )
    .await?;
    super::subscriptions::store(conn, now, tenant, &mut sub).await?;
    Ok(())
}

/// A refund notification: closes our refund (named by the id we sent, or by its
/// transaction), or records a refund made in the provider's dashboard. Returns the
/// outcome stored with the raw notification.
pub async fn notified(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &RefundReport,
) -> ServiceResult<String> {
    let Some(payment_tx) = n.payment_transaction_id.as_deref() else {
        return Err(ServiceError::invalid("invalid_notification", "a Refund notification needs PaymentTransactionId"));
    };
    let Some(amount) = n.amount.filter(|a| *a > Decimal::ZERO && a.normalize().scale() <= 2) else {
        return Err(ServiceError::invalid(
            "invalid_notification",
            "a Refund notification needs a positive Amount in kopecks",
        ));
    };
    let Some(mut payment) = payments_db::lock_by_transaction(conn, tenant.id, payment_tx).await? else {
        warn!(tenant = %tenant.id, payment_tx, "Refund notification for an unknown payment");
        return Ok("unmatched_payment".into());
    };
    let ours = find_ours(conn, tenant.id, payment.id, n.refund_id, &n.transaction_id, amount).await?;
    if let Some(mut refund) = ours {
        if refund.status == RefundStatus::Succeeded {
            if refund.gateway_transaction_id.as_deref() != Some(n.transaction_id.as_str()) {
                tracing::error!(refund = %refund.id, transaction = %n.transaction_id,
                    "a second gateway refund for one refund: check the provider's dashboard");
                return Ok("second_gateway_refund".into());
            }
            return Ok("already_succeeded".into());
        }
        if refund.amount != amount {
            warn!(refund = %refund.id, ?amount, "Refund notification amount differs from the refund");
            return Ok("amount_mismatch".into());
        }
        succeed(conn, now, tenant, &mut payment, &mut refund, &n.transaction_id).await?;
        return Ok("refund_succeeded".into());
    }
    record_dashboard_refund(conn, now, tenant, &mut payment, amount, &n.transaction_id).await?;
    Ok("dashboard_refund_recorded".into())
}

/// Our refund a Refund notification is about: the one its `Data` names, else the
/// one with its transaction, else one sent for that amount whose answer is not
/// recorded yet. `None`: a refund made outside the service.
async fn find_ours(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    payment_id: PaymentId,
    data_refund_id: Option<Uuid>,
    refund_tx: &str,
    amount: Decimal,
) -> ServiceResult<Option<RefundRow>> {
    if let Some(id) = data_refund_id
        && let Some(r) = db::find_for_update(conn, tenant_id, id).await?.filter(|r| r.payment_id == payment_id)
    {
        return Ok(Some(r));
    }
    if let Some(r) = db::find_by_gateway_transaction(conn, tenant_id, refund_tx).await? {
        return Ok(Some(r));
    }
    Ok(db::in_flight_without_transaction(conn, payment_id, amount).await?)
}

/// A refund made outside the service: a fact to record. Held review requests of
/// the payment that no longer fit beside it are rejected.
async fn record_dashboard_refund(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    amount: Decimal,
    refund_tx: &str,
) -> ServiceResult<()> {
    let mut held = db::held_for_payment(conn, payment.id).await?;
    if held + amount > payment.amount {
        for mut pending in db::pending_review_of(conn, payment.id).await? {
            if held + amount <= payment.amount {
                break;
            }
            held -= pending.amount;
            pending.status = RefundStatus::Rejected;
            pending.decision_code = "superseded_by_dashboard_refund".into();
            pending.decided_at = Some(now);
            db::save(conn, &pending).await?;
            emit(conn, now, tenant, payment, &pending, "refund.rejected").await?;
        }
    }
    let mut refund = RefundRow {
        comment: Some("refunded in the provider's dashboard".into()),
        ..new_row(payment, RefundReason::Goodwill, RefundStatus::Processing, "made_in_dashboard", amount, now)?
    };
    refund.reason = "dashboard".into();
    db::insert(conn, &refund).await.map_err(over_capture)?;
    emit(conn, now, tenant, payment, &refund, "refund.requested").await?;
    succeed(conn, now, tenant, payment, &mut refund, refund_tx).await
}
