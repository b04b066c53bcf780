//! Subscription states and the access rule.
//!
//! States (SPEC §4): `pending_payment`, `trialing`, `active`, `past_due` (a renewal
//! charge failed, retries running), `suspended` (no access), `canceled` (auto-renew
//! off, access to the period end), `expired`, `terminated`.

use chrono::{DateTime, Utc};

super::states::string_enum! {
    pub enum SubscriptionStatus {
        PendingPayment = "pending_payment",
        Trialing = "trialing",
        Active = "active",
        PastDue = "past_due",
        Suspended = "suspended",
        Canceled = "canceled",
        Expired = "expired",
        Terminated = "terminated",
    }
}

impl SubscriptionStatus {
    /// Live subscriptions block a second purchase (one per customer).
    pub fn is_live(self) -> bool {
        !matches!(self, SubscriptionStatus::Expired | SubscriptionStatus::Terminated)
    }
}

/// What the access rule needs to know about a subscription.
#[derive(Debug, Clone, Copy)]
pub struct AccessFacts {
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub period_end: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
}

/// May the customer use the product at `now`?
///
/// - `active` with auto-renew: yes, also past the period end until the renewal's
///   first attempt has an outcome (SPEC §4: access continues until then);
/// - `active` without auto-renew, `trialing`, `canceled`: until the period end;
/// - `past_due`: until the grace period ends;
/// - everything else: no.
pub fn has_access(f: AccessFacts, now: DateTime<Utc>) -> bool {
    let before = |t: Option<DateTime<Utc>>| t.is_some_and(|t| now < t);
    match f.status {
        SubscriptionStatus::Active if f.auto_renew => f.period_end.is_some(),
        SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::Canceled => {
            before(f.period_end)
        }
        SubscriptionStatus::PastDue => before(f.grace_until),
        SubscriptionStatus::PendingPayment
        | SubscriptionStatus::Suspended
        | SubscriptionStatus::Expired
        | SubscriptionStatus::Terminated => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn access_rule() {
        let now = Utc::now();
        let end = Some(now + TimeDelta::days(1));
        let past = Some(now - TimeDelta::seconds(1));
        let facts =
            |status, auto_renew, period_end, grace_until| AccessFacts { status, auto_renew, period_end, grace_until };
        use SubscriptionStatus::*;
        assert!(has_access(facts(Active, true, end, None), now));
        assert!(has_access(facts(Active, true, past, None), now), "renewal pending keeps access");
        assert!(has_access(facts(Active, false, end, None), now));
        assert!(!has_access(facts(Active, false, past, None), now));
        assert!(has_access(facts(Canceled, false, end, None), now));
        assert!(!has_access(facts(Canceled, false, past, None), now));
        assert!(has_access(facts(PastDue, true, past, end), now));
        assert!(!has_access(facts(PastDue, true, past, past), now));
        assert!(!has_access(facts(PastDue, true, end, None), now));
        for s in [PendingPayment, Suspended, Expired, Terminated] {
            assert!(!has_access(facts(s, true, end, end), now));
        }
    }

    #[test]
    fn statuses_round_trip() {
        for &s in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
    }
}
