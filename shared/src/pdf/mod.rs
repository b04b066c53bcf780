//! Minimal PDF rendering for Russian business documents (счёт на оплату, акт).
//!
//! A document is a list of [`Block`]s laid out top to bottom on A4 portrait pages with 20 mm
//! margins, in the bundled DejaVu Sans (regular and bold, full Cyrillic), body text 10 pt,
//! with automatic page breaks. [`render`] returns the PDF bytes.
//!
//! Text is measured with the font's real glyph advances and wrapped greedily at spaces (and
//! between characters inside words longer than the available width); there is no hyphenation,
//! kerning, justification or complex-script shaping. Characters missing from DejaVu Sans are
//! shown as its `.notdef` box. Each document embeds only the glyphs it uses (subset fonts), so a
//! typical invoice is tens of kilobytes.
//!
//! Built on `printpdf` without its default (HTML/`text_layout`) features; `font` parses the
//! bundled faces with `ttf-parser` and subsets them with `allsorts`, `layout` places text.

mod font;
mod layout;

use std::collections::BTreeSet;

use printpdf::{
    Color, FontId, Greyscale, Line, LinePoint, Mm, OffsetDateTime, Op, PdfDocument, PdfFontHandle, PdfPage,
    PdfSaveOptions, Point, Pt, TextItem,
};

use self::font::{Fonts, Style};
use self::layout::{Item, PAGE_HEIGHT_MM, PAGE_WIDTH_MM};

/// A block of an A4 portrait document, laid out top to bottom.
///
/// Every block except [`Block::Space`] is followed by a 2 mm gap. Text in every block wraps to
/// the width available to it; `\n` starts a new line.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// Large bold line, 14 pt (e.g. "Счёт на оплату № 2026-00001 от 05.03.2026").
    Title(String),
    /// Bold line, 11 pt.
    Heading(String),
    /// Regular 10 pt text, wrapped to the page width; breaks between pages at line boundaries.
    Paragraph(String),
    /// "label: value" lines, 10 pt: labels bold (a colon is appended to non-empty labels) in a
    /// column as wide as the widest label (at most 40% of the content width; longer labels wrap),
    /// values wrapped in the rest of the width.
    /// A field moves to the next page whole unless it is taller than a page.
    Fields(Vec<(String, String)>),
    /// A table with a bold header row and body rows, 10 pt, with thin cell borders.
    ///
    /// Each row has one cell per column (missing cells are empty, extra cells are ignored). Cell
    /// text wraps within its column. Rows never split across pages: a row that does not fit
    /// moves to the next page whole and the header repeats there. The only exception is a row
    /// taller than a whole page, which is split line by line (header repeated on each page).
    /// A table without columns draws nothing.
    Table {
        /// Column definitions, left to right.
        columns: Vec<Column>,
        /// Body rows, top to bottom; each a list of cell texts, left to right.
        rows: Vec<Vec<String>>,
    },
    /// Vertical space in mm. Zero, negative or non-finite values are ignored; space that does
    /// not fit on the current page ends the page (the rest is not carried over), and at the top
    /// of a page such space is ignored.
    Space(f32),
}

/// One table column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header text (bold, wraps within the column).
    pub title: String,
    /// Width in mm, including 1.5 mm padding on each side. Negative or non-finite widths count
    /// as 0. If the widths add up to more than the 170 mm content width they are scaled down
    /// proportionally; if they are all 0 the content width is shared equally.
    pub width_mm: f32,
    /// Horizontal alignment of the header and body text in this column.
    pub align: Align,
}

/// Horizontal alignment of text in a table column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// Flush left (text columns).
    #[default]
    Left,
    /// Flush right (amounts, quantities).
    Right,
}

/// Rendering failed: the bundled font could not be parsed or prepared for embedding, or the
/// PDF could not be serialized. Not expected in practice (the fonts are compiled in).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PDF rendering failed: {0}")]
pub struct PdfError(String);

impl PdfError {
    fn new(message: String) -> Self {
        Self(message)
    }
}

/// Stroke width of table borders, pt.
const RULE_WIDTH_PT: f32 = 0.5;
/// Grey level of table borders (0 = black, 1 = white).
const RULE_GREY: f32 = 0.35;

/// Renders `blocks` as an A4 portrait PDF (20 mm margins, DejaVu Sans 10 pt body text,
/// automatic page breaks) with document title `title`, and returns the PDF file bytes.
///
/// The Info dictionary carries `title` and the current UTC time as creation and modification
/// date. An empty `blocks` gives a single blank page. Synchronous and CPU-only (roughly a few
/// milliseconds per page in release builds); call it via `spawn_blocking` for long documents.
///
/// # Errors
/// [`PdfError`] if the bundled font cannot be parsed or the PDF cannot be serialized (neither is
/// expected: the fonts are compiled in and the output goes to memory).
pub fn render(title: &str, blocks: &[Block]) -> Result<Vec<u8>, PdfError> {
    let fonts = Fonts::load()?;
    let pages = layout::layout(&fonts, blocks);
    let mut doc = PdfDocument::new(title);
    let now = OffsetDateTime::now_utc();
    doc.metadata.info.creation_date = now;
    doc.metadata.info.modification_date = now;
    let regular = add_font(&mut doc, &fonts, &pages, Style::Regular)?;
    let bold = add_font(&mut doc, &fonts, &pages, Style::Bold)?;
    let pdf_pages: Vec<PdfPage> = pages
        .into_iter()
        .map(|items| PdfPage::new(Mm(PAGE_WIDTH_MM), Mm(PAGE_HEIGHT_MM), page_ops(items, &regular, &bold)))
        .collect();
    serialize(doc.with_pages(pdf_pages))
}

