//! Double-entry bookkeeping rules.
//!
//! Amounts are signed: **credit positive, debit negative**. A customer's balance
//! (what the service owes the customer) is the plain sum of its account's entries;
//! revenue sums positive; the gateway clearing account (money the provider holds
//! for the tenant) sums negative. Every transaction built here sums to zero, which
//! the database re-checks at the end of each statement that inserts entries or
//! transactions (statement-level triggers, migration 000015: the transaction exists,
//! has at least two entries and sums to zero per currency); entries and
//! transactions are never updated or deleted, and no ledger table is truncated.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::money::{Currency, Money};
use crate::domain::ids::{CustomerId, PartnerId, TenantId};

/// Accounts of a tenant's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// Money held by the payment gateway for the tenant (asset).
    GatewayClearing,
    /// Money received on the tenant's bank account by transfer (asset).
    BankClearing,
    /// Recognised revenue from tariffs, upgrades, extensions, overage.
    Revenue,
    /// The customer's pass-through account: payments enter it from where the money
    /// came from and leave it for what they pay; money waiting to be refunded
    /// (a duplicate capture, a top-up being refunded) stays on it.
    Customer(CustomerId),
    /// Money the customer topped up and has not spent (liability; never negative).
    Prepaid(CustomerId),
    /// Cashback credited to the customer and not spent (liability; never negative).
    Cashback(CustomerId),
    /// What cashback costs the tenant (credited cashback, less reversals).
    CashbackExpense,
    /// Commission owed to a partner (liability).
    PartnerPayable(PartnerId),
    /// What partner commissions cost the tenant.
    CommissionExpense,
}

impl Account {
    pub fn code(&self) -> &'static str {
        match self {
            Account::GatewayClearing => "gateway_clearing",
            Account::BankClearing => "bank_clearing",
            Account::Revenue => "revenue",
            Account::Customer(_) => "customer_balance",
            Account::Prepaid(_) => "customer_prepaid",
            Account::Cashback(_) => "customer_cashback",
            Account::CashbackExpense => "cashback_expense",
            Account::PartnerPayable(_) => "partner_payable",
            Account::CommissionExpense => "commission_expense",
        }
    }

    pub fn customer_id(&self) -> Option<CustomerId> {
        match self {
            Account::Customer(id) | Account::Prepaid(id) | Account::Cashback(id) => Some(*id),
            _ => None,
        }
    }

    /// Accounts a customer spends from: their balance is kept beside the ledger
    /// and the database refuses to let it go below zero.
    pub fn is_spendable(&self) -> bool {
        matches!(self, Account::Prepaid(_) | Account::Cashback(_))
    }

    /// Whose account it is: the customer's or the partner's, none for the tenant's own.
    fn holder(&self) -> Option<Uuid> {
        match self {
            Account::PartnerPayable(p) => Some(p.0),
            other => other.customer_id().map(|c| c.0),
        }
    }

    /// Deterministic account id, so accounts are created idempotently without a read.
    pub fn id(&self, tenant_id: TenantId, currency: Currency) -> Uuid {
        let name = format!(
            "{tenant_id}/{}/{}/{}",
            self.code(),
            self.holder().map(|h| h.to_string()).unwrap_or_default(),
            currency.code()
        );
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub account: Account,
    pub amount: Decimal,
    pub currency: Currency,
}

/// Where the money of a payment came from (or goes back to, for a refund): paid
/// in through the gateway, and/or taken from the customer's balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funding {
    /// Through the payment gateway.
    pub gateway: Money,
    /// From (or back to) the customer's prepaid money.
    pub prepaid: Money,
    /// From (or back to) the customer's cashback.
    pub cashback: Money,
}

impl Funding {
    /// All of `amount` through the gateway.
    pub fn gateway(amount: Money) -> Funding {
        let zero = Money::zero(amount.currency());
        Funding { gateway: amount, prepaid: zero, cashback: zero }
    }

