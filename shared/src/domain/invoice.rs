//! Invoices for bank transfer and closing acts (SPEC §8; SellerGPT 3.1.2 «Направлять
//! Пользователю счета и акты», Alfa CRM 5.3 «100% вознаграждения, указанного в
//! выставленном ... счете ... безналичного перечисления»): the seller's
//! requisites, the buyer, numbering, the VAT line, the amount in words, due
//! dates and how a bank payment's purpose names an invoice.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::money::round_kopecks;
use super::period::{local_date, resolve_local};
use super::tenant::VatType;

/// The seller's requisites (tenant settings `requisites`), printed on invoices
/// and acts. Accounts are Russian bank details: 20-digit settlement and
/// correspondent accounts, 9-digit BIK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Requisites {
    /// Full legal name, e.g. «ООО "Селлер"».
    pub name: String,
    /// 10 digits (a company) or 12 (an individual entrepreneur).
    pub inn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ogrn: Option<String>,
    pub address: String,
    pub bank_name: String,
    pub bik: String,
    /// Расчетный счет.
    pub account: String,
    /// Корреспондентский счет.
    pub correspondent_account: String,
    /// Who signs acts, e.g. «Генеральный директор Иванов И. И.».
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatory: Option<String>,
    /// VAT on invoices and acts: `none` («Без НДС») or a rate such as `vat22`.
    #[serde(default = "no_vat")]
    pub vat: VatType,
    /// Days an invoice may be paid in (1..90, default 5): it is due at the end of
    /// the last one, in the tenant's zone.
    #[serde(default = "default_due_days")]
    pub invoice_due_days: u32,
}

fn no_vat() -> VatType {
    VatType::None
}

fn default_due_days() -> u32 {
    5
}

fn digits(s: &str, n: &[usize]) -> bool {
    n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

impl Requisites {
    pub fn validate(&self) -> Result<(), String> {
        for (what, v) in [("name", &self.name), ("address", &self.address), ("bank_name", &self.bank_name)] {
            if v.trim().is_empty() || v.chars().count() > 300 {
                return Err(format!("requisites.{what} must be 1..300 characters"));
            }
        }
        if !digits(&self.inn, &[10, 12]) {
            return Err("requisites.inn must be 10 or 12 digits".into());
        }
        if self.kpp.as_deref().is_some_and(|k| !digits(k, &[9])) {
            return Err("requisites.kpp must be 9 digits".into());
        }
        if self.ogrn.as_deref().is_some_and(|o| !digits(o, &[13, 15])) {
            return Err("requisites.ogrn must be 13 or 15 digits".into());
        }
        if !digits(&self.bik, &[9]) {
            return Err("requisites.bik must be 9 digits".into());
        }
        if !digits(&self.account, &[20]) || !digits(&self.correspondent_account, &[20]) {
            return Err("requisites.account and correspondent_account must be 20 digits".into());
        }
        if !(1..=90).contains(&self.invoice_due_days) {
            return Err("requisites.invoice_due_days must be 1..90".into());
        }
        Ok(())
    }
}

/// The buyer of an invoice: a customer's `legal_entity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Buyer {
    pub name: String,
    pub inn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// One position of an invoice or act.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DocumentLine {
    pub name: String,
    #[schema(value_type = String)]
    pub amount: Decimal,
}

/// A document number: the year and its sequence, `2026-00001`.
pub fn number(year: i32, seq: i32) -> String {
    format!("{year:04}-{seq:05}")
}

/// The year a document issued at `at` is numbered in (the tenant's zone).
pub fn numbering_year(at: DateTime<Utc>, tz: Tz) -> i32 {
    local_date(tz, at).year()
}

/// When an invoice issued at `at` is due: the end (24:00) of the `days`-th day
/// after its local date.
pub fn due_at(at: DateTime<Utc>, days: u32, tz: Tz) -> DateTime<Utc> {
    let last = local_date(tz, at) + chrono::Days::new(u64::from(days) + 1);
    resolve_local(tz, last.and_time(chrono::NaiveTime::MIN))
}

/// `dd.mm.yyyy` of an instant in the tenant's zone.
pub fn date_ru(at: DateTime<Utc>, tz: Tz) -> String {
    local_date(tz, at).format("%d.%m.%Y").to_string()
}

