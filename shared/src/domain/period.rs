//! Billing periods in local wall-clock time.
//!
//! Periods are computed in a time zone (the tenant's): a 30-day plan ends 30 local
//! days later at the same local time; a monthly plan keeps its anchor day, so a
//! period started on Jan 31 ends on Feb 28 (29) and the next one on Mar 31. The
//! anchor (an instant whose local day and time of day count) is stored apart from
//! the period start. Local times that do not exist (a DST gap) resolve to the
//! earliest valid instant after them; ambiguous ones to the earlier instant.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Unit of a plan's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodUnit {
    Day,
    Month,
    Year,
}

impl PeriodUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodUnit::Day => "day",
            PeriodUnit::Month => "month",
            PeriodUnit::Year => "year",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(PeriodUnit::Day),
            "month" => Some(PeriodUnit::Month),
            "year" => Some(PeriodUnit::Year),
            _ => None,
        }
    }
}

/// A plan's period: `count` days, months or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub unit: PeriodUnit,
    /// How many units, at least 1 (at most ten years in all).
    #[schema(minimum = 1)]
    pub count: u32,
}

impl Period {
    /// Longest period accepted (ten years in any unit).
    pub fn is_reasonable(&self) -> bool {
        let max = match self.unit {
            PeriodUnit::Day => 3660,
            PeriodUnit::Month => 120,
            PeriodUnit::Year => 10,
        };
        self.count >= 1 && self.count <= max
    }

    /// Approximate length in days, used only to compare price per day between plans.
    pub fn nominal_days(&self) -> u32 {
        match self.unit {
            PeriodUnit::Day => self.count,
            PeriodUnit::Month => self.count * 30,
            PeriodUnit::Year => self.count * 365,
        }
    }
}

/// Resolves a local wall-clock time in `tz` to an instant: the earlier instant when
/// ambiguous (DST fall-back), the first valid instant after it when it does not
/// exist (DST spring-forward gap).
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    // Gaps are at most a few hours; step forward minute by minute to the gap's end.
    for _ in 0..=24 * 60 {
        match tz.from_local_datetime(&probe) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, b) => return a.min(b).with_timezone(&Utc),
            chrono::LocalResult::None => {
                probe = probe.checked_add_signed(chrono::TimeDelta::minutes(1)).unwrap_or(probe);
            }
        }
    }
    // Unreachable for real zones; fall back to reading the wall time as UTC.
    Utc.from_utc_datetime(&local)
}

/// The local calendar date of an instant in `tz`.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1);
    let next =
        if month == 12 { NaiveDate::from_ymd_opt(year + 1, 1, 1) } else { NaiveDate::from_ymd_opt(year, month + 1, 1) };
    match (first, next) {
        (Some(a), Some(b)) => u32::try_from((b - a).num_days()).unwrap_or(28),
        _ => 28,
    }
}

/// End of the period that starts at `start`, for a subscription anchored at `anchor`.
///
/// Day periods add local days to the start. Month and year periods move the start's
/// local month forward and take the anchor's day of month (clamped to the month's
/// length) and the anchor's local time of day.
pub fn period_end(start: DateTime<Utc>, anchor: DateTime<Utc>, period: Period, tz: Tz) -> DateTime<Utc> {
    let start_local = start.with_timezone(&tz).naive_local();
    match period.unit {
        PeriodUnit::Day => {
            let end = start_local.checked_add_days(Days::new(u64::from(period.count))).unwrap_or(start_local);
            resolve_local(tz, end)
        }
        PeriodUnit::Month | PeriodUnit::Year => {
            let months = match period.unit {
                PeriodUnit::Year => period.count * 12,
                _ => period.count,
            };
            let anchor_local = anchor.with_timezone(&tz).naive_local();
            let first_of_month = start_local.date().with_day(1).unwrap_or(start_local.date());
            let target = first_of_month.checked_add_months(Months::new(months)).unwrap_or(first_of_month);
            let day = anchor_local.day().min(days_in_month(target.year(), target.month()));
            let date = target.with_day(day).unwrap_or(target);
            resolve_local(tz, date.and_time(anchor_local.time()))
        }
    }
}

/// Shifts an instant by `days` local days (maintenance extensions).
pub fn shift_days(at: DateTime<Utc>, days: u32, tz: Tz) -> DateTime<Utc> {
    let local = at.with_timezone(&tz).naive_local();
    resolve_local(tz, local.checked_add_days(Days::new(u64::from(days))).unwrap_or(local))
}

