//! Subscriptions: views, loading and storing the aggregate, and recording what a
//! domain transition did (`domain::subscription`): its history entry and its
//! events, in the caller's transaction.
//!
//! Use cases only set `due_at` ([`set_due_at`]: the domain's `schedule::due_at`); the
//! worker's scheduler alone performs what is due.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::plans::{self, Plan};
use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt};
use crate::db::outbox::{self, EventData, NewEvent};
use crate::db::payments as payments_db;
use crate::db::pipeline;
use crate::db::subscriptions as db;
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId};
use crate::domain::money::{Currency, Money, MoneyView};
use crate::domain::states::{PAYMENT_EXPIRED, PaymentStatus};
use crate::domain::subscription::schedule::due_at;
use crate::domain::subscription::{
    Cause, Change, Event, EventKind, InvalidTransition, Subscription, SubscriptionStatus,
};
use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TransitionView {
    pub from: Option<SubscriptionStatus>,
    pub to: SubscriptionStatus,
    /// Why: `purchase`, `payment_succeeded`, `renewed`, `renewal_declined`,
    /// `grace_ended`, `canceled`, `plan_changed`, `plan_change_scheduled`, ...
    pub cause: String,
    pub at: DateTime<Utc>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: SubscriptionId,
    pub customer_id: CustomerId,
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
    pub renewal_payment_id: Option<PaymentId>,
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When dunning gives up unless paid.
    pub dunning_ends_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Every change with its cause and time, oldest first.
    pub history: Vec<TransitionView>,
}

pub async fn view(conn: &mut AsyncPgConnection, sub: &Subscription) -> ServiceResult<SubscriptionView> {
    let plan = plans::code_of(conn, sub.plan_id).await?;
    let scheduled_plan = match sub.scheduled_plan_id {
        Some(id) => Some(plans::code_of(conn, id).await?),
        None => None,
    };
    let history = db::history(conn, sub.id)
        .await?
        .into_iter()
        .map(|t| TransitionView {
            from: t.from,
            to: t.to,
            cause: t.cause.as_str().to_owned(),
            at: t.at,
            details: t.details,
        })
        .collect();
    Ok(SubscriptionView {
        id: sub.id,
        customer_id: sub.customer_id,
        status: sub.status,
        plan,
        auto_renew: sub.auto_renew,
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        next_charge_at: sub.next_charge_at,
        scheduled_plan,
        grace_until: sub.grace_until,
        paid_amount: sub
            .paid_amount
            .map(|a| Money::new(a, Currency::Rub).map(MoneyView::from))
            .transpose()
            .map_err(|e| corrupt("subscription paid amount", e))?,
        paid_through: sub.paid_through,
        canceled_at: sub.canceled_at,
        renewal_payment_id: sub.renewal_payment_id,
        next_retry_at: sub.next_retry_at,
        dunning_ends_at: sub.dunning_ends_at,
        created_at: sub.created_at,
        history,
    })
}

fn not_found() -> ServiceError {
    ServiceError::not_found("subscription_not_found", "no such subscription")
}

pub async fn load(conn: &mut AsyncPgConnection, tenant: &Tenant, id: SubscriptionId) -> ServiceResult<Subscription> {
    db::find(conn, tenant.id, id).await?.ok_or_else(not_found)
}

/// The tenant's subscription locked, with its plan.
pub async fn lock(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    id: SubscriptionId,
) -> ServiceResult<(Subscription, Plan)> {
    load(conn, tenant, id).await?;
    let sub = db::find_for_update(conn, id).await?.ok_or_else(not_found)?;
    let plan = plans::load(conn, sub.plan_id).await?;
    Ok((sub, plan))
}

/// A subscription the caller knows exists, locked.
pub async fn lock_by_id(conn: &mut AsyncPgConnection, id: SubscriptionId) -> ServiceResult<Subscription> {
    db::find_for_update(conn, id).await?.ok_or_else(|| ServiceError::Internal(format!("subscription {id} vanished")))
}

