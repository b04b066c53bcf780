//! A customer's balance (SPEC §8): prepaid money the customer topped up
//! (WhatsMonster 7.18 «пополнение лицевого счета») and cashback credited by plans
//! (7.25 «использовать некоторую часть оплаченного тарифа на оплату тарифа в
//! последующем»).
//!
//! Rules, all in exact kopecks:
//! * **Spending.** Cashback pays only for tariffs (a plan's period, an extension,
//!   an upgrade's surcharge), never for overage; prepaid money pays for anything.
//!   A payment from the balance takes cashback first for its tariff part, then
//!   prepaid money for the rest. It is paid in full or not at all: a shortfall is
//!   [`Insufficient`], nothing is debited.
//! * **Earning.** A captured tariff payment credits `rate × base` cashback, rounded
//!   once, where `base` is the money the customer paid for tariffs (by card or from
//!   prepaid money) — cashback spent earns no cashback.
//! * **Reversal.** A refund of such a payment reverses the cashback in proportion
//!   to what is refunded, cumulatively (so partial refunds never round to more than
//!   was earned). Cashback already spent cannot be taken back from the balance:
//!   that part is deducted from the money refunded (see [`reversal`]).

use rust_decimal::Decimal;

use super::money::{Currency, Money, round_kopecks};

/// What a customer can spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Available {
    pub prepaid: Money,
    pub cashback: Money,
}

/// How a payment is taken from the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub cashback: Money,
    pub prepaid: Money,
}

/// The balance cannot pay: what was needed and what could be spent on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the balance covers {spendable} of {needed}")]
pub struct Insufficient {
    pub needed: Money,
    pub spendable: Money,
}

/// Takes `amount` (of which `tariff_part` is for tariffs) from `available`:
/// cashback first, up to the tariff part, then prepaid money.
pub fn split(amount: Money, tariff_part: Money, available: Available) -> Result<Split, Insufficient> {
    let c = amount.currency();
    let tariff = tariff_part.amount().min(amount.amount()).max(Decimal::ZERO);
    let cashback = available.cashback.amount().min(tariff).max(Decimal::ZERO);
    let rest = amount.amount() - cashback;
    let prepaid = available.prepaid.amount().max(Decimal::ZERO);
    if rest > prepaid {
        return Err(Insufficient { needed: amount, spendable: Money::round(cashback + prepaid, c) });
    }
    Ok(Split { cashback: Money::round(cashback, c), prepaid: Money::round(rest, c) })
}

/// Cashback a captured payment earns: `rate` (0..1) × the money paid for tariffs,
/// rounded once to kopecks.
pub fn earned(rate: Decimal, tariff_paid: Decimal, currency: Currency) -> Money {
    Money::round(rate.max(Decimal::ZERO) * tariff_paid.max(Decimal::ZERO), currency)
}

/// What a refund does to the cashback a payment earned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reversal {
    /// Taken back from the customer's cashback.
    pub reversed: Decimal,
    /// Already spent, so not on the balance any more: deducted from the refund.
    pub deducted: Decimal,
}

/// What a refund of `refund` out of a payment of `paid` takes back of an amount
/// `total` the payment earned (cashback, a partner's commission), after earlier
/// refunds of `refunded_before` took `taken_before`: the cumulative share
/// `total × (refunded_before + refund) / paid`, rounded once, minus what earlier
/// refunds took — so refunds in parts never take more than `total`, and a full
/// refund takes all of it.
pub fn pro_rata(
    total: Decimal,
    paid: Decimal,
    refunded_before: Decimal,
    taken_before: Decimal,
    refund: Decimal,
) -> Decimal {
    if total <= Decimal::ZERO || paid <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    let refunded = (refunded_before + refund).min(paid);
    let share = round_kopecks(total * refunded / paid).min(total);
    (share - taken_before).max(Decimal::ZERO)
}

