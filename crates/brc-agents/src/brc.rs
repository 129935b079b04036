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
use std::cell::RefCell;
use std::ops::Range;

use brc_nn::ops::{log_softmax, softmax};
use brc_nn::task_residual::TaskSegment;
use brc_nn::{BroNet, BroNetCpu, HostFlipout, HostGradients, ResidualBroNetCpu, ResidualWeights};
use candle_core::{Tensor, D};
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde_json::json;

use crate::checkpoint::{self, Schedules};
use crate::exploration::EpsilonGreedy;
use crate::optim::AdamW;
use crate::surgery::{split_by_task, Surgery, SurgeryDiagnostics};
use crate::td::{param_gradients, BatchTensors};
use crate::varshare::{self, ParameterCounts, VarShare, VarShareDiagnostics};
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
    /// The CPU fast path (`None` on other devices and for networks it does not compute).
    cpu: Option<RefCell<CpuPath>>,
    /// The gradient method other than the mean, with its state.
    surgery: Option<Surgery>,
    /// An update's batch split by task (surgery only), kept to reuse its buffers.
    task_batches: Vec<Batch>,
    /// VarShare's task residuals (`[agent.varshare]`).
    varshare: Option<VarShare>,
    /// The ensemble's further critics (`agent.critics − 1`, none by default). `online` and
    /// `target` above are the first; all learn toward one target (see [`Brc::categorical_loss`]).
    others: Vec<Critic>,
    /// VarShare's CPU fast path (`None` without VarShare, on other devices and for networks
    /// it does not compute; candle's graph then computes the residuals).
    varshare_cpu: Option<RefCell<VarShareCpu>>,
}

/// A critic of the ensemble beyond the first: its own online network and target copy.
struct Critic {
    online: BroNet,
    target: BroNet,
}

/// The residual-BroNet CPU engines and the buffers of one VarShare update (see
/// [`brc_nn::ResidualBroNetCpu`]; candle's graph is the reference).
struct VarShareCpu {
    /// The online network on `[s; s′]` grouped by task, Flipout noise on `s`.
    online: ResidualBroNetCpu,
    /// The target network on `s′` grouped by task.
    target: ResidualBroNetCpu,
    /// The update's batch with its rows grouped by task.
    grouped: Batch,
    obs: Vec<f32>,
    /// The segments of `[s; s′]`, and of `s′` alone.
    segments: Vec<TaskSegment>,
    next_segments: Vec<TaskSegment>,
    dlogits: Vec<f32>,
    grads: HostGradients,
    log_p: Vec<f32>,
    projected: Vec<f32>,
    mean_target: Vec<f32>,
}

impl VarShareCpu {
    fn new(net: &BroNet) -> Result<Option<Self>> {
        let c = *net.config();
        if !net.params().device().is_cpu() || !ResidualBroNetCpu::supports(&c) {
            return Ok(None);
        }
        Ok(Some(Self {
            online: ResidualBroNetCpu::new(c)?,
            target: ResidualBroNetCpu::new(c)?,
            grouped: Batch::new(),
            obs: Vec::new(),
            segments: Vec::new(),
            next_segments: Vec::new(),
            dlogits: Vec::new(),
            grads: Vec::new(),
            log_p: vec![0.0; c.num_atoms],
            projected: vec![0.0; c.num_atoms],
            mean_target: vec![0.0; c.num_atoms],
        }))
    }

    /// Puts `batch`'s rows into `self.grouped` grouped by task (the order candle's residual
    /// layers use) and lays out `[s; s′]` with its segments.
    fn group(&mut self, batch: &Batch) {
        let segments = varshare::group_batch(batch, &mut self.grouped);
        let g = &self.grouped;
        self.obs.clear();
        self.obs.extend_from_slice(&g.obs);
        self.obs.extend_from_slice(&g.next_obs);
        let rows = batch.len();
        self.segments.clear();
        self.segments.extend_from_slice(&segments);
        self.segments.extend(segments.iter().map(|s| TaskSegment {
            start: s.start + rows,
            ..*s
        }));
        self.next_segments = segments;
    }
}

/// The BroNet CPU engines and the buffers of one update, kept between updates so that an
/// update allocates nothing (see [`brc_nn::BroNetCpu`]; candle's graph is the reference).
struct CpuPath {
    /// The online network on `[s; s']` (one pass serves the prediction and the double-DQN
    /// argmax), its activations kept for the backward pass.
    online: BroNetCpu,
    /// The target network on `s'`.
    target: BroNetCpu,
    /// Greedy actions, batch 1 (its own buffers, so acting never touches an update's).
    act: BroNetCpu,
    obs: Vec<f32>,
    tasks: Vec<u32>,
    dlogits: Vec<f32>,
    /// Per segment (task) gradients.
    grads: Vec<HostGradients>,
    /// One row's scratch: log-probabilities, projected target, the ensemble's mean target
    /// distribution.
    log_p: Vec<f32>,
    projected: Vec<f32>,
    mean_target: Vec<f32>,
    /// The engines and buffers of the ensemble's further critics, in [`Brc::others`]' order.
    others: Vec<CriticCpu>,
}

/// [`CpuPath`]'s engines and buffers for one further critic of the ensemble.
struct CriticCpu {
    online: BroNetCpu,
    target: BroNetCpu,
    act: BroNetCpu,
    dlogits: Vec<f32>,
    grads: HostGradients,
}

