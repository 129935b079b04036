//! Sample efficiency: when a task's trailing mean of training returns first reaches a
//! threshold, in the run's actual cumulative env steps and updates at that episode.

use serde::Serialize;

use crate::runs::Run;
use crate::stats::first_crossing;

/// The thresholds the design note asks about.
pub const THRESHOLDS: [f64; 4] = [50.0, 100.0, 150.0, 200.0];

/// The trailing window of training episodes (of one task) whose mean is compared.
pub const WINDOW: usize = 100;

/// When one run first reached one threshold on one task; `None` fields: not reached (or, for
/// steps and updates, not logged by that run).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Crossing {
    /// Task name.
    pub task: String,
    /// The return threshold.
    pub threshold: f64,
    /// The task's episode count (1-based) at which the trailing mean first reached it.
    pub task_episode: Option<usize>,
    /// Cumulative env steps (all tasks) when that episode ended.
    pub env_steps: Option<u64>,
    /// Cumulative gradient updates (all tasks) when that episode ended.
    pub updates: Option<u64>,
}

/// Every task × threshold crossing of one run, with a trailing window of `window` episodes.
pub fn crossings(run: &Run, thresholds: &[f64], window: usize) -> Vec<Crossing> {
    let mut out = Vec::new();
    for task in &run.tasks {
        let episodes: Vec<_> = run.episodes.iter().filter(|e| &e.task == task).collect();
        let returns: Vec<f64> = episodes.iter().map(|e| e.episode_return).collect();
        let steps: Vec<u64> = episodes.iter().map(|e| e.env_steps.unwrap_or(0)).collect();
        for &threshold in thresholds {
            let hit = first_crossing(&returns, &steps, window, threshold);
            let ep = hit.map(|(i, _)| episodes[i]);
            out.push(Crossing {
                task: task.clone(),
                threshold,
                task_episode: hit.map(|(i, _)| i + 1),
                env_steps: ep.and_then(|e| e.env_steps),
                updates: ep.and_then(|e| e.updates),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runs::Episode;

    fn episode(i: usize, task: &str, ret: f64) -> Episode {
        Episode {
            episode: i,
            task: task.into(),
            episode_return: ret,
            env_steps: Some(100 * (i as u64 + 1)),
            updates: Some(90 * (i as u64 + 1)),
            epsilon: None,
            loss: None,
            mean_q: None,
            grad_norm: None,
            wall_seconds: None,
        }
    }

    #[test]
    fn crossing_reports_the_actual_steps_of_that_episode() {
        // Tasks alternate a, b. Task a's returns: 0, 0, 60, 120 (episodes 0, 2, 4, 6);
        // trailing-2 means: -, 0, 30, 90 → ≥ 50 first at its 4th episode (global episode 6).
        let mut episodes = Vec::new();
        for (k, r) in [0.0, 0.0, 60.0, 120.0].into_iter().enumerate() {
            episodes.push(episode(2 * k, "a", r));
            episodes.push(episode(2 * k + 1, "b", -50.0));
        }
        let run = Run {
            label: "t".into(),
            method: "t".into(),
            agent: None,
            seed: None,
            parameters: None,
            tasks: vec!["a".into(), "b".into()],
            episodes,
            evaluations: vec![],
            conflicts: vec![],
            diagnostics: Default::default(),
            varshare: vec![],
            wall_seconds: None,
            finished: true,
        };
        let c = crossings(&run, &[50.0, 100.0], 2);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].task_episode, Some(4));
        assert_eq!(
            c[0].env_steps,
            Some(700),
            "env steps after global episode 6"
        );
        assert_eq!(c[0].updates, Some(630));
        assert_eq!(c[1].task_episode, None, "90 < 100: never reached");
        assert_eq!(c[2].task, "b");
        assert_eq!(c[2].env_steps, None);
    }
}
