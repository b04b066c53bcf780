//! A customer's balance: what it holds, and top-ups (API.md "Usage, balance,
//! payments").

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::balance::{self, BalanceView};
use billing_shared::services::payments::PaymentView;
use billing_shared::services::top_ups::{self, TopUpSpec};
use serde::Serialize;
use utoipa::ToSchema;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_balance).service(create_top_up);
}

/// What the customer can spend: prepaid money (pays for anything) and cashback
/// (pays only for tariffs); `value` is their sum.
#[utoipa::path(get, path = "/v1/customers/{id}/balance", tag = "customers", security(("tenant_key" = [])),
    responses((status = 200, body = BalanceView), (status = 404, body = Problem)))]
#[get("/v1/customers/{id}/balance")]
async fn get_balance(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "customer")?;
    state.ok(async |conn, _| balance::view(conn, &tenant, id).await).await
}

/// The answer to a top-up: its `top_up` payment (with `confirmation` for a card).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TopUpAnswer {
    pub payment: PaymentView,
}

/// Top up the customer's prepaid money by card (the checkout; `payment.confirmation`
/// carries the widget parameters) or the saved card. The balance is credited when
/// the payment is captured (`balance.credited`).
#[utoipa::path(post, path = "/v1/customers/{id}/top-ups", tag = "customers", security(("tenant_key" = [])),
    request_body = TopUpSpec, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = TopUpAnswer), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/customers/{id}/top-ups")]
async fn create_top_up(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<TopUpSpec>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "customer")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::CREATED, req, async |conn, now| {
            let payment = top_ups::top_up(conn, now, &state.ports.gateways, &tenant, id, body.value).await?;
            Ok(TopUpAnswer { payment })
        })
        .await
}
