//! Applying many providers' capture notifications (CloudPayments Pay, YooKassa
//! `payment.succeeded`) in one transaction: the webhook hot path under load
//! (issue 15, part 3). Plain captures — the pending purchase of a customer with
//! no other subscription that has not ended, paid in full by card, moving no money
//! beyond its own posting and issuing no receipt — go through the domain's
//! `activate` one by one and are written with set-based statements, all in one
//! round trip: payments and their attempts, saved cards, subscriptions and their
//! history, the ledger, the events, and the raw notifications with their outcome
//! (`applied`). Any other notification of the batch (and a second one for the
//! same payment or customer) is left to the one-by-one path
//! ([`super::notifications::apply`]), which the caller runs after the commit.
//!
//! A retry of a notification already applied is no candidate (its payment no
//! longer waits). One stored before that left its payment waiting rolls the
//! batch back ([`STORED_BEFORE`]); so does a lock held elsewhere for longer than
//! the caller's bound, and any failure. Every notification of the batch then
//! takes the one-by-one path, which de-duplicates, retries conflicts and answers
//! each as it would have alone.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::money_steps::MoneySteps;
use super::payment_outcomes::{card_row, purchase_paid};
use super::payments;
use super::plans;
use super::subscriptions::{self, unexpected};
use super::tenants::Tenant;
use crate::clock::Clock;
use crate::db::attempts::{self as attempts_db, AttemptRow, PaymentMethodRow};
use crate::db::gateway_events::{self as events_db, Received};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, Captured, PaymentRow};
use crate::db::subscription_batches::apply_paid_periods;
use crate::db::subscriptions as subs_db;
use crate::db::{in_transaction_bounded, ledger, pipeline};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::ledger::Posting;
use crate::domain::states::{PaymentKind, PaymentStatus};
use crate::domain::subscription::{HistoryEntry, Subscription, SubscriptionStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::PaymentReport;

/// A verified capture notification waiting for its batch: the tenant, the report,
/// the notification as it is stored, and the `traceparent` of the request that
/// brought it (its events' cause).
pub struct Queued<'a> {
    pub tenant: &'a Tenant,
    pub report: &'a PaymentReport,
    pub received: Received<'a>,
    pub cause: Option<String>,
}

/// The error code a batch is rolled back with when one of its notifications was
/// stored before (a provider retry): each then takes the one-by-one path.
pub const STORED_BEFORE: &str = "notification_stored_before";

/// What the batch writes set-based.
#[derive(Default)]
struct Batch<'a> {
    marked: Vec<Captured>,
    activated: Vec<Subscription>,
    history: Vec<(SubscriptionId, HistoryEntry)>,
    cards: Vec<PaymentMethodRow>,
    postings: Vec<(TenantId, PaymentId, Posting)>,
    events: Vec<NewEvent>,
    received: Vec<Received<'a>>,
}

/// A capture the batch may apply, once its subscriptions are read.
struct Candidate<'q> {
    index: usize,
    queued: &'q Queued<'q>,
    attempt_id: Uuid,
    payment: PaymentRow,
}

/// Applies `queued` in one transaction on `conn` (the clock read inside it),
/// each statement waiting at most `lock_wait_ms` for a lock. Returns, for each,
/// whether the batch applied it; the others are the caller's to apply one by one
/// after this returns. An error rolled the whole batch back (nothing of it is
/// written): every notification is the caller's then — [`STORED_BEFORE`], a lock
/// held longer than `lock_wait_ms` (`lock_not_available`), or any failure.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    clock: Clock,
    lock_wait_ms: u32,
    queued: &[Queued<'_>],
) -> ServiceResult<Vec<bool>> {
    in_transaction_bounded(conn, lock_wait_ms, async |c| {
        let now = clock.now(c).await?;
        let candidates = candidates(c, queued).await?;
        let customers: Vec<CustomerId> = candidates.iter().map(|k| k.payment.customer_id).collect();
        let sub_ids: Vec<SubscriptionId> = candidates.iter().filter_map(|k| k.payment.subscription_id).collect();
        let mut by_customer: HashMap<CustomerId, Vec<Subscription>> = HashMap::new();
        for sub in subs_db::lock_live_of(c, &customers, &sub_ids).await? {
            by_customer.entry(sub.customer_id).or_default().push(sub);
        }
        let mut applied = vec![false; queued.len()];
        let mut batch = Batch::default();
        for mut k in candidates {
            // Plain: the purchase is the customer's only subscription not ended
            // (no trial or free plan for it to replace) and still waits for its payment.
            let sub = match by_customer.get(&k.payment.customer_id).map(Vec::as_slice) {
                Some([sub]) if Some(sub.id) == k.payment.subscription_id => sub,
                _ => continue,
            };
            if sub.status != SubscriptionStatus::PendingPayment || sub.tenant_id != k.queued.tenant.id {
                continue;
            }
            activate(c, now, &mut k, sub.clone(), &mut batch).await?;
            applied[k.index] = true;
        }
        if batch.received.is_empty() {
            return Ok(applied);
        }
        write(c, now, batch).await?;
        Ok(applied)
    })
    .await
}

