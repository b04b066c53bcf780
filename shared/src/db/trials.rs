//! Trials taken: a free plan or a plan's trial days, once per customer and plan.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::trials;
use crate::domain::ids::{CustomerId, SubscriptionId};

/// Whether the customer has had the plan's trial.
pub async fn used(conn: &mut AsyncPgConnection, customer_id: CustomerId, plan_id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        trials::table.filter(trials::customer_id.eq(customer_id)).filter(trials::plan_id.eq(plan_id)),
    ))
    .get_result(conn)
    .await
}

/// Records the customer's trial of the plan; false when it was taken before (the
/// unique key decides under concurrency).
pub async fn record(
    conn: &mut AsyncPgConnection,
    customer_id: CustomerId,
    plan_id: Uuid,
    subscription_id: SubscriptionId,
    at: DateTime<Utc>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(trials::table)
        .values((
            trials::customer_id.eq(customer_id),
            trials::plan_id.eq(plan_id),
            trials::subscription_id.eq(subscription_id),
            trials::started_at.eq(at),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}
