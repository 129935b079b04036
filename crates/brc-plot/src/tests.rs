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
                hatched: false,
                values: vec![v(480.0), v(210.0), v(-40.0)],
            },
            BarSeries {
                label: "PPO".into(),
                color: 1,
                hatched: false,
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
                    hollow: i == 3,
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
    let (w, h) = image_size(&fig);
    // One panel, the title strip and a one-line legend strip below.
    assert_eq!(w, PANEL_WIDTH);
    assert!(
        h > PANEL_HEIGHT + TITLE_HEIGHT && h < PANEL_HEIGHT + TITLE_HEIGHT + 60,
        "{h}"
    );
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
        hx > lx + 50.0 && hy + 40.0 < ly,
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
    assert_eq!(image_size(&fig).0, 2 * PANEL_WIDTH);
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
    // The legend strip (SAC, PPO, solved) is the same whatever the grid.
    let legend = image_size(&fig).1 - 2 * PANEL_HEIGHT;
    assert!(legend > 20 && legend < 60, "{legend}");
    assert_eq!(
        image_size(&fig),
        (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT + legend)
    );
    fig.columns = 0;
    assert_eq!(image_size(&fig), (PANEL_WIDTH, 3 * PANEL_HEIGHT + legend));
    fig.columns = 10;
    assert_eq!(image_size(&fig), (3 * PANEL_WIDTH, PANEL_HEIGHT + legend));
    let l = layout(&fig).unwrap();
    assert_eq!(l.panels[1].x0, PANEL_WIDTH as i32, "panels side by side");
    fig.title = "all four kinds".into();
    fig.panels = vec![
        Panel::Line(learning_curves()),
        Panel::Bars(bars()),
        Panel::Heatmap(heatmap()),
        Panel::Scatter(scatter(true)),
    ];
    fig.columns = 2;
    let (w, h) = image_size(&fig);
    assert!(w >= 2 * PANEL_WIDTH && h > 2 * PANEL_HEIGHT + TITLE_HEIGHT);
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
                    hatched: true,
                    values: vec![nan_value],
                }],
                ..Default::default()
            }),
            Panel::Bars(BarChart {
                categories: vec!["a".into()],
                series: vec![BarSeries {
                    label: String::new(),
                    color: 99,
                    hatched: true,
                    values: vec![flat, flat, flat],
                }],
                ..Default::default()
            }),
            Panel::Heatmap(Heatmap::default()),
            Panel::Intervals(IntervalChart::default()),
            Panel::Intervals(IntervalChart {
                rows: vec![IntervalRow {
                    label: "only".into(),
                    value: 1.0,
                    lower: f64::NAN,
                    upper: 2.0,
                    ..Default::default()
                }],
                row_labels: true,
                vlines: vec![(f64::INFINITY, "inf".into())],
                ..Default::default()
            }),
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
                        hollow: true,
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

/// sRGB (0–255) to CIELAB (D65), written out here rather than taken from a library so the
/// palette is checked against the published formulas, not against itself.
fn lab_of_linear([r, g, b]: [f64; 3]) -> [f64; 3] {
    let x = 0.4124564 * r + 0.3575761 * g + 0.1804375 * b;
    let y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
    let z = 0.0193339 * r + 0.1191920 * g + 0.9503041 * b;
    let f = |t: f64| {
        if t > 216.0 / 24389.0 {
            t.cbrt()
        } else {
            (24389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x / 0.95047), f(y), f(z / 1.08883));
    [116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)]
}

fn linear((r, g, b): (u8, u8, u8)) -> [f64; 3] {
    let lin = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    [lin(r), lin(g), lin(b)]
}

/// The colour as seen with normal vision and simulated protanopia, deuteranopia and
/// tritanopia (Machado, Oliveira & Fernandes 2009, severity 1.0, in linear RGB).
fn visions(c: (u8, u8, u8)) -> [[f64; 3]; 4] {
    const M: [[[f64; 3]; 3]; 3] = [
        [
            [0.152286, 1.052583, -0.204868],
            [0.114503, 0.786281, 0.099216],
            [-0.003882, -0.048116, 1.051998],
        ],
        [
            [0.367322, 0.860646, -0.227968],
            [0.280085, 0.672501, 0.047413],
            [-0.011820, 0.042940, 0.968881],
        ],
        [
            [1.255528, -0.076749, -0.178779],
            [-0.078411, 0.930809, 0.147602],
            [0.004733, 0.691367, 0.303900],
        ],
    ];
    let l = linear(c);
    let mut out = [lab_of_linear(l); 4];
    for (k, m) in M.iter().enumerate() {
        let v = [0, 1, 2].map(|i| (0..3).map(|j| m[i][j] * l[j]).sum::<f64>().clamp(0.0, 1.0));
        out[k + 1] = lab_of_linear(v);
    }
    out
}

