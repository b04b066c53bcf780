//! Applying a plan change now (SPEC §4): an upgrade once its amount due is paid,
//! or at once below the 1.00 minimum. A restart with credit bills the ended
//! period's usage and starts a new full period; quotas used up under the old plan
//! may be used up again under the new one. The ledger books the payment, the
//! unused-time credit and the new charge (and a waived remainder) as separate pairs.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::payments;
use super::plans::{self, Plan};
use super::subscriptions::{self, Applied, unexpected};
use super::tenants::Tenant;
use super::{corrupt, usage};
use crate::db::payments::PaymentRow;
use crate::domain::ids::SubscriptionId;
use crate::domain::ledger::{Funding, PlanChangeParts, Posting};
use crate::domain::money::{Money, MoneyView};
use crate::domain::subscription::changes::PlanSwitch;
use crate::domain::subscription::{PlanRef, Subscription, SubscriptionStatus};
use crate::error::ServiceResult;

/// What an upgrade's payment stores about its quote, checked again when it is paid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredChange {
    pub from_plan_id: Uuid,
    pub to_plan_id: Uuid,
    pub from_plan: String,
    pub to_plan: String,
    /// The period the quote was made for: a payment arriving after it changed is
    /// not applied (it waits on the balance, to be refunded).
    pub period_end: DateTime<Utc>,
    pub restarts: bool,
    pub credit: MoneyView,
    pub charge: MoneyView,
    pub total: MoneyView,
    pub remaining_days: i64,
    pub period_days: i64,
}

fn money(v: &MoneyView) -> ServiceResult<Money> {
    v.money().map_err(|e| corrupt("plan change amount", e))
}

/// An upgrade payment was captured: the change applies if the subscription is
/// still where the quote found it; otherwise `None` (the money waits on the
/// customer's balance, to be refunded).
pub async fn apply_paid(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub_id: SubscriptionId,
    payment: &mut PaymentRow,
) -> ServiceResult<Option<Applied>> {
    let Some(stored) = payment.plan_change.clone() else { return Ok(None) };
    let stored: StoredChange = serde_json::from_value(stored).map_err(|e| corrupt("plan change", e))?;
    let mut sub = subscriptions::lock_by_id(conn, sub_id).await?;
    let still_there = sub.plan_id == stored.from_plan_id
        && sub.current_period_end == Some(stored.period_end)
        && sub.renewal_payment_id.is_none()
        && matches!(sub.status, SubscriptionStatus::Active | SubscriptionStatus::Canceled)
        && sub.has_access(now);
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

/// Switches the subscription to `target` now; a restart begins a new period (the
/// old period's usage is billed first). Returns the events, the ledger posting
/// and the staged subscription of the change, for the caller to write.
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
    plan: &Plan,
    target: &Plan,
    stored: &StoredChange,
    payment: Option<&PaymentRow>,
) -> ServiceResult<Applied> {
    let old_end = sub.current_period_end;
    if stored.restarts {
        usage::bill_ended_period(conn, now, tenant, sub, plan).await?;
    }
    let version = target.price_at(now)?;
    let paid = match payment {
        Some(p) => payments::funding_of(p)?,
        None => Funding::gateway(Money::zero(version.price.currency())),
    };
    let switch = PlanSwitch {
        from: PlanRef { id: plan.id, code: &plan.code, period: plan.period },
        to: PlanRef { id: target.id, code: &target.code, period: target.period },
        to_auto_renews: target.auto_renew,
        price_id: version.id,
        paid_amount: version.price.amount(),
        restarts: stored.restarts,
        payment_id: payment.map(|p| p.id),
        quote: json!({"amount_due": MoneyView::from(Money::round(paid.total(), paid.currency())), "credit": stored.credit, "charge": stored.charge}),
    };
    let change = sub.change_plan(now, &switch, tenant.tz).map_err(unexpected)?;
    if stored.restarts
        && let Some(end) = old_end
    {
        crate::db::usage::rekey(conn, sub.id, end, now).await?;
    }
    // Raised limits: a quota used up under the old plan may be used up again.
    if let Some(start) = sub.current_period_start {
        let limits: Vec<(&str, i64)> = target.quotas.iter().map(|(m, q)| (m.as_str(), q.limit())).collect();
        crate::db::usage::rearm_exhausted(conn, sub.id, start, &limits).await?;
    }
    // Written with the caller's writes; the events go out after the payment's own
    // (when there is one).
    let (staged, events) = subscriptions::stage(now, tenant, sub, &target.code, change)?;
    let total = money(&stored.total)?;
    // Below the minimum charge nothing was collected: the difference is waived.
    let waived = if payment.is_none() && total.amount() > rust_decimal::Decimal::ZERO {
        total
    } else {
        Money::zero(total.currency())
    };
    let parts = PlanChangeParts { paid, credit: money(&stored.credit)?, charge: money(&stored.charge)?, waived };
    let description = format!("{}: переход с тарифа {} на {}", tenant.name, plan.name, target.name);
    let posting = Posting::plan_change(description, sub.customer_id, parts);
    Ok(Applied { events, posting, staged: Some(staged) })
}
