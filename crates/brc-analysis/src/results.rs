//! The results table of a comparison: per method, final evaluation return per task and on
//! average (mean ± 95% CI over seeds), IQM over seeds × tasks with a stratified-bootstrap CI,
//! success rate, size and cost — as Markdown, CSV and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::efficiency::Crossing;
use crate::methods::Method;
use crate::stats::{iqm_bootstrap_ci, mean, mean_ci95, probability_of_improvement};

/// A mean with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// Point estimate.
    pub mean: f64,
    /// Lower end of the 95% interval.
    pub lower: f64,
    /// Upper end of the 95% interval.
    pub upper: f64,
}

impl Estimate {
    pub(crate) fn of((mean, lower, upper): (f64, f64, f64)) -> Self {
        Self { mean, lower, upper }
    }

    /// `mean ± half-width` with one decimal (just the mean for one seed).
    pub fn pm(&self) -> String {
        if !self.mean.is_finite() {
            return "–".into();
        }
        let half = (self.upper - self.lower) / 2.0;
        if half > 0.0 {
            format!("{:.1} ± {:.1}", self.mean, half)
        } else {
            format!("{:.1}", self.mean)
        }
    }
}

/// One method's row of the results table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodResult {
    /// Method name.
    pub method: String,
    /// Whether it comes from the predecessor's logs.
    pub predecessor: bool,
    /// Runs (seeds).
    pub seeds: usize,
    /// Whether every run has its final evaluation (else the last periodic one stands in).
    pub all_final: bool,
    /// Task names, in the order of `per_task`.
    pub tasks: Vec<String>,
    /// Final evaluation return per task: mean and t-interval over seeds.
    pub per_task: Vec<Estimate>,
    /// The per-seed average over tasks: mean and t-interval over seeds.
    pub average: Estimate,
    /// IQM over all seed × task scores, with a stratified-bootstrap 95% interval.
    pub iqm: Estimate,
    /// Share of final evaluation episodes with return ≥ 200 (all tasks and seeds), when logged.
    pub success_rate: Option<f64>,
    /// Trainable parameters.
    pub parameters: Option<usize>,
    /// Mean env steps per run.
    pub env_steps: Option<f64>,
    /// Mean updates per run.
    pub updates: Option<f64>,
    /// Mean training wall time per run, seconds.
    pub wall_seconds: Option<f64>,
}

/// The `[seed][task]` matrix of final scores for `tasks` (a task the method lacks is `NaN`).
pub fn final_scores(method: &Method, tasks: &[String]) -> Vec<Vec<f64>> {
    method
        .runs
        .iter()
        .map(|r| {
            let eval = r.final_evaluation().map(|(e, _)| e);
            tasks
                .iter()
                .map(|t| {
                    eval.and_then(|e| e.mean_return.get(t).copied())
                        .unwrap_or(f64::NAN)
                })
                .collect()
        })
        .collect()
}

fn mean_of<T>(items: &[T], f: impl Fn(&T) -> Option<f64>) -> Option<f64> {
    let v: Option<Vec<f64>> = items.iter().map(f).collect();
    v.map(|v| mean(&v))
}

/// Summarises one method over its seeds on `tasks`; the bootstrap uses `resamples` draws from
/// a generator seeded with `seed`.
pub fn method_result(
    method: &Method,
    tasks: &[String],
    resamples: usize,
    seed: u64,
) -> MethodResult {
    let scores = final_scores(method, tasks);
    let per_task = (0..tasks.len())
        .map(|t| {
            let col: Vec<f64> = scores.iter().map(|s| s[t]).collect();
            Estimate::of(mean_ci95(&col))
        })
        .collect();
    let averages: Vec<f64> = scores.iter().map(|s| mean(s)).collect();
    let runs = &method.runs;
    let success: Vec<f64> = runs
        .iter()
        .filter_map(|r| {
            let (e, _) = r.final_evaluation()?;
            let v: Option<Vec<f64>> = tasks
                .iter()
                .map(|t| e.success_rate.get(t).copied())
                .collect();
            v.map(|v| mean(&v))
        })
        .collect();
    MethodResult {
        method: method.name.clone(),
        predecessor: method.predecessor,
        seeds: runs.len(),
        all_final: runs
            .iter()
            .all(|r| r.final_evaluation().is_some_and(|(_, f)| f)),
        tasks: tasks.to_vec(),
        per_task,
        average: Estimate::of(mean_ci95(&averages)),
        iqm: Estimate::of(iqm_bootstrap_ci(&scores, resamples, seed)),
        success_rate: (success.len() == runs.len()).then(|| mean(&success)),
        parameters: method.parameters(),
        env_steps: mean_of(runs, |r| r.env_steps().map(|s| s as f64)),
        updates: mean_of(runs, |r| r.updates().map(|s| s as f64)),
        wall_seconds: mean_of(runs, |r| r.wall_seconds),
    }
}

