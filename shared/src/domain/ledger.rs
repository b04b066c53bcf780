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

/// Accounts of a tenant's books.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// Money held by the payment gateway for the tenant (asset).
    GatewayClearing,
    /// Recognised revenue from tariffs, upgrades, extensions, overage.
    Revenue,
    /// A customer's prepaid balance (liability to the customer).
    Customer(Uuid),
}

impl Account {
    pub fn code(&self) -> &'static str {
        match self {
            Account::GatewayClearing => "gateway_clearing",
            Account::Revenue => "revenue",
            Account::Customer(_) => "customer_balance",
        }
    }

    pub fn customer_id(&self) -> Option<Uuid> {
        match self {
            Account::Customer(id) => Some(*id),
            _ => None,
        }
    }

    /// Deterministic account id, so accounts are created idempotently without a read.
    pub fn id(&self, tenant_id: Uuid, currency: Currency) -> Uuid {
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
    pub fn captured_charge(kind: &'static str, description: String, customer: Uuid, amount: Money) -> Posting {
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
    pub fn captured_to_balance(kind: &'static str, description: String, customer: Uuid, amount: Money) -> Posting {
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
            let c = Uuid::new_v4();
            let charge = Posting::captured_charge("payment_captured", "x".into(), c, m);
            prop_assert!(charge.is_balanced());
            let customer_sum: Decimal = charge.entries().iter().filter(|e| e.account == Account::Customer(c)).map(|e| e.amount).sum();
            prop_assert_eq!(customer_sum, Decimal::ZERO);
            let revenue: Decimal = charge.entries().iter().filter(|e| e.account == Account::Revenue).map(|e| e.amount).sum();
            prop_assert_eq!(revenue, m.amount());
            prop_assert!(Posting::captured_to_balance("duplicate_capture", "x".into(), c, m).is_balanced());
        }
    }

    #[test]
    fn account_ids_are_deterministic_and_distinct() {
        let t = Uuid::new_v4();
        let c = Uuid::new_v4();
        assert_eq!(Account::Revenue.id(t, Currency::Rub), Account::Revenue.id(t, Currency::Rub));
        assert_ne!(Account::Revenue.id(t, Currency::Rub), Account::GatewayClearing.id(t, Currency::Rub));
        assert_ne!(Account::Customer(c).id(t, Currency::Rub), Account::Customer(Uuid::new_v4()).id(t, Currency::Rub));
    }
}
