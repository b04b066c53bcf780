//! Console pages of work waiting for an operator: failed payments and dunning, the
//! refund review queue (approve or reject for the tenant), receipts not registered
//! with their resend, and dead letters with their replay.

use actix_web::web::{Data, Form, Path};
use actix_web::{get, post};
use billing_shared::db::payments::PaymentFilter;
use billing_shared::domain::states::{PaymentStatus, ReceiptStatus};
use billing_shared::domain::subscription::SubscriptionStatus;
use billing_shared::queue::topology;
use billing_shared::services::console;
use billing_shared::services::refunds::{self, ReviewRequest, Reviewer};
use billing_shared::services::{PageRequest, dead_letters, payments, receipt_registration, receipts};
use maud::html;
use serde::Deserialize;

use super::layout::{at, money, or_dash, page, tenant_tabs};
use super::{ConsoleError, Operator, Page, ok, see_other, tenant_of};
use crate::routes::admin::replay as replay_queue;
use crate::routes::parse_id;
use crate::state::AppState;

/// Rows a queue page shows.
const ROWS: i64 = 100;

/// The note under a list cut at [`ROWS`].
fn more(has_more: bool) -> maud::Markup {
    html! { @if has_more { p.muted.more { "Only the first " (ROWS) " are listed; there are more." } } }
}

/// `GET /console/tenants/{id}/collections`: the latest failed payments and the
/// subscriptions in dunning (`past_due`) with their next retry.
#[get("/console/tenants/{id}/collections")]
pub(super) async fn collections(state: Data<AppState>, _: Operator, id: Path<String>) -> Page {
    let tenant = tenant_of(&state, &id).await?;
    let (failed, dunning) = state
        .transaction(async |conn, _| {
            let page = PageRequest::new(Some(ROWS), None)?;
            let filter =
                PaymentFilter { status: Some(PaymentStatus::Failed), newest_first: true, ..PaymentFilter::default() };
            let failed = payments::list(conn, &tenant, filter, page).await?;
            let dunning = console::subscriptions(conn, &tenant, Some(SubscriptionStatus::PastDue), None, page).await?;
            Ok((failed, dunning))
        })
        .await?;
    let tid = tenant.id.to_string();
    ok(page(
        &format!("{}: failed payments", tenant.name),
        html! {
            (tenant_tabs(&tid))
            h2 { "In dunning" }
            table #dunning {
                tr { th { "Subscription" } th { "Customer" } th { "Plan" } th { "Next retry" } th { "Access until" } th { "Gives up" } }
                @for s in &dunning.data {
                    tr { td { a href={ "/console/tenants/" (tid) "/subscriptions/" (s.id) } { (s.id) } }
                         td { (s.customer_id) } td { (s.plan) } td { (at(s.next_retry_at)) } td { (at(s.grace_until)) }
                         td { (at(s.dunning_ends_at)) } }
                }
                @if dunning.data.is_empty() { tr { td colspan="6" .muted { "No subscription is in dunning." } } }
            }
            (more(dunning.has_more))
            h2 { "Failed payments, latest first" }
            table #failed {
                tr { th { "Payment" } th { "Customer" } th { "Kind" } th { "Amount" } th { "Reason" } th { "Code" } th { "Created" } }
                @for p in &failed.data {
                    tr { td { (p.id) } td { (p.customer_id) } td { (p.kind.as_str()) } td.num { (money(&p.amount)) }
                         td { (or_dash(p.failure_reason.as_deref())) } td { (or_dash(p.failure_code.as_deref())) }
                         td { (at(Some(p.created_at))) } }
                }
                @if failed.data.is_empty() { tr { td colspan="7" .muted { "No failed payments." } } }
            }
            (more(failed.has_more))
        },
    ))
}

/// `GET /console/tenants/{id}/refunds`: requests waiting for review, with approve
/// and reject.
#[get("/console/tenants/{id}/refunds")]
pub(super) async fn refund_queue(state: Data<AppState>, _: Operator, id: Path<String>) -> Page {
    let tenant = tenant_of(&state, &id).await?;
    let held = state
        .transaction(async |conn, _| {
            let page = PageRequest::new(Some(ROWS), None)?;
            refunds::list(conn, &tenant, Some("pending_review"), None, page).await
        })
        .await?;
    let tid = tenant.id.to_string();
    ok(page(
        &format!("{}: refund review", tenant.name),
        html! {
            (tenant_tabs(&tid))
            p.muted { "The operator decides for the tenant (decision code approved_by_operator or rejected_by_operator); an approved refund is executed by the worker." }
            table #refunds {
                tr { th { "Refund" } th { "Payment" } th { "Reason" } th { "Amount" } th { "Requested" } th { "Review due" } th { "Decide" } }
                @for r in &held.data {
                    tr {
                        td { (r.id) } td { (r.payment_id) } td { (r.reason) br; span.muted { (or_dash(r.comment.as_deref())) } }
                        td.num { (money(&r.amount)) } td { (at(Some(r.created_at))) } td { (at(r.review_due_at)) }
                        td {
                            @for (decision, label) in [("approve", "Approve"), ("reject", "Reject")] {
                                form.inline method="post" action={ "/console/tenants/" (tid) "/refunds/" (r.id) "/" (decision) } {
                                    input type="text" name="comment" placeholder="note (optional)";
                                    " " button type="submit" { (label) }
                                }
                                br;
                            }
                        }
                    }
                }
                @if held.data.is_empty() { tr { td colspan="7" .muted { "No refund is waiting for review." } } }
            }
            (more(held.has_more))
        },
    ))
}

#[derive(Debug, Deserialize)]
struct Review {
    #[serde(default)]
    comment: String,
}

