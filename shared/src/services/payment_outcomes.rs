//! Applying a gateway outcome to the payment it collects — whichever path reported
//! it (a charge's own answer, the provider's notification, or a reconciliation) —
//! and to what the payment pays for: a purchase activates, a renewal renews (or
//! reactivates), an extension queues a period, an upgrade switches plans; a
//! declined renewal goes through dunning.
//!
//! Every path locks the payment row first, so an outcome is applied once: a second
//! report of the same transaction is a no-op, and a capture under another
//! transaction id of an already paid payment is recorded as a duplicate and
//! refunded at once.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use tracing::warn;
use uuid::Uuid;

use super::money_steps::MoneySteps;
use super::payments::{self, money_of};
use super::plans;
use super::subscriptions::{self, Applied, unexpected};
use super::tenants::Tenant;
use crate::db::attempts::{self as attempts_db, AttemptRow, PaymentMethodRow};
use crate::db::gateway_events::{self as events_db, Received};
use crate::db::ledger;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::pipeline;
use crate::db::subscriptions as subs_db;
use crate::domain::dunning;
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId};
use crate::domain::ledger::Posting;
use crate::domain::period::{Period, period_end};
use crate::domain::states::{AttemptChannel, AttemptStatus, PaymentKind, PaymentStatus};
use crate::domain::subscription::lifecycle::Paid;
use crate::domain::subscription::renewal::{Declined, RenewalPaid};
use crate::domain::subscription::{Cause, PlanRef, SubscriptionStatus};
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::{CardDetails, Decline, DeclineClass};

async fn emit_payment(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    p: &PaymentRow,
    event_type: &'static str,
) -> ServiceResult<()> {
    let data = payments::event_data(p)?;
    outbox::emit(conn, now, NewEvent::event(tenant.id, p.ordering_key(), event_type, data)).await?;
    Ok(())
}

async fn save_card(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: CustomerId,
    card: &CardDetails,
) -> ServiceResult<()> {
    let Some(row) = card_row(now, tenant, customer_id, card) else { return Ok(()) };
    attempts_db::save_payment_method(conn, &row).await?;
    Ok(())
}

/// The saved payment method a capture's card leaves (`None` when the provider
/// gave no token to charge it again).
pub(super) fn card_row(
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: CustomerId,
    card: &CardDetails,
) -> Option<PaymentMethodRow> {
    let token = card.token.as_ref()?;
    Some(PaymentMethodRow {
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
    })
}

/// What [`apply_capture`] did (`applied`, `captured_unapplied`, `already_applied`,
/// `duplicate_capture`), and whether the provider notification it was given is
/// new: stored with the outcome, or false when the same one was stored before (a
/// provider retry: the caller must roll its transaction back). True without one.
pub struct Captured {
    pub outcome: &'static str,
    pub stored: bool,
}

