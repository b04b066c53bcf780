//! Entitlements: may this customer use the product now, on which plan, with what
//! quota left?

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;

use super::customers;
use super::plans;
use super::tenants::Tenant;
use super::usage;
use crate::db::subscriptions as subs_db;
use crate::domain::ids::{CustomerId, SubscriptionId};
use crate::domain::plan::{MetricKind, QuotaMode};
use crate::domain::subscription::SubscriptionStatus;
use crate::domain::usage::{Usage, remaining};
use crate::error::ServiceResult;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricEntitlement {
    pub limit: i64,
    /// Counter: units used in the current period. Gauge: the latest level.
    pub used: i64,
    /// Gauge: the period's highest level (what is billed); counter: `used`.
    pub peak: i64,
    pub kind: MetricKind,
    /// `limit - used`, never below zero.
    pub remaining: i64,
    pub mode: QuotaMode,
    /// False once a `block` metric is used up.
    pub access: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Entitlements {
    pub access: bool,
    pub subscription_id: Option<SubscriptionId>,
    /// Plan code.
    pub plan: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub period_end: Option<DateTime<Utc>>,
    pub metrics: BTreeMap<String, MetricEntitlement>,
}

/// The customer's entitlements at `now`, read in one statement (customer, live
/// subscription and its counters: `subscriptions::live_with_counters`) plus the
/// plan from this process's cache (a plan's code and quotas never change). A
/// customer without a live subscription costs a second read, to tell it from an
/// unknown customer. Exact: a usage batch or payment committed before the call is
/// in the answer.
///
/// Errors: 404 `customer_not_found`; stored data that does not parse.
pub async fn get(
    conn: &AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    customer_id: CustomerId,
) -> ServiceResult<Entitlements> {
    let Some(live) = subs_db::live_with_counters(conn, tenant.id, customer_id).await? else {
        customers::load(conn, tenant, customer_id).await?;
        return Ok(Entitlements {
            access: false,
            subscription_id: None,
            plan: None,
            status: None,
            period_end: None,
            metrics: BTreeMap::new(),
        });
    };
    let sub = live.subscription;
    let access = sub.has_access(now);
    let plan = plans::load_cached(conn, sub.plan_id).await?;
    let tz = super::stored_time_zone(&live.customer_time_zone)?;
    let key = usage::current_key(now, &sub, &plan, tz);
    let usage: HashMap<&str, Usage> = live
        .counters
        .iter()
        .filter(|c| Some(c.period_start) == key)
        .map(|c| (c.metric.as_str(), Usage { used: c.used, peak: c.peak }))
        .collect();
    let metrics = plan
        .quotas
        .iter()
        .map(|(name, q)| {
            let used = usage.get(name.as_str()).copied().unwrap_or_default();
            let (remaining, metric_access) = remaining(q, used);
            let entitlement = MetricEntitlement {
                limit: q.limit(),
                used: used.used,
                peak: used.peak,
                kind: q.kind(),
                remaining,
                mode: q.mode(),
                access: access && metric_access,
            };
            (name.clone(), entitlement)
        })
        .collect();
    Ok(Entitlements {
        access,
        subscription_id: Some(sub.id),
        plan: Some(plan.code),
        status: Some(sub.status),
        period_end: sub.current_period_end,
        metrics,
    })
}
