//! The scheduler: every business due time (renewal charge, dunning retry, grace
//! end, notice, period end, pending-payment expiry) lives in PostgreSQL and is
//! compared with the clock.
//!
//! Each subscription carries `due_at`, the earliest instant anything is due for it,
//! kept up to date by [`advance`] whenever the subscription changes. A tick claims
//! rows with `due_at <= now` through a partial index (`FOR UPDATE SKIP LOCKED`, so
//! replicas share the work and the cost grows with what is due, not with what is
//! stored) and advances each one: it performs every step that is due, in order,
//! and stops where an outcome has to wait (a charge in flight) or in the future.
//! After a clock jump a subscription catches up period by period: each renewal's
//! success makes the next one due.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use chrono::{DateTime, TimeDelta, Utc};
use diesel::dsl::{exists, select};
use diesel::prelude::*;
use diesel::sql_types::Array;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::json;
use tracing::error;
use uuid::Uuid;

use super::charges;
use super::payments::{self as payments_svc, Line};
use super::plans::{self, Plan};
use super::purchase::PENDING_PAYMENT_TTL;
use super::subscriptions::{self, status_of};
use super::tenants::{self, Tenant};
use super::usage;
use crate::db::in_transaction;
use crate::db::outbox;
use crate::db::payments::{self as payments_db, AttemptRow, PaymentRow};
use crate::db::schema::{payment_attempts, payments, subscription_notices, subscriptions as subs};
use crate::db::subscriptions::{self as subs_db, SubscriptionRow};
use crate::domain::money::MoneyView;
use crate::domain::period::period_end;
use crate::domain::plan::QuotaMode;
use crate::domain::states::{AttemptChannel, AttemptStatus, LineKind, PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::AfterLastRetry;
use crate::error::{ServiceError, ServiceResult};

/// Steps performed for one subscription in one go before yielding to the next tick.
const MAX_STEPS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    RenewalUpcoming,
    ExpiringSoon,
}

