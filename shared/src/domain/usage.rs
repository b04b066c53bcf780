//! Usage: which paid period an event counts in, and what its overage costs
//! (SPEC §5).
//!
//! Counters belong to a paid period and are keyed by the period's start. With
//! `quota_reset: "period_start"` a period's counting window is the period itself.
//! With `"last_day_local_midnight"` (WhatsMonster 7.7) the quota resets at 00:00 in
//! the **customer's** time zone on the period's last day: usage from that midnight
//! on counts towards the next period (or, when none follows, a fresh quota of the
//! current tariff until the period ends). Unused quota never carries over.

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sha2::{Digest, Sha256};

use super::ids::TenantId;
use super::money::{Money, UnitPrice};
use super::period::{local_date, resolve_local};
use super::plan::{AboveQuota, MetricKind, Quota, QuotaMode, QuotaReset};

/// When usage stops counting towards the period that ends at `period_end`.
pub fn window_end(period_end: DateTime<Utc>, reset: QuotaReset, customer_tz: Tz) -> DateTime<Utc> {
    match reset {
        QuotaReset::PeriodStart => period_end,
        QuotaReset::LastDayLocalMidnight => {
            // The last day is the local date of the period's last instant.
            let last_day = local_date(customer_tz, period_end - TimeDelta::microseconds(1));
            resolve_local(customer_tz, last_day.and_time(NaiveTime::MIN))
        }
    }
}

/// The subscription facts attribution needs.
#[derive(Debug, Clone, Copy)]
pub struct PeriodFacts {
    /// When the subscription was created: nothing before it counts.
    pub created_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// A next period follows the current one at its end (auto-renewal running or
    /// an extension paid), so usage after the end belongs to it.
    pub continues: bool,
    pub reset: QuotaReset,
    pub customer_tz: Tz,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unattributable {
    /// Before the current period's counting window: that period is billed.
    PeriodClosed,
    /// After the subscription's access ended.
    NoSubscription,
}

impl Unattributable {
    pub fn code(self) -> &'static str {
        match self {
            Unattributable::PeriodClosed => "period_closed",
            Unattributable::NoSubscription => "no_active_subscription",
        }
    }
}

/// The start of the paid period an event at `at` counts in.
pub fn period_of(at: DateTime<Utc>, f: &PeriodFacts) -> Result<DateTime<Utc>, Unattributable> {
    // The current period's window opened at the previous period's reset; nothing
    // before the subscription itself counts.
    let current_from = window_end(f.period_start, f.reset, f.customer_tz).max(f.created_at);
    let next_from = window_end(f.period_end, f.reset, f.customer_tz);
    if at < current_from {
        Err(Unattributable::PeriodClosed)
    } else if at < next_from {
        Ok(f.period_start)
    } else if at < f.period_end || f.continues {
        // From the reset on, usage counts towards the next period (keyed by its
        // start, the current end) — or a fresh quota until the period ends.
        Ok(f.period_end)
    } else {
        Err(Unattributable::NoSubscription)
    }
}

/// A period's usage of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Counter: sum of quantities. Gauge: latest level.
    pub used: i64,
    /// Gauge: the period's maximum level (Alfa 5.8 bills it). Counter: `used`.
    pub peak: i64,
}

impl Usage {
    /// What the quota is measured against.
    pub fn billable(&self, kind: MetricKind) -> i64 {
        match kind {
            MetricKind::Counter => self.used,
            MetricKind::Gauge => self.peak,
        }
    }
}

/// Units above the quota and their price, rounded once; `None` when nothing is owed.
pub fn overage(quota: &Quota, usage: Usage) -> Option<(i64, UnitPrice, Money)> {
    let AboveQuota::Overage(price) = quota.above() else { return None };
    let units = usage.billable(quota.kind()).checked_sub(quota.limit()).filter(|u| *u > 0)?;
    let amount = price.times(units);
    (!amount.is_zero()).then_some((units, price, amount))
}

/// Entitlement of one metric: remaining quota and whether it may be used now.
pub fn remaining(quota: &Quota, usage: Usage) -> (i64, bool) {
    let left = (quota.limit() - usage.used).max(0);
    (left, quota.mode() == QuotaMode::Overage || left > 0)
}

