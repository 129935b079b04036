//! Gradient surgery: one update from several tasks' gradients (`agent.gradient`).
//!
//! The agent computes one loss per task and its gradient; a combiner turns them into the
//! update. Each combiner — [`pcgrad`], [`gradnorm`], [`cagrad`] — returns the update of the
//! shared parameters as coefficients over the task gradients (d = Σᵢ cᵢgᵢ), computed from the
//! T×T Gram matrix of those gradients, so only two passes touch the parameters: the Gram
//! matrix and the weighted sum. Task-specific parameters (a task's embedding row) take only
//! their own task's gradient, scaled as the method scales a task's gradient when nothing
//! conflicts (1 for PCGrad's sum, 1/T for its mean and for CAGrad, wᵢ for GradNorm); the
//! other tasks' gradients are zero there anyway.

mod cagrad;
mod gradnorm;
mod pcgrad;

use std::collections::BTreeMap;

use brc_buffer::Batch;
use rand::seq::SliceRandom;
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::{AgentError, GradientMethod, GradientSettings, PcgradReduction, Result};

pub(crate) use gradnorm::GradNorm;

/// The name prefix of task-specific parameters (the task-embedding table, one row per task).
const TASK_SPECIFIC_PREFIX: &str = "task_embedding.";

/// What a gradient method did on the probe batches of one gradient-conflict measurement
/// (`surgery.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum SurgeryDiagnostics {
    /// PCGrad, each task meeting the others in task order.
    Pcgrad {
        /// Share of task pairs whose gradients conflict (negative dot product).
        conflicting_pairs: f64,
        /// Mean over the projections made of the removed component's norm relative to the
        /// task's own gradient norm (0 when none was made).
        mean_projection: f64,
    },
    /// GradNorm's current task weights (they sum to the number of tasks).
    Gradnorm {
        /// Weight per task name.
        weights: BTreeMap<String, f64>,
    },
    /// CAGrad's choice.
    Cagrad {
        /// The dual weights on the simplex, per task name.
        w: BTreeMap<String, f64>,
        /// ‖d‖ / ‖g₀‖: the update's size relative to the mean gradient's.
        d_over_g0: f64,
    },
}

/// The T×T Gram matrix of per-task gradients over the shared parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Gram {
    t: usize,
    m: Vec<f64>,
}

impl Gram {
    /// gᵢ·gⱼ over the shared parameters; `grads[i][p]` is task i's gradient of parameter p.
    fn of_tasks<G: AsRef<[f32]>>(grads: &[Vec<G>], layout: &Layout) -> Self {
        let t = grads.len();
        let mut m = vec![0.0; t * t];
        for i in 0..t {
            for j in i..t {
                let d: f64 = (0..layout.task_specific.len())
                    .filter(|&p| !layout.task_specific[p])
                    .map(|p| dot(grads[i][p].as_ref(), grads[j][p].as_ref()))
                    .sum();
                m[i * t + j] = d;
                m[j * t + i] = d;
            }
        }
        Self { t, m }
    }

    /// The Gram matrix of plain vectors (the test vectors).
    #[cfg(test)]
    pub(crate) fn of_rows(rows: &[Vec<f64>]) -> Self {
        let t = rows.len();
        let mut m = vec![0.0; t * t];
        for i in 0..t {
            for j in 0..t {
                m[i * t + j] = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
            }
        }
        Self { t, m }
    }

    /// Number of tasks.
    pub(crate) fn len(&self) -> usize {
        self.t
    }

    /// gᵢ·gⱼ.
    pub(crate) fn get(&self, i: usize, j: usize) -> f64 {
        self.m[i * self.t + j]
    }

    /// ‖Σᵢ wᵢgᵢ‖² = wᵀMw.
    pub(crate) fn quadratic(&self, w: &[f64]) -> f64 {
        (0..self.t)
            .map(|i| {
                (0..self.t)
                    .map(|j| w[i] * self.get(i, j) * w[j])
                    .sum::<f64>()
            })
            .sum()
    }
}

/// Σ aᵢbᵢ over 8 independent f32 lanes, added up in f64 (as the optimizer's norm).
#[multiversion::multiversion(targets("x86_64+avx2+fma"))]
fn dot(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for ((l, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *l += x * y;
        }
    }
    lanes.iter().map(|&l| f64::from(l)).sum::<f64>() + f64::from(rest)
}

/// Which of a network's parameters (in `ParamStore` order) are task-specific, their sizes,
/// and which is the last shared layer's weight matrix (GradNorm's W).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    task_specific: Vec<bool>,
    sizes: Vec<usize>,
    last_layer: usize,
}

