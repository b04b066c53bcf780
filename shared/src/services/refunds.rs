//! Refund requests (`/v1/refunds`, SPEC §6): decided by the tenant's refund rules
//! ([`crate::domain::refund`]), held requests reviewed by the product's staff.
//!
//! Approved refunds are executed by the worker ([`super::refund_execution`]). The
//! database refuses refunds that together exceed what the payment captured.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::payments;
use super::tenants::Tenant;
use super::{Page, PageRequest, corrupt, stored_money};
use crate::db::outbox::{self, NewEvent};
use crate::db::payments::{self as payments_db, PaymentRow};
use crate::db::refunds::{self as db, RefundRow};
use crate::db::schema::usage_counters;
use crate::domain::calendar::Calendar;
use crate::domain::money::{Money, MoneyInput, MoneyView};
use crate::domain::period::{local_date, resolve_local};
use crate::domain::refund::{Outcome, RefundFacts, decide, prorata};
use crate::domain::states::{PaymentKind, PaymentStatus, RefundStatus};
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
    pub status: RefundStatus,
    /// Why: `approved`, `review_required`, `refund_window_closed`, `usage_present`,
    /// `reason_not_refundable`, `nothing_to_refund`, `approved_by_review`,
    /// `rejected_by_review`.
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
}

/// `POST /v1/refunds/{id}/approve` and `/reject` body.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    #[serde(default)]
    pub comment: Option<String>,
}

pub(crate) fn money(amount: rust_decimal::Decimal, currency: &str) -> ServiceResult<Money> {
    stored_money(amount, currency, "refund amount")
}

/// A refund of the tenant with its payment, both locked: the payment first, as by
/// every writer of its refunds. `None` when the tenant has no such refund.
pub(crate) async fn lock_with_payment(
    conn: &mut AsyncPgConnection,
    tenant_id: Uuid,
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
    let ordering = payment.subscription_id.unwrap_or(payment.customer_id);
    outbox::emit(conn, now, NewEvent::event(tenant.id, ordering, ty, data)).await?;
    Ok(())
}

