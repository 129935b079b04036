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
/// Up to this many tasks the weights come from every face of the simplex in closed form
/// (2^T − 1 faces of at most T×T solves each); beyond, from projected gradient descent alone.
const MAX_FACE_TASKS: usize = 8;
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

/// argmin over the simplex of F(w) = w·(M 1/T) + c‖g₀‖ √(wᵀMw), on M scaled to a unit largest
/// diagonal (the minimiser does not depend on M's scale: both terms of F scale alike).
///
/// F is convex, so its minimiser is the stationary point of F restricted to the relative
/// interior of some face of the simplex; on a face with support S that point has a closed
/// form ([`face_minimiser`]). The best feasible point over all 2^T − 1 faces (T is the number
/// of tasks, 3 here; up to [`MAX_FACE_TASKS`]) is the minimiser, exactly; a few projected-gradient steps then only
/// confirm it (or finish the job where a face's Gram block is singular). Projected gradient
/// descent alone needed up to ~10⁵ steps (tens of ms) when the minimiser lies inside an edge.
fn simplex_weights(gram: &Gram, c: f64) -> Vec<f64> {
    let t = gram.len();
    let scale = (0..t).map(|i| gram.get(i, i)).fold(0.0, f64::max);
    let uniform = vec![1.0 / t as f64; t];
    if scale <= 0.0 || !scale.is_finite() {
        return uniform;
    }
    let m: Vec<Vec<f64>> = (0..t)
        .map(|i| (0..t).map(|j| gram.get(i, j) / scale).collect())
        .collect();
    let b: Vec<f64> = m
        .iter()
        .map(|row| row.iter().sum::<f64>() / t as f64)
        .collect();
    let k = c * (b.iter().sum::<f64>() / t as f64).max(0.0).sqrt();
    let problem = Problem { m, b, k };
    if t > MAX_FACE_TASKS {
        // 2^T faces would cost more than the descent.
        return problem.projected_gradient(uniform);
    }
    let mut best = uniform;
    let mut best_f = problem.objective(&best);
    for support in 1..(1usize << t) {
        let face: Vec<usize> = (0..t).filter(|i| support & (1 << i) != 0).collect();
        if let Some(w) = face_minimiser(&problem, &face) {
            let f = problem.objective(&w);
            if f < best_f {
                (best, best_f) = (w, f);
            }
        }
    }
    problem.projected_gradient(best)
}

/// F(w) = b·w + k √(wᵀMw) on the simplex, M the scaled Gram matrix.
struct Problem {
    m: Vec<Vec<f64>>,
    b: Vec<f64>,
    k: f64,
}

impl Problem {
    fn mw(&self, w: &[f64]) -> Vec<f64> {
        self.m.iter().map(|row| dot(row, w)).collect()
    }

    fn objective(&self, w: &[f64]) -> f64 {
        dot(w, &self.b) + self.k * dot(w, &self.mw(w)).max(0.0).sqrt()
    }

    fn gradient(&self, w: &[f64]) -> Vec<f64> {
        let mw = self.mw(w);
        let norm = dot(w, &mw).max(0.0).sqrt();
        (0..w.len())
            .map(|i| {
                self.b[i]
                    + if norm > 0.0 {
                        self.k * mw[i] / norm
                    } else {
                        0.0
                    }
            })
            .collect()
    }

    /// Projected gradient descent with a backtracking step from `w`, until the Frank–Wolfe
    /// gap is below [`GAP_TOLERANCE`] (at once from the exact minimiser).
    fn projected_gradient(&self, mut w: Vec<f64>) -> Vec<f64> {
        let mut step = 1.0;
        for _ in 0..MAX_ITERATIONS {
            let g = self.gradient(&w);
            let lowest = g.iter().copied().fold(f64::INFINITY, f64::min);
            if dot(&g, &w) - lowest <= GAP_TOLERANCE {
                break;
            }
            let f = self.objective(&w);
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
                if self.objective(&next) <= bound + 1e-18 || step < 1e-12 {
                    w = next;
                    break;
                }
                step /= 2.0;
            }
        }
        w
    }
}

