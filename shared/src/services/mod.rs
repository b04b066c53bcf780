//! Use cases. A service function takes `&mut AsyncPgConnection` (already inside the
//! caller's transaction: `conn.transaction(async |conn| ...)`), the business instant `now`, and the
//! authenticated tenant; it calls domain rules and db queries and writes outbox
//! events in the same transaction as the state change.

pub mod acts;
pub mod audit;
pub mod balance;
pub mod balance_payments;
pub mod bank_statements;
pub mod capture_batches;
pub mod cashback;
pub mod charge_attempts;
pub mod charge_waves;
pub mod collection;
pub mod console;
pub mod customers;
pub mod dead_letters;
pub mod documents;
pub mod entitlements;
pub mod idempotency;
pub mod invoices;
pub mod lifecycle;
pub mod maintenance;
mod money_steps;
pub mod notifications;
pub mod partners;
pub mod payment_outcomes;
pub mod payment_sources;
pub mod payments;
pub mod plan_change;
pub mod plan_switch;
pub mod plans;
pub mod prices;
pub mod purchase;
pub mod receipt_registration;
pub mod receipt_waves;
pub mod receipts;
pub mod refund_approval;
pub mod refund_execution;
pub mod refund_outcomes;
pub mod refunds;
pub mod renewal_batches;
pub mod renewals;
pub mod scheduler;
pub mod subscriptions;
pub mod tenant_secrets;
pub mod tenants;
pub mod termination;
pub mod test_clock;
pub mod top_ups;
pub mod usage;
pub mod usage_batch;
pub mod usage_key_filter;
pub mod usage_partitions;
pub mod webhook_delivery;

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::ids::TenantId;
use crate::domain::money::Money;
use crate::error::{ServiceError, ServiceResult};

/// Cursor pagination parameters (`limit`, `starting_after`).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: i64,
    pub starting_after: Option<Uuid>,
}

impl PageRequest {
    pub const DEFAULT_LIMIT: i64 = 20;
    pub const MAX_LIMIT: i64 = 100;

    pub fn new(limit: Option<i64>, starting_after: Option<Uuid>) -> ServiceResult<Self> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(ServiceError::validation(format!("limit must be between 1 and {}", Self::MAX_LIMIT)));
        }
        Ok(PageRequest { limit, starting_after })
    }

    /// Rows to fetch: one more than the page, to know whether there is more.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }
}

/// A page of a list, oldest first; pass the last `id` as `starting_after` for more.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub has_more: bool,
}

impl<T> Page<T> {
    pub fn from_rows<R>(mut rows: Vec<R>, req: PageRequest, f: impl FnMut(R) -> T) -> Self {
        let limit = usize::try_from(req.limit).unwrap_or(usize::MAX);
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        Page { data: rows.into_iter().map(f).collect(), has_more }
    }
}

/// Data stored by us that no longer parses is a bug, not bad input.
pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Internal(format!("stored {what} does not parse: {e}"))
}

/// A stored IANA time zone name (a customer's) as a zone; one that does not parse
/// is an internal error, never another zone.
pub(crate) fn stored_time_zone(name: &str) -> ServiceResult<chrono_tz::Tz> {
    crate::domain::parse_time_zone(name).ok_or_else(|| corrupt("time zone", name))
}

/// A stored amount and its currency code as money (a row that does not parse is
/// an internal error naming `what`).
pub(crate) fn stored_money(amount: rust_decimal::Decimal, currency: &str, what: &str) -> ServiceResult<Money> {
    let c = crate::domain::money::Currency::parse(currency).map_err(|e| corrupt(&format!("{what} currency"), e))?;
    Money::new(amount, c).map_err(|e| corrupt(what, e))
}

/// A provider refused the merchant's own request — credentials refused (HTTP
/// 401/403), a request it calls malformed, an unknown account — so nothing was
/// charged, refunded or registered. It is an operational failure of the tenant's
/// settings, never the customer's doing: logged with the tenant and the reason,
/// counted in `billing_provider_refusals_total{provider, operation, tenant}`, and
/// the same work is retried with the queue's back-off, then dead-lettered with
/// this reason (replayable once the settings are fixed).
pub(crate) fn merchant_side_failure(
    tenant: TenantId,
    provider: &'static str,
    operation: &'static str,
    reason: &str,
) -> JobResult {
    tracing::warn!(%tenant, provider, operation, reason, "the provider refused the merchant's request");
    metrics::counter!("billing_provider_refusals_total", "provider" => provider, "operation" => operation,
        "tenant" => tenant.to_string())
    .increment(1);
    JobResult::RetryLater(format!(
        "{provider} refused the merchant's {operation} request ({reason}): check tenant {tenant}'s credentials and settings, then replay"
    ))
}

/// What a charge job ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobResult {
    Done,
    /// A technical failure: try the job again later (retry ladder).
    RetryLater(String),
    /// A permanent failure, recorded where it belongs: the message goes to the
    /// dead letters at once with this reason, for an operator.
    DeadLetter(String),
}