    /// From the balance: `prepaid` and `cashback` (of one currency).
    pub fn balance(prepaid: Money, cashback: Money) -> Funding {
        Funding { gateway: Money::zero(prepaid.currency()), prepaid, cashback }
    }

    pub fn total(&self) -> Decimal {
        self.gateway.amount() + self.prepaid.amount() + self.cashback.amount()
    }

    pub fn currency(&self) -> Currency {
        self.gateway.currency()
    }

    /// True when nothing comes from the gateway (the balance paid it all).
    pub fn from_balance(&self) -> bool {
        self.gateway.is_zero() && self.total() > Decimal::ZERO
    }

    /// The source accounts and amounts, non-zero ones only.
    fn sources(&self, customer: CustomerId) -> impl Iterator<Item = (Account, Decimal)> {
        [
            (Account::GatewayClearing, self.gateway.amount()),
            (Account::Prepaid(customer), self.prepaid.amount()),
            (Account::Cashback(customer), self.cashback.amount()),
        ]
        .into_iter()
        .filter(|(_, a)| !a.is_zero())
    }
}

/// The parts of a plan change, as [`Posting::plan_change`] books them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanChangeParts {
    /// Collected now (through the gateway or from the balance).
    pub paid: Funding,
    /// Unused value of the old tariff.
    pub credit: Money,
    /// The new tariff's charge.
    pub charge: Money,
    /// Below the minimum charge: not collected.
    pub waived: Money,
}

/// A balanced set of entries, built only through the constructors below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub kind: &'static str,
    pub description: String,
    entries: Vec<Entry>,
}

impl Posting {
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// A customer pays `amount` through the gateway for something they consume at
    /// once (a tariff period, an upgrade, an extension): the money passes through
    /// the customer's balance into revenue, leaving the balance unchanged.
    pub fn captured_charge(kind: &'static str, description: String, customer: CustomerId, amount: Money) -> Posting {
        Posting::charge(kind, description, customer, Funding::gateway(amount))
    }

    /// A customer pays for something they consume at once with `funding`: each
    /// source passes into the customer's pass-through account, the whole leaves it
    /// for revenue.
    pub fn charge(kind: &'static str, description: String, customer: CustomerId, funding: Funding) -> Posting {
        let c = funding.currency();
        let mut entries = Vec::with_capacity(6);
        for (source, a) in funding.sources(customer) {
            entries.push(Entry { account: source, amount: -a, currency: c });
            entries.push(Entry { account: Account::Customer(customer), amount: a, currency: c });
        }
        let total = funding.total();
        entries.push(Entry { account: Account::Customer(customer), amount: -total, currency: c });
        entries.push(Entry { account: Account::Revenue, amount: total, currency: c });
        Posting { kind, description, entries }
    }

    /// A top-up captured through the gateway: the money becomes the customer's
    /// prepaid balance.
    pub fn top_up(description: String, customer: CustomerId, amount: Money) -> Posting {
        let c = amount.currency();
        let a = amount.amount();
        Posting {
            kind: "top_up",
            description,
            entries: vec![
                Entry { account: Account::GatewayClearing, amount: -a, currency: c },
                Entry { account: Account::Prepaid(customer), amount: a, currency: c },
            ],
        }
    }

    /// A bank transfer received for an invoice: it becomes the customer's prepaid
    /// money, which then pays the invoice once it covers it.
    pub fn bank_transfer(description: String, customer: CustomerId, amount: Money) -> Posting {
        let c = amount.currency();
        let a = amount.amount();
        Posting {
            kind: "bank_transfer",
            description,
            entries: vec![
                Entry { account: Account::BankClearing, amount: -a, currency: c },
                Entry { account: Account::Prepaid(customer), amount: a, currency: c },
            ],
        }
    }

    /// Unspent prepaid money set aside for a refund of its top-up: it leaves the
    /// spendable balance and waits on the pass-through account until paid back.
    pub fn held_for_refund(description: String, customer: CustomerId, amount: Money) -> Posting {
        let c = amount.currency();
        let a = amount.amount();
        Posting {
            kind: "top_up_refund_hold",
            description,
            entries: vec![
                Entry { account: Account::Prepaid(customer), amount: -a, currency: c },
                Entry { account: Account::Customer(customer), amount: a, currency: c },
            ],
        }
    }

