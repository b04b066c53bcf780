//! What a product does to a running subscription: cancel, resume, pay a failed
//! renewal now, extend a manual plan.

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, select};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::charges;
use super::payments::{self, PaymentView};
use super::plans::{self, Plan};
use super::purchase::{PENDING_PAYMENT_TTL, PayWith};
use super::scheduler;
use super::subscriptions::{self, SubscriptionView, status_of};
use super::tenants::Tenant;
use crate::db::payments::{self as payments_db, AttemptRow, PaymentRow};
use crate::db::schema::payment_attempts;
use crate::db::subscriptions::{self as subs_db, SubscriptionRow};
use crate::domain::states::{AttemptChannel, AttemptStatus, PaymentKind};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// `pay` / `extend` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    #[serde(default)]
    pub pay_with: PayWith,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentAnswer {
    pub payment: PaymentView,
}

pub(crate) async fn lock(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    id: Uuid,
) -> ServiceResult<(SubscriptionRow, Plan)> {
    subscriptions::load(conn, tenant, id).await?;
    let sub = subs_db::find_for_update(conn, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("subscription_not_found", "no such subscription"))?;
    let plan = plans::load(conn, sub.plan_id).await?;
    Ok((sub, plan))
}

/// Cancel (Orbita 18.1, SMM-GPT 3.6): no later charges, access to the end of the
/// paid period. A subscription in dunning ends at once (nothing is paid for).
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
) -> ServiceResult<SubscriptionView> {
    let (mut sub, plan) = lock(conn, tenant, id).await?;
    match status_of(&sub)? {
        SubscriptionStatus::Canceled => {}
        SubscriptionStatus::Active | SubscriptionStatus::Trialing => {
            sub.auto_renew = false;
            sub.canceled_at = Some(now);
            if sub.renewal_payment_id.is_none() {
                sub.next_charge_at = None;
            }
            subscriptions::transition(conn, &mut sub, SubscriptionStatus::Canceled, "canceled", now, None).await?;
            let extra = json!({"access_until": sub.paid_through.or(sub.current_period_end)});
            subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.canceled", extra).await?;
        }
        SubscriptionStatus::PastDue | SubscriptionStatus::Suspended | SubscriptionStatus::PendingPayment => {
            sub.auto_renew = false;
            sub.canceled_at = Some(now);
            subscriptions::emit(
                conn,
                now,
                tenant,
                &sub,
                &plan.code,
                "subscription.canceled",
                json!({"access_until": now}),
            )
            .await?;
            subscriptions::expire(conn, now, tenant, &mut sub, &plan.code, "canceled").await?;
        }
        SubscriptionStatus::Expired | SubscriptionStatus::Terminated => {
            return Err(ServiceError::conflict("subscription_ended", "the subscription has already ended"));
        }
    }
    scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
    subscriptions::view(conn, &sub).await
}

/// Resume: auto-renew back on, before the period ends.
pub async fn resume(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
) -> ServiceResult<SubscriptionView> {
    let (mut sub, plan) = lock(conn, tenant, id).await?;
    if status_of(&sub)? != SubscriptionStatus::Canceled {
        return Err(ServiceError::conflict(
            "not_canceled",
            format!("only a canceled subscription can be resumed (it is {})", sub.status),
        ));
    }
    let end = sub.current_period_end.unwrap_or(now);
    if end <= now {
        return Err(ServiceError::conflict("period_ended", "the paid period has ended: buy the plan again"));
    }
    sub.auto_renew = plan.auto_renew;
    sub.canceled_at = None;
    sub.next_charge_at = plan.auto_renew.then(|| sub.paid_through.unwrap_or(end));
    subscriptions::transition(conn, &mut sub, SubscriptionStatus::Active, "resumed", now, None).await?;
    subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.resumed", json!({})).await?;
    scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
    subscriptions::view(conn, &sub).await
}

async fn has_open_attempt(conn: &mut AsyncPgConnection, payment: Uuid) -> ServiceResult<bool> {
    Ok(select(exists(
        payment_attempts::table.filter(payment_attempts::payment_id.eq(payment)).filter(
            payment_attempts::status.eq_any([AttemptStatus::Sent, AttemptStatus::Unknown]).or(
                payment_attempts::channel
                    .ne(AttemptChannel::Widget)
                    .and(payment_attempts::status.eq(AttemptStatus::Pending)),
            ),
        ),
    ))
    .get_result(conn)
    .await?)
}

