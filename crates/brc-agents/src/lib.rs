//! Agents for multi-task value learning on LunarLander, swappable behind one [`Agent`] trait so
//! baselines compare on equal terms:
//!
//! * [`IndependentDqn`] (`independent_dqn.rs`): one small MLP, target and Adam per task;
//! * [`SharedDqn`] (`shared_dqn.rs`): one MLP with a learned task embedding for all tasks;
//! * [`Brc`] (`brc.rs`): Bigger, Regularized, Categorical — BroNet + C51 + AdamW.
//!
//! Each agent is one file with its network, loss and update. Exploration (ε-greedy) and target
//! copies are the agent's business, because Independent DQN counts them per task.

mod brc;
mod checkpoint;
mod config;
mod exploration;
mod independent_dqn;
mod optim;
mod shared_dqn;
mod surgery;
mod td;
#[cfg(test)]
mod test_batches;
mod varshare;

use std::path::Path;

use brc_buffer::Batch;
use serde::{Deserialize, Serialize};

pub use brc::{project_distribution, Brc, Support};
pub use checkpoint::export_weights;
pub use config::{
    AgentConfig, BrcConfig, ConfigIssue, Exploration, GradientMethod, GradientSettings,
    IndependentDqnConfig, PcgradReduction, SharedDqnConfig, TaskOverrides, VarShareConfig,
};
pub use independent_dqn::IndependentDqn;
pub use shared_dqn::SharedDqn;
pub use surgery::SurgeryDiagnostics;
pub use varshare::{LayerDiagnostics, ParameterCounts, VarShareDiagnostics};

/// Observation size (LunarLander's 8 numbers).
pub const OBS_DIM: usize = brc_nn::OBS_DIM;
/// Number of discrete actions.
pub const NUM_ACTIONS: usize = brc_nn::NUM_ACTIONS;

/// Which agent a config, checkpoint or run is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentKind {
    /// One Q-network per task.
    IndependentDqn,
    /// One Q-network with a task embedding.
    SharedDqn,
    /// BroNet + C51 + AdamW.
    Brc,
}

impl AgentKind {
    /// The name used in configs, checkpoints and tables.
    pub fn name(self) -> &'static str {
        match self {
            AgentKind::IndependentDqn => "independent_dqn",
            AgentKind::SharedDqn => "shared_dqn",
            AgentKind::Brc => "brc",
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an agent's training batches come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaySource {
    /// Uniformly over all tasks' transitions (mixed-task batches).
    Uniform,
    /// Only from this task's transitions.
    Task(usize),
}

/// What one gradient update reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStats {
    /// The training loss (MSE or cross-entropy).
    pub loss: f32,
    /// Global gradient norm before clipping.
    pub grad_norm: f32,
    /// Mean Q(s, a) of the taken actions.
    pub mean_q: f32,
}

/// Everything an agent needs to know about the run it trains in, besides its own config.
#[derive(Debug, Clone)]
pub struct AgentContext {
    /// Task names in task-id order.
    pub task_names: Vec<String>,
    /// The discount of the bootstrapped value: γ, or γⁿ when the trainer stores n-step
    /// returns (`training.n_step`).
    pub gamma: f64,
    /// ε-greedy schedule (per episode).
    pub exploration: Exploration,
    /// Hard target copy every this many episodes (per task for Independent DQN).
    pub target_update_episodes: usize,
    /// Transitions needed in the sampled set before updates start.
    pub min_replay: usize,
    /// Training episodes of the whole run, all tasks together (learning-rate schedules run
    /// over these).
    pub total_episodes: usize,
    /// Seed of the agent's own streams (initialisation, exploration).
    pub seed: u64,
    /// Device for the networks.
    pub device: brc_nn::Device,
}

impl AgentContext {
    /// Number of tasks.
    pub fn num_tasks(&self) -> usize {
        self.task_names.len()
    }
}

/// Errors from agents.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A network or tensor operation failed.
    #[error(transparent)]
    Nn(#[from] brc_nn::NnError),
    /// A checkpoint cannot be read, or belongs to another agent or shape.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The config does not describe a valid agent.
    #[error("agent.{}", .0)]
    Config(ConfigIssue),
    /// A batch that the agent cannot use (empty, mixed tasks for a per-task learner, ...).
    #[error("bad batch: {0}")]
    Batch(String),
    /// An operation this agent does not have (e.g. switching off residuals it lacks).
    #[error("{0}")]
    Unsupported(String),
    /// A task id outside the run's tasks.
    #[error("task {task} out of range: the run has {num_tasks} tasks")]
    Task {
        /// The id given.
        task: usize,
        /// How many tasks there are.
        num_tasks: usize,
    },
}