pub async fn get(conn: &mut AsyncPgConnection, tenant: &Tenant, id: SubscriptionId) -> ServiceResult<SubscriptionView> {
    let sub = load(conn, tenant, id).await?;
    view(conn, &sub).await
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    customer_id: Option<CustomerId>,
    status: Option<SubscriptionStatus>,
    page: PageRequest,
) -> ServiceResult<Page<SubscriptionView>> {
    let subs = db::list_for_customer(conn, tenant.id, customer_id, status, page.starting_after, page.fetch()).await?;
    let mut views = Vec::with_capacity(subs.len());
    for s in &subs {
        views.push(view(conn, s).await?);
    }
    Ok(Page::from_rows(views, page, |v| v))
}

/// A transition the state did not allow: the request conflicts with it (409).
pub fn conflict(code: &'static str) -> impl FnOnce(InvalidTransition) -> ServiceError {
    move |e| ServiceError::conflict(code, e.to_string())
}

/// A transition the state should always allow at this point: a bug, not a conflict.
pub fn unexpected(e: InvalidTransition) -> ServiceError {
    ServiceError::Internal(format!("unexpected subscription transition: {e}"))
}

/// `data` of subscription events: the subscription's ids, plan, status, auto-renewal
/// and dates, then the transition's `extra` keys (API.md, "Events to product
/// backends"). Serialized straight from here (no JSON tree built; bench/README,
/// "Events serialized from their types"). No `extra` names a key of its own
/// (`domain::subscription`); one that did would still win, as the stored `jsonb`
/// keeps a key's last value.
#[derive(Serialize)]
struct SubscriptionEvent<'a> {
    subscription_id: SubscriptionId,
    customer_id: CustomerId,
    plan: &'a str,
    status: SubscriptionStatus,
    auto_renew: bool,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    next_charge_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

/// The outbox message of a subscription event ([`SubscriptionEvent`]), ordered by
/// the subscription; `extra` other than a JSON object adds nothing. Errors:
/// `Internal` if the payload does not serialize (never in practice: its keys are
/// strings).
pub fn event(
    tenant: &Tenant,
    sub: &Subscription,
    plan_code: &str,
    kind: EventKind,
    extra: Value,
) -> ServiceResult<NewEvent> {
    let none = serde_json::Map::new();
    let data = SubscriptionEvent {
        subscription_id: sub.id,
        customer_id: sub.customer_id,
        plan: plan_code,
        status: sub.status,
        auto_renew: sub.auto_renew,
        current_period_start: sub.current_period_start,
        current_period_end: sub.current_period_end,
        next_charge_at: sub.next_charge_at,
        extra: match &extra {
            Value::Object(keys) => keys,
            _ => &none,
        },
    };
    let data =
        EventData::of(&data).map_err(|e| ServiceError::Internal(format!("subscription {} event: {e}", sub.id)))?;
    Ok(NewEvent::event(tenant.id, sub.id, kind.as_str(), data))
}

/// Records what a transition did: its history entry, and its events (with the
/// subscription as it is now).
pub async fn record(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
    plan_code: &str,
    change: Change,
) -> ServiceResult<()> {
    let events = events_of(tenant, sub, plan_code, change.events)?;
    let (recorded, emitted) =
        futures_util::future::join(db::record(conn, sub.id, &change.history), outbox::emit_many(conn, now, events))
            .await;
    Ok(pipeline::outcome([recorded, emitted.map(drop)])?)
}

fn events_of(tenant: &Tenant, sub: &Subscription, plan_code: &str, events: Vec<Event>) -> ServiceResult<Vec<NewEvent>> {
    events.into_iter().map(|e| event(tenant, sub, plan_code, e.kind, e.extra)).collect()
}

/// Sets when the scheduler next looks at the subscription (a notice, a renewal, an
/// end: `schedule::due_at` with the tenant's notice days); every write of it does.
pub fn set_due_at(now: DateTime<Utc>, tenant: &Tenant, sub: &mut Subscription) {
    sub.due_at = due_at(now, sub, tenant.policy.renewal_notice_days);
}

/// Stores the subscription with its next due instant.
pub async fn store(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
) -> ServiceResult<()> {
    set_due_at(now, tenant, sub);
    db::save(conn, sub).await?;
    Ok(())
}

