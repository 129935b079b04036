//! Drawing of figures with plotters. Every panel kind is drawn by a function generic over the
//! backend, so the PNG and the SVG come from the same code. Panels, title and legend go into
//! the rectangles [`crate::layout`] computed; every data mark drawn is recorded (its pixel
//! bounding box) so [`crate::layout()`] can show that nothing else sits on the data.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::chart::ChartContext;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::layout::{
    self, Geometry, Mark, BAR_GROUP, CAPTION_PX, CELL_PX, DESC_PX, LEGEND_PX, MARGIN, SAMPLE_W,
    TICK_PX, TITLE_PX,
};
use crate::{
    BarChart, Figure, Heatmap, IntervalChart, LineChart, LineStyle, Panel, PlotError, Rect,
    ScatterChart, PALETTE,
};

/// Family every text element asks for; the embedded font is registered under this name.
pub(crate) const FONT: &str = "sans-serif";
/// Dark grey rather than pure black: softer on white while still high contrast.
const TEXT: RGBColor = RGBColor(0x22, 0x22, 0x22);
/// Reference lines: neutral so they never read as one of the series.
const REF_LINE: RGBColor = RGBColor(0x55, 0x55, 0x55);
/// Heatmap colour for 0 (red) and 1 (blue): the ends of ColorBrewer RdBu, which stays
/// distinguishable under the common colour-vision deficiencies.
const HEAT_LOW: (f64, f64, f64) = (178.0, 24.0, 43.0);
const HEAT_HIGH: (f64, f64, f64) = (33.0, 102.0, 172.0);
/// Values beyond this magnitude are treated like NaN: plotters' tick computation misbehaves
/// near the f64 limits and no chart of returns or step counts needs them.
const MAX_MAGNITUDE: f64 = 1e100;
/// Dash and gap of a dashed series, in pixels: long dashes so a dashed curve still reads as
/// one curve among others.
const DASH: (u32, u32) = (9, 5);
/// Distance between the diagonal lines of a hatched bar.
const HATCH_SPACING: i32 = 6;

type Area<DB> = DrawingArea<DB, Shift>;
type Chart<'a, DB, X, Y> = ChartContext<'a, DB, Cartesian2d<X, Y>>;
/// The pixel boxes of the data marks drawn so far.
type Marks = Vec<Rect>;

static FONT_LOADED: OnceLock<bool> = OnceLock::new();

/// Registers the embedded font with plotters exactly once. Both backends need it: plotters
/// measures text (label areas) through the registered font even for SVG, and so does the
/// layout.
pub(crate) fn ensure_font() -> Result<(), PlotError> {
    let ok = FONT_LOADED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT)
            .is_ok()
    });
    if *ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

fn draw_err<E: std::error::Error + Send + Sync>(e: DrawingAreaErrorKind<E>) -> PlotError {
    PlotError::Draw(e.to_string())
}

pub(crate) fn render_png(figure: &Figure, g: &Geometry, path: &Path) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, g.size).into_drawing_area();
    render(&root, figure, g)?;
    root.present().map_err(draw_err)
}

/// The SVG document and the data marks drawn.
pub(crate) fn render_svg(figure: &Figure, g: &Geometry) -> Result<(String, Marks), PlotError> {
    let mut out = String::new();
    let marks = {
        let root = SVGBackend::with_string(&mut out, g.size).into_drawing_area();
        let marks = render(&root, figure, g)?;
        root.present().map_err(draw_err)?;
        marks
    };
    Ok((out, marks))
}

fn sub_area<DB: DrawingBackend>(root: &Area<DB>, r: &Rect) -> Area<DB> {
    root.clone().shrink(
        (r.x0, r.y0),
        ((r.x1 - r.x0 + 1) as u32, (r.y1 - r.y0 + 1) as u32),
    )
}