#[test]
fn the_palette_has_twenty_colours_apart_in_normal_and_colour_blind_vision() {
    assert!(PALETTE.len() >= 20);
    let seen: Vec<[[f64; 3]; 4]> = PALETTE.iter().map(|&c| visions(c)).collect();
    for (i, a) in seen.iter().enumerate() {
        // Visible on white and not near-black text: 28 ≤ L* ≤ 78 under normal vision.
        let l = a[0][0];
        assert!((27.0..=79.0).contains(&l), "colour {i}: L* {l:.1}");
        for (j, b) in seen[..i].iter().enumerate() {
            for (v, (x, y)) in a.iter().zip(b).enumerate() {
                let d = x
                    .iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).powi(2))
                    .sum::<f64>()
                    .sqrt();
                assert!(d >= 15.0, "colours {j} and {i} in vision {v}: ΔE {d:.1}");
            }
        }
    }
}

fn many_methods(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            if i % 4 == 3 {
                format!("method_{i} (predecessor)")
            } else {
                format!("method_{i}")
            }
        })
        .collect()
}

/// Figures of every panel kind with 20 methods, as a comparison draws them.
fn twenty_method_figures() -> Vec<Figure> {
    let names = many_methods(20);
    let curves = |k: f64| {
        Panel::Line(LineChart {
            title: format!("task {k}"),
            x_label: "env steps".into(),
            y_label: "return".into(),
            series: names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let pts: Vec<(f64, f64)> = (0..60)
                        .map(|t| {
                            let x = f64::from(t) * 1e4;
                            (
                                x,
                                -150.0 + (300.0 + 5.0 * i as f64) * (1.0 - (-x / 2e5).exp()),
                            )
                        })
                        .collect();
                    Series {
                        label: name.clone(),
                        color: i,
                        band: pts.iter().map(|&(x, y)| (x, y - 30.0, y + 30.0)).collect(),
                        points: pts,
                        style: if i % 4 == 3 {
                            LineStyle::Dashed
                        } else {
                            LineStyle::Solid
                        },
                    }
                })
                .collect(),
            hlines: vec![(200.0, "solved (200)".into())],
            log_x: false,
        })
    };
    let bars = BarChart {
        title: "final return".into(),
        y_label: "return".into(),
        categories: vec![
            "standard".into(),
            "windy".into(),
            "heavy".into(),
            "average over tasks".into(),
        ],
        series: names
            .iter()
            .enumerate()
            .map(|(i, name)| BarSeries {
                label: name.clone(),
                color: i,
                hatched: i % 4 == 3,
                values: (0..4)
                    .map(|t| {
                        let v = 150.0 + 10.0 * i as f64 - 20.0 * t as f64;
                        BarValue {
                            value: v,
                            lower: v - 40.0,
                            upper: v + 40.0,
                        }
                    })
                    .collect(),
            })
            .collect(),
        hlines: vec![(200.0, "solved (200)".into())],
    };
    let heat = Heatmap {
        title: "P(row beats column)".into(),
        row_labels: names.clone(),
        col_labels: (1..=20).map(|i| format!("({i})")).collect(),
        values: (0..20)
            .map(|i| {
                (0..20)
                    .map(|j| {
                        if i == j {
                            f64::NAN
                        } else {
                            (i + j) as f64 / 40.0
                        }
                    })
                    .collect()
            })
            .collect(),
    };
    let intervals = |title: &str, row_labels: bool| {
        Panel::Intervals(IntervalChart {
            title: title.into(),
            x_label: "normalised score".into(),
            rows: names
                .iter()
                .enumerate()
                .map(|(i, name)| IntervalRow {
                    label: name.clone(),
                    color: i,
                    hollow: i % 4 == 3,
                    value: 0.5 + 0.02 * i as f64,
                    lower: 0.4 + 0.02 * i as f64,
                    upper: 0.7 + 0.02 * i as f64,
                })
                .collect(),
            row_labels,
            vlines: vec![(1.0, "solved".into())],
        })
    };
    let scatter = ScatterChart {
        title: "size".into(),
        x_label: "parameters".into(),
        y_label: "return".into(),
        log_x: true,
        points: names
            .iter()
            .enumerate()
            .map(|(i, name)| ScatterPoint {
                label: name.clone(),
                color: i,
                hollow: i % 4 == 3,
                x: 1e4 * (1.0 + i as f64),
                y: 10.0 * i as f64,
                y_lower: 10.0 * i as f64 - 5.0,
                y_upper: 10.0 * i as f64 + 5.0,
            })
            .collect(),
        hlines: vec![],
    };
    vec![
        Figure {
            title: "Learning curves of twenty methods".into(),
            panels: vec![curves(1.0), curves(2.0), curves(3.0)],
            columns: 3,
        },
        Figure {
            title: "Final returns of twenty methods".into(),
            panels: vec![Panel::Bars(bars.clone()), Panel::Bars(bars)],
            columns: 2,
        },
        Figure {
            title: "Improvement of twenty methods".into(),
            panels: vec![Panel::Heatmap(heat)],
            columns: 1,
        },
        Figure {
            title: "Aggregates of twenty methods".into(),
            panels: vec![intervals("IQM", true), intervals("mean", false)],
            columns: 2,
        },
        Figure {
            title: "Size of twenty methods".into(),
            panels: vec![Panel::Scatter(scatter)],
            columns: 1,
        },
    ]
}

