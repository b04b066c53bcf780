//! Operator endpoints under `/v1/admin` (bearer `BILLING_ADMIN_TOKEN`).

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, patch, post};
use billing_shared::clock::Clock;
use billing_shared::error::ServiceError;
use billing_shared::queue::topology;
use billing_shared::services::dead_letters::{self, DeadLetter};
use billing_shared::services::maintenance::{self, MaintenanceSpec, MaintenanceView};
use billing_shared::services::receipt_registration;
use billing_shared::services::receipts::ReceiptView;
use billing_shared::services::tenants::{self, KeysRotated, TenantCreated, TenantSpec, TenantView};
use billing_shared::services::test_clock::{self as clock_service, ClockView, SetClock};
use billing_shared::services::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{AdminAuth, Idempotency, JsonBody};
use crate::state::{AppState, Replayable};
use billing_shared::domain::ids::TenantId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_tenant)
        .service(patch_tenant)
        .service(rotate_keys)
        .service(get_clock)
        .service(set_clock)
        .service(list_dead_letters)
        .service(replay_dead_letters)
        .service(resend_receipt)
        .service(record_maintenance);
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
            let created = tenants::create(conn, body.value).await?;
            bind_webhooks(&state, created.id, created.tenant.webhook_url.is_some()).await?;
            Ok(created)
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
    state
        .ok(async |conn, _now| {
            let tenant = tenants::patch(conn, id, body.value).await?;
            bind_webhooks(&state, tenant.id, tenant.webhook_url.is_some()).await?;
            Ok(tenant)
        })
        .await
}

/// Routes the tenant's events to the webhook queue exactly while it has a webhook
/// URL. Called inside the tenant's transaction, before it commits: a new URL
/// receives every event committed after it.
async fn bind_webhooks(state: &AppState, tenant_id: TenantId, on: bool) -> Result<(), ServiceError> {
    billing_shared::queue::set_webhook_binding(&state.amqp_url, tenant_id, on).await.map_err(|e| {
        tracing::error!(error = %e, "binding the webhook queue failed");
        ServiceError::Unavailable("RabbitMQ is not reachable; the webhook URL was not changed, retry later".into())
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"api_key": true, "webhook_secret": false})))]
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
///
/// A scheduler tick in progress (which read the old instant) finishes first.
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterQuery {
    /// Only this work queue (e.g. `billing.webhooks`).
    pub queue: Option<String>,
    /// Also list dead letters already replayed.
    #[serde(default)]
    pub include_replayed: bool,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<uuid::Uuid>,
}

/// What the worker dead-lettered: queue, reason, attempts, payload.
#[utoipa::path(get, path = "/v1/admin/dead-letters", tag = "operator", security(("operator_token" = [])), params(DeadLetterQuery),
    responses((status = 200, body = Page<DeadLetter>)))]
#[get("/v1/admin/dead-letters")]
async fn list_dead_letters(
    state: Data<AppState>,
    _: AdminAuth,
    q: Query<DeadLetterQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| dead_letters::list(conn, q.queue.as_deref(), q.include_replayed, page).await).await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    pub queue: String,
    /// Messages moved back from `<queue>.dead` to the queue.
    pub replayed: usize,
}

/// Put a queue's dead letters back to work (attempt count reset).
#[utoipa::path(post, path = "/v1/admin/dead-letters/{queue}/replay", tag = "operator", security(("operator_token" = [])),
    responses((status = 200, body = Replayed), (status = 404, body = Problem), (status = 503, body = Problem)))]
#[post("/v1/admin/dead-letters/{queue}/replay")]
async fn replay_dead_letters(
    state: Data<AppState>,
    _: AdminAuth,
    queue: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(replay(&state, &queue).await?))
}

/// Moves `queue`'s dead letters (`<queue>.dead`) back to the queue, attempt counts
/// reset, and marks them replayed. Errors: 404 `queue_not_found` for a name that
/// is no work queue; 503 `broker_unavailable` when RabbitMQ cannot be reached.
pub(crate) async fn replay(state: &AppState, queue: &str) -> Result<Replayed, ApiError> {
    let queue = topology::by_name(queue)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "queue_not_found", "no such work queue"))?;
    let ids = billing_shared::queue::replay_dead_letters(&state.amqp_url, queue).await.map_err(|e| {
        tracing::error!(error = %e, "replaying dead letters failed");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable", "RabbitMQ is not reachable; retry later")
    })?;
    let count = ids.len();
    state.transaction(async |conn, _| dead_letters::mark_replayed(conn, &ids).await).await?;
    Ok(Replayed { queue: queue.name.to_owned(), replayed: count })
}

/// Resend a receipt to the fiscal provider, never registering it twice: a `failed`
/// receipt whose attempt the provider reported failed goes to its next attempt (a
/// new document `<id>-<attempt>` at ATOL); one whose job gave up resumes its
/// attempt (it may be alive there); a `pending` one whose job is dead-lettered gets
/// another job. The worker registers it: `receipt.resent`, then `receipt.registered`
/// or `receipt.failed`. With an `Idempotency-Key` a retry replays the first answer.
#[utoipa::path(post, path = "/v1/admin/receipts/{id}/resend", tag = "operator", security(("operator_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = ReceiptView), (status = 404, body = Problem, description = "receipt_not_found"),
        (status = 409, body = Problem, description = "receipt_registered, receipt_in_progress (a job is at work)"),
        (status = 422, body = Problem, description = "invalid_idempotency_key, idempotency_key_reused")))]
#[post("/v1/admin/receipts/{id}/resend")]
async fn resend_receipt(
    state: Data<AppState>,
    _: AdminAuth,
    idem: Idempotency,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "receipt")?;
    let req = idem.request("admin", b"")?;
    state.run(StatusCode::OK, req, async |conn, now| receipt_registration::resend(conn, now, id, None).await).await
}

/// Record a maintenance extension (SellerGPT 3.2.10): every subscription of the
/// tenant with access now moves its period end, anchor, next charge and queued paid
/// extensions by `days`; renewal notices follow the new dates. `Idempotency-Key` is
/// required: a retried request shifts nothing twice.
#[utoipa::path(post, path = "/v1/admin/tenants/{id}/maintenance", tag = "operator", security(("operator_token" = [])),
    request_body = MaintenanceSpec, params(("Idempotency-Key" = String, Header)),
    responses((status = 201, body = MaintenanceView), (status = 404, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/admin/tenants/{id}/maintenance")]
async fn record_maintenance(
    state: Data<AppState>,
    _: AdminAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<MaintenanceSpec>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "tenant")?;
    let req = idem.request("admin", &body.raw)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_required",
            "a maintenance extension needs an Idempotency-Key header",
        )
    })?;
    state
        .run(StatusCode::CREATED, Some(req), async |conn, now| maintenance::record(conn, now, id, body.value).await)
        .await
}
