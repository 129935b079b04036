//! BRC — Bigger, Regularized, Categorical: a BroNet (residual MLP with LayerNorm and a 32-d
//! task embedding) predicting C51 return distributions, trained with cross-entropy against
//! the projected distributional Bellman target, AdamW (decoupled weight decay) and global
//! gradient-norm clipping. The next action is chosen by the online network (double DQN) and
//! evaluated by the target network.
//!
//! With `categorical = false` (the ablation for "is categorical better?") the same BroNet
//! has one scalar Q per action and learns from the double-DQN mean-squared TD error.
//!
//! The projection is done on the host in plain Rust: it is a tiny scatter that tensor ops
//! express badly, and it must conserve probability mass exactly. The predecessor's version
//! dropped all mass whenever a target fell exactly on an atom (`floor(b) == ceil(b)`), which
//! every terminal LunarLander reward (±100 on [−100, 300]) does.

use std::path::Path;

use brc_buffer::Batch;
use brc_nn::ops::{log_softmax, softmax};
use brc_nn::BroNet;
use candle_core::{Tensor, D};
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde_json::json;

use crate::checkpoint::{self, Schedules};
use crate::exploration::EpsilonGreedy;
use crate::optim::AdamW;
use crate::td::BatchTensors;
use crate::{
    Agent, AgentContext, AgentError, AgentKind, BrcConfig, ReplaySource, Result, UpdateStats,
    NUM_ACTIONS, OBS_DIM,
};

/// The fixed C51 support: `n` atoms evenly spaced on `[v_min, v_max]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Support {
    /// Lowest atom.
    pub v_min: f64,
    /// Highest atom.
    pub v_max: f64,
    /// Number of atoms (≥ 2).
    pub n: usize,
}

impl Support {
    /// Distance between neighbouring atoms.
    pub fn delta(&self) -> f64 {
        (self.v_max - self.v_min) / (self.n - 1) as f64
    }

    /// The atom values z_0..z_{n−1}.
    pub fn atoms(&self) -> Vec<f32> {
        (0..self.n)
            .map(|i| (self.v_min + i as f64 * self.delta()) as f32)
            .collect()
    }
}

/// Projects the distribution `probs` over the support's atoms, shifted to `reward + discount·z`,
/// back onto the support, writing the result into `out` (overwritten).
///
/// `discount` is γ(1 − terminated). Every atom's mass goes wholly to the atom it lands on
/// exactly, or is split between its two neighbours in proportion to the distance; values
/// outside the support are clamped to the edge atoms. The total mass is therefore conserved
/// exactly (up to rounding), and the mean equals `reward + discount·mean(probs)` wherever
/// nothing was clamped.
pub fn project_distribution(
    probs: &[f32],
    reward: f64,
    discount: f64,
    support: &Support,
    out: &mut [f32],
) {
    debug_assert_eq!(probs.len(), support.n);
    debug_assert_eq!(out.len(), support.n);
    out.fill(0.0);
    let last = (support.n - 1) as f64;
    let delta = support.delta();
    for (j, &p) in probs.iter().enumerate() {
        let z = support.v_min + j as f64 * delta;
        let tz = (reward + discount * z).clamp(support.v_min, support.v_max);
        let b = ((tz - support.v_min) / delta).clamp(0.0, last);
        let lower = b.floor();
        let frac = b - lower;
        let l = lower as usize;
        if frac == 0.0 {
            out[l] += p;
        } else {
            // b < last here, so l + 1 is an atom.
            out[l] += p * (1.0 - frac) as f32;
            out[l + 1] += p * frac as f32;
        }
    }
}

/// The BRC agent.
pub struct Brc {
    config: BrcConfig,
    ctx: AgentContext,
    support: Support,
    /// The atoms as a `[atoms]` tensor, for expected values.
    atoms: Tensor,
    /// The atoms in return units (`atoms / reward_scale`), for the Q-values the agent reports.
    return_atoms: Tensor,
    online: BroNet,
    target: BroNet,
    optimizer: AdamW,
    exploration: EpsilonGreedy,
    rng: Pcg32,
    /// Episodes finished, over all tasks (target copies count these).
    episodes: u64,
}