/// The VAT line under a total: «Без НДС», or «В том числе НДС 22%» with the tax
/// included in `total` (`total × rate / (100 + rate)`, rounded once).
pub fn vat_line(total: Decimal, vat: VatType) -> (String, Option<Decimal>) {
    let rate = match vat {
        VatType::Vat5 | VatType::Vat105 => 5,
        VatType::Vat7 | VatType::Vat107 => 7,
        VatType::Vat10 | VatType::Vat110 => 10,
        VatType::Vat20 | VatType::Vat120 => 20,
        VatType::Vat22 | VatType::Vat122 => 22,
        VatType::Vat0 => return ("НДС 0%".into(), Some(Decimal::ZERO)),
        VatType::None => return ("Без НДС".into(), None),
    };
    let tax = round_kopecks(total * Decimal::from(rate) / Decimal::from(100 + rate));
    (format!("В том числе НДС {rate}%"), Some(tax))
}

/// Invoice numbers (`YYYY-NNNNN`) a payment's purpose mentions, in order.
pub fn numbers_in(purpose: &str) -> Vec<String> {
    let chars: Vec<char> = purpose.chars().collect();
    let mut out = Vec::new();
    let is_digit = |i: usize| chars.get(i).is_some_and(char::is_ascii_digit);
    let mut i = 0;
    while i + 10 <= chars.len() {
        let shape = (0..4).all(|k| is_digit(i + k)) && chars[i + 4] == '-' && (5..10).all(|k| is_digit(i + k));
        let bounded = (i == 0 || !is_digit(i - 1)) && !is_digit(i + 10);
        if shape && bounded {
            out.push(chars[i..i + 10].iter().collect());
            i += 10;
        } else {
            i += 1;
        }
    }
    out
}

const ONES: [[&str; 10]; 2] = [
    ["", "один", "два", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"],
    ["", "одна", "две", "три", "четыре", "пять", "шесть", "семь", "восемь", "девять"],
];
const TEENS: [&str; 10] = [
    "десять",
    "одиннадцать",
    "двенадцать",
    "тринадцать",
    "четырнадцать",
    "пятнадцать",
    "шестнадцать",
    "семнадцать",
    "восемнадцать",
    "девятнадцать",
];
const TENS: [&str; 10] =
    ["", "", "двадцать", "тридцать", "сорок", "пятьдесят", "шестьдесят", "семьдесят", "восемьдесят", "девяносто"];
const HUNDREDS: [&str; 10] =
    ["", "сто", "двести", "триста", "четыреста", "пятьсот", "шестьсот", "семьсот", "восемьсот", "девятьсот"];

/// The Russian noun form for `n`: (one, few, many), e.g. рубль/рубля/рублей.
fn plural(n: u64, forms: [&str; 3]) -> &str {
    match (n % 100, n % 10) {
        (11..=14, _) => forms[2],
        (_, 1) => forms[0],
        (_, 2..=4) => forms[1],
        _ => forms[2],
    }
}

/// Words of 1..999 (`feminine` for thousands).
fn triad(n: u64, feminine: bool) -> Vec<&'static str> {
    let (h, t, o) = ((n / 100) as usize, ((n / 10) % 10) as usize, (n % 10) as usize);
    let mut w = vec![HUNDREDS[h]];
    if t == 1 {
        w.push(TEENS[o]);
    } else {
        w.push(TENS[t]);
        w.push(ONES[usize::from(feminine)][o]);
    }
    w.into_iter().filter(|s| !s.is_empty()).collect()
}

