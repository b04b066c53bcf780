//! Usage events and pre-aggregated counters. Every function is one set-based
//! statement over a whole batch.

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::cached::Cached;
use crate::domain::ids::{CustomerId, SubscriptionId, TenantId};
use crate::domain::subscription::Subscription;
use crate::domain::usage::KeyGeneration;

/// A customer of the batch with its live subscription, if any.
pub struct Target {
    pub customer_id: CustomerId,
    pub time_zone: String,
    pub subscription: Option<Subscription>,
}

#[derive(QueryableByName)]
struct CustomerZone {
    #[diesel(sql_type = SqlUuid)]
    id: CustomerId,
    #[diesel(sql_type = Text)]
    time_zone: String,
}

/// The tenant's customers among `ids` with their live (not pending) subscriptions:
/// two statements for the whole batch.
pub async fn targets(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    ids: &[CustomerId],
) -> diesel::QueryResult<Vec<Target>> {
    let customers: Vec<CustomerZone> = Cached::new(
        diesel::sql_query("SELECT id, time_zone FROM customers WHERE tenant_id = $1 AND id = ANY($2)")
            .bind::<SqlUuid, _>(tenant_id)
            .bind::<Array<SqlUuid>, _>(ids),
    )
    .load(conn)
    .await?;
    let found: Vec<CustomerId> = customers.iter().map(|c| c.id).collect();
    let mut subs: std::collections::HashMap<CustomerId, Subscription> =
        super::subscriptions::using_of_customers(conn, &found).await?.into_iter().map(|s| (s.customer_id, s)).collect();
    Ok(customers
        .into_iter()
        .map(|c| Target { subscription: subs.remove(&c.id), customer_id: c.id, time_zone: c.time_zone })
        .collect())
}

/// An event to record.
pub struct NewEvent<'a> {
    pub event_id: &'a str,
    pub customer_id: CustomerId,
    pub subscription_id: SubscriptionId,
    pub metric: &'a str,
    pub quantity: i64,
    pub occurred_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
}

#[derive(QueryableByName)]
struct ClaimedKeys {
    #[diesel(sql_type = Array<SqlUuid>)]
    keys: Vec<Uuid>,
}

/// Claims the keys of a batch's event ids ([`crate::domain::usage::event_key`]) in
/// `usage_event_keys` and returns those claimed now; the others are duplicates (one
/// statement: the database's `usage_claim`, migration 000031). `keys` and
/// `unseen` must each be sorted (concurrent batches then lock them in the same
/// order). A key is new when neither generation `at.current` nor the previous one
/// holds it: outside the overlap day it is inserted in the current generation and,
/// when in `keys`, looked up in the previous one (each generation's partition keeps
/// its keys in a unique hash index); `unseen` are keys the previous generation's
/// filter rules out, not looked up ([`crate::domain::usage_filter`]). Within the
/// overlap day every key is inserted in both generations, and new only when both
/// inserts went through. Outside the overlap day the keys are inserted without
/// `ON CONFLICT` (one index probe a key instead of two) and, when one of them is
/// claimed already (a retry) or by a batch still in flight (then after waiting for
/// it), claimed again the `ON CONFLICT` way; two batches inserting one key at the
/// same instant wait for each other until PostgreSQL's deadlock check (its
/// `deadlock_timeout`, 1 s by default) ends one's plain insert, which then claims
/// the `ON CONFLICT` way. The keys come back in one
/// array (one row to send and read instead of one per key).
pub async fn claim_keys(
    conn: &mut AsyncPgConnection,
    at: KeyGeneration,
    keys: &[Uuid],
    unseen: &[Uuid],
) -> diesel::QueryResult<Vec<Uuid>> {
    let claimed: ClaimedKeys = Cached::new(
        diesel::sql_query("SELECT usage_claim($1, $2, $3, $4) AS keys")
            .bind::<Integer, _>(at.current)
            .bind::<Bool, _>(at.overlap)
            .bind::<Array<SqlUuid>, _>(keys)
            .bind::<Array<SqlUuid>, _>(unseen),
    )
    .get_result(conn)
    .await?;
    Ok(claimed.keys)
}

