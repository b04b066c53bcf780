//! The subscription aggregate and its state machine (SPEC §4).
//!
//! States: `pending_payment`, `trialing`, `active`, `past_due` (a renewal charge
//! failed, retries running), `suspended` (no access), `canceled` (auto-renew off,
//! access to the period end), `expired`, `terminated`.
//!
//! Every transition is a pure function of the [`Subscription`] ([`lifecycle`],
//! [`renewal`], [`changes`]): it checks that it may happen from the current state,
//! changes the fields, and returns a [`Change`] — the history entry to record
//! (with its cause and time) and the events to emit. What is due next for a
//! subscription is decided by [`schedule`]. Use cases load the aggregate, apply a
//! transition, store it and emit what the transition returned.

pub mod changes;
pub mod lifecycle;
pub mod renewal;
pub mod schedule;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use super::period::Period;
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};

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

super::states::string_enum! {
    /// Why a subscription changed (the history's `cause`).
    pub enum Cause {
        Purchase = "purchase",
        TrialStarted = "trial_started",
        PaymentSucceeded = "payment_succeeded",
        Renewed = "renewed",
        RenewedFree = "renewed_free",
        ExtensionPaid = "extension_paid",
        ExtensionStarted = "extension_started",
        RenewalDeclined = "renewal_declined",
        RetryDeclined = "retry_declined",
        GraceEnded = "grace_ended",
        DunningExhausted = "dunning_exhausted",
        PaymentExpired = "payment_expired",
        PeriodEnded = "period_ended",
        ReplacedByPurchase = "replaced_by_purchase",
        Superseded = "superseded",
        Canceled = "canceled",
        Resumed = "resumed",
        Refunded = "refunded",
        PlanChanged = "plan_changed",
        PlanChangeScheduled = "plan_change_scheduled",
        PlanChangeCanceled = "plan_change_canceled",
        MaintenanceExtension = "maintenance_extension",
        TerminatedByProvider = "terminated_by_provider",
        TerminatedCustomerFault = "terminated_customer_fault",
    }
}

super::states::string_enum! {
    /// Subscription events for product backends (API.md "Events").
    pub enum EventKind {
        Activated = "subscription.activated",
        Renewed = "subscription.renewed",
        Reactivated = "subscription.reactivated",
        PastDue = "subscription.past_due",
        Suspended = "subscription.suspended",
        Canceled = "subscription.canceled",
        Resumed = "subscription.resumed",
        Expired = "subscription.expired",
        Terminated = "subscription.terminated",
        PlanChanged = "subscription.plan_changed",
        PlanChangeScheduled = "subscription.plan_change_scheduled",
        PeriodShifted = "subscription.period_shifted",
        RenewalUpcoming = "subscription.renewal_upcoming",
        ExpiringSoon = "subscription.expiring_soon",
    }
}

/// A subscription: its state, its current paid period and everything its
/// schedule depends on. Stored one-to-one as a row; `db` converts.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant_id: TenantId,
    pub customer_id: CustomerId,
    pub plan_id: Uuid,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    /// Month and year periods keep this instant's day and time of day.
    pub anchor_at: Option<DateTime<Utc>>,
    /// What was paid for the current period's tariff (0 for free plans).
    pub paid_amount: Option<Decimal>,
    pub price_id: Option<Uuid>,
    pub next_charge_at: Option<DateTime<Utc>>,
    /// Access after a failed renewal lasts until then.
    pub grace_until: Option<DateTime<Utc>>,
    /// A downgrade that takes over at the next period.
    pub scheduled_plan_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The earliest instant anything is due (the scheduler's claim key).
    pub due_at: Option<DateTime<Utc>>,
    /// The renewal payment being collected, while a renewal is in flight.
    pub renewal_payment_id: Option<PaymentId>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub dunning_ends_at: Option<DateTime<Utc>>,
    /// A hard decline stopped the automatic retries.
    pub retries_stopped: bool,
    /// The end of the last paid extension queued after the current period.
    pub paid_through: Option<DateTime<Utc>>,
    pub canceled_at: Option<DateTime<Utc>>,
    /// The period end whose renewal notice went out.
    pub renewal_notice_for: Option<DateTime<Utc>>,
    /// The period end whose expiry notice went out.
    pub expiry_notice_for: Option<DateTime<Utc>>,
    /// A purchase waiting for a bank transfer waits until its invoice is due
    /// (else [`schedule::PENDING_PAYMENT_TTL`] after it was created).
    pub pending_until: Option<DateTime<Utc>>,
}

/// A plan as a transition needs it: which, its code for events, its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanRef<'a> {
    pub id: Uuid,
    pub code: &'a str,
    pub period: Period,
}

/// One entry of a subscription's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub from: Option<SubscriptionStatus>,
    pub to: SubscriptionStatus,
    pub cause: Cause,
    pub at: DateTime<Utc>,
    pub details: Option<Value>,
}

/// An event a transition asks to emit: its kind and what it adds to the
/// subscription's own data.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: EventKind,
    pub extra: Value,
}

