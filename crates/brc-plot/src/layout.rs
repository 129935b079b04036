//! Where a figure's parts go, computed before anything is drawn: the size each panel needs
//! for its content (so no label is cut), the panel grid, the title strip and the shared
//! legend strip below the panels. The renderer draws into exactly these rectangles, and
//! [`crate::layout`] reports them.

use plotters::style::{FontDesc, IntoFont};

use crate::{
    BarChart, Figure, Heatmap, IntervalChart, LineStyle, Panel, Rect, MIN_TEXT_PX, PANEL_HEIGHT,
    PANEL_WIDTH, TITLE_HEIGHT,
};

/// Text sizes (pixels at the PNG's size); none below [`MIN_TEXT_PX`].
pub(crate) const TICK_PX: f64 = MIN_TEXT_PX;
pub(crate) const LEGEND_PX: f64 = MIN_TEXT_PX;
pub(crate) const CELL_PX: f64 = MIN_TEXT_PX;
pub(crate) const DESC_PX: f64 = 15.0;
pub(crate) const CAPTION_PX: f64 = 17.0;
pub(crate) const TITLE_PX: f64 = 20.0;

/// Space around each panel's chart, in pixels.
pub(crate) const MARGIN: u32 = 12;
/// Height plotters gives a panel caption (text plus its gap).
const CAPTION_H: u32 = 30;
/// Width of the y tick labels (up to "-1.5M" at 14 px) plus the tick marks.
const Y_TICKS_W: u32 = 50;
/// Height of the x tick labels plus the tick marks.
pub(crate) const X_TICKS_H: u32 = 28;
/// Extra room an axis description takes beside its tick labels.
const DESC_H: u32 = 22;
/// Line height of wrapped category labels.
pub(crate) const LINE_H: u32 = 17;

/// Legend geometry: sample width, gap to the text, row height and padding.
pub(crate) const SAMPLE_W: i32 = 30;
const SAMPLE_GAP: i32 = 6;
const LEGEND_ROW_H: i32 = 22;
const LEGEND_COL_GAP: i32 = 18;
const LEGEND_PAD: i32 = 10;

/// The smallest bar width, and the slot a heatmap cell and an interval row need.
const MIN_BAR_W: f64 = 10.0;
/// Fraction of a category's slot the bars of a group fill (the rest separates groups).
pub(crate) const BAR_GROUP: f64 = 0.8;
const MIN_CELL_W: u32 = 48;
pub(crate) const CELL_H: u32 = 28;
pub(crate) const INTERVAL_ROW_H: u32 = 26;
const INTERVAL_PLOT_W: u32 = 230;

/// How a legend entry's sample is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Mark {
    /// A line of a [`crate::LineChart`] series.
    Line { color: usize, style: LineStyle },
    /// A bar (filled, or outlined and hatched).
    Bar { color: usize, hatched: bool },
    /// A scatter point (disc or ring).
    Point { color: usize, hollow: bool },
    /// A reference line.
    Reference,
}

/// One entry of the shared legend.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegendItem {
    pub label: String,
    pub mark: Mark,
}

/// The computed layout of a figure, in image pixels.
pub(crate) struct Geometry {
    pub size: (u32, u32),
    /// The title strip, when titled.
    pub title: Option<Rect>,
    /// One cell per panel.
    pub cells: Vec<Rect>,
    /// Each legend entry and the rectangle its sample and text fill.
    pub legend: Vec<(LegendItem, Rect)>,
}

/// Width and height of `text` at `px` in the embedded font; an estimate when the font is not
/// registered (it is before anything is drawn, see `render::ensure_font`).
pub(crate) fn text_size(text: &str, px: f64) -> (u32, u32) {
    let _ = crate::render::ensure_font();
    let font: FontDesc<'_> = (crate::render::FONT, px).into_font();
    font.box_size(text)
        .unwrap_or(((text.chars().count() as f64 * px * 0.55) as u32, px as u32))
}

