//! A sweep run's status, read from its directory, and the record of a failed run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::lock;
use crate::config::parse_config;
use crate::run_dir::{write_atomic, RunDir};
use crate::RunConfig;

/// The failure record in a failed run's directory.
const FAILURE_FILE: &str = "failed.json";

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not started (or started without a checkpoint, or with another config: starts afresh).
    Pending,
    /// Started, with a checkpoint to resume from.
    Unfinished,
    /// Finished: its summary is written.
    Done,
    /// Stopped by an error, kept in its failure record (`sweep run` tries it again).
    Failed,
}

impl RunStatus {
    /// Every status, in report order.
    pub const ALL: [RunStatus; 4] = [Self::Pending, Self::Unfinished, Self::Done, Self::Failed];

    /// Its name in plans and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Unfinished => "unfinished",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }
}

/// A run's status with what explains it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunState {
    /// The status.
    pub status: RunStatus,
    /// A failed run's error (one line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Who trains it right now (`host pid N`), when a live lock says so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Failure {
    error: String,
}

/// Whether a run directory's `stored` config trains what `config` does: equal but for
/// `run.output_dir`, which only says where a run was written. A finished run copied in from
/// elsewhere (a published seed, `results/reference/<name>/seed-<k>`) then counts as done.
fn trains_the_same(stored: &RunConfig, config: &RunConfig) -> bool {
    let mut stored = stored.clone();
    stored.run.output_dir.clone_from(&config.run.output_dir);
    &stored == config
}

/// The status of the run in `dir`, which should train `config`. A directory holding another
/// config (from an earlier, replaced run list) counts as pending: it is started afresh.
pub(super) fn run_state(dir: &Path, config: &RunConfig) -> RunState {
    let run = RunDir::new(dir);
    let running = lock::live_holder(&run.lock());
    let state = |status, error| RunState {
        status,
        error,
        running: running.clone(),
    };
    let own_config = std::fs::read_to_string(run.config()).ok().map(|text| {
        parse_config(&text, "config.toml", &[]).is_ok_and(|c| trains_the_same(&c, config))
    });
    if let Ok(text) = std::fs::read_to_string(dir.join(FAILURE_FILE)) {
        if own_config != Some(false) {
            let error = serde_json::from_str::<Failure>(&text)
                .map_or_else(|_| "unreadable failure record".into(), |f| f.error);
            return state(RunStatus::Failed, Some(error));
        }
    }
    if own_config != Some(true) {
        return state(RunStatus::Pending, None);
    }
    if run.summary().is_file() {
        state(RunStatus::Done, None)
    } else if crate::checkpoints::newest_checkpoint(&run).is_ok() {
        state(RunStatus::Unfinished, None)
    } else {
        state(RunStatus::Pending, None)
    }
}

/// Marks the run in `dir` failed with `error` (one line), replacing an earlier record.
pub fn record_failure(dir: &Path, error: &str) -> std::io::Result<()> {
    let error = error.split_whitespace().collect::<Vec<_>>().join(" ");
    let text = serde_json::to_string(&Failure { error }).expect("records serialize");
    write_atomic(&dir.join(FAILURE_FILE), text.as_bytes())
}

/// Removes the run's failure record before it is tried again.
pub(super) fn clear_failure(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(FAILURE_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
