//! Refund requests and their review.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::refunds::{self, RefundRequest, RefundView, ReviewRequest, Reviewer};
use billing_shared::services::{Page, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;
use billing_shared::domain::ids::PaymentId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(request_refund)
        .service(list_refunds)
        .service(approve_refund)
        .service(reject_refund)
        .service(retry_refund);
}

/// Request a refund of a captured payment. The tenant's refund rules decide at once:
/// `approved`, `pending_review` (the review queue) or `rejected`, with a stable
/// `decision_code`. The worker executes approved refunds through the gateway
/// (`processing`, then `succeeded` or `failed`).
#[utoipa::path(post, path = "/v1/refunds", tag = "refunds", security(("tenant_key" = [])), request_body = RefundRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = RefundView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/refunds")]
async fn request_refund(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<RefundRequest>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state.run(StatusCode::CREATED, req, async |conn, now| refunds::request(conn, now, &tenant, body.value).await).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RefundQuery {
    /// e.g. `pending_review`: the review queue.
    #[param(pattern = "^(pending_review|approved|rejected|processing|succeeded|failed)$")]
    pub status: Option<String>,
    pub payment_id: Option<PaymentId>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

#[utoipa::path(get, path = "/v1/refunds", tag = "refunds", security(("tenant_key" = [])), params(RefundQuery),
    responses((status = 200, body = Page<RefundView>)))]
#[get("/v1/refunds")]
async fn list_refunds(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<RefundQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| refunds::list(conn, &tenant, q.status.as_deref(), q.payment_id, page).await).await
}

/// Approve or reject a held request (idempotent by `Idempotency-Key`).
async fn review(
    state: Data<AppState>,
    tenant: std::sync::Arc<billing_shared::services::tenants::Tenant>,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<ReviewRequest>,
    approve: bool,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "refund")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| {
            refunds::review(conn, now, &tenant, id, approve, Reviewer::Tenant, body.value).await
        })
        .await
}

/// Approve a refund waiting for review.
#[utoipa::path(post, path = "/v1/refunds/{id}/approve", tag = "refunds", security(("tenant_key" = [])), request_body = ReviewRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = RefundView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/v1/refunds/{id}/approve")]
async fn approve_refund(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<ReviewRequest>,
) -> Result<HttpResponse, ApiError> {
    review(state, tenant, idem, id, body, true).await
}

/// Reject a refund waiting for review.
#[utoipa::path(post, path = "/v1/refunds/{id}/reject", tag = "refunds", security(("tenant_key" = [])), request_body = ReviewRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = RefundView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/v1/refunds/{id}/reject")]
async fn reject_refund(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<ReviewRequest>,
) -> Result<HttpResponse, ApiError> {
    review(state, tenant, idem, id, body, false).await
}

/// Retry a failed refund: it is approved again and the worker executes it as a new
/// try (its own idempotency key at the gateway).
#[utoipa::path(post, path = "/v1/refunds/{id}/retry", tag = "refunds", security(("tenant_key" = [])),
    responses((status = 200, body = RefundView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/v1/refunds/{id}/retry")]
async fn retry_refund(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "refund")?;
    state.ok(async |conn, now| refunds::retry(conn, now, &tenant, id).await).await
}
