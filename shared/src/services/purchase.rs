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
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::payments::{self, PaymentView};
use super::plans::{self, Plan, PriceChange, PriceView};
use super::subscriptions::{self, SubscriptionView, status_of};
use super::tenants::Tenant;
use crate::db::customers::{self as customers_db, CustomerRow};
use crate::db::payments::{self as payments_db, AttemptRow};
use crate::db::schema::trials;
use crate::db::subscriptions::{self as db, SubscriptionRow};
use crate::domain::period::{period_end, shift_days};
use crate::domain::plan::{price_at, scheduled_after};
use crate::domain::states::{AttemptChannel, PaymentKind};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// How long a customer has to pay a pending payment.
pub const PENDING_PAYMENT_TTL: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayWith {
    /// A new card payment through the gateway's checkout widget.
    #[default]
    Card,
    /// The customer's saved card, charged at once.
    SavedCard,
    /// The customer's prepaid balance.
    Balance,
    /// A bank-transfer invoice (legal entities).
    Invoice,
}

/// `POST /v1/subscriptions` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseSpec {
    pub customer_id: Uuid,
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

pub fn describe(tenant: &Tenant, plan: &Plan) -> String {
    format!("{}: тариф {}", tenant.name, plan.name)
}

/// A subscription nothing was paid for (a trial, a free plan): a purchase replaces
/// it when the purchase is paid (SPEC §4), it does not block it.
pub fn replaceable(row: &SubscriptionRow) -> bool {
    matches!(row.status, SubscriptionStatus::Trialing | SubscriptionStatus::Active | SubscriptionStatus::Canceled)
        && row.paid_amount.is_none_or(|a| a.is_zero())
        && row.renewal_payment_id.is_none()
}

/// Ends a live subscription that no longer holds anything — an abandoned or expired
/// pending purchase, or a period that ended without renewal — so a new purchase can
/// proceed. Returns false when the subscription is really live.
async fn retire_if_stale(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    row: &mut SubscriptionRow,
) -> ServiceResult<bool> {
    let status = status_of(row)?;
    let ended = row.current_period_end.is_some_and(|end| end <= now) && row.paid_through.is_none_or(|p| p <= now);
    let cause = match status {
        SubscriptionStatus::PendingPayment => "superseded",
        SubscriptionStatus::Canceled | SubscriptionStatus::Trialing if ended => "period_ended",
        SubscriptionStatus::Active if !row.auto_renew && ended => "period_ended",
        _ => return Ok(false),
    };
    let plan_code = plans::load(conn, row.plan_id).await?.code;
    subscriptions::expire(conn, now, tenant, row, &plan_code, cause).await?;
    db::save(conn, row).await?;
    Ok(true)
}

/// How a purchase starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// Paid in advance: a pending payment, access when it is confirmed.
    Paid,
    /// Without payment until `ends_at`: a trial of a paid plan, or a free plan
    /// (renewing for free when the plan renews automatically).
    Free { ends_at: DateTime<Utc>, renews: bool, record_trial: bool },
}

async fn trial_used(conn: &mut AsyncPgConnection, customer_id: Uuid, plan_id: Uuid) -> ServiceResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(
        trials::table.filter(trials::customer_id.eq(customer_id)).filter(trials::plan_id.eq(plan_id)),
    ))
    .get_result(conn)
    .await?)
}

