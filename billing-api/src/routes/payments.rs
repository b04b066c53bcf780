//! Payment endpoints.

use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get};
use billing_shared::services::Page;
use billing_shared::services::payments::{self, PaymentView};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::TenantAuth;
use crate::state::AppState;
use billing_shared::domain::ids::CustomerId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_payments).service(get_payment);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub customer_id: Option<CustomerId>,
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

#[utoipa::path(get, path = "/v1/payments", tag = "payments", security(("tenant_key" = [])), params(PaymentQuery),
    responses((status = 200, body = Page<PaymentView>)))]
#[get("/v1/payments")]
async fn list_payments(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<PaymentQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = billing_shared::services::PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| payments::list(conn, &tenant, q.customer_id, page).await).await
}

/// A payment; a pending one carries its `confirmation` (widget parameters).
#[utoipa::path(get, path = "/v1/payments/{id}", tag = "payments", security(("tenant_key" = [])),
    responses((status = 200, body = PaymentView), (status = 404, body = Problem)))]
#[get("/v1/payments/{id}")]
async fn get_payment(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "payment")?;
    state.ok(async |conn, _| payments::get(conn, &state.ports.gateways, &tenant, id).await).await
}
