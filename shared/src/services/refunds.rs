//! Refund requests (`/v1/refunds`, SPEC §6): decided by the tenant's refund rules
//! ([`crate::domain::refund`]), held requests reviewed by the product's staff.
//!
//! Approved refunds are executed by the worker ([`super::refund_execution`]). The
//! database refuses refunds that together exceed what the payment captured.

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt, stored_money};
use super::{payments, refund_approval};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::refunds::{self as db, RefundRow};
use crate::domain::calendar::Calendar;
use crate::domain::ids::{CustomerId, PaymentId, TenantId};
use crate::domain::money::{Money, MoneyInput, MoneyView};
use crate::domain::period::{local_date, resolve_local};
use crate::domain::refund::{Outcome, RefundFacts, decide};
use crate::domain::states::{PaymentKind, PaymentStatus, RefundStatus};
use crate::domain::tenant::RefundReason;
use crate::error::{ServiceError, ServiceResult};
use crate::queue::jobs::Job;

/// `POST /v1/refunds` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"payment_id": "01926f6e-8d40-7b3a-9c1e-2f4a5b6c7d8f", "reason": "unused", "comment": "The customer asked on 2026-03-07"})))]
pub struct RefundRequest {
    pub payment_id: PaymentId,
    pub reason: RefundReason,
    /// At most this much; absent: as much as the rules allow.
    #[serde(default)]
    pub amount: Option<MoneyInput>,
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RefundView {
    pub id: Uuid,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub reason: String,
    pub status: RefundStatus,
    /// Why: `approved`, `review_required`, `refund_window_closed`, `usage_present`,
    /// `reason_not_refundable`, `nothing_to_refund`, `approved_by_review`,
    /// `rejected_by_review` (the tenant's staff decided), `approved_by_operator`,
    /// `rejected_by_operator` (the service's operator decided for the tenant, in
    /// the console), `balance_spent` (a top-up's money was spent),
    /// `cashback_spent` (the cashback it earned was spent: nothing left to pay back).
    pub decision_code: String,
    /// What is (to be) refunded; zero when rejected by the rules.
    pub amount: MoneyView,
    pub requested_amount: Option<MoneyView>,
    pub comment: Option<String>,
    /// The reviewer's note.
    pub review_comment: Option<String>,
    /// The deciding rule's window end, when it has one.
    pub window_ends_at: Option<DateTime<Utc>>,
    pub decided_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// A held request is overdue for review from this instant (the tenant's
    /// `review_deadline_business_days`).
    pub review_due_at: Option<DateTime<Utc>>,
    /// A payment from the balance is refunded onto it: to the prepaid money...
    pub to_prepaid: MoneyView,
    /// ...and to the cashback.
    pub to_cashback: MoneyView,
    /// Cashback the payment earned, taken back from the customer's cashback.
    pub cashback_reversed: MoneyView,
    /// Cashback it earned that was already spent: deducted from `amount`.
    pub cashback_deducted: MoneyView,
}

/// `POST /v1/refunds/{id}/approve` and `/reject` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"comment": "Approved by support"})))]
pub struct ReviewRequest {
    #[serde(default)]
    #[schema(max_length = 1000, pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$")]
    pub comment: Option<String>,
}

pub(crate) fn money(amount: rust_decimal::Decimal, currency: &str) -> ServiceResult<Money> {
    stored_money(amount, currency, "refund amount")
}

/// A refund of the tenant with its payment, both locked: the payment first, as by
/// every writer of its refunds. `None` when the tenant has no such refund.
pub(crate) async fn lock_with_payment(
    conn: &mut AsyncPgConnection,
    tenant_id: TenantId,
    id: Uuid,
) -> ServiceResult<Option<(PaymentRow, RefundRow)>> {
    let Some(payment_id) = db::payment_of(conn, tenant_id, id).await? else { return Ok(None) };
    let payment = payments_db::find_for_update(conn, payment_id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("payment {payment_id} of refund {id} vanished")))?;
    let refund = db::find_for_update(conn, tenant_id, id)
        .await?
        .ok_or_else(|| ServiceError::Internal(format!("refund {id} vanished")))?;
    Ok(Some((payment, refund)))
}

pub(crate) fn refund_not_found() -> ServiceError {
    ServiceError::not_found("refund_not_found", "no such refund")
}