impl Notice {
    fn kind(self) -> &'static str {
        match self {
            Notice::RenewalUpcoming => "subscription.renewal_upcoming",
            Notice::ExpiringSoon => "subscription.expiring_soon",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    ExpirePending,
    Notice(Notice),
    StartRenewal,
    RollExtension,
    Expire,
    Suspend,
    Retry,
    GiveUp,
}

pub(crate) enum Next {
    Act(Action),
    Wait(Option<DateTime<Utc>>),
}

async fn has_open_attempt(conn: &mut AsyncPgConnection, payment: Option<Uuid>) -> ServiceResult<bool> {
    let Some(payment) = payment else { return Ok(false) };
    Ok(select(exists(payment_attempts::table.filter(payment_attempts::payment_id.eq(payment)).filter(
        payment_attempts::status.eq_any([
            AttemptStatus::Pending,
            AttemptStatus::Sent,
            AttemptStatus::Unknown,
            AttemptStatus::Refused,
        ]),
    )))
    .get_result(conn)
    .await?)
}

/// What is due next for the subscription: a pure decision on its state, given
/// whether its outstanding renewal has a charge in flight.
pub(crate) fn decide(
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &SubscriptionRow,
    charge_in_flight: bool,
) -> ServiceResult<Next> {
    let status = status_of(sub)?;
    let notice_days = tenant.policy.renewal_notice_days;
    let lead = TimeDelta::days(i64::from(notice_days));
    let mut candidates: Vec<(DateTime<Utc>, Action)> = Vec::new();
    match status {
        SubscriptionStatus::PendingPayment => {
            candidates.push((sub.created_at + PENDING_PAYMENT_TTL, Action::ExpirePending))
        }
        SubscriptionStatus::Active | SubscriptionStatus::Canceled | SubscriptionStatus::Trialing => {
            let Some(end) = sub.current_period_end else { return Ok(Next::Wait(None)) };
            let renews = status == SubscriptionStatus::Active && sub.auto_renew;
            if renews && sub.renewal_payment_id.is_some() {
                // The renewal charge is in flight: its outcome moves things on.
                return Ok(Next::Wait(None));
            }
            if sub.paid_through.is_some_and(|p| p > end) {
                candidates.push((end, Action::RollExtension));
            } else if renews {
                let charge_at = sub.next_charge_at.unwrap_or(end);
                if notice_days > 0 && sub.renewal_notice_for != Some(end) {
                    candidates.push((charge_at - lead, Action::Notice(Notice::RenewalUpcoming)));
                }
                candidates.push((charge_at, Action::StartRenewal));
            } else {
                if notice_days > 0 && sub.expiry_notice_for != Some(end) {
                    candidates.push((end - lead, Action::Notice(Notice::ExpiringSoon)));
                }
                candidates.push((end, Action::Expire));
            }
        }
        SubscriptionStatus::PastDue | SubscriptionStatus::Suspended => {
            if status == SubscriptionStatus::PastDue
                && let Some(g) = sub.grace_until
            {
                candidates.push((g, Action::Suspend));
            }
            if !charge_in_flight {
                match (sub.next_retry_at, sub.dunning_ends_at) {
                    (Some(r), _) => candidates.push((r, Action::Retry)),
                    (None, Some(e)) => candidates.push((e, Action::GiveUp)),
                    (None, None) => {}
                }
            }
        }
        SubscriptionStatus::Expired | SubscriptionStatus::Terminated => return Ok(Next::Wait(None)),
    }
    Ok(match candidates.into_iter().min_by_key(|(t, _)| *t) {
        Some((t, action)) if t <= now => Next::Act(action),
        Some((t, _)) => Next::Wait(Some(t)),
        None => Next::Wait(None),
    })
}

/// The next due instant of a subscription that has nothing due now.
pub(crate) fn due_after(
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &SubscriptionRow,
) -> ServiceResult<Option<DateTime<Utc>>> {
    Ok(match decide(now, tenant, sub, false)? {
        Next::Wait(due) => due,
        Next::Act(_) => Some(now),
    })
}

async fn next_step(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &SubscriptionRow,
) -> ServiceResult<Next> {
    let dunning = matches!(status_of(sub)?, SubscriptionStatus::PastDue | SubscriptionStatus::Suspended);
    let in_flight = dunning && has_open_attempt(conn, sub.renewal_payment_id).await?;
    decide(now, tenant, sub, in_flight)
}

/// Performs everything due for `sub` (locked by the caller) at `now`, then stores
/// it with its next `due_at`.
pub async fn advance(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut SubscriptionRow,
) -> ServiceResult<()> {
    // A step may switch the plan (a downgrade taking over): later steps use the new one.
    let mut switched: Option<Plan> = None;
    for _ in 0..MAX_STEPS {
        if switched.as_ref().unwrap_or(plan).id != sub.plan_id {
            switched = Some(plans::load_cached(conn, sub.plan_id).await?);
        }
        let plan = switched.as_ref().unwrap_or(plan);
        let next = next_step(conn, now, tenant, sub).await?;
        match &next {
            Next::Act(a) => tracing::debug!(subscription = %sub.id, action = ?a, "advance"),
            Next::Wait(due) => tracing::debug!(subscription = %sub.id, ?due, "advance: wait"),
        }
        match next {
            Next::Wait(due) => {
                sub.due_at = due;
                subs_db::save(conn, sub).await?;
                return Ok(());
            }
            Next::Act(action) => perform(conn, now, tenant, plan, sub, action).await?,
        }
    }
    sub.due_at = Some(now);
    subs_db::save(conn, sub).await?;
    Ok(())
}

async fn reload(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<SubscriptionRow> {
    subs_db::find_for_update(conn, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("subscription {id} vanished")))
}

async fn perform(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut SubscriptionRow,
    action: Action,
) -> ServiceResult<()> {
    match action {
        Action::ExpirePending => subscriptions::expire(conn, now, tenant, sub, &plan.code, "payment_expired").await,
        Action::Expire => {
            usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
            subscriptions::expire(conn, now, tenant, sub, &plan.code, "period_ended").await
        }
        Action::Notice(notice) => send_notice(conn, now, tenant, plan, sub, notice).await,
        Action::StartRenewal => {
            start_renewal(conn, now, tenant, plan, sub).await?;
            *sub = reload(conn, sub.id).await?;
            Ok(())
        }
        Action::RollExtension => roll_extension(conn, now, tenant, plan, sub).await,
        Action::Suspend => {
            subscriptions::transition(conn, sub, SubscriptionStatus::Suspended, "grace_ended", now, None).await?;
            subscriptions::emit(
                conn,
                now,
                tenant,
                sub,
                &plan.code,
                "subscription.suspended",
                json!({"renewal_payment_id": sub.renewal_payment_id}),
            )
            .await?;
            Ok(())
        }
        Action::Retry => {
            sub.next_retry_at = None;
            subs_db::save(conn, sub).await?;
            if let Some(payment_id) = sub.renewal_payment_id {
                let mut payment = payments_db::find_for_update(conn, payment_id)
                    .await?
                    .ok_or_else(|| ServiceError::Internal(format!("renewal payment {payment_id} vanished")))?;
                metrics::counter!("billing_dunning_retries_total").increment(1);
                charges::start_attempt(conn, now, tenant, &mut payment, AttemptChannel::Scheduled).await?;
            }
            *sub = reload(conn, sub.id).await?;
            Ok(())
        }
        Action::GiveUp => match tenant.policy.after_last_retry {
            AfterLastRetry::Expire => {
                subscriptions::expire(conn, now, tenant, sub, &plan.code, "dunning_exhausted").await
            }
            AfterLastRetry::StaySuspended => {
                sub.dunning_ends_at = None;
                if status_of(sub)? == SubscriptionStatus::PastDue {
                    subscriptions::transition(conn, sub, SubscriptionStatus::Suspended, "dunning_exhausted", now, None)
                        .await?;
                    subscriptions::emit(
                        conn,
                        now,
                        tenant,
                        sub,
                        &plan.code,
                        "subscription.suspended",
                        json!({"renewal_payment_id": sub.renewal_payment_id}),
                    )
                    .await?;
                }
                Ok(())
            }
        },
    }
}

async fn send_notice(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut SubscriptionRow,
    notice: Notice,
) -> ServiceResult<()> {
    let Some(end) = sub.current_period_end else { return Ok(()) };
    match notice {
        Notice::RenewalUpcoming => sub.renewal_notice_for = Some(end),
        Notice::ExpiringSoon => sub.expiry_notice_for = Some(end),
    }
    let inserted = diesel::insert_into(subscription_notices::table)
        .values((
            subscription_notices::subscription_id.eq(sub.id),
            subscription_notices::kind.eq(notice.kind()),
            subscription_notices::period_end.eq(end),
            subscription_notices::sent_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    if inserted == 0 {
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
    subscriptions::emit(conn, now, tenant, sub, &plan.code, notice.kind(), extra).await?;
    Ok(())
}

/// The renewal payment for the period starting at the charge time, priced at that
/// instant (the price in effect at the renewal, SPEC §3) of the plan that takes
/// over (a scheduled downgrade) or the current one; `None` for a free price.
fn renewal_payment(
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &SubscriptionRow,
) -> ServiceResult<Option<PaymentRow>> {
    let (Some(end), Some(anchor)) = (sub.current_period_end, sub.anchor_at) else { return Ok(None) };
    let due = sub.next_charge_at.unwrap_or(end);
    let version = plan.price_at(due)?;
    if version.price.is_zero() {
        return Ok(None);
    }
    let mut payment = payments_svc::tariff_payment(tenant, sub, PaymentKind::Renewal, plan, version, now);
    payment.period_start = Some(end);
    payment.period_end = Some(period_end(end, anchor, plan.period, tenant.tz));
    Ok(Some(payment))
}

/// Creates the renewal payment and its first scheduled attempt. The unique
/// (subscription, period) index makes a second creation impossible.
async fn start_renewal(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut SubscriptionRow,
) -> ServiceResult<()> {
    // An upgrade not paid by now is quoted for a period that is ending: it lapses.
    charges::supersede_pending(conn, sub.id, &[PaymentKind::Upgrade]).await?;
    let renewal_plan = match sub.scheduled_plan_id {
        Some(id) if id != plan.id => plans::load(conn, id).await?,
        _ => plan.clone(),
    };
    // The ending period's usage: its overage is a line of the renewal charge.
    let overage = match sub.current_period_start {
        Some(start) => usage::close_period(conn, now, tenant, sub, plan, start).await?,
        None => Vec::new(),
    };
    let Some(mut payment) = renewal_payment(now, tenant, &renewal_plan, sub)? else {
        usage::charge_lines(conn, now, tenant, sub, overage).await?;
        return renew_free(conn, now, tenant, plan, &renewal_plan, sub).await;
    };
    if !overage.is_empty() {
        let mut lines =
            vec![Line::new(LineKind::Tariff, payment.description.clone(), payments_svc::money_of(&payment)?)];
        lines.extend(overage);
        payments_svc::set_lines(&mut payment, &lines)?;
    }
    payments_db::insert(conn, &payment).await?;
    sub.renewal_payment_id = Some(payment.id);
    sub.due_at = None;
    subs_db::save(conn, sub).await?;
    charges::start_attempt(conn, now, tenant, &mut payment, AttemptChannel::Scheduled).await?;
    Ok(())
}

/// A free plan renews without a charge: the next period starts at once.
async fn renew_free(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    renewal_plan: &Plan,
    sub: &mut SubscriptionRow,
) -> ServiceResult<()> {
    let (Some(end), Some(anchor)) = (sub.current_period_end, sub.anchor_at) else { return Ok(()) };
    let next_end = period_end(end, anchor, renewal_plan.period, tenant.tz);
    let version = renewal_plan.price_at(end)?;
    sub.plan_id = renewal_plan.id;
    sub.price_id = Some(version.id);
    sub.paid_amount = Some(version.price.amount());
    sub.scheduled_plan_id = None;
    sub.current_period_start = Some(end);
    sub.current_period_end = Some(next_end);
    sub.next_charge_at = Some(next_end);
    let status = status_of(sub)?;
    subscriptions::transition(conn, sub, status, "renewed_free", now, None).await?;
    let extra = json!({"payment_id": null, "amount": MoneyView::from(version.price)});
    subscriptions::emit(conn, now, tenant, sub, &renewal_plan.code, "subscription.renewed", extra).await?;
    if renewal_plan.id != plan.id {
        let extra = json!({"from_plan": plan.code, "to_plan": renewal_plan.code, "effective": "next_period"});
        subscriptions::emit(conn, now, tenant, sub, &renewal_plan.code, "subscription.plan_changed", extra).await?;
    }
    subs_db::save(conn, sub).await?;
    Ok(())
}

/// The current period ended and a paid extension is queued: the next period starts
/// (on the extension's plan: a scheduled downgrade takes over with it); the ended
/// period's overage is charged.
async fn roll_extension(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    plan: &Plan,
    sub: &mut SubscriptionRow,
) -> ServiceResult<()> {
    let (Some(end), Some(anchor)) = (sub.current_period_end, sub.anchor_at) else { return Ok(()) };
    usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
    let extension: Option<PaymentRow> = payments::table
        .filter(payments::subscription_id.eq(sub.id))
        .filter(payments::kind.eq(PaymentKind::Extension))
        .filter(payments::status.eq(PaymentStatus::Succeeded))
        .filter(payments::period_start.eq(end))
        .select(PaymentRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let next_end = extension
        .as_ref()
        .and_then(|p| p.period_end)
        .unwrap_or_else(|| period_end(end, anchor, plan.period, tenant.tz));
    sub.current_period_start = Some(end);
    sub.current_period_end = Some(next_end);
    let mut next_plan = plan.clone();
    if let Some(p) = &extension {
        sub.paid_amount = Some(payments_svc::tariff_amount(p)?);
        sub.price_id = p.price_id;
        if let Some(id) = p.plan_id.filter(|id| *id != plan.id) {
            next_plan = plans::load(conn, id).await?;
            sub.plan_id = id;
            if sub.scheduled_plan_id == Some(id) {
                sub.scheduled_plan_id = None;
            }
        }
    }
    if sub.paid_through.is_some_and(|p| p <= next_end) {
        sub.paid_through = None;
    }
    if sub.auto_renew {
        sub.next_charge_at = Some(sub.paid_through.unwrap_or(next_end));
    }
    let payment_id = extension.map(|p| p.id);
    subscriptions::transition(
        conn,
        sub,
        status_of(sub)?,
        "extension_started",
        now,
        Some(json!({"payment_id": payment_id})),
    )
    .await?;
    subscriptions::emit(
        conn,
        now,
        tenant,
        sub,
        &next_plan.code,
        "subscription.renewed",
        json!({"payment_id": payment_id, "extension": true}),
    )
    .await?;
    if next_plan.id != plan.id {
        let extra = json!({"from_plan": plan.code, "to_plan": next_plan.code, "effective": "next_period", "payment_id": payment_id});
        subscriptions::emit(conn, now, tenant, sub, &next_plan.code, "subscription.plan_changed", extra).await?;
    }
    Ok(())
}

/// True when the only thing due for `sub` is its plain renewal charge (no notice
/// pending, no extension queued, no plan change): such renewals are started in bulk.
fn plain_renewal(now: DateTime<Utc>, tenant: &Tenant, plan: &Plan, sub: &SubscriptionRow, notice_sent: bool) -> bool {
    let Some(end) = sub.current_period_end else { return false };
    let charge_at = sub.next_charge_at.unwrap_or(end);
    sub.status == SubscriptionStatus::Active
        && sub.auto_renew
        && sub.renewal_payment_id.is_none()
        && sub.scheduled_plan_id.is_none()
        && !plan.quotas.values().any(|q| q.mode() == QuotaMode::Overage)
        && sub.paid_through.is_none_or(|p| p <= end)
        && charge_at <= now
        && (tenant.policy.renewal_notice_days == 0 || notice_sent)
}

/// Starts plain renewals in a handful of statements: the payments, their first
/// attempts, the charge jobs, and the subscriptions' link to their renewal.
async fn start_renewals_in_bulk(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    items: Vec<(SubscriptionRow, PaymentRow, Uuid)>,
) -> ServiceResult<()> {
    if items.is_empty() {
        return Ok(());
    }
    let payments: Vec<PaymentRow> = items.iter().map(|(_, p, _)| p.clone()).collect();
    let attempts: Vec<AttemptRow> = items
        .iter()
        .map(|(_, p, method)| AttemptRow::new(p.tenant_id, p.id, 1, AttemptChannel::Scheduled, Some(*method), now))
        .collect();
    let jobs = payments.iter().zip(&attempts).map(|(p, a)| charges::charge_job(p, a.id)).collect();
    payments_db::insert_many(conn, &payments).await?;
    payments_db::insert_attempts(conn, &attempts).await?;
    outbox::emit_many(conn, now, jobs).await?;
    let sub_ids: Vec<Uuid> = items.iter().map(|(s, _, _)| s.id).collect();
    let payment_ids: Vec<Uuid> = payments.iter().map(|p| p.id).collect();
    diesel::sql_query(
        "UPDATE subscriptions s SET renewal_payment_id = v.payment_id, due_at = NULL, updated_at = now() \
         FROM unnest($1::uuid[], $2::uuid[]) AS v(id, payment_id) WHERE s.id = v.id",
    )
    .bind::<Array<diesel::sql_types::Uuid>, _>(&sub_ids)
    .bind::<Array<diesel::sql_types::Uuid>, _>(&payment_ids)
    .execute(conn)
    .await?;
    metrics::counter!("billing_renewals_started_total").increment(items.len() as u64);
    Ok(())
}

/// Claims up to `limit` subscriptions due at `now` and advances each one inside its
/// own savepoint (a failure postpones that subscription, not the others). Runs in
/// the caller's transaction; returns how many were claimed.
pub async fn tick(conn: &mut AsyncPgConnection, now: DateTime<Utc>, limit: i64) -> ServiceResult<usize> {
    let due: Vec<SubscriptionRow> = subs::table
        .filter(subs::due_at.le(now))
        .order(subs::due_at.asc())
        .limit(limit)
        .for_update()
        .skip_locked()
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await?;
    let claimed = due.len();
    if claimed == 0 {
        return Ok(0);
    }
    let mut tenants_cache: HashMap<Uuid, Tenant> = HashMap::new();
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
    let customers: Vec<Uuid> = due.iter().map(|s| s.customer_id).collect();
    let methods: HashMap<Uuid, Uuid> =
        payments_db::default_payment_methods(conn, &customers).await?.into_iter().collect();

    let mut bulk = Vec::new();
    let mut one_by_one = Vec::new();
    for sub in due {
        let (Some(tenant), Some(plan)) = (tenants_cache.get(&sub.tenant_id), plans_cache.get(&sub.plan_id)) else {
            continue;
        };
        let notice_sent = sub.current_period_end.is_some_and(|end| sub.renewal_notice_for == Some(end));
        match methods.get(&sub.customer_id) {
            Some(method) if plain_renewal(now, tenant, plan, &sub, notice_sent) => {
                match renewal_payment(now, tenant, plan, &sub)? {
                    Some(payment) => bulk.push((sub, payment, *method)),
                    None => one_by_one.push(sub),
                }
            }
            _ => one_by_one.push(sub),
        }
    }
    start_renewals_in_bulk(conn, now, bulk).await?;
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
            diesel::update(subs::table.find(id))
                .set(subs::due_at.eq(now + TimeDelta::minutes(5)))
                .execute(conn)
                .await?;
        }
    }
    Ok(claimed)
}
