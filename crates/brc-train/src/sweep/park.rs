//! Parking unfinished runs: a copy of each stopped run small enough to keep beside the code
//! (its logs, the `best` checkpoint and the newest `ep<N>` checkpoint with its replay buffer),
//! so a run longer than one machine's life can go on elsewhere: [`Sweep::adopt`] from the
//! parked copies puts them back, and `brc sweep run` resumes them.

use std::path::{Path, PathBuf};

use super::{adopt::copy_dir, io, RunStatus, Sweep, SweepError};
use crate::checkpoints::{newest_checkpoint, read_state};
use crate::run_dir::RunDir;

/// One run copied out of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Parking {
    /// The run's index.
    pub index: usize,
    /// Its directory in the sweep.
    pub from: PathBuf,
    /// Where its parked copy is.
    pub to: PathBuf,
    /// The episodes it had trained (its newest checkpoint's).
    pub episodes: usize,
}

impl Sweep {
    /// Copies every unfinished run that no executor holds to `to/<run directory>`, replacing
    /// an earlier parked copy of it. A copy holds the run's files without its lock and, of
    /// its checkpoints, `best` and the newest `ep<N>` (what resuming and publishing need;
    /// the older `ep<N>` are left behind). It is written beside its place and renamed into
    /// it, so an interrupted park keeps the earlier copy.
    pub fn park(&self, to: &Path) -> Result<Vec<Parking>, SweepError> {
        let mut parked = Vec::new();
        for run in &self.runs {
            let state = self.state(run);
            if state.status != RunStatus::Unfinished || state.running.is_some() {
                continue;
            }
            let from = self.run_dir(run);
            let dest = to.join(&run.dir);
            let train_error = |e| SweepError::Train {
                index: run.index,
                dir: from.clone(),
                source: Box::new(e),
            };
            let newest = newest_checkpoint(&RunDir::new(&from)).map_err(train_error)?;
            let episodes = read_state(&newest.join("trainer.json"))
                .map_err(train_error)?
                .episodes_done;
            let parent = dest.parent().expect("a run directory has a parent");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let partial = parent.join(format!(
                ".parking-{}",
                dest.file_name()
                    .expect("a run directory has a name")
                    .to_string_lossy()
            ));
            if partial.exists() {
                std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
            }
            copy_run(&from, &newest, &partial)?;
            if dest.exists() {
                std::fs::remove_dir_all(&dest).map_err(io(&dest))?;
            }
            std::fs::rename(&partial, &dest).map_err(io(&dest))?;
            parked.push(Parking {
                index: run.index,
                from,
                to: dest,
                episodes,
            });
        }
        Ok(parked)
    }
}

/// Copies run directory `from` to a new directory `to`: every file but the lock, and of the
/// checkpoints only `best` and `newest`.
fn copy_run(from: &Path, newest: &Path, to: &Path) -> Result<(), SweepError> {
    let run = RunDir::new(from);
    std::fs::create_dir(to).map_err(io(to))?;
    for entry in std::fs::read_dir(from).map_err(io(from))? {
        let path = entry.map_err(io(from))?.path();
        let name = path.file_name().expect("a directory entry has a name");
        if path == run.lock() || path == run.checkpoints() {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(name))?;
        } else {
            std::fs::copy(&path, to.join(name)).map_err(io(&path))?;
        }
    }
    let checkpoints = to.join("checkpoints");
    std::fs::create_dir(&checkpoints).map_err(io(&checkpoints))?;
    for kept in [run.checkpoint("best"), newest.to_path_buf()] {
        if kept.is_dir() {
            let name = kept.file_name().expect("a checkpoint has a name");
            copy_dir(&kept, &checkpoints.join(name))?;
        }
    }
    Ok(())
}
