//! The training and evaluation pipeline: run configs, the round-robin multi-task trainer,
//! greedy evaluation on held-out seeds, checkpoints, metrics files and parallel seeds.
//!
//! One loop trains every agent: episode i runs task i mod n; each env step is stored in the
//! replay buffer and followed by the agent's updates once enough transitions are there.
//! [`sweep`] runs many such runs from one sweep file, on a local process pool or on Slurm.

pub mod bench;
mod checkpoints;
pub mod config;
mod error;
mod evaluation;
mod import;
mod logs;
mod n_step;
mod publish;
mod records;
mod run_agent;
mod run_dir;
mod seeds;
pub mod sweep;
mod trainer;

/// The agent interface and VarShare's measurements, for the cli's `info` and `evaluate`.
pub use brc_agents::{Agent, ParameterCounts, VarShareDiagnostics};
/// Flushes denormal floats to zero on the calling thread: every thread that computes for a
/// run calls it (see `brc_nn::denormals`).
pub use brc_nn::denormals::flush_to_zero;
pub use config::{load_config, parse_config, ConfigError, RunConfig, Sampling};
pub use error::TrainError;
pub use evaluation::{
    checkpoint_file, evaluate_agent, evaluate_task, evaluate_task_observed, load_run_agent,
    EvalEpisode, TaskEvaluation,
};
pub use import::{import_torch, TorchKind};
pub use publish::{publish_run, PUBLISHED_BEST_WEIGHTS, PUBLISHED_WEIGHTS};
pub use records::{
    EpisodeRecord, EvalRecord, GradientConflict, Summary, SurgeryRecord, VarShareRecord,
};
pub use run_agent::build_run_agent;
pub use run_dir::{write_atomic, RunDir, AGENT_FILE};
pub use seeds::{eval_env_seed, train_env_seed};
pub use trainer::{train, Progress, TrainOptions};