/// Money captured for `payment` (locked by the caller) in `transaction_id`. A
/// provider's `notification` of it, when given, is stored raw with the outcome —
/// with the payment and its events when the capture applies, in a statement of its
/// own when it was applied before or is a duplicate — and when it was stored
/// before ([`Captured::stored`] false) the caller must roll everything back
/// ([`crate::services::notifications`]).
#[allow(clippy::too_many_arguments)]
pub async fn apply_capture(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    attempt: &mut AttemptRow,
    transaction_id: &str,
    card: &CardDetails,
    notification: Option<&Received<'_>>,
) -> ServiceResult<Captured> {
    if payment.status.is_captured() {
        let outcome = if payment.gateway_transaction_id.as_deref() == Some(transaction_id) {
            "already_applied"
        } else {
            record_duplicate_capture(conn, now, tenant, payment, transaction_id).await?;
            "duplicate_capture"
        };
        return Ok(Captured { outcome, stored: store(conn, notification, outcome).await? });
    }
    payment.status = PaymentStatus::Succeeded;
    payment.gateway_transaction_id = Some(transaction_id.to_owned());
    payment.failure_reason = None;
    payment.failure_code = None;
    payment.captured_at = Some(now);
    attempt.status = AttemptStatus::Succeeded;
    attempt.gateway_transaction_id = Some(transaction_id.to_owned());
    // Saved before applying: what the payment does may charge the customer's
    // default card (an upgrade that restarts the period bills the ended period's
    // overage), and that is now the card just used.
    save_card(conn, now, tenant, payment.customer_id, card).await?;

    let applied = match (payment.kind, payment.subscription_id) {
        (PaymentKind::Purchase, Some(sub)) => activate_purchase(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Renewal, Some(sub)) => renew(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Extension, Some(sub)) => extend(conn, now, tenant, sub, payment).await?,
        (PaymentKind::Upgrade, Some(sub)) => super::plan_switch::apply_paid(conn, now, tenant, sub, payment).await?,
        // Usage above the quota of a period that has ended: nothing to apply.
        (PaymentKind::Overage, _) => Some(Applied::default()),
        (PaymentKind::TopUp, _) => {
            let posting = Posting::top_up(payment.description.clone(), payment.customer_id, money_of(payment)?);
            Some(Applied { posting: Some(posting), ..Applied::default() })
        }
        _ => None,
    };
    let funding = payments::funding_of(payment)?;
    if applied.is_none() && funding.from_balance() {
        // Taken from the balance in this very transaction: refuse it whole instead.
        return Err(ServiceError::conflict(
            "payment_not_applicable",
            format!("the {} payment no longer applies to anything", payment.kind),
        ));
    }
    let ordering = payment.ordering_key();
    let mut events = vec![NewEvent::event(tenant.id, ordering, "payment.succeeded", payments::event_data(payment)?)];
    let (posting, outcome, staged) = match applied {
        Some(a) => {
            events.extend(a.events);
            let posting = a.posting.unwrap_or_else(|| {
                Posting::charge("payment_captured", payment.description.clone(), payment.customer_id, funding)
            });
            (posting, "applied", a.staged)
        }
        // Paid, but what it paid for is gone: the money waits on the customer's
        // balance (to be refunded).
        None => (
            Posting::captured_to_balance(
                "payment_captured_unapplied",
                payment.description.clone(),
                payment.customer_id,
                money_of(payment)?,
            ),
            "captured_unapplied",
            None,
        ),
    };
    // Independent writes share round trips ([`pipeline`]): the subscription's
    // transition, the attempt and the posting; then the payment (saved once its
    // cashback is known, the balance read after the posting), its events and the
    // notification — in the same round trip when nothing else (money steps, a
    // receipt) comes between.
    let steps = MoneySteps::of(conn, tenant, payment, outcome == "applied").await?;
    let first = async {
        let (switched, attempted, posted) = futures_util::future::join3(
            subscriptions::Staged::write_if_any(staged.as_ref(), conn),
            attempts_db::save_attempt(conn, attempt),
            ledger::post(conn, tenant.id, Some(payment.id), now, &posting),
        )
        .await;
        pipeline::outcome([switched, attempted, posted.map(drop)])
    };
    let new = if steps.none() && !super::receipts::receipted_at_all(tenant, payment) {
        let (first, (last, new)) =
            futures_util::future::join(first, last(conn, now, payment, events, notification, outcome)).await;
        pipeline::outcome([first, last])?;
        new
    } else {
        first.await?;
        events.extend(steps.take(conn, now, tenant, payment).await?);
        super::receipts::create_income(conn, now, tenant, payment).await?;
        let (last, new) = last(conn, now, payment, events, notification, outcome).await;
        last?;
        new
    };
    if new && outcome == "captured_unapplied" {
        // Paid for something already paid or no longer there (SPEC §6, the same
        // subscription period and purpose): refunded in full at once, outside the rules.
        let decided = super::refunds::Approved {
            reason: RefundReason::DoubleCharge,
            code: "unapplied_capture",
            amount: payment.amount,
            comment: Some(format!("{} payment captured with nothing left to apply it to", payment.kind)),
        };
        super::refunds::record_approved(conn, now, tenant, payment, decided).await?;
    }
    Ok(Captured { outcome, stored: new })
}

