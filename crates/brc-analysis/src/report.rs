//! The two reports: `analyze` (one method — a run or its seeds — in detail) and `compare`
//! (several methods side by side). Each writes its plots (PNG + SVG), its tables (Markdown,
//! CSV, JSON) and a `report.md` that embeds them, every file written atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use brc_plot::{
    save_figure, BarChart, BarSeries, BarValue, Figure, Heatmap, IntervalChart, IntervalRow,
    LineChart, LineStyle, Panel, ScatterChart, ScatterPoint, Series,
};

use crate::aggregates::{
    aggregate, aggregates_markdown, performance_profile, reference, taus, Aggregate,
    PROFILE_RESAMPLES, SOLVED,
};
use crate::curves::{episode_series, mean_band, smoothed, task_returns, BandPoint, Point, XAxis};
use crate::efficiency::{crossings, THRESHOLDS, WINDOW};
use crate::groups::{groups_by_name, groups_from_specs, slug, Group, GroupError, GroupSpec};
use crate::methods::Method;
use crate::results::{
    efficiency_csv, efficiency_markdown, improvement_matrix, method_result, results_csv,
    results_markdown, Estimate, MethodCrossings, MethodResult,
};
use crate::stability::{method_stability, stability_markdown};
use crate::stats::mean_ci95;

/// Errors writing a report: a one-line message naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file or directory cannot be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A plot cannot be drawn or saved.
    #[error(transparent)]
    Plot(#[from] brc_plot::PlotError),
    /// Nothing to report.
    #[error("{0}")]
    Empty(String),
    /// The method groups name a method the comparison lacks.
    #[error(transparent)]
    Groups(#[from] GroupError),
}

/// Report settings.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Moving-average window of the training curves, in episodes of one task.
    pub smoothing: usize,
    /// Bootstrap resamples of the IQM interval.
    pub resamples: usize,
    /// Seed of the bootstrap's generator.
    pub bootstrap_seed: u64,
    /// Points on each seed-averaged curve.
    pub curve_points: usize,
    /// The evaluation report the runs' final evaluations were read from (see
    /// [`crate::methods::load_methods`]), named in the report; `None`: their logs.
    pub final_evaluation: Option<String>,
    /// What the training curves' x axis counts.
    pub x_axis: XAxis,
    /// Which methods share a curve figure (`brc compare --group FILE`); `None`: by run name
    /// (see [`crate::groups::groups_by_name`]).
    pub groups: Option<Vec<GroupSpec>>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            smoothing: 20,
            resamples: 50_000,
            bootstrap_seed: 0,
            curve_points: 200,
            final_evaluation: None,
            x_axis: XAxis::EnvSteps,
            groups: None,
        }
    }
}

fn solved_line() -> Vec<(f64, String)> {
    vec![(SOLVED, "solved (200)".into())]
}

/// Writes `contents` to `path` through a temporary file in the same directory and a rename,
/// so an interrupted write never leaves a half file in place of an earlier one.
fn write_atomic(path: &Path, contents: &str) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(contents.as_bytes()).map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    Ok(())
}

/// The files a report wrote, and its figures by file stem.
type Written = (Vec<PathBuf>, Vec<(String, Figure)>);

/// What a report wrote.
struct Output {
    dir: PathBuf,
    files: Vec<PathBuf>,
    markdown: String,
    /// The figures saved, by file stem (kept for the tests to inspect).
    figures: Vec<(String, Figure)>,
}

impl Output {
    fn new(dir: &Path, title: &str) -> Result<Self, ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            markdown: format!("# {title}\n\n"),
            figures: Vec::new(),
        })
    }

    fn figure(&mut self, name: &str, caption: &str, figure: Figure) -> Result<(), ReportError> {
        let paths = save_figure(&figure, &self.dir.join(name))?;
        self.files.extend(paths);
        self.markdown
            .push_str(&format!("## {caption}\n\n![{caption}]({name}.png)\n\n"));
        self.figures.push((name.to_string(), figure));
        Ok(())
    }

    fn table(&mut self, file: &str, contents: &str) -> Result<(), ReportError> {
        let path = self.dir.join(file);
        write_atomic(&path, contents)?;
        self.files.push(path);
        Ok(())
    }

    fn text(&mut self, s: &str) {
        self.markdown.push_str(s);
        self.markdown.push('\n');
    }

    /// Writes `report.md`; returns every file written and the figures.
    fn finish(mut self) -> Result<Written, ReportError> {
        let path = self.dir.join("report.md");
        write_atomic(&path, &self.markdown)?;
        self.files.push(path);
        Ok((self.files, self.figures))
    }
}

fn band_series(label: &str, color: usize, band: &[BandPoint]) -> Series {
    Series {
        label: label.into(),
        color,
        points: band.iter().map(|p| (p.0, p.1)).collect(),
        band: if band.iter().any(|p| p.3 > p.2) {
            band.iter().map(|p| (p.0, p.2, p.3)).collect()
        } else {
            Vec::new()
        },
        style: LineStyle::Solid,
    }
}

fn line(
    title: &str,
    x_axis: XAxis,
    y_label: &str,
    series: Vec<Series>,
    hlines: Vec<(f64, String)>,
) -> Panel {
    Panel::Line(LineChart {
        title: title.into(),
        x_label: x_axis.label().into(),
        y_label: y_label.into(),
        series,
        hlines,
        log_x: false,
    })
}

fn bar(v: (f64, f64, f64)) -> BarValue {
    BarValue {
        value: v.0,
        lower: v.1,
        upper: v.2,
    }
}

/// Mean (and band) across seeds of one series per run.
fn seed_band(
    method: &Method,
    points: usize,
    f: impl Fn(&crate::runs::Run) -> Vec<Point>,
) -> Vec<BandPoint> {
    let series: Vec<Vec<Point>> = method.runs.iter().map(f).collect();
    mean_band(&series, points)
}

/// The figure caption of a diagnostics log.
fn diagnostics_caption(log: &str) -> &'static str {
    match log {
        "surgery" => "Gradient surgery over training",
        _ => "Method diagnostics over training",
    }
}

/// What a diagnostics log measures, for its figure's title.
fn diagnostics_subject(log: &str) -> &str {
    match log {
        "surgery" => "gradient surgery on the fixed probe batches",
        other => other,
    }
}

/// A panel title and y label for one field of a diagnostics log.
fn diagnostic_field_names(field: &str) -> (&str, &str) {
    match field {
        "conflicting_pairs" => ("PCGrad: conflicting task pairs", "share of pairs"),
        "mean_projection" => (
            "PCGrad: size of the removed component",
            "relative to the task gradient",
        ),
        "weights" => ("GradNorm: task weights", "weight (sum = tasks)"),
        "w" => ("CAGrad: task weights w", "weight (sum = 1)"),
        "d_over_g0" => ("CAGrad: update size", "|d| / |mean gradient|"),
        other => (other, other),
    }
}