/// The stationary point of F on the relative interior of the face `face` (its support), when
/// it exists there: with M, b restricted to the face, b + k Mw/√(wᵀMw) = ν1 and 1ᵀw = 1 give
/// w = M⁻¹(ν1 − b) / √D, where A = 1ᵀM⁻¹1, B = 1ᵀM⁻¹b, C = bᵀM⁻¹b, D = B² − A(C − k²) and
/// ν = (B + √D)/A. `None` when D ≤ 0, M's block is singular, or w leaves the face.
fn face_minimiser(problem: &Problem, face: &[usize]) -> Option<Vec<f64>> {
    let t = problem.b.len();
    if face.len() == 1 {
        let mut w = vec![0.0; t];
        w[face[0]] = 1.0;
        return Some(w);
    }
    let block: Vec<Vec<f64>> = face
        .iter()
        .map(|&i| face.iter().map(|&j| problem.m[i][j]).collect())
        .collect();
    let ones = vec![1.0; face.len()];
    let b: Vec<f64> = face.iter().map(|&i| problem.b[i]).collect();
    let inv_ones = solve(&block, &ones)?;
    let inv_b = solve(&block, &b)?;
    let (a, bb, cc) = (dot(&ones, &inv_ones), dot(&ones, &inv_b), dot(&b, &inv_b));
    let disc = bb * bb - a * (cc - problem.k * problem.k);
    if a <= 0.0 || disc <= 0.0 {
        return None;
    }
    let nu = (bb + disc.sqrt()) / a;
    let mut w = vec![0.0; t];
    for (n, &i) in face.iter().enumerate() {
        let wi = (nu * inv_ones[n] - inv_b[n]) / disc.sqrt();
        if wi < 0.0 {
            return None;
        }
        w[i] = wi;
    }
    Some(w)
}