/// `P(row beats column)` averaged over tasks (rliable's probability of improvement); `NaN` on
/// the diagonal and where the two methods share no task with scores.
pub fn improvement_matrix(methods: &[Method], tasks: &[String]) -> Vec<Vec<f64>> {
    let scores: Vec<Vec<Vec<f64>>> = methods.iter().map(|m| final_scores(m, tasks)).collect();
    let column = |s: &[Vec<f64>], t: usize| -> Vec<f64> { s.iter().map(|r| r[t]).collect() };
    (0..methods.len())
        .map(|i| {
            (0..methods.len())
                .map(|j| {
                    if i == j {
                        return f64::NAN;
                    }
                    // Tasks where either method has no score are left out.
                    let per_task: Vec<f64> = (0..tasks.len())
                        .filter_map(|t| {
                            let (x, y) = (column(&scores[i], t), column(&scores[j], t));
                            let finite = |v: &[f64]| v.iter().all(|s| s.is_finite());
                            (finite(&x) && finite(&y)).then(|| probability_of_improvement(&x, &y))
                        })
                        .collect();
                    mean(&per_task)
                })
                .collect()
        })
        .collect()
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

/// Thousands separators: 1234567 → "1,234,567".
pub fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

/// The results table in Markdown. Methods whose runs lack a final evaluation are marked `*`.
pub fn results_markdown(rows: &[MethodResult]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut s = String::from("| method | seeds |");
    for t in &first.tasks {
        let _ = write!(s, " {t} |");
    }
    s.push_str(" average | IQM [95% CI] | success | params | env steps | updates | wall time |\n|---|---:|");
    s.push_str(&"---:|".repeat(first.tasks.len() + 7));
    s.push('\n');
    for r in rows {
        let mark = if r.all_final { "" } else { "*" };
        let _ = write!(s, "| {}{mark} | {} |", r.method, r.seeds);
        for e in &r.per_task {
            let _ = write!(s, " {} |", e.pm());
        }
        let _ = writeln!(
            s,
            " {} | {:.1} [{:.1}, {:.1}] | {} | {} | {} | {} | {} |",
            r.average.pm(),
            r.iqm.mean,
            r.iqm.lower,
            r.iqm.upper,
            opt(r.success_rate, |x| format!("{:.0}%", 100.0 * x)),
            opt(r.parameters, |p| thousands(p as f64)),
            opt(r.env_steps, thousands),
            opt(r.updates, thousands),
            opt(r.wall_seconds, |w| format!("{:.1} min", w / 60.0)),
        );
    }
    if rows.iter().any(|r| !r.all_final) {
        s.push_str("\n\\* no final evaluation in every run (still running, or the predecessor's logs): its last periodic evaluation stands in.\n");
    }
    s
}

/// The results table as CSV: one row per method, with each interval's ends as columns.
pub fn results_csv(rows: &[MethodResult]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut s = String::from("method,predecessor,seeds,all_final");
    for t in first
        .tasks
        .iter()
        .map(String::as_str)
        .chain(["average", "iqm"])
    {
        let _ = write!(s, ",{t}_mean,{t}_ci_low,{t}_ci_high");
    }
    s.push_str(",success_rate,parameters,env_steps,updates,wall_seconds\n");
    let num = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
    for r in rows {
        let _ = write!(
            s,
            "{},{},{},{}",
            r.method, r.predecessor, r.seeds, r.all_final
        );
        for e in r.per_task.iter().chain([&r.average, &r.iqm]) {
            let _ = write!(s, ",{},{},{}", e.mean, e.lower, e.upper);
        }
        let _ = writeln!(
            s,
            ",{},{},{},{},{}",
            num(r.success_rate),
            r.parameters.map_or(String::new(), |p| p.to_string()),
            num(r.env_steps),
            num(r.updates),
            num(r.wall_seconds)
        );
    }
    s
}

/// One method's sample-efficiency crossings over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodCrossings {
    /// Method name.
    pub method: String,
    /// Per run: its label and its crossings.
    pub runs: Vec<(String, Vec<Crossing>)>,
}

