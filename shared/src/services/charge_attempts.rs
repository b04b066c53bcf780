//! Running charge attempts against the gateway: claim, call, record the outcome.
//!
//! An attempt is marked `sent` (committed) before the gateway is called. If an
//! earlier try may have reached the provider (status `sent` or `unknown`), the
//! attempt is reconciled through `payments/find` first and only re-sent — same
//! InvoiceId and X-Request-ID — when the provider does not know it: one attempt
//! never produces two charges.
//!
//! A provider that refuses our own request (credentials, a request it calls
//! malformed) has charged nothing: the attempt is marked `refused`, nothing moves
//! through dunning, no card is revoked, and the same attempt is re-sent with the
//! queue's back-off; when the retries run out it is dead-lettered with the reason,
//! to be replayed once the tenant's settings are fixed.
//!
//! Charges come in waves (a renewal instant), so they are processed in batches (up
//! to 256 of a scheduler tick's renewals in one job, [`super::charge_waves`], or the
//! one-attempt jobs the worker's consumer takes together): one statement claims
//! the batch, the calls run concurrently (as many at once as the gateways' bound,
//! `BILLING_GATEWAY_CONCURRENCY`, lets through), and the
//! captured plain renewals are recorded in one transaction of set-based
//! statements. Anything else — declines, unknown outcomes, other payment kinds, a
//! subscription that changed meanwhile, a notification that got there first —
//! takes the one-by-one path, which is also the fallback if the batch fails.

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use futures_util::future::join_all;
use tracing::warn;
use uuid::Uuid;

use super::payment_outcomes::{apply_capture, apply_decline, no_saved_card};
use super::payments;
use super::renewal_batches::{self, Capture};
use super::tenants::{self, Tenant};
use super::{JobResult, merchant_side_failure};
use crate::clock::{Clock, real_now};
use crate::db::attempts as attempts_db;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments as payments_db;
use crate::db::{PgPool, customers as customers_db, in_transaction};
use crate::domain::ids::CustomerId;
use crate::domain::money::Money;
use crate::domain::states::AttemptStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::gateways::{AttemptLookup, CardDetails, ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway};
use crate::queue::jobs::Job;

/// Everything needed to talk to the gateway about an attempt, read in one go.
struct AttemptCall {
    tenant: std::sync::Arc<Tenant>,
    gateway: Box<dyn PaymentGateway>,
    token: Option<String>,
    /// The attempt was made with a saved card (revoked since, when `token` is none).
    had_method: bool,
    amount: Money,
    invoice_id: String,
    description: String,
    customer_id: CustomerId,
    email: Option<String>,
}

enum Step {
    Done,
    Send(Box<AttemptCall>),
    Reconcile(Box<AttemptCall>),
}

/// Gateway outcome to apply.
enum Outcome {
    Charge(ChargeOutcome),
    Unknown(String),
    /// The provider refused the merchant's request: nothing was charged.
    Refused(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Charge(ChargeOutcome::Captured { .. }) => "captured",
            Outcome::Charge(ChargeOutcome::Declined(_)) => "declined",
            Outcome::Unknown(_) => "unknown",
            Outcome::Refused(_) => "refused",
        }
    }
}

/// Sends the attempt's charge, counting its outcome in `billing_charges_total`
/// (whichever path sends it: a batch or one attempt); an attempt without a saved
/// card is declined without a call and counted as `not_sent`, so that `declined`
/// stays the provider's verdict.
async fn call_gateway(call: &AttemptCall) -> Outcome {
    let outcome = send_charge(call).await;
    let label = if call.token.is_none() { "not_sent" } else { outcome.label() };
    metrics::counter!("billing_charges_total", "outcome" => label).increment(1);
    outcome
}

