//! The operator's view of the shared test clock: `settled` tells a test that no
//! work is due at or before the clock's instant, so it can assert instead of sleep.

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, select};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::db::schema::{outbox_events, payment_attempts, receipts, refunds, subscriptions};
use crate::domain::states::{AttemptStatus, ReceiptStatus, RefundStatus};
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
pub struct SetClock {
    pub now: DateTime<Utc>,
}

/// True when no work is due at or before `now`. One statement, so the three
/// checks see one snapshot (a charge recorded between separate checks could
/// otherwise hide both its in-flight state and the work it made due).
pub async fn settled(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> ServiceResult<bool> {
    let due = subscriptions::table.filter(subscriptions::due_at.le(now));
    let unpublished = outbox_events::table.filter(outbox_events::published_at.is_null());
    // Token charges not yet resolved (widget attempts wait for the customer).
    let charging = payment_attempts::table
        .filter(payment_attempts::status.eq_any([
            AttemptStatus::Pending,
            AttemptStatus::Sent,
            AttemptStatus::Unknown,
            AttemptStatus::Refused,
        ]))
        .filter(payment_attempts::channel.ne("widget"));
    let overdue = refunds::table
        .filter(refunds::status.eq(RefundStatus::PendingReview))
        .filter(refunds::overdue_notified_at.is_null())
        .filter(refunds::review_due_at.le(now));
    let refunding = refunds::table.filter(refunds::status.eq_any([RefundStatus::Approved, RefundStatus::Processing]));
    let registering = receipts::table.filter(receipts::status.eq(ReceiptStatus::Pending));
    let busy: bool = select(
        exists(due)
            .or(exists(unpublished))
            .or(exists(charging))
            .or(exists(overdue))
            .or(exists(refunding))
            .or(exists(registering)),
    )
    .get_result(conn)
    .await?;
    Ok(!busy)
}
