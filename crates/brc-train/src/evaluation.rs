//! Greedy evaluation on held-out env seeds.

use brc_agents::Agent;
use brc_envs::{run_episode, EpisodeSummary, LunarLander, TaskSpec};
use serde::Serialize;

use crate::seeds::eval_env_seed;
use crate::trainer::TrainError;

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
    let mut out = Vec::with_capacity(tasks.len());
    for (task_id, (spec, env)) in tasks.iter().zip(envs.iter_mut()).enumerate() {
        let mut runs = Vec::with_capacity(episodes);
        for i in 0..episodes as u64 {
            let mut failure = None;
            let summary = run_episode(
                env,
                eval_env_seed(eval_seed, i),
                spec.max_episode_steps,
                |obs| match agent.greedy_action(obs, task_id) {
                    Ok(a) => a,
                    Err(e) => {
                        failure.get_or_insert(e);
                        0
                    }
                },
            )?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            runs.push(summary);
        }
        out.push(TaskEvaluation {
            task: spec.name.clone(),
            episodes: runs,
        });
    }
    Ok(out)
}
