//! Usage ingestion (`POST /v1/usage`), quota state, and billing a period's usage
//! (SPEC §5).
//!
//! A batch is parsed and checked first, without the database ([`check`]). It is
//! then handled in a fixed number of statements whatever its size: the
//! customers and their subscriptions are read once, the event ids' keys
//! ([`crate::domain::usage::event_key`]: 16 bytes of SHA-256 over tenant and id) are claimed with one
//! statement into `usage_event_keys` (`db::usage::claim_keys`: a plain insert, or
//! `INSERT .. ON CONFLICT DO NOTHING` when an id of the batch is claimed already; a
//! duplicate within the window of [`KeyGeneration`], at least 35 days, counts
//! once; ids the previous generation's filter rules out skip their lookup there,
//! [`super::usage_key_filter`]), the batch's per-counter sums are added to pre-aggregated counters with one
//! upsert, and the counted events are stored with one insert (partitioned by the
//! day received). Entitlements read the counters, never the events.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use foldhash::fast::RandomState;
use serde_json::json;
use uuid::Uuid;

use super::collection;
use super::payments::{self, Line};
use super::plans::{self, Plan};
use super::tenants::Tenant;
use super::usage_batch::reject;
pub use super::usage_batch::{Checked, MAX_EVENTS, MAX_QUANTITY, Rejected, UsageBatch, UsageEvent, UsageResult, check};
use super::usage_key_filter::KeyFilters;
use crate::db::attempts as attempts_db;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::usage::{self as db, CounterState, Increment};
use crate::domain::ids::{CustomerId, SubscriptionId};
use crate::domain::money::Money;
use crate::domain::plan::{MetricKind, QuotaReset};
use crate::domain::states::{AttemptChannel, LineKind, PaymentKind};
use crate::domain::subscription::{Standing, Subscription, SubscriptionStatus};
use crate::domain::usage::{KeyGeneration, PeriodFacts, Unattributable, Usage, overage, period_of};
use crate::error::ServiceResult;

/// Clock skew tolerated for `occurred_at` in the future.
const FUTURE_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// An event that passed validation and attribution.
struct Valid {
    index: usize,
    /// The event id's key in `usage_event_keys` ([`crate::domain::usage::event_key`]).
    key: Uuid,
    event: UsageEvent,
    subscription_id: SubscriptionId,
    period_start: DateTime<Utc>,
    kind: MetricKind,
    limit: i64,
}

fn kind_str(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Counter => "counter",
        MetricKind::Gauge => "gauge",
    }
}

/// Whether a period follows the current one at its end.
fn continues(sub: &Standing) -> bool {
    let end = sub.current_period_end;
    (sub.auto_renew && sub.status != SubscriptionStatus::Canceled)
        || sub.paid_through.is_some_and(|p| end.is_some_and(|e| p > e))
}

/// The facts attribution needs, or `None` when the subscription has no period.
pub fn facts(sub: &Standing, plan: &Plan, customer_tz: chrono_tz::Tz) -> Option<PeriodFacts> {
    Some(PeriodFacts {
        created_at: sub.created_at,
        period_start: sub.current_period_start?,
        period_end: sub.current_period_end?,
        continues: continues(sub),
        reset: plan.quota_reset,
        customer_tz,
    })
}

