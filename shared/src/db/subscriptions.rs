//! Subscriptions and their transition history.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{subscription_transitions, subscriptions};
use crate::domain::subscription::SubscriptionStatus;

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub anchor_at: Option<DateTime<Utc>>,
    pub paid_amount: Option<Decimal>,
    pub price_id: Option<Uuid>,
    pub next_charge_at: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
    pub scheduled_plan_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub renewal_payment_id: Option<Uuid>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub dunning_ends_at: Option<DateTime<Utc>>,
    pub retries_stopped: bool,
    pub paid_through: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// The period end whose renewal notice went out.
    pub renewal_notice_for: Option<DateTime<Utc>>,
    /// The period end whose expiry notice went out.
    pub expiry_notice_for: Option<DateTime<Utc>>,
}

impl SubscriptionRow {
    /// A new subscription waiting for its first payment.
    pub fn new(tenant_id: Uuid, customer_id: Uuid, plan_id: Uuid, auto_renew: bool, now: DateTime<Utc>) -> Self {
        SubscriptionRow {
            id: Uuid::now_v7(),
            tenant_id,
            customer_id,
            plan_id,
            status: SubscriptionStatus::PendingPayment,
            auto_renew,
            current_period_start: None,
            current_period_end: None,
            anchor_at: None,
            paid_amount: None,
            price_id: None,
            next_charge_at: None,
            grace_until: None,
            scheduled_plan_id: None,
            created_at: now,
            due_at: None,
            renewal_payment_id: None,
            next_retry_at: None,
            dunning_ends_at: None,
            retries_stopped: false,
            paid_through: None,
            canceled_at: None,
            renewal_notice_for: None,
            expiry_notice_for: None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscription_transitions, check_for_backend(diesel::pg::Pg))]
pub struct TransitionRow {
    pub from_status: Option<SubscriptionStatus>,
    pub to_status: SubscriptionStatus,
    pub cause: String,
    pub at: DateTime<Utc>,
    pub details: Option<serde_json::Value>,
}

pub async fn insert(conn: &mut AsyncPgConnection, row: &SubscriptionRow) -> QueryResult<()> {
    diesel::insert_into(subscriptions::table).values(row).execute(conn).await.map(|_| ())
}

/// Writes every column of the row back.
pub async fn save(conn: &mut AsyncPgConnection, row: &SubscriptionRow) -> QueryResult<()> {
    diesel::update(subscriptions::table.find(row.id))
        .set((row, subscriptions::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn find(conn: &mut AsyncPgConnection, tenant_id: Uuid, id: Uuid) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::tenant_id.eq(tenant_id))
        .filter(subscriptions::id.eq(id))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_for_update(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table.find(id).select(SubscriptionRow::as_select()).for_update().first(conn).await.optional()
}

/// The customer's live subscription (at most one exists, by a unique index; a
/// pending purchase waiting next to a trial it will replace is not it).
pub async fn find_live(conn: &mut AsyncPgConnection, customer_id: Uuid) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(subscriptions::status.ne_all([SubscriptionStatus::Expired, SubscriptionStatus::Terminated]))
        .order(subscriptions::status.eq(SubscriptionStatus::PendingPayment))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Every subscription of the customer that has not ended (a live one and a pending
/// purchase at most), locked.
pub async fn live_of_customer(conn: &mut AsyncPgConnection, customer_id: Uuid) -> QueryResult<Vec<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(subscriptions::status.ne_all([SubscriptionStatus::Expired, SubscriptionStatus::Terminated]))
        .order(subscriptions::id)
        .for_update()
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await
}

pub async fn list_for_customer(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
    customer_id: Option<Uuid>,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<SubscriptionRow>> {
    let mut q = subscriptions::table.filter(subscriptions::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(c) = customer_id {
        q = q.filter(subscriptions::customer_id.eq(c));
    }
    if let Some(after) = starting_after {
        q = q.filter(subscriptions::id.gt(after));
    }
    q.order(subscriptions::id.asc()).limit(limit).select(SubscriptionRow::as_select()).load(conn).await
}

pub async fn record_transition(
    conn: &mut AsyncPgConnection,
    subscription_id: Uuid,
    from: Option<SubscriptionStatus>,
    to: SubscriptionStatus,
    cause: &str,
    at: DateTime<Utc>,
    details: Option<serde_json::Value>,
) -> QueryResult<()> {
    diesel::insert_into(subscription_transitions::table)
        .values((
            subscription_transitions::subscription_id.eq(subscription_id),
            subscription_transitions::from_status.eq(from),
            subscription_transitions::to_status.eq(to),
            subscription_transitions::cause.eq(cause),
            subscription_transitions::at.eq(at),
            subscription_transitions::details.eq(details),
        ))
        .execute(conn)
        .await
        .map(|_| ())
}

pub async fn history(conn: &mut AsyncPgConnection, subscription_id: Uuid) -> QueryResult<Vec<TransitionRow>> {
    subscription_transitions::table
        .filter(subscription_transitions::subscription_id.eq(subscription_id))
        .order(subscription_transitions::id.asc())
        .select(TransitionRow::as_select())
        .load(conn)
        .await
}

/// A renewal recorded by the batch path: the next period of an active subscription.
pub struct Renewed {
    pub id: Uuid,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub paid_amount: Decimal,
    pub price_id: Option<Uuid>,
    pub next_charge_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
}

/// Moves subscriptions to their renewed periods and clears their renewal state
/// (one statement), recording each as a transition (one more).
pub async fn apply_renewals(
    conn: &mut AsyncPgConnection,
    at: DateTime<Utc>,
    rows: &[Renewed],
    payments: &[Uuid],
) -> QueryResult<()> {
    use diesel::sql_types::{Array, Nullable, Numeric, Timestamptz, Uuid as SqlUuid};
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let starts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.period_start).collect();
    let ends: Vec<DateTime<Utc>> = rows.iter().map(|r| r.period_end).collect();
    let paid: Vec<Decimal> = rows.iter().map(|r| r.paid_amount).collect();
    let prices: Vec<Option<Uuid>> = rows.iter().map(|r| r.price_id).collect();
    let charges: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.next_charge_at).collect();
    let dues: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.due_at).collect();
    diesel::sql_query(
        "UPDATE subscriptions s SET current_period_start = v.ps, current_period_end = v.pe, paid_amount = v.paid, \
             price_id = v.price, next_charge_at = v.charge, due_at = v.due, renewal_payment_id = NULL, \
             next_retry_at = NULL, dunning_ends_at = NULL, retries_stopped = false, grace_until = NULL, updated_at = now() \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::numeric[], $5::uuid[], $6::timestamptz[], $7::timestamptz[]) \
              AS v(id, ps, pe, paid, price, charge, due) \
         WHERE s.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Timestamptz>, _>(&starts)
    .bind::<Array<Timestamptz>, _>(&ends)
    .bind::<Array<Numeric>, _>(&paid)
    .bind::<Array<Nullable<SqlUuid>>, _>(&prices)
    .bind::<Array<Nullable<Timestamptz>>, _>(&charges)
    .bind::<Array<Nullable<Timestamptz>>, _>(&dues)
    .execute(conn)
    .await?;
    let transitions: Vec<_> = rows
        .iter()
        .zip(payments)
        .map(|(r, payment)| {
            (
                subscription_transitions::subscription_id.eq(r.id),
                subscription_transitions::from_status.eq(Some("active")),
                subscription_transitions::to_status.eq("active"),
                subscription_transitions::cause.eq("renewed"),
                subscription_transitions::at.eq(at),
                subscription_transitions::details.eq(Some(serde_json::json!({"payment_id": payment}))),
            )
        })
        .collect();
    for chunk in transitions.chunks(2000) {
        diesel::insert_into(subscription_transitions::table).values(chunk).execute(conn).await?;
    }
    Ok(())
}
