//! Double-entry bookkeeping rules.
//!
//! Amounts are signed: **credit positive, debit negative**. A customer's balance
//! (what the service owes the customer) is the plain sum of its account's entries;
//! revenue sums positive; the gateway clearing account (money the provider holds
//! for the tenant) sums negative. Every transaction built here sums to zero, which
//! the database re-checks at commit.

use rust_decimal::Decimal;
use uuid::Uuid;

use super::money::{Currency, Money};
use crate::domain::ids::{CustomerId, TenantId};

/// Accounts of a tenant's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// Money held by the payment gateway for the tenant (asset).
    GatewayClearing,
    /// Recognised revenue from tariffs, upgrades, extensions, overage.
    Revenue,
    /// A customer's prepaid balance (liability to the customer).
    Customer(CustomerId),
}

impl Account {
    pub fn code(&self) -> &'static str {
        match self {
            Account::GatewayClearing => "gateway_clearing",
            Account::Revenue => "revenue",
            Account::Customer(_) => "customer_balance",
        }
    }

    pub fn customer_id(&self) -> Option<CustomerId> {
        match self {
            Account::Customer(id) => Some(*id),
            _ => None,
        }
    }

    /// Deterministic account id, so accounts are created idempotently without a read.
    pub fn id(&self, tenant_id: TenantId, currency: Currency) -> Uuid {
        let name = format!(
            "{tenant_id}/{}/{}/{}",
            self.code(),
            self.customer_id().map(|c| c.to_string()).unwrap_or_default(),
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

/// A balanced set of entries, built only through the constructors below.
/// The parts of a plan change, as [`Posting::plan_change`] books them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanChangeParts {
    /// Collected through the gateway now.
    pub paid: Money,
    /// Unused value of the old tariff.
    pub credit: Money,
    /// The new tariff's charge.
    pub charge: Money,
    /// Below the minimum charge: not collected.
    pub waived: Money,
}

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
        let c = amount.currency();
        let a = amount.amount();
        Posting {
            kind,
            description,
            entries: vec![
                Entry { account: Account::GatewayClearing, amount: -a, currency: c },
                Entry { account: Account::Customer(customer), amount: a, currency: c },
                Entry { account: Account::Customer(customer), amount: -a, currency: c },
                Entry { account: Account::Revenue, amount: a, currency: c },
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

    /// Money paid back to the customer through the gateway. What was revenue is
    /// reversed through the customer's balance; money that only ever sat on the
    /// balance (a duplicate capture) leaves from there.
    pub fn refunded(description: String, customer: CustomerId, amount: Money, from_revenue: bool) -> Posting {
        let c = amount.currency();
        let a = amount.amount();
        let mut entries = Vec::with_capacity(4);
        if from_revenue {
            entries.push(Entry { account: Account::Revenue, amount: -a, currency: c });
            entries.push(Entry { account: Account::Customer(customer), amount: a, currency: c });
        }
        entries.push(Entry { account: Account::Customer(customer), amount: -a, currency: c });
        entries.push(Entry { account: Account::GatewayClearing, amount: a, currency: c });
        Posting { kind: "refund", description, entries }
    }

    /// An immediate plan change (SPEC §4), each part its own pair of entries: what
    /// the customer pays arrives through the gateway, the unused value of the old
    /// tariff is credited back (revenue reversed), the new tariff's charge is
    /// booked, and a difference below the minimum charge is waived. A credit larger
    /// than the charge stays on the customer's balance. `None` when nothing moves.
    pub fn plan_change(description: String, customer: CustomerId, parts: PlanChangeParts) -> Option<Posting> {
        let c = parts.paid.currency();
        let customer = Account::Customer(customer);
        let mut entries = Vec::new();
        let mut pair = |debit: Account, credit: Account, amount: Decimal| {
            if !amount.is_zero() {
                entries.push(Entry { account: debit, amount: -amount, currency: c });
                entries.push(Entry { account: credit, amount, currency: c });
            }
        };
        pair(Account::GatewayClearing, customer, parts.paid.amount());
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
        let parts =
            PlanChangeParts { paid: rub("930.00"), credit: rub("460.00"), charge: rub("1390.00"), waived: rub("0") };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert!(p.is_balanced());
        assert_eq!(p.entries().len(), 6);
        assert_eq!(customer_net(&p, c), Decimal::ZERO);
        let revenue: Decimal = p.entries().iter().filter(|e| e.account == Account::Revenue).map(|e| e.amount).sum();
        assert_eq!(revenue, "930.00".parse::<Decimal>().unwrap());
        // Below the minimum: nothing paid, the 0.50 difference waived.
        let parts =
            PlanChangeParts { paid: rub("0"), credit: rub("500.00"), charge: rub("500.50"), waived: rub("0.50") };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert!(p.is_balanced());
        assert_eq!(customer_net(&p, c), Decimal::ZERO);
        // A credit above the charge stays on the balance.
        let parts = PlanChangeParts { paid: rub("0"), credit: rub("900.00"), charge: rub("700.00"), waived: rub("0") };
        let p = Posting::plan_change("x".into(), c, parts).unwrap();
        assert_eq!(customer_net(&p, c), "200.00".parse::<Decimal>().unwrap());
        let nothing = PlanChangeParts { paid: rub("0"), credit: rub("0"), charge: rub("0"), waived: rub("0") };
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
