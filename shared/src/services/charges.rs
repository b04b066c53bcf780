//! Charges: applying a gateway outcome to the payment it collects — whichever path
//! reported it (the token charge's own answer, a Pay/Fail notification, or a
//! reconciliation through `payments/find`) — and processing charge attempts.
//!
//! Every path locks the payment row first, so an outcome is applied once: a second
//! report of the same transaction is a no-op, a capture under another transaction
//! id of an already paid payment is recorded as a duplicate.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use tracing::warn;
use uuid::Uuid;

use super::payments::{self, money_of};
use super::plans;
use super::scheduler;
use super::subscriptions::{self, status_of};
use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, AttemptRow, PaymentMethodRow, PaymentRow};
use crate::db::schema::{payment_attempts, payment_methods};
use crate::db::subscriptions::{self as subs_db, SubscriptionRow};
use crate::domain::dunning;
use crate::domain::ledger::Posting;
use crate::domain::period::period_end;
use crate::domain::states::{AttemptChannel, AttemptStatus, PAYMENT_SUPERSEDED, PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::{CardDetails, Decline, DeclineClass};

/// What a captured payment paid for: the events that follow `payment.succeeded`,
/// and how the money is booked when it is not a plain charge.
#[derive(Default)]
pub(crate) struct Applied {
    pub events: Vec<NewEvent>,
    pub posting: Option<Posting>,
}

impl Applied {
    pub fn event(
        tenant: &Tenant,
        sub: &SubscriptionRow,
        plan_code: &str,
        event_type: &'static str,
        extra: Value,
    ) -> Applied {
        Applied { events: vec![subscription_event(tenant, sub, plan_code, event_type, extra)], posting: None }
    }
}

pub(crate) fn subscription_event(
    tenant: &Tenant,
    sub: &SubscriptionRow,
    plan_code: &str,
    event_type: &'static str,
    extra: Value,
) -> NewEvent {
    NewEvent::event(tenant.id, sub.id, event_type, subscriptions::event_data(sub, plan_code, extra))
}

pub(crate) async fn emit_payment(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    p: &PaymentRow,
    event_type: &'static str,
) -> ServiceResult<()> {
    let data = payments::event_data(p)?;
    outbox::emit(conn, now, NewEvent::event(tenant.id, p.subscription_id.unwrap_or(p.customer_id), event_type, data))
        .await?;
    Ok(())
}

async fn save_card(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: Uuid,
    card: &CardDetails,
) -> ServiceResult<()> {
    let Some(token) = &card.token else { return Ok(()) };
    payments_db::save_payment_method(
        conn,
        &PaymentMethodRow {
            id: Uuid::now_v7(),
            tenant_id: tenant.id,
            customer_id,
            gateway: tenant.gateway.kind().into(),
            token: token.clone(),
            card_first_six: card.first_six.clone(),
            card_last_four: card.last_four.clone(),
            card_type: card.card_type.clone(),
            card_exp: card.exp.clone(),
            created_at: now,
            revoked_at: None,
            revoked_reason: None,
        },
    )
    .await?;
    Ok(())
}

/// Money captured for `payment` (locked by the caller) in `transaction_id`.
/// Returns what happened, for the raw event's outcome.
pub async fn apply_capture(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    attempt: &mut AttemptRow,
    transaction_id: &str,
    card: &CardDetails,
) -> ServiceResult<&'static str> {
    if payment.status.is_captured() {
        if payment.gateway_transaction_id.as_deref() == Some(transaction_id) {
            return Ok("already_applied");
        }
        record_duplicate_capture(conn, now, tenant, payment, transaction_id).await?;
        return Ok("duplicate_capture");
    }
    payment.status = PaymentStatus::Succeeded;
    payment.gateway_transaction_id = Some(transaction_id.to_owned());
    payment.failure_reason = None;
    payment.failure_code = None;
    payment.captured_at = Some(now);
    attempt.status = AttemptStatus::Succeeded;
    attempt.gateway_transaction_id = Some(transaction_id.to_owned());
    save_card(conn, now, tenant, payment.customer_id, card).await?;

    let applied = match (payment.kind, payment.subscription_id) {
        (PaymentKind::Purchase, Some(sub)) => activate_purchase(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Renewal, Some(sub)) => renew(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Extension, Some(sub)) => extend(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Upgrade, Some(sub)) => super::plan_change::apply_paid(conn, now, tenant, sub, payment).await?,
        // Usage above the quota of a period that has ended: nothing to apply.
        (PaymentKind::Overage, _) => Some(Applied::default()),
        _ => None,
    };
    payments_db::save(conn, payment).await?;
    payments_db::save_attempt(conn, attempt).await?;
    let money = money_of(payment)?;
    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
    let mut events = vec![NewEvent::event(tenant.id, ordering, "payment.succeeded", payments::event_data(payment)?)];
    let (posting, outcome) = match applied {
        Some(a) => {
            events.extend(a.events);
            let posting = a.posting.unwrap_or_else(|| {
                Posting::captured_charge("payment_captured", payment.description.clone(), payment.customer_id, money)
            });
            (posting, "applied")
        }
        // Paid, but what it paid for is gone: the money waits on the customer's
        // balance (to be refunded).
        None => (
            Posting::captured_to_balance(
                "payment_captured_unapplied",
                payment.description.clone(),
                payment.customer_id,
                money,
            ),
            "captured_unapplied",
        ),
    };
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    super::receipts::create_income(conn, now, tenant, payment).await?;
    outbox::emit_many(conn, now, events).await?;
    if outcome == "captured_unapplied" {
        // Paid for something already paid or no longer there (SPEC §6, the same
        // subscription period and purpose): refunded in full at once, outside the rules.
        let decided = super::refunds::Approved {
            reason: crate::domain::tenant::RefundReason::DoubleCharge,
            code: "unapplied_capture",
            amount: payment.amount,
            comment: Some(format!("{} payment captured with nothing left to apply it to", payment.kind)),
        };
        super::refunds::record_approved(conn, now, tenant, payment, decided).await?;
    }
    Ok(outcome)
}

