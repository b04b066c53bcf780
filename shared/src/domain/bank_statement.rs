//! Bank statements in the 1C exchange format (`1CClientBankExchange`, version 1.02
//! /1.03), as Russian banks export them: `key=value` lines; a header, account
//! sections (`СекцияРасчСчет` … `КонецРасчСчет`), one section per payment
//! document (`СекцияДокумент=Платежное поручение` … `КонецДокумента`) and
//! `КонецФайла`. The text is Windows-1251 (`Кодировка=Windows`) or DOS (866)
//! as the header says; UTF-8 is accepted too.
//!
//! Only what matching invoices needs is read from a document: its number and
//! date, amount, the payer's INN and name, the payee's INN and account, the
//! date the money arrived, and the payment's purpose.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::invoice::parse_date_ru;

/// One payment document of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 1-based position in the file (for reporting).
    pub index: usize,
    pub kind: String,
    pub number: String,
    pub date: Option<NaiveDate>,
    /// `None` when `Сумма` is missing or not an amount.
    pub amount: Option<Decimal>,
    pub payer_inn: String,
    pub payer: String,
    pub payee_inn: String,
    pub payee_account: String,
    /// `ДатаПоступило`: when the money reached the payee (incoming payments).
    pub received: Option<NaiveDate>,
    pub purpose: String,
}

/// Why a statement could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error("not a 1C bank statement: the first line must be 1CClientBankExchange")]
    NotAStatement,
    #[error("document {0} is not closed by КонецДокумента")]
    Unclosed(usize),
}

/// Decodes a statement's bytes: UTF-8 when they are valid UTF-8 (a
/// Windows-1251 or DOS text with Cyrillic practically never is), else by the
/// `Кодировка` header — DOS (866), or Windows-1251.
pub fn decode(bytes: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    // The header's key is Cyrillic; its value is ASCII.
    let head: String = bytes.iter().take(400).map(|b| if b.is_ascii() { char::from(*b) } else { ' ' }).collect();
    let encoding = if head.contains("=DOS") { encoding_rs::IBM866 } else { encoding_rs::WINDOWS_1251 };
    encoding.decode(bytes).0.into_owned()
}

/// Parses a statement's (decoded) text into its payment documents, in order.
pub fn parse(text: &str) -> Result<Vec<Document>, StatementError> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next().map(|l| l.trim_start_matches('\u{feff}')) != Some("1CClientBankExchange") {
        return Err(StatementError::NotAStatement);
    }
    let mut docs = Vec::new();
    let mut current: Option<Vec<(String, String)>> = None;
    let mut kind = String::new();
    for line in lines {
        let (key, value) = line.split_once('=').map_or((line, ""), |(k, v)| (k.trim(), v.trim()));
        match (key, current.as_mut()) {
            ("СекцияДокумент", None) => {
                kind = value.to_owned();
                current = Some(Vec::new());
            }
            ("КонецДокумента", Some(_)) => {
                let fields = current.take().unwrap_or_default();
                docs.push(document(docs.len() + 1, &kind, &fields));
            }
            ("СекцияДокумент" | "КонецФайла", Some(_)) => {
                return Err(StatementError::Unclosed(docs.len() + 1));
            }
            (_, Some(fields)) => fields.push((key.to_owned(), value.to_owned())),
            _ => {}
        }
    }
    if current.is_some() {
        return Err(StatementError::Unclosed(docs.len() + 1));
    }
    Ok(docs)
}

fn document(index: usize, kind: &str, fields: &[(String, String)]) -> Document {
    let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let amount =
        get("Сумма").replace(',', ".").parse::<Decimal>().ok().filter(|a| *a > Decimal::ZERO && a.scale() <= 2);
    Document {
        index,
        kind: kind.to_owned(),
        number: get("Номер"),
        date: parse_date_ru(&get("Дата")),
        amount,
        payer_inn: get("ПлательщикИНН"),
        payer: Some(get("Плательщик1")).filter(|p| !p.is_empty()).unwrap_or_else(|| get("Плательщик")),
        payee_inn: get("ПолучательИНН"),
        payee_account: get("ПолучательСчет"),
        received: parse_date_ru(&get("ДатаПоступило")),
        purpose: get("НазначениеПлатежа"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "1CClientBankExchange
ВерсияФормата=1.03
Кодировка=Windows
Отправитель=Бухгалтерия предприятия
ДатаНачала=01.03.2026
ДатаКонца=31.03.2026
РасчСчет=40702810900000000001
СекцияРасчСчет
ДатаНачала=01.03.2026
НачальныйОстаток=0.00
КонецРасчСчет
СекцияДокумент=Платежное поручение
Номер=512
Дата=06.03.2026
Сумма=9900.00
ПлательщикСчет=40702810100000000777
ПлательщикИНН=7701234567
Плательщик1=ООО \"Альфа\"
ПолучательСчет=40702810900000000001
ПолучательИНН=7704211201
ДатаПоступило=06.03.2026
НазначениеПлатежа=Оплата по счету № 2026-00001 от 05.03.2026. Без НДС
КонецДокумента
СекцияДокумент=Платежное поручение
Номер=77
Дата=07.03.2026
Сумма=15,5
ПлательщикИНН=7704211201
ПолучательИНН=7700000000
НазначениеПлатежа=Аренда
КонецДокумента
КонецФайла
";

    #[test]
    fn reads_payment_documents() {
        let docs = parse(SAMPLE).unwrap();
        assert_eq!(docs.len(), 2);
        let d = &docs[0];
        assert_eq!((d.index, d.kind.as_str(), d.number.as_str()), (1, "Платежное поручение", "512"));
        assert_eq!(d.amount, Some("9900.00".parse().unwrap()));
        assert_eq!((d.payer_inn.as_str(), d.payer.as_str()), ("7701234567", "ООО \"Альфа\""));
        assert_eq!((d.payee_inn.as_str(), d.payee_account.as_str()), ("7704211201", "40702810900000000001"));
        assert_eq!(d.received, NaiveDate::from_ymd_opt(2026, 3, 6));
        assert!(d.purpose.contains("2026-00001"));
        assert_eq!(docs[1].amount, Some("15.5".parse().unwrap()));
        assert_eq!(docs[1].received, None);
    }

    #[test]
    fn decodes_windows_1251_by_its_header() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(SAMPLE);
        let text = decode(&bytes);
        assert_eq!(parse(&text).unwrap()[0].payer, "ООО \"Альфа\"");
        assert_eq!(decode(SAMPLE.as_bytes()), SAMPLE, "UTF-8 naming Windows is still read as UTF-8");
        let dos_text = SAMPLE.replace("Кодировка=Windows", "Кодировка=DOS");
        let (dos, _, _) = encoding_rs::IBM866.encode(&dos_text);
        assert_eq!(parse(&decode(&dos)).unwrap()[0].payer, "ООО \"Альфа\"");
    }

    #[test]
    fn refuses_what_is_not_a_statement() {
        assert_eq!(parse("hello"), Err(StatementError::NotAStatement));
        assert_eq!(parse(""), Err(StatementError::NotAStatement));
        let unclosed = "1CClientBankExchange\nСекцияДокумент=Платежное поручение\nНомер=1\n";
        assert_eq!(parse(unclosed), Err(StatementError::Unclosed(1)));
        let bad_amount = "1CClientBankExchange\nСекцияДокумент=Платежное поручение\nСумма=abc\nКонецДокумента\n";
        assert_eq!(parse(bad_amount).unwrap()[0].amount, None);
    }
}
