//! Partners and their monthly commission statements (API.md "Refunds, receipts,
//! invoices, partners").

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::partners::{self, PartnerSpec, PartnerView, Statement};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_partner).service(list_partners).service(get_statement);
}

/// Register a partner; customers are attributed to it by `partner_code`.
#[utoipa::path(post, path = "/v1/partners", tag = "partners", security(("tenant_key" = [])), request_body = PartnerSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PartnerView), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/partners")]
async fn create_partner(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<PartnerSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state.run(StatusCode::CREATED, req, async |conn, now| partners::create(conn, now, &tenant, body.value).await).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PartnerQuery {
    /// 1..100, default 20.
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// A partner code: list the ones after it.
    pub starting_after: Option<String>,
}

/// The tenant's partners, by code.
#[utoipa::path(get, path = "/v1/partners", tag = "partners", security(("tenant_key" = [])), params(PartnerQuery),
    responses((status = 200, body = [PartnerView]), (status = 422, body = Problem)))]
#[get("/v1/partners")]
async fn list_partners(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<PartnerQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = billing_shared::services::PageRequest::new(q.limit, None)?.fetch() - 1;
    state.ok(async |conn, _| partners::list(conn, &tenant, q.starting_after.as_deref(), limit).await).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    /// `YYYY-MM`, in the tenant's time zone, 1970-01 to 9998-12.
    #[param(pattern = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    pub month: String,
}

/// A partner's commissions accrued and reversed in a month, with totals that
/// reconcile to the ledger (`net` = `ledger_net`).
#[utoipa::path(get, path = "/v1/partners/{code}/statement", tag = "partners", security(("tenant_key" = [])),
    params(StatementQuery),
    responses((status = 200, body = Statement), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[get("/v1/partners/{code}/statement")]
async fn get_statement(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    code: Path<String>,
    q: Query<StatementQuery>,
) -> Result<HttpResponse, ApiError> {
    state.ok(async |conn, _| partners::statement(conn, &tenant, &code, &q.month).await).await
}
