//! Business days (SPEC §6): weekends, the Russian production calendar (weekdays
//! off and working weekends per year, shipped as data in `shared/data/ru-calendar.json`)
//! and a tenant's own holidays. A year the data does not cover counts weekends only;
//! [`Calendar::covers`] tells the caller so it can warn.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;

const RU_DATA: &str = include_str!("../../data/ru-calendar.json");

#[derive(Debug, Deserialize)]
struct CalendarData {
    years: Vec<YearData>,
}

#[derive(Debug, Deserialize)]
struct YearData {
    year: i32,
    nonworking_weekdays: Vec<NaiveDate>,
    #[serde(default)]
    working_weekends: Vec<NaiveDate>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    years: BTreeSet<i32>,
    days_off: BTreeSet<NaiveDate>,
    working_weekends: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// Parses calendar data (the shape of `ru-calendar.json`).
    pub fn parse(json: &str) -> Result<Calendar, serde_json::Error> {
        let data: CalendarData = serde_json::from_str(json)?;
        let mut c = Calendar::default();
        for y in data.years {
            c.years.insert(y.year);
            c.days_off.extend(y.nonworking_weekdays);
            c.working_weekends.extend(y.working_weekends);
        }
        Ok(c)
    }

    /// The Russian production calendar shipped with the service. The data is
    /// embedded at build time and parsed by a unit test; were it unreadable, the
    /// error is logged and weekends only count.
    pub fn russia() -> &'static Calendar {
        static RU: OnceLock<Calendar> = OnceLock::new();
        RU.get_or_init(|| {
            Calendar::parse(RU_DATA).unwrap_or_else(|e| {
                tracing::error!(error = %e, "the embedded production calendar does not parse: weekends only");
                Calendar::default()
            })
        })
    }

    /// Whether the data knows `year` (otherwise only weekends are days off).
    pub fn covers(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    pub fn is_business_day(&self, day: NaiveDate, holidays: &[NaiveDate]) -> bool {
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let off = if weekend { !self.working_weekends.contains(&day) } else { self.days_off.contains(&day) };
        !off && !holidays.contains(&day)
    }

    /// The `n`-th business day after `day` (`day` itself does not count).
    pub fn nth_business_day_after(&self, day: NaiveDate, n: u32, holidays: &[NaiveDate]) -> NaiveDate {
        let mut current = day;
        let mut found = 0;
        while found < n {
            let Some(next) = current.succ_opt() else { return current };
            current = next;
            if self.is_business_day(current, holidays) {
                found += 1;
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn the_shipped_data_parses_and_covers_2026() {
        let c = Calendar::parse(RU_DATA).unwrap();
        assert!(c.covers(2026));
        assert!(!c.covers(2027));
        assert_eq!(Calendar::russia(), &c);
    }

    #[test]
    fn weekends_decree_days_and_tenant_holidays_are_off() {
        let c = Calendar::russia();
        assert!(c.is_business_day(d("2026-03-06"), &[])); // Friday
        assert!(!c.is_business_day(d("2026-03-07"), &[])); // Saturday
        assert!(!c.is_business_day(d("2026-03-09"), &[])); // Monday, moved day off (decree)
        assert!(!c.is_business_day(d("2026-01-05"), &[]));
        assert!(!c.is_business_day(d("2026-12-30"), &[d("2026-12-30")])); // the tenant's own
        assert!(c.is_business_day(d("2026-12-30"), &[]));
    }

    #[test]
    fn counting_skips_days_off() {
        let c = Calendar::russia();
        // Thu Mar 5 + 5 business days: Fri 6, (Sat, Sun, Mon 9 off) Tue 10, 11, 12, Fri 13.
        assert_eq!(c.nth_business_day_after(d("2026-03-05"), 5, &[]), d("2026-03-13"));
        // New year holidays: Dec 30 + 1 -> Jan 2027 has no data: weekends only.
        assert_eq!(c.nth_business_day_after(d("2026-12-30"), 1, &[]), d("2027-01-01"));
        assert_eq!(c.nth_business_day_after(d("2026-12-29"), 1, &[d("2026-12-30")]), d("2027-01-01"));
        assert_eq!(c.nth_business_day_after(d("2026-12-31"), 0, &[]), d("2026-12-31"));
    }

    #[test]
    fn a_working_weekend_counts() {
        let c = Calendar::parse(
            r#"{"years": [{"year": 2030, "nonworking_weekdays": [], "working_weekends": ["2030-01-05"]}]}"#,
        )
        .unwrap();
        assert!(c.is_business_day(d("2030-01-05"), &[]));
        assert!(!c.is_business_day(d("2030-01-06"), &[]));
    }
}