impl From<candle_core::Error> for AgentError {
    fn from(e: candle_core::Error) -> Self {
        AgentError::Nn(e.into())
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, AgentError>;

/// A multi-task value-based agent: acting, learning, exploration schedule and persistence.
pub trait Agent {
    /// Which agent this is.
    fn kind(&self) -> AgentKind;
    /// Number of trainable scalars (online networks only).
    fn num_params(&self) -> usize;
    /// Shared, per-task adapter (VarShare) and total trainable parameters.
    fn parameter_counts(&self) -> ParameterCounts {
        ParameterCounts {
            shared: self.num_params(),
            adapter_per_task: 0,
            total: self.num_params(),
        }
    }
    /// VarShare's residuals now: KL, σ and surviving μ per task and layer; `None` without
    /// VarShare.
    fn varshare_diagnostics(&self) -> Result<Option<VarShareDiagnostics>> {
        Ok(None)
    }
    /// Greedy actions and Q-values from θ alone (`true`: every task residual off) or from
    /// the posterior means (`false`, the default). An error for agents without VarShare.
    fn set_shared_only(&mut self, _shared_only: bool) -> Result<()> {
        Err(AgentError::Unsupported(format!(
            "{} has no task residuals to switch off (only [agent.varshare] runs do)",
            self.kind()
        )))
    }
    /// Sets every task residual's μ entries with |μ| < `threshold` (the config's
    /// `varshare.prune_threshold` where `None`) to 0 and returns the threshold used, which
    /// [`Agent::varshare_diagnostics`] then counts surviving entries at: the network `brc
    /// info`'s pruned parameter count describes. An error for agents without VarShare.
    fn prune_residuals(&mut self, _threshold: Option<f64>) -> Result<f64> {
        Err(AgentError::Unsupported(format!(
            "{} has no task residuals to prune (only [agent.varshare] runs do)",
            self.kind()
        )))
    }
    /// Q-values (expected returns for C51) of the four actions in `obs` on `task`.
    fn q_values(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<[f32; NUM_ACTIONS]>;
    /// The greedy action: argmax of [`Agent::q_values`], ties to the lowest index.
    fn greedy_action(&self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize> {
        Ok(argmax(&self.q_values(obs, task)?))
    }
    /// An ε-greedy action with the agent's current ε for `task`, drawn from its own RNG.
    fn act(&mut self, obs: &[f32; OBS_DIM], task: usize) -> Result<usize>;
    /// The current exploration rate for `task`.
    fn epsilon(&self, task: usize) -> f64;
    /// Where batches for an update made during an episode of `task` come from.
    fn replay_source(&self, task: usize) -> ReplaySource;
    /// How many transitions the sampled set needs before updates for `task` start.
    fn min_replay(&self, task: usize) -> usize;
    /// One gradient step on `batch`.
    fn update(&mut self, batch: &Batch) -> Result<UpdateStats>;
    /// End of an episode of `task`: decays ε and makes the target copies that are due.
    fn end_episode(&mut self, task: usize) -> Result<()>;
    /// Per-task gradients of the loss on the given per-task batches, flattened over all shared
    /// parameters; `None` for agents without shared parameters.
    fn task_gradients(&mut self, batches: &[Batch]) -> Result<Option<Vec<Vec<f32>>>>;
    /// What the agent's gradient method does with the per-task gradients `task_gradients`
    /// returned on the probe batches; `None` for the plain mean (and agents without one).
    fn surgery_diagnostics(&self, _task_gradients: &[Vec<f32>]) -> Option<SurgeryDiagnostics> {
        None
    }
    /// Writes online and target weights, optimizer moments and schedules (safetensors).
    fn save(&self, path: &Path) -> Result<()>;
    /// Restores everything [`Agent::save`] wrote; fails clearly on another agent's or shape's file.
    fn load(&mut self, path: &Path) -> Result<()>;
}

/// Builds the agent a config describes.
pub fn build_agent(config: &AgentConfig, ctx: &AgentContext) -> Result<Box<dyn Agent>> {
    config
        .validate(&ctx.task_names)
        .map_err(AgentError::Config)?;
    Ok(match config {
        AgentConfig::IndependentDqn(c) => Box::new(IndependentDqn::new(c.clone(), ctx.clone())?),
        AgentConfig::SharedDqn(c) => Box::new(SharedDqn::new(c.clone(), ctx.clone())?),
        AgentConfig::Brc(c) => Box::new(Brc::new(c.clone(), ctx.clone())?),
    })
}

/// Index of the largest value, ties to the lowest index (as `torch.argmax`/`np.argmax`).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}