/// x with A x = y, by Gaussian elimination with partial pivoting; `None` for a (numerically)
/// singular A.
fn solve(a: &[Vec<f64>], y: &[f64]) -> Option<Vec<f64>> {
    let n = y.len();
    let mut aug: Vec<Vec<f64>> = a
        .iter()
        .zip(y)
        .map(|(row, &yi)| row.iter().copied().chain([yi]).collect())
        .collect();
    let largest = a.iter().flatten().fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| aug[i][col].abs().total_cmp(&aug[j][col].abs()))?;
        if aug[pivot][col].abs() <= 1e-12 * largest {
            return None;
        }
        aug.swap(col, pivot);
        let (upper, lower) = aug.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for row in lower.iter_mut() {
            let f = row[col] / pivot_row[col];
            for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *x -= f * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let rest: f64 = (row + 1..n).map(|k| aug[row][k] * x[k]).sum();
        x[row] = (aug[row][n] - rest) / aug[row][row];
    }
    Some(x)
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

    /// Three correlated task gradients (`corr` of a shared direction, the rest task-specific
    /// and of different sizes).
    fn correlated(corr: f64, seed: u64) -> Gram {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg32::seed_from_u64(seed);
        let base: Vec<f64> = (0..200).map(|_| rng.random_range(-1.0..1.0)).collect();
        let rows: Vec<Vec<f64>> = (0..3)
            .map(|t| {
                base.iter()
                    .map(|b| {
                        corr * b
                            + (1.0 - corr) * (1.0 + 0.2 * t as f64) * rng.random_range(-1.0..1.0)
                    })
                    .collect()
            })
            .collect();
        Gram::of_rows(&rows)
    }

    #[test]
    fn the_weights_minimise_the_dual_objective_wherever_the_minimiser_lies() {
        // Against a grid over the simplex (step 1/400): the solution is never worse than the
        // best grid point and lies next to it. The cases put it inside edges (most), at
        // vertices (0.99 / 5, 0.7 / 6) and near one (0.9 / 1); inside an edge, projected
        // gradient descent alone took up to ~10⁵ steps (tens of ms per update). The issue's
        // vectors (above) have it inside the triangle.
        for (corr, seed) in [
            (0.9, 1),
            (0.0, 2),
            (0.5, 3),
            (0.9, 4),
            (0.99, 5),
            (0.7, 6),
            (0.3, 7),
        ] {
            let gram = correlated(corr, seed);
            let w = simplex_weights(&gram, 0.5);
            let scale = (0..3).map(|i| gram.get(i, i)).fold(0.0, f64::max);
            let m: Vec<Vec<f64>> = (0..3)
                .map(|i| (0..3).map(|j| gram.get(i, j) / scale).collect())
                .collect();
            let b: Vec<f64> = m.iter().map(|r| r.iter().sum::<f64>() / 3.0).collect();
            let k = 0.5 * (b.iter().sum::<f64>() / 3.0).sqrt();
            let problem = Problem { m, b, k };
            let n = 400;
            let (mut grid_best, mut grid_w) = (f64::INFINITY, vec![]);
            for i in 0..=n {
                for j in 0..=n - i {
                    let v = [
                        i as f64 / n as f64,
                        j as f64 / n as f64,
                        (n - i - j) as f64 / n as f64,
                    ];
                    let f = problem.objective(&v);
                    if f < grid_best {
                        (grid_best, grid_w) = (f, v.to_vec());
                    }
                }
            }
            let f = problem.objective(&w);
            assert!(
                f <= grid_best + 1e-12,
                "corr {corr}: {f} vs grid {grid_best}"
            );
            assert_close(&w, &grid_w, 0.01);
            assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w.iter().all(|x| *x >= 0.0));
        }
    }

    #[test]
    fn two_tasks_inside_the_edge_and_a_singular_block() {
        // Two tasks with the minimiser inside the edge: against a fine grid on w₀.
        let g = vec![vec![1.0, 0.2, 0.0], vec![0.3, 1.0, 0.1]];
        let gram = Gram::of_rows(&g);
        let w = simplex_weights(&gram, 0.5);
        assert!(w[0] > 0.0 && w[1] > 0.0, "{w:?}");
        let objective = |w0: f64| {
            let v = [w0, 1.0 - w0];
            let (b0, b1) = (
                (gram.get(0, 0) + gram.get(0, 1)) / 2.0,
                (gram.get(1, 0) + gram.get(1, 1)) / 2.0,
            );
            let g0 = ((b0 + b1) / 2.0).sqrt();
            v[0] * b0 + v[1] * b1 + 0.5 * g0 * gram.quadratic(&v).sqrt()
        };
        let grid = (0..=100_000).map(|i| i as f64 / 1e5);
        let best = grid
            .min_by(|a, b| objective(*a).total_cmp(&objective(*b)))
            .unwrap();
        assert!((w[0] - best).abs() < 1e-4, "{w:?} vs grid {best}");
        // Two identical task gradients make a singular block: still a point of the simplex
        // no worse than any vertex, and the same update as with the duplicate merged.
        let g = vec![
            vec![1.0, 2.0, -1.0],
            vec![1.0, 2.0, -1.0],
            vec![-2.0, 0.5, 1.0],
        ];
        let choice = choose(&Gram::of_rows(&g), 0.5);
        assert!((choice.w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(choice.w.iter().all(|x| *x >= 0.0 && x.is_finite()));
        let d = apply(&choice.coefficients, &g);
        assert!(d.iter().all(|x| x.is_finite()));
    }

    #[test]
    fn many_tasks_use_descent_alone() {
        // Ten tasks (beyond the closed form's 8): a valid point of the simplex, at once.
        let g: Vec<Vec<f64>> = (0..10)
            .map(|t| {
                (0..12)
                    .map(|k| ((t * 7 + k * 3) % 11) as f64 - 5.0)
                    .collect()
            })
            .collect();
        let choice = choose(&Gram::of_rows(&g), 0.5);
        assert_eq!(choice.w.len(), 10);
        assert!((choice.w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(choice.w.iter().all(|x| *x >= 0.0));
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
