//! 54-FZ receipt documents (SPEC §7, GATEWAYS.md §5), built as pure functions.
//!
//! A receipt carries the tenant's INN, taxation system and payment address, the
//! customer's e-mail, one item per charged thing (name, price, quantity, sum, VAT
//! type, settlement sign, payment object) and the payment total, paid by card
//! (cashless, payment type 1). The shape follows ATOL Online v5 (FFD 1.2), which
//! fiscal adapters map from; amounts are written as JSON numbers from the exact
//! decimals and read back exactly, never through `f64`.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::plan::PlanFiscal;
use super::tenant::{FiscalSettings, SettlementSign, VatType};

/// The longest item name a fiscal provider takes (ATOL: 128 characters).
const NAME_CHARS: usize = 128;

/// A receipt's document: what is registered with the fiscal provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptDocument {
    pub client: Client,
    pub company: Company,
    pub items: Vec<Item>,
    pub payments: Vec<Payment>,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub total: Decimal,
}

/// The buyer's contact: email or phone (`+7…`), at least one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub phone: Option<String>,
}

/// The seller (ATOL `company`): e-mail, taxation system, INN, payment address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub email: String,
    pub sno: String,
    pub inn: String,
    pub payment_address: String,
}

/// One position (ATOL `items[]`): name, price × quantity = sum, settlement sign
/// (`payment_method`), subject (`payment_object`) and VAT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub price: Decimal,
    #[serde(serialize_with = "number", deserialize_with = "exact")]
    pub quantity: Decimal,
    /// 0 = pieces.
    pub measure: u8,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub sum: Decimal,
    pub payment_method: String,
    pub payment_object: u8,
    pub vat: Vat,
}

/// A position's VAT rate (ATOL `vat.type`: `none`, `vat22`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vat {
    #[serde(rename = "type")]
    pub kind: String,
}

/// How the receipt was paid (ATOL `payments[]`): type 1 cashless, 2 prepayment
/// offset; the sum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    /// 1 = cashless, 2 = prepayment offset, ...
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(serialize_with = "money", deserialize_with = "exact")]
    pub sum: Decimal,
}

/// The fiscal attributes of a registered receipt (ATOL's `payload` of a done
/// report): fiscal document number, fiscal sign, storage number, time...;
/// numbers and strings are read tolerantly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FiscalAttributes {
    #[serde(serialize_with = "money_opt", deserialize_with = "exact_opt")]
    pub total: Option<Decimal>,
    pub fns_site: Option<String>,
    #[serde(deserialize_with = "text_opt")]
    pub fn_number: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub shift_number: Option<i64>,
    pub receipt_datetime: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_receipt_number: Option<i64>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_document_number: Option<i64>,
    #[serde(deserialize_with = "text_opt")]
    pub ecr_registration_number: Option<String>,
    #[serde(deserialize_with = "int_opt")]
    pub fiscal_document_attribute: Option<i64>,
    pub ofd_inn: Option<String>,
    pub ofd_receipt_url: Option<String>,
}

/// Why a receipt document cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("a fiscal setting has no wire name: {0}")]
    Setting(String),
    #[error("a refund of {amount} exceeds the payment's lines")]
    RefundExceedsLines { amount: Decimal },
}

/// An enum's wire name (its serde string).
fn wire_name<T: Serialize>(value: &T) -> Result<String, DocumentError> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        other => Err(DocumentError::Setting(format!("{other:?}"))),
    }
}

/// What a receipt records being paid (GATEWAYS.md §5), which sets its
/// settlement sign, payment type and, for an advance, subject and VAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Paid by card for what it buys: the tenant's settlement sign, cashless
    /// (payment type 1).
    Cashless,
    /// A top-up of the customer's prepaid money: the item is not defined yet, so
    /// `advance`, subject 10 (payment: «аванс, задаток, предоплата»), VAT at the
    /// calculated rate (22/122, ...), cashless.
    Advance,
    /// Paid from the prepaid money: the prepayment is offset (`full_payment`,
    /// payment type 2, «зачет аванса») with the tariff's own VAT and subject.
    PrepaymentOffset,
}

/// ATOL payment subject "payment" (аванс, задаток, предоплата).
const SUBJECT_PAYMENT: u8 = 10;

/// The calculated rate of a VAT rate, for advances (vat22 → vat122, ...).
fn calculated(vat: VatType) -> VatType {
    match vat {
        VatType::Vat5 => VatType::Vat105,
        VatType::Vat7 => VatType::Vat107,
        VatType::Vat10 => VatType::Vat110,
        VatType::Vat20 => VatType::Vat120,
        VatType::Vat22 => VatType::Vat122,
        other => other,
    }
}