/// Sends the attempt's charge (a saved card that was revoked meanwhile is a decline).
async fn send_charge(call: &AttemptCall) -> Outcome {
    let Some(token) = call.token.as_deref() else {
        let reason = if call.had_method { "saved card revoked" } else { "no saved card" };
        return Outcome::Charge(ChargeOutcome::Declined(no_saved_card(reason)));
    };
    let charge = ChargeRequest {
        attempt_id: &call.invoice_id,
        method_token: token,
        customer_id: &call.customer_id.to_string(),
        amount: call.amount,
        description: &call.description,
        email: call.email.as_deref(),
    };
    match call.gateway.charge(&charge).await {
        Ok(o) => Outcome::Charge(o),
        Err(GatewayError::Refused(msg)) => Outcome::Refused(msg),
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// Processes one charge attempt.
pub async fn process_attempt(
    pool: &PgPool,
    clock: Clock,
    gateways: &Gateways,
    attempt_id: Uuid,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let step = match claim_pending(&mut conn, gateways, &[attempt_id]).await?.pop() {
        Some((_, call)) => Step::Send(call),
        None => in_transaction(&mut conn, async |c| claim(c, gateways, attempt_id).await).await?,
    };
    drop(conn);
    let call = match step {
        Step::Done => return Ok(JobResult::Done),
        Step::Send(call) => call,
        Step::Reconcile(call) => {
            // Asked even when the saved card was revoked meanwhile: the earlier try
            // may have charged it.
            match call.gateway.find_attempt(&call.invoice_id).await {
                Ok(AttemptLookup::Done(outcome)) => {
                    return finish(pool, clock, attempt_id, &call, Outcome::Charge(outcome)).await;
                }
                Ok(AttemptLookup::InProgress) => {
                    return Ok(JobResult::RetryLater("the provider is still processing the attempt".into()));
                }
                Ok(AttemptLookup::NotFound) => {}
                Ok(AttemptLookup::ResendToKnow) if call.token.is_none() => {
                    // Only the same request can tell, and its card is gone: an operator
                    // looks the attempt up in the provider's dashboard.
                    let why = "the outcome is unknown and only re-sending the charge could tell, but its saved \
                               card was revoked meanwhile";
                    return Ok(merchant_side_failure(call.tenant.id, call.gateway.provider(), "find", why));
                }
                Ok(AttemptLookup::ResendToKnow) => {}
                Err(GatewayError::Refused(why)) => {
                    return Ok(merchant_side_failure(call.tenant.id, call.gateway.provider(), "find", &why));
                }
                Err(e) => return Ok(JobResult::RetryLater(format!("reconciliation failed: {e}"))),
            }
            call
        }
    };
    let outcome = call_gateway(&call).await;
    finish(pool, clock, attempt_id, &call, outcome).await
}

/// Processes a batch of charge attempts; one result per id, in order.
pub async fn process_attempts(
    pool: &PgPool,
    clock: Clock,
    gateways: &Gateways,
    ids: &[Uuid],
) -> Vec<ServiceResult<JobResult>> {
    let phase = |name: &'static str, since: std::time::Instant| {
        metrics::histogram!("billing_charge_batch_phase_seconds", "phase" => name)
            .record(since.elapsed().as_secs_f64());
    };
    let started = std::time::Instant::now();
    let claimed = match pool.get().await {
        Ok(mut conn) => claim_pending(&mut conn, gateways, ids).await,
        Err(e) => Err(e.into()),
    };
    let claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "claiming a batch failed; processing one by one");
            return join_all(ids.iter().map(|id| process_attempt(pool, clock, gateways, *id))).await;
        }
    };
    let mut results: HashMap<Uuid, ServiceResult<JobResult>> = HashMap::new();
    let unclaimed: Vec<Uuid> = ids.iter().copied().filter(|id| !claimed.iter().any(|(c, _)| c == id)).collect();
    let sent = join_all(claimed.iter().map(|(id, call)| async move { (*id, call_gateway(call).await) }));
    let (others, outcomes) =
        tokio::join!(join_all(unclaimed.iter().map(|id| process_attempt(pool, clock, gateways, *id))), sent);
    for (id, r) in unclaimed.iter().zip(others) {
        results.insert(*id, r);
    }
    phase("claim_and_call", started);
    let calls: HashMap<Uuid, &AttemptCall> = claimed.iter().map(|(id, c)| (*id, c.as_ref())).collect();
    let mut captured = Vec::new();
    let mut rest = Vec::new();
    for (id, outcome) in outcomes {
        match outcome {
            Outcome::Charge(ChargeOutcome::Captured { transaction_id }) => captured.push((id, transaction_id)),
            other => rest.push((id, other)),
        }
    }
    let recording = std::time::Instant::now();
    let batch: Vec<Capture<'_>> = captured
        .iter()
        .filter_map(|(id, tx)| {
            let call = calls.get(id)?;
            Some(Capture { attempt_id: *id, transaction_id: tx, tenant: &call.tenant })
        })
        .collect();
    let recorded = if batch.is_empty() { Ok(()) } else { renewal_batches::record(pool, clock, &batch).await };
    phase("record", recording);
    if let Err(e) = recorded {
        warn!(error = %e, "recording a batch of captures failed; recording one by one");
        rest.extend(
            captured.drain(..).map(|(id, tx)| (id, Outcome::Charge(ChargeOutcome::Captured { transaction_id: tx }))),
        );
    }
    for (id, _) in &captured {
        results.insert(*id, Ok(JobResult::Done));
    }
    let finished = join_all(rest.into_iter().filter_map(|(id, outcome)| {
        let call = calls.get(&id).copied()?;
        Some(async move { (id, finish(pool, clock, id, call, outcome).await) })
    }))
    .await;
    for (id, r) in finished {
        results.insert(id, r);
    }
    ids.iter()
        .map(|id| {
            results.remove(id).unwrap_or_else(|| Err(ServiceError::Internal(format!("attempt {id} was not processed"))))
        })
        .collect()
}

