//! PDF produced in-process with `krilla`: A4 pages, margins, a running header, a footer with
//! "page x / y", a cover page, tables whose header row repeats when they break across pages,
//! and vector charts. Text uses the CJK font the caller passes in (reports does no I/O); only
//! the glyphs used are embedded (subset). The signed envelope is attached as an embedded file
//! `yunwei-report.json` (stored uncompressed, base64 between markers) so `verify` finds it.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use krilla::Document;
use krilla::color::rgb;
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::MetadataProvider;
use skrifa::instance::{LocationRef, Size};

use crate::i18n::{self, *};
use crate::integrity::SignedReport;
use crate::model::*;
use crate::{Lang, RenderError};

mod sections;

/// Marker before the base64 envelope inside the PDF.
const BEGIN: &str = "YUNWEI-REPORT-V1-BEGIN:";
/// Marker after it.
const END: &str = ":YUNWEI-REPORT-V1-END";

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const LEFT: f32 = 56.0;
const RIGHT: f32 = PAGE_W - 56.0;
const TOP: f32 = 72.0;
const BOTTOM: f32 = PAGE_H - 64.0;

/// A font for the PDF: a TrueType/OpenType file or collection and the face index in it.
#[derive(Clone)]
pub struct PdfFont {
    data: Arc<Vec<u8>>,
    index: u32,
}

impl std::fmt::Debug for PdfFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PdfFont({} bytes, face {})", self.data.len(), self.index)
    }
}

impl PdfFont {
    /// Checks that `data` holds a font with face `index` that maps CJK and Latin characters.
    pub fn new(data: Arc<Vec<u8>>, index: u32) -> Result<PdfFont, RenderError> {
        let font = skrifa::FontRef::from_index(&data, index).map_err(|_| RenderError::Font)?;
        let cmap = font.charmap();
        if cmap.map('可').is_none() || cmap.map('A').is_none() {
            return Err(RenderError::Font);
        }
        Ok(PdfFont { data, index })
    }

    /// Face index of simplified Chinese in Noto Sans CJK / Source Han Sans collections.
    pub const NOTO_CJK_SC_INDEX: u32 = 2;
}

#[derive(Clone, Copy)]
struct Rgb(u8, u8, u8);

const BLACK: Rgb = Rgb(17, 17, 17);
const RED: Rgb = Rgb(179, 18, 27);
const GREY: Rgb = Rgb(90, 90, 90);
const LIGHT: Rgb = Rgb(235, 235, 235);
const GRID: Rgb = Rgb(200, 200, 200);
const BLUE: Rgb = Rgb(74, 111, 165);
const GREEN: Rgb = Rgb(29, 107, 51);

/// One drawing operation on a page (laid out first, drawn once the page count is known).
enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        color: Rgb,
        bold: bool,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        fill: Option<Rgb>,
        stroke: Option<(Rgb, f32)>,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        color: Rgb,
        width: f32,
    },
    Poly {
        points: Vec<(f32, f32)>,
        color: Rgb,
        width: f32,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Align {
    Left,
    Right,
    Center,
}

struct Measure<'a> {
    cmap: skrifa::charmap::Charmap<'a>,
    metrics: skrifa::metrics::GlyphMetrics<'a>,
    cache: HashMap<char, f32>,
}

impl Measure<'_> {
    /// Glyphs of `text`, one per character (no shaping: CJK and Latin need none for reports).
    fn glyphs(&mut self, text: &str) -> Vec<KrillaGlyph> {
        text.char_indices()
            .map(|(i, c)| {
                let gid = self.cmap.map(c).map_or(0, |g| g.to_u32());
                let adv = self.width(c.encode_utf8(&mut [0; 4]));
                KrillaGlyph::new(
                    GlyphId::new(gid),
                    adv,
                    0.0,
                    0.0,
                    0.0,
                    i..i + c.len_utf8(),
                    None,
                )
            })
            .collect()
    }

    /// Width of `text` at 1 pt.
    fn width(&mut self, text: &str) -> f32 {
        text.chars()
            .map(|c| {
                *self.cache.entry(c).or_insert_with(|| {
                    self.cmap
                        .map(c)
                        .and_then(|g| self.metrics.advance_width(g))
                        .unwrap_or(0.5)
                })
            })
            .sum()
    }
}

struct Layout<'a> {
    pages: Vec<Vec<Op>>,
    y: f32,
    m: Measure<'a>,
    lang: Lang,
    off: i32,
}

