//! Training one sweep run under its lock: start it, resume it, or leave it (done, or trained
//! by another executor right now).

use super::status::clear_failure;
use super::{io, record_failure, RunLock, RunStatus, Sweep, SweepError};
use crate::error::TrainError;
use crate::records::Summary;
use crate::run_dir::RunDir;
use crate::trainer::{train, Progress, TrainOptions};

/// What [`execute_run`] did.
#[derive(Debug)]
pub enum RunOutcome {
    /// Trained to the end (`resumed`: from a checkpoint).
    Trained {
        /// The run's summary.
        summary: Box<Summary>,
        /// Whether it continued from a checkpoint.
        resumed: bool,
    },
    /// Already done: nothing was touched.
    AlreadyDone,
    /// Another executor holds its lock (`host pid N`).
    Busy(String),
}

/// Trains run `index` of `sweep` unless it is done or locked: an unfinished run resumes from
/// its newest checkpoint, any other starts afresh. A failure is recorded in the run directory
/// (status `failed`) and returned; an interruption ([`TrainError::Interrupted`]) leaves the run
/// `unfinished`.
pub fn execute_run(
    sweep: &Sweep,
    index: usize,
    progress: &mut dyn Progress,
) -> Result<RunOutcome, SweepError> {
    let run = sweep.run(index)?;
    let dir = sweep.run_dir(run);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let lock_path = RunDir::new(&dir).lock();
    let _lock = match RunLock::acquire(&lock_path).map_err(io(&lock_path))? {
        Ok(lock) => lock,
        Err(holder) => return Ok(RunOutcome::Busy(holder)),
    };
    // The status counts only now that no one else can change it.
    let resume = match sweep.state(run).status {
        RunStatus::Done => return Ok(RunOutcome::AlreadyDone),
        RunStatus::Unfinished => true,
        RunStatus::Failed => crate::checkpoints::newest_checkpoint(&RunDir::new(&dir)).is_ok(),
        RunStatus::Pending => false,
    };
    clear_failure(&dir).map_err(io(&dir))?;
    let opts = TrainOptions {
        run_dir: dir.clone(),
        force: !resume,
        resume,
    };
    let failed = |source: TrainError| SweepError::Train {
        index,
        dir: dir.clone(),
        source: Box::new(source),
    };
    match train(&run.config, &opts, progress) {
        Ok(summary) => Ok(RunOutcome::Trained {
            summary: Box::new(summary),
            resumed: resume,
        }),
        Err(e @ TrainError::Interrupted { .. }) => Err(failed(e)),
        Err(e) => {
            let message = error_line(&e);
            record_failure(&dir, &message).map_err(io(&dir))?;
            Err(failed(e))
        }
    }
}

/// An error and its causes on one line.
fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        line.push_str(": ");
        line.push_str(&c.to_string());
        cause = c.source();
    }
    line
}