/// Ingests a batch checked by [`check`] at `now` for `tenant`: each event
/// accepted, counted as a duplicate, or rejected by index with a code (SPEC §5;
/// `occurred_in_future` and the codes after it are decided here). `filters` are
/// the API replica's key filters. Errors: database errors (nothing written: the
/// caller's transaction rolls back).
pub async fn ingest(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    filters: &KeyFilters,
    batch: Checked,
) -> ServiceResult<UsageResult> {
    let Checked { events, mut rejected } = batch;
    let mut duplicates = 0;
    // Ids are told apart by their keys, within the batch as across batches.
    let mut seen: HashSet<Uuid, RandomState> = HashSet::with_capacity_and_hasher(events.len(), RandomState::default());
    let mut parsed: Vec<(usize, Uuid, UsageEvent)> = Vec::with_capacity(events.len());
    for (index, key, event) in events {
        if event.occurred_at > now + FUTURE_TOLERANCE {
            rejected.push(reject(index, "occurred_in_future", format!("occurred_at is after {now}")));
        } else if seen.insert(key) {
            parsed.push((index, key, event));
        } else {
            duplicates += 1;
        }
    }

    // Customers, subscriptions and plans of the whole batch.
    let mut customers: Vec<CustomerId> = parsed.iter().map(|(_, _, e)| e.customer_id).collect();
    customers.sort_unstable();
    customers.dedup();
    let targets: HashMap<CustomerId, db::Target, RandomState> =
        db::targets(conn, tenant.id, &customers).await?.into_iter().map(|t| (t.customer_id, t)).collect();
    let mut plans_of: HashMap<Uuid, Plan, RandomState> = HashMap::default();
    for sub in targets.values().filter_map(|t| t.subscription.as_ref()) {
        if let std::collections::hash_map::Entry::Vacant(slot) = plans_of.entry(sub.plan_id) {
            slot.insert(plans::load_cached(conn, sub.plan_id).await?);
        }
    }

    let mut valid = Vec::with_capacity(parsed.len());
    for (index, key, event) in parsed {
        let Some(target) = targets.get(&event.customer_id) else {
            rejected.push(reject(index, "customer_not_found", None));
            continue;
        };
        let Some((sub, plan)) = target.subscription.as_ref().and_then(|s| Some((s, plans_of.get(&s.plan_id)?))) else {
            rejected.push(reject(index, "no_active_subscription", None));
            continue;
        };
        let Some(quota) = plan.quotas.get(&event.metric) else {
            rejected.push(reject(
                index,
                "unknown_metric",
                format!("plan {} has no metric {}", plan.code, event.metric),
            ));
            continue;
        };
        let tz = super::stored_time_zone(&target.time_zone)?;
        let attributed = facts(&sub.standing(), plan, tz)
            .ok_or(Unattributable::NoSubscription)
            .and_then(|f| period_of(event.occurred_at, &f));
        match attributed {
            Ok(period_start) => valid.push(Valid {
                index,
                key,
                subscription_id: sub.id,
                period_start,
                kind: quota.kind(),
                limit: quota.limit(),
                event,
            }),
            Err(e) => rejected.push(reject(index, e.code(), None)),
        }
    }

    // Keys are claimed in order: concurrent batches lock them in the same order.
    valid.sort_by_key(|v| v.key);
    let generation = KeyGeneration::at(now);
    let keys: Vec<Uuid> = valid.iter().map(|v| v.key).collect();
    let (keys, unseen) = match filters.for_claim(conn, generation).await? {
        Some(filter) => filter.split(keys),
        None => (keys, Vec::new()),
    };
    metrics::counter!("billing_usage_key_lookups_skipped_total").increment(unseen.len() as u64);
    let claimed: HashSet<Uuid, RandomState> =
        db::claim_keys(conn, generation, &keys, &unseen).await?.into_iter().collect();
    drop((keys, unseen));
    let (fresh, dup): (Vec<Valid>, Vec<Valid>) = valid.into_iter().partition(|v| claimed.contains(&v.key));
    duplicates += dup.len();

    let increments = aggregate(&fresh);
    let states = db::add(conn, tenant.id, &increments).await?;
    // Counters not updated belong to a period billed meanwhile: their events are
    // rejected and their ids given back.
    let peaks: HashMap<(SubscriptionId, DateTime<Utc>, &str), i64, RandomState> =
        states.iter().map(|s| ((s.subscription_id, s.period_start, s.metric.as_str()), s.peak)).collect();
    let (counted, closed): (Vec<&Valid>, Vec<&Valid>) =
        fresh.iter().partition(|v| peaks.contains_key(&(v.subscription_id, v.period_start, v.event.metric.as_str())));
    if !closed.is_empty() {
        let keys: Vec<Uuid> = closed.iter().map(|v| v.key).collect();
        db::release_keys(conn, generation, &keys).await?;
        rejected.extend(closed.iter().map(|v| reject(v.index, "period_closed", None)));
    }
    let new_events: Vec<db::NewEvent<'_>> = counted
        .iter()
        .map(|v| db::NewEvent {
            event_id: &v.event.event_id,
            customer_id: v.event.customer_id,
            subscription_id: v.subscription_id,
            metric: &v.event.metric,
            quantity: v.event.quantity,
            occurred_at: v.event.occurred_at,
            period_start: v.period_start,
        })
        .collect();
    if !new_events.is_empty() {
        db::insert_events(conn, tenant.id, now, &new_events).await?;
    }
    drop(new_events);
    // Only counters now at or above their limit can have been exhausted by this batch.
    let candidates: Vec<&Increment<'_>> = increments
        .iter()
        .filter(|i| peaks.get(&(i.subscription_id, i.period_start, i.metric)).is_some_and(|&p| p > 0 && p >= i.limit))
        .collect();
    if !candidates.is_empty() {
        let mut exhausted = db::mark_exhausted(conn, Uuid::now_v7(), now, &candidates).await?;
        // Emitted in the counters' order, whatever order the update returned them in.
        exhausted.sort_by(|a, b| {
            (a.subscription_id, a.period_start, &a.metric).cmp(&(b.subscription_id, b.period_start, &b.metric))
        });
        emit_exhausted(conn, now, tenant, &fresh, &exhausted).await?;
    }
    rejected.sort_by_key(|r| r.index);
    Ok(UsageResult { accepted: counted.len(), duplicates, rejected })
}