pub(crate) fn view(r: &RefundRow) -> ServiceResult<RefundView> {
    Ok(RefundView {
        id: r.id,
        payment_id: r.payment_id,
        customer_id: r.customer_id,
        reason: r.reason.clone(),
        status: r.status,
        decision_code: r.decision_code.clone(),
        amount: money(r.amount, &r.currency)?.into(),
        requested_amount: r.requested_amount.map(|a| money(a, &r.currency)).transpose()?.map(Into::into),
        comment: r.comment.clone(),
        review_comment: r.review_comment.clone(),
        window_ends_at: r.window_ends_at,
        decided_at: r.decided_at,
        created_at: r.created_at,
        review_due_at: r.review_due_at,
        to_prepaid: money(r.to_prepaid, &r.currency)?.into(),
        to_cashback: money(r.to_cashback, &r.currency)?.into(),
        cashback_reversed: money(r.cashback_reversed, &r.currency)?.into(),
        cashback_deducted: money(r.cashback_deducted, &r.currency)?.into(),
    })
}

/// A refund of `payment` decided at `now`; the caller fills in what else it knows.
pub(crate) fn new_row(
    payment: &PaymentRow,
    reason: RefundReason,
    status: RefundStatus,
    code: &str,
    amount: rust_decimal::Decimal,
    now: DateTime<Utc>,
) -> ServiceResult<RefundRow> {
    Ok(RefundRow {
        id: Uuid::now_v7(),
        tenant_id: payment.tenant_id,
        payment_id: payment.id,
        customer_id: payment.customer_id,
        reason: reason_str(reason)?,
        status,
        decision_code: code.into(),
        amount,
        requested_amount: None,
        currency: payment.currency.clone(),
        comment: None,
        review_comment: None,
        window_ends_at: None,
        decided_at: Some(now),
        created_at: now,
        review_due_at: None,
        overdue_notified_at: None,
        attempt: 0,
        gateway_transaction_id: None,
        failure_reason: None,
        sent_at: None,
        succeeded_at: None,
        to_prepaid: rust_decimal::Decimal::ZERO,
        to_cashback: rust_decimal::Decimal::ZERO,
        cashback_reversed: rust_decimal::Decimal::ZERO,
        cashback_deducted: rust_decimal::Decimal::ZERO,
    })
}

fn reason_str(reason: RefundReason) -> ServiceResult<String> {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(corrupt("refund reason", format!("{other:?}"))),
    }
}

/// Refund events are ordered with their payment's events (subscription, else customer).
pub(crate) async fn emit(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    r: &RefundRow,
    ty: &'static str,
) -> ServiceResult<()> {
    let mut data = serde_json::to_value(view(r)?).map_err(|e| corrupt("refund", e))?;
    if let Some(d) = data.as_object_mut() {
        d.insert("subscription_id".into(), serde_json::json!(payment.subscription_id));
    }
    let ordering = payment.ordering_key();
    outbox::emit(conn, now, NewEvent::event(tenant.id, ordering, ty, data)).await?;
    Ok(())
}

pub(crate) fn check_comment(comment: Option<&str>) -> ServiceResult<()> {
    let Some(c) = comment else { return Ok(()) };
    if c.chars().count() > 1000 || c.chars().any(|ch| ch.is_control() && !matches!(ch, '\n' | '\r' | '\t')) {
        return Err(ServiceError::validation("comment must be at most 1000 printable characters"));
    }
    Ok(())
}

/// The database refuses refunds above the captured amount: a clean conflict.
pub(crate) fn over_capture(e: diesel::result::Error) -> ServiceError {
    use diesel::result::{DatabaseErrorKind, Error};
    if let Error::DatabaseError(DatabaseErrorKind::CheckViolation, info) = &e
        && info.constraint_name() == Some("refunds_within_capture")
    {
        return ServiceError::conflict("refund_exceeds_capture", "the payment's refunds would exceed what it captured");
    }
    e.into()
}