/// A bar chart row: label, bars (value, colour), optional marker.
type BarRow = (String, Vec<(f32, Rgb)>, Option<f32>);

/// A table column: title, share of the width, alignment.
struct Col<'a>(&'a str, f32, Align);

impl Layout<'_> {
    fn page(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        self.pages.last_mut().expect("a page exists")
    }

    fn op(&mut self, op: Op) {
        self.page().push(op);
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    fn ensure(&mut self, h: f32) {
        if self.y + h > BOTTOM {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, color: Rgb, bold: bool, text: &str) {
        self.page().push(Op::Text {
            x,
            y,
            size,
            color,
            bold,
            text: text.to_string(),
        });
    }

    fn text_aligned(
        &mut self,
        (x, w): (f32, f32),
        y: f32,
        size: f32,
        color: Rgb,
        align: Align,
        text: &str,
    ) {
        let tw = self.m.width(text) * size;
        let x = match align {
            Align::Left => x,
            Align::Right => x + w - tw,
            Align::Center => x + (w - tw) / 2.0,
        };
        self.text(x, y, size, color, false, text);
    }

    /// `text` cut to fit `w` at `size`, with an ellipsis when cut.
    fn fit(&mut self, text: &str, w: f32, size: f32) -> String {
        if self.m.width(text) * size <= w {
            return text.to_string();
        }
        let mut out = String::new();
        for c in text.chars() {
            out.push(c);
            if self.m.width(&out) * size + self.m.width("…") * size > w {
                out.pop();
                break;
            }
        }
        out.push('…');
        out
    }

    /// Splits `text` into lines no wider than `w` at `size`.
    fn wrap(&mut self, text: &str, w: f32, size: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for para in text.split('\n') {
            let mut line = String::new();
            let mut lw = 0.0;
            for c in para.chars() {
                let cw = self.m.width(c.encode_utf8(&mut [0; 4])) * size;
                if lw + cw > w && !line.is_empty() {
                    // Break at the last space for Latin text when there is one.
                    if c != ' ' {
                        if let Some(sp) = line.rfind(' ').filter(|&i| i > 0) {
                            let rest = line[sp + 1..].to_string();
                            line.truncate(sp);
                            lines.push(std::mem::take(&mut line));
                            lw = self.m.width(&rest) * size;
                            line = rest;
                        } else {
                            lines.push(std::mem::take(&mut line));
                            lw = 0.0;
                        }
                    } else {
                        lines.push(std::mem::take(&mut line));
                        lw = 0.0;
                        continue;
                    }
                }
                line.push(c);
                lw += cw;
            }
            lines.push(line);
        }
        lines
    }

    fn paragraph(&mut self, text: &str, size: f32, color: Rgb) {
        for line in self.wrap(text, RIGHT - LEFT, size) {
            self.ensure(size * 1.6);
            self.text(LEFT, self.y + size, size, color, false, &line);
            self.y += size * 1.6;
        }
        self.y += 4.0;
    }

    fn h2(&mut self, n: usize, zh: &str, en: &str) {
        // Keep a heading with what follows it (a chart or a table's first rows).
        self.ensure(130.0);
        self.y += 10.0;
        let t = section(self.lang, n, zh, en);
        self.op(Op::Rect {
            x: LEFT,
            y: self.y,
            w: 4.0,
            h: 16.0,
            fill: Some(RED),
            stroke: None,
        });
        self.text(LEFT + 10.0, self.y + 13.5, 14.0, BLACK, true, &t);
        self.y += 26.0;
    }

    fn h3(&mut self, text: &str) {
        self.ensure(44.0);
        self.y += 2.0;
        self.text(LEFT, self.y + 11.0, 11.0, BLACK, true, text);
        self.y += 18.0;
    }

    fn none(&mut self) {
        let t = self.lang.pick("本期无。", "None in this period.");
        self.paragraph(t, 9.5, GREY);
    }

    /// A bordered table; the header row repeats on every page the table spans.
    fn table(&mut self, cols: &[Col], rows: &[Vec<String>]) {
        const SIZE: f32 = 8.5;
        const PAD: f32 = 3.0;
        const LH: f32 = SIZE * 1.45;
        let total: f32 = cols.iter().map(|c| c.1).sum();
        let widths: Vec<f32> = cols.iter().map(|c| c.1 / total * (RIGHT - LEFT)).collect();
        let head: Vec<Vec<String>> = cols
            .iter()
            .zip(&widths)
            .map(|(c, w)| self.wrap(c.0, w - 2.0 * PAD, SIZE))
            .collect();
        let head_h = head.iter().map(Vec::len).max().unwrap_or(1) as f32 * LH + 2.0 * PAD;
        let draw_head = |l: &mut Self| {
            let mut x = LEFT;
            for (lines, w) in head.iter().zip(&widths) {
                l.op(Op::Rect {
                    x,
                    y: l.y,
                    w: *w,
                    h: head_h,
                    fill: Some(LIGHT),
                    stroke: Some((BLACK, 0.6)),
                });
                for (k, line) in lines.iter().enumerate() {
                    let y = l.y + PAD + (k as f32 + 1.0) * LH - 2.5;
                    l.text_aligned(
                        (x + PAD, w - 2.0 * PAD),
                        y,
                        SIZE,
                        BLACK,
                        Align::Center,
                        line,
                    );
                }
                x += w;
            }
            l.y += head_h;
        };
        self.ensure(head_h + LH + 2.0 * PAD);
        draw_head(self);
        for row in rows {
            let cells: Vec<Vec<String>> = row
                .iter()
                .zip(&widths)
                .map(|(t, w)| self.wrap(t, w - 2.0 * PAD, SIZE))
                .collect();
            let h = cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * LH + 2.0 * PAD;
            if self.y + h > BOTTOM {
                self.new_page();
                draw_head(self);
            }
            let mut x = LEFT;
            for ((lines, w), col) in cells.iter().zip(&widths).zip(cols) {
                self.op(Op::Rect {
                    x,
                    y: self.y,
                    w: *w,
                    h,
                    fill: None,
                    stroke: Some((BLACK, 0.6)),
                });
                for (k, line) in lines.iter().enumerate() {
                    let y = self.y + PAD + (k as f32 + 1.0) * LH - 2.5;
                    let color = if is_bad(line) && line.chars().count() <= 12 {
                        RED
                    } else {
                        BLACK
                    };
                    self.text_aligned((x + PAD, w - 2.0 * PAD), y, SIZE, color, col.2, line);
                }
                x += w;
            }
            self.y += h;
        }
        self.y += 8.0;
    }

    /// Key/value table (cover, summary).
    fn meta(&mut self, rows: &[(String, String)]) {
        let cols = [Col("", 1.0, Align::Left), Col("", 3.0, Align::Left)];
        const SIZE: f32 = 10.0;
        let kw = (RIGHT - LEFT) * 0.25;
        let vw = RIGHT - LEFT - kw;
        let _ = cols;
        for (k, v) in rows {
            let lines = self.wrap(v, vw - 10.0, SIZE);
            let h = lines.len() as f32 * SIZE * 1.5 + 10.0;
            self.ensure(h);
            self.op(Op::Rect {
                x: LEFT,
                y: self.y,
                w: kw,
                h,
                fill: Some(LIGHT),
                stroke: Some((BLACK, 0.6)),
            });
            self.op(Op::Rect {
                x: LEFT + kw,
                y: self.y,
                w: vw,
                h,
                fill: None,
                stroke: Some((BLACK, 0.6)),
            });
            self.text(LEFT + 5.0, self.y + 5.0 + SIZE * 1.2, SIZE, BLACK, true, k);
            for (i, line) in lines.iter().enumerate() {
                self.text(
                    LEFT + kw + 5.0,
                    self.y + 5.0 + SIZE * 1.2 + i as f32 * SIZE * 1.5,
                    SIZE,
                    BLACK,
                    false,
                    line,
                );
            }
            self.y += h;
        }
        self.y += 8.0;
    }

    /// Horizontal bar chart: label, value (0..=100 percent axis from `lo`), optional marker.
    fn bars(&mut self, title: &str, lo: f32, rows: &[BarRow], legend: &[(&str, Rgb)]) {
        let per = rows.iter().map(|r| r.1.len()).max().unwrap_or(1) as f32 * 7.0 + 6.0;
        let h = 40.0 + rows.len() as f32 * per + 18.0;
        self.ensure(h);
        let top = self.y;
        self.text_aligned(
            (LEFT, RIGHT - LEFT),
            top + 12.0,
            10.0,
            BLACK,
            Align::Center,
            title,
        );
        let (x0, x1) = (LEFT + 120.0, RIGHT - 10.0);
        let sx = |v: f32| x0 + ((v - lo) / (100.0 - lo)).clamp(0.0, 1.0) * (x1 - x0);
        let mut lx = x0;
        for (name, c) in legend {
            self.op(Op::Rect {
                x: lx,
                y: top + 19.0,
                w: 8.0,
                h: 6.0,
                fill: Some(*c),
                stroke: None,
            });
            self.text(lx + 11.0, top + 25.0, 7.5, BLACK, false, name);
            lx += 14.0 + self.m.width(name) * 7.5 + 12.0;
        }
        let gy = top + 32.0;
        let gh = rows.len() as f32 * per;
        for k in 0..=4 {
            let v = lo + (100.0 - lo) * k as f32 / 4.0;
            let x = sx(v);
            self.op(Op::Line {
                x1: x,
                y1: gy,
                x2: x,
                y2: gy + gh,
                color: GRID,
                width: 0.4,
            });
            let label = format!(
                "{}%",
                Fixed::from_f64(f64::from(v)).fmt_dp(if lo > 90.0 { 2 } else { 0 })
            );
            self.text_aligned(
                (x - 30.0, 60.0),
                gy + gh + 10.0,
                7.0,
                GREY,
                Align::Center,
                &label,
            );
        }
        for (i, (label, vals, marker)) in rows.iter().enumerate() {
            let y = gy + i as f32 * per + 3.0;
            let short = self.fit(label, 114.0, 7.5);
            self.text_aligned(
                (LEFT, 114.0),
                y + per / 2.0,
                7.5,
                BLACK,
                Align::Right,
                &short,
            );
            for (k, (v, c)) in vals.iter().enumerate() {
                let w = sx(*v) - x0;
                self.op(Op::Rect {
                    x: x0,
                    y: y + k as f32 * 7.0,
                    w: w.max(0.5),
                    h: 6.0,
                    fill: Some(*c),
                    stroke: None,
                });
            }
            if let Some(m) = marker {
                let x = sx(*m);
                self.op(Op::Line {
                    x1: x,
                    y1: y - 2.0,
                    x2: x,
                    y2: y + per - 4.0,
                    color: RED,
                    width: 1.4,
                });
            }
        }
        self.y = top + h;
    }

    /// Daily lines chart.
    fn trend(&mut self, title: &str, series: &[(String, Vec<Option<f32>>)]) {
        let h = 170.0;
        self.ensure(h);
        let top = self.y;
        self.text_aligned(
            (LEFT, RIGHT - LEFT),
            top + 12.0,
            10.0,
            BLACK,
            Align::Center,
            title,
        );
        let days = series.iter().map(|s| s.1.len()).max().unwrap_or(2).max(2);
        let lo = series
            .iter()
            .flat_map(|s| s.1.iter().flatten())
            .fold(100.0f32, |a, b| a.min(*b));
        let lo = ((lo - 0.1).floor()).clamp(0.0, 99.0);
        let (x0, x1, y0, y1) = (LEFT + 40.0, RIGHT - 110.0, top + 24.0, top + h - 24.0);
        let sx = |i: usize| x0 + i as f32 / (days - 1) as f32 * (x1 - x0);
        let sy = |v: f32| y1 - ((v - lo) / (100.0 - lo)).clamp(0.0, 1.0) * (y1 - y0);
        for k in 0..=4 {
            let v = lo + (100.0 - lo) * k as f32 / 4.0;
            self.op(Op::Line {
                x1: x0,
                y1: sy(v),
                x2: x1,
                y2: sy(v),
                color: GRID,
                width: 0.4,
            });
            let label = format!("{}%", Fixed::from_f64(f64::from(v)).fmt_dp(1));
            self.text_aligned((LEFT, 36.0), sy(v) + 2.5, 7.0, GREY, Align::Right, &label);
        }
        for i in (0..days).step_by(5) {
            self.text_aligned(
                (sx(i) - 15.0, 30.0),
                y1 + 11.0,
                7.0,
                GREY,
                Align::Center,
                &format!("{}", i + 1),
            );
        }
        const COLORS: [Rgb; 6] = [
            Rgb(31, 78, 121),
            RED,
            GREEN,
            Rgb(160, 90, 0),
            Rgb(106, 27, 154),
            Rgb(0, 131, 143),
        ];
        for (k, (name, vals)) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let mut seg = Vec::new();
            for (i, v) in vals.iter().enumerate() {
                match v {
                    Some(v) => seg.push((sx(i), sy(*v))),
                    None => {
                        if seg.len() > 1 {
                            self.op(Op::Poly {
                                points: std::mem::take(&mut seg),
                                color,
                                width: 1.2,
                            });
                        }
                        seg.clear();
                    }
                }
            }
            if seg.len() > 1 {
                self.op(Op::Poly {
                    points: seg,
                    color,
                    width: 1.2,
                });
            }
            let ly = y0 + 4.0 + k as f32 * 13.0;
            self.op(Op::Rect {
                x: x1 + 8.0,
                y: ly,
                w: 10.0,
                h: 2.5,
                fill: Some(color),
                stroke: None,
            });
            let short = self.fit(name, RIGHT - x1 - 22.0, 7.5);
            self.text(x1 + 22.0, ly + 4.0, 7.5, BLACK, false, &short);
        }
        self.y = top + h;
    }
}

