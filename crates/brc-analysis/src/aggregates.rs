//! rliable-style aggregate scores (Agarwal et al. 2021): every method's final returns over
//! runs × tasks, normalised per task, summarised by IQM, median, mean and optimality gap with
//! stratified-bootstrap 95% intervals, and as a performance profile (the fraction of run-task
//! scores above each threshold τ) with bootstrap bands.
//!
//! **Normalisation.** A task's return `R` becomes `(R − random) / (solved − random)`: 0 is
//! the uniformly random policy's mean return on that task, 1 is LunarLander's "solved"
//! return of 200. The upper point is 200 on every task so that the optimality gap at 1 is the
//! gap to 200 (the issue's threshold) and τ = 1 on a profile reads "share of run-task scores
//! that solve the task". The lower point is per task so that 0 means "learned nothing" on
//! every task whatever its floor, and random is the one policy every task has; on the three
//! built-in tasks the floors are close (−197 to −207), so tasks keep nearly equal weight. The
//! heuristic pilot was the other candidate and was not chosen: it is a hand-written
//! controller, not a floor, and its return differs by task, so "solved" would land at a
//! different normalised value on each task.

use std::fmt::Write as _;

use serde::Serialize;

use crate::methods::Method;
use crate::results::{final_scores, Estimate};
use crate::stats::{fraction_above, iqm, mean, median, optimality_gap, stratified_bootstrap};

/// The return that counts as solving a LunarLander task.
pub const SOLVED: f64 = 200.0;
/// The optimality gap's threshold in normalised units (a return of [`SOLVED`]).
pub const GAP_THRESHOLD: f64 = 1.0;
/// Resamples of a performance profile's bands (rliable's default; a profile is many
/// statistics, each needs fewer draws than an interval's ends).
pub const PROFILE_RESAMPLES: usize = 2_000;

/// The two returns of a task that normalised scores 0 and 1 stand for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaskReference {
    /// Mean return of uniformly random actions (normalised 0).
    pub random: f64,
    /// The solved return (normalised 1).
    pub solved: f64,
}

/// Mean return of uniformly random actions on the three built-in tasks over 1,000 episodes
/// each (env seeds 3,000,000 + i, outside training and evaluation seeds; standard error ±4.4
/// or less), measured with
/// `brc env play --task all --policy random --episodes 1000 --seed 3000000 --json`.
const RANDOM_RETURNS: [(&str, f64); 3] = [
    ("standard", RANDOM_STANDARD),
    ("windy", RANDOM_WINDY),
    ("heavy", RANDOM_HEAVY),
];
const RANDOM_STANDARD: f64 = -205.6;
const RANDOM_WINDY: f64 = -207.3;
const RANDOM_HEAVY: f64 = -196.6;

/// The normalisation points of a built-in task; `None` for a task brc does not know.
pub fn reference(task: &str) -> Option<TaskReference> {
    RANDOM_RETURNS
        .iter()
        .find(|(name, _)| *name == task)
        .map(|&(_, random)| TaskReference {
            random,
            solved: SOLVED,
        })
}

/// `(R − random) / (solved − random)`.
pub fn normalise(value: f64, r: TaskReference) -> f64 {
    (value - r.random) / (r.solved - r.random)
}

/// One method's normalised final scores, `[run][task]`, over the tasks where every run has a
/// score (a task the method did not train is left out rather than counted as zero).
pub fn normalised_scores(
    method: &Method,
    tasks: &[String],
    refs: &[TaskReference],
) -> Vec<Vec<f64>> {
    let raw = final_scores(method, tasks);
    let kept: Vec<usize> = (0..tasks.len())
        .filter(|&t| raw.iter().all(|run| run[t].is_finite()))
        .collect();
    raw.iter()
        .map(|run| kept.iter().map(|&t| normalise(run[t], refs[t])).collect())
        .collect()
}

