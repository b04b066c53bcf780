//! Invoices for bank transfer, their payments and closing acts (API.md "Refunds,
//! receipts, invoices, partners").

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, Data, Path, Query};
use actix_web::{HttpResponse, get, post};
use billing_shared::services::acts::{self, ActView};
use billing_shared::services::bank_statements::{self, ImportReport};
use billing_shared::services::invoices::{self, InvoiceView, TransferAnswer, TransferSpec};
use billing_shared::services::{Page, PageRequest, documents};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::parse_id;
use crate::error::{ApiError, Problem};
use crate::extract::{Idempotency, JsonBody, TenantAuth};
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(list_invoices)
        .service(import_statement)
        .service(get_invoice)
        .service(get_invoice_pdf)
        .service(mark_paid)
        .service(get_act)
        .service(get_act_pdf);
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InvoiceQuery {
    pub customer_id: Option<Uuid>,
    /// Page size, 1..100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    pub starting_after: Option<Uuid>,
}

/// The tenant's invoices (of one customer), oldest first.
#[utoipa::path(get, path = "/v1/invoices", tag = "invoices", security(("tenant_key" = [])), params(InvoiceQuery),
    responses((status = 200, body = Page<InvoiceView>), (status = 422, body = Problem)))]
#[get("/v1/invoices")]
async fn list_invoices(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    q: Query<InvoiceQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let page = PageRequest::new(q.limit, q.starting_after)?;
    let customer = q.customer_id.map(Into::into);
    state.ok(async |conn, _| invoices::list(conn, &tenant, customer, page).await).await
}

/// An invoice: seller and buyer, lines, VAT, the total in words, what was
/// received and is still due, its transfers and its act.
#[utoipa::path(get, path = "/v1/invoices/{id}", tag = "invoices", security(("tenant_key" = [])),
    responses((status = 200, body = InvoiceView), (status = 404, body = Problem)))]
#[get("/v1/invoices/{id}")]
async fn get_invoice(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "invoice")?;
    state.ok(async |conn, _| invoices::get(conn, &tenant, id).await).await
}

/// The invoice as a PDF (Cyrillic, A4), to send to the customer.
#[utoipa::path(get, path = "/v1/invoices/{id}/pdf", tag = "invoices", security(("tenant_key" = [])),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 404, body = Problem)))]
#[get("/v1/invoices/{id}/pdf")]
async fn get_invoice_pdf(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "invoice")?;
    let invoice = state.transaction(async |conn, _| invoices::get(conn, &tenant, id).await).await?;
    let pdf = documents::invoice_pdf(&invoice, tenant.tz)?;
    Ok(pdf_answer(&format!("invoice-{}.pdf", invoice.number), pdf))
}

fn pdf_answer(file: &str, bytes: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/pdf")
        .insert_header(("Content-Disposition", format!("inline; filename=\"{file}\"")))
        .body(bytes)
}

/// Record money received for an invoice by bank transfer (an operator, or the
/// product). It becomes the customer's prepaid money and pays the invoice once it
/// covers it; `outcome` says what it did (`paid`, `partially_paid`, `late`).
#[utoipa::path(post, path = "/v1/invoices/{id}/mark-paid", tag = "invoices", security(("tenant_key" = [])),
    request_body = TransferSpec, params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = TransferAnswer), (status = 404, body = Problem), (status = 409, body = Problem),
        (status = 422, body = Problem)))]
#[post("/v1/invoices/{id}/mark-paid")]
async fn mark_paid(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    id: Path<String>,
    body: JsonBody<TransferSpec>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "invoice")?;
    let req = idem.request(tenant.id.to_string(), &body.raw)?;
    state
        .run(StatusCode::OK, req, async |conn, now| invoices::mark_paid(conn, now, &tenant, id, body.value).await)
        .await
}

/// Import a bank statement in the 1C exchange format (`1CClientBankExchange`,
/// Windows-1251, DOS or UTF-8, as the request body, up to 16 MiB): incoming payments that name
/// an invoice and come from its buyer are recorded for it; the rest is listed in
/// `unmatched` with a reason, never guessed. Importing the same file again records
/// nothing twice.
#[utoipa::path(post, path = "/v1/invoices/import", tag = "invoices", security(("tenant_key" = [])),
    request_body(content = String, content_type = "text/plain", description = "the statement file"),
    params(("Idempotency-Key" = Option<String>, Header)),
    responses((status = 200, body = ImportReport), (status = 413, body = Problem), (status = 422, body = Problem)))]
#[post("/v1/invoices/import")]
async fn import_statement(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    idem: Idempotency,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let req = idem.request(tenant.id.to_string(), &body)?;
    state.run(StatusCode::OK, req, async |conn, now| bank_statements::import(conn, now, &tenant, &body).await).await
}

/// A closing act.
#[utoipa::path(get, path = "/v1/acts/{id}", tag = "invoices", security(("tenant_key" = [])),
    responses((status = 200, body = ActView), (status = 404, body = Problem)))]
#[get("/v1/acts/{id}")]
async fn get_act(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "act")?;
    state.ok(async |conn, _| acts::get(conn, &tenant, id).await).await
}

/// The closing act as a PDF.
#[utoipa::path(get, path = "/v1/acts/{id}/pdf", tag = "invoices", security(("tenant_key" = [])),
    responses((status = 200, content_type = "application/pdf", body = Vec<u8>), (status = 404, body = Problem)))]
#[get("/v1/acts/{id}/pdf")]
async fn get_act_pdf(
    state: Data<AppState>,
    TenantAuth(tenant): TenantAuth,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id, "act")?;
    let act = state.transaction(async |conn, _| acts::get(conn, &tenant, id).await).await?;
    let pdf = documents::act_pdf(&act, tenant.tz)?;
    Ok(pdf_answer(&format!("act-{}.pdf", act.number), pdf))
}
