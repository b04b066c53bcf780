//! The bundled DejaVu Sans faces: glyph metrics for layout, greedy line wrapping, and
//! per-document subsetting for embedding into the PDF.
//!
//! Widths come from the fonts' own `hmtx` advances (read with `ttf-parser`), so a
//! measured line is exactly as wide as the rendered one (no kerning is applied by
//! either side). Sizes are in points, lengths in millimetres.

use std::collections::{BTreeMap, BTreeSet};

use allsorts::binary::read::ReadScope;
use allsorts::font_data::FontData;
use allsorts::subset::{CmapTarget, SubsetProfile};
use printpdf::{FontMetrics, ParsedFont, PdfFontMetricsStub};
use ttf_parser::{Face, GlyphId};

use super::PdfError;

/// DejaVu Sans Book (Bitstream Vera licence, see `shared/assets/fonts/LICENSE-DejaVu.txt`).
const REGULAR_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold (same licence).
const BOLD_TTF: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf");

/// Millimetres per typographic point (1 pt = 1/72 inch).
pub(super) const MM_PER_PT: f32 = 25.4 / 72.0;

/// Which bundled face a piece of text is set in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Style {
    /// DejaVu Sans Book.
    Regular,
    /// DejaVu Sans Bold.
    Bold,
}

/// One parsed bundled face.
pub(super) struct FontFace {
    bytes: &'static [u8],
    postscript_name: &'static str,
    face: Face<'static>,
    units_per_em: f32,
}

/// Both bundled faces.
pub(super) struct Fonts {
    regular: FontFace,
    bold: FontFace,
}

impl Fonts {
    /// Parses the bundled faces. Errors: a face cannot be parsed.
    pub(super) fn load() -> Result<Self, PdfError> {
        Ok(Self {
            regular: FontFace::parse(REGULAR_TTF, "DejaVuSans")?,
            bold: FontFace::parse(BOLD_TTF, "DejaVuSans-Bold")?,
        })
    }

    /// The face for `style`.
    pub(super) fn get(&self, style: Style) -> &FontFace {
        match style {
            Style::Regular => &self.regular,
            Style::Bold => &self.bold,
        }
    }
}

impl FontFace {
    fn parse(bytes: &'static [u8], postscript_name: &'static str) -> Result<Self, PdfError> {
        let face = Face::parse(bytes, 0)
            .map_err(|e| PdfError::new(format!("cannot parse bundled font {postscript_name}: {e}")))?;
        let units_per_em = f32::from(face.units_per_em().max(1));
        Ok(Self { bytes, postscript_name, face, units_per_em })
    }

    /// Advance width of `c` at `size_pt`, in mm. Characters the font lacks are measured as
    /// its `.notdef` glyph, which is also what the PDF shows for them.
    pub(super) fn char_width_mm(&self, c: char, size_pt: f32) -> f32 {
        let gid = self.face.glyph_index(c).unwrap_or(GlyphId(0));
        let advance = f32::from(self.face.glyph_hor_advance(gid).unwrap_or(0));
        advance / self.units_per_em * size_pt * MM_PER_PT
    }

    /// Width of a single line of `text` at `size_pt`, in mm.
    pub(super) fn text_width_mm(&self, text: &str, size_pt: f32) -> f32 {
        text.chars().map(|c| self.char_width_mm(c, size_pt)).sum()
    }

    /// Distance from the top of a line box of `line_height_mm` down to the baseline, in mm,
    /// centring the face's ascent + descent inside the box.
    pub(super) fn baseline_offset_mm(&self, size_pt: f32, line_height_mm: f32) -> f32 {
        let scale = size_pt * MM_PER_PT / self.units_per_em;
        let ascent = f32::from(self.face.ascender()) * scale;
        let descent = -f32::from(self.face.descender()) * scale;
        (line_height_mm - (ascent + descent)) / 2.0 + ascent
    }