/// Collects `payment` by the saved card (queued charge) or a new widget payment.
pub(crate) async fn collect(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    payment: &mut PaymentRow,
    pay_with: PayWith,
) -> ServiceResult<PaymentView> {
    match pay_with {
        PayWith::SavedCard => {
            if payments_db::default_payment_method(conn, payment.customer_id).await?.is_none() {
                return Err(ServiceError::invalid(
                    "no_saved_card",
                    "the customer has no usable saved card: pay with \"card\"",
                ));
            }
            charges::start_attempt(conn, now, tenant, payment, AttemptChannel::Manual).await?;
        }
        PayWith::Card => {
            let attempt_no = payments_db::next_attempt_no(conn, payment.id).await?;
            payments_db::insert_attempt(
                conn,
                &AttemptRow::new(tenant.id, payment.id, attempt_no, AttemptChannel::Widget, None, now),
            )
            .await?;
        }
        PayWith::Balance | PayWith::Invoice => {
            return Err(ServiceError::not_supported("pay_with balance and invoice are not supported yet"));
        }
    }
    let fresh = payments_db::find_for_update(conn, payment.id).await?.unwrap_or_else(|| payment.clone());
    payments::view_of(conn, gateways, tenant, &fresh).await
}

/// "Pay now" for a subscription whose renewal failed (`past_due`, `suspended`).
pub async fn pay_now(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    id: Uuid,
    req: PayRequest,
) -> ServiceResult<PaymentAnswer> {
    let (sub, _plan) = lock(conn, tenant, id).await?;
    let status = status_of(&sub)?;
    let (true, Some(payment_id)) =
        (matches!(status, SubscriptionStatus::PastDue | SubscriptionStatus::Suspended), sub.renewal_payment_id)
    else {
        return Err(ServiceError::conflict(
            "nothing_to_pay",
            format!("the subscription is {} and owes nothing", sub.status),
        ));
    };
    let mut payment = payments_db::find_for_update(conn, payment_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("renewal payment {payment_id} vanished")))?;
    // An attempt the provider refused for the merchant's own setup was never
    // charged: paying by hand calls it off rather than waiting for an operator.
    payments_db::call_off_refused(conn, payment.id).await?;
    if has_open_attempt(conn, payment.id).await? {
        return Err(ServiceError::conflict(
            "payment_in_progress",
            "a charge of this payment is in progress; wait for its outcome",
        ));
    }
    let payment = collect(conn, now, gateways, tenant, &mut payment, req.pay_with).await?;
    Ok(PaymentAnswer { payment })
}

/// Manual renewal (WhatsMonster 7.8, 7.14): pay for the next period now, priced at
/// today's price; it starts when the current period (and any queued one) ends.
pub async fn extend(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    id: Uuid,
    req: PayRequest,
) -> ServiceResult<PaymentAnswer> {
    let (sub, plan) = lock(conn, tenant, id).await?;
    let status = status_of(&sub)?;
    if !matches!(status, SubscriptionStatus::Active | SubscriptionStatus::Canceled)
        || sub.current_period_end.is_none_or(|e| e <= now)
    {
        return Err(ServiceError::conflict(
            "not_extendable",
            format!("only a subscription with access can be extended (it is {}); buy the plan again", sub.status),
        ));
    }
    if matches!(req.pay_with, PayWith::Balance | PayWith::Invoice) {
        return Err(ServiceError::not_supported("pay_with balance and invoice are not supported yet"));
    }
    if plan.archived_at.is_some() {
        return Err(ServiceError::conflict("plan_archived", "the plan is archived: choose another plan"));
    }
    // An unpaid earlier extension request is superseded by this one.
    charges::supersede_pending(conn, sub.id, &[PaymentKind::Extension]).await?;
    // A scheduled downgrade takes over with the extension it is paid by.
    let priced = match sub.scheduled_plan_id {
        Some(id) if id != plan.id => plans::load(conn, id).await?,
        _ => plan,
    };
    let version = priced.price_at(now)?.clone();
    if version.price.is_zero() {
        return Err(ServiceError::invalid("free_plan", "a free plan is not extended by payment"));
    }
    let mut payment = payments::tariff_payment(tenant, &sub, PaymentKind::Extension, &priced, &version, now);
    payment.expires_at = Some(now + PENDING_PAYMENT_TTL);
    payments_db::insert(conn, &payment).await?;
    let payment = collect(conn, now, gateways, tenant, &mut payment, req.pay_with).await?;
    Ok(PaymentAnswer { payment })
}