impl CpuPath {
    /// The fast path for `net` and `others` further critics of its shape, or `None` where it
    /// does not apply.
    fn new(net: &BroNet, others: usize) -> Result<Option<Self>> {
        let c = *net.config();
        if !net.params().device().is_cpu() || !BroNetCpu::supports(&c) {
            return Ok(None);
        }
        let others = (0..others)
            .map(|_| {
                Ok(CriticCpu {
                    online: BroNetCpu::new(c)?,
                    target: BroNetCpu::new(c)?,
                    act: BroNetCpu::new(c)?,
                    dlogits: Vec::new(),
                    grads: Vec::new(),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Some(Self {
            online: BroNetCpu::new(c)?,
            target: BroNetCpu::new(c)?,
            act: BroNetCpu::new(c)?,
            obs: Vec::new(),
            tasks: Vec::new(),
            dlogits: Vec::new(),
            grads: Vec::new(),
            log_p: vec![0.0; c.num_atoms],
            projected: vec![0.0; c.num_atoms],
            mean_target: vec![0.0; c.num_atoms],
            others,
        }))
    }
}

/// What the loss of one forward pass gives: the loss, the mean Q(s, a) in return units.
struct HostLoss {
    loss: f64,
    mean_q: f64,
}

/// `out = log_softmax(x)`, max-shifted like [`brc_nn::ops::log_softmax`].
fn log_softmax_row(x: &[f32], out: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = x.iter().map(|v| (v - max).exp()).sum();
    let lse = sum.ln();
    for (o, v) in out.iter_mut().zip(x) {
        *o = (v - max) - lse;
    }
}

/// E[Z] of the distribution with these logits over `atoms` (`scratch` holds its
/// log-probabilities).
fn expected_value(logits: &[f32], scratch: &mut [f32], atoms: &[f32]) -> f32 {
    log_softmax_row(logits, scratch);
    scratch.iter().zip(atoms).map(|(l, z)| l.exp() * z).sum()
}

/// One critic's online pass over `[s; s′]` (`obs`, the first `rows` rows are s) and its
/// target pass over s′, side by side when the engine runs on several threads.
fn forward_pair<'a>(
    online: &'a mut BroNetCpu,
    target: &'a mut BroNetCpu,
    (online_net, target_net): (&BroNet, &BroNet),
    obs: &[f32],
    tasks: &[u32],
    rows: usize,
) -> Result<(&'a [f32], &'a [f32])> {
    let next = (&obs[rows * OBS_DIM..], &tasks[rows..]);
    let (logits, next_target) = if online.parallel() {
        rayon::join(
            || online.forward(online_net, obs, tasks),
            || target.forward(target_net, next.0, next.1),
        )
    } else {
        (
            online.forward(online_net, obs, tasks),
            target.forward(target_net, next.0, next.1),
        )
    };
    Ok((logits?, next_target?))
}

impl Brc {
    /// A freshly initialised agent.
    pub fn new(config: BrcConfig, ctx: AgentContext) -> Result<Self> {
        let mut init_rng = Pcg32::seed_from_u64(ctx.seed);
        let online = BroNet::new(config.network(ctx.num_tasks()), &mut init_rng, &ctx.device)?;
        let varshare = match &config.varshare {
            Some(v) => Some(VarShare::new(v.clone(), ctx.seed, &online)?),
            None => None,
        };
        let target = online.deep_clone()?;
        // Drawn after the first critic's weights, so one critic is the design note's BRC.
        let others = (1..config.critics)
            .map(|_| {
                let online =
                    BroNet::new(config.network(ctx.num_tasks()), &mut init_rng, &ctx.device)?;
                Ok(Critic {
                    target: online.deep_clone()?,
                    online,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut vars = online.params().vars();
        let mut decays = varshare::decays(online.params());
        for c in &others {
            vars.extend(c.online.params().vars());
            decays.extend(varshare::decays(c.online.params()));
        }
        let mut optimizer = AdamW::new(vars, config.lr, config.weight_decay)?;
        optimizer.set_decay_mask(decays);
        let support = Support {
            v_min: config.v_min,
            v_max: config.v_max,
            n: config.num_atoms,
        };
        let atoms = Tensor::from_vec(support.atoms(), config.num_atoms, &ctx.device)?;
        let cpu = CpuPath::new(&online, others.len())?.map(RefCell::new);
        let varshare_cpu = match &varshare {
            Some(_) => VarShareCpu::new(&online)?.map(RefCell::new),
            None => None,
        };
        let surgery = Surgery::new(config.gradient_settings(), online.params(), ctx.num_tasks());
        Ok(Self {
            surgery,
            varshare,
            others,
            varshare_cpu,
            task_batches: Vec::new(),
            return_atoms: (&atoms / config.reward_scale)?,
            atoms,
            support,
            exploration: EpsilonGreedy::new(ctx.exploration),
            rng: Pcg32::seed_from_u64(ctx.seed ^ 0x5eed_e791),
            config,
            ctx,
            online,
            target,
            cpu,
            optimizer,
            episodes: 0,
        })
    }

    /// The training loss on `batch` and the taken actions' Q-values (in return units).
    fn loss(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        self.loss_with(batch, ResidualWeights::Mean)
    }

    /// [`Brc::loss`] with the prediction Q(s, ·) from the residual weights `weights` (VarShare;
    /// a plain BroNet ignores them). Targets and the double-DQN argmax use the means.
    fn loss_with(&self, batch: &Batch, weights: ResidualWeights<'_>) -> Result<(Tensor, Tensor)> {
        let b = BatchTensors::new(batch, &self.ctx.device)?;
        if self.config.categorical {
            self.categorical_loss(batch, &b, weights)
        } else {
            self.scalar_loss(&b, weights)
        }
    }

    /// Cross-entropy between the projected target distribution and the online network's
    /// distribution of the taken action. With an ensemble the target is the target critics'
    /// mean distribution at a* = argmax of the online critics' mean expected value, and the
    /// loss the critics' mean cross-entropy.
    fn categorical_loss(
        &self,
        batch: &Batch,
        b: &BatchTensors,
        weights: ResidualWeights<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let device = &self.ctx.device;
        let n = self.support.n;
        let rows = batch.len();
        let expected = |logits: Tensor| -> Result<Tensor> {
            Ok(softmax(&logits.detach())?
                .broadcast_mul(&self.atoms)?
                .sum(D::Minus1)?)
        };

        // Target: a* = argmax_a E[Z_online(s', a)], distribution Z_target(s', a*).
        let mut next_q = expected(self.online.forward(&b.next_obs, &b.tasks)?)?;
        let mut next_target = softmax(&self.target.forward(&b.next_obs, &b.tasks)?.detach())?;
        for c in &self.others {
            next_q = (next_q + expected(c.online.forward(&b.next_obs, &b.tasks)?)?)?;
            next_target =
                (next_target + softmax(&c.target.forward(&b.next_obs, &b.tasks)?.detach())?)?;
        }
        if !self.others.is_empty() {
            next_q = next_q.affine(self.inv_critics().into(), 0.0)?;
            next_target = next_target.affine(self.inv_critics().into(), 0.0)?;
        }
        let next_actions = next_q.argmax(D::Minus1)?.to_vec1::<u32>()?;
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
        let cross_entropy = |logits: Tensor| -> Result<(Tensor, Tensor)> {
            let taken = logits.broadcast_mul(&one_hot)?.sum(1)?;
            let log_p = log_softmax(&taken)?;
            let loss = (&target * &log_p)?.sum(D::Minus1)?.mean_all()?.neg()?;
            let q_taken = log_p
                .detach()
                .exp()?
                .broadcast_mul(&self.return_atoms)?
                .sum(D::Minus1)?;
            Ok((loss, q_taken))
        };
        let (mut loss, mut q_taken) =
            cross_entropy(self.online.forward_with(&b.obs, &b.tasks, weights)?)?;
        for c in &self.others {
            let (l, q) = cross_entropy(c.online.forward(&b.obs, &b.tasks)?)?;
            (loss, q_taken) = ((loss + l)?, (q_taken + q)?);
        }
        if !self.others.is_empty() {
            loss = loss.affine(self.inv_critics().into(), 0.0)?;
            q_taken = q_taken.affine(self.inv_critics().into(), 0.0)?;
        }
        Ok((loss, q_taken))
    }

    /// The ablation's loss: mean of (Q(s, a) − (s·r + γ(1 − done) Q_target(s', a*)))² with
    /// a* = argmax_a Q_online(s', a), in reward-scaled units (an ensemble: the critics' means
    /// in the target, their mean loss).
    fn scalar_loss(
        &self,
        b: &BatchTensors,
        weights: ResidualWeights<'_>,
    ) -> Result<(Tensor, Tensor)> {
        let scalar = |logits: Tensor| logits.squeeze(D::Minus1);
        let mut next_online = scalar(self.online.forward(&b.next_obs, &b.tasks)?.detach())?;
        let mut next_target = scalar(self.target.forward(&b.next_obs, &b.tasks)?.detach())?;
        for c in &self.others {
            next_online = (next_online + scalar(c.online.forward(&b.next_obs, &b.tasks)?)?)?;
            next_target = (next_target + scalar(c.target.forward(&b.next_obs, &b.tasks)?)?)?;
        }
        if !self.others.is_empty() {
            next_online = next_online.affine(self.inv_critics().into(), 0.0)?;
            next_target = next_target.affine(self.inv_critics().into(), 0.0)?;
        }
        let next_actions = next_online.detach().argmax_keepdim(D::Minus1)?;
        let next_q = next_target.detach().gather(&next_actions, 1)?.squeeze(1)?;
        let rewards = b.rewards.affine(self.config.reward_scale, 0.0)?;
        let td_target = (rewards + (next_q * &b.not_done)?.affine(self.ctx.gamma, 0.0)?)?;
        let squared_error = |logits: Tensor| -> Result<(Tensor, Tensor)> {
            let q_taken = scalar(logits)?.gather(&b.actions, 1)?.squeeze(1)?;
            let loss = (&q_taken - &td_target)?.sqr()?.mean_all()?;
            Ok((loss, q_taken))
        };
        let (mut loss, mut q_taken) =
            squared_error(self.online.forward_with(&b.obs, &b.tasks, weights)?)?;
        for c in &self.others {
            let (l, q) = squared_error(c.online.forward(&b.obs, &b.tasks)?)?;
            (loss, q_taken) = ((loss + l)?, (q_taken + q)?);
        }
        if !self.others.is_empty() {
            loss = loss.affine(self.inv_critics().into(), 0.0)?;
            q_taken = q_taken.affine(self.inv_critics().into(), 0.0)?;
        }
        let q_taken = q_taken
            .detach()
            .affine(1.0 / self.config.reward_scale, 0.0)?;
        Ok((loss, q_taken))
    }

    /// Every critic's (online, target) networks, the first first.
    fn critics(&self) -> impl Iterator<Item = (&BroNet, &BroNet)> {
        std::iter::once((&self.online, &self.target))
            .chain(self.others.iter().map(|c| (&c.online, &c.target)))
    }

    /// Every network's variables under its checkpoint prefix: `online.`/`target.` for the
    /// first critic (as before ensembles existed), `critic<k>.online.`/`…target.` after it.
    fn checkpoint_nets(&self) -> Vec<(String, brc_nn::ParamStore)> {
        let mut nets = Vec::new();
        for (k, (online, target)) in self.critics().enumerate() {
            let prefix = if k == 0 {
                String::new()
            } else {
                format!("critic{k}.")
            };
            // Clones of the handles, not of the values (see `ParamStore`).
            nets.push((format!("{prefix}online."), online.params().clone()));
            nets.push((format!("{prefix}target."), target.params().clone()));
        }
        nets
    }

    /// 1 / the number of critics: the ensemble's means.
    fn inv_critics(&self) -> f32 {
        1.0 / (1 + self.others.len()) as f32
    }

    /// The CPU fast path's forward passes and loss over `batches`, taken as consecutive
    /// segments of one pass: returns each segment's mean loss and mean Q(s, a), and leaves in
    /// `cpu.dlogits` (and each further critic's `dlogits`) the gradient of Σ_segments (segment
    /// mean loss) with respect to the logits of `[s]`. Same loss as [`Brc::categorical_loss`]
    /// / [`Brc::scalar_loss`].
    fn host_loss(
        &self,
        cpu: &mut CpuPath,
        batches: &[&Batch],
    ) -> Result<(Vec<HostLoss>, Vec<Range<usize>>)> {
        let mut segments = Vec::with_capacity(batches.len());
        let mut total = 0;
        for b in batches {
            if b.is_empty() {
                return Err(AgentError::Batch("empty batch".into()));
            }
            segments.push(total..total + b.len());
            total += b.len();
        }
        let CpuPath {
            online,
            target,
            obs,
            tasks,
            dlogits,
            log_p,
            projected,
            mean_target,
            others,
            ..
        } = cpu;
        obs.clear();
        tasks.clear();
        for next in [false, true] {
            for b in batches {
                obs.extend_from_slice(if next { &b.next_obs } else { &b.obs });
                tasks.extend_from_slice(&b.tasks);
            }
        }
        // Atoms per action as the network has them (1 for the scalar ablation).
        let n = self.online.config().num_atoms;
        let width = NUM_ACTIONS * n;
        let (logits, next_target) = forward_pair(
            online,
            target,
            (&self.online, &self.target),
            obs,
            tasks,
            total,
        )?;
        dlogits.clear();
        dlogits.resize(total * width, 0.0);
        // Every critic: (its logits on [s; s′], its target's on s′, its logit gradients).
        let mut critics = vec![(logits, next_target, &mut dlogits[..])];
        for (c, e) in self.others.iter().zip(others.iter_mut()) {
            let (l, t) = forward_pair(
                &mut e.online,
                &mut e.target,
                (&c.online, &c.target),
                obs,
                tasks,
                total,
            )?;
            e.dlogits.clear();
            e.dlogits.resize(total * width, 0.0);
            critics.push((l, t, &mut e.dlogits[..]));
        }
        let out = self.host_td(
            &mut critics,
            batches,
            &segments,
            (&mut log_p[..], &mut projected[..], &mut mean_target[..]),
        );
        Ok((out, segments))
    }

    /// The TD loss of `batches` (consecutive segments of rows) for every critic: from its
    /// online logits of `[s; s′]` and its target's logits of `s′`, each segment's mean loss and
    /// mean Q(s, a) over the critics, and in the critic's `dlogits` (zeroed, `[s]`'s size) the
    /// gradient of Σ_segments (segment mean loss) with respect to its logits of `[s]`.
    /// `scratch` is one row's log-probabilities, projected target and mean target.
    fn host_td(
        &self,
        critics: &mut [(&[f32], &[f32], &mut [f32])],
        batches: &[&Batch],
        segments: &[Range<usize>],
        (log_p, projected, mean_target): (&mut [f32], &mut [f32], &mut [f32]),
    ) -> Vec<HostLoss> {
        let total = segments.last().map_or(0, |s| s.end);
        // Atoms per action as the network has them (1 for the scalar ablation).
        let n = self.online.config().num_atoms;
        let width = NUM_ACTIONS * n;
        let inv_k = 1.0 / critics.len() as f32;
        let atoms = self.support.atoms();
        let inv_scale = (1.0 / self.config.reward_scale) as f32;
        let mut out = Vec::with_capacity(batches.len());
        for (seg, batch) in segments.iter().zip(batches) {
            // Each critic's share of the segment's mean loss.
            let weight = inv_k / batch.len() as f32;
            let (mut loss, mut q_sum) = (0.0f64, 0.0f64);
            for (j, i) in seg.clone().enumerate() {
                let next = (total + i) * width..(total + i + 1) * width;
                let reward = f64::from(batch.rewards[j]) * self.config.reward_scale;
                let not_done = 1.0 - batch.terminated[j];
                let action = batch.actions[j] as usize;
                let taken = i * width + action * n..i * width + (action + 1) * n;
                let (mut row_loss, mut q) = (0.0f32, 0.0f32);
                if !self.config.categorical {
                    // One "atom" per action: the scalar double-DQN TD error.
                    let mut next_q = [0.0f32; NUM_ACTIONS];
                    for (logits, _, _) in critics.iter() {
                        next_q
                            .iter_mut()
                            .zip(&logits[next.clone()])
                            .for_each(|(s, v)| *s += v);
                    }
                    let a_star = crate::argmax(&next_q.map(|v| v * inv_k));
                    let next_value = critics
                        .iter()
                        .map(|(_, t, _)| t[i * width + a_star])
                        .sum::<f32>()
                        * inv_k;
                    let td = (reward as f32) + (next_value * not_done) * self.ctx.gamma as f32;
                    for (logits, _, grad) in critics.iter_mut() {
                        let err = logits[taken.start] - td;
                        row_loss += err * err;
                        q += logits[taken.start] * inv_scale;
                        grad[taken.start] = weight * 2.0 * err;
                    }
                } else {
                    // a* = argmax_a of the critics' mean E[Z_online(s', a)]; the target
                    // critics' mean distribution there, projected.
                    let mut best = (0, f32::NEG_INFINITY);
                    for a in 0..NUM_ACTIONS {
                        let q: f32 = critics
                            .iter()
                            .map(|(l, _, _)| {
                                let row = &l[next.start + a * n..next.start + (a + 1) * n];
                                expected_value(row, log_p, &atoms)
                            })
                            .sum::<f32>()
                            * inv_k;
                        if q > best.1 {
                            best = (a, q);
                        }
                    }
                    let start = i * width + best.0 * n;
                    mean_target.fill(0.0);
                    for (_, t, _) in critics.iter() {
                        log_softmax_row(&t[start..start + n], log_p);
                        mean_target
                            .iter_mut()
                            .zip(log_p.iter())
                            .for_each(|(m, l)| *m += l.exp());
                    }
                    mean_target.iter_mut().for_each(|m| *m *= inv_k);
                    let discount = self.ctx.gamma * f64::from(not_done);
                    project_distribution(mean_target, reward, discount, &self.support, projected);
                    // Cross-entropy of each critic's taken-action distribution against it.
                    let mass: f32 = projected.iter().sum();
                    for (logits, _, grad) in critics.iter_mut() {
                        log_softmax_row(&logits[taken.clone()], log_p);
                        let grad = &mut grad[taken.clone()];
                        for k in 0..n {
                            let p = log_p[k].exp();
                            row_loss -= projected[k] * log_p[k];
                            q += p * (atoms[k] * inv_scale);
                            grad[k] = weight * (p * mass - projected[k]);
                        }
                    }
                }
                loss += f64::from(row_loss * inv_k);
                q_sum += f64::from(q * inv_k);
            }
            out.push(HostLoss {
                loss: loss / batch.len() as f64,
                mean_q: q_sum / batch.len() as f64,
            });
        }
        out
    }

    /// Every critic's backward pass after [`Brc::host_loss`] of one batch (`segment`, the
    /// whole batch): the first critic's gradients in `cpu.grads[0]`, each further critic's in
    /// its own `grads`.
    fn host_backward(&self, cpu: &mut CpuPath, segment: &[Range<usize>]) -> Result<()> {
        let CpuPath {
            online,
            dlogits,
            grads,
            others,
            ..
        } = cpu;
        grads.resize_with(1, Vec::new);
        online.backward(&self.online, dlogits, segment, &mut grads[..1])?;
        for (c, e) in self.others.iter().zip(others.iter_mut()) {
            let g = std::slice::from_mut(&mut e.grads);
            e.online.backward(&c.online, &e.dlogits, segment, g)?;
        }
        Ok(())
    }

    /// One update on the CPU fast path: forward, loss and backward by [`BroNetCpu`], AdamW on
    /// the host gradients.
    fn update_on_cpu(&mut self, batch: &Batch) -> Result<UpdateStats> {
        let cell = self.cpu.as_ref().expect("called with a CPU path");
        let mut cpu = cell.borrow_mut();
        let (losses, segments) = self.host_loss(&mut cpu, &[batch])?;
        self.host_backward(&mut cpu, &segments)?;
        let CpuPath { grads, others, .. } = &*cpu;
        let grad_norm = if others.is_empty() {
            self.optimizer.step_host(&grads[0], self.config.grad_clip)?
        } else {
            // The optimizer holds the critics' variables in order, the first critic's first.
            let all: Vec<&[f32]> = grads[0]
                .iter()
                .chain(others.iter().flat_map(|e| e.grads.iter()))
                .map(Vec::as_slice)
                .collect();
            self.optimizer.step_host(&all, self.config.grad_clip)?
        };
        Ok(UpdateStats {
            loss: losses[0].loss as f32,
            grad_norm,
            mean_q: losses[0].mean_q as f32,
        })
    }

    /// One update with gradient surgery: per-task losses and gradients (on the CPU fast path
    /// one forward and one backward pass, the tasks as segments), the combined gradient on the
    /// host, then the same AdamW step.
    fn surgery_update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        split_by_task(batch, self.ctx.num_tasks(), &mut self.task_batches)?;
        let t = self.task_batches.len();
        let (losses, q_means, update) = if let Some(cell) = &self.cpu {
            let mut cpu = cell.borrow_mut();
            let refs: Vec<&Batch> = self.task_batches.iter().collect();
            let (host, segments) = self.host_loss(&mut cpu, &refs)?;
            let CpuPath {
                online,
                dlogits,
                grads,
                ..
            } = &mut *cpu;
            grads.resize_with(t, Vec::new);
            online.backward(&self.online, dlogits, &segments, &mut grads[..t])?;
            let losses: Vec<f64> = host.iter().map(|h| h.loss).collect();
            let surgery = self
                .surgery
                .as_mut()
                .expect("called with a gradient method");
            let update = surgery.combine(&losses, &grads[..t], &mut self.rng);
            (
                losses,
                host.iter().map(|h| h.mean_q).collect::<Vec<_>>(),
                update,
            )
        } else {
            let (mut losses, mut q_means, mut grads) = (Vec::new(), Vec::new(), Vec::new());
            for b in &self.task_batches {
                let (loss, q_taken) = self.loss(b)?;
                grads.push(param_gradients(&loss, self.online.params())?);
                losses.push(f64::from(loss.to_scalar::<f32>()?));
                q_means.push(f64::from(q_taken.mean_all()?.to_scalar::<f32>()?));
            }
            let surgery = self
                .surgery
                .as_mut()
                .expect("called with a gradient method");
            let update = surgery.combine(&losses, &grads, &mut self.rng);
            (losses, q_means, update)
        };
        let grad_norm = self
            .optimizer
            .step_from_host(&update, self.config.grad_clip)?;
        Ok(UpdateStats {
            loss: (losses.iter().sum::<f64>() / t as f64) as f32,
            grad_norm,
            mean_q: (q_means.iter().sum::<f64>() / t as f64) as f32,
        })
    }

    /// One VarShare update on the CPU fast path: the same loss, draw and penalty as
    /// [`Brc::varshare_update`], forward and backward by [`ResidualBroNetCpu`] on the rows
    /// grouped by task, AdamW on the host gradients.
    fn varshare_update_on_cpu(&mut self, batch: &Batch) -> Result<UpdateStats> {
        let cell = self.varshare_cpu.as_ref().expect("called with a CPU path");
        let mut cpu = cell.borrow_mut();
        let loss = self.varshare_host_gradients(&mut cpu, batch)?;
        let grad_norm = self
            .optimizer
            .step_host(&cpu.grads, self.config.grad_clip)?;
        Ok(UpdateStats {
            loss: loss.loss as f32,
            grad_norm,
            mean_q: loss.mean_q as f32,
        })
    }

    /// The TD loss of `batch` on this update's draw and, in `cpu.grads`, the gradient of the
    /// TD loss plus β · the mean penalty per adapter weight ([`Brc::varshare_update`]'s loss).
    fn varshare_host_gradients(&self, cpu: &mut VarShareCpu, batch: &Batch) -> Result<HostLoss> {
        if batch.is_empty() {
            return Err(AgentError::Batch("empty batch".into()));
        }
        let vs = self.varshare.as_ref().expect("called with VarShare");
        let rows = batch.len();
        let (noise, signs) = vs.draw_host(&self.online, self.optimizer.steps(), rows)?;
        cpu.group(batch);
        let variational = vs.config.mode == brc_nn::ResidualMode::Variational;
        let scale = vs.penalty_scale(&self.online);
        let sigma_prior = vs.config.sigma_prior;
        noise
            .with_host_slices(|eps| -> Result<HostLoss> {
                let flipout = variational.then_some(HostFlipout {
                    eps,
                    signs: &signs,
                    rows,
                });
                let VarShareCpu {
                    online,
                    target,
                    grouped,
                    obs,
                    segments,
                    next_segments,
                    dlogits,
                    grads,
                    log_p,
                    projected,
                    mean_target,
                } = &mut *cpu;
                let logits = online.forward(&self.online, obs, segments, flipout)?;
                let next_obs = &obs[rows * OBS_DIM..];
                let next_target = target.forward(&self.target, next_obs, next_segments, None)?;
                dlogits.clear();
                dlogits.resize(rows * NUM_ACTIONS * self.online.config().num_atoms, 0.0);
                let mut loss = self.host_td(
                    &mut [(logits, next_target, &mut dlogits[..])],
                    &[&*grouped],
                    std::slice::from_ref(&(0..rows)),
                    (&mut log_p[..], &mut projected[..], &mut mean_target[..]),
                );
                online.backward(&self.online, dlogits, flipout, grads)?;
                online.add_penalty_gradient(&self.online, sigma_prior, scale, grads)?;
                Ok(loss.remove(0))
            })
            .ok_or_else(|| AgentError::Batch("VarShare's draw is not on the CPU".into()))?
    }

    /// One VarShare update: the loss on the update's sampled weights (one ε per layer, Flipout
    /// signs per row) plus β · the mean penalty per adapter weight, on the CPU path where there
    /// is one and on candle's graph otherwise.
    fn varshare_update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        if self.varshare_cpu.is_some() {
            return self.varshare_update_on_cpu(batch);
        }
        let vs = self.varshare.as_ref().expect("called with VarShare");
        let draw = vs.draw(&self.online, self.optimizer.steps(), batch.len())?;
        let (td, q_taken) = self.loss_with(batch, draw.weights())?;
        let loss = (&td + vs.penalty(&self.online)?)?;
        let grads = loss.backward()?;
        Ok(UpdateStats {
            grad_norm: self.optimizer.step(&grads, self.config.grad_clip)?,
            loss: td.to_scalar()?,
            mean_q: q_taken.mean_all()?.to_scalar()?,
        })
    }

    /// Q-values in return units from one observation's logits on the CPU fast path.
    fn host_q(&self, logits: &[f32]) -> [f32; NUM_ACTIONS] {
        let inv_scale = (1.0 / self.config.reward_scale) as f32;
        let n = self.online.config().num_atoms;
        let atoms = self.support.atoms();
        let mut q = [0.0f32; NUM_ACTIONS];
        let mut log_p = vec![0.0f32; n];
        for (a, q) in q.iter_mut().enumerate() {
            let row = &logits[a * n..(a + 1) * n];
            *q = if self.config.categorical {
                log_softmax_row(row, &mut log_p);
                log_p
                    .iter()
                    .zip(&atoms)
                    .map(|(l, z)| l.exp() * (z * inv_scale))
                    .sum()
            } else {
                row[0] * inv_scale
            };
        }
        q
    }

    /// Q-values in return units from the logits of one observation.
    fn q_from_logits(&self, logits: &Tensor) -> Result<[f32; NUM_ACTIONS]> {
        let q = if self.config.categorical {
            softmax(logits)?
                .broadcast_mul(&self.return_atoms)?
                .sum(D::Minus1)?
        } else {
            logits.affine(1.0 / self.config.reward_scale, 0.0)?
        };
        let q: Vec<f32> = q.flatten_all()?.to_vec1()?;
        q.try_into()
            .map_err(|_| AgentError::Batch("network did not return 4 actions".into()))
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
        self.critics().map(|(online, _)| online.num_params()).sum()
    }

    fn q_values(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<[f32; NUM_ACTIONS]> {
        self.check_task(task)?;
        let mut q = if let Some(cell) = &self.cpu {
            let mut cpu = cell.borrow_mut();
            let cpu = &mut *cpu;
            let mut q = self.host_q(cpu.act.forward(&self.online, obs, &[task as u32])?);
            for (c, e) in self.others.iter().zip(cpu.others.iter_mut()) {
                let other = self.host_q(e.act.forward(&c.online, obs, &[task as u32])?);
                q.iter_mut().zip(other).for_each(|(s, v)| *s += v);
            }
            q
        } else {
            let device = &self.ctx.device;
            let o = Tensor::from_slice(obs, (1, OBS_DIM), device)?;
            let t = Tensor::from_slice(&[task as u32], 1, device)?;
            let weights = self
                .varshare
                .as_ref()
                .map_or(ResidualWeights::Mean, VarShare::eval_weights);
            let mut q = self.q_from_logits(&self.online.forward_with(&o, &t, weights)?)?;
            for c in &self.others {
                let other = self.q_from_logits(&c.online.forward(&o, &t)?)?;
                q.iter_mut().zip(other).for_each(|(s, v)| *s += v);
            }
            q
        };
        // The ensemble acts on its mean Q.
        if !self.others.is_empty() {
            q.iter_mut().for_each(|v| *v *= self.inv_critics());
        }
        Ok(q)
    }

    fn act(&mut self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize> {
        match self.exploration.explore(&mut self.rng) {
            Some(action) => Ok(action),
            None => match &self.varshare {
                Some(v) => {
                    // The last update's draw (see crate::varshare).
                    self.check_task(task)?;
                    let device = &self.ctx.device;
                    let o = Tensor::from_slice(obs, (1, OBS_DIM), device)?;
                    let t = Tensor::from_slice(&[task as u32], 1, device)?;
                    let logits = v.acting_forward(&self.online, self.optimizer.steps(), &o, &t)?;
                    Ok(crate::argmax(&self.q_from_logits(&logits)?))
                }
                None => self.greedy_action(obs, task),
            },
        }
    }

    fn parameter_counts(&self) -> ParameterCounts {
        // VarShare is refused with an ensemble, so every critic is `shared`.
        let one = varshare::parameter_counts(&self.online);
        let k = 1 + self.others.len();
        ParameterCounts {
            shared: one.shared * k,
            total: one.total * k,
            ..one
        }
    }

    fn varshare_diagnostics(&self) -> Result<Option<VarShareDiagnostics>> {
        self.varshare
            .as_ref()
            .map(|v| v.diagnostics(&self.online, &self.ctx.task_names))
            .transpose()
    }

    fn set_shared_only(&mut self, shared_only: bool) -> Result<()> {
        varshare::set_shared_only(&mut self.varshare, "brc", shared_only)
    }

    fn prune_residuals(&mut self, threshold: Option<f64>) -> Result<f64> {
        varshare::prune(&mut self.varshare, &self.online, "brc", threshold)
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
        let stats = if self.surgery.is_some() {
            self.surgery_update(batch)?
        } else if self.varshare.is_some() {
            self.varshare_update(batch)?
        } else if self.cpu.is_some() {
            self.update_on_cpu(batch)?
        } else {
            let (loss, q_taken) = self.loss(batch)?;
            let grads = loss.backward()?;
            UpdateStats {
                grad_norm: self.optimizer.step(&grads, self.config.grad_clip)?,
                loss: loss.to_scalar()?,
                mean_q: q_taken.mean_all()?.to_scalar()?,
            }
        };
        if self.config.target_tau > 0.0 {
            for (online, target) in self.critics() {
                target
                    .params()
                    .soft_update_from(online.params(), self.config.target_tau)?;
            }
        }
        Ok(stats)
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
            for (online, target) in self.critics() {
                target.copy_from(online)?;
            }
        }
        Ok(())
    }

    fn task_gradients(&mut self, batches: &[Batch]) -> Result<Option<Vec<Vec<f32>>>> {
        // An ensemble's conflict is measured on its first critic (under the ensemble's loss).
        if let Some(cell) = &self.cpu {
            // One forward and one backward pass for all tasks: the segments split only the
            // weight gradients.
            let mut cpu = cell.borrow_mut();
            let refs: Vec<&Batch> = batches.iter().collect();
            let (_, segments) = self.host_loss(&mut cpu, &refs)?;
            let CpuPath {
                online,
                dlogits,
                grads,
                ..
            } = &mut *cpu;
            grads.resize_with(segments.len(), Vec::new);
            online.backward(
                &self.online,
                dlogits,
                &segments,
                &mut grads[..segments.len()],
            )?;
            return Ok(Some(
                grads[..segments.len()].iter().map(|g| g.concat()).collect(),
            ));
        }
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let (loss, _) = self.loss(batch)?;
            out.push(crate::td::flat_gradient(&loss, self.online.params())?);
        }
        Ok(Some(out))
    }

    fn surgery_diagnostics(&self, task_gradients: &[Vec<f32>]) -> Option<SurgeryDiagnostics> {
        let s = self.surgery.as_ref()?;
        Some(s.diagnostics(task_gradients, &self.ctx.task_names))
    }

    fn save(&self, path: &Path) -> Result<()> {
        let schedules = Schedules {
            exploration: self.exploration,
            rng: self.rng.clone(),
            episodes: self.episodes,
            surgery: self.surgery.as_ref().and_then(Surgery::state),
            varshare_seed: self.varshare.as_ref().map(|v| v.seed),
        };
        checkpoint::save_single(
            path,
            self.kind(),
            &self.config_json(),
            &self.checkpoint_nets(),
            &self.optimizer,
            schedules,
        )
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let device = self.ctx.device.clone();
        let config = self.config_json();
        let s = checkpoint::load_single(
            path,
            self.kind(),
            &config,
            &device,
            &self.checkpoint_nets(),
            &mut self.optimizer,
        )?;
        self.exploration = s.exploration;
        self.rng = s.rng;
        self.episodes = s.episodes;
        if let Some(surgery) = &mut self.surgery {
            surgery.restore(s.surgery);
        }
        if let Some(v) = &mut self.varshare {
            v.restore_seed(s.varshare_seed);
        }
        self.schedule_lr();
        Ok(())
    }
}

#[cfg(test)]
mod cpu_path_tests {
    //! The CPU fast path against candle's graph, the reference: same loss, same gradients,
    //! same training.
    use super::*;
    use crate::test_batches::{
        assert_gradients_equal, assert_varshare_params_close, batch, ctx, distances, perturb, rel,
        varshare_config, varshare_update_both, weights,
    };
    use rand::Rng;

    /// The design note's BRC, the tuned one (101 atoms, ±20, scaled rewards, Polyak) and the
    /// scalar ablation.
    fn configs() -> Vec<BrcConfig> {
        let tuned = BrcConfig {
            num_atoms: 101,
            v_min: -20.0,
            v_max: 20.0,
            reward_scale: 0.03,
            target_tau: 0.005,
            ..BrcConfig::default()
        };
        // num_atoms stays 51: the scalar network has one output per action regardless.
        let scalar = BrcConfig {
            categorical: false,
            ..BrcConfig::default()
        };
        // Two-critic ensembles of the tuned and the scalar BRC.
        let ensemble = BrcConfig {
            critics: 2,
            ..tuned.clone()
        };
        let scalar_ensemble = BrcConfig {
            critics: 2,
            ..scalar.clone()
        };
        vec![
            BrcConfig::default(),
            tuned,
            scalar,
            ensemble,
            scalar_ensemble,
        ]
    }

    /// The agent with its fast path switched off: candle's graph end to end.
    fn reference(config: &BrcConfig, seed: u64) -> Brc {
        let mut agent = Brc::new(config.clone(), ctx(seed)).unwrap();
        agent.cpu = None;
        agent
    }

    #[test]
    fn the_fast_path_is_on_for_cpu_networks_it_computes() {
        assert!(Brc::new(BrcConfig::default(), ctx(0))
            .unwrap()
            .cpu
            .is_some());
        let post_ln = BrcConfig {
            post_ln: true,
            ..BrcConfig::default()
        };
        assert!(Brc::new(post_ln, ctx(0)).unwrap().cpu.is_none());
        // VarShare is not BroNetCpu's network…
        let varshare = BrcConfig {
            varshare: Some(crate::VarShareConfig::default()),
            ..BrcConfig::default()
        };
        let agent = Brc::new(varshare, ctx(0)).unwrap();
        assert!(agent.cpu.is_none());
        // …and VarShare's own CPU path, unless the network is one it does not compute.
        assert!(agent.varshare_cpu.is_some());
        assert!(Brc::new(BrcConfig::default(), ctx(0))
            .unwrap()
            .varshare_cpu
            .is_none());
        let post_ln = BrcConfig {
            post_ln: true,
            varshare: Some(crate::VarShareConfig::default()),
            ..BrcConfig::default()
        };
        assert!(Brc::new(post_ln, ctx(0)).unwrap().varshare_cpu.is_none());
    }

    /// VarShare BRCs: the default (variational), the tuned one, `l2`, the scalar ablation and
    /// one without the task embedding, with a β large enough for the penalty to matter.
    fn varshare_configs() -> Vec<BrcConfig> {
        let variational = varshare_config(brc_nn::ResidualMode::Variational, true);
        let single: Vec<BrcConfig> = configs().into_iter().filter(|c| c.critics == 1).collect();
        let [default, tuned, scalar] = <[BrcConfig; 3]>::try_from(single).unwrap();
        vec![
            BrcConfig {
                varshare: variational.clone(),
                ..default.clone()
            },
            BrcConfig {
                varshare: variational.clone(),
                ..tuned
            },
            BrcConfig {
                varshare: varshare_config(brc_nn::ResidualMode::L2, true),
                ..default.clone()
            },
            BrcConfig {
                varshare: variational,
                ..scalar
            },
            BrcConfig {
                varshare: varshare_config(brc_nn::ResidualMode::Variational, false),
                ..default
            },
        ]
    }

    /// The VarShare agent with its CPU path switched off: candle's graph end to end.
    fn varshare_reference(config: &BrcConfig, seed: u64) -> Brc {
        let mut agent = Brc::new(config.clone(), ctx(seed)).unwrap();
        agent.varshare_cpu = None;
        agent
    }

    #[test]
    fn varshare_loss_and_every_gradient_equal_candles_on_a_fixed_batch() {
        for config in varshare_configs() {
            let fast = Brc::new(config.clone(), ctx(7)).unwrap();
            let slow = varshare_reference(&config, 7);
            perturb(fast.online.params(), 8);
            perturb(fast.target.params(), 9);
            slow.online.copy_from(&fast.online).unwrap();
            slow.target.copy_from(&fast.target).unwrap();
            // Tasks out of order, all three present.
            let b = batch(3, &[2, 0, 1, 1, 0]);
            let vs = slow.varshare.as_ref().unwrap();
            let draw = vs.draw(&slow.online, 0, b.len()).unwrap();
            let (td, q) = slow.loss_with(&b, draw.weights()).unwrap();
            let grads = (&td + vs.penalty(&slow.online).unwrap())
                .unwrap()
                .backward()
                .unwrap();
            let mut cpu = fast.varshare_cpu.as_ref().unwrap().borrow_mut();
            let host = fast.varshare_host_gradients(&mut cpu, &b).unwrap();
            let want = f64::from(td.to_scalar::<f32>().unwrap());
            assert!(
                (host.loss - want).abs() <= 1e-5 * want.abs(),
                "loss {} vs {want}",
                host.loss
            );
            let want_q = f64::from(q.mean_all().unwrap().to_scalar::<f32>().unwrap());
            assert!((host.mean_q - want_q).abs() <= 1e-4 * (1.0 + want_q.abs()));
            let vars = slow.online.params().named_vars();
            assert_gradients_equal(vars, &grads, &cpu.grads, &format!("{:?}", config.varshare));
        }
    }

    #[test]
    fn varshare_updates_train_the_same_parameters_as_candle() {
        for config in varshare_configs() {
            let mut fast = Brc::new(config.clone(), ctx(11)).unwrap();
            let mut slow = varshare_reference(&config, 11);
            // (Batches 100, 101 put a ReLU of update 1 on its kink, where candle and the host
            // path take the two one-sided derivatives: a finite difference lies halfway. The
            // updates use batches 101 on.)
            for i in 0..12 {
                varshare_update_both(&mut fast, &mut slow, i, 1e-3);
            }
            let what = format!("{:?}", config.varshare);
            for (net_fast, net_slow) in [(&fast.online, &slow.online), (&fast.target, &slow.target)]
            {
                assert_varshare_params_close(net_fast.params(), net_slow.params(), &what);
            }
        }
    }

    #[test]
    fn varshare_cpu_training_is_deterministic() {
        let config = varshare_configs().remove(0);
        let train = || {
            let mut agent = Brc::new(config.clone(), ctx(13)).unwrap();
            let losses: Vec<f32> = (0..4)
                .map(|i| agent.update(&batch(300 + i, &[0, 1, 2])).unwrap().loss)
                .collect();
            (losses, weights(agent.online.params()))
        };
        let (a, b) = (train(), train());
        assert_eq!(a.0, b.0, "losses");
        assert!(a.1 == b.1, "weights differ");
    }

    #[test]
    fn loss_and_every_gradient_equal_candles_on_a_fixed_batch() {
        for config in configs() {
            let fast = Brc::new(config.clone(), ctx(7)).unwrap();
            let slow = reference(&config, 7);
            // Target networks that differ from the online ones, as in training.
            let mut rng = Pcg32::seed_from_u64(9);
            for ((_, target), (_, slow_target)) in fast.critics().zip(slow.critics()) {
                for (_, v) in target.params().named_vars() {
                    brc_nn::params::update_host(v, |w| {
                        w.iter_mut()
                            .for_each(|x| *x += rng.random_range(-0.01..0.01))
                    })
                    .unwrap();
                }
                slow_target.copy_from(target).unwrap();
            }
            let b = batch(3, &[0, 1, 2]);
            let (loss, q) = slow.loss(&b).unwrap();
            let grads = loss.backward().unwrap();
            let mut cpu = fast.cpu.as_ref().unwrap().borrow_mut();
            let (losses, segments) = fast.host_loss(&mut cpu, &[&b]).unwrap();
            fast.host_backward(&mut cpu, &segments).unwrap();
            let host_grads: Vec<HostGradients> = std::iter::once(cpu.grads[0].clone())
                .chain(cpu.others.iter().map(|e| e.grads.clone()))
                .collect();
            assert_eq!(host_grads.len(), config.critics);
            let want = f64::from(loss.to_scalar::<f32>().unwrap());
            assert!(
                (losses[0].loss - want).abs() <= 1e-5 * want.abs(),
                "loss {} vs {want}",
                losses[0].loss
            );
            let want_q = f64::from(q.mean_all().unwrap().to_scalar::<f32>().unwrap());
            assert!((losses[0].mean_q - want_q).abs() <= 1e-4 * (1.0 + want_q.abs()));
            let what = format!(
                "categorical {}, {} critics",
                config.categorical, config.critics
            );
            for ((_, (slow_net, _)), host) in fast.critics().zip(slow.critics()).zip(&host_grads) {
                assert_gradients_equal(slow_net.params().named_vars(), &grads, host, &what);
            }
        }
    }

    #[test]
    fn fifty_updates_train_the_same_parameters_as_candle() {
        // The single critics; an ensemble's trajectories part at ReLU kinks (see below).
        for config in configs().into_iter().filter(|c| c.critics == 1) {
            let mut fast = Brc::new(config.clone(), ctx(11)).unwrap();
            let mut slow = reference(&config, 11);
            for i in 0..50 {
                let b = batch(100 + i, &[0, 1, 2]);
                let (f, s) = (fast.update(&b).unwrap(), slow.update(&b).unwrap());
                assert!(
                    (f.loss - s.loss).abs() <= 1e-3 * (1.0 + s.loss.abs()),
                    "update {i}: {} vs {}",
                    f.loss,
                    s.loss
                );
                if i % 10 == 9 {
                    fast.end_episode(0).unwrap();
                    slow.end_episode(0).unwrap();
                }
            }
            let nets = fast
                .critics()
                .zip(slow.critics())
                .flat_map(|(f, s)| [(f.0, s.0), (f.1, s.1)]);
            for (net_fast, net_slow) in nets {
                for (name, r) in distances(net_fast.params(), net_slow.params()) {
                    assert!(
                        r <= 1e-4,
                        "categorical {}, {} critics: {name}: relative distance {r}",
                        config.categorical,
                        config.critics
                    );
                }
            }
            let obs = [0.1f32; OBS_DIM];
            let (qf, qs) = (
                fast.q_values(&obs, 2).unwrap(),
                slow.q_values(&obs, 2).unwrap(),
            );
            for (a, b) in qf.iter().zip(&qs) {
                assert!((a - b).abs() <= 1e-3 * (1.0 + b.abs()), "q {a} vs {b}");
            }
        }
    }

    /// All variables of every critic, online and target, as host vectors.
    fn all_weights(agent: &Brc) -> Vec<Vec<f32>> {
        agent
            .critics()
            .flat_map(|(o, t)| [o, t])
            .flat_map(|n| weights(n.params()))
            .collect()
    }

    #[test]
    fn an_ensemble_of_identical_critics_is_the_single_critic() {
        // Two copies of one critic: the same target, loss and Q-values as that critic alone,
        // and each copy gets half its gradient (the loss is the critics' mean).
        for base in [configs()[1].clone(), configs()[2].clone()] {
            let single = Brc::new(base.clone(), ctx(21)).unwrap();
            let pair = Brc::new(BrcConfig { critics: 2, ..base }, ctx(21)).unwrap();
            pair.others[0].online.copy_from(&pair.online).unwrap();
            pair.others[0].target.copy_from(&pair.target).unwrap();
            let b = batch(4, &[0, 1, 2]);
            let gradients = |agent: &Brc| {
                let mut cpu = agent.cpu.as_ref().unwrap().borrow_mut();
                let (losses, segments) = agent.host_loss(&mut cpu, &[&b]).unwrap();
                agent.host_backward(&mut cpu, &segments).unwrap();
                let all: Vec<Vec<f32>> = std::iter::once(cpu.grads[0].concat())
                    .chain(cpu.others.iter().map(|e| e.grads.concat()))
                    .collect();
                (losses[0].loss, losses[0].mean_q, all)
            };
            let (loss1, q1, g1) = gradients(&single);
            let (loss2, q2, g2) = gradients(&pair);
            assert!(
                (loss1 - loss2).abs() <= 1e-6 * loss1.abs(),
                "{loss1} vs {loss2}"
            );
            assert!((q1 - q2).abs() <= 1e-6 * (1.0 + q1.abs()), "{q1} vs {q2}");
            assert_eq!(g2.len(), 2);
            let half: Vec<f32> = g1[0].iter().map(|g| 0.5 * g).collect();
            for g in &g2 {
                assert!(rel(g, &half) <= 1e-6, "relative error {}", rel(g, &half));
            }
            let obs = [0.2f32; OBS_DIM];
            let (a, b) = (
                single.q_values(&obs, 1).unwrap(),
                pair.q_values(&obs, 1).unwrap(),
            );
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "q {a} vs {b}");
            }
        }
    }

    #[test]
    fn an_ensemble_resumes_exactly_and_publishes_its_weights() {
        let config = BrcConfig {
            critics: 2,
            ..configs()[1].clone()
        };
        let dir = tempfile::tempdir().unwrap();
        let (full, weights) = (
            dir.path().join("agent.safetensors"),
            dir.path().join("w.safetensors"),
        );
        let mut a = Brc::new(config.clone(), ctx(31)).unwrap();
        for i in 0..5 {
            a.update(&batch(400 + i, &[0, 1, 2])).unwrap();
        }
        a.end_episode(0).unwrap();
        a.save(&full).unwrap();
        let mut b = Brc::new(config.clone(), ctx(99)).unwrap();
        assert!(
            all_weights(&a) != all_weights(&b),
            "another seed, other weights"
        );
        b.load(&full).unwrap();
        for i in 5..10 {
            let (x, y) = (
                a.update(&batch(400 + i, &[0, 1, 2])).unwrap(),
                b.update(&batch(400 + i, &[0, 1, 2])).unwrap(),
            );
            assert_eq!(x.loss, y.loss, "update {i}");
        }
        assert!(all_weights(&a) == all_weights(&b), "resumed weights differ");
        // Weights only (what `brc publish` keeps): both critics, the same greedy values.
        a.save(&full).unwrap();
        checkpoint::export_weights(&full, &weights).unwrap();
        let mut c = Brc::new(config, ctx(5)).unwrap();
        c.load(&weights).unwrap();
        let obs = [-0.3f32; OBS_DIM];
        assert_eq!(a.q_values(&obs, 2).unwrap(), c.q_values(&obs, 2).unwrap());
        // A single critic is another agent.
        let mut single = Brc::new(configs()[1].clone(), ctx(31)).unwrap();
        let e = single.load(&full).unwrap_err().to_string();
        assert!(e.contains("critics"), "{e}");
    }

    #[test]
    fn every_ensemble_update_equals_candles_from_the_same_state() {
        // Two trajectories of an ensemble part within a few updates: whenever a ReLU input
        // sits within rounding of 0 in some row, the paths' 1e-7 differences put it on
        // either side, and that critic's gradient below the unit differs by ~1e-3 (measured:
        // the gap opens at one block's fc1, fc2 and above agree to 1e-6). So every update
        // starts both paths from the fast path's state (weights, targets, moments,
        // schedules), and the step each takes, online and target, must agree to 1% (a
        // wrong target or weighting moves them apart by O(1)). The exact loss and gradients
        // are `loss_and_every_gradient_equal_candles_on_a_fixed_batch`'s.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.safetensors");
        for config in configs().into_iter().filter(|c| c.critics > 1) {
            let mut fast = Brc::new(config.clone(), ctx(11)).unwrap();
            let mut slow = reference(&config, 11);
            for i in 0..20 {
                fast.save(&state).unwrap();
                slow.load(&state).unwrap();
                let before = all_weights(&fast);
                let b = batch(100 + i, &[0, 1, 2]);
                let (f, s) = (fast.update(&b).unwrap(), slow.update(&b).unwrap());
                assert!(
                    (f.loss - s.loss).abs() <= 1e-5 * (1.0 + s.loss.abs()),
                    "update {i}: {} vs {}",
                    f.loss,
                    s.loss
                );
                if i % 10 == 9 {
                    fast.end_episode(0).unwrap();
                    slow.end_episode(0).unwrap();
                }
                let (after_fast, after_slow) = (all_weights(&fast), all_weights(&slow));
                for (k, w) in before.iter().enumerate() {
                    let step = |after: &[f32]| -> Vec<f32> {
                        after.iter().zip(w).map(|(a, b)| a - b).collect()
                    };
                    let (df, ds) = (step(&after_fast[k]), step(&after_slow[k]));
                    let r = rel(&df, &ds);
                    assert!(
                        r <= 1e-2,
                        "categorical {}: update {i}: variable {k}: step differs by {r}",
                        config.categorical
                    );
                }
            }
            let obs = [0.1f32; OBS_DIM];
            let (qf, qs) = (
                fast.q_values(&obs, 2).unwrap(),
                slow.q_values(&obs, 2).unwrap(),
            );
            for (a, b) in qf.iter().zip(&qs) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "q {a} vs {b}");
            }
        }
    }

