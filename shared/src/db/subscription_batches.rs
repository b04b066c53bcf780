//! Subscriptions written set-based, many in one statement: the renewal wave's
//! start, and the paid transitions of a batch (its recorded renewals, or its
//! purchases' activations).

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel::sql_types::{Array, Bool, Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid};
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

/// Writes paid transitions — a batch's renewals (`renew`) and purchase
/// activations (`activate`) — in one statement: every field such a transition
/// changes (status, period, anchor, what was paid and at which price, the next
/// charge, the next due instant, the renewal and dunning fields), as the domain
/// left them in `paid`. The rows are locked by the caller. Pipelinable.
pub async fn apply_paid_periods(conn: &AsyncPgConnection, paid: &[Subscription]) -> QueryResult<()> {
    let ids: Vec<SubscriptionId> = paid.iter().map(|s| s.id).collect();
    let statuses: Vec<&str> = paid.iter().map(|s| s.status.as_str()).collect();
    let starts: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.current_period_start).collect();
    let ends: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.current_period_end).collect();
    let anchors: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.anchor_at).collect();
    let amounts: Vec<Option<Decimal>> = paid.iter().map(|s| s.paid_amount).collect();
    let prices: Vec<Option<Uuid>> = paid.iter().map(|s| s.price_id).collect();
    let charges: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.next_charge_at).collect();
    let dues: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.due_at).collect();
    let renewals: Vec<Option<PaymentId>> = paid.iter().map(|s| s.renewal_payment_id).collect();
    let retries: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.next_retry_at).collect();
    let dunning: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.dunning_ends_at).collect();
    let stopped: Vec<bool> = paid.iter().map(|s| s.retries_stopped).collect();
    let grace: Vec<Option<DateTime<Utc>>> = paid.iter().map(|s| s.grace_until).collect();
    Cached::new(
        diesel::sql_query(
            "UPDATE subscriptions s SET status = v.status, current_period_start = v.ps, current_period_end = v.pe, \
             anchor_at = v.anchor, paid_amount = v.paid, price_id = v.price, next_charge_at = v.charge, due_at = v.due, \
             renewal_payment_id = v.renewal, next_retry_at = v.retry, dunning_ends_at = v.dunning, \
             retries_stopped = v.stopped, grace_until = v.grace, updated_at = now() \
         FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::numeric[], \
                     $7::uuid[], $8::timestamptz[], $9::timestamptz[], $10::uuid[], $11::timestamptz[], \
                     $12::timestamptz[], $13::bool[], $14::timestamptz[]) \
              AS v(id, status, ps, pe, anchor, paid, price, charge, due, renewal, retry, dunning, stopped, grace) \
         WHERE s.id = v.id",
        )
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Text>, _>(&statuses)
        .bind::<Array<Nullable<Timestamptz>>, _>(&starts)
        .bind::<Array<Nullable<Timestamptz>>, _>(&ends)
        .bind::<Array<Nullable<Timestamptz>>, _>(&anchors)
        .bind::<Array<Nullable<Numeric>>, _>(&amounts)
        .bind::<Array<Nullable<SqlUuid>>, _>(&prices)
        .bind::<Array<Nullable<Timestamptz>>, _>(&charges)
        .bind::<Array<Nullable<Timestamptz>>, _>(&dues)
        .bind::<Array<Nullable<SqlUuid>>, _>(&renewals)
        .bind::<Array<Nullable<Timestamptz>>, _>(&retries)
        .bind::<Array<Nullable<Timestamptz>>, _>(&dunning)
        .bind::<Array<Bool>, _>(&stopped)
        .bind::<Array<Nullable<Timestamptz>>, _>(&grace),
    )
    .execute(&mut &*conn)
    .await
    .map(|_| ())
}
