//! Drawing of figures with plotters. Every panel kind is drawn by a function generic over the
//! backend, so the PNG and the SVG come from the same code.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::chart::{ChartContext, SeriesLabelPosition};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::drawing::DrawingAreaErrorKind;
use plotters::element::MultiLineText;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::{
    BarChart, Figure, Heatmap, LineChart, LineStyle, Panel, PlotError, ScatterChart, PALETTE,
    TITLE_HEIGHT,
};

/// Family every text element asks for; the embedded font is registered under this name.
const FONT: &str = "sans-serif";
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

type Area<DB> = DrawingArea<DB, Shift>;
type Chart<'a, DB, X> = ChartContext<'a, DB, Cartesian2d<X, RangedCoordf64>>;

static FONT_LOADED: OnceLock<bool> = OnceLock::new();

/// Registers the embedded font with plotters exactly once. Both backends need it: plotters
/// measures text (legend boxes, label areas) through the registered font even for SVG.
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

pub(crate) fn render_png(figure: &Figure, path: &Path, size: (u32, u32)) -> Result<(), PlotError> {
    let root = BitMapBackend::new(path, size).into_drawing_area();
    render(&root, figure)?;
    root.present().map_err(draw_err)
}

pub(crate) fn render_svg(figure: &Figure, size: (u32, u32)) -> Result<String, PlotError> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, size).into_drawing_area();
        render(&root, figure)?;
        root.present().map_err(draw_err)?;
    }
    Ok(out)
}

fn render<DB: DrawingBackend>(root: &Area<DB>, figure: &Figure) -> Result<(), PlotError> {
    root.fill(&WHITE).map_err(draw_err)?;
    let body = if figure.title.is_empty() {
        root.clone()
    } else {
        let (top, body) = root.split_vertically(TITLE_HEIGHT);
        let (w, h) = top.dim_in_pixel();
        top.draw(&Text::new(
            figure.title.clone(),
            (w as i32 / 2, h as i32 / 2),
            font(20.0).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(draw_err)?;
        body
    };
    let (cols, rows) = crate::grid(figure);
    let cells = body.split_evenly((rows as usize, cols as usize));
    if figure.panels.is_empty() {
        if let Some(cell) = cells.first() {
            draw_no_data(cell, "")?;
        }
    }
    for (panel, cell) in figure.panels.iter().zip(cells.iter()) {
        match panel {
            Panel::Line(c) => draw_line_panel(cell, c)?,
            Panel::Bars(c) => draw_bar_panel(cell, c)?,
            Panel::Heatmap(c) => draw_heatmap_panel(cell, c)?,
            Panel::Scatter(c) => draw_scatter_panel(cell, c)?,
        }
    }
    Ok(())
}

fn font(size: f64) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&TEXT)
}

fn palette(index: usize) -> RGBColor {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    RGBColor(r, g, b)
}

fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() < MAX_MAGNITUDE
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

