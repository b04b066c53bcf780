//! 54-FZ receipts of the tenant's payments and refunds.

use actix_web::web::{self, Data, Query};
use actix_web::{HttpResponse, get};
use billing_shared::services::receipts::{self, ReceiptView};
use billing_shared::services::{Page, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;
use crate::extract::TenantAuth;
use crate::state::AppState;
use billing_shared::domain::ids::PaymentId;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_receipts);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReceiptQuery {
    /// The payment's receipts: its income receipt and a refund receipt per refund.
    pub payment_id: Option<PaymentId>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

/// Receipts (`income`, `income_refund`) with their status (`pending`, `registered`,
/// `failed`), the document sent to the fiscal provider, and the fiscal attributes
/// once registered.
#[utoipa::path(get, path = "/v1/receipts", tag = "receipts", security(("tenant_key" = [])), params(ReceiptQuery),
    responses((status = 200, body = Page<ReceiptView>)))]
#[get("/v1/receipts")]
async fn list_receipts(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<ReceiptQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.starting_after)?;
    state.ok(async |conn, _| receipts::list(conn, &tenant, q.payment_id, &[], page).await).await
}
