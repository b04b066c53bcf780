//! The console's page frame, its style sheet and the small formatters its pages
//! share (times in UTC to the minute, money as `1 990.00 RUB`).

use billing_shared::domain::money::MoneyView;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2327;background:#f6f7f7}\
header{background:#1d2327;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}\
header a{color:#fff;text-decoration:none}header form{margin-left:auto}\
main{padding:16px}h1{font-size:20px;margin:0 0 12px}h2{font-size:16px;margin:20px 0 8px}\
table{border-collapse:collapse;background:#fff;width:100%;margin-bottom:12px}\
th,td{border:1px solid #dcdcde;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f0f0f1}td.num{text-align:right;white-space:nowrap}\
nav.tabs a{margin-right:12px}.status{font-weight:600}.muted{color:#646970}\
.problem{background:#fcf0f1;border:1px solid #d63638;padding:12px}\
form.inline{display:inline}button{cursor:pointer}input[type=text]{width:280px}";

/// A whole page: header with the console's links and sign-out, `title` as its
/// heading, `body`.
pub fn page(title: &str, body: Markup) -> Markup {
    frame(title, body, true)
}

/// The sign-in page's frame: no links to pages behind the sign-in, no sign-out.
pub fn signed_out_page(title: &str, body: Markup) -> Markup {
    frame(title, body, false)
}

fn frame(title: &str, body: Markup, signed_in: bool) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · billing console" }
                style { (STYLE) }
            }
            body {
                header {
                    a href="/console/" { strong { "Billing console" } }
                    @if signed_in {
                        a href="/console/" { "Tenants" }
                        a href="/console/dead-letters" { "Dead letters" }
                        form method="post" action="/console/logout" { button type="submit" { "Sign out" } }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// A page telling what went wrong: `code` is the stable code the API uses too.
pub fn message(title: &str, code: &str, detail: &str) -> Markup {
    page(
        title,
        html! {
            div.problem { p { strong { (code) } } p #detail { (detail) } }
            p { a href="/console/" { "Back to the tenants" } }
        },
    )
}

/// The tabs of a tenant's pages.
pub fn tenant_tabs(tenant_id: &str) -> Markup {
    html! {
        nav.tabs {
            a href={ "/console/tenants/" (tenant_id) } { "Overview" }
            a href={ "/console/tenants/" (tenant_id) "/subscriptions" } { "Subscriptions" }
            a href={ "/console/tenants/" (tenant_id) "/collections" } { "Failed payments" }
            a href={ "/console/tenants/" (tenant_id) "/refunds" } { "Refund review" }
            a href={ "/console/tenants/" (tenant_id) "/receipts" } { "Receipts" }
        }
    }
}

/// `2026-03-05 09:00` (UTC), or an em dash.
pub fn at(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "—".to_owned())
}

/// `1990.00 RUB`: the API's decimal string and currency.
pub fn money(m: &MoneyView) -> String {
    format!("{} {}", m.value, m.currency)
}

/// An optional text, or an em dash.
pub fn or_dash(s: Option<&str>) -> &str {
    s.unwrap_or("—")
}
