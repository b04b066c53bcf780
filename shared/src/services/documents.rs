//! The PDF renditions of invoices and closing acts (A4, Cyrillic, `crate::pdf`),
//! laid out as Russian businesses expect them: the seller's bank details, the
//! parties, a numbered table of positions, the total with its VAT line and in
//! words; an act adds the period and the parties' signatures.

use chrono_tz::Tz;

use super::acts::ActView;
use super::invoices::InvoiceView;
use crate::domain::invoice::{Buyer, DocumentLine, Requisites, date_ru};
use crate::domain::money::MoneyView;
use crate::error::{ServiceError, ServiceResult};
use crate::pdf::{Align, Block, Column, render};

fn party(name: &str, inn: &str, kpp: Option<&str>, address: Option<&str>) -> String {
    let mut s = format!("{name}, ИНН {inn}");
    if let Some(k) = kpp {
        s.push_str(&format!(", КПП {k}"));
    }
    if let Some(a) = address {
        s.push_str(&format!(", {a}"));
    }
    s
}

fn seller_line(s: &Requisites) -> String {
    party(&s.name, &s.inn, s.kpp.as_deref(), Some(&s.address))
}

fn buyer_line(b: &Buyer) -> String {
    party(&b.name, &b.inn, b.kpp.as_deref(), b.address.as_deref())
}

fn rub(m: &MoneyView) -> String {
    format!("{} руб.", m.value)
}

/// The positions table: №, name, quantity, unit, price, sum.
fn positions(lines: &[DocumentLine]) -> Block {
    let columns = vec![
        Column { title: "№".into(), width_mm: 10.0, align: Align::Right },
        Column { title: "Наименование".into(), width_mm: 88.0, align: Align::Left },
        Column { title: "Кол-во".into(), width_mm: 20.0, align: Align::Right },
        Column { title: "Ед.".into(), width_mm: 12.0, align: Align::Left },
        Column { title: "Цена".into(), width_mm: 20.0, align: Align::Right },
        Column { title: "Сумма".into(), width_mm: 20.0, align: Align::Right },
    ];
    let rows = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let sum = format!("{:.2}", l.amount);
            vec![(i + 1).to_string(), l.name.clone(), "1".into(), "усл.".into(), sum.clone(), sum]
        })
        .collect();
    Block::Table { columns, rows }
}

fn totals(total: &MoneyView, vat_label: &str, vat: Option<&MoneyView>, words: &str, count: usize) -> Vec<Block> {
    let vat_value = vat.map_or_else(|| "—".to_owned(), rub);
    vec![
        Block::Fields(vec![
            ("Итого".into(), rub(total)),
            (vat_label.to_owned(), vat_value),
            ("Всего к оплате".into(), rub(total)),
        ]),
        Block::Paragraph(format!("Всего наименований {count}, на сумму {}", rub(total))),
        Block::Heading(words.to_owned()),
    ]
}

/// The last day a due instant (24:00 of that day) leaves for paying.
fn last_day(due_at: chrono::DateTime<chrono::Utc>, tz: Tz) -> String {
    date_ru(due_at - chrono::TimeDelta::seconds(1), tz)
}

fn rendered(title: &str, blocks: &[Block]) -> ServiceResult<Vec<u8>> {
    render(title, blocks).map_err(|e| ServiceError::Internal(format!("PDF: {e}")))
}

/// The invoice's PDF.
pub fn invoice_pdf(i: &InvoiceView, tz: Tz) -> ServiceResult<Vec<u8>> {
    let s = &i.seller;
    let title = format!("Счёт на оплату № {} от {}", i.number, date_ru(i.issued_at, tz));
    let mut blocks = vec![
        Block::Heading("Образец заполнения платёжного поручения".into()),
        Block::Fields(vec![
            ("Банк получателя".into(), s.bank_name.clone()),
            ("БИК".into(), s.bik.clone()),
            ("Сч. №".into(), s.correspondent_account.clone()),
            ("Получатель".into(), seller_line(s)),
            ("Сч. № получателя".into(), s.account.clone()),
        ]),
        Block::Space(4.0),
        Block::Title(title.clone()),
        Block::Space(2.0),
        Block::Fields(vec![
            ("Поставщик".into(), seller_line(s)),
            ("Покупатель".into(), buyer_line(&i.buyer)),
            ("Оплатить до".into(), format!("{} включительно", last_day(i.due_at, tz))),
        ]),
        Block::Space(3.0),
        positions(&i.lines),
    ];
    blocks.extend(totals(&i.total, &i.vat_label, i.vat_amount.as_ref(), &i.total_in_words, i.lines.len()));
    blocks.push(Block::Space(4.0));
    blocks.push(Block::Paragraph(format!(
        "В назначении платежа укажите номер счёта {}. Оплата счёта означает согласие с условиями оферты \
         и размером вознаграждения. Счёт действителен до {} включительно.",
        i.number,
        last_day(i.due_at, tz)
    )));
    rendered(&title, &blocks)
}

/// The closing act's PDF.
pub fn act_pdf(a: &ActView, tz: Tz) -> ServiceResult<Vec<u8>> {
    let title = format!("Акт № {} от {}", a.number, date_ru(a.issued_at, tz));
    let mut blocks = vec![
        Block::Title(title.clone()),
        Block::Paragraph("об оказании услуг".into()),
        Block::Space(2.0),
        Block::Fields(vec![
            ("Исполнитель".into(), seller_line(&a.seller)),
            ("Заказчик".into(), buyer_line(&a.buyer)),
            ("Период".into(), format!("{} – {}", date_ru(a.period_start, tz), date_ru(a.period_end, tz))),
        ]),
        Block::Space(3.0),
        positions(&a.lines),
    ];
    blocks.extend(totals(&a.total, &a.vat_label, a.vat_amount.as_ref(), &a.total_in_words, a.lines.len()));
    blocks.push(Block::Space(4.0));
    blocks.push(Block::Paragraph(
        "Вышеперечисленные услуги выполнены полностью и в срок. Заказчик претензий по объёму, качеству \
         и срокам оказания услуг не имеет."
            .into(),
    ));
    blocks.push(Block::Space(8.0));
    let signatory = a.seller.signatory.clone().unwrap_or_else(|| "Руководитель".into());
    blocks.push(Block::Fields(vec![
        ("Исполнитель".into(), format!("{signatory} ____________________")),
        ("Заказчик".into(), format!("{} ____________________", a.buyer.name)),
    ]));
    rendered(&title, &blocks)
}
