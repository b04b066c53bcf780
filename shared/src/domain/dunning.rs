//! Dunning: what happens after a renewal charge is declined (SPEC §4).
//!
//! Only the provider's verdict on the customer's card (a decline with its reason
//! code) — or having no card to charge at all — moves a subscription through
//! dunning. A provider refusing the merchant's own request (credentials, a request
//! it calls malformed, rate limits) is an operational failure handled by the
//! worker's retries, never a decline.
//!
//! Retries follow the tenant's `dunning_retry_days`, offsets from the renewal's
//! scheduled due time; each retry is a new attempt. Access continues for the grace
//! period (counted from the due time), then is suspended. Hard declines stop the
//! automatic retries — the customer must pay by hand — but not the dunning window:
//! it still ends at the would-be last retry (or the grace end, if later), and only
//! then does the policy's `after_last_retry` apply.

use chrono::{DateTime, TimeDelta, Utc};

use super::tenant::Policy;

/// Our own decline code for a charge with no usable saved card: nothing to retry
/// with, so it is a hard decline. (Which provider codes are hard is the gateway
/// adapter's knowledge: `gateways::DeclineClass`.)
pub const NO_PAYMENT_METHOD: &str = "no_payment_method";

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

///
/// `hard`: retries were stopped by a hard decline — no further automatic attempt,
/// but the window (and so the customer's time to pay by hand) is unchanged.
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
    let last_retry = policy.dunning_retry_days.last().map_or(due, |d| offset(*d));
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
    fn a_hard_decline_keeps_the_window_open_for_paying_by_hand() {
        // Orbita: grace 0, retries [1, 3, 5]; an expired card (5054) on the due date.
        let due = t("2026-04-01T09:00:00Z");
        let s = schedule(&policy(0, &[1, 3, 5]), due, 1, true);
        assert_eq!(s.next_retry_at, None, "no automatic attempt after a hard decline");
        assert_eq!(s.grace_until, due, "access suspended at once");
        assert_eq!(s.ends_at, t("2026-04-06T09:00:00Z"), "after_last_retry only when the window ends");
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
        assert_eq!(hard.ends_at, s.ends_at);
        let none = schedule(&policy(0, &[]), due, 1, false);
        assert_eq!((none.next_retry_at, none.ends_at), (None, due));
    }
}
