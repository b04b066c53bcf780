//! Entitlements: may this customer use the product now, on which plan, with what
//! quota left?

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::customers;
use super::plans;
use super::subscriptions::{has_access_now, status_of};
use super::tenants::Tenant;
use crate::db::subscriptions as subs_db;
use crate::domain::plan::QuotaMode;
use crate::domain::subscription::SubscriptionStatus;
use crate::error::ServiceResult;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricEntitlement {
    pub limit: i64,
    pub used: i64,
    /// `limit - used`, never below zero.
    pub remaining: i64,
    pub mode: QuotaMode,
    /// False once a `block` metric is used up.
    pub access: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entitlements {
    pub access: bool,
    pub subscription_id: Option<Uuid>,
    /// Plan code.
    pub plan: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub period_end: Option<DateTime<Utc>>,
    pub metrics: BTreeMap<String, MetricEntitlement>,
}

pub async fn get(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: Uuid,
) -> ServiceResult<Entitlements> {
    let customer = customers::load(conn, tenant, customer_id).await?;
    let none = Entitlements {
        access: false,
        subscription_id: None,
        plan: None,
        status: None,
        period_end: None,
        metrics: BTreeMap::new(),
    };
    let Some(sub) = subs_db::find_live(conn, customer.id).await? else {
        return Ok(none);
    };
    let access = has_access_now(&sub, now)?;
    let plan = plans::load(conn, sub.plan_id).await?;
    let metrics = plan
        .quotas
        .iter()
        .map(|(name, q)| {
            let used = 0;
            let remaining = (q.limit - used).max(0);
            let metric_access = access && (q.mode == QuotaMode::Overage || remaining > 0);
            (name.clone(), MetricEntitlement { limit: q.limit, used, remaining, mode: q.mode, access: metric_access })
        })
        .collect();
    Ok(Entitlements {
        access,
        subscription_id: Some(sub.id),
        plan: Some(plan.code),
        status: Some(status_of(&sub)?),
        period_end: sub.current_period_end,
        metrics,
    })
}
