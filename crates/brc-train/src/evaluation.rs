//! Greedy evaluation on held-out env seeds.

use std::path::{Path, PathBuf};

use brc_agents::Agent;
use brc_envs::{run_episode_observed, EpisodeProgress, EpisodeSummary, LunarLander, TaskSpec};
use serde::Serialize;

use crate::error::TrainError;
use crate::run_agent::build_run_agent;
use crate::seeds::eval_env_seed;
use crate::{load_config, RunConfig, RunDir, AGENT_FILE};

/// One greedy evaluation episode.
pub type EvalEpisode = EpisodeSummary;

/// Greedy episodes of one task.
#[derive(Debug, Clone, Serialize)]
pub struct TaskEvaluation {
    /// Task name.
    pub task: String,
    /// The episodes, episode i on env seed `eval_seed + i`.
    pub episodes: Vec<EvalEpisode>,
}

impl TaskEvaluation {
    /// Mean return.
    pub fn mean_return(&self) -> f64 {
        self.episodes.iter().map(|e| e.episode_return).sum::<f64>() / self.episodes.len() as f64
    }

    /// Share of episodes with return ≥ 200 (LunarLander's "solved").
    pub fn success_rate(&self) -> f64 {
        let solved = self
            .episodes
            .iter()
            .filter(|e| e.episode_return >= 200.0)
            .count();
        solved as f64 / self.episodes.len() as f64
    }
}

/// Runs `episodes` greedy episodes of each task on `envs` (one per task, never the training
/// envs), episode i on env seed `eval_seed + i`, each cut at the task's time limit.
pub fn evaluate_agent(
    agent: &dyn Agent,
    tasks: &[TaskSpec],
    envs: &mut [LunarLander],
    episodes: usize,
    eval_seed: u64,
) -> Result<Vec<TaskEvaluation>, TrainError> {
    tasks
        .iter()
        .zip(envs.iter_mut())
        .enumerate()
        .map(|(task_id, (spec, env))| evaluate_task(agent, task_id, spec, env, episodes, eval_seed))
        .collect()
}

/// Greedy episodes of one task (`task_id` is the agent's id for it).
pub fn evaluate_task(
    agent: &dyn Agent,
    task_id: usize,
    spec: &TaskSpec,
    env: &mut LunarLander,
    episodes: usize,
    eval_seed: u64,
) -> Result<TaskEvaluation, TrainError> {
    evaluate_task_observed(agent, task_id, spec, env, episodes, eval_seed, |_, _, _| {})
}

/// [`evaluate_task`] that shows `observe` the env after every reset and step, with the
/// episode's index (for recording or watching episodes).
pub fn evaluate_task_observed(
    agent: &dyn Agent,
    task_id: usize,
    spec: &TaskSpec,
    env: &mut LunarLander,
    episodes: usize,
    eval_seed: u64,
    mut observe: impl FnMut(usize, &LunarLander, &EpisodeProgress),
) -> Result<TaskEvaluation, TrainError> {
    let mut runs = Vec::with_capacity(episodes);
    for i in 0..episodes {
        let mut failure = None;
        let summary = run_episode_observed(
            env,
            eval_env_seed(eval_seed, i as u64),
            spec.max_episode_steps,
            |obs| match agent.greedy_action(obs, task_id) {
                Ok(a) => a,
                Err(e) => {
                    failure.get_or_insert(e);
                    0
                }
            },
            |env, progress| observe(i, env, progress),
        )?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        runs.push(summary);
    }
    Ok(TaskEvaluation {
        task: spec.name.clone(),
        episodes: runs,
    })
}

/// Resolves `checkpoint` — `best`, `final`, `ep<N>` or a path to a checkpoint directory or
/// [`AGENT_FILE`] — inside `run_dir`, and returns the agent file.
pub fn checkpoint_file(run_dir: &Path, checkpoint: &str) -> Result<PathBuf, TrainError> {
    let named = RunDir::new(run_dir).checkpoint(checkpoint);
    let inside = run_dir.join(checkpoint);
    let candidate = if named.exists() {
        named
    } else if inside.is_file() {
        // e.g. a published run's `weights.safetensors`
        inside
    } else {
        PathBuf::from(checkpoint)
    };
    let file = if candidate.is_dir() {
        candidate.join(AGENT_FILE)
    } else {
        candidate
    };
    if !file.is_file() {
        return Err(TrainError::Io {
            path: file,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such checkpoint (expected best, final, ep<N> or a path)",
            ),
        });
    }
    Ok(file)
}

/// The run's resolved config and its agent restored from `checkpoint` (see [`checkpoint_file`]).
pub fn load_run_agent(
    run_dir: &Path,
    checkpoint: &str,
) -> Result<(RunConfig, Box<dyn Agent>, PathBuf), TrainError> {
    let config_path = RunDir::new(run_dir).config();
    if !config_path.is_file() {
        return Err(TrainError::Io {
            path: config_path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a run directory (no config.toml)",
            ),
        });
    }
    let config = load_config(&config_path, &[])?;
    let file = checkpoint_file(run_dir, checkpoint)?;
    let mut agent = build_run_agent(&config)?;
    agent.load(&file)?;
    Ok((config, agent, file))
}
