//! HTTP routes, one module per resource. Handlers are thin: extract, call a
//! service inside [`AppState::run`](crate::state::AppState::run), answer.

pub mod admin;
pub mod balance;
pub mod customers;
pub mod invoices;
pub mod partners;
pub mod payments;
pub mod plans;
pub mod receipts;
pub mod refunds;
pub mod service;
pub mod subscriptions;
pub mod usage;
pub mod webhooks;

use actix_web::web;
use billing_shared::services::PageRequest;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;

/// Registers every route. actix tries routes in registration order, matching each
/// pattern with a path parameter by a regex, so the hot paths go first: entitlement
/// reads, provider notifications, usage ingest (bench/README, entitlement reads).
/// No two modules' patterns overlap, so the order decides nothing else.
pub fn configure(cfg: &mut web::ServiceConfig) {
    customers::configure(cfg);
    webhooks::configure(cfg);
    usage::configure(cfg);
    admin::configure(cfg);
    plans::configure(cfg);
    balance::configure(cfg);
    subscriptions::configure(cfg);
    payments::configure(cfg);
    partners::configure(cfg);
    invoices::configure(cfg);
    refunds::configure(cfg);
    receipts::configure(cfg);
    service::configure(cfg);
}

/// Ids in paths: anything that is not a UUID cannot exist, so it is a 404.
pub fn parse_id<T: From<Uuid>>(raw: &str, what: &str) -> Result<T, ApiError> {
    Uuid::parse_str(raw).map(T::from).map_err(|_| {
        ApiError::new(actix_web::http::StatusCode::NOT_FOUND, format!("{what}_not_found"), format!("no such {what}"))
    })
}

/// Cursor pagination: `limit` (1..100, default 20) and `starting_after` (an id).
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        Ok(PageRequest::new(self.limit, self.starting_after)?)
    }
}