/// The document of an income (or income refund) receipt: one item per charged
/// line `(name, sum)`, with the tenant's settings unless the plan overrides VAT
/// or the payment object, on `basis`.
pub fn document(
    fiscal: &FiscalSettings,
    overrides: Option<PlanFiscal>,
    email: &str,
    lines: &[(String, Decimal)],
    basis: Basis,
) -> Result<ReceiptDocument, DocumentError> {
    let vat = overrides.and_then(|o| o.vat).unwrap_or(fiscal.vat);
    let payment_object = overrides.and_then(|o| o.payment_object).unwrap_or(fiscal.payment_object);
    let (sign, vat, payment_object, payment_kind) = match basis {
        Basis::Cashless => (fiscal.settlement_sign, vat, payment_object, 1),
        Basis::Advance => (SettlementSign::Advance, calculated(vat), SUBJECT_PAYMENT, 1),
        Basis::PrepaymentOffset => (SettlementSign::FullPayment, vat, payment_object, 2),
    };
    let payment_method = wire_name(&sign)?;
    let vat = Vat { kind: wire_name(&vat)? };
    let items = lines
        .iter()
        .map(|(name, sum)| Item {
            name: name.chars().take(NAME_CHARS).collect(),
            price: *sum,
            quantity: Decimal::ONE,
            measure: 0,
            sum: *sum,
            payment_method: payment_method.clone(),
            payment_object,
            vat: vat.clone(),
        })
        .collect::<Vec<_>>();
    let total: Decimal = lines.iter().map(|(_, s)| *s).sum();
    Ok(ReceiptDocument {
        client: Client { email: Some(email.to_owned()), phone: None },
        company: Company {
            email: fiscal.email.clone(),
            sno: wire_name(&fiscal.sno)?,
            inn: fiscal.inn.clone(),
            payment_address: fiscal.payment_address.clone(),
        },
        items,
        payments: vec![Payment { kind: payment_kind, sum: total }],
        total,
    })
}

/// The lines a receipt records of a payment that took `discount` from cashback:
/// cashback is the seller's own money given back, so the tariff lines it paid
/// (in order) are receipted net of it, like a discount; lines left at zero are
/// dropped.
pub fn net_of_cashback(lines: &[(String, Decimal)], tariff: &[bool], discount: Decimal) -> Vec<(String, Decimal)> {
    let mut left = discount;
    let mut out = Vec::with_capacity(lines.len());
    for (i, (name, sum)) in lines.iter().enumerate() {
        let off = if tariff.get(i).copied().unwrap_or(false) { (*sum).min(left) } else { Decimal::ZERO };
        left -= off;
        if *sum - off > Decimal::ZERO {
            out.push((name.clone(), *sum - off));
        }
    }
    out
}

/// A refund's lines: refunds take the payment's `lines` in order, each up to its
/// sum, so a refund of `amount` after `earlier` refunded takes what follows them.
pub fn refund_lines(
    lines: &[(String, Decimal)],
    earlier: Decimal,
    amount: Decimal,
) -> Result<Vec<(String, Decimal)>, DocumentError> {
    let mut skip = earlier;
    let mut left = amount;
    let mut out = Vec::new();
    for (name, sum) in lines {
        let skipped = (*sum).min(skip);
        skip -= skipped;
        let part = (*sum - skipped).min(left);
        if part.is_zero() {
            continue;
        }
        left -= part;
        out.push((name.clone(), part));
    }
    if !left.is_zero() {
        return Err(DocumentError::RefundExceedsLines { amount });
    }
    Ok(out)
}

fn money<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    let text = format!("{:.2}", v.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero));
    RawValue::from_string(text).map_err(serde::ser::Error::custom)?.serialize(s)
}

fn money_opt<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => money(v, s),
        None => s.serialize_none(),
    }
}

fn number<S: Serializer>(v: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    RawValue::from_string(v.to_string()).map_err(serde::ser::Error::custom)?.serialize(s)
}

/// The raw JSON text of a number (or of a string holding one), without quotes.
fn unquote(raw: &RawValue) -> Result<String, serde_json::Error> {
    let text = raw.get().trim();
    if text.starts_with('"') { serde_json::from_str(text) } else { Ok(text.to_owned()) }
}

fn parse_exact(raw: &RawValue) -> Result<Decimal, String> {
    let text = unquote(raw).map_err(|e| e.to_string())?;
    text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text)).map_err(|e| format!("{text}: {e}"))
}

fn exact<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    parse_exact(&Box::<RawValue>::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn exact_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    raw.map(|r| parse_exact(&r)).transpose().map_err(serde::de::Error::custom)
}

/// Tolerant: a string or a bare number.
fn text_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw = Option::<Box<RawValue>>::deserialize(d)?;
    raw.map(|r| unquote(&r)).transpose().map_err(serde::de::Error::custom)
}

