//! Payment endpoints.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::db::payments::PaymentFilter;
use billing_shared::services::payments::{self, PayWith, PaymentView};
use billing_shared::services::{Page, payment_sources};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;
use billing_shared::domain::ids::CustomerId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_payments).service(get_payment).service(pay_payment);
}

/// `POST /v1/payments/{id}/pay`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"pay_with": "card"})))]
pub struct PayPayment {
    pub pay_with: PayWith,
}

/// Pay an overage payment that is pending or was declined another way: from the
/// balance, by card (the answer's `confirmation`) or the saved card.
#[utoipa::path(post, path = "/v1/payments/{id}/pay", tag = "payments", security(("tenant_key" = [])),
    request_body = PayPayment, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = PaymentView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
#[post("/v1/payments/{id}/pay")]
async fn pay_payment(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<PayPayment>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "payment")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| {
            payment_sources::pay_pending(conn, now, &state.ports.gateways, &tenant, id, body.value.pay_with).await
        })
        .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PaymentQuery {
    pub customer_id: Option<CustomerId>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
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
    state
        .ok(async |conn, _| {
            payments::list(
                conn,
                &tenant,
                PaymentFilter { customer_id: q.customer_id, ..PaymentFilter::default() },
                page,
            )
            .await
        })
        .await
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