fn is_bad(s: &str) -> bool {
    [
        "未达标",
        "漏检",
        "逾期",
        "已驳回",
        "missed",
        "late",
        "rejected",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// Lays out the report's pages.
fn layout(l: &mut Layout, signed: &SignedReport) {
    let r = &signed.report;
    sections::cover(l, r);
    sections::summary(l, r);
    sections::availability(l, r);
    sections::incidents(l, r);
    sections::adjustments(l, r);
    sections::lifecycle(l, r);
    sections::inspections(l, r);
    sections::resources(l, r);
    sections::alerts(l, r);
    sections::exclusions(l, r);
    sections::completeness(l, r);
    sections::appendix(l, signed);
}

fn color(c: Rgb) -> rgb::Color {
    rgb::Color::new(c.0, c.1, c.2)
}

fn fill(c: Rgb) -> Fill {
    Fill {
        paint: color(c).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn stroke(c: Rgb, width: f32) -> Stroke {
    Stroke {
        paint: color(c).into(),
        width,
        ..Default::default()
    }
}

/// Renders the PDF.
pub fn render(signed: &SignedReport, font: &PdfFont) -> Result<Vec<u8>, RenderError> {
    let r = &signed.report;
    let face =
        skrifa::FontRef::from_index(&font.data, font.index).map_err(|_| RenderError::Font)?;
    let metrics = face.glyph_metrics(Size::new(1.0), LocationRef::default());
    let mut l = Layout {
        pages: Vec::new(),
        y: TOP,
        m: Measure {
            cmap: face.charmap(),
            metrics,
            cache: HashMap::new(),
        },
        lang: r.cover.lang,
        off: r.cover.utc_offset_minutes,
    };
    layout(&mut l, signed);
    let pages = std::mem::take(&mut l.pages);
    let total = pages.len();
    let kfont = Font::new(font.data.clone().into(), font.index).ok_or(RenderError::Font)?;
    let mut doc = Document::new();
    let header = format!("{} · {}", r.cover.contract_name, i18n::title(r));
    for (n, ops) in pages.into_iter().enumerate() {
        let mut page = doc.start_page_with(
            PageSettings::from_wh(PAGE_W, PAGE_H)
                .ok_or_else(|| RenderError::Pdf("page size".into()))?,
        );
        let mut s = page.surface();
        let mut ops = ops;
        let footer = match r.cover.lang {
            Lang::ZhCn => format!("第 {} 页 / 共 {} 页", n + 1, total),
            Lang::En => format!("Page {} / {}", n + 1, total),
        };
        if n > 0 {
            let hw = l.m.width(&header) * 8.0;
            ops.push(Op::Text {
                x: RIGHT - hw,
                y: 44.0,
                size: 8.0,
                color: GREY,
                bold: false,
                text: header.clone(),
            });
            ops.push(Op::Line {
                x1: LEFT,
                y1: 50.0,
                x2: RIGHT,
                y2: 50.0,
                color: GREY,
                width: 0.5,
            });
        }
        let fw = l.m.width(&footer) * 8.5;
        ops.push(Op::Text {
            x: (PAGE_W - fw) / 2.0,
            y: PAGE_H - 36.0,
            size: 8.5,
            color: GREY,
            bold: false,
            text: footer,
        });
        for op in ops {
            match op {
                Op::Text {
                    x,
                    y,
                    size,
                    color: c,
                    bold,
                    text,
                } => {
                    s.set_fill(Some(fill(c)));
                    s.set_stroke(None);
                    let glyphs = l.m.glyphs(&text);
                    s.draw_glyphs(
                        Point::from_xy(x, y),
                        &glyphs,
                        kfont.clone(),
                        &text,
                        size,
                        false,
                    );
                    if bold {
                        // Faux bold: the font has one weight; overprint slightly shifted.
                        s.draw_glyphs(
                            Point::from_xy(x + size * 0.04, y),
                            &glyphs,
                            kfont.clone(),
                            &text,
                            size,
                            false,
                        );
                    }
                }
                Op::Rect {
                    x,
                    y,
                    w,
                    h,
                    fill: f,
                    stroke: st,
                } => {
                    let Some(rect) = Rect::from_xywh(x, y, w.max(0.1), h.max(0.1)) else {
                        continue;
                    };
                    let mut pb = PathBuilder::new();
                    pb.push_rect(rect);
                    let Some(path) = pb.finish() else { continue };
                    s.set_fill(f.map(fill));
                    s.set_stroke(st.map(|(c, w)| stroke(c, w)));
                    s.draw_path(&path);
                }
                Op::Line {
                    x1,
                    y1,
                    x2,
                    y2,
                    color: c,
                    width,
                } => {
                    let mut pb = PathBuilder::new();
                    pb.move_to(x1, y1);
                    pb.line_to(x2, y2);
                    let Some(path) = pb.finish() else { continue };
                    s.set_fill(None);
                    s.set_stroke(Some(stroke(c, width)));
                    s.draw_path(&path);
                }
                Op::Poly {
                    points,
                    color: c,
                    width,
                } => {
                    let mut pb = PathBuilder::new();
                    for (i, (x, y)) in points.iter().enumerate() {
                        if i == 0 {
                            pb.move_to(*x, *y);
                        } else {
                            pb.line_to(*x, *y);
                        }
                    }
                    let Some(path) = pb.finish() else { continue };
                    s.set_fill(None);
                    s.set_stroke(Some(stroke(c, width)));
                    s.draw_path(&path);
                }
            }
        }
        s.finish();
        page.finish();
    }
    let g = chrono::DateTime::from_timestamp_millis(r.cover.generated_at_ms).unwrap_or_default();
    use chrono::{Datelike, Timelike};
    let created = DateTime::new(g.year().clamp(0, 9999) as u16)
        .month(g.month() as u8)
        .day(g.day() as u8)
        .hour(g.hour() as u8)
        .minute(g.minute() as u8)
        .second(g.second() as u8)
        .utc_offset_hour(0);
    doc.set_metadata(
        Metadata::new()
            .title(format!("{} {}", r.cover.contract_name, i18n::title(r)))
            .language(r.cover.lang.tag().into())
            .creator("yunwei".into())
            .producer("yunwei".into())
            .authors(vec![r.cover.party_b.clone()])
            .keywords(vec![
                format!("sha256:{}", signed.integrity.sha256),
                format!("key:{}", signed.integrity.key_id),
            ])
            .creation_date(created)
            .document_id(signed.integrity.sha256.clone()),
    );
    let payload = format!(
        "{BEGIN}{}{END}",
        base64::engine::general_purpose::STANDARD.encode(signed.envelope_json())
    );
    doc.embed_file(EmbeddedFile {
        path: "yunwei-report.json.b64".into(),
        mime_type: MimeType::new("text/plain"),
        description: Some(
            "yunwei signed report data (base64 of the canonical JSON envelope)".into(),
        ),
        association_kind: AssociationKind::Source,
        data: payload.into_bytes().into(),
        modification_date: None,
        compress: Some(false),
        location: None,
    })
    .ok_or_else(|| RenderError::Pdf("embedding the signed data".into()))?;
    doc.finish().map_err(|e| RenderError::Pdf(format!("{e:?}")))
}

/// Finds the signed envelope embedded by [`render`].
pub fn extract_envelope(bytes: &[u8]) -> Option<Vec<u8>> {
    let begin = find(bytes, BEGIN.as_bytes())? + BEGIN.len();
    let len = find(&bytes[begin..], END.as_bytes())?;
    base64::engine::general_purpose::STANDARD
        .decode(&bytes[begin..begin + len])
        .ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
