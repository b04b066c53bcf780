//! Usage reporting.

use actix_web::web::{self, Data};
use actix_web::{HttpResponse, post};
use billing_shared::services::usage::{self, UsageBatch, UsageResult};

use crate::error::{ApiError, Problem};
use crate::extract::{JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(report_usage);
}

/// Report usage: up to 10 000 events per call, each counted once per `event_id`
/// (a retry within at least 35 days is a duplicate), in the paid period that
/// contains its `occurred_at`. Valid events are accepted
/// while invalid ones (and events of an already billed period) are listed in
/// `rejected` by index and code; gauges report absolute levels.
#[utoipa::path(post, path = "/v1/usage", tag = "usage", security(("tenant_key" = [])), request_body = UsageBatch,
    responses((status = 200, body = UsageResult), (status = 400, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/usage")]
async fn report_usage(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    body: JsonBody<UsageBatch>,
) -> Result<HttpResponse, ApiError> {
    state.ok(async |conn, now| usage::ingest(conn, now, &tenant, &state.key_filters, body.value).await).await
}
