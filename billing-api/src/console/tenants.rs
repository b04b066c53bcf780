//! Console pages about tenants: the list with subscriptions by status and MRR, a
//! tenant's overview with its revenue and failed-payments chart, its
//! subscriptions by status with search by customer, and a subscription's timeline.

use actix_web::get;
use actix_web::web::{Data, Path, Query};
use billing_shared::domain::subscription::SubscriptionStatus;
use billing_shared::services::PageRequest;
use billing_shared::services::console::{self, PaymentTimeline};
use billing_shared::services::subscriptions::SubscriptionView;
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{at, money, or_dash, page, tenant_tabs};
use super::{Operator, Page, chart, ok, tenant_of};
use crate::error::ApiError;
use crate::routes::parse_id;
use crate::state::AppState;

/// `GET /console/`: every tenant with its subscriptions by status, MRR and due work.
#[get("/console/")]
pub(super) async fn index(state: Data<AppState>, _: Operator) -> Page {
    let tenants = state.transaction(async |conn, now| console::tenants(conn, now, None).await).await?;
    ok(page(
        "Tenants",
        html! {
            table #tenants {
                tr { th { "Tenant" } th { "Subscriptions by status" } th { "MRR" } th { "Due now" } }
                @for t in &tenants {
                    tr {
                        td { a href={ "/console/tenants/" (t.id) } { (t.name) } br; span.muted { (t.id) } }
                        td {
                            @for (status, n) in &t.subscriptions {
                                a href={ "/console/tenants/" (t.id) "/subscriptions?status=" (status) } { (status) ": " (n) } " "
                            }
                        }
                        td.num { @for (currency, v) in &t.mrr { (format!("{v:.2}")) " " (currency) br; } }
                        td.num { (t.renewals_due) }
                    }
                }
            }
        },
    ))
}

/// `GET /console/tenants/{id}`: the tenant's settings at a glance, MRR and the
/// chart of its last 30 days.
#[get("/console/tenants/{id}")]
pub(super) async fn overview(state: Data<AppState>, _: Operator, id: Path<String>) -> Page {
    let tenant = tenant_of(&state, &id).await?;
    let (daily, summary) = state
        .transaction(async |conn, now| {
            let daily = console::daily(conn, &tenant, now).await?;
            let summary = console::tenants(conn, now, Some(tenant.id)).await?.into_iter().next();
            Ok((daily, summary))
        })
        .await?;
    let tid = tenant.id.to_string();
    ok(page(
        &tenant.name,
        html! {
            (tenant_tabs(&tid))
            table {
                tr { th { "Id" } td { (tid) } }
                tr { th { "Time zone" } td { (tenant.time_zone) } }
                tr { th { "Gateway" } td { (tenant.gateway.kind()) } }
                tr { th { "Fiscal receipts" } td { @if tenant.fiscal.is_some() { "on" } @else { "off" } } }
                tr { th { "Webhook URL" } td { (or_dash(tenant.webhook_url.as_deref())) } }
                @if let Some(s) = &summary {
                    tr { th { "MRR" } td #mrr { @for (currency, v) in &s.mrr { (format!("{v:.2}")) " " (currency) " " } } }
                }
            }
            h2 { "Last " (console::CHART_DAYS) " days: captured and failed payments" }
            (chart::daily(&daily.days, daily.today))
        },
    ))
}

#[derive(Debug, Deserialize)]
struct SubscriptionQuery {
    status: Option<String>,
    customer: Option<String>,
    starting_after: Option<Uuid>,
}

/// `GET /console/tenants/{id}/subscriptions?status=&customer=`: 50 a page, oldest
/// first; `customer` is a customer id or the product's external id.
#[get("/console/tenants/{id}/subscriptions")]
pub(super) async fn subscriptions(
    state: Data<AppState>,
    _: Operator,
    id: Path<String>,
    q: Query<SubscriptionQuery>,
) -> Page {
    let tenant = tenant_of(&state, &id).await?;
    let q = q.into_inner();
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(SubscriptionStatus::parse(s).ok_or_else(|| ApiError::validation(format!("no status {s:?}")))?),
        None => None,
    };
    let customer = q.customer.as_deref().filter(|s| !s.trim().is_empty());
    let found = state
        .transaction(async |conn, _| {
            let page = PageRequest::new(Some(50), q.starting_after)?;
            console::subscriptions(conn, &tenant, status, customer, page).await
        })
        .await?;
    let tid = tenant.id.to_string();
    let next = found.data.last().filter(|_| found.has_more).map(|s| {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("status", status.map(|s| s.as_str()).unwrap_or(""))
            .append_pair("customer", customer.unwrap_or(""))
            .append_pair("starting_after", &s.id.to_string())
            .finish();
        format!("/console/tenants/{tid}/subscriptions?{query}")
    });
    ok(page(
        &format!("{}: subscriptions", tenant.name),
        html! {
            (tenant_tabs(&tid))
            form method="get" action={ "/console/tenants/" (tid) "/subscriptions" } {
                select name="status" {
                    option value="" { "any status" }
                    @for s in SubscriptionStatus::ALL {
                        option value=(s.as_str()) selected[status == Some(*s)] { (s.as_str()) }
                    }
                }
                " "
                input type="text" name="customer" placeholder="customer id or external id" value=(customer.unwrap_or(""));
                " " button type="submit" { "Search" }
            }
            (subscription_table(&tid, &found.data))
            @if let Some(next) = next { p { a href=(next) { "Next page" } } }
        },
    ))
}