/// A second capture of a payment that is already paid: its own payment, with the
/// money on the customer's balance, and refunded in full at once (SPEC §6: a double
/// charge the service detects itself is not subject to the refund rules).
async fn record_duplicate_capture(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    original: &PaymentRow,
    transaction_id: &str,
) -> ServiceResult<()> {
    let dup = PaymentRow {
        id: Uuid::now_v7(),
        status: PaymentStatus::Succeeded,
        gateway_transaction_id: Some(transaction_id.to_owned()),
        duplicate_of: Some(original.id),
        refunded_amount: rust_decimal::Decimal::ZERO,
        failure_reason: None,
        failure_code: None,
        expires_at: None,
        captured_at: Some(now),
        created_at: now,
        ..original.clone()
    };
    payments_db::insert(conn, &dup).await?;
    warn!(payment = %original.id, duplicate = %dup.id, transaction = %transaction_id, "second capture of a paid payment");
    let posting = Posting::captured_to_balance(
        "duplicate_capture",
        format!("duplicate of {}", original.id),
        dup.customer_id,
        money_of(&dup)?,
    );
    ledger::post(conn, tenant.id, Some(dup.id), now, &posting).await?;
    super::receipts::create_income(conn, now, tenant, &dup).await?;
    emit_payment(conn, now, tenant, &dup, "payment.succeeded").await?;
    let decided = super::refunds::Approved {
        reason: crate::domain::tenant::RefundReason::DoubleCharge,
        code: "duplicate_capture",
        amount: dup.amount,
        comment: Some(format!("second capture of payment {}", original.id)),
    };
    super::refunds::record_approved(conn, now, tenant, &dup, decided).await?;
    Ok(())
}

