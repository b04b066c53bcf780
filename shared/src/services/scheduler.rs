//! The scheduler (the worker alone runs it): every business due time lives in
//! PostgreSQL as a subscription's `due_at` (decided by the domain's
//! `subscription::schedule`) and is compared with the clock.
//!
//! A tick claims rows with `due_at <= now` through the due list
//! (`db::subscriptions::claim_due`; `FOR UPDATE SKIP LOCKED`, so replicas share the
//! work and the cost grows with what is due, not with what is stored) and advances
//! each one: it performs every step that is due, in order, and stops where an
//! outcome has to wait (a charge in flight) or in the future. After a clock jump
//! a subscription catches up period by period: each renewal's success makes the
//! next one due.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use serde_json::json;
use tracing::{Instrument, error};
use uuid::Uuid;

use super::collection;
use super::plans::{self, Plan};
use super::renewals;
use super::subscriptions::{self, unexpected};
use super::tenants::{self, Tenant};
use super::usage;
use crate::db::attempts as attempts_db;
use crate::db::in_transaction;
use crate::db::payments as payments_db;
use crate::db::subscriptions as subs_db;
use crate::domain::ids::{CustomerId, TenantId};
use crate::domain::money::MoneyView;
use crate::domain::states::AttemptChannel;
use crate::domain::subscription::schedule::{Action, Next, Notice, decide};
use crate::domain::subscription::{Cause, EventKind, Subscription, SubscriptionStatus};
use crate::error::{ServiceError, ServiceResult};

/// Steps performed for one subscription in one go before yielding to the next tick.
const MAX_STEPS: usize = 8;

async fn next_step(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
) -> ServiceResult<Next> {
    let dunning = matches!(sub.status, SubscriptionStatus::PastDue | SubscriptionStatus::Suspended);
    let in_flight = match (dunning, sub.renewal_payment_id) {
        (true, Some(payment)) => attempts_db::has_open_attempt(conn, payment).await?,
        _ => false,
    };
    Ok(decide(now, sub, tenant.policy.renewal_notice_days, in_flight))
}

/// Performs everything due for `sub` (locked by the caller) at `now`, then stores
/// it with its next `due_at`.
pub async fn advance(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut Subscription,
) -> ServiceResult<()> {
    // A step may switch the plan (a downgrade taking over): later steps use the new one.
    let mut switched: Option<Plan> = None;
    for _ in 0..MAX_STEPS {
        if switched.as_ref().unwrap_or(plan).id != sub.plan_id {
            switched = Some(plans::load_cached(conn, sub.plan_id).await?);
        }
        let plan = switched.as_ref().unwrap_or(plan);
        match next_step(conn, now, tenant, sub).await? {
            Next::Wait(due) => {
                sub.due_at = due;
                subs_db::save(conn, sub).await?;
                return Ok(());
            }
            Next::Act(action) => {
                tracing::debug!(subscription = %sub.id, ?action, "advance");
                perform(conn, now, tenant, plan, sub, action).await?;
            }
        }
    }
    sub.due_at = Some(now);
    subs_db::save(conn, sub).await?;
    Ok(())
}

async fn perform(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut Subscription,
    action: Action,
) -> ServiceResult<()> {
    match action {
        Action::ExpirePending => subscriptions::expire(conn, now, tenant, sub, &plan.code, Cause::PaymentExpired).await,
        Action::Expire => {
            usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
            subscriptions::expire(conn, now, tenant, sub, &plan.code, Cause::PeriodEnded).await
        }
        Action::Notice(notice) => send_notice(conn, now, tenant, plan, sub, notice).await,
        Action::StartRenewal => renewals::start(conn, now, tenant, plan, sub).await,
        Action::RollExtension => renewals::roll_extension(conn, now, tenant, plan, sub).await,
        Action::Suspend => {
            let change = sub.suspend(now).map_err(unexpected)?;
            subscriptions::record(conn, now, tenant, sub, &plan.code, change).await
        }
        Action::Retry => {
            sub.next_retry_at = None;
            if let Some(payment_id) = sub.renewal_payment_id {
                let payment = payments_db::find_for_update(conn, payment_id)
                    .await?
                    .ok_or_else(|| ServiceError::Internal(format!("renewal payment {payment_id} vanished")))?;
                metrics::counter!("billing_dunning_retries_total").increment(1);
                collection::start_attempt(conn, now, tenant, &payment, AttemptChannel::Scheduled).await?;
            }
            Ok(())
        }
        Action::GiveUp => match sub.give_up(now, tenant.policy.after_last_retry).map_err(unexpected)? {
            Some(change) if sub.status == SubscriptionStatus::Expired => {
                subscriptions::fail_pending_payments(conn, now, tenant, sub, Cause::DunningExhausted).await?;
                subscriptions::record(conn, now, tenant, sub, &plan.code, change).await
            }
            Some(change) => subscriptions::record(conn, now, tenant, sub, &plan.code, change).await,
            None => Ok(()),
        },
    }
}

