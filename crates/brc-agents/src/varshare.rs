//! VarShare in an agent (`[agent.varshare]`): task residuals W_m = θ + φ_m on every linear
//! layer of the shared network (`brc_nn::task_residual`), the penalty added to the TD loss,
//! the noise draws, and the diagnostics of `varshare.jsonl`.
//!
//! Choices the design left open, and why:
//! * **Penalty scaling**: loss = TD + β · (Σ over layers, tasks and weights of the KL) / (the
//!   number of those weights) — β times the *mean KL per adapter weight*. A sum would grow
//!   with the network (BroNet has ~13× the MLP's weights) and a per-transition scaling with
//!   a replay buffer whose size is not the data set's; per weight, one β means the same
//!   pressure on every network and stays comparable between `variational` and `l2`.
//! * **Noise**: one ε per layer and update, drawn from a stream of its own — `Pcg32::new(seed,
//!   k)` for the agent's k-th update — so a resumed agent regenerates the draw from its
//!   optimizer's step count instead of storing ε in the checkpoint; the Flipout signs come
//!   after ε from the same stream.
//! * **Acting** during training uses the weights of the last update's draw, θ + μ_m + σ_m ⊙ ε_m
//!   (current σ, no sign flips: the draw itself), until the next update redraws; before the
//!   first update, the first update's draw. ε-greedy stays on top. Greedy evaluation uses the
//!   means θ + μ_m; `brc evaluate --shared-only` θ alone.
//! * **Targets and the double-DQN argmax** use the means (no noise in the bootstrap target).
//! * **No weight decay on μ and ρ**: the penalty is their regulariser; AdamW's decay would
//!   pull ρ towards 0 (σ ≈ 0.69), away from both σ_init and σ_prior.

use std::cell::RefCell;
use std::collections::BTreeMap;

use brc_buffer::Batch;
use brc_nn::task_residual::{
    draw_host_signs, draw_signs, group_by_task, FlipoutSigns, HostSigns, TaskSegment,
};
use brc_nn::{ResidualMode, ResidualNoise, ResidualWeights, TaskResidualNetwork};
use candle_core::Tensor;
use rand_pcg::Pcg32;
use serde::{Deserialize, Serialize};

use crate::{AgentError, Result, VarShareConfig, OBS_DIM};

/// Shared, per-task adapter and total trainable parameters of an agent's online network(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParameterCounts {
    /// Parameters every task uses (weights, biases, LayerNorms, the task embedding).
    pub shared: usize,
    /// VarShare's residual parameters of one task (μ_m, and ρ_m when variational); 0
    /// without VarShare.
    pub adapter_per_task: usize,
    /// Everything trainable: shared + tasks × adapter_per_task.
    pub total: usize,
}

/// One residual layer's measurements.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDiagnostics {
    /// The layer (its variables' prefix, e.g. `blocks.0.fc1`).
    pub layer: String,
    /// Residual weights per task (in × out).
    pub weights: usize,
    /// KL(q_m ‖ p) per task name (`l2`: the penalty Σμ²/(2σ_prior²)).
    pub kl: BTreeMap<String, f64>,
    /// μ entries that survive pruning (non-zero, |μ| ≥ prune_threshold), per task name.
    pub kept: BTreeMap<String, usize>,
    /// `kept / weights` per task name.
    pub kept_fraction: BTreeMap<String, f64>,
}

/// What VarShare's residuals look like at one moment (`varshare.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarShareDiagnostics {
    /// `variational` or `l2`.
    pub mode: ResidualMode,
    /// The term the loss adds: β · mean penalty per adapter weight.
    pub penalty: f64,
    /// KL summed over layers, per task name.
    pub kl: BTreeMap<String, f64>,
    /// Mean σ over all residual weights, per task name (empty in `l2` mode).
    pub mean_sigma: BTreeMap<String, f64>,
    /// Surviving μ entries over all layers, per task name.
    pub kept: BTreeMap<String, usize>,
    /// Per layer, in forward order.
    pub layers: Vec<LayerDiagnostics>,
}

impl VarShareDiagnostics {
    /// Trainable scalars a surviving μ entry keeps: μ alone (`l2`) or μ and its ρ.
    pub fn params_per_entry(&self) -> usize {
        match self.mode {
            ResidualMode::Variational => 2,
            ResidualMode::L2 => 1,
        }
    }
}

/// An agent's VarShare state: the settings, the noise stream's seed and the acting draw.
pub(crate) struct VarShare {
    pub(crate) config: VarShareConfig,
    /// Seed of the per-update noise streams (saved in checkpoints).
    pub(crate) seed: u64,
    /// The draw acting uses, with the update index it belongs to.
    acting: RefCell<Option<(u64, ResidualNoise)>>,
    /// Evaluate θ alone (`brc evaluate --shared-only`).
    pub(crate) shared_only: bool,
}

/// The draw of one update: ε of every layer and the Flipout signs of its rows.
pub(crate) struct Draw {
    pub(crate) noise: ResidualNoise,
    pub(crate) signs: Vec<FlipoutSigns>,
}

