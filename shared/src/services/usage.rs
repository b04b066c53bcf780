//! Usage ingestion (`POST /v1/usage`), quota state, and billing a period's usage
//! (SPEC §5).
//!
//! A batch is handled in a fixed number of statements whatever its size: the
//! customers and their subscriptions are read once, the event ids' keys
//! ([`event_key`]: 16 bytes of SHA-256 over tenant and id) are claimed with one
//! `INSERT .. SELECT unnest(..) ON CONFLICT DO NOTHING` into `usage_event_keys` (a
//! duplicate within the window of [`KeyGeneration`], at least 35 days, counts
//! once; ids the previous generation's filter rules out skip their lookup there,
//! [`super::usage_key_filter`]), the batch's per-counter sums are added to pre-aggregated counters with one
//! upsert, and the counted events are stored with one insert (partitioned by the
//! day received). Entitlements read the counters, never the events.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use super::collection;
use super::payments::{self, Line};
use super::plans::{self, Plan};
use super::tenants::Tenant;
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
use crate::domain::usage::{KeyGeneration, PeriodFacts, Unattributable, Usage, event_key, overage, period_of};
use crate::error::{ServiceError, ServiceResult};

/// Events per call.
pub const MAX_EVENTS: usize = 10_000;
/// Largest quantity of one event (keeps counters and overage amounts in range).
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// Clock skew tolerated for `occurred_at` in the future.
const FUTURE_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// `POST /v1/usage` body. Events are checked one by one: an invalid event is
/// listed in `rejected`, the others are accepted.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"events": [{"event_id": "evt-1", "customer_id": "01926f6e-8d40-7b3a-9c1e-2f4a5b6c7d8e", "metric": "messages", "quantity": 1, "occurred_at": "2026-03-05T09:00:00Z"}]})))]
pub struct UsageBatch {
    /// Kept raw so each event is parsed (and rejected) on its own, straight into
    /// [`UsageEvent`] without an intermediate JSON tree.
    #[schema(value_type = Vec<UsageEvent>)]
    pub events: Vec<Box<RawValue>>,
}

/// One usage event.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// Unique per tenant: the same id again within at least 35 days (up to 70)
    /// counts once, as a duplicate. 1 to 255 characters, no control characters
    /// (else the event is rejected: `invalid_event_id`).
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")]
    pub event_id: String,
    pub customer_id: CustomerId,
    /// A quota metric of the customer's plan (plan metric names follow this
    /// pattern; any other is rejected: `unknown_metric`).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    pub metric: String,
    /// Counter: units used (summed). Gauge: the absolute level measured. An
    /// integer; `5.0` counts as 5 (JSON Schema's integers), `5.5` is refused.
    #[serde(deserialize_with = "integer")]
    pub quantity: i64,
    pub occurred_at: DateTime<Utc>,
}