async fn send_notice(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut Subscription,
    notice: Notice,
) -> ServiceResult<()> {
    let kind = match notice {
        Notice::RenewalUpcoming => EventKind::RenewalUpcoming,
        Notice::ExpiringSoon => EventKind::ExpiringSoon,
    };
    let Some(end) = sub.current_period_end else { return Ok(()) };
    if !sub.mark_notice(kind) || !subs_db::record_notice(conn, sub.id, kind.as_str(), end, now).await? {
        return Ok(());
    }
    let extra = match notice {
        Notice::RenewalUpcoming => {
            let charge_at = sub.next_charge_at.unwrap_or(end);
            let price = plan.price_at(charge_at)?.price;
            json!({"charge_at": charge_at, "amount": MoneyView::from(price)})
        }
        Notice::ExpiringSoon => json!({"ends_at": end}),
    };
    crate::db::outbox::emit(conn, now, subscriptions::event(tenant, sub, &plan.code, kind, extra)?).await?;
    Ok(())
}

/// Claims up to `limit` subscriptions due at `now` and advances each one inside its
/// own savepoint (a failure postpones that subscription, not the others); plain
/// renewals are started in bulk. Runs in the caller's transaction; returns how
/// many were claimed.
/// `waves`: the plain renewals' charges go out as wave jobs
/// ([`super::charge_waves`]) rather than one job each.
/// A tick that claims something is one span (`scheduler.claim`), the root of the
/// traces of the renewals, retries and notices it starts (`crate::trace`).
pub async fn tick(conn: &mut AsyncPgConnection, now: DateTime<Utc>, limit: i64, waves: bool) -> ServiceResult<usize> {
    let due = subs_db::claim_due(conn, now, limit).await?;
    let claimed = due.len();
    if claimed == 0 {
        return Ok(0);
    }
    let span = tracing::info_span!("scheduler.claim", claimed, trace_id = tracing::field::Empty);
    crate::trace::record_trace_id(&span);
    advance_due(conn, now, due, waves).instrument(span).await?;
    Ok(claimed)
}

/// Advances claimed subscriptions (see [`tick`]).
async fn advance_due(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    due: Vec<Subscription>,
    waves: bool,
) -> ServiceResult<()> {
    let mut tenants_cache: HashMap<TenantId, Tenant> = HashMap::new();
    let mut plans_cache: HashMap<Uuid, Plan> = HashMap::new();
    for sub in &due {
        if let Entry::Vacant(slot) = tenants_cache.entry(sub.tenant_id) {
            slot.insert(tenants::load(conn, sub.tenant_id).await?);
        }
        if let Entry::Vacant(slot) = plans_cache.entry(sub.plan_id) {
            slot.insert(plans::load(conn, sub.plan_id).await?);
        }
    }
    // Saved cards of the whole batch, fetched once.
    let customers: Vec<CustomerId> = due.iter().map(|s| s.customer_id).collect();
    let methods: HashMap<CustomerId, Uuid> =
        attempts_db::default_payment_methods(conn, &customers).await?.into_iter().collect();

    let mut bulk = Vec::new();
    let mut one_by_one = Vec::new();
    for sub in due {
        let (Some(tenant), Some(plan)) = (tenants_cache.get(&sub.tenant_id), plans_cache.get(&sub.plan_id)) else {
            continue;
        };
        match methods.get(&sub.customer_id) {
            Some(method) if renewals::plain(now, tenant, plan, &sub) => {
                match renewals::renewal_payment(now, tenant, plan, &sub)? {
                    Some(payment) => bulk.push((sub, payment, *method)),
                    None => one_by_one.push(sub),
                }
            }
            _ => one_by_one.push(sub),
        }
    }
    renewals::start_in_bulk(conn, now, bulk, waves).await?;
    // In id order, like every other writer of per-subscription rows (usage counters).
    one_by_one.sort_by_key(|s| s.id);
    for mut sub in one_by_one {
        let (Some(tenant), Some(plan)) = (tenants_cache.get(&sub.tenant_id), plans_cache.get(&sub.plan_id)) else {
            continue;
        };
        let id = sub.id;
        let result = in_transaction(conn, async |c| advance(c, now, tenant, plan, &mut sub).await).await;
        if let Err(e) = result {
            error!(subscription = %id, error = %e, "advancing a due subscription failed; postponed");
            subs_db::postpone(conn, id, now + TimeDelta::minutes(5)).await?;
        }
    }
    Ok(())
}