fn render<DB: DrawingBackend>(
    root: &Area<DB>,
    figure: &Figure,
    g: &Geometry,
) -> Result<Marks, PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    if let Some(t) = &g.title {
        root.draw(&Text::new(
            figure.title.clone(),
            ((t.x0 + t.x1) / 2, (t.y0 + t.y1) / 2),
            font(TITLE_PX).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    let mut marks = Marks::new();
    if figure.panels.is_empty() {
        let (w, h) = g.size;
        let top = g.title.map_or(0, |t| t.y1 + 1);
        let body = Rect {
            x0: 0,
            y0: top,
            x1: w as i32 - 1,
            y1: h as i32 - 1,
        };
        draw_no_data(&sub_area(root, &body), "")?;
    }
    for (panel, cell) in figure.panels.iter().zip(&g.cells) {
        let area = sub_area(root, cell);
        match panel {
            Panel::Line(c) => draw_line_panel(&area, c, &mut marks)?,
            Panel::Bars(c) => draw_bar_panel(&area, c, &mut marks)?,
            Panel::Heatmap(c) => draw_heatmap_panel(&area, c, &mut marks)?,
            Panel::Scatter(c) => draw_scatter_panel(&area, c, &mut marks)?,
            Panel::Intervals(c) => draw_interval_panel(&area, c, &mut marks)?,
        }
    }
    draw_legend(root, g)?;
    Ok(marks)
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&TEXT)
}

fn palette(index: usize) -> RGBColor {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The shared legend: one sample and label per entry, in the strip below the panels.
fn draw_legend<DB: DrawingBackend>(root: &Area<DB>, g: &Geometry) -> Result<(), PlotError> {
    for (item, r) in &g.legend {
        let y = (r.y0 + r.y1) / 2;
        let (x0, x1) = (r.x0, r.x0 + SAMPLE_W - 4);
        match item.mark {
            Mark::Line { color, style } => {
                let c = palette(color);
                match style {
                    LineStyle::Dashed => {
                        dashed_sample(root, (x0, x1), y, (7, 4), c.stroke_width(2))?
                    }
                    LineStyle::Faint => root
                        .draw(&PathElement::new(
                            [(x0, y), (x1, y)],
                            c.mix(0.4).stroke_width(2),
                        ))
                        .map_err(draw_err)?,
                    LineStyle::Solid | LineStyle::Markers => {
                        let width = if style == LineStyle::Solid { 2 } else { 1 };
                        root.draw(&PathElement::new([(x0, y), (x1, y)], c.stroke_width(width)))
                            .map_err(draw_err)?;
                        if style == LineStyle::Markers {
                            root.draw(&Circle::new(((x0 + x1) / 2, y), 3, c.filled()))
                                .map_err(draw_err)?;
                        }
                    }
                }
            }
            Mark::Bar { color, hatched } => {
                let rect = Rect {
                    x0,
                    y0: y - 6,
                    x1,
                    y1: y + 6,
                };
                draw_bar_rect(root, rect, palette(color), hatched)?;
            }
            Mark::Point { color, hollow } => {
                draw_point(root, ((x0 + x1) / 2, y), palette(color), hollow)?;
            }
            Mark::Reference => dashed_sample(root, (x0, x1), y, (6, 4), REF_LINE.stroke_width(1))?,
        }
        root.draw(&Text::new(
            item.label.clone(),
            (r.x0 + SAMPLE_W + 6, y),
            font(LEGEND_PX).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(draw_err)?;
    }
    Ok(())
}

/// A horizontal dashed line from `xs.0` to `xs.1` at `y` (legend samples).
fn dashed_sample<DB: DrawingBackend>(
    area: &Area<DB>,
    xs: (i32, i32),
    y: i32,
    (dash, gap): (i32, i32),
    style: ShapeStyle,
) -> Result<(), PlotError> {
    let mut x = xs.0;
    while x < xs.1 {
        let end = (x + dash).min(xs.1);
        area.draw(&PathElement::new([(x, y), (end, y)], style))
            .map_err(draw_err)?;
        x = end + gap;
    }
    Ok(())
}

/// A filled bar, or (hatched) a pale fill with a coloured outline and diagonal lines, in
/// pixel coordinates of `area`.
fn draw_bar_rect<DB: DrawingBackend>(
    area: &Area<DB>,
    r: Rect,
    color: RGBColor,
    hatched: bool,
) -> Result<(), PlotError> {
    if !hatched {
        return area
            .draw(&Rectangle::new(
                [(r.x0, r.y0), (r.x1, r.y1)],
                color.filled(),
            ))
            .map_err(draw_err);
    }
    area.draw(&Rectangle::new(
        [(r.x0, r.y0), (r.x1, r.y1)],
        color.mix(0.15).filled(),
    ))
    .map_err(draw_err)?;
    for (a, b) in hatch_segments(r, HATCH_SPACING) {
        area.draw(&PathElement::new([a, b], color.stroke_width(1)))
            .map_err(draw_err)?;
    }
    area.draw(&Rectangle::new(
        [(r.x0, r.y0), (r.x1, r.y1)],
        color.stroke_width(2),
    ))
    .map_err(draw_err)
}

/// 45° lines `spacing` apart clipped to `r` (from its bottom-left towards its top-right).
pub(crate) fn hatch_segments(r: Rect, spacing: i32) -> Vec<((i32, i32), (i32, i32))> {
    let (w, h) = (r.x1 - r.x0, r.y1 - r.y0);
    let mut out = Vec::new();
    let mut d = -h;
    while d <= w {
        // Points (x0 + d + t, y1 − t) for t in [0, h], kept where x lies in [x0, x1].
        let (t0, t1) = ((-d).max(0), h.min(w - d));
        if t0 < t1 {
            out.push(((r.x0 + d + t0, r.y1 - t0), (r.x0 + d + t1, r.y1 - t1)));
        }
        d += spacing;
    }
    out
}

/// A point marker: a disc with a dark rim, or a ring (white inside) for hollow.
fn draw_point<DB: DrawingBackend>(
    area: &Area<DB>,
    at: (i32, i32),
    color: RGBColor,
    hollow: bool,
) -> Result<(), PlotError> {
    if hollow {
        // A coloured disc with a white centre: plotters' stroked circles are uneven at
        // this size.
        area.draw(&Circle::new(at, 6, color.filled()))
            .map_err(draw_err)?;
        area.draw(&Circle::new(at, 3, WHITE.filled()))
            .map_err(draw_err)
    } else {
        area.draw(&Circle::new(at, 5, color.filled()))
            .map_err(draw_err)?;
        area.draw(&Circle::new(at, 5, TEXT.stroke_width(1)))
            .map_err(draw_err)
    }
}

/// Records the pixel box of data points (`grow`: stroke half-width or marker radius).
fn record<DB, X, Y>(
    marks: &mut Marks,
    chart: &Chart<'_, DB, X, Y>,
    points: impl IntoIterator<Item = (f64, f64)>,
    grow: i32,
) where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    if let Some(r) = Rect::around(points.into_iter().map(|p| chart.backend_coord(&p))) {
        marks.push(r.grown(grow));
    }
}

/// A chart's pixel rectangle in `area`'s own coordinates, from data coordinates.
fn local<DB, X, Y>(
    area: &Area<DB>,
    chart: &Chart<'_, DB, X, Y>,
    a: (f64, f64),
    b: (f64, f64),
) -> Rect
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let (bx, by) = area.get_base_pixel();
    let (p, q) = (chart.backend_coord(&a), chart.backend_coord(&b));
    Rect {
        x0: p.0.min(q.0) - bx,
        y0: p.1.min(q.1) - by,
        x1: p.0.max(q.0) - bx,
        y1: p.1.max(q.1) - by,
    }
}

fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() < MAX_MAGNITUDE
}

/// How far beyond the values' own span (as a fraction of it) an axis stretches to show their
/// intervals ([`Extent::with_intervals`]).
const INTERVAL_REACH: f64 = 0.5;

/// `v` held inside the axis range `r`, and whether it had to be.
fn clip(v: f64, r: &Range<f64>) -> (f64, bool) {
    let c = v.clamp(r.start.min(r.end), r.start.max(r.end));
    (c, c != v)
}

/// Running min/max of the plottable values seen.
#[derive(Clone, Copy)]
struct Extent {
    lo: f64,
    hi: f64,
}

impl Extent {
    fn new() -> Self {
        Self {
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
        }
    }

    fn add(&mut self, v: f64) {
        if plottable(v) {
            self.lo = self.lo.min(v);
            self.hi = self.hi.max(v);
        }
    }

    fn is_empty(&self) -> bool {
        self.lo > self.hi
    }

    /// These values widened to take in `intervals` (error bars, bands) only as far as
    /// [`INTERVAL_REACH`] of the values' span beyond them: a t-interval over two seeds can be
    /// ten times the data's span and would flatten every curve and bar; what reaches further
    /// is clipped at the axis ([`clip`]).
    fn with_intervals(mut self, intervals: Extent) -> Self {
        if self.is_empty() || intervals.is_empty() {
            return self;
        }
        let span = (self.hi - self.lo).max(0.1 * self.lo.abs().max(self.hi.abs()));
        let reach = if span > 0.0 {
            INTERVAL_REACH * span
        } else {
            1.0
        };
        self.lo = self.lo.min(intervals.lo.max(self.lo - reach));
        self.hi = self.hi.max(intervals.hi.min(self.hi + reach));
        self
    }

    /// Range widened by `frac` of the span on each side; a zero (or numerically zero) span
    /// is opened up around the value so plotters never gets an empty range.
    fn padded(&self, frac: f64) -> Range<f64> {
        let (lo, hi) = (self.lo, self.hi);
        let span = hi - lo;
        let scale = lo.abs().max(hi.abs());
        if span <= scale * 1e-9 || span == 0.0 {
            let d = if scale == 0.0 { 1.0 } else { scale * 0.1 };
            return (lo - d)..(hi + d);
        }
        (lo - span * frac)..(hi + span * frac)
    }

    /// Log-axis range (values are positive): widened by `frac` of the span in log space,
    /// and stretched to whole decades when it contains no power of ten, because plotters'
    /// log axis only places ticks at powers of ten and would otherwise draw none.
    /// Log range padded by `left` / `right` fractions of its span (in decades).
    fn padded_log(&self, left: f64, right: f64) -> Range<f64> {
        let (mut a, mut b) = (self.lo.log10(), self.hi.log10());
        if b - a < 1e-9 {
            a -= 0.5;
            b += 0.5;
        } else {
            let span = b - a;
            a -= span * left;
            b += span * right;
        }
        if a.ceil() > b.floor() {
            a = a.floor();
            b = b.ceil();
        }
        10f64.powf(a)..10f64.powf(b)
    }
}

/// Compact tick label: "250k", "1.5M", "0.25", "1e-5" so labels stay short on narrow panels.
pub(crate) fn fmt_tick(v: f64) -> String {
    fn trim(s: String) -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
    let a = v.abs();
    if a < 1e-12 {
        "0".to_string()
    } else if a >= 1e9 {
        format!("{}G", trim(format!("{:.2}", v / 1e9)))
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 1e-3 {
        trim(format!("{v:.4}"))
    } else {
        format!("{v:.0e}")
    }
}

/// Draws the panel title and "no data" so an empty panel is visibly empty, not broken.
fn draw_no_data<DB: DrawingBackend>(area: &Area<DB>, title: &str) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Text::new(
        title.to_string(),
        (w / 2, 12),
        font(CAPTION_PX).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(draw_err)?;
    area.draw(&Text::new(
        "no data",
        (w / 2, h / 2),
        font(DESC_PX).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(draw_err)
}

fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a Area<DB>,
    title: &str,
    x_label_area: u32,
    y_label_area: u32,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin(MARGIN)
        .x_label_area_size(x_label_area)
        .y_label_area_size(y_label_area);
    if !title.is_empty() {
        b.caption(title, font(CAPTION_PX));
    }
    b
}

/// Light horizontal/vertical grid, dark axes and tick labels in compact notation.
fn configure_mesh<DB, X, Y>(
    chart: &mut Chart<'_, DB, X, Y>,
    x_desc: &str,
    y_desc: &str,
    x_labels: usize,
    x_mesh: bool,
    x_fmt: &dyn Fn(&f64) -> String,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_fmt = |v: &f64| fmt_tick(*v);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(RGBColor(0, 0, 0).mix(0.12))
        .light_line_style(TRANSPARENT)
        .axis_style(TEXT)
        .label_style(font(TICK_PX))
        .axis_desc_style(font(DESC_PX))
        .x_labels(x_labels)
        .y_labels(8)
        .x_label_formatter(x_fmt)
        .y_label_formatter(&y_fmt);
    if !x_mesh {
        mesh.disable_x_mesh();
    }
    if !x_desc.is_empty() {
        mesh.x_desc(x_desc);
    }
    if !y_desc.is_empty() {
        mesh.y_desc(y_desc);
    }
    mesh.draw().map_err(draw_err)
}

/// Dashed grey reference lines across the plot; their labels are in the legend, never on
/// the data.
fn draw_hlines<DB, X>(
    chart: &mut Chart<'_, DB, X, RangedCoordf64>,
    hlines: &[(f64, String)],
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
{
    let xr = chart.x_range();
    for (y, _) in hlines.iter().filter(|(y, _)| plottable(*y)) {
        chart
            .draw_series(DashedLineSeries::new(
                [(xr.start, *y), (xr.end, *y)],
                6,
                4,
                REF_LINE.stroke_width(1),
            ))
            .map_err(draw_err)?;
    }
    Ok(())
}

/// Valid points of a line as runs: non-plottable points (and x ≤ 0 on a log axis) end a run
/// rather than being bridged, so gaps in the data stay visible.
fn runs(points: &[(f64, f64)], log_x: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for &(x, y) in points {
        if plottable(x) && plottable(y) && (!log_x || x > 0.0) {
            cur.push((x, y));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Valid band entries; a band is a polygon, so one bad entry is dropped rather than splitting it.
fn band_points(band: &[(f64, f64, f64)], log_x: bool) -> Vec<(f64, f64, f64)> {
    band.iter()
        .copied()
        .filter(|&(x, lo, hi)| {
            plottable(x) && plottable(lo) && plottable(hi) && (!log_x || x > 0.0)
        })
        .collect()
}

fn draw_line_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    c: &LineChart,
    marks: &mut Marks,
) -> Result<(), PlotError> {
    let mut xs = Extent::new();
    let (mut ys, mut bands) = (Extent::new(), Extent::new());
    for s in &c.series {
        for run in runs(&s.points, c.log_x) {
            for (x, y) in run {
                xs.add(x);
                ys.add(y);
            }
        }
        for (x, lo, hi) in band_points(&s.band, c.log_x) {
            xs.add(x);
            bands.add(lo);
            bands.add(hi);
        }
    }
    if xs.is_empty() {
        return draw_no_data(area, &c.title);
    }
    if ys.is_empty() {
        ys = bands;
    }
    for (y, _) in &c.hlines {
        ys.add(*y);
    }
    let y = ys.with_intervals(bands).padded(0.05);
    if c.log_x {
        let x: LogCoord<f64> = xs.padded_log(0.02, 0.02).log_scale().into();
        line_body(area, c, x, y, marks)
    } else {
        let x: RangedCoordf64 = xs.padded(0.02).into();
        line_body(area, c, x, y, marks)
    }
}

fn line_body<DB, X>(
    area: &Area<DB>,
    c: &LineChart,
    x: X,
    y: Range<f64>,
    marks: &mut Marks,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = builder(
        area,
        &c.title,
        layout::x_label_area(&c.x_label),
        layout::y_label_area(&c.y_label),
    )
    .build_cartesian_2d(x, y)
    .map_err(draw_err)?;
    let x_fmt = |v: &f64| fmt_tick(*v);
    configure_mesh(&mut chart, &c.x_label, &c.y_label, 8, true, &x_fmt)?;

    let y_range = chart.y_range();
    for s in &c.series {
        let band: Vec<_> = band_points(&s.band, c.log_x)
            .into_iter()
            .map(|(x, lo, hi)| (x, clip(lo, &y_range).0, clip(hi, &y_range).0))
            .collect();
        if band.len() >= 2 {
            let color = palette(s.color);
            let mut poly: Vec<(f64, f64)> = band.iter().map(|&(x, _, hi)| (x, hi)).collect();
            poly.extend(band.iter().rev().map(|&(x, lo, _)| (x, lo)));
            // Bands of other projects' curves are fainter: their curves are the dashed ones.
            let alpha = if s.style == LineStyle::Dashed {
                0.1
            } else {
                0.18
            };
            record(marks, &chart, poly.iter().copied(), 0);
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly,
                    color.mix(alpha).filled(),
                )))
                .map_err(draw_err)?;
        }
    }
    draw_hlines(&mut chart, &c.hlines)?;

    // Faint raw data first, then the summaries on top of it.
    for style in [
        LineStyle::Faint,
        LineStyle::Dashed,
        LineStyle::Solid,
        LineStyle::Markers,
    ] {
        for s in c.series.iter().filter(|s| s.style == style) {
            let color = palette(s.color);
            let line_style = match style {
                LineStyle::Faint => color.mix(0.3).stroke_width(1),
                LineStyle::Solid | LineStyle::Dashed => color.stroke_width(2),
                LineStyle::Markers => color.stroke_width(1),
            };
            for run in runs(&s.points, c.log_x) {
                record(marks, &chart, run.iter().copied(), 3);
                if style == LineStyle::Dashed {
                    chart
                        .draw_series(DashedLineSeries::new(
                            run.iter().copied(),
                            DASH.0,
                            DASH.1,
                            line_style,
                        ))
                        .map_err(draw_err)?;
                } else {
                    chart
                        .draw_series(LineSeries::new(run.iter().copied(), line_style))
                        .map_err(draw_err)?;
                }
                if style == LineStyle::Markers || run.len() == 1 {
                    // A lone point draws no line segment, so it gets a dot to stay visible.
                    let dot = if style == LineStyle::Faint {
                        color.mix(0.3).filled()
                    } else {
                        color.filled()
                    };
                    chart
                        .draw_series(run.iter().map(|&p| Circle::new(p, 3, dot)))
                        .map_err(draw_err)?;
                }
            }
        }
    }
    Ok(())
}

/// Category axis for bars and heatmaps: values are category indices, each category gets a
/// unit-wide slot centred on its index, and ticks sit exactly on the indices (plotters'
/// numeric axes pick "nice" ticks that need not be integers).
#[derive(Clone)]
struct CategoryAxis {
    n: usize,
    /// Index 0 at the far end (top for a y axis), so heatmap rows read top to bottom.
    reversed: bool,
}

impl Ranged for CategoryAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let mut t = (value + 0.5) / self.n as f64;
        if self.reversed {
            t = 1.0 - t;
        }
        (f64::from(limit.0) + t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let step = self.n.div_ceil(hint.max_num_points().max(1)).max(1);
        (0..self.n).step_by(step).map(|i| i as f64).collect()
    }

    fn range(&self) -> Range<f64> {
        -0.5..(self.n as f64 - 0.5)
    }
}

fn draw_bar_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    c: &BarChart,
    marks: &mut Marks,
) -> Result<(), PlotError> {
    let n = c.categories.len();
    let (mut ys, mut whiskers) = (Extent::new(), Extent::new());
    for s in &c.series {
        for v in s.values.iter().take(n) {
            if plottable(v.value) {
                ys.add(v.value);
                whiskers.add(v.lower);
                whiskers.add(v.upper);
            }
        }
    }
    if ys.is_empty() {
        return draw_no_data(area, &c.title);
    }
    // Bars start at zero, so zero is always on the axis; no padding below a zero baseline.
    ys.add(0.0);
    for (y, _) in &c.hlines {
        ys.add(*y);
    }
    let ys = ys.with_intervals(whiskers);
    let mut y = ys.padded(0.05);
    if ys.lo >= 0.0 && ys.hi > 0.0 {
        y.start = 0.0;
    }
    if ys.hi <= 0.0 && ys.lo < 0.0 {
        y.end = 0.0;
    }

    let slot_min = layout::bar_slot(c);
    let x_area = 10 + layout::LINE_H * layout::bar_label_lines(c, slot_min) as u32;
    let x = CategoryAxis { n, reversed: false };
    let mut chart = builder(area, &c.title, x_area, layout::y_label_area(&c.y_label))
        .build_cartesian_2d(x, y.clone())
        .map_err(draw_err)?;
    let blank = |_: &f64| String::new();
    configure_mesh(&mut chart, "", &c.y_label, n, false, &blank)?;

    // Category names under their groups, wrapped at words to the slot: never cut.
    let (pw, _) = chart.plotting_area().dim_in_pixel();
    let slot = f64::from(pw) / n as f64;
    let (bx, by) = area.get_base_pixel();
    for (i, name) in c.categories.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64, y.start));
        for (k, text) in layout::wrap(name, (slot - 8.0).max(1.0) as u32)
            .into_iter()
            .enumerate()
        {
            area.draw(&Text::new(
                text,
                (px - bx, py - by + 8 + layout::LINE_H as i32 * k as i32),
                font(TICK_PX).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(draw_err)?;
        }
    }

    let m = c.series.len().max(1) as f64;
    let width = BAR_GROUP / m;
    for (j, s) in c.series.iter().enumerate() {
        let color = palette(s.color);
        for (i, v) in s.values.iter().take(n).enumerate() {
            if !plottable(v.value) {
                continue;
            }
            let x0 = i as f64 - BAR_GROUP / 2.0 + j as f64 * width;
            let (l, r) = (x0 + width * 0.08, x0 + width * 0.92);
            let rect = local(area, &chart, (l, 0.0), (r, v.value));
            draw_bar_rect(area, rect, color, s.hatched)?;
            record(marks, &chart, [(l, 0.0), (r, v.value)], 1);
            if plottable(v.lower) && plottable(v.upper) {
                let xc = (l + r) / 2.0;
                let cap = (r - l) * 0.25;
                let ends = [clip(v.lower, &y), clip(v.upper, &y)];
                let [(lower, _), (upper, _)] = ends;
                let mut errs = vec![PathElement::new(
                    [(xc, lower), (xc, upper)],
                    TEXT.stroke_width(1),
                )];
                // A clipped end has no cap: the whisker runs on past the axis.
                for (e, _) in ends.into_iter().filter(|&(_, clipped)| !clipped) {
                    errs.push(PathElement::new(
                        [(xc - cap, e), (xc + cap, e)],
                        TEXT.stroke_width(1),
                    ));
                }
                chart.draw_series(errs).map_err(draw_err)?;
                record(marks, &chart, [(xc - cap, lower), (xc + cap, upper)], 1);
            }
        }
    }
    draw_hlines(&mut chart, &c.hlines)
}