#[test]
fn no_legend_entry_covers_a_data_mark() {
    for fig in twenty_method_figures() {
        let l = layout(&fig).unwrap();
        assert_eq!(l.size, image_size(&fig), "{}", fig.title);
        assert!(
            l.marks.len() >= 20,
            "{}: {} marks",
            fig.title,
            l.marks.len()
        );
        let (w, h) = l.size;
        for (label, entry) in &l.legend {
            assert!(
                entry.x0 >= 0 && entry.x1 < w as i32 && entry.y1 < h as i32,
                "{}: legend entry {label} {entry:?} outside the {w}×{h} image",
                fig.title
            );
            for mark in &l.marks {
                assert!(
                    !entry.intersects(mark),
                    "{}: legend entry {label} {entry:?} over a mark {mark:?}",
                    fig.title
                );
            }
            for panel in &l.panels {
                assert!(!entry.intersects(panel), "{}: legend in a panel", fig.title);
            }
        }
        for (i, (_, a)) in l.legend.iter().enumerate() {
            for (_, b) in &l.legend[..i] {
                assert!(!a.intersects(b), "{}: legend entries overlap", fig.title);
            }
        }
        // Every mark lies inside some panel (nothing drawn into the legend strip or title).
        for mark in &l.marks {
            assert!(
                l.panels.iter().any(|p| p.intersects(mark)),
                "{}: mark {mark:?} outside the panels",
                fig.title
            );
        }
    }
    // One entry per method and one for the reference line; the heatmap has none.
    let figs = twenty_method_figures();
    assert_eq!(layout(&figs[0]).unwrap().legend.len(), 21);
    assert!(layout(&figs[2]).unwrap().legend.is_empty());
}

/// Every `font-size` in an SVG, in CSS pixels at the image's size (plotters writes the PNG's
/// text scale / 1.24, so the PNG's text is larger still).
fn svg_font_sizes(svg: &str) -> Vec<f64> {
    svg.split("font-size=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().parse::<f64>().unwrap())
        .collect()
}

#[test]
fn text_is_never_small_and_labels_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    for (k, fig) in twenty_method_figures().iter().enumerate() {
        if let Some(keep) = std::env::var_os("BRC_PLOT_KEEP") {
            save_figure(fig, &Path::new(&keep).join(format!("test_twenty_{k}"))).unwrap();
        }
        let [_, svg] = save_figure(fig, &dir.path().join(format!("f{k}"))).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        let sizes = svg_font_sizes(&svg);
        assert!(sizes.len() > 20, "{}: {} texts", fig.title, sizes.len());
        for s in sizes {
            assert!(s >= 11.0, "{}: text of {s:.2} px", fig.title);
        }
        assert!(!svg.contains('…'), "{}: a label was cut", fig.title);
    }
    // The longest method name appears whole as a heatmap row label, in the legend and on
    // the interval chart's axis; the long category wraps into whole words.
    let figs = twenty_method_figures();
    for fig in &figs[1..4] {
        let [_, svg] = save_figure(fig, &dir.path().join("whole")).unwrap();
        let svg = std::fs::read_to_string(svg).unwrap();
        assert!(
            svg.contains(">\nmethod_19 (predecessor)\n<"),
            "{}",
            fig.title
        );
    }
    let [_, svg] = save_figure(&figs[1], &dir.path().join("bars")).unwrap();
    let svg = std::fs::read_to_string(svg).unwrap();
    // plotters writes each text element's content on its own line.
    assert!(
        svg.contains(">\naverage over tasks\n<") || svg.contains(">\naverage over\n<"),
        "category label"
    );
}