/// A capture's last writes: the payment, its events and the provider's
/// notification, pipelined. Returns their outcome and whether the notification is
/// new (see [`Captured`]).
async fn last(
    conn: &AsyncPgConnection,
    now: DateTime<Utc>,
    payment: &PaymentRow,
    events: Vec<NewEvent>,
    notification: Option<&Received<'_>>,
    outcome: &str,
) -> (QueryResult<()>, bool) {
    let (saved, emitted, stored) = futures_util::future::join3(
        payments_db::save(conn, payment),
        outbox::emit_many(conn, now, events),
        store(conn, notification, outcome),
    )
    .await;
    let (stored, new) = match stored {
        Ok(new) => (Ok(()), new),
        Err(e) => (Err(e), false),
    };
    (pipeline::outcome([saved, emitted.map(drop), stored]), new)
}

/// Stores the provider's notification of a capture, if there is one: true when it
/// is new (or there is none).
async fn store(conn: &AsyncPgConnection, notification: Option<&Received<'_>>, outcome: &str) -> QueryResult<bool> {
    match notification {
        Some(n) => events_db::store(conn, n, outcome).await,
        None => Ok(true),
    }
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
        id: PaymentId::new(),
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
        reason: RefundReason::DoubleCharge,
        code: "duplicate_capture",
        amount: dup.amount,
        comment: Some(format!("second capture of payment {}", original.id)),
    };
    super::refunds::record_approved(conn, now, tenant, &dup, decided).await?;
    Ok(())
}

/// A purchase's first period starts at the payment; a trial or free plan it
/// replaces ends. `None` when the purchase can no longer be applied.
async fn activate_purchase(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: SubscriptionId,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    // The purchase and the live subscription it would sit next to (a trial or a
    // free plan it replaces, or one that makes a late payment for an expired
    // purchase unapplicable), locked together.
    let (mut mine, others): (Vec<_>, Vec<_>) =
        subs_db::lock_live(conn, payment.customer_id, Some(sub_id)).await?.into_iter().partition(|s| s.id == sub_id);
    let mut sub = mine.pop().ok_or_else(|| {
        ServiceError::Internal(format!("subscription {sub_id} of payment {} is gone or not its customer's", payment.id))
    })?;
    let revivable = sub.status == SubscriptionStatus::Expired && sub.current_period_start.is_none();
    if sub.status != SubscriptionStatus::PendingPayment && !revivable {
        return Ok(None);
    }
    if let Some(mut other) = others.into_iter().next() {
        if !other.replaceable() {
            return Ok(None);
        }
        let code = plans::load_cached(conn, other.plan_id).await?.code;
        subscriptions::expire(conn, now, tenant, &mut other, &code, Cause::ReplacedByPurchase).await?;
        subscriptions::store(conn, now, tenant, &mut other).await?;
    }
    let plan = plans::load_cached(conn, sub.plan_id).await?;
    let change = sub.activate(now, purchase_paid(now, tenant, payment, plan.period)?).map_err(unexpected)?;
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    let (staged, events) = subscriptions::stage(now, tenant, &mut sub, &plan.code, change)?;
    Ok(Some(Applied { events, posting: None, staged: Some(staged) }))
}

/// What a captured purchase pays for: a first period of the plan's `period` from
/// `now` (in the tenant's time zone), at the payment's tariff.
pub(super) fn purchase_paid(
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    period: Period,
) -> ServiceResult<Paid> {
    Ok(Paid {
        payment_id: payment.id,
        amount: money_of(payment)?,
        tariff: payment.amount,
        price_id: payment.price_id,
        period_end: period_end(now, now, period, tenant.tz),
    })
}

