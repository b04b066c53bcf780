//! What a product does to a running subscription: cancel, resume, pay a failed
//! renewal now, extend a manual plan. Each is a domain transition
//! (`domain::subscription`) recorded with its history entry and events.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::collection::supersede_pending;
use super::payment_sources::collect;
use super::payments::{self, PayWith, PaymentView};
use super::plans;
use super::subscriptions::{self, SubscriptionView, conflict};
use super::tenants::Tenant;
use crate::db::attempts as attempts_db;
use crate::db::payments as payments_db;
use crate::domain::ids::SubscriptionId;
use crate::domain::states::PaymentKind;
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::subscription::schedule::PENDING_PAYMENT_TTL;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// `pay` / `extend` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"pay_with": "card"})))]
pub struct PayRequest {
    #[serde(default)]
    pub pay_with: PayWith,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PaymentAnswer {
    pub payment: PaymentView,
}

/// Cancel (Orbita 18.1, SMM-GPT 3.6): no later charges, access to the end of the
/// paid period. A subscription in dunning ends at once (nothing is paid for).
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: SubscriptionId,
) -> ServiceResult<SubscriptionView> {
    let (mut sub, plan) = subscriptions::lock(conn, tenant, id).await?;
    let ends = matches!(
        sub.status,
        SubscriptionStatus::PastDue | SubscriptionStatus::Suspended | SubscriptionStatus::PendingPayment
    );
    if let Some(mut change) = sub.cancel(now).map_err(conflict("subscription_ended"))? {
        if ends && !change.events.is_empty() {
            // The product sees it canceled, then its unpaid payments fail, then it expires.
            let canceled = change.events.remove(0);
            let event = subscriptions::event(tenant, &sub, &plan.code, canceled.kind, canceled.extra)?;
            crate::db::outbox::emit(conn, now, event).await?;
            subscriptions::fail_pending_payments(conn, now, tenant, &sub, crate::domain::subscription::Cause::Canceled)
                .await?;
        }
        subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await?;
    }
    subscriptions::view(conn, &sub).await
}

/// Resume: auto-renew back on, before the period ends.
pub async fn resume(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: SubscriptionId,
) -> ServiceResult<SubscriptionView> {
    let (mut sub, plan) = subscriptions::lock(conn, tenant, id).await?;
    if sub.status != SubscriptionStatus::Canceled {
        return Err(ServiceError::conflict(
            "not_canceled",
            format!("only a canceled subscription can be resumed (it is {})", sub.status),
        ));
    }
    let change = sub.resume(now, plan.auto_renew).map_err(conflict("period_ended"))?;
    subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await?;
    subscriptions::view(conn, &sub).await
}

/// "Pay now" for a subscription whose renewal failed (`past_due`, `suspended`).
pub async fn pay_now(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    id: SubscriptionId,
    req: PayRequest,
) -> ServiceResult<PaymentAnswer> {
    let (sub, _plan) = subscriptions::lock(conn, tenant, id).await?;
    let (true, Some(payment_id)) =
        (matches!(sub.status, SubscriptionStatus::PastDue | SubscriptionStatus::Suspended), sub.renewal_payment_id)
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
    attempts_db::call_off_refused(conn, payment.id).await?;
    if attempts_db::has_charge_in_progress(conn, payment.id).await? {
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
    id: SubscriptionId,
    req: PayRequest,
) -> ServiceResult<PaymentAnswer> {
    let (sub, plan) = subscriptions::lock(conn, tenant, id).await?;
    if !matches!(sub.status, SubscriptionStatus::Active | SubscriptionStatus::Canceled)
        || sub.current_period_end.is_none_or(|e| e <= now)
    {
        return Err(ServiceError::conflict(
            "not_extendable",
            format!("only a subscription with access can be extended (it is {}); buy the plan again", sub.status),
        ));
    }
    if plan.archived_at.is_some() {
        return Err(ServiceError::conflict("plan_archived", "the plan is archived: choose another plan"));
    }
    // An unpaid earlier extension request is superseded by this one.
    supersede_pending(conn, sub.id, &[PaymentKind::Extension]).await?;
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
