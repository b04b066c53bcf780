//! Provider notifications, whatever the gateway: the adapter verifies and reads
//! them (`gateways::PaymentGateway::notification`), this module applies what
//! they say — a Check verdict, a capture, a decline, a refund — and stores them.
//!
//! Every verified notification is stored raw in `gateway_events` in the same
//! transaction as its effect (with the effect's last writes, and its outcome),
//! keyed by (tenant, provider, kind, dedup key): a provider retry finds the key
//! taken and its transaction is rolled back, so it changes nothing. A capture of an
//! invoice that is already paid, under another transaction id, is a second
//! capture and is recorded as its own payment (`duplicate_of`), never as a second
//! activation.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use tracing::warn;

use super::payment_outcomes::{self, apply_decline};
use super::tenants::Tenant;
use crate::clock::Clock;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::gateway_events::{self as events_db, Received};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::subscriptions as subs_db;
use crate::db::{PgPool, in_transaction};
use crate::domain::states::{AttemptChannel, PAYMENT_EXPIRED, PAYMENT_SUPERSEDED, PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
pub use crate::gateways::RawNotification;
use crate::gateways::registry::Gateways;
use crate::gateways::{
    CheckVerdict, Notification, NotificationError, NotificationEvent, NotificationReply, PaymentGateway, PaymentReport,
};

/// The adapter for `tenant`'s gateway, if it is `provider`'s (a callback for
/// another provider's path is 404).
pub fn gateway_for(gateways: &Gateways, tenant: &Tenant, provider: &str) -> ServiceResult<Box<dyn PaymentGateway>> {
    if tenant.gateway.kind() != provider {
        return Err(ServiceError::not_found("not_found", format!("this tenant does not use {provider}")));
    }
    Ok(gateways.for_config(&tenant.gateway)?)
}

/// Verifies and reads a callback (outside any transaction: an adapter may ask
/// the provider). A refusal is logged with the tenant; a notification naming an
/// object the provider does not know is also stored raw (kind `unverified`, its
/// own statement on `pool`) for the operator before it is refused.
pub async fn verify(
    pool: &PgPool,
    gateway: &dyn PaymentGateway,
    tenant: &Tenant,
    raw: &RawNotification<'_>,
) -> ServiceResult<Notification> {
    let refused = match gateway.notification(raw).await {
        Ok(n) => return Ok(n),
        Err(e) => e,
    };
    Err(match refused {
        NotificationError::Unauthenticated(detail) => {
            warn!(tenant = %tenant.id, provider = gateway.provider(), path = raw.path, %detail, "refused an unauthenticated notification");
            ServiceError::unauthenticated("invalid_signature", detail)
        }
        NotificationError::UnknownKind(detail) => ServiceError::not_found("not_found", detail),
        NotificationError::Malformed(detail) => ServiceError::invalid("invalid_notification", detail),
        NotificationError::UnknownObject { key, detail } => {
            warn!(tenant = %tenant.id, provider = gateway.provider(), %detail, "refused a notification of an unknown object");
            let received = Received {
                tenant_id: tenant.id,
                provider: gateway.provider(),
                kind: UNVERIFIED,
                key: &key,
                content_type: raw.content_type(),
                raw_body: raw.body,
            };
            let conn = pool.get().await?;
            events_db::store(&conn, &received, "refused: the provider does not know this object").await?;
            ServiceError::invalid("unknown_object", detail)
        }
        NotificationError::Unavailable(detail) => {
            warn!(tenant = %tenant.id, provider = gateway.provider(), %detail, "could not verify a notification now");
            ServiceError::Unavailable(detail)
        }
    })
}

/// The kind under which refused notifications of unknown objects are stored.
pub const UNVERIFIED: &str = "unverified";

/// The payment a Check asks about, kept to carry out the verdict after the commit
/// ([`settle`]); `None` for every other notification.
pub fn check_of(n: &Notification) -> Option<PaymentReport> {
    match &n.event {
        NotificationEvent::Check(report) => Some(report.clone()),
        _ => None,
    }
}

/// Carries out a committed Check verdict where the provider takes it as a call
/// (YooKassa's capture or cancel of a `waiting_for_capture` payment). A failed
/// call is 503: the provider delivers the notification again and the Check is
/// decided again (Checks are never de-duplicated).
pub async fn settle(
    gateway: &dyn PaymentGateway,
    check: Option<&PaymentReport>,
    reply: NotificationReply,
) -> ServiceResult<()> {
    let (Some(report), NotificationReply::Check(verdict)) = (check, reply) else {
        return Ok(());
    };
    gateway.settle_check(report, verdict).await.map_err(|e| {
        warn!(provider = gateway.provider(), transaction = %report.transaction_id, error = %e, "carrying out a Check verdict failed");
        ServiceError::Unavailable(format!("the provider did not take our verdict yet: {e}"))
    })
}

/// Applies a verified notification in one transaction on `conn` (the clock read
/// inside it) and returns the reply to give (encoded by
/// [`PaymentGateway::reply`] once [`settle`] is done).
///
/// The effect comes first and the raw notification is stored with its last writes
/// (a capture's: with the payment and its events), with its outcome, in one
/// statement: when the store finds the same notification stored
/// (a provider retry, or the same one applied concurrently and committed first)
/// the whole transaction is rolled back and the retry is answered as accepted. A
/// retry whose effect fails (the state moved on since) is answered the same once
/// the notification is found stored. A transaction rolled back by a deadlock or a
/// serialization failure is run again (up to [`TRIES`] times) before the provider
/// is answered with an error. Checks are never de-duplicated: each is
/// decided again and its latest outcome kept, and a Check that fails is an error
/// (the provider asks again), never an acceptance.
pub async fn apply(
    conn: &mut AsyncPgConnection,
    clock: Clock,
    tenant: &Tenant,
    gateway: &dyn PaymentGateway,
    raw: &RawNotification<'_>,
    n: Notification,
) -> ServiceResult<NotificationReply> {
    let received = Received {
        tenant_id: tenant.id,
        provider: gateway.provider(),
        kind: &n.kind,
        key: &n.dedup_key,
        content_type: raw.content_type(),
        raw_body: raw.body,
    };
    let check = matches!(n.event, NotificationEvent::Check(_));
    let mut tries = 1;
    let applied = loop {
        let applied = in_transaction(conn, async |conn| {
            let now = clock.now(conn).await?;
            let (reply, stored) = effect(conn, now, tenant, n.event.clone(), &received).await?;
            if !stored {
                return Err(Abort::Retry);
            }
            Ok(reply)
        })
        .await;
        match applied {
            // A deadlock or serialization failure with a concurrent writer (the
            // charge's own answer, the scheduler) rolled everything back: the same
            // notification is applied again on a fresh transaction.
            Err(Abort::Failed(e)) if e.is_retryable() && tries < TRIES => {
                warn!(tenant = %tenant.id, error = %e, tries, "applying a notification conflicted; applying it again");
                tries += 1;
            }
            other => break other,
        }
    };
    match applied {
        Ok(reply) => Ok(reply),
        Err(Abort::Retry) => Ok(NotificationReply::Accepted),
        // A failed Check is never answered as accepted: that would approve it.
        Err(Abort::Failed(e)) if check => Err(e),
        Err(Abort::Failed(e)) => {
            warn!(tenant = %tenant.id, error = %e, "applying a notification failed");
            if events_db::exists(conn, &received).await? {
                warn!(tenant = %tenant.id, "it is a retry of an applied notification: acknowledged");
                return Ok(NotificationReply::Accepted);
            }
            Err(e)
        }
    }
}

/// How many times [`apply`] runs a notification's transaction that a deadlock or a
/// serialization failure rolled back.
const TRIES: u32 = 3;

/// Why [`apply`]'s transaction was rolled back.
enum Abort {
    /// The notification was stored before: a provider retry.
    Retry,
    Failed(ServiceError),
}

impl From<ServiceError> for Abort {
    fn from(e: ServiceError) -> Self {
        Abort::Failed(e)
    }
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Failed(e.into())
    }
}