/// A renewal (scheduled, retried, or paid by hand) starts the next period, on the
/// plan it paid for; the ended period's usage counts were keyed by its planned end.
async fn renew(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: SubscriptionId,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let mut sub = subscriptions::lock_by_id(conn, sub_id).await?;
    if sub.renewal_payment_id != Some(payment.id) {
        return Ok(None);
    }
    let other_live =
        sub.status == SubscriptionStatus::Expired && subs_db::find_live(conn, sub.customer_id).await?.is_some();
    let current = plans::load_cached(conn, sub.plan_id).await?;
    let plan = match payment.plan_id {
        Some(id) if id != current.id => plans::load_cached(conn, id).await?,
        _ => current.clone(),
    };
    let planned_end = sub.current_period_end;
    let paid = RenewalPaid {
        payment_id: payment.id,
        amount: money_of(payment)?,
        tariff: payments::tariff_amount(payment)?,
        price_id: payment.price_id,
        plan: PlanRef { id: plan.id, code: &plan.code, period: plan.period },
        current_plan_code: &current.code,
    };
    let Ok(change) = sub.renew(now, paid, tenant.tz, other_live) else { return Ok(None) };
    if let (Some(planned), Some(start)) = (planned_end, sub.current_period_start)
        && planned != start
    {
        crate::db::usage::rekey(conn, sub.id, planned, start).await?;
    }
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    let (staged, events) = subscriptions::stage(now, tenant, &mut sub, &plan.code, change)?;
    Ok(Some(Applied { events, posting: None, staged: Some(staged) }))
}

/// A paid manual extension starts when the current period (and any extension
/// already queued) ends, on the plan it paid for.
async fn extend(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: SubscriptionId,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let mut sub = subscriptions::lock_by_id(conn, sub_id).await?;
    let paid_plan = plans::load_cached(conn, payment.plan_id.unwrap_or(sub.plan_id)).await?;
    let Some((start, end)) = sub.extension_period(paid_plan.period, tenant.tz) else { return Ok(None) };
    let Ok(change) = sub.record_extension(now, payment.id, start, end) else { return Ok(None) };
    payment.period_start = Some(start);
    payment.period_end = Some(end);
    let (staged, events) = subscriptions::stage(now, tenant, &mut sub, &paid_plan.code, change)?;
    Ok(Some(Applied { events, posting: None, staged: Some(staged) }))
}

/// The decline of a charge that has no usable saved card to charge: hard.
pub fn no_saved_card(reason: &str) -> Decline {
    Decline {
        transaction_id: None,
        code: Some(dunning::NO_PAYMENT_METHOD.into()),
        reason: Some(reason.into()),
        class: DeclineClass::Hard,
    }
}

/// The customer's card was declined for `attempt`. A hard decline revokes the
/// saved card; a scheduled renewal attempt drives dunning.
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
    if !payment.status.is_open() {
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
    let (saved, attempted) =
        futures_util::future::join(payments_db::save(conn, payment), attempts_db::save_attempt(conn, attempt)).await;
    pipeline::outcome([saved, attempted])?;
    let hard = decline.class == DeclineClass::Hard;
    if hard && let Some(pm) = attempt.payment_method_id {
        attempts_db::revoke_method(conn, pm, now, code).await?;
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

/// After a scheduled renewal attempt was declined: `past_due` with the tenant's
/// dunning schedule (offsets from the renewal's due time).
async fn dun(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: SubscriptionId,
    payment: &PaymentRow,
    hard: bool,
) -> ServiceResult<()> {
    let mut sub = subscriptions::lock_by_id(conn, sub_id).await?;
    if sub.renewal_payment_id != Some(payment.id) {
        return Ok(());
    }
    let failed = attempts_db::failed_scheduled_attempts(conn, payment.id).await?;
    let due = payment.period_start.unwrap_or(now);
    let stopped = sub.retries_stopped || hard;
    let schedule = dunning::schedule(&tenant.policy, due, u32::try_from(failed).unwrap_or(u32::MAX), stopped);
    let declined = Declined {
        payment_id: payment.id,
        failure_code: payment.failure_code.as_deref(),
        failure_reason: payment.failure_reason.as_deref(),
        hard,
    };
    let change = sub.decline(now, &declined, schedule).map_err(unexpected)?;
    let plan = plans::load_cached(conn, sub.plan_id).await?;
    subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await
}
