//! A tenant's payments per day: what was captured and how many failed, for the
//! operator console's chart.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Numeric, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::domain::ids::TenantId;
use diesel::QueryResult;

/// One day (in the tenant's time zone) and currency.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct Day {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Sum of the amounts of payments captured that day (gross: refunds made
    /// later are not taken off), in major units.
    #[diesel(sql_type = Numeric)]
    pub captured: Decimal,
    /// Payments captured that day.
    #[diesel(sql_type = BigInt)]
    pub captured_count: i64,
    /// Payments created that day that ended `failed` (a declined renewal, an
    /// abandoned checkout).
    #[diesel(sql_type = BigInt)]
    pub failed_count: i64,
}

/// The tenant's days since `since` that have a captured or failed payment, oldest
/// first; days are cut at midnight in `time_zone` (an IANA name).
pub async fn daily(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    time_zone: &str,
    since: DateTime<Utc>,
) -> QueryResult<Vec<Day>> {
    diesel::sql_query(
        "SELECT (coalesce(captured_at, created_at) AT TIME ZONE $2)::date AS day, currency, \
                coalesce(sum(amount) FILTER (WHERE captured_at IS NOT NULL), 0) AS captured, \
                count(*) FILTER (WHERE captured_at IS NOT NULL) AS captured_count, \
                count(*) FILTER (WHERE status = 'failed') AS failed_count \
           FROM payments \
          WHERE tenant_id = $1 AND (captured_at >= $3 OR (status = 'failed' AND created_at >= $3)) \
          GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Text, _>(time_zone)
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await
}
