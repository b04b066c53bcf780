//! Price versions (SPEC §3): a new price takes effect at its `effective_from`; an
//! increase must be announced at least the tenant's notice days before it (a
//! decrease needs none); every affected subscriber gets one `price_change.notice`;
//! a scheduled price can be cancelled before it takes effect.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::plans::{Plan, PlanView, PriceView, load_by_code, price_view};
use super::tenants::Tenant;
use crate::db::outbox::{self, NewEvent};
use crate::db::plans::{self as db, PriceRow};
use crate::db::subscriptions as subs_db;
use crate::domain::ids::{CustomerId, SubscriptionId};
use crate::domain::money::{Money, MoneyInput, MoneyView};
use crate::domain::plan::{PriceVersion, check_price_change, price_at};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};

/// `POST /v1/plans/{code}/prices` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"price": {"value": "790.00", "currency": "RUB"}, "effective_from": "2026-06-01T00:00:00Z"})))]
pub struct NewPriceSpec {
    pub price: MoneyInput,
    pub effective_from: DateTime<Utc>,
}

/// Statuses whose subscribers are affected by a price change of their plan.
const AFFECTED: [SubscriptionStatus; 5] = [
    SubscriptionStatus::PendingPayment,
    SubscriptionStatus::Trialing,
    SubscriptionStatus::Active,
    SubscriptionStatus::PastDue,
    SubscriptionStatus::Suspended,
];

/// Announces a new price version. Increases need the tenant's notice; every
/// affected subscriber gets one `price_change.notice`.
pub async fn add_price(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    code: &str,
    spec: NewPriceSpec,
) -> ServiceResult<PriceView> {
    let price = spec.price.money()?;
    let plan = load_by_code(conn, tenant, code).await?;
    db::lock(conn, plan.id).await?;
    if plan.archived_at.is_some() {
        return Err(ServiceError::conflict("plan_archived", "the plan is archived"));
    }
    let effective_from = spec.effective_from;
    let increase = check_price_change(&plan.prices, price, effective_from, now, tenant.policy.price_change_notice_days)
        .map_err(|e| ServiceError::invalid(e.code(), e.to_string()))?;
    let previous = price_at(&plan.prices, effective_from - chrono::TimeDelta::microseconds(1)).map(|p| p.price);
    let row = PriceRow {
        id: Uuid::now_v7(),
        plan_id: plan.id,
        amount: price.amount(),
        currency: price.currency().code().to_owned(),
        effective_from: Some(effective_from),
        announced_at: now,
        canceled_at: None,
    };
    db::insert_price(conn, &row).await?;
    let version =
        PriceVersion { id: row.id, price, effective_from: Some(effective_from), announced_at: now, canceled_at: None };
    let affected = subs_db::subscribers_of_plan(conn, plan.id, &AFFECTED).await?;
    let change = PriceChange { plan: &plan, version: &version, previous, increase };
    notify_price_change(conn, now, tenant, &change, &affected).await?;
    Ok(price_view(&version, "scheduled"))
}

/// A price version announced for a plan, with what it replaces.
pub struct PriceChange<'a> {
    pub plan: &'a Plan,
    pub version: &'a PriceVersion,
    pub previous: Option<Money>,
    pub increase: bool,
}

/// Sends `price_change.notice` once per (price version, subscription): the unique
/// key of `price_notices` makes a second send of the same notice a no-op.
pub async fn notify_price_change(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    change: &PriceChange<'_>,
    subscribers: &[(SubscriptionId, CustomerId)],
) -> ServiceResult<usize> {
    let mut sent = 0;
    for chunk in subscribers.chunks(1000) {
        let subs: Vec<SubscriptionId> = chunk.iter().map(|(sub, _)| *sub).collect();
        let inserted = db::record_price_notices(conn, change.version.id, &subs, now).await?;
        let events: Vec<NewEvent> = chunk
            .iter()
            .filter(|(sub, _)| inserted.contains(sub))
            .map(|(sub, customer)| {
                let data = json!({
                    "subscription_id": sub,
                    "customer_id": customer,
                    "plan": change.plan.code,
                    "price_id": change.version.id,
                    "old_price": change.previous.map(MoneyView::from),
                    "new_price": MoneyView::from(change.version.price),
                    "effective_from": change.version.effective_from,
                    "direction": if change.increase { "increase" } else { "decrease" },
                });
                NewEvent::event(tenant.id, *sub, "price_change.notice", data)
            })
            .collect();
        sent += events.len();
        outbox::emit_many(conn, now, events).await?;
    }
    Ok(sent)
}

/// Cancels a scheduled price before it takes effect.
pub async fn cancel_price(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    code: &str,
    price_id: Uuid,
) -> ServiceResult<PlanView> {
    let plan = load_by_code(conn, tenant, code).await?;
    db::lock(conn, plan.id).await?;
    let version = plan
        .prices
        .iter()
        .find(|p| p.id == price_id)
        .ok_or_else(|| ServiceError::not_found("price_not_found", "no such price version of this plan"))?;
    if version.canceled_at.is_some() {
        return Err(ServiceError::conflict("price_already_canceled", "the price version is already cancelled"));
    }
    if version.effective_from.is_none_or(|from| from <= now) {
        return Err(ServiceError::conflict("price_already_effective", "the price version is already in effect"));
    }
    db::cancel_price(conn, price_id, now).await?;
    load_by_code(conn, tenant, code).await?.view(now)
}
