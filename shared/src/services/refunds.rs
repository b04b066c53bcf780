//! Refund requests (`/v1/refunds`, SPEC §6): decided by the tenant's refund rules
//! ([`crate::domain::refund`]), held requests reviewed by the product's staff.
//!
//! This slice records decisions and reviews; executing approved refunds through
//! the gateway (the worker, CloudPayments `payments/refund`, the Refund
//! notification, the ledger reversal) comes next: until then an approved refund
//! stays `approved`. The database refuses refunds that together exceed what the
//! payment captured.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::payments;
use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments as payments_db;
use crate::db::refunds::{self as db, RefundRow};
use crate::db::schema::usage_counters;
use crate::domain::calendar::Calendar;
use crate::domain::money::{Money, MoneyInput, MoneyView};
use crate::domain::refund::{Outcome, RefundFacts, decide};
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};

/// `POST /v1/refunds` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub payment_id: Uuid,
    pub reason: RefundReason,
    /// At most this much; absent: as much as the rules allow.
    #[serde(default)]
    pub amount: Option<MoneyInput>,
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub payment_id: Uuid,
    pub customer_id: Uuid,
    pub reason: String,
    /// `pending_review`, `approved`, `rejected`, `processing`, `succeeded`, `failed`.
    pub status: String,
    /// Why: `approved`, `review_required`, `refund_window_closed`, `usage_present`,
    /// `reason_not_refundable`, `nothing_to_refund`, `approved_by_review`,
    /// `rejected_by_review`.
    pub decision_code: String,
    /// What is (to be) refunded; zero when rejected by the rules.
    pub amount: MoneyView,
    pub requested_amount: Option<MoneyView>,
    pub comment: Option<String>,
    /// The deciding rule's window end, when it has one.
    pub window_ends_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// `POST /v1/refunds/{id}/approve` and `/reject` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

fn money(amount: rust_decimal::Decimal, currency: &str) -> ServiceResult<Money> {
    let c = crate::domain::money::Currency::parse(currency).map_err(|e| corrupt("refund currency", e))?;
    Money::new(amount, c).map_err(|e| corrupt("refund amount", e))
}

fn view(r: &RefundRow) -> ServiceResult<RefundView> {
    Ok(RefundView {
        id: r.id,
        payment_id: r.payment_id,
        customer_id: r.customer_id,
        reason: r.reason.clone(),
        status: r.status.clone(),
        decision_code: r.decision_code.clone(),
        amount: money(r.amount, &r.currency)?.into(),
        requested_amount: r.requested_amount.map(|a| money(a, &r.currency)).transpose()?.map(Into::into),
        comment: r.comment.clone(),
        window_ends_at: r.window_ends_at,
        decided_at: r.decided_at,
        created_at: r.created_at,
    })
}

fn reason_str(reason: RefundReason) -> ServiceResult<String> {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(corrupt("refund reason", format!("{other:?}"))),
    }
}

async fn emit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    r: &RefundRow,
    ty: &'static str,
) -> ServiceResult<()> {
    let data = serde_json::to_value(view(r)?).map_err(|e| corrupt("refund", e))?;
    outbox::emit(conn, now, NewEvent::event(tenant.id, r.payment_id, ty, data)).await?;
    Ok(())
}

fn check_comment(comment: &Option<String>) -> ServiceResult<()> {
    if comment.as_ref().is_some_and(|c| c.chars().count() > 1000) {
        return Err(ServiceError::validation("comment must be at most 1000 characters"));
    }
    Ok(())
}