    /// A partner's commission accrued (or reversed, `reversed` true).
    pub fn commission(description: String, partner: PartnerId, amount: Money, reversed: bool) -> Posting {
        let c = amount.currency();
        let a = if reversed { -amount.amount() } else { amount.amount() };
        Posting {
            kind: if reversed { "commission_reversed" } else { "commission_accrued" },
            description,
            entries: vec![
                Entry { account: Account::CommissionExpense, amount: -a, currency: c },
                Entry { account: Account::PartnerPayable(partner), amount: a, currency: c },
            ],
        }
    }

    /// Cashback credited (`amount` positive) or reversed (`reversed` true).
    pub fn cashback(description: String, customer: CustomerId, amount: Money, reversed: bool) -> Posting {
        let c = amount.currency();
        let a = if reversed { -amount.amount() } else { amount.amount() };
        Posting {
            kind: if reversed { "cashback_reversed" } else { "cashback_credited" },
            description,
            entries: vec![
                Entry { account: Account::CashbackExpense, amount: -a, currency: c },
                Entry { account: Account::Cashback(customer), amount: a, currency: c },
            ],
        }
    }

    /// Money captured that the customer did not owe (a duplicate capture): it sits on
    /// the customer's balance until it is refunded.
    pub fn captured_to_balance(
        kind: &'static str,
        description: String,
        customer: CustomerId,
        amount: Money,
    ) -> Posting {
        let c = amount.currency();
        let a = amount.amount();
        Posting {
            kind,
            description,
            entries: vec![
                Entry { account: Account::GatewayClearing, amount: -a, currency: c },
                Entry { account: Account::Customer(customer), amount: a, currency: c },
            ],
        }
    }

    /// Money paid back to the customer, to where it came from (`to`: through the
    /// gateway, or back onto the balance). What was revenue is reversed through
    /// the customer's pass-through account; money that only ever sat there (a
    /// duplicate capture, a top-up held for refund) leaves from there.
    pub fn refunded(description: String, customer: CustomerId, to: Funding, from_revenue: bool) -> Posting {
        let c = to.currency();
        let a = to.total();
        let mut entries = Vec::with_capacity(8);
        if from_revenue {
            entries.push(Entry { account: Account::Revenue, amount: -a, currency: c });
            entries.push(Entry { account: Account::Customer(customer), amount: a, currency: c });
        }
        for (target, part) in to.sources(customer) {
            entries.push(Entry { account: Account::Customer(customer), amount: -part, currency: c });
            entries.push(Entry { account: target, amount: part, currency: c });
        }
        Posting { kind: "refund", description, entries }
    }

    /// An immediate plan change (SPEC §4), each part its own pair of entries: what
    /// the customer pays arrives through the gateway, the unused value of the old
    /// tariff is credited back (revenue reversed), the new tariff's charge is
    /// booked, and a difference below the minimum charge is waived. A credit larger
    /// than the charge stays on the customer's balance. `None` when nothing moves.
    pub fn plan_change(description: String, customer_id: CustomerId, parts: PlanChangeParts) -> Option<Posting> {
        let c = parts.paid.currency();
        let customer = Account::Customer(customer_id);
        let mut entries = Vec::new();
        let mut pair = |debit: Account, credit: Account, amount: Decimal| {
            if !amount.is_zero() {
                entries.push(Entry { account: debit, amount: -amount, currency: c });
                entries.push(Entry { account: credit, amount, currency: c });
            }
        };
        for (source, amount) in parts.paid.sources(customer_id) {
            pair(source, customer, amount);
        }
        pair(Account::Revenue, customer, parts.credit.amount());
        pair(customer, Account::Revenue, parts.charge.amount());
        pair(Account::Revenue, customer, parts.waived.amount());
        (!entries.is_empty()).then_some(Posting { kind: "plan_change", description, entries })
    }