impl Draw {
    pub(crate) fn weights(&self) -> ResidualWeights<'_> {
        ResidualWeights::Sampled {
            noise: &self.noise,
            signs: Some(&self.signs),
        }
    }
}

impl VarShare {
    /// The settings for an agent seeded with `seed`; sets the posteriors' σ of `online` to
    /// `sigma_init` (call before the target copy).
    pub(crate) fn new<N: TaskResidualNetwork>(
        config: VarShareConfig,
        seed: u64,
        online: &N,
    ) -> Result<Self> {
        for l in online.residual_layers() {
            l.set_sigma(config.sigma_init)?;
        }
        Ok(Self {
            config,
            seed: seed ^ 0x7a5_5a4e,
            acting: RefCell::new(None),
            shared_only: false,
        })
    }

    /// Takes over a checkpoint's noise seed (and forgets the acting draw made with another).
    pub(crate) fn restore_seed(&mut self, seed: Option<u64>) {
        if let Some(seed) = seed {
            self.seed = seed;
        }
        *self.acting.borrow_mut() = None;
    }

    /// The noise stream of update `k`.
    fn stream(&self, k: u64) -> Pcg32 {
        Pcg32::new(self.seed, k)
    }

    /// Update `k`'s draw for a batch of `rows` rows; kept for acting afterwards.
    pub(crate) fn draw<N: TaskResidualNetwork>(
        &self,
        net: &N,
        k: u64,
        rows: usize,
    ) -> Result<Draw> {
        let layers = net.residual_layers();
        let mut rng = self.stream(k);
        let noise = ResidualNoise::draw(&layers, &mut rng)?;
        let signs = draw_signs(&layers, &mut rng, rows)?;
        *self.acting.borrow_mut() = Some((k, noise.clone()));
        Ok(Draw { noise, signs })
    }

    /// [`VarShare::draw`] for the CPU path: the same draws, the signs as host vectors.
    pub(crate) fn draw_host<N: TaskResidualNetwork>(
        &self,
        net: &N,
        k: u64,
        rows: usize,
    ) -> Result<(ResidualNoise, Vec<HostSigns>)> {
        let layers = net.residual_layers();
        let mut rng = self.stream(k);
        let noise = ResidualNoise::draw(&layers, &mut rng)?;
        let signs = draw_host_signs(&layers, &mut rng, rows);
        *self.acting.borrow_mut() = Some((k, noise.clone()));
        Ok((noise, signs))
    }

    /// The forward pass acting uses after `updates` updates: the last update's draw.
    pub(crate) fn acting_forward<N: TaskResidualNetwork>(
        &self,
        net: &N,
        updates: u64,
        obs: &Tensor,
        task: &Tensor,
    ) -> Result<Tensor> {
        let k = updates.saturating_sub(1);
        let mut acting = self.acting.borrow_mut();
        if acting.as_ref().is_none_or(|(at, _)| *at != k) {
            let noise = ResidualNoise::draw(&net.residual_layers(), &mut self.stream(k))?;
            *acting = Some((k, noise));
        }
        let (_, noise) = acting.as_ref().expect("set above");
        let weights = ResidualWeights::Sampled { noise, signs: None };
        Ok(net.forward_with(obs, task, weights)?)
    }

    /// The weights greedy evaluation uses: the means, or θ alone.
    pub(crate) fn eval_weights(&self) -> ResidualWeights<'static> {
        if self.shared_only {
            ResidualWeights::Shared
        } else {
            ResidualWeights::Mean
        }
    }

    /// β · mean penalty per adapter weight, differentiable (a scalar).
    pub(crate) fn penalty<N: TaskResidualNetwork>(&self, net: &N) -> Result<Tensor> {
        let layers = net.residual_layers();
        let mut total: Option<Tensor> = None;
        for l in &layers {
            let p = l.penalty(self.config.sigma_prior)?.sum_all()?;
            total = Some(match total {
                Some(t) => (t + p)?,
                None => p,
            });
        }
        let total = total.expect("a VarShare network has residual layers");
        Ok((total * self.penalty_scale(net))?)
    }

    /// β / (adapter weights over all layers and tasks): the factor of the summed penalty.
    pub(crate) fn penalty_scale<N: TaskResidualNetwork>(&self, net: &N) -> f64 {
        let weights: usize = net
            .residual_layers()
            .iter()
            .map(|l| l.weights_per_task() * l.num_tasks())
            .sum();
        self.config.beta / weights.max(1) as f64
    }

    /// The measurements of `varshare.jsonl` (host arithmetic, no draws).
    pub(crate) fn diagnostics<N: TaskResidualNetwork>(
        &self,
        net: &N,
        task_names: &[String],
    ) -> Result<VarShareDiagnostics> {
        let c = &self.config;
        let layers = net.residual_layers();
        let mode = layers.first().map_or(c.mode, |l| l.mode());
        let t = task_names.len();
        let (mut kl, mut sigma, mut kept) = (vec![0.0; t], vec![0.0; t], vec![0usize; t]);
        let (mut all_weights, mut penalty) = (0usize, 0.0);
        let mut out = Vec::with_capacity(layers.len());
        for l in &layers {
            let s = l.host_stats(c.sigma_prior, c.prune_threshold)?;
            let per_task = |v: &dyn Fn(usize) -> f64| -> BTreeMap<String, f64> {
                task_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), v(i)))
                    .collect()
            };
            for i in 0..t {
                kl[i] += s.penalty[i];
                sigma[i] += s.sigma_sum[i];
                kept[i] += s.kept[i];
                penalty += s.penalty[i];
            }
            all_weights += s.weights_per_task;
            out.push(LayerDiagnostics {
                layer: s.name.clone(),
                weights: s.weights_per_task,
                kl: per_task(&|i| s.penalty[i]),
                kept: task_names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.clone(), s.kept[i]))
                    .collect(),
                kept_fraction: per_task(&|i| s.kept[i] as f64 / s.weights_per_task as f64),
            });
        }
        let named = |v: &[f64]| -> BTreeMap<String, f64> {
            task_names.iter().cloned().zip(v.iter().copied()).collect()
        };
        let mean_sigma: Vec<f64> = sigma.iter().map(|s| s / all_weights as f64).collect();
        Ok(VarShareDiagnostics {
            mode,
            penalty: c.beta * penalty / (all_weights * t).max(1) as f64,
            kl: named(&kl),
            mean_sigma: if mode == ResidualMode::Variational {
                named(&mean_sigma)
            } else {
                BTreeMap::new()
            },
            kept: task_names.iter().cloned().zip(kept).collect(),
            layers: out,
        })
    }
}

