//! Recording a wave of captured renewals at once (the renewal hot path): plain
//! renewals — the outstanding renewal of an active subscription, into the same
//! plan — go through the domain's `renew` one by one and are written with
//! set-based statements (payments and attempts, subscriptions and their history,
//! ledger, receipts, events) in one transaction; any other capture of the batch
//! — and a renewal whose plan pays cashback — takes the one-by-one path
//! ([`super::payment_outcomes::apply_capture`]).

use std::collections::HashMap;

use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::payment_outcomes::apply_capture;
use super::payments;
use super::subscriptions::{self, unexpected};
use super::tenants::Tenant;
use super::{partners, plans};
use crate::clock::Clock;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::outbox::{self, NewEvent};
use crate::db::partners as partners_db;
use crate::db::payments::{self as payments_db, Captured, PaymentRow};
use crate::db::subscriptions as subs_db;
use crate::db::{PgPool, in_transaction, ledger};
use crate::domain::ids::{PaymentId, SubscriptionId, TenantId};
use crate::domain::ledger::Posting;
use crate::domain::states::{AttemptStatus, PaymentKind};
use crate::domain::subscription::renewal::RenewalPaid;
use crate::domain::subscription::{HistoryEntry, PlanRef, Subscription, SubscriptionStatus};
use crate::error::ServiceResult;
use crate::gateways::CardDetails;

/// A capture reported by a charge's own answer.
pub struct Capture<'a> {
    pub attempt_id: Uuid,
    pub transaction_id: &'a str,
    pub tenant: &'a Tenant,
}

/// A captured renewal the batch can record: the outstanding renewal of an active
/// subscription, renewing into the same plan.
fn plain_renewal(payment: &PaymentRow, attempt: &AttemptRow, sub: &Subscription) -> bool {
    attempt.status == AttemptStatus::Sent
        && payment.kind == PaymentKind::Renewal
        && payment.status.is_open()
        && sub.status == SubscriptionStatus::Active
        && sub.renewal_payment_id == Some(payment.id)
        && payment.plan_id == Some(sub.plan_id)
        && sub.current_period_end.is_some()
        && sub.paid_through.is_none()
}

/// What the batch writes set-based.
#[derive(Default)]
struct Batch<'a> {
    marked: Vec<Captured>,
    renewed: Vec<Subscription>,
    history: Vec<(SubscriptionId, HistoryEntry)>,
    postings: Vec<(TenantId, PaymentId, Posting)>,
    events: Vec<NewEvent>,
    /// The captured payments, with their tenants.
    paid: Vec<(PaymentRow, &'a Tenant)>,
}

