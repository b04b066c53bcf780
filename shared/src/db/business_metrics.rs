//! The business figures the worker exports as Prometheus gauges, read in one
//! statement (a full count by state of subscriptions, payments, refunds and
//! receipts: meant to be sampled every half minute or so, not per request).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Double, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use diesel::QueryResult;

/// One sample: gauge `metric` for `tenant`, with its second label's value
/// (`status` or `currency`; empty for `renewals_due`).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Sample {
    #[diesel(sql_type = Text)]
    pub metric: String,
    #[diesel(sql_type = SqlUuid)]
    pub tenant: Uuid,
    #[diesel(sql_type = Text)]
    pub label: String,
    #[diesel(sql_type = Double)]
    pub value: f64,
}

/// Every sample, by metric:
/// * `subscriptions` — subscriptions per tenant and status;
/// * `mrr` — monthly recurring revenue per tenant and currency, in major units:
///   the current price of each `active` or `past_due` subscription (Stripe's MRR
///   counts past-due ones until they end), normalised to a month (a year is 12,
///   a day 365/12 of it);
/// * `renewals_due` — subscriptions whose scheduled action (renewal, retry,
///   expiry) is due at `now` and not yet taken: the scheduler's backlog;
/// * `payments`, `refunds`, `receipts` — rows per tenant and status.
pub async fn sample(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> QueryResult<Vec<Sample>> {
    diesel::sql_query(
        "SELECT 'subscriptions' AS metric, tenant_id AS tenant, status AS label, count(*)::float8 AS value \
           FROM subscriptions GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'mrr', s.tenant_id, pp.currency, sum(pp.amount * CASE p.period_unit \
                    WHEN 'month' THEN 1.0 WHEN 'year' THEN 1.0 / 12 ELSE 365.0 / 12 END / p.period_count)::float8 \
           FROM subscriptions s JOIN plan_prices pp ON pp.id = s.price_id JOIN plans p ON p.id = s.plan_id \
          WHERE s.status IN ('active', 'past_due') GROUP BY s.tenant_id, pp.currency \
         UNION ALL \
         SELECT 'renewals_due', tenant_id, '', count(*)::float8 FROM subscriptions \
          WHERE due_at <= $1 GROUP BY tenant_id \
         UNION ALL \
         SELECT 'payments', tenant_id, status, count(*)::float8 FROM payments GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'refunds', tenant_id, status, count(*)::float8 FROM refunds GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'receipts', tenant_id, status, count(*)::float8 FROM receipts GROUP BY tenant_id, status",
    )
    .bind::<Timestamptz, _>(now)
    .load(conn)
    .await
}
