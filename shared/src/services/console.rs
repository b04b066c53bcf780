//! What the operator console (`/console/`) shows, composed from the services' own
//! views so the console and the API never disagree: tenants with their
//! subscriptions by status and MRR, a subscription's timeline (history, payments
//! with their attempts, refunds and receipts, events), and a tenant's payments
//! per day. Read-only; the console's actions go through the same services as the
//! API (`refunds::review`, the dead-letter replay).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use uuid::Uuid;

use super::payments::{self, PaymentView};
use super::receipts::{self, ReceiptView};
use super::refunds::{self, RefundView};
use super::subscriptions::{self, SubscriptionView};
use super::tenants::Tenant;
use super::{Page, PageRequest};
use crate::db::attempts::{self, AttemptRow};
use crate::db::business_metrics;
use crate::db::console_sessions;
use crate::db::customers as customers_db;
use crate::db::outbox::{self, EventEntry};
use crate::db::payments::PaymentFilter;
use crate::db::revenue::{self, Day};
use crate::db::tenants as tenants_db;
use crate::domain::ids::{CustomerId, SubscriptionId, TenantId};
use crate::domain::subscription::SubscriptionStatus;
use crate::error::{ServiceError, ServiceResult};

/// A tenant as the console's first page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantSummary {
    pub id: TenantId,
    pub name: String,
    /// Subscriptions per status name, by name.
    pub subscriptions: BTreeMap<String, i64>,
    /// Monthly recurring revenue per currency, in major units rounded to kopecks
    /// (`db::business_metrics::sample`'s definition).
    pub mrr: BTreeMap<String, Decimal>,
    /// Subscriptions whose scheduled action is due and not yet taken.
    pub renewals_due: i64,
}

/// Every tenant with its figures, by name, or only `tenant`'s. Counts whole tables
/// (the worker's business sample): an operator's page, not a per-request path.
pub async fn tenants(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: Option<TenantId>,
) -> ServiceResult<Vec<TenantSummary>> {
    let mut summaries: Vec<TenantSummary> = tenants_db::names(conn, tenant)
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
    for s in business_metrics::sample(conn, now, tenant).await? {
        let Some(t) = summaries.iter_mut().find(|t| Uuid::from(t.id) == s.tenant) else { continue };
        let count =
            || s.value.to_i64().ok_or_else(|| ServiceError::Internal(format!("count {} of {}", s.value, s.metric)));
        match s.metric.as_str() {
            "subscriptions" => {
                let n = count()?;
                t.subscriptions.insert(s.label, n);
            }
            "mrr" => {
                t.mrr.insert(s.label, s.value);
            }
            "renewals_due" => t.renewals_due = count()?,
            _ => {}
        }
    }
    Ok(summaries)
}

/// The customer an operator typed: the customer's id, else the product's own
/// `external_id`. `None` when the tenant has no such customer.
pub async fn find_customer(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    typed: &str,
) -> ServiceResult<Option<CustomerId>> {
    let typed = typed.trim();
    if let Ok(id) = Uuid::parse_str(typed)
        && let Some(c) = customers_db::find(conn, tenant.id, CustomerId::from(id)).await?
    {
        return Ok(Some(c.id));
    }
    // Also an external id that looks like a UUID.
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

/// The chart's figures: days with a captured or failed payment among the
/// [`CHART_DAYS`] ending `today` (in the tenant's time zone), oldest first.
#[derive(Debug, Clone)]
pub struct Daily {
    pub days: Vec<Day>,
    pub today: NaiveDate,
}

/// The tenant's captured amounts and failed payments per day over the
/// [`CHART_DAYS`] days ending today, days cut at midnight in its time zone.
pub async fn daily(conn: &mut AsyncPgConnection, tenant: &Tenant, now: DateTime<Utc>) -> ServiceResult<Daily> {
    let today = now.with_timezone(&tenant.tz).date_naive();
    let first = today - Duration::days(CHART_DAYS - 1);
    // The first instant of that day there (a DST gap at midnight: its first hour).
    let since = (0..3)
        .find_map(|h| tenant.tz.from_local_datetime(&first.and_hms_opt(h, 0, 0)?).earliest())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| ServiceError::Internal(format!("no midnight on {first} in {}", tenant.time_zone)))?;
    Ok(Daily { days: revenue::daily(conn, tenant.id, &tenant.time_zone, since).await?, today })
}

/// Signs console session `id` out on every replica: refused from now until
/// `expires_at`, when it would have expired anyway.
pub async fn sign_out(
    conn: &mut AsyncPgConnection,
    id: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    Ok(console_sessions::sign_out(conn, id, expires_at, now).await?)
}

/// Whether console session `id` was signed out.
pub async fn signed_out(conn: &mut AsyncPgConnection, id: &str) -> ServiceResult<bool> {
    Ok(console_sessions::signed_out(conn, id).await?)
}
