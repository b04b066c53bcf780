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
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::charges::{Applied, subscription_event, supersede_pending};
use super::lifecycle::{collect, lock};
use super::payments::{self, Line, PaymentView};
use super::plans::{self, Plan};
use super::purchase::{PENDING_PAYMENT_TTL, PayWith, replaceable};
use super::subscriptions::{self, SubscriptionView, has_access_now, status_of};
use super::tenants::Tenant;
use super::{corrupt, scheduler, usage};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::subscriptions::{self as subs_db, SubscriptionRow};
use crate::domain::ledger::{PlanChangeParts, Posting};
use crate::domain::money::{Money, MoneyView};
use crate::domain::period::{local_days_between, period_end};
use crate::domain::proration::{self, ChangeInput};
use crate::domain::states::{LineKind, PaymentKind};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::tenant::UpgradeMode;
use crate::error::{ServiceError, ServiceResult};
use crate::gateways::registry::Gateways;

/// `change-plan` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
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

/// What an upgrade payment stores about its quote, checked again when it is paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredChange {
    from_plan_id: Uuid,
    to_plan_id: Uuid,
    from_plan: String,
    to_plan: String,
    /// The period the quote was made for: a payment arriving after it changed is
    /// not applied (it waits on the balance).
    period_end: DateTime<Utc>,
    restarts: bool,
    credit: MoneyView,
    charge: MoneyView,
    total: MoneyView,
    remaining_days: i64,
    period_days: i64,
}

fn money(v: &MoneyView) -> ServiceResult<Money> {
    v.money().map_err(|e| corrupt("plan change amount", e))
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
    id: Uuid,
    req: ChangePlanRequest,
) -> ServiceResult<ChangePlanView> {
    let (mut sub, plan) = lock(conn, tenant, id).await?;
    let target = plans::load_by_code(conn, tenant, &req.plan).await?;
    let status = status_of(&sub)?;
    if status == SubscriptionStatus::Trialing || replaceable(&sub) {
        return Err(ServiceError::conflict(
            "purchase_instead",
            "nothing was paid for this subscription: buy the plan (a purchase replaces it)",
        ));
    }
    if !matches!(status, SubscriptionStatus::Active | SubscriptionStatus::Canceled) || !has_access_now(&sub, now)? {
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
            sub.scheduled_plan_id = None;
            subs_db::save(conn, &sub).await?;
            let extra = json!({"scheduled_plan": null, "effective_at": answer.effective_at});
            subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.plan_change_scheduled", extra)
                .await?;
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
            sub.scheduled_plan_id = Some(target.id);
            subs_db::save(conn, &sub).await?;
            let extra = json!({"scheduled_plan": target.code, "effective_at": answer.effective_at});
            subscriptions::emit(conn, now, tenant, &sub, &plan.code, "subscription.plan_change_scheduled", extra)
                .await?;
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
        let applied = apply(conn, now, tenant, &mut sub, &plan, &target, &stored, None).await?;
        if let Some(posting) = &applied.posting {
            crate::db::ledger::post(conn, tenant.id, None, now, posting).await?;
        }
        crate::db::outbox::emit_many(conn, now, applied.events).await?;
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
        None if payments_db::default_payment_method(conn, sub.customer_id).await?.is_some() => PayWith::SavedCard,
        None => PayWith::Card,
    };
    answer.payment = Some(collect(conn, now, gateways, tenant, &mut payment, pay_with).await?);
    Ok(answer)
}

/// An upgrade payment was captured: the change applies if the subscription is
/// still where the quote found it; otherwise `None` (the money waits on the
/// customer's balance, to be refunded).
pub(crate) async fn apply_paid(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: Uuid,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let Some(stored) = payment.plan_change.clone() else { return Ok(None) };
    let stored: StoredChange = serde_json::from_value(stored).map_err(|e| corrupt("plan change", e))?;
    let Some(mut sub) = subs_db::find_for_update(conn, sub_id).await? else { return Ok(None) };
    let still_there = sub.plan_id == stored.from_plan_id
        && sub.current_period_end == Some(stored.period_end)
        && sub.renewal_payment_id.is_none()
        && matches!(status_of(&sub)?, SubscriptionStatus::Active | SubscriptionStatus::Canceled)
        && has_access_now(&sub, now)?;
    if !still_there {
        return Ok(None);
    }
    let plan = plans::load(conn, stored.from_plan_id).await?;
    let target = plans::load(conn, stored.to_plan_id).await?;
    let applied = apply(conn, now, tenant, &mut sub, &plan, &target, &stored, Some(payment)).await?;
    payment.period_start = sub.current_period_start;
    payment.period_end = sub.current_period_end;
    Ok(Some(applied))
}

/// Switches the subscription to the new plan now; a restart begins a new period
/// (the old period's usage is billed first).
#[allow(clippy::too_many_arguments)]
async fn apply(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut SubscriptionRow,
    plan: &Plan,
    target: &Plan,
    stored: &StoredChange,
    payment: Option<&PaymentRow>,
) -> ServiceResult<Applied> {
    if stored.restarts {
        usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
        if let Some(end) = sub.current_period_end {
            crate::db::usage::rekey(conn, sub.id, end, now).await?;
        }
        sub.current_period_start = Some(now);
        sub.current_period_end = Some(period_end(now, now, target.period, tenant.tz));
        sub.anchor_at = Some(now);
        if status_of(sub)? == SubscriptionStatus::Active {
            sub.auto_renew = target.auto_renew;
        }
        sub.next_charge_at = if sub.auto_renew { sub.current_period_end } else { None };
    }
    // Raised limits: a quota used up under the old plan may be used up again.
    if let Some(start) = sub.current_period_start {
        let limits: Vec<(&str, i64)> = target.quotas.iter().map(|(m, q)| (m.as_str(), q.limit())).collect();
        crate::db::usage::rearm_exhausted(conn, sub.id, start, &limits).await?;
    }
    let version = target.price_at(now)?;
    sub.plan_id = target.id;
    sub.price_id = Some(version.id);
    sub.paid_amount = Some(version.price.amount());
    sub.scheduled_plan_id = None;
    let status = status_of(sub)?;
    let payment_id = payment.map(|p| p.id);
    let details = json!({"from_plan": stored.from_plan, "to_plan": stored.to_plan, "payment_id": payment_id});
    subscriptions::transition(conn, sub, status, "plan_changed", now, Some(details)).await?;
    scheduler::advance(conn, now, tenant, target, sub).await?;
    let paid = match payment {
        Some(p) => payments::money_of(p)?,
        None => Money::zero(version.price.currency()),
    };
    let total = money(&stored.total)?;
    // Below the minimum charge nothing was collected: the difference is waived.
    let waived = if payment.is_none() && total.amount() > rust_decimal::Decimal::ZERO {
        total
    } else {
        Money::zero(total.currency())
    };
    let parts = PlanChangeParts { paid, credit: money(&stored.credit)?, charge: money(&stored.charge)?, waived };
    let extra: Value = json!({
        "from_plan": stored.from_plan,
        "to_plan": stored.to_plan,
        "effective": "now",
        "restarts": stored.restarts,
        "amount_due": MoneyView::from(paid),
        "credit": stored.credit,
        "charge": stored.charge,
        "payment_id": payment_id,
    });
    let events = vec![subscription_event(tenant, sub, &target.code, "subscription.plan_changed", extra)];
    let description = format!("{}: переход с тарифа {} на {}", tenant.name, plan.name, target.name);
    Ok(Applied { events, posting: Posting::plan_change(description, sub.customer_id, parts) })
}