/// Claims the pending (or refused, to re-send) attempts among `ids` in one
/// statement and reads what their calls need.
async fn claim_pending(
    conn: &mut AsyncPgConnection,
    gateways: &Gateways,
    ids: &[Uuid],
) -> ServiceResult<Vec<(Uuid, Box<AttemptCall>)>> {
    let rows = attempts_db::claim_pending(conn, ids).await?;
    let mut calls = Vec::with_capacity(rows.len());
    for row in rows {
        let tenant = tenants::load_cached(conn, row.tenant_id).await?;
        let gateway = gateways.for_config(&tenant.gateway)?;
        let amount = super::stored_money(row.amount, &row.currency, "payment amount")?;
        calls.push((
            row.attempt_id,
            Box::new(AttemptCall {
                tenant,
                gateway,
                token: row.token,
                had_method: row.had_method,
                amount,
                invoice_id: row.invoice_id,
                description: row.description,
                customer_id: row.customer_id,
                email: row.email,
            }),
        ));
    }
    Ok(calls)
}

/// Finds an attempt that is not pending: done, or to reconcile.
async fn claim(conn: &mut AsyncPgConnection, gateways: &Gateways, attempt_id: Uuid) -> ServiceResult<Step> {
    let Some(payment) = payments_db::lock_by_attempt(conn, attempt_id).await? else {
        warn!(%attempt_id, "charge job for an unknown attempt");
        return Ok(Step::Done);
    };
    let mut attempt = attempts_db::find_attempt(conn, attempt_id).await?;
    let reconcile = match attempt.status {
        AttemptStatus::Pending | AttemptStatus::Refused => false,
        AttemptStatus::Sent | AttemptStatus::Unknown => true,
        _ => return Ok(Step::Done),
    };
    let tenant = tenants::load(conn, payment.tenant_id).await?;
    let gateway = gateways.for_config(&tenant.gateway)?;
    let token = match attempt.payment_method_id {
        Some(pm) => attempts_db::usable_token(conn, pm).await?,
        None => None,
    };
    let email = Some(customers_db::email_of(conn, payment.customer_id).await?);
    if !reconcile {
        attempt.status = AttemptStatus::Sent;
        attempt.failure_reason = None;
        attempt.sent_at = Some(real_now());
        attempts_db::save_attempt(conn, &attempt).await?;
    }
    let call = Box::new(AttemptCall {
        tenant: tenant.into(),
        gateway,
        token,
        had_method: attempt.payment_method_id.is_some(),
        amount: payments::money_of(&payment)?,
        invoice_id: attempt.invoice_id.clone(),
        description: payment.description.clone(),
        customer_id: payment.customer_id,
        email,
    });
    Ok(if reconcile { Step::Reconcile(call) } else { Step::Send(call) })
}

/// Applies a gateway outcome in its own transaction.
async fn finish(
    pool: &PgPool,
    clock: Clock,
    attempt_id: Uuid,
    call: &AttemptCall,
    outcome: Outcome,
) -> ServiceResult<JobResult> {
    let mut conn = pool.get().await?;
    let tenant = &call.tenant;
    in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let mut payment = payments_db::lock_by_attempt(c, attempt_id)
            .await?
            .ok_or_else(|| ServiceError::Internal("payment vanished".into()))?;
        let mut attempt = attempts_db::find_attempt(c, attempt_id).await?;
        if attempt.status.is_final() {
            // A Pay/Fail notification got here first.
            return Ok(JobResult::Done);
        }
        match outcome {
            Outcome::Charge(ChargeOutcome::Captured { transaction_id }) => {
                let card = CardDetails::default();
                apply_capture(c, now, tenant, &mut payment, &mut attempt, &transaction_id, &card, None).await?;
                Ok(JobResult::Done)
            }
            Outcome::Charge(ChargeOutcome::Declined(decline)) => {
                apply_decline(c, now, tenant, &mut payment, &mut attempt, &decline).await?;
                Ok(JobResult::Done)
            }
            Outcome::Refused(why) => {
                attempt.status = AttemptStatus::Refused;
                attempt.failure_reason = Some(why.chars().take(500).collect());
                attempts_db::save_attempt(c, &attempt).await?;
                Ok(merchant_side_failure(tenant.id, call.gateway.provider(), "charge", &why))
            }
            Outcome::Unknown(why) => {
                warn!(%attempt_id, %why, "charge outcome unknown: reconciling later");
                if attempt.status == AttemptStatus::Unknown {
                    return Ok(JobResult::RetryLater(why));
                }
                attempt.status = AttemptStatus::Unknown;
                attempts_db::save_attempt(c, &attempt).await?;
                let ordering = payment.ordering_key();
                let job = NewEvent::job(tenant.id, ordering, Job::ReconcileAttempt { attempt_id }).delayed(0);
                outbox::emit(c, now, job).await?;
                Ok(JobResult::Done)
            }
        }
    })
    .await
}
