//! Subscriptions (the domain's [`Subscription`], stored one-to-one as a row), their
//! history, their notices, and the scheduler's claims.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use super::schema::{subscription_notices, subscription_transitions, subscriptions};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::subscription::{Cause, HistoryEntry, Standing, Subscription, SubscriptionStatus};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
struct Row {
    id: SubscriptionId,
    tenant_id: TenantId,
    customer_id: CustomerId,
    plan_id: Uuid,
    status: SubscriptionStatus,
    auto_renew: bool,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    anchor_at: Option<DateTime<Utc>>,
    paid_amount: Option<Decimal>,
    price_id: Option<Uuid>,
    next_charge_at: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    scheduled_plan_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    due_at: Option<DateTime<Utc>>,
    renewal_payment_id: Option<PaymentId>,
    next_retry_at: Option<DateTime<Utc>>,
    dunning_ends_at: Option<DateTime<Utc>>,
    retries_stopped: bool,
    paid_through: Option<DateTime<Utc>>,
    canceled_at: Option<DateTime<Utc>>,
    renewal_notice_for: Option<DateTime<Utc>>,
    expiry_notice_for: Option<DateTime<Utc>>,
    pending_until: Option<DateTime<Utc>>,
}

/// Converts between the row and the aggregate, field by field both ways.
macro_rules! same_fields {
    ($from:ident => $to:ident { $($f:ident),+ $(,)? }) => {
        $to { $($f: $from.$f),+ }
    };
}

macro_rules! subscription_fields {
    ($from:ident => $to:ident) => {
        same_fields!($from => $to {
            id, tenant_id, customer_id, plan_id, status, auto_renew, current_period_start, current_period_end,
            anchor_at, paid_amount, price_id, next_charge_at, grace_until, scheduled_plan_id, created_at, due_at,
            renewal_payment_id, next_retry_at, dunning_ends_at, retries_stopped, paid_through, canceled_at,
            renewal_notice_for, expiry_notice_for, pending_until,
        })
    };
}

