//! Changes within a running subscription (SPEC §4): an applied plan change, a
//! downgrade scheduled for the next period (or cancelled), a maintenance shift
//! of the period, and the bookkeeping of renewals in flight and notices sent.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Cause, Change, EventKind, InvalidTransition, PlanRef, Subscription, SubscriptionStatus};
use crate::domain::ids::PaymentId;
use crate::domain::period::{period_end, shift_days};

/// An upgrade (or a change below the minimum charge) applied now.
#[derive(Debug, Clone)]
pub struct PlanSwitch<'a> {
    pub from: PlanRef<'a>,
    pub to: PlanRef<'a>,
    /// The new plan renews by itself.
    pub to_auto_renews: bool,
    pub price_id: Uuid,
    /// The new tariff's price: the period's `paid_amount` from now on.
    pub paid_amount: Decimal,
    /// A new full period starts now (`restart_with_credit`).
    pub restarts: bool,
    pub payment_id: Option<PaymentId>,
    /// The quote's figures for the event (`amount_due`, `credit`, `charge`, ...).
    pub quote: Value,
}

impl Subscription {
    /// Switches to a new plan now (an upgrade once paid). A restart begins a new
    /// period at `at` (new anchor); a scheduled downgrade is superseded, and the
    /// history says so.
    pub fn change_plan(
        &mut self,
        at: DateTime<Utc>,
        switch: &PlanSwitch<'_>,
        tz: Tz,
    ) -> Result<Change, InvalidTransition> {
        if !matches!(self.status, SubscriptionStatus::Active | SubscriptionStatus::Canceled) {
            return Err(self.invalid("change plans"));
        }
        if switch.restarts {
            let end = period_end(at, at, switch.to.period, tz);
            self.current_period_start = Some(at);
            self.current_period_end = Some(end);
            self.anchor_at = Some(at);
            if self.status == SubscriptionStatus::Active {
                self.auto_renew = switch.to_auto_renews;
            }
            self.next_charge_at = self.auto_renew.then_some(end);
        }
        let superseded = self.scheduled_plan_id.take();
        self.plan_id = switch.to.id;
        self.price_id = Some(switch.price_id);
        self.paid_amount = Some(switch.paid_amount);
        let details = json!({"from_plan": switch.from.code, "to_plan": switch.to.code, "payment_id": switch.payment_id,
            "superseded_scheduled_plan_id": superseded});
        let mut extra = json!({"from_plan": switch.from.code, "to_plan": switch.to.code, "effective": "now",
            "restarts": switch.restarts, "payment_id": switch.payment_id});
        if let (Some(e), Value::Object(q)) = (extra.as_object_mut(), switch.quote.clone()) {
            e.extend(q);
        }
        Ok(self.enter(self.status, Cause::PlanChanged, at, Some(details)).with(EventKind::PlanChanged, extra))
    }

    /// Schedules `plan` (a downgrade) to take over at `effective_at`, or cancels
    /// the scheduled change (`None`).
    pub fn schedule_plan(
        &mut self,
        at: DateTime<Utc>,
        plan: Option<PlanRef<'_>>,
        effective_at: DateTime<Utc>,
    ) -> Result<Change, InvalidTransition> {
        if !matches!(self.status, SubscriptionStatus::Active | SubscriptionStatus::Canceled) {
            return Err(self.invalid("schedule a plan change"));
        }
        let previous = self.scheduled_plan_id;
        self.scheduled_plan_id = plan.map(|p| p.id);
        let cause = if plan.is_some() { Cause::PlanChangeScheduled } else { Cause::PlanChangeCanceled };
        let details = json!({"scheduled_plan": plan.map(|p| p.code), "previous_scheduled_plan_id": previous,
            "effective_at": effective_at});
        let extra = json!({"scheduled_plan": plan.map(|p| p.code), "effective_at": effective_at});
        Ok(self.enter(self.status, cause, at, Some(details)).with(EventKind::PlanChangeScheduled, extra))
    }