/// The cashback reversal of a refund of `refund` out of a payment of `paid` that
/// earned `earned` ([`pro_rata`]), with `cashback_balance` what the customer has
/// left: whatever the balance cannot cover is deducted from the refund, never
/// more than the refund itself.
pub fn reversal(
    earned: Decimal,
    paid: Decimal,
    refunded_before: Decimal,
    reversed_before: Decimal,
    refund: Decimal,
    cashback_balance: Decimal,
) -> Reversal {
    let due = pro_rata(earned, paid, refunded_before, reversed_before, refund);
    let reversed = due.min(cashback_balance.max(Decimal::ZERO));
    let deducted = (due - reversed).min(refund);
    Reversal { reversed: round_kopecks(reversed), deducted: round_kopecks(deducted) }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    use super::*;

    fn rub(s: &str) -> Money {
        Money::rub(s.parse().unwrap()).unwrap()
    }

    fn available(prepaid: &str, cashback: &str) -> Available {
        Available { prepaid: rub(prepaid), cashback: rub(cashback) }
    }

    #[test]
    fn cashback_pays_tariffs_first_and_prepaid_money_the_rest() {
        let s = split(rub("1390.00"), rub("1390.00"), available("2000.00", "100.00")).unwrap();
        assert_eq!((s.cashback, s.prepaid), (rub("100.00"), rub("1290.00")));
        // Overage is not a tariff: cashback does not pay for it.
        let s = split(rub("50.00"), rub("0.00"), available("60.00", "100.00")).unwrap();
        assert_eq!((s.cashback, s.prepaid), (rub("0.00"), rub("50.00")));
        // A renewal with an overage line: cashback covers only the tariff line.
        let s = split(rub("1440.00"), rub("1390.00"), available("100.00", "1500.00")).unwrap();
        assert_eq!((s.cashback, s.prepaid), (rub("1390.00"), rub("50.00")));
    }

    #[test]
    fn a_short_balance_pays_nothing() {
        let e = split(rub("1390.00"), rub("1390.00"), available("1000.00", "100.00")).unwrap_err();
        assert_eq!((e.needed, e.spendable), (rub("1390.00"), rub("1100.00")));
        let e = split(rub("50.00"), rub("0.00"), available("10.00", "100.00")).unwrap_err();
        assert_eq!(e.spendable, rub("10.00"));
    }

    #[test]
    fn cashback_is_earned_on_money_paid_for_tariffs_rounded_once() {
        assert_eq!(earned("0.05".parse().unwrap(), "1390.00".parse().unwrap(), Currency::Rub), rub("69.50"));
        assert_eq!(earned("0.033".parse().unwrap(), "990.00".parse().unwrap(), Currency::Rub), rub("32.67"));
        assert_eq!(earned(Decimal::ZERO, "990.00".parse().unwrap(), Currency::Rub), rub("0.00"));
    }

    #[test]
    fn a_refund_reverses_cashback_pro_rata_and_deducts_what_was_spent() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        // Full refund, cashback untouched: all of it goes back.
        assert_eq!(
            reversal(d("69.50"), d("1390.00"), d("0"), d("0"), d("1390.00"), d("69.50")),
            Reversal { reversed: d("69.50"), deducted: d("0") }
        );
        // Half refunded: half reversed.
        assert_eq!(
            reversal(d("69.50"), d("1390.00"), d("0"), d("0"), d("695.00"), d("69.50")),
            Reversal { reversed: d("34.75"), deducted: d("0") }
        );
        // The customer spent 50 of it: 19.50 is left to reverse, 50 comes off the refund.
        assert_eq!(
            reversal(d("69.50"), d("1390.00"), d("0"), d("0"), d("1390.00"), d("19.50")),
            Reversal { reversed: d("19.50"), deducted: d("50.00") }
        );
        // The second half of a split refund takes the rest, not more.
        assert_eq!(
            reversal(d("69.50"), d("1390.00"), d("695.00"), d("34.75"), d("695.00"), d("100")),
            Reversal { reversed: d("34.75"), deducted: d("0") }
        );
    }

    proptest! {
        #[test]
        fn a_split_pays_exactly_the_amount_or_nothing(
            amount in 1i64..1_000_000, tariff in 0i64..1_000_000, prepaid in 0i64..1_000_000, cashback in 0i64..1_000_000,
        ) {
            let k = |v: i64| Money::new(Decimal::new(v, 2), Currency::Rub).unwrap();
            let avail = Available { prepaid: k(prepaid), cashback: k(cashback) };
            match split(k(amount), k(tariff), avail) {
                Ok(s) => {
                    prop_assert_eq!(s.cashback.amount() + s.prepaid.amount(), k(amount).amount());
                    prop_assert!(s.cashback.amount() <= k(tariff).amount());
                    prop_assert!(s.cashback.amount() <= avail.cashback.amount());
                    prop_assert!(s.prepaid.amount() <= avail.prepaid.amount());
                }
                Err(e) => prop_assert!(e.spendable.amount() < k(amount).amount()),
            }
        }

        #[test]
        fn refunds_in_parts_never_reverse_more_than_was_earned(
            paid in 100i64..1_000_000, rate in 0i64..=100, cuts in proptest::collection::vec(1i64..100, 1..5),
        ) {
            let paid = Decimal::new(paid, 2);
            let earned = earned(Decimal::new(rate, 2), paid, Currency::Rub).amount();
            let total: i64 = cuts.iter().sum();
            let (mut refunded, mut reversed) = (Decimal::ZERO, Decimal::ZERO);
            for cut in &cuts {
                let part = round_kopecks(paid * Decimal::from(*cut) / Decimal::from(total)).min(paid - refunded);
                let r = reversal(earned, paid, refunded, reversed, part, Decimal::from(1_000_000));
                prop_assert_eq!(r.deducted, Decimal::ZERO);
                refunded += part;
                reversed += r.reversed;
                prop_assert!(reversed <= earned);
            }
            if refunded == paid {
                prop_assert_eq!(reversed, earned);
            }
        }
    }
}