fn subscription_table(tid: &str, subs: &[SubscriptionView]) -> Markup {
    html! {
        table #subscriptions {
            tr { th { "Subscription" } th { "Customer" } th { "Plan" } th { "Status" } th { "Period end" } th { "Next charge" } }
            @for s in subs {
                tr {
                    td { a href={ "/console/tenants/" (tid) "/subscriptions/" (s.id) } { (s.id) } }
                    td { (s.customer_id) }
                    td { (s.plan) }
                    td.status { (s.status.as_str()) }
                    td { (at(s.current_period_end)) }
                    td { (at(s.next_charge_at)) }
                }
            }
            @if subs.is_empty() { tr { td colspan="6" .muted { "No subscriptions match." } } }
        }
    }
}

/// `GET /console/tenants/{id}/subscriptions/{sid}`: history, payments with their
/// attempts, refunds and receipts, and events.
#[get("/console/tenants/{id}/subscriptions/{sid}")]
pub(super) async fn timeline(state: Data<AppState>, _: Operator, path: Path<(String, String)>) -> Page {
    let (id, sid) = path.into_inner();
    let tenant = tenant_of(&state, &id).await?;
    let sid = parse_id(&sid, "subscription")?;
    let t = state.transaction(async |conn, _| console::timeline(conn, &tenant, sid).await).await?;
    let s = &t.subscription;
    ok(page(
        &format!("Subscription {}", s.id),
        html! {
            (tenant_tabs(&tenant.id.to_string()))
            table {
                tr { th { "Customer" } td { (s.customer_id) } th { "Plan" } td { (s.plan) } }
                tr { th { "Status" } td.status #status { (s.status.as_str()) } th { "Auto-renew" } td { (s.auto_renew) } }
                tr { th { "Period" } td { (at(s.current_period_start)) " – " (at(s.current_period_end)) }
                     th { "Next charge" } td { (at(s.next_charge_at)) } }
                tr { th { "Grace until" } td { (at(s.grace_until)) } th { "Dunning ends" } td { (at(s.dunning_ends_at)) } }
            }
            h2 { "History" }
            table #history {
                tr { th { "At" } th { "From" } th { "To" } th { "Cause" } }
                @for h in &s.history {
                    tr { td { (at(Some(h.at))) } td { (h.from.map(|f| f.as_str()).unwrap_or("—")) } td { (h.to.as_str()) } td { (h.cause) } }
                }
            }
            h2 { "Payments" }
            @for p in &t.payments { (payment(p)) }
            @if t.payments.is_empty() { p.muted { "No payments." } }
            h2 { "Events" }
            table #events {
                tr { th { "Created" } th { "Type" } th { "Published" } }
                @for e in &t.events { tr { td { (at(Some(e.created_at))) } td { (e.event_type) } td { (if e.published { "yes" } else { "waiting" }) } } }
            }
        },
    ))
}

fn payment(p: &PaymentTimeline) -> Markup {
    let v = &p.payment;
    html! {
        table.payment {
            tr { th colspan="5" {
                (v.id) " · " (v.kind.as_str()) " · " span.status { (v.status.as_str()) } " · " (money(&v.amount))
                " (refunded " (money(&v.refunded_amount)) ")"
                @if let Some(reason) = &v.failure_reason { " · " (reason) }
            } }
            @for a in &p.attempts {
                tr { td { "attempt " (a.attempt_no) } td { (a.channel.as_str()) } td { (a.status.as_str()) }
                     td { (at(Some(a.created_at))) } td { (or_dash(a.failure_reason.as_deref())) } }
            }
            @for r in &p.refunds {
                tr { td { "refund" } td { (r.reason) } td.status { (r.status.as_str()) } td { (money(&r.amount)) } td { (r.decision_code) } }
            }
            @for r in &p.receipts {
                tr { td { "receipt" } td { (r.kind.as_str()) } td.status { (r.status.as_str()) } td { (money(&r.total)) }
                     td { (or_dash(r.failure_reason.as_deref())) } }
            }
        }
    }
}
