//! Subscriptions and their transition history.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{subscription_transitions, subscriptions};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = subscriptions, check_for_backend(diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct SubscriptionRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub customer_id: Uuid,
    pub plan_id: Uuid,
    pub status: String,
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

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = subscription_transitions, check_for_backend(diesel::pg::Pg))]
pub struct TransitionRow {
    pub from_status: Option<String>,
    pub to_status: String,
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

/// The customer's live subscription (at most one exists, by a unique index).
pub async fn find_live(conn: &mut AsyncPgConnection, customer_id: Uuid) -> QueryResult<Option<SubscriptionRow>> {
    subscriptions::table
        .filter(subscriptions::customer_id.eq(customer_id))
        .filter(subscriptions::status.ne_all(["expired", "terminated"]))
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
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
    from: Option<&str>,
    to: &str,
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
