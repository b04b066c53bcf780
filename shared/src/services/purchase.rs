//! Purchase: a customer buys a plan (`POST /v1/subscriptions`).
//!
//! 100% prepaid (all offers): the subscription waits in `pending_payment` with a
//! pending payment whose confirmation carries the CloudPayments widget parameters;
//! access starts when the gateway's Pay notification confirms it. A pending payment
//! expires after 24 h. A customer has at most one live subscription.
//!
//! Free plans (DEMO: 0 RUB, 7 days) and a plan's trial days start at once without
//! payment, in `trialing` (a free plan that renews automatically is a free tier:
//! `active`, renewing for nothing). A trial is granted once per customer and plan.
//! Buying a paid plan during a trial is a new purchase that replaces the trial when
//! it is paid.

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::payment_sources;
pub use super::payments::PayWith;
use super::payments::{self, PaymentView};
use super::plans::{self, Plan, PriceView};
use super::prices::{self, PriceChange};
use super::subscriptions::{self, SubscriptionView};
use super::tenants::Tenant;
use crate::db::attempts::{self as attempts_db, AttemptRow};
use crate::db::customers::{self as customers_db, CustomerRow};
use crate::db::payments as payments_db;
use crate::db::subscriptions as db;
use crate::db::trials as trials_db;
use crate::domain::ids::{CustomerId, SubscriptionId};
use crate::domain::period::{period_end, shift_days};
use crate::domain::plan::{price_at, scheduled_after};
use crate::domain::states::{AttemptChannel, PaymentKind};
use crate::domain::subscription::lifecycle::Start;
use crate::domain::subscription::schedule::PENDING_PAYMENT_TTL;
use crate::domain::subscription::{Cause, Subscription, SubscriptionStatus};
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"customer_id": "01926f6e-8d40-7b3a-9c1e-2f4a5b6c7d8e", "plan": "PRO", "pay_with": "card"})))]
pub struct PurchaseSpec {
    pub customer_id: CustomerId,
    /// Plan code.
    pub plan: String,
    #[serde(default)]
    pub pay_with: PayWith,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PurchaseView {
    pub subscription: SubscriptionView,
    /// The payment to collect; none for a trial or a free plan, which start at once.
    pub payment: Option<PaymentView>,
    /// Price versions of the plan announced but not yet in effect: renewals from
    /// their `effective_from` will be charged at them.
    pub scheduled_prices: Vec<PriceView>,
}

/// Ends a live subscription that no longer holds anything — an abandoned or expired
/// pending purchase, or a period that ended without renewal — so a new purchase can
/// proceed. Returns false when the subscription is really live.
async fn retire_if_stale(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
) -> ServiceResult<bool> {
    let ended = sub.current_period_end.is_some_and(|end| end <= now) && sub.paid_through.is_none_or(|p| p <= now);
    let cause = match sub.status {
        SubscriptionStatus::PendingPayment => Cause::Superseded,
        SubscriptionStatus::Canceled | SubscriptionStatus::Trialing if ended => Cause::PeriodEnded,
        SubscriptionStatus::Active if !sub.auto_renew && ended => Cause::PeriodEnded,
        _ => return Ok(false),
    };
    let plan_code = plans::code_of(conn, sub.plan_id).await?;
    subscriptions::expire(conn, now, tenant, sub, &plan_code, cause).await?;
    subscriptions::store(conn, now, tenant, sub).await?;
    Ok(true)
}

/// How a purchase starts, and whether it takes the customer's one trial of the plan.
#[derive(Debug, Clone, Copy)]
struct Starting {
    start: Start,
    record_trial: bool,
}

/// Decides how the purchase starts: a free plan (once per customer when the plan
/// says so: `422 trial_already_used`), a plan's trial days (once per customer and
/// plan; a second purchase is paid), or a paid purchase.
async fn start_of(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: CustomerId,
    plan: &Plan,
    free_price: Option<Uuid>,
) -> ServiceResult<Starting> {
    if let Some(price_id) = free_price {
        if plan.once_per_customer && trials_db::used(conn, customer_id, plan.id).await? {
            return Err(trial_already_used(plan));
        }
        let ends_at = period_end(now, now, plan.period, tenant.tz);
        let start = Start::Free { ends_at, renews: plan.auto_renew, price_id: Some(price_id) };
        return Ok(Starting { start, record_trial: plan.once_per_customer });
    }
    match plan.trial_days {
        Some(days) if !trials_db::used(conn, customer_id, plan.id).await? => {
            let start = Start::Free { ends_at: shift_days(now, days, tenant.tz), renews: false, price_id: None };
            Ok(Starting { start, record_trial: true })
        }
        _ => Ok(Starting { start: Start::Paid, record_trial: false }),
    }
}

fn trial_already_used(plan: &Plan) -> ServiceError {
    ServiceError::invalid("trial_already_used", format!("the customer has already used the {} trial", plan.code))
}

pub async fn purchase(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    spec: PurchaseSpec,
) -> ServiceResult<PurchaseView> {
    let customer: CustomerRow = customers_db::find_for_update(conn, tenant.id, spec.customer_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("customer_not_found", "no such customer"))?;
    let plan = plans::load_to_sell(conn, tenant, &spec.plan).await?;
    if plan.archived_at.is_some() {
        return Err(ServiceError::conflict(
            "plan_archived",
            format!("plan {} is archived: no new purchases", plan.code),
        ));
    }
    let version = plan.price_at(now)?.clone();
    let free_price = version.price.is_zero().then_some(version.id);
    let Starting { start, record_trial } = start_of(conn, now, tenant, customer.id, &plan, free_price).await?;
    for mut live in db::lock_live(conn, customer.id, None).await? {
        // A trial or a free plan waits for the paid purchase that replaces it.
        let kept = start == Start::Paid && live.replaceable();
        if !kept && !retire_if_stale(conn, now, tenant, &mut live).await? {
            return Err(ServiceError::conflict(
                "subscription_exists",
                format!("customer already has subscription {} ({}): use change-plan or extend", live.id, live.status),
            ));
        }
    }

    let (mut sub, change) = Subscription::start(
        SubscriptionId::new(),
        tenant.id,
        customer.id,
        plan.id,
        &plan.code,
        plan.auto_renew,
        start,
        now,
    );
    db::insert(conn, &sub).await.map_err(|e| {
        let e = ServiceError::from(e);
        match e.violated_constraint() {
            Some("subscriptions_one_live" | "subscriptions_one_pending") => {
                ServiceError::conflict("subscription_exists", "customer already has a live subscription")
            }
            _ => e,
        }
    })?;
    if record_trial && !trials_db::record(conn, customer.id, plan.id, sub.id, now).await? {
        return Err(trial_already_used(&plan));
    }
    // Pending purchases expire after 24 h, trials end: `store` sets when.
    subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await?;
    let payment = match start {
        Start::Free { .. } => None,
        Start::Paid => {
            let mut payment = payments::tariff_payment(tenant, &sub, PaymentKind::Purchase, &plan, &version, now);
            payment.expires_at = Some(now + PENDING_PAYMENT_TTL);
            payments_db::insert(conn, &payment).await?;
            if spec.pay_with == PayWith::Card {
                // The purchase's widget attempt is known to the gateway by the payment id.
                let mut attempt = AttemptRow::new(tenant.id, payment.id, 1, AttemptChannel::Widget, None, now);
                attempt.invoice_id = payment.id.to_string();
                attempts_db::insert_attempt(conn, &attempt).await?;
                let confirmation =
                    payments::confirmation(gateways, tenant, &payment, &attempt.invoice_id, &customer.email).await?;
                Some(payments::view(&payment, Some(confirmation))?)
            } else {
                // The saved card is charged by the worker; the balance pays (and
                // activates the subscription) at once, or nothing is written.
                let view = payment_sources::collect(conn, now, gateways, tenant, &mut payment, spec.pay_with).await?;
                sub = db::find(conn, tenant.id, sub.id).await?.unwrap_or(sub);
                Some(view)
            }
        }
    };

    // Customers who buy between an announcement and its effective date get the notice too.
    let scheduled: Vec<_> = scheduled_after(&plan.prices, now).into_iter().cloned().collect();
    for v in &scheduled {
        let before = v.effective_from.map(|f| f - TimeDelta::microseconds(1)).unwrap_or(now);
        let previous = price_at(&plan.prices, before).map(|p| p.price);
        let increase = previous.is_some_and(|p| v.price.amount() > p.amount());
        let change = PriceChange { plan: &plan, version: v, previous, increase };
        prices::notify_price_change(conn, now, tenant, &change, &[(sub.id, customer.id)]).await?;
    }

    Ok(PurchaseView {
        subscription: subscriptions::view(conn, &sub).await?,
        payment,
        scheduled_prices: plan.view(now)?.scheduled_prices,
    })
}
