//! The operator's view of the shared test clock: `settled` tells a test that no
//! work is due at or before the clock's instant, so it can assert instead of sleep.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::work;
use crate::error::ServiceResult;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClockView {
    pub now: DateTime<Utc>,
    /// True when nothing is due at or before `now`: no due renewals, retries,
    /// notices or period ends, no charge or refund in flight, no receipt waiting
    /// for registration, every event published.
    pub settled: bool,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"now": "2026-03-05T09:00:00Z"})))]
pub struct SetClock {
    pub now: DateTime<Utc>,
}

/// True when no work is due at or before `now` (see `db::work::busy`).
pub async fn settled(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> ServiceResult<bool> {
    Ok(!work::busy(conn, now).await?)
}