    /// Maintenance (SellerGPT 3.2.10): the period end, anchor, next charge and any
    /// queued extension move by `days` local days.
    pub fn shift_period(
        &mut self,
        at: DateTime<Utc>,
        days: u32,
        tz: Tz,
        maintenance_id: Uuid,
        reason: &str,
    ) -> Result<Change, InvalidTransition> {
        if !matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::Trialing | SubscriptionStatus::Canceled
        ) || self.renewal_payment_id.is_some()
        {
            return Err(self.invalid("shift its period"));
        }
        let previous_end = self.current_period_end;
        let by = |t: Option<DateTime<Utc>>| t.map(|t| shift_days(t, days, tz));
        self.current_period_end = by(self.current_period_end);
        self.anchor_at = by(self.anchor_at);
        self.next_charge_at = by(self.next_charge_at);
        self.paid_through = by(self.paid_through);
        let details = json!({"maintenance_id": maintenance_id, "days": days, "previous_period_end": previous_end});
        let extra = json!({"days": days, "reason": reason, "previous_period_end": previous_end, "maintenance_id": maintenance_id});
        Ok(self
            .enter(self.status, Cause::MaintenanceExtension, at, Some(details))
            .with(EventKind::PeriodShifted, extra))
    }

    /// A renewal charge for the period starting at the current end is in flight.
    pub fn start_renewal(&mut self, payment_id: PaymentId) {
        self.renewal_payment_id = Some(payment_id);
        self.due_at = None;
    }

    /// Marks the renewal or expiry notice of the current period as sent; `false`
    /// when it was (or there is no period).
    pub fn mark_notice(&mut self, kind: EventKind) -> bool {
        let Some(end) = self.current_period_end else { return false };
        let slot = match kind {
            EventKind::RenewalUpcoming => &mut self.renewal_notice_for,
            EventKind::ExpiringSoon => &mut self.expiry_notice_for,
            _ => return false,
        };
        let fresh = *slot != Some(end);
        *slot = Some(end);
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::period::{Period, PeriodUnit};
    use crate::domain::subscription::tests::{subscription, t};

    const MONTH: Period = Period { unit: PeriodUnit::Month, count: 1 };
    const DAYS_30: Period = Period { unit: PeriodUnit::Day, count: 30 };
    const TZ: Tz = chrono_tz::Europe::Moscow;

    fn switch(restarts: bool) -> PlanSwitch<'static> {
        PlanSwitch {
            from: PlanRef { id: Uuid::nil(), code: "USER", period: DAYS_30 },
            to: PlanRef { id: Uuid::now_v7(), code: "PRO", period: DAYS_30 },
            to_auto_renews: false,
            price_id: Uuid::nil(),
            paid_amount: Decimal::new(139000, 2),
            restarts,
            payment_id: None,
            quote: json!({"amount_due": {"value": "700.00", "currency": "RUB"}}),
        }
    }

    #[test]
    fn an_upgrade_supersedes_a_scheduled_downgrade_and_says_so() {
        let mut sub = subscription(SubscriptionStatus::Active);
        let lite = Uuid::now_v7();
        sub.scheduled_plan_id = Some(lite);
        let change = sub.change_plan(t("2026-03-10T09:00:00Z"), &switch(false), TZ).unwrap();
        assert_eq!((sub.scheduled_plan_id, sub.current_period_end), (None, Some(t("2026-04-01T09:00:00Z"))));
        assert_eq!(change.history.cause, Cause::PlanChanged);
        assert_eq!(change.history.details.as_ref().unwrap()["superseded_scheduled_plan_id"], json!(lite));
        assert_eq!(change.events[0].extra["amount_due"]["value"], "700.00");
        assert!(
            subscription(SubscriptionStatus::Suspended)
                .change_plan(t("2026-03-10T09:00:00Z"), &switch(false), TZ)
                .is_err()
        );
    }

    #[test]
    fn a_restarting_upgrade_begins_a_new_period_now() {
        let mut sub = subscription(SubscriptionStatus::Active);
        sub.change_plan(t("2026-03-10T09:00:00Z"), &switch(true), TZ).unwrap();
        assert_eq!(sub.current_period_start, Some(t("2026-03-10T09:00:00Z")));
        assert_eq!(sub.current_period_end, Some(t("2026-04-09T09:00:00Z")));
        assert_eq!((sub.auto_renew, sub.next_charge_at), (false, None), "the manual plan's renewal mode");
    }

    #[test]
    fn scheduling_and_cancelling_a_downgrade_are_both_recorded() {
        let mut sub = subscription(SubscriptionStatus::Active);
        let lite = PlanRef { id: Uuid::now_v7(), code: "LITE", period: MONTH };
        let end = t("2026-04-01T09:00:00Z");
        let scheduled = sub.schedule_plan(t("2026-03-10T09:00:00Z"), Some(lite), end).unwrap();
        assert_eq!((sub.scheduled_plan_id, scheduled.history.cause), (Some(lite.id), Cause::PlanChangeScheduled));
        let canceled = sub.schedule_plan(t("2026-03-11T09:00:00Z"), None, end).unwrap();
        assert_eq!((sub.scheduled_plan_id, canceled.history.cause), (None, Cause::PlanChangeCanceled));
        assert_eq!(canceled.events[0].extra["scheduled_plan"], Value::Null);
    }

    #[test]
    fn maintenance_moves_the_dates_by_local_days() {
        let mut sub = subscription(SubscriptionStatus::Active);
        let change = sub.shift_period(t("2026-03-10T09:00:00Z"), 3, TZ, Uuid::nil(), "outage").unwrap();
        assert_eq!(sub.current_period_end, Some(t("2026-04-04T09:00:00Z")));
        assert_eq!(sub.next_charge_at, Some(t("2026-04-04T09:00:00Z")));
        assert_eq!(change.events[0].extra["previous_period_end"], "2026-04-01T09:00:00Z");
        let mut renewing = subscription(SubscriptionStatus::Active);
        renewing.start_renewal(PaymentId::new());
        assert!(renewing.shift_period(t("2026-03-10T09:00:00Z"), 3, TZ, Uuid::nil(), "outage").is_err());
    }

    #[test]
    fn a_notice_is_marked_once_per_period() {
        let mut sub = subscription(SubscriptionStatus::Active);
        assert!(sub.mark_notice(EventKind::RenewalUpcoming));
        assert!(!sub.mark_notice(EventKind::RenewalUpcoming));
        assert!(sub.mark_notice(EventKind::ExpiringSoon));
    }
}
