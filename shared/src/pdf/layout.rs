//! Page layout: turns [`Block`]s into positioned text runs and rules on A4 portrait pages.
//!
//! Coordinates are millimetres from the bottom-left corner of the page (PDF convention);
//! the cursor `y` is the top of the next line box and moves down.

use super::font::{Fonts, MM_PER_PT, Style};
use super::{Align, Block, Column};

/// A4 width, mm.
pub(super) const PAGE_WIDTH_MM: f32 = 210.0;
/// A4 height, mm.
pub(super) const PAGE_HEIGHT_MM: f32 = 297.0;
/// Margin on every side, mm.
const MARGIN_MM: f32 = 20.0;
/// Usable width between the side margins, mm.
const CONTENT_WIDTH_MM: f32 = PAGE_WIDTH_MM - 2.0 * MARGIN_MM;
/// Top edge of the usable area, mm from the bottom.
const TOP_MM: f32 = PAGE_HEIGHT_MM - MARGIN_MM;
/// Bottom edge of the usable area, mm from the bottom.
const BOTTOM_MM: f32 = MARGIN_MM;
/// Body text size, pt.
const BODY_PT: f32 = 10.0;
/// [`Block::Title`] size, pt.
const TITLE_PT: f32 = 14.0;
/// [`Block::Heading`] size, pt.
const HEADING_PT: f32 = 11.0;
/// Line box height as a multiple of the font size.
const LINE_SPACING: f32 = 1.25;
/// Space left after every block except [`Block::Space`], mm.
const BLOCK_GAP_MM: f32 = 2.0;
/// Gap between a field label column and its value, mm.
const FIELD_GAP_MM: f32 = 3.0;
/// The field label column takes at most this share of the content width.
const MAX_LABEL_SHARE: f32 = 0.4;
/// Horizontal padding inside a table cell, mm.
const CELL_PAD_X_MM: f32 = 1.5;
/// Vertical padding inside a table cell, mm.
const CELL_PAD_Y_MM: f32 = 1.0;
/// Slack for floating-point comparisons, mm.
const EPSILON_MM: f32 = 0.01;

/// One thing drawn on a page.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    /// A single line of text; `x`/`baseline` in mm, `size_pt` in points.
    Text { x: f32, baseline: f32, style: Style, size_pt: f32, text: String },
    /// A thin straight rule from (`x1`, `y1`) to (`x2`, `y2`), mm.
    Rule { x1: f32, y1: f32, x2: f32, y2: f32 },
}

/// Lays `blocks` out top to bottom; returns the items of each page (always at least one page).
pub(super) fn layout(fonts: &Fonts, blocks: &[Block]) -> Vec<Vec<Item>> {
    let mut layout = Layout { fonts, done: Vec::new(), page: Vec::new(), y: TOP_MM };
    for block in blocks {
        match block {
            Block::Title(text) => layout.text(text, Style::Bold, TITLE_PT),
            Block::Heading(text) => layout.text(text, Style::Bold, HEADING_PT),
            Block::Paragraph(text) => layout.text(text, Style::Regular, BODY_PT),
            Block::Fields(fields) => layout.fields(fields),
            Block::Table { columns, rows } => layout.table(columns, rows),
            Block::Space(mm) => layout.space(*mm),
        }
    }
    layout.done.push(layout.page);
    // Empty lines and gaps can reserve a page that nothing is drawn on; drop such trailing pages.
    while layout.done.len() > 1 && layout.done.last().is_some_and(Vec::is_empty) {
        layout.done.pop();
    }
    layout.done
}

/// Height of one line box at `size_pt`, mm.
fn line_height_mm(size_pt: f32) -> f32 {
    size_pt * LINE_SPACING * MM_PER_PT
}

/// A table's wrapped cells: per column, the lines of that cell.
type Cells = Vec<Vec<String>>;

struct Layout<'a> {
    fonts: &'a Fonts,
    done: Vec<Vec<Item>>,
    page: Vec<Item>,
    y: f32,
}