pub(crate) fn text_width(text: &str, px: f64) -> u32 {
    text_size(text, px).0
}

/// Space for an axis: its tick labels, plus a description line when there is one.
pub(crate) fn label_area(desc: &str, ticks: u32) -> u32 {
    if desc.is_empty() {
        ticks
    } else {
        ticks + DESC_H
    }
}

pub(crate) fn y_label_area(desc: &str) -> u32 {
    label_area(desc, Y_TICKS_W)
}

pub(crate) fn x_label_area(desc: &str) -> u32 {
    label_area(desc, X_TICKS_H)
}

fn caption_h(title: &str) -> u32 {
    if title.is_empty() {
        0
    } else {
        CAPTION_H
    }
}

/// Height a panel needs so its y description fits along the plot, and width so its
/// caption and x description fit across it.
fn fit_texts(size: (u32, u32), title: &str, x_desc: &str, y_desc: &str, x_area: u32) -> (u32, u32) {
    let (mut w, mut h) = size;
    let fixed_h = 2 * MARGIN + caption_h(title) + x_area + 10;
    h = h.max(text_width(y_desc, DESC_PX) + fixed_h);
    let fixed_w = 2 * MARGIN + y_label_area(y_desc) + 10;
    w = w.max(text_width(x_desc, DESC_PX) + fixed_w);
    w = w.max(text_width(title, CAPTION_PX) + 2 * MARGIN + 10);
    (w, h)
}