impl Brc {
    /// A freshly initialised agent.
    pub fn new(config: BrcConfig, ctx: AgentContext) -> Result<Self> {
        let mut init_rng = Pcg32::seed_from_u64(ctx.seed);
        let online = BroNet::new(config.network(ctx.num_tasks()), &mut init_rng, &ctx.device)?;
        let target = online.deep_clone()?;
        let optimizer = AdamW::new(online.params().vars(), config.lr, config.weight_decay)?;
        let support = Support {
            v_min: config.v_min,
            v_max: config.v_max,
            n: config.num_atoms,
        };
        let atoms = Tensor::from_vec(support.atoms(), config.num_atoms, &ctx.device)?;
        Ok(Self {
            return_atoms: (&atoms / config.reward_scale)?,
            atoms,
            support,
            exploration: EpsilonGreedy::new(ctx.exploration),
            rng: Pcg32::seed_from_u64(ctx.seed ^ 0x5eed_e791),
            config,
            ctx,
            online,
            target,
            optimizer,
            episodes: 0,
        })
    }

    /// The training loss on `batch` and the taken actions' Q-values (in return units).
    fn loss(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let b = BatchTensors::new(batch, &self.ctx.device)?;
        if self.config.categorical {
            self.categorical_loss(batch, &b)
        } else {
            self.scalar_loss(&b)
        }
    }

    /// Cross-entropy between the projected target distribution and the online network's
    /// distribution of the taken action.
    fn categorical_loss(&self, batch: &Batch, b: &BatchTensors) -> Result<(Tensor, Tensor)> {
        let device = &self.ctx.device;
        let n = self.support.n;
        let rows = batch.len();

        // Target: a* = argmax_a E[Z_online(s', a)], distribution Z_target(s', a*).
        let next_online = self.online.forward(&b.next_obs, &b.tasks)?.detach();
        let next_q = softmax(&next_online)?
            .broadcast_mul(&self.atoms)?
            .sum(D::Minus1)?;
        let next_actions = next_q.argmax(D::Minus1)?.to_vec1::<u32>()?;
        let next_target = softmax(&self.target.forward(&b.next_obs, &b.tasks)?.detach())?;
        let next_probs = next_target.flatten_all()?.to_vec1::<f32>()?;
        let mut projected = vec![0.0f32; rows * n];
        for i in 0..rows {
            let a = next_actions[i] as usize;
            let start = (i * NUM_ACTIONS + a) * n;
            let discount = self.ctx.gamma * f64::from(1.0 - batch.terminated[i]);
            project_distribution(
                &next_probs[start..start + n],
                f64::from(batch.rewards[i]) * self.config.reward_scale,
                discount,
                &self.support,
                &mut projected[i * n..(i + 1) * n],
            );
        }
        let target = Tensor::from_vec(projected, (rows, n), device)?;

        // Prediction: log-probabilities of the taken action, selected with a one-hot mask.
        let mut one_hot = vec![0.0f32; rows * NUM_ACTIONS];
        for (i, &a) in batch.actions.iter().enumerate() {
            one_hot[i * NUM_ACTIONS + a as usize] = 1.0;
        }
        let one_hot = Tensor::from_vec(one_hot, (rows, NUM_ACTIONS, 1), device)?;
        let logits = self.online.forward(&b.obs, &b.tasks)?;
        let taken = logits.broadcast_mul(&one_hot)?.sum(1)?;
        let log_p = log_softmax(&taken)?;
        let loss = (target * &log_p)?.sum(D::Minus1)?.mean_all()?.neg()?;
        let q_taken = log_p
            .detach()
            .exp()?
            .broadcast_mul(&self.return_atoms)?
            .sum(D::Minus1)?;
        Ok((loss, q_taken))
    }

    /// The ablation's loss: mean of (Q(s, a) − (s·r + γ(1 − done) Q_target(s', a*)))² with
    /// a* = argmax_a Q_online(s', a), in reward-scaled units.
    fn scalar_loss(&self, b: &BatchTensors) -> Result<(Tensor, Tensor)> {
        let scalar = |logits: Tensor| logits.squeeze(D::Minus1);
        let next_actions = scalar(self.online.forward(&b.next_obs, &b.tasks)?.detach())?
            .argmax_keepdim(D::Minus1)?;
        let next_q = scalar(self.target.forward(&b.next_obs, &b.tasks)?.detach())?
            .gather(&next_actions, 1)?
            .squeeze(1)?;
        let rewards = b.rewards.affine(self.config.reward_scale, 0.0)?;
        let td_target = (rewards + (next_q * &b.not_done)?.affine(self.ctx.gamma, 0.0)?)?;
        let q_taken = scalar(self.online.forward(&b.obs, &b.tasks)?)?
            .gather(&b.actions, 1)?
            .squeeze(1)?;
        let loss = (&q_taken - td_target)?.sqr()?.mean_all()?;
        let q_taken = q_taken
            .detach()
            .affine(1.0 / self.config.reward_scale, 0.0)?;
        Ok((loss, q_taken))
    }