impl Layout {
    pub(crate) fn of(params: &brc_nn::ParamStore) -> Self {
        let vars = params.named_vars();
        let last_layer = vars
            .iter()
            .rposition(|(name, v)| name.ends_with(".weight") && v.dims().len() == 2)
            .unwrap_or(vars.len().saturating_sub(1));
        Self {
            task_specific: vars
                .iter()
                .map(|(name, _)| name.starts_with(TASK_SPECIFIC_PREFIX))
                .collect(),
            sizes: vars.iter().map(|(_, v)| v.elem_count()).collect(),
            last_layer,
        }
    }

    /// A flat gradient (all parameters in order) as one slice per parameter.
    fn split<'a>(&self, flat: &'a [f32]) -> Vec<&'a [f32]> {
        let mut out = Vec::with_capacity(self.sizes.len());
        let mut start = 0;
        for &n in &self.sizes {
            out.push(&flat[start..start + n]);
            start += n;
        }
        out
    }
}

/// The combined update: shared parameter p gets Σᵢ shared[i]·gᵢ[p], a task-specific one
/// Σᵢ own[i]·gᵢ[p].
#[derive(Debug, Clone, PartialEq)]
struct Combination {
    shared: Vec<f64>,
    own: Vec<f64>,
}

/// The update `combination` describes, one vector per parameter.
fn apply<G: AsRef<[f32]>>(
    grads: &[Vec<G>],
    layout: &Layout,
    combination: &Combination,
) -> Vec<Vec<f32>> {
    (0..layout.sizes.len())
        .map(|p| {
            let c = if layout.task_specific[p] {
                &combination.own
            } else {
                &combination.shared
            };
            let mut out = vec![0.0f32; layout.sizes[p]];
            for (task, &ci) in grads.iter().zip(c) {
                let ci = ci as f32;
                for (o, g) in out.iter_mut().zip(task[p].as_ref()) {
                    *o += ci * g;
                }
            }
            out
        })
        .collect()
}

/// An agent's gradient method with its state (GradNorm's weights).
#[derive(Debug, Clone)]
pub(crate) struct Surgery {
    settings: GradientSettings,
    layout: Layout,
    gradnorm: Option<GradNorm>,
}

impl Surgery {
    /// The method `settings` name for a network with `params`; `None` for the plain mean
    /// (the agent's usual single-loss update).
    pub(crate) fn new(
        settings: GradientSettings,
        params: &brc_nn::ParamStore,
        num_tasks: usize,
    ) -> Option<Self> {
        let gradnorm = (settings.method == GradientMethod::Gradnorm)
            .then(|| GradNorm::new(num_tasks, settings.gradnorm_lr));
        (settings.method != GradientMethod::Mean).then(|| Self {
            settings,
            layout: Layout::of(params),
            gradnorm,
        })
    }

    /// The update from per-task `grads` (one vector per parameter) with per-task mean
    /// `losses`; PCGrad's orders are drawn from `rng`, GradNorm's weights step afterwards.
    pub(crate) fn combine<G: AsRef<[f32]>>(
        &mut self,
        losses: &[f64],
        grads: &[Vec<G>],
        rng: &mut Pcg32,
    ) -> Vec<Vec<f32>> {
        let gram = Gram::of_tasks(grads, &self.layout);
        let t = grads.len();
        let combination = match self.settings.method {
            GradientMethod::Pcgrad => {
                let orders: Vec<Vec<usize>> = (0..t)
                    .map(|i| {
                        let mut others: Vec<usize> = (0..t).filter(|&j| j != i).collect();
                        others.shuffle(rng);
                        others
                    })
                    .collect();
                self.pcgrad(&gram, &orders).0
            }
            GradientMethod::Cagrad => cagrad_combination(&gram, self.settings.cagrad_c),
            GradientMethod::Gradnorm | GradientMethod::Mean => {
                let weights = self
                    .gradnorm
                    .as_ref()
                    .map_or_else(|| vec![1.0 / t as f64; t], |g| g.weights.clone());
                Combination {
                    shared: weights.clone(),
                    own: weights,
                }
            }
        };
        let update = apply(grads, &self.layout, &combination);
        if let Some(g) = &mut self.gradnorm {
            let w = self.layout.last_layer;
            let norms: Vec<f64> = grads
                .iter()
                .map(|task| dot(task[w].as_ref(), task[w].as_ref()).sqrt())
                .collect();
            g.observe(losses, &norms);
        }
        update
    }