/// One panel per field of the diagnostics log `log` (one line per key of a nested field),
/// the mean over the method's seeds with its band; `None` when no run writes the log.
fn diagnostics_figure(method: &Method, log: &str, axis: XAxis, points: usize) -> Option<Figure> {
    // Keys over every seed (one still starting may have logged nothing yet).
    let keys: std::collections::BTreeSet<&String> = method
        .runs
        .iter()
        .filter_map(|r| r.diagnostics.get(log))
        .flatten()
        .flat_map(|p| p.values.keys())
        .collect();
    let tasks = method.tasks();
    // A task's line keeps the task's colour of the other figures (its index in training order).
    let task_of = |key: &str| {
        let name = key.split_once('/').map(|(_, k)| k)?;
        tasks.iter().position(|t| t == name)
    };
    let mut fields: Vec<(String, Vec<String>)> = Vec::new();
    for key in keys {
        let field = key.split('/').next().unwrap_or(key).to_string();
        match fields.iter_mut().find(|(f, _)| *f == field) {
            Some((_, keys)) if !keys.contains(key) => keys.push(key.clone()),
            Some(_) => {}
            None => fields.push((field, vec![key.clone()])),
        }
    }
    if fields.is_empty() {
        return None;
    }
    for (_, keys) in &mut fields {
        keys.sort_by_key(|k| task_of(k).unwrap_or(usize::MAX));
    }
    let panels: Vec<Panel> = fields
        .iter()
        .map(|(field, keys)| {
            let series = keys
                .iter()
                .enumerate()
                .map(|(i, key)| {
                    let band = seed_band(method, points, |r| {
                        r.diagnostics
                            .get(log)
                            .into_iter()
                            .flatten()
                            .filter_map(|p| {
                                Some((axis.after(r, p.after_episode)?, *p.values.get(key)?))
                            })
                            .collect()
                    });
                    let label = key.split_once('/').map_or("", |(_, k)| k);
                    band_series(label, task_of(key).unwrap_or(i), &band)
                })
                .collect();
            let (title, y_label) = diagnostic_field_names(field);
            line(title, axis, y_label, series, Vec::new())
        })
        .collect();
    Some(Figure {
        title: format!("{}: {}", method.name, diagnostics_subject(log)),
        columns: panels.len().min(2),
        panels,
    })
}

/// Evaluation history of one task (or the task average with `None`) across seeds: grouped by
/// the episode count they ran after, x = mean env steps over the seeds that reached it.
fn eval_band(method: &Method, task: Option<&str>, axis: XAxis) -> Vec<BandPoint> {
    let mut at: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for run in &method.runs {
        for e in &run.evaluations {
            let value = match task {
                Some(t) => e.mean_return.get(t).copied(),
                None => (!e.mean_return.is_empty())
                    .then(|| e.mean_return.values().sum::<f64>() / e.mean_return.len() as f64),
            };
            let x = match axis {
                XAxis::EnvSteps => e.env_steps.map(|s| s as f64),
                XAxis::Episodes => None,
            }
            .or_else(|| axis.after(run, e.after_episode));
            if let (Some(v), Some(x)) = (value, x) {
                let slot = at.entry(e.after_episode).or_default();
                slot.0.push(x);
                slot.1.push(v);
            }
        }
    }
    let seeds = method.runs.len();
    at.into_values()
        // Only points every seed reached, so the mean never mixes in fewer seeds at the end.
        .filter(|(xs, _)| xs.len() == seeds)
        .map(|(xs, vs)| {
            let (m, lo, hi) = mean_ci95(&vs);
            (crate::stats::mean(&xs), m, lo, hi)
        })
        .collect()
}

/// How a method's curves are drawn: the predecessor's dashed, so ours and theirs differ at a
/// glance whatever the colours.
fn curve_style(method: &Method) -> LineStyle {
    if method.predecessor {
        LineStyle::Dashed
    } else {
        LineStyle::Solid
    }
}

fn final_bars(method: &Method, tasks: &[String], color: usize, label: &str) -> BarSeries {
    let scores = crate::results::final_scores(method, tasks);
    let mut values: Vec<BarValue> = (0..tasks.len())
        .map(|t| bar(mean_ci95(&scores.iter().map(|s| s[t]).collect::<Vec<_>>())))
        .collect();
    let averages: Vec<f64> = scores.iter().map(|s| crate::stats::mean(s)).collect();
    values.push(bar(mean_ci95(&averages)));
    BarSeries {
        label: label.into(),
        color,
        hatched: method.predecessor,
        values,
    }
}

fn method_crossings(method: &Method) -> MethodCrossings {
    MethodCrossings {
        method: method.name.clone(),
        runs: method
            .runs
            .iter()
            .map(|r| (r.label.clone(), crossings(r, &THRESHOLDS, WINDOW)))
            .collect(),
    }
}

fn seeds_note(method: &Method) -> String {
    let n = method.runs.len();
    let unfinished = method.runs.iter().filter(|r| !r.finished).count();
    let mut s = if n == 1 {
        format!("One run ({}).", method.runs[0].label)
    } else {
        format!("{n} seeds: curves are the mean across seeds with a shaded 95% t-interval, over the env steps every seed reached.")
    };
    if unfinished > 0 {
        s.push_str(&format!(
            " {unfinished} run(s) still in progress (or stopped): read up to their last complete episode."
        ));
    }
    s
}