/// An `i64` written as a JSON integer or as a number with a zero fraction.
fn integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    struct Integer;
    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            i64::try_from(v).map_err(|_| E::custom("integer out of range"))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                // Exact: |v| < 2^53, so the conversion loses nothing.
                #[allow(clippy::cast_possible_truncation)]
                Ok(v as i64)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(Integer)
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Rejected {
    /// Position of the event in `events`.
    pub index: usize,
    /// `validation_failed`, `invalid_event_id`, `invalid_quantity`,
    /// `occurred_in_future`, `customer_not_found`, `no_active_subscription`,
    /// `unknown_metric`, `period_closed`.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageResult {
    /// Events counted now.
    pub accepted: usize,
    /// Events whose id was already counted (earlier, or earlier in this batch).
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// An event that passed validation and attribution.
struct Valid {
    index: usize,
    /// The event id's key in `usage_event_keys` ([`event_key`]).
    key: Uuid,
    event: UsageEvent,
    subscription_id: SubscriptionId,
    period_start: DateTime<Utc>,
    kind: MetricKind,
    limit: i64,
}

fn reject(index: usize, code: &'static str, detail: impl Into<Option<String>>) -> Rejected {
    Rejected { index, code, detail: detail.into() }
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

/// Ingests a batch at `now` for `tenant`: each event accepted, counted as a
/// duplicate, or rejected by index with a code (SPEC §5). `filters` are the API
/// replica's key filters. Errors: `too_many_events` (more than 10 000), database
/// errors (nothing written: the caller's transaction rolls back).
pub async fn ingest(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    filters: &KeyFilters,
    batch: UsageBatch,
) -> ServiceResult<UsageResult> {
    if batch.events.len() > MAX_EVENTS {
        return Err(ServiceError::invalid(
            "too_many_events",
            format!("at most {MAX_EVENTS} events per call ({} sent)", batch.events.len()),
        ));
    }
    let mut rejected = Vec::new();
    let mut duplicates = 0;
    // Ids are told apart by their keys, within the batch as across batches.
    let mut seen: HashSet<Uuid> = HashSet::new();
    let mut parsed: Vec<(usize, Uuid, UsageEvent)> = Vec::with_capacity(batch.events.len());
    for (index, raw) in batch.events.into_iter().enumerate() {
        let event: UsageEvent = match serde_json::from_str(raw.get()) {
            Ok(e) => e,
            Err(e) => {
                rejected.push(reject(index, "validation_failed", e.to_string()));
                continue;
            }
        };
        if event.event_id.is_empty()
            || event.event_id.chars().count() > 255
            || event.event_id.chars().any(char::is_control)
        {
            rejected.push(reject(
                index,
                "invalid_event_id",
                "event_id must be 1 to 255 printable characters".to_owned(),
            ));
        } else if !(0..=MAX_QUANTITY).contains(&event.quantity) {
            rejected.push(reject(index, "invalid_quantity", format!("quantity must be 0 to {MAX_QUANTITY}")));
        } else if event.occurred_at > now + FUTURE_TOLERANCE {
            rejected.push(reject(index, "occurred_in_future", format!("occurred_at is after {now}")));
        } else {
            let key = event_key(tenant.id, &event.event_id);
            if seen.insert(key) {
                parsed.push((index, key, event));
            } else {
                duplicates += 1;
            }
        }
    }

    // Customers, subscriptions and plans of the whole batch.
    let mut customers: Vec<CustomerId> = parsed.iter().map(|(_, _, e)| e.customer_id).collect();
    customers.sort_unstable();
    customers.dedup();
    let targets: HashMap<CustomerId, db::Target> =
        db::targets(conn, tenant.id, &customers).await?.into_iter().map(|t| (t.customer_id, t)).collect();
    let mut plans_of: HashMap<Uuid, Plan> = HashMap::new();
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
    let claimed: HashSet<Uuid> = db::claim_keys(conn, generation, &keys, &unseen).await?.into_iter().collect();
    drop((keys, unseen));
    let (fresh, dup): (Vec<Valid>, Vec<Valid>) = valid.into_iter().partition(|v| claimed.contains(&v.key));
    duplicates += dup.len();

    let increments = aggregate(&fresh);
    let states = db::add(conn, tenant.id, &increments).await?;
    // Counters not updated belong to a period billed meanwhile: their events are
    // rejected and their ids given back.
    let peaks: HashMap<(SubscriptionId, DateTime<Utc>, &str), i64> =
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
        let exhausted = db::mark_exhausted(conn, Uuid::now_v7(), now, &candidates).await?;
        emit_exhausted(conn, now, tenant, &fresh, &exhausted).await?;
    }
    rejected.sort_by_key(|r| r.index);
    Ok(UsageResult { accepted: counted.len(), duplicates, rejected })
}

/// One increment per (subscription, period, metric): counters sum, gauges keep the
/// latest level (by `occurred_at`) and the highest.
fn aggregate(events: &[Valid]) -> Vec<Increment<'_>> {
    let mut by_key: BTreeMap<(SubscriptionId, DateTime<Utc>, &str), Increment<'_>> = BTreeMap::new();
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