/// `POST /console/tenants/{id}/refunds/{rid}/{approve|reject}` (form `comment`):
/// decides the held refund as `POST /v1/refunds/{id}/approve|reject` does; 409
/// `refund_not_pending` when it was decided already; 303 back to the queue.
#[post("/console/tenants/{id}/refunds/{rid}/{decision}")]
pub(super) async fn review(
    state: Data<AppState>,
    _: Operator,
    path: Path<(String, String, String)>,
    form: Form<Review>,
) -> Page {
    let (id, rid, decision) = path.into_inner();
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return Err(crate::error::ApiError::not_found("no such decision: approve or reject").into()),
    };
    let tenant = tenant_of(&state, &id).await?;
    let rid = parse_id(&rid, "refund")?;
    let comment = Some(form.into_inner().comment.trim().to_owned()).filter(|c| !c.is_empty());
    state
        .transaction(async |conn, now| {
            refunds::review(conn, now, &tenant, rid, approve, Reviewer::Operator, ReviewRequest { comment }).await
        })
        .await?;
    Ok(see_other(&format!("/console/tenants/{}/refunds", tenant.id)))
}

/// `GET /console/tenants/{id}/receipts`: receipts not registered (pending, failed),
/// oldest first.
#[get("/console/tenants/{id}/receipts")]
pub(super) async fn receipt_queue(state: Data<AppState>, _: Operator, id: Path<String>) -> Page {
    let tenant = tenant_of(&state, &id).await?;
    let open = state
        .transaction(async |conn, _| {
            let page = PageRequest::new(Some(ROWS), None)?;
            receipts::list(conn, &tenant, None, &[ReceiptStatus::Pending, ReceiptStatus::Failed], page).await
        })
        .await?;
    let tid = tenant.id.to_string();
    ok(page(
        &format!("{}: receipts not registered", tenant.name),
        html! {
            (tenant_tabs(&tid))
            p.muted { "A pending receipt is being registered by the worker. Resend sends a failed receipt, or a pending one whose job is in the dead letters of billing.receipts, again — as a new document only when the provider reported the last one failed, so it is never registered twice." }
            table #receipts {
                tr { th { "Receipt" } th { "Payment" } th { "Kind" } th { "Status" } th { "Total" } th { "Attempt" } th { "Created" } th { "Failure" } th { "Resend" } }
                @for r in &open.data {
                    tr { td { (r.id) } td { (r.payment_id) } td { (r.kind.as_str()) } td.status { (r.status.as_str()) }
                         td.num { (money(&r.total)) } td.num { (r.attempt) } td { (at(Some(r.created_at))) }
                         td { (or_dash(r.failure_reason.as_deref())) }
                         td { form.inline method="post" action={ "/console/tenants/" (tid) "/receipts/" (r.id) "/resend" } {
                             button type="submit" { "Resend" } } } }
                }
                @if open.data.is_empty() { tr { td colspan="9" .muted { "Every receipt is registered." } } }
            }
            (more(open.has_more))
            p { a href="/console/dead-letters" { "Dead letters" } }
        },
    ))
}

/// `POST /console/tenants/{id}/receipts/{rid}/resend`: resends the tenant's receipt
/// as `POST /v1/admin/receipts/{id}/resend` does (409 `receipt_registered`,
/// `receipt_in_progress`); 303 back to the receipts.
#[post("/console/tenants/{id}/receipts/{rid}/resend")]
pub(super) async fn resend_receipt(state: Data<AppState>, _: Operator, path: Path<(String, String)>) -> Page {
    let (id, rid) = path.into_inner();
    let tenant = tenant_of(&state, &id).await?;
    let rid = parse_id(&rid, "receipt")?;
    state.transaction(async |conn, now| receipt_registration::resend(conn, now, rid, Some(tenant.id)).await).await?;
    Ok(see_other(&format!("/console/tenants/{}/receipts", tenant.id)))
}

/// `GET /console/dead-letters`: what the worker gave up on and not yet replayed,
/// with a replay button per work queue.
#[get("/console/dead-letters")]
pub(super) async fn dead_letter_page(state: Data<AppState>, _: Operator) -> Page {
    let letters = state
        .transaction(async |conn, _| {
            let page = PageRequest::new(Some(ROWS), None)?;
            dead_letters::list(conn, None, false, page).await
        })
        .await?;
    ok(page(
        "Dead letters",
        html! {
            table #queues {
                tr { th { "Queue" } th { "Listed below" } th { "Replay" } }
                @for q in topology::ALL {
                    @let n = letters.data.iter().filter(|l| l.queue == q.name).count();
                    tr { td { (q.name) } td.num { (n) }
                         td { form.inline method="post" action={ "/console/dead-letters/" (q.name) "/replay" } {
                             button type="submit" { "Replay " (q.name) } } } }
                }
            }
            table #letters {
                tr { th { "Dead at" } th { "Queue" } th { "Attempts" } th { "Reason" } }
                @for l in &letters.data {
                    tr { td { (at(Some(l.dead_at))) } td { (l.queue) } td.num { (l.attempts) } td { (l.reason) } }
                }
                @if letters.data.is_empty() { tr { td colspan="4" .muted { "No dead letters." } } }
            }
            (more(letters.has_more))
        },
    ))
}

/// `POST /console/dead-letters/{queue}/replay`: as the operator API's replay; 303
/// back to the dead letters.
#[post("/console/dead-letters/{queue}/replay")]
pub(super) async fn replay(state: Data<AppState>, _: Operator, queue: Path<String>) -> Page {
    replay_queue(&state, &queue).await.map_err(ConsoleError::Api)?;
    Ok(see_other("/console/dead-letters"))
}