/// A purchase's first period starts at the payment.
async fn activate_purchase(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let mut sub = lock_sub(conn, sub_id).await?;
    let status = status_of(&sub)?;
    // The live subscription the purchase would sit next to: a trial or a free plan
    // it replaces, or one that makes a late payment for an expired purchase unapplicable.
    let other = subs_db::live_of_customer(conn, sub.customer_id).await?.into_iter().find(|s| s.id != sub.id);
    let revivable = status == SubscriptionStatus::Expired && sub.current_period_start.is_none();
    if status != SubscriptionStatus::PendingPayment && !revivable {
        return Ok(None);
    }
    let mut events = Vec::new();
    if let Some(mut other) = other {
        if !super::purchase::replaceable(&other) {
            return Ok(None);
        }
        let code = plans::load_cached(conn, other.plan_id).await?.code;
        subscriptions::expire(conn, now, tenant, &mut other, &code, "replaced_by_purchase").await?;
        subs_db::save(conn, &other).await?;
    }
    let plan = plans::load(conn, sub.plan_id).await?;
    subscriptions::activate(conn, now, tenant, &mut sub, &plan, payment).await?;
    scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    let extra = json!({"payment_id": payment.id, "amount": crate::domain::money::MoneyView::from(money_of(payment)?)});
    events.push(subscription_event(tenant, &sub, &plan.code, "subscription.activated", extra));
    Ok(Some(Applied { events, posting: None }))
}

async fn lock_sub(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<SubscriptionRow> {
    subs_db::find_for_update(conn, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("subscription {id} vanished")))
}

/// A renewal (scheduled, retried, or paid by hand) starts the next period: from the
/// old period end while access lasted (anchor kept), from the payment after a
/// suspension (new anchor).
async fn renew(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let mut sub = lock_sub(conn, sub_id).await?;
    let status = status_of(&sub)?;
    let outstanding = sub.renewal_payment_id == Some(payment.id);
    let (start, anchor, event) = match status {
        // A renewal charged before a cancellation still pays for its period.
        SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Canceled if outstanding => {
            let start = sub.current_period_end.unwrap_or(now);
            let event =
                if status == SubscriptionStatus::PastDue { "subscription.reactivated" } else { "subscription.renewed" };
            (start, sub.anchor_at.unwrap_or(start), event)
        }
        SubscriptionStatus::Suspended if outstanding => (now, now, "subscription.reactivated"),
        SubscriptionStatus::Expired if outstanding && subs_db::find_live(conn, sub.customer_id).await?.is_none() => {
            (now, now, "subscription.reactivated")
        }
        _ => return Ok(None),
    };
    let previous_plan = sub.plan_id;
    // A scheduled downgrade takes over with the period its renewal paid for.
    if let Some(plan_id) = payment.plan_id {
        sub.plan_id = plan_id;
    }
    if sub.scheduled_plan_id == Some(sub.plan_id) {
        sub.scheduled_plan_id = None;
    }
    let plan = plans::load_cached(conn, sub.plan_id).await?;
    let end = period_end(start, anchor, plan.period, tenant.tz);
    if let Some(planned) = sub.current_period_end {
        crate::db::usage::rekey(conn, sub.id, planned, start).await?;
    }
    sub.current_period_start = Some(start);
    sub.current_period_end = Some(end);
    sub.anchor_at = Some(anchor);
    sub.paid_amount = Some(payments::tariff_amount(payment)?);
    sub.price_id = payment.price_id;
    sub.next_charge_at = sub.auto_renew.then_some(end);
    sub.renewal_payment_id = None;
    sub.next_retry_at = None;
    sub.dunning_ends_at = None;
    sub.retries_stopped = false;
    sub.grace_until = None;
    let (to, cause) = match status {
        SubscriptionStatus::Active => (SubscriptionStatus::Active, "renewed"),
        SubscriptionStatus::Canceled => (SubscriptionStatus::Canceled, "renewed"),
        _ => (SubscriptionStatus::Active, "payment_succeeded"),
    };
    subscriptions::transition(conn, &mut sub, to, cause, now, Some(json!({"payment_id": payment.id}))).await?;
    payment.period_start = Some(start);
    payment.period_end = Some(end);
    scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
    let extra = json!({"payment_id": payment.id, "amount": crate::domain::money::MoneyView::from(money_of(payment)?)});
    let mut applied = Applied::event(tenant, &sub, &plan.code, event, extra);
    if previous_plan != sub.plan_id {
        let from = plans::load_cached(conn, previous_plan).await?.code;
        let extra =
            json!({"from_plan": from, "to_plan": plan.code, "effective": "next_period", "payment_id": payment.id});
        applied.events.push(subscription_event(tenant, &sub, &plan.code, "subscription.plan_changed", extra));
    }
    Ok(Some(applied))
}

