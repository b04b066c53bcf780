//! Executing approved refunds through the tenant's gateway (SPEC §6): the worker
//! sends the refund's current try; the provider's notification (or, when it does
//! not come, a lookup of the refund's transaction) closes it
//! ([`super::refund_outcomes`]).
//!
//! A refund of a payment taken from the balance goes back onto the balance at
//! once (`approved → succeeded`), without the gateway.
//!
//! A refund moves `approved → processing → succeeded | failed`. Each execution try
//! has its own idempotency key `<refund id>-<try>`: a try whose outcome is unknown
//! is re-sent with the same key, so it never refunds twice; a retry of a failed
//! refund is a new try.
//!
//! A provider that refuses our own request (credentials) has refunded nothing: the
//! refund stays `processing`, the same try is re-sent with back-off and then
//! dead-lettered for an operator (replayable) — it is not `failed`, which would
//! tell the customer the refund was refused.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::refund_outcomes::{fail, succeed};
use super::refunds::{lock_with_payment, money, over_capture};
use super::tenants::{self, Tenant};
use super::{JobResult, merchant_side_failure};
use crate::clock::Clock;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::PaymentRow;
use crate::db::refunds::{self as db, RefundRow};
use crate::db::{PgPool, in_transaction};
use crate::domain::states::RefundStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::gateways::{GatewayError, PaymentGateway, RefundLookup, RefundOutcome, RefundRequest};
use crate::queue::jobs::Job;

/// What the worker does next with a refund.
enum Step {
    Nothing,
    Send { gateway: Box<dyn PaymentGateway>, payment_tx: String, refund: RefundRow },
    Reconcile { gateway: Box<dyn PaymentGateway>, refund: RefundRow, refund_tx: String },
}

/// Locks the refund's payment, then the refund (the order every writer uses).
async fn lock(
    conn: &mut AsyncPgConnection,
    refund_id: Uuid,
) -> ServiceResult<Option<(Arc<Tenant>, PaymentRow, RefundRow)>> {
    let Some(tenant_id) = db::tenant_of(conn, refund_id).await? else {
        return Ok(None);
    };
    let tenant = tenants::load_cached(conn, tenant_id).await?;
    Ok(lock_with_payment(conn, tenant_id, refund_id).await?.map(|(payment, refund)| (tenant, payment, refund)))
}

/// Claims the next step of a refund; an approved refund starts a new try.
async fn claim(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    refund_id: Uuid,
) -> ServiceResult<Step> {
    let Some((tenant, mut payment, mut refund)) = lock(conn, refund_id).await? else {
        return Err(ServiceError::not_found("refund_not_found", format!("no refund {refund_id}")));
    };
    // A payment from the balance is refunded back onto it: no gateway involved.
    if refund.status == RefundStatus::Approved && !(refund.to_prepaid + refund.to_cashback).is_zero() {
        let transaction = format!("{}:{}", super::balance::BALANCE, refund.id);
        succeed(conn, now, &tenant, &mut payment, &mut refund, &transaction).await?;
        return Ok(Step::Nothing);
    }
    let gateway = match gateways.for_config(&tenant.gateway) {
        Ok(g) => g,
        Err(GatewayError::Unsupported(why)) => {
            if matches!(refund.status, RefundStatus::Approved | RefundStatus::Processing) {
                fail(conn, now, &tenant, &payment, &mut refund, &why).await?;
            }
            return Ok(Step::Nothing);
        }
        Err(e) => return Err(e.into()),
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
            Ok(Step::Send { gateway, payment_tx, refund })
        }
        // The answer to the current try was lost: the same try again (same key).
        (RefundStatus::Processing, None) => match payment.gateway_transaction_id.clone() {
            Some(payment_tx) => Ok(Step::Send { gateway, payment_tx, refund }),
            None => Ok(Step::Nothing),
        },
        (RefundStatus::Processing, Some(refund_tx)) => Ok(Step::Reconcile { gateway, refund, refund_tx }),
        _ => Ok(Step::Nothing),
    }
}

/// Runs one refund job (either type): sends the current try, or asks the gateway
/// about a refund whose notification has not come.
pub async fn process(pool: &PgPool, clock: Clock, gateways: &Gateways, refund_id: Uuid) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let step = in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        claim(c, now, gateways, refund_id).await
    })
    .await?;
    drop(conn);
    match step {
        Step::Nothing => Ok(JobResult::Done),
        Step::Send { gateway, payment_tx, refund } => {
            let key = format!("{}-{}", refund.id, refund.attempt);
            let id = refund.id.to_string();
            let call = RefundRequest {
                refund_id: &id,
                idempotency_key: &key,
                payment_transaction_id: &payment_tx,
                amount: money(refund.amount, &refund.currency)?,
            };
            match gateway.refund(&call).await {
                Ok(RefundOutcome::Accepted { transaction_id }) => {
                    settle(pool, clock, refund_id, refund.attempt, Settle::Sent(transaction_id)).await
                }
                Ok(RefundOutcome::Refused { message }) => {
                    settle(pool, clock, refund_id, refund.attempt, Settle::Failed(message)).await
                }
                // Our request refused (credentials): nothing was refunded, the refund
                // stays processing and the same try is re-sent — never failed for the customer.
                Err(GatewayError::Refused(why)) => {
                    Ok(merchant_side_failure(refund.tenant_id, gateway.provider(), "refund", &why))
                }
                Err(e) => Ok(JobResult::RetryLater(format!("refund {refund_id}: {e}"))),
            }
        }
        Step::Reconcile { gateway, refund, refund_tx } => match gateway.find_refund(&refund_tx).await {
            Ok(RefundLookup::Completed) => {
                settle(pool, clock, refund_id, refund.attempt, Settle::Succeeded(refund_tx)).await
            }
            Ok(RefundLookup::Declined { reason }) => {
                let reason = reason.unwrap_or_else(|| "the gateway declined the refund".into());
                settle(pool, clock, refund_id, refund.attempt, Settle::Failed(reason)).await
            }
            Ok(RefundLookup::InProgress | RefundLookup::NotFound) => {
                Ok(JobResult::RetryLater(format!("refund {refund_id}: the gateway has not completed it yet")))
            }
            Err(GatewayError::Refused(why)) => {
                Ok(merchant_side_failure(refund.tenant_id, gateway.provider(), "find_refund", &why))
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
                    let ordering = payment.ordering_key();
                    let job =
                        NewEvent::job(tenant.id, ordering, Job::ReconcileRefund { refund_id: refund.id }).delayed(1);
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
