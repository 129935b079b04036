//! Headless research charts for brc: learning curves with confidence bands, grouped bars
//! with error bars, probability-of-improvement heatmaps and labelled scatter plots.
//!
//! A [`Figure`] is a grid of [`Panel`]s; [`save_figure`] writes it as `<stem>.png` and
//! `<stem>.svg`. Legends never sit on the data: every labelled series, bar series, point
//! and reference line of every panel goes into one shared legend below the panels (an entry
//! per label, so a method drawn in several panels is listed once). Panels grow to fit their
//! content, so no label is ever cut short, and no text is smaller than [`MIN_TEXT_PX`].
//! [`layout`] reports where everything landed, for checks. The PNG text is rendered from a font embedded in the binary (Ubuntu Light,
//! via `epaint_default_fonts`) so output is identical on a bare CI machine without
//! fontconfig or any system font. The SVG leaves text to the viewer's `sans-serif`.
//!
//! Axis ranges come from the data (bands, error bars and reference lines included). NaN,
//! infinite and absurdly large (|v| ≥ 1e100) values are skipped, as is x ≤ 0 on a log axis;
//! a panel left with nothing to draw shows its title and "no data" instead of failing.
//!
//! Both files are written atomically (temporary file in the same directory, then rename),
//! so a reader never sees a half-written chart and a failed save leaves nothing behind.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

mod layout;
mod render;
#[cfg(test)]
mod tests;

/// Smallest width in pixels of a panel. 560×400 keeps tick labels legible at 14 px while two
/// panels side by side still fit an A4 page or a laptop screen without scaling; a panel grows
/// beyond it when its content needs the room (many bars, long row labels, a long axis text).
pub const PANEL_WIDTH: u32 = 560;
/// Smallest height in pixels of a line, bar or scatter panel (see [`PANEL_WIDTH`]).
pub const PANEL_HEIGHT: u32 = 400;
/// Height in pixels of the strip above the panels holding the figure title; only present
/// when the title is non-empty.
pub const TITLE_HEIGHT: u32 = 40;
/// The smallest text size used anywhere, in pixels at the PNG's size (ab_glyph's scale,
/// ascender to descender, ≈ 1.12 em in the embedded font). Tick labels, legend entries and
/// heatmap numbers use it. 14 keeps even the SVG's font-size, which plotters writes as
/// size / 1.24, above 11 px.
pub const MIN_TEXT_PX: f64 = 14.0;

/// The qualitative palette, indexed by `color % PALETTE.len()`: 20 colours so that a
/// comparison of 20 methods gives every method its own colour.
///
/// The first six are Okabe–Ito's (Okabe & Ito 2008, the usual colour-blind-safe set) without
/// its yellow (faint on white) and black (the text colour). The other fourteen were chosen
/// greedily, each as far as possible (CIELAB ΔE*ab) from all earlier ones at once under
/// normal vision and simulated protanopia, deuteranopia and tritanopia (Machado et al. 2009,
/// severity 1), among colours of lightness L* 28–78 (visible on white, not text-dark) and
/// chroma ≥ 20 (not the grey of reference lines); `scripts/palette.py` reproduces them.
/// Every pair differs by ΔE ≥ 15 under each of the four visions (checked by a test), so
/// neighbouring entries are told apart even by dichromats; with 20 hues, later entries are
/// closer to each other than Okabe–Ito's, which is why the first methods get the first
/// colours and curve figures show at most ~8 methods at a time.
pub const PALETTE: [(u8, u8, u8); 20] = [
    (0x00, 0x72, 0xB2), // blue
    (0xE6, 0x9F, 0x00), // orange
    (0x00, 0x9E, 0x73), // bluish green
    (0xD5, 0x5E, 0x00), // vermillion
    (0xCC, 0x79, 0xA7), // reddish purple
    (0x56, 0xB4, 0xE9), // sky blue
    (0x87, 0x00, 0xF0), // violet
    (0x78, 0x2D, 0x0F), // brown
    (0x4B, 0x3C, 0x5A), // slate
    (0xC3, 0xC3, 0x78), // khaki
    (0x96, 0x78, 0xFF), // lavender
    (0x3C, 0x2D, 0xA5), // indigo
    (0xE1, 0x0F, 0x4B), // crimson
    (0x4B, 0x69, 0x3C), // olive green
    (0x96, 0xC3, 0xA5), // sage
    (0x87, 0x1E, 0x87), // plum
    (0xA5, 0x3C, 0x00), // rust
    (0x96, 0x5A, 0x78), // mauve
    (0xD2, 0xA5, 0x4B), // ochre
    (0x96, 0x1E, 0xD2), // purple
];