/// A paid manual extension starts when the current period (and any extension
/// already queued) ends.
async fn extend(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let mut sub = lock_sub(conn, sub_id).await?;
    let status = status_of(&sub)?;
    if !matches!(status, SubscriptionStatus::Active | SubscriptionStatus::Canceled | SubscriptionStatus::Trialing) {
        return Ok(None);
    }
    let plan = plans::load(conn, sub.plan_id).await?;
    // The extension pays for its own plan (a scheduled downgrade's, if any).
    let paid_plan = match payment.plan_id {
        Some(id) if id != plan.id => plans::load_cached(conn, id).await?,
        _ => plan.clone(),
    };
    let Some(current_end) = sub.current_period_end else { return Ok(None) };
    let start = sub.paid_through.map_or(current_end, |p| p.max(current_end));
    let end = period_end(start, sub.anchor_at.unwrap_or(start), paid_plan.period, tenant.tz);
    payment.period_start = Some(start);
    payment.period_end = Some(end);
    sub.paid_through = Some(end);
    if sub.auto_renew {
        sub.next_charge_at = Some(end);
    }
    subs_db::record_transition(
        conn,
        sub.id,
        Some(sub.status),
        sub.status,
        "extension_paid",
        now,
        Some(json!({"payment_id": payment.id, "period_start": start, "period_end": end})),
    )
    .await?;
    scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
    Ok(Some(Applied::default()))
}

/// The decline of a charge that has no usable saved card to charge: hard.
pub(crate) fn no_saved_card(reason: &str) -> Decline {
    Decline {
        transaction_id: None,
        code: Some(dunning::NO_PAYMENT_METHOD.into()),
        reason: Some(reason.into()),
        class: DeclineClass::Hard,
    }
}

/// A decline of `attempt`. Scheduled renewal attempts drive dunning.
pub async fn apply_decline(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    attempt: &mut AttemptRow,
    decline: &Decline,
) -> ServiceResult<&'static str> {
    let transaction_id = decline.transaction_id.as_deref();
    let code = decline.code.as_deref();
    if payment.status != PaymentStatus::Pending && payment.status != PaymentStatus::Failed {
        return Ok("ignored_after_success");
    }
    if attempt.status.is_final() && attempt.gateway_transaction_id.as_deref() == transaction_id {
        return Ok("already_applied");
    }
    let reason = decline.reason.clone().unwrap_or_else(|| "declined".into());
    payment.status = PaymentStatus::Failed;
    payment.failure_reason = Some(reason.clone());
    payment.failure_code = code.map(str::to_owned);
    attempt.status = AttemptStatus::Failed;
    attempt.gateway_transaction_id = transaction_id.map(str::to_owned);
    attempt.failure_reason = Some(reason);
    attempt.failure_code = code.map(str::to_owned);
    payments_db::save(conn, payment).await?;
    payments_db::save_attempt(conn, attempt).await?;
    let hard = decline.class == DeclineClass::Hard;
    if hard && let Some(pm) = attempt.payment_method_id {
        diesel::update(payment_methods::table.find(pm).filter(payment_methods::revoked_at.is_null()))
            .set((payment_methods::revoked_at.eq(now), payment_methods::revoked_reason.eq(code)))
            .execute(conn)
            .await?;
    }
    emit_payment(conn, now, tenant, payment, "payment.failed").await?;
    if payment.kind == PaymentKind::Renewal
        && attempt.channel == AttemptChannel::Scheduled
        && let Some(sub_id) = payment.subscription_id
    {
        dun(conn, now, tenant, sub_id, payment, hard).await?;
    }
    Ok("declined")
}

