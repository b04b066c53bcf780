//! What is due next for a subscription (SPEC §4, ARCHITECTURE.md "Test clock vs
//! real time"): every business due time — a renewal charge, a dunning retry, the
//! grace end, a renewal or expiry notice, a period end, a pending payment's
//! expiry — is decided here from the subscription alone and stored as its
//! `due_at`; the worker's scheduler performs what is due.

use chrono::{DateTime, TimeDelta, Utc};

use super::{Subscription, SubscriptionStatus};

/// How long a customer has to pay a pending payment (SPEC §4).
pub const PENDING_PAYMENT_TTL: TimeDelta = TimeDelta::hours(24);

/// The notices a subscription gets once per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// `subscription.renewal_upcoming`, the tenant's notice days before an autopay renewal.
    RenewalUpcoming,
    /// `subscription.expiring_soon`, as long before a period ends without renewal.
    ExpiringSoon,
}

/// A step the scheduler performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A purchase was not paid in time.
    ExpirePending,
    Notice(Notice),
    /// The renewal charge is due (or a free plan renews).
    StartRenewal,
    /// A queued paid extension takes over.
    RollExtension,
    /// The period ended without renewal.
    Expire,
    /// The grace period ended.
    Suspend,
    /// The next dunning retry is due.
    Retry,
    /// Dunning ended without payment.
    GiveUp,
}

/// What is due next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Due now (at or before the instant asked about).
    Act(Action),
    /// Nothing until then (`None`: until something else changes the subscription).
    Wait(Option<DateTime<Utc>>),
}

/// What is due next for `sub` at `now`, given the tenant's renewal notice days and
/// whether its outstanding renewal has a charge in flight.
pub fn decide(now: DateTime<Utc>, sub: &Subscription, notice_days: u32, charge_in_flight: bool) -> Next {
    let lead = TimeDelta::days(i64::from(notice_days));
    let mut candidates: Vec<(DateTime<Utc>, Action)> = Vec::new();
    match sub.status {
        SubscriptionStatus::PendingPayment => {
            let until = sub.pending_until.unwrap_or(sub.created_at + PENDING_PAYMENT_TTL);
            candidates.push((until, Action::ExpirePending))
        }
        SubscriptionStatus::Active | SubscriptionStatus::Canceled | SubscriptionStatus::Trialing => {
            let Some(end) = sub.current_period_end else { return Next::Wait(None) };
            let renews = sub.status == SubscriptionStatus::Active && sub.auto_renew;
            if renews && sub.renewal_payment_id.is_some() {
                // The renewal charge is in flight: its outcome moves things on.
                return Next::Wait(None);
            }
            if sub.paid_through.is_some_and(|p| p > end) {
                candidates.push((end, Action::RollExtension));
            } else if renews {
                let charge_at = sub.next_charge_at.unwrap_or(end);
                if notice_days > 0 && sub.renewal_notice_for != Some(end) {
                    candidates.push((charge_at - lead, Action::Notice(Notice::RenewalUpcoming)));
                }
                candidates.push((charge_at, Action::StartRenewal));
            } else {
                if notice_days > 0 && sub.expiry_notice_for != Some(end) {
                    candidates.push((end - lead, Action::Notice(Notice::ExpiringSoon)));
                }
                candidates.push((end, Action::Expire));
            }
        }
        SubscriptionStatus::PastDue | SubscriptionStatus::Suspended => {
            if sub.status == SubscriptionStatus::PastDue
                && let Some(g) = sub.grace_until
            {
                candidates.push((g, Action::Suspend));
            }
            if !charge_in_flight {
                match (sub.next_retry_at, sub.dunning_ends_at) {
                    (Some(r), _) => candidates.push((r, Action::Retry)),
                    (None, Some(e)) => candidates.push((e, Action::GiveUp)),
                    (None, None) => {}
                }
            }
        }
        SubscriptionStatus::Expired | SubscriptionStatus::Terminated => return Next::Wait(None),
    }
    match candidates.into_iter().min_by_key(|(t, _)| *t) {
        Some((t, action)) if t <= now => Next::Act(action),
        Some((t, _)) => Next::Wait(Some(t)),
        None => Next::Wait(None),
    }
}

