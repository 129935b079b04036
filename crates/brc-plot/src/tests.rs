//! Renders every panel kind from synthetic data and checks the written files: sizes,
//! non-blank content, palette colours present, atomic writes and error paths.

use std::collections::HashSet;
use std::f64::consts::PI;
use std::path::Path;

use super::*;

type Rgb = [u8; 3];

/// Decodes a PNG written by `save_figure` into its size and RGB pixels.
fn decode(path: &Path) -> (u32, u32, Vec<Rgb>) {
    let file = std::fs::File::open(path).expect("open png");
    let mut decoder = png::Decoder::new(file);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let pixels = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (info.width, info.height, pixels)
}

fn rgb(index: usize) -> Rgb {
    let (r, g, b) = PALETTE[index % PALETTE.len()];
    [r, g, b]
}

fn count(pixels: &[Rgb], color: Rgb) -> usize {
    pixels.iter().filter(|&&p| p == color).count()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Saves `fig`, checks both files and the PNG size, and returns the decoded pixels.
fn save_and_check(fig: &Figure) -> Vec<Rgb> {
    let dir = tempfile::tempdir().unwrap();
    // BRC_PLOT_KEEP=dir keeps a copy of every test figure there, to look at them.
    if let Some(keep) = std::env::var_os("BRC_PLOT_KEEP") {
        let name = fig.title.replace(|c: char| !c.is_ascii_alphanumeric(), "_");
        save_figure(fig, &Path::new(&keep).join(format!("test_{name}"))).expect("keep");
    }
    let stem = dir.path().join("fig");
    let [png_path, svg_path] = save_figure(fig, &stem).expect("save");
    assert_eq!(png_path, dir.path().join("fig.png"));
    assert_eq!(svg_path, dir.path().join("fig.svg"));
    // Only the two outputs: the temporary files were renamed, none left behind.
    assert_eq!(entries(dir.path()), ["fig.png", "fig.svg"]);

    let (w, h, pixels) = decode(&png_path);
    assert_eq!((w, h), image_size(fig));
    let distinct: HashSet<Rgb> = pixels.iter().copied().collect();
    assert!(
        distinct.len() > 2,
        "blank image: {} colours",
        distinct.len()
    );
    assert_eq!(pixels[0], [255, 255, 255], "background is white");

    let svg = std::fs::read_to_string(&svg_path).unwrap();
    assert!(svg.contains("<svg"));
    assert!(svg.contains(&fig.title), "svg lacks the title");
    pixels
}

fn learning_curves() -> LineChart {
    let xs: Vec<f64> = (0..=50).map(|i| f64::from(i) * 2000.0).collect();
    let mut series = Vec::new();
    for (m, name) in ["SAC", "PPO"].iter().enumerate() {
        let k = 1.0 + m as f64;
        let mean: Vec<(f64, f64)> = xs
            .iter()
            .map(|&x| (x, 250.0 * (1.0 - (-x / (30_000.0 * k)).exp()) - 100.0))
            .collect();
        series.push(Series {
            label: String::new(),
            color: m,
            points: mean
                .iter()
                .map(|&(x, y)| (x, y + 40.0 * (x / 3000.0 + m as f64).sin()))
                .collect(),
            band: vec![],
            style: LineStyle::Faint,
        });
        series.push(Series {
            label: (*name).to_string(),
            color: m,
            band: mean.iter().map(|&(x, y)| (x, y - 25.0, y + 25.0)).collect(),
            points: mean,
            style: LineStyle::Solid,
        });
    }
    series.push(Series {
        label: "eval".into(),
        color: 2,
        points: xs.iter().step_by(10).map(|&x| (x, x / 1000.0)).collect(),
        band: vec![],
        style: LineStyle::Markers,
    });
    LineChart {
        title: "LunarLander".into(),
        x_label: "env steps".into(),
        y_label: "return".into(),
        series,
        hlines: vec![(200.0, "solved".into())],
        log_x: false,
    }
}

fn bars() -> BarChart {
    let v = |value: f64| BarValue {
        value,
        lower: value - 20.0,
        upper: value + 15.0,
    };
    BarChart {
        title: "Final return".into(),
        y_label: "IQM return".into(),
        categories: vec![
            "CartPole".into(),
            "LunarLander".into(),
            "BipedalWalker".into(),
        ],
        series: vec![
            BarSeries {
                label: "SAC".into(),
                color: 0,
                values: vec![v(480.0), v(210.0), v(-40.0)],
            },
            BarSeries {
                label: "PPO".into(),
                color: 1,
                values: vec![v(500.0), v(f64::NAN), v(120.0)],
            },
        ],
        hlines: vec![(200.0, "solved".into())],
    }
}

fn heatmap() -> Heatmap {
    Heatmap {
        title: "P(row > col)".into(),
        row_labels: vec!["SAC".into(), "PPO".into(), "TD3".into()],
        col_labels: vec!["SAC".into(), "PPO".into(), "TD3".into()],
        values: vec![
            vec![f64::NAN, 0.8, 1.0],
            vec![0.2, f64::NAN, 0.55],
            vec![0.0, 0.45, f64::NAN],
        ],
    }
}

fn scatter(log_x: bool) -> ScatterChart {
    ScatterChart {
        title: "Return vs size".into(),
        x_label: "parameters".into(),
        y_label: "average return".into(),
        log_x,
        points: (0..4)
            .map(|i| {
                let y = 50.0 * f64::from(i) + 10.0 * (PI * f64::from(i)).cos();
                ScatterPoint {
                    label: format!("net{i}"),
                    color: i as usize,
                    x: 10f64.powi(3 + i),
                    y,
                    y_lower: y - 12.0,
                    y_upper: y + 9.0,
                }
            })
            .collect(),
        hlines: vec![(100.0, "baseline".into())],
    }
}

#[test]
fn line_chart_is_drawn_with_series_colours() {
    let fig = Figure {
        title: "Learning curves".into(),
        panels: vec![Panel::Line(learning_curves())],
        columns: 1,
    };
    let pixels = save_and_check(&fig);
    assert_eq!(image_size(&fig), (PANEL_WIDTH, PANEL_HEIGHT + TITLE_HEIGHT));
    for color in [0, 1, 2] {
        assert!(count(&pixels, rgb(color)) > 20, "colour {color} missing");
    }
    // Palette entries not used by any series must not appear.
    assert_eq!(count(&pixels, rgb(4)), 0);
}

#[test]
fn bar_chart_is_drawn_with_series_colours() {
    let fig = Figure {
        title: "Bars".into(),
        panels: vec![Panel::Bars(bars())],
        columns: 1,
    };
    let pixels = save_and_check(&fig);
    // Filled bars: large areas of exactly the palette colour.
    assert!(count(&pixels, rgb(0)) > 2000);
    assert!(count(&pixels, rgb(1)) > 2000);
}

#[test]
fn heatmap_cells_use_diverging_colours() {
    let fig = Figure {
        title: "Heatmap".into(),
        panels: vec![Panel::Heatmap(heatmap())],
        columns: 1,
    };
    let pixels = save_and_check(&fig);
    let (w, _) = image_size(&fig);
    let high = render::heat_rgb(1.0);
    let low = render::heat_rgb(0.0);
    assert_ne!(high, low);
    assert_eq!(render::heat_rgb(0.5), [255, 255, 255]);
    // The 1.0 cell is top-right (row 0, col 2) and the 0.0 cell bottom-left (row 2, col 0):
    // compare where each colour's pixels lie, which also checks rows run top to bottom.
    let centroid = |c: Rgb| {
        let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
        for (i, p) in pixels.iter().enumerate() {
            if *p == c {
                sx += (i as u32 % w) as f64;
                sy += (i as u32 / w) as f64;
                n += 1.0;
            }
        }
        assert!(n > 1000.0, "cell colour {c:?} covers only {n} pixels");
        (sx / n, sy / n)
    };
    let (hx, hy) = centroid(high);
    let (lx, ly) = centroid(low);
    assert!(
        hx > lx + 100.0 && hy + 100.0 < ly,
        "high {hx},{hy} low {lx},{ly}"
    );
}

#[test]
fn scatter_is_drawn_linear_and_log() {
    let fig = Figure {
        title: "Scatter".into(),
        panels: vec![
            Panel::Scatter(scatter(false)),
            Panel::Scatter(scatter(true)),
        ],
        columns: 2,
    };
    let pixels = save_and_check(&fig);
    assert_eq!(
        image_size(&fig),
        (2 * PANEL_WIDTH, PANEL_HEIGHT + TITLE_HEIGHT)
    );
    for color in 0..4 {
        assert!(count(&pixels, rgb(color)) > 40, "colour {color} missing");
    }
}

#[test]
fn grid_layout_and_size() {
    let panel = || Panel::Bars(bars());
    let mut fig = Figure {
        title: String::new(),
        panels: vec![panel(), panel(), panel()],
        columns: 2,
    };
    assert_eq!(image_size(&fig), (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT));
    fig.columns = 0;
    assert_eq!(image_size(&fig), (PANEL_WIDTH, 3 * PANEL_HEIGHT));
    fig.columns = 10;
    assert_eq!(image_size(&fig), (3 * PANEL_WIDTH, PANEL_HEIGHT));
    fig.title = "all four kinds".into();
    fig.panels = vec![
        Panel::Line(learning_curves()),
        Panel::Bars(bars()),
        Panel::Heatmap(heatmap()),
        Panel::Scatter(scatter(true)),
    ];
    fig.columns = 2;
    assert_eq!(
        image_size(&fig),
        (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT + TITLE_HEIGHT)
    );
    save_and_check(&fig);
}

#[test]
fn degenerate_inputs_still_produce_files() {
    let line = |series: Vec<Series>, log_x: bool| {
        Panel::Line(LineChart {
            title: "degenerate".into(),
            series,
            log_x,
            hlines: vec![(f64::NAN, "nan line".into())],
            ..Default::default()
        })
    };
    let s = |points: Vec<(f64, f64)>| Series {
        label: "s".into(),
        points,
        ..Default::default()
    };
    let nan_value = BarValue {
        value: f64::NAN,
        lower: f64::NAN,
        upper: f64::NAN,
    };
    let flat = BarValue {
        value: 0.0,
        lower: f64::INFINITY,
        upper: 0.0,
    };
    let fig = Figure {
        title: "Degenerate".into(),
        panels: vec![
            line(vec![], false),
            line(vec![s(vec![])], false),
            line(vec![s(vec![(1.0, 2.0)])], false),
            line(vec![s(vec![(0.0, 5.0), (1.0, 5.0), (2.0, 5.0)])], false),
            line(
                vec![s(vec![(f64::NAN, 1.0), (1.0, f64::INFINITY), (2.0, 3.0)])],
                false,
            ),
            line(vec![s(vec![(0.0, 1.0), (-1.0, 2.0)])], true),
            line(vec![s(vec![(0.0, 1.0), (10.0, 2.0), (1e6, 3.0)])], true),
            line(vec![s(vec![(3.0, 1.0), (4.0, 1.0)])], true),
            line(vec![s(vec![(1e9, 1.0), (1e9 + 1e-3, 1.0)])], false),
            Panel::Bars(BarChart::default()),
            Panel::Bars(BarChart {
                categories: vec!["a".into(), "b".into()],
                series: vec![BarSeries {
                    label: "x".into(),
                    color: 3,
                    values: vec![nan_value],
                }],
                ..Default::default()
            }),
            Panel::Bars(BarChart {
                categories: vec!["a".into()],
                series: vec![BarSeries {
                    label: String::new(),
                    color: 99,
                    values: vec![flat, flat, flat],
                }],
                ..Default::default()
            }),
            Panel::Heatmap(Heatmap::default()),
            Panel::Heatmap(Heatmap {
                values: vec![vec![f64::NAN], vec![2.0, -1.0]],
                ..Default::default()
            }),
            Panel::Scatter(ScatterChart::default()),
            Panel::Scatter(ScatterChart {
                log_x: true,
                points: vec![
                    ScatterPoint {
                        x: 0.0,
                        y: 1.0,
                        ..Default::default()
                    },
                    ScatterPoint {
                        x: 5.0,
                        y: f64::NAN,
                        ..Default::default()
                    },
                    ScatterPoint {
                        label: "only".into(),
                        x: 100.0,
                        y: 3.0,
                        y_lower: f64::NAN,
                        y_upper: 4.0,
                        color: 0,
                    },
                ],
                ..Default::default()
            }),
        ],
        columns: 4,
    };
    save_and_check(&fig);

    let empty = Figure::default();
    assert_eq!(image_size(&empty), (PANEL_WIDTH, PANEL_HEIGHT));
    save_and_check(&empty);
}

#[test]
fn single_point_is_visible() {
    let fig = Figure {
        title: "one point".into(),
        panels: vec![Panel::Line(LineChart {
            series: vec![Series {
                color: 5,
                points: vec![(3.0, 4.0)],
                ..Default::default()
            }],
            ..Default::default()
        })],
        columns: 1,
    };
    let pixels = save_and_check(&fig);
    assert!(count(&pixels, rgb(5)) > 10);
}

#[test]
fn unwritable_targets_are_errors_without_leftovers() {
    let fig = Figure {
        title: "x".into(),
        panels: vec![Panel::Bars(bars())],
        columns: 1,
    };
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing").join("fig");
    assert!(matches!(
        save_figure(&fig, &missing),
        Err(PlotError::Io { .. })
    ));

    // A regular file where the directory should be (fails even as root, unlike chmod).
    std::fs::write(dir.path().join("file"), b"x").unwrap();
    let under_file = dir.path().join("file").join("fig");
    assert!(matches!(
        save_figure(&fig, &under_file),
        Err(PlotError::Io { .. })
    ));

    // Renaming onto a non-empty directory fails after both images were rendered to temp
    // files: those must be removed.
    std::fs::create_dir_all(dir.path().join("fig.png").join("occupied")).unwrap();
    let blocked = dir.path().join("fig");
    let err = save_figure(&fig, &blocked).unwrap_err();
    assert!(matches!(err, PlotError::Io { .. }), "{err}");
    assert_eq!(entries(dir.path()), ["fig.png", "file"]);

    assert!(matches!(
        save_figure(&fig, Path::new("")),
        Err(PlotError::InvalidStem(_))
    ));
}

#[test]
fn stem_keeps_inner_dots() {
    let dir = tempfile::tempdir().unwrap();
    let fig = Figure {
        title: "dots".into(),
        panels: vec![Panel::Scatter(scatter(false))],
        columns: 1,
    };
    let [png, svg] = save_figure(&fig, &dir.path().join("curve.v2")).unwrap();
    assert_eq!(png.file_name().unwrap(), "curve.v2.png");
    assert_eq!(svg.file_name().unwrap(), "curve.v2.svg");
}

#[test]
fn tick_labels_are_compact() {
    assert_eq!(render::fmt_tick(0.0), "0");
    assert_eq!(render::fmt_tick(250_000.0), "250k");
    assert_eq!(render::fmt_tick(1_500_000.0), "1.5M");
    assert_eq!(render::fmt_tick(0.1 + 0.2), "0.3");
    assert_eq!(render::fmt_tick(-120.0), "-120");
    assert_eq!(render::fmt_tick(2e-5), "2e-5");
}
