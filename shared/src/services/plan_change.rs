//! Plan changes (`POST /v1/subscriptions/{id}/change-plan`, SPEC §4).
//!
//! * **Upgrade** (dearer per day): immediate and irreversible, quoted by
//!   [`crate::domain::proration`] in the tenant's `upgrade_mode` (plans with
//!   different period lengths always restart with credit). The new plan applies
//!   only once the amount due is paid — by the saved card when there is one, else a
//!   widget payment; an amount below 1.00 applies at once without a charge.
//! * **Downgrade** (not dearer per day): scheduled for the next period
//!   (`scheduled_plan`); the renewal (or a manual extension) charges the new plan.
//!   Changing back to the current plan cancels it.
//!
//! The ledger books an applied upgrade as separate pairs: payment, unused-time
//! credit, new charge (and a waived remainder below the minimum).

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::collection::supersede_pending;
use super::corrupt;
use super::payment_sources::collect;
use super::payments::{self, Line, PayWith, PaymentView};
use super::plan_switch::{self, StoredChange};
use super::plans::{self, Plan};
use super::subscriptions::{self, SubscriptionView, unexpected};
use super::tenants::Tenant;
use crate::db::attempts as attempts_db;
use crate::db::outbox;
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::domain::ids::SubscriptionId;
use crate::domain::money::{Money, MoneyView};
use crate::domain::period::local_days_between;
use crate::domain::proration::{self, ChangeInput};
use crate::domain::states::{LineKind, PaymentKind};
use crate::domain::subscription::schedule::PENDING_PAYMENT_TTL;
use crate::domain::subscription::{PlanRef, SubscriptionStatus};
use crate::domain::tenant::UpgradeMode;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// `change-plan` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"plan": "PRO", "preview": true})))]
pub struct ChangePlanRequest {
    /// Code of the plan to change to.
    pub plan: String,
    /// Only quote: nothing changes.
    #[serde(default)]
    pub preview: bool,
    /// How an upgrade is paid: the saved card when the customer has one, else a
    /// new card payment (`card`).
    #[serde(default)]
    pub pay_with: Option<PayWith>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effective {
    Now,
    NextPeriod,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChangePlanView {
    pub effective: Effective,
    /// When the new plan takes over: now (once paid) or the current period's end.
    pub effective_at: DateTime<Utc>,
    pub from_plan: String,
    pub to_plan: String,
    /// What the customer pays now (zero below the 1.00 minimum and for downgrades).
    pub amount_due: MoneyView,
    /// Unused value of the current tariff, credited.
    pub credit: MoneyView,
    /// The new tariff's charge for the remaining days or a new full period.
    pub charge: MoneyView,
    /// An upgrade starts a new full period now (`restart_with_credit`).
    pub restarts: bool,
    /// Local days left in the current period and its length, as quoted.
    pub remaining_days: i64,
    pub period_days: i64,
    pub preview: bool,
    /// The upgrade's payment, while it is being collected.
    pub payment: Option<PaymentView>,
    pub subscription: SubscriptionView,
}

/// Price per day compares as `price × other period's days`.
fn dearer_per_day(new: Money, new_plan: &Plan, old: Money, old_plan: &Plan) -> bool {
    let new_days = rust_decimal::Decimal::from(new_plan.period.nominal_days());
    let old_days = rust_decimal::Decimal::from(old_plan.period.nominal_days());
    new.amount() * old_days > old.amount() * new_days
}

pub async fn change_plan(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    gateways: &Gateways,
    tenant: &Tenant,
    id: SubscriptionId,
    req: ChangePlanRequest,
) -> ServiceResult<ChangePlanView> {
    let (mut sub, plan) = subscriptions::lock(conn, tenant, id).await?;
    let target = plans::load_to_sell(conn, tenant, &req.plan).await?;
    let status = sub.status;
    if status == SubscriptionStatus::Trialing || sub.replaceable() {
        return Err(ServiceError::conflict(
            "purchase_instead",
            "nothing was paid for this subscription: buy the plan (a purchase replaces it)",
        ));
    }
    if !matches!(status, SubscriptionStatus::Active | SubscriptionStatus::Canceled) || !sub.has_access(now) {
        return Err(ServiceError::conflict(
            "not_changeable",
            format!("only a subscription with access can change plans (it is {})", sub.status),
        ));
    }
    let (Some(start), Some(end)) = (sub.current_period_start, sub.current_period_end) else {
        return Err(ServiceError::Internal(format!("subscription {} has access but no period", sub.id)));
    };
    let period_days = local_days_between(start, end, tenant.tz);
    let remaining_days = local_days_between(now, end, tenant.tz).clamp(0, period_days);
    // Every way into a period with access records what it paid (0 for free plans).
    let paid = sub.paid_amount.ok_or_else(|| corrupt("paid amount", "missing on a subscription with access"))?;
    let old_price = Money::new(paid, plan.price_at(now)?.price.currency()).map_err(|e| corrupt("paid amount", e))?;
    let zero = Money::zero(old_price.currency());
    let mut answer = ChangePlanView {
        effective: Effective::NextPeriod,
        effective_at: sub.paid_through.unwrap_or(end).max(end),
        from_plan: plan.code.clone(),
        to_plan: target.code.clone(),
        amount_due: zero.into(),
        credit: zero.into(),
        charge: zero.into(),
        restarts: false,
        remaining_days,
        period_days,
        preview: req.preview,
        payment: None,
        subscription: subscriptions::view(conn, &sub).await?,
    };
    if target.id == plan.id {
        if sub.scheduled_plan_id.is_none() {
            return Err(ServiceError::conflict("same_plan", "the subscription is already on this plan"));
        }
        // Back to the current plan: the scheduled change is cancelled.
        if !req.preview {
            let change = sub.schedule_plan(now, None, answer.effective_at).map_err(unexpected)?;
            subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await?;
            answer.subscription = subscriptions::view(conn, &sub).await?;
        }
        return Ok(answer);
    }
    if target.archived_at.is_some() {
        return Err(ServiceError::conflict("plan_archived", "the plan is archived: choose another plan"));
    }
    if sub.renewal_payment_id.is_some() {
        return Err(ServiceError::conflict(
            "renewal_in_progress",
            "the renewal charge is in progress; change the plan once it has an outcome",
        ));
    }
    let version = target.price_at(now)?.clone();
    if !dearer_per_day(version.price, &target, old_price, &plan) {
        if !req.preview {
            let to = PlanRef { id: target.id, code: &target.code, period: target.period };
            let change = sub.schedule_plan(now, Some(to), answer.effective_at).map_err(unexpected)?;
            subscriptions::commit(conn, now, tenant, &mut sub, &plan.code, change).await?;
            answer.subscription = subscriptions::view(conn, &sub).await?;
        }
        return Ok(answer);
    }
    if sub.paid_through.is_some_and(|p| p > end) {
        return Err(ServiceError::conflict(
            "extension_queued",
            "a paid extension is queued after this period: upgrade once it has started",
        ));
    }
    let mode = if plan.period == target.period { tenant.policy.upgrade_mode } else { UpgradeMode::RestartWithCredit };
    let quote =
        proration::quote(ChangeInput { old_price, new_price: version.price, period_days, remaining_days, mode })
            .map_err(|e| ServiceError::Internal(format!("proration of {}: {e}", sub.id)))?;
    answer.effective = Effective::Now;
    answer.effective_at = now;
    answer.amount_due = quote.amount_due.into();
    answer.credit = quote.credit.into();
    answer.charge = quote.charge.into();
    answer.restarts = quote.restarts;
    if req.preview {
        return Ok(answer);
    }
    // An unpaid earlier upgrade request — or an extension of the old plan — is
    // superseded by this one.
    supersede_pending(conn, sub.id, &[PaymentKind::Upgrade, PaymentKind::Extension]).await?;
    let stored = StoredChange {
        from_plan_id: plan.id,
        to_plan_id: target.id,
        from_plan: plan.code.clone(),
        to_plan: target.code.clone(),
        period_end: end,
        restarts: quote.restarts,
        credit: quote.credit.into(),
        charge: quote.charge.into(),
        total: quote.total.into(),
        remaining_days,
        period_days,
    };
    if quote.amount_due.is_zero() {
        let applied = plan_switch::apply(conn, now, tenant, &mut sub, &plan, &target, &stored, None).await?;
        // The switch, its posting and its events: one round trip.
        let subscriptions::Applied { events, posting, staged } = applied;
        let (switched, posted, emitted) = futures_util::future::join3(
            subscriptions::Staged::write_if_any(staged.as_ref(), conn),
            async {
                match &posting {
                    Some(p) => crate::db::ledger::post(conn, tenant.id, None, now, p).await.map(drop),
                    None => Ok(()),
                }
            },
            outbox::emit_many(conn, now, events),
        )
        .await;
        crate::db::pipeline::outcome([switched, posted, emitted.map(drop)])?;
        answer.subscription = subscriptions::view(conn, &sub).await?;
        return Ok(answer);
    }
    let description = format!("{}: переход на тариф {}", tenant.name, target.name);
    let mut payment = PaymentRow::pending(
        payments::payer(tenant, sub.customer_id, Some(sub.id)),
        PaymentKind::Upgrade,
        quote.amount_due,
        description.clone(),
        now,
    );
    payment.plan_id = Some(target.id);
    payment.price_id = Some(version.id);
    payment.expires_at = Some(now + PENDING_PAYMENT_TTL);
    payment.plan_change = Some(serde_json::to_value(&stored).map_err(|e| corrupt("plan change", e))?);
    payments::set_lines(&mut payment, &[Line::new(LineKind::Upgrade, description, quote.amount_due)])?;
    payments_db::insert(conn, &payment).await?;
    let pay_with = match req.pay_with {
        Some(p) => p,
        None if attempts_db::default_payment_method(conn, sub.customer_id).await?.is_some() => PayWith::SavedCard,
        None => PayWith::Card,
    };
    answer.payment = Some(collect(conn, now, gateways, tenant, &mut payment, pay_with).await?);
    Ok(answer)
}
