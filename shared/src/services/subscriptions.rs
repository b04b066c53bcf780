//! Subscriptions: views, state transitions and activation.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::plans::Plan;
use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::schema::plans;
use crate::db::subscriptions::{self as db, SubscriptionRow};
use crate::domain::money::{Currency, Money, MoneyView};
use crate::domain::period::period_end;
use crate::domain::states::PaymentStatus;
use crate::domain::subscription::{AccessFacts, SubscriptionStatus, has_access};
use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    pub from: Option<SubscriptionStatus>,
    pub to: SubscriptionStatus,
    pub cause: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: SubscriptionStatus,
    /// Plan code.
    pub plan: String,
    pub auto_renew: bool,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub next_charge_at: Option<DateTime<Utc>>,
    /// Plan code that takes over at the next period (a scheduled downgrade).
    pub scheduled_plan: Option<String>,
    /// Access after a failed renewal lasts until this instant.
    pub grace_until: Option<DateTime<Utc>>,
    /// What was paid for the current period's tariff.
    pub paid_amount: Option<MoneyView>,
    /// End of the last paid extension queued after the current period.
    pub paid_through: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// The renewal payment being collected (dunning), if any.
    pub renewal_payment_id: Option<Uuid>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When dunning gives up unless paid.
    pub dunning_ends_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every transition with its cause and time, oldest first.
    pub history: Vec<TransitionView>,
}

pub fn status_of(row: &SubscriptionRow) -> ServiceResult<SubscriptionStatus> {
    Ok(row.status)
}

pub fn access_facts(row: &SubscriptionRow) -> ServiceResult<AccessFacts> {
    Ok(AccessFacts {
        status: status_of(row)?,
        auto_renew: row.auto_renew,
        period_end: row.current_period_end,
        grace_until: row.grace_until,
    })
}

pub fn has_access_now(row: &SubscriptionRow, now: DateTime<Utc>) -> ServiceResult<bool> {
    Ok(has_access(access_facts(row)?, now))
}

async fn plan_code(conn: &mut AsyncPgConnection, id: Uuid) -> ServiceResult<String> {
    Ok(plans::table.find(id).select(plans::code).first(conn).await?)
}

pub async fn view(conn: &mut AsyncPgConnection, row: &SubscriptionRow) -> ServiceResult<SubscriptionView> {
    let plan = plan_code(conn, row.plan_id).await?;
    let scheduled_plan = match row.scheduled_plan_id {
        Some(id) => Some(plan_code(conn, id).await?),
        None => None,
    };
    let history = db::history(conn, row.id)
        .await?
        .into_iter()
        .map(|t| TransitionView { from: t.from_status, to: t.to_status, cause: t.cause, at: t.at, details: t.details })
        .collect();
    Ok(SubscriptionView {
        id: row.id,
        customer_id: row.customer_id,
        status: status_of(row)?,
        plan,
        auto_renew: row.auto_renew,
        current_period_start: row.current_period_start,
        current_period_end: row.current_period_end,
        next_charge_at: row.next_charge_at,
        scheduled_plan,
        grace_until: row.grace_until,
        paid_amount: row
            .paid_amount
            .map(|a| Money::new(a, Currency::Rub).map(MoneyView::from))
            .transpose()
            .map_err(|e| corrupt("subscription paid amount", e))?,
        paid_through: row.paid_through,
        canceled_at: row.canceled_at,
        renewal_payment_id: row.renewal_payment_id,
        next_retry_at: row.next_retry_at,
        dunning_ends_at: row.dunning_ends_at,
        created_at: row.created_at,
        history,
    })
}

pub async fn load(conn: &mut AsyncPgConnection, tenant: &Tenant, id: Uuid) -> ServiceResult<SubscriptionRow> {
    db::find(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("subscription_not_found", "no such subscription"))
}

pub async fn get(conn: &mut AsyncPgConnection, tenant: &Tenant, id: Uuid) -> ServiceResult<SubscriptionView> {
    let row = load(conn, tenant, id).await?;
    view(conn, &row).await
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    customer_id: Option<Uuid>,
    page: PageRequest,
) -> ServiceResult<Page<SubscriptionView>> {
    let rows = db::list_for_customer(conn, tenant.id, customer_id, page.starting_after, page.fetch()).await?;
    let mut views = Vec::with_capacity(rows.len());
    for r in &rows {
        views.push(view(conn, r).await?);
    }
    Ok(Page::from_rows(views, page, |v| v))
}