/// The subscription's `due_at` after a change at `now`: the next due instant, or
/// `now` when something is already due (the scheduler picks it up).
pub fn due_at(now: DateTime<Utc>, sub: &Subscription, notice_days: u32) -> Option<DateTime<Utc>> {
    match decide(now, sub, notice_days, false) {
        Next::Wait(due) => due,
        Next::Act(_) => Some(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::tests::{subscription, t};

    #[test]
    fn an_autopay_subscription_is_due_for_its_notice_then_its_renewal() {
        let sub = subscription(SubscriptionStatus::Active);
        assert_eq!(decide(t("2026-03-10T09:00:00Z"), &sub, 3, false), Next::Wait(Some(t("2026-03-29T09:00:00Z"))));
        assert_eq!(
            decide(t("2026-03-29T09:00:00Z"), &sub, 3, false),
            Next::Act(Action::Notice(Notice::RenewalUpcoming))
        );
        let mut noticed = sub.clone();
        noticed.renewal_notice_for = sub.current_period_end;
        assert_eq!(decide(t("2026-03-29T09:00:00Z"), &noticed, 3, false), Next::Wait(Some(t("2026-04-01T09:00:00Z"))));
        assert_eq!(decide(t("2026-04-01T09:00:00Z"), &noticed, 3, false), Next::Act(Action::StartRenewal));
        let mut in_flight = noticed.clone();
        in_flight.renewal_payment_id = Some(crate::domain::ids::PaymentId(uuid::Uuid::nil()));
        assert_eq!(decide(t("2026-04-01T09:00:00Z"), &in_flight, 3, false), Next::Wait(None));
    }

    #[test]
    fn manual_and_canceled_plans_expire_at_the_end_unless_an_extension_is_queued() {
        let mut sub = subscription(SubscriptionStatus::Canceled);
        sub.auto_renew = false;
        assert_eq!(decide(t("2026-04-01T09:00:00Z"), &sub, 0, false), Next::Act(Action::Expire));
        sub.paid_through = Some(t("2026-05-01T09:00:00Z"));
        assert_eq!(decide(t("2026-04-01T09:00:00Z"), &sub, 0, false), Next::Act(Action::RollExtension));
    }

    #[test]
    fn dunning_suspends_at_the_grace_end_retries_and_gives_up() {
        let mut sub = subscription(SubscriptionStatus::PastDue);
        sub.grace_until = Some(t("2026-04-04T09:00:00Z"));
        sub.next_retry_at = Some(t("2026-04-02T09:00:00Z"));
        sub.dunning_ends_at = Some(t("2026-04-06T09:00:00Z"));
        assert_eq!(decide(t("2026-04-02T09:00:00Z"), &sub, 3, false), Next::Act(Action::Retry));
        assert_eq!(
            decide(t("2026-04-02T09:00:00Z"), &sub, 3, true),
            Next::Wait(Some(t("2026-04-04T09:00:00Z"))),
            "a charge in flight"
        );
        sub.next_retry_at = None;
        sub.status = SubscriptionStatus::Suspended;
        assert_eq!(decide(t("2026-04-06T09:00:00Z"), &sub, 3, false), Next::Act(Action::GiveUp));
        assert_eq!(due_at(t("2026-04-05T09:00:00Z"), &sub, 3), Some(t("2026-04-06T09:00:00Z")));
        assert_eq!(due_at(t("2026-04-07T09:00:00Z"), &sub, 3), Some(t("2026-04-07T09:00:00Z")));
    }

    #[test]
    fn pending_purchases_expire_after_a_day_and_ended_ones_wait_for_nothing() {
        let sub = subscription(SubscriptionStatus::PendingPayment);
        assert_eq!(decide(sub.created_at + PENDING_PAYMENT_TTL, &sub, 3, false), Next::Act(Action::ExpirePending));
        assert_eq!(
            decide(t("2030-01-01T00:00:00Z"), &subscription(SubscriptionStatus::Expired), 3, false),
            Next::Wait(None)
        );
    }
}
