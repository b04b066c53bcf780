//! Whether any work is due: the test clock's `settled` check.

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, select, sql};
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{outbox_pending, payment_attempts, receipts, refunds};
use crate::domain::states::{AttemptChannel, ReceiptStatus, RefundStatus};

/// True when some work is due at or before `now`: a due subscription, an
/// unpublished outbox message, an unresolved token charge (widget and invoice
/// attempts wait for the customer, not for us), an overdue refund review not yet notified, a
/// refund in flight or a receipt waiting for registration. One statement, so the
/// checks see one snapshot (a charge recorded between separate checks could
/// otherwise hide both its in-flight state and the work it made due).
pub async fn busy(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> diesel::QueryResult<bool> {
    // The scheduler's list, where it agrees with the subscription (a row left by a
    // list that drifted is never claimed: db::subscriptions::claim_due).
    let due = sql::<Bool>(
        "EXISTS (SELECT 1 FROM due_subscriptions d JOIN subscriptions s ON s.id = d.subscription_id \
         AND s.due_at = d.due_at WHERE d.due_at <= ",
    )
    .bind::<Timestamptz, _>(now)
    .sql(")");
    let unpublished = outbox_pending::table.select(outbox_pending::seq);
    let charging = payment_attempts::table
        .filter(payment_attempts::status.eq_any(super::attempts::OPEN))
        .filter(payment_attempts::channel.ne_all([AttemptChannel::Widget, AttemptChannel::Invoice]));
    let overdue = refunds::table
        .filter(refunds::status.eq(RefundStatus::PendingReview))
        .filter(refunds::overdue_notified_at.is_null())
        .filter(refunds::review_due_at.le(now));
    let refunding = refunds::table.filter(refunds::status.eq_any([RefundStatus::Approved, RefundStatus::Processing]));
    let registering = receipts::table.filter(receipts::status.eq(ReceiptStatus::Pending));
    select(
        due.or(exists(unpublished))
            .or(exists(charging))
            .or(exists(overdue))
            .or(exists(refunding))
            .or(exists(registering)),
    )
    .get_result(conn)
    .await
}
