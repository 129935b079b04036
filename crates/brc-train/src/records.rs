//! What a run writes: one line per episode, one per evaluation, and a summary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One training episode (`episodes.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpisodeRecord {
    /// 0-based episode index over all tasks.
    pub episode: usize,
    /// Task id.
    pub task_id: usize,
    /// Task name.
    pub task: String,
    /// Sum of rewards.
    #[serde(rename = "return")]
    pub episode_return: f64,
    /// Steps taken.
    pub length: usize,
    /// Ended by a true termination (crash, out of bounds, rest).
    pub terminated: bool,
    /// Cut by the task's time limit.
    pub time_limited: bool,
    /// rest / crash / out_of_bounds / time_limit.
    pub outcome: String,
    /// ε used during the episode.
    pub epsilon: f64,
    /// Mean loss of the episode's updates (null before updates start).
    pub mean_loss: Option<f64>,
    /// Mean Q(s, a) of the episode's updates.
    pub mean_q: Option<f64>,
    /// Mean gradient norm (before clipping) of the episode's updates.
    pub grad_norm: Option<f64>,
    /// Env steps since the start of the run, this episode included.
    pub env_steps: u64,
    /// Gradient updates since the start of the run.
    pub updates: u64,
    /// Wall-clock seconds since the start of the run (the only non-deterministic field).
    pub wall_seconds: f64,
}

/// One evaluation (`evals.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Training episodes done when it ran.
    pub after_episode: usize,
    /// Env steps done when it ran.
    pub env_steps: u64,
    /// Updates done when it ran.
    pub updates: u64,
    /// Greedy episodes per task.
    pub episodes: usize,
    /// Mean return per task name.
    pub mean_return: BTreeMap<String, f64>,
    /// Per-task returns, in episode order.
    pub returns: BTreeMap<String, Vec<f64>>,
    /// Mean over tasks of the per-task means.
    pub average: f64,
    /// Whether this is the final evaluation.
    pub is_final: bool,
    /// Per-task gradient norms and pairwise cosines, when measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient_conflict: Option<GradientConflict>,
}

/// Gradient conflict between tasks on fixed probe batches (`conflict.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientConflict {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// Gradient norm per task name.
    pub norms: BTreeMap<String, f64>,
    /// Cosine similarity per task pair `a|b`.
    pub cosines: BTreeMap<String, f64>,
}

impl GradientConflict {
    /// Norms and pairwise cosines of flattened per-task gradients.
    pub fn measure(after_episode: usize, names: &[String], grads: &[Vec<f32>]) -> Self {
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter()
                .zip(b)
                .map(|(x, y)| f64::from(*x) * f64::from(*y))
                .sum()
        };
        let norms: Vec<f64> = grads.iter().map(|g| dot(g, g).sqrt()).collect();
        let mut cosines = BTreeMap::new();
        for i in 0..grads.len() {
            for j in i + 1..grads.len() {
                let denom = norms[i] * norms[j];
                let cos = if denom > 0.0 {
                    dot(&grads[i], &grads[j]) / denom
                } else {
                    0.0
                };
                cosines.insert(format!("{}|{}", names[i], names[j]), cos);
            }
        }
        Self {
            after_episode,
            norms: names.iter().cloned().zip(norms).collect(),
            cosines,
        }
    }
}

/// What the run's gradient method did on the gradient-conflict probe batches
/// (`surgery.jsonl`, one line per conflict measurement).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeryRecord {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// The method (`method` field) and its measurements.
    #[serde(flatten)]
    pub diagnostics: brc_agents::SurgeryDiagnostics,
}

/// VarShare's residuals at one gradient-conflict interval (`varshare.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VarShareRecord {
    /// Training episodes done when measured.
    pub after_episode: usize,
    /// Gradient updates done when measured.
    pub updates: u64,
    /// KL, σ and surviving μ per task and layer.
    #[serde(flatten)]
    pub diagnostics: brc_agents::VarShareDiagnostics,
}

/// The run's summary (`summary.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Run name.
    pub name: String,
    /// Agent kind.
    pub agent: String,
    /// Run seed.
    pub seed: u64,
    /// Trainable parameters.
    pub parameters: usize,
    /// Training episodes done.
    pub episodes: usize,
    /// Env steps done.
    pub env_steps: u64,
    /// Gradient updates done.
    pub updates: u64,
    /// Wall-clock seconds of training (excluding the final evaluation).
    pub wall_seconds: f64,
    /// Final evaluation: mean return per task.
    pub final_eval: BTreeMap<String, f64>,
    /// Final evaluation: mean over tasks.
    pub final_average: f64,
    /// Final evaluation: share of episodes with return ≥ 200, per task.
    pub final_success_rate: BTreeMap<String, f64>,
    /// Best periodic evaluation average, and when.
    pub best_average: f64,
    /// Episode after which the best evaluation ran.
    pub best_after_episode: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosines_by_hand() {
        let names = ["a", "b", "c"].map(String::from);
        let g = vec![vec![1.0, 0.0], vec![0.0, 2.0], vec![-3.0, 0.0]];
        let c = GradientConflict::measure(5, &names, &g);
        assert_eq!(c.norms["b"], 2.0);
        assert_eq!(c.cosines["a|b"], 0.0);
        assert_eq!(c.cosines["a|c"], -1.0);
        assert_eq!(c.cosines.len(), 3);
    }
}
