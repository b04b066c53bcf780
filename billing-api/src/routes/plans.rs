//! Catalog endpoints.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, delete, get, post};
use billing_shared::services::Page;
use billing_shared::services::plans::{self, PlanSpec, PlanView, PriceView};
use billing_shared::services::prices::{self, NewPriceSpec};

use super::{ListQuery, parse_id};
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_plan)
        .service(list_plans)
        .service(get_plan)
        .service(add_price)
        .service(cancel_price)
        .service(archive_plan);
}

/// Create a plan (tariff) with its initial price.
#[utoipa::path(post, path = "/v1/plans", tag = "catalog", security(("tenant_key" = [])), request_body = PlanSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PlanView), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/plans")]
async fn create_plan(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<PlanSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state.run(StatusCode::CREATED, req, async |conn, now| plans::create(conn, now, &tenant, body.value).await).await
}

/// List plans with their current and scheduled prices.
#[utoipa::path(get, path = "/v1/plans", tag = "catalog", security(("tenant_key" = [])), params(ListQuery),
    responses((status = 200, body = Page<PlanView>)))]
#[get("/v1/plans")]
async fn list_plans(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = q.page()?;
    state.ok(async |conn, now| plans::list(conn, now, &tenant, page).await).await
}

/// A plan by code.
#[utoipa::path(get, path = "/v1/plans/{code}", tag = "catalog", security(("tenant_key" = [])),
    responses((status = 200, body = PlanView), (status = 404, body = Problem)))]
#[get("/v1/plans/{code}")]
async fn get_plan(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    code: Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.ok(async |conn, now| plans::get(conn, now, &tenant, &code).await).await
}

/// Announce a new price. An increase must respect the tenant's notice days
/// (`notice_period_too_short`); every affected subscriber gets `price_change.notice`.
#[utoipa::path(post, path = "/v1/plans/{code}/prices", tag = "catalog", security(("tenant_key" = [])), request_body = NewPriceSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PriceView), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the plan is archived (`plan_archived`)"),
        (status = 422, body = Problem)))]
#[post("/v1/plans/{code}/prices")]
async fn add_price(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    code: Path<String>,
    body: JsonBody<NewPriceSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::CREATED, req, async |conn, now| prices::add_price(conn, now, &tenant, &code, body.value).await)
        .await
}

/// Cancel a scheduled price before it takes effect.
#[utoipa::path(delete, path = "/v1/plans/{code}/prices/{id}", tag = "catalog", security(("tenant_key" = [])),
    responses((status = 200, body = PlanView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[delete("/v1/plans/{code}/prices/{id}")]
async fn cancel_price(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (code, id) = path.into_inner();
    let id = parse_id(&id, "price")?;
    state.run(StatusCode::OK, None, async |conn, now| prices::cancel_price(conn, now, &tenant, &code, id).await).await
}

/// Archive a plan: no new purchases; existing subscriptions continue.
#[utoipa::path(post, path = "/v1/plans/{code}/archive", tag = "catalog", security(("tenant_key" = [])),
    responses((status = 200, body = PlanView), (status = 404, body = Problem)))]
#[post("/v1/plans/{code}/archive")]
async fn archive_plan(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    code: Path<String>,
) -> Result<HttpResponse, ApiError> {
    state.run(StatusCode::OK, None, async |conn, now| plans::archive(conn, now, &tenant, &code).await).await
}