/// The notifications of `queued` that may be plain captures, with their payments
/// (locked, in id order) and attempts read in one round trip: those whose invoice
/// names a pending purchase of the same amount paid in full by card, moving no
/// money beyond its own posting and issuing no receipt — the first for each
/// payment and customer.
async fn candidates<'q>(c: &mut AsyncPgConnection, queued: &'q [Queued<'q>]) -> ServiceResult<Vec<Candidate<'q>>> {
    let invoices: Vec<(TenantId, &str)> =
        queued.iter().filter_map(|q| Some((q.tenant.id, q.report.invoice_id.as_deref()?))).collect();
    if invoices.is_empty() {
        return Ok(Vec::new());
    }
    let (payments, attempts) = futures_util::future::join(
        payments_db::lock_by_invoices(c, &invoices),
        attempts_db::find_by_invoices(c, &invoices),
    )
    .await;
    // In the order they ran: the lock's error is the cause, the read's its echo.
    let (payments, attempts) = (payments?, attempts?);
    let mut payments: HashMap<PaymentId, PaymentRow> = payments.into_iter().map(|p| (p.id, p)).collect();
    let attempts: HashMap<(TenantId, &str), &AttemptRow> =
        attempts.iter().map(|a| ((a.tenant_id, a.invoice_id.as_str()), a)).collect();
    let (mut seen_customers, mut seen_keys) = (HashSet::new(), HashSet::new());
    let mut out = Vec::new();
    for (index, q) in queued.iter().enumerate() {
        let Some(invoice) = q.report.invoice_id.as_deref() else { continue };
        let Some(attempt) = attempts.get(&(q.tenant.id, invoice)) else { continue };
        let Some(payment) = payments.get(&attempt.payment_id) else { continue };
        let plain = payment.tenant_id == q.tenant.id
            && payment.kind == PaymentKind::Purchase
            && payment.status == PaymentStatus::Pending
            && payment.subscription_id.is_some()
            && q.report.amount == Some(payment.amount)
            && q.report.currency.as_deref().is_none_or(|cur| cur == payment.currency)
            && !super::receipts::receipted_at_all(q.tenant, payment)
            && MoneySteps::of(c, q.tenant, payment, true).await?.none();
        let key = (q.received.tenant_id, q.received.provider, q.received.kind, q.received.key);
        if !plain || !seen_customers.insert(payment.customer_id) || !seen_keys.insert(key) {
            continue;
        }
        let Some(payment) = payments.remove(&attempt.payment_id) else { continue };
        out.push(Candidate { index, queued: q, attempt_id: attempt.id, payment });
    }
    Ok(out)
}

/// One plain capture of the batch: the domain activates a copy of the purchase's
/// subscription (its first period starts at the payment), the rest is collected
/// for the set-based writes — as [`super::payment_outcomes::apply_capture`] does
/// for one.
async fn activate<'a>(
    c: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    k: &mut Candidate<'a>,
    mut sub: Subscription,
    batch: &mut Batch<'a>,
) -> ServiceResult<()> {
    let (tenant, report, payment) = (k.queued.tenant, k.queued.report, &mut k.payment);
    let plan = plans::load_cached(c, sub.plan_id).await?;
    let change = sub.activate(now, purchase_paid(now, tenant, payment, plan.period)?).map_err(unexpected)?;
    subscriptions::set_due_at(now, tenant, &mut sub);
    let period = (sub.current_period_start, sub.current_period_end);
    batch.marked.push(Captured::mark(payment, k.attempt_id, &report.transaction_id, now, period));
    batch.cards.extend(card_row(now, tenant, payment.customer_id, &report.card));
    let funding = payments::funding_of(payment)?;
    let posting = Posting::charge("payment_captured", payment.description.clone(), payment.customer_id, funding);
    batch.postings.push((tenant.id, payment.id, posting));
    let cause = &k.queued.cause;
    let succeeded =
        NewEvent::event(tenant.id, payment.ordering_key(), "payment.succeeded", payments::event_data(payment)?);
    batch.events.push(succeeded.caused_by(cause.clone()));
    for e in change.events {
        batch.events.push(subscriptions::event(tenant, &sub, &plan.code, e.kind, e.extra)?.caused_by(cause.clone()));
    }
    batch.history.push((sub.id, change.history));
    batch.activated.push(sub);
    batch.received.push(k.queued.received);
    Ok(())
}

/// The batch's writes, one statement per table, in one round trip ([`pipeline`]);
/// [`STORED_BEFORE`] when a notification was stored before.
async fn write(c: &AsyncPgConnection, now: DateTime<Utc>, batch: Batch<'_>) -> ServiceResult<()> {
    let history: Vec<(SubscriptionId, &HistoryEntry)> = batch.history.iter().map(|(id, e)| (*id, e)).collect();
    let posted = ledger::Posted::of_payments(now, &batch.postings);
    let ((activated, recorded, cards, posted), (emitted, stored, marked)) = futures_util::future::join(
        futures_util::future::join4(
            apply_paid_periods(c, &batch.activated),
            subs_db::record_many(c, &history),
            attempts_db::save_payment_methods(c, &batch.cards),
            ledger::post_many(c, &posted),
        ),
        futures_util::future::join3(
            outbox::emit_many(c, now, batch.events),
            events_db::store_many(c, &batch.received, "applied"),
            payments_db::mark_captured_many(c, now, &batch.marked),
        ),
    )
    .await;
    let new = stored.as_ref().map_or(0, |n| *n);
    pipeline::outcome([activated, recorded, cards, posted.map(drop), emitted.map(drop), stored.map(drop), marked])?;
    if new != batch.received.len() {
        return Err(ServiceError::conflict(STORED_BEFORE, "a notification of the batch was stored before"));
    }
    Ok(())
}