/// One method's aggregate scores over runs × tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    /// Method name.
    pub method: String,
    /// Whether it comes from the predecessor's logs.
    pub predecessor: bool,
    /// Runs (seeds).
    pub runs: usize,
    /// Run × task scores the statistics are over.
    pub scores: usize,
    /// Interquartile mean.
    pub iqm: Estimate,
    /// Median.
    pub median: Estimate,
    /// Mean.
    pub mean: Estimate,
    /// Optimality gap at [`GAP_THRESHOLD`] (lower is better).
    pub optimality_gap: Estimate,
}

/// IQM, median, mean and optimality gap of a method's normalised final scores, each with a
/// stratified-bootstrap 95% interval from the same `resamples` draws (seeded with `seed`).
pub fn aggregate(
    method: &Method,
    tasks: &[String],
    refs: &[TaskReference],
    resamples: usize,
    seed: u64,
) -> Aggregate {
    let scores = normalised_scores(method, tasks, refs);
    let e = stratified_bootstrap(&scores, resamples, seed, |d| {
        vec![iqm(d), median(d), mean(d), optimality_gap(d, GAP_THRESHOLD)]
    });
    Aggregate {
        method: method.name.clone(),
        predecessor: method.predecessor,
        runs: method.runs.len(),
        scores: scores.iter().map(Vec::len).sum(),
        iqm: Estimate::of(e[0]),
        median: Estimate::of(e[1]),
        mean: Estimate::of(e[2]),
        optimality_gap: Estimate::of(e[3]),
    }
}

/// A method's performance profile at `taus`: `(τ, fraction of run-task scores above τ,
/// lower, upper)` with stratified-bootstrap 95% bands.
pub fn performance_profile(
    method: &Method,
    tasks: &[String],
    refs: &[TaskReference],
    taus: &[f64],
    resamples: usize,
    seed: u64,
) -> Vec<(f64, f64, f64, f64)> {
    let scores = normalised_scores(method, tasks, refs);
    stratified_bootstrap(&scores, resamples, seed, |d| fraction_above(d, taus))
        .into_iter()
        .zip(taus)
        .map(|((f, lo, hi), &t)| (t, f, lo, hi))
        .collect()
}

/// `n` evenly spaced thresholds from `lo` to `hi`.
pub fn taus(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * i as f64 / (n.max(2) - 1) as f64)
        .collect()
}

