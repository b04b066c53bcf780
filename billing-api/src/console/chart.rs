//! The tenant's revenue and failed-payments chart: inline SVG bars, one per day
//! of the last [`console::CHART_DAYS`], drawn on the server, with the figures in a
//! table beneath (what the bars show, exactly).

use billing_shared::db::revenue::Day;
use billing_shared::services::console;
use chrono::{Duration, NaiveDate};
use maud::{Markup, html};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 120.0;

/// The days of the chart, oldest first, ending `today`.
fn axis(today: NaiveDate) -> Vec<NaiveDate> {
    (0..console::CHART_DAYS).rev().map(|back| today - Duration::days(back)).collect()
}

/// One bar chart: `values[i]` is the height of day `i` (exact figures are in the
/// table; the bars only need their proportions).
fn bars(label: &str, color: &str, days: &[NaiveDate], values: &[Decimal]) -> Markup {
    let max = values.iter().copied().max().unwrap_or_default().to_f64().unwrap_or(0.0);
    let step = WIDTH / days.len().max(1) as f64;
    html! {
        svg width=(WIDTH) height=(HEIGHT + 16.0) role="img" aria-label=(label) {
            @for (i, (day, v)) in days.iter().zip(values).enumerate() {
                @let h = if max > 0.0 { v.to_f64().unwrap_or(0.0) / max * HEIGHT } else { 0.0 };
                rect x=(i as f64 * step + 1.0) y=(HEIGHT - h) width=(step - 2.0) height=(h) fill=(color) {
                    title { (day) ": " (v) }
                }
            }
            text x="0" y=(HEIGHT + 14.0) font-size="11" { (days.first().map(|d| d.to_string()).unwrap_or_default()) }
            text x=(WIDTH) y=(HEIGHT + 14.0) font-size="11" text-anchor="end" {
                (days.last().map(|d| d.to_string()).unwrap_or_default())
            }
        }
    }
}

/// Captured amounts per currency and failed payments, per day up to `today`.
pub fn daily(days_with_payments: &[Day], today: NaiveDate) -> Markup {
    let days = axis(today);
    let mut currencies: Vec<&str> = days_with_payments.iter().map(|d| d.currency.as_str()).collect();
    currencies.sort_unstable();
    currencies.dedup();
    let figure = |day: &NaiveDate, currency: Option<&str>, f: &dyn Fn(&Day) -> Decimal| -> Decimal {
        days_with_payments.iter().filter(|d| d.day == *day && currency.is_none_or(|c| d.currency == c)).map(f).sum()
    };
    let failed: Vec<Decimal> = days.iter().map(|d| figure(d, None, &|x| Decimal::from(x.failed_count))).collect();
    html! {
        @for c in &currencies {
            @let captured: Vec<Decimal> = days.iter().map(|d| figure(d, Some(c), &|x| x.captured)).collect();
            h2 { "Captured, " (c) }
            (bars(&format!("captured {c} per day"), "#2271b1", &days, &captured))
        }
        h2 { "Failed payments" }
        (bars("failed payments per day", "#d63638", &days, &failed))
        table #daily {
            tr { th { "Day" } th { "Currency" } th { "Captured" } th { "Payments captured" } th { "Payments failed" } }
            @for d in days_with_payments.iter().rev() {
                tr { td { (d.day) } td { (d.currency) } td.num { (format!("{:.2}", d.captured)) }
                     td.num { (d.captured_count) } td.num { (d.failed_count) } }
            }
            @if days_with_payments.is_empty() { tr { td colspan="5" .muted { "No payments in these days." } } }
        }
    }
}