/// What a transition did: the history entry to record and the events to emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub history: HistoryEntry,
    pub events: Vec<Event>,
}

/// A transition the subscription's state does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {status} subscription cannot {transition}")]
pub struct InvalidTransition {
    pub status: SubscriptionStatus,
    pub transition: &'static str,
}

impl Subscription {
    /// Moves to `to` and records why; the caller adds the events.
    fn enter(&mut self, to: SubscriptionStatus, cause: Cause, at: DateTime<Utc>, details: Option<Value>) -> Change {
        let from = Some(self.status);
        self.status = to;
        Change { history: HistoryEntry { from, to, cause, at, details }, events: Vec::new() }
    }

    fn invalid(&self, transition: &'static str) -> InvalidTransition {
        InvalidTransition { status: self.status, transition }
    }

    /// A subscription nothing was paid for (a trial, a free plan): a purchase
    /// replaces it when the purchase is paid (SPEC §4), it does not block it.
    pub fn replaceable(&self) -> bool {
        matches!(self.status, SubscriptionStatus::Trialing | SubscriptionStatus::Active | SubscriptionStatus::Canceled)
            && self.paid_amount.is_none_or(|a| a.is_zero())
            && self.renewal_payment_id.is_none()
    }

    /// May the customer use the product at `now`? ([`has_access`])
    pub fn has_access(&self, now: DateTime<Utc>) -> bool {
        self.standing().has_access(now)
    }

    /// The fields access and usage attribution read.
    pub fn standing(&self) -> Standing {
        Standing {
            id: self.id,
            plan_id: self.plan_id,
            status: self.status,
            auto_renew: self.auto_renew,
            current_period_start: self.current_period_start,
            current_period_end: self.current_period_end,
            grace_until: self.grace_until,
            paid_through: self.paid_through,
            created_at: self.created_at,
        }
    }
}

/// What access ([`has_access`]) and usage attribution (`services::usage::facts`)
/// read of a subscription, and all the entitlement read selects of it
/// (`db::subscriptions::live_with_counters`: nine columns, not the whole row).
#[derive(Debug, Clone, Copy)]
pub struct Standing {
    pub id: SubscriptionId,
    pub plan_id: Uuid,
    pub status: SubscriptionStatus,
    pub auto_renew: bool,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub grace_until: Option<DateTime<Utc>>,
    /// The end of the last paid extension queued after the current period.
    pub paid_through: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl Standing {
    /// What the access rule needs.
    pub fn access_facts(&self) -> AccessFacts {
        AccessFacts {
            status: self.status,
            auto_renew: self.auto_renew,
            period_end: self.current_period_end,
            grace_until: self.grace_until,
        }
    }

    /// May the customer use the product at `now`?
    pub fn has_access(&self, now: DateTime<Utc>) -> bool {
        has_access(self.access_facts(), now)
    }
}

impl Change {
    /// Adds an event.
    fn with(mut self, kind: EventKind, extra: Value) -> Change {
        self.events.push(Event { kind, extra });
        self
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
pub(crate) mod tests {
    use super::*;
    use chrono::TimeDelta;

    pub(crate) fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A monthly autopay subscription in `status`, paid from 2026-03-01 09:00 UTC
    /// to 2026-04-01 09:00 UTC.
    pub(crate) fn subscription(status: SubscriptionStatus) -> Subscription {
        let (start, end) = (t("2026-03-01T09:00:00Z"), t("2026-04-01T09:00:00Z"));
        Subscription {
            id: SubscriptionId::new(),
            tenant_id: TenantId(Uuid::nil()),
            customer_id: CustomerId(Uuid::nil()),
            plan_id: Uuid::now_v7(),
            status,
            auto_renew: true,
            current_period_start: Some(start),
            current_period_end: Some(end),
            anchor_at: Some(start),
            paid_amount: Some(Decimal::new(199000, 2)),
            price_id: None,
            next_charge_at: Some(end),
            grace_until: None,
            scheduled_plan_id: None,
            created_at: start - TimeDelta::minutes(5),
            due_at: None,
            renewal_payment_id: None,
            next_retry_at: None,
            dunning_ends_at: None,
            retries_stopped: false,
            paid_through: None,
            canceled_at: None,
            renewal_notice_for: None,
            expiry_notice_for: None,
            pending_until: None,
        }
    }

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
    fn statuses_causes_and_events_round_trip() {
        for &s in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(s.as_str()), Some(s));
        }
        for &c in Cause::ALL {
            assert_eq!(Cause::parse(c.as_str()), Some(c));
        }
        for &k in EventKind::ALL {
            assert!(k.as_str().starts_with("subscription."));
        }
    }

    #[test]
    fn only_unpaid_subscriptions_are_replaceable() {
        let mut trial = subscription(SubscriptionStatus::Trialing);
        trial.paid_amount = Some(Decimal::ZERO);
        assert!(trial.replaceable());
        assert!(!subscription(SubscriptionStatus::Active).replaceable(), "paid");
        trial.status = SubscriptionStatus::PastDue;
        assert!(!trial.replaceable());
    }
}
