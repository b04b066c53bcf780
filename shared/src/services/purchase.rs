//! Purchase: a customer buys a plan (`POST /v1/subscriptions`).
//!
//! 100% prepaid (all offers): the subscription waits in `pending_payment` with a
//! pending payment whose confirmation carries the CloudPayments widget parameters;
//! access starts when the gateway's Pay notification confirms it. A pending payment
//! expires after 24 h. A customer has at most one live subscription.

use chrono::{DateTime, TimeDelta, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::payments::{self, PaymentView};
use super::plans::{self, Plan, PriceChange, PriceView};
use super::subscriptions::{self, SubscriptionView, status_of};
use super::tenants::Tenant;
use crate::db::customers::{self as customers_db, CustomerRow};
use crate::db::payments::{self as payments_db, AttemptRow, PaymentRow};
use crate::db::subscriptions::{self as db, SubscriptionRow};
use crate::domain::plan::{price_at, scheduled_after};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};

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
    pub payment: PaymentView,
    /// Price versions of the plan announced but not yet in effect: renewals from
    /// their `effective_from` will be charged at them.
    pub scheduled_prices: Vec<PriceView>,
}

pub fn describe(tenant: &Tenant, plan: &Plan) -> String {
    format!("{}: тариф {}", tenant.name, plan.name)
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

pub async fn purchase(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
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
    if version.price.is_zero() {
        return Err(ServiceError::not_supported("free and trial plans are not supported yet"));
    }
    if let Some(mut live) = db::find_live(conn, customer.id).await?
        && !retire_if_stale(conn, now, tenant, &mut live).await?
    {
        return Err(ServiceError::conflict(
            "subscription_exists",
            format!("customer already has subscription {} ({}): use change-plan or extend", live.id, live.status),
        ));
    }

    let mut sub = SubscriptionRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        customer_id: customer.id,
        plan_id: plan.id,
        status: SubscriptionStatus::PendingPayment.as_str().into(),
        auto_renew: plan.auto_renew,
        current_period_start: None,
        current_period_end: None,
        anchor_at: None,
        paid_amount: None,
        price_id: None,
        next_charge_at: None,
        grace_until: None,
        scheduled_plan_id: None,
        created_at: now,
        due_at: None,
        renewal_payment_id: None,
        next_retry_at: None,
        dunning_ends_at: None,
        retries_stopped: false,
        paid_through: None,
        canceled_at: None,
        renewal_notice_for: None,
        expiry_notice_for: None,
    };
    db::insert(conn, &sub).await.map_err(|e| {
        let e = ServiceError::from(e);
        if e.violated_constraint() == Some("subscriptions_one_live") {
            ServiceError::conflict("subscription_exists", "customer already has a live subscription")
        } else {
            e
        }
    })?;
    crate::db::subscriptions::record_transition(
        conn,
        sub.id,
        None,
        &sub.status,
        "purchase",
        now,
        Some(json!({"plan": plan.code})),
    )
    .await?;

    let payment = PaymentRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        customer_id: customer.id,
        subscription_id: Some(sub.id),
        kind: "purchase".into(),
        status: "pending".into(),
        amount: version.price.amount(),
        currency: version.price.currency().code().into(),
        refunded_amount: rust_decimal::Decimal::ZERO,
        description: describe(tenant, &plan),
        plan_id: Some(plan.id),
        price_id: Some(version.id),
        period_start: None,
        period_end: None,
        gateway: tenant.gateway.kind().into(),
        gateway_transaction_id: None,
        failure_reason: None,
        failure_code: None,
        duplicate_of: None,
        expires_at: Some(now + PENDING_PAYMENT_TTL),
        captured_at: None,
        created_at: now,
    };
    payments_db::insert(conn, &payment).await?;
    // The purchase's widget attempt is known to the gateway by the payment id.
    let mut attempt = AttemptRow::new(tenant.id, payment.id, 1, "widget", None, now);
    attempt.invoice_id = payment.id.to_string();
    payments_db::insert_attempt(conn, &attempt).await?;

    // Pending purchases expire after 24 h: the scheduler needs to know when.
    super::scheduler::advance(conn, now, tenant, &plan, &mut sub).await?;

    // Customers who buy between an announcement and its effective date get the notice too.
    let scheduled: Vec<_> = scheduled_after(&plan.prices, now).into_iter().cloned().collect();
    for v in &scheduled {
        let before = v.effective_from.map(|f| f - TimeDelta::microseconds(1)).unwrap_or(now);
        let previous = price_at(&plan.prices, before).map(|p| p.price);
        let increase = previous.is_some_and(|p| v.price.amount() > p.amount());
        let change = PriceChange { plan: &plan, version: v, previous, increase };
        plans::notify_price_change(conn, now, tenant, &change, &[(sub.id, customer.id)]).await?;
    }

    let confirmation = payments::widget_params(tenant, &payment, &payment.id.to_string(), &customer.email)?;
    Ok(PurchaseView {
        subscription: subscriptions::view(conn, &sub).await?,
        payment: payments::view(&payment, confirmation)?,
        scheduled_prices: plan.view(now)?.scheduled_prices,
    })
}
