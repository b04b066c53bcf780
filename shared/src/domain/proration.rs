//! Plan changes mid-period (SPEC §4).
//!
//! Days are local calendar days in the tenant's time zone:
//! `remaining_days` = period end's local date − change's local date,
//! `period_days` = period end's local date − period start's local date.
//! `old_price` is what was paid for the current period's tariff.
//!
//! * `prorate` (Orbita 18.3.1): pay `(new − old) × remaining / period`; the period
//!   end does not move.
//! * `restart_with_credit` (WhatsMonster 7.13): pay `new − old × remaining / period`;
//!   a new full period starts now. Plans with different period lengths always
//!   restart with credit.
//!
//! The total is computed exactly and rounded once; the credit (unused value of the
//! old tariff) is rounded once; the charge is derived as `total + credit`, so the
//! parts always add up. An amount due below 1.00 is not charged: the change
//! applies at once.

use rust_decimal::Decimal;

use super::money::{Money, round_kopecks};
use super::tenant::UpgradeMode;

/// Amounts below this are not charged (the change applies at once).
pub const MINIMUM_CHARGE: Decimal = Decimal::from_parts(100, 0, 0, false, 2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeInput {
    /// What was paid for the current period's tariff.
    pub old_price: Money,
    /// The new plan's price in effect now.
    pub new_price: Money,
    /// Whole local days of the current period.
    pub period_days: i64,
    /// Whole local days left in it at the change.
    pub remaining_days: i64,
    pub mode: UpgradeMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// What the customer pays now (0 when below [`MINIMUM_CHARGE`]).
    pub amount_due: Money,
    /// Unused value of the old tariff, credited.
    pub credit: Money,
    /// The new tariff's charge (for the remaining days, or a full new period).
    pub charge: Money,
    /// The exact total before the minimum-charge rule, parts add up to it.
    pub total: Money,
    /// A new full period starts now.
    pub restarts: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProrationError {
    #[error("the period has no days")]
    EmptyPeriod,
    #[error("prices in different currencies")]
    CurrencyMismatch,
}

pub fn quote(input: ChangeInput) -> Result<Quote, ProrationError> {
    if input.period_days <= 0 {
        return Err(ProrationError::EmptyPeriod);
    }
    let currency = input.old_price.currency();
    if input.new_price.currency() != currency {
        return Err(ProrationError::CurrencyMismatch);
    }
    let remaining = Decimal::from(input.remaining_days.clamp(0, input.period_days));
    let days = Decimal::from(input.period_days);
    let old = input.old_price.amount();
    let new = input.new_price.amount();
    let unused_old = old * remaining / days;
    let restarts = input.mode == UpgradeMode::RestartWithCredit;
    let exact_total = if restarts { new - unused_old } else { (new - old) * remaining / days };
    let total = round_kopecks(exact_total);
    let credit = round_kopecks(unused_old);
    let charge = total + credit;
    let due = if total >= MINIMUM_CHARGE { total } else { Decimal::ZERO };
    Ok(Quote {
        amount_due: Money::round(due, currency),
        credit: Money::round(credit, currency),
        charge: Money::round(charge, currency),
        total: Money::round(total, currency),
        restarts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rub(s: &str) -> Money {
        Money::rub(s.parse().unwrap()).unwrap()
    }

    fn q(old: &str, new: &str, period: i64, remaining: i64, mode: UpgradeMode) -> Quote {
        quote(ChangeInput {
            old_price: rub(old),
            new_price: rub(new),
            period_days: period,
            remaining_days: remaining,
            mode,
        })
        .unwrap()
    }

    #[test]
    fn whatsmonster_user_to_pro_restarts_with_credit() {
        // 7.13: USER 690 paid for 30 days, 20 days left: 1390 - 690 x 20/30 = 1390 - 460 = 930.
        let quote = q("690.00", "1390.00", 30, 20, UpgradeMode::RestartWithCredit);
        assert_eq!(quote.credit, rub("460.00"));
        assert_eq!(quote.charge, rub("1390.00"));
        assert_eq!(quote.amount_due, rub("930.00"));
        assert!(quote.restarts);
    }

    #[test]
    fn orbita_prorated_surcharge_rounds_once() {
        // 18.3.1: 1990 -> 4990 with 17 of 31 days left: 3000 x 17/31 = 1645.161290... -> 1645.16;
        // credit 1990 x 17/31 = 1091.290322... -> 1091.29; charge derived 2736.45.
        let quote = q("1990.00", "4990.00", 31, 17, UpgradeMode::Prorate);
        assert_eq!(quote.amount_due, rub("1645.16"));
        assert_eq!(quote.credit, rub("1091.29"));
        assert_eq!(quote.charge, rub("2736.45"));
        assert!(!quote.restarts);
    }

    #[test]
    fn kill_bill_examples_agree_day_by_day_half_up() {
        // Kill Bill's proration examples (same day granularity, HALF_UP to cents):
        // 249.95 -> 599.95 with 27 of 31 days left: credit 217.70, new charge 522.54.
        let quote = q("249.95", "599.95", 31, 27, UpgradeMode::Prorate);
        assert_eq!(quote.credit, rub("217.70"));
        assert_eq!(quote.charge, rub("522.54"));
        assert_eq!(quote.amount_due, rub("304.84"));
        // Annual 100 -> 160 with 319 of 365 days left: credit 87.40, charge 139.84.
        let annual = q("100.00", "160.00", 365, 319, UpgradeMode::Prorate);
        assert_eq!(annual.credit, rub("87.40"));
        assert_eq!(annual.charge, rub("139.84"));
        // Annual 2399.95 with 292 of 365 days unused: credit 1919.96.
        let restart = q("2399.95", "3999.95", 365, 292, UpgradeMode::RestartWithCredit);
        assert_eq!(restart.credit, rub("1919.96"));
        assert_eq!(restart.amount_due, rub("2079.99"));
        assert_eq!(restart.charge, rub("3999.95"));
    }

    #[test]
    fn less_than_a_rouble_is_not_charged() {
        let quote = q("1000.00", "1001.00", 30, 15, UpgradeMode::Prorate);
        assert_eq!(quote.total, rub("0.50"));
        assert_eq!(quote.amount_due, rub("0.00"));
        let last_day = q("1990.00", "4990.00", 31, 0, UpgradeMode::Prorate);
        assert_eq!(last_day.amount_due, rub("0.00"));
    }

    proptest! {
        #[test]
        fn parts_add_up_and_credit_never_exceeds_what_was_paid(
            old in 1i64..10_000_000, new in 1i64..10_000_000, period in 1i64..400, left in 0i64..400,
            restart in any::<bool>()
        ) {
            let mode = if restart { UpgradeMode::RestartWithCredit } else { UpgradeMode::Prorate };
            let input = ChangeInput {
                old_price: Money::rub(Decimal::new(old, 2)).unwrap(),
                new_price: Money::rub(Decimal::new(new, 2)).unwrap(),
                period_days: period,
                remaining_days: left,
                mode,
            };
            let quote = quote(input).unwrap();
            prop_assert_eq!(quote.charge.amount() - quote.credit.amount(), quote.total.amount());
            prop_assert!(quote.credit.amount() <= input.old_price.amount());
            prop_assert!(quote.credit.amount() >= Decimal::ZERO);
            prop_assert!(quote.amount_due.amount() == Decimal::ZERO || quote.amount_due == quote.total);
        }

        #[test]
        fn a_change_and_its_reverse_net_to_zero_within_a_kopeck(
            a in 1i64..10_000_000, b in 1i64..10_000_000, period in 1i64..400, left in 0i64..400
        ) {
            let money = |k: i64| Money::rub(Decimal::new(k, 2)).unwrap();
            let there = quote(ChangeInput { old_price: money(a), new_price: money(b), period_days: period, remaining_days: left, mode: UpgradeMode::Prorate }).unwrap();
            let back = quote(ChangeInput { old_price: money(b), new_price: money(a), period_days: period, remaining_days: left, mode: UpgradeMode::Prorate }).unwrap();
            let net = there.total.amount() + back.total.amount();
            prop_assert!(net.abs() <= Decimal::new(1, 2), "net {}", net);
        }
    }
}