/// The aggregate table in Markdown: estimate [95% CI] per statistic.
pub fn aggregates_markdown(rows: &[Aggregate]) -> String {
    let mut s = String::from(
        "| method | runs × tasks | IQM | median | mean | optimality gap |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let ci = |e: &Estimate| format!("{:.2} [{:.2}, {:.2}]", e.mean, e.lower, e.upper);
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.method,
            r.scores,
            ci(&r.iqm),
            ci(&r.median),
            ci(&r.mean),
            ci(&r.optimality_gap)
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::{Episode, Evaluation, Run};

    /// A run whose final evaluation scored `returns` on standard / windy / heavy.
    fn run(seed: u64, returns: [f64; 3]) -> Run {
        let tasks = ["standard", "windy", "heavy"];
        Run {
            label: format!("seed-{seed}"),
            method: "m".into(),
            agent: None,
            seed: Some(seed),
            parameters: None,
            tasks: tasks.iter().map(|t| t.to_string()).collect(),
            episodes: vec![Episode {
                episode: 0,
                task: "standard".into(),
                episode_return: 0.0,
                env_steps: Some(1),
                updates: Some(0),
                epsilon: None,
                loss: None,
                mean_q: None,
                grad_norm: None,
                wall_seconds: None,
            }],
            evaluations: vec![Evaluation {
                after_episode: 1,
                env_steps: Some(1),
                mean_return: tasks
                    .iter()
                    .zip(returns)
                    .map(|(t, r)| (t.to_string(), r))
                    .collect(),
                is_final: true,
                success_rate: Default::default(),
            }],
            conflicts: vec![],
            diagnostics: Default::default(),
            varshare: vec![],
            wall_seconds: None,
            finished: true,
        }
    }

    fn method(runs: Vec<Run>) -> Method {
        Method {
            name: "m".into(),
            runs,
            predecessor: false,
        }
    }

    fn tasks() -> Vec<String> {
        ["standard", "windy", "heavy"].map(String::from).to_vec()
    }

    #[test]
    fn normalisation_puts_random_at_zero_and_solved_at_one() {
        let r = TaskReference {
            random: -100.0,
            solved: 200.0,
        };
        assert_eq!(normalise(-100.0, r), 0.0);
        assert_eq!(normalise(200.0, r), 1.0);
        assert_eq!(normalise(50.0, r), 0.5);
        for t in tasks() {
            let r = reference(&t).unwrap();
            assert_eq!(r.solved, 200.0);
            // Random actions crash: far below zero on every task.
            assert!(r.random < -150.0, "{t}: random scores {}", r.random);
        }
        assert!(reference("lunar_moon").is_none());
    }

    #[test]
    fn aggregates_match_a_direct_computation() {
        // References chosen so the normalised scores are round numbers: random −100 on
        // every task, so a return R scores (R + 100) / 300.
        let refs = [TaskReference {
            random: -100.0,
            solved: 200.0,
        }; 3];
        // Normalised: run 0 → 0.0, 0.5, 1.0; run 1 → 0.25, 0.75, 2.0.
        let m = method(vec![
            run(0, [-100.0, 50.0, 200.0]),
            run(1, [-25.0, 125.0, 500.0]),
        ]);
        let a = aggregate(&m, &tasks(), &refs, 2000, 1);
        assert_eq!(a.scores, 6);
        // Sorted 0, 0.25, 0.5, 0.75, 1, 2: IQM drops floor(6/4) = 1 from each end →
        // mean(0.25, 0.5, 0.75, 1) = 0.625; median (0.5 + 0.75) / 2 = 0.625;
        // mean 4.5 / 6 = 0.75; gap = mean(1, 0.75, 0.5, 0.25, 0, 0) = 2.5 / 6.
        assert!((a.iqm.mean - 0.625).abs() < 1e-12, "{a:?}");
        assert!((a.median.mean - 0.625).abs() < 1e-12);
        assert!((a.mean.mean - 0.75).abs() < 1e-12);
        assert!((a.optimality_gap.mean - 2.5 / 6.0).abs() < 1e-12);
        // The intervals bracket the estimates and lie within what any resample can give:
        // the mean of a resample lies between the lowest and highest possible draws
        // (each task's smaller / larger run): [(0 + 0.5 + 1)/3, (0.25 + 0.75 + 2)/3].
        for e in [a.iqm, a.median, a.mean, a.optimality_gap] {
            assert!(e.lower <= e.mean && e.mean <= e.upper, "{e:?}");
        }
        assert!(
            a.mean.lower >= 0.5 - 1e-12 && a.mean.upper <= 1.0 + 1e-12,
            "{a:?}"
        );
        // Same seed, same intervals.
        assert_eq!(a, aggregate(&m, &tasks(), &refs, 2000, 1));

        // Profile: above 0.6 are 0.75, 1.0, 2.0 → 3/6; above 1.5 only 2.0 → 1/6.
        let p = performance_profile(&m, &tasks(), &refs, &[0.6, 1.5], 500, 2);
        assert_eq!((p[0].0, p[0].1), (0.6, 0.5));
        assert!((p[1].1 - 1.0 / 6.0).abs() < 1e-12);
        for &(_, f, lo, hi) in &p {
            assert!(lo <= f && f <= hi);
        }
    }

    #[test]
    fn a_task_without_scores_is_left_out() {
        let refs = [reference("standard").unwrap(); 3];
        let mut r = run(0, [10.0, 20.0, 30.0]);
        r.evaluations[0].mean_return.remove("windy");
        let s = normalised_scores(&method(vec![r]), &tasks(), &refs);
        assert_eq!(s[0].len(), 2);
        assert_eq!(taus(0.0, 1.0, 3), [0.0, 0.5, 1.0]);
    }
}
