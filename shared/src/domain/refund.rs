//! Refund requests decided by the tenant's refund rules (SPEC §6, API.md "Tenant
//! policy").
//!
//! The first rule listing the reason decides: its window closed →
//! `refund_window_closed`; usage present where the rule requires none →
//! `usage_present`; no rule lists the reason → `reason_not_refundable`. The rule's
//! amount (`full`: the payment; `prorata`: its tariff × unused local days of the
//! period it paid for, rounded once) minus earlier refunds caps the request, and a
//! refund never exceeds what was captured minus what was refunded.

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;

use super::calendar::Calendar;
use super::money::{Money, round_kopecks};
use super::period::{local_date, local_days_between, resolve_local};
use super::tenant::{RefundAmountRule, RefundDecision, RefundReason, RefundRule, RefundWindow, WindowFrom, WindowUnit};

/// What the rules look at.
#[derive(Debug, Clone, Copy)]
pub struct RefundFacts {
    pub reason: RefundReason,
    /// The amount asked for; `None`: as much as the rule allows.
    pub requested: Option<Money>,
    /// What the payment captured.
    pub captured: Money,
    /// Refunded (or being refunded) from it already.
    pub refunded: Money,
    /// The payment's tariff part (its overage lines excluded), for `prorata`.
    pub tariff: Money,
    /// When the payment was captured.
    pub paid_at: DateTime<Utc>,
    /// The period the payment paid for, if any (access begins at its start).
    pub period: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The customer used the product in that period.
    pub usage_present: bool,
    pub now: DateTime<Utc>,
    /// The tenant's zone: business days end at its midnight, prorata counts its days.
    pub tz: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approve,
    Review,
    Reject,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub outcome: Outcome,
    /// Stable: `approved`, `review_required`, `refund_window_closed`,
    /// `usage_present`, `reason_not_refundable`, `nothing_to_refund`.
    pub code: &'static str,
    /// What would be refunded (zero when rejected).
    pub amount: Money,
    /// The deciding rule's window end, if it has one.
    pub window_ends_at: Option<DateTime<Utc>>,
}

/// When a rule's window closes (the first instant it no longer admits a request).
pub fn window_end(
    w: &RefundWindow,
    f: &RefundFacts,
    calendar: &Calendar,
    holidays: &[chrono::NaiveDate],
) -> DateTime<Utc> {
    let from = match w.from {
        WindowFrom::Payment => f.paid_at,
        WindowFrom::Access => f.period.map_or(f.paid_at, |(start, _)| start),
    };
    let count = i64::from(w.count);
    match w.unit {
        WindowUnit::Hours => from + TimeDelta::hours(count),
        WindowUnit::Days => from + TimeDelta::hours(24 * count),
        WindowUnit::BusinessDays => {
            // The day it starts does not count; the window ends at 24:00 local of the
            // N-th business day after it.
            let last = calendar.nth_business_day_after(local_date(f.tz, from), w.count, holidays);
            let next = last.succ_opt().unwrap_or(last);
            resolve_local(f.tz, next.and_time(NaiveTime::MIN))
        }
    }
}

/// Unused value of the tariff: `tariff × unused local days / period days`, rounded once.
pub fn prorata(tariff: Money, period: (DateTime<Utc>, DateTime<Utc>), now: DateTime<Utc>, tz: Tz) -> Money {
    let (start, end) = period;
    let days = local_days_between(start, end, tz);
    if days <= 0 {
        return Money::zero(tariff.currency());
    }
    let unused = local_days_between(now.max(start), end, tz).clamp(0, days);
    Money::round(tariff.amount() * Decimal::from(unused) / Decimal::from(days), tariff.currency())
}

