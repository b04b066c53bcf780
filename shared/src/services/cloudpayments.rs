//! CloudPayments notifications: Check, Pay, Fail (and Refund, Recurrent, Cancel,
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

use super::payments::{self, money_of};
use super::plans::{self, Plan};
use super::subscriptions::{self, status_of};
use super::tenants::Tenant;
use crate::db::ledger;
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, AttemptRow, PaymentMethodRow, PaymentRow};
use crate::db::schema::gateway_events;
use crate::db::subscriptions::{self as subs_db, SubscriptionRow};
use crate::domain::ledger::Posting;
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
        NotificationKind::Refund | NotificationKind::Recurrent | NotificationKind::Cancel => {
            (NotificationAnswer { code: 0 }, "recorded".to_owned())
        }
    };
    set_outcome(conn, tenant, kind, &key, &outcome).await?;
    Ok(answer)
}

/// The attempt and its payment (locked) a notification's InvoiceId names.
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
    if payment.expires_at.is_some_and(|e| e <= now) || payment.failure_reason.as_deref() == Some("expired") {
        return Ok(CheckCode::Expired);
    }
    // A declined widget attempt may be retried with another card: `failed` by a
    // decline stays acceptable; superseded or paid invoices do not.
    let acceptable = attempt.channel == "widget"
        && (payment.status == "pending"
            || (payment.status == "failed" && payment.failure_reason.as_deref() != Some("superseded")));
    if !acceptable {
        return Ok(CheckCode::NotAcceptable);
    }
    if let Some(sub_id) = payment.subscription_id {
        let sub = subs_db::find(conn, tenant.id, sub_id).await?;
        if sub.is_none_or(|s| s.status != SubscriptionStatus::PendingPayment.as_str()) {
            return Ok(CheckCode::NotAcceptable);
        }
    }
    Ok(CheckCode::Ok)
}

async fn save_card(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: Uuid,
    n: &PaymentNotification,
) -> ServiceResult<()> {
    if let Some(token) = &n.token {
        payments_db::save_payment_method(
            conn,
            &PaymentMethodRow {
                id: Uuid::now_v7(),
                tenant_id: tenant.id,
                customer_id,
                gateway: PROVIDER.into(),
                token: token.clone(),
                card_first_six: n.card_first_six.clone(),
                card_last_four: n.card_last_four.clone(),
                card_type: n.card_type.clone(),
                card_exp: n.card_exp_date.clone(),
                created_at: now,
                revoked_at: None,
                revoked_reason: None,
            },
        )
        .await?;
    }
    Ok(())
}

async fn emit_payment(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    p: &PaymentRow,
    event_type: &'static str,
) -> ServiceResult<()> {
    let data = payments::event_data(p)?;
    let ordering_key = p.subscription_id.unwrap_or(p.customer_id);
    outbox::emit(conn, now, NewEvent { tenant_id: tenant.id, ordering_key, event_type, data }).await?;
    Ok(())
}

/// Pay: the issuer authorised and the money is captured.
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
    if payment.status == "succeeded" || payment.status.ends_with("refunded") {
        if payment.gateway_transaction_id.as_deref() == Some(n.transaction_id.as_str()) {
            return Ok("already_applied".into());
        }
        record_duplicate_capture(conn, now, tenant, &payment, n).await?;
        return Ok("duplicate_capture".into());
    }
    payment.status = "succeeded".into();
    payment.gateway_transaction_id = Some(n.transaction_id.clone());
    payment.failure_reason = None;
    payment.failure_code = None;
    payment.captured_at = Some(now);
    attempt.status = "succeeded".into();
    attempt.gateway_transaction_id = Some(n.transaction_id.clone());
    save_card(conn, now, tenant, payment.customer_id, n).await?;

    let activated = match payment.subscription_id {
        Some(sub_id) if payment.kind == "purchase" => {
            activate_purchase(conn, now, tenant, sub_id, &mut payment).await?
        }
        _ => None,
    };
    payments_db::save(conn, &payment).await?;
    payments_db::save_attempt(conn, &attempt).await?;
    let money = money_of(&payment)?;
    let posting = if activated.is_some() {
        Posting::captured_charge("payment_captured", payment.description.clone(), payment.customer_id, money)
    } else {
        // Paid, but what it paid for is gone (superseded purchase): the money waits
        // on the customer's balance for a refund.
        Posting::captured_to_balance(
            "payment_captured_unapplied",
            payment.description.clone(),
            payment.customer_id,
            money,
        )
    };
    ledger::post(conn, tenant.id, Some(payment.id), now, &posting).await?;
    emit_payment(conn, now, tenant, &payment, "payment.succeeded").await?;
    match activated {
        Some((sub, plan)) => {
            subscriptions::emit_activated(conn, now, tenant, &sub, &plan, &payment).await?;
            Ok("applied".into())
        }
        None => Ok("captured_unapplied".into()),
    }
}

/// Activates the purchase a captured payment paid for, if it still can be.
async fn activate_purchase(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<(SubscriptionRow, Plan)>> {
    let mut sub = subs_db::find_for_update(conn, sub_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("payment {} names a missing subscription", payment.id)))?;
    let status = status_of(&sub)?;
    let revivable = status == SubscriptionStatus::Expired
        && sub.current_period_start.is_none()
        && subs_db::find_live(conn, sub.customer_id).await?.is_none();
    if status != SubscriptionStatus::PendingPayment && !revivable {
        return Ok(None);
    }
    let plan = plans::load(conn, sub.plan_id).await?;
    subscriptions::activate(conn, now, tenant, &mut sub, &plan, payment).await?;
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    Ok(Some((sub, plan)))
}

/// A second capture of an invoice that is already paid: its own payment, money on
/// the customer's balance until refunded.
async fn record_duplicate_capture(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    original: &PaymentRow,
    n: &PaymentNotification,
) -> ServiceResult<()> {
    let dup = PaymentRow {
        id: Uuid::now_v7(),
        status: "succeeded".into(),
        gateway_transaction_id: Some(n.transaction_id.clone()),
        duplicate_of: Some(original.id),
        refunded_amount: rust_decimal::Decimal::ZERO,
        failure_reason: None,
        failure_code: None,
        expires_at: None,
        captured_at: Some(now),
        created_at: now,
        ..original.clone()
    };
    payments_db::insert(conn, &dup).await?;
    warn!(payment = %original.id, duplicate = %dup.id, transaction = %n.transaction_id, "second capture of a paid invoice");
    let posting = Posting::captured_to_balance(
        "duplicate_capture",
        format!("duplicate of {}", original.id),
        dup.customer_id,
        money_of(&dup)?,
    );
    ledger::post(conn, tenant.id, Some(dup.id), now, &posting).await?;
    emit_payment(conn, now, tenant, &dup, "payment.succeeded").await
}

/// Fail: the issuer declined. The purchase stays pending (the widget lets the
/// customer try another card until the payment expires).
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
    if payment.status != "pending" && payment.status != "failed" {
        return Ok("ignored_after_success".into());
    }
    payment.status = "failed".into();
    payment.failure_reason = Some(n.reason.clone().unwrap_or_else(|| "declined".into()));
    payment.failure_code = n.reason_code.clone();
    attempt.status = "failed".into();
    attempt.gateway_transaction_id = Some(n.transaction_id.clone());
    attempt.failure_reason = payment.failure_reason.clone();
    attempt.failure_code = n.reason_code.clone();
    payments_db::save(conn, &payment).await?;
    payments_db::save_attempt(conn, &attempt).await?;
    emit_payment(conn, now, tenant, &payment, "payment.failed").await?;
    Ok("declined".into())
}
