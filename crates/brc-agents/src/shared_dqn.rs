//! Shared DQN: one MLP for all tasks, told the task by an 8-d learned embedding concatenated
//! after the state (or task-blind), trained on mixed-task batches with MSE and Adam.

use std::cell::RefCell;
use std::path::Path;

use brc_buffer::Batch;
use brc_nn::task_residual::TaskSegment;
use brc_nn::{HostFlipout, HostGradients, ResidualMlpCpu, SharedQMlp};
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde_json::json;

use crate::checkpoint::{self, Schedules};
use crate::exploration::EpsilonGreedy;
use crate::optim::AdamW;
use crate::surgery::{split_by_task, Surgery, SurgeryDiagnostics};
use crate::td::{
    dqn_loss, dqn_loss_from_q, flat_gradient, host_dqn_loss, param_gradients, single_q,
    BatchTensors, HostTd,
};
use crate::varshare::{self, ParameterCounts, VarShare, VarShareDiagnostics};
use crate::{
    Agent, AgentContext, AgentError, AgentKind, ReplaySource, Result, SharedDqnConfig, UpdateStats,
    OBS_DIM,
};

/// The Shared DQN agent (the predecessor's best multi-task baseline).
pub struct SharedDqn {
    config: SharedDqnConfig,
    ctx: AgentContext,
    online: SharedQMlp,
    target: SharedQMlp,
    optimizer: AdamW,
    exploration: EpsilonGreedy,
    rng: Pcg32,
    /// Episodes finished, over all tasks (target copies count these).
    episodes: u64,
    /// The gradient method other than the mean, with its state.
    surgery: Option<Surgery>,
    /// An update's batch split by task (surgery only), kept to reuse its buffers.
    task_batches: Vec<Batch>,
    /// VarShare's task residuals (`[agent.varshare]`).
    varshare: Option<VarShare>,
    /// VarShare's CPU fast path (`None` without VarShare and on other devices, where candle's
    /// graph computes the residuals).
    varshare_cpu: Option<RefCell<VarShareCpu>>,
}

/// The residual-MLP CPU engines and the buffers of one VarShare update, kept between updates
/// (see [`brc_nn::ResidualMlpCpu`]; candle's graph is the reference).
struct VarShareCpu {
    /// The online network on `s` grouped by task, Flipout noise on every row.
    online: ResidualMlpCpu,
    /// The target network on `s′` grouped by task, the means.
    target: ResidualMlpCpu,
    /// The update's batch with its rows grouped by task, and the tasks' segments.
    grouped: Batch,
    segments: Vec<TaskSegment>,
    dq: Vec<f32>,
    grads: HostGradients,
}

impl VarShareCpu {
    fn new(net: &SharedQMlp) -> Result<Option<Self>> {
        if !net.params().device().is_cpu() || net.task_residuals().is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            online: ResidualMlpCpu::new(net)?,
            target: ResidualMlpCpu::new(net)?,
            grouped: Batch::new(),
            segments: Vec::new(),
            dq: Vec::new(),
            grads: Vec::new(),
        }))
    }
}