/// Length of one generation of usage event ids: 35 days, in seconds.
pub const KEY_GENERATION_SECONDS: i64 = 35 * 86_400;

/// Where an event id received at some instant is claimed (`usage_event_keys`,
/// issue 15 part 5). Ids are kept per 35-day generation (`floor(epoch seconds /
/// 3 024 000)`) and an id is a duplicate when its own or the previous generation
/// holds it: a retry is recognised for at least 35 days after the first delivery
/// (up to 70; Metronome keeps 34). During the first day of a generation a new id
/// is claimed in the previous generation too, so a batch still writing there (a
/// transaction begun before the turn, a replica whose clock lags by less than a
/// day) meets it on the same unique index instead of missing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGeneration {
    /// The generation `received_at` falls in.
    pub current: i32,
    /// Within the first day of `current`: claim in `current - 1` as well.
    pub overlap: bool,
}

impl KeyGeneration {
    /// The generation of `received_at` (UTC; generations start at the Unix epoch).
    pub fn at(received_at: DateTime<Utc>) -> Self {
        let secs = received_at.timestamp();
        let number = secs.div_euclid(KEY_GENERATION_SECONDS);
        Self {
            current: i32::try_from(number).unwrap_or(i32::MAX),
            overlap: secs - number * KEY_GENERATION_SECONDS < 86_400,
        }
    }
}