pub async fn request(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    req: RefundRequest,
) -> ServiceResult<RefundView> {
    check_comment(&req.comment)?;
    let payment = payments_db::find_for_update(conn, req.payment_id)
        .await?
        .filter(|p| p.tenant_id == tenant.id)
        .ok_or_else(|| ServiceError::not_found("payment_not_found", "no such payment"))?;
    if !matches!(payment.status.as_str(), "succeeded" | "partially_refunded") {
        return Err(ServiceError::conflict(
            "payment_not_refundable",
            format!("only a captured payment can be refunded (it is {})", payment.status),
        ));
    }
    let captured = payments::money_of(&payment)?;
    let requested = match &req.amount {
        Some(input) => {
            let m = input.money().map_err(|e| ServiceError::invalid("invalid_money", e.to_string()))?;
            if m.currency() != captured.currency() || m.is_zero() {
                return Err(ServiceError::invalid(
                    "invalid_money",
                    format!("amount must be a positive {} amount", captured.currency().code()),
                ));
            }
            Some(m)
        }
        None => None,
    };
    let held = money(db::held_for_payment(conn, payment.id).await?, &payment.currency)?;
    let period = payment.period_start.zip(payment.period_end);
    let usage_present = match (payment.subscription_id, payment.period_start) {
        (Some(sub), Some(start)) => {
            diesel::select(diesel::dsl::exists(
                usage_counters::table
                    .filter(usage_counters::subscription_id.eq(sub))
                    .filter(usage_counters::period_start.eq(start))
                    .filter(usage_counters::peak.gt(0)),
            ))
            .get_result(conn)
            .await?
        }
        _ => false,
    };
    let facts = RefundFacts {
        reason: req.reason,
        requested,
        captured,
        refunded: held,
        tariff: money(payments::tariff_amount(&payment)?, &payment.currency)?,
        paid_at: payment.captured_at.unwrap_or(payment.created_at),
        period,
        usage_present,
        now,
        tz: tenant.tz,
    };
    if let Some(year) = [now, facts.paid_at]
        .iter()
        .map(|t| chrono::Datelike::year(&t.with_timezone(&tenant.tz)))
        .find(|y| !Calendar::russia().covers(*y))
    {
        tracing::warn!(year, "the production calendar has no data for this year: weekends only");
    }
    let decision = decide(&tenant.policy.refund_rules, &tenant.policy.holidays, Calendar::russia(), &facts);
    let status = match decision.outcome {
        Outcome::Approve => "approved",
        Outcome::Review => "pending_review",
        Outcome::Reject => "rejected",
    };
    let row = RefundRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        payment_id: payment.id,
        customer_id: payment.customer_id,
        reason: reason_str(req.reason)?,
        status: status.into(),
        decision_code: decision.code.into(),
        amount: decision.amount.amount(),
        requested_amount: requested.map(|m| m.amount()),
        currency: payment.currency.clone(),
        comment: req.comment,
        window_ends_at: decision.window_ends_at,
        decided_at: (decision.outcome != Outcome::Review).then_some(now),
        created_at: now,
    };
    db::insert(conn, &row).await?;
    emit(conn, now, tenant, &row, "refund.requested").await?;
    match decision.outcome {
        Outcome::Approve => emit(conn, now, tenant, &row, "refund.approved").await?,
        Outcome::Reject => emit(conn, now, tenant, &row, "refund.rejected").await?,
        Outcome::Review => {}
    }
    view(&row)
}

/// The product's staff decide a held request.
pub async fn review(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
    approve: bool,
    req: ReviewRequest,
) -> ServiceResult<RefundView> {
    check_comment(&req.comment)?;
    let mut row = db::find_for_update(conn, tenant.id, id)
        .await?
        .ok_or_else(|| ServiceError::not_found("refund_not_found", "no such refund"))?;
    if row.status != "pending_review" {
        return Err(ServiceError::conflict(
            "refund_not_pending",
            format!("only a refund waiting for review can be decided (it is {})", row.status),
        ));
    }
    let (status, code, event) = if approve {
        ("approved", "approved_by_review", "refund.approved")
    } else {
        ("rejected", "rejected_by_review", "refund.rejected")
    };
    row.status = status.into();
    row.decision_code = code.into();
    row.decided_at = Some(now);
    if req.comment.is_some() {
        row.comment = req.comment;
    }
    db::save(conn, &row).await?;
    emit(conn, now, tenant, &row, event).await?;
    view(&row)
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    status: Option<&str>,
    payment_id: Option<Uuid>,
    page: PageRequest,
) -> ServiceResult<Page<RefundView>> {
    let rows = db::list(conn, tenant.id, status, payment_id, page.starting_after, page.fetch()).await?;
    let views = rows.iter().map(view).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page::from_rows(views, page, |v| v))
}