/// Gives back keys claimed in this transaction by [`claim_keys`] whose events were
/// rejected after all (their period closed meanwhile): a retry is rejected the same
/// way, not taken for a duplicate.
pub async fn release_keys(conn: &mut AsyncPgConnection, at: KeyGeneration, keys: &[Uuid]) -> diesel::QueryResult<()> {
    let oldest = if at.overlap { at.current - 1 } else { at.current };
    Cached::new(
        diesel::sql_query("DELETE FROM usage_event_keys WHERE generation BETWEEN $1 AND $2 AND key = ANY($3)")
            .bind::<Integer, _>(oldest)
            .bind::<Integer, _>(at.current)
            .bind::<Array<SqlUuid>, _>(keys),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Stores counted events (ids claimed by [`claim_keys`]), received at `received_at`
/// (the partition's day): one statement. The arrays are unnested in the select list,
/// side by side (equal lengths), so no tuplestore holds the rows first as `unnest`
/// in `FROM` does (about 15 % of the statement's time for 10 000 rows, measured in SQL).
pub async fn insert_events(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    received_at: DateTime<Utc>,
    events: &[NewEvent<'_>],
) -> diesel::QueryResult<()> {
    let ids: Vec<&str> = events.iter().map(|e| e.event_id).collect();
    let customers: Vec<CustomerId> = events.iter().map(|e| e.customer_id).collect();
    let subs: Vec<SubscriptionId> = events.iter().map(|e| e.subscription_id).collect();
    let metrics: Vec<&str> = events.iter().map(|e| e.metric).collect();
    let quantities: Vec<i64> = events.iter().map(|e| e.quantity).collect();
    let occurred: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    let periods: Vec<DateTime<Utc>> = events.iter().map(|e| e.period_start).collect();
    Cached::new(diesel::sql_query(
        "INSERT INTO usage_events (tenant_id, received_at, event_id, customer_id, subscription_id, metric, quantity, occurred_at, period_start) \
         SELECT $1, $2, unnest($3::text[]), unnest($4::uuid[]), unnest($5::uuid[]), unnest($6::text[]), unnest($7::int8[]), \
                unnest($8::timestamptz[]), unnest($9::timestamptz[])",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Timestamptz, _>(received_at)
    .bind::<Array<Text>, _>(&ids)
    .bind::<Array<SqlUuid>, _>(&customers)
    .bind::<Array<SqlUuid>, _>(&subs)
    .bind::<Array<Text>, _>(&metrics)
    .bind::<Array<BigInt>, _>(&quantities)
    .bind::<Array<Timestamptz>, _>(&occurred)
    .bind::<Array<Timestamptz>, _>(&periods))
    .execute(conn)
    .await
    .map(|_| ())
}

/// One counter's share of a batch.
pub struct Increment<'a> {
    pub subscription_id: SubscriptionId,
    pub period_start: DateTime<Utc>,
    pub metric: &'a str,
    /// `counter` or `gauge`.
    pub kind: &'static str,
    /// Counter: the sum of the batch's quantities. Gauge: the batch's latest level.
    pub used: i64,
    /// Counter: same as `used`. Gauge: the batch's highest level.
    pub peak: i64,
    /// Gauge: when the latest level was measured.
    pub level_at: Option<DateTime<Utc>>,
    pub limit: i64,
}

/// A counter after an update.
#[derive(Debug, Clone, QueryableByName)]
pub struct CounterState {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = Timestamptz)]
    pub period_start: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    pub metric: String,
    #[diesel(sql_type = BigInt)]
    pub used: i64,
    #[diesel(sql_type = BigInt)]
    pub peak: i64,
}

/// Adds a batch to its counters (one upsert). A counter whose period is already
/// billed is left alone and not returned: its events are to be rejected.
pub async fn add(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    increments: &[Increment<'_>],
) -> diesel::QueryResult<Vec<CounterState>> {
    let subs: Vec<SubscriptionId> = increments.iter().map(|i| i.subscription_id).collect();
    let periods: Vec<DateTime<Utc>> = increments.iter().map(|i| i.period_start).collect();
    let metrics: Vec<&str> = increments.iter().map(|i| i.metric).collect();
    let kinds: Vec<&str> = increments.iter().map(|i| i.kind).collect();
    let used: Vec<i64> = increments.iter().map(|i| i.used).collect();
    let peak: Vec<i64> = increments.iter().map(|i| i.peak).collect();
    let level_at: Vec<Option<DateTime<Utc>>> = increments.iter().map(|i| i.level_at).collect();
    // Rows are locked in key order so concurrent batches cannot deadlock.
    Cached::new(diesel::sql_query(
        "INSERT INTO usage_counters AS u (subscription_id, period_start, metric, tenant_id, kind, used, peak, level_at) \
         SELECT v.sub, v.ps, v.metric, $1, v.kind, v.used, v.peak, v.level_at \
           FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::int8[], $7::int8[], $8::timestamptz[]) \
                AS v(sub, ps, metric, kind, used, peak, level_at) \
          ORDER BY v.sub, v.ps, v.metric \
         ON CONFLICT (subscription_id, period_start, metric) DO UPDATE SET \
             used = CASE WHEN u.kind = 'counter' THEN u.used + excluded.used \
                         WHEN u.level_at IS NULL OR excluded.level_at >= u.level_at THEN excluded.used \
                         ELSE u.used END, \
             peak = CASE WHEN u.kind = 'counter' THEN u.peak + excluded.peak ELSE greatest(u.peak, excluded.peak) END, \
             level_at = greatest(u.level_at, excluded.level_at) \
           WHERE u.billed_at IS NULL \
         RETURNING subscription_id, period_start, metric, used, peak",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Array<SqlUuid>, _>(&subs)
    .bind::<Array<Timestamptz>, _>(&periods)
    .bind::<Array<Text>, _>(&metrics)
    .bind::<Array<Text>, _>(&kinds)
    .bind::<Array<BigInt>, _>(&used)
    .bind::<Array<BigInt>, _>(&peak)
    .bind::<Array<Nullable<Timestamptz>>, _>(&level_at))
    .load(conn)
    .await
}

/// Marks counters that reached their limit as exhausted by `batch` and returns
/// them: only the batch that crossed the limit gets them, so `quota.exhausted`
/// fires once.
pub async fn mark_exhausted(
    conn: &mut AsyncPgConnection,
    batch: Uuid,
    at: DateTime<Utc>,
    increments: &[&Increment<'_>],
) -> diesel::QueryResult<Vec<CounterState>> {
    let subs: Vec<SubscriptionId> = increments.iter().map(|i| i.subscription_id).collect();
    let periods: Vec<DateTime<Utc>> = increments.iter().map(|i| i.period_start).collect();
    let metrics: Vec<&str> = increments.iter().map(|i| i.metric).collect();
    let limits: Vec<i64> = increments.iter().map(|i| i.limit).collect();
    Cached::new(
        diesel::sql_query(
            "UPDATE usage_counters u SET exhausted_by = $1, exhausted_at = $2 \
           FROM unnest($3::uuid[], $4::timestamptz[], $5::text[], $6::int8[]) AS v(sub, ps, metric, lim) \
          WHERE u.subscription_id = v.sub AND u.period_start = v.ps AND u.metric = v.metric \
            AND u.exhausted_by IS NULL AND u.billed_at IS NULL AND u.peak >= v.lim AND u.peak > 0 \
         RETURNING u.subscription_id, u.period_start, u.metric, u.used, u.peak",
        )
        .bind::<SqlUuid, _>(batch)
        .bind::<Timestamptz, _>(at)
        .bind::<Array<SqlUuid>, _>(&subs)
        .bind::<Array<Timestamptz>, _>(&periods)
        .bind::<Array<Text>, _>(&metrics)
        .bind::<Array<BigInt>, _>(&limits),
    )
    .load(conn)
    .await
}

/// Closes a period's counters for billing — creating the ones nothing was reported
/// for, so a late event cannot open them again — and returns those closed now (a
/// period closed before returns nothing).
pub async fn close(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    subscription_id: SubscriptionId,
    period_start: DateTime<Utc>,
    metrics: &[(&str, &'static str)],
    at: DateTime<Utc>,
) -> diesel::QueryResult<Vec<CounterState>> {
    let names: Vec<&str> = metrics.iter().map(|(m, _)| *m).collect();
    let kinds: Vec<&str> = metrics.iter().map(|(_, k)| *k).collect();
    Cached::new(diesel::sql_query(
        "INSERT INTO usage_counters AS u (subscription_id, period_start, metric, tenant_id, kind, used, peak, billed_at) \
         SELECT $1, $2, v.metric, $3, v.kind, 0, 0, $4 FROM unnest($5::text[], $6::text[]) AS v(metric, kind) \
          ORDER BY v.metric \
         ON CONFLICT (subscription_id, period_start, metric) DO UPDATE SET billed_at = excluded.billed_at \
           WHERE u.billed_at IS NULL \
         RETURNING subscription_id, period_start, metric, used, peak",
    )
    .bind::<SqlUuid, _>(subscription_id)
    .bind::<Timestamptz, _>(period_start)
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Timestamptz, _>(at)
    .bind::<Array<Text>, _>(&names)
    .bind::<Array<Text>, _>(&kinds))
    .load(conn)
    .await
}

/// Usage counted towards a next period that starts elsewhere than planned (after a
/// suspension, an upgrade restarting the period, a maintenance shift) moves to the
/// period that really starts (`from` → `to`). The counters are what is billed; the
/// events keep the key they were attributed with (a record, not read again).
pub async fn rekey(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> diesel::QueryResult<()> {
    if from == to {
        return Ok(());
    }
    Cached::new(
        diesel::sql_query(
            "UPDATE usage_counters SET period_start = $3 WHERE subscription_id = $1 AND period_start = $2 \
           AND billed_at IS NULL AND NOT EXISTS \
               (SELECT 1 FROM usage_counters o WHERE o.subscription_id = $1 AND o.period_start = $3)",
        )
        .bind::<SqlUuid, _>(subscription_id)
        .bind::<Timestamptz, _>(from)
        .bind::<Timestamptz, _>(to),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// After an upgrade raised limits, counters below their new limit may be exhausted
/// again (and `quota.exhausted` fire for the new limit).
pub async fn rearm_exhausted(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    period_start: DateTime<Utc>,
    limits: &[(&str, i64)],
) -> diesel::QueryResult<()> {
    let metrics: Vec<&str> = limits.iter().map(|(m, _)| *m).collect();
    let values: Vec<i64> = limits.iter().map(|(_, l)| *l).collect();
    Cached::new(
        diesel::sql_query(
            "UPDATE usage_counters u SET exhausted_by = NULL, exhausted_at = NULL \
           FROM unnest($3::text[], $4::int8[]) AS v(metric, lim) \
          WHERE u.subscription_id = $1 AND u.period_start = $2 AND u.metric = v.metric \
            AND u.exhausted_by IS NOT NULL AND u.peak < v.lim",
        )
        .bind::<SqlUuid, _>(subscription_id)
        .bind::<Timestamptz, _>(period_start)
        .bind::<Array<Text>, _>(&metrics)
        .bind::<Array<BigInt>, _>(&values),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// True when the subscription recorded any usage (a counter above zero) in the
/// period starting at `period_start`: such a period is not refunded in full.
pub async fn has_usage(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    period_start: DateTime<Utc>,
) -> diesel::QueryResult<bool> {
    use diesel::{ExpressionMethods, QueryDsl};

    use super::schema::usage_counters;
    diesel::select(diesel::dsl::exists(
        usage_counters::table
            .filter(usage_counters::subscription_id.eq(subscription_id))
            .filter(usage_counters::period_start.eq(period_start))
            .filter(usage_counters::peak.gt(0)),
    ))
    .get_result(conn)
    .await
}