/// Sample-efficiency table in Markdown: per method, task and threshold, how many seeds reached
/// it and the median [min–max] env steps and the median updates when they did.
pub fn efficiency_markdown(methods: &[MethodCrossings]) -> String {
    let mut s = String::from(
        "| method | task | threshold | reached | env steps: median [min–max] | updates: median |\n|---|---|---:|---:|---:|---:|\n",
    );
    for m in methods {
        let Some((_, first)) = m.runs.first() else {
            continue;
        };
        for (k, c) in first.iter().enumerate() {
            let hits: Vec<&Crossing> = m
                .runs
                .iter()
                .filter_map(|(_, cs)| cs.get(k).filter(|c| c.task_episode.is_some()))
                .collect();
            let steps = sorted(hits.iter().filter_map(|c| c.env_steps));
            let updates = sorted(hits.iter().filter_map(|c| c.updates));
            let steps_cell = match (steps.first(), steps.last()) {
                (Some(lo), Some(hi)) => format!(
                    "{} [{}–{}]",
                    thousands(median(&steps)),
                    thousands(*lo as f64),
                    thousands(*hi as f64)
                ),
                _ => "–".into(),
            };
            let updates_cell = if updates.is_empty() {
                "–".into()
            } else {
                thousands(median(&updates))
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {}/{} | {} | {} |",
                m.method,
                c.task,
                c.threshold,
                hits.len(),
                m.runs.len(),
                steps_cell,
                updates_cell
            );
        }
    }
    s
}

/// Sample-efficiency crossings as CSV, one row per run × task × threshold (exact values).
pub fn efficiency_csv(methods: &[MethodCrossings]) -> String {
    let mut s = String::from("method,run,task,threshold,task_episode,env_steps,updates\n");
    let cell = |v: Option<u64>| v.map_or(String::new(), |x| x.to_string());
    for m in methods {
        for (run, cs) in &m.runs {
            for c in cs {
                let _ = writeln!(
                    s,
                    "{},{},{},{},{},{},{}",
                    m.method,
                    run,
                    c.task,
                    c.threshold,
                    cell(c.task_episode.map(|e| e as u64)),
                    cell(c.env_steps),
                    cell(c.updates)
                );
            }
        }
    }
    s
}

fn sorted(v: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = v.collect();
    v.sort_unstable();
    v
}

