//! Subscription endpoints.

use actix_web::http::StatusCode;
use actix_web::web::{self, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::Page;
use billing_shared::services::lifecycle::{self, PayRequest, PaymentAnswer};
use billing_shared::services::plan_change::{self, ChangePlanRequest, ChangePlanView};
use billing_shared::services::purchase::{self, PurchaseSpec, PurchaseView};
use billing_shared::services::subscriptions::{self, SubscriptionView};
use billing_shared::services::termination::{self, TerminateRequest, Terminated};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;
use billing_shared::domain::ids::CustomerId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(create_subscription)
        .service(list_subscriptions)
        .service(get_subscription)
        .service(cancel_subscription)
        .service(resume_subscription)
        .service(pay_subscription)
        .service(extend_subscription)
        .service(change_plan)
        .service(terminate_subscription);
}

/// Buy a plan. With `pay_with: "card"` the answer's `payment.confirmation` carries the
/// CloudPayments widget parameters; access starts when the payment is confirmed.
#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", security(("tenant_key" = [])), request_body = PurchaseSpec,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = PurchaseView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/subscriptions")]
async fn create_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: JsonBody<PurchaseSpec>,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::CREATED, req, async |conn, now| {
            purchase::purchase(conn, now, &state.ports.gateways, &tenant, body.value).await
        })
        .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    pub customer_id: Option<CustomerId>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", security(("tenant_key" = [])), params(SubscriptionQuery),
    responses((status = 200, body = Page<SubscriptionView>)))]
#[get("/v1/subscriptions")]
async fn list_subscriptions(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<SubscriptionQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = billing_shared::services::PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| subscriptions::list(conn, &tenant, q.customer_id, None, page).await).await
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions", security(("tenant_key" = [])),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem)))]
#[get("/v1/subscriptions/{id}")]
async fn get_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    state.ok(async |conn, _| subscriptions::get(conn, &tenant, id).await).await
}

/// Cancel: auto-renew off, access to the end of the paid period (a subscription in
/// dunning ends at once).
#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", security(("tenant_key" = [])),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/v1/subscriptions/{id}/cancel")]
async fn cancel_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    state.ok(async |conn, now| lifecycle::cancel(conn, now, &tenant, id).await).await
}

/// Resume: auto-renew back on, before the period ends.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions", security(("tenant_key" = [])),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem), (status = 409, body = Problem)))]
#[post("/v1/subscriptions/{id}/resume")]
async fn resume_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    state.ok(async |conn, now| lifecycle::resume(conn, now, &tenant, id).await).await
}

/// "Pay now" for a `past_due` or `suspended` subscription: `saved_card` queues a
/// charge of the saved card; `card` answers widget parameters in
/// `payment.confirmation`. Recovery within grace keeps the period's anchor; after a
/// suspension the new period starts at the payment.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/pay", tag = "subscriptions", security(("tenant_key" = [])), request_body = PayRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = PaymentAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/subscriptions/{id}/pay")]
async fn pay_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<PayRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| {
            lifecycle::pay_now(conn, now, &state.ports.gateways, &tenant, id, body.value).await
        })
        .await
}

/// Manual renewal: pay the next period now at today's price; it starts when the
/// current period (and any extension already paid) ends.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/extend", tag = "subscriptions", security(("tenant_key" = [])), request_body = PayRequest,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = PaymentAnswer), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/subscriptions/{id}/extend")]
async fn extend_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<PayRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| {
            lifecycle::extend(conn, now, &state.ports.gateways, &tenant, id, body.value).await
        })
        .await
}

/// Change plan. An upgrade (dearer per day) applies now, in the tenant's
/// `upgrade_mode`, once the amount due is paid — by the saved card when there is
/// one, else `payment.confirmation` collects it; below 1.00 it applies at once. A
/// downgrade is scheduled for the next period (`scheduled_plan`); changing back to
/// the current plan cancels it. `preview: true` only quotes.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/change-plan", tag = "subscriptions", security(("tenant_key" = [])),
    request_body = ChangePlanRequest, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = ChangePlanView), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem), (status = 501, body = Problem)))]
#[post("/v1/subscriptions/{id}/change-plan")]
async fn change_plan(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<ChangePlanRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| {
            plan_change::change_plan(conn, now, &state.ports.gateways, &tenant, id, body.value).await
        })
        .await
}

/// The provider ends a subscription now (Alfa 10.2-10.3): without the customer's
/// fault the unused days of the paid period are refunded pro rata (`refund`), and
/// upgrade surcharges of the period (pro rata) and paid extensions not yet started
/// (in full) too (`additional_refunds`), all approved and executed by the worker;
/// with it, nothing is. Access ends at once.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/terminate", tag = "subscriptions", security(("tenant_key" = [])),
    request_body = TerminateRequest, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = Terminated), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/subscriptions/{id}/terminate")]
async fn terminate_subscription(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<TerminateRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "subscription")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| termination::terminate(conn, now, &tenant, id, body.value).await)
        .await
}
