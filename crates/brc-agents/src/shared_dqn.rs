//! Shared DQN: one MLP for all tasks, told the task by an 8-d learned embedding concatenated
//! after the state (or task-blind), trained on mixed-task batches with MSE and Adam.

use std::path::Path;

use brc_buffer::Batch;
use brc_nn::SharedQMlp;
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde_json::json;

use crate::checkpoint::{self, Schedules};
use crate::exploration::EpsilonGreedy;
use crate::optim::AdamW;
use crate::surgery::{split_by_task, Surgery, SurgeryDiagnostics};
use crate::td::{
    dqn_loss, dqn_loss_from_q, flat_gradient, param_gradients, single_q, BatchTensors,
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
        Ok(Self {
            surgery,
            varshare,
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

    /// One VarShare update: the TD loss on the update's sampled weights plus the penalty.
    fn varshare_update(&mut self, batch: &Batch) -> Result<UpdateStats> {
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