/// One increment per (subscription, period, metric): counters sum, gauges keep the
/// latest level (by `occurred_at`) and the highest.
fn aggregate(events: &[Valid]) -> Vec<Increment<'_>> {
    let mut by_key: HashMap<(SubscriptionId, DateTime<Utc>, &str), Increment<'_>, RandomState> = HashMap::default();
    for v in events {
        let q = v.event.quantity;
        let at = v.event.occurred_at;
        let key = (v.subscription_id, v.period_start, v.event.metric.as_str());
        let inc = by_key.entry(key).or_insert_with(|| Increment {
            subscription_id: v.subscription_id,
            period_start: v.period_start,
            metric: &v.event.metric,
            kind: kind_str(v.kind),
            used: 0,
            peak: 0,
            level_at: None,
            limit: v.limit,
        });
        match v.kind {
            MetricKind::Counter => {
                inc.used = inc.used.saturating_add(q);
                inc.peak = inc.used;
            }
            MetricKind::Gauge => {
                if inc.level_at.is_none_or(|l| at >= l) {
                    inc.used = q;
                    inc.level_at = Some(at);
                }
                inc.peak = inc.peak.max(q);
            }
        }
    }
    by_key.into_values().collect()
}

async fn emit_exhausted(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    events: &[Valid],
    exhausted: &[CounterState],
) -> ServiceResult<()> {
    if exhausted.is_empty() {
        return Ok(());
    }
    let customers: HashMap<SubscriptionId, CustomerId> =
        events.iter().map(|v| (v.subscription_id, v.event.customer_id)).collect();
    let limits: HashMap<(SubscriptionId, &str), i64> =
        events.iter().map(|v| ((v.subscription_id, v.event.metric.as_str()), v.limit)).collect();
    let out = exhausted
        .iter()
        .map(|c| {
            let data = json!({
                "subscription_id": c.subscription_id,
                "customer_id": customers.get(&c.subscription_id),
                "metric": c.metric,
                "limit": limits.get(&(c.subscription_id, c.metric.as_str())),
                "used": c.used,
                "peak": c.peak,
                "period_start": c.period_start,
            });
            NewEvent::event(tenant.id, c.subscription_id, "quota.exhausted", data)
        })
        .collect();
    outbox::emit_many(conn, now, out).await?;
    Ok(())
}

/// The key (period start) current usage of `sub` counts under at `now`: its
/// current period's start, or — after the quota reset that opens the next
/// window — its end. `None` when nothing counts now.
pub fn current_key(
    now: DateTime<Utc>,
    sub: &Standing,
    plan: &Plan,
    customer_tz: chrono_tz::Tz,
) -> Option<DateTime<Utc>> {
    facts(sub, plan, customer_tz).and_then(|f| period_of(now, &f).ok())
}

/// Closes a period's counters for billing and returns the overage lines (once:
/// a period closed before yields nothing).
pub async fn close_period(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
    plan: &Plan,
    period_start: DateTime<Utc>,
) -> ServiceResult<Vec<Line>> {
    if plan.quotas.is_empty() {
        return Ok(Vec::new());
    }
    let metrics: Vec<(&str, &'static str)> =
        plan.quotas.iter().map(|(m, q)| (m.as_str(), kind_str(q.kind()))).collect();
    let closed = db::close(conn, tenant.id, sub.id, period_start, &metrics, now).await?;
    Ok(closed
        .into_iter()
        .filter_map(|c| {
            let quota = plan.quotas.get(&c.metric)?;
            let (units, price, amount) = overage(quota, Usage { used: c.used, peak: c.peak })?;
            Some(Line {
                kind: LineKind::Overage,
                description: format!("{}: сверх лимита {} ({})", tenant.name, c.metric, plan.name),
                metric: Some(c.metric),
                quantity: Some(units),
                unit_price: Some(price),
                amount: amount.into(),
            })
        })
        .collect())
}

/// The current period ends without a renewal charge (expiry, a queued extension
/// taking over, an upgrade restarting the period): its usage is billed now, as an
/// `overage` payment on the saved card (or a card payment when there is none).
pub async fn bill_ended_period(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
    plan: &Plan,
) -> ServiceResult<()> {
    let Some(start) = sub.current_period_start else { return Ok(()) };
    let mut lines = close_period(conn, now, tenant, sub, plan, start).await?;
    // With a last-day reset, usage after the reset counts towards a period that
    // does not follow: it is billed with this one.
    if plan.quota_reset == QuotaReset::LastDayLocalMidnight
        && !continues(&sub.standing())
        && let Some(end) = sub.current_period_end
    {
        lines.extend(close_period(conn, now, tenant, sub, plan, end).await?);
    }
    charge_lines(conn, now, tenant, sub, lines).await
}

/// An `overage` payment for `lines`, charged to the saved card at once.
pub async fn charge_lines(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
    lines: Vec<Line>,
) -> ServiceResult<()> {
    let Some(first) = lines.first() else { return Ok(()) };
    let zero = Money::zero(first.money()?.currency());
    let description = format!("{}: использование сверх лимита", tenant.name);
    let mut payment = PaymentRow::pending(
        payments::payer(tenant, sub.customer_id, Some(sub.id)),
        PaymentKind::Overage,
        zero,
        description,
        now,
    );
    payment.plan_id = Some(sub.plan_id);
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    payments::set_lines(&mut payment, &lines)?;
    payments_db::insert(conn, &payment).await?;
    if attempts_db::default_payment_method(conn, sub.customer_id).await?.is_some() {
        collection::start_attempt(conn, now, tenant, &payment, AttemptChannel::Manual).await?;
    } else {
        collection::open_widget_attempt(conn, now, tenant, &payment).await?;
    }
    Ok(())
}