    fn pcgrad(&self, gram: &Gram, orders: &[Vec<usize>]) -> (Combination, pcgrad::Projection) {
        let projection = pcgrad::project(gram, orders);
        let mut shared = pcgrad::summed(&projection);
        let t = gram.len() as f64;
        let scale = match self.settings.pcgrad_reduction {
            PcgradReduction::Sum => 1.0,
            PcgradReduction::Mean => 1.0 / t,
        };
        shared.iter_mut().for_each(|c| *c *= scale);
        let own = vec![scale; gram.len()];
        (Combination { shared, own }, projection)
    }

    /// What the method does with the flat per-task gradients of the probe batches (PCGrad
    /// in task order, so the measurement draws nothing from the agent's RNG).
    pub(crate) fn diagnostics(&self, flat: &[Vec<f32>], names: &[String]) -> SurgeryDiagnostics {
        let grads: Vec<Vec<&[f32]>> = flat.iter().map(|g| self.layout.split(g)).collect();
        let gram = Gram::of_tasks(&grads, &self.layout);
        let t = grads.len();
        let by_name = |v: &[f64]| -> BTreeMap<String, f64> {
            names.iter().cloned().zip(v.iter().copied()).collect()
        };
        match self.settings.method {
            GradientMethod::Pcgrad => {
                let orders: Vec<Vec<usize>> = (0..t)
                    .map(|i| (0..t).filter(|&j| j != i).collect())
                    .collect();
                let (_, p) = self.pcgrad(&gram, &orders);
                SurgeryDiagnostics::Pcgrad {
                    conflicting_pairs: p.conflicting_pairs,
                    mean_projection: p.mean_projection,
                }
            }
            GradientMethod::Cagrad => {
                let choice = cagrad::choose(&gram, self.settings.cagrad_c);
                SurgeryDiagnostics::Cagrad {
                    w: by_name(&choice.w),
                    d_over_g0: choice.d_over_g0,
                }
            }
            GradientMethod::Gradnorm | GradientMethod::Mean => SurgeryDiagnostics::Gradnorm {
                weights: by_name(
                    &self
                        .gradnorm
                        .as_ref()
                        .map_or(vec![1.0; t], |g| g.weights.clone()),
                ),
            },
        }
    }

    /// The state a checkpoint keeps (GradNorm's; the other methods have none).
    pub(crate) fn state(&self) -> Option<GradNorm> {
        self.gradnorm.clone()
    }

    /// Restores [`Surgery::state`]; a checkpoint without GradNorm state for a GradNorm agent
    /// (written before it had any) restarts the weights.
    pub(crate) fn restore(&mut self, state: Option<GradNorm>) {
        if self.gradnorm.is_some() {
            if let Some(s) = state {
                self.gradnorm = Some(s);
            }
        }
    }
}

fn cagrad_combination(gram: &Gram, c: f64) -> Combination {
    let choice = cagrad::choose(gram, c);
    let t = gram.len();
    Combination {
        shared: choice.coefficients,
        own: vec![1.0 / t as f64; t],
    }
}

