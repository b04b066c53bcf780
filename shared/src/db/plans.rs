//! Plans and their price versions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::schema::{plan_prices, plans, price_notices};
use crate::domain::ids::{SubscriptionId, TenantId};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub code: String,
    pub name: String,
    pub period_unit: String,
    pub period_count: i32,
    pub auto_renew: bool,
    pub trial_days: Option<i32>,
    pub once_per_customer: bool,
    pub quotas: serde_json::Value,
    pub quota_reset: String,
    pub cashback_rate: Option<Decimal>,
    pub fiscal: Option<serde_json::Value>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = plan_prices, check_for_backend(diesel::pg::Pg))]
pub struct PriceRow {
    pub id: Uuid,
    pub plan_id: Uuid,
    pub amount: Decimal,
    pub currency: String,
    pub effective_from: Option<DateTime<Utc>>,
    pub announced_at: DateTime<Utc>,
    pub canceled_at: Option<DateTime<Utc>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, plan: &PlanRow) -> QueryResult<()> {
    diesel::insert_into(plans::table).values(plan).execute(conn).await.map(|_| ())
}

pub async fn insert_price(conn: &mut AsyncPgConnection, price: &PriceRow) -> QueryResult<()> {
    diesel::insert_into(plan_prices::table).values(price).execute(conn).await.map(|_| ())
}

pub async fn find_by_code(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    code: &str,
) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::tenant_id.eq(tenant_id))
        .filter(plans::code.eq(code))
        .select(PlanRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &AsyncPgConnection, id: Uuid) -> QueryResult<Option<PlanRow>> {
    plans::table.find(id).select(PlanRow::as_select()).first(&mut &*conn).await.optional()
}

/// Locks the plan row: price changes of one plan are serialised.
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    plans::table.find(id).select(plans::id).for_update().first::<Uuid>(conn).await.map(|_| ())
}

/// Holds a plan row `FOR KEY SHARE` until the transaction ends, for a sale: a
/// price announced or cancelled meanwhile ([`lock`], `FOR UPDATE`) waits for the
/// sale and then finds its subscriber, or the sale waits for it and reads its
/// prices after. (The foreign key from subscriptions did this until migration
/// 000021; an explicit hold is taken only where a plan is sold.)
pub async fn hold(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    plans::table.find(id).select(plans::id).for_key_share().first::<Uuid>(conn).await.map(|_| ())
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    starting_after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<PlanRow>> {
    let mut q = plans::table.filter(plans::tenant_id.eq(tenant_id)).into_boxed();
    if let Some(after) = starting_after {
        q = q.filter(plans::id.gt(after));
    }
    q.order(plans::id.asc()).limit(limit).select(PlanRow::as_select()).load(conn).await
}

pub async fn prices_of(conn: &AsyncPgConnection, plan_ids: &[Uuid]) -> QueryResult<Vec<PriceRow>> {
    plan_prices::table
        .filter(plan_prices::plan_id.eq_any(plan_ids))
        .order((plan_prices::effective_from.asc().nulls_first(), plan_prices::announced_at.asc()))
        .select(PriceRow::as_select())
        .load(&mut &*conn)
        .await
}

pub async fn cancel_price(conn: &mut AsyncPgConnection, price_id: Uuid, at: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(plan_prices::table.find(price_id).filter(plan_prices::canceled_at.is_null()))
        .set(plan_prices::canceled_at.eq(at))
        .execute(conn)
        .await
}

pub async fn archive(conn: &mut AsyncPgConnection, plan_id: Uuid, at: DateTime<Utc>) -> QueryResult<usize> {
    diesel::update(plans::table.find(plan_id).filter(plans::archived_at.is_null()))
        .set(plans::archived_at.eq(at))
        .execute(conn)
        .await
}

/// A plan's code.
pub async fn code_of(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<String> {
    plans::table.find(id).select(plans::code).first(conn).await
}

/// Records that a price version was announced to these subscriptions; returns
/// those it had not been announced to before (the others are no-ops).
pub async fn record_price_notices(
    conn: &mut AsyncPgConnection,
    price_id: Uuid,
    subscriptions: &[SubscriptionId],
    sent_at: DateTime<Utc>,
) -> QueryResult<Vec<SubscriptionId>> {
    let rows: Vec<_> = subscriptions
        .iter()
        .map(|sub| {
            (
                price_notices::price_id.eq(price_id),
                price_notices::subscription_id.eq(*sub),
                price_notices::sent_at.eq(sent_at),
            )
        })
        .collect();
    diesel::insert_into(price_notices::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(price_notices::subscription_id)
        .get_results(conn)
        .await
}
