//! How good and how steady a method's greedy policy is late in training, from the periodic
//! evaluations of the second half of each run.
//!
//! A final evaluation scores one network: a draw from a greedy policy that may still swing
//! from one evaluation to the next. The mean over the second half's evaluations averages over
//! that swing (it depends far less on where training happened to stop), and their spread
//! measures the swing itself.

use std::fmt::Write as _;

use serde::Serialize;

use crate::methods::Method;
use crate::results::Estimate;
use crate::runs::{Evaluation, Run};
use crate::stats::{mean, mean_ci95, sample_std};

/// One run's periodic evaluations after half of its training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LateEvaluations {
    /// Evaluations in the window.
    pub count: usize,
    /// Mean return per task over the window, in the order of the tasks asked for (`NaN` for a
    /// task the run does not evaluate).
    pub per_task: Vec<f64>,
    /// Mean over the window of each evaluation's average over the tasks.
    pub average: f64,
    /// Sample standard deviation over the window of that average: the swing of the greedy
    /// policy (`NaN` for a window of one evaluation).
    pub swing: f64,
    /// The lowest average in the window.
    pub worst: f64,
}

/// The periodic (non-final) evaluations made after more than half of the run's last periodic
/// evaluation's episodes, summarised on `tasks`; `None` for a run without periodic evaluations.
pub fn late_evaluations(run: &Run, tasks: &[String]) -> Option<LateEvaluations> {
    let periodic: Vec<_> = run.evaluations.iter().filter(|e| !e.is_final).collect();
    let last = periodic.last()?.after_episode;
    let window: Vec<_> = periodic
        .into_iter()
        .filter(|e| 2 * e.after_episode > last)
        .collect();
    let score = |e: &Evaluation, t: &String| e.mean_return.get(t).copied().unwrap_or(f64::NAN);
    let averages: Vec<f64> = window
        .iter()
        .map(|e| mean(&tasks.iter().map(|t| score(e, t)).collect::<Vec<_>>()))
        .collect();
    Some(LateEvaluations {
        count: window.len(),
        per_task: tasks
            .iter()
            .map(|t| mean(&window.iter().map(|e| score(e, t)).collect::<Vec<_>>()))
            .collect(),
        average: mean(&averages),
        swing: sample_std(&averages),
        worst: averages.iter().copied().fold(f64::INFINITY, f64::min),
    })
}

/// One method's row of the late-training table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodStability {
    /// Method name.
    pub method: String,
    /// Runs with periodic evaluations (the rows' statistics are over these).
    pub seeds: usize,
    /// Task names, in the order of `per_task`.
    pub tasks: Vec<String>,
    /// Late mean return per task: mean and t-interval over seeds.
    pub per_task: Vec<Estimate>,
    /// Late mean of the average over tasks: mean and t-interval over seeds.
    pub average: Estimate,
    /// Mean over seeds of each run's swing.
    pub swing: f64,
    /// The lowest late evaluation average of any seed.
    pub worst: f64,
}

/// Summarises the second halves of one method's runs on `tasks`.
pub fn method_stability(method: &Method, tasks: &[String]) -> MethodStability {
    let late: Vec<LateEvaluations> = method
        .runs
        .iter()
        .filter_map(|r| late_evaluations(r, tasks))
        .collect();
    let over_seeds = |f: &dyn Fn(&LateEvaluations) -> f64| {
        Estimate::of(mean_ci95(&late.iter().map(f).collect::<Vec<_>>()))
    };
    MethodStability {
        method: method.name.clone(),
        seeds: late.len(),
        tasks: tasks.to_vec(),
        per_task: (0..tasks.len())
            .map(|t| over_seeds(&|l| l.per_task[t]))
            .collect(),
        average: over_seeds(&|l| l.average),
        swing: mean(&late.iter().map(|l| l.swing).collect::<Vec<_>>()),
        worst: late.iter().map(|l| l.worst).fold(f64::INFINITY, f64::min),
    }
}