/// `brc analyze`: one method (a run or its seeds) in detail, into `out`. Returns the files
/// written.
pub fn analyze(
    method: &Method,
    out: &Path,
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    let tasks = method.tasks().to_vec();
    let single = method.runs.len() == 1;
    let axis = opts.x_axis;
    let mut o = Output::new(out, &format!("{} — training analysis", method.name))?;
    o.text(&seeds_note(method));
    o.text("");

    // Training curves per task.
    let panels = tasks
        .iter()
        .map(|task| {
            let mut series = Vec::new();
            if single {
                let raw = task_returns(&method.runs[0], task, axis);
                series.push(Series {
                    label: "episode return".into(),
                    color: 7,
                    points: raw.clone(),
                    band: Vec::new(),
                    style: LineStyle::Faint,
                });
            }
            let ma = seed_band(method, opts.curve_points, |r| {
                smoothed(&task_returns(r, task, axis), opts.smoothing)
            });
            series.push(band_series(
                &format!("moving average ({} episodes)", opts.smoothing),
                0,
                &ma,
            ));
            let evals = eval_band(method, Some(task), axis);
            series.push(Series {
                label: "greedy evaluation".into(),
                color: 1,
                points: evals.iter().map(|p| (p.0, p.1)).collect(),
                band: Vec::new(),
                style: LineStyle::Markers,
            });
            line(task, axis, "return", series, solved_line())
        })
        .collect();
    o.figure(
        "training_curves",
        "Training returns per task",
        Figure {
            title: format!("{}: training returns", method.name),
            panels,
            columns: tasks.len().min(3),
        },
    )?;

    // Evaluation history per task and on average.
    let mut panels: Vec<Panel> = tasks
        .iter()
        .map(|t| {
            line(
                t,
                axis,
                "mean greedy return",
                vec![band_series("", 0, &eval_band(method, Some(t), axis))],
                solved_line(),
            )
        })
        .collect();
    panels.push(line(
        "average over tasks",
        axis,
        "mean greedy return",
        vec![band_series("", 2, &eval_band(method, None, axis))],
        solved_line(),
    ));
    o.figure(
        "evaluations",
        "Evaluation history",
        Figure {
            title: format!("{}: greedy evaluations", method.name),
            panels,
            columns: 2,
        },
    )?;

    // Loss, ε, mean Q, gradient norm.
    type Getter = fn(&crate::runs::Episode) -> Option<f64>;
    let diagnostics: [(&str, Getter); 4] = [
        ("loss", |e| e.loss),
        ("epsilon", |e| e.epsilon),
        ("mean Q", |e| e.mean_q),
        ("gradient norm", |e| e.grad_norm),
    ];
    let panels = diagnostics
        .iter()
        .enumerate()
        .map(|(i, (name, get))| {
            let band = seed_band(method, opts.curve_points, |r| {
                smoothed(&episode_series(r, axis, get), opts.smoothing)
            });
            line(
                name,
                axis,
                name,
                vec![band_series("", i, &band)],
                Vec::new(),
            )
        })
        .collect();
    o.figure(
        "diagnostics",
        "Loss, exploration, Q-values and gradient norm",
        Figure {
            title: format!(
                "{}: training diagnostics (per-episode means, smoothed)",
                method.name
            ),
            panels,
            columns: 2,
        },
    )?;

    // Gradient conflict.
    let run0 = &method.runs[0];
    let pairs: Vec<String> = run0
        .conflicts
        .first()
        .map(|c| c.cosines.keys().cloned().collect())
        .unwrap_or_default();
    let conflict_series = |key: &str, norms: bool| {
        seed_band(method, opts.curve_points, |r| {
            r.conflicts
                .iter()
                .filter_map(|c| {
                    let map = if norms { &c.norms } else { &c.cosines };
                    Some((axis.after(r, c.after_episode)?, *map.get(key)?))
                })
                .collect()
        })
    };
    let norms = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| band_series(t, i, &conflict_series(t, true)))
        .collect();
    let cosines = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| band_series(&p.replace('|', " · "), i + 3, &conflict_series(p, false)))
        .collect();
    o.figure(
        "gradient_conflict",
        "Gradient conflict between tasks",
        Figure {
            title: format!("{}: per-task gradients on fixed probe batches", method.name),
            panels: vec![
                line("per-task gradient norm", axis, "norm", norms, Vec::new()),
                line(
                    "pairwise cosine similarity",
                    axis,
                    "cosine",
                    cosines,
                    vec![(0.0, String::new())],
                ),
            ],
            columns: 2,
        },
    )?;

    // What a method-specific mechanism did over training (gradient surgery, …).
    for log in crate::runs::DIAGNOSTIC_LOGS {
        if let Some(figure) = diagnostics_figure(method, log, axis, opts.curve_points) {
            let caption = diagnostics_caption(log);
            o.figure(&format!("{log}_diagnostics"), caption, figure)?;
        }
    }
    if !run0.varshare.is_empty() {
        varshare_figures(&mut o, method, &tasks, opts)?;
    }

    // Final return per task and on average ("conflict robustness").
    let mut categories = tasks.clone();
    categories.push("average".into());
    o.figure(
        "final_returns",
        "Final return per task (conflict robustness)",
        Figure {
            title: format!("{}: final greedy evaluation", method.name),
            panels: vec![Panel::Bars(BarChart {
                title: "final return, mean and 95% CI over seeds".into(),
                y_label: "return".into(),
                categories,
                series: vec![final_bars(method, &tasks, 0, &method.name)],
                hlines: solved_line(),
            })],
            columns: 1,
        },
    )?;
    let result = method_result(method, &tasks, opts.resamples, opts.bootstrap_seed);
    write_results(&mut o, std::slice::from_ref(&result))?;

    // Sample efficiency.
    let trailing = tasks
        .iter()
        .map(|t| {
            let band = seed_band(method, opts.curve_points, |r| {
                smoothed(&task_returns(r, t, axis), WINDOW)
            });
            // Unlabelled: four grey lines would be four identical legend entries; the
            // figure title names them.
            let hlines = THRESHOLDS.iter().map(|&x| (x, String::new())).collect();
            line(
                t,
                axis,
                &format!("trailing {WINDOW}-episode mean"),
                vec![band_series("", 0, &band)],
                hlines,
            )
        })
        .collect();
    o.figure(
        "sample_efficiency",
        "Sample efficiency",
        Figure {
            title: format!(
                "{}: trailing {WINDOW}-episode training mean per task (dashed: {})",
                method.name,
                THRESHOLDS.map(|t| t.to_string()).join(", ")
            ),
            panels: trailing,
            columns: tasks.len().min(3),
        },
    )?;
    write_efficiency(&mut o, &[method_crossings(method)])?;
    Ok(o.finish()?.0)
}

/// VarShare runs (`varshare.jsonl`): KL and mean σ per task over training, and how much of
/// each task's residual survives pruning — per task over training, per layer at the end.
fn varshare_figures(
    o: &mut Output,
    method: &Method,
    tasks: &[String],
    opts: &ReportOptions,
) -> Result<(), ReportError> {
    let axis = opts.x_axis;
    type Get = fn(&crate::runs::VarShareSample, &str) -> Option<f64>;
    let over_training = |get: Get| -> Vec<Series> {
        tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let band = seed_band(method, opts.curve_points, |r| {
                    r.varshare
                        .iter()
                        .filter_map(|v| Some((axis.after(r, v.after_episode)?, get(v, t)?)))
                        .collect()
                });
                band_series(t, i, &band)
            })
            .collect()
    };
    let mut panels = vec![
        line(
            "KL to the prior per task (mean per residual weight)",
            axis,
            "KL per weight",
            over_training(|v, t| Some(v.kl.get(t)? / v.weights.max(1.0))),
            Vec::new(),
        ),
        line(
            "share of μ surviving pruning, all layers",
            axis,
            "share of entries",
            over_training(|v, t| v.kept_fraction_all.get(t).copied()),
            Vec::new(),
        ),
    ];
    if method.runs[0]
        .varshare
        .iter()
        .any(|v| !v.mean_sigma.is_empty())
    {
        // In units of 1e-3 (σ starts there), so the ticks keep their digits.
        panels.push(line(
            "mean posterior σ per task",
            axis,
            "σ (× 1e-3)",
            over_training(|v, t| Some(v.mean_sigma.get(t)? * 1e3)),
            Vec::new(),
        ));
    }
    o.figure(
        "varshare",
        "VarShare: KL, surviving residual entries and σ per task",
        Figure {
            title: format!("{}: task residuals over training", method.name),
            panels,
            columns: 2,
        },
    )?;

    // Sparsity per layer and task at the end: the last sample's share, mean over seeds.
    let layers: Vec<String> = method.runs[0]
        .varshare
        .last()
        .map(|v| v.kept_fraction.iter().map(|(l, _)| l.clone()).collect())
        .unwrap_or_default();
    let values = layers
        .iter()
        .map(|layer| {
            tasks
                .iter()
                .map(|t| {
                    let per_seed: Vec<f64> = method
                        .runs
                        .iter()
                        .filter_map(|r| {
                            let last = r.varshare.last()?;
                            let (_, kept) = last.kept_fraction.iter().find(|(l, _)| l == layer)?;
                            kept.get(t).copied()
                        })
                        .collect();
                    per_seed.iter().sum::<f64>() / per_seed.len().max(1) as f64
                })
                .collect()
        })
        .collect();
    let last_episode = method.runs[0]
        .varshare
        .last()
        .map_or(0, |v| v.after_episode);
    o.figure(
        "varshare_sparsity",
        "VarShare: share of each layer's μ entries surviving pruning, per task, at the end",
        Figure {
            title: format!(
                "{}: surviving residual entries after episode {last_episode}",
                method.name
            ),
            panels: vec![Panel::Heatmap(Heatmap {
                title: "share of μ entries with |μ| ≥ prune threshold".into(),
                row_labels: layers,
                col_labels: tasks.to_vec(),
                values,
            })],
            columns: 1,
        },
    )
}