/// Diverging colour: `HEAT_LOW` at 0, white at 0.5, `HEAT_HIGH` at 1.
fn heat_color(v: f64) -> RGBColor {
    let v = v.clamp(0.0, 1.0);
    let (end, t) = if v < 0.5 {
        (HEAT_LOW, (0.5 - v) * 2.0)
    } else {
        (HEAT_HIGH, (v - 0.5) * 2.0)
    };
    let mix = |c: f64| (255.0 + (c - 255.0) * t).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// [`heat_color`] as bytes, for tests that look for cell colours in the PNG.
#[cfg(test)]
pub(crate) fn heat_rgb(v: f64) -> [u8; 3] {
    let c = heat_color(v);
    [c.0, c.1, c.2]
}

fn category_label(labels: &[String], v: f64) -> String {
    let i = v.round();
    if i < 0.0 {
        return String::new();
    }
    labels.get(i as usize).cloned().unwrap_or_default()
}

fn draw_heatmap_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    c: &Heatmap,
    marks: &mut Marks,
) -> Result<(), PlotError> {
    let rows = c.row_labels.len().max(c.values.len());
    let cols = c
        .values
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(c.col_labels.len());
    if rows == 0 || cols == 0 {
        return draw_no_data(area, &c.title);
    }
    // Room for the longest row label whole (the layout sized the panel for it).
    let y_area = layout::row_label_area(c.row_labels.iter());
    let x = CategoryAxis {
        n: cols,
        reversed: false,
    };
    let y = CategoryAxis {
        n: rows,
        reversed: true,
    };
    let mut chart = builder(area, &c.title, layout::X_TICKS_H, y_area)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    let x_fmt = |v: &f64| category_label(&c.col_labels, *v);
    let y_fmt = |v: &f64| category_label(&c.row_labels, *v);
    chart
        .configure_mesh()
        .disable_mesh()
        .axis_style(TEXT)
        .label_style(font(TICK_PX))
        .x_labels(cols)
        .y_labels(rows)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .draw()
        .map_err(draw_err)?;

    let mut cells = Vec::new();
    let mut texts = Vec::new();
    for (i, row) in c.values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            let (fx, fy) = (j as f64, i as f64);
            cells.push(Rectangle::new(
                [(fx - 0.5, fy - 0.5), (fx + 0.5, fy + 0.5)],
                heat_color(v).filled(),
            ));
            record(
                marks,
                &chart,
                [(fx - 0.5, fy - 0.5), (fx + 0.5, fy + 0.5)],
                0,
            );
            // White text on the saturated ends, dark text near the white middle.
            let color: &'static RGBColor = if (v - 0.5).abs() > 0.35 {
                &WHITE
            } else {
                &TEXT
            };
            texts.push(Text::new(
                format!("{v:.2}"),
                (fx, fy),
                font(CELL_PX)
                    .color(color)
                    .pos(Pos::new(HPos::Center, VPos::Center)),
            ));
        }
    }
    chart.draw_series(cells).map_err(draw_err)?;
    // Thin white grid so equal neighbouring cells stay distinguishable.
    let grid = (0..=cols)
        .map(|j| {
            let fx = j as f64 - 0.5;
            PathElement::new([(fx, -0.5), (fx, rows as f64 - 0.5)], WHITE.stroke_width(1))
        })
        .chain((0..=rows).map(|i| {
            let fy = i as f64 - 0.5;
            PathElement::new([(-0.5, fy), (cols as f64 - 0.5, fy)], WHITE.stroke_width(1))
        }));
    chart.draw_series(grid).map_err(draw_err)?;
    chart.draw_series(texts).map_err(draw_err)?;
    Ok(())
}

