//! A run's JSONL logs: opened for appending, cut back to a checkpoint on resume, flushed at
//! checkpoints; and `metrics.json` in the predecessor's schema.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::error::{io, TrainError};
use crate::records::{
    EpisodeRecord, EvalRecord, GradientConflict, Summary, SurgeryRecord, VarShareRecord,
};
use crate::run_dir::{write_atomic, RunDir};
use crate::RunConfig;

/// Which method-specific logs a run writes besides the episodes, evaluations and gradient
/// conflicts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MethodLogs {
    /// `surgery.jsonl`: a gradient method other than the mean.
    pub(crate) surgery: bool,
    /// `varshare.jsonl`: `[agent.varshare]`.
    pub(crate) varshare: bool,
}

impl MethodLogs {
    /// The logs `config`'s run writes.
    pub(crate) fn of(config: &RunConfig) -> Self {
        Self {
            surgery: config.agent.gradient() != brc_agents::GradientMethod::Mean,
            varshare: config.agent.varshare().is_some(),
        }
    }
}

/// JSONL log files, buffered and flushed at checkpoints and at the end.
pub(crate) struct Logs {
    pub(crate) episodes: BufWriter<File>,
    pub(crate) evals: BufWriter<File>,
    pub(crate) conflict: BufWriter<File>,
    /// Gradient-surgery diagnostics (runs with a gradient method other than the mean).
    pub(crate) surgery: Option<BufWriter<File>>,
    /// VarShare diagnostics (`[agent.varshare]` runs).
    pub(crate) varshare: Option<BufWriter<File>>,
}

impl Logs {
    /// Opens the logs for appending (they were created or truncated before), the method logs
    /// `which` says the run writes among them.
    pub(crate) fn open(dir: &RunDir, which: MethodLogs) -> Result<Self, TrainError> {
        let open = |p: PathBuf| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map(BufWriter::new)
                .map_err(io(&p))
        };
        Ok(Self {
            episodes: open(dir.episodes())?,
            evals: open(dir.evals())?,
            conflict: open(dir.conflict())?,
            surgery: if which.surgery {
                Some(open(dir.surgery())?)
            } else {
                None
            },
            varshare: if which.varshare {
                Some(open(dir.varshare())?)
            } else {
                None
            },
        })
    }

    /// Creates the empty logs of a fresh run (the method logs only where `which` says).
    pub(crate) fn create(dir: &RunDir, which: MethodLogs) -> Result<(), TrainError> {
        let mut logs = vec![dir.episodes(), dir.evals(), dir.conflict()];
        if which.surgery {
            logs.push(dir.surgery());
        }
        if which.varshare {
            logs.push(dir.varshare());
        }
        for log in logs {
            File::create(&log).map_err(io(&log))?;
        }
        Ok(())
    }

    /// Cuts the logs back to what happened up to episode `done` (a resumed run will do the
    /// rest again) and returns the kept episode records and periodic evaluations.
    pub(crate) fn truncate(
        dir: &RunDir,
        done: usize,
    ) -> Result<(Vec<EpisodeRecord>, Vec<EvalRecord>), TrainError> {
        let history = truncate_log(&dir.episodes(), |r: &EpisodeRecord| r.episode < done)?;
        let evals = truncate_log(&dir.evals(), |r: &EvalRecord| {
            r.after_episode <= done && !r.is_final
        })?;
        truncate_log(&dir.conflict(), |r: &GradientConflict| {
            r.after_episode <= done
        })?;
        if dir.surgery().is_file() {
            truncate_log(&dir.surgery(), |r: &SurgeryRecord| r.after_episode <= done)?;
        }
        if dir.varshare().is_file() {
            truncate_log(&dir.varshare(), |r: &VarShareRecord| {
                r.after_episode <= done
            })?;
        }
        Ok((history, evals))
    }

    pub(crate) fn line<T: Serialize>(
        w: &mut BufWriter<File>,
        value: &T,
        path: &Path,
    ) -> Result<(), TrainError> {
        let text = serde_json::to_string(value).expect("records serialize");
        writeln!(w, "{text}").map_err(io(path))
    }

    pub(crate) fn flush(&mut self, dir: &RunDir) -> Result<(), TrainError> {
        self.episodes.flush().map_err(io(&dir.episodes()))?;
        self.evals.flush().map_err(io(&dir.evals()))?;
        if let Some(s) = &mut self.surgery {
            s.flush().map_err(io(&dir.surgery()))?;
        }
        if let Some(s) = &mut self.varshare {
            s.flush().map_err(io(&dir.varshare()))?;
        }
        self.conflict.flush().map_err(io(&dir.conflict()))
    }
}

/// Keeps the JSON lines of `path` for which `keep` holds (dropping a torn last line) and
/// returns them.
fn truncate_log<T: Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    keep: impl Fn(&T) -> bool,
) -> Result<Vec<T>, TrainError> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let kept: Vec<T> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r| keep(r))
        .collect();
    let mut out = String::new();
    for r in &kept {
        out.push_str(&serde_json::to_string(r).expect("records serialize"));
        out.push('\n');
    }
    write_atomic(path, out.as_bytes()).map_err(io(path))?;
    Ok(kept)
}

/// `metrics.json` in the predecessor's multi-task schema, so its tools read our runs.
pub(crate) fn write_predecessor_metrics(
    dir: &RunDir,
    config: &RunConfig,
    summary: &Summary,
    history: &[EpisodeRecord],
    evals: &[EvalRecord],
) -> Result<(), TrainError> {
    let episodes: Vec<_> = history
        .iter()
        .map(|r| {
            json!({
                "episode": r.episode, "task": r.task, "task_id": r.task_id,
                "reward": r.episode_return, "steps": r.length,
                "loss": r.mean_loss.unwrap_or(0.0), "epsilon": r.epsilon,
            })
        })
        .collect();
    let mut eval_history: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut best: BTreeMap<&str, f64> = BTreeMap::new();
    for e in evals.iter().filter(|e| !e.is_final) {
        for (task, &m) in &e.mean_return {
            eval_history.entry(task).or_default().push(m);
            let b = best.entry(task).or_insert(f64::NEG_INFINITY);
            *b = b.max(m);
        }
    }
    let doc = json!({
        "method": summary.agent,
        "total_episodes": summary.episodes,
        "episodes_per_task": config.training.episodes_per_task,
        "parameters": summary.parameters,
        "episodes": episodes,
        "eval_history": eval_history,
        "best_rewards": best,
        "total_env_steps": summary.env_steps,
        "total_gradient_updates": summary.updates,
        "config": config,
    });
    let text = serde_json::to_string(&doc).expect("metrics serialize");
    write_atomic(&dir.metrics(), text.as_bytes()).map_err(io(&dir.metrics()))
}
