//! Headless research charts for brc: learning curves with confidence bands, grouped bars
//! with error bars, probability-of-improvement heatmaps and labelled scatter plots.
//!
//! A [`Figure`] is a grid of [`Panel`]s; [`save_figure`] writes it as `<stem>.png` and
//! `<stem>.svg`. The PNG text is rendered from a font embedded in the binary (Ubuntu Light,
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

mod render;
#[cfg(test)]
mod tests;

/// Width in pixels of one panel. 560×400 keeps tick labels legible at 12 px while two
/// panels side by side still fit an A4 page or a laptop screen without scaling.
pub const PANEL_WIDTH: u32 = 560;
/// Height in pixels of one panel (see [`PANEL_WIDTH`]).
pub const PANEL_HEIGHT: u32 = 400;
/// Height in pixels of the strip above the panels holding the figure title; only present
/// when the title is non-empty.
pub const TITLE_HEIGHT: u32 = 40;

/// Colour-blind-friendly palette (Okabe–Ito), indexed by `color % PALETTE.len()`.
/// Ordered so the first colours are the most distinct on white; yellow and black come last
/// because yellow is faint on white and black is used for text and reference lines.
pub const PALETTE: [(u8, u8, u8); 8] = [
    (0x00, 0x72, 0xB2), // blue
    (0xE6, 0x9F, 0x00), // orange
    (0x00, 0x9E, 0x73), // bluish green
    (0xD5, 0x5E, 0x00), // vermillion
    (0xCC, 0x79, 0xA7), // reddish purple
    (0x56, 0xB4, 0xE9), // sky blue
    (0xF0, 0xE4, 0x42), // yellow
    (0x00, 0x00, 0x00), // black
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
    /// Labelled points with error bars (score against model size).
    Scatter(ScatterChart),
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

/// Labelled points with y error bars, optionally log x (e.g. average return against parameter count).
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
    /// The points, each written with its label.
    pub points: Vec<ScatterPoint>,
    /// Horizontal reference lines with a label.
    pub hlines: Vec<(f64, String)>,
}

/// One labelled point of a [`ScatterChart`].
#[derive(Debug, Clone, Default)]
pub struct ScatterPoint {
    /// Text written next to the point; empty = none.
    pub label: String,
    /// Palette index.
    pub color: usize,
    /// Position along x.
    pub x: f64,
    /// Position along y.
    pub y: f64,
    /// Lower end of the y error bar; non-finite = no error bar.
    pub y_lower: f64,
    /// Upper end of the y error bar; non-finite = no error bar.
    pub y_upper: f64,
}

/// Columns and rows of the panel grid actually drawn.
fn grid(figure: &Figure) -> (u32, u32) {
    let n = figure.panels.len().max(1);
    let cols = figure.columns.clamp(1, n);
    let rows = n.div_ceil(cols);
    (cols as u32, rows as u32)
}

fn title_height(figure: &Figure) -> u32 {
    if figure.title.is_empty() {
        0
    } else {
        TITLE_HEIGHT
    }
}

/// Exact pixel size of the PNG [`save_figure`] writes (the SVG uses the same size):
/// `columns × PANEL_WIDTH` by `rows × PANEL_HEIGHT`, plus [`TITLE_HEIGHT`] when titled.
pub fn image_size(figure: &Figure) -> (u32, u32) {
    let (cols, rows) = grid(figure);
    (
        cols * PANEL_WIDTH,
        rows * PANEL_HEIGHT + title_height(figure),
    )
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
    let size = image_size(figure);

    render::ensure_font()?;

    let png_tmp = temp_in(&dir, &name, ".png")?;
    render::render_png(figure, png_tmp.path(), size)?;
    sync(&png_tmp, &png_path)?;

    let svg = render::render_svg(figure, size)?;
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
