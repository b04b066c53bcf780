//! Executing approved refunds through the gateway (SPEC §6): the worker sends
//! CloudPayments `payments/refund`, the Refund notification closes the refund, and
//! when it does not arrive the worker asks `payments/get` for the refund's
//! transaction. Refunds made in the provider's dashboard arrive as Refund
//! notifications too and are recorded.
//!
//! A refund moves `approved → processing → succeeded | failed`. Each execution try
//! has its own idempotency key `<refund id>-<try>` (`X-Request-ID`): a try whose
//! outcome is unknown is re-sent with the same key, so it never refunds twice; a
//! retry of a failed refund is a new try. On success the payment's
//! `refunded_amount` grows (the database keeps it within the captured amount), the
//! ledger reverses the payment, a refund receipt is created, and a full refund of
//! the payment of the current period ends the subscription's access.
//!
//! A provider that refuses our own request (credentials) has refunded nothing: the
//! refund stays `processing`, the same try is re-sent with back-off and then
//! dead-lettered for an operator (replayable) — it is not `failed`, which would
//! tell the customer the refund was refused.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use serde_json::json;
use tracing::warn;
use uuid::Uuid;

use super::refunds::{RefundView, emit, lock_with_payment, money, new_row, over_capture, refund_not_found, view};
use super::tenants::{self, Tenant};
use super::{JobResult, merchant_side_failure};
use crate::clock::Clock;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::refunds::{self as db, RefundRow};
use crate::db::schema::{ledger_transactions, payments};
use crate::db::{PgPool, in_transaction, ledger};
use crate::domain::ledger::Posting;
use crate::domain::states::{PaymentStatus, RefundStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::GatewayError;
use crate::gateways::cloudpayments::api::{Account, CloudPaymentsApi, RefundCall, RefundOutcome, TransactionState};
use crate::queue::topology::{GATEWAY_FOLLOWUPS, REFUNDS};

/// Job types: execute an approved refund; ask the gateway about one in flight.
pub const EXECUTE: &str = "execute_refund";
pub const RECONCILE: &str = "reconcile_refund";

/// The refund job of an approved refund, in the approving transaction.
pub(crate) async fn enqueue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    payment: &PaymentRow,
    refund: &RefundRow,
) -> ServiceResult<()> {
    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
    let job = NewEvent::job(refund.tenant_id, ordering, REFUNDS.name, EXECUTE, json!({ "refund_id": refund.id }));
    outbox::emit(conn, now, job).await?;
    Ok(())
}

/// What the worker does next with a refund.
enum Step {
    Nothing,
    Send { account: Account, payment_tx: String, refund: RefundRow },
    Reconcile { account: Account, refund: RefundRow, refund_tx: String },
}

const GATEWAY_UNSUPPORTED: &str = "refunds through this tenant's gateway are not supported yet";

/// Locks the refund's payment, then the refund (the order every writer uses).
async fn lock(conn: &mut AsyncPgConnection, refund_id: Uuid) -> ServiceResult<Option<(Tenant, PaymentRow, RefundRow)>> {
    use crate::db::schema::refunds as r;
    let Some(tenant_id) = r::table.find(refund_id).select(r::tenant_id).first::<Uuid>(conn).await.optional()? else {
        return Ok(None);
    };
    let tenant = tenants::load_cached(conn, tenant_id).await?;
    Ok(lock_with_payment(conn, tenant_id, refund_id).await?.map(|(payment, refund)| (tenant, payment, refund)))
}

