//! Usage reporting.

use actix_web::web::{self, Data};
use actix_web::{HttpResponse, post};
use billing_shared::error::ServiceError;
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
    // Parsed and checked before it waits for its turn: the turns bound the events
    // PostgreSQL works on at once (more full batches than cores only made them wait
    // on each other's counters and index pages; bench/README, "Usage batches in
    // turns"), while the next batches are parsed meanwhile. A batch takes a share of
    // a turn by its size, so small ones, bound by their commits, still run many at
    // once. Turns are handed out in arrival order: a small batch behind a waiting
    // full one waits too.
    // The raw body is not needed past parsing: not held while waiting.
    let JsonBody { value, raw } = body;
    drop(raw);
    let batch = usage::check(tenant.id, value)?;
    let _turn =
        state.usage_turns.acquire_many(batch.share()).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
    state.ok(async |conn, now| usage::ingest(conn, now, &tenant, &state.key_filters, batch).await).await
}