/// Shortens `s` to at most `max` characters, marking the cut, so category labels do not
/// run into each other.
fn truncate(s: &str, max: usize) -> String {
    let max = max.max(2);
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Draws the panel title and "no data" so an empty panel is visibly empty, not broken.
fn draw_no_data<DB: DrawingBackend>(area: &Area<DB>, title: &str) -> Result<(), PlotError> {
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    area.draw(&Text::new(
        title.to_string(),
        (w / 2, 12),
        font(16.0).pos(Pos::new(HPos::Center, VPos::Top)),
    ))
    .map_err(draw_err)?;
    area.draw(&Text::new(
        "no data",
        (w / 2, h / 2),
        font(14.0).pos(Pos::new(HPos::Center, VPos::Center)),
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
    b.margin(12)
        .x_label_area_size(x_label_area)
        .y_label_area_size(y_label_area);
    if !title.is_empty() {
        b.caption(title, font(16.0));
    }
    b
}

/// Axis space: tick labels alone need ~25 px; an axis description needs ~20 more.
fn label_area(desc: &str, ticks: u32) -> u32 {
    if desc.is_empty() {
        ticks
    } else {
        ticks + 20
    }
}

/// Light horizontal/vertical grid, dark axes and 12 px tick labels in compact notation.
fn configure_mesh<DB, X>(
    chart: &mut Chart<'_, DB, X>,
    x_desc: &str,
    y_desc: &str,
    x_labels: usize,
    x_mesh: bool,
    x_fmt: &dyn Fn(&f64) -> String,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let y_fmt = |v: &f64| fmt_tick(*v);
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(RGBColor(0, 0, 0).mix(0.12))
        .light_line_style(TRANSPARENT)
        .axis_style(TEXT)
        .label_style(font(12.0))
        .axis_desc_style(font(14.0))
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

/// Dashed grey reference lines across the plot with their label above the right end.
fn draw_hlines<DB, X>(
    chart: &mut Chart<'_, DB, X>,
    hlines: &[(f64, String)],
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64>,
{
    let xr = chart.x_range();
    for (y, label) in hlines.iter().filter(|(y, _)| plottable(*y)) {
        chart
            .draw_series(DashedLineSeries::new(
                [(xr.start, *y), (xr.end, *y)],
                6,
                4,
                REF_LINE.stroke_width(1),
            ))
            .map_err(draw_err)?;
        if !label.is_empty() {
            let text = EmptyElement::at((xr.end, *y))
                + Text::new(
                    label.clone(),
                    (-4, -3),
                    font(12.0)
                        .color(&REF_LINE)
                        .pos(Pos::new(HPos::Right, VPos::Bottom)),
                );
            chart.draw_series(std::iter::once(text)).map_err(draw_err)?;
        }
    }
    Ok(())
}

/// Places the legend in the corner of the plotting area that covers the fewest drawn points
/// (like matplotlib's "best"), preferring upper left on ties.
fn draw_legend<'a, DB, X>(
    chart: &mut Chart<'a, DB, X>,
    labels: &[&str],
    occupied: &[Vec<(f64, f64)>],
) -> Result<(), PlotError>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    if labels.is_empty() {
        return Ok(());
    }
    let style = font(12.0);
    let mut text = MultiLineText::<_, &str>::new((0, 0), &style);
    for l in labels {
        text.push_line(*l);
    }
    let (tw, th) = text
        .estimate_dimension()
        .map_err(|e| PlotError::Draw(e.to_string()))?;
    // Same arithmetic as plotters' legend: 30 px sample area and 10 px margins.
    let (bw, bh) = (tw + 30 + 20, th + 20);
    let (px, py) = chart.plotting_area().get_pixel_range();
    let corners = [
        (SeriesLabelPosition::UpperLeft, px.start + 5, py.start + 5),
        (
            SeriesLabelPosition::UpperRight,
            px.end - bw - 5,
            py.start + 5,
        ),
        (
            SeriesLabelPosition::LowerRight,
            px.end - bw - 5,
            py.end - bh - 5,
        ),
        (
            SeriesLabelPosition::LowerLeft,
            px.start + 5,
            py.end - bh - 5,
        ),
    ];
    let mut counts = [0usize; 4];
    for line in occupied {
        let pts: Vec<(i32, i32)> = line.iter().map(|p| chart.backend_coord(p)).collect();
        let mut visit = |(x, y): (i32, i32)| {
            for (k, (_, cx, cy)) in corners.iter().enumerate() {
                if x >= *cx && x <= cx + bw && y >= *cy && y <= cy + bh {
                    counts[k] += 1;
                }
            }
        };
        if let [only] = pts.as_slice() {
            visit(*only);
        }
        for w in pts.windows(2) {
            let ((x0, y0), (x1, y1)) = (w[0], w[1]);
            // Sample every ~4 px so a long straight segment through a corner counts.
            let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 4).clamp(1, 2000);
            for s in 0..steps {
                let t = f64::from(s) / f64::from(steps);
                visit((
                    x0 + (f64::from(x1 - x0) * t) as i32,
                    y0 + (f64::from(y1 - y0) * t) as i32,
                ));
            }
            visit((x1, y1));
        }
    }
    let best = (0..4).min_by_key(|&k| (counts[k], k)).unwrap_or(0);
    chart
        .configure_series_labels()
        .position(corners[best].0.clone())
        .label_font(style.clone())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(0, 0, 0).mix(0.3))
        .draw()
        .map_err(draw_err)
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

fn draw_line_panel<DB: DrawingBackend>(area: &Area<DB>, c: &LineChart) -> Result<(), PlotError> {
    let mut xs = Extent::new();
    let mut ys = Extent::new();
    for s in &c.series {
        for run in runs(&s.points, c.log_x) {
            for (x, y) in run {
                xs.add(x);
                ys.add(y);
            }
        }
        for (x, lo, hi) in band_points(&s.band, c.log_x) {
            xs.add(x);
            ys.add(lo);
            ys.add(hi);
        }
    }
    if xs.is_empty() {
        return draw_no_data(area, &c.title);
    }
    for (y, _) in &c.hlines {
        ys.add(*y);
    }
    let y = ys.padded(0.05);
    if c.log_x {
        let x: LogCoord<f64> = xs.padded_log(0.02, 0.02).log_scale().into();
        line_body(area, c, x, y)
    } else {
        let x: RangedCoordf64 = xs.padded(0.02).into();
        line_body(area, c, x, y)
    }
}

fn line_body<DB, X>(area: &Area<DB>, c: &LineChart, x: X, y: Range<f64>) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = builder(
        area,
        &c.title,
        label_area(&c.x_label, 25),
        label_area(&c.y_label, 45),
    )
    .build_cartesian_2d(x, y)
    .map_err(draw_err)?;
    let x_fmt = |v: &f64| fmt_tick(*v);
    configure_mesh(&mut chart, &c.x_label, &c.y_label, 8, true, &x_fmt)?;

    let mut occupied: Vec<Vec<(f64, f64)>> = Vec::new();
    for s in &c.series {
        let band = band_points(&s.band, c.log_x);
        if band.len() >= 2 {
            let color = palette(s.color);
            let mut poly: Vec<(f64, f64)> = band.iter().map(|&(x, _, hi)| (x, hi)).collect();
            poly.extend(band.iter().rev().map(|&(x, lo, _)| (x, lo)));
            chart
                .draw_series(std::iter::once(Polygon::new(poly, color.mix(0.2).filled())))
                .map_err(draw_err)?;
            occupied.push(band.iter().map(|&(x, _, hi)| (x, hi)).collect());
            occupied.push(band.iter().map(|&(x, lo, _)| (x, lo)).collect());
        }
    }
    draw_hlines(&mut chart, &c.hlines)?;

    // Faint raw data first, then the summaries on top of it.
    let mut labels = Vec::new();
    for style in [LineStyle::Faint, LineStyle::Solid, LineStyle::Markers] {
        for s in c.series.iter().filter(|s| s.style == style) {
            let color = palette(s.color);
            let line_style = match style {
                LineStyle::Faint => color.mix(0.3).stroke_width(1),
                LineStyle::Solid => color.stroke_width(2),
                LineStyle::Markers => color.stroke_width(1),
            };
            let runs = runs(&s.points, c.log_x);
            for run in &runs {
                chart
                    .draw_series(LineSeries::new(run.iter().copied(), line_style))
                    .map_err(draw_err)?;
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
            if !s.label.is_empty() {
                // The legend entry hangs off an empty series so a label shows even when
                // the series has no drawable point (and is listed once however many runs).
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                    .map_err(draw_err)?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        let radius = if style == LineStyle::Markers { 3 } else { 0 };
                        EmptyElement::at((x, y))
                            + PathElement::new([(0, 0), (20, 0)], line_style)
                            + Circle::new((10, 0), radius, color.filled())
                    });
                labels.push(s.label.as_str());
            }
            occupied.extend(runs);
        }
    }
    draw_legend(&mut chart, &labels, &occupied)
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

fn category_label(labels: &[String], v: f64, max_chars: usize) -> String {
    let i = v.round();
    if i < 0.0 {
        return String::new();
    }
    labels
        .get(i as usize)
        .map(|s| truncate(s, max_chars))
        .unwrap_or_default()
}

fn draw_bar_panel<DB: DrawingBackend>(area: &Area<DB>, c: &BarChart) -> Result<(), PlotError> {
    let n = c.categories.len();
    let mut ys = Extent::new();
    for s in &c.series {
        for v in s.values.iter().take(n) {
            if plottable(v.value) {
                ys.add(v.value);
                ys.add(v.lower);
                ys.add(v.upper);
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
    let mut y = ys.padded(0.05);
    if ys.lo >= 0.0 && ys.hi > 0.0 {
        y.start = 0.0;
    }
    if ys.hi <= 0.0 && ys.lo < 0.0 {
        y.end = 0.0;
    }

    let x = CategoryAxis { n, reversed: false };
    let mut chart = builder(area, &c.title, 30, label_area(&c.y_label, 45))
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    let (pw, _) = chart.plotting_area().dim_in_pixel();
    // ~6.5 px per character at 12 px in the embedded font.
    let max_chars = ((f64::from(pw) / n as f64 - 6.0) / 6.5).max(2.0) as usize;
    let x_fmt = |v: &f64| category_label(&c.categories, *v, max_chars);
    configure_mesh(&mut chart, "", &c.y_label, n, false, &x_fmt)?;

    let m = c.series.len().max(1) as f64;
    let group = 0.8;
    let width = group / m;
    let mut occupied = Vec::new();
    let mut labels = Vec::new();
    for (j, s) in c.series.iter().enumerate() {
        let color = palette(s.color);
        let mut bars = Vec::new();
        let mut errs = Vec::new();
        for (i, v) in s.values.iter().take(n).enumerate() {
            if !plottable(v.value) {
                continue;
            }
            let x0 = i as f64 - group / 2.0 + j as f64 * width;
            let (l, r) = (x0 + width * 0.08, x0 + width * 0.92);
            bars.push(Rectangle::new([(l, 0.0), (r, v.value)], color.filled()));
            occupied.push(vec![(l, 0.0), (l, v.value), (r, v.value), (r, 0.0)]);
            if plottable(v.lower) && plottable(v.upper) {
                let xc = (l + r) / 2.0;
                let cap = (r - l) * 0.25;
                errs.push(PathElement::new(
                    [(xc, v.lower), (xc, v.upper)],
                    TEXT.stroke_width(1),
                ));
                for e in [v.lower, v.upper] {
                    errs.push(PathElement::new(
                        [(xc - cap, e), (xc + cap, e)],
                        TEXT.stroke_width(1),
                    ));
                }
                occupied.push(vec![(xc, v.lower), (xc, v.upper)]);
            }
        }
        let anno = chart.draw_series(bars).map_err(draw_err)?;
        if !s.label.is_empty() {
            anno.label(s.label.clone()).legend(move |(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.filled())
            });
            labels.push(s.label.as_str());
        }
        chart.draw_series(errs).map_err(draw_err)?;
    }
    draw_hlines(&mut chart, &c.hlines)?;
    draw_legend(&mut chart, &labels, &occupied)
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

fn draw_heatmap_panel<DB: DrawingBackend>(area: &Area<DB>, c: &Heatmap) -> Result<(), PlotError> {
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
    let longest = c
        .row_labels
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1);
    // Room for the longest row label (~7 px a character) plus ticks, within reason.
    let y_area = (longest as f64 * 7.0 + 24.0).clamp(40.0, 240.0) as u32;
    let x = CategoryAxis {
        n: cols,
        reversed: false,
    };
    let y = CategoryAxis {
        n: rows,
        reversed: true,
    };
    let mut chart = builder(area, &c.title, 30, y_area)
        .build_cartesian_2d(x, y)
        .map_err(draw_err)?;
    let (pw, ph) = chart.plotting_area().dim_in_pixel();
    let (cell_w, cell_h) = (f64::from(pw) / cols as f64, f64::from(ph) / rows as f64);
    let x_chars = ((cell_w - 6.0) / 6.5).max(2.0) as usize;
    let y_chars = ((f64::from(y_area) - 24.0) / 7.0).max(2.0) as usize;
    let x_fmt = |v: &f64| category_label(&c.col_labels, *v, x_chars);
    let y_fmt = |v: &f64| category_label(&c.row_labels, *v, y_chars);
    chart
        .configure_mesh()
        .disable_mesh()
        .axis_style(TEXT)
        .label_style(font(12.0))
        .x_labels(cols)
        .y_labels(rows)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .draw()
        .map_err(draw_err)?;

    let text_size = 14f64.min(cell_h * 0.45).min(cell_w / 3.2);
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
            if text_size >= 7.0 {
                // White text on the saturated ends, dark text near the white middle.
                let color: &'static RGBColor = if (v - 0.5).abs() > 0.35 {
                    &WHITE
                } else {
                    &TEXT
                };
                texts.push(Text::new(
                    format!("{v:.2}"),
                    (fx, fy),
                    font(text_size)
                        .color(color)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ));
            }
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
) -> Result<(), PlotError> {
    let mut xs = Extent::new();
    let mut ys = Extent::new();
    let valid = |x: f64, y: f64| plottable(x) && plottable(y) && (!c.log_x || x > 0.0);
    for p in c.points.iter().filter(|p| valid(p.x, p.y)) {
        xs.add(p.x);
        ys.add(p.y);
        if plottable(p.y_lower) && plottable(p.y_upper) {
            ys.add(p.y_lower);
            ys.add(p.y_upper);
        }
    }
    if xs.is_empty() {
        return draw_no_data(area, &c.title);
    }
    for (y, _) in &c.hlines {
        ys.add(*y);
    }
    let y = ys.padded(0.08);
    if c.log_x {
        // Extra room on the right: point labels are written to the right of their points.
        let x: LogCoord<f64> = xs.padded_log(0.08, 0.3).log_scale().into();
        scatter_body(area, c, x, y)
    } else {
        let x: RangedCoordf64 = xs.padded(0.08).into();
        scatter_body(area, c, x, y)
    }
}

fn scatter_body<DB, X>(
    area: &Area<DB>,
    c: &ScatterChart,
    x: X,
    y: Range<f64>,
) -> Result<(), PlotError>
where
    DB: DrawingBackend,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = builder(
        area,
        &c.title,
        label_area(&c.x_label, 25),
        label_area(&c.y_label, 45),
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
    for p in &points {
        let color = palette(p.color);
        if plottable(p.y_lower) && plottable(p.y_upper) {
            // Caps in pixels (not data units) so they look the same on a log axis.
            let bar = EmptyElement::at((p.x, p.y_lower))
                + PathElement::new([(-4, 0), (4, 0)], color.stroke_width(2));
            let top = EmptyElement::at((p.x, p.y_upper))
                + PathElement::new([(-4, 0), (4, 0)], color.stroke_width(2));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    [(p.x, p.y_lower), (p.x, p.y_upper)],
                    color.stroke_width(2),
                )))
                .map_err(draw_err)?;
            chart.draw_series([bar, top]).map_err(draw_err)?;
        }
    }
    for p in &points {
        let color = palette(p.color);
        let marker = EmptyElement::at((p.x, p.y))
            + Circle::new((0, 0), 5, color.filled())
            + Circle::new((0, 0), 5, TEXT.stroke_width(1))
            + Text::new(
                p.label.clone(),
                (8, -4),
                font(12.0).pos(Pos::new(HPos::Left, VPos::Bottom)),
            );
        chart
            .draw_series(std::iter::once(marker))
            .map_err(draw_err)?;
    }
    Ok(())
}
