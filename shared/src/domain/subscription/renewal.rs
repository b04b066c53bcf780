//! Renewals and dunning (SPEC §4): a paid renewal (scheduled, retried or paid by
//! hand) starts the next period — from the old period end while access lasted
//! (anchor kept), from the payment after a suspension (new anchor); a free plan
//! renews for nothing; a paid extension of a manual plan queues a period and
//! later takes over; a declined renewal goes through the tenant's dunning.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::json;
use uuid::Uuid;

use super::{Cause, Change, EventKind, InvalidTransition, PlanRef, Subscription, SubscriptionStatus};
use crate::domain::dunning::Schedule;
use crate::domain::ids::PaymentId;
use crate::domain::money::{Money, MoneyView};
use crate::domain::period::period_end;
use crate::domain::tenant::AfterLastRetry;

/// A captured renewal payment.
#[derive(Debug, Clone, Copy)]
pub struct RenewalPaid<'a> {
    pub payment_id: PaymentId,
    /// The payment's amount (tariff and any overage lines), for the event.
    pub amount: Money,
    /// What it paid for the tariff: the next period's `paid_amount`.
    pub tariff: Decimal,
    pub price_id: Option<Uuid>,
    /// The plan the renewal paid for (a scheduled downgrade's, or the current one).
    pub plan: PlanRef<'a>,
    /// The current plan's code (for `subscription.plan_changed`).
    pub current_plan_code: &'a str,
}

/// A paid extension queued after the current period, as it takes over.
#[derive(Debug, Clone, Copy)]
pub struct QueuedExtension<'a> {
    pub payment_id: PaymentId,
    /// The end its payment recorded; `None`: one period of the plan from the
    /// current end.
    pub period_end: Option<DateTime<Utc>>,
    pub tariff: Decimal,
    pub price_id: Option<Uuid>,
    /// The plan it paid for, when it is not the current one (a downgrade).
    pub plan: Option<PlanRef<'a>>,
}

/// A declined renewal attempt, as dunning sees it.
#[derive(Debug, Clone)]
pub struct Declined<'a> {
    pub payment_id: PaymentId,
    pub failure_code: Option<&'a str>,
    pub failure_reason: Option<&'a str>,
    /// A hard decline: no more automatic attempts.
    pub hard: bool,
}

