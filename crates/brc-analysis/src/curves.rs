//! Curves over training: per-task return series placed at cumulative env steps (or training
//! episodes), moving averages, and the mean with a 95% band across seeds.

use crate::runs::{Episode, Run};
use crate::stats::mean_ci95;

/// A point on a curve: x (usually cumulative env steps) and a value.
pub type Point = (f64, f64);

/// A seed-aggregated point: x, mean, and the 95% interval's lower and upper ends.
pub type BandPoint = (f64, f64, f64, f64);

/// Trailing moving average: point `i` averages values `i+1-window ..= i` (fewer at the start,
/// so the curve begins with the first episode rather than after `window` of them).
pub fn moving_average(values: &[f64], window: usize) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut sum = 0.0;
    for (i, v) in values.iter().enumerate() {
        sum += v;
        if i >= window {
            sum -= values[i - window];
        }
        out.push(sum / (i + 1).min(window) as f64);
    }
    out
}

/// What the x axis of a training curve counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XAxis {
    /// Cumulative env steps over all tasks (compares methods at equal experience).
    #[default]
    EnvSteps,
    /// Training episodes over all tasks (the predecessor's independent logs have only these).
    Episodes,
}

impl XAxis {
    /// The axis description.
    pub fn label(self) -> &'static str {
        match self {
            XAxis::EnvSteps => "env steps",
            XAxis::Episodes => "training episodes (all tasks)",
        }
    }

    /// Where an episode ends on this axis; `None` when the run did not log env steps.
    pub fn of(self, e: &Episode) -> Option<f64> {
        match self {
            XAxis::EnvSteps => e.env_steps.map(|s| s as f64),
            XAxis::Episodes => Some((e.episode + 1) as f64),
        }
    }

    /// Where "after `after` training episodes" (evaluations, conflict measurements) lies.
    pub fn after(self, run: &Run, after: usize) -> Option<f64> {
        match self {
            XAxis::EnvSteps => steps_after_episodes(run, after),
            XAxis::Episodes => Some(after as f64),
        }
    }
}

/// One task's training returns as `(x after the episode, return)`; empty on the env-step
/// axis when the run did not log env steps.
pub fn task_returns(run: &Run, task: &str, axis: XAxis) -> Vec<Point> {
    run.episodes
        .iter()
        .filter(|e| e.task == task)
        .filter_map(|e| Some((axis.of(e)?, e.episode_return)))
        .collect()
}

/// A per-episode quantity over all tasks, `(x, value)`, for episodes that logged it.
pub fn episode_series(
    run: &Run,
    axis: XAxis,
    value: impl Fn(&Episode) -> Option<f64>,
) -> Vec<Point> {
    run.episodes
        .iter()
        .filter_map(|e| Some((axis.of(e)?, value(e)?)))
        .filter(|(_, v)| v.is_finite())
        .collect()
}

/// The same series smoothed by a trailing moving average of `window` points.
pub fn smoothed(points: &[Point], window: usize) -> Vec<Point> {
    let ys: Vec<f64> = points.iter().map(|p| p.1).collect();
    points
        .iter()
        .zip(moving_average(&ys, window))
        .map(|(p, m)| (p.0, m))
        .collect()
}

/// The env steps at which each training episode ended, by global episode index: maps
/// "after N episodes" (evaluations, conflict measurements) onto the env-step axis.
pub fn steps_after_episodes(run: &Run, after: usize) -> Option<f64> {
    if after == 0 {
        return Some(0.0);
    }
    run.episodes
        .get(after - 1)
        .and_then(|e| e.env_steps)
        .map(|s| s as f64)
}

/// Mean and 95% interval across series at `points` x positions spread evenly over the range
/// every series covers (so each point averages all seeds). A series' value at x is its last
/// point at or before x (step interpolation: no value is invented between episodes). One
/// series gives a band of zero width.
pub fn mean_band(series: &[Vec<Point>], points: usize) -> Vec<BandPoint> {
    let series: Vec<&Vec<Point>> = series.iter().filter(|s| !s.is_empty()).collect();
    if series.is_empty() || points == 0 {
        return Vec::new();
    }
    let start = series.iter().map(|s| s[0].0).fold(f64::MIN, f64::max);
    let end = series
        .iter()
        .map(|s| s[s.len() - 1].0)
        .fold(f64::MAX, f64::min);
    if end < start {
        return Vec::new();
    }
    let xs: Vec<f64> = if points == 1 || end == start {
        vec![end]
    } else {
        (0..points)
            .map(|i| start + (end - start) * i as f64 / (points - 1) as f64)
            .collect()
    };
    let mut cursors = vec![0usize; series.len()];
    xs.into_iter()
        .map(|x| {
            let values: Vec<f64> = series
                .iter()
                .zip(cursors.iter_mut())
                .map(|(s, c)| {
                    while *c + 1 < s.len() && s[*c + 1].0 <= x {
                        *c += 1;
                    }
                    s[*c].1
                })
                .collect();
            let (m, lo, hi) = mean_ci95(&values);
            (x, m, lo, hi)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average_by_hand() {
        let ma = moving_average(&[2.0, 4.0, 6.0, 8.0], 2);
        assert_eq!(ma, [2.0, 3.0, 5.0, 7.0]);
        assert_eq!(moving_average(&[1.0, 2.0], 5), [1.0, 1.5]);
    }

    #[test]
    fn band_averages_seeds_at_common_steps() {
        // Seed A: 0 until x = 10, then 10. Seed B: 2 from x = 0, 4 from x = 20 (past A's end).
        let a = vec![(0.0, 0.0), (10.0, 10.0)];
        let b = vec![(0.0, 2.0), (20.0, 4.0)];
        let band = mean_band(&[a, b], 3);
        // Common range 0..10: x = 0, 5, 10.
        let xs: Vec<f64> = band.iter().map(|p| p.0).collect();
        assert_eq!(xs, [0.0, 5.0, 10.0]);
        assert_eq!(band[0].1, 1.0);
        assert_eq!(band[1].1, 1.0, "step interpolation keeps the last value");
        assert_eq!(band[2].1, 6.0);
        // Two values 10 and 2: s = √32, t₀.₉₇₅,₁ = 12.7062, half width = 12.7062·√32/√2 = 50.82.
        assert!((band[2].3 - 6.0 - 12.706204736174707 * 4.0).abs() < 1e-6);
        let single = mean_band(&[vec![(1.0, 3.0)]], 10);
        assert_eq!(single, [(1.0, 3.0, 3.0, 3.0)]);
        assert!(mean_band(&[], 10).is_empty());
    }
}