fn write_results(o: &mut Output, rows: &[MethodResult]) -> Result<(), ReportError> {
    let md = results_markdown(rows);
    o.table("results.md", &md)?;
    o.table("results.csv", &results_csv(rows))?;
    let json = serde_json::to_string_pretty(rows).expect("results serialize");
    o.table("results.json", &(json + "\n"))?;
    o.text("## Results (final greedy evaluation)\n");
    o.text("Mean ± 95% t-interval over seeds; IQM over seeds × tasks with a stratified-bootstrap 95% interval.\n");
    o.text(&md);
    Ok(())
}

fn write_efficiency(o: &mut Output, methods: &[MethodCrossings]) -> Result<(), ReportError> {
    let md = efficiency_markdown(methods);
    o.table("sample_efficiency.md", &md)?;
    o.table("sample_efficiency.csv", &efficiency_csv(methods))?;
    o.text(&format!(
        "### Threshold crossings\n\nFirst episode at which the trailing {WINDOW}-episode mean of a task's training returns reaches each threshold, with the run's actual cumulative env steps and updates (all tasks) at that episode.\n"
    ));
    o.text(&md);
    Ok(())
}

/// `brc compare`: several methods side by side, into `out`. Returns the files written.
pub fn compare(
    methods: &[Method],
    out: &Path,
    opts: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    Ok(compare_report(methods, out, opts)?.0)
}

/// How the report tells methods apart, said once at its top.
fn style_note() -> &'static str {
    "Each method keeps one colour in every figure, here and in the other comparisons (the colour follows the method's name); the earlier Python project's rows (\"(predecessor)\") take their method's colour and are drawn dashed (curves), hatched (bars) or hollow (points)."
}

/// [`compare`], also returning the figures drawn (for the tests).
fn compare_report(
    methods: &[Method],
    out: &Path,
    opts: &ReportOptions,
) -> Result<Written, ReportError> {
    if methods.is_empty() {
        return Err(ReportError::Empty("nothing to compare".into()));
    }
    // Tasks in order of first appearance over all methods.
    let tasks = crate::runs::task_order(
        methods
            .iter()
            .flat_map(|m| m.tasks().iter().map(String::as_str)),
    );
    let groups = match &opts.groups {
        Some(specs) => groups_from_specs(methods, specs)?,
        None => groups_by_name(methods),
    };
    let colors = crate::colors::method_colors(methods, brc_plot::PALETTE.len());
    let mut o = Output::new(out, "Method comparison")?;
    let ours = match &opts.final_evaluation {
        Some(report) => format!("our runs; final evaluation from each run's `{report}`"),
        None => "our runs".to_string(),
    };
    let lines: Vec<String> = methods
        .iter()
        .map(|m| {
            let origin = if m.predecessor {
                "the earlier Python project's log (one unseeded run; its last periodic evaluation, 5 episodes per task, stands in for a final evaluation)"
            } else {
                &ours
            };
            format!("- **{}**: {} run(s), {origin}", m.name, m.runs.len())
        })
        .collect();
    o.text(&lines.join("\n"));
    o.text("");
    o.text(style_note());
    o.text("");

    let rows: Vec<MethodResult> = methods
        .iter()
        .map(|m| method_result(m, &tasks, opts.resamples, opts.bootstrap_seed))
        .collect();
    write_results(&mut o, &rows)?;

    let refs: Option<Vec<_>> = tasks.iter().map(|t| reference(t)).collect();
    match refs {
        Some(refs) => write_aggregates(&mut o, methods, &colors, &tasks, &refs, &groups, opts)?,
        None => {
            let unknown: Vec<&str> = tasks
                .iter()
                .filter(|t| reference(t).is_none())
                .map(String::as_str)
                .collect();
            o.text(&format!(
                "No aggregate scores: no random-policy reference return for task(s) {} to normalise by.\n",
                unknown.join(", ")
            ));
        }
    }

    let late = stability_markdown(
        &methods
            .iter()
            .map(|m| method_stability(m, &tasks))
            .collect::<Vec<_>>(),
    );
    o.table("stability.md", &late)?;
    o.text("## Late training (periodic evaluations of the second half)\n");
    o.text("Each run's periodic greedy evaluations after half its training: their mean per task and on average (mean ± 95% t-interval over seeds) averages over the swings of the greedy policy that a final evaluation draws one network from; swing is the standard deviation of a run's evaluation averages in that window (mean over seeds), worst its lowest.\n");
    o.text(&late);

    let mut categories = tasks.clone();
    categories.push("average".into());
    o.figure(
        "final_returns",
        "Final return per task",
        Figure {
            title: "Final greedy evaluation: mean and 95% CI over seeds".into(),
            panels: vec![Panel::Bars(BarChart {
                title: String::new(),
                y_label: "return".into(),
                categories,
                series: methods
                    .iter()
                    .enumerate()
                    .map(|(i, m)| final_bars(m, &tasks, colors[i], &m.name))
                    .collect(),
                hlines: solved_line(),
            })],
            columns: 1,
        },
    )?;

    write_learning_curves(&mut o, methods, &colors, &tasks, &groups, opts)?;

    // Methods of (nearly) the same size would hide each other: each cluster's points are
    // spread a fixed share of the axis apart, in method order.
    let sizes: Vec<Option<usize>> = methods.iter().map(Method::parameters).collect();
    let dodged = dodge_sizes(&sizes);
    let mut points: Vec<ScatterPoint> = methods
        .iter()
        .zip(&rows)
        .enumerate()
        .filter_map(|(i, (m, r))| {
            Some(ScatterPoint {
                label: m.name.clone(),
                color: colors[i],
                hollow: m.predecessor,
                x: m.parameters().map(|_| dodged[i])?,
                y: r.average.mean,
                y_lower: r.average.lower,
                y_upper: r.average.upper,
            })
        })
        .collect();
    // VarShare also at its size after pruning (the residual entries that carry information),
    // in its colour, without a second error bar.
    points.extend(
        methods
            .iter()
            .zip(&rows)
            .enumerate()
            .filter_map(|(i, (m, r))| {
                Some(ScatterPoint {
                    label: format!("{}, after pruning", m.name),
                    color: colors[i],
                    hollow: true,
                    x: m.pruned_parameters()? as f64,
                    y: r.average.mean,
                    y_lower: f64::NAN,
                    y_upper: f64::NAN,
                })
            }),
    );
    o.figure(
        "parameter_efficiency",
        "Parameter efficiency",
        Figure {
            title: "Average final return against parameters (mean and 95% CI over seeds; near sizes spread apart)".into(),
            panels: vec![Panel::Scatter(ScatterChart {
                title: String::new(),
                // Linear: the sizes compared span one decade, where a log axis has one tick.
                x_label: "trainable parameters".into(),
                y_label: "average final return".into(),
                log_x: false,
                points,
                hlines: solved_line(),
            })],
            columns: 1,
        },
    )?;

    let all_crossings: Vec<MethodCrossings> = methods.iter().map(method_crossings).collect();
    let panels = THRESHOLDS
        .iter()
        .map(|threshold| {
            let series = all_crossings
                .iter()
                .enumerate()
                .map(|(i, mc)| BarSeries {
                    label: mc.method.clone(),
                    color: colors[i],
                    hatched: methods[i].predecessor,
                    values: tasks
                        .iter()
                        .map(|t| {
                            let steps: Vec<f64> = mc
                                .runs
                                .iter()
                                .filter_map(|(_, cs)| {
                                    cs.iter()
                                        .find(|c| &c.task == t && c.threshold == *threshold)?
                                        .env_steps
                                })
                                .map(|s| s as f64)
                                .collect();
                            if steps.is_empty() {
                                bar((f64::NAN, f64::NAN, f64::NAN))
                            } else {
                                let lo = steps.iter().copied().fold(f64::MAX, f64::min);
                                let hi = steps.iter().copied().fold(f64::MIN, f64::max);
                                bar((crate::stats::mean(&steps), lo, hi))
                            }
                        })
                        .collect(),
                })
                // A method that never gets there has no bars, so no legend entry either.
                .filter(|s: &BarSeries| s.values.iter().any(|v| v.value.is_finite()))
                .collect();
            Panel::Bars(BarChart {
                title: format!("trailing-{WINDOW} mean ≥ {threshold}"),
                y_label: "env steps (mean over seeds)".into(),
                categories: tasks.clone(),
                series,
                hlines: Vec::new(),
            })
        })
        .collect();
    o.figure(
        "sample_efficiency",
        "Sample efficiency",
        Figure {
            title: "Env steps until the trailing training mean reaches each threshold (error bars: min–max over the seeds that did; no bar: none did)".into(),
            panels,
            columns: 2,
        },
    )?;
    write_efficiency(&mut o, &all_crossings)?;

    // Columns are numbered: full names fit beside the rows, not under narrow columns.
    let rows: Vec<String> = methods
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} ({})", m.name, i + 1))
        .collect();
    let cols: Vec<String> = (1..=methods.len()).map(|i| format!("({i})")).collect();
    o.figure(
        "improvement",
        "Probability of improvement",
        Figure {
            title: "P(row beats column) on final return, averaged over tasks".into(),
            panels: vec![Panel::Heatmap(Heatmap {
                title: String::new(),
                row_labels: rows,
                col_labels: cols,
                values: improvement_matrix(methods, &tasks),
            })],
            columns: 1,
        },
    )?;
    o.finish()
}