/// The late-training table in Markdown.
pub fn stability_markdown(rows: &[MethodStability]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut s = String::from("| method | seeds |");
    for t in &first.tasks {
        let _ = write!(s, " {t} |");
    }
    s.push_str(" average | swing (SD) | worst |\n|---|---:|");
    s.push_str(&"---:|".repeat(first.tasks.len() + 3));
    s.push('\n');
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.1}")
        } else {
            "–".into()
        }
    };
    for r in rows {
        let _ = write!(s, "| {} | {} |", r.method, r.seeds);
        for e in &r.per_task {
            let _ = write!(s, " {} |", e.pm());
        }
        let _ = writeln!(
            s,
            " {} | {} | {} |",
            r.average.pm(),
            num(r.swing),
            num(r.worst)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> Vec<String> {
        ["standard", "windy", "heavy"].map(String::from).to_vec()
    }

    /// Periodic evaluations every 100 episodes up to 1000 — standard scores `after + shift`,
    /// windy `2 · (after + shift)`, heavy 0, so each evaluation's average is `after + shift` —
    /// and a final evaluation far off that line, which the window must ignore.
    fn run(shift: f64) -> Run {
        let evaluation = |after: usize, is_final: bool| {
            let x = if is_final { 1e6 } else { after as f64 + shift };
            Evaluation {
                after_episode: after,
                env_steps: None,
                mean_return: [("standard", x), ("windy", 2.0 * x), ("heavy", 0.0)]
                    .into_iter()
                    .map(|(t, v)| (t.to_string(), v))
                    .collect(),
                is_final,
                success_rate: Default::default(),
            }
        };
        Run {
            label: "seed".into(),
            method: "m".into(),
            agent: None,
            seed: None,
            parameters: None,
            tasks: tasks(),
            episodes: Vec::new(),
            evaluations: (1..=10)
                .map(|k| evaluation(100 * k, false))
                .chain([evaluation(1000, true)])
                .collect(),
            conflicts: Vec::new(),
            diagnostics: Default::default(),
            varshare: Vec::new(),
            wall_seconds: None,
            finished: true,
        }
    }

    #[test]
    fn the_window_is_the_second_half_of_the_periodic_evaluations() {
        let late = late_evaluations(&run(0.0), &tasks()).unwrap();
        // After episodes 600..=1000 (500 is not past half of 1000); the final one is left out.
        assert_eq!(late.count, 5);
        assert_eq!(late.average, 800.0);
        assert_eq!(late.per_task, vec![800.0, 1600.0, 0.0]);
        // Sample SD of 600, 700, 800, 900, 1000: sqrt(100,000 / 4).
        assert!((late.swing - 25_000f64.sqrt()).abs() < 1e-9);
        assert_eq!(late.worst, 600.0);
    }

    #[test]
    fn a_run_without_periodic_evaluations_has_no_window() {
        let mut r = run(0.0);
        r.evaluations.retain(|e| e.is_final);
        assert_eq!(late_evaluations(&r, &tasks()), None);
    }

    #[test]
    fn a_method_row_is_over_the_seeds_that_have_a_window() {
        let mut bare = run(0.0);
        bare.evaluations.clear();
        let method = Method {
            name: "m".into(),
            runs: vec![run(0.0), run(-200.0), bare],
            predecessor: false,
        };
        let row = method_stability(&method, &tasks());
        assert_eq!(row.seeds, 2);
        // Late averages 800 and 600: mean 700, t₀.₉₇₅,₁ · SD / √2 = 12.706 · 141.42 / 1.4142.
        assert_eq!(row.average.mean, 700.0);
        assert!((row.average.upper - 700.0 - 1270.6).abs() < 0.1);
        assert_eq!(row.per_task[1].mean, 1400.0);
        assert!((row.swing - 25_000f64.sqrt()).abs() < 1e-9);
        assert_eq!(row.worst, 400.0);
        let md = stability_markdown(&[row]);
        assert!(md.contains("| m | 2 | 700.0 ± 1270.6 | 1400.0 ± 2541.2 | 0.0 | 700.0 ± 1270.6 | 158.1 | 400.0 |"), "{md}");
    }
}