/// An amount in words, as printed under an invoice's total: «Одна тысяча триста
/// девяносто рублей 00 копеек». Amounts are whole rubles and two-digit kopecks
/// (up to 999 999 999 999.99).
pub fn amount_in_words(amount: Decimal) -> String {
    let amount = round_kopecks(amount.abs());
    let rubles = amount.trunc().to_u64().unwrap_or(0);
    let kopecks = ((amount - amount.trunc()) * Decimal::ONE_HUNDRED).to_u64().unwrap_or(0);
    let scales: [([&str; 3], bool); 3] = [
        (["миллиард", "миллиарда", "миллиардов"], false),
        (["миллион", "миллиона", "миллионов"], false),
        (["тысяча", "тысячи", "тысяч"], true),
    ];
    let mut words: Vec<&str> = Vec::new();
    for (i, (forms, feminine)) in scales.iter().enumerate() {
        let part = (rubles / 1000u64.pow(3 - i as u32)) % 1000;
        if part > 0 {
            words.extend(triad(part, *feminine));
            words.push(plural(part, *forms));
        }
    }
    let units = rubles % 1000;
    words.extend(triad(units, false));
    if rubles == 0 {
        words.push("ноль");
    }
    let text = format!(
        "{} {} {kopecks:02} {}",
        words.join(" "),
        plural(rubles, ["рубль", "рубля", "рублей"]),
        plural(kopecks, ["копейка", "копейки", "копеек"])
    );
    let mut c = text.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

/// The date a bank statement's `dd.mm.yyyy` names.
pub fn parse_date_ru(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text.trim(), "%d.%m.%Y").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_read_in_words() {
        assert_eq!(amount_in_words(d("1390.00")), "Одна тысяча триста девяносто рублей 00 копеек");
        assert_eq!(amount_in_words(d("21.01")), "Двадцать один рубль 01 копейка");
        assert_eq!(amount_in_words(d("2.45")), "Два рубля 45 копеек");
        assert_eq!(amount_in_words(d("0.50")), "Ноль рублей 50 копеек");
        assert_eq!(amount_in_words(d("112.00")), "Сто двенадцать рублей 00 копеек");
        assert_eq!(amount_in_words(d("2002014.00")), "Два миллиона две тысячи четырнадцать рублей 00 копеек");
        assert_eq!(amount_in_words(d("1000000000.00")), "Один миллиард рублей 00 копеек");
    }

    #[test]
    fn vat_is_included_in_the_total_or_absent() {
        assert_eq!(vat_line(d("1220.00"), VatType::Vat22), ("В том числе НДС 22%".into(), Some(d("220.00"))));
        assert_eq!(vat_line(d("990.00"), VatType::Vat20), ("В том числе НДС 20%".into(), Some(d("165.00"))));
        assert_eq!(vat_line(d("990.00"), VatType::None), ("Без НДС".into(), None));
    }

    #[test]
    fn purposes_name_invoices_by_number() {
        assert_eq!(numbers_in("Оплата по счету № 2026-00012 от 05.03.2026, без НДС"), ["2026-00012"]);
        assert_eq!(numbers_in("счета 2026-00001 и 2026-00002"), ["2026-00001", "2026-00002"]);
        assert!(numbers_in("договор 12026-000011 и 2026-0001").is_empty());
        assert!(numbers_in("").is_empty());
    }

    #[test]
    fn numbers_and_due_dates_follow_the_tenants_calendar() {
        let tz = chrono_tz::Europe::Moscow;
        let at: DateTime<Utc> = "2026-12-31T22:30:00Z".parse().unwrap(); // 01:30 on Jan 1 in Moscow
        assert_eq!(numbering_year(at, tz), 2027);
        assert_eq!(number(2027, 1), "2027-00001");
        assert_eq!(due_at(at, 5, tz), "2027-01-06T21:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert_eq!(date_ru(at, tz), "01.01.2027");
    }

    #[test]
    fn requisites_are_checked() {
        let ok = Requisites {
            name: "ООО \"Селлер\"".into(),
            inn: "7704211201".into(),
            kpp: Some("770401001".into()),
            ogrn: None,
            address: "Москва".into(),
            bank_name: "АО «Банк»".into(),
            bik: "044525225".into(),
            account: "40702810900000000001".into(),
            correspondent_account: "30101810400000000225".into(),
            signatory: None,
            vat: VatType::None,
            invoice_due_days: 5,
        };
        assert!(ok.validate().is_ok());
        assert!(Requisites { bik: "12345".into(), ..ok.clone() }.validate().is_err());
        assert!(Requisites { account: "4070281090000000000A".into(), ..ok.clone() }.validate().is_err());
        assert!(Requisites { invoice_due_days: 0, ..ok.clone() }.validate().is_err());
        assert!(Requisites { inn: "123".into(), ..ok }.validate().is_err());
    }
}