/// One interval row per method, in its colour (hollow for the predecessor's).
fn interval_rows(
    methods: &[Method],
    colors: &[usize],
    aggs: &[Aggregate],
    stat: impl Fn(&Aggregate) -> Estimate,
) -> Vec<IntervalRow> {
    methods
        .iter()
        .zip(aggs)
        .enumerate()
        .map(|(i, (m, a))| {
            let e = stat(a);
            IntervalRow {
                label: m.name.clone(),
                color: colors[i],
                hollow: m.predecessor,
                value: e.mean,
                lower: e.lower,
                upper: e.upper,
            }
        })
        .collect()
}

/// The rliable aggregates (IQM, median, mean, optimality gap with intervals) and the
/// performance profiles, one panel per group.
fn write_aggregates(
    o: &mut Output,
    methods: &[Method],
    colors: &[usize],
    tasks: &[String],
    refs: &[crate::aggregates::TaskReference],
    groups: &[Group],
    opts: &ReportOptions,
) -> Result<(), ReportError> {
    let aggs: Vec<Aggregate> = methods
        .iter()
        .map(|m| aggregate(m, tasks, refs, opts.resamples, opts.bootstrap_seed))
        .collect();
    let md = aggregates_markdown(&aggs);
    o.table("aggregates.md", &md)?;
    let json = serde_json::to_string_pretty(&aggs).expect("aggregates serialize");
    o.table("aggregates.json", &(json + "\n"))?;
    let solved = || vec![(1.0, "normalised 1 = return 200 (solved)".to_string())];
    let panel = |title: &str, x_label: &str, first: bool, rows: Vec<IntervalRow>, lines| {
        Panel::Intervals(IntervalChart {
            title: title.into(),
            x_label: x_label.into(),
            rows,
            row_labels: first,
            vlines: lines,
        })
    };
    let refs_text: Vec<String> = tasks
        .iter()
        .zip(refs)
        .map(|(t, r)| format!("{t} {:.1}", r.random))
        .collect();
    o.figure(
        "aggregates",
        "Aggregate scores",
        Figure {
            title: "Final returns normalised per task (0 = random, 1 = return 200): point estimate and 95% stratified-bootstrap CI".into(),
            panels: vec![
                panel("IQM", "normalised score", true, interval_rows(methods, colors, &aggs, |a| a.iqm), solved()),
                panel("median", "normalised score", false, interval_rows(methods, colors, &aggs, |a| a.median), solved()),
                panel("mean", "normalised score", false, interval_rows(methods, colors, &aggs, |a| a.mean), solved()),
                panel(
                    "optimality gap",
                    "shortfall below 1 (lower is better)",
                    false,
                    interval_rows(methods, colors, &aggs, |a| a.optimality_gap),
                    Vec::new(),
                ),
            ],
            columns: 4,
        },
    )?;
    o.text(&format!(
        "rliable-style aggregates of the final returns normalised per task, `(R − random) / (200 − random)`: 0 is the mean return of uniformly random actions on that task ({}), 1 is the solved return 200. IQM, median, mean and optimality gap (mean shortfall below 1) over all runs × tasks of a method, with 95% stratified-bootstrap intervals ({} resamples of runs within each task; Agarwal et al. 2021). A method with one run has no interval.\n",
        refs_text.join(", "),
        opts.resamples
    ));
    o.text(&md);

    // Performance profiles over the range the scores span.
    let all: Vec<f64> = methods
        .iter()
        .flat_map(|m| crate::aggregates::normalised_scores(m, tasks, refs))
        .flatten()
        .collect();
    let lo = all.iter().copied().fold(0.0, f64::min);
    let hi = all.iter().copied().fold(1.0, f64::max);
    let grid = taus((lo * 4.0).floor() / 4.0, (hi * 4.0).ceil() / 4.0, 81);
    let resamples = PROFILE_RESAMPLES.min(opts.resamples);
    let panels = groups
        .iter()
        .map(|g| {
            let series = g
                .members
                .iter()
                .map(|&i| {
                    let m = &methods[i];
                    let p =
                        performance_profile(m, tasks, refs, &grid, resamples, opts.bootstrap_seed);
                    Series {
                        label: m.name.clone(),
                        color: colors[i],
                        points: p.iter().map(|q| (q.0, q.1)).collect(),
                        band: if p.iter().any(|q| q.3 > q.2) {
                            p.iter().map(|q| (q.0, q.2, q.3)).collect()
                        } else {
                            Vec::new()
                        },
                        style: curve_style(m),
                    }
                })
                .collect();
            Panel::Line(LineChart {
                title: g.name.clone(),
                x_label: "τ (normalised score; 1 = return 200)".into(),
                y_label: "fraction of runs × tasks with score > τ".into(),
                series,
                hlines: Vec::new(),
                log_x: false,
            })
        })
        .collect();
    o.figure(
        "performance_profiles",
        "Performance profiles",
        Figure {
            title: "Performance profiles of the final returns (95% stratified-bootstrap bands)"
                .into(),
            panels,
            columns: groups.len().min(2),
        },
    )?;
    o.text(&format!(
        "Performance profiles: the fraction of a method's run × task normalised scores above each threshold τ, with 95% stratified-bootstrap bands ({resamples} resamples); one panel per method group.\n"
    ));
    Ok(())
}