fn draw_scatter_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    c: &ScatterChart,
    marks: &mut Marks,
) -> Result<(), PlotError> {
    let mut xs = Extent::new();
    let (mut ys, mut whiskers) = (Extent::new(), Extent::new());
    let valid = |x: f64, y: f64| plottable(x) && plottable(y) && (!c.log_x || x > 0.0);
    for p in c.points.iter().filter(|p| valid(p.x, p.y)) {
        xs.add(p.x);
        ys.add(p.y);
        if plottable(p.y_lower) && plottable(p.y_upper) {
            whiskers.add(p.y_lower);
            whiskers.add(p.y_upper);
        }
    }
    if xs.is_empty() {
        return draw_no_data(area, &c.title);
    }
    for (y, _) in &c.hlines {
        ys.add(*y);
    }
    let y = ys.with_intervals(whiskers).padded(0.08);
    if c.log_x {
        let x: LogCoord<f64> = xs.padded_log(0.08, 0.08).log_scale().into();
        scatter_body(area, c, x, y, marks)
    } else {
        let x: RangedCoordf64 = xs.padded(0.08).into();
        scatter_body(area, c, x, y, marks)
    }
}

fn scatter_body<DB, X>(
    area: &Area<DB>,
    c: &ScatterChart,
    x: X,
    y: Range<f64>,
    marks: &mut Marks,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = builder(
        area,
        &c.title,
        layout::x_label_area(&c.x_label),
        layout::y_label_area(&c.y_label),
    )
    .build_cartesian_2d(x, y)
    .map_err(draw_err)?;
    let x_fmt = |v: &f64| fmt_tick(*v);
    configure_mesh(&mut chart, &c.x_label, &c.y_label, 8, true, &x_fmt)?;
    draw_hlines(&mut chart, &c.hlines)?;

    let points: Vec<_> = c
        .points
        .iter()
        .filter(|p| plottable(p.x) && plottable(p.y) && (!c.log_x || p.x > 0.0))
        .collect();
    let y_range = chart.y_range();
    for p in &points {
        let color = palette(p.color);
        if plottable(p.y_lower) && plottable(p.y_upper) {
            let ends = [clip(p.y_lower, &y_range), clip(p.y_upper, &y_range)];
            let [(lower, _), (upper, _)] = ends;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(p.x, lower), (p.x, upper)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?;
            // Caps in pixels (not data units) so they look the same on a log axis; a clipped
            // end has none.
            let caps = ends
                .into_iter()
                .filter(|&(_, clipped)| !clipped)
                .map(|(e, _)| {
                    EmptyElement::at((p.x, e))
                        + PathElement::new([(-4, 0), (4, 0)], color.stroke_width(2))
                });
            chart.draw_series(caps).map_err(draw_err)?;
            record(marks, &chart, [(p.x, lower), (p.x, upper)], 4);
        }
    }
    let (bx, by) = area.get_base_pixel();
    for p in &points {
        let (px, py) = chart.backend_coord(&(p.x, p.y));
        draw_point(area, (px - bx, py - by), palette(p.color), p.hollow)?;
        record(marks, &chart, [(p.x, p.y)], 6);
    }
    Ok(())
}

