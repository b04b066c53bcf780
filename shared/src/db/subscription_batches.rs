//! Subscriptions written set-based, many in one statement: the renewal wave's
//! start and its recorded captures, and a batch of paid purchases' activations.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::sql_types::{Array, Nullable, Numeric, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::cached::Cached;
use crate::domain::ids::{PaymentId, SubscriptionId};
use crate::domain::subscription::Subscription;

/// Links subscriptions to their renewal payments in flight (bulk renewal start).
pub async fn start_renewals(conn: &mut AsyncPgConnection, started: &[(SubscriptionId, PaymentId)]) -> QueryResult<()> {
    let (ids, payments): (Vec<SubscriptionId>, Vec<PaymentId>) = started.iter().copied().unzip();
    Cached::new(
        diesel::sql_query(
            "UPDATE subscriptions s SET renewal_payment_id = v.payment_id, due_at = NULL, updated_at = now() \
         FROM unnest($1::uuid[], $2::uuid[]) AS v(id, payment_id) WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<SqlUuid>, _>(&payments),
    )
    .execute(conn)
    .await
    .map(|_| ())
}

/// Moves renewed subscriptions to their new periods (one statement): the fields a
/// renewal changes, as the domain's `renew` left them.
pub async fn apply_renewals(conn: &mut AsyncPgConnection, renewed: &[Subscription]) -> QueryResult<()> {
    let ids: Vec<SubscriptionId> = renewed.iter().map(|s| s.id).collect();
    let starts: Vec<Option<DateTime<Utc>>> = renewed.iter().map(|s| s.current_period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = renewed.iter().map(|s| s.current_period_end).collect();
    let paid: Vec<Option<Decimal>> = renewed.iter().map(|s| s.paid_amount).collect();
    let prices: Vec<Option<Uuid>> = renewed.iter().map(|s| s.price_id).collect();
    let charges: Vec<Option<DateTime<Utc>>> = renewed.iter().map(|s| s.next_charge_at).collect();
    let dues: Vec<Option<DateTime<Utc>>> = renewed.iter().map(|s| s.due_at).collect();
    Cached::new(diesel::sql_query(
        "UPDATE subscriptions s SET current_period_start = v.ps, current_period_end = v.pe, paid_amount = v.paid, \
             price_id = v.price, next_charge_at = v.charge, due_at = v.due, renewal_payment_id = NULL, \
             next_retry_at = NULL, dunning_ends_at = NULL, retries_stopped = false, grace_until = NULL, updated_at = now() \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::numeric[], $5::uuid[], $6::timestamptz[], $7::timestamptz[]) \
              AS v(id, ps, pe, paid, price, charge, due) \
         WHERE s.id = v.id",
    )
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Nullable<Timestamptz>>, _>(&starts)
    .bind::<Array<Nullable<Timestamptz>>, _>(&ends)
    .bind::<Array<Nullable<Numeric>>, _>(&paid)
    .bind::<Array<Nullable<SqlUuid>>, _>(&prices)
    .bind::<Array<Nullable<Timestamptz>>, _>(&charges)
    .bind::<Array<Nullable<Timestamptz>>, _>(&dues))
    .execute(conn)
    .await
    .map(|_| ())
}

/// Activates paid purchases (one statement): the fields the domain's `activate`
/// sets and the next due instant, as they are in `activated`. Pipelinable.
pub async fn apply_activations(conn: &AsyncPgConnection, activated: &[Subscription]) -> QueryResult<()> {
    let ids: Vec<SubscriptionId> = activated.iter().map(|s| s.id).collect();
    let starts: Vec<Option<DateTime<Utc>>> = activated.iter().map(|s| s.current_period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = activated.iter().map(|s| s.current_period_end).collect();
    let anchors: Vec<Option<DateTime<Utc>>> = activated.iter().map(|s| s.anchor_at).collect();
    let paid: Vec<Option<Decimal>> = activated.iter().map(|s| s.paid_amount).collect();
    let prices: Vec<Option<Uuid>> = activated.iter().map(|s| s.price_id).collect();
    let charges: Vec<Option<DateTime<Utc>>> = activated.iter().map(|s| s.next_charge_at).collect();
    let dues: Vec<Option<DateTime<Utc>>> = activated.iter().map(|s| s.due_at).collect();
    Cached::new(
        diesel::sql_query(
            "UPDATE subscriptions s SET status = 'active', current_period_start = v.ps, current_period_end = v.pe, \
             anchor_at = v.anchor, paid_amount = v.paid, price_id = v.price, next_charge_at = v.charge, \
             grace_until = NULL, due_at = v.due, updated_at = now() \
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[], $5::numeric[], $6::uuid[], \
                     $7::timestamptz[], $8::timestamptz[]) AS v(id, ps, pe, anchor, paid, price, charge, due) \
         WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Nullable<Timestamptz>>, _>(&starts)
        .bind::<Array<Nullable<Timestamptz>>, _>(&ends)
        .bind::<Array<Nullable<Timestamptz>>, _>(&anchors)
        .bind::<Array<Nullable<Numeric>>, _>(&paid)
        .bind::<Array<Nullable<SqlUuid>>, _>(&prices)
        .bind::<Array<Nullable<Timestamptz>>, _>(&charges)
        .bind::<Array<Nullable<Timestamptz>>, _>(&dues),
    )
    .execute(&mut &*conn)
    .await
    .map(|_| ())
}
