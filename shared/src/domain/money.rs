//! Money: exact decimal amounts with their currency, parsed strictly and rounded in
//! exactly one place ([`round_kopecks`]).
//!
//! The HTTP contract carries money as `{"value": "690.00", "currency": "RUB"}` where
//! `value` is a decimal string with exactly two decimals. Anything else — a JSON
//! number, a third decimal, a sign, an unknown currency — is refused, never rounded.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// Largest amount accepted anywhere (fits `numeric(14,2)` with room for sums).
const MAX_AMOUNT: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);

/// Supported currencies. Only the Russian rouble for now: other ISO codes are
/// refused with a clear error rather than half-supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Currency {
    #[serde(rename = "RUB")]
    Rub,
}

impl Currency {
    pub fn code(self) -> &'static str {
        match self {
            Currency::Rub => "RUB",
        }
    }

    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        match code {
            "RUB" => Ok(Currency::Rub),
            other => Err(MoneyError::UnsupportedCurrency(other.to_owned())),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a money value was refused. Each variant maps to a stable API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must be a decimal string such as \"690.00\", not a JSON number or other type")]
    NotAString,
    #[error("amount {0:?} must have exactly {1} decimal places and digits only")]
    BadFormat(String, u32),
    #[error("amount {0:?} must not be negative")]
    Negative(String),
    #[error("amount {0:?} is too large")]
    TooLarge(String),
    #[error("currency {0:?} is not supported (only RUB)")]
    UnsupportedCurrency(String),
}

impl MoneyError {
    /// Stable machine-readable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnsupportedCurrency(_) => "unsupported_currency",
            _ => "invalid_money",
        }
    }
}

/// Rounds to kopecks, half away from zero. The only rounding rule of the service.
pub fn round_kopecks(value: Decimal) -> Decimal {
    let mut rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// Parses a non-negative decimal string: exactly `places` decimals when `exact`,
/// otherwise one to `places` decimals.
fn parse_decimal(text: &str, places: u32, exact: bool) -> Result<Decimal, MoneyError> {
    let bad = || MoneyError::BadFormat(text.to_owned(), places);
    if text.starts_with('-') {
        return Err(MoneyError::Negative(text.to_owned()));
    }
    let (int, frac) = text.split_once('.').ok_or_else(bad)?;
    let digits_only = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits_only(int) || !digits_only(frac) {
        return Err(bad());
    }
    if int.len() > 1 && int.starts_with('0') {
        return Err(bad());
    }
    let frac_len = u32::try_from(frac.len()).map_err(|_| bad())?;
    if (exact && frac_len != places) || (!exact && frac_len > places) {
        return Err(bad());
    }
    if int.len() > 12 {
        return Err(MoneyError::TooLarge(text.to_owned()));
    }
    let value = Decimal::from_str(text).map_err(|_| bad())?;
    if value > MAX_AMOUNT {
        return Err(MoneyError::TooLarge(text.to_owned()));
    }
    Ok(value)
}

/// An exact amount of money with two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// Builds money from an amount that already has at most two decimals.
    /// Amounts with more decimals must go through [`Money::round`].
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount.normalize().scale() > 2 {
            return Err(MoneyError::BadFormat(amount.to_string(), 2));
        }
        let mut amount = amount;
        amount.rescale(2);
        Ok(Money { amount, currency })
    }

    /// Rounds an exact (possibly long) amount to kopecks with the single rounding rule.
    pub fn round(amount: Decimal, currency: Currency) -> Self {
        Money { amount: round_kopecks(amount), currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Money { amount: round_kopecks(Decimal::ZERO), currency }
    }

    pub fn rub(amount: Decimal) -> Result<Self, MoneyError> {
        Money::new(amount, Currency::Rub)
    }

    /// Parses the API form: `value` a string with exactly two decimals, non-negative.
    pub fn parse(value: &serde_json::Value, currency: &serde_json::Value) -> Result<Self, MoneyError> {
        let text = value.as_str().ok_or(MoneyError::NotAString)?;
        let code = currency.as_str().ok_or_else(|| MoneyError::UnsupportedCurrency(currency.to_string()))?;
        let currency = Currency::parse(code)?;
        let amount = parse_decimal(text, 2, true)?;
        Ok(Money { amount, currency })
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Sum of two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then(|| Money::round(self.amount + other.amount, self.currency))
    }

    /// Difference of two amounts of the same currency (may be negative).
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then(|| Money::round(self.amount - other.amount, self.currency))
    }

    /// `value` formatted with exactly two decimals, e.g. `"690.00"`.
    pub fn value_string(&self) -> String {
        format!("{:.2}", self.amount)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.value_string(), self.currency)
    }
}

