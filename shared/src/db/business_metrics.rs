//! The business figures the worker exports as Prometheus gauges, read in one
//! statement (a full count by state of subscriptions, payments, refunds and
//! receipts: meant to be sampled every half minute or so, by one worker replica at
//! a time, not per request).

use chrono::{DateTime, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{Nullable, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use uuid::Uuid;

use diesel::QueryResult;

/// Key of the advisory lock held by the worker replica that samples ("billsamp").
const SAMPLER_LOCK_KEY: i64 = 0x6269_6c6c_7361_6d70;

/// Takes the business sampler's advisory lock for this session: true when this
/// connection now holds it, false when another session does. Session-level, so a
/// commit does not release it: it is held until the connection closes (the caller
/// keeps that connection out of any pool) — which needs PostgreSQL sessions, not a
/// transaction-mode pooler, like the migration lock (`deploy/k8s/README.md`).
///
/// The session that leads then runs its reads without JIT compilation and without
/// parallel workers: a sample is a background read, and on a busy 2-core host the
/// two cost more CPU than they save wall time (780 against 912 ms of CPU per
/// sample at 1 100 000 subscriptions; bench/README, "The business sampler's one
/// pass").
pub async fn try_lead(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    use diesel_async::SimpleAsyncConnection;
    let led = super::try_session_lock(conn, SAMPLER_LOCK_KEY).await?;
    if led {
        conn.batch_execute("SET jit = off; SET max_parallel_workers_per_gather = 0").await?;
    }
    Ok(led)
}

/// One sample: gauge `metric` for `tenant`, with its second label's value
/// (`status` or `currency`; empty for `renewals_due` and `receipts_oldest_pending`).
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Sample {
    #[diesel(sql_type = Text)]
    pub metric: String,
    #[diesel(sql_type = SqlUuid)]
    pub tenant: Uuid,
    #[diesel(sql_type = Text)]
    pub label: String,
    /// Exact: counts, MRR in major units rounded to kopecks, seconds.
    #[diesel(sql_type = Numeric)]
    pub value: Decimal,
}

/// Every sample, by metric:
/// * `subscriptions` — subscriptions per tenant and status;
/// * `mrr` — monthly recurring revenue per tenant and currency, in major units:
///   the current price of each `active` or `past_due` subscription (Stripe's MRR
///   counts past-due ones until they end), normalised to a month (a year is 12,
///   a day 365/12 of it);
/// * `renewals_due` — subscriptions whose scheduled action (renewal, retry,
///   expiry) is due at `now` and not yet taken: the scheduler's backlog (its list's
///   rows that agree with the subscription's `due_at`, as the claim takes them);
/// * `payments`, `refunds`, `receipts` — rows per tenant and status;
/// * `receipts_oldest_pending` — seconds from the creation of the tenant's oldest
///   `pending` receipt to `now` (tenants with pending receipts only): registration
///   takes seconds, so a large value is a receipt stuck, typically dead-lettered
///   on `billing.receipts` for replay.
///
/// Of every tenant, or of `tenant` only (the console's tenant page). The
/// subscriptions are read once for their counts and the MRR (it scanned the
/// 432 MB table of 1 100 000 subscriptions twice; bench/README, "The business
/// sampler's one pass"). A subscription without a price, or naming a plan that
/// does not exist (the audit's `references_exist`), adds to the counts, not to the
/// MRR: a group left with no amount gives no MRR row (the value is never null).
pub async fn sample(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: Option<crate::domain::ids::TenantId>,
) -> QueryResult<Vec<Sample>> {
    diesel::sql_query(
        "WITH r AS (SELECT tenant_id, status, count(*) AS n, min(created_at) AS oldest \
                      FROM receipts WHERE $2::uuid IS NULL OR tenant_id = $2 GROUP BY tenant_id, status), \
              subs AS (SELECT s.tenant_id, s.status, pp.currency, count(*) AS n, \
                           sum(pp.amount * CASE p.period_unit WHEN 'month' THEN 1.0 WHEN 'year' THEN 1.0 / 12 \
                               ELSE 365.0 / 12 END / p.period_count) AS monthly \
                      FROM subscriptions s LEFT JOIN plan_prices pp ON pp.id = s.price_id \
                      LEFT JOIN plans p ON p.id = s.plan_id \
                     WHERE $2::uuid IS NULL OR s.tenant_id = $2 GROUP BY s.tenant_id, s.status, pp.currency) \
         SELECT 'subscriptions' AS metric, tenant_id AS tenant, status AS label, sum(n)::numeric AS value \
           FROM subs GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'mrr', tenant_id, currency, round(sum(monthly), 2) \
           FROM subs WHERE status IN ('active', 'past_due') AND monthly IS NOT NULL GROUP BY tenant_id, currency \
         UNION ALL \
         SELECT 'renewals_due', s.tenant_id, '', count(*)::numeric \
           FROM due_subscriptions d JOIN subscriptions s ON s.id = d.subscription_id AND s.due_at = d.due_at \
          WHERE d.due_at <= $1 AND ($2::uuid IS NULL OR s.tenant_id = $2) GROUP BY s.tenant_id \
         UNION ALL \
         SELECT 'payments', tenant_id, status, count(*)::numeric FROM payments \
          WHERE $2::uuid IS NULL OR tenant_id = $2 GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'refunds', tenant_id, status, count(*)::numeric FROM refunds \
          WHERE $2::uuid IS NULL OR tenant_id = $2 GROUP BY tenant_id, status \
         UNION ALL \
         SELECT 'receipts', tenant_id, status, n::numeric FROM r \
         UNION ALL \
         SELECT 'receipts_oldest_pending', tenant_id, '', greatest(extract(epoch FROM $1 - oldest), 0)::numeric \
           FROM r \
          WHERE status = 'pending'",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Nullable<SqlUuid>, _>(tenant)
    .load(conn)
    .await
}
