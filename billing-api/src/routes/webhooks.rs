//! Provider callbacks. No bearer token: each is authenticated by the provider's own
//! scheme before anything is parsed or written.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, post};
use billing_shared::domain::tenant::GatewayConfig;
use billing_shared::gateways::cloudpayments::verify_notification;
use billing_shared::gateways::cloudpayments::wire::{NotificationAnswer, NotificationKind};
use billing_shared::services::{cloudpayments, receipts, tenants};

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(cloudpayments_notification).service(atol_callback);
}

/// CloudPayments notification (`check`, `pay`, `fail`, `refund`, `recurrent`,
/// `cancel`), form-urlencoded or JSON, signed with `Content-HMAC` /
/// `X-Content-HMAC` (base64 HMAC-SHA256 of the raw body with the tenant's API
/// secret). Answered `{"code": 0}`; Check answers a rejection code when the payment
/// cannot be accepted (10 invoice, 11 account, 12 amount, 13 not acceptable, 20 expired).
#[utoipa::path(post, path = "/v1/webhooks/cloudpayments/{tenant_id}/{kind}", tag = "webhooks",
    params(("tenant_id" = String, Path), ("kind" = String, Path, description = "check | pay | fail | refund | recurrent | cancel"),
        ("Content-HMAC" = Option<String>, Header), ("X-Content-HMAC" = Option<String>, Header)),
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = NotificationAnswer), (status = 401, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/webhooks/cloudpayments/{tenant_id}/{kind}")]
async fn cloudpayments_notification(
    state: Data<AppState>,
    req: HttpRequest,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, kind) = path.into_inner();
    let tenant_id = parse_id(&tenant_id, "tenant")?;
    let kind = NotificationKind::parse(&kind).ok_or_else(|| ApiError::not_found("unknown notification kind"))?;
    let tenant = {
        let mut conn = state.conn().await?;
        tenants::load(&mut conn, tenant_id).await?
    };
    let GatewayConfig::Cloudpayments { api_secret, .. } = &tenant.gateway else {
        return Err(ApiError::not_found("this tenant does not use CloudPayments"));
    };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !verify_notification(api_secret, &body, &[header("Content-HMAC"), header("X-Content-HMAC")]) {
        tracing::warn!(tenant = %tenant.id, kind = kind.as_str(), "refused a CloudPayments notification with a missing or wrong signature");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "missing or wrong Content-HMAC signature",
        ));
    }
    let content_type = header("Content-Type").map(str::to_owned);
    state
        .ok(async |conn, now| cloudpayments::handle(conn, now, &tenant, kind, content_type.as_deref(), &body).await)
        .await
}

/// ATOL Online callback (the document's report). Only a hint: the receipt it names
/// (by the provider's uuid) is polled again by the worker, which trusts the report
/// it reads itself, never this body. Answered `{}`.
#[utoipa::path(post, path = "/v1/webhooks/atol/{tenant_id}", tag = "webhooks",
    params(("tenant_id" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/webhooks/atol/{tenant_id}")]
async fn atol_callback(state: Data<AppState>, path: Path<String>, body: Bytes) -> Result<HttpResponse, ApiError> {
    let tenant_id = parse_id(&path, "tenant")?;
    let tenant = {
        let mut conn = state.conn().await?;
        tenants::load(&mut conn, tenant_id).await?
    };
    if tenant.fiscal.is_none() {
        return Err(ApiError::not_found("this tenant has no fiscal provider"));
    }
    state
        .ok(async |conn, now| {
            receipts::hint(conn, now, &tenant, &body).await?;
            Ok(serde_json::json!({}))
        })
        .await
}