/// Whole local calendar days from `from`'s local date to `to`'s local date.
pub fn local_days_between(from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> i64 {
    (local_date(tz, to) - local_date(tz, from)).num_days()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msk() -> Tz {
        chrono_tz::Europe::Moscow
    }

    fn at(tz: Tz, y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        resolve_local(tz, NaiveDate::from_ymd_opt(y, m, d).unwrap().and_hms_opt(h, min, 0).unwrap())
    }

    const MONTH: Period = Period { unit: PeriodUnit::Month, count: 1 };

    #[test]
    fn monthly_periods_keep_the_anchor_day() {
        let tz = msk();
        let anchor = at(tz, 2026, 1, 31, 15, 20);
        let feb = period_end(anchor, anchor, MONTH, tz);
        assert_eq!(feb, at(tz, 2026, 2, 28, 15, 20));
        let mar = period_end(feb, anchor, MONTH, tz);
        assert_eq!(mar, at(tz, 2026, 3, 31, 15, 20));
        let apr = period_end(mar, anchor, MONTH, tz);
        assert_eq!(apr, at(tz, 2026, 4, 30, 15, 20));
        // leap year
        let anchor = at(tz, 2028, 1, 30, 0, 0);
        assert_eq!(period_end(anchor, anchor, MONTH, tz), at(tz, 2028, 2, 29, 0, 0));
    }

    #[test]
    fn yearly_period_from_leap_day() {
        let tz = msk();
        let anchor = at(tz, 2028, 2, 29, 10, 0);
        let year = Period { unit: PeriodUnit::Year, count: 1 };
        let end = period_end(anchor, anchor, year, tz);
        assert_eq!(end, at(tz, 2029, 2, 28, 10, 0));
        assert_eq!(period_end(end, anchor, year, tz), at(tz, 2030, 2, 28, 10, 0));
        assert_eq!(period_end(at(tz, 2031, 2, 28, 10, 0), anchor, year, tz), at(tz, 2032, 2, 29, 10, 0));
    }

    #[test]
    fn thirty_day_periods_add_local_days() {
        let tz = msk();
        let start = at(tz, 2026, 11, 21, 13, 5);
        let p = Period { unit: PeriodUnit::Day, count: 30 };
        assert_eq!(period_end(start, start, p, tz), at(tz, 2026, 12, 21, 13, 5));
    }

    #[test]
    fn months_follow_wall_clock_across_dst() {
        let tz = chrono_tz::Europe::Berlin;
        let anchor = at(tz, 2026, 3, 15, 12, 0);
        let end = period_end(anchor, anchor, MONTH, tz);
        // 31 days minus the lost hour of the spring-forward change
        assert_eq!((end - anchor).num_hours(), 31 * 24 - 1);
        assert_eq!(end.with_timezone(&tz).naive_local().time(), anchor.with_timezone(&tz).naive_local().time());
    }

    #[test]
    fn nonexistent_and_ambiguous_local_times() {
        let tz = chrono_tz::Europe::Berlin;
        // 2026-03-29 02:30 does not exist in Berlin: the gap ends at 03:00 CEST = 01:00 UTC
        let gap = resolve_local(tz, NaiveDate::from_ymd_opt(2026, 3, 29).unwrap().and_hms_opt(2, 30, 0).unwrap());
        assert_eq!(gap.to_rfc3339(), "2026-03-29T01:00:00+00:00");
        // 2026-10-25 02:30 happens twice: the earlier is 00:30 UTC
        let amb = resolve_local(tz, NaiveDate::from_ymd_opt(2026, 10, 25).unwrap().and_hms_opt(2, 30, 0).unwrap());
        assert_eq!(amb.to_rfc3339(), "2026-10-25T00:30:00+00:00");
    }

    proptest! {
        #[test]
        fn monthly_chain_never_drifts_from_anchor(day in 1u32..=31, months in 1usize..36) {
            let tz = msk();
            let anchor = resolve_local(tz, NaiveDate::from_ymd_opt(2026, 1, day).unwrap().and_hms_opt(9, 30, 0).unwrap());
            let mut end = anchor;
            for _ in 0..months {
                let next = period_end(end, anchor, MONTH, tz);
                prop_assert!(next > end);
                end = next;
            }
            let local = end.with_timezone(&tz).naive_local();
            let expected_day = day.min(days_in_month(local.year(), local.month()));
            prop_assert_eq!(local.day(), expected_day);
            prop_assert_eq!((local.hour(), local.minute()), (9, 30));
        }
    }

    use chrono::Timelike;
}
