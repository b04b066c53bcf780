//! Provider callbacks. No bearer token: each is authenticated by the provider's own
//! scheme before anything is parsed or written.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, post};
use billing_shared::error::ServiceError;
use billing_shared::services::notifications::{self, RawNotification};
use billing_shared::services::{receipts, tenants};

use super::parse_id;
use crate::captures::CaptureQueue;
use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// CloudPayments' answer to every notification: HTTP 200 `{"code": N}`, where a
/// Check's code accepts (0) or rejects the payment (10 invoice, 11 account,
/// 12 amount, 13 not acceptable, 20 expired).
#[derive(Debug, Clone, Copy, serde::Serialize, utoipa::ToSchema)]
pub struct NotificationAnswer {
    pub code: i32,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(cloudpayments_notification).service(yookassa_notification).service(atol_callback);
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
    captures: Data<CaptureQueue>,
    req: HttpRequest,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let (tenant_id, kind) = path.into_inner();
    provider_notification(&state, &captures, &req, "cloudpayments", &tenant_id, &kind, body).await
}

/// YooKassa notification (`payment.waiting_for_capture`, `payment.succeeded`,
/// `payment.canceled`, `refund.succeeded`, ...). Unsigned, so only a hint: it is
/// accepted only from the tenant's `gateway.notification_ips` (default: YooKassa's
/// published ranges), and the payment or refund it names is fetched from YooKassa
/// with the tenant's credentials; only that answer is acted on. A payment awaiting
/// capture is captured (or cancelled when it is no longer wanted). Answered `{}`;
/// 422 `unknown_object` (stored for the operator) when YooKassa does not know the
/// object, 503 when YooKassa cannot be asked now (it delivers again).
#[utoipa::path(post, path = "/v1/webhooks/yookassa/{tenant_id}", tag = "webhooks",
    params(("tenant_id" = String, Path)),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, body = Object), (status = 401, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem), (status = 503, body = Problem)))]
#[post("/v1/webhooks/yookassa/{tenant_id}")]
async fn yookassa_notification(
    state: Data<AppState>,
    captures: Data<CaptureQueue>,
    req: HttpRequest,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    provider_notification(&state, &captures, &req, "yookassa", &path, "", body).await
}

/// A provider's callback: the tenant's gateway adapter verifies and reads the raw
/// bytes (nothing is parsed or written before), the service applies it in one
/// transaction — a capture in a batch with those arriving with it ([`CaptureQueue`])
/// —, a Check verdict the provider takes as a call is carried out after the
/// commit, and the answer is the provider's own.
async fn provider_notification(
    state: &AppState,
    captures: &CaptureQueue,
    req: &HttpRequest,
    provider: &str,
    tenant_id: &str,
    path: &str,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let tenant_id = parse_id(tenant_id, "tenant")?;
    let tenant = {
        let mut conn = state.conn().await?;
        tenants::load_cached(&mut conn, tenant_id).await?
    };
    let gateway = notifications::gateway_for(&state.ports.gateways, &tenant, provider)?;
    let headers =
        req.headers().iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    let raw = RawNotification { path, headers, body: &body, source_ip: req.peer_addr().map(|a| a.ip()) };
    let notification = notifications::verify(&state.pool, &*gateway, &tenant, &raw).await?;
    let (status, answer) = if CaptureQueue::takes(&notification) {
        captures.apply(tenant, gateway, path, raw.headers, body.clone(), notification).await?
    } else {
        let check = notifications::check_of(&notification);
        let reply = {
            let mut conn = state.conn().await?;
            notifications::apply(&mut conn, state.clock, &tenant, &*gateway, &raw, notification).await?
        };
        notifications::settle(&*gateway, check.as_ref(), reply).await?;
        gateway.reply(reply)
    };
    let status = StatusCode::from_u16(status).map_err(|e| ApiError::from(ServiceError::Internal(e.to_string())))?;
    Ok(HttpResponse::build(status).json(answer))
}

/// ATOL Online callback (the document's report). Only a hint: the receipt it names
/// (by the `external_id` we sent and the document's `uuid`) is polled again by the
/// worker, which trusts the report it reads itself, never this body. Answered `{}`;
/// 422 `invalid_callback` without both fields.
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