/// Why a figure could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Creating, writing or renaming an output file failed (e.g. the directory does not
    /// exist or is not writable).
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or directory that could not be written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The stem has no file name (e.g. empty or ends in `..`).
    #[error("output stem {0:?} has no file name")]
    InvalidStem(PathBuf),
    /// The embedded font could not be parsed (should never happen; it is a fixed asset).
    #[error("embedded font could not be loaded")]
    Font,
    /// Plotters reported an error while drawing.
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// A figure of one or more panels laid out in a grid, saved as `<stem>.png` and `<stem>.svg`.
#[derive(Debug, Clone, Default)]
pub struct Figure {
    /// Title drawn centred above all panels; empty = no title strip.
    pub title: String,
    /// Panels in row-major order.
    pub panels: Vec<Panel>,
    /// Panels per row; clamped to `1..=panels.len()` so no empty column is drawn.
    pub columns: usize,
}

/// One chart inside a [`Figure`].
#[derive(Debug, Clone)]
pub enum Panel {
    /// Curves over x (learning curves).
    Line(LineChart),
    /// Grouped bars with error bars (final scores per task and method).
    Bars(BarChart),
    /// Matrix of values in [0, 1] (probability of improvement).
    Heatmap(Heatmap),
    /// Points with error bars (score against model size).
    Scatter(ScatterChart),
    /// One point and interval per labelled row (aggregate scores per method).
    Intervals(IntervalChart),
}

/// Lines over x, optionally with a shaded band (e.g. a 95% CI across seeds) and faint raw points.
#[derive(Debug, Clone, Default)]
pub struct LineChart {
    /// Panel title.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// Curves, drawn bands first, then faint, solid and marker series so summaries stay on top.
    pub series: Vec<Series>,
    /// Horizontal reference lines with a label, e.g. `(200.0, "solved")`.
    pub hlines: Vec<(f64, String)>,
    /// Logarithmic x axis; points with x ≤ 0 are skipped.
    pub log_x: bool,
}

/// One curve of a [`LineChart`].
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend entry; empty = no legend entry.
    pub label: String,
    /// Palette index (same method = same colour across figures).
    pub color: usize,
    /// `(x, y)` points in drawing order; non-finite points break the line.
    pub points: Vec<(f64, f64)>,
    /// `(x, lower, upper)`; empty = none; drawn translucent behind the lines.
    pub band: Vec<(f64, f64, f64)>,
    /// How the points are drawn.
    pub style: LineStyle,
}

/// How a [`Series`] is drawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LineStyle {
    /// A 2 px line (means, medians).
    #[default]
    Solid,
    /// A thin translucent line (raw episode returns) that does not hide the summary.
    Faint,
    /// A thin line with a circle at every point (evaluation points).
    Markers,
    /// A 2 px dashed line: a method from elsewhere (the predecessor's logs), told apart from
    /// ours at a glance.
    Dashed,
}

/// Grouped bars with error bars: one group per category (e.g. task), one bar per series (e.g. method).
#[derive(Debug, Clone, Default)]
pub struct BarChart {
    /// Panel title.
    pub title: String,
    /// Y axis description.
    pub y_label: String,
    /// Group names along x.
    pub categories: Vec<String>,
    /// One bar per category for each series.
    pub series: Vec<BarSeries>,
    /// Horizontal reference lines with a label.
    pub hlines: Vec<(f64, String)>,
}

/// The bars of one method in a [`BarChart`].
#[derive(Debug, Clone, Default)]
pub struct BarSeries {
    /// Legend entry; empty = no legend entry.
    pub label: String,
    /// Palette index.
    pub color: usize,
    /// Drawn outlined and hatched instead of filled (a method from elsewhere).
    pub hatched: bool,
    /// One value per category (missing trailing values = missing bars).
    pub values: Vec<BarValue>,
}

/// Height and error interval of one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BarValue {
    /// Bar height; NaN = missing bar.
    pub value: f64,
    /// Lower end of the error bar; non-finite = no error bar.
    pub lower: f64,
    /// Upper end of the error bar; non-finite = no error bar.
    pub upper: f64,
}

