//! Customer endpoints.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, patch, post};
use billing_shared::services::Page;
use billing_shared::services::customers::{self, CustomerPatch, CustomerSpec, CustomerView};
use billing_shared::services::entitlements::{self, Entitlements};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    // The entitlement read first: the hottest route of all (`super::configure`).
    cfg.service(get_entitlements)
        .service(create_customer)
        .service(list_customers)
        .service(get_customer)
        .service(patch_customer);
}

/// Create a customer (`external_id` is the product's own id, unique per tenant).
#[utoipa::path(post, path = "/v1/customers", tag = "customers", security(("tenant_key" = [])), request_body = CustomerSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CustomerView), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/customers")]
async fn create_customer(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<CustomerSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state.run(StatusCode::CREATED, req, async |conn, now| customers::create(conn, now, &tenant, body.value).await).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CustomerQuery {
    /// Find the customer with this product id.
    pub external_id: Option<String>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

/// List customers, or find one by `external_id`.
#[utoipa::path(get, path = "/v1/customers", tag = "customers", security(("tenant_key" = [])), params(CustomerQuery),
    responses((status = 200, body = Page<CustomerView>)))]
#[get("/v1/customers")]
async fn list_customers(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<CustomerQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = billing_shared::services::PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| customers::list(conn, &tenant, q.external_id.as_deref(), page).await).await
}

#[utoipa::path(get, path = "/v1/customers/{id}", tag = "customers", security(("tenant_key" = [])),
    responses((status = 200, body = CustomerView), (status = 404, body = Problem)))]
#[get("/v1/customers/{id}")]
async fn get_customer(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "customer")?;
    state.ok(async |conn, _| customers::get(conn, &tenant, id).await).await
}

/// Change the e-mail (receipts go to the current one) or time zone.
#[utoipa::path(patch, path = "/v1/customers/{id}", tag = "customers", security(("tenant_key" = [])), request_body = CustomerPatch,
    responses((status = 200, body = CustomerView), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/v1/customers/{id}")]
async fn patch_customer(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
    body: JsonBody<CustomerPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "customer")?;
    state.ok(async |conn, _| customers::patch(conn, &tenant, id, body.value).await).await
}

/// May the customer use the product now, on which plan, with what quota left?
#[utoipa::path(get, path = "/v1/customers/{id}/entitlements", tag = "customers", security(("tenant_key" = [])),
    responses((status = 200, body = Entitlements), (status = 404, body = Problem)))]
#[get("/v1/customers/{id}/entitlements")]
async fn get_entitlements(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "customer")?;
    state.read(async |conn, now| entitlements::get(conn, now, &tenant, id).await).await
}
