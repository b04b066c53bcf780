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
//! Charge jobs arrive in waves (a renewal instant), so they are processed in
//! batches: one statement claims the batch, the calls run concurrently, and the
//! captured plain renewals are recorded in one transaction of set-based
//! statements. Anything else — declines, unknown outcomes, other payment kinds, a
//! subscription that changed meanwhile, a notification that got there first —
//! takes the one-by-one path, which is also the fallback if the batch fails.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use futures_util::future::join_all;
use serde_json::json;
use tracing::warn;
use uuid::Uuid;

use super::charges::{apply_capture, apply_decline, no_saved_card};
use super::payments;
use super::plans;
use super::scheduler;
use super::subscriptions;
use super::tenants::{self, Tenant};
use super::{JobResult, merchant_side_failure};
use crate::clock::{Clock, real_now};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, AttemptRow, Captured, PaymentRow};
use crate::db::schema::{
    customers, payment_attempts, payment_methods, payments as payments_table, subscriptions as subs_table,
};
use crate::db::subscriptions::{self as subs_db, Renewed, SubscriptionRow};
use crate::db::{PgPool, in_transaction, ledger};
use crate::domain::ledger::Posting;
use crate::domain::money::Money;
use crate::domain::money::MoneyView;
use crate::domain::period::period_end;
use crate::domain::states::{AttemptStatus, PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;
use crate::gateways::{AttemptLookup, CardDetails, ChargeOutcome, ChargeRequest, GatewayError, PaymentGateway};
use crate::queue::jobs::Job;

/// Everything needed to talk to the gateway about an attempt, read in one go.
struct AttemptCall {
    tenant: Tenant,
    gateway: Box<dyn PaymentGateway>,
    token: Option<String>,
    amount: Money,
    invoice_id: String,
    description: String,
    customer_id: Uuid,
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

/// Sends the attempt's charge (a saved card that was revoked meanwhile is a decline).
async fn call_gateway(call: &AttemptCall) -> Outcome {
    let Some(token) = call.token.as_deref() else {
        return Outcome::Charge(ChargeOutcome::Declined(no_saved_card("saved card revoked")));
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
            if call.token.is_some() {
                match call.gateway.find_attempt(&call.invoice_id).await {
                    Ok(AttemptLookup::Done(outcome)) => {
                        return finish(pool, clock, attempt_id, &call, Outcome::Charge(outcome)).await;
                    }
                    Ok(AttemptLookup::InProgress) => {
                        return Ok(JobResult::RetryLater("the provider is still processing the attempt".into()));
                    }
                    Ok(AttemptLookup::NotFound) => {}
                    Err(GatewayError::Refused(why)) => {
                        return Ok(merchant_side_failure(call.tenant.id, call.gateway.provider(), "find", &why));
                    }
                    Err(e) => return Ok(JobResult::RetryLater(format!("reconciliation failed: {e}"))),
                }
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
        metrics::counter!("billing_charges_total", "outcome" => outcome.label()).increment(1);
        match outcome {
            Outcome::Charge(ChargeOutcome::Captured { transaction_id }) => captured.push((id, transaction_id)),
            other => rest.push((id, other)),
        }
    }
    let recording = std::time::Instant::now();
    let recorded = if captured.is_empty() { Ok(()) } else { record_captures(pool, clock, &calls, &captured).await };
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

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    attempt_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Text)]
    invoice_id: String,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    customer_id: Uuid,
    #[diesel(sql_type = diesel::sql_types::Numeric)]
    amount: rust_decimal::Decimal,
    #[diesel(sql_type = diesel::sql_types::Text)]
    currency: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    description: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    token: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    email: Option<String>,
}

/// The common case in one statement: pending (or refused, to re-send) attempts are marked `sent`
/// (committed before the gateway is called) and everything their calls need is
/// read with them. Attempts that are not pending (redelivery, follow-up, already
/// done) are left out.
async fn claim_pending(
    conn: &mut AsyncPgConnection,
    gateways: &Gateways,
    ids: &[Uuid],
) -> ServiceResult<Vec<(Uuid, Box<AttemptCall>)>> {
    let rows: Vec<Claimed> = diesel::sql_query(
        "WITH claimed AS (UPDATE payment_attempts SET status = 'sent', sent_at = now(), updated_at = now(), \
                                 failure_reason = NULL \
                          WHERE id = ANY($1) AND status IN ('pending', 'refused') \
                            AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.id = payment_id \
                                            AND (p.status = 'succeeded' OR p.failure_reason IN ('superseded', 'expired'))) \
                          RETURNING id, invoice_id, payment_id, payment_method_id) \
         SELECT c.id AS attempt_id, c.invoice_id, p.tenant_id, p.customer_id, p.amount, p.currency, p.description, \
                pm.token, cu.email \
         FROM claimed c JOIN payments p ON p.id = c.payment_id JOIN customers cu ON cu.id = p.customer_id \
         LEFT JOIN payment_methods pm ON pm.id = c.payment_method_id AND pm.revoked_at IS NULL",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(ids)
    .load(conn)
    .await?;
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
    let mut attempt = payment_attempts::table.find(attempt_id).select(AttemptRow::as_select()).first(conn).await?;
    let reconcile = match attempt.status {
        AttemptStatus::Pending | AttemptStatus::Refused => false,
        AttemptStatus::Sent | AttemptStatus::Unknown => true,
        _ => return Ok(Step::Done),
    };
    let tenant = tenants::load(conn, payment.tenant_id).await?;
    let gateway = gateways.for_config(&tenant.gateway)?;
    let token: Option<String> = match attempt.payment_method_id {
        Some(pm) => payment_methods::table
            .find(pm)
            .filter(payment_methods::revoked_at.is_null())
            .select(payment_methods::token)
            .first(conn)
            .await
            .optional()?,
        None => None,
    };
    let email: Option<String> =
        customers::table.find(payment.customer_id).select(customers::email).first(conn).await.optional()?;
    if !reconcile {
        attempt.status = AttemptStatus::Sent;
        attempt.failure_reason = None;
        attempt.sent_at = Some(real_now());
        payments_db::save_attempt(conn, &attempt).await?;
    }
    let call = Box::new(AttemptCall {
        tenant,
        gateway,
        token,
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
        let mut attempt = payment_attempts::table.find(attempt_id).select(AttemptRow::as_select()).first(c).await?;
        if attempt.status.is_final() {
            // A Pay/Fail notification got here first.
            return Ok(JobResult::Done);
        }
        match outcome {
            Outcome::Charge(ChargeOutcome::Captured { transaction_id }) => {
                let card = CardDetails::default();
                apply_capture(c, now, tenant, &mut payment, &mut attempt, &transaction_id, &card).await?;
                Ok(JobResult::Done)
            }
            Outcome::Charge(ChargeOutcome::Declined(decline)) => {
                apply_decline(c, now, tenant, &mut payment, &mut attempt, &decline).await?;
                Ok(JobResult::Done)
            }
            Outcome::Refused(why) => {
                attempt.status = AttemptStatus::Refused;
                attempt.failure_reason = Some(why.chars().take(500).collect());
                payments_db::save_attempt(c, &attempt).await?;
                Ok(merchant_side_failure(tenant.id, call.gateway.provider(), "charge", &why))
            }
            Outcome::Unknown(why) => {
                warn!(%attempt_id, %why, "charge outcome unknown: reconciling later");
                if attempt.status == AttemptStatus::Unknown {
                    return Ok(JobResult::RetryLater(why));
                }
                attempt.status = AttemptStatus::Unknown;
                payments_db::save_attempt(c, &attempt).await?;
                let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
                let job = NewEvent::job(tenant.id, ordering, Job::ReconcileAttempt { attempt_id }).delayed(0);
                outbox::emit(c, now, job).await?;
                Ok(JobResult::Done)
            }
        }
    })
    .await
}

/// A captured renewal the batch can record: the outstanding renewal of an active
/// subscription, renewing into the same plan.
fn plain_renewal(payment: &PaymentRow, attempt: &AttemptRow, sub: &SubscriptionRow) -> bool {
    attempt.status == AttemptStatus::Sent
        && payment.kind == PaymentKind::Renewal
        && payment.status.is_open()
        && sub.status == SubscriptionStatus::Active
        && sub.renewal_payment_id == Some(payment.id)
        && payment.plan_id == Some(sub.plan_id)
        && sub.current_period_end.is_some()
        && sub.paid_through.is_none()
}

/// Records a batch of captures in one transaction: plain renewals with set-based
/// statements (payments and attempts, subscriptions and their transitions, ledger,
/// events); any other capture in the batch through `apply_capture`.
async fn record_captures(
    pool: &PgPool,
    clock: Clock,
    calls: &HashMap<Uuid, &AttemptCall>,
    captured: &[(Uuid, String)],
) -> ServiceResult<()> {
    let mut conn = pool.get().await?;
    in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let attempt_ids: Vec<Uuid> = captured.iter().map(|(id, _)| *id).collect();
        let payments: Vec<PaymentRow> = payments_table::table
            .filter(
                payments_table::id.eq_any(
                    payment_attempts::table
                        .filter(payment_attempts::id.eq_any(&attempt_ids))
                        .select(payment_attempts::payment_id),
                ),
            )
            .order(payments_table::id)
            .for_update()
            .select(PaymentRow::as_select())
            .load(c)
            .await?;
        let attempts: HashMap<Uuid, AttemptRow> = payment_attempts::table
            .filter(payment_attempts::id.eq_any(&attempt_ids))
            .select(AttemptRow::as_select())
            .load(c)
            .await?
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let sub_ids: Vec<Uuid> = payments.iter().filter_map(|p| p.subscription_id).collect();
        let subs: HashMap<Uuid, SubscriptionRow> = subs_table::table
            .filter(subs_table::id.eq_any(&sub_ids))
            .order(subs_table::id)
            .for_update()
            .select(SubscriptionRow::as_select())
            .load(c)
            .await?
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let mut payments: HashMap<Uuid, PaymentRow> = payments.into_iter().map(|p| (p.id, p)).collect();

        let mut marked = Vec::new();
        let mut renewed = Vec::new();
        let mut renewed_payments = Vec::new();
        let mut postings = Vec::new();
        let mut events = Vec::new();
        for (attempt_id, transaction_id) in captured {
            let (Some(call), Some(attempt)) = (calls.get(attempt_id), attempts.get(attempt_id)) else { continue };
            let Some(payment) = payments.get_mut(&attempt.payment_id) else { continue };
            let sub = payment.subscription_id.and_then(|id| subs.get(&id));
            match sub {
                Some(sub) if plain_renewal(payment, attempt, sub) => {
                    let tenant = &call.tenant;
                    let plan = plans::load_cached(c, sub.plan_id).await?;
                    let start = sub.current_period_end.unwrap_or(now);
                    let end = period_end(start, sub.anchor_at.unwrap_or(start), plan.period, tenant.tz);
                    let mut next = sub.clone();
                    next.current_period_start = Some(start);
                    next.current_period_end = Some(end);
                    let tariff = payments::tariff_amount(payment)?;
                    next.paid_amount = Some(tariff);
                    next.price_id = payment.price_id;
                    next.next_charge_at = next.auto_renew.then_some(end);
                    next.renewal_payment_id = None;
                    next.next_retry_at = None;
                    next.dunning_ends_at = None;
                    next.retries_stopped = false;
                    next.grace_until = None;
                    next.due_at = scheduler::due_after(now, tenant, &next)?;
                    payment.status = PaymentStatus::Succeeded;
                    payment.gateway_transaction_id = Some(transaction_id.clone());
                    payment.captured_at = Some(now);
                    payment.period_start = Some(start);
                    payment.period_end = Some(end);
                    marked.push(Captured {
                        payment_id: payment.id,
                        attempt_id: *attempt_id,
                        transaction_id: transaction_id.clone(),
                        period_start: Some(start),
                        period_end: Some(end),
                    });
                    postings.push((
                        tenant.id,
                        payment.id,
                        Posting::captured_charge(
                            "payment_captured",
                            payment.description.clone(),
                            payment.customer_id,
                            payments::money_of(payment)?,
                        ),
                    ));
                    let amount = MoneyView::from(payments::money_of(payment)?);
                    events.push(NewEvent::event(
                        tenant.id,
                        sub.id,
                        "payment.succeeded",
                        payments::event_data(payment)?,
                    ));
                    events.push(NewEvent::event(
                        tenant.id,
                        sub.id,
                        "subscription.renewed",
                        subscriptions::event_data(
                            &next,
                            &plan.code,
                            json!({"payment_id": payment.id, "amount": amount}),
                        ),
                    ));
                    super::receipts::create_income(c, now, tenant, payment).await?;
                    renewed_payments.push(payment.id);
                    renewed.push(Renewed {
                        id: sub.id,
                        period_start: start,
                        period_end: end,
                        paid_amount: tariff,
                        price_id: payment.price_id,
                        next_charge_at: next.next_charge_at,
                        due_at: next.due_at,
                    });
                }
                _ if attempt.status == AttemptStatus::Sent => {
                    let mut attempt = attempt.clone();
                    apply_capture(c, now, &call.tenant, payment, &mut attempt, transaction_id, &CardDetails::default())
                        .await?;
                }
                // A notification recorded this attempt's outcome first.
                _ => {}
            }
        }
        if !marked.is_empty() {
            payments_db::mark_captured_many(c, now, &marked).await?;
            subs_db::apply_renewals(c, now, &renewed, &renewed_payments).await?;
            let posted: Vec<ledger::Posted<'_>> = postings
                .iter()
                .map(|(tenant_id, payment_id, posting)| ledger::Posted {
                    tenant_id: *tenant_id,
                    payment_id: Some(*payment_id),
                    occurred_at: now,
                    posting,
                })
                .collect();
            ledger::post_many(c, &posted).await?;
            outbox::emit_many(c, now, events).await?;
        }
        Ok(())
    })
    .await
}
