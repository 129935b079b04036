//! CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning"): the
//! update that maximises the worst task's improvement within a ball around the mean gradient.
//!
//! With g₀ the mean gradient and G the T×n matrix of task gradients, the dual weights w on the
//! simplex minimise F(w) = w·(G g₀) + c‖g₀‖·‖Gᵀw‖, and the update is
//! d = (g₀ + c‖g₀‖/‖Gᵀw‖ · Gᵀw) / (1 + c²) (the authors' `rescale = 1`). Everything here
//! needs only the Gram matrix M = G Gᵀ: G g₀ = M·1/T, ‖Gᵀw‖² = wᵀMw, ‖g₀‖² = 1ᵀM1/T².

use super::Gram;

/// The solve stops once its Frank–Wolfe gap (an upper bound on F(w) − min F, on the Gram
/// matrix scaled to a unit largest diagonal) is below this: w is then within ~1e-6 of the
/// minimiser.
const GAP_TOLERANCE: f64 = 1e-14;
/// A bound on the solver's iterations (reached only by degenerate Gram matrices).
const MAX_ITERATIONS: usize = 100_000;

/// What CAGrad chose: d = Σᵢ coefficients[i] gᵢ.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    pub(crate) coefficients: Vec<f64>,
    /// The dual weights on the simplex.
    pub(crate) w: Vec<f64>,
    /// ‖d‖ / ‖g₀‖ (1 when g₀ = 0).
    pub(crate) d_over_g0: f64,
}

/// CAGrad's update for trust-region size `c` (c = 0: the mean gradient).
pub(crate) fn choose(gram: &Gram, c: f64) -> Choice {
    let t = gram.len();
    let mean = vec![1.0 / t as f64; t];
    let g0_norm = gram.quadratic(&mean).max(0.0).sqrt();
    let w = simplex_weights(gram, c);
    let gw_norm = gram.quadratic(&w).max(0.0).sqrt();
    let lambda = if gw_norm > 0.0 {
        c * g0_norm / gw_norm
    } else {
        0.0
    };
    let coefficients: Vec<f64> = (0..t)
        .map(|i| (mean[i] + lambda * w[i]) / (1.0 + c * c))
        .collect();
    let d_norm = gram.quadratic(&coefficients).max(0.0).sqrt();
    Choice {
        d_over_g0: if g0_norm > 0.0 { d_norm / g0_norm } else { 1.0 },
        coefficients,
        w,
    }
}

/// argmin over the simplex of F(w) = w·(M 1/T) + c‖g₀‖ √(wᵀMw): projected gradient descent
/// with a backtracking step, on M scaled to a unit largest diagonal (the minimiser does not
/// depend on M's scale: both terms of F scale alike).
fn simplex_weights(gram: &Gram, c: f64) -> Vec<f64> {
    let t = gram.len();
    let scale = (0..t).map(|i| gram.get(i, i)).fold(0.0, f64::max);
    let mut w = vec![1.0 / t as f64; t];
    if scale <= 0.0 || !scale.is_finite() {
        return w;
    }
    let m = |i: usize, j: usize| gram.get(i, j) / scale;
    let b: Vec<f64> = (0..t)
        .map(|i| (0..t).map(|j| m(i, j)).sum::<f64>() / t as f64)
        .collect();
    let k = c * (b.iter().sum::<f64>() / t as f64).max(0.0).sqrt();
    let mw = |w: &[f64]| -> Vec<f64> {
        (0..t)
            .map(|i| (0..t).map(|j| m(i, j) * w[j]).sum())
            .collect()
    };
    let objective = |w: &[f64]| -> f64 {
        let q: f64 = w.iter().zip(mw(w)).map(|(a, b)| a * b).sum();
        dot(w, &b) + k * q.max(0.0).sqrt()
    };
    let gradient = |w: &[f64]| -> Vec<f64> {
        let mw = mw(w);
        let norm = dot(w, &mw).max(0.0).sqrt();
        (0..t)
            .map(|i| b[i] + if norm > 0.0 { k * mw[i] / norm } else { 0.0 })
            .collect()
    };
    let mut step = 1.0;
    for _ in 0..MAX_ITERATIONS {
        let g = gradient(&w);
        let lowest = g.iter().copied().fold(f64::INFINITY, f64::min);
        if dot(&g, &w) - lowest <= GAP_TOLERANCE {
            break;
        }
        let f = objective(&w);
        step *= 2.0;
        loop {
            let next = project_to_simplex(
                &w.iter()
                    .zip(&g)
                    .map(|(w, g)| w - step * g)
                    .collect::<Vec<_>>(),
            );
            let diff: Vec<f64> = next.iter().zip(&w).map(|(a, b)| a - b).collect();
            let bound = f + dot(&g, &diff) + dot(&diff, &diff) / (2.0 * step);
            if objective(&next) <= bound + 1e-18 || step < 1e-12 {
                w = next;
                break;
            }
            step /= 2.0;
        }
    }
    w
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean projection onto the probability simplex (sort and threshold).
fn project_to_simplex(v: &[f64]) -> Vec<f64> {
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (i, &u) in sorted.iter().enumerate() {
        cumulative += u;
        let candidate = (cumulative - 1.0) / (i + 1) as f64;
        if u - candidate > 0.0 {
            theta = candidate;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surgery::tests::{apply, assert_close, issue_g};

    #[test]
    fn the_issues_three_task_vectors() {
        let g = issue_g();
        let choice = choose(&Gram::of_rows(&g), 0.5);
        assert_close(&choice.w, &[0.441912, 0.356317, 0.201771], 1e-6);
        assert_close(
            &apply(&choice.coefficients, &g),
            &[-0.199672, 0.56326, -0.206173, 1.31644],
            1e-6,
        );
    }

    #[test]
    fn c_zero_is_the_mean() {
        let g = issue_g();
        let choice = choose(&Gram::of_rows(&g), 0.0);
        assert_close(&choice.coefficients, &[1.0 / 3.0; 3], 1e-15);
        assert_eq!(choice.d_over_g0, 1.0);
    }

    #[test]
    fn the_issues_two_task_vectors() {
        let g = vec![vec![1.0, 0.0], vec![-1.0, 1.0]];
        let choice = choose(&Gram::of_rows(&g), 0.5);
        assert_close(&choice.w, &[1.0, 0.0], 1e-6);
        assert_close(&apply(&choice.coefficients, &g), &[0.2, 0.4], 1e-6);
        // ‖d‖ = √0.2, ‖g₀‖ = 0.5.
        assert!((choice.d_over_g0 - 0.2f64.sqrt() / 0.5).abs() < 1e-6);
    }

    #[test]
    fn simplex_projection_by_hand() {
        assert_close(&project_to_simplex(&[0.5, 0.5]), &[0.5, 0.5], 1e-15);
        assert_close(&project_to_simplex(&[2.0, 0.0]), &[1.0, 0.0], 1e-15);
        assert_close(
            &project_to_simplex(&[0.0, 0.0, 0.0]),
            &[1.0 / 3.0; 3],
            1e-15,
        );
    }
}