/// Claims the next step of a refund; an approved refund starts a new try.
async fn claim(conn: &mut AsyncPgConnection, now: DateTime<Utc>, refund_id: Uuid) -> ServiceResult<Step> {
    let Some((tenant, payment, mut refund)) = lock(conn, refund_id).await? else {
        return Err(ServiceError::not_found("refund_not_found", format!("no refund {refund_id}")));
    };
    let Some(account) = Account::from_config(&tenant.gateway) else {
        if matches!(refund.status, RefundStatus::Approved | RefundStatus::Processing) {
            fail(conn, now, &tenant, &payment, &mut refund, GATEWAY_UNSUPPORTED).await?;
        }
        return Ok(Step::Nothing);
    };
    match (refund.status, refund.gateway_transaction_id.clone()) {
        (RefundStatus::Approved, _) => {
            let Some(payment_tx) = payment.gateway_transaction_id.clone() else {
                fail(conn, now, &tenant, &payment, &mut refund, "the payment has no gateway transaction").await?;
                return Ok(Step::Nothing);
            };
            refund.status = RefundStatus::Processing;
            refund.attempt += 1;
            refund.sent_at = Some(now);
            refund.failure_reason = None;
            db::save(conn, &refund).await.map_err(over_capture)?;
            Ok(Step::Send { account, payment_tx, refund })
        }
        // The answer to the current try was lost: the same try again (same key).
        (RefundStatus::Processing, None) => match payment.gateway_transaction_id.clone() {
            Some(payment_tx) => Ok(Step::Send { account, payment_tx, refund }),
            None => Ok(Step::Nothing),
        },
        (RefundStatus::Processing, Some(refund_tx)) => Ok(Step::Reconcile { account, refund, refund_tx }),
        _ => Ok(Step::Nothing),
    }
}

/// Runs one refund job (either type): sends the current try, or asks the gateway
/// about a refund whose notification has not come.
pub async fn process(pool: &PgPool, clock: Clock, api: &CloudPaymentsApi, refund_id: Uuid) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let step = in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        claim(c, now, refund_id).await
    })
    .await?;
    drop(conn);
    match step {
        Step::Nothing => Ok(JobResult::Done),
        Step::Send { account, payment_tx, refund } => {
            let key = format!("{}-{}", refund.id, refund.attempt);
            let id = refund.id.to_string();
            let call =
                RefundCall { transaction_id: &payment_tx, amount: refund.amount, refund_id: &id, request_id: &key };
            match api.refund(&account, &call).await {
                Ok(RefundOutcome::Accepted { transaction_id }) => {
                    settle(pool, clock, refund_id, refund.attempt, Settle::Sent(transaction_id)).await
                }
                Ok(RefundOutcome::Refused { message }) => {
                    settle(pool, clock, refund_id, refund.attempt, Settle::Failed(message)).await
                }
                // Our request refused (credentials): nothing was refunded, the refund
                // stays processing and the same try is re-sent — never failed for the customer.
                Err(GatewayError::Refused(why)) => {
                    Ok(merchant_side_failure(refund.tenant_id, "cloudpayments", "payments/refund", &why))
                }
                Err(e) => Ok(JobResult::RetryLater(format!("refund {refund_id}: {e}"))),
            }
        }
        Step::Reconcile { account, refund, refund_tx } => match api.transaction_state(&account, &refund_tx).await {
            Ok(TransactionState::Completed) => {
                settle(pool, clock, refund_id, refund.attempt, Settle::Succeeded(refund_tx)).await
            }
            Ok(TransactionState::Declined { reason }) => {
                let reason = reason.unwrap_or_else(|| "the gateway declined the refund".into());
                settle(pool, clock, refund_id, refund.attempt, Settle::Failed(reason)).await
            }
            Ok(TransactionState::InProgress | TransactionState::NotFound) => {
                Ok(JobResult::RetryLater(format!("refund {refund_id}: the gateway has not completed it yet")))
            }
            Err(GatewayError::Refused(why)) => {
                Ok(merchant_side_failure(refund.tenant_id, "cloudpayments", "payments/get", &why))
            }
            Err(e) => Ok(JobResult::RetryLater(format!("refund {refund_id}: reconciliation failed: {e}"))),
        },
    }
}

enum Settle {
    /// The gateway accepted the try: wait for its notification (or reconcile).
    Sent(String),
    Succeeded(String),
    Failed(String),
}