/// Training curves, one figure per method group (at most [`crate::groups::MAX_LINES`]
/// curves a panel), one panel per task.
fn write_learning_curves(
    o: &mut Output,
    methods: &[Method],
    colors: &[usize],
    tasks: &[String],
    groups: &[Group],
    opts: &ReportOptions,
) -> Result<(), ReportError> {
    let axis = opts.x_axis;
    for g in groups {
        let panels = tasks
            .iter()
            .map(|t| {
                let series = g
                    .members
                    .iter()
                    .filter_map(|&i| {
                        let m = &methods[i];
                        let band = seed_band(m, opts.curve_points, |r| {
                            smoothed(&task_returns(r, t, axis), opts.smoothing)
                        });
                        // No curve, no legend entry (the predecessor's independent logs have
                        // no env steps).
                        (!band.is_empty()).then(|| Series {
                            style: curve_style(m),
                            ..band_series(&m.name, colors[i], &band)
                        })
                    })
                    .collect();
                line(
                    t,
                    axis,
                    &format!("return ({}-episode moving average)", opts.smoothing),
                    series,
                    solved_line(),
                )
            })
            .collect();
        let (stem, caption) = if groups.len() == 1 {
            ("learning_curves".to_string(), "Learning curves".to_string())
        } else {
            (
                format!("learning_curves_{}", slug(&g.name)),
                format!("Learning curves: {}", g.name),
            )
        };
        o.figure(
            &stem,
            &caption,
            Figure {
                title: format!("Training returns, {}: mean and 95% CI over seeds", g.name),
                panels,
                columns: tasks.len().min(3),
            },
        )?;
    }
    if axis == XAxis::EnvSteps
        && methods
            .iter()
            .any(|m| m.runs.iter().all(|r| r.env_steps().is_none()))
    {
        o.text("Methods without per-episode env steps in their logs (the predecessor's independent runs) have no learning curve on the env-step axis (`--x-axis episodes` draws them).\n");
    }
    Ok(())
}

