//! CloudPayments notifications: Check, Pay, Fail, Refund (and Recurrent, Cancel,
//! stored and acknowledged).
//!
//! Every signed notification is stored raw in `gateway_events` in the same
//! transaction as its effect, keyed by (tenant, provider, kind, transaction): a
//! provider retry of a Pay finds the key taken and changes nothing. A Pay for an
//! invoice that is already paid, under another transaction id, is a second capture
//! and is recorded as its own payment (`duplicate_of`), never as a second activation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use tracing::warn;
use uuid::Uuid;

use super::charges::{self, Card, Decline};
use super::tenants::Tenant;
use crate::db::payments::{self as payments_db, AttemptRow, PaymentRow};
use crate::db::schema::gateway_events;
use crate::db::subscriptions as subs_db;
use crate::domain::states::{AttemptChannel, PAYMENT_EXPIRED, PAYMENT_SUPERSEDED, PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::cloudpayments::wire::{
    CheckCode, Fields, NotificationAnswer, NotificationKind, PaymentNotification, WireError, dedup_key,
};

pub const PROVIDER: &str = "cloudpayments";

fn bad_notification(e: WireError) -> ServiceError {
    ServiceError::invalid("invalid_notification", e.to_string())
}

/// Stores the raw notification; false when the same one was stored before.
async fn store_raw(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    kind: NotificationKind,
    key: &str,
    content_type: Option<&str>,
    raw: &[u8],
    outcome: &str,
) -> ServiceResult<bool> {
    let inserted = diesel::insert_into(gateway_events::table)
        .values((
            gateway_events::id.eq(Uuid::now_v7()),
            gateway_events::tenant_id.eq(tenant.id),
            gateway_events::provider.eq(PROVIDER),
            gateway_events::kind.eq(kind.as_str()),
            gateway_events::transaction_id.eq(key),
            gateway_events::content_type.eq(content_type),
            gateway_events::raw_body.eq(raw),
            gateway_events::outcome.eq(outcome),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

async fn set_outcome(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    kind: NotificationKind,
    key: &str,
    outcome: &str,
) -> ServiceResult<()> {
    diesel::update(
        gateway_events::table
            .filter(gateway_events::tenant_id.eq(tenant.id))
            .filter(gateway_events::provider.eq(PROVIDER))
            .filter(gateway_events::kind.eq(kind.as_str()))
            .filter(gateway_events::transaction_id.eq(key)),
    )
    .set(gateway_events::outcome.eq(outcome))
    .execute(conn)
    .await?;
    Ok(())
}

/// Handles one verified notification; the caller has checked the signature and
/// runs this in one transaction.
pub async fn handle(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    kind: NotificationKind,
    content_type: Option<&str>,
    raw: &[u8],
) -> ServiceResult<NotificationAnswer> {
    let fields = Fields::parse(content_type, raw).map_err(bad_notification)?;
    let key = dedup_key(kind, &fields).ok_or_else(|| bad_notification(WireError::Missing("TransactionId")))?;
    if !store_raw(conn, tenant, kind, &key, content_type, raw, "received").await? && kind != NotificationKind::Check {
        // A provider retry of a notification already acted on.
        return Ok(NotificationAnswer { code: 0 });
    }
    let (answer, outcome) = match kind {
        NotificationKind::Check => {
            let n = PaymentNotification::from_fields(&fields).map_err(bad_notification)?;
            let code = check(conn, now, tenant, &n).await?;
            (code.into(), format!("check:{}", code as i32))
        }
        NotificationKind::Pay => {
            let n = PaymentNotification::from_fields(&fields).map_err(bad_notification)?;
            (NotificationAnswer { code: 0 }, pay(conn, now, tenant, &n).await?)
        }
        NotificationKind::Fail => {
            let n = PaymentNotification::from_fields(&fields).map_err(bad_notification)?;
            (NotificationAnswer { code: 0 }, fail(conn, now, tenant, &n).await?)
        }
        NotificationKind::Refund => {
            let n = PaymentNotification::from_fields(&fields).map_err(bad_notification)?;
            // `Data` echoes the JsonData of our refund call; a dashboard refund's is
            // the merchant's free text. Not naming our refund is not an error: the
            // refund is then matched by its transaction or amount.
            let ours = fields
                .get("Data")
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|d| d.get("refund_id").and_then(|v| v.as_str()).and_then(|v| Uuid::parse_str(v).ok()));
            (NotificationAnswer { code: 0 }, super::refund_execution::notified(conn, now, tenant, &n, ours).await?)
        }
        NotificationKind::Recurrent | NotificationKind::Cancel => {
            (NotificationAnswer { code: 0 }, "recorded".to_owned())
        }
    };
    set_outcome(conn, tenant, kind, &key, &outcome).await?;
    Ok(answer)
}

/// The attempt and its payment a notification's InvoiceId names. The payment row
/// is locked first and the attempt read after, so a concurrent report of the same
/// attempt (the token charge's own answer) is seen, not raced.
async fn find_invoice(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    n: &PaymentNotification,
) -> ServiceResult<Option<(AttemptRow, PaymentRow)>> {
    let Some(invoice) = n.invoice_id.as_deref() else {
        return Ok(None);
    };
    let Some(attempt) = payments_db::find_attempt_by_invoice(conn, tenant.id, invoice).await? else {
        return Ok(None);
    };
    let payment = payments_db::find_for_update(conn, attempt.payment_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("attempt {} without payment", attempt.id)))?;
    let attempt = payments_db::find_attempt_by_invoice(conn, tenant.id, invoice)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("attempt {} vanished", attempt.id)))?;
    Ok(Some((attempt, payment)))
}