#[test]
fn hatching_stays_inside_its_bar() {
    let r = Rect {
        x0: 10,
        y0: 20,
        x1: 30,
        y1: 80,
    };
    let segments = render::hatch_segments(r, 6);
    // Lines start every 6 px over d ∈ [−60, 20]: 14 of them, less the one at d = −60 that
    // only touches the top-left corner; each at 45°.
    assert_eq!(segments.len(), 13);
    for ((ax, ay), (bx, by)) in segments {
        for (x, y) in [(ax, ay), (bx, by)] {
            assert!((r.x0..=r.x1).contains(&x) && (r.y0..=r.y1).contains(&y));
        }
        assert_eq!(bx - ax, ay - by, "45°");
    }
}

#[test]
fn other_projects_rows_are_drawn_differently() {
    // A filled bar covers its area in the exact palette colour; a hatched one only its
    // outline and hatch lines, over a pale fill.
    let mut b = bars();
    let fig = |b: &BarChart| Figure {
        title: "hatch".into(),
        panels: vec![Panel::Bars(b.clone())],
        columns: 1,
    };
    let filled = count(&save_and_check(&fig(&b)), rgb(1));
    b.series[1].hatched = true;
    let hatched = count(&save_and_check(&fig(&b)), rgb(1));
    assert!(
        hatched > 100 && hatched * 2 < filled,
        "{hatched} vs {filled}"
    );
    // A dashed curve leaves gaps: fewer pixels of its colour than the solid one.
    let mut c = learning_curves();
    c.series.retain(|s| s.style == LineStyle::Solid);
    for s in &mut c.series {
        s.band.clear();
    }
    let line = |c: &LineChart| Figure {
        title: "dash".into(),
        panels: vec![Panel::Line(c.clone())],
        columns: 1,
    };
    let solid = count(&save_and_check(&line(&c)), rgb(1));
    c.series[1].style = LineStyle::Dashed;
    let dashed = count(&save_and_check(&line(&c)), rgb(1));
    assert!(dashed > 50 && dashed < solid, "{dashed} vs {solid}");
}

#[test]
fn twenty_bar_series_show_twenty_palette_colours() {
    let figs = twenty_method_figures();
    let pixels = save_and_check(&figs[1]);
    for c in 0..20 {
        // Filled bars cover thousands of pixels; hatched ones their outline and hatching.
        let n = count(&pixels, rgb(c));
        assert!(n > 200, "colour {c}: {n} pixels");
    }
}

/// Pixels of series 0's colour in a one-panel figure of `panel`.
fn series_pixels(panel: Panel) -> usize {
    let fig = Figure {
        title: "Intervals".into(),
        panels: vec![panel],
        columns: 1,
    };
    count(&save_and_check(&fig), rgb(0))
}

#[test]
fn a_huge_interval_does_not_flatten_the_bars() {
    // A two-seed t-interval can be ten times the data's span: the axis stretches only part
    // of the way, so the bars keep most of their height.
    let plain = series_pixels(Panel::Bars(bars()));
    let mut wide = bars();
    wide.series[1].values[2] = BarValue {
        value: 120.0,
        lower: -5000.0,
        upper: 5000.0,
    };
    let clipped = series_pixels(Panel::Bars(wide));
    assert!(
        clipped * 2 > plain,
        "bars shrank from {plain} to {clipped} pixels"
    );
}

#[test]
fn a_huge_band_does_not_flatten_the_curves() {
    let plain = series_pixels(Panel::Line(learning_curves()));
    let mut wide = learning_curves();
    let band = &mut wide.series[3].band;
    assert!(!band.is_empty(), "the fixture has a band to widen");
    band.iter_mut().for_each(|b| {
        b.1 -= 1e5;
        b.2 += 1e5;
    });
    let clipped = series_pixels(Panel::Line(wide));
    // Series 0's curve keeps its vertical extent, so about as many of its pixels are drawn.
    assert!(
        clipped * 10 > plain * 7,
        "curve pixels went from {plain} to {clipped}"
    );
}