impl Layout<'_> {
    fn at_page_top(&self) -> bool {
        self.y >= TOP_MM - EPSILON_MM
    }

    fn fits(&self, height: f32) -> bool {
        self.y - height >= BOTTOM_MM - EPSILON_MM
    }

    fn new_page(&mut self) {
        self.done.push(std::mem::take(&mut self.page));
        self.y = TOP_MM;
    }

    /// Starts a new page unless `height` fits below the cursor or the page is still empty.
    fn reserve(&mut self, height: f32) {
        if !self.fits(height) && !self.at_page_top() {
            self.new_page();
        }
    }

    fn space(&mut self, mm: f32) {
        if !(mm.is_finite() && mm > 0.0) {
            return;
        }
        if self.fits(mm) {
            self.y -= mm;
        } else if !self.at_page_top() {
            // Fill the rest of the page; the next content that needs room starts a new one.
            self.y = BOTTOM_MM;
        }
    }

    /// Places `line` with its line box top at the cursor, `x`..`x + width` wide.
    fn put_line(&mut self, line: String, style: Style, size_pt: f32, x: f32, width: f32, align: Align) {
        if line.is_empty() {
            return;
        }
        let face = self.fonts.get(style);
        let x = match align {
            Align::Left => x,
            Align::Right => x + width - face.text_width_mm(&line, size_pt),
        };
        let baseline = self.y - face.baseline_offset_mm(size_pt, line_height_mm(size_pt));
        self.page.push(Item::Text { x, baseline, style, size_pt, text: line });
    }

    fn text(&mut self, text: &str, style: Style, size_pt: f32) {
        let line_height = line_height_mm(size_pt);
        for line in self.fonts.get(style).wrap(text, size_pt, CONTENT_WIDTH_MM) {
            self.reserve(line_height);
            self.put_line(line, style, size_pt, MARGIN_MM, CONTENT_WIDTH_MM, Align::Left);
            self.y -= line_height;
        }
        self.space(BLOCK_GAP_MM);
    }

    fn fields(&mut self, fields: &[(String, String)]) {
        let (bold, regular) = (self.fonts.get(Style::Bold), self.fonts.get(Style::Regular));
        let labels: Vec<String> = fields
            .iter()
            .map(|(label, _)| if label.is_empty() { String::new() } else { format!("{label}:") })
            .collect();
        let widest = labels.iter().map(|l| bold.text_width_mm(l, BODY_PT)).fold(0.0_f32, f32::max);
        let label_width = widest.min(CONTENT_WIDTH_MM * MAX_LABEL_SHARE);
        let value_x = MARGIN_MM + label_width + FIELD_GAP_MM;
        let value_width = CONTENT_WIDTH_MM - label_width - FIELD_GAP_MM;
        let line_height = line_height_mm(BODY_PT);
        for (label, (_, value)) in labels.iter().zip(fields) {
            let label_lines = bold.wrap(label, BODY_PT, label_width);
            let value_lines = regular.wrap(value, BODY_PT, value_width);
            let count = label_lines.len().max(value_lines.len());
            // Keep a field together unless it is taller than a page; then it flows line by line.
            self.reserve(count as f32 * line_height);
            let mut label_lines = label_lines.into_iter();
            let mut value_lines = value_lines.into_iter();
            for _ in 0..count {
                self.reserve(line_height);
                if let Some(line) = label_lines.next() {
                    self.put_line(line, Style::Bold, BODY_PT, MARGIN_MM, label_width, Align::Left);
                }
                if let Some(line) = value_lines.next() {
                    self.put_line(line, Style::Regular, BODY_PT, value_x, value_width, Align::Left);
                }
                self.y -= line_height;
            }
        }
        self.space(BLOCK_GAP_MM);
    }

    fn table(&mut self, columns: &[Column], rows: &[Vec<String>]) {
        if columns.is_empty() {
            return;
        }
        let widths = column_widths(columns);
        let inner = |i: usize| widths.get(i).map_or(0.0, |w| (w - 2.0 * CELL_PAD_X_MM).max(0.0));
        let header: Cells = columns
            .iter()
            .enumerate()
            .map(|(i, c)| self.fonts.get(Style::Bold).wrap(&c.title, BODY_PT, inner(i)))
            .collect();
        let body: Vec<Cells> = rows
            .iter()
            .map(|row| {
                (0..columns.len())
                    .map(|i| {
                        let cell = row.get(i).map_or("", String::as_str);
                        self.fonts.get(Style::Regular).wrap(cell, BODY_PT, inner(i))
                    })
                    .collect()
            })
            .collect();
        let table = Table { columns, widths: &widths, header: &header };
        // Never leave a header alone at the bottom of a page.
        let first_row = body.first().map_or(0.0, |cells| row_height(line_count(cells)));
        self.reserve(row_height(line_count(&header)) + first_row);
        self.table_header(&table);
        let room_after_header = TOP_MM - BOTTOM_MM - row_height(line_count(&header));
        for cells in &body {
            let lines = line_count(cells);
            let height = row_height(lines);
            if !self.fits(height) && (height <= room_after_header + EPSILON_MM || self.free_lines() == 0) {
                self.new_page();
                self.table_header(&table);
            }
            // A row taller than a whole page is the one exception: it is split across pages.
            let mut start = 0;
            while start < lines {
                let take = self.free_lines().max(1).min(lines - start);
                self.table_row(&table, cells, start..start + take, Style::Regular);
                start += take;
                if start < lines {
                    self.new_page();
                    self.table_header(&table);
                }
            }
        }
        self.space(BLOCK_GAP_MM);
    }

    /// How many body lines of a table row still fit on this page.
    fn free_lines(&self) -> usize {
        let room = ((self.y - BOTTOM_MM - 2.0 * CELL_PAD_Y_MM + EPSILON_MM) / line_height_mm(BODY_PT)).floor();
        if room >= 1.0 { room as usize } else { 0 }
    }

    fn table_header(&mut self, table: &Table<'_>) {
        let left = MARGIN_MM;
        let right = MARGIN_MM + table.widths.iter().sum::<f32>();
        self.page.push(Item::Rule { x1: left, y1: self.y, x2: right, y2: self.y });
        self.table_row(table, table.header, 0..line_count(table.header), Style::Bold);
    }

    /// Draws lines `range` of a row's cells with the cursor at the row's top edge, plus the
    /// row's bottom and vertical borders, and moves the cursor below the row.
    fn table_row(&mut self, table: &Table<'_>, cells: &Cells, range: std::ops::Range<usize>, style: Style) {
        let line_height = line_height_mm(BODY_PT);
        let top = self.y;
        let bottom = top - row_height(range.len());
        let mut x = MARGIN_MM;
        self.page.push(Item::Rule { x1: x, y1: top, x2: x, y2: bottom });
        for ((column, width), lines) in table.columns.iter().zip(table.widths).zip(cells) {
            let inner_width = (width - 2.0 * CELL_PAD_X_MM).max(0.0);
            for (i, line) in lines.iter().enumerate().skip(range.start).take(range.len()) {
                self.y = top - CELL_PAD_Y_MM - (i - range.start) as f32 * line_height;
                self.put_line(line.clone(), style, BODY_PT, x + CELL_PAD_X_MM, inner_width, column.align);
            }
            x += width;
            self.page.push(Item::Rule { x1: x, y1: top, x2: x, y2: bottom });
        }
        self.page.push(Item::Rule { x1: MARGIN_MM, y1: bottom, x2: x, y2: bottom });
        self.y = bottom;
    }
}

/// What every row of one table needs.
struct Table<'a> {
    columns: &'a [Column],
    widths: &'a [f32],
    header: &'a Cells,
}

fn line_count(cells: &Cells) -> usize {
    cells.iter().map(Vec::len).max().unwrap_or(1).max(1)
}

fn row_height(lines: usize) -> f32 {
    lines as f32 * line_height_mm(BODY_PT) + 2.0 * CELL_PAD_Y_MM
}

/// Column widths in mm: negative or non-finite widths count as 0; if all are 0 the content
/// width is shared equally; if they add up to more than the content width they are scaled down
/// proportionally to fit.
fn column_widths(columns: &[Column]) -> Vec<f32> {
    let widths: Vec<f32> =
        columns.iter().map(|c| if c.width_mm.is_finite() && c.width_mm > 0.0 { c.width_mm } else { 0.0 }).collect();
    let total: f32 = widths.iter().sum();
    if !(total > 0.0 && total.is_finite()) {
        return vec![CONTENT_WIDTH_MM / columns.len() as f32; columns.len()];
    }
    let scale = if total > CONTENT_WIDTH_MM { CONTENT_WIDTH_MM / total } else { 1.0 };
    widths.into_iter().map(|w| w * scale).collect()
}