/// The x position of each method in the parameter-efficiency figure: its size, except that
/// sizes within 3% of the axis span of each other form a cluster whose points sit 1.5% of the
/// span apart around the cluster's mean size (methods without a size keep `NaN`).
fn dodge_sizes(sizes: &[Option<usize>]) -> Vec<f64> {
    let mut order: Vec<(usize, f64)> = sizes
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, (*p)? as f64)))
        .collect();
    order.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut x = vec![f64::NAN; sizes.len()];
    let (Some(first), Some(last)) = (order.first(), order.last()) else {
        return x;
    };
    let span = (last.1 - first.1).max(last.1 * 0.1).max(1.0);
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && order[end].1 - order[end - 1].1 <= 0.03 * span {
            end += 1;
        }
        let cluster = &mut order[start..end];
        let center = cluster.iter().map(|c| c.1).sum::<f64>() / cluster.len() as f64;
        // Method order within the cluster, so a method's place does not depend on its size.
        cluster.sort_by_key(|c| c.0);
        let n = cluster.len() as f64;
        for (k, (i, _)) in cluster.iter().enumerate() {
            x[*i] = center + 0.015 * span * (k as f64 - (n - 1.0) / 2.0);
        }
        start = end;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Conflict, Episode, Evaluation, Run};
    use brc_plot::{PANEL_HEIGHT, PANEL_WIDTH, TITLE_HEIGHT};

    #[test]
    fn near_sizes_spread_apart_in_method_order_and_far_sizes_stay() {
        // Three Shared-DQN-sized methods (one a little smaller), one without a size, two BRCs.
        let sizes = [
            Some(36_836),
            Some(35_716),
            None,
            Some(459_820),
            Some(36_836),
            Some(459_820),
        ];
        let x = dodge_sizes(&sizes);
        let span = 459_820.0 - 35_716.0;
        assert!(x[2].is_nan());
        // The small cluster: method order left to right, 1.5% of the span apart.
        assert!(x[0] < x[1] && x[1] < x[4], "{x:?}");
        for (a, b) in [(0, 1), (1, 4)] {
            assert!(((x[b] - x[a]) - 0.015 * span).abs() < 1e-6, "{x:?}");
        }
        let center = (36_836.0 * 2.0 + 35_716.0) / 3.0;
        assert!((x[1] - center).abs() < 1e-6);
        // The BRC pair, around its size.
        assert!((x[3] + x[5] - 2.0 * 459_820.0).abs() < 1e-6 && x[3] < x[5]);
        // A lone method keeps its size.
        assert_eq!(dodge_sizes(&[Some(1000)]), vec![1000.0]);
    }

    const TASKS: [&str; 3] = ["standard", "windy", "heavy"];

    /// A synthetic run whose returns climb from -200 to `top` over 600 episodes.
    fn run(seed: u64, top: f64) -> Run {
        let mut steps = 0;
        let episodes: Vec<Episode> = (0..600)
            .map(|i| {
                steps += 200 + 10 * seed;
                Episode {
                    episode: i,
                    task: TASKS[i % 3].into(),
                    episode_return: -200.0 + (top + 200.0) * i as f64 / 599.0 + (i % 7) as f64,
                    env_steps: Some(steps),
                    updates: Some(steps.saturating_sub(500)),
                    epsilon: Some(0.995f64.powi(i as i32)),
                    loss: Some(1.0 / (1.0 + i as f64)),
                    mean_q: Some(i as f64 / 10.0),
                    grad_norm: Some(2.0 + (i % 5) as f64),
                    wall_seconds: Some(i as f64),
                }
            })
            .collect();
        let evaluation = |after: usize, is_final: bool| Evaluation {
            after_episode: after,
            env_steps: episodes.get(after - 1).and_then(|e| e.env_steps),
            mean_return: TASKS
                .iter()
                .enumerate()
                .map(|(k, t)| (t.to_string(), top * after as f64 / 600.0 - 10.0 * k as f64))
                .collect(),
            is_final,
            success_rate: TASKS.iter().map(|t| (t.to_string(), 0.5)).collect(),
        };
        Run {
            label: format!("seed-{seed}"),
            method: "synthetic".into(),
            agent: Some("brc".into()),
            seed: Some(seed),
            parameters: Some(459_820),
            tasks: TASKS.iter().map(|t| t.to_string()).collect(),
            evaluations: (1..=6)
                .map(|k| evaluation(100 * k, false))
                .chain([evaluation(600, true)])
                .collect(),
            conflicts: (1..=30)
                .map(|k| Conflict {
                    after_episode: 10 * k,
                    norms: TASKS.iter().map(|t| (t.to_string(), k as f64)).collect(),
                    cosines: [
                        ("standard|windy".to_string(), 0.3),
                        ("standard|heavy".into(), -0.1),
                    ]
                    .into(),
                })
                .collect(),
            diagnostics: [(
                "surgery".to_string(),
                (1..=30)
                    .map(|k| crate::runs::DiagnosticPoint {
                        after_episode: 10 * k,
                        values: [
                            ("conflicting_pairs".to_string(), 1.0 / k as f64),
                            ("weights/standard".into(), 1.0 + 0.01 * k as f64),
                            ("weights/windy".into(), 1.0 - 0.01 * k as f64),
                        ]
                        .into(),
                    })
                    .collect(),
            )]
            .into(),
            varshare: (1..=30)
                .map(|k| {
                    let per_task = |f: &dyn Fn(usize) -> f64| -> BTreeMap<String, f64> {
                        TASKS
                            .iter()
                            .enumerate()
                            .map(|(i, t)| (t.to_string(), f(i)))
                            .collect()
                    };
                    let share = move |i: usize| (k as f64 / 30.0) * (0.3 + 0.2 * i as f64);
                    crate::runs::VarShareSample {
                        after_episode: 10 * k,
                        kl: per_task(&|i| 1e5 * (3.0 + i as f64) - 500.0 * k as f64),
                        weights: 1e5,
                        mean_sigma: per_task(&|i| 1e-3 * (1.0 + 0.01 * (k * (i + 1)) as f64)),
                        kept_fraction: ["input", "blocks.0.fc1", "blocks.0.fc2", "output"]
                            .iter()
                            .enumerate()
                            .map(|(l, name)| {
                                (
                                    name.to_string(),
                                    per_task(&|i| share(i) * (1.0 - 0.2 * l as f64)),
                                )
                            })
                            .collect(),
                        kept_fraction_all: per_task(&share),
                    }
                })
                .collect(),
            episodes,
            wall_seconds: Some(300.0),
            finished: true,
        }
    }

    fn method(name: &str, seeds: u64, top: f64) -> Method {
        let mut runs: Vec<Run> = (0..seeds).map(|s| run(s, top + 5.0 * s as f64)).collect();
        for r in &mut runs {
            r.method = name.into();
        }
        Method {
            name: name.into(),
            runs,
            predecessor: false,
        }
    }

    /// Decodes a PNG: (width, height, number of distinct colours).
    fn png_info(path: &Path) -> (u32, u32, usize) {
        let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        let px = info.color_type.samples();
        let colours: std::collections::HashSet<&[u8]> =
            buf[..info.buffer_size()].chunks(px).collect();
        (info.width, info.height, colours.len())
    }

    fn quick() -> ReportOptions {
        ReportOptions {
            resamples: 200,
            curve_points: 50,
            ..ReportOptions::default()
        }
    }

    #[test]
    fn analyze_writes_every_plot_table_and_the_report() {
        let tmp = tempfile::tempdir().unwrap();
        let files = analyze(&method("synthetic", 3, 250.0), tmp.path(), &quick()).unwrap();
        let report = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
        for name in [
            "training_curves",
            "evaluations",
            "diagnostics",
            "gradient_conflict",
            "surgery_diagnostics",
            "final_returns",
            "sample_efficiency",
            "varshare",
            "varshare_sparsity",
        ] {
            let png = tmp.path().join(format!("{name}.png"));
            assert!(files.contains(&png), "{name}");
            assert!(tmp.path().join(format!("{name}.svg")).is_file(), "{name}");
            let (_, _, colours) = png_info(&png);
            assert!(colours > 8, "{name}.png looks blank ({colours} colours)");
            assert!(
                report.contains(&format!("({name}.png)")),
                "{name} not in report"
            );
        }
        // One panel per task in a row, under the title strip, over the legend strip.
        let (w, h, _) = png_info(&tmp.path().join("training_curves.png"));
        assert_eq!(w, 3 * PANEL_WIDTH);
        assert!(h > PANEL_HEIGHT + TITLE_HEIGHT, "{h}");
        // Tasks + average in a 2-column grid.
        let (w, h, _) = png_info(&tmp.path().join("evaluations.png"));
        assert_eq!(w, 2 * PANEL_WIDTH);
        assert!(h > 2 * PANEL_HEIGHT + TITLE_HEIGHT, "{h}");
        for table in [
            "results.md",
            "results.csv",
            "results.json",
            "sample_efficiency.md",
            "sample_efficiency.csv",
        ] {
            assert!(tmp.path().join(table).is_file(), "{table}");
        }
        // Each task's last 100 returns (≈ 25 … 250) average ≈ 137 ≥ 50 in every seed; its
        // first full window (≈ −200 … 25) averages ≈ −87, so the crossing lies in between.
        let eff = std::fs::read_to_string(tmp.path().join("sample_efficiency.md")).unwrap();
        assert!(eff.contains("| synthetic | standard | 50 | 3/3 |"), "{eff}");
        assert!(report.contains("3 seeds"));
    }

    #[test]
    fn surgery_diagnostics_draw_a_panel_per_field_and_a_line_per_task() {
        let m = method("pcgrad", 2, 200.0);
        let figure = diagnostics_figure(&m, "surgery", XAxis::EnvSteps, 50).unwrap();
        let lines: Vec<(String, Vec<String>)> = figure
            .panels
            .iter()
            .map(|p| match p {
                Panel::Line(l) => (
                    l.title.clone(),
                    l.series.iter().map(|s| s.label.clone()).collect(),
                ),
                _ => panic!("a diagnostics panel is a line chart"),
            })
            .collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].0, "PCGrad: conflicting task pairs");
        assert_eq!(lines[0].1, [""]);
        assert_eq!(lines[1].0, "GradNorm: task weights");
        assert_eq!(lines[1].1, ["standard", "windy"]);
        // Each task keeps its colour of the other figures: its index in training order.
        let Panel::Line(w) = &figure.panels[1] else {
            unreachable!()
        };
        assert_eq!([w.series[0].color, w.series[1].color], [0, 1]);
        // A seed that has logged nothing yet hides nothing.
        let mut late = method("pcgrad", 2, 200.0);
        late.runs[0]
            .diagnostics
            .insert("surgery".into(), Vec::new());
        assert!(diagnostics_figure(&late, "surgery", XAxis::EnvSteps, 50).is_some());
        // Windy's weight falls from 0.99 to 0.70 over the measurements (binned on the x axis).
        let Panel::Line(weights) = &figure.panels[1] else {
            unreachable!()
        };
        let windy: Vec<f64> = weights.series[1].points.iter().map(|p| p.1).collect();
        assert!(windy.windows(2).all(|w| w[1] <= w[0]), "{windy:?}");
        assert!(windy[0] <= 0.99 + 1e-9 && windy[0] > 0.95, "{windy:?}");
        let last = *windy.last().unwrap();
        assert!((0.7 - 1e-9..0.72).contains(&last), "{windy:?}");
        // A method whose runs write no surgery log gets no figure.
        let mut plain = method("shared_dqn", 2, 200.0);
        plain.runs.iter_mut().for_each(|r| r.diagnostics.clear());
        assert!(diagnostics_figure(&plain, "surgery", XAxis::EnvSteps, 50).is_none());
    }

    #[test]
    fn compare_writes_the_side_by_side_plots() {
        let tmp = tempfile::tempdir().unwrap();
        let methods = [method("low", 2, 100.0), method("high", 3, 250.0)];
        compare(&methods, tmp.path(), &quick()).unwrap();
        for name in [
            "final_returns",
            "learning_curves",
            "parameter_efficiency",
            "sample_efficiency",
            "improvement",
            "aggregates",
            "performance_profiles",
        ] {
            let (w, h, colours) = png_info(&tmp.path().join(format!("{name}.png")));
            // Panels are at least 560×400 but heatmaps and interval charts, sized to their
            // rows, can be smaller.
            assert!(w >= 300 && h >= 200, "{name}: {w}×{h}");
            assert!(colours > 8, "{name}.png looks blank");
        }
        let json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(json[0]["method"], "low");
        assert_eq!(json[1]["seeds"], 3);
        // "high" ends far above "low" on every task in every seed.
        let md = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
        assert!(md.contains("| high | 3 |"), "{md}");
        let late = std::fs::read_to_string(tmp.path().join("stability.md")).unwrap();
        assert!(
            late.contains("| low | 2 |") && late.contains("| high | 3 |"),
            "{late}"
        );
        assert!(
            md.contains(&late),
            "the report shows the late-training table"
        );
    }

    /// Twenty methods over the four families, every fourth from the predecessor.
    fn twenty_methods() -> Vec<Method> {
        let families = ["shared_dqn", "brc", "pcgrad", "varshare"];
        (0..20)
            .map(|i| {
                let predecessor = i % 4 == 3;
                let mut name = format!("{}_{i}", families[i % 4]);
                if predecessor {
                    name.push_str(" (predecessor)");
                }
                let mut m = method(&name, 2, 50.0 + 10.0 * i as f64);
                m.predecessor = predecessor;
                m
            })
            .collect()
    }

    /// Every (label, colour, drawn as another project's) of a figure's methods.
    fn styles(fig: &Figure) -> Vec<(String, usize, bool)> {
        let mut out = Vec::new();
        for panel in &fig.panels {
            match panel {
                Panel::Line(c) => out.extend(
                    c.series
                        .iter()
                        .map(|s| (s.label.clone(), s.color, s.style == LineStyle::Dashed)),
                ),
                Panel::Bars(c) => out.extend(
                    c.series
                        .iter()
                        .map(|s| (s.label.clone(), s.color, s.hatched)),
                ),
                Panel::Scatter(c) => out.extend(
                    c.points
                        .iter()
                        .map(|p| (p.label.clone(), p.color, p.hollow)),
                ),
                Panel::Intervals(c) => {
                    out.extend(c.rows.iter().map(|r| (r.label.clone(), r.color, r.hollow)))
                }
                Panel::Heatmap(_) => {}
            }
        }
        out
    }

    #[test]
    fn twenty_methods_keep_one_distinct_colour_in_every_figure() {
        let tmp = tempfile::tempdir().unwrap();
        let methods = twenty_methods();
        let (_, figures) = compare_report(&methods, tmp.path(), &quick()).unwrap();
        let mut colour: BTreeMap<String, usize> = BTreeMap::new();
        let mut figures_of: BTreeMap<String, usize> = BTreeMap::new();
        for (name, fig) in &figures {
            for (label, c, other) in styles(fig) {
                let m = methods.iter().find(|m| m.name == label);
                let m = m.unwrap_or_else(|| panic!("{name}: unknown label {label}"));
                assert_eq!(
                    *colour.entry(label.clone()).or_insert(c),
                    c,
                    "{name}: {label}"
                );
                assert_eq!(
                    other, m.predecessor,
                    "{name}: {label} drawn as the wrong origin"
                );
                *figures_of.entry(label).or_default() += 1;
            }
        }
        assert_eq!(colour.len(), 20);
        let distinct: std::collections::BTreeSet<usize> = colour
            .values()
            .map(|c| c % brc_plot::PALETTE.len())
            .collect();
        assert_eq!(distinct.len(), 20, "{colour:?}");
        // Each method is in the bars, the scatter, the aggregates, a profile and a curve
        // figure at least.
        for (label, n) in &figures_of {
            assert!(*n >= 5, "{label} in only {n} figures");
        }
    }

    #[test]
    fn no_curve_panel_has_more_than_eight_lines_and_no_legend_covers_data() {
        let tmp = tempfile::tempdir().unwrap();
        let methods = twenty_methods();
        let (_, figures) = compare_report(&methods, tmp.path(), &quick()).unwrap();
        let curves: Vec<&String> = figures
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("learning_curves"))
            .collect();
        assert_eq!(
            curves,
            [
                "learning_curves_baselines",
                "learning_curves_brc_variants",
                "learning_curves_gradient_surgery",
                "learning_curves_varshare"
            ]
        );
        for (name, fig) in &figures {
            for panel in &fig.panels {
                if let Panel::Line(c) = panel {
                    assert!(c.series.len() <= crate::groups::MAX_LINES, "{name}");
                }
            }
            let layout = brc_plot::layout(fig).unwrap();
            for (label, entry) in &layout.legend {
                for mark in &layout.marks {
                    assert!(!entry.intersects(mark), "{name}: {label} over data");
                }
            }
        }
        assert!(tmp.path().join("learning_curves_varshare.png").is_file());
        let md = std::fs::read_to_string(tmp.path().join("report.md")).unwrap();
        assert!(md.contains("(aggregates.png)") && md.contains("(performance_profiles.png)"));
        let agg = std::fs::read_to_string(tmp.path().join("aggregates.md")).unwrap();
        assert!(agg.contains("| varshare_19 (predecessor) | 6 |"), "{agg}");
    }

    #[test]
    fn a_group_file_and_the_episode_axis_shape_the_curves() {
        let tmp = tempfile::tempdir().unwrap();
        let methods = [
            method("a", 2, 100.0),
            method("b", 2, 150.0),
            method("c", 2, 200.0),
        ];
        let opts = ReportOptions {
            groups: Some(vec![GroupSpec {
                name: "first two".into(),
                methods: vec!["b".into(), "a".into()],
            }]),
            x_axis: XAxis::Episodes,
            ..quick()
        };
        let (_, figures) = compare_report(&methods, tmp.path(), &opts).unwrap();
        let curves: Vec<&Figure> = figures
            .iter()
            .filter(|(n, _)| n.starts_with("learning_curves_"))
            .map(|(_, f)| f)
            .collect();
        assert_eq!(curves.len(), 2, "the named group and the rest");
        let Panel::Line(c) = &curves[0].panels[0] else {
            panic!("a line panel")
        };
        assert_eq!(c.x_label, "training episodes (all tasks)");
        let labels: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["b", "a"]);
        // Episode 3 of 600 is the first of the task "standard": x counts all tasks' episodes.
        assert_eq!(c.series[0].points[0].0, 1.0);
        let bad = ReportOptions {
            groups: Some(vec![GroupSpec {
                name: "x".into(),
                methods: vec!["nope".into()],
            }]),
            ..quick()
        };
        let e = compare(&methods, tmp.path(), &bad).unwrap_err().to_string();
        assert!(e.contains("no method `nope`"), "{e}");
    }

    #[test]
    fn an_unwritable_output_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = analyze(&method("m", 1, 0.0), &file.join("plots"), &quick())
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot write"), "{e}");
        assert!(compare(&[], tmp.path(), &quick()).is_err());
    }
}
