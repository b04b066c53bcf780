//! Closing acts (акт оказанных услуг; SPEC §8, SellerGPT 3.1.2 «Направлять
//! Пользователю счета и акты»): one per paid invoice, for the period its payment
//! paid for, numbered per tenant and year like invoices and dated the period's
//! end (when the service for it is rendered). `act.issued`.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::Tenant;
use crate::db::invoices::{self as db, ActRow, InvoiceRow};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::PaymentRow;
use crate::domain::invoice::{self, Buyer, DocumentLine, Requisites};
use crate::domain::money::MoneyView;
use crate::domain::states::DocumentKind;
use crate::error::{ServiceError, ServiceResult};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActView {
    pub id: Uuid,
    pub number: String,
    pub invoice_id: Uuid,
    pub payment_id: crate::domain::ids::PaymentId,
    pub customer_id: crate::domain::ids::CustomerId,
    pub seller: Requisites,
    pub buyer: Buyer,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub lines: Vec<DocumentLine>,
    pub total: MoneyView,
    pub vat_label: String,
    pub vat_amount: Option<MoneyView>,
    pub total_in_words: String,
    /// The act's date: the end of the period it closes.
    pub issued_at: DateTime<Utc>,
}

/// Issues the act of a paid `invoice` for the period `payment` paid for (once).
pub(crate) async fn issue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    invoice: &InvoiceRow,
    payment: &PaymentRow,
) -> ServiceResult<()> {
    let start = payment.period_start.unwrap_or(now);
    let end = payment.period_end.unwrap_or(now).max(start);
    let year = invoice::numbering_year(end, tenant.tz);
    let seq = db::next_number(conn, tenant.id, DocumentKind::Act, year).await?;
    let period = format!(" за период {} – {}", invoice::date_ru(start, tenant.tz), invoice::date_ru(end, tenant.tz));
    let lines: Vec<DocumentLine> = serde_json::from_value::<Vec<DocumentLine>>(invoice.lines.clone())
        .map_err(|e| super::corrupt("invoice lines", e))?
        .into_iter()
        .map(|l| DocumentLine { name: format!("{}{period}", l.name), amount: l.amount })
        .collect();
    let row = ActRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        invoice_id: invoice.id,
        payment_id: invoice.payment_id,
        customer_id: invoice.customer_id,
        number: invoice::number(year, seq),
        period_start: start,
        period_end: end,
        total: invoice.total,
        currency: invoice.currency.clone(),
        seller: invoice.seller.clone(),
        buyer: invoice.buyer.clone(),
        lines: serde_json::to_value(&lines).map_err(|e| super::corrupt("act lines", e))?,
        issued_at: end,
    };
    if !db::insert_act(conn, &row).await? {
        return Ok(());
    }
    let data = json!({
        "act_id": row.id, "number": row.number, "invoice_id": row.invoice_id, "customer_id": row.customer_id,
        "period_start": row.period_start, "period_end": row.period_end,
        "total": MoneyView::from(super::stored_money(row.total, &row.currency, "act total")?),
    });
    outbox::emit(conn, now, NewEvent::event(tenant.id, payment.ordering_key(), "act.issued", data)).await?;
    Ok(())
}

pub async fn get(conn: &mut AsyncPgConnection, tenant: &Tenant, id: Uuid) -> ServiceResult<ActView> {
    let r = db::find_act(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("act_not_found", "no such act"))?;
    view(&r)
}

pub(crate) fn view(r: &ActRow) -> ServiceResult<ActView> {
    let corrupt = |what: &str, e: serde_json::Error| super::corrupt(what, e);
    let seller: Requisites = serde_json::from_value(r.seller.clone()).map_err(|e| corrupt("act seller", e))?;
    let (vat_label, vat_amount) = invoice::vat_line(r.total, seller.vat);
    let money = |a| super::stored_money(a, &r.currency, "act amount");
    Ok(ActView {
        id: r.id,
        number: r.number.clone(),
        invoice_id: r.invoice_id,
        payment_id: r.payment_id,
        customer_id: r.customer_id,
        buyer: serde_json::from_value(r.buyer.clone()).map_err(|e| corrupt("act buyer", e))?,
        period_start: r.period_start,
        period_end: r.period_end,
        lines: serde_json::from_value(r.lines.clone()).map_err(|e| corrupt("act lines", e))?,
        total: money(r.total)?.into(),
        vat_label,
        vat_amount: vat_amount.map(money).transpose()?.map(Into::into),
        total_in_words: invoice::amount_in_words(r.total),
        issued_at: r.issued_at,
        seller,
    })
}
