//! Independent DQN: one small MLP, target network, Adam and ε schedule per task. Each learner
//! samples only its own task's transitions and counts only its own task's episodes, as if the
//! tasks were trained separately (the predecessor's setup).

use std::path::Path;

use brc_buffer::Batch;
use brc_nn::QMlp;
use rand::SeedableRng;
use rand_pcg::Pcg32;
use serde_json::json;

use crate::checkpoint::{self, param_tensors, restore_params};
use crate::exploration::EpsilonGreedy;
use crate::optim::AdamW;
use crate::td::{dqn_loss, single_q, BatchTensors};
use crate::{
    Agent, AgentContext, AgentError, AgentKind, Exploration, IndependentDqnConfig, ReplaySource,
    Result, UpdateStats, OBS_DIM,
};

/// One task's learner.
struct Learner {
    online: QMlp,
    target: QMlp,
    optimizer: AdamW,
    exploration: EpsilonGreedy,
    target_update_episodes: usize,
    min_replay: usize,
    episodes: u64,
}

/// The Independent DQN agent: `num_tasks` separate learners behind one interface.
pub struct IndependentDqn {
    config: IndependentDqnConfig,
    ctx: AgentContext,
    learners: Vec<Learner>,
    rng: Pcg32,
}

impl IndependentDqn {
    /// Freshly initialised learners, one per task, with the per-task overrides applied.
    pub fn new(config: IndependentDqnConfig, ctx: AgentContext) -> Result<Self> {
        let mut init_rng = Pcg32::seed_from_u64(ctx.seed);
        let mut learners = Vec::with_capacity(ctx.num_tasks());
        for name in &ctx.task_names {
            let o = config.per_task.get(name).cloned().unwrap_or_default();
            let online = QMlp::new(&mut init_rng, &ctx.device)?;
            let target = online.deep_clone()?;
            let optimizer = AdamW::new(online.params().vars(), o.lr.unwrap_or(config.lr), 0.0)?;
            learners.push(Learner {
                online,
                target,
                optimizer,
                exploration: EpsilonGreedy::new(Exploration {
                    decay: o.epsilon_decay.unwrap_or(ctx.exploration.decay),
                    ..ctx.exploration
                }),
                target_update_episodes: o
                    .target_update_episodes
                    .unwrap_or(ctx.target_update_episodes),
                min_replay: o.min_replay.unwrap_or(ctx.min_replay),
                episodes: 0,
            });
        }
        Ok(Self {
            rng: Pcg32::seed_from_u64(ctx.seed ^ 0x5eed_e791),
            config,
            ctx,
            learners,
        })
    }

    /// An agent whose learners start from `networks` (one per task, in task order; e.g.
    /// imported from the predecessor's PyTorch checkpoints).
    pub fn from_networks(
        config: IndependentDqnConfig,
        ctx: AgentContext,
        networks: &[QMlp],
    ) -> Result<Self> {
        if networks.len() != ctx.num_tasks() {
            return Err(AgentError::Task {
                task: networks.len(),
                num_tasks: ctx.num_tasks(),
            });
        }
        let agent = Self::new(config, ctx)?;
        for (l, net) in agent.learners.iter().zip(networks) {
            l.online.copy_from(net)?;
            l.target.copy_from(net)?;
        }
        Ok(agent)
    }

    fn learner(&self, task: usize) -> Result<&Learner> {
        self.learners.get(task).ok_or(AgentError::Task {
            task,
            num_tasks: self.learners.len(),
        })
    }

    fn config_json(&self) -> serde_json::Value {
        json!({ "agent": self.config, "tasks": self.ctx.task_names })
    }
}

impl Agent for IndependentDqn {
    fn kind(&self) -> AgentKind {
        AgentKind::IndependentDqn
    }

    fn num_params(&self) -> usize {
        self.learners.iter().map(|l| l.online.num_params()).sum()
    }