/// Decides how the purchase starts: a free plan (once per customer when the plan
/// says so: `422 trial_already_used`), a plan's trial days (once per customer and
/// plan; a second purchase is paid), or a paid purchase.
async fn start_of(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: Uuid,
    plan: &Plan,
    free: bool,
) -> ServiceResult<Start> {
    if free {
        if plan.once_per_customer && trial_used(conn, customer_id, plan.id).await? {
            return Err(trial_already_used(plan));
        }
        let ends_at = period_end(now, now, plan.period, tenant.tz);
        return Ok(Start::Free { ends_at, renews: plan.auto_renew, record_trial: plan.once_per_customer });
    }
    match plan.trial_days {
        Some(days) if !trial_used(conn, customer_id, plan.id).await? => {
            Ok(Start::Free { ends_at: shift_days(now, days, tenant.tz), renews: false, record_trial: true })
        }
        _ => Ok(Start::Paid),
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
    let plan = plans::load_by_code(conn, tenant, &spec.plan).await?;
    if plan.archived_at.is_some() {
        return Err(ServiceError::conflict(
            "plan_archived",
            format!("plan {} is archived: no new purchases", plan.code),
        ));
    }
    match spec.pay_with {
        PayWith::Card => {}
        PayWith::SavedCard => {
            return Err(ServiceError::not_supported("pay_with saved_card is not supported for purchases yet"));
        }
        PayWith::Balance => return Err(ServiceError::not_supported("pay_with balance is not supported yet")),
        PayWith::Invoice => return Err(ServiceError::not_supported("pay_with invoice is not supported yet")),
    }
    let version = plan.price_at(now)?.clone();
    let start = start_of(conn, now, tenant, customer.id, &plan, version.price.is_zero()).await?;
    for mut live in db::live_of_customer(conn, customer.id).await? {
        // A trial or a free plan waits for the paid purchase that replaces it.
        let kept = matches!(start, Start::Paid) && replaceable(&live);
        if !kept && !retire_if_stale(conn, now, tenant, &mut live).await? {
            return Err(ServiceError::conflict(
                "subscription_exists",
                format!("customer already has subscription {} ({}): use change-plan or extend", live.id, live.status),
            ));
        }
    }

    let mut sub = SubscriptionRow::new(tenant.id, customer.id, plan.id, plan.auto_renew, now);
    if let Start::Free { ends_at, renews, .. } = start {
        sub.status = if renews { SubscriptionStatus::Active } else { SubscriptionStatus::Trialing };
        sub.auto_renew = renews;
        sub.current_period_start = Some(now);
        sub.current_period_end = Some(ends_at);
        sub.anchor_at = Some(now);
        sub.paid_amount = Some(rust_decimal::Decimal::ZERO);
        sub.price_id = Some(version.id).filter(|_| version.price.is_zero());
        sub.next_charge_at = renews.then_some(ends_at);
    }
    db::insert(conn, &sub).await.map_err(|e| {
        let e = ServiceError::from(e);
        match e.violated_constraint() {
            Some("subscriptions_one_live" | "subscriptions_one_pending") => {
                ServiceError::conflict("subscription_exists", "customer already has a live subscription")
            }
            _ => e,
        }
    })?;
    let cause = if matches!(start, Start::Free { .. }) { "trial_started" } else { "purchase" };
    db::record_transition(conn, sub.id, None, sub.status, cause, now, Some(json!({"plan": plan.code}))).await?;

    let payment = match start {
        Start::Free { ends_at, record_trial, .. } => {
            if record_trial {
                let inserted = diesel::insert_into(trials::table)
                    .values((
                        trials::customer_id.eq(customer.id),
                        trials::plan_id.eq(plan.id),
                        trials::subscription_id.eq(sub.id),
                        trials::started_at.eq(now),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted == 0 {
                    return Err(trial_already_used(&plan));
                }
            }
            super::scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
            let extra = json!({"trial": sub.status == SubscriptionStatus::Trialing, "trial_ends_at": (sub.status == SubscriptionStatus::Trialing).then_some(ends_at)});
            subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.activated", extra).await?;
            None
        }
        Start::Paid => {
            let mut payment = payments::tariff_payment(tenant, &sub, PaymentKind::Purchase, &plan, &version, now);
            payment.expires_at = Some(now + PENDING_PAYMENT_TTL);
            payments_db::insert(conn, &payment).await?;
            // The purchase's widget attempt is known to the gateway by the payment id.
            let mut attempt = AttemptRow::new(tenant.id, payment.id, 1, AttemptChannel::Widget, None, now);
            attempt.invoice_id = payment.id.to_string();
            payments_db::insert_attempt(conn, &attempt).await?;
            // Pending purchases expire after 24 h: the scheduler needs to know when.
            super::scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;
            let confirmation =
                payments::confirmation(gateways, tenant, &payment, &attempt.invoice_id, &customer.email).await?;
            Some(payments::view(&payment, Some(confirmation))?)
        }
    };

    // Customers who buy between an announcement and its effective date get the notice too.
    let scheduled: Vec<_> = scheduled_after(&plan.prices, now).into_iter().cloned().collect();
    for v in &scheduled {
        let before = v.effective_from.map(|f| f - TimeDelta::microseconds(1)).unwrap_or(now);
        let previous = price_at(&plan.prices, before).map(|p| p.price);
        let increase = previous.is_some_and(|p| v.price.amount() > p.amount());
        let change = PriceChange { plan: &plan, version: v, previous, increase };
        plans::notify_price_change(conn, now, tenant, &change, &[(sub.id, customer.id)]).await?;
    }

    Ok(PurchaseView {
        subscription: subscriptions::view(conn, &sub).await?,
        payment,
        scheduled_prices: plan.view(now)?.scheduled_prices,
    })
}