fn amount_matches(n: &PaymentNotification, p: &PaymentRow) -> bool {
    n.amount == Some(p.amount) && n.currency.as_deref().is_none_or(|c| c == p.currency)
}

/// Check: may CloudPayments accept this payment?
async fn check(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &PaymentNotification,
) -> ServiceResult<CheckCode> {
    let Some((attempt, payment)) = find_invoice(conn, tenant, n).await? else {
        return Ok(CheckCode::WrongInvoice);
    };
    if n.account_id.as_deref() != Some(payment.customer_id.to_string().as_str()) {
        return Ok(CheckCode::WrongAccount);
    }
    if !amount_matches(n, &payment) {
        return Ok(CheckCode::WrongAmount);
    }
    if payment.expires_at.is_some_and(|e| e <= now) || payment.failure_reason.as_deref() == Some(PAYMENT_EXPIRED) {
        return Ok(CheckCode::Expired);
    }
    // A declined widget attempt may be retried with another card: `failed` by a
    // decline stays acceptable; superseded, expired or paid payments do not.
    let open = payment.status == PaymentStatus::Pending
        || (payment.status == PaymentStatus::Failed
            && !matches!(payment.failure_reason.as_deref(), Some(PAYMENT_SUPERSEDED | PAYMENT_EXPIRED)));
    if attempt.channel != AttemptChannel::Widget || !open {
        return Ok(CheckCode::NotAcceptable);
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
            return Ok(CheckCode::NotAcceptable);
        }
    }
    Ok(CheckCode::Ok)
}

/// Pay: the issuer authorised and the money is captured — for a widget payment, or
/// for one of our own token charges (matched to the attempt by InvoiceId).
async fn pay(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &PaymentNotification,
) -> ServiceResult<String> {
    let Some((mut attempt, mut payment)) = find_invoice(conn, tenant, n).await? else {
        warn!(tenant = %tenant.id, transaction = %n.transaction_id, invoice = ?n.invoice_id, "Pay for an unknown invoice");
        return Ok("unmatched_invoice".into());
    };
    if !amount_matches(n, &payment) {
        warn!(payment = %payment.id, amount = ?n.amount, "Pay amount differs from the payment");
        return Ok("amount_mismatch".into());
    }
    let card = Card {
        token: n.token.clone(),
        first_six: n.card_first_six.clone(),
        last_four: n.card_last_four.clone(),
        card_type: n.card_type.clone(),
        exp: n.card_exp_date.clone(),
    };
    Ok(charges::apply_capture(conn, now, tenant, &mut payment, &mut attempt, &n.transaction_id, &card)
        .await?
        .to_owned())
}

/// Fail: the issuer declined. A purchase stays pending (the widget lets the
/// customer try another card until the payment expires); a scheduled renewal
/// attempt drives dunning.
async fn fail(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    n: &PaymentNotification,
) -> ServiceResult<String> {
    let Some((mut attempt, mut payment)) = find_invoice(conn, tenant, n).await? else {
        warn!(tenant = %tenant.id, transaction = %n.transaction_id, "Fail for an unknown invoice");
        return Ok("unmatched_invoice".into());
    };
    let outcome = charges::apply_decline(
        conn,
        now,
        tenant,
        &mut payment,
        &mut attempt,
        Decline {
            transaction_id: Some(&n.transaction_id),
            code: n.reason_code.as_deref(),
            reason: n.reason.as_deref(),
        },
    )
    .await?;
    Ok(outcome.to_owned())
}