    fn q_values(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<[f32; 4]> {
        single_q(&self.learner(task)?.online, obs, task)
    }

    fn act(&mut self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize> {
        let exploration = self.learner(task)?.exploration;
        match exploration.explore(&mut self.rng) {
            Some(action) => Ok(action),
            None => self.greedy_action(obs, task),
        }
    }

    fn epsilon(&self, task: usize) -> f64 {
        self.learners
            .get(task)
            .map_or(0.0, |l| l.exploration.epsilon)
    }

    fn replay_source(&self, task: usize) -> ReplaySource {
        ReplaySource::Task(task)
    }

    fn min_replay(&self, task: usize) -> usize {
        self.learners
            .get(task)
            .map_or(self.ctx.min_replay, |l| l.min_replay)
    }

    /// Trains the learner of the batch's task; the batch must hold one task only.
    fn update(&mut self, batch: &Batch) -> Result<UpdateStats> {
        let task = *batch
            .tasks
            .first()
            .ok_or_else(|| AgentError::Batch("empty batch".into()))? as usize;
        if batch.tasks.iter().any(|&t| t as usize != task) {
            return Err(AgentError::Batch(
                "independent_dqn needs single-task batches".into(),
            ));
        }
        let clip = self.config.grad_clip;
        let gamma = self.ctx.gamma;
        let b = BatchTensors::new(batch, &self.ctx.device)?;
        let num_tasks = self.learners.len();
        let l = self
            .learners
            .get_mut(task)
            .ok_or(AgentError::Task { task, num_tasks })?;
        let (loss, q_taken) = dqn_loss(&l.online, &l.target, &b, gamma)?;
        let grads = loss.backward()?;
        let grad_norm = l.optimizer.step(&grads, clip)?;
        Ok(UpdateStats {
            loss: loss.to_scalar()?,
            grad_norm,
            mean_q: q_taken.mean_all()?.to_scalar()?,
        })
    }

    fn end_episode(&mut self, task: usize) -> Result<()> {
        let num_tasks = self.learners.len();
        let l = self
            .learners
            .get_mut(task)
            .ok_or(AgentError::Task { task, num_tasks })?;
        l.exploration.end_episode();
        l.episodes += 1;
        if l.episodes.is_multiple_of(l.target_update_episodes as u64) {
            l.target.copy_from(&l.online)?;
        }
        Ok(())
    }

    /// Independent learners share no parameters, so there is no conflict to measure.
    fn task_gradients(&mut self, _batches: &[Batch]) -> Result<Option<Vec<Vec<f32>>>> {
        Ok(None)
    }

    fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = Vec::new();
        let mut learners = Vec::new();
        for (k, l) in self.learners.iter().enumerate() {
            tensors.extend(param_tensors(
                &format!("task{k}.online."),
                l.online.params(),
            ));
            tensors.extend(param_tensors(
                &format!("task{k}.target."),
                l.target.params(),
            ));
            let (moments, step) = l.optimizer.state(&format!("task{k}.opt."))?;
            tensors.extend(moments);
            learners.push(json!({
                "exploration": l.exploration,
                "episodes": l.episodes,
                "optimizer_step": step,
            }));
        }
        let state = json!({ "learners": learners, "rng": self.rng });
        checkpoint::write(path, self.kind(), &self.config_json(), &state, tensors)
    }

    fn load(&mut self, path: &Path) -> Result<()> {
        let loaded = checkpoint::read(path, self.kind(), &self.config_json(), &self.ctx.device)?;
        let states: Vec<serde_json::Value> = loaded.field("learners")?;
        if states.len() != self.learners.len() {
            return Err(AgentError::Checkpoint {
                path: path.display().to_string(),
                message: format!(
                    "holds {} learners, this agent has {}",
                    states.len(),
                    self.learners.len()
                ),
            });
        }
        for (k, (l, s)) in self.learners.iter_mut().zip(states).enumerate() {
            restore_params(&loaded, &format!("task{k}.online."), l.online.params())?;
            restore_params(&loaded, &format!("task{k}.target."), l.target.params())?;
            let bad = |e: serde_json::Error| AgentError::Checkpoint {
                path: path.display().to_string(),
                message: format!("learner {k}: {e}"),
            };
            if !loaded.weights_only() {
                let step = serde_json::from_value(s["optimizer_step"].clone()).map_err(bad)?;
                l.optimizer
                    .restore(&format!("task{k}.opt."), step, |n, d| loaded.tensor(n, d))?;
            }
            l.exploration = serde_json::from_value(s["exploration"].clone()).map_err(bad)?;
            l.episodes = serde_json::from_value(s["episodes"].clone()).map_err(bad)?;
        }
        self.rng = loaded.field("rng")?;
        Ok(())
    }
}