/// A matrix of values in [0, 1] as coloured cells with the number written in each (e.g. probability of improvement of row over column). NaN = blank cell (e.g. the diagonal).
#[derive(Debug, Clone, Default)]
pub struct Heatmap {
    /// Panel title.
    pub title: String,
    /// Row names, top to bottom.
    pub row_labels: Vec<String>,
    /// Column names, left to right.
    pub col_labels: Vec<String>,
    /// `values[row][col]`; values outside [0, 1] are clamped for the colour only.
    pub values: Vec<Vec<f64>>,
}

/// Points with y error bars, optionally log x (e.g. average return against parameter count);
/// each labelled point is named in the figure's legend.
#[derive(Debug, Clone, Default)]
pub struct ScatterChart {
    /// Panel title.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// Y axis description.
    pub y_label: String,
    /// Logarithmic x axis; points with x ≤ 0 are skipped.
    pub log_x: bool,
    /// The points.
    pub points: Vec<ScatterPoint>,
    /// Horizontal reference lines with a label.
    pub hlines: Vec<(f64, String)>,
}

/// One labelled point of a [`ScatterChart`].
#[derive(Debug, Clone, Default)]
pub struct ScatterPoint {
    /// Legend entry; empty = none.
    pub label: String,
    /// Palette index.
    pub color: usize,
    /// Drawn as a ring instead of a disc (a method from elsewhere).
    pub hollow: bool,
    /// Position along x.
    pub x: f64,
    /// Position along y.
    pub y: f64,
    /// Lower end of the y error bar; non-finite = no error bar.
    pub y_lower: f64,
    /// Upper end of the y error bar; non-finite = no error bar.
    pub y_upper: f64,
}

/// Rows of labelled points with a horizontal interval each (rliable's aggregate-metric plot):
/// rows top to bottom, their labels on the y axis.
#[derive(Debug, Clone, Default)]
pub struct IntervalChart {
    /// Panel title.
    pub title: String,
    /// X axis description.
    pub x_label: String,
    /// The rows, top to bottom.
    pub rows: Vec<IntervalRow>,
    /// Write the row labels on the y axis; off for the second and later panels of a figure
    /// whose panels share the rows (the labels are then on the first).
    pub row_labels: bool,
    /// Vertical reference lines with a label (named in the legend).
    pub vlines: Vec<(f64, String)>,
}

/// One row of an [`IntervalChart`].
#[derive(Debug, Clone, Default)]
pub struct IntervalRow {
    /// Row name on the y axis.
    pub label: String,
    /// Palette index.
    pub color: usize,
    /// Drawn as a ring on a dashed interval instead of a disc on a solid one.
    pub hollow: bool,
    /// Point estimate; non-finite = empty row.
    pub value: f64,
    /// Lower end of the interval; non-finite = no interval.
    pub lower: f64,
    /// Upper end of the interval; non-finite = no interval.
    pub upper: f64,
}

/// A pixel rectangle in the image, `x0 ≤ x1`, `y0 ≤ y1`, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left.
    pub x0: i32,
    /// Top.
    pub y0: i32,
    /// Right.
    pub x1: i32,
    /// Bottom.
    pub y1: i32,
}

impl Rect {
    /// Whether the two rectangles share at least one pixel.
    pub fn intersects(&self, other: &Rect) -> bool {
        self.x0 <= other.x1 && other.x0 <= self.x1 && self.y0 <= other.y1 && other.y0 <= self.y1
    }

    /// The smallest rectangle holding all `points` (`None` for none).
    pub(crate) fn around(points: impl IntoIterator<Item = (i32, i32)>) -> Option<Rect> {
        points.into_iter().fold(None, |r, (x, y)| {
            Some(match r {
                None => Rect {
                    x0: x,
                    y0: y,
                    x1: x,
                    y1: y,
                },
                Some(r) => Rect {
                    x0: r.x0.min(x),
                    y0: r.y0.min(y),
                    x1: r.x1.max(x),
                    y1: r.y1.max(y),
                },
            })
        })
    }

    /// Grown by `d` pixels on every side (a stroke's half width, a marker's radius).
    pub(crate) fn grown(self, d: i32) -> Rect {
        Rect {
            x0: self.x0 - d,
            y0: self.y0 - d,
            x1: self.x1 + d,
            y1: self.y1 + d,
        }
    }
}