fn check_comment(comment: Option<&str>) -> ServiceResult<()> {
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
    let decision = decide(&tenant.policy.refund_rules, &tenant.policy.holidays, Calendar::russia(), &facts);
    let status = match decision.outcome {
        Outcome::Approve => RefundStatus::Approved,
        Outcome::Review => RefundStatus::PendingReview,
        Outcome::Reject => RefundStatus::Rejected,
    };
    let held_for_review = decision.outcome == Outcome::Review;
    let row = RefundRow {
        requested_amount: requested.map(|m| m.amount()),
        comment: req.comment,
        window_ends_at: decision.window_ends_at,
        decided_at: (!held_for_review).then_some(now),
        review_due_at: held_for_review.then(|| review_due(tenant, now)),
        ..new_row(&payment, req.reason, status, decision.code, decision.amount.amount(), now)?
    };
    db::insert(conn, &row).await.map_err(over_capture)?;
    emit(conn, now, tenant, &payment, &row, "refund.requested").await?;
    match decision.outcome {
        Outcome::Approve => {
            emit(conn, now, tenant, &payment, &row, "refund.approved").await?;
            super::refund_execution::enqueue(conn, now, &payment, &row).await?;
        }
        Outcome::Reject => emit(conn, now, tenant, &payment, &row, "refund.rejected").await?,
        Outcome::Review => {}
    }
    view(&row)
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

/// The product's staff decide a held request.
pub async fn review(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
    approve: bool,
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
    let (status, code, event) = if approve {
        (RefundStatus::Approved, "approved_by_review", "refund.approved")
    } else {
        (RefundStatus::Rejected, "rejected_by_review", "refund.rejected")
    };
    row.status = status;
    row.decision_code = code.into();
    row.decided_at = Some(now);
    row.review_comment = req.comment;
    db::save(conn, &row).await.map_err(over_capture)?;
    emit(conn, now, tenant, &payment, &row, event).await?;
    if approve {
        super::refund_execution::enqueue(conn, now, &payment, &row).await?;
    }
    view(&row)
}

pub async fn list(
    conn: &mut AsyncPgConnection,
    tenant: &Tenant,
    status: Option<&str>,
    payment_id: Option<Uuid>,
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

/// `POST /v1/subscriptions/{id}/terminate` body.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TerminateRequest {
    /// The customer broke the terms (Alfa 10.3): nothing is refunded.
    pub customer_fault: bool,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Terminated {
    pub subscription: super::subscriptions::SubscriptionView,
    /// The pro-rata refund of the current period's unused days, without the
    /// customer's fault.
    pub refund: Option<RefundView>,
    /// Without the customer's fault, also: paid extensions not yet started (in
    /// full) and upgrade surcharges of the current period (pro rata).
    pub additional_refunds: Vec<RefundView>,
}

/// The unused part of a paid period at `now`: all of a period not yet started,
/// pro rata of one under way (an upgrade's from the upgrade on).
fn unused_part(tenant: &Tenant, payment: &PaymentRow, now: DateTime<Utc>) -> ServiceResult<Option<Money>> {
    let (Some(start), Some(end)) = (payment.period_start, payment.period_end) else { return Ok(None) };
    let tariff = money(payments::tariff_amount(payment)?, &payment.currency)?;
    if start >= now {
        return Ok(Some(tariff));
    }
    let start =
        if payment.kind == PaymentKind::Upgrade { start.max(payment.captured_at.unwrap_or(start)) } else { start };
    Ok(Some(prorata(tariff, (start, end), now, tenant.tz)))
}

/// The provider ends a subscription now (Alfa 10.2-10.3). Without the customer's
/// fault what was paid and not used is refunded (approved at once, outside the
/// refund rules): the unused local days of the current period pro rata, upgrade
/// surcharges of the period likewise, paid extensions not yet started in full;
/// with it, nothing is.
pub async fn terminate(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
    tenant: &Tenant,
    id: Uuid,
    req: TerminateRequest,
) -> ServiceResult<Terminated> {
    let reason = req.reason.trim().to_owned();
    check_comment(Some(&reason))?;
    if reason.is_empty() {
        return Err(ServiceError::validation("reason must not be empty"));
    }
    // Payments are locked before the subscription, the order of every capture.
    let paid: Vec<PaymentRow> = {
        use crate::db::schema::payments as p;
        p::table
            .filter(p::tenant_id.eq(tenant.id))
            .filter(p::subscription_id.eq(id))
            .filter(p::status.eq_any([PaymentStatus::Succeeded, PaymentStatus::PartiallyRefunded]))
            .filter(p::kind.eq_any([
                PaymentKind::Purchase,
                PaymentKind::Renewal,
                PaymentKind::Extension,
                PaymentKind::Upgrade,
            ]))
            .filter(p::duplicate_of.is_null())
            .filter(p::period_end.gt(now))
            .order(p::id.asc())
            .select(PaymentRow::as_select())
            .for_update()
            .load(conn)
            .await?
    };
    let (mut sub, plan) = super::lifecycle::lock(conn, tenant, id).await?;
    let status = super::subscriptions::status_of(&sub)?;
    if !status.is_live() || status == crate::domain::subscription::SubscriptionStatus::PendingPayment {
        return Err(ServiceError::conflict(
            "subscription_ended",
            format!("only a running subscription can be terminated (it is {})", sub.status),
        ));
    }
    let mut refund = None;
    let mut additional_refunds = Vec::new();
    if !req.customer_fault {
        for payment in &paid {
            let Some(unused) = unused_part(tenant, payment, now)? else { continue };
            let held = db::held_for_payment(conn, payment.id).await?;
            let amount = (unused.amount() - held).max(rust_decimal::Decimal::ZERO);
            if amount.is_zero() {
                continue;
            }
            let decided = Approved {
                reason: RefundReason::ProviderTermination,
                code: "provider_termination",
                amount,
                comment: Some(reason.clone()),
            };
            let view = record_approved(conn, now, tenant, payment, decided).await?;
            let current = payment.kind != PaymentKind::Upgrade
                && payment.period_start == sub.current_period_start
                && payment.period_end == sub.current_period_end;
            if current && refund.is_none() {
                refund = Some(view);
            } else {
                additional_refunds.push(view);
            }
        }
    }
    let extra = serde_json::json!({
        "customer_fault": req.customer_fault,
        "reason": reason,
        "refund_id": refund.as_ref().map(|r| r.id),
        "additional_refund_ids": additional_refunds.iter().map(|r| r.id).collect::<Vec<_>>(),
    });
    let cause = if req.customer_fault { "terminated_customer_fault" } else { "terminated_by_provider" };
    super::subscriptions::end(
        conn,
        now,
        tenant,
        &mut sub,
        &plan.code,
        crate::domain::subscription::SubscriptionStatus::Terminated,
        cause,
        extra,
    )
    .await?;
    crate::db::subscriptions::save(conn, &sub).await?;
    Ok(Terminated { subscription: super::subscriptions::view(conn, &sub).await?, refund, additional_refunds })
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
    let row = RefundRow {
        comment: decided.comment,
        ..new_row(payment, decided.reason, RefundStatus::Approved, decided.code, decided.amount, now)?
    };
    db::insert(conn, &row).await.map_err(over_capture)?;
    emit(conn, now, tenant, payment, &row, "refund.requested").await?;
    emit(conn, now, tenant, payment, &row, "refund.approved").await?;
    super::refund_execution::enqueue(conn, now, payment, &row).await?;
    view(&row)
}
