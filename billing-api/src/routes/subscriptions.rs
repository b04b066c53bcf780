//! Subscription endpoints.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::Page;
use billing_shared::services::purchase::{self, PurchaseSpec, PurchaseView};
use billing_shared::services::subscriptions::{self, SubscriptionView};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_subscription).service(list_subscriptions).service(get_subscription);
}

/// Buy a plan. With `pay_with: "card"` the answer's `payment.confirmation` carries the
/// CloudPayments widget parameters; access starts when the payment is confirmed.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", security(("tenant_key" = [])), request_body = PurchaseSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PurchaseView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/subscriptions")]
async fn create_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<PurchaseSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::CREATED, req, async |conn, now| purchase::purchase(conn, now, &tenant, body.value).await)
        .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    pub customer_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", security(("tenant_key" = [])), params(SubscriptionQuery),
    responses((status = 200, body = Page<SubscriptionView>)))]
#[get("/v1/subscriptions")]
async fn list_subscriptions(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<SubscriptionQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = billing_shared::services::PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| subscriptions::list(conn, &tenant, q.customer_id, page).await).await
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("tenant_key" = [])),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)))]
#[get("/v1/subscriptions/{id}")]
async fn get_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    state.ok(async |conn, _| subscriptions::get(conn, &tenant, id).await).await
}