/// Tolerant: a number or a string holding one; an empty string is none.
pub(crate) fn int_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(text) = text_opt(d)?.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    text.parse().map(Some).map_err(|e| serde::de::Error::custom(format!("{text}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::tenant::{FiscalProvider, SettlementSign, TaxationSystem, VatType};

    fn settings(vat: VatType, object: u8) -> FiscalSettings {
        FiscalSettings {
            inn: "7700000000".into(),
            sno: TaxationSystem::UsnIncome,
            vat,
            settlement_sign: SettlementSign::FullPrepayment,
            payment_object: object,
            payment_address: "https://seller.ru".into(),
            email: "billing@seller.ru".into(),
            provider: FiscalProvider {
                login: "l".into(),
                password: crate::domain::secret::Secret::new("p"),
                group_code: "g".into(),
                api_url: None,
            },
        }
    }

    #[test]
    fn refunds_take_the_lines_in_order_after_earlier_refunds() {
        let d = |v: i64| Decimal::new(v, 2);
        let lines = [("Тариф".to_owned(), d(100000)), ("Сообщения сверх лимита".to_owned(), d(50000))];
        assert_eq!(refund_lines(&lines, d(0), d(40000)).unwrap(), vec![("Тариф".to_owned(), d(40000))]);
        assert_eq!(
            refund_lines(&lines, d(80000), d(40000)).unwrap(),
            vec![("Тариф".to_owned(), d(20000)), ("Сообщения сверх лимита".to_owned(), d(20000))]
        );
        assert!(refund_lines(&lines, d(120000), d(40000)).is_err());
    }

    #[test]
    fn a_plan_override_wins_over_the_tenant() {
        let lines = [("Подписка Pro, 1 мес".to_owned(), Decimal::new(99000, 2))];
        let doc = document(&settings(VatType::Vat22, 4), None, "a@b.ru", &lines, Basis::Cashless).unwrap();
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("vat22", 4));
        let licence = PlanFiscal { vat: Some(VatType::None), payment_object: Some(9) };
        let doc = document(&settings(VatType::Vat22, 4), Some(licence), "a@b.ru", &lines, Basis::Cashless).unwrap();
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("none", 9));
        assert_eq!(doc.company.sno, "usn_income");
        assert_eq!(doc.items[0].payment_method, "full_prepayment");
        assert_eq!(doc.payments, vec![Payment { kind: 1, sum: Decimal::new(99000, 2) }]);
        assert_eq!(doc.total, Decimal::new(99000, 2));
    }

    #[test]
    fn a_top_up_is_an_advance_and_a_balance_payment_offsets_it() {
        let lines = [("Пополнение лицевого счета".to_owned(), Decimal::new(200000, 2))];
        let doc = document(&settings(VatType::Vat22, 4), None, "a@b.ru", &lines, Basis::Advance).unwrap();
        assert_eq!(doc.items[0].payment_method, "advance");
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("vat122", 10));
        assert_eq!(doc.payments, vec![Payment { kind: 1, sum: Decimal::new(200000, 2) }]);
        let doc = document(&settings(VatType::None, 4), None, "a@b.ru", &lines, Basis::Advance).unwrap();
        assert_eq!(doc.items[0].vat.kind, "none");
        let tariff = [("Тариф PRO".to_owned(), Decimal::new(139000, 2))];
        let doc = document(&settings(VatType::Vat22, 4), None, "a@b.ru", &tariff, Basis::PrepaymentOffset).unwrap();
        assert_eq!(doc.items[0].payment_method, "full_payment");
        assert_eq!((doc.items[0].vat.kind.as_str(), doc.items[0].payment_object), ("vat22", 4));
        assert_eq!(doc.payments, vec![Payment { kind: 2, sum: Decimal::new(139000, 2) }]);
    }

    #[test]
    fn cashback_is_receipted_as_a_discount_of_the_tariff() {
        let d = |v: i64| Decimal::new(v, 2);
        let lines = [("Тариф".to_owned(), d(139000)), ("Сверх лимита".to_owned(), d(5000))];
        assert_eq!(
            net_of_cashback(&lines, &[true, false], d(6950)),
            vec![("Тариф".to_owned(), d(132050)), ("Сверх лимита".to_owned(), d(5000))]
        );
        assert_eq!(net_of_cashback(&lines, &[true, false], d(139000)), vec![("Сверх лимита".to_owned(), d(5000))]);
        assert_eq!(net_of_cashback(&lines, &[true, false], d(0)).len(), 2);
    }

    #[test]
    fn long_names_are_cut_to_what_the_provider_takes() {
        let lines = [("Я".repeat(300), Decimal::new(100, 2))];
        let doc = document(&settings(VatType::None, 4), None, "a@b.ru", &lines, Basis::Cashless).unwrap();
        assert_eq!(doc.items[0].name.chars().count(), 128);
    }

    #[test]
    fn amounts_are_exact_numbers() {
        let item = Item {
            name: "x".into(),
            price: Decimal::new(1234567, 3),
            quantity: Decimal::new(1500, 3),
            measure: 0,
            sum: Decimal::new(10, 1),
            payment_method: "full_payment".into(),
            payment_object: 4,
            vat: Vat { kind: "none".into() },
        };
        let json = serde_json::to_string(&item).unwrap();
        assert!(json.contains(r#""price":1234.57,"quantity":1.500,"measure":0,"sum":1.00,"#), "{json}");
        let back: Item = serde_json::from_str(&json.replace("1234.57", "0.10000000000000001")).unwrap();
        assert_eq!(back.price.to_string(), "0.10000000000000001");
        let quoted: Payment = serde_json::from_str(r#"{"type":2,"sum":"990.50"}"#).unwrap();
        assert_eq!(quoted.sum, Decimal::new(99050, 2));
    }
}
