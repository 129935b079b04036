//! GradNorm (Chen et al. 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
//! in Deep Multitask Networks"): learned task-loss weights that keep each task's gradient
//! norm on the last shared layer in proportion to how far its loss still has to fall.
//!
//! The network steps on Σᵢ wᵢ∇Lᵢ. Then, with Gᵢ = ‖∇_W wᵢLᵢ‖ = wᵢ‖∇_W Lᵢ‖ on the last shared
//! layer W, L̃ᵢ = Lᵢ / Lᵢ(0), rᵢ = L̃ᵢ / mean(L̃) and the target Ḡ·rᵢ^α held constant, the
//! weights take one Adam step on L_grad = Σᵢ |Gᵢ − Ḡ rᵢ^α| and are renormalised to Σw = T.
//!
//! Lᵢ(0) is the mean of task i's first [`INITIAL_UPDATES`] update losses, not its first
//! loss: one TD batch of 64 transitions is a noisy estimate (bootstrapped targets from an
//! untrained network, a handful of terminal rewards), and every later ratio L̃ᵢ divides by
//! it. The weights stay at 1 until that reference exists.

use serde::{Deserialize, Serialize};

/// The asymmetry α (the paper's value for tasks of different difficulty).
pub(crate) const ALPHA: f64 = 1.5;
/// How many of a task's first update losses make its reference loss Lᵢ(0).
pub(crate) const INITIAL_UPDATES: u64 = 100;
/// A weight never falls below this before renormalising: a weight ≤ 0 would turn a task's
/// loss into one to maximise.
const MIN_WEIGHT: f64 = 1e-3;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// The task weights, their Adam moments and the reference losses: all of it is checkpointed,
/// so a resumed run continues with the same weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GradNorm {
    pub(crate) weights: Vec<f64>,
    lr: f64,
    m: Vec<f64>,
    v: Vec<f64>,
    /// Adam steps taken.
    step: u64,
    /// Σ of each task's losses over the first updates, and how many there were.
    initial_sum: Vec<f64>,
    initial_count: u64,
}

impl GradNorm {
    /// Unit weights for `num_tasks` tasks, stepped by Adam at `lr`.
    pub(crate) fn new(num_tasks: usize, lr: f64) -> Self {
        Self {
            weights: vec![1.0; num_tasks],
            lr,
            m: vec![0.0; num_tasks],
            v: vec![0.0; num_tasks],
            step: 0,
            initial_sum: vec![0.0; num_tasks],
            initial_count: 0,
        }
    }

    /// The reference losses Lᵢ(0), once the first updates have been seen.
    pub(crate) fn initial_losses(&self) -> Option<Vec<f64>> {
        (self.initial_count >= INITIAL_UPDATES).then(|| {
            let n = self.initial_count as f64;
            self.initial_sum.iter().map(|s| s / n).collect()
        })
    }

    /// After an update with task losses `losses` and last-shared-layer gradient norms
    /// `layer_norms` (‖∇_W Lᵢ‖, unweighted): moves the weights (or, during the first updates,
    /// records the losses for Lᵢ(0)).
    pub(crate) fn observe(&mut self, losses: &[f64], layer_norms: &[f64]) {
        let Some(initial) = self.initial_losses() else {
            for (s, l) in self.initial_sum.iter_mut().zip(losses) {
                *s += l;
            }
            self.initial_count += 1;
            return;
        };
        let t = self.weights.len() as f64;
        let relative: Vec<f64> = losses
            .iter()
            .zip(&initial)
            .map(|(l, l0)| l / l0.max(f64::MIN_POSITIVE))
            .collect();
        let mean_relative = relative.iter().sum::<f64>() / t;
        let norms: Vec<f64> = self
            .weights
            .iter()
            .zip(layer_norms)
            .map(|(w, n)| w * n)
            .collect();
        let mean_norm = norms.iter().sum::<f64>() / t;
        // ∂L_grad/∂wᵢ = sign(Gᵢ − targetᵢ) · ‖∇_W Lᵢ‖, the target held constant.
        let grad: Vec<f64> = (0..self.weights.len())
            .map(|i| {
                let r = if mean_relative > 0.0 {
                    relative[i] / mean_relative
                } else {
                    1.0
                };
                let target = mean_norm * r.powf(ALPHA);
                sign(norms[i] - target) * layer_norms[i]
            })
            .collect();
        self.adam_step(&grad);
        for w in &mut self.weights {
            *w = w.max(MIN_WEIGHT);
        }
        let total: f64 = self.weights.iter().sum();
        for w in &mut self.weights {
            *w *= t / total;
        }
    }

    /// Adam on the weights (the paper's optimizer for them), its own moments.
    fn adam_step(&mut self, grad: &[f64]) {
        self.step += 1;
        let t = self.step as i32;
        let (bias1, bias2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        let moments = self.m.iter_mut().zip(self.v.iter_mut());
        for ((w, (m, v)), g) in self.weights.iter_mut().zip(moments).zip(grad) {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            *w -= self.lr * (*m / bias1) / ((*v / bias2).sqrt() + EPS);
        }
    }
}

/// −1, 0 or 1 (`f64::signum` gives 1 for 0: a task exactly on target would still move).
fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_stay_at_one_until_the_reference_losses_exist() {
        let mut g = GradNorm::new(3, 0.025);
        for i in 0..INITIAL_UPDATES {
            assert!(g.initial_losses().is_none());
            g.observe(&[1.0 + i as f64, 2.0, 3.0], &[1.0, 2.0, 3.0]);
            assert_eq!(g.weights, vec![1.0; 3]);
        }
        // Task 0 saw losses 1..=100: mean 50.5.
        assert_eq!(g.initial_losses().unwrap(), vec![50.5, 2.0, 3.0]);
    }

    /// Three tasks with equal gradient norms; task 0's loss stays at its start while the
    /// others halve: task 0 is the slow one and gains weight; the weights always sum to 3.
    #[test]
    fn weight_moves_to_the_slowest_task_and_the_weights_sum_to_t() {
        let mut g = GradNorm::new(3, 0.025);
        for _ in 0..INITIAL_UPDATES {
            g.observe(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]);
        }
        let mut last = g.weights.clone();
        for step in 0..200 {
            g.observe(&[1.0, 0.5, 0.6], &[1.0, 1.0, 1.0]);
            let sum: f64 = g.weights.iter().sum();
            assert!((sum - 3.0).abs() < 1e-12, "step {step}: Σw = {sum}");
            assert!(g.weights.iter().all(|w| *w > 0.0));
            // Until it nears its target (≈ 1.7) the slow task's weight only rises.
            if step < 20 {
                assert!(g.weights[0] > last[0], "step {step}: w₀ fell");
            }
            last = g.weights.clone();
        }
        assert!(g.weights[0] > 1.5, "{:?}", g.weights);
        assert!(
            g.weights[1] < g.weights[2],
            "task 1 falls fastest: {:?}",
            g.weights
        );
    }

    #[test]
    fn balanced_tasks_keep_their_weights() {
        let mut g = GradNorm::new(2, 0.025);
        for _ in 0..INITIAL_UPDATES {
            g.observe(&[2.0, 4.0], &[1.0, 1.0]);
        }
        // Both at half their reference loss, equal gradient norms: Gᵢ equals the target.
        g.observe(&[1.0, 2.0], &[1.0, 1.0]);
        assert_eq!(g.weights, vec![1.0, 1.0]);
    }
}