/// Parameter counts of `net` (`tasks` tasks), with or without residual layers.
pub(crate) fn parameter_counts<N: TaskResidualNetwork + brc_nn::QNetwork>(
    net: &N,
) -> ParameterCounts {
    let layers = net.residual_layers();
    let per_task: usize = layers.iter().map(|l| l.adapter_params_per_task()).sum();
    let tasks = layers.first().map_or(0, |l| l.num_tasks());
    let total = net.num_params();
    ParameterCounts {
        shared: total - tasks * per_task,
        adapter_per_task: per_task,
        total,
    }
}

/// Whether each of `params` is not a task residual: the optimizer's weight-decay mask (the
/// penalty regularises the residuals) and the parameters gradient conflict is measured on.
pub(crate) fn decays(params: &brc_nn::ParamStore) -> Vec<bool> {
    params
        .named_vars()
        .iter()
        .map(|(n, _)| !(n.contains(".residual_mu.") || n.contains(".residual_rho.")))
        .collect()
}

/// Switches an agent's residuals off (`true`: θ alone) or on; an agent without VarShare
/// (`agent` names it) has none to switch.
pub(crate) fn set_shared_only(
    varshare: &mut Option<VarShare>,
    agent: &str,
    shared_only: bool,
) -> Result<()> {
    match varshare {
        Some(v) => {
            v.shared_only = shared_only;
            Ok(())
        }
        None => Err(AgentError::Unsupported(format!(
            "{agent} has no task residuals to switch off (only [agent.varshare] runs do)"
        ))),
    }
}

/// Zeroes the μ entries with |μ| < `threshold` (the config's where `None`) in every residual
/// layer of `net` and returns the threshold, which becomes the one the diagnostics count
/// surviving entries at; an agent without VarShare (`agent` names it) has none to prune.
pub(crate) fn prune<N: TaskResidualNetwork>(
    varshare: &mut Option<VarShare>,
    net: &N,
    agent: &str,
    threshold: Option<f64>,
) -> Result<f64> {
    let Some(v) = varshare else {
        return Err(AgentError::Unsupported(format!(
            "{agent} has no task residuals to prune (only [agent.varshare] runs do)"
        )));
    };
    let threshold = threshold.unwrap_or(v.config.prune_threshold);
    v.config.prune_threshold = threshold;
    for l in net.residual_layers() {
        l.prune(threshold)?;
    }
    Ok(threshold)
}

/// Puts `batch`'s rows into `grouped` grouped by task (a stable sort: the order candle's
/// residual layers use, [`group_by_task`]) for a host update; returns the tasks' segments.
pub(crate) fn group_batch(batch: &Batch, grouped: &mut Batch) -> Vec<TaskSegment> {
    let (order, segments) = group_by_task(&batch.tasks);
    let g = grouped;
    for v in [
        &mut g.obs,
        &mut g.next_obs,
        &mut g.rewards,
        &mut g.terminated,
    ] {
        v.clear();
    }
    g.actions.clear();
    g.tasks.clear();
    for &i in &order {
        let i = i as usize;
        g.obs
            .extend_from_slice(&batch.obs[i * OBS_DIM..(i + 1) * OBS_DIM]);
        g.next_obs
            .extend_from_slice(&batch.next_obs[i * OBS_DIM..(i + 1) * OBS_DIM]);
        g.actions.push(batch.actions[i]);
        g.rewards.push(batch.rewards[i]);
        g.terminated.push(batch.terminated[i]);
        g.tasks.push(batch.tasks[i]);
    }
    segments
}
