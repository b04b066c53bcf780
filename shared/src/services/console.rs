//! What the operator console (`/console/`) shows, composed from the services' own
//! views so the console and the API never disagree: tenants with their
//! subscriptions by status and MRR, a subscription's timeline (history, payments
//! with their attempts, refunds and receipts, events), and a tenant's payments
//! per day. Read-only; the console's actions go through the same services as the
//! API (`refunds::review`, the dead-letter replay).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

use super::payments::{self, PaymentView};
use super::receipts::{self, ReceiptView};
use super::refunds::{self, RefundView};
use super::subscriptions::{self, SubscriptionView};
use super::tenants::Tenant;
use super::{Page, PageRequest};
use crate::db::attempts::{self, AttemptRow};
use crate::db::business_metrics;
use crate::db::customers as customers_db;
use crate::db::outbox::{self, EventEntry};
use crate::db::payments::PaymentFilter;
use crate::db::revenue::{self, Day};
use crate::db::tenants as tenants_db;
use crate::domain::ids::{CustomerId, SubscriptionId, TenantId};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::ServiceResult;

/// A tenant as the console's first page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    /// Subscriptions per status name, by name.
    pub subscriptions: BTreeMap<String, i64>,
    /// Monthly recurring revenue per currency, in major units rounded to kopecks
    /// for display (`db::business_metrics::sample`'s definition).
    pub mrr: BTreeMap<String, String>,
    /// Subscriptions whose scheduled action is due and not yet taken.
    pub renewals_due: i64,
}

/// Every tenant with its figures, by name. Counts whole tables (the worker's
/// business sample): an operator's page, not a per-request path.
pub async fn tenants(conn: &mut AsyncPgConnection, now: DateTime<Utc>) -> ServiceResult<Vec<TenantSummary>> {
    let mut summaries: Vec<TenantSummary> = tenants_db::names(conn)
        .await?
        .into_iter()
        .map(|(id, name)| TenantSummary {
            id,
            name,
            subscriptions: BTreeMap::new(),
            mrr: BTreeMap::new(),
            renewals_due: 0,
        })
        .collect();
    for s in business_metrics::sample(conn, now).await? {
        let Some(t) = summaries.iter_mut().find(|t| Uuid::from(t.id) == s.tenant) else { continue };
        // Counts are whole numbers carried as float8 by the sampling query.
        let count = s.value.round() as i64;
        match s.metric.as_str() {
            "subscriptions" => {
                t.subscriptions.insert(s.label, count);
            }
            "mrr" => {
                t.mrr.insert(s.label, format!("{:.2}", s.value));
            }
            "renewals_due" => t.renewals_due = count,
            _ => {}
        }
    }
    Ok(summaries)
}

/// The customer an operator typed: the customer's id, or the product's own
/// `external_id`. `None` when the tenant has no such customer.
pub async fn find_customer(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    typed: &str,
) -> ServiceResult<Option<CustomerId>> {
    let typed = typed.trim();
    if let Ok(id) = Uuid::parse_str(typed) {
        return Ok(customers_db::find(conn, tenant.id, CustomerId::from(id)).await?.map(|c| c.id));
    }
    Ok(customers_db::list(conn, tenant.id, Some(typed), None, 1).await?.into_iter().next().map(|c| c.id))
}

/// A tenant's subscriptions, optionally of one status and one customer (id or
/// external id: an unknown customer has none), oldest first, a page at a time.
pub async fn subscriptions(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    status: Option<SubscriptionStatus>,
    customer: Option<&str>,
    page: PageRequest,
) -> ServiceResult<Page<SubscriptionView>> {
    let customer_id = match customer {
        Some(typed) => match find_customer(conn, tenant, typed).await? {
            Some(id) => Some(id),
            None => return Ok(Page { data: Vec::new(), has_more: false }),
        },
        None => None,
    };
    subscriptions::list(conn, tenant, customer_id, status, page).await
}

/// One payment of a timeline with what happened to it.
#[derive(Debug, Clone)]
pub struct PaymentTimeline {
    pub payment: PaymentView,
    /// Collection attempts, oldest first (channel, status, decline reason).
    pub attempts: Vec<AttemptRow>,
    pub refunds: Vec<RefundView>,
    pub receipts: Vec<ReceiptView>,
}

/// Everything about one subscription, oldest first in each part.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// With its history (every transition with cause and time).
    pub subscription: SubscriptionView,
    pub payments: Vec<PaymentTimeline>,
    /// The events the subscription ordered (its own and its payments').
    pub events: Vec<EventEntry>,
}

/// Parts of a timeline longer than this show their first this many entries.
pub const TIMELINE_LIMIT: i64 = 100;

/// The timeline of the tenant's subscription `id`; 404 `subscription_not_found`.
pub async fn timeline(conn: &mut AsyncPgConnection, tenant: &Tenant, id: SubscriptionId) -> ServiceResult<Timeline> {
    let subscription = subscriptions::get(conn, tenant, id).await?;
    let filter = PaymentFilter { subscription_id: Some(id), ..PaymentFilter::default() };
    let page = PageRequest::new(Some(TIMELINE_LIMIT), None)?;
    let mut parts = Vec::new();
    for payment in payments::list(conn, tenant, filter, page).await?.data {
        let attempts = attempts::attempts_of(conn, payment.id).await?;
        let refunds = refunds::list(conn, tenant, None, Some(payment.id), page).await?.data;
        let receipts = receipts::list(conn, tenant, Some(payment.id), &[], page).await?.data;
        parts.push(PaymentTimeline { payment, attempts, refunds, receipts });
    }
    let events = outbox::events_of(conn, tenant.id, Uuid::from(id), TIMELINE_LIMIT).await?;
    Ok(Timeline { subscription, payments: parts, events })
}

/// Days the revenue chart covers, today included.
pub const CHART_DAYS: i64 = 30;

/// The tenant's captured amounts and failed payments per day over the last
/// [`CHART_DAYS`] days (days in its time zone), oldest first; days without either
/// are absent.
pub async fn daily(conn: &mut AsyncPgConnection, tenant: &Tenant, now: DateTime<Utc>) -> ServiceResult<Vec<Day>> {
    let since = now - Duration::days(CHART_DAYS);
    Ok(revenue::daily(conn, tenant.id, &tenant.time_zone, since).await?)
}