/// Serializes `doc` like [`PdfDocument::save`], plus two fixes on the way out: every stream
/// is Flate-compressed (printpdf 0.9 writes content and font streams raw, which makes files
/// about 4 times larger), and the empty `GTS_PDFXVersion` entry that printpdf puts in the Info
/// dictionary is dropped (it made readers report the file as PDF/X).
fn serialize(doc: &PdfDocument) -> Result<Vec<u8>, PdfError> {
    let mut warnings = Vec::new();
    let mut pdf = doc.to_lopdf_document(&PdfSaveOptions::default(), &mut warnings);
    for warning in &warnings {
        tracing::debug!(?warning, "printpdf warning");
    }
    for object in pdf.objects.values_mut() {
        // printpdf marks only embedded font programs as not to be compressed. Flate is valid for
        // them; `Length1` records the decoded length that TrueType font files should declare.
        if let Ok(stream) = object.as_stream_mut()
            && !stream.allows_compression
        {
            stream.dict.set("Length1", i64::try_from(stream.content.len()).unwrap_or(i64::MAX));
            stream.allows_compression = true;
        }
    }
    pdf.compress();
    if let Ok(info) = pdf.trailer.get(b"Info").and_then(|info| info.as_reference())
        && let Ok(info) = pdf.get_object_mut(info).and_then(|info| info.as_dict_mut())
    {
        info.remove(b"GTS_PDFXVersion");
    }
    let mut bytes = Vec::new();
    pdf.save_to(&mut bytes).map_err(|e| PdfError::new(format!("cannot serialize the PDF: {e}")))?;
    Ok(bytes)
}

/// Embeds the glyphs of `style` that `pages` use; `None` when the style is not used at all.
fn add_font(
    doc: &mut PdfDocument,
    fonts: &Fonts,
    pages: &[Vec<Item>],
    style: Style,
) -> Result<Option<FontId>, PdfError> {
    let used: BTreeSet<char> = pages
        .iter()
        .flatten()
        .filter_map(|item| match item {
            Item::Text { style: s, text, .. } if *s == style => Some(text.chars()),
            _ => None,
        })
        .flatten()
        .collect();
    if used.is_empty() {
        return Ok(None);
    }
    Ok(Some(doc.add_font(&fonts.get(style).embed(&used)?)))
}