    /// Sum of all entries per currency: zero for every posting built here.
    pub fn is_balanced(&self) -> bool {
        let mut sums: Vec<(Currency, Decimal)> = Vec::new();
        for e in &self.entries {
            match sums.iter_mut().find(|(c, _)| *c == e.currency) {
                Some((_, s)) => *s += e.amount,
                None => sums.push((e.currency, e.amount)),
            }
        }
        self.entries.len() >= 2 && sums.iter().all(|(_, s)| s.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn postings_always_balance(kopecks in 1i64..10_000_000_000) {
            let m = Money::rub(Decimal::new(kopecks, 2)).unwrap();
            let c = CustomerId::new();
            let charge = Posting::captured_charge("payment_captured", "x".into(), c, m);
            prop_assert!(charge.is_balanced());
            let customer_sum: Decimal = charge.entries().iter().filter(|e| e.account == Account::Customer(c)).map(|e| e.amount).sum();
            prop_assert_eq!(customer_sum, Decimal::ZERO);
            let revenue: Decimal = charge.entries().iter().filter(|e| e.account == Account::Revenue).map(|e| e.amount).sum();
            prop_assert_eq!(revenue, m.amount());
            prop_assert!(Posting::captured_to_balance("duplicate_capture", "x".into(), c, m).is_balanced());
        }
    }

    fn customer_net(p: &Posting, c: CustomerId) -> Decimal {
        p.entries().iter().filter(|e| e.account == Account::Customer(c)).map(|e| e.amount).sum()
    }

    #[test]
    fn plan_change_books_credit_and_charge_separately() {
        let rub = |s: &str| Money::rub(s.parse().unwrap()).unwrap();
        let c = CustomerId::new();
        // WhatsMonster USER -> PRO: 460.00 credit, 1390.00 charge, 930.00 paid.
        let parts = PlanChangeParts {
            paid: Funding::gateway(rub("930.00")),
            credit: rub("460.00"),
            charge: rub("1390.00"),
            waived: rub("0"),
        };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert!(p.is_balanced());
        assert_eq!(p.entries().len(), 6);
        assert_eq!(customer_net(&p, c), Decimal::ZERO);
        let revenue: Decimal = p.entries().iter().filter(|e| e.account == Account::Revenue).map(|e| e.amount).sum();
        assert_eq!(revenue, "930.00".parse::<Decimal>().unwrap());
        // Below the minimum: nothing paid, the 0.50 difference waived.
        let parts = PlanChangeParts {
            paid: Funding::gateway(rub("0")),
            credit: rub("500.00"),
            charge: rub("500.50"),
            waived: rub("0.50"),
        };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert!(p.is_balanced());
        assert_eq!(customer_net(&p, c), Decimal::ZERO);
        // A credit above the charge stays on the balance.
        let parts = PlanChangeParts {
            paid: Funding::gateway(rub("0")),
            credit: rub("900.00"),
            charge: rub("700.00"),
            waived: rub("0"),
        };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert_eq!(customer_net(&p, c), "200.00".parse::<Decimal>().unwrap());
        let nothing =
            PlanChangeParts { paid: Funding::gateway(rub("0")), credit: rub("0"), charge: rub("0"), waived: rub("0") };
        assert!(Posting::plan_change("x".into(), c, nothing).is_none());
    }

    #[test]
    fn account_ids_are_deterministic_and_distinct() {
        let t = TenantId::new();
        let c = CustomerId::new();
        assert_eq!(Account::Revenue.id(t, Currency::Rub), Account::Revenue.id(t, Currency::Rub));
        assert_ne!(Account::Revenue.id(t, Currency::Rub), Account::GatewayClearing.id(t, Currency::Rub));
        assert_ne!(
            Account::Customer(c).id(t, Currency::Rub),
            Account::Customer(CustomerId::new()).id(t, Currency::Rub)
        );
    }
}
