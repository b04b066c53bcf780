//! Importing a bank statement (`1CClientBankExchange`, `domain::bank_statement`)
//! to record invoice payments (SPEC §8, Alfa CRM 5.3): `POST
//! /v1/invoices/import` with the file's bytes.
//!
//! A document is **matched** when it is incoming (its payee INN or account is the
//! tenant's), its purpose names exactly one of the tenant's invoices by number,
//! its payer's INN is that invoice's buyer's, and its amount is readable: the
//! money is then recorded for the invoice (`invoices::receive`) under the
//! reference `1c:<date>:<number>:<payer INN>:<amount>`, so importing the same
//! statement again records nothing twice. Anything else is **reported, never
//! guessed**: `not_incoming` (skipped), `no_invoice_number`,
//! `several_invoice_numbers`, `invoice_not_found`, `payer_mismatch`,
//! `invalid_amount`, `already_recorded`, `invoice_already_paid`.

use chrono::{DateTime, NaiveTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::invoices::{self, Received, TransferOutcome};
use super::tenants::Tenant;
use crate::db::invoices as db;
use crate::domain::bank_statement::{Document, decode, parse};
use crate::domain::invoice::{Buyer, numbers_in};
use crate::domain::money::{Currency, Money, MoneyView};
use crate::domain::period::resolve_local;
use crate::domain::states::TransferSource;
use crate::error::{ServiceError, ServiceResult};

/// A statement document recorded for an invoice.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Matched {
    /// The document's position in the file (1-based) and its own number.
    pub document: usize,
    pub document_number: String,
    pub invoice_id: Uuid,
    pub invoice_number: String,
    pub amount: MoneyView,
    pub outcome: TransferOutcome,
}

/// A statement document not recorded, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Unmatched {
    pub document: usize,
    pub document_number: String,
    pub date: Option<chrono::NaiveDate>,
    pub amount: Option<String>,
    pub payer_inn: String,
    pub payer: String,
    pub purpose: String,
    /// `no_invoice_number`, `several_invoice_numbers`, `invoice_not_found`,
    /// `payer_mismatch`, `invalid_amount`, `already_recorded`,
    /// `invoice_already_paid`.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ImportReport {
    /// Payment documents in the file.
    pub documents: usize,
    /// Outgoing (or other parties') documents, skipped.
    pub not_incoming: usize,
    pub matched: Vec<Matched>,
    pub unmatched: Vec<Unmatched>,
}

fn unmatched(d: &Document, reason: &str) -> Unmatched {
    Unmatched {
        document: d.index,
        document_number: d.number.clone(),
        date: d.date,
        amount: d.amount.map(|a| format!("{a:.2}")),
        payer_inn: d.payer_inn.clone(),
        payer: d.payer.clone(),
        purpose: d.purpose.clone(),
        reason: reason.to_owned(),
    }
}

/// Imports a statement's bytes: every incoming document is matched or reported.
/// 422 `invalid_statement` when the file is not a 1C statement (nothing written);
/// 422 `requisites_missing` when the tenant has no requisites to know its account by.
pub async fn import(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    bytes: &[u8],
) -> ServiceResult<ImportReport> {
    let Some(own) = tenant.requisites.clone() else {
        return Err(ServiceError::invalid("requisites_missing", "set the tenant's requisites (INN, account) first"));
    };
    let docs = parse(&decode(bytes)).map_err(|e| ServiceError::invalid("invalid_statement", e.to_string()))?;
    let mut report =
        ImportReport { documents: docs.len(), not_incoming: 0, matched: Vec::new(), unmatched: Vec::new() };
    for d in &docs {
        if d.payee_inn != own.inn && d.payee_account != own.account {
            report.not_incoming += 1;
            continue;
        }
        match record(conn, now, tenant, d).await? {
            Ok(m) => report.matched.push(m),
            Err(reason) => report.unmatched.push(unmatched(d, reason)),
        }
    }
    Ok(report)
}

/// Records one incoming document, or says why not.
async fn record(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    d: &Document,
) -> ServiceResult<Result<Matched, &'static str>> {
    let numbers = numbers_in(&d.purpose);
    let number = match numbers.as_slice() {
        [] => return Ok(Err("no_invoice_number")),
        [one] => one,
        _ => return Ok(Err("several_invoice_numbers")),
    };
    let Some(mut invoice) = db::lock_by_number(conn, tenant.id, number).await? else {
        return Ok(Err("invoice_not_found"));
    };
    let buyer: Buyer = serde_json::from_value(invoice.buyer.clone()).map_err(|e| super::corrupt("invoice buyer", e))?;
    if buyer.inn != d.payer_inn {
        return Ok(Err("payer_mismatch"));
    }
    let Some(amount) = d.amount.and_then(|a| Money::new(a, Currency::Rub).ok()) else {
        return Ok(Err("invalid_amount"));
    };
    let day = d.received.or(d.date).unwrap_or_else(|| now.with_timezone(&tenant.tz).date_naive());
    let paid_at = resolve_local(tenant.tz, day.and_time(NaiveTime::MIN)).min(now);
    let reference = format!("1c:{}:{}:{}:{:.2}", day.format("%Y-%m-%d"), d.number, d.payer_inn, amount.amount());
    let received = Received { amount, paid_at, reference: &reference, source: TransferSource::BankStatement };
    match invoices::receive(conn, now, tenant, &mut invoice, received).await {
        Ok(outcome) => Ok(Ok(Matched {
            document: d.index,
            document_number: d.number.clone(),
            invoice_id: invoice.id,
            invoice_number: invoice.number.clone(),
            amount: amount.into(),
            outcome,
        })),
        Err(ServiceError::Conflict { code: "duplicate_payment_reference", .. }) => Ok(Err("already_recorded")),
        Err(ServiceError::Conflict { code: "invoice_already_paid", .. }) => Ok(Err("invoice_already_paid")),
        Err(e) => Err(e),
    }
}