    /// Sets the optimizer's learning rate for the episodes done: linear from `lr` to
    /// `lr × lr_final_fraction` over the run (exactly `lr` throughout when the fraction is 1).
    fn schedule_lr(&mut self) {
        let progress = (self.episodes as f64 / self.ctx.total_episodes.max(1) as f64).min(1.0);
        let lr = self.config.lr * (1.0 - (1.0 - self.config.lr_final_fraction) * progress);
        self.optimizer.set_learning_rate(lr);
    }

    fn check_task(&self, task: usize) -> Result<()> {
        checkpoint::check_task(task, self.ctx.num_tasks())
    }

    fn config_json(&self) -> serde_json::Value {
        json!({ "agent": self.config, "tasks": self.ctx.task_names })
    }
}

impl Agent for Brc {
    fn kind(&self) -> AgentKind {
        AgentKind::Brc
    }

    fn num_params(&self) -> usize {
        self.online.num_params()
    }

    fn q_values(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<[f32; NUM_ACTIONS]> {
        self.check_task(task)?;
        let device = &self.ctx.device;
        let o = Tensor::from_slice(obs, (1, OBS_DIM), device)?;
        let t = Tensor::from_slice(&[task as u32], 1, device)?;
        let logits = self.online.forward(&o, &t)?;
        let q = if self.config.categorical {
            softmax(&logits)?
                .broadcast_mul(&self.return_atoms)?
                .sum(D::Minus1)?
        } else {
            logits.affine(1.0 / self.config.reward_scale, 0.0)?
        };
        let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
        q.try_into()
            .map_err(|_| AgentError::Batch("network did not return 4 actions".into()))
    }

    fn act(&mut self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize> {
        match self.exploration.explore(&mut self.rng) {
            Some(action) => Ok(action),
            None => self.greedy_action(obs, task),
        }
    }

    fn epsilon(&self, _task: usize) -> f64 {
        self.exploration.epsilon
    }

    fn replay_source(&self, _task: usize) -> ReplaySource {
        ReplaySource::Uniform
    }

    fn min_replay(&self, _task: usize) -> usize {
        self.ctx.min_replay
    }

    fn update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        let (loss, q_taken) = self.loss(batch)?;
        let grads = loss.backward()?;
        let grad_norm = self.optimizer.step(&grads, self.config.grad_clip)?;
        if self.config.target_tau > 0.0 {
            self.target
                .params()
                .soft_update_from(self.online.params(), self.config.target_tau)?;
        }
        Ok(UpdateStats {
            loss: loss.to_scalar()?,
            grad_norm,
            mean_q: q_taken.mean_all()?.to_scalar()?,
        })
    }

    fn end_episode(&mut self, task: usize) -> Result<()> {
        self.check_task(task)?;
        self.exploration.end_episode();
        self.episodes += 1;
        self.schedule_lr();
        // With Polyak updates the target follows every update instead.
        if self.config.target_tau == 0.0
            && self
                .episodes
                .is_multiple_of(self.ctx.target_update_episodes as u64)
        {
            self.target.copy_from(&self.online)?;
        }
        Ok(())
    }

    fn task_gradients(&mut self, batches: &[Batch]) -> Result<Option<Vec<Vec<f32>>>> {
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let (loss, _) = self.loss(batch)?;
            out.push(crate::td::flat_gradient(&loss, self.online.params())?);
        }
        Ok(Some(out))
    }