impl SharedDqn {
    /// A freshly initialised agent.
    pub fn new(config: SharedDqnConfig, ctx: AgentContext) -> Result<Self> {
        if ctx.num_tasks() != brc_nn::NUM_TASKS && (!config.task_blind || config.varshare.is_some())
        {
            return Err(AgentError::Batch(format!(
                "shared_dqn's embedding has {} task rows, the run has {} tasks",
                brc_nn::NUM_TASKS,
                ctx.num_tasks()
            )));
        }
        let mut init_rng = Pcg32::seed_from_u64(ctx.seed);
        let online = match &config.varshare {
            Some(v) => {
                SharedQMlp::new_varshare(&mut init_rng, &ctx.device, v.mode, v.keep_embedding)?
            }
            None if config.task_blind => SharedQMlp::new_blind(&mut init_rng, &ctx.device)?,
            None => SharedQMlp::new(&mut init_rng, &ctx.device)?,
        };
        let varshare = match &config.varshare {
            Some(v) => Some(VarShare::new(v.clone(), ctx.seed, &online)?),
            None => None,
        };
        let target = online.deep_clone()?;
        let mut optimizer = AdamW::new(online.params().vars(), config.lr, 0.0)?;
        optimizer.set_decay_mask(varshare::decays(online.params()));
        let surgery = Surgery::new(config.gradient_settings(), online.params(), ctx.num_tasks());
        let varshare_cpu = match &varshare {
            Some(_) => VarShareCpu::new(&online)?.map(RefCell::new),
            None => None,
        };
        Ok(Self {
            surgery,
            varshare,
            varshare_cpu,
            task_batches: Vec::new(),
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

    /// An agent whose online and target networks start as `network` (e.g. imported from the
    /// predecessor's PyTorch checkpoint); `config.task_blind` must match the network.
    pub fn from_network(
        config: SharedDqnConfig,
        ctx: AgentContext,
        network: &SharedQMlp,
    ) -> Result<Self> {
        if network.is_task_blind() != config.task_blind {
            return Err(AgentError::Batch(format!(
                "network is{} task-blind, config says task_blind = {}",
                if network.is_task_blind() { "" } else { " not" },
                config.task_blind
            )));
        }
        let agent = Self::new(config, ctx)?;
        agent.online.copy_from(network)?;
        agent.target.copy_from(network)?;
        Ok(agent)
    }

    /// One update with gradient surgery: a loss and a backward pass per task, the combined
    /// gradient on the host, then the same Adam step.
    fn surgery_update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        split_by_task(batch, self.ctx.num_tasks(), &mut self.task_batches)?;
        let mut losses = Vec::with_capacity(self.task_batches.len());
        let mut grads = Vec::with_capacity(self.task_batches.len());
        let mut q_sum = 0.0f64;
        for b in &self.task_batches {
            let tensors = BatchTensors::new(b, &self.ctx.device)?;
            let (loss, q_taken) = dqn_loss(&self.online, &self.target, &tensors, self.ctx.gamma)?;
            grads.push(param_gradients(&loss, self.online.params())?);
            losses.push(f64::from(loss.to_scalar::<f32>()?));
            q_sum += f64::from(q_taken.sum_all()?.to_scalar::<f32>()?);
        }
        let surgery = self
            .surgery
            .as_mut()
            .expect("called with a gradient method");
        let update = surgery.combine(&losses, &grads, &mut self.rng);
        let grad_norm = self
            .optimizer
            .step_from_host(&update, self.config.grad_clip)?;
        Ok(UpdateStats {
            loss: (losses.iter().sum::<f64>() / losses.len() as f64) as f32,
            grad_norm,
            mean_q: (q_sum / batch.len() as f64) as f32,
        })
    }

    /// One VarShare update on the CPU fast path: the same draw, loss and penalty as
    /// [`SharedDqn::varshare_update`], forward and backward by [`ResidualMlpCpu`] on the rows
    /// grouped by task, Adam on the host gradients.
    fn varshare_update_on_cpu(&mut self, batch: &Batch) -> Result<UpdateStats> {
        let cell = self.varshare_cpu.as_ref().expect("called with a CPU path");
        let mut cpu = cell.borrow_mut();
        let td = self.varshare_host_gradients(&mut cpu, batch)?;
        let grad_norm = self
            .optimizer
            .step_host(&cpu.grads, self.config.grad_clip)?;
        Ok(UpdateStats {
            loss: td.loss as f32,
            grad_norm,
            mean_q: td.mean_q as f32,
        })
    }

    /// The TD loss of `batch` on this update's draw and, in `cpu.grads`, the gradient of the
    /// TD loss plus β · the mean penalty per adapter weight ([`SharedDqn::varshare_update`]'s
    /// loss).
    fn varshare_host_gradients(&self, cpu: &mut VarShareCpu, batch: &Batch) -> Result<HostTd> {
        if batch.is_empty() {
            return Err(AgentError::Batch("empty batch".into()));
        }
        let vs = self.varshare.as_ref().expect("called with VarShare");
        let rows = batch.len();
        let (noise, signs) = vs.draw_host(&self.online, self.optimizer.steps(), rows)?;
        cpu.segments = varshare::group_batch(batch, &mut cpu.grouped);
        let variational = vs.config.mode == brc_nn::ResidualMode::Variational;
        let scale = vs.penalty_scale(&self.online);
        let sigma_prior = vs.config.sigma_prior;
        noise
            .with_host_slices(|eps| -> Result<HostTd> {
                let flipout = variational.then_some(HostFlipout {
                    eps,
                    signs: &signs,
                    rows,
                });
                let VarShareCpu {
                    online,
                    target,
                    grouped,
                    segments,
                    dq,
                    grads,
                } = &mut *cpu;
                let q = online.forward(&self.online, &grouped.obs, segments, flipout)?;
                let next = target.forward(&self.target, &grouped.next_obs, segments, None)?;
                dq.resize(rows * brc_nn::NUM_ACTIONS, 0.0);
                let td = host_dqn_loss(q, next, grouped, self.ctx.gamma, dq)?;
                online.backward(&self.online, dq, flipout, grads)?;
                online.add_penalty_gradient(&self.online, sigma_prior, scale, grads)?;
                Ok(td)
            })
            .ok_or_else(|| AgentError::Batch("VarShare's draw is not on the CPU".into()))?
    }

    /// One VarShare update: the TD loss on the update's sampled weights (one ε per layer,
    /// Flipout signs per row) plus β · the mean penalty per adapter weight, on the CPU path
    /// where there is one and on candle's graph otherwise.
    fn varshare_update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        if self.varshare_cpu.is_some() {
            return self.varshare_update_on_cpu(batch);
        }
        let vs = self.varshare.as_ref().expect("called with VarShare");
        let b = BatchTensors::new(batch, &self.ctx.device)?;
        let draw = vs.draw(&self.online, self.optimizer.steps(), batch.len())?;
        let q = self.online.forward_with(&b.obs, &b.tasks, draw.weights())?;
        let (td, q_taken) = dqn_loss_from_q(&q, &self.target, &b, self.ctx.gamma)?;
        let loss = (&td + vs.penalty(&self.online)?)?;
        let grads = loss.backward()?;
        let grad_norm = self.optimizer.step(&grads, self.config.grad_clip)?;
        Ok(UpdateStats {
            loss: td.to_scalar()?,
            grad_norm,
            mean_q: q_taken.mean_all()?.to_scalar()?,
        })
    }

    fn check_task(&self, task: usize) -> Result<()> {
        checkpoint::check_task(task, self.ctx.num_tasks())
    }

    /// The four Q-values `forward` gives one observation of `task`.
    fn q_with(
        &self,
        obs: &[f32; OBS_DIM],
        task: usize,
        forward: impl FnOnce(&candle_core::Tensor, &candle_core::Tensor) -> Result<candle_core::Tensor>,
    ) -> Result<[f32; 4]> {
        let device = &self.ctx.device;
        let o = candle_core::Tensor::from_slice(obs, (1, OBS_DIM), device)?;
        let t = candle_core::Tensor::from_slice(&[task as u32], 1, device)?;
        let q: Vec<f32> = forward(&o, &t)?.flatten_all()?.to_vec1()?;
        q.try_into()
            .map_err(|_| AgentError::Batch("network did not return 4 Q-values".into()))
    }

    fn config_json(&self) -> serde_json::Value {
        json!({ "agent": self.config, "tasks": self.ctx.task_names })
    }
}

impl Agent for SharedDqn {
    fn kind(&self) -> AgentKind {
        AgentKind::SharedDqn
    }