/// Where [`save_figure`] puts things, in pixels of the PNG: for checking a figure's layout
/// (nothing on the data) without looking at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Image size.
    pub size: (u32, u32),
    /// The cell of each panel, in the order of [`Figure::panels`].
    pub panels: Vec<Rect>,
    /// Each legend entry (sample and text) with its label, in legend order.
    pub legend: Vec<(String, Rect)>,
    /// The bounding box of every data mark drawn: each line run, band, bar, error bar,
    /// point, interval and heatmap cell.
    pub marks: Vec<Rect>,
}

/// Exact pixel size of the PNG [`save_figure`] writes (the SVG uses the same size): the
/// panel grid (each column as wide as its widest panel needs, at least [`PANEL_WIDTH`] for
/// line, bar and scatter panels), plus [`TITLE_HEIGHT`] when titled, plus the legend strip
/// when any entry is labelled.
pub fn image_size(figure: &Figure) -> (u32, u32) {
    layout::geometry(figure).size
}

/// Renders `figure` in memory (nothing is written) and reports its [`Layout`].
pub fn layout(figure: &Figure) -> Result<Layout, PlotError> {
    render::ensure_font()?;
    let geometry = layout::geometry(figure);
    let (_, marks) = render::render_svg(figure, &geometry)?;
    Ok(Layout {
        size: geometry.size,
        panels: geometry.cells.clone(),
        legend: geometry
            .legend
            .iter()
            .map(|(item, rect)| (item.label.clone(), *rect))
            .collect(),
        marks,
    })
}

/// Writes `<stem>.png` and `<stem>.svg` (stem: a path without extension); returns both paths.
///
/// The directory must exist. Both images are rendered before either file is renamed into
/// place, so a drawing failure leaves neither behind.
pub fn save_figure(figure: &Figure, stem: &Path) -> Result<[PathBuf; 2], PlotError> {
    let name = stem
        .file_name()
        .ok_or_else(|| PlotError::InvalidStem(stem.to_path_buf()))?
        .to_string_lossy()
        .into_owned();
    let dir = match stem.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // Appending (rather than `with_extension`) keeps dots in stems like "curve.v2".
    let with_ext = |ext: &str| {
        let mut s = OsString::from(stem.as_os_str());
        s.push(ext);
        PathBuf::from(s)
    };
    let png_path = with_ext(".png");
    let svg_path = with_ext(".svg");

    render::ensure_font()?;
    let geometry = layout::geometry(figure);

    let png_tmp = temp_in(&dir, &name, ".png")?;
    render::render_png(figure, &geometry, png_tmp.path())?;
    sync(&png_tmp, &png_path)?;

    let (svg, _) = render::render_svg(figure, &geometry)?;
    let mut svg_tmp = temp_in(&dir, &name, ".svg")?;
    svg_tmp
        .write_all(svg.as_bytes())
        .map_err(|source| PlotError::Io {
            path: svg_path.clone(),
            source,
        })?;
    sync(&svg_tmp, &svg_path)?;

    persist(png_tmp, &png_path)?;
    persist(svg_tmp, &svg_path)?;
    Ok([png_path, svg_path])
}

/// A hidden temporary file next to the target, so the final rename stays on one filesystem
/// (atomic) and the suffix keeps the extension the PNG encoder selects the format from.
/// It is deleted on drop unless persisted, which is what cleans up after errors.
fn temp_in(dir: &Path, name: &str, suffix: &str) -> Result<tempfile::NamedTempFile, PlotError> {
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(suffix);
    #[cfg(unix)]
    {
        // tempfile defaults to 0600; charts are meant to be read by others (umask still applies).
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir).map_err(|source| PlotError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Flushes the data before the rename so a crash cannot leave an empty file under the final name.
fn sync(tmp: &tempfile::NamedTempFile, target: &Path) -> Result<(), PlotError> {
    tmp.as_file().sync_all().map_err(|source| PlotError::Io {
        path: target.to_path_buf(),
        source,
    })
}

fn persist(tmp: tempfile::NamedTempFile, target: &Path) -> Result<(), PlotError> {
    tmp.persist(target).map_err(|e| PlotError::Io {
        path: target.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