/// Splits `batch` into one batch per task (rows keep their order), reusing `out`'s buffers.
/// Every one of the `num_tasks` tasks must have rows: surgery needs each task's loss.
pub(crate) fn split_by_task(batch: &Batch, num_tasks: usize, out: &mut Vec<Batch>) -> Result<()> {
    out.resize_with(num_tasks, Batch::new);
    for b in out.iter_mut() {
        b.obs.clear();
        b.actions.clear();
        b.rewards.clear();
        b.next_obs.clear();
        b.terminated.clear();
        b.tasks.clear();
    }
    let dim = crate::OBS_DIM;
    for (i, &task) in batch.tasks.iter().enumerate() {
        let b = out.get_mut(task as usize).ok_or(AgentError::Task {
            task: task as usize,
            num_tasks,
        })?;
        b.obs.extend_from_slice(&batch.obs[i * dim..(i + 1) * dim]);
        b.next_obs
            .extend_from_slice(&batch.next_obs[i * dim..(i + 1) * dim]);
        b.actions.push(batch.actions[i]);
        b.rewards.push(batch.rewards[i]);
        b.terminated.push(batch.terminated[i]);
        b.tasks.push(task);
    }
    if let Some(t) = out.iter().position(Batch::is_empty) {
        return Err(AgentError::Batch(format!(
            "gradient surgery needs every task in every batch, task {t} has no rows \
             (use training.sampling = \"balanced\")"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The issue's three tasks, four parameters.
    pub(crate) fn issue_g() -> Vec<Vec<f64>> {
        vec![
            vec![1.0, 2.0, -1.0, 0.5],
            vec![-2.0, 0.5, 1.0, 1.0],
            vec![0.5, -1.5, -0.5, 2.0],
        ]
    }

    /// Σᵢ cᵢ gᵢ.
    pub(crate) fn apply(c: &[f64], g: &[Vec<f64>]) -> Vec<f64> {
        (0..g[0].len())
            .map(|k| c.iter().zip(g).map(|(ci, gi)| ci * gi[k]).sum())
            .collect()
    }

    pub(crate) fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (k, (a, b)) in got.iter().zip(want).enumerate() {
            assert!((a - b).abs() <= tol, "[{k}]: {a} vs {b} (got {got:?})");
        }
    }

    fn settings(method: GradientMethod) -> GradientSettings {
        GradientSettings {
            method,
            ..GradientSettings::default()
        }
    }

    /// A network with a task embedding (3 × 2) and one shared 2 × 2 layer.
    fn params() -> brc_nn::ParamStore {
        let mut p = brc_nn::ParamStore::new(&candle_core::Device::Cpu);
        p.insert_vec("task_embedding.weight", vec![0.0f32; 6], (3, 2))
            .unwrap();
        p.insert_vec("fc.weight", vec![0.0f32; 4], (2, 2)).unwrap();
        p
    }

    #[test]
    fn the_embedding_row_takes_its_own_tasks_gradient_only() {
        // Each task's gradient reaches its own embedding row; the shared layer's gradients
        // are the issue's two-task vectors (padded to 4 with zeros) plus a third task.
        let emb = |t: usize| -> Vec<f32> {
            let mut e = vec![0.0; 6];
            e[2 * t] = 1.0 + t as f32;
            e[2 * t + 1] = -1.0;
            e
        };
        let grads: Vec<Vec<Vec<f32>>> = vec![
            vec![emb(0), vec![1.0, 0.0, 0.0, 0.0]],
            vec![emb(1), vec![-1.0, 1.0, 0.0, 0.0]],
            vec![emb(2), vec![0.0, 0.0, 1.0, 0.0]],
        ];
        let mut rng = rand::SeedableRng::seed_from_u64(0);
        let p = params();
        let mut pcgrad = Surgery::new(settings(GradientMethod::Pcgrad), &p, 3).unwrap();
        let update = pcgrad.combine(&[1.0; 3], &grads, &mut rng);
        // Sum reduction: the rows are the raw rows.
        assert_eq!(update[0], vec![1.0, -1.0, 2.0, -1.0, 3.0, -1.0]);
        // Task 2's gradient conflicts with nobody; the first two are projected as in the
        // issue's two-task vectors (sum [0.5, 1.5]).
        assert_eq!(update[1], vec![0.5, 1.5, 1.0, 0.0]);
        let mut cagrad = Surgery::new(settings(GradientMethod::Cagrad), &p, 3).unwrap();
        let update = cagrad.combine(&[1.0; 3], &grads, &mut rng);
        let third = 1.0f32 / 3.0;
        assert_eq!(
            update[0],
            vec![third, -third, 2.0 * third, -third, 1.0, -third]
        );
    }

    #[test]
    fn mean_needs_no_surgery_and_the_layout_finds_w() {
        let p = params();
        assert!(Surgery::new(settings(GradientMethod::Mean), &p, 3).is_none());
        let layout = Layout::of(&p);
        assert_eq!(layout.task_specific, vec![true, false]);
        assert_eq!(layout.last_layer, 1);
    }

    #[test]
    fn split_by_task_groups_rows_and_rejects_a_missing_task() {
        let mut b = Batch::new();
        for (i, t) in [2u32, 0, 2, 1].iter().enumerate() {
            b.obs.extend([i as f32; 8]);
            b.next_obs.extend([i as f32; 8]);
            b.actions.push(i as u32);
            b.rewards.push(i as f32);
            b.terminated.push(0.0);
            b.tasks.push(*t);
        }
        let mut out = Vec::new();
        split_by_task(&b, 3, &mut out).unwrap();
        assert_eq!(out[2].actions, vec![0, 2]);
        assert_eq!(out[0].actions, vec![1]);
        assert_eq!(out[1].obs, vec![3.0; 8]);
        b.tasks[3] = 2;
        let e = split_by_task(&b, 3, &mut out).unwrap_err().to_string();
        assert!(e.contains("task 1 has no rows"), "{e}");
    }
}