/// What a notification does, and whether it is new: it is stored with its outcome
/// (by the capture, with its last writes); false when the same one was
/// stored before. A Check is stored or its stored outcome replaced: always new.
async fn effect(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    event: NotificationEvent,
    received: &Received<'_>,
) -> ServiceResult<(NotificationReply, bool)> {
    let outcome = match event {
        NotificationEvent::Check(report) => {
            let verdict = check_payment(conn, now, tenant, &report).await?;
            events_db::store_check(conn, received, &format!("check:{}", verdict.as_str())).await?;
            return Ok((NotificationReply::Check(verdict), true));
        }
        NotificationEvent::Captured(report) => {
            return Ok((NotificationReply::Accepted, captured(conn, now, tenant, &report, received).await?));
        }
        NotificationEvent::Declined(report, decline) => match find_invoice(conn, tenant, &report).await? {
            Some((mut attempt, mut payment)) => {
                apply_decline(conn, now, tenant, &mut payment, &mut attempt, &decline).await?.to_owned()
            }
            None => {
                warn!(tenant = %tenant.id, transaction = %report.transaction_id, "decline for an unknown invoice");
                "unmatched_invoice".to_owned()
            }
        },
        NotificationEvent::Refunded(report) => super::refund_outcomes::notified(conn, now, tenant, &report).await?,
        NotificationEvent::Recorded => "recorded".to_owned(),
    };
    Ok((NotificationReply::Accepted, events_db::store(conn, received, &outcome).await?))
}