/// Records what the gateway said about try `attempt` (ignored when the refund has
/// moved on: a notification got there first).
async fn settle(
    pool: &PgPool,
    clock: Clock,
    refund_id: Uuid,
    attempt: i32,
    outcome: Settle,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let Some((tenant, mut payment, mut refund)) = lock(c, refund_id).await? else {
            return Ok(JobResult::Done);
        };
        if refund.status != RefundStatus::Processing || refund.attempt != attempt {
            return Ok(JobResult::Done);
        }
        match outcome {
            Settle::Sent(tx) => {
                if refund.gateway_transaction_id.is_none() {
                    refund.gateway_transaction_id = Some(tx);
                    db::save(c, &refund).await?;
                    // Ask the gateway if the notification has not closed it by then.
                    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
                    let job = NewEvent::job(
                        tenant.id,
                        ordering,
                        GATEWAY_FOLLOWUPS.name,
                        RECONCILE,
                        json!({ "refund_id": refund.id }),
                    )
                    .delayed(1);
                    outbox::emit(c, now, job).await?;
                }
            }
            Settle::Succeeded(tx) => succeed(c, now, &tenant, &mut payment, &mut refund, &tx).await?,
            Settle::Failed(reason) => fail(c, now, &tenant, &payment, &mut refund, &reason).await?,
        }
        Ok(JobResult::Done)
    })
    .await
}

async fn fail(
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
    if payment.duplicate_of.is_some() {
        return Ok(true);
    }
    let unapplied: bool = diesel::select(diesel::dsl::exists(
        ledger_transactions::table
            .filter(ledger_transactions::payment_id.eq(payment.id))
            .filter(ledger_transactions::kind.eq_any(["payment_captured_unapplied", "duplicate_capture"])),
    ))
    .get_result(conn)
    .await?;
    Ok(unapplied)
}

/// The refund has been paid back: the payment, the ledger, the receipt, the
/// events, and access when the current period's payment is refunded in full.
async fn succeed(
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
    let amount = money(refund.amount, &refund.currency)?;
    let posting = Posting::refunded(
        format!("refund {} of payment {}", refund.id, payment.id),
        payment.customer_id,
        amount,
        !booked_to_balance(conn, payment).await?,
    );
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    super::receipts::create_refund(conn, now, tenant, payment, refund).await?;
    emit(conn, now, tenant, payment, refund, "refund.succeeded").await?;
    let data = super::payments::event_data(payment)?;
    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
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
    let (mut sub, plan) = super::lifecycle::lock(conn, tenant, sub_id).await?;
    let live = super::subscriptions::status_of(&sub)?.is_live();
    if !live || sub.current_period_start != Some(start) || sub.current_period_end != Some(end) || end <= now {
        return Ok(());
    }
    let extra = json!({"cause": "refunded", "payment_id": payment.id});
    super::subscriptions::end(conn, now, tenant, &mut sub, &plan.code, SubscriptionStatus::Expired, "refunded", extra)
        .await?;
    crate::db::subscriptions::save(conn, &sub).await?;
    Ok(())
}

/// A Refund notification: closes our refund (named by `Data.refund_id`, or by its
/// transaction), or records a refund made in the provider's dashboard. Returns the
/// outcome stored with the raw notification.
pub async fn notified(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &crate::gateways::cloudpayments::wire::PaymentNotification,
    data_refund_id: Option<Uuid>,
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
    let Some(mut payment) = payments::table
        .filter(payments::tenant_id.eq(tenant.id))
        .filter(payments::gateway_transaction_id.eq(payment_tx))
        .select(PaymentRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()?
    else {
        warn!(tenant = %tenant.id, payment_tx, "Refund notification for an unknown payment");
        return Ok("unmatched_payment".into());
    };
    let ours = find_ours(conn, tenant.id, payment.id, data_refund_id, &n.transaction_id, amount).await?;
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
    tenant_id: Uuid,
    payment_id: Uuid,
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

/// `POST /v1/refunds/{id}/retry`: a failed refund is approved again and executed
/// as a new try (a new idempotency key).
pub async fn retry(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
) -> ServiceResult<RefundView> {
    let (payment, mut refund) = lock_with_payment(conn, tenant.id, id).await?.ok_or_else(refund_not_found)?;
    if refund.status != RefundStatus::Failed {
        return Err(ServiceError::conflict(
            "refund_not_failed",
            format!("only a failed refund can be retried (it is {})", refund.status),
        ));
    }
    refund.status = RefundStatus::Approved;
    refund.gateway_transaction_id = None;
    db::save(conn, &refund).await.map_err(over_capture)?;
    enqueue(conn, now, &payment, &refund).await?;
    view(&refund)
}