/// Converts one page's items into printpdf operations.
fn page_ops(items: Vec<Item>, regular: &Option<FontId>, bold: &Option<FontId>) -> Vec<Op> {
    let mut ops = vec![
        Op::SetOutlineThickness { pt: Pt(RULE_WIDTH_PT) },
        Op::SetOutlineColor { col: Color::Greyscale(Greyscale::new(RULE_GREY, None)) },
    ];
    for item in items {
        match item {
            Item::Text { x, baseline, style, size_pt, text } => {
                let font = match style {
                    Style::Regular => regular,
                    Style::Bold => bold,
                };
                // Always `Some` for a style that has text; skipping is the safe fallback.
                let Some(font) = font else { continue };
                ops.extend([
                    Op::StartTextSection,
                    Op::SetFont { font: PdfFontHandle::External(font.clone()), size: Pt(size_pt) },
                    Op::SetTextCursor { pos: Point::new(Mm(x), Mm(baseline)) },
                    Op::ShowText { items: vec![TextItem::Text(text)] },
                    Op::EndTextSection,
                ]);
            }
            Item::Rule { x1, y1, x2, y2 } => {
                let point = |x, y| LinePoint { p: Point::new(Mm(x), Mm(y)), bezier: false };
                ops.push(Op::DrawLine { line: Line { points: vec![point(x1, y1), point(x2, y2)], is_closed: false } });
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice_blocks(rows: usize) -> Vec<Block> {
        let columns = vec![
            Column { title: "№".into(), width_mm: 10.0, align: Align::Right },
            Column { title: "Товары (работы, услуги)".into(), width_mm: 80.0, align: Align::Left },
            Column { title: "Кол-во".into(), width_mm: 20.0, align: Align::Right },
            Column { title: "Цена, ₽".into(), width_mm: 30.0, align: Align::Right },
            Column { title: "Сумма, ₽".into(), width_mm: 30.0, align: Align::Right },
        ];
        let rows = (1..=rows)
            .map(|n| {
                vec![
                    n.to_string(),
                    format!("Старт{n} Подписка «Бизнес» на облачное хранилище с технической поддержкой Финиш{n}"),
                    "1".into(),
                    "12 345,67".into(),
                    "12 345,67".into(),
                ]
            })
            .collect();
        vec![
            Block::Title("Счёт на оплату № 2026-00001 от 05.03.2026".into()),
            Block::Fields(vec![
                (
                    "Поставщик".into(),
                    "ООО «Ромашка», ИНН 7701234567, КПП 770101001, г. Москва, ул. Ленина, д. 1".into(),
                ),
                ("Покупатель".into(), "ИП Иванов Иван Иванович, ИНН 500100732259".into()),
                ("Основание".into(), "Договор № 15/2026 от 01.01.2026".into()),
            ]),
            Block::Space(4.0),
            Block::Heading("Состав счёта".into()),
            Block::Table { columns, rows },
            Block::Paragraph(format!("Очень длинное слово: {}", "Ъ".repeat(300))),
            Block::Paragraph(
                "Итого к оплате: 740 740,20 ₽ (семьсот сорок тысяч семьсот сорок рублей 20 копеек).".into(),
            ),
        ]
    }

    /// Counts `/Type /Page` dictionaries (not `/Pages`), with or without the space lopdf omits.
    fn page_count(pdf: &[u8]) -> usize {
        let text = String::from_utf8_lossy(pdf);
        text.match_indices("/Type")
            .filter(|(i, m)| {
                let rest = text[i + m.len()..].trim_start();
                rest.starts_with("/Page") && !rest.starts_with("/Pages")
            })
            .count()
    }

    fn assert_pdf_envelope(pdf: &[u8]) {
        assert!(pdf.starts_with(b"%PDF-"), "bad header");
        assert!(pdf.trim_ascii_end().ends_with(b"%%EOF"), "bad trailer");
    }

    #[test]
    fn renders_multi_page_invoice_with_embedded_font() {
        let pdf = render("Счёт № 2026-00001", &invoice_blocks(60)).expect("render");
        assert_pdf_envelope(&pdf);
        let pages = page_count(&pdf);
        assert!(pages > 1, "expected several pages, got {pages}");
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("FontFile2"), "font not embedded");
        assert_eq!(text.matches("FontFile2").count(), 2, "regular and bold embedded once each");
        assert!(text.contains("FlateDecode"), "streams not compressed");
        assert!(pdf.len() < 100_000, "fonts should be subset and streams compressed, PDF is {} bytes", pdf.len());
        let mut warnings = Vec::new();
        let parsed = PdfDocument::parse(&pdf, &printpdf::PdfParseOptions::default(), &mut warnings).expect("re-parse");
        assert_eq!(parsed.page_count(), pages);
    }

    #[test]
    fn empty_document_is_one_page() {
        let pdf = render("Пусто", &[]).expect("render");
        assert_pdf_envelope(&pdf);
        assert_eq!(page_count(&pdf), 1);
    }

    #[test]
    fn table_rows_stay_whole_and_header_repeats() {
        let fonts = Fonts::load().expect("fonts");
        let pages = layout::layout(&fonts, &invoice_blocks(60));
        assert!(pages.len() > 1);
        let texts = |page: &[Item]| -> Vec<String> {
            page.iter()
                .filter_map(|item| match item {
                    Item::Text { text, .. } => Some(text.clone()),
                    Item::Rule { .. } => None,
                })
                .collect()
        };
        let pages_with = |word: &str| -> Vec<usize> {
            let found = |page: &[Item]| texts(page).iter().any(|t| t.split(' ').any(|w| w == word));
            pages.iter().enumerate().filter(|(_, page)| found(page)).map(|(i, _)| i).collect()
        };
        for n in 1..=60 {
            let (start, end) = (pages_with(&format!("Старт{n}")), pages_with(&format!("Финиш{n}")));
            assert_eq!(start.len(), 1, "row {n} starts on pages {start:?}");
            assert_eq!(start, end, "row {n} split across pages");
        }
        for page in &pages {
            let has_rows = texts(page).iter().any(|t| t.starts_with("Старт"));
            assert!(!has_rows || texts(page).iter().any(|t| t == "Кол-во"), "header missing on a page");
            for item in page {
                if let Item::Text { x, baseline, .. } = item {
                    assert!((19.9..190.1).contains(x) && (19.0..278.0).contains(baseline), "{item:?} outside margins");
                }
            }
        }
    }

    #[test]
    fn degenerate_input_does_not_panic() {
        let columns = vec![
            Column { title: "А".repeat(50), width_mm: f32::NAN, align: Align::Left },
            Column { title: String::new(), width_mm: -5.0, align: Align::Right },
        ];
        let blocks = vec![
            Block::Space(f32::INFINITY),
            Block::Space(1e9),
            Block::Space(-3.0),
            Block::Table { columns, rows: vec![vec![], vec!["Б".repeat(5000), "x".into(), "extra".into()]] },
            Block::Table { columns: vec![], rows: vec![vec!["ignored".into()]] },
            Block::Fields(vec![(String::new(), String::new()), ("Метка".repeat(40), "\u{0}\u{1F600}".into())]),
            Block::Paragraph("\n\n".into()),
        ];
        let pdf = render("", &blocks).expect("render");
        assert_pdf_envelope(&pdf);
        assert!(page_count(&pdf) > 1);
    }
}
