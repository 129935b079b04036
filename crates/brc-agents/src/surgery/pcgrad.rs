//! PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each task's gradient
//! loses its component along every other task's gradient it conflicts with.
//!
//! For task i: gᵢ′ = gᵢ; for the other tasks j in a random order, if gᵢ′·gⱼ < 0 then
//! gᵢ′ ← gᵢ′ − (gᵢ′·gⱼ / ‖gⱼ‖²) gⱼ, always against the *original* gⱼ. Every gᵢ′ is therefore
//! a linear combination of the original gradients, and we keep it as its coefficients: each
//! dot product then comes from the T×T Gram matrix, so the projections cost T² small sums
//! instead of T² passes over the network's parameters — the same arithmetic, reordered.

use super::Gram;

/// The projected gradients as coefficients over the original ones (row i: gᵢ′ = Σₖ a[i][k] gₖ)
/// and what the projections did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Projection {
    pub(crate) rows: Vec<Vec<f64>>,
    /// Share of task pairs whose original gradients conflict (gᵢ·gⱼ < 0).
    pub(crate) conflicting_pairs: f64,
    /// Mean over the projections made of the removed component's norm relative to ‖gᵢ‖
    /// (0 when none was made).
    pub(crate) mean_projection: f64,
}

/// Projects every task's gradient; `orders[i]` lists the other tasks in the order task i
/// meets them.
pub(crate) fn project(gram: &Gram, orders: &[Vec<usize>]) -> Projection {
    let t = gram.len();
    let mut rows = Vec::with_capacity(t);
    let (mut projections, mut removed) = (0usize, 0.0f64);
    for (i, order) in orders.iter().enumerate() {
        let mut a = vec![0.0f64; t];
        a[i] = 1.0;
        for &j in order {
            let norm_sq = gram.get(j, j);
            // gᵢ′·gⱼ = Σₖ aₖ (gₖ·gⱼ).
            let dot: f64 = (0..t).map(|k| a[k] * gram.get(k, j)).sum();
            if dot < 0.0 && norm_sq > 0.0 {
                a[j] -= dot / norm_sq;
                projections += 1;
                let own = gram.get(i, i).sqrt();
                if own > 0.0 {
                    removed += (-dot / norm_sq.sqrt()) / own;
                }
            }
        }
        rows.push(a);
    }
    let pairs = t * t.saturating_sub(1) / 2;
    let conflicts = (0..t)
        .flat_map(|i| (i + 1..t).map(move |j| (i, j)))
        .filter(|&(i, j)| gram.get(i, j) < 0.0)
        .count();
    Projection {
        rows,
        conflicting_pairs: if pairs > 0 {
            conflicts as f64 / pairs as f64
        } else {
            0.0
        },
        mean_projection: if projections > 0 {
            removed / projections as f64
        } else {
            0.0
        },
    }
}

/// Coefficients of Σᵢ gᵢ′ over the original gradients (the paper's sum; divide by T for the
/// earlier project's mean).
pub(crate) fn summed(projection: &Projection) -> Vec<f64> {
    let t = projection.rows.len();
    (0..t)
        .map(|k| projection.rows.iter().map(|row| row[k]).sum())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surgery::tests::{apply, assert_close, issue_g};

    fn natural_orders(t: usize) -> Vec<Vec<usize>> {
        (0..t)
            .map(|i| (0..t).filter(|&j| j != i).collect())
            .collect()
    }

    #[test]
    fn the_issues_three_task_vectors() {
        let g = issue_g();
        let p = project(&Gram::of_rows(&g), &natural_orders(3));
        let want = [
            [0.598519, 1.884444, -0.838519, 1.054074],
            [-1.723704, 0.871111, 0.723704, 1.265185],
            [0.5032, -1.1408, -0.5816, 2.1584],
        ];
        for (row, want) in p.rows.iter().zip(&want) {
            assert_close(&apply(row, &g), want, 1e-6);
        }
        assert_close(
            &apply(&summed(&p), &g),
            &[-0.621985, 1.614756, -0.696415, 4.477659],
            1e-6,
        );
        let reversed = vec![vec![2, 1], vec![2, 0], vec![1, 0]];
        let p = project(&Gram::of_rows(&g), &reversed);
        assert_close(
            &apply(&summed(&p), &g),
            &[-0.563733, 1.696237, -0.722193, 4.364059],
            1e-6,
        );
    }

    #[test]
    fn the_issues_two_task_vectors() {
        let g = vec![vec![1.0, 0.0], vec![-1.0, 1.0]];
        let p = project(&Gram::of_rows(&g), &natural_orders(2));
        assert_close(&apply(&summed(&p), &g), &[0.5, 1.5], 1e-12);
        assert_eq!(p.conflicting_pairs, 1.0);
        // Each removed component: |g₀·g₁| / ‖g₁‖ relative to ‖g₀‖ = (1/√2)/1; and 1/1 for g₁.
        let want = (1.0 / 2f64.sqrt() + 1.0 / 2f64.sqrt()) / 2.0;
        assert!((p.mean_projection - want).abs() < 1e-12);
    }

    #[test]
    fn agreeing_gradients_are_left_alone() {
        let g = vec![vec![1.0, 0.5], vec![0.5, 1.0]];
        let p = project(&Gram::of_rows(&g), &natural_orders(2));
        assert_eq!(p.rows, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert_eq!((p.conflicting_pairs, p.mean_projection), (0.0, 0.0));
    }
}