fn draw_interval_panel<DB: DrawingBackend>(
    area: &Area<DB>,
    c: &IntervalChart,
    marks: &mut Marks,
) -> Result<(), PlotError> {
    let mut xs = Extent::new();
    for r in c.rows.iter().filter(|r| plottable(r.value)) {
        xs.add(r.value);
        if plottable(r.lower) && plottable(r.upper) {
            xs.add(r.lower);
            xs.add(r.upper);
        }
    }
    if xs.is_empty() {
        return draw_no_data(area, &c.title);
    }
    for (v, _) in &c.vlines {
        xs.add(*v);
    }
    let n = c.rows.len();
    let labels: Vec<String> = c.rows.iter().map(|r| r.label.clone()).collect();
    let y = CategoryAxis { n, reversed: true };
    let x: RangedCoordf64 = xs.padded(0.08).into();
    let mut chart = builder(
        area,
        &c.title,
        layout::x_label_area(&c.x_label),
        layout::interval_label_area(c),
    )
    .build_cartesian_2d(x, y)
    .map_err(draw_err)?;
    let x_fmt = |v: &f64| fmt_tick(*v);
    let y_fmt = |v: &f64| {
        if c.row_labels {
            category_label(&labels, *v)
        } else {
            String::new()
        }
    };
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(RGBColor(0, 0, 0).mix(0.08))
        .light_line_style(TRANSPARENT)
        .axis_style(TEXT)
        .label_style(font(TICK_PX))
        .axis_desc_style(font(DESC_PX))
        .x_labels(5)
        .y_labels(n)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt);
    if !c.x_label.is_empty() {
        mesh.x_desc(c.x_label.as_str());
    }
    mesh.draw().map_err(draw_err)?;

    let yr = chart.y_range();
    for (v, _) in c.vlines.iter().filter(|(v, _)| plottable(*v)) {
        chart
            .draw_series(DashedLineSeries::new(
                [(*v, yr.start), (*v, yr.end)],
                6,
                4,
                REF_LINE.stroke_width(1),
            ))
            .map_err(draw_err)?;
    }
    let (bx, by) = area.get_base_pixel();
    for (i, r) in c.rows.iter().enumerate() {
        if !plottable(r.value) {
            continue;
        }
        let color = palette(r.color);
        let row = i as f64;
        if plottable(r.lower) && plottable(r.upper) && r.upper > r.lower {
            let ends = [(r.lower, row), (r.upper, row)];
            let style = color.stroke_width(4);
            if r.hollow {
                chart
                    .draw_series(DashedLineSeries::new(ends, 6, 3, style))
                    .map_err(draw_err)?;
            } else {
                chart
                    .draw_series(LineSeries::new(ends, color.mix(0.75).stroke_width(4)))
                    .map_err(draw_err)?;
            }
            record(marks, &chart, ends, 2);
        }
        let (px, py) = chart.backend_coord(&(r.value, row));
        draw_point(area, (px - bx, py - by), color, r.hollow)?;
        record(marks, &chart, [(r.value, row)], 6);
    }
    Ok(())
}