/// Moves the row to `to` and records the transition (the caller saves the row).
pub async fn transition(
    conn: &mut AsyncPgConnection,
    row: &mut SubscriptionRow,
    to: SubscriptionStatus,
    cause: &str,
    at: DateTime<Utc>,
    details: Option<Value>,
) -> ServiceResult<()> {
    let from = row.status;
    row.status = to;
    db::record_transition(conn, row.id, Some(from), to, cause, at, details).await?;
    Ok(())
}

/// `data` of subscription events.
pub fn event_data(row: &SubscriptionRow, plan_code: &str, extra: Value) -> Value {
    let mut data = json!({
        "subscription_id": row.id,
        "customer_id": row.customer_id,
        "plan": plan_code,
        "status": row.status,
        "auto_renew": row.auto_renew,
        "current_period_start": row.current_period_start,
        "current_period_end": row.current_period_end,
        "next_charge_at": row.next_charge_at,
    });
    if let (Some(d), Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    data
}

/// Emits a subscription event ordered by the subscription.
pub async fn emit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    row: &SubscriptionRow,
    plan_code: &str,
    event_type: &'static str,
    extra: Value,
) -> ServiceResult<Uuid> {
    Ok(outbox::emit(conn, now, NewEvent::event(tenant.id, row.id, event_type, event_data(row, plan_code, extra)))
        .await?)
}

/// Starts the first paid period at `now` (SPEC §4: the period starts when the
/// payment is confirmed): anchor = start, next charge at the end for auto-renew
/// plans. The caller saves the row (through the scheduler's `advance`) and emits
/// the events.
pub async fn activate(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    row: &mut SubscriptionRow,
    plan: &Plan,
    payment: &PaymentRow,
) -> ServiceResult<()> {
    let end = period_end(now, now, plan.period, tenant.tz);
    row.current_period_start = Some(now);
    row.current_period_end = Some(end);
    row.anchor_at = Some(now);
    row.paid_amount = Some(payment.amount);
    row.price_id = payment.price_id;
    row.next_charge_at = if row.auto_renew { Some(end) } else { None };
    row.grace_until = None;
    transition(conn, row, SubscriptionStatus::Active, "payment_succeeded", now, Some(json!({"payment_id": payment.id})))
        .await
}

/// Ends a subscription: its pending payments fail, nothing stays scheduled, and
/// `subscription.expired` is emitted. The caller saves the row.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    row: &mut SubscriptionRow,
    plan_code: &str,
    cause: &str,
) -> ServiceResult<()> {
    end(conn, now, tenant, row, plan_code, SubscriptionStatus::Expired, cause, json!({"cause": cause})).await
}

/// Ends a subscription as `expired` or `terminated` (the provider ended it early):
/// its pending payments fail, nothing stays scheduled, and the matching event is
/// emitted with `extra`. The caller saves the row.
#[allow(clippy::too_many_arguments)]
pub async fn end(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    row: &mut SubscriptionRow,
    plan_code: &str,
    to: SubscriptionStatus,
    cause: &str,
    extra: Value,
) -> ServiceResult<()> {
    for mut p in payments_db::pending_of_subscription(conn, row.id).await? {
        let expired = p.expires_at.is_some_and(|e| e <= now);
        p.status = PaymentStatus::Failed;
        p.failure_reason = Some(if expired { crate::domain::states::PAYMENT_EXPIRED } else { cause }.into());
        payments_db::save(conn, &p).await?;
        let data = super::payments::event_data(&p)?;
        outbox::emit(conn, now, NewEvent::event(tenant.id, row.id, "payment.failed", data)).await?;
    }
    transition(conn, row, to, cause, now, None).await?;
    row.next_charge_at = None;
    row.next_retry_at = None;
    row.dunning_ends_at = None;
    row.grace_until = None;
    row.due_at = None;
    let event = if to == SubscriptionStatus::Terminated { "subscription.terminated" } else { "subscription.expired" };
    emit(conn, now, tenant, row, plan_code, event, extra).await?;
    Ok(())
}