/// The columns of a subscription that access and usage attribution read
/// ([`Standing`]): what the entitlement read selects.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
struct StandingRow {
    id: SubscriptionId,
    plan_id: Uuid,
    status: SubscriptionStatus,
    auto_renew: bool,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    grace_until: Option<DateTime<Utc>>,
    paid_through: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<StandingRow> for Standing {
    fn from(r: StandingRow) -> Self {
        same_fields!(r => Standing {
            id, plan_id, status, auto_renew, current_period_start, current_period_end, grace_until, paid_through,
            created_at,
        })
    }
}

impl From<Row> for Subscription {
    fn from(r: Row) -> Self {
        subscription_fields!(r => Subscription)
    }
}

impl From<Subscription> for Row {
    fn from(s: Subscription) -> Self {
        subscription_fields!(s => Row)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscription_transitions, check_for_backend(diesel::pg::Pg))]
struct TransitionRow {
    from_status: Option<SubscriptionStatus>,
    to_status: SubscriptionStatus,
    cause: Cause,
    at: DateTime<Utc>,
    details: Option<serde_json::Value>,
}

pub async fn insert(conn: &mut AsyncPgConnection, sub: &Subscription) -> QueryResult<()> {
    Cached::new(diesel::insert_into(subscriptions::table).values(Row::from(sub.clone())))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Writes every field back.
pub async fn save(conn: &AsyncPgConnection, sub: &Subscription) -> QueryResult<()> {
    Cached::new(
        diesel::update(subscriptions::table.find(sub.id))
            .set((Row::from(sub.clone()), subscriptions::updated_at.eq(diesel::dsl::now))),
    )
    .execute(&mut &*conn)
    .await
    .map(|_| ())
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    id: SubscriptionId,
) -> QueryResult<Option<Subscription>> {
    subscriptions::table
        .filter(subscriptions::tenant_id.eq(tenant_id))
        .filter(subscriptions::id.eq(id))
        .select(Row::as_select())
        .first(conn)
        .await
        .optional()
        .map(|r| r.map(Subscription::from))
}

pub async fn find_for_update(conn: &mut AsyncPgConnection, id: SubscriptionId) -> QueryResult<Option<Subscription>> {
    let row: Option<Row> =
        subscriptions::table.find(id).select(Row::as_select()).for_update().first(conn).await.optional()?;
    Ok(row.map(Subscription::from))
}

/// These subscriptions, locked in id order.
pub async fn lock_many(conn: &mut AsyncPgConnection, ids: &[SubscriptionId]) -> QueryResult<Vec<Subscription>> {
    lock_where(conn, Box::new(subscriptions::id.eq_any(ids.to_vec()))).await
}

/// A condition on subscription rows.
type Predicate = Box<dyn BoxableExpression<subscriptions::table, Pg, SqlType = Bool>>;

/// The subscriptions `predicate` selects, locked in id order (the order every
/// writer of several takes them in).
async fn lock_where(conn: &mut AsyncPgConnection, predicate: Predicate) -> QueryResult<Vec<Subscription>> {
    let rows: Vec<Row> = subscriptions::table
        .filter(predicate)
        .order(subscriptions::id)
        .for_update()
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// The customer's live subscription (at most one exists, by a unique index; a
/// pending purchase waiting next to a trial it will replace is not it).
pub async fn find_live(conn: &mut AsyncPgConnection, customer_id: CustomerId) -> QueryResult<Option<Subscription>> {
    let row: Option<Row> = subscriptions::table
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(subscriptions::status.ne_all([SubscriptionStatus::Expired, SubscriptionStatus::Terminated]))
        .order(subscriptions::status.eq(SubscriptionStatus::PendingPayment))
        .select(Row::as_select())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(Subscription::from))
}

/// A usage counter read with the live subscription.
#[derive(Debug, Clone)]
pub struct LiveCounter {
    pub metric: String,
    pub period_start: DateTime<Utc>,
    pub used: i64,
    pub peak: i64,
}

/// The entitlement read's answer: the customer's time zone, its live subscription
/// and that subscription's counters keyed by its current period's start or end
/// (the two keys current usage can be counted under).
#[derive(Debug, Clone)]
pub struct LiveWithCounters {
    pub customer_time_zone: String,
    pub subscription: Standing,
    pub counters: Vec<LiveCounter>,
}

/// A counter's columns as the entitlement read selects them (absent: no counter).
type CounterColumns = Option<(String, DateTime<Utc>, i64, i64)>;

/// The tenant's customer's live subscription (as [`find_live`] picks it: a live
/// one before a pending purchase; at most one of each exists) with its counters,
/// in one prepared statement and one round trip. `None` when the customer does not
/// exist for the tenant or has no live subscription.
pub async fn live_with_counters(
    conn: &AsyncPgConnection,
    tenant_id: TenantId,
    customer_id: CustomerId,
) -> QueryResult<Option<LiveWithCounters>> {
    use super::schema::{customers, usage_counters};
    let rows: Vec<(StandingRow, String, CounterColumns)> = customers::table
        .inner_join(
            subscriptions::table.on(subscriptions::customer_id
                .eq(customers::id)
                .and(subscriptions::status.ne_all([SubscriptionStatus::Expired, SubscriptionStatus::Terminated]))),
        )
        .left_join(
            usage_counters::table.on(usage_counters::subscription_id.eq(subscriptions::id).and(
                usage_counters::period_start
                    .nullable()
                    .eq(subscriptions::current_period_start)
                    .or(usage_counters::period_start.nullable().eq(subscriptions::current_period_end)),
            )),
        )
        .filter(customers::tenant_id.eq(tenant_id))
        .filter(customers::id.eq(customer_id))
        .select((
            StandingRow::as_select(),
            customers::time_zone,
            (usage_counters::metric, usage_counters::period_start, usage_counters::used, usage_counters::peak)
                .nullable(),
        ))
        .load(&mut &*conn)
        .await?;
    // A live subscription before a pending purchase (ORDER BY status = 'pending_payment').
    let pending = |r: &StandingRow| r.status == SubscriptionStatus::PendingPayment;
    let Some(chosen) = rows.iter().map(|(r, _, _)| r).min_by_key(|r| pending(r)).map(|r| r.id) else {
        return Ok(None);
    };
    let mut picked = rows.into_iter().filter(|(r, _, _)| r.id == chosen);
    let Some((sub, customer_time_zone, first)) = picked.next() else { return Ok(None) };
    let counters = first
        .into_iter()
        .chain(picked.filter_map(|(_, _, c)| c))
        .map(|(metric, period_start, used, peak)| LiveCounter { metric, period_start, used, peak })
        .collect();
    Ok(Some(LiveWithCounters { customer_time_zone, subscription: Standing::from(sub), counters }))
}

/// Every subscription of the customer that has not ended (a live one and a pending
/// purchase at most) and, when given, subscription `also` of the same customer (a
/// purchase's activation reads it with them), locked in id order, in one statement.
pub async fn lock_live(
    conn: &mut AsyncPgConnection,
    customer_id: CustomerId,
    also: Option<SubscriptionId>,
) -> QueryResult<Vec<Subscription>> {
    lock_live_of(conn, &[customer_id], also.as_slice()).await
}

/// [`lock_live`] for several customers at once (a batch of paid purchases): their
/// subscriptions that have not ended and those of `also` that are theirs, locked
/// in id order, in one statement.
pub async fn lock_live_of(
    conn: &mut AsyncPgConnection,
    customers: &[CustomerId],
    also: &[SubscriptionId],
) -> QueryResult<Vec<Subscription>> {
    let not_ended = subscriptions::status.ne_all([SubscriptionStatus::Expired, SubscriptionStatus::Terminated]);
    let predicate = subscriptions::customer_id
        .eq_any(customers.to_vec())
        .and(not_ended.or(subscriptions::id.eq_any(also.to_vec())));
    lock_where(conn, Box::new(predicate)).await
}

pub async fn list_for_customer(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    customer_id: Option<CustomerId>,
    status: Option<SubscriptionStatus>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<Subscription>> {
    let mut q = subscriptions::table.filter(subscriptions::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(c) = customer_id {
        q = q.filter(subscriptions::customer_id.eq(c));
    }
    if let Some(s) = status {
        q = q.filter(subscriptions::status.eq(s));
    }
    if let Some(after) = starting_after {
        q = q.filter(subscriptions::id.gt(after));
    }
    let rows: Vec<Row> = q.order(subscriptions::id.asc()).limit(limit).select(Row::as_select()).load(conn).await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// The subscriptions of these customers that can record usage (trialing, active,
/// past due or canceled: not suspended, since without access nothing is used).
pub async fn using_of_customers(
    conn: &mut AsyncPgConnection,
    customer_ids: &[CustomerId],
) -> QueryResult<Vec<Subscription>> {
    let rows: Vec<Row> = subscriptions::table
        .filter(subscriptions::customer_id.eq_any(customer_ids))
        .filter(subscriptions::status.eq_any([
            SubscriptionStatus::Trialing,
            SubscriptionStatus::Active,
            SubscriptionStatus::PastDue,
            SubscriptionStatus::Canceled,
        ]))
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// A subscription named by the scheduler's list, with the instant the list gives.
#[derive(QueryableByName)]
struct Listed {
    #[diesel(embed)]
    subscription: Row,
    #[diesel(sql_type = Timestamptz)]
    listed_due_at: DateTime<Utc>,
}

/// Up to `limit` subscriptions due at `now`, oldest due first, locked (skipping
/// those another scheduler holds): the scheduler's claim. The due list
/// (`due_subscriptions`, kept equal to the subscriptions' `due_at` by triggers,
/// migration 000029) is read in due order through its key, and only the
/// subscriptions are locked. A subscription whose `due_at` no longer is the listed
/// instant is left out: one moved by a transaction that committed after this
/// statement's snapshot (another scheduler's claim; the row is re-read when
/// locked), or a second list row of a list that drifted (the audit's
/// `due_subscriptions_follow`). That comparison is made here, not in the SQL: the
/// planner takes the two due conditions for independent, under-estimates the rows
/// and may choose a scan of the whole table.
pub async fn claim_due(conn: &mut AsyncPgConnection, now: DateTime<Utc>, limit: i64) -> QueryResult<Vec<Subscription>> {
    let rows: Vec<Listed> = Cached::new(
        diesel::sql_query(
            "SELECT s.*, d.due_at AS listed_due_at FROM due_subscriptions d \
             JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.due_at <= $1 ORDER BY d.due_at LIMIT $2 FOR UPDATE OF s SKIP LOCKED",
        )
        .bind::<Timestamptz, _>(now)
        .bind::<BigInt, _>(limit),
    )
    .load(conn)
    .await?;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    Ok(rows
        .into_iter()
        .filter(|l| l.subscription.due_at == Some(l.listed_due_at) && seen.insert(l.subscription.id))
        .map(|l| Subscription::from(l.subscription))
        .collect())
}

/// Postpones a subscription whose step failed.
pub async fn postpone(conn: &mut AsyncPgConnection, id: SubscriptionId, until: DateTime<Utc>) -> QueryResult<()> {
    Cached::new(diesel::update(subscriptions::table.find(id)).set(subscriptions::due_at.eq(until)))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Subscriptions of a tenant whose dates a maintenance extension moves: with
/// access at `now` and no renewal in flight, locked in id order.
pub async fn lock_shiftable(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> QueryResult<Vec<Subscription>> {
    let rows: Vec<Row> = subscriptions::table
        .filter(subscriptions::tenant_id.eq(tenant_id))
        .filter(subscriptions::status.eq_any([
            SubscriptionStatus::Trialing,
            SubscriptionStatus::Active,
            SubscriptionStatus::Canceled,
        ]))
        .filter(subscriptions::current_period_end.gt(now))
        .filter(subscriptions::renewal_payment_id.is_null())
        .order(subscriptions::id)
        .for_update()
        .select(Row::as_select())
        .load(conn)
        .await?;
    Ok(rows.into_iter().map(Subscription::from).collect())
}

/// Subscriptions on a plan (or about to move to it) in `statuses`, with their
/// customers: who a price change concerns.
pub async fn subscribers_of_plan(
    conn: &mut AsyncPgConnection,
    plan_id: Uuid,
    statuses: &[SubscriptionStatus],
) -> QueryResult<Vec<(SubscriptionId, CustomerId)>> {
    subscriptions::table
        .filter(subscriptions::plan_id.eq(plan_id).or(subscriptions::scheduled_plan_id.eq(plan_id)))
        .filter(subscriptions::status.eq_any(statuses.to_vec()))
        .select((subscriptions::id, subscriptions::customer_id))
        .load(conn)
        .await
}

/// Records one history entry of a subscription.
pub async fn record(
    conn: &AsyncPgConnection,
    subscription_id: SubscriptionId,
    entry: &HistoryEntry,
) -> QueryResult<()> {
    record_many(conn, &[(subscription_id, entry)]).await
}

/// Records history entries in one statement per chunk.
pub async fn record_many(conn: &AsyncPgConnection, entries: &[(SubscriptionId, &HistoryEntry)]) -> QueryResult<()> {
    for chunk in entries.chunks(2000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|(id, e)| {
                (
                    subscription_transitions::subscription_id.eq(*id),
                    subscription_transitions::from_status.eq(e.from),
                    subscription_transitions::to_status.eq(e.to),
                    subscription_transitions::cause.eq(e.cause),
                    subscription_transitions::at.eq(e.at),
                    subscription_transitions::details.eq(e.details.clone()),
                )
            })
            .collect();
        let n = rows.len();
        Cached::rows(diesel::insert_into(subscription_transitions::table).values(rows), n).execute(&mut &*conn).await?;
    }
    Ok(())
}

/// A subscription's history, oldest first.
pub async fn history(conn: &mut AsyncPgConnection, subscription_id: SubscriptionId) -> QueryResult<Vec<HistoryEntry>> {
    let rows: Vec<TransitionRow> = subscription_transitions::table
        .filter(subscription_transitions::subscription_id.eq(subscription_id))
        .order(subscription_transitions::id.asc())
        .select(TransitionRow::as_select())
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|t| HistoryEntry { from: t.from_status, to: t.to_status, cause: t.cause, at: t.at, details: t.details })
        .collect())
}

/// Records that a notice of `kind` went out for the period ending at `period_end`;
/// false when it had gone out before.
pub async fn record_notice(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    kind: &str,
    period_end: DateTime<Utc>,
    sent_at: DateTime<Utc>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(subscription_notices::table)
        .values((
            subscription_notices::subscription_id.eq(subscription_id),
            subscription_notices::kind.eq(kind),
            subscription_notices::period_end.eq(period_end),
            subscription_notices::sent_at.eq(sent_at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}