    #[test]
    fn two_threads_train_the_same_bits_as_one() {
        // `--threads 2` runs independent passes and products side by side; each is computed
        // as on one thread, so training is bit-identical.
        let train = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut agent = Brc::new(configs()[1].clone(), ctx(13)).unwrap();
                let losses: Vec<f32> = (0..12)
                    .map(|i| agent.update(&batch(300 + i, &[0, 1, 2])).unwrap().loss)
                    .collect();
                (losses, weights(agent.online.params()))
            })
        };
        let (one, two) = (train(1), train(2));
        assert_eq!(one.0, two.0, "losses");
        assert!(one.1 == two.1, "online weights differ");
    }

    #[test]
    fn per_task_gradients_in_one_pass_equal_one_pass_per_task() {
        let config = BrcConfig::default();
        let mut fast = Brc::new(config.clone(), ctx(5)).unwrap();
        let mut slow = reference(&config, 5);
        let batches: Vec<Batch> = (0..3).map(|t| batch(20 + t, &[t as u32])).collect();
        let got = fast.task_gradients(&batches).unwrap().unwrap();
        let want = slow.task_gradients(&batches).unwrap().unwrap();
        assert_eq!(got.len(), 3);
        for (t, (g, w)) in got.iter().zip(&want).enumerate() {
            let r = rel(g, w);
            assert!(r <= 1e-5, "task {t}: relative error {r}");
        }
        // A task's gradient reaches its own embedding row only.
        let e = 32;
        for (t, g) in got.iter().enumerate() {
            for row in 0..3 {
                let nonzero = g[row * e..(row + 1) * e].iter().any(|v| *v != 0.0);
                assert_eq!(nonzero, row == t, "task {t}, embedding row {row}");
            }
        }
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