impl Subscription {
    /// The period a renewal paid at `at` opens: `None` when the payment is not
    /// this subscription's outstanding renewal or nothing can be renewed.
    fn renewal_start(
        &self,
        at: DateTime<Utc>,
        payment_id: PaymentId,
        other_live: bool,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        if self.renewal_payment_id != Some(payment_id) {
            return None;
        }
        match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::PastDue | SubscriptionStatus::Canceled => {
                let start = self.current_period_end.unwrap_or(at);
                Some((start, self.anchor_at.unwrap_or(start)))
            }
            SubscriptionStatus::Suspended => Some((at, at)),
            SubscriptionStatus::Expired if !other_live => Some((at, at)),
            _ => None,
        }
    }

    /// The outstanding renewal was paid at `at`: the next period starts (see
    /// [`Subscription::renewal_start`]) on the plan the renewal paid for.
    /// `other_live`: the customer has another live subscription (an expired one
    /// is then not revived).
    pub fn renew(
        &mut self,
        at: DateTime<Utc>,
        paid: RenewalPaid<'_>,
        tz: Tz,
        other_live: bool,
    ) -> Result<Change, InvalidTransition> {
        let (start, anchor) = self
            .renewal_start(at, paid.payment_id, other_live)
            .ok_or_else(|| self.invalid("be renewed by this payment"))?;
        let switched = paid.plan.id != self.plan_id;
        self.plan_id = paid.plan.id;
        if self.scheduled_plan_id == Some(self.plan_id) {
            self.scheduled_plan_id = None;
        }
        let end = period_end(start, anchor, paid.plan.period, tz);
        self.current_period_start = Some(start);
        self.current_period_end = Some(end);
        self.anchor_at = Some(anchor);
        self.paid_amount = Some(paid.tariff);
        self.price_id = paid.price_id;
        self.next_charge_at = self.auto_renew.then_some(end);
        self.renewal_payment_id = None;
        self.next_retry_at = None;
        self.dunning_ends_at = None;
        self.retries_stopped = false;
        self.grace_until = None;
        let (to, cause, event) = match self.status {
            SubscriptionStatus::Active => (SubscriptionStatus::Active, Cause::Renewed, EventKind::Renewed),
            SubscriptionStatus::Canceled => (SubscriptionStatus::Canceled, Cause::Renewed, EventKind::Renewed),
            _ => (SubscriptionStatus::Active, Cause::PaymentSucceeded, EventKind::Reactivated),
        };
        let extra = json!({"payment_id": paid.payment_id, "amount": MoneyView::from(paid.amount)});
        let mut change = self.enter(to, cause, at, Some(json!({"payment_id": paid.payment_id}))).with(event, extra);
        if switched {
            let extra = json!({"from_plan": paid.current_plan_code, "to_plan": paid.plan.code,
                "effective": "next_period", "payment_id": paid.payment_id});
            change = change.with(EventKind::PlanChanged, extra);
        }
        Ok(change)
    }

    /// A free plan (price 0) renews for nothing at the period end, on `plan`
    /// (a scheduled downgrade's, or the current one) at `price`.
    pub fn renew_free(
        &mut self,
        at: DateTime<Utc>,
        plan: PlanRef<'_>,
        current_plan_code: &str,
        price_id: Uuid,
        price: Money,
        tz: Tz,
    ) -> Result<Change, InvalidTransition> {
        let (Some(end), Some(anchor)) = (self.current_period_end, self.anchor_at) else {
            return Err(self.invalid("renew without a period"));
        };
        if !matches!(self.status, SubscriptionStatus::Active | SubscriptionStatus::Trialing) {
            return Err(self.invalid("renew for free"));
        }
        let next_end = period_end(end, anchor, plan.period, tz);
        let switched = plan.id != self.plan_id;
        self.plan_id = plan.id;
        self.price_id = Some(price_id);
        self.paid_amount = Some(price.amount());
        self.scheduled_plan_id = None;
        self.current_period_start = Some(end);
        self.current_period_end = Some(next_end);
        self.next_charge_at = Some(next_end);
        let extra = json!({"payment_id": null, "amount": MoneyView::from(price)});
        let mut change = self.enter(self.status, Cause::RenewedFree, at, None).with(EventKind::Renewed, extra);
        if switched {
            let extra = json!({"from_plan": current_plan_code, "to_plan": plan.code, "effective": "next_period"});
            change = change.with(EventKind::PlanChanged, extra);
        }
        Ok(change)
    }

    /// A paid extension (WhatsMonster 7.8, 7.14) queues the period `start..end`
    /// after the current one (and any queued before it).
    pub fn record_extension(
        &mut self,
        at: DateTime<Utc>,
        payment_id: PaymentId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Change, InvalidTransition> {
        if !matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::Canceled | SubscriptionStatus::Trialing
        ) || self.current_period_end.is_none()
        {
            return Err(self.invalid("be extended"));
        }
        self.paid_through = Some(end);
        if self.auto_renew {
            self.next_charge_at = Some(end);
        }
        let details = json!({"payment_id": payment_id, "period_start": start, "period_end": end});
        Ok(self.enter(self.status, Cause::ExtensionPaid, at, Some(details)))
    }

    /// Where a paid extension of the current period would start and end.
    pub fn extension_period(
        &self,
        period: crate::domain::period::Period,
        tz: Tz,
    ) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let current_end = self.current_period_end?;
        let start = self.paid_through.map_or(current_end, |p| p.max(current_end));
        Some((start, period_end(start, self.anchor_at.unwrap_or(start), period, tz)))
    }

    /// The current period ended with a paid extension queued (or extra paid time
    /// without one): the next period starts; `default` is the plan the period
    /// follows when no extension names another.
    pub fn roll_extension(
        &mut self,
        at: DateTime<Utc>,
        extension: Option<QueuedExtension<'_>>,
        default: PlanRef<'_>,
        tz: Tz,
    ) -> Result<Change, InvalidTransition> {
        let (Some(end), Some(anchor)) = (self.current_period_end, self.anchor_at) else {
            return Err(self.invalid("roll an extension without a period"));
        };
        let next_end =
            extension.and_then(|e| e.period_end).unwrap_or_else(|| period_end(end, anchor, default.period, tz));
        self.current_period_start = Some(end);
        self.current_period_end = Some(next_end);
        let mut switched = None;
        if let Some(e) = extension {
            self.paid_amount = Some(e.tariff);
            self.price_id = e.price_id;
            if let Some(plan) = e.plan.filter(|p| p.id != self.plan_id) {
                self.plan_id = plan.id;
                if self.scheduled_plan_id == Some(plan.id) {
                    self.scheduled_plan_id = None;
                }
                switched = Some(plan.code);
            }
        }
        if self.paid_through.is_some_and(|p| p <= next_end) {
            self.paid_through = None;
        }
        if self.auto_renew {
            self.next_charge_at = Some(self.paid_through.unwrap_or(next_end));
        }
        let payment_id = extension.map(|e| e.payment_id);
        let details = json!({"payment_id": payment_id});
        let extra = json!({"payment_id": payment_id, "extension": true});
        let mut change =
            self.enter(self.status, Cause::ExtensionStarted, at, Some(details)).with(EventKind::Renewed, extra);
        if let Some(to) = switched {
            let extra =
                json!({"from_plan": default.code, "to_plan": to, "effective": "next_period", "payment_id": payment_id});
            change = change.with(EventKind::PlanChanged, extra);
        }
        Ok(change)
    }

    /// The outstanding renewal's scheduled attempt was declined: `past_due` (from
    /// `active`) with the dunning `schedule` (grace, next retry, when it ends); a
    /// hard decline stops the automatic retries for good. In any other status
    /// (already in dunning, or canceled with the renewal in flight) only the
    /// schedule moves.
    pub fn decline(
        &mut self,
        at: DateTime<Utc>,
        declined: &Declined<'_>,
        schedule: Schedule,
    ) -> Result<Change, InvalidTransition> {
        if self.renewal_payment_id != Some(declined.payment_id) {
            return Err(self.invalid("dun a payment that is not its renewal"));
        }
        self.retries_stopped |= declined.hard;
        self.grace_until = Some(schedule.grace_until);
        self.next_retry_at = schedule.next_retry_at;
        self.dunning_ends_at = Some(schedule.ends_at);
        let details = json!({"payment_id": declined.payment_id, "failure_code": declined.failure_code});
        match self.status {
            SubscriptionStatus::Active => {
                let extra = json!({"payment_id": declined.payment_id, "failure_code": declined.failure_code,
                    "failure_reason": declined.failure_reason, "grace_until": schedule.grace_until,
                    "next_retry_at": schedule.next_retry_at});
                Ok(self
                    .enter(SubscriptionStatus::PastDue, Cause::RenewalDeclined, at, Some(details))
                    .with(EventKind::PastDue, extra))
            }
            // Already in dunning; or canceled (or ended) with its renewal still in
            // flight: the decline moves only the dunning schedule.
            _ => Ok(self.enter(self.status, Cause::RetryDeclined, at, Some(details))),
        }
    }

    /// The grace period ended without payment: access is suspended.
    pub fn suspend(&mut self, at: DateTime<Utc>) -> Result<Change, InvalidTransition> {
        if self.status != SubscriptionStatus::PastDue {
            return Err(self.invalid("be suspended"));
        }
        let extra = json!({"renewal_payment_id": self.renewal_payment_id});
        Ok(self.enter(SubscriptionStatus::Suspended, Cause::GraceEnded, at, None).with(EventKind::Suspended, extra))
    }

    /// Dunning ended without payment: the policy's `after_last_retry` — expire,
    /// or stay suspended until the customer pays (Orbita 7.3). `None`: already
    /// suspended, nothing but the window changed.
    pub fn give_up(&mut self, at: DateTime<Utc>, after: AfterLastRetry) -> Result<Option<Change>, InvalidTransition> {
        if !matches!(self.status, SubscriptionStatus::PastDue | SubscriptionStatus::Suspended) {
            return Err(self.invalid("end dunning"));
        }
        match after {
            AfterLastRetry::Expire => self.expire(at, Cause::DunningExhausted).map(Some),
            AfterLastRetry::StaySuspended => {
                self.dunning_ends_at = None;
                if self.status != SubscriptionStatus::PastDue {
                    return Ok(None);
                }
                let extra = json!({"renewal_payment_id": self.renewal_payment_id});
                let change = self.enter(SubscriptionStatus::Suspended, Cause::DunningExhausted, at, None);
                Ok(Some(change.with(EventKind::Suspended, extra)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::{Period, PeriodUnit};
    use crate::domain::subscription::tests::{subscription, t};

    const MONTH: Period = Period { unit: PeriodUnit::Month, count: 1 };
    const TZ: Tz = chrono_tz::Europe::Moscow;

    fn paid(sub: &Subscription, plan: Uuid) -> RenewalPaid<'static> {
        RenewalPaid {
            payment_id: sub.renewal_payment_id.unwrap(),
            amount: Money::rub(Decimal::new(199000, 2)).unwrap(),
            tariff: Decimal::new(199000, 2),
            price_id: None,
            plan: PlanRef { id: plan, code: "START", period: MONTH },
            current_plan_code: "START",
        }
    }

    fn in_renewal(status: SubscriptionStatus) -> Subscription {
        let mut sub = subscription(status);
        sub.renewal_payment_id = Some(PaymentId::new());
        sub
    }

    #[test]
    fn a_renewal_while_access_lasted_keeps_the_anchor() {
        let mut sub = in_renewal(SubscriptionStatus::Active);
        let p = paid(&sub, sub.plan_id);
        let change = sub.renew(t("2026-04-01T09:00:05Z"), p, TZ, false).unwrap();
        assert_eq!(sub.current_period_start, Some(t("2026-04-01T09:00:00Z")));
        assert_eq!(sub.current_period_end, Some(t("2026-05-01T09:00:00Z")));
        assert_eq!((sub.renewal_payment_id, change.history.cause), (None, Cause::Renewed));
        assert_eq!(change.events.len(), 1);
        assert_eq!(change.events[0].kind, EventKind::Renewed);
    }

    #[test]
    fn a_renewal_after_a_suspension_starts_at_the_payment_with_a_new_anchor() {
        let mut sub = in_renewal(SubscriptionStatus::Suspended);
        let p = paid(&sub, sub.plan_id);
        let change = sub.renew(t("2026-04-03T15:00:00Z"), p, TZ, false).unwrap();
        assert_eq!((sub.status, change.history.cause), (SubscriptionStatus::Active, Cause::PaymentSucceeded));
        assert_eq!(sub.current_period_start, Some(t("2026-04-03T15:00:00Z")));
        assert_eq!(sub.anchor_at, Some(t("2026-04-03T15:00:00Z")));
        assert_eq!(change.events[0].kind, EventKind::Reactivated);
        let mut expired = in_renewal(SubscriptionStatus::Expired);
        let p = paid(&expired, expired.plan_id);
        assert!(expired.renew(t("2026-04-03T15:00:00Z"), p, TZ, true).is_err(), "not while another is live");
    }

    #[test]
    fn only_the_outstanding_renewal_renews_and_a_downgrade_takes_over_with_it() {
        let mut sub = subscription(SubscriptionStatus::Active);
        let stray =
            RenewalPaid { payment_id: PaymentId::new(), ..paid(&in_renewal(SubscriptionStatus::Active), sub.plan_id) };
        assert!(sub.renew(t("2026-04-01T09:00:00Z"), stray, TZ, false).is_err());
        let mut sub = in_renewal(SubscriptionStatus::Active);
        let lite = Uuid::now_v7();
        sub.scheduled_plan_id = Some(lite);
        let mut p = paid(&sub, lite);
        p.plan.code = "LITE";
        let change = sub.renew(t("2026-04-01T09:00:00Z"), p, TZ, false).unwrap();
        assert_eq!((sub.plan_id, sub.scheduled_plan_id), (lite, None));
        assert_eq!(change.events[1].kind, EventKind::PlanChanged);
        assert_eq!(
            (change.events[1].extra["from_plan"].as_str(), change.events[1].extra["to_plan"].as_str()),
            (Some("START"), Some("LITE"))
        );
    }

    #[test]
    fn dunning_moves_past_due_then_suspends_and_gives_up_by_policy() {
        let mut sub = in_renewal(SubscriptionStatus::Active);
        let declined = Declined {
            payment_id: sub.renewal_payment_id.unwrap(),
            failure_code: Some("5051"),
            failure_reason: None,
            hard: false,
        };
        let schedule = Schedule {
            grace_until: t("2026-04-01T09:00:00Z"),
            next_retry_at: Some(t("2026-04-02T09:00:00Z")),
            ends_at: t("2026-04-06T09:00:00Z"),
        };
        let change = sub.decline(t("2026-04-01T09:00:00Z"), &declined, schedule).unwrap();
        assert_eq!((sub.status, change.history.cause), (SubscriptionStatus::PastDue, Cause::RenewalDeclined));
        assert_eq!(change.events[0].kind, EventKind::PastDue);
        let again =
            sub.decline(t("2026-04-02T09:00:00Z"), &Declined { hard: true, ..declined.clone() }, schedule).unwrap();
        assert_eq!((again.history.cause, again.events.len(), sub.retries_stopped), (Cause::RetryDeclined, 0, true));
        sub.suspend(t("2026-04-02T09:00:00Z")).unwrap();
        assert!(sub.suspend(t("2026-04-02T09:00:00Z")).is_err(), "suspended once");
        assert_eq!(sub.give_up(t("2026-04-06T09:00:00Z"), AfterLastRetry::StaySuspended).unwrap(), None);
        assert_eq!(sub.status, SubscriptionStatus::Suspended);
        let change = sub.give_up(t("2026-04-06T09:00:00Z"), AfterLastRetry::Expire).unwrap().unwrap();
        assert_eq!((sub.status, change.history.cause), (SubscriptionStatus::Expired, Cause::DunningExhausted));
        assert!(
            subscription(SubscriptionStatus::Active)
                .give_up(t("2026-04-06T09:00:00Z"), AfterLastRetry::Expire)
                .is_err()
        );
        // Canceled with its renewal in flight: the decline moves only the schedule.
        let mut canceled = in_renewal(SubscriptionStatus::Canceled);
        let declined = Declined { payment_id: canceled.renewal_payment_id.unwrap(), ..declined };
        let change = canceled.decline(t("2026-04-01T09:00:00Z"), &declined, schedule).unwrap();
        assert_eq!((canceled.status, change.events.len()), (SubscriptionStatus::Canceled, 0));
        assert_eq!(canceled.next_retry_at, Some(t("2026-04-02T09:00:00Z")));
        // Not its renewal: refused.
        let other = Declined { payment_id: crate::domain::ids::PaymentId::new(), ..declined };
        assert!(canceled.decline(t("2026-04-01T09:00:00Z"), &other, schedule).is_err());
    }

    #[test]
    fn an_extension_queues_a_period_that_takes_over_at_the_end() {
        let mut sub = subscription(SubscriptionStatus::Active);
        sub.auto_renew = false;
        let (start, end) = sub.extension_period(MONTH, TZ).unwrap();
        assert_eq!((start, end), (t("2026-04-01T09:00:00Z"), t("2026-05-01T09:00:00Z")));
        let payment_id = PaymentId::new();
        let change = sub.record_extension(t("2026-03-20T09:00:00Z"), payment_id, start, end).unwrap();
        assert_eq!((sub.paid_through, change.history.cause), (Some(end), Cause::ExtensionPaid));
        let ext = QueuedExtension {
            payment_id,
            period_end: Some(end),
            tariff: Decimal::new(139000, 2),
            price_id: None,
            plan: None,
        };
        let plan = PlanRef { id: sub.plan_id, code: "PRO", period: MONTH };
        let change = sub.roll_extension(t("2026-04-01T09:00:00Z"), Some(ext), plan, TZ).unwrap();
        assert_eq!(
            (sub.current_period_start, sub.current_period_end, sub.paid_through),
            (Some(start), Some(end), None)
        );
        assert_eq!(change.events[0].extra["extension"], true);
        assert!(subscription(SubscriptionStatus::Suspended).record_extension(start, payment_id, start, end).is_err());
    }

    #[test]
    fn a_free_plan_renews_for_nothing() {
        let mut sub = subscription(SubscriptionStatus::Active);
        let plan = PlanRef { id: sub.plan_id, code: "FREE", period: MONTH };
        let change = sub
            .renew_free(
                t("2026-04-01T09:00:00Z"),
                plan,
                "FREE",
                Uuid::nil(),
                Money::zero(crate::domain::money::Currency::Rub),
                TZ,
            )
            .unwrap();
        assert_eq!(sub.current_period_end, Some(t("2026-05-01T09:00:00Z")));
        assert_eq!(
            (change.history.cause, change.events[0].extra["amount"]["value"].as_str()),
            (Cause::RenewedFree, Some("0.00"))
        );
        assert!(
            subscription(SubscriptionStatus::Suspended)
                .renew_free(
                    t("2026-04-01T09:00:00Z"),
                    plan,
                    "FREE",
                    Uuid::nil(),
                    Money::zero(crate::domain::money::Currency::Rub),
                    TZ
                )
                .is_err()
        );
    }
}