pub async fn request(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    req: RefundRequest,
) -> ServiceResult<RefundView> {
    check_comment(req.comment.as_deref())?;
    let payment = payments_db::find_for_update(conn, req.payment_id)
        .await?
        .filter(|p| p.tenant_id == tenant.id)
        .ok_or_else(|| ServiceError::not_found("payment_not_found", "no such payment"))?;
    if !matches!(payment.status, PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded) {
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
    let paid_at = payment.captured_at.unwrap_or(payment.created_at);
    // An upgrade's surcharge pays for the rest of the period from the upgrade on.
    let period = payment.period_start.zip(payment.period_end).map(|(start, end)| {
        if payment.kind == PaymentKind::Upgrade { (start.max(paid_at), end) } else { (start, end) }
    });
    let usage_present = match (payment.subscription_id, payment.period_start) {
        (Some(sub), Some(start)) => crate::db::usage::has_usage(conn, sub, start).await?,
        _ => false,
    };
    let facts = RefundFacts {
        reason: req.reason,
        requested,
        captured,
        refunded: held,
        tariff: money(payments::tariff_amount(&payment)?, &payment.currency)?,
        paid_at,
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
    let mut decision = decide(&tenant.policy.refund_rules, &tenant.policy.holidays, Calendar::russia(), &facts);
    // A top-up is refunded only as far as its money is unspent.
    if let Some(cap) = refund_approval::cap(conn, tenant, &payment).await?
        && decision.outcome != Outcome::Reject
        && decision.amount.amount() > cap
    {
        decision.amount = Money::round(cap, captured.currency());
        if cap.is_zero() {
            decision.outcome = Outcome::Reject;
            decision.code = "balance_spent";
        }
    }
    let status = match decision.outcome {
        Outcome::Approve => RefundStatus::Approved,
        Outcome::Review => RefundStatus::PendingReview,
        Outcome::Reject => RefundStatus::Rejected,
    };
    let held_for_review = decision.outcome == Outcome::Review;
    let mut row = RefundRow {
        requested_amount: requested.map(|m| m.amount()),
        comment: req.comment,
        window_ends_at: decision.window_ends_at,
        decided_at: (!held_for_review).then_some(now),
        review_due_at: held_for_review.then(|| review_due(tenant, now)),
        ..new_row(&payment, req.reason, status, decision.code, decision.amount.amount(), now)?
    };
    let settled = match row.status {
        RefundStatus::Approved => refund_approval::settle(conn, now, tenant, &payment, &mut row).await?,
        _ => Vec::new(),
    };
    db::insert(conn, &row).await.map_err(over_capture)?;
    emit(conn, now, tenant, &payment, &row, "refund.requested").await?;
    announce_decision(conn, now, tenant, &payment, &row, settled).await?;
    view(&row)
}

/// The events of a decided refund (`refund.approved` and its job, or
/// `refund.rejected`), then what approving it did to the balance.
async fn announce_decision(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    row: &RefundRow,
    settled: Vec<NewEvent>,
) -> ServiceResult<()> {
    match row.status {
        RefundStatus::Approved => {
            emit(conn, now, tenant, payment, row, "refund.approved").await?;
            enqueue(conn, now, payment, row).await?;
        }
        RefundStatus::Rejected => emit(conn, now, tenant, payment, row, "refund.rejected").await?,
        _ => {}
    }
    outbox::emit_many(conn, now, settled).await?;
    Ok(())
}

/// The end (24:00 tenant time) of the N-th business day after the request.
fn review_due(tenant: &Tenant, at: DateTime<Utc>) -> DateTime<Utc> {
    let days = tenant.policy.review_deadline_business_days;
    let last = Calendar::russia().nth_business_day_after(local_date(tenant.tz, at), days, &tenant.policy.holidays);
    resolve_local(tenant.tz, last.succ_opt().unwrap_or(last).and_time(chrono::NaiveTime::MIN))
}

/// Reports held requests past the tenant's review deadline (`refund.review_overdue`,
/// once each). Runs in the caller's transaction; returns how many.
pub async fn report_overdue(conn: &mut AsyncPgConnection, now: DateTime<Utc>, limit: i64) -> ServiceResult<usize> {
    let due = db::overdue(conn, now, limit).await?;
    for mut row in due.iter().cloned() {
        let tenant = super::tenants::load_cached(conn, row.tenant_id).await?;
        let payment = payments_db::find(conn, row.tenant_id, row.payment_id).await?.ok_or_else(|| {
            ServiceError::Internal(format!("payment {} of refund {} vanished", row.payment_id, row.id))
        })?;
        row.overdue_notified_at = Some(now);
        db::save(conn, &row).await?;
        emit(conn, now, &tenant, &payment, &row, "refund.review_overdue").await?;
    }
    Ok(due.len())
}

/// Who decides a held refund request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reviewer {
    /// The product's staff, with the tenant's API key.
    Tenant,
    /// The billing service's operator, for the tenant (the console).
    Operator,
}

/// A held request is decided (`decision_code` names who decided: `*_by_review`
/// for the tenant, `*_by_operator` for the operator). Errors: 404
/// `refund_not_found`, 409 `refund_not_pending`, 422 for a bad comment.
pub async fn review(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
    approve: bool,
    by: Reviewer,
    req: ReviewRequest,
) -> ServiceResult<RefundView> {
    check_comment(req.comment.as_deref())?;
    let (payment, mut row) = lock_with_payment(conn, tenant.id, id).await?.ok_or_else(refund_not_found)?;
    if row.status != RefundStatus::PendingReview {
        return Err(ServiceError::conflict(
            "refund_not_pending",
            format!("only a refund waiting for review can be decided (it is {})", row.status),
        ));
    }
    let (status, code) = match (approve, by) {
        (true, Reviewer::Tenant) => (RefundStatus::Approved, "approved_by_review"),
        (true, Reviewer::Operator) => (RefundStatus::Approved, "approved_by_operator"),
        (false, Reviewer::Tenant) => (RefundStatus::Rejected, "rejected_by_review"),
        (false, Reviewer::Operator) => (RefundStatus::Rejected, "rejected_by_operator"),
    };
    if by == Reviewer::Operator {
        tracing::info!(tenant = %tenant.id, refund = %id, approve, "the operator decided a held refund");
    }
    row.status = status;
    row.decision_code = code.into();
    row.decided_at = Some(now);
    row.review_comment = req.comment;
    let settled = match row.status {
        RefundStatus::Approved => refund_approval::settle(conn, now, tenant, &payment, &mut row).await?,
        _ => Vec::new(),
    };
    db::save(conn, &row).await.map_err(over_capture)?;
    announce_decision(conn, now, tenant, &payment, &row, settled).await?;
    view(&row)
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    status: Option<&str>,
    payment_id: Option<PaymentId>,
    page: PageRequest,
) -> ServiceResult<Page<RefundView>> {
    let status = status
        .map(|s| {
            RefundStatus::parse(s).ok_or_else(|| {
                let all: Vec<&str> = RefundStatus::ALL.iter().map(|s| s.as_str()).collect();
                ServiceError::validation(format!("status must be one of {}", all.join(", ")))
            })
        })
        .transpose()?;
    let rows = db::list(conn, tenant.id, status, payment_id, page.starting_after, page.fetch()).await?;
    let views = rows.iter().map(view).collect::<ServiceResult<Vec<_>>>()?;
    Ok(Page::from_rows(views, page, |v| v))
}

/// A refund the service decides itself, outside the tenant's refund rules.
pub(crate) struct Approved {
    pub reason: RefundReason,
    pub code: &'static str,
    pub amount: rust_decimal::Decimal,
    pub comment: Option<String>,
}

/// Records an approved refund of `payment` with its events.
pub(crate) async fn record_approved(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    payment: &PaymentRow,
    decided: Approved,
) -> ServiceResult<RefundView> {
    let mut row = RefundRow {
        comment: decided.comment,
        ..new_row(payment, decided.reason, RefundStatus::Approved, decided.code, decided.amount, now)?
    };
    let settled = refund_approval::settle(conn, now, tenant, payment, &mut row).await?;
    db::insert(conn, &row).await.map_err(over_capture)?;
    emit(conn, now, tenant, payment, &row, "refund.requested").await?;
    announce_decision(conn, now, tenant, payment, &row, settled).await?;
    view(&row)
}

/// The job that executes an approved refund, in the approving transaction.
async fn enqueue(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    payment: &PaymentRow,
    refund: &RefundRow,
) -> ServiceResult<()> {
    let ordering = payment.ordering_key();
    let job = NewEvent::job(refund.tenant_id, ordering, Job::ExecuteRefund { refund_id: refund.id });
    outbox::emit(conn, now, job).await?;
    Ok(())
}

/// `POST /v1/refunds/{id}/retry`: a failed refund is approved again and executed
/// as a new try (a new idempotency key).
pub async fn retry(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
) -> ServiceResult<RefundView> {
    let (payment, mut refund) = lock_with_payment(conn, tenant.id, id).await?.ok_or_else(refund_not_found)?;
    if refund.status != RefundStatus::Failed {
        return Err(ServiceError::conflict(
            "refund_not_failed",
            format!("only a failed refund can be retried (it is {})", refund.status),
        ));
    }
    refund.status = RefundStatus::Approved;
    refund.gateway_transaction_id = None;
    db::save(conn, &refund).await.map_err(over_capture)?;
    enqueue(conn, now, &payment, &refund).await?;
    view(&refund)
}