    /// Wraps `text` into lines no wider than `max_width_mm` at `size_pt`.
    ///
    /// `\n` forces a break (an empty source line yields an empty line); other whitespace
    /// separates words and runs of it collapse to one space; control characters are dropped.
    /// A word wider than the limit is broken between characters. Every line holds at least one
    /// character, so a limit narrower than one glyph (or zero/NaN) yields one character per line
    /// rather than looping. The result is never empty: empty text gives one empty line.
    pub(super) fn wrap(&self, text: &str, size_pt: f32, max_width_mm: f32) -> Vec<String> {
        let space = self.char_width_mm(' ', size_pt);
        let mut lines = Vec::new();
        for source_line in text.split('\n') {
            let mut current = String::new();
            let mut width = 0.0_f32;
            for word in source_line.split(char::is_whitespace) {
                let word: String = word.chars().filter(|c| !c.is_control()).collect();
                if word.is_empty() {
                    continue;
                }
                let word_width = self.text_width_mm(&word, size_pt);
                if !current.is_empty() && width + space + word_width <= max_width_mm {
                    current.push(' ');
                    current.push_str(&word);
                    width += space + word_width;
                    continue;
                }
                if !current.is_empty() {
                    lines.push(std::mem::take(&mut current));
                }
                if word_width <= max_width_mm {
                    current = word;
                    width = word_width;
                } else {
                    let mut pieces = self.break_word(&word, size_pt, max_width_mm);
                    let last = pieces.pop().unwrap_or_default();
                    lines.extend(pieces);
                    width = self.text_width_mm(&last, size_pt);
                    current = last;
                }
            }
            lines.push(current);
        }
        lines
    }

    /// Splits one over-long word into pieces no wider than `max_width_mm` (each piece holds at
    /// least one character).
    fn break_word(&self, word: &str, size_pt: f32, max_width_mm: f32) -> Vec<String> {
        let mut pieces = Vec::new();
        let mut piece = String::new();
        let mut width = 0.0_f32;
        for c in word.chars() {
            let w = self.char_width_mm(c, size_pt);
            let fits = width + w <= max_width_mm;
            if !fits && !piece.is_empty() {
                pieces.push(std::mem::take(&mut piece));
                width = 0.0;
            }
            piece.push(c);
            width += w;
        }
        if !piece.is_empty() {
            pieces.push(piece);
        }
        pieces
    }

    /// Builds the printpdf font to embed for a document that uses the characters `used`.
    ///
    /// The face is subset to those glyphs (plus `.notdef`), which keeps a document's fonts at
    /// tens of kilobytes instead of ~0.7 MB each; if subsetting fails the whole face is embedded
    /// instead (logged, not an error). Errors: the font to embed cannot be parsed.
    pub(super) fn embed(&self, used: &BTreeSet<char>) -> Result<ParsedFont, PdfError> {
        let glyphs: BTreeSet<u16> = used.iter().filter_map(|c| self.face.glyph_index(*c)).map(|g| g.0).collect();
        let ids: Vec<u16> = std::iter::once(0).chain(glyphs.into_iter().filter(|g| *g != 0)).collect();
        let bytes = match subset(self.bytes, &ids) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(font = self.postscript_name, %error, "font subsetting failed; embedding the full font");
                self.bytes.to_vec()
            }
        };
        parsed_font(bytes, self.postscript_name, used)
    }
}

/// Subsets a TrueType font to `glyph_ids` (which must start with 0), keeping a Unicode cmap.
fn subset(bytes: &[u8], glyph_ids: &[u16]) -> Result<Vec<u8>, String> {
    let font = ReadScope::new(bytes).read::<FontData<'_>>().map_err(|e| e.to_string())?;
    let provider = font.table_provider(0).map_err(|e| e.to_string())?;
    allsorts::subset::subset(&provider, glyph_ids, &SubsetProfile::Pdf, CmapTarget::Unicode).map_err(|e| e.to_string())
}

