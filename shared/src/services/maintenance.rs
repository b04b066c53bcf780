//! Maintenance extension (SellerGPT 3.2.10, SPEC §4): an operator records N days
//! of maintenance and every subscription of the tenant with access at that moment
//! moves its period end, anchor, next charge and queued paid extensions by N local
//! days. Renewal and expiry notices follow the new dates (they are keyed by the
//! period end, so the scheduler sends them again).
//!
//! Subscriptions whose renewal is in flight or in dunning (`past_due`) are not
//! shifted: their period has already ended and a charge decides what follows.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::plans;
use super::subscriptions::{self, unexpected};
use super::tenants::{self, Tenant};
use crate::db::payments as payments_db;
use crate::db::subscriptions as subs_db;
use crate::domain::ids::TenantId;
use crate::domain::period::shift_days;
use crate::error::{ServiceError, ServiceResult};

pub const MAX_DAYS: u32 = 365;

/// `POST /v1/admin/tenants/{id}/maintenance` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"days": 2, "reason": "Outage on 2026-03-10"})))]
pub struct MaintenanceSpec {
    /// Days of maintenance to give back, 1 to 365.
    #[schema(minimum = 1, maximum = 365)]
    pub days: u32,
    #[schema(min_length = 1, max_length = 500, pattern = r"\S")]
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MaintenanceView {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub days: u32,
    pub reason: String,
    pub applied_at: DateTime<Utc>,
    /// Subscriptions whose dates moved.
    pub subscriptions: usize,
}

pub async fn record(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant_id: TenantId,
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
    let candidates = subs_db::lock_shiftable(conn, tenant.id, now).await?;
    let id = Uuid::now_v7();
    let mut shifted = 0;
    for mut sub in candidates {
        let previous_end = sub.current_period_end;
        // Paid extensions queued after the current period move with it.
        for mut p in payments_db::queued_extensions(conn, sub.id, previous_end.unwrap_or(now)).await? {
            p.period_start = p.period_start.map(|t| shift_days(t, spec.days, tenant.tz));
            p.period_end = p.period_end.map(|t| shift_days(t, spec.days, tenant.tz));
            payments_db::save(conn, &p).await?;
        }
        let change = sub.shift_period(now, spec.days, tenant.tz, id, &reason).map_err(unexpected)?;
        if let (Some(from), Some(to)) = (previous_end, sub.current_period_end) {
            crate::db::usage::rekey(conn, sub.id, from, to).await?;
        }
        let plan_code = plans::code_of(conn, sub.plan_id).await?;
        subscriptions::commit(conn, now, &tenant, &mut sub, &plan_code, change).await?;
        shifted += 1;
    }
    crate::db::tenants::record_maintenance(conn, id, tenant.id, spec.days, &reason, now, shifted).await?;
    Ok(MaintenanceView { id, tenant_id: tenant.id, days: spec.days, reason, applied_at: now, subscriptions: shifted })
}