/// The key an event id is claimed under in `usage_event_keys`: the first 16 bytes
/// of SHA-256 over the tenant's id (its 16 bytes) followed by the event id (UTF-8),
/// as a UUID. The same as the database's `usage_event_key(tenant, event_id)`
/// (migration 000024), which converts stored ids and seeds benchmarks.
///
/// Fixed at 16 bytes whatever the id's length (up to 255 characters) and with the
/// tenant folded in, a key's index entry is half the size of `(tenant_id,
/// event_id)`'s for a 32-character id (MD5 hex), so more of the de-duplication
/// window's index stays in memory and each claim is cheaper (bench/README, "Usage
/// keys as digests"). Any two different (tenant, id) pairs, of one tenant or of two,
/// share a key with probability about n² / 2¹²⁹ for n ids of all tenants in a
/// window (about 10⁻¹⁵ at a trillion); the later one would be taken for a
/// duplicate.
pub fn event_key(tenant: TenantId, event_id: &str) -> uuid::Uuid {
    let digest = Sha256::new().chain_update(tenant.0.as_bytes()).chain_update(event_id.as_bytes()).finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn facts(start: &str, end: &str, reset: QuotaReset, tz: Tz, continues: bool) -> PeriodFacts {
        PeriodFacts {
            created_at: t("2026-01-01T00:00:00Z"),
            period_start: t(start),
            period_end: t(end),
            continues,
            reset,
            customer_tz: tz,
        }
    }

    #[test]
    fn period_start_reset_counts_in_the_containing_period() {
        let f = facts("2026-03-01T09:00:00Z", "2026-03-31T09:00:00Z", QuotaReset::PeriodStart, chrono_tz::UTC, true);
        assert_eq!(period_of(t("2026-03-01T09:00:00Z"), &f), Ok(f.period_start));
        assert_eq!(period_of(t("2026-03-31T08:59:59Z"), &f), Ok(f.period_start));
        assert_eq!(period_of(t("2026-03-31T09:00:00Z"), &f), Ok(f.period_end));
        assert_eq!(period_of(t("2026-03-01T08:59:59Z"), &f), Err(Unattributable::PeriodClosed));
        let ends = PeriodFacts { continues: false, ..f };
        assert_eq!(period_of(t("2026-03-31T09:00:00Z"), &ends), Err(Unattributable::NoSubscription));
    }

    #[test]
    fn last_day_midnight_in_moscow() {
        // Period ends Mar 31 12:00 MSK (09:00 UTC): the last day is Mar 31, the quota
        // resets at Mar 31 00:00 MSK = Mar 30 21:00 UTC.
        let tz = chrono_tz::Europe::Moscow;
        let f = facts("2026-03-01T09:00:00Z", "2026-03-31T09:00:00Z", QuotaReset::LastDayLocalMidnight, tz, false);
        assert_eq!(window_end(f.period_end, f.reset, tz), t("2026-03-30T21:00:00Z"));
        assert_eq!(period_of(t("2026-03-30T20:59:59Z"), &f), Ok(f.period_start));
        // After the reset a fresh quota of the current tariff, until the period ends.
        assert_eq!(period_of(t("2026-03-30T21:00:00Z"), &f), Ok(f.period_end));
        assert_eq!(period_of(t("2026-03-31T09:00:00Z"), &f), Err(Unattributable::NoSubscription));
        // The next period's window opened at that reset; before it is closed.
        let next = facts("2026-03-31T09:00:00Z", "2026-04-30T09:00:00Z", QuotaReset::LastDayLocalMidnight, tz, true);
        assert_eq!(period_of(t("2026-03-30T21:00:00Z"), &next), Ok(next.period_start));
        assert_eq!(period_of(t("2026-03-30T20:59:59Z"), &next), Err(Unattributable::PeriodClosed));
    }

    #[test]
    fn last_day_midnight_follows_the_customers_zone() {
        let end = t("2026-03-31T09:00:00Z");
        // Yekaterinburg is UTC+5: Mar 31 00:00 local = Mar 30 19:00 UTC.
        assert_eq!(
            window_end(end, QuotaReset::LastDayLocalMidnight, chrono_tz::Asia::Yekaterinburg),
            t("2026-03-30T19:00:00Z")
        );
        // A period ending exactly at local midnight: its last day is the day before.
        let midnight_end = t("2026-03-30T19:00:00Z");
        assert_eq!(
            window_end(midnight_end, QuotaReset::LastDayLocalMidnight, chrono_tz::Asia::Yekaterinburg),
            t("2026-03-29T19:00:00Z")
        );
    }

    #[test]
    fn last_day_midnight_across_dst() {
        // Berlin switches to summer time on 2026-03-29: midnight of Mar 31 is 22:00
        // UTC (UTC+2), midnight of Mar 1 was 23:00 UTC (UTC+1).
        let tz = chrono_tz::Europe::Berlin;
        assert_eq!(
            window_end(t("2026-03-31T10:00:00Z"), QuotaReset::LastDayLocalMidnight, tz),
            t("2026-03-30T22:00:00Z")
        );
        assert_eq!(
            window_end(t("2026-03-01T10:00:00Z"), QuotaReset::LastDayLocalMidnight, tz),
            t("2026-02-28T23:00:00Z")
        );
        // Santiago skips 00:00 when summer time starts (2026-09-06 00:00 -> 01:00):
        // the reset is the first instant of that day.
        let santiago = chrono_tz::America::Santiago;
        assert_eq!(
            window_end(t("2026-09-06T18:00:00Z"), QuotaReset::LastDayLocalMidnight, santiago),
            t("2026-09-06T04:00:00Z")
        );
    }

    fn quota(limit: i64, mode: QuotaMode, price: Option<&str>, kind: MetricKind) -> Quota {
        let price = price.map(|p| UnitPrice::parse(&serde_json::json!(p), &serde_json::json!("RUB")).unwrap());
        Quota::new(limit, mode, price, kind).unwrap()
    }

    #[test]
    fn a_whole_unit_price_is_billed() {
        // Alfa 5.8 (issue: "20" was stored and the overage skipped): 100 active
        // clients included, the level peaked at 120, 20.00 each -> 400.00.
        let q = quota(100, QuotaMode::Overage, Some("20.00"), MetricKind::Gauge);
        let stored = serde_json::to_value(&q).unwrap();
        assert_eq!(stored["unit_price"]["value"], "20.00");
        let back: Quota = serde_json::from_value(stored).unwrap();
        let (units, _, amount) = overage(&back, Usage { used: 110, peak: 120 }).unwrap();
        assert_eq!((units, amount.value_string()), (20, "400.00".to_owned()));
    }

    #[test]
    fn a_stored_quota_that_does_not_parse_is_an_error() {
        for bad in [
            serde_json::json!({"limit": 100, "mode": "overage", "unit_price": {"value": "20", "currency": "RUB"}}),
            serde_json::json!({"limit": 100, "mode": "overage"}),
            serde_json::json!({"limit": 100, "mode": "block", "unit_price": {"value": "1.00", "currency": "RUB"}}),
            serde_json::json!({"limit": -1, "mode": "block"}),
        ] {
            assert!(serde_json::from_value::<Quota>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn overage_is_units_above_the_quota_times_the_unit_price_rounded_once() {
        // 10 000 included, 12 345 sent at 0.0375: 2 345 x 0.0375 = 87.9375 -> 87.94.
        let q = quota(10_000, QuotaMode::Overage, Some("0.0375"), MetricKind::Counter);
        let (units, _, amount) = overage(&q, Usage { used: 12_345, peak: 12_345 }).unwrap();
        assert_eq!(units, 2_345);
        assert_eq!(amount.amount(), Decimal::new(8794, 2));
        assert_eq!(overage(&q, Usage { used: 10_000, peak: 10_000 }), None);
        // Six-decimal price: 3 x 0.333333 = 0.999999 -> 1.00.
        let tiny = quota(0, QuotaMode::Overage, Some("0.333333"), MetricKind::Counter);
        assert_eq!(overage(&tiny, Usage { used: 3, peak: 3 }).unwrap().2.amount(), Decimal::new(100, 2));
        // Block quotas never produce overage.
        let block = quota(10, QuotaMode::Block, None, MetricKind::Counter);
        assert_eq!(overage(&block, Usage { used: 50, peak: 50 }), None);
    }

    #[test]
    fn gauges_bill_the_period_maximum() {
        // Alfa 5.8: 100 active clients included; the level peaked at 130 and fell to 90.
        let q = quota(100, QuotaMode::Overage, Some("15.00"), MetricKind::Gauge);
        let (units, _, amount) = overage(&q, Usage { used: 90, peak: 130 }).unwrap();
        assert_eq!(units, 30);
        assert_eq!(amount.amount(), Decimal::new(45000, 2));
        assert_eq!(remaining(&q, Usage { used: 90, peak: 130 }), (10, true));
    }

    #[test]
    fn block_metrics_lose_access_when_used_up() {
        let q = quota(100, QuotaMode::Block, None, MetricKind::Counter);
        assert_eq!(remaining(&q, Usage { used: 99, peak: 99 }), (1, true));
        assert_eq!(remaining(&q, Usage { used: 100, peak: 100 }), (0, false));
        assert_eq!(remaining(&q, Usage { used: 150, peak: 150 }), (0, false));
    }

    #[test]
    fn key_generations_turn_every_35_days_with_a_day_of_overlap() {
        // 2026-05-01T09:00Z is 1 777 626 000 s: generation 587 starts at 1 775 088 000 (2026-04-02).
        let g = KeyGeneration::at(t("2026-05-01T09:00:00Z"));
        assert_eq!(g, KeyGeneration { current: 587, overlap: false });
        assert_eq!(KeyGeneration::at(t("2026-04-02T00:00:00Z")), KeyGeneration { current: 587, overlap: true });
        assert_eq!(KeyGeneration::at(t("2026-04-02T23:59:59Z")), KeyGeneration { current: 587, overlap: true });
        assert_eq!(KeyGeneration::at(t("2026-04-03T00:00:00Z")), KeyGeneration { current: 587, overlap: false });
        assert_eq!(KeyGeneration::at(t("2026-04-01T23:59:59Z")), KeyGeneration { current: 586, overlap: false });
        assert_eq!(KeyGeneration::at(t("2026-05-07T00:00:00Z")).current, 588);
    }

    #[test]
    fn event_keys_are_the_sha256_prefix_of_tenant_and_id() {
        // Vectors computed outside: Python's hashlib and PostgreSQL's sha256().
        let tenant = TenantId("00000000-0000-0000-0000-000000000001".parse().unwrap());
        assert_eq!(event_key(tenant, "e1").to_string(), "a2bd2128-9639-0ce5-d0cc-549138d81a00");
        assert_eq!(event_key(tenant, "заказ-42").to_string(), "7fc586ed-4ad0-0000-0e58-5e9142aba844");
        let other = TenantId("00000000-0000-0000-0000-000000000002".parse().unwrap());
        assert_ne!(event_key(other, "e1"), event_key(tenant, "e1"));
    }
}
