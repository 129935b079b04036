//! The statistics of a cross-seed comparison, each small enough to check by hand.
//!
//! Conventions follow rliable (Agarwal et al., 2021), the reference for few-seed RL
//! comparisons: the interquartile mean (IQM) trims a quarter of the scores at each end, and
//! its confidence interval comes from a bootstrap that resamples runs within each task
//! (stratified), with percentile bounds.

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg32;
use statrs::distribution::{ContinuousCDF, StudentsT};

/// Arithmetic mean; `NaN` for no values.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (n − 1); `NaN` for fewer than two values.
pub fn sample_std(values: &[f64]) -> f64 {
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() as f64 - 1.0)).sqrt()
}

/// The mean and its 95% confidence interval from Student's t (`mean ± t₀.₉₇₅,ₙ₋₁ · s / √n`);
/// for a single value the interval is that value.
pub fn mean_ci95(values: &[f64]) -> (f64, f64, f64) {
    let m = mean(values);
    let n = values.len();
    if n < 2 {
        return (m, m, m);
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n ≥ 2 gives a valid distribution")
        .inverse_cdf(0.975);
    let half = t * sample_std(values) / (n as f64).sqrt();
    (m, m - half, m + half)
}

/// Interquartile mean: the mean of the values left after removing `floor(n/4)` from each end
/// of the sorted list (scipy's `trim_mean(x, 0.25)`, rliable's IQM).
pub fn iqm(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let cut = sorted.len() / 4;
    mean(&sorted[cut..sorted.len() - cut])
}

/// The median (numpy's: the mean of the two middle values of an even count); `NaN` for none.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// rliable's optimality gap: how far the scores fall short of `threshold` on average, scores
/// above it counting as reaching it (`mean(max(threshold − v, 0))`); lower is better.
pub fn optimality_gap(values: &[f64], threshold: f64) -> f64 {
    mean(
        &values
            .iter()
            .map(|v| (threshold - v).max(0.0))
            .collect::<Vec<_>>(),
    )
}

/// Estimates of `statistic` (any number of values computed from all the scores of a
/// `[run][task]` matrix) with stratified-bootstrap 95% percentile intervals: each of
/// `resamples` draws picks, for every task separately, as many runs as there are, with
/// replacement, and every statistic is computed on the same draws (as rliable does). Returns
/// `(estimate, lower, upper)` per statistic value; the same `seed` gives the same intervals.
pub fn stratified_bootstrap(
    scores: &[Vec<f64>],
    resamples: usize,
    seed: u64,
    statistic: impl Fn(&[f64]) -> Vec<f64>,
) -> Vec<(f64, f64, f64)> {
    let all: Vec<f64> = scores.iter().flatten().copied().collect();
    let points = statistic(&all);
    let runs = scores.len();
    if runs == 0 || resamples == 0 {
        return points.iter().map(|&p| (p, p, p)).collect();
    }
    let tasks = scores[0].len();
    let mut rng = Pcg32::seed_from_u64(seed);
    let mut draw = Vec::with_capacity(all.len());
    let mut estimates: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); points.len()];
    for _ in 0..resamples {
        draw.clear();
        // Stratified: runs are redrawn within each task's column.
        #[allow(clippy::needless_range_loop)] // `task` picks a column of randomly chosen rows
        for task in 0..tasks {
            draw.extend((0..runs).map(|_| scores[rng.random_range(0..runs)][task]));
        }
        for (e, v) in estimates.iter_mut().zip(statistic(&draw)) {
            e.push(v);
        }
    }
    points
        .iter()
        .zip(&mut estimates)
        .map(|(&p, e)| {
            e.sort_by(f64::total_cmp);
            (p, percentile(e, 2.5), percentile(e, 97.5))
        })
        .collect()
}

/// IQM over all scores of a `[run][task]` matrix with a stratified-bootstrap 95% interval
/// (see [`stratified_bootstrap`]). Returns `(iqm, lower, upper)`.
pub fn iqm_bootstrap_ci(scores: &[Vec<f64>], resamples: usize, seed: u64) -> (f64, f64, f64) {
    stratified_bootstrap(scores, resamples, seed, |d| vec![iqm(d)])[0]
}

/// The fraction of `scores` strictly above each threshold in `taus` (one point of a
/// performance profile per τ, rliable's score distribution).
pub fn fraction_above(scores: &[f64], taus: &[f64]) -> Vec<f64> {
    taus.iter()
        .map(|t| scores.iter().filter(|&&s| s > *t).count() as f64 / scores.len() as f64)
        .collect()
}