fn median(sorted: &[u64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2] as f64
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Episode, Evaluation, Run};

    fn run(seed: u64, a: f64, b: f64, is_final: bool) -> Run {
        let eval = |t: &str, x: f64| (t.to_string(), x);
        Run {
            label: format!("seed-{seed}"),
            method: "m".into(),
            agent: Some("brc".into()),
            seed: Some(seed),
            parameters: Some(1234567),
            tasks: vec!["a".into(), "b".into()],
            episodes: vec![Episode {
                episode: 0,
                task: "a".into(),
                episode_return: 0.0,
                env_steps: Some(1000 * (seed + 1)),
                updates: Some(10),
                epsilon: None,
                loss: None,
                mean_q: None,
                grad_norm: None,
                wall_seconds: None,
            }],
            evaluations: vec![Evaluation {
                after_episode: 1,
                env_steps: None,
                mean_return: [eval("a", a), eval("b", b)].into(),
                is_final,
                success_rate: [eval("a", 0.5), eval("b", 0.0)].into(),
            }],
            conflicts: vec![],
            diagnostics: Default::default(),
            varshare: vec![],
            wall_seconds: Some(120.0 * (seed + 1) as f64),
            finished: is_final,
        }
    }

    fn method(name: &str, runs: Vec<Run>) -> Method {
        Method {
            name: name.into(),
            runs,
            predecessor: false,
        }
    }

    #[test]
    fn results_table_golden() {
        let m = method(
            "m",
            vec![
                run(0, 100.0, 0.0, true),
                run(1, 200.0, 0.0, true),
                run(2, 300.0, 0.0, false),
            ],
        );
        let tasks = vec!["a".to_string(), "b".to_string()];
        let r = method_result(&m, &tasks, 0, 0);
        // a: 100, 200, 300 → 200 ± t₀.₉₇₅,₂ · 100/√3 = 4.302653 · 57.735 = 248.4.
        // b: all 0. Per-seed averages 50, 100, 150 → 100 ± 124.2.
        // IQM of {0, 0, 0, 100, 200, 300}: drop one each end → (0 + 0 + 100 + 200)/4 = 75.
        // Success: 0.25 per seed. Steps 1000, 2000, 3000 → 2000. Wall 2, 4, 6 min → 4.0 min.
        let expected = "\
| method | seeds | a | b | average | IQM [95% CI] | success | params | env steps | updates | wall time |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| m* | 3 | 200.0 ± 248.4 | 0.0 | 100.0 ± 124.2 | 75.0 [75.0, 75.0] | 25% | 1,234,567 | 2,000 | 10 | 4.0 min |

\\* no final evaluation in every run (still running, or the predecessor's logs): its last periodic evaluation stands in.
";
        assert_eq!(results_markdown(std::slice::from_ref(&r)), expected);
        let csv = results_csv(&[r]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("method,predecessor,seeds,all_final,a_mean,a_ci_low"));
        assert!(lines[1].starts_with("m,false,3,false,200,"), "{}", lines[1]);
        assert!(
            lines[1].ends_with(",0.25,1234567,2000,10,240"),
            "{}",
            lines[1]
        );
    }

    #[test]
    fn improvement_matrix_by_hand() {
        // X beats Y on task a in all 4 pairs; on b X = (0, 10), Y = (5, 5): wins 2 of 4.
        let x = method("x", vec![run(0, 10.0, 0.0, true), run(1, 20.0, 10.0, true)]);
        let y = method("y", vec![run(0, 1.0, 5.0, true), run(1, 2.0, 5.0, true)]);
        let tasks = vec!["a".to_string(), "b".to_string()];
        let p = improvement_matrix(&[x, y], &tasks);
        assert!(p[0][0].is_nan());
        assert_eq!(p[0][1], (1.0 + 0.5) / 2.0);
        assert_eq!(p[1][0], (0.0 + 0.5) / 2.0);
        // A method without scores on task b is compared on task a alone.
        let z = method("z", vec![run(0, 5.0, f64::NAN, true)]);
        let x = method("x", vec![run(0, 10.0, 0.0, true), run(1, 20.0, 10.0, true)]);
        let p = improvement_matrix(&[x, z], &tasks);
        assert_eq!(p[0][1], 1.0);
    }

    #[test]
    fn efficiency_table_counts_seeds_that_reached() {
        let c = |ep: Option<usize>, steps: u64| Crossing {
            task: "a".into(),
            threshold: 200.0,
            task_episode: ep,
            env_steps: ep.map(|_| steps),
            updates: ep.map(|_| steps - 100),
        };
        let m = MethodCrossings {
            method: "m".into(),
            runs: vec![
                ("s0".into(), vec![c(Some(5), 3000)]),
                ("s1".into(), vec![c(None, 0)]),
                ("s2".into(), vec![c(Some(9), 1000)]),
            ],
        };
        let md = efficiency_markdown(std::slice::from_ref(&m));
        assert!(
            md.contains("| m | a | 200 | 2/3 | 2,000 [1,000–3,000] | 1,900 |"),
            "{md}"
        );
        let csv = efficiency_csv(&[m]);
        assert!(csv.contains("m,s1,a,200,,,\n"), "{csv}");
        assert!(csv.contains("m,s2,a,200,9,1000,900\n"), "{csv}");
        assert_eq!(thousands(-1234.0), "-1,234");
    }
}