/// [`record`] and [`store`]: a use case's transition, done (its three statements
/// in one round trip: [`pipeline`]; the subscription is locked by the caller).
pub async fn commit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
    plan_code: &str,
    change: Change,
) -> ServiceResult<()> {
    let (staged, events) = stage(now, tenant, sub, plan_code, change)?;
    let (written, emitted) = futures_util::future::join(staged.write(conn), outbox::emit_many(conn, now, events)).await;
    Ok(pipeline::outcome([written, emitted.map(drop)])?)
}

/// A transition decided but not written yet: the subscription as it will be
/// stored and its history entry. [`stage`] makes one; the caller sends
/// [`Staged::write`] together with its own independent writes (one round trip,
/// [`pipeline`]) and emits the events [`stage`] returned after its own. Dropped
/// unwritten, the transition is lost: hence `must_use`.
#[must_use]
pub struct Staged {
    sub: Subscription,
    history: crate::domain::subscription::HistoryEntry,
}

impl Staged {
    /// The history entry and the subscription row: two statements, pipelined
    /// (the subscription locked by whoever staged it).
    pub async fn write(&self, conn: &AsyncPgConnection) -> QueryResult<()> {
        let (recorded, saved) =
            futures_util::future::join(db::record(conn, self.sub.id, &self.history), db::save(conn, &self.sub)).await;
        pipeline::outcome([recorded, saved])
    }

    /// [`Staged::write`] of a transition, if there is one (for a pipeline).
    pub async fn write_if_any(staged: Option<&Staged>, conn: &AsyncPgConnection) -> QueryResult<()> {
        match staged {
            Some(s) => s.write(conn).await,
            None => Ok(()),
        }
    }
}

/// What a captured payment paid for (or a plan switch with nothing to pay did): the
/// events that follow `payment.succeeded`, how the money is booked when it is not a
/// plain charge, and the subscription's transition, staged for the caller's round
/// trip of writes (none when no subscription changed).
#[derive(Default)]
#[must_use]
pub struct Applied {
    pub events: Vec<crate::db::outbox::NewEvent>,
    pub posting: Option<crate::domain::ledger::Posting>,
    pub staged: Option<Staged>,
}

/// Like [`commit`], but writes nothing: returns the transition staged for the
/// caller's own round trip, and its events for the caller to emit after its own
/// (a payment's events go out before what the payment did to the subscription).
/// Errors: [`event`]'s.
pub fn stage(
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
    plan_code: &str,
    change: Change,
) -> ServiceResult<(Staged, Vec<NewEvent>)> {
    set_due_at(now, tenant, sub);
    let events = events_of(tenant, sub, plan_code, change.events)?;
    Ok((Staged { sub: sub.clone(), history: change.history }, events))
}

/// Ends a subscription as `expired` or `terminated`: its pending payments fail
/// (`payment.failed`; expired ones as `expired`), nothing stays scheduled, the
/// end is recorded with `extra` on its event. The caller stores it.
#[allow(clippy::too_many_arguments)]
pub async fn end(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
    plan_code: &str,
    to: SubscriptionStatus,
    cause: Cause,
    extra: Value,
) -> ServiceResult<()> {
    fail_pending_payments(conn, now, tenant, sub, cause).await?;
    let change = sub.end(now, to, cause, extra).map_err(unexpected)?;
    record(conn, now, tenant, sub, plan_code, change).await
}

/// [`end`] as `expired` with `cause`.
pub async fn expire(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &mut Subscription,
    plan_code: &str,
    cause: Cause,
) -> ServiceResult<()> {
    end(conn, now, tenant, sub, plan_code, SubscriptionStatus::Expired, cause, json!({"cause": cause.as_str()})).await
}

/// The subscription's unpaid payments fail with it.
pub async fn fail_pending_payments(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    sub: &Subscription,
    cause: Cause,
) -> ServiceResult<()> {
    for mut p in payments_db::pending_of_subscription(conn, sub.id).await? {
        let expired = p.expires_at.is_some_and(|e| e <= now);
        p.status = PaymentStatus::Failed;
        p.failure_reason = Some(if expired { PAYMENT_EXPIRED } else { cause.as_str() }.into());
        payments_db::save(conn, &p).await?;
        let data = super::payments::event_data(&p)?;
        outbox::emit(conn, now, NewEvent::event(tenant.id, sub.id, "payment.failed", data)).await?;
    }
    Ok(())
}