/// Records a batch of captures in one transaction.
pub async fn record(pool: &PgPool, clock: Clock, captures: &[Capture<'_>]) -> ServiceResult<()> {
    let mut conn = pool.get().await?;
    in_transaction(&mut conn, async |c| {
        let now = clock.now(c).await?;
        let attempt_ids: Vec<Uuid> = captures.iter().map(|k| k.attempt_id).collect();
        let mut payments: HashMap<PaymentId, PaymentRow> =
            payments_db::lock_of_attempts(c, &attempt_ids).await?.into_iter().map(|p| (p.id, p)).collect();
        let attempts: HashMap<Uuid, AttemptRow> =
            attempts_db::find_attempts(c, &attempt_ids).await?.into_iter().map(|a| (a.id, a)).collect();
        let sub_ids: Vec<SubscriptionId> = payments.values().filter_map(|p| p.subscription_id).collect();
        let subs: HashMap<SubscriptionId, Subscription> =
            subs_db::lock_many(c, &sub_ids).await?.into_iter().map(|s| (s.id, s)).collect();
        let mut batch = Batch::default();
        for capture in captures {
            let Some(attempt) = attempts.get(&capture.attempt_id) else { continue };
            let Some(payment) = payments.get_mut(&attempt.payment_id) else { continue };
            let plain = match payment.subscription_id.and_then(|id| subs.get(&id)) {
                Some(sub) if plain_renewal(payment, attempt, sub) => {
                    // Cashback is credited on the one-by-one path.
                    let plan = plans::load_cached(c, sub.plan_id).await?;
                    plan.cashback_rate.is_none_or(|r| r.is_zero()).then_some(sub)
                }
                _ => None,
            };
            match plain {
                Some(sub) => renew_plainly(c, now, capture, payment, sub, &mut batch).await?,
                None if attempt.status == AttemptStatus::Sent => {
                    let mut attempt = attempt.clone();
                    let (tenant, tx) = (capture.tenant, capture.transaction_id);
                    apply_capture(c, now, tenant, payment, &mut attempt, tx, &CardDetails::default(), None).await?;
                }
                // A notification recorded this attempt's outcome first.
                None => {}
            }
        }
        if batch.marked.is_empty() {
            return Ok(());
        }
        payments_db::mark_captured_many(c, now, &batch.marked).await?;
        crate::db::subscription_batches::apply_paid_periods(c, &batch.renewed).await?;
        let history: Vec<(SubscriptionId, &HistoryEntry)> = batch.history.iter().map(|(id, e)| (*id, e)).collect();
        subs_db::record_many(c, &history).await?;
        let posted = ledger::Posted::of_payments(now, &batch.postings);
        ledger::post_many(c, &posted).await?;
        // Commissions of the renewals of customers attributed to a partner.
        let customers: Vec<_> = batch.paid.iter().map(|(p, _)| p.customer_id).collect();
        let mut events = batch.events;
        events.extend(super::receipts::create_income_many(c, now, &batch.paid).await?);
        for (customer, partner) in partners_db::of_customers(c, &customers).await? {
            for (payment, tenant) in batch.paid.iter().filter(|(p, _)| p.customer_id == customer) {
                events.extend(partners::accrue_for(c, now, tenant, payment, &partner).await?);
            }
        }
        outbox::emit_many(c, now, events).await?;
        Ok(())
    })
    .await
}

/// One plain renewal of the batch: the domain renews a copy of the subscription,
/// the rest is collected for the set-based writes.
async fn renew_plainly<'a>(
    c: &mut AsyncPgConnection,
    now: chrono::DateTime<chrono::Utc>,
    capture: &Capture<'a>,
    payment: &mut PaymentRow,
    sub: &Subscription,
    batch: &mut Batch<'a>,
) -> ServiceResult<()> {
    let tenant = capture.tenant;
    let plan = plans::load_cached(c, sub.plan_id).await?;
    let money = payments::money_of(payment)?;
    let paid = RenewalPaid {
        payment_id: payment.id,
        amount: money,
        tariff: payments::tariff_amount(payment)?,
        price_id: payment.price_id,
        plan: PlanRef { id: plan.id, code: &plan.code, period: plan.period },
        current_plan_code: &plan.code,
    };
    let mut next = sub.clone();
    let change = next.renew(now, paid, tenant.tz, false).map_err(unexpected)?;
    subscriptions::set_due_at(now, tenant, &mut next);
    let period = (next.current_period_start, next.current_period_end);
    batch.marked.push(Captured::mark(payment, capture.attempt_id, capture.transaction_id, now, period));
    let posting = Posting::captured_charge("payment_captured", payment.description.clone(), payment.customer_id, money);
    batch.postings.push((tenant.id, payment.id, posting));
    batch.events.push(NewEvent::event(tenant.id, sub.id, "payment.succeeded", payments::event_data(payment)?));
    for e in change.events {
        batch.events.push(subscriptions::event(tenant, &next, &plan.code, e.kind, e.extra)?);
    }
    batch.paid.push((payment.clone(), tenant));
    batch.history.push((sub.id, change.history));
    batch.renewed.push(next);
    Ok(())
}