    fn num_params(&self) -> usize {
        self.online.num_params()
    }

    fn parameter_counts(&self) -> ParameterCounts {
        varshare::parameter_counts(&self.online)
    }

    fn varshare_diagnostics(&self) -> Result<Option<VarShareDiagnostics>> {
        self.varshare
            .as_ref()
            .map(|v| v.diagnostics(&self.online, &self.ctx.task_names))
            .transpose()
    }

    fn set_shared_only(&mut self, shared_only: bool) -> Result<()> {
        varshare::set_shared_only(&mut self.varshare, "shared_dqn", shared_only)
    }

    fn prune_residuals(&mut self, threshold: Option<f64>) -> Result<f64> {
        varshare::prune(&mut self.varshare, &self.online, "shared_dqn", threshold)
    }

    fn q_values(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<[f32; 4]> {
        self.check_task(task)?;
        match &self.varshare {
            Some(v) => self.q_with(obs, task, |o, t| {
                Ok(self.online.forward_with(o, t, v.eval_weights())?)
            }),
            None => single_q(&self.online, obs, task),
        }
    }

    fn act(&mut self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize> {
        match self.exploration.explore(&mut self.rng) {
            Some(action) => Ok(action),
            None => match &self.varshare {
                Some(v) => {
                    self.check_task(task)?;
                    let steps = self.optimizer.steps();
                    let q = self.q_with(obs, task, |o, t| {
                        v.acting_forward(&self.online, steps, o, t)
                    })?;
                    Ok(crate::argmax(&q))
                }
                None => self.greedy_action(obs, task),
            },
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
        if self.surgery.is_some() {
            return self.surgery_update(batch);
        }
        if self.varshare.is_some() {
            return self.varshare_update(batch);
        }
        let b = BatchTensors::new(batch, &self.ctx.device)?;
        let (loss, q_taken) = dqn_loss(&self.online, &self.target, &b, self.ctx.gamma)?;
        let grads = loss.backward()?;
        let grad_norm = self.optimizer.step(&grads, self.config.grad_clip)?;
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
        if self
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
            let b = BatchTensors::new(batch, &self.ctx.device)?;
            let (loss, _) = dqn_loss(&self.online, &self.target, &b, self.ctx.gamma)?;
            out.push(flat_gradient(&loss, self.online.params())?);
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
        let nets = [
            ("online.".to_string(), self.online.params().clone()),
            ("target.".to_string(), self.target.params().clone()),
        ];
        checkpoint::save_single(
            path,
            self.kind(),
            &self.config_json(),
            &nets,
            &self.optimizer,
            schedules,
        )
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let nets = [
            ("online.".to_string(), self.online.params().clone()),
            ("target.".to_string(), self.target.params().clone()),
        ];
        let device = self.ctx.device.clone();
        let config = self.config_json();
        let s = checkpoint::load_single(
            path,
            self.kind(),
            &config,
            &device,
            &nets,
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
        Ok(())
    }
}

#[cfg(test)]
mod cpu_path_tests {
    //! VarShare's CPU fast path against candle's graph, the reference: same loss, same
    //! gradients, same training.
    use super::*;
    use crate::test_batches::{
        assert_gradients_equal, assert_varshare_params_close, batch, ctx, perturb, varshare_config,
        varshare_update_both, weights,
    };
    use crate::NUM_ACTIONS;
    use brc_nn::ResidualMode;

    /// VarShare Shared DQNs: variational and `l2`, with and without the task embedding, with a
    /// β large enough for the penalty to matter (one of them with gradient clipping on).
    fn varshare_configs() -> Vec<SharedDqnConfig> {
        let config = |varshare, grad_clip| SharedDqnConfig {
            varshare,
            grad_clip,
            ..SharedDqnConfig::default()
        };
        vec![
            config(varshare_config(ResidualMode::Variational, true), 0.0),
            config(varshare_config(ResidualMode::Variational, false), 0.0),
            config(varshare_config(ResidualMode::L2, true), 0.0),
            config(varshare_config(ResidualMode::L2, false), 0.0),
            config(varshare_config(ResidualMode::Variational, true), 10.0),
        ]
    }

    /// The VarShare agent with its CPU path switched off: candle's graph end to end.
    fn reference(config: &SharedDqnConfig, seed: u64) -> SharedDqn {
        let mut agent = SharedDqn::new(config.clone(), ctx(seed)).unwrap();
        agent.varshare_cpu = None;
        agent
    }

    #[test]
    fn the_varshare_cpu_path_is_on_for_varshare_networks_on_the_cpu() {
        for config in varshare_configs() {
            let agent = SharedDqn::new(config, ctx(0)).unwrap();
            assert!(agent.varshare_cpu.is_some());
        }
        let plain = SharedDqn::new(SharedDqnConfig::default(), ctx(0)).unwrap();
        assert!(plain.varshare_cpu.is_none());
    }

    #[test]
    fn varshare_loss_and_every_gradient_equal_candles_on_a_fixed_batch() {
        // Tasks out of order, all three present; then a batch without task 1.
        for tasks in [&[2, 0, 1, 1, 0][..], &[2, 0, 0]] {
            for config in varshare_configs() {
                let fast = SharedDqn::new(config.clone(), ctx(7)).unwrap();
                let slow = reference(&config, 7);
                perturb(fast.online.params(), 8);
                perturb(fast.target.params(), 9);
                slow.online.copy_from(&fast.online).unwrap();
                slow.target.copy_from(&fast.target).unwrap();
                let batch = batch(3, tasks);
                let vs = slow.varshare.as_ref().unwrap();
                let b = BatchTensors::new(&batch, &slow.ctx.device).unwrap();
                let draw = vs.draw(&slow.online, 0, batch.len()).unwrap();
                let q = slow
                    .online
                    .forward_with(&b.obs, &b.tasks, draw.weights())
                    .unwrap();
                let (td, q_taken) = dqn_loss_from_q(&q, &slow.target, &b, 0.99).unwrap();
                let grads = (&td + vs.penalty(&slow.online).unwrap())
                    .unwrap()
                    .backward()
                    .unwrap();
                let mut cpu = fast.varshare_cpu.as_ref().unwrap().borrow_mut();
                let host = fast.varshare_host_gradients(&mut cpu, &batch).unwrap();
                let want = f64::from(td.to_scalar::<f32>().unwrap());
                let what = format!("{:?}, tasks {tasks:?}", config.varshare);
                assert!(
                    (host.loss - want).abs() <= 1e-5 * want.abs(),
                    "{what}: loss {} vs {want}",
                    host.loss
                );
                let want_q = f64::from(q_taken.mean_all().unwrap().to_scalar::<f32>().unwrap());
                assert!((host.mean_q - want_q).abs() <= 1e-5 * (1.0 + want_q.abs()));
                assert_gradients_equal(
                    slow.online.params().named_vars(),
                    &grads,
                    &cpu.grads,
                    &what,
                );
            }
        }
    }

    #[test]
    fn varshare_updates_train_the_same_parameters_as_candle() {
        for config in varshare_configs() {
            let mut fast = SharedDqn::new(config.clone(), ctx(11)).unwrap();
            let mut slow = reference(&config, 11);
            for i in 0..12 {
                let (f, s) = varshare_update_both(&mut fast, &mut slow, i, 1e-4);
                assert!((f.mean_q - s.mean_q).abs() <= 1e-4 * (1.0 + s.mean_q.abs()));
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
        for config in varshare_configs().into_iter().take(3) {
            let train = || {
                let mut agent = SharedDqn::new(config.clone(), ctx(13)).unwrap();
                let stats: Vec<(f32, f32, f32)> = (0..4)
                    .map(|i| {
                        let s = agent.update(&batch(300 + i, &[0, 1, 2])).unwrap();
                        (s.loss, s.grad_norm, s.mean_q)
                    })
                    .collect();
                (stats, weights(agent.online.params()))
            };
            let (a, b) = (train(), train());
            assert_eq!(a.0, b.0, "{:?}: losses", config.varshare);
            assert!(a.1 == b.1, "{:?}: weights differ", config.varshare);
        }
    }

    #[test]
    fn a_bad_action_is_an_error_not_a_panic() {
        let mut agent = SharedDqn::new(varshare_configs().remove(0), ctx(0)).unwrap();
        let mut b = batch(1, &[0, 1, 2]);
        b.actions[5] = NUM_ACTIONS as u32;
        assert!(agent.update(&b).is_err());
        assert!(agent.update(&Batch::new()).is_err());
    }
}