pub fn decide(rules: &[RefundRule], holidays: &[chrono::NaiveDate], calendar: &Calendar, f: &RefundFacts) -> Decision {
    let zero = Money::zero(f.captured.currency());
    let reject = |code, window_ends_at| Decision { outcome: Outcome::Reject, code, amount: zero, window_ends_at };
    let refundable = (f.captured.amount() - f.refunded.amount()).max(Decimal::ZERO);
    if refundable.is_zero() {
        return reject("nothing_to_refund", None);
    }
    let Some(rule) = rules.iter().find(|r| r.reasons.contains(&f.reason)) else {
        return reject("reason_not_refundable", None);
    };
    let window_ends_at = rule.window.map(|w| window_end(&w, f, calendar, holidays));
    if window_ends_at.is_some_and(|end| f.now >= end) {
        return reject("refund_window_closed", window_ends_at);
    }
    if rule.requires_no_usage && f.usage_present {
        return reject("usage_present", window_ends_at);
    }
    let by_rule = match (rule.amount, f.period) {
        (RefundAmountRule::Full, _) => f.captured.amount(),
        (RefundAmountRule::Prorata, Some(period)) => prorata(f.tariff, period, f.now, f.tz).amount(),
        (RefundAmountRule::Prorata, None) => Decimal::ZERO,
    };
    let allowed = (by_rule - f.refunded.amount()).min(refundable).max(Decimal::ZERO);
    let amount = f.requested.map_or(allowed, |r| r.amount().min(allowed));
    if amount <= Decimal::ZERO {
        return reject("nothing_to_refund", window_ends_at);
    }
    let (outcome, code) = match rule.decision {
        RefundDecision::Approve => (Outcome::Approve, "approved"),
        RefundDecision::Review => (Outcome::Review, "review_required"),
    };
    Decision { outcome, code, amount: Money::round(round_kopecks(amount), f.captured.currency()), window_ends_at }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenant::Policy;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn rub(s: &str) -> Money {
        Money::rub(s.parse().unwrap()).unwrap()
    }

    fn policy(rules: serde_json::Value) -> Policy {
        serde_json::from_value(serde_json::json!({"refund_rules": rules})).unwrap()
    }

    /// A 1990.00 payment captured 2026-03-05T09:00Z (12:00 Moscow) for the month from then.
    fn facts(reason: RefundReason, now: &str) -> RefundFacts {
        RefundFacts {
            reason,
            requested: None,
            captured: rub("1990.00"),
            refunded: rub("0"),
            tariff: rub("1990.00"),
            paid_at: t("2026-03-05T09:00:00Z"),
            period: Some((t("2026-03-05T09:00:00Z"), t("2026-04-05T09:00:00Z"))),
            usage_present: false,
            now: t(now),
            tz: chrono_tz::Europe::Moscow,
        }
    }

    fn decide_with(p: &Policy, f: &RefundFacts) -> Decision {
        decide(&p.refund_rules, &p.holidays, Calendar::russia(), f)
    }

    #[test]
    fn smm_gpt_five_business_days_from_access_across_a_holiday() {
        // 3.7-3.8: Thu Mar 5 + 5 business days (Mar 9 is off by decree) = Fri Mar 13;
        // the window ends at 24:00 Moscow = 2026-03-13T21:00Z. Only if nothing was used.
        let p = policy(
            serde_json::json!([{"reasons": ["unused"], "window": {"count": 5, "unit": "business_days", "from": "access"},
            "requires_no_usage": true, "decision": "approve", "amount": "full"}]),
        );
        let last_minute = decide_with(&p, &facts(RefundReason::Unused, "2026-03-13T20:59:00Z"));
        assert_eq!((last_minute.outcome, last_minute.code), (Outcome::Approve, "approved"));
        assert_eq!(last_minute.amount, rub("1990.00"));
        assert_eq!(last_minute.window_ends_at, Some(t("2026-03-13T21:00:00Z")));
        let after = decide_with(&p, &facts(RefundReason::Unused, "2026-03-13T21:00:00Z"));
        assert_eq!((after.outcome, after.code), (Outcome::Reject, "refund_window_closed"));
        let mut used = facts(RefundReason::Unused, "2026-03-06T09:00:00Z");
        used.usage_present = true;
        assert_eq!(decide_with(&p, &used).code, "usage_present");
        // A tenant holiday moves the end by one more business day.
        let mut p2 = p.clone();
        p2.holidays = vec!["2026-03-12".parse().unwrap()];
        assert_eq!(decide_with(&p2, &facts(RefundReason::Unused, "2026-03-13T21:00:00Z")).code, "approved");
        assert_eq!(decide_with(&p2, &facts(RefundReason::Unused, "2026-03-16T20:59:00Z")).code, "approved");
        assert_eq!(decide_with(&p2, &facts(RefundReason::Unused, "2026-03-16T21:00:00Z")).code, "refund_window_closed");
    }

    #[test]
    fn whatsmonster_one_day_from_payment_if_unused() {
        // 7.12: within 1 day of payment, only if unused.
        let p = policy(serde_json::json!([{"reasons": ["unused"], "window": {"count": 1, "unit": "days"},
            "requires_no_usage": true, "decision": "approve", "amount": "full"}]));
        assert_eq!(decide_with(&p, &facts(RefundReason::Unused, "2026-03-06T08:59:00Z")).code, "approved");
        assert_eq!(decide_with(&p, &facts(RefundReason::Unused, "2026-03-06T09:00:00Z")).code, "refund_window_closed");
        assert_eq!(
            decide_with(&p, &facts(RefundReason::Goodwill, "2026-03-05T10:00:00Z")).code,
            "reason_not_refundable"
        );
    }

    #[test]
    fn orbita_reviews_outages_and_double_charges_and_refuses_cancellations() {
        // 18.2: no refund for a normal cancellation; outage or double charge -> manual review.
        let p = policy(
            serde_json::json!([{"reasons": ["outage", "double_charge"], "decision": "review", "amount": "full"}]),
        );
        let outage = decide_with(&p, &facts(RefundReason::Outage, "2026-03-25T09:00:00Z"));
        assert_eq!((outage.outcome, outage.code, outage.amount), (Outcome::Review, "review_required", rub("1990.00")));
        assert_eq!(decide_with(&p, &facts(RefundReason::Unused, "2026-03-05T10:00:00Z")).code, "reason_not_refundable");
    }

    #[test]
    fn alfa_prorata_on_provider_termination_only() {
        // 5.7, 10.2-10.4: nothing on the licensee's cancellation; unused days on the
        // provider's termination without fault: 31 days, 17 unused -> 1690 x 17/31 = 926.77.
        let p = policy(
            serde_json::json!([{"reasons": ["provider_termination"], "decision": "approve", "amount": "prorata"}]),
        );
        let mut f = facts(RefundReason::ProviderTermination, "2026-03-24T09:00:00Z");
        f.captured = rub("1690.00");
        f.tariff = rub("1690.00");
        f.paid_at = t("2026-03-10T09:00:00Z");
        f.period = Some((t("2026-03-10T09:00:00Z"), t("2026-04-10T09:00:00Z")));
        let d = decide_with(&p, &f);
        assert_eq!((d.outcome, d.amount), (Outcome::Approve, rub("926.77")));
        assert_eq!(decide_with(&p, &facts(RefundReason::Unused, "2026-03-11T09:00:00Z")).code, "reason_not_refundable");
    }

    #[test]
    fn requests_are_capped_and_earlier_refunds_subtracted() {
        let p = policy(serde_json::json!([{"reasons": ["goodwill"], "decision": "approve", "amount": "full"}]));
        let mut f = facts(RefundReason::Goodwill, "2026-03-10T09:00:00Z");
        f.requested = Some(rub("500.00"));
        assert_eq!(decide_with(&p, &f).amount, rub("500.00"));
        f.refunded = rub("500.00");
        f.requested = Some(rub("2000.00"));
        assert_eq!(decide_with(&p, &f).amount, rub("1490.00"));
        f.requested = None;
        assert_eq!(decide_with(&p, &f).amount, rub("1490.00"));
        f.refunded = rub("1990.00");
        assert_eq!(decide_with(&p, &f).code, "nothing_to_refund");
        // Prorata minus what was refunded before.
        let p = policy(serde_json::json!([{"reasons": ["outage"], "decision": "approve", "amount": "prorata"}]));
        let mut f = facts(RefundReason::Outage, "2026-03-20T09:00:00Z"); // 16 of 31 days unused
        assert_eq!(decide_with(&p, &f).amount, rub("1027.10"));
        f.refunded = rub("1000.00");
        assert_eq!(decide_with(&p, &f).amount, rub("27.10"));
    }
}