/// Category labels broken into lines of at most `width` pixels at words (spaces and
/// underscores stay with the word before them); a single word wider than that keeps its
/// own line whole, so the slot is widened for it instead (see [`bars_size`]).
pub(crate) fn wrap(label: &str, width: u32) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    for c in label.chars() {
        cur.push(c);
        if c == ' ' || c == '_' {
            words.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for w in words {
        let candidate = format!("{line}{w}");
        if !line.is_empty() && text_width(candidate.trim_end(), TICK_PX) > width {
            lines.push(line.trim_end().to_string());
            line = w;
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line.trim_end().to_string());
    }
    lines
}

/// The slot (pixels) each category of a bar chart gets: room for every bar at
/// [`MIN_BAR_W`] and for the category's longest single word.
pub(crate) fn bar_slot(c: &BarChart) -> f64 {
    let m = c.series.len().max(1) as f64;
    let words = c
        .categories
        .iter()
        .flat_map(|s| s.split([' ', '_']))
        .map(|w| f64::from(text_width(w, TICK_PX)) + 12.0)
        .fold(0.0, f64::max);
    (m * MIN_BAR_W / BAR_GROUP).max(words).max(40.0)
}

/// Lines of the wrapped category labels under a bar chart (at least one).
pub(crate) fn bar_label_lines(c: &BarChart, slot: f64) -> usize {
    c.categories
        .iter()
        .map(|s| wrap(s, (slot - 8.0) as u32).len())
        .max()
        .unwrap_or(1)
        .max(1)
}

fn bars_size(c: &BarChart) -> (u32, u32) {
    let n = c.categories.len().max(1) as f64;
    let slot = bar_slot(c);
    let x_area = 10 + LINE_H * bar_label_lines(c, slot) as u32;
    let w = 2 * MARGIN + y_label_area(&c.y_label) + (n * slot).ceil() as u32 + 10;
    fit_texts(
        (w.max(PANEL_WIDTH), PANEL_HEIGHT),
        &c.title,
        "",
        &c.y_label,
        x_area,
    )
}

/// Width of the row labels' area of a heatmap or interval chart: the widest label whole.
pub(crate) fn row_label_area(labels: impl Iterator<Item = impl AsRef<str>>) -> u32 {
    labels
        .map(|l| text_width(l.as_ref(), TICK_PX))
        .max()
        .unwrap_or(0)
        + 20
}

pub(crate) fn heatmap_cell_w(c: &Heatmap) -> u32 {
    let widest = c
        .col_labels
        .iter()
        .map(|l| text_width(l, TICK_PX) + 12)
        .max()
        .unwrap_or(0);
    widest.max(MIN_CELL_W)
}

fn heatmap_size(c: &Heatmap) -> (u32, u32) {
    let rows = c.row_labels.len().max(c.values.len()) as u32;
    let cols = c
        .values
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(c.col_labels.len()) as u32;
    let w = 2 * MARGIN + row_label_area(c.row_labels.iter()) + cols * heatmap_cell_w(c) + 10;
    let h = 2 * MARGIN + caption_h(&c.title) + X_TICKS_H + rows * CELL_H + 10;
    let w = w.max(text_width(&c.title, CAPTION_PX) + 2 * MARGIN + 10);
    (w.max(300), h.max(200))
}

pub(crate) fn interval_label_area(c: &IntervalChart) -> u32 {
    if c.row_labels {
        row_label_area(c.rows.iter().map(|r| r.label.as_str()))
    } else {
        10
    }
}

fn intervals_size(c: &IntervalChart) -> (u32, u32) {
    let rows = c.rows.len().max(1) as u32;
    let w = 2 * MARGIN + interval_label_area(c) + INTERVAL_PLOT_W;
    let h = 2 * MARGIN + caption_h(&c.title) + x_label_area(&c.x_label) + rows * INTERVAL_ROW_H;
    fit_texts(
        (w, h.max(200)),
        &c.title,
        &c.x_label,
        "",
        x_label_area(&c.x_label),
    )
}

/// The size a panel needs for its content.
pub(crate) fn panel_size(panel: &Panel) -> (u32, u32) {
    match panel {
        Panel::Line(c) => fit_texts(
            (PANEL_WIDTH, PANEL_HEIGHT),
            &c.title,
            &c.x_label,
            &c.y_label,
            x_label_area(&c.x_label),
        ),
        Panel::Scatter(c) => fit_texts(
            (PANEL_WIDTH, PANEL_HEIGHT),
            &c.title,
            &c.x_label,
            &c.y_label,
            x_label_area(&c.x_label),
        ),
        Panel::Bars(c) => bars_size(c),
        Panel::Heatmap(c) => heatmap_size(c),
        Panel::Intervals(c) => intervals_size(c),
    }
}

/// Every labelled thing of every panel, once per label, in order of first appearance;
/// reference lines after the data entries.
pub(crate) fn legend_items(figure: &Figure) -> Vec<LegendItem> {
    let mut items: Vec<LegendItem> = Vec::new();
    let mut references: Vec<LegendItem> = Vec::new();
    let add = |list: &mut Vec<LegendItem>, label: &str, mark: Mark| {
        if !label.is_empty() && !list.iter().any(|i| i.label == label) {
            list.push(LegendItem {
                label: label.to_string(),
                mark,
            });
        }
    };
    for panel in &figure.panels {
        let lines = match panel {
            Panel::Line(c) => {
                for s in &c.series {
                    let mark = Mark::Line {
                        color: s.color,
                        style: s.style,
                    };
                    add(&mut items, &s.label, mark);
                }
                &c.hlines
            }
            Panel::Bars(c) => {
                for s in &c.series {
                    let mark = Mark::Bar {
                        color: s.color,
                        hatched: s.hatched,
                    };
                    add(&mut items, &s.label, mark);
                }
                &c.hlines
            }
            Panel::Scatter(c) => {
                for p in &c.points {
                    let mark = Mark::Point {
                        color: p.color,
                        hollow: p.hollow,
                    };
                    add(&mut items, &p.label, mark);
                }
                &c.hlines
            }
            Panel::Intervals(c) => &c.vlines,
            Panel::Heatmap(_) => continue,
        };
        for (v, label) in lines {
            if v.is_finite() {
                add(&mut references, label, Mark::Reference);
            }
        }
    }
    items.extend(references);
    items
}

/// Columns and rows of the panel grid actually drawn.
fn grid(figure: &Figure) -> (usize, usize) {
    let n = figure.panels.len().max(1);
    let cols = figure.columns.clamp(1, n);
    (cols, n.div_ceil(cols))
}

/// Lays the figure out: the panel grid (each column as wide as its widest panel, each row as
/// tall as its tallest), widened for the title and the legend when they need more, the
/// title strip above and the legend strip below.
pub(crate) fn geometry(figure: &Figure) -> Geometry {
    let (cols, rows) = grid(figure);
    let sizes: Vec<(u32, u32)> = if figure.panels.is_empty() {
        vec![(PANEL_WIDTH, PANEL_HEIGHT)]
    } else {
        figure.panels.iter().map(panel_size).collect()
    };
    let mut col_w = vec![0u32; cols];
    let mut row_h = vec![0u32; rows];
    for (i, &(w, h)) in sizes.iter().enumerate() {
        col_w[i % cols] = col_w[i % cols].max(w);
        row_h[i / cols] = row_h[i / cols].max(h);
    }
    let items = legend_items(figure);
    let entry_w: Vec<i32> = items
        .iter()
        .map(|i| SAMPLE_W + SAMPLE_GAP + text_width(&i.label, LEGEND_PX) as i32)
        .collect();
    let legend_col = entry_w.iter().copied().max().unwrap_or(0) + LEGEND_COL_GAP;
    let title_h = if figure.title.is_empty() {
        0
    } else {
        TITLE_HEIGHT
    };

    let grid_w: u32 = col_w.iter().sum();
    let mut width = grid_w
        .max(text_width(&figure.title, TITLE_PX) + 40)
        .max((legend_col + 2 * LEGEND_PAD) as u32);
    if width > grid_w {
        // Spread the extra width over the columns so the panels fill the figure.
        let extra = width - grid_w;
        for (k, w) in col_w.iter_mut().enumerate() {
            *w += extra / cols as u32 + u32::from((k as u32) < extra % cols as u32);
        }
    }
    width = col_w.iter().sum();
    let grid_h: u32 = row_h.iter().sum();

    let mut cells = Vec::new();
    for i in 0..figure.panels.len() {
        let (c, r) = (i % cols, i / cols);
        let x0: u32 = col_w[..c].iter().sum();
        let y0: u32 = title_h + row_h[..r].iter().sum::<u32>();
        cells.push(Rect {
            x0: x0 as i32,
            y0: y0 as i32,
            x1: (x0 + col_w[c]) as i32 - 1,
            y1: (y0 + row_h[r]) as i32 - 1,
        });
    }

    let mut legend = Vec::new();
    let mut legend_h = 0;
    if !items.is_empty() {
        let per_row = ((width as i32 - 2 * LEGEND_PAD) / legend_col).max(1) as usize;
        let per_row = per_row.min(items.len());
        let lines = items.len().div_ceil(per_row);
        // Centred: the columns of entries take per_row × legend_col, less the last gap.
        let used = per_row as i32 * legend_col - LEGEND_COL_GAP;
        let left = (width as i32 - used) / 2;
        let top = (title_h + grid_h) as i32 + LEGEND_PAD;
        for (k, (item, w)) in items.into_iter().zip(entry_w).enumerate() {
            let (col, line) = ((k % per_row) as i32, (k / per_row) as i32);
            let x0 = left + col * legend_col;
            let y0 = top + line * LEGEND_ROW_H;
            legend.push((
                item,
                Rect {
                    x0,
                    y0,
                    x1: x0 + w,
                    y1: y0 + LEGEND_ROW_H - 4,
                },
            ));
        }
        legend_h = lines as u32 * LEGEND_ROW_H as u32 + 2 * LEGEND_PAD as u32;
    }
    Geometry {
        size: (width, title_h + grid_h + legend_h),
        title: (title_h > 0).then(|| Rect {
            x0: 0,
            y0: 0,
            x1: width as i32 - 1,
            y1: title_h as i32 - 1,
        }),
        cells,
        legend,
    }
}
