//! Starting, activating, cancelling, resuming and ending a subscription (SPEC §4).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use super::{Cause, Change, EventKind, HistoryEntry, InvalidTransition, Subscription, SubscriptionStatus};
use crate::domain::ids::{CustomerId, PaymentId, SubscriptionId, TenantId};
use crate::domain::money::{Money, MoneyView};

/// How a new subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// 100% prepaid: waits in `pending_payment` for its payment.
    Paid,
    /// Without payment until `ends_at`: a trial of a paid plan (`trialing`), or a
    /// free plan (`active`, renewing for free, when `renews`).
    Free { ends_at: DateTime<Utc>, renews: bool, price_id: Option<Uuid> },
}

/// The paid period a confirmed payment opens.
#[derive(Debug, Clone, Copy)]
pub struct Paid {
    pub payment_id: PaymentId,
    /// The payment's amount (for the event).
    pub amount: Money,
    /// What it paid for the tariff (the period's `paid_amount`).
    pub tariff: Decimal,
    pub price_id: Option<Uuid>,
    pub period_end: DateTime<Utc>,
}

impl Subscription {
    /// A new subscription of `plan_id` for `customer_id`, bought at `at`: the
    /// history's first entry, and `subscription.activated` when it starts without
    /// payment. `plan_code` goes into the history's details.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: SubscriptionId,
        tenant_id: TenantId,
        customer_id: CustomerId,
        plan_id: Uuid,
        plan_code: &str,
        auto_renew: bool,
        start: Start,
        at: DateTime<Utc>,
    ) -> (Subscription, Change) {
        let mut sub = Subscription {
            id,
            tenant_id,
            customer_id,
            plan_id,
            status: SubscriptionStatus::PendingPayment,
            auto_renew,
            current_period_start: None,
            current_period_end: None,
            anchor_at: None,
            paid_amount: None,
            price_id: None,
            next_charge_at: None,
            grace_until: None,
            scheduled_plan_id: None,
            created_at: at,
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
        };
        let mut events = Vec::new();
        let cause = match start {
            Start::Paid => Cause::Purchase,
            Start::Free { ends_at, renews, price_id } => {
                sub.status = if renews { SubscriptionStatus::Active } else { SubscriptionStatus::Trialing };
                sub.auto_renew = renews;
                sub.current_period_start = Some(at);
                sub.current_period_end = Some(ends_at);
                sub.anchor_at = Some(at);
                sub.paid_amount = Some(Decimal::ZERO);
                sub.price_id = price_id;
                sub.next_charge_at = renews.then_some(ends_at);
                let trial = !renews;
                let extra = json!({"trial": trial, "trial_ends_at": trial.then_some(ends_at)});
                events.push(super::Event { kind: EventKind::Activated, extra });
                Cause::TrialStarted
            }
        };
        let history = HistoryEntry { from: None, to: sub.status, cause, at, details: Some(json!({"plan": plan_code})) };
        (sub, Change { history, events })
    }

    /// The first payment is confirmed: the first period starts now (SPEC §4). From
    /// `pending_payment`, or from an expired purchase that never started (a late
    /// payment).
    pub fn activate(&mut self, at: DateTime<Utc>, paid: Paid) -> Result<Change, InvalidTransition> {
        let revivable = self.status == SubscriptionStatus::Expired && self.current_period_start.is_none();
        if self.status != SubscriptionStatus::PendingPayment && !revivable {
            return Err(self.invalid("be activated"));
        }
        self.current_period_start = Some(at);
        self.current_period_end = Some(paid.period_end);
        self.anchor_at = Some(at);
        self.paid_amount = Some(paid.tariff);
        self.price_id = paid.price_id;
        self.next_charge_at = self.auto_renew.then_some(paid.period_end);
        self.grace_until = None;
        let details = json!({"payment_id": paid.payment_id});
        let extra = json!({"payment_id": paid.payment_id, "amount": MoneyView::from(paid.amount)});
        Ok(self
            .enter(SubscriptionStatus::Active, Cause::PaymentSucceeded, at, Some(details))
            .with(EventKind::Activated, extra))
    }

    /// Cancel (Orbita 18.1, SMM-GPT 3.6): no later charges; access to the end of
    /// the paid period. In dunning or before the first payment nothing is paid
    /// for, so it ends at once. `None`: already canceled.
    pub fn cancel(&mut self, at: DateTime<Utc>) -> Result<Option<Change>, InvalidTransition> {
        match self.status {
            SubscriptionStatus::Canceled => Ok(None),
            SubscriptionStatus::Active | SubscriptionStatus::Trialing => {
                self.auto_renew = false;
                self.canceled_at = Some(at);
                if self.renewal_payment_id.is_none() {
                    self.next_charge_at = None;
                }
                let extra = json!({"access_until": self.paid_through.or(self.current_period_end)});
                Ok(Some(
                    self.enter(SubscriptionStatus::Canceled, Cause::Canceled, at, None)
                        .with(EventKind::Canceled, extra),
                ))
            }
            SubscriptionStatus::PastDue | SubscriptionStatus::Suspended | SubscriptionStatus::PendingPayment => {
                self.auto_renew = false;
                self.canceled_at = Some(at);
                // The cancel event shows the subscription as it was canceled, before it ended.
                let canceled =
                    json!({"access_until": at, "status": self.status, "next_charge_at": self.next_charge_at});
                let mut change =
                    self.end(at, SubscriptionStatus::Expired, Cause::Canceled, json!({"cause": "canceled"}))?;
                change.events.insert(0, super::Event { kind: EventKind::Canceled, extra: canceled });
                Ok(Some(change))
            }
            SubscriptionStatus::Expired | SubscriptionStatus::Terminated => Err(self.invalid("be canceled")),
        }
    }

    /// Resume: auto-renew back on, before the paid period ends. `plan_auto_renews`:
    /// whether the plan renews by itself (manual plans stay manual).
    pub fn resume(&mut self, at: DateTime<Utc>, plan_auto_renews: bool) -> Result<Change, InvalidTransition> {
        if self.status != SubscriptionStatus::Canceled {
            return Err(self.invalid("be resumed"));
        }
        let end = self.current_period_end.unwrap_or(at);
        if end <= at {
            return Err(self.invalid("be resumed after its period ended"));
        }
        self.auto_renew = plan_auto_renews;
        self.canceled_at = None;
        self.next_charge_at = plan_auto_renews.then(|| self.paid_through.unwrap_or(end));
        Ok(self.enter(SubscriptionStatus::Active, Cause::Resumed, at, None).with(EventKind::Resumed, json!({})))
    }

    /// Ends the subscription as `expired` with `cause` (`subscription.expired`).
    pub fn expire(&mut self, at: DateTime<Utc>, cause: Cause) -> Result<Change, InvalidTransition> {
        self.end(at, SubscriptionStatus::Expired, cause, json!({"cause": cause.as_str()}))
    }

    /// Ends the subscription as `expired` or `terminated` (the provider ended it
    /// early): nothing stays scheduled; the event carries `extra`.
    pub fn end(
        &mut self,
        at: DateTime<Utc>,
        to: SubscriptionStatus,
        cause: Cause,
        extra: serde_json::Value,
    ) -> Result<Change, InvalidTransition> {
        if !self.status.is_live() || !matches!(to, SubscriptionStatus::Expired | SubscriptionStatus::Terminated) {
            return Err(self.invalid("end"));
        }
        self.next_charge_at = None;
        self.next_retry_at = None;
        self.dunning_ends_at = None;
        self.grace_until = None;
        self.due_at = None;
        let kind = if to == SubscriptionStatus::Terminated { EventKind::Terminated } else { EventKind::Expired };
        Ok(self.enter(to, cause, at, None).with(kind, extra))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::subscription::tests::{subscription, t};

    fn paid(end: &str) -> Paid {
        Paid {
            payment_id: PaymentId(Uuid::nil()),
            amount: Money::rub(Decimal::new(199000, 2)).unwrap(),
            tariff: Decimal::new(199000, 2),
            price_id: None,
            period_end: t(end),
        }
    }

    #[test]
    fn a_purchase_waits_for_its_payment_and_a_trial_starts_at_once() {
        let at = t("2026-03-01T09:00:00Z");
        let (sub, change) = Subscription::start(
            SubscriptionId(Uuid::nil()),
            TenantId(Uuid::nil()),
            CustomerId(Uuid::nil()),
            Uuid::nil(),
            "START",
            true,
            Start::Paid,
            at,
        );
        assert_eq!(
            (sub.status, change.history.cause, change.history.from),
            (SubscriptionStatus::PendingPayment, Cause::Purchase, None)
        );
        assert!(change.events.is_empty());
        let trial = Start::Free { ends_at: t("2026-03-08T09:00:00Z"), renews: false, price_id: None };
        let (sub, change) = Subscription::start(
            SubscriptionId(Uuid::nil()),
            TenantId(Uuid::nil()),
            CustomerId(Uuid::nil()),
            Uuid::nil(),
            "DEMO",
            false,
            trial,
            at,
        );
        assert_eq!(sub.status, SubscriptionStatus::Trialing);
        assert_eq!(sub.current_period_end, Some(t("2026-03-08T09:00:00Z")));
        assert_eq!(change.events[0].kind, EventKind::Activated);
        assert_eq!(change.events[0].extra["trial"], true);
    }

    #[test]
    fn activation_starts_the_period_at_the_payment() {
        let mut sub = subscription(SubscriptionStatus::PendingPayment);
        let change = sub.activate(t("2026-03-01T09:00:00Z"), paid("2026-04-01T09:00:00Z")).unwrap();
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert_eq!(
            (sub.current_period_start, sub.anchor_at),
            (Some(t("2026-03-01T09:00:00Z")), Some(t("2026-03-01T09:00:00Z")))
        );
        assert_eq!(sub.next_charge_at, Some(t("2026-04-01T09:00:00Z")));
        assert_eq!(change.history.cause, Cause::PaymentSucceeded);
        assert_eq!(change.events[0].extra["amount"]["value"], "1990.00");
        let mut active = subscription(SubscriptionStatus::Active);
        assert!(active.activate(t("2026-03-01T09:00:00Z"), paid("2026-04-01T09:00:00Z")).is_err());
    }

    #[test]
    fn cancel_keeps_access_to_the_period_end_but_ends_dunning_at_once() {
        let at = t("2026-03-10T09:00:00Z");
        let mut sub = subscription(SubscriptionStatus::Active);
        let change = sub.cancel(at).unwrap().unwrap();
        assert_eq!((sub.status, sub.auto_renew, sub.next_charge_at), (SubscriptionStatus::Canceled, false, None));
        assert_eq!(change.events[0].extra["access_until"], "2026-04-01T09:00:00Z");
        assert_eq!(sub.cancel(at).unwrap(), None, "cancelling twice changes nothing");
        let mut dunning = subscription(SubscriptionStatus::PastDue);
        let change = dunning.cancel(at).unwrap().unwrap();
        assert_eq!(dunning.status, SubscriptionStatus::Expired);
        let kinds: Vec<_> = change.events.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec![EventKind::Canceled, EventKind::Expired]);
        assert!(subscription(SubscriptionStatus::Expired).cancel(at).is_err());
    }

    #[test]
    fn resume_needs_a_canceled_subscription_with_time_left() {
        let mut sub = subscription(SubscriptionStatus::Canceled);
        sub.auto_renew = false;
        let change = sub.resume(t("2026-03-10T09:00:00Z"), true).unwrap();
        assert_eq!((sub.status, sub.next_charge_at), (SubscriptionStatus::Active, Some(t("2026-04-01T09:00:00Z"))));
        assert_eq!(change.history.cause, Cause::Resumed);
        let mut late = subscription(SubscriptionStatus::Canceled);
        assert!(late.resume(t("2026-04-02T09:00:00Z"), true).is_err());
        assert!(subscription(SubscriptionStatus::Active).resume(t("2026-03-10T09:00:00Z"), true).is_err());
    }

    #[test]
    fn ending_clears_the_schedule_and_only_happens_once() {
        let mut sub = subscription(SubscriptionStatus::Suspended);
        sub.next_retry_at = Some(t("2026-04-02T09:00:00Z"));
        let change = sub.expire(t("2026-04-06T09:00:00Z"), Cause::DunningExhausted).unwrap();
        assert_eq!((sub.status, sub.next_retry_at, sub.due_at), (SubscriptionStatus::Expired, None, None));
        assert_eq!(change.events[0].extra["cause"], "dunning_exhausted");
        assert!(sub.expire(t("2026-04-07T09:00:00Z"), Cause::PeriodEnded).is_err());
        let mut live = subscription(SubscriptionStatus::Active);
        let change = live
            .end(t("2026-03-10T09:00:00Z"), SubscriptionStatus::Terminated, Cause::TerminatedByProvider, json!({}))
            .unwrap();
        assert_eq!(change.events[0].kind, EventKind::Terminated);
        assert!(live.end(t("2026-03-10T09:00:00Z"), SubscriptionStatus::Active, Cause::Canceled, json!({})).is_err());
    }
}