/// Wire shape of money in responses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoneyView {
    /// Decimal string with exactly two decimals.
    #[schema(example = "690.00")]
    pub value: String,
    #[schema(example = "RUB")]
    pub currency: String,
}

impl MoneyView {
    /// The money this view shows (views we made always parse).
    pub fn money(&self) -> Result<Money, MoneyError> {
        Money::parse(&serde_json::Value::from(self.value.as_str()), &serde_json::Value::from(self.currency.as_str()))
    }
}

impl From<Money> for MoneyView {
    fn from(m: Money) -> Self {
        MoneyView { value: m.value_string(), currency: m.currency.code().to_owned() }
    }
}

/// Wire shape of money in requests, kept loose (any JSON) so that a number, a
/// missing currency or a third decimal gets its own precise error instead of a
/// generic parse failure.
#[derive(Debug, Clone, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoneyInput {
    /// A decimal string (`"690.00"`).
    #[schema(value_type = String, example = "690.00", required = true)]
    #[serde(default)]
    pub value: serde_json::Value,
    /// `RUB`.
    #[schema(value_type = String, example = "RUB", required = true)]
    #[serde(default)]
    pub currency: serde_json::Value,
}

impl MoneyInput {
    pub fn money(&self) -> Result<Money, MoneyError> {
        Money::parse(&self.value, &self.currency)
    }

    pub fn unit_price(&self) -> Result<UnitPrice, MoneyError> {
        UnitPrice::parse(&self.value, &self.currency)
    }
}

/// A unit price for overage: non-negative, up to six decimals. Charged amounts
/// derived from it are rounded once with [`round_kopecks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnitPrice {
    amount: Decimal,
    currency: Currency,
}

impl UnitPrice {
    pub const MAX_DECIMALS: u32 = 6;

    pub fn parse(value: &serde_json::Value, currency: &serde_json::Value) -> Result<Self, MoneyError> {
        let text = value.as_str().ok_or(MoneyError::NotAString)?;
        let code = currency.as_str().ok_or_else(|| MoneyError::UnsupportedCurrency(currency.to_string()))?;
        let currency = Currency::parse(code)?;
        let amount = parse_decimal(text, Self::MAX_DECIMALS, false)?;
        Ok(UnitPrice { amount, currency })
    }

    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        if amount.is_sign_negative() {
            return Err(MoneyError::Negative(amount.to_string()));
        }
        if amount.normalize().scale() > Self::MAX_DECIMALS {
            return Err(MoneyError::BadFormat(amount.to_string(), Self::MAX_DECIMALS));
        }
        if amount > MAX_AMOUNT {
            return Err(MoneyError::TooLarge(amount.to_string()));
        }
        Ok(UnitPrice { amount, currency })
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// `quantity` units at this price, rounded once to kopecks.
    pub fn times(&self, quantity: i64) -> Money {
        Money::round(self.amount * Decimal::from(quantity), self.currency)
    }

    /// The contract's form: the value with at least two and at most six decimals
    /// (`"20.00"`, `"0.05"`, `"0.123456"`), which [`UnitPrice::parse`] reads back
    /// to exactly this price.
    pub fn view(&self) -> MoneyView {
        let mut amount = self.amount.normalize();
        if amount.scale() < 2 {
            amount.rescale(2);
        }
        MoneyView { value: amount.to_string(), currency: self.currency.code().to_owned() }
    }
}

/// Stored and shown as its [`MoneyView`].
impl Serialize for UnitPrice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.view().serialize(serializer)
    }
}