    fn save(&self, path: &Path) -> Result<()> {
        let schedules = Schedules {
            exploration: self.exploration,
            rng: self.rng.clone(),
            episodes: self.episodes,
        };
        let nets = [self.online.params(), self.target.params()];
        checkpoint::save_single(
            path,
            self.kind(),
            &self.config_json(),
            nets,
            &self.optimizer,
            schedules,
        )
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let nets = [self.online.params(), self.target.params()];
        let device = self.ctx.device.clone();
        let config = self.config_json();
        let s = checkpoint::load_single(
            path,
            self.kind(),
            &config,
            &device,
            nets,
            &mut self.optimizer,
        )?;
        self.exploration = s.exploration;
        self.rng = s.rng;
        self.episodes = s.episodes;
        self.schedule_lr();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SUPPORT: Support = Support {
        v_min: -100.0,
        v_max: 300.0,
        n: 51,
    };

    /// The textbook scalar projection, one atom at a time, with the "on an atom" case handled.
    fn reference(probs: &[f32], r: f64, discount: f64, s: &Support) -> Vec<f64> {
        let mut m = vec![0.0f64; s.n];
        for (j, &p) in probs.iter().enumerate() {
            let z = s.v_min + j as f64 * s.delta();
            let tz = (r + discount * z).max(s.v_min).min(s.v_max);
            let b = (tz - s.v_min) / s.delta();
            let (l, u) = (b.floor(), b.ceil());
            if l == u {
                m[l as usize] += f64::from(p);
            } else {
                m[l as usize] += f64::from(p) * (u - b);
                m[u as usize] += f64::from(p) * (b - l);
            }
        }
        m
    }

    fn uniform() -> Vec<f32> {
        vec![1.0 / 51.0; 51]
    }

    fn project(probs: &[f32], r: f64, discount: f64) -> Vec<f32> {
        let mut out = vec![0.0; SUPPORT.n];
        project_distribution(probs, r, discount, &SUPPORT, &mut out);
        out
    }

    #[test]
    fn terminal_rewards_on_atoms_keep_all_mass() {
        // ±100 land exactly on atoms (−100 is atom 0, +100 is atom 25): the predecessor lost
        // all of this mass.
        for r in [-100.0, 100.0, -150.0, -37.3, 0.0, 300.0, 1000.0] {
            let out = project(&uniform(), r, 0.0);
            let sum: f32 = out.iter().sum();
            assert!((sum - 1.0).abs() < 1e-6, "reward {r}: mass {sum}");
            let mean: f64 = out
                .iter()
                .zip(SUPPORT.atoms())
                .map(|(p, z)| f64::from(*p) * f64::from(z))
                .sum();
            assert!(
                (mean - r.clamp(-100.0, 300.0)).abs() < 1e-3,
                "reward {r}: mean {mean}"
            );
        }
        assert_eq!(project(&uniform(), 100.0, 0.0)[25], 1.0);
        assert_eq!(project(&uniform(), -100.0, 0.0)[0], 1.0);
    }

    #[test]
    fn clamped_non_terminal_edges_keep_all_mass() {
        let out = project(&uniform(), 250.0, 0.99);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[50] > 0.3, "mass beyond v_max collects on the last atom");
        let out = project(&uniform(), -200.0, 0.99);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(out[0] > 0.4, "mass below v_min collects on the first atom");
    }

    fn distribution() -> impl Strategy<Value = Vec<f32>> {
        prop::collection::vec(0.0f32..1.0, 51).prop_map(|v| {
            let s: f32 = v.iter().sum::<f32>() + 1e-6;
            v.iter().map(|x| (x + 1e-6 / 51.0) / s).collect()
        })
    }

    proptest! {
        #[test]
        fn projection_conserves_mass_and_matches_the_scalar_reference(
            probs in distribution(),
            r in -200.0f64..400.0,
            terminal in any::<bool>(),
        ) {
            let discount = if terminal { 0.0 } else { 0.99 };
            let out = project(&probs, r, discount);
            let mass_in: f32 = probs.iter().sum();
            let mass_out: f32 = out.iter().sum();
            prop_assert!((mass_in - mass_out).abs() < 1e-6);
            let reference = reference(&probs, r, discount, &SUPPORT);
            for (a, b) in out.iter().zip(&reference) {
                prop_assert!((f64::from(*a) - b).abs() < 1e-6);
            }
        }

        #[test]
        fn projected_mean_is_the_bellman_mean_when_nothing_is_clamped(
            probs in distribution(),
            r in -1.0f64..1.0,
        ) {
            // With γ = 0.99 and |r| ≤ 1, atoms whose target stays inside [v_min, v_max] are
            // the only ones carrying mass here: put the mass on the middle atoms only.
            let mut probs = probs;
            for (j, p) in probs.iter_mut().enumerate() {
                if !(5..=45).contains(&j) { *p = 0.0; }
            }
            let total: f32 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
            let atoms = SUPPORT.atoms();
            let mean = |d: &[f32]| -> f64 {
                d.iter().zip(&atoms).map(|(p, z)| f64::from(*p) * f64::from(*z)).sum()
            };
            let out = project(&probs, r, 0.99);
            prop_assert!((mean(&out) - (r + 0.99 * mean(&probs))).abs() < 1e-3);
        }
    }
}
