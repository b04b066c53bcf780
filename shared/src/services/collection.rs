//! Collecting a payment: its attempts. A card payment opens a widget attempt (the
//! customer pays through the gateway's checkout); a charge of the saved card is
//! an attempt queued for the worker (`Job::ChargeAttempt`), whose outcome comes
//! back through `payment_outcomes`. Each attempt's id is the gateway's invoice id
//! and idempotency key. Choosing how a payment is collected (`pay_with`) is
//! `payment_sources`.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::tenants::Tenant;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::domain::ids::SubscriptionId;
use crate::domain::states::{AttemptChannel, AttemptStatus, PAYMENT_SUPERSEDED, PaymentKind, PaymentStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::queue::jobs::Job;

/// The work message that charges an attempt (ordered with the subscription's
/// messages, else the customer's).
pub fn charge_job(payment: &PaymentRow, attempt_id: Uuid) -> NewEvent {
    let ordering = payment.ordering_key();
    NewEvent::job(payment.tenant_id, ordering, Job::ChargeAttempt { attempt_id })
}

/// Creates the next attempt of `payment` on the customer's saved card (a
/// scheduled renewal attempt or one the customer asked for) and queues its
/// charge. Without a usable saved card the worker declines it (hard).
pub async fn start_attempt(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    channel: AttemptChannel,
) -> ServiceResult<AttemptRow> {
    let attempt_no = attempts_db::next_attempt_no(conn, payment.id).await?;
    let method = attempts_db::default_payment_method(conn, payment.customer_id).await?;
    let attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, channel, method.map(|m| m.id), now);
    attempts_db::insert_attempt(conn, &attempt).await?;
    outbox::emit(conn, now, charge_job(payment, attempt.id)).await?;
    Ok(attempt)
}

/// Opens a widget attempt of `payment`: the customer pays it through the checkout.
pub async fn open_widget_attempt(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
) -> ServiceResult<AttemptRow> {
    let attempt_no = attempts_db::next_attempt_no(conn, payment.id).await?;
    let attempt = AttemptRow::new(tenant.id, payment.id, attempt_no, AttemptChannel::Widget, None, now);
    attempts_db::insert_attempt(conn, &attempt).await?;
    Ok(attempt)
}

/// A newer request replaces the subscription's unpaid payments of `kinds`: each
/// fails as `superseded`, with its attempts not yet sent, so none of them can be
/// charged any more. A charge already sent cannot be taken back: 409
/// `payment_in_progress` until its outcome is known.
pub async fn supersede_pending(
    conn: &mut AsyncPgConnection,
    subscription_id: SubscriptionId,
    kinds: &[PaymentKind],
) -> ServiceResult<()> {
    let pending = payments_db::pending_of_subscription(conn, subscription_id).await?;
    for mut p in pending.into_iter().filter(|p| kinds.contains(&p.kind)) {
        let attempts = attempts_db::attempts_of(conn, p.id).await?;
        if attempts.iter().any(|a| a.status.may_have_reached_provider()) {
            return Err(ServiceError::conflict(
                "payment_in_progress",
                format!("a charge of the earlier {} payment is in progress; wait for its outcome", p.kind),
            ));
        }
        // Pending and refused attempts were never charged: they can be called off.
        for mut a in attempts.into_iter().filter(|a| a.status.never_charged()) {
            a.status = AttemptStatus::Failed;
            a.failure_reason = Some(PAYMENT_SUPERSEDED.into());
            attempts_db::save_attempt(conn, &a).await?;
        }
        p.status = PaymentStatus::Failed;
        p.failure_reason = Some(PAYMENT_SUPERSEDED.into());
        payments_db::save(conn, &p).await?;
    }
    Ok(())
}
