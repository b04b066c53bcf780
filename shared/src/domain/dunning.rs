//! Dunning: what happens after a renewal charge is declined (SPEC §4).
//!
//! Retries follow the tenant's `dunning_retry_days`, offsets from the renewal's
//! scheduled due time; each retry is a new attempt. Access continues for the grace
//! period (counted from the due time), then is suspended. Hard declines stop the
//! retries: the customer must pay by hand. When dunning ends without payment the
//! policy's `after_last_retry` applies.

use chrono::{DateTime, TimeDelta, Utc};

use super::tenant::Policy;

/// CloudPayments decline codes after which retrying the card is pointless
/// (lost, stolen, expired card, transaction not permitted), and YooKassa's
/// equivalents.
pub const HARD_DECLINES: &[&str] = &["5041", "5043", "5054", "5057", "permission_revoked", "card_expired"];

/// Our own codes for charges that could not even be attempted.
pub const NO_PAYMENT_METHOD: &str = "no_payment_method";
pub const REQUEST_REFUSED: &str = "request_refused";

pub fn is_hard_decline(code: Option<&str>) -> bool {
    code.is_some_and(|c| HARD_DECLINES.contains(&c) || c == NO_PAYMENT_METHOD || c == REQUEST_REFUSED)
}

/// The dunning schedule after the `failed_attempts`-th scheduled attempt of a
/// renewal due at `due` has failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Access is kept until then (status `past_due`), suspended after.
    pub grace_until: DateTime<Utc>,
    /// The next automatic attempt, if any remains.
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When `after_last_retry` applies if nothing was paid.
    pub ends_at: DateTime<Utc>,
}

pub fn schedule(policy: &Policy, due: DateTime<Utc>, failed_attempts: u32, hard: bool) -> Schedule {
    let grace_until = due + TimeDelta::hours(i64::from(policy.grace_period_hours));
    let offset = |days: u32| due + TimeDelta::days(i64::from(days));
    let next_retry_at = if hard {
        None
    } else {
        usize::try_from(failed_attempts.saturating_sub(1))
            .ok()
            .and_then(|i| policy.dunning_retry_days.get(i))
            .map(|d| offset(*d))
    };
    let last_retry = if hard { due } else { policy.dunning_retry_days.last().map(|d| offset(*d)).unwrap_or(due) };
    Schedule { grace_until, next_retry_at, ends_at: grace_until.max(last_retry) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy(grace: u32, days: &[u32]) -> Policy {
        Policy { grace_period_hours: grace, dunning_retry_days: days.to_vec(), ..Policy::default() }
    }

    #[test]
    fn retries_are_offsets_from_the_due_time() {
        let due = t("2026-03-01T10:00:00Z");
        let p = policy(0, &[1, 3, 5]);
        assert_eq!(schedule(&p, due, 1, false).next_retry_at, Some(t("2026-03-02T10:00:00Z")));
        assert_eq!(schedule(&p, due, 2, false).next_retry_at, Some(t("2026-03-04T10:00:00Z")));
        assert_eq!(schedule(&p, due, 3, false).next_retry_at, Some(t("2026-03-06T10:00:00Z")));
        let last = schedule(&p, due, 4, false);
        assert_eq!(last.next_retry_at, None);
        assert_eq!(last.ends_at, t("2026-03-06T10:00:00Z"));
        assert_eq!(last.grace_until, due);
    }

    #[test]
    fn grace_and_hard_declines() {
        let due = t("2026-03-01T10:00:00Z");
        let p = policy(72, &[1]);
        let s = schedule(&p, due, 1, false);
        assert_eq!(s.grace_until, t("2026-03-04T10:00:00Z"));
        assert_eq!(s.ends_at, t("2026-03-04T10:00:00Z"), "dunning lasts at least the grace period");
        let hard = schedule(&p, due, 1, true);
        assert_eq!(hard.next_retry_at, None);
        assert_eq!(hard.ends_at, hard.grace_until);
        assert!(is_hard_decline(Some("5054")));
        assert!(!is_hard_decline(Some("5051")));
        assert!(!is_hard_decline(None));
        let none = schedule(&policy(0, &[]), due, 1, false);
        assert_eq!((none.next_retry_at, none.ends_at), (None, due));
    }
}