/// Wraps TrueType `bytes` as a printpdf font, mapping each of `used` to its glyph and
/// recording advances, ascent, descent and bounding box (the latter three in PDF glyph space,
/// 1/1000 em). Needed because printpdf without its heavy `text_layout` feature does not parse
/// fonts itself.
fn parsed_font(bytes: Vec<u8>, name: &str, used: &BTreeSet<char>) -> Result<ParsedFont, PdfError> {
    let face = Face::parse(&bytes, 0).map_err(|e| PdfError::new(format!("cannot parse font {name} to embed: {e}")))?;
    let units_per_em = face.units_per_em().max(1);
    let to_glyph_space = |v: i16| -> i16 {
        let scaled = i32::from(v) * 1000 / i32::from(units_per_em);
        i16::try_from(scaled).unwrap_or(if scaled < 0 { i16::MIN } else { i16::MAX })
    };
    let advance = |gid: GlyphId| face.glyph_hor_advance(gid).unwrap_or(0);
    let mut codepoints = BTreeMap::new();
    let mut widths = BTreeMap::from([(0, advance(GlyphId(0)))]);
    for c in used {
        if let Some(gid) = face.glyph_index(*c) {
            codepoints.insert(u32::from(*c), gid.0);
            widths.insert(gid.0, advance(gid));
        }
    }
    let metrics = FontMetrics { ascent: to_glyph_space(face.ascender()), descent: to_glyph_space(face.descender()) };
    let bbox = face.global_bounding_box();
    let pdf_metrics = PdfFontMetricsStub {
        units_per_em,
        x_min: to_glyph_space(bbox.x_min),
        y_min: to_glyph_space(bbox.y_min),
        x_max: to_glyph_space(bbox.x_max),
        y_max: to_glyph_space(bbox.y_max),
    };
    let mut font =
        ParsedFont::with_glyph_data(bytes, 0, Some(name.to_owned()), codepoints, widths, units_per_em, metrics);
    font.pdf_font_metrics = pdf_metrics;
    Ok(font)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fonts() -> Fonts {
        Fonts::load().expect("bundled fonts parse")
    }

    #[test]
    fn wraps_russian_sentence_within_width() {
        let fonts = fonts();
        let face = fonts.get(Style::Regular);
        let text = "Оплата настоящего счёта означает согласие с условиями поставки товара, \
                    уведомление об оплате обязательно, в противном случае не гарантируется \
                    наличие товара на складе.";
        let lines = face.wrap(text, 10.0, 50.0);
        assert!(lines.len() >= 4, "expected several lines, got {lines:?}");
        for line in &lines {
            let width = face.text_width_mm(line, 10.0);
            assert!(width <= 50.0, "line {line:?} is {width} mm wide");
            assert!(!line.is_empty());
        }
        let rejoined: Vec<&str> = lines.iter().flat_map(|l| l.split(' ')).collect();
        let original: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(rejoined, original);
    }

    #[test]
    fn breaks_long_word_and_keeps_every_character() {
        let fonts = fonts();
        let face = fonts.get(Style::Bold);
        let word = "Электрооборудование".repeat(8);
        let lines = face.wrap(&format!("до {word} после"), 10.0, 40.0);
        assert!(lines.len() > 3);
        for line in &lines {
            assert!(face.text_width_mm(line, 10.0) <= 40.0, "{line:?}");
        }
        assert_eq!(lines.concat().replace(' ', ""), format!("до{word}после"));
    }

    #[test]
    fn wrap_handles_newlines_controls_and_degenerate_widths() {
        let fonts = fonts();
        let face = fonts.get(Style::Regular);
        assert_eq!(face.wrap("", 10.0, 50.0), vec![String::new()]);
        assert_eq!(face.wrap("а\n\nб\tв\u{7}г", 10.0, 50.0), vec!["а", "", "б вг"]);
        assert_eq!(face.wrap("абв", 10.0, 0.0), vec!["а", "б", "в"]);
        assert_eq!(face.wrap("абв", 10.0, f32::NAN), vec!["а", "б", "в"]);
    }

    #[test]
    fn cyrillic_and_invoice_symbols_have_glyphs() {
        let fonts = fonts();
        for style in [Style::Regular, Style::Bold] {
            for c in "АаЁёЯя№₽«»—".chars() {
                assert!(fonts.get(style).face.glyph_index(c).is_some(), "{c} missing in {style:?}");
            }
        }
    }

    #[test]
    fn subset_keeps_used_glyphs_and_their_advances() {
        let fonts = fonts();
        let face = fonts.get(Style::Regular);
        let used: BTreeSet<char> = "Счёт № 12, итого 1 500,00 ₽".chars().collect();
        let font = face.embed(&used).expect("embed");
        assert!(font.original_bytes.len() < REGULAR_TTF.len() / 10, "subset is {} bytes", font.original_bytes.len());
        let subset = Face::parse(&font.original_bytes, 0).expect("subset parses");
        for c in &used {
            let gid = font.lookup_glyph_index(u32::from(*c)).expect("mapped");
            assert_eq!(subset.glyph_index(*c).map(|g| g.0), Some(gid));
            let original = face.face.glyph_index(*c).and_then(|g| face.face.glyph_hor_advance(g));
            assert_eq!(font.get_glyph_width(gid), original, "advance of {c}");
        }
    }
}
