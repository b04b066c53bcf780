//! What ATOL checks in an incoming document before accepting it (GATEWAYS.md §4):
//! required fields, closed lists (taxation systems, payment methods, VAT rates),
//! amounts read exactly from the JSON text with their scale, and totals that add
//! up. A refusal is ATOL's error 32 with the reason text.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use serde_json::value::RawValue;

const SNO: &[&str] = &["osn", "usn_income", "usn_income_outcome", "envd", "esn", "patent"];
const METHODS: &[&str] =
    &["full_prepayment", "prepayment", "advance", "full_payment", "partial_payment", "credit", "credit_payment"];
const VATS: &[&str] =
    &["none", "vat0", "vat10", "vat110", "vat20", "vat120", "vat5", "vat7", "vat105", "vat107", "vat22", "vat122"];

#[derive(Deserialize)]
pub(super) struct InDoc {
    external_id: Option<String>,
    timestamp: Option<String>,
    service: Option<InService>,
    receipt: Option<InReceipt>,
}

#[derive(Deserialize)]
struct InService {
    callback_url: Option<String>,
}

#[derive(Deserialize)]
struct InReceipt {
    client: Option<InClient>,
    company: Option<InCompany>,
    #[serde(default)]
    items: Vec<InItem>,
    #[serde(default)]
    payments: Vec<InPayment>,
    total: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct InClient {
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Deserialize)]
struct InCompany {
    email: Option<String>,
    sno: Option<String>,
    inn: Option<String>,
    payment_address: Option<String>,
}

#[derive(Deserialize)]
struct InItem {
    name: Option<String>,
    price: Option<Box<RawValue>>,
    quantity: Option<Box<RawValue>>,
    measure: Option<Box<RawValue>>,
    sum: Option<Box<RawValue>>,
    payment_method: Option<String>,
    payment_object: Option<Box<RawValue>>,
    vat: Option<InVat>,
}

#[derive(Deserialize)]
struct InVat {
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct InPayment {
    #[serde(rename = "type")]
    kind: Option<Box<RawValue>>,
    sum: Option<Box<RawValue>>,
}

/// A non-negative JSON number (never a string), with at most `scale` decimals.
fn decimal(raw: &Option<Box<RawValue>>, what: &str, scale: u32) -> Result<Decimal, String> {
    let text = raw.as_ref().map(|r| r.get()).ok_or_else(|| format!("{what}: обязательное поле"))?;
    let d: Decimal = text.parse().map_err(|_| format!("{what}: ожидается число, получено {text}"))?;
    if d.is_sign_negative() || d.normalize().scale() > scale {
        return Err(format!("{what}: недопустимое значение {text}"));
    }
    Ok(d)
}

/// A JSON integer within `range`.
fn integer(raw: &Option<Box<RawValue>>, what: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    let text = raw.as_ref().map(|r| r.get()).ok_or_else(|| format!("{what}: обязательное поле"))?;
    text.parse::<i64>()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{what}: недопустимое значение {text}"))
}

fn present<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str, String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| format!("{what}: обязательное поле"))
}

/// GATEWAYS.md §4 field rules; the receipt total on success.
pub(super) fn validate(doc: &InDoc) -> Result<Decimal, String> {
    present(&doc.external_id, "external_id")?;
    if let Some(service) = &doc.service {
        let url = present(&service.callback_url, "service.callback_url")?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(format!("service.callback_url: ожидается URL, получено {url}"));
        }
    }
    let ts = present(&doc.timestamp, "timestamp")?;
    if ts.len() != 19 || chrono::NaiveDateTime::parse_from_str(ts, "%d.%m.%Y %H:%M:%S").is_err() {
        return Err(format!("timestamp: ожидается формат dd.mm.yyyy HH:MM:SS, получено {ts}"));
    }
    let r = doc.receipt.as_ref().ok_or("receipt: обязательное поле")?;
    let client = r.client.as_ref().ok_or("receipt.client: обязательное поле")?;
    let email = client.email.as_deref().filter(|e| !e.is_empty());
    let phone = client.phone.as_deref().filter(|p| !p.is_empty());
    match (email, phone) {
        (None, None) => return Err("receipt.client: требуется email или phone".into()),
        (Some(e), _) if !e.contains('@') => return Err(format!("receipt.client.email: некорректный адрес {e}")),
        (_, Some(p)) if !(p.starts_with('+') && p.len() > 5 && p[1..].bytes().all(|b| b.is_ascii_digit())) => {
            return Err(format!("receipt.client.phone: ожидается формат +7…, получено {p}"));
        }
        _ => {}
    }
    let company = r.company.as_ref().ok_or("receipt.company: обязательное поле")?;
    present(&company.email, "receipt.company.email")?;
    present(&company.payment_address, "receipt.company.payment_address")?;
    let sno = present(&company.sno, "receipt.company.sno")?;
    if !SNO.contains(&sno) {
        return Err(format!("receipt.company.sno: недопустимое значение {sno}"));
    }
    let inn = present(&company.inn, "receipt.company.inn")?;
    if !(inn.len() == 10 || inn.len() == 12) || !inn.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("receipt.company.inn: ожидается 10 или 12 цифр, получено {inn}"));
    }
    if r.items.is_empty() || r.items.len() > 100 {
        return Err(format!("receipt.items: допускается от 1 до 100 позиций, получено {}", r.items.len()));
    }
    let mut items_sum = Decimal::ZERO;
    for (i, item) in r.items.iter().enumerate() {
        let at = |f: &str| format!("receipt.items[{i}].{f}");
        let name = present(&item.name, &at("name"))?;
        if name.chars().count() > 128 {
            return Err(format!("{}: не более 128 символов", at("name")));
        }
        let price = decimal(&item.price, &at("price"), 2)?;
        let quantity = decimal(&item.quantity, &at("quantity"), 6)?;
        let sum = decimal(&item.sum, &at("sum"), 2)?;
        integer(&item.measure, &at("measure"), 0..=255)?;
        let expected = (price * quantity).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        if quantity.is_zero() || sum != expected {
            return Err(format!("{}: {sum} не равна price × quantity = {expected}", at("sum")));
        }
        let method = present(&item.payment_method, &at("payment_method"))?;
        if !METHODS.contains(&method) {
            return Err(format!("{}: недопустимое значение {method}", at("payment_method")));
        }
        integer(&item.payment_object, &at("payment_object"), 1..=26)?;
        let vat = item.vat.as_ref().and_then(|v| v.kind.clone());
        let vat = present(&vat, &at("vat.type"))?;
        if !VATS.contains(&vat) {
            return Err(format!("{}: недопустимое значение {vat}", at("vat.type")));
        }
        items_sum += sum;
    }
    if r.payments.is_empty() || r.payments.len() > 10 {
        return Err(format!("receipt.payments: допускается от 1 до 10 оплат, получено {}", r.payments.len()));
    }
    let mut paid = Decimal::ZERO;
    for (i, p) in r.payments.iter().enumerate() {
        integer(&p.kind, &format!("receipt.payments[{i}].type"), 0..=9)?;
        paid += decimal(&p.sum, &format!("receipt.payments[{i}].sum"), 2)?;
    }
    let total = decimal(&r.total, "receipt.total", 2)?;
    if total != items_sum || total != paid {
        return Err(format!("receipt.total: {total} не равен сумме позиций {items_sum} и сумме оплат {paid}"));
    }
    Ok(total)
}