/// Read back strictly, as the API reads it: a value that does not parse is an
/// error, never a missing price.
impl<'de> Deserialize<'de> for UnitPrice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let input = MoneyInput::deserialize(deserializer)?;
        input.unit_price().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parse(v: serde_json::Value, c: &str) -> Result<Money, MoneyError> {
        Money::parse(&v, &json!(c))
    }

    #[test]
    fn accepts_exactly_two_decimals() {
        let m = parse(json!("690.00"), "RUB").unwrap();
        assert_eq!(m.amount(), Decimal::new(69000, 2));
        assert_eq!(m.value_string(), "690.00");
        assert_eq!(parse(json!("0.00"), "RUB").unwrap().value_string(), "0.00");
        assert_eq!(parse(json!("0.05"), "RUB").unwrap().value_string(), "0.05");
    }

    #[test]
    fn refuses_everything_else() {
        for (v, code) in [
            (json!(690), "invalid_money"),
            (json!(690.0), "invalid_money"),
            (json!("690"), "invalid_money"),
            (json!("690.0"), "invalid_money"),
            (json!("690.001"), "invalid_money"),
            (json!("-1.00"), "invalid_money"),
            (json!("1e3"), "invalid_money"),
            (json!(" 1.00"), "invalid_money"),
            (json!("01.00"), "invalid_money"),
            (json!("1,00"), "invalid_money"),
            (json!(".50"), "invalid_money"),
            (json!("99999999999999.00"), "invalid_money"),
            (json!(null), "invalid_money"),
        ] {
            let err = parse(v.clone(), "RUB").unwrap_err();
            assert_eq!(err.code(), code, "{v}");
        }
        assert!(matches!(parse(json!("-1.00"), "RUB"), Err(MoneyError::Negative(_))));
        assert_eq!(parse(json!("1.00"), "USD").unwrap_err().code(), "unsupported_currency");
        assert_eq!(parse(json!("1.00"), "rub").unwrap_err().code(), "unsupported_currency");
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round_kopecks(Decimal::new(12345, 3)), Decimal::new(1235, 2));
        assert_eq!(round_kopecks(Decimal::new(12344, 3)), Decimal::new(1234, 2));
        assert_eq!(round_kopecks(Decimal::new(-12345, 3)), Decimal::new(-1235, 2));
        assert_eq!(round_kopecks(Decimal::new(5, 3)), Decimal::new(1, 2));
        assert_eq!(round_kopecks(Decimal::new(7, 0)).to_string(), "7.00");
    }

    #[test]
    fn unit_prices_carry_up_to_six_decimals() {
        let p = UnitPrice::parse(&json!("0.123456"), &json!("RUB")).unwrap();
        assert_eq!(p.times(1000).value_string(), "123.46");
        assert_eq!(p.times(3).value_string(), "0.37");
        assert!(UnitPrice::parse(&json!("0.1234567"), &json!("RUB")).is_err());
        assert!(UnitPrice::parse(&json!(0.5), &json!("RUB")).is_err());
        assert_eq!(UnitPrice::parse(&json!("0.05"), &json!("RUB")).unwrap().view().value, "0.05");
    }

    #[test]
    fn whole_unit_prices_show_two_decimals_and_read_back() {
        // Alfa CRM's active clients at 20.00 each (issue: shown as "20", never billed).
        let p = UnitPrice::parse(&json!("20.00"), &json!("RUB")).unwrap();
        assert_eq!(p.view().value, "20.00");
        assert_eq!(UnitPrice::parse(&json!("20.5"), &json!("RUB")).unwrap().view().value, "20.50");
        let stored = serde_json::to_value(p).unwrap();
        assert_eq!(stored, json!({"value": "20.00", "currency": "RUB"}));
        assert_eq!(serde_json::from_value::<UnitPrice>(stored).unwrap(), p);
        assert!(serde_json::from_value::<UnitPrice>(json!({"value": "20", "currency": "RUB"})).is_err());
        assert!(serde_json::from_value::<UnitPrice>(json!({"value": 20, "currency": "RUB"})).is_err());
    }

    proptest! {
        #[test]
        fn two_decimal_strings_round_trip(kopecks in 0i64..100_000_000_000) {
            let d = Decimal::new(kopecks, 2);
            let text = format!("{d:.2}");
            let m = parse(json!(text), "RUB").unwrap();
            prop_assert_eq!(m.amount(), d);
            prop_assert_eq!(m.value_string(), text);
        }

        #[test]
        fn every_money_view_parses_back_to_itself(kopecks in 0i64..100_000_000_000) {
            let m = Money::rub(Decimal::new(kopecks, 2)).unwrap();
            let view = MoneyView::from(m);
            prop_assert_eq!(view.money().unwrap(), m);
            prop_assert_eq!(MoneyView::from(view.money().unwrap()), view);
        }

        #[test]
        fn every_unit_price_view_parses_back_to_itself(units in 0i64..1_000_000_000, scale in 0u32..=6) {
            let p = UnitPrice::new(Decimal::new(units, scale), Currency::Rub).unwrap();
            let view = p.view();
            let back = UnitPrice::parse(&json!(view.value), &json!(view.currency)).unwrap();
            prop_assert_eq!(back.amount(), p.amount());
            prop_assert_eq!(back.view(), view.clone());
            let stored = serde_json::to_value(p).unwrap();
            prop_assert_eq!(serde_json::from_value::<UnitPrice>(stored).unwrap().view(), view);
        }

        #[test]
        fn rounding_moves_at_most_half_a_kopeck(units in -1_000_000_000i64..1_000_000_000, scale in 0u32..8) {
            let d = Decimal::new(units, scale);
            let r = round_kopecks(d);
            prop_assert!((r - d).abs() <= Decimal::new(5, 3));
            prop_assert_eq!(r.scale(), 2);
            prop_assert_eq!(round_kopecks(r), r);
        }
    }
}
