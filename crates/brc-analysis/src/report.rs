//! The two reports: `analyze` (one method — a run or its seeds — in detail) and `compare`
//! (several methods side by side). Each writes its plots (PNG + SVG), its tables (Markdown,
//! CSV, JSON) and a `report.md` that embeds them, every file written atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use brc_plot::{
    save_figure, BarChart, BarSeries, BarValue, Figure, Heatmap, LineChart, LineStyle, Panel,
    ScatterChart, ScatterPoint, Series,
};

use crate::curves::{
    episode_series, mean_band, smoothed, steps_after_episodes, task_returns, BandPoint, Point,
};
use crate::efficiency::{crossings, THRESHOLDS, WINDOW};
use crate::methods::Method;
use crate::results::{
    efficiency_csv, efficiency_markdown, improvement_matrix, method_result, results_csv,
    results_markdown, MethodCrossings, MethodResult,
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
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            smoothing: 20,
            resamples: 50_000,
            bootstrap_seed: 0,
            curve_points: 200,
            final_evaluation: None,
        }
    }
}

/// The "solved" return of LunarLander.
const SOLVED: f64 = 200.0;

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

/// What a report wrote.
struct Output {
    dir: PathBuf,
    files: Vec<PathBuf>,
    markdown: String,
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
        })
    }

    fn figure(&mut self, name: &str, caption: &str, figure: Figure) -> Result<(), ReportError> {
        let paths = save_figure(&figure, &self.dir.join(name))?;
        self.files.extend(paths);
        self.markdown
            .push_str(&format!("## {caption}\n\n![{caption}]({name}.png)\n\n"));
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

    fn finish(mut self) -> Result<Vec<PathBuf>, ReportError> {
        let path = self.dir.join("report.md");
        write_atomic(&path, &self.markdown)?;
        self.files.push(path);
        Ok(self.files)
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

fn line(title: &str, y_label: &str, series: Vec<Series>, hlines: Vec<(f64, String)>) -> Panel {
    Panel::Line(LineChart {
        title: title.into(),
        x_label: "env steps".into(),
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

/// Evaluation history of one task (or the task average with `None`) across seeds: grouped by
/// the episode count they ran after, x = mean env steps over the seeds that reached it.
fn eval_band(method: &Method, task: Option<&str>) -> Vec<BandPoint> {
    let mut at: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for run in &method.runs {
        for e in &run.evaluations {
            let value = match task {
                Some(t) => e.mean_return.get(t).copied(),
                None => (!e.mean_return.is_empty())
                    .then(|| e.mean_return.values().sum::<f64>() / e.mean_return.len() as f64),
            };
            let x = e
                .env_steps
                .map(|s| s as f64)
                .or_else(|| steps_after_episodes(run, e.after_episode));
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
    let mut o = Output::new(out, &format!("{} — training analysis", method.name))?;
    o.text(&seeds_note(method));
    o.text("");

    // Training curves per task.
    let panels = tasks
        .iter()
        .map(|task| {
            let mut series = Vec::new();
            if single {
                let raw = task_returns(&method.runs[0], task);
                series.push(Series {
                    label: "episode return".into(),
                    color: 7,
                    points: raw.clone(),
                    band: Vec::new(),
                    style: LineStyle::Faint,
                });
            }
            let ma = seed_band(method, opts.curve_points, |r| {
                smoothed(&task_returns(r, task), opts.smoothing)
            });
            series.push(band_series(
                &format!("moving average ({} episodes)", opts.smoothing),
                0,
                &ma,
            ));
            let evals = eval_band(method, Some(task));
            series.push(Series {
                label: "greedy evaluation".into(),
                color: 1,
                points: evals.iter().map(|p| (p.0, p.1)).collect(),
                band: Vec::new(),
                style: LineStyle::Markers,
            });
            line(task, "return", series, solved_line())
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
                "mean greedy return",
                vec![band_series("", 0, &eval_band(method, Some(t)))],
                solved_line(),
            )
        })
        .collect();
    panels.push(line(
        "average over tasks",
        "mean greedy return",
        vec![band_series("", 2, &eval_band(method, None))],
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
                smoothed(&episode_series(r, get), opts.smoothing)
            });
            line(name, name, vec![band_series("", i, &band)], Vec::new())
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
                    Some((steps_after_episodes(r, c.after_episode)?, *map.get(key)?))
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
                line("per-task gradient norm", "norm", norms, Vec::new()),
                line(
                    "pairwise cosine similarity",
                    "cosine",
                    cosines,
                    vec![(0.0, String::new())],
                ),
            ],
            columns: 2,
        },
    )?;

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
                smoothed(&task_returns(r, t), WINDOW)
            });
            let hlines = THRESHOLDS.iter().map(|&x| (x, format!("{x}"))).collect();
            line(
                t,
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
                "{}: trailing {WINDOW}-episode training mean per task",
                method.name
            ),
            panels: trailing,
            columns: tasks.len().min(3),
        },
    )?;
    write_efficiency(&mut o, &[method_crossings(method)])?;
    o.finish()
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
        "## Sample efficiency\n\nFirst episode at which the trailing {WINDOW}-episode mean of a task's training returns reaches each threshold, with the run's actual cumulative env steps and updates (all tasks) at that episode.\n"
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
    if methods.is_empty() {
        return Err(ReportError::Empty("nothing to compare".into()));
    }
    // Tasks in order of first appearance over all methods.
    let tasks = crate::runs::task_order(
        methods
            .iter()
            .flat_map(|m| m.tasks().iter().map(String::as_str)),
    );
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

    let rows: Vec<MethodResult> = methods
        .iter()
        .map(|m| method_result(m, &tasks, opts.resamples, opts.bootstrap_seed))
        .collect();
    write_results(&mut o, &rows)?;

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
                    .map(|(i, m)| final_bars(m, &tasks, i, &m.name))
                    .collect(),
                hlines: solved_line(),
            })],
            columns: 1,
        },
    )?;

    let panels = tasks
        .iter()
        .map(|t| {
            let series = methods
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let band = seed_band(m, opts.curve_points, |r| {
                        smoothed(&task_returns(r, t), opts.smoothing)
                    });
                    band_series(&m.name, i, &band)
                })
                .collect();
            line(
                t,
                &format!("return ({}-episode moving average)", opts.smoothing),
                series,
                solved_line(),
            )
        })
        .collect();
    o.figure(
        "learning_curves",
        "Learning curves",
        Figure {
            title: "Training returns: mean and 95% CI over seeds".into(),
            panels,
            columns: tasks.len().min(3),
        },
    )?;
    o.text("Methods without per-episode env steps in their logs (the predecessor's independent runs) have no learning curve on the env-step axis.\n");

    let points = methods
        .iter()
        .zip(&rows)
        .enumerate()
        .filter_map(|(i, (m, r))| {
            Some(ScatterPoint {
                label: m.name.clone(),
                color: i,
                hollow: m.predecessor,
                x: m.parameters()? as f64,
                y: r.average.mean,
                y_lower: r.average.lower,
                y_upper: r.average.upper,
            })
        })
        .collect();
    o.figure(
        "parameter_efficiency",
        "Parameter efficiency",
        Figure {
            title: "Average final return against parameters".into(),
            panels: vec![Panel::Scatter(ScatterChart {
                title: String::new(),
                x_label: "trainable parameters (log scale)".into(),
                y_label: "average final return".into(),
                log_x: true,
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
                    color: i,
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
                .collect();
            Panel::Bars(BarChart {
                title: format!("trailing-{WINDOW} mean ≥ {threshold}"),
                y_label: "env steps (mean; bars: min–max over seeds that reached it)".into(),
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
            title: "Env steps until the trailing training mean reaches each threshold (missing bar: never)".into(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Conflict, Episode, Evaluation, Run};
    use brc_plot::{PANEL_HEIGHT, PANEL_WIDTH, TITLE_HEIGHT};

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
            "final_returns",
            "sample_efficiency",
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
        // One panel per task in a row, under the title strip.
        let (w, h, _) = png_info(&tmp.path().join("training_curves.png"));
        assert_eq!((w, h), (3 * PANEL_WIDTH, PANEL_HEIGHT + TITLE_HEIGHT));
        // Tasks + average in a 2-column grid.
        let (w, h, _) = png_info(&tmp.path().join("evaluations.png"));
        assert_eq!((w, h), (2 * PANEL_WIDTH, 2 * PANEL_HEIGHT + TITLE_HEIGHT));
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
        ] {
            let (w, h, colours) = png_info(&tmp.path().join(format!("{name}.png")));
            assert!(w >= PANEL_WIDTH && h >= PANEL_HEIGHT, "{name}: {w}×{h}");
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