/// The `q`-th percentile of sorted values with linear interpolation (numpy's default).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// P(X > Y) + ½ P(X = Y) for one score of `x` against one of `y` (all pairs): the probability
/// that method X beats method Y on a task, rliable's "probability of improvement".
pub fn probability_of_improvement(x: &[f64], y: &[f64]) -> f64 {
    let mut wins = 0.0;
    for a in x {
        for b in y {
            wins += if a > b {
                1.0
            } else if a == b {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (x.len() * y.len()) as f64
}

/// The first episode whose trailing mean of `window` returns reaches `threshold`, and the
/// cumulative env steps recorded at that episode. Only full windows count: no estimate is made
/// from fewer than `window` episodes.
pub fn first_crossing(
    returns: &[f64],
    env_steps: &[u64],
    window: usize,
    threshold: f64,
) -> Option<(usize, u64)> {
    if window == 0 || returns.len() < window {
        return None;
    }
    let mut sum: f64 = returns[..window].iter().sum();
    for end in window - 1..returns.len() {
        if end >= window {
            sum += returns[end] - returns[end - window];
        }
        if sum / window as f64 >= threshold {
            return Some((end, env_steps[end]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_std_and_ci_by_hand() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(mean(&v), 2.5);
        // Σ(v − 2.5)² = 5, / 3.
        assert!((sample_std(&v) - (5.0f64 / 3.0).sqrt()).abs() < 1e-12);
        // t₀.₉₇₅,₃ = 3.182446305284263; s/√n = 0.6454972243679028.
        let (m, lo, hi) = mean_ci95(&v);
        assert_eq!(m, 2.5);
        assert!((hi - m - 3.182446305284263 * 0.6454972243679028).abs() < 1e-9);
        assert!((m - lo - (hi - m)).abs() < 1e-12);
        assert_eq!(mean_ci95(&[7.0]), (7.0, 7.0, 7.0));
    }

    #[test]
    fn iqm_trims_a_quarter_each_side() {
        // 8 values sorted −50, 1, …, 6, 100: drop 2 at each end → mean of 2, 3, 4, 5.
        assert_eq!(iqm(&[100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, -50.0]), 3.5);
        // 5 values: floor(5/4) = 1 from each end.
        assert_eq!(iqm(&[0.0, 10.0, 20.0, 30.0, 1000.0]), 20.0);
    }

    #[test]
    fn median_gap_and_profile_by_hand() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
        // Shortfalls below 1: 0.5, 0, 1.2, 0 → mean 0.425.
        assert!((optimality_gap(&[0.5, 1.0, -0.2, 3.0], 1.0) - 0.425).abs() < 1e-12);
        // Above 0: 3 of 4; above 1: only 3.0; strictly above, so 1.0 is not above 1.
        assert_eq!(
            fraction_above(&[0.5, 1.0, -0.2, 3.0], &[0.0, 1.0, 5.0]),
            [0.75, 0.25, 0.0]
        );
    }

    #[test]
    fn bootstrap_statistics_share_draws_and_keep_the_iqm_interval() {
        let scores: Vec<Vec<f64>> = (0..4)
            .map(|r| vec![r as f64, 10.0 - r as f64 * 2.0, 3.0 * r as f64])
            .collect();
        let both = stratified_bootstrap(&scores, 500, 3, |d| vec![iqm(d), mean(d)]);
        assert_eq!(both[0], iqm_bootstrap_ci(&scores, 500, 3));
        let all: Vec<f64> = scores.iter().flatten().copied().collect();
        assert_eq!(both[1].0, mean(&all));
        assert!(both[1].1 < both[1].0 && both[1].0 < both[1].2, "{both:?}");
        assert_eq!(
            stratified_bootstrap(&[], 10, 0, |_| vec![1.0]),
            [(1.0, 1.0, 1.0)]
        );
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&s, 50.0), 2.5);
        assert_eq!(percentile(&s, 0.0), 1.0);
        assert!((percentile(&s, 2.5) - 1.075).abs() < 1e-12);
    }

    #[test]
    fn bootstrap_is_reproducible_and_brackets_the_estimate() {
        let scores: Vec<Vec<f64>> = (0..5)
            .map(|r| {
                vec![
                    200.0 + r as f64 * 10.0,
                    100.0 - r as f64 * 5.0,
                    50.0 + r as f64,
                ]
            })
            .collect();
        let a = iqm_bootstrap_ci(&scores, 2000, 7);
        let b = iqm_bootstrap_ci(&scores, 2000, 7);
        let c = iqm_bootstrap_ci(&scores, 2000, 8);
        assert_eq!(a, b);
        assert_ne!(a.1, c.1);
        assert!(a.1 <= a.0 && a.0 <= a.2, "{a:?}");
        // Identical runs leave nothing to resample.
        let same = vec![vec![1.0, 2.0, 3.0]; 4];
        let (p, lo, hi) = iqm_bootstrap_ci(&same, 500, 1);
        assert_eq!((lo, hi), (p, p));
    }

    #[test]
    fn probability_of_improvement_counts_ties_half() {
        assert_eq!(probability_of_improvement(&[2.0, 3.0], &[1.0, 3.0]), 0.625);
        assert_eq!(probability_of_improvement(&[1.0], &[1.0]), 0.5);
    }

    #[test]
    fn first_crossing_on_a_synthetic_curve() {
        // Returns 0, 10, 20, …; trailing mean of 3 at episode i is 10·(i − 1).
        let returns: Vec<f64> = (0..20).map(|i| 10.0 * i as f64).collect();
        let steps: Vec<u64> = (0..20).map(|i| 100 * (i + 1)).collect();
        // 10·(i − 1) ≥ 50 first at i = 6, after 700 env steps.
        assert_eq!(first_crossing(&returns, &steps, 3, 50.0), Some((6, 700)));
        assert_eq!(first_crossing(&returns, &steps, 3, 1000.0), None);
        assert_eq!(first_crossing(&returns[..2], &steps[..2], 3, -1e9), None);
    }
}
