//! Maintenance extension (SellerGPT 3.2.10, SPEC §4): an operator records N days
//! of maintenance and every subscription of the tenant with access at that moment
//! moves its period end, anchor, next charge and queued paid extensions by N local
//! days. Renewal and expiry notices follow the new dates (they are keyed by the
//! period end, so the scheduler sends them again).
//!
//! Subscriptions whose renewal is in flight or in dunning (`past_due`) are not
//! shifted: their period has already ended and a charge decides what follows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::plans;
use super::scheduler;
use super::subscriptions::{self, status_of};
use super::tenants::{self, Tenant};
use crate::db::payments::PaymentRow;
use crate::db::schema::{maintenance_extensions as mx, payments, subscriptions as subs};
use crate::db::subscriptions::SubscriptionRow;
use crate::domain::period::shift_days;
use crate::domain::states::{PaymentKind, PaymentStatus};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};

pub const MAX_DAYS: u32 = 365;

/// `POST /v1/admin/tenants/{id}/maintenance` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSpec {
    /// Days of maintenance to give back, 1 to 365.
    pub days: u32,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MaintenanceView {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub days: u32,
    pub reason: String,
    pub applied_at: DateTime<Utc>,
    /// Subscriptions whose dates moved.
    pub subscriptions: usize,
}

/// Moves one subscription's dates by `days` local days.
fn shift(sub: &mut SubscriptionRow, days: u32, tz: chrono_tz::Tz) {
    let by = |t: Option<DateTime<Utc>>| t.map(|t| shift_days(t, days, tz));
    sub.current_period_end = by(sub.current_period_end);
    sub.anchor_at = by(sub.anchor_at);
    sub.next_charge_at = by(sub.next_charge_at);
    sub.paid_through = by(sub.paid_through);
}

pub async fn record(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant_id: Uuid,
    spec: MaintenanceSpec,
) -> ServiceResult<MaintenanceView> {
    if !(1..=MAX_DAYS).contains(&spec.days) {
        return Err(ServiceError::validation(format!("days must be between 1 and {MAX_DAYS}")));
    }
    let reason = spec.reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ServiceError::validation("reason must be 1 to 500 characters"));
    }
    let tenant: Tenant = tenants::load(conn, tenant_id).await?;
    let candidates: Vec<SubscriptionRow> = subs::table
        .filter(subs::tenant_id.eq(tenant.id))
        .filter(subs::status.eq_any([
            SubscriptionStatus::Trialing,
            SubscriptionStatus::Active,
            SubscriptionStatus::Canceled,
        ]))
        .filter(subs::current_period_end.gt(now))
        .filter(subs::renewal_payment_id.is_null())
        .order(subs::id)
        .for_update()
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await?;
    let id = Uuid::now_v7();
    let mut shifted = 0;
    for mut sub in candidates {
        let previous_end = sub.current_period_end;
        // Paid extensions queued after the current period move with it.
        let queued: Vec<PaymentRow> = payments::table
            .filter(payments::subscription_id.eq(sub.id))
            .filter(payments::kind.eq(PaymentKind::Extension))
            .filter(payments::status.eq(PaymentStatus::Succeeded))
            .filter(payments::period_start.ge(previous_end.unwrap_or(now)))
            .select(PaymentRow::as_select())
            .load(conn)
            .await?;
        for mut p in queued {
            p.period_start = p.period_start.map(|t| shift_days(t, spec.days, tenant.tz));
            p.period_end = p.period_end.map(|t| shift_days(t, spec.days, tenant.tz));
            crate::db::payments::save(conn, &p).await?;
        }
        shift(&mut sub, spec.days, tenant.tz);
        if let (Some(from), Some(to)) = (previous_end, sub.current_period_end) {
            crate::db::usage::rekey(conn, sub.id, from, to).await?;
        }
        let status = status_of(&sub)?;
        let details = json!({"maintenance_id": id, "days": spec.days, "previous_period_end": previous_end});
        subscriptions::transition(conn, &mut sub, status, "maintenance_extension", now, Some(details)).await?;
        let plan = plans::load_cached(conn, sub.plan_id).await?;
        let extra =
            json!({"days": spec.days, "reason": reason, "previous_period_end": previous_end, "maintenance_id": id});
        subscriptions::emit(conn, now, &tenant, &sub, &plan.code, "subscription.period_shifted", extra).await?;
        scheduler::advance(conn, now, &tenant, &plan, &mut sub).await?;
        shifted += 1;
    }
    diesel::insert_into(mx::table)
        .values((
            mx::id.eq(id),
            mx::tenant_id.eq(tenant.id),
            mx::days.eq(i32::try_from(spec.days).unwrap_or(i32::MAX)),
            mx::reason.eq(&reason),
            mx::applied_at.eq(now),
            mx::subscriptions.eq(i32::try_from(shifted).unwrap_or(i32::MAX)),
            mx::created_at.eq(now),
        ))
        .execute(conn)
        .await?;
    Ok(MaintenanceView { id, tenant_id: tenant.id, days: spec.days, reason, applied_at: now, subscriptions: shifted })
}