/// The attempt and its payment a notification's invoice id names. The payment row
/// is locked first (found through its attempt, in the same statement) and the
/// attempt read after, so a concurrent report of the same attempt (the charge's own
/// answer) is seen, not raced: both go out in one round trip, and PostgreSQL runs
/// the read once the lock is held ([`crate::db::pipeline`] keeps their order).
async fn find_invoice(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    n: &PaymentReport,
) -> ServiceResult<Option<(AttemptRow, PaymentRow)>> {
    let Some(invoice) = n.invoice_id.as_deref() else {
        return Ok(None);
    };
    let (payment, attempt) = futures_util::future::join(
        payments_db::lock_by_invoice(conn, tenant.id, invoice),
        attempts_db::find_attempt_by_invoice(conn, tenant.id, invoice),
    )
    .await;
    // In the order they ran: the lock's error is the cause, the read's its echo.
    let (payment, attempt) = (payment?, attempt?);
    let Some(payment) = payment else {
        return Ok(None);
    };
    let attempt =
        attempt.ok_or_else(|| ServiceError::Internal(format!("payment {} lost its attempt {invoice}", payment.id)))?;
    Ok(Some((attempt, payment)))
}

fn amount_matches(n: &PaymentReport, p: &PaymentRow) -> bool {
    n.amount == Some(p.amount) && n.currency.as_deref().is_none_or(|c| c == p.currency)
}

/// Check: may the provider accept this payment?
async fn check_payment(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &PaymentReport,
) -> ServiceResult<CheckVerdict> {
    let Some((attempt, payment)) = find_invoice(conn, tenant, n).await? else {
        return Ok(CheckVerdict::WrongInvoice);
    };
    if n.account_id.as_deref() != Some(payment.customer_id.to_string().as_str()) {
        return Ok(CheckVerdict::WrongAccount);
    }
    if !amount_matches(n, &payment) {
        return Ok(CheckVerdict::WrongAmount);
    }
    if payment.expires_at.is_some_and(|e| e <= now) || payment.failure_reason.as_deref() == Some(PAYMENT_EXPIRED) {
        return Ok(CheckVerdict::Expired);
    }
    // A declined widget attempt may be retried with another card: `failed` by a
    // decline stays acceptable; superseded, expired or paid payments do not.
    let open = payment.status == PaymentStatus::Pending
        || (payment.status == PaymentStatus::Failed
            && !matches!(payment.failure_reason.as_deref(), Some(PAYMENT_SUPERSEDED | PAYMENT_EXPIRED)));
    // A saved-card charge reaches a Check only at providers that hold two-stage
    // payments for the merchant (YooKassa `waiting_for_capture`): it is ours.
    if !matches!(attempt.channel, AttemptChannel::Widget | AttemptChannel::Scheduled | AttemptChannel::Manual) || !open
    {
        return Ok(CheckVerdict::NotAcceptable);
    }
    if let Some(sub_id) = payment.subscription_id {
        let sub = subs_db::find(conn, tenant.id, sub_id).await?;
        let still_wanted = match sub {
            None => false,
            Some(s) => match payment.kind {
                PaymentKind::Purchase => s.status == SubscriptionStatus::PendingPayment,
                PaymentKind::Renewal => s.renewal_payment_id == Some(payment.id),
                // Usage already consumed is owed whatever became of the subscription.
                PaymentKind::Overage => true,
                _ => s.status.is_live(),
            },
        };
        if !still_wanted {
            return Ok(CheckVerdict::NotAcceptable);
        }
    }
    Ok(CheckVerdict::Accept)
}

/// The issuer authorised and the money is captured — for a widget payment, or for
/// one of our own charges of a saved card (matched to the attempt by invoice id).
/// Whether the notification is new, as [`effect`].
async fn captured(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &PaymentReport,
    received: &Received<'_>,
) -> ServiceResult<bool> {
    let Some((mut attempt, mut payment)) = find_invoice(conn, tenant, n).await? else {
        warn!(tenant = %tenant.id, transaction = %n.transaction_id, invoice = ?n.invoice_id, "capture for an unknown invoice");
        return Ok(events_db::store(conn, received, "unmatched_invoice").await?);
    };
    if !amount_matches(n, &payment) {
        warn!(payment = %payment.id, amount = ?n.amount, "captured amount differs from the payment");
        return Ok(events_db::store(conn, received, "amount_mismatch").await?);
    }
    let (tx, card) = (&n.transaction_id, &n.card);
    let captured =
        payment_outcomes::apply_capture(conn, now, tenant, &mut payment, &mut attempt, tx, card, Some(received))
            .await?;
    Ok(captured.stored)
}