/// After a scheduled renewal attempt failed: `past_due`, grace, next retry.
async fn dun(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &PaymentRow,
    hard: bool,
) -> ServiceResult<()> {
    let mut sub = lock_sub(conn, sub_id).await?;
    if sub.renewal_payment_id != Some(payment.id) {
        return Ok(());
    }
    let failed: i64 = payment_attempts::table
        .filter(payment_attempts::payment_id.eq(payment.id))
        .filter(payment_attempts::channel.eq(AttemptChannel::Scheduled))
        .filter(payment_attempts::status.eq(AttemptStatus::Failed))
        .count()
        .get_result(conn)
        .await?;
    let due = payment.period_start.unwrap_or(now);
    sub.retries_stopped |= hard;
    let s = dunning::schedule(&tenant.policy, due, u32::try_from(failed).unwrap_or(u32::MAX), sub.retries_stopped);
    sub.grace_until = Some(s.grace_until);
    sub.next_retry_at = s.next_retry_at;
    sub.dunning_ends_at = Some(s.ends_at);
    let plan = plans::load(conn, sub.plan_id).await?;
    if status_of(&sub)? == SubscriptionStatus::Active {
        subscriptions::transition(
            conn,
            &mut sub,
            SubscriptionStatus::PastDue,
            "renewal_declined",
            now,
            Some(json!({"payment_id": payment.id, "failure_code": payment.failure_code})),
        )
        .await?;
        let extra = json!({"payment_id": payment.id, "failure_code": payment.failure_code, "failure_reason": payment.failure_reason,
            "grace_until": s.grace_until, "next_retry_at": s.next_retry_at});
        subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.past_due", extra).await?;
    }
    // Boxed: advance -> start_attempt -> apply_decline -> dun -> advance is recursive.
    Box::pin(scheduler::advance(conn, now, tenant, &plan, &mut sub)).await
}

/// Creates the next attempt of `payment` (a scheduled renewal attempt or one the
/// customer asked for) and queues its charge. Without a usable saved card the
/// attempt fails at once.
pub async fn start_attempt(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    channel: AttemptChannel,
) -> ServiceResult<AttemptRow> {
    let attempt_no = payments_db::next_attempt_no(conn, payment.id).await?;
    let method = payments_db::default_payment_method(conn, payment.customer_id).await?;
    let mut attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, channel, method.as_ref().map(|m| m.id), now);
    payments_db::insert_attempt(conn, &attempt).await?;
    if method.is_none() {
        apply_decline(conn, now, tenant, payment, &mut attempt, &no_saved_card("no saved card")).await?;
        return Ok(attempt);
    }
    outbox::emit(conn, now, charge_job(payment, attempt.id)).await?;
    Ok(attempt)
}

/// A newer request replaces the subscription's unpaid payments of `kinds`: each
/// fails as `superseded`, with its attempts not yet sent, so none of them can be
/// charged any more. A charge already sent cannot be taken back: 409
/// `payment_in_progress` until its outcome is known.
pub(crate) async fn supersede_pending(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    kinds: &[PaymentKind],
) -> ServiceResult<()> {
    let pending = payments_db::pending_of_subscription(conn, subscription_id).await?;
    for mut p in pending.into_iter().filter(|p| kinds.contains(&p.kind)) {
        let attempts = payments_db::attempts_of(conn, p.id).await?;
        if attempts.iter().any(|a| a.status.may_have_reached_provider()) {
            return Err(ServiceError::conflict(
                "payment_in_progress",
                format!("a charge of the earlier {} payment is in progress; wait for its outcome", p.kind),
            ));
        }
        // Pending and refused attempts were never charged: they can be called off.
        for mut a in attempts.into_iter().filter(|a| a.status.never_charged()) {
            a.status = AttemptStatus::Failed;
            a.failure_reason = Some(PAYMENT_SUPERSEDED.into());
            payments_db::save_attempt(conn, &a).await?;
        }
        p.status = PaymentStatus::Failed;
        p.failure_reason = Some(PAYMENT_SUPERSEDED.into());
        payments_db::save(conn, &p).await?;
    }
    Ok(())
}

/// The work message that charges an attempt.
pub fn charge_job(payment: &PaymentRow, attempt_id: Uuid) -> NewEvent {
    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
    NewEvent::job(payment.tenant_id, ordering, crate::queue::jobs::Job::ChargeAttempt { attempt_id })
}
