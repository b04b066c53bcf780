//! Operator endpoints under `/v1/admin` (bearer `BILLING_ADMIN_TOKEN`).

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path};
use actix_web::{HttpResponse, get, patch, post};
use billing_shared::clock::Clock;
use billing_shared::services::clock::{self as clock_service, ClockView, SetClock};
use billing_shared::services::tenants::{self, KeysRotated, TenantCreated, TenantSpec, TenantView};
use serde::Deserialize;
use utoipa::ToSchema;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{AdminAuth, Idempotency, JsonBody};
use crate::state::{AppState, Replayable};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_tenant).service(patch_tenant).service(rotate_keys).service(get_clock).service(set_clock);
}

/// Create a tenant. The API key and webhook secret are shown only in this answer.
#[utoipa::path(post, path = "/v1/admin/tenants", tag = "operator", security(("operator_token" = [])),
    request_body = TenantSpec,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays of an answer with secrets are refused (409)")),
    responses((status = 201, body = TenantCreated), (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/admin/tenants")]
async fn create_tenant(
    state: Data<AppState>,
    _: AdminAuth,
    idem: Idempotency,
    body: JsonBody<TenantSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request("admin", &body.raw)?;
    state
        .run_with(StatusCode::CREATED, req, Replayable::Secret, async |conn, _now| {
            tenants::create(conn, body.value).await
        })
        .await
}

/// Patch a tenant: an RFC 7396 merge patch over its configuration (`null` removes).
#[utoipa::path(patch, path = "/v1/admin/tenants/{id}", tag = "operator", security(("operator_token" = [])),
    request_body(content = Object, description = "any of the tenant fields; nested objects merge"),
    responses((status = 200, body = TenantView), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[patch("/v1/admin/tenants/{id}")]
async fn patch_tenant(
    state: Data<AppState>,
    _: AdminAuth,
    id: Path<String>,
    body: JsonBody<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "tenant")?;
    state.ok(async |conn, _now| tenants::patch(conn, id, body.value).await).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKeys {
    #[serde(default = "yes")]
    pub api_key: bool,
    #[serde(default)]
    pub webhook_secret: bool,
}

fn yes() -> bool {
    true
}

/// Rotate the API key and/or webhook secret; the old ones stay valid for an hour.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/keys/rotate", tag = "operator", security(("operator_token" = [])),
    request_body = RotateKeys,
    responses((status = 200, body = KeysRotated), (status = 404, body = Problem)))]
#[post("/v1/admin/tenants/{id}/keys/rotate")]
async fn rotate_keys(
    state: Data<AppState>,
    _: AdminAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<RotateKeys>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "tenant")?;
    let req = idem.request("admin", &body.raw)?;
    let RotateKeys { api_key, webhook_secret } = body.value;
    state
        .run_with(StatusCode::OK, req, Replayable::Secret, async |conn, _now| {
            tenants::rotate_keys(conn, id, api_key, webhook_secret).await
        })
        .await
}

fn test_clock_only(state: &AppState) -> Result<(), ApiError> {
    if state.clock.is_test() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "the test clock is only available with BILLING_TEST_CLOCK=1",
        ))
    }
}

/// The shared test clock (test mode only): `settled` is true when no work is due.
#[utoipa::path(get, path = "/v1/admin/clock", tag = "operator", security(("operator_token" = [])),
    responses((status = 200, body = ClockView), (status = 404, body = Problem)))]
#[get("/v1/admin/clock")]
async fn get_clock(state: Data<AppState>, _: AdminAuth) -> Result<HttpResponse, ApiError> {
    test_clock_only(&state)?;
    state.ok(async |conn, now| Ok(ClockView { now, settled: clock_service::settled(conn, now).await? })).await
}

/// Set the shared test clock to any instant; it stays frozen until set again.
#[utoipa::path(post, path = "/v1/admin/clock", tag = "operator", security(("operator_token" = [])),
    request_body = SetClock,
    responses((status = 200, body = ClockView), (status = 404, body = Problem)))]
#[post("/v1/admin/clock")]
async fn set_clock(state: Data<AppState>, _: AdminAuth, body: JsonBody<SetClock>) -> Result<HttpResponse, ApiError> {
    test_clock_only(&state)?;
    let at = body.value.now;
    state
        .ok(async |conn, _| {
            let now = Clock::set(conn, at).await?;
            Ok(ClockView { now, settled: clock_service::settled(conn, now).await? })
        })
        .await
}
